"""Faults of `anisotropy train` (issue 10, items 1, 5, 6, 7 and 15 for checkpoints).

What a user sees when a run is interrupted, when a second writer starts on the same
run directory, when resuming a log that no checkpoint covers, and on bad input
(a device this torch cannot use, a damaged or crafted checkpoint, a radius whose
derived quantities overflow, a NaN before the first checkpoint): the exit status, the
one line saying why, and the files left behind.  Signals and the second writer are
real: a real signal to this process (handled by the command's own handlers), a real
second process holding the lock, and (marked slow) real `python -m anisotropy train`
processes stopped by SIGINT / SIGTERM.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import anisotropy.training.trainer as trainer_mod
from anisotropy.cli.train import EXIT_SIGINT, EXIT_SIGTERM, main
from anisotropy.io import load_checkpoint, read_jsonl
from anisotropy.training.config import config_from_dict, config_to_toml
from anisotropy.training.hooks import Callback
from anisotropy.training.lock import LOCK_NAME, RunDirLocked
from anisotropy.training.trainer import TrainingInterrupted, train
from tiny_runs import STEPS_PER_EPOCH, tiny_run

#: a run of well under a second (the tests' tiny run, 3 epochs, smoothed on fc2)
TINY_CHANGES = {"epochs": 3, "smoothing": {"layers": ["fc2"], "R": 0.05, "y": 3}}
TINY = tiny_run(TINY_CHANGES)
#: seconds a helper process may take to start and take the lock (python alone, no torch)
START_TIMEOUT = 30.0


def tiny(tmp_path: Path, **over) -> Path:
    """Write the tiny configuration (with top-level / section overrides) to a TOML file."""
    f = tmp_path / "tiny.toml"
    f.write_text(config_to_toml(config_from_dict(tiny_run(TINY_CHANGES, **over))))
    return f


def errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line]


def with_callbacks(monkeypatch, *callbacks) -> None:
    """The command's train() with callbacks added (they stand in for a user's Ctrl-C)."""
    monkeypatch.setattr(trainer_mod, "train", functools.partial(train, callbacks=list(callbacks)))


class SignalAt(Callback):
    """Send ``signum`` to this very process after optimiser step ``step``."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_step(self, state):
        if state.step == self.step:
            os.kill(os.getpid(), self.signum)


# ----------------------------------------------------------------------------- interrupts


@pytest.mark.parametrize(
    "signum, status", [(signal.SIGINT, EXIT_SIGINT), (signal.SIGTERM, EXIT_SIGTERM)]
)
def test_a_signal_stops_the_run_with_a_summary_and_it_resumes_bitwise(
    tmp_path, monkeypatch, capsys, signum, status
):
    """Signalled in epoch 3 (after the epoch-2 checkpoint): exit 130 / 143, one line with
    the resume command, summary "interrupted at epoch 2"; the printed command completes
    the run with the weights of an uninterrupted one."""
    cfg = tiny(tmp_path)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert main([str(cfg), "--out", str(tmp_path / "straight"), "--no-progress"]) == 0
    capsys.readouterr()
    out = tmp_path / "stopped"
    with_callbacks(monkeypatch, SignalAt(2 * STEPS_PER_EPOCH + 2, signum))
    assert main([str(cfg), "--out", str(out), "--no-progress"]) == status
    (line,) = errors(capsys)
    assert line.startswith("anisotropy train: interrupted at epoch 2 (SIG")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted at epoch 2" and summary["checkpoint_epoch"] == 2
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 2
    monkeypatch.undo()
    command = re.search(r"anisotropy train .* --resume$", line).group(0)
    assert main(shlex.split(command)[2:] + ["--no-progress"]) == 0
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")["model"]
    b = load_checkpoint(out / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["epoch"] for r in read_jsonl(out / "log.jsonl")] == [1, 2, 3]
    # the command's handlers are gone once it returns
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers


