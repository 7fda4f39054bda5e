"""Fault injection on ``anisotropy sweep``: dead parents, signals, locked and diverged
points, bad input.

Every fault is done for real: processes are killed with signals, a run directory is
locked by another holder, a run diverges with a huge learning rate.  The tests that
train (seconds each, several Python start-ups) are marked slow; the default ones use
stand-in runners or processes that only sleep.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from anisotropy.io import read_jsonl
from anisotropy.training.lock import RunDirLocked, RunLock
from experiments import results, sweep
from experiments.definitions import Experiment, load_experiment

ROOT = Path(__file__).resolve().parents[1]
#: how long a worker may outlive its killed parent: the parent-death signal acts at
#: once, the watchdog within half a second; a loaded CI machine gets a margin
ORPHAN_DEADLINE_S = 5.0
#: bound on a sweep's exit after SIGINT / SIGTERM (workers get SIGTERM, then SIGKILL
#: after 10 s; a training worker dies on SIGTERM at once)
STOP_DEADLINE_S = 30.0

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="uses /proc and POSIX signals"
)


# ----------------------------------------------------------------------------- helpers


def _state(pid: int) -> str | None:
    """Process state letter from /proc (None: no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _alive(pid: int) -> bool:
    return _state(pid) not in (None, "Z")  # a zombie has exited, unreaped


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def _wait_gone(pids: list[int], deadline: float) -> list[int]:
    end = time.monotonic() + deadline
    while time.monotonic() < end and any(_alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def passthrough(config):
    return dict(config)


def tiny_experiment(**kw) -> Experiment:
    return Experiment(
        name="tiny",
        scale="quick",
        base={"smoothing.layers": ["fc1"], "epochs": 1},
        grid=kw.pop("grid", [{"smoothing.R": [0.1, 0.2]}]),
        seeds=kw.pop("seeds", [0]),
    )


def summary_runner(config, run_dir):
    """Stand-in trainer: R >= 0.2 "diverges" (the trainer's stopped status)."""
    R = config["smoothing"]["R"]
    status = "complete" if R < 0.2 else "stopped: non-finite training loss (nan) at epoch 1"
    summary = {"status": status, "best_test_acc": 0.5, "epochs": 1, "config": config}
    Path(run_dir, "summary.json").write_text(json.dumps(summary))
    return summary


# ----------------------------------------------------------------------------- workers


def test_a_worker_exits_when_its_parent_is_killed(tmp_path):
    """kill -9 of the process that owns a local pool: its worker (sleeping, so only
    the parent-death machinery can end it) is gone within seconds."""
    parent = textwrap.dedent(
        """
        import os, time
        from experiments.workers import make_executor
        with make_executor(workers=1) as ex:
            print(ex.submit(os.getpid).result(), flush=True)
            ex.submit(time.sleep, 120)
            time.sleep(120)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", parent], cwd=ROOT, env=_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        worker = int(proc.stdout.readline())
        assert _alive(worker)
    finally:
        proc.kill()
        proc.communicate()
    assert _wait_gone([worker], ORPHAN_DEADLINE_S) == []


def test_the_watchdog_alone_ends_an_orphan(tmp_path):
    """The portable fallback (no prctl): a process polling its parent id exits once
    its parent is gone."""
    child = (
        "import os, threading, time; from experiments import workers; "
        "threading.Thread(target=workers._watch_parent, args=(os.getppid(),), "
        "daemon=True).start(); time.sleep(120)"
    )
    parent = (
        "import subprocess, sys, time; "
        f"p = subprocess.Popen([sys.executable, '-c', {child!r}]); "
        "print(p.pid, flush=True); time.sleep(120)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", parent], cwd=ROOT, env=_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        orphan = int(proc.stdout.readline())
        time.sleep(0.2)
        assert _alive(orphan)
    finally:
        proc.kill()
        proc.communicate()
    assert _wait_gone([orphan], ORPHAN_DEADLINE_S) == []


# ----------------------------------------------------------------------------- busy


def test_a_point_locked_by_another_process_is_busy_not_trained(tmp_path):
    e = tiny_experiment()
    store = sweep.sweep_paths(tmp_path, "quick", e.name)[0]
    held = next(p for p in e.points(passthrough) if p.settings["smoothing.R"] == 0.1)
    calls: list[str] = []

    def runner(config, run_dir):
        calls.append(Path(run_dir).name)
        return summary_runner({**config, "smoothing": {"R": 0.0}}, run_dir)

    lines: list[str] = []
    with RunLock(store / held.name):  # another writer trains there now
        res = sweep.run_sweep(
            e,
            out=tmp_path,
            runner=runner,
            normalise=passthrough,
            threads=None,
            log=lines.append,
            lock_wait=0.0,
        )
    assert held.name not in calls and len(calls) == 1
    assert (res.n_run, res.n_failed, res.n_busy, res.ok) == (1, 0, 1, False)
    rows = {r["run"]: r for r in results.read_results(res.results_path)}
    assert rows[held.name]["status"] == "busy"
    assert any(
        f"busy (another process is training it): {held.name} (pid {os.getpid()})" in line
        for line in lines
    )
    # once the other writer is done, a rerun trains it
    res2 = sweep.run_sweep(
        e, out=tmp_path, runner=runner, normalise=passthrough, threads=None, log=lambda s: None
    )
    assert (res2.n_skipped, res2.n_run, res2.n_busy, res2.ok) == (1, 1, 0, True)


def test_a_lock_released_within_the_wait_is_not_busy(tmp_path):
    """An immediate rerun after kill -9: the dying worker still holds its lock for a
    moment; the sweep waits for it instead of calling the point busy."""
    e = tiny_experiment(grid=[{"smoothing.R": [0.1]}])
    (p,) = e.points(passthrough)
    lock = RunLock(sweep.sweep_paths(tmp_path, "quick", e.name)[0] / p.name).acquire()
    threading.Timer(0.3, lock.release).start()
    res = sweep.run_sweep(
        e,
        out=tmp_path,
        runner=summary_runner,
        normalise=passthrough,
        threads=None,
        log=lambda s: None,
        lock_wait=5.0,
    )
    assert (res.n_run, res.n_busy) == (1, 0)


def test_losing_the_lock_race_in_the_worker_is_busy(tmp_path):
    """The lock is taken by the trainer in the worker; when another process got it
    first (a Dask rerun while the old tasks still run) the point is busy."""

    def runner(config, run_dir):
        raise RunDirLocked(Path(run_dir), "pid 4242")

    res = sweep.run_sweep(
        tiny_experiment(seeds=[0]),
        out=tmp_path,
        runner=runner,
        normalise=passthrough,
        threads=None,
        log=lambda s: None,
    )
    assert (res.n_run, res.n_failed, res.n_busy) == (0, 0, 2)
    assert {who for _, who in res.busy} == {"pid 4242"}
    assert "busy (another process is training it" in res.report()


def test_a_concurrent_second_sweep_does_not_train_a_running_point(tmp_path):
    """Two sweeps of one experiment at once (threads of one process; flock excludes
    them as it excludes processes): the second reports the running point busy."""
    e = tiny_experiment(grid=[{"smoothing.R": [0.1]}])
    started, release = threading.Event(), threading.Event()
    trained: list[str] = []

    def slow(config, run_dir):
        with RunLock(run_dir):  # what the trainer does for a whole run
            trained.append("first")
            started.set()
            release.wait(10)
            return summary_runner(config, run_dir)

    first: dict = {}
    kw = {
        "out": tmp_path,
        "normalise": passthrough,
        "threads": None,
        "log": lambda s: None,
        "lock_wait": 0.0,
    }
    t = threading.Thread(target=lambda: first.update(r=sweep.run_sweep(e, runner=slow, **kw)))
    t.start()
    assert started.wait(10)
    second = sweep.run_sweep(e, runner=slow, **kw)
    release.set()
    t.join(10)
    assert trained == ["first"]
    assert (second.n_run, second.n_busy, first["r"].n_run) == (0, 1, 1)


# ----------------------------------------------------------------------------- stopped


def test_a_stopped_point_is_counted_and_not_retried_unless_asked(tmp_path):
    e = tiny_experiment()
    calls: list[float] = []

    def runner(config, run_dir):
        calls.append(config["smoothing"]["R"])
        return summary_runner(config, run_dir)

    kw = {"out": tmp_path, "runner": runner, "normalise": passthrough, "threads": None}
    res = sweep.run_sweep(e, log=lambda s: None, **kw)
    assert (res.n_run, res.n_failed, res.n_stopped, res.ok) == (1, 0, 1, False)
    rows = {r["smoothing.R"]: r for r in results.read_results(res.results_path)}
    assert rows[0.2]["status"] == "stopped"
    assert "1 stopped" in res.report()
    assert "stopped (not retried on a rerun; --retry-stopped retries)" in res.report()
    assert "non-finite training loss (nan) at epoch 1" in res.report()
    calls.clear()
    again = sweep.run_sweep(e, log=lambda s: None, **kw)
    assert calls == [] and (again.n_skipped, again.n_stopped, again.ok) == (1, 1, False)
    retried = sweep.run_sweep(e, log=lambda s: None, retry_stopped=True, **kw)
    assert calls == [0.2] and retried.n_stopped == 1


# ----------------------------------------------------------------------------- bad input

QUICK_ONLY = '[quick]\nseeds = [0]\n[quick.base]\nepochs = 1\n"data.name" = "synthetic"\n'


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nosuch"], "unknown experiment 'nosuch'; valid: fig1, fig1_early, fig3"),
        (["{tmp}/missing.toml"], "experiment definition '{tmp}/missing.toml' does not exist"),
        (["fig3", "--workers", "-1"], "--workers must be an integer >= 0"),
        (["fig3", "--threads", "0"], "--threads must be an integer >= 1"),
        (["fig3", "--set", "nonsense"], "--set: override 'nonsense' must have the form KEY=VALUE"),
        (["fig3", "--set", "optim.lr=-1"], "--set optim.lr=-1: "),
        (["fig3", "--set", "epochs=2", "--set", "nope=1"], "--set nope=1: "),
        (["{tmp}/q.toml", "--scale", "paper"], "no [paper] section; available scales: quick"),
        (["fig3", "--scheduler", "tcp://127.0.0.1:{port}"], "no Dask scheduler reachable"),
        (["fig3", "--scheduler", "nonsense"], "is not an address; expected tcp://HOST:PORT"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_is_made(tmp_path, capsys, args, message):
    (tmp_path / "q.toml").write_text(QUICK_ONLY)
    fill = {"tmp": str(tmp_path), "port": str(_closed_port())}
    out = tmp_path / "out"
    argv = [a.format(**fill) for a in args] + ["--out", str(out)]
    t0 = time.perf_counter()
    assert sweep.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("anisotropy sweep: error: ")
    assert message.format(**fill) in err
    assert not out.exists()
    assert time.perf_counter() - t0 < 10.0  # no 30 s wait for a scheduler


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fig3", "--workers", "abc"], "argument --workers: invalid int value: 'abc'"),
        (["fig3", "--scale", "huge"], "argument --scale: invalid choice: 'huge'"),
        (["--set"], "argument --set: expected one argument"),
    ],
)
def test_unparseable_options_are_one_line_exit_2(capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        sweep.main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "--help" in err


def test_set_before_the_experiment_does_not_swallow_it(tmp_path, capsys):
    argv = ["--set", "epochs=1", "fig3", "--set", "seed=0", "--dry-run", "--out", str(tmp_path)]
    assert sweep.main(argv) == 0
    assert "pending" in capsys.readouterr().out


@pytest.mark.slow
def test_a_silent_peer_is_not_a_scheduler_and_the_wait_is_bounded():
    pytest.importorskip("dask.distributed")
    from experiments.workers import SchedulerError, make_executor

    with socket.socket() as s:  # accepts connections (the kernel does), never answers
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        t0 = time.perf_counter()
        with (
            pytest.raises(SchedulerError, match="did not answer within 0.5 s"),
            make_executor(scheduler=f"tcp://127.0.0.1:{s.getsockname()[1]}", scheduler_timeout=0.5),
        ):
            pass
        assert time.perf_counter() - t0 < 8.0


# ----------------------------------------------------------------------------- real runs

TOML = """
figure = "test"
title = "one-layer nets on synthetic data, a few seconds each"
[quick]
seeds = [0]
[quick.base]
"data.name" = "synthetic"
"data.synthetic_size" = {size}
"model.name" = "mlp"
"model.depth" = 1
"model.width" = 16
"optim.lr" = {lr}
"optim.batch_size" = 64
"logging.checkpoint_every" = 1
epochs = {epochs}
[[quick.grid]]
"smoothing.layers" = {layers}
"""


def write_toml(tmp_path: Path, *, epochs=40, size=2048, lr=0.05, layers='[["fc1"]]') -> Path:
    p = tmp_path / "faults.toml"
    p.write_text(TOML.format(epochs=epochs, size=size, lr=lr, layers=layers))
    return p


def _start(toml: Path, out: Path, *extra: str) -> tuple[subprocess.Popen, list[str]]:
    args = [str(toml), "--workers", "1", "--out", str(out), *extra]
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.sweep", *args],
        cwd=ROOT,
        env=_env(),
        start_new_session=True,  # its own process group, like a terminal job
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, args


def _wait_training(proc: subprocess.Popen, log: Path, lines: int = 2) -> None:
    deadline = time.monotonic() + 180
    while not (log.is_file() and len(log.read_text().splitlines()) >= lines):
        assert proc.poll() is None, f"the sweep ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, "training did not start in time"
        time.sleep(0.05)


def _kill_group(proc: subprocess.Popen) -> None:
    """Clean-up after a failed assertion: the sweep's process group, workers included."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


def _epochs(log: Path) -> list[int]:
    return [r["epoch"] for r in read_jsonl(log)]


def _rerun(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "experiments.sweep", *args],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_kill_9_of_the_sweep_leaves_no_worker_and_a_rerun_writes_each_epoch_once(tmp_path):
    toml, out = write_toml(tmp_path), tmp_path / "out"
    (point,) = load_experiment(toml, "quick").points()
    run_dir = sweep.sweep_paths(out, "quick", "faults")[0] / point.name
    proc, args = _start(toml, out)
    try:
        _wait_training(proc, run_dir / "log.jsonl")
        workers = _children(proc.pid)
        assert workers  # the pool worker (and multiprocessing's resource tracker)
        os.kill(proc.pid, signal.SIGKILL)  # the parent only, by PID
        proc.wait()
        rerun = _rerun(args)  # at once: the old worker must not train alongside
        assert _wait_gone(workers, ORPHAN_DEADLINE_S) == []
    finally:
        _kill_group(proc)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert _epochs(run_dir / "log.jsonl") == list(range(1, 41))
    assert results.is_complete(run_dir)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "to_group", "status"),
    [(signal.SIGINT, True, 130), (signal.SIGTERM, False, 143)],
    ids=["ctrl-c-to-the-job", "sigterm-by-pid"],
)
def test_a_signal_stops_the_sweep_and_prints_how_to_resume(tmp_path, signum, to_group, status):
    toml, out = write_toml(tmp_path, layers='[["fc1"], []]'), tmp_path / "out"
    first, second = load_experiment(toml, "quick").points()
    store = sweep.sweep_paths(out, "quick", "faults")[0]
    proc, args = _start(toml, out)
    try:
        _wait_training(proc, store / first.name / "log.jsonl")
        workers = _children(proc.pid)
        (os.killpg if to_group else os.kill)(proc.pid, signum)
        _, err = proc.communicate(timeout=STOP_DEADLINE_S)
    finally:
        _kill_group(proc)
    assert proc.returncode == status
    assert err.count("\n") == 1 and "Traceback" not in err, err
    head, resume = err.strip().split("; resume with: ")
    assert head.startswith(f"anisotropy sweep: {signal.Signals(signum).name}: pending points")
    assert shlex.split(resume) == ["anisotropy", "sweep", *args]
    assert _wait_gone(workers, ORPHAN_DEADLINE_S) == []
    assert not (store / second.name / "log.jsonl").exists()  # cancelled before it started
    rerun = _rerun(shlex.split(resume)[2:])
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    for p in (first, second):
        assert _epochs(store / p.name / "log.jsonl") == list(range(1, 41))


@pytest.mark.slow
def test_a_diverged_point_exits_nonzero_and_is_retried_only_on_request(tmp_path, capsys):
    toml, out = write_toml(tmp_path, epochs=2, size=256, lr=1e30), tmp_path / "out"
    (point,) = load_experiment(toml, "quick").points()
    summary = sweep.sweep_paths(out, "quick", "faults")[0] / point.name / "summary.json"
    argv = [str(toml), "--workers", "0", "--out", str(out)]
    assert sweep.main(argv) == 1
    first = capsys.readouterr()
    assert "STOPPED" in first.out and "0 trained, 0 failed, 1 stopped" in first.out
    assert json.loads(summary.read_text())["status"].startswith("stopped: non-finite")
    stamp = summary.stat().st_mtime_ns
    assert sweep.main(argv) == 1  # not retried: the same run would stop again
    assert "--retry-stopped retries" in capsys.readouterr().out
    assert summary.stat().st_mtime_ns == stamp
    assert sweep.main([*argv, "--retry-stopped"]) == 1
    assert summary.stat().st_mtime_ns != stamp  # trained again (and stopped again)
    rows = results.read_results(sweep.sweep_paths(out, "quick", "faults")[1] / "results.csv")
    assert [r["status"] for r in rows] == ["stopped"]


# ------------------------------------------------------------------ uncovered logs


def _tiny_train_config() -> dict:
    return {
        "epochs": 1,
        "model": {"name": "mlp", "depth": 1, "width": 8},
        "data": {"name": "synthetic", "synthetic_size": 64},
        "optim": {"lr": 0.1, "batch_size": 32},
        "smoothing": {"layers": []},
        "logging": {"signals": False},
    }


def test_a_log_no_checkpoint_covers_is_kept_aside_and_the_point_restarts(tmp_path, capsys):
    # a point killed after its first log line but before its first checkpoint: the
    # trainer refuses to resume it (it would cut the log), the sweep must still progress
    from experiments.points import run_point

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    orphan = '{"epoch": 1, "test_acc": 0.5}\n'
    (run_dir / "log.jsonl").write_text(orphan)
    summary = run_point(_tiny_train_config(), str(run_dir), threads=1)
    assert summary["status"] == "complete"
    kept = list(run_dir.glob("log.jsonl.uncovered-*"))
    assert len(kept) == 1 and kept[0].read_text() == orphan  # nothing the run produced is lost
    assert len(read_jsonl(run_dir / "log.jsonl")) == 1  # the fresh run's own epoch
    assert "not covered by a checkpoint" in capsys.readouterr().err


def test_an_uncovered_log_in_a_directory_in_use_is_left_alone(tmp_path):
    from experiments.points import set_aside_uncovered_log

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "log.jsonl").write_text('{"epoch": 1}\n')
    with RunLock(run_dir), pytest.raises(RunDirLocked):
        set_aside_uncovered_log(run_dir)
    assert (run_dir / "log.jsonl").exists()
    assert set_aside_uncovered_log(tmp_path / "empty") == []
