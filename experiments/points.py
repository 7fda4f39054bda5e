"""One point of a sweep: train it in a worker, and what a sweep made of its points.

:func:`run_point` is what an executor runs (a local process, a Dask worker, or the
sweep's own process); it returns a summary dict, never raises
:class:`~anisotropy.training.lock.RunDirLocked` (it would not survive pickling):
a run directory held by another process comes back as ``{"status": "busy"}``.
:class:`SweepResult` counts the outcomes of a sweep (see :mod:`experiments.sweep`).
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anisotropy.threads import torch_threads

from .grid import Point
from .results import is_complete

__all__ = [
    "DEFAULT_RUNNER",
    "LOCK_PROBE_WAIT_SECONDS",
    "STATUS_BUSY",
    "SweepResult",
    "held_elsewhere",
    "run_point",
    "run_points",
    "set_aside_uncovered_log",
    "train_config_dict",
]

#: ``module:function`` called as ``fn(config_dict, run_dir) -> summary`` for each point
DEFAULT_RUNNER = "experiments.points:train_config_dict"
#: status of a point whose run directory another process holds (row of results.csv,
#: and the summary :func:`run_point` returns instead of training)
STATUS_BUSY = "busy"
#: how long a sweep waits for a held run directory before calling it busy: a
#: process killed a moment ago releases its lock once the kernel has torn it down,
#: well under a second even on a loaded machine
LOCK_PROBE_WAIT_SECONDS = 3.0


@dataclass
class SweepResult:
    """What a sweep did: counts, where the results are, how long it took.

    ``n_run`` counts points trained to completion now; ``n_stopped`` points the
    trainer stopped (now, or on an earlier run and not retried); ``n_busy`` points
    another process is training; ``n_unfinished`` points whose runner returned
    without completing them.
    """

    experiment: str
    scale: str
    results_path: Path
    n_points: int
    n_skipped: int
    n_run: int
    n_failed: int
    wall_time: float
    rows: list = field(default_factory=list, repr=False)
    n_stopped: int = 0
    n_busy: int = 0
    n_unfinished: int = 0
    stopped: list = field(default_factory=list, repr=False)
    busy: list = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        """Every point is complete (the sweep's exit status is 0 exactly then)."""
        return self.n_failed == self.n_stopped == self.n_busy == self.n_unfinished == 0

    def report(self) -> str:
        extra = "".join(
            f", {n} {what}"
            for n, what in (
                (self.n_stopped, "stopped"),
                (self.n_busy, "busy"),
                (self.n_unfinished, "unfinished"),
            )
            if n
        )
        lines = [
            f"sweep {self.experiment} ({self.scale}): {self.n_points} points, "
            f"{self.n_skipped} already complete, {self.n_run} trained, {self.n_failed} failed"
            f"{extra}, {self.wall_time:.1f} s -> {self.results_path}"
        ]
        lines += [
            f"  stopped (not retried on a rerun; --retry-stopped retries): {name}: "
            f"{why.removeprefix('stopped: ')}"
            for name, why in self.stopped
        ]
        lines += [
            f"  busy (another process is training it; rerun when it is done): {name} ({who})"
            for name, who in self.busy
        ]
        return "\n".join(lines)


def train_config_dict(config: Mapping[str, Any], run_dir: str) -> dict:
    """The default runner: validate ``config`` and train it in ``run_dir``
    (continuing from a checkpoint there, if any)."""
    from anisotropy.training.config import config_from_dict
    from anisotropy.training.trainer import train

    return train(config_from_dict(dict(config)), run_dir, resume=True, progress=False)


def _resolve(runner: str | Callable) -> Callable:
    if callable(runner):
        return runner
    module, _, func = runner.partition(":")
    if not module or not func:
        raise ValueError(f"runner {runner!r} must be 'module:function'")
    return getattr(importlib.import_module(module), func)


def run_point(
    config: Mapping[str, Any],
    run_dir: str,
    *,
    threads: int | None = 1,
    runner: str | Callable = DEFAULT_RUNNER,
    keep_checkpoint: bool = True,
) -> dict:
    """Train one point (executed in a worker): set torch threads, call the runner.

    With ``keep_checkpoint=False`` the run's ``checkpoint.pt`` is deleted once the
    run is complete (its log and summary hold everything the figures read); an
    unfinished run keeps it so that it can resume.

    Returns the runner's summary (a dict) with ``"elapsed"`` (seconds in the worker);
    ``{"status": "busy", "holder": ...}`` when the runner raised
    :class:`~anisotropy.training.lock.RunDirLocked` (another process is training
    in ``run_dir``; returned, not raised, so that it crosses process boundaries).
    """
    from anisotropy.training.lock import RunDirLocked  # (imports torch: not at module level)

    Path(run_dir).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        set_aside_uncovered_log(Path(run_dir))
        with torch_threads(threads):
            summary = _resolve(runner)(dict(config), str(run_dir))
    except RunDirLocked as exc:
        return {"status": STATUS_BUSY, "holder": exc.holder, "elapsed": time.perf_counter() - t0}
    if not keep_checkpoint and is_complete(run_dir):
        (Path(run_dir) / "checkpoint.pt").unlink(missing_ok=True)
    out = dict(summary or {})
    out["elapsed"] = time.perf_counter() - t0
    return out


def set_aside_uncovered_log(run_dir: Path) -> list[Path]:
    """Rename the logs of an unfinished run that no checkpoint covers, so it restarts.

    A point killed after its first log line but before its first checkpoint (or one
    trained with ``logging.checkpoint_every = 0``) cannot resume: the trainer refuses
    to cut a log that no checkpoint covers.  A sweep must still make progress, and
    nothing a user produced may be lost, so the uncovered ``log.jsonl`` /
    ``steps.jsonl`` are renamed to ``<name>.uncovered-<UTC time>`` (kept in the run
    directory) and the point trains afresh.  Done under the run directory's lock:
    a directory another process trains in is left alone
    (:class:`~anisotropy.training.lock.RunDirLocked` propagates).

    Returns the new paths of the renamed files (empty when nothing was renamed).
    """
    from anisotropy.training.lock import RunLock

    logs = [run_dir / "log.jsonl", run_dir / "steps.jsonl"]
    if (run_dir / "checkpoint.pt").exists() or is_complete(run_dir):
        return []
    if not any(p.is_file() and p.stat().st_size > 0 for p in logs):
        return []
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    moved = []
    with RunLock(run_dir):
        for p in logs:
            if p.is_file():
                target = p.with_name(f"{p.name}.uncovered-{stamp}")
                p.rename(target)
                moved.append(target)
    print(
        f"{run_dir}: its log is not covered by a checkpoint; kept as "
        f"{', '.join(m.name for m in moved)} and the point restarts",
        file=sys.stderr,
    )
    return moved


def run_points(
    executor: cf.Executor | None, calls: list[tuple[Point, tuple, dict]]
) -> Iterator[tuple[Point, dict | None, BaseException | None]]:
    """Run ``calls`` (point, run_point args, kwargs) and yield ``(point, summary, error)``
    as each finishes: on ``executor``, or one after the other in this process."""
    if executor is None:
        for p, args, kwargs in calls:
            try:
                yield p, run_point(*args, **kwargs), None
            except Exception as exc:
                yield p, None, exc
        return
    futures = {executor.submit(run_point, *args, **kwargs): p for p, args, kwargs in calls}
    for fut in cf.as_completed(futures):
        err = fut.exception()
        yield futures[fut], (None if err else fut.result()), err


def held_elsewhere(
    run_dirs: Iterable[Path], *, wait: float = LOCK_PROBE_WAIT_SECONDS
) -> dict[Path, str]:
    """The run directories among ``run_dirs`` whose lock another process holds, with
    the holder (``"pid N"``).

    Each lock is probed by taking it and releasing it at once; a directory that does
    not exist yet cannot be held, and is not created.  Held ones are probed again
    for up to ``wait`` seconds in all: a process killed a moment ago (an immediate
    rerun after ``kill -9``) holds its lock until the kernel has torn it down.
    """
    from anisotropy.training.lock import POLL_SECONDS, RunDirLocked, RunLock

    def holder(run_dir: Path) -> str | None:
        try:
            RunLock(run_dir).acquire().release()
        except RunDirLocked as exc:
            return exc.holder
        return None

    held = {d: who for d in run_dirs if d.is_dir() and (who := holder(d)) is not None}
    deadline = time.monotonic() + wait
    while held and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        held = {d: who for d in held if (who := holder(d)) is not None}
    return held