def test_library_train_writes_the_interrupted_summary_and_reraises(tmp_path):
    class Interrupt(Callback):
        def on_step(self, state):
            if state.step == STEPS_PER_EPOCH + 1:
                raise KeyboardInterrupt

    cfg = config_from_dict(TINY)
    with pytest.raises(TrainingInterrupted) as info:
        train(cfg, tmp_path, progress=False, callbacks=[Interrupt()])
    assert isinstance(info.value, KeyboardInterrupt)
    assert info.value.checkpoint_epoch == 1 and info.value.resumable
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "interrupted at epoch 1"


# ----------------------------------------------------------------------------- one writer


def hold_lock(run_dir: Path, seconds: float) -> subprocess.Popen:
    """A second process that takes the run directory's flock (as RunLock does) and
    holds it for ``seconds``; returns once it holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    code = (
        "import fcntl, os, sys, time\n"
        f"fh = open({str(run_dir / LOCK_NAME)!r}, 'a+')\n"
        "fcntl.flock(fh.fileno(), fcntl.LOCK_EX)\n"
        "fh.seek(0); fh.truncate(); fh.write(f'pid {os.getpid()}'); fh.flush()\n"
        "print('held', flush=True)\n"
        f"time.sleep({seconds})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")
def test_a_second_writer_is_refused_then_waits(tmp_path, capsys):
    """While another process holds the run directory: train() raises RunDirLocked naming
    its pid and writes nothing; the command prints one line and exits 2; with --wait it
    trains once the holder is gone (killed with SIGKILL: the kernel drops the lock)."""
    out = tmp_path / "run"
    holder = hold_lock(out, seconds=60)
    try:
        with pytest.raises(RunDirLocked, match=f"pid {holder.pid}"):
            train(config_from_dict(TINY), out, progress=False)
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # no log, no config
        cfg = tiny(tmp_path)
        assert main([str(cfg), "--out", str(out), "--no-progress"]) == 2
        (line,) = errors(capsys)
        assert "in use by another process" in line and f"pid {holder.pid}" in line
        assert main([str(cfg), "--out", str(out), "--wait", "-1"]) == 2
        assert "--wait must be a number of seconds >= 0" in errors(capsys)[0]
    finally:
        holder.kill()
        holder.communicate()
    assert main([str(cfg), "--out", str(out), "--no-progress", "--wait", "5"]) == 0
    assert [r["epoch"] for r in read_jsonl(out / "log.jsonl")] == [1, 2, 3]


# ----------------------------------------------------------------------------- resume


def test_resume_never_truncates_a_log_that_no_checkpoint_covers(tmp_path, capsys):
    """checkpoint_every = 0, stopped in epoch 3: two log lines and no checkpoint; a
    resume is refused and the log keeps its bytes.  So after the checkpoint of a
    complete run is deleted (--no-keep-checkpoints).  An empty log (nothing to lose)
    still restarts."""

    class Interrupt(Callback):
        def on_step(self, state):
            if state.step == 2 * STEPS_PER_EPOCH + 1:
                raise KeyboardInterrupt

    cfg = config_from_dict({**TINY, "logging": {"checkpoint_every": 0}})
    out = tmp_path / "no_ck"
    with pytest.raises(TrainingInterrupted) as info:
        train(cfg, out, progress=False, callbacks=[Interrupt()])
    assert info.value.checkpoint_epoch is None and not info.value.resumable
    log = (out / "log.jsonl").read_bytes()
    assert len(read_jsonl(out / "log.jsonl")) == 2 and not (out / "checkpoint.pt").exists()
    with pytest.raises(FileExistsError, match="has a log but no checkpoint.pt"):
        train(cfg, out, resume=True, progress=False)
    assert (out / "log.jsonl").read_bytes() == log
    toml = tiny(tmp_path, **{"logging.checkpoint_every": 0})
    assert main([str(toml), "--out", str(out), "--resume", "--no-progress"]) == 2
    (line,) = errors(capsys)
    assert "cannot resume" in line and "new directory" in line
    assert (out / "log.jsonl").read_bytes() == log

    done = tmp_path / "done"
    train(config_from_dict(TINY), done, progress=False)
    (done / "checkpoint.pt").unlink()
    log = (done / "log.jsonl").read_bytes()
    more = config_from_dict({**TINY, "epochs": 4})
    with pytest.raises(FileExistsError, match="no checkpoint.pt"):
        train(more, done, resume=True, progress=False)
    assert (done / "log.jsonl").read_bytes() == log

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "log.jsonl").write_text("")
    assert train(more, empty, resume=True, progress=False)["status"] == "complete"


# ----------------------------------------------------------------------------- bad input


def test_cuda_on_a_build_without_it_is_one_line_and_nothing_is_made(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this build has CUDA")
    out = tmp_path / "run"
    assert main([str(tiny(tmp_path)), "--out", str(out), "--set", "device=cuda"]) == 2
    (line,) = errors(capsys)
    assert "device = 'cuda'" in line and "use device = 'cpu'" in line
    assert not out.exists()


def test_a_tiny_radius_is_refused_before_anything_is_made(tmp_path, capsys):
    """R = 1e-300 made gamma = 1/R^2 a division by zero (Gaussian kernel) after the log
    was created; now the configuration names the accepted range."""
    out = tmp_path / "run"
    argv = [str(tiny(tmp_path)), "--out", str(out), "--set", "smoothing.kernel=gaussian"]
    assert main(argv + ["--set", "smoothing.R=1e-300"]) == 2
    (line,) = errors(capsys)
    assert "smoothing.R must be a number in [1e-150, 1e+150]" in line
    assert not out.exists()


def _finished_run(tmp_path: Path) -> tuple[Path, Path, bytes]:
    out = tmp_path / "run"
    cfg = tiny(tmp_path)
    assert main([str(cfg), "--out", str(out), "--no-progress", "--set", "epochs=1"]) == 0
    return cfg, out, (out / "log.jsonl").read_bytes()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_checkpoint_is_one_line_naming_it(tmp_path, capsys, damage):
    cfg, out, log = _finished_run(tmp_path)
    capsys.readouterr()
    ck = out / "checkpoint.pt"
    data = ck.read_bytes()
    ck.write_bytes(
        {"truncated": data[: len(data) // 2], "garbage": b"not a checkpoint\n"}.get(damage, b"")
    )
    assert main([str(cfg), "--out", str(out), "--resume", "--set", "epochs=2"]) == 2
    (line,) = errors(capsys)
    assert f"cannot read checkpoint '{ck}'" in line and "delete it to start the run over" in line
    assert (out / "log.jsonl").read_bytes() == log


class _Planted:
    """Unpickling this runs open(path, "w"): the file appears if a loader executes it."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("container", ["torch.save", "pickle"])
def test_a_crafted_checkpoint_runs_no_code(tmp_path, capsys, container):
    """A checkpoint whose pickle would create a file when executed: refused (it names the
    object), and the file is not created; also through `train --resume`."""
    cfg, out, _ = _finished_run(tmp_path)
    capsys.readouterr()
    marker = tmp_path / "executed"
    payload = {"format": 1, "model": _Planted(marker)}
    ck = out / "checkpoint.pt"
    if container == "torch.save":
        torch.save(payload, ck)
    else:
        ck.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load_checkpoint(ck)
    assert main([str(cfg), "--out", str(out), "--resume", "--set", "epochs=2"]) == 2
    (line,) = errors(capsys)
    assert f"cannot read checkpoint '{ck}'" in line
    assert not marker.exists()


def test_a_nan_before_the_first_checkpoint_claims_none(tmp_path, capsys):
    """A NaN at step 2: the run stops and says no checkpoint was written (it claimed one);
    the summary records checkpoint_epoch = null; the empty log it leaves does not block
    a plain rerun (nothing logged, nothing to lose)."""

    class Poison(Callback):
        def on_step(self, state):
            if state.step == 1:
                with torch.no_grad():
                    state.model.fc1.weight[0, 0] = float("nan")

    out = tmp_path / "run"
    cfg = tiny(tmp_path)
    summary = train(config_from_dict(TINY), out, progress=False, callbacks=[Poison()])
    assert summary["status"].startswith("stopped: non-finite training loss (nan) at epoch 1")
    assert summary["checkpoint_epoch"] is None and not (out / "checkpoint.pt").exists()
    (line,) = errors(capsys)
    assert "kept the last good checkpoint" not in line
    assert "no checkpoint was written before the stop" in line
    assert json.loads((out / "summary.json").read_text())["checkpoint_epoch"] is None
    assert (out / "log.jsonl").read_bytes() == b""
    assert main([str(cfg), "--out", str(out), "--no-progress"]) == 0


# ----------------------------------------------------------------------------- real processes


def _start(cfg: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "anisotropy", "train", str(cfg), "--out", str(out), "--no-progress"]
        + list(extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_lines(log: Path, n: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if log.is_file() and len(read_jsonl(log)) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"{log} did not reach {n} lines in {START_TIMEOUT} s")


@pytest.mark.slow
@pytest.mark.parametrize(
    "signum, status", [(signal.SIGINT, EXIT_SIGINT), (signal.SIGTERM, EXIT_SIGTERM)]
)
def test_signalling_a_real_training_process(tmp_path, signum, status):
    """`python -m anisotropy train` on a long run, signalled after its 3rd log line: no
    traceback, exit 130 / 143, one line with the resume command, which (with fewer
    epochs asked for) completes from the checkpoint."""
    cfg = tiny(tmp_path, epochs=100000)
    out = tmp_path / "run"
    proc = _start(cfg, out)
    _wait_for_lines(out / "log.jsonl", 3, proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=START_TIMEOUT)
    assert proc.returncode == status, err
    assert "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln]
    summary = json.loads((out / "summary.json").read_text())
    n = int(re.fullmatch(r"interrupted at epoch (\d+)", summary["status"]).group(1))
    ck = load_checkpoint(out / "checkpoint.pt")["epoch"]
    assert n >= 3 and ck in (n - 1, n) and summary["checkpoint_epoch"] == ck
    command = shlex.split(re.search(r"anisotropy train .* --resume$", line).group(0))
    done = subprocess.run(
        [sys.executable, "-m", *command, "--no-progress", "--set", f"epochs={ck + 1}"],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT * 4,
    )
    assert done.returncode == 0, done.stderr
    assert [r["epoch"] for r in read_jsonl(out / "log.jsonl")] == list(range(1, ck + 2))


@pytest.mark.slow
def test_two_real_trainers_on_one_run_directory(tmp_path):
    """A second `anisotropy train --resume` on a directory a first one trains in exits 2
    with one line naming the first one's pid; the log never holds an epoch twice."""
    cfg = tiny(tmp_path, epochs=100000)
    out = tmp_path / "run"
    first = _start(cfg, out)
    try:
        _wait_for_lines(out / "log.jsonl", 2, first)
        second = _start(cfg, out, "--resume")
        _, err = second.communicate(timeout=START_TIMEOUT * 4)
        assert second.returncode == 2, err
        assert err.strip().splitlines() == [
            f"anisotropy train: error: run directory {out} is in use by another process "
            f"(pid {first.pid}); wait for it to finish or stop it, then rerun "
            "(only one writer per run directory)"
        ]
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=START_TIMEOUT)
    epochs = [r["epoch"] for r in read_jsonl(out / "log.jsonl")]
    assert epochs == list(range(1, len(epochs) + 1))
