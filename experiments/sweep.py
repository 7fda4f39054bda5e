"""Sweep runner: one training run per grid point, on any ``concurrent.futures.Executor``.

``anisotropy sweep EXPERIMENT [--scale quick|medium|paper] [--workers N] [--scheduler ADDRESS]
[--out DIR]``

* Every point of the experiment (:mod:`experiments.definitions`) trains in its own
  directory ``DIR/<scale>/store/<run name>`` (name from the full configuration,
  :func:`experiments.grid.run_name`); experiments share that store, so a run
  needed by two figures is trained once.
* A point whose directory holds ``summary.json`` with ``status == "complete"`` is
  skipped: rerunning a killed sweep completes only the missing points and
  leaves finished run directories untouched.  An unfinished directory is handed
  to the trainer with ``resume=True`` (it continues from its last checkpoint).
* ``DIR/<scale>/<experiment>/results.csv`` (one row per point: settings, best and
  final test accuracy, final training loss, epochs, wall time) is rewritten
  atomically after every finished point, with ``experiment.json`` describing the
  definition and ``note.txt`` how the scale departs from the paper.
* Executors: local processes by default (``--workers N``; a ``spawn``
  :class:`~concurrent.futures.ProcessPoolExecutor`, each worker with ``--threads``
  torch threads, 1 unless told otherwise), or a Dask cluster with
  ``--scheduler ADDRESS`` (``dask.distributed.Client(ADDRESS).get_executor()``;
  the workers must see the same file system as ``--out``).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import importlib
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anisotropy.cli.args import add_dataclass_arguments, from_namespace
from anisotropy.io import write_csv_atomic, write_json_atomic, write_text_atomic
from anisotropy.threads import torch_threads

from .definitions import SCALES, Experiment, Scale, load_experiment, normalise_config
from .grid import Point, format_value
from .results import is_complete, read_summary, result_columns, result_row

__all__ = [
    "DEFAULT_RUNNER",
    "ExecutionOptions",
    "SweepOptions",
    "SweepResult",
    "run_point",
    "train_config_dict",
    "run_sweep",
    "sweep_paths",
    "make_executor",
    "main",
]

#: ``module:function`` called as ``fn(config_dict, run_dir) -> summary`` for each point
DEFAULT_RUNNER = "experiments.sweep:train_config_dict"


@dataclass
class ExecutionOptions:
    """Where and how training runs execute: shared by ``anisotropy sweep`` and
    ``anisotropy figures`` (one definition, so the two commands cannot drift)."""

    scale: Scale = field(
        default="quick",
        metadata={
            "help": "quick: CPU-sized stand-in of the paper's setting; paper: the paper's setting"
        },
    )
    workers: int = field(
        default_factory=lambda: os.cpu_count() or 1,
        metadata={
            "help": "local worker processes, one single-thread worker per core by default "
            "(ignored with --scheduler)"
        },
    )
    scheduler: str | None = field(
        default=None,
        metadata={
            "help": "address of a Dask scheduler, e.g. tcp://10.0.0.1:8786 "
            "(default: local processes)"
        },
    )
    threads: int = field(default=1, metadata={"help": "torch threads per run"})
    set: list[str] = field(
        default_factory=list,
        metadata={
            "override": True,
            "help": "a setting applied to every point, KEY=VALUE (TOML literal), e.g. "
            "--set data.root=/data/cifar10; repeatable",
        },
    )
    keep_checkpoints: bool = field(
        default=True,
        metadata={
            "help": "keep checkpoint.pt of completed runs (--no-keep-checkpoints deletes them; "
            "the figures only read log.jsonl and summary.json)"
        },
    )


@dataclass
class SweepOptions(ExecutionOptions):
    """Options of ``anisotropy sweep``."""

    out: str = field(
        default="runs", metadata={"help": "directory of the run store and of the results tables"}
    )
    dry_run: bool = field(
        default=False, metadata={"help": "list the points and whether each is done; train nothing"}
    )


@dataclass
class SweepResult:
    """What a sweep did: counts, where the results are, how long it took."""

    experiment: str
    scale: str
    results_path: Path
    n_points: int
    n_skipped: int
    n_run: int
    n_failed: int
    wall_time: float
    rows: list = field(default_factory=list, repr=False)

    def report(self) -> str:
        return (
            f"sweep {self.experiment} ({self.scale}): {self.n_points} points, "
            f"{self.n_skipped} already complete, {self.n_run} trained, {self.n_failed} failed, "
            f"{self.wall_time:.1f} s -> {self.results_path}"
        )


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

    Returns the runner's summary (a dict) with ``"elapsed"`` (seconds in the worker).
    """
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with torch_threads(threads):
        summary = _resolve(runner)(dict(config), str(run_dir))
    if not keep_checkpoint and is_complete(run_dir):
        (Path(run_dir) / "checkpoint.pt").unlink(missing_ok=True)
    out = dict(summary or {})
    out["elapsed"] = time.perf_counter() - t0
    return out


def sweep_paths(out: str | Path, scale: str, experiment: str) -> tuple[Path, Path]:
    """(run store, results directory) of an experiment under ``out``."""
    root = Path(out) / scale
    return root / "store", root / experiment


def _describe(point: Point, keys: list[str]) -> str:
    return " ".join(
        f"{k.rsplit('.', 1)[-1]}={format_value(point.settings[k])}"
        for k in keys
        if k in point.settings
    )


def _completed(
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


def run_sweep(
    experiment: Experiment,
    *,
    out: str | Path = "runs",
    executor: cf.Executor | None = None,
    runner: str | Callable = DEFAULT_RUNNER,
    threads: int | None = 1,
    normalise: Callable[[Mapping[str, Any]], dict] = normalise_config,
    log: Callable[[str], None] = print,
    dry_run: bool = False,
    keep_checkpoints: bool = True,
) -> SweepResult:
    """Run every point of ``experiment`` not yet complete and collect ``results.csv``.

    Parameters
    ----------
    experiment : Experiment
    out : path
        Root of the run store and results (see :func:`sweep_paths`).
    executor : concurrent.futures.Executor, optional
        Where the points run (default: one after the other in this process).
    runner : "module:function" or callable
        ``fn(config_dict, run_dir) -> summary``; a callable must be picklable for
        process and Dask executors.
    threads : int or None
        torch threads in the worker (``None``: leave as is).
    normalise : callable
        Nested settings -> full configuration (validation; see ``Experiment.points``).
    log : callable
        Receives one line per finished point.
    dry_run : bool
        Only list the points.
    keep_checkpoints : bool
        Keep ``checkpoint.pt`` of completed runs (see :func:`run_point`).

    Returns
    -------
    SweepResult
        Failed points are counted (and their traceback written to ``error.txt`` in
        the run directory); the other points still run.
    """
    t0 = time.perf_counter()
    store, res_dir = sweep_paths(out, experiment.scale, experiment.name)
    swept = experiment.swept_keys()
    columns = result_columns(swept)
    results_path = res_dir / "results.csv"
    points: dict[str, Point] = {}
    for p in experiment.points(normalise):
        points.setdefault(p.name, p)  # two settings giving one configuration run once
    log(experiment.report())
    rows: dict[str, dict] = {}
    pending: list[Point] = []

    def row(p: Point, status: str | None = None) -> dict:
        return result_row(
            p,
            store / p.name,
            experiment=experiment.name,
            scale=experiment.scale,
            swept=swept,
            status=status,
            relative_to=res_dir,
        )

    for p in points.values():
        done = is_complete(store / p.name)
        rows[p.name] = row(p) if done else row(p, status="pending")
        if not done:
            pending.append(p)
    # seed-major order: the sweep completes whole rounds of seeds across every arm,
    # so an interrupted sweep leaves paired comparisons, not a few finished arms
    pending.sort(key=lambda p: p.settings.get("seed", 0))
    n_total, n_skip = len(points), len(points) - len(pending)
    if dry_run:
        todo = {p.name for p in pending}
        for p in points.values():
            log(f"  {'pending' if p.name in todo else 'done   '} {p.name}  [{_describe(p, swept)}]")
        return SweepResult(
            experiment.name,
            experiment.scale,
            results_path,
            n_total,
            n_skip,
            0,
            0,
            time.perf_counter() - t0,
            list(rows.values()),
        )
    res_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(res_dir / "note.txt", (experiment.note or "the paper's settings") + "\n")
    write_json_atomic(
        res_dir / "experiment.json",
        {
            "name": experiment.name,
            "scale": experiment.scale,
            "figure": experiment.figure,
            "title": experiment.title,
            "note": experiment.note,
            "base": experiment.base,
            "grid": experiment.grid,
            "seeds": experiment.seeds,
        },
        sort_keys=True,
    )

    def flush() -> None:
        write_csv_atomic(results_path, rows.values(), columns)

    flush()
    if n_skip:
        log(f"  {n_skip} of {n_total} points already complete (skipped)")
    calls = [
        (
            p,
            (p.config, str(store / p.name)),
            {"threads": threads, "runner": runner, "keep_checkpoint": keep_checkpoints},
        )
        for p in pending
    ]
    n_done = n_skip
    n_failed = 0
    for p, summary, exc in _completed(executor, calls):
        n_done += 1
        if exc is not None:  # one failed point must not stop the sweep
            n_failed += 1
            rows[p.name] = row(p, status="failed")
            with contextlib.suppress(OSError):
                (store / p.name).mkdir(parents=True, exist_ok=True)
                write_text_atomic(
                    store / p.name / "error.txt", "".join(traceback.format_exception(exc))
                )
            log(
                f"[{n_done:>{len(str(n_total))}}/{n_total}] FAILED {p.name}: "
                f"{type(exc).__name__}: {exc}"
            )
        else:
            summary = summary or {}
            rows[p.name] = row(p)
            s = read_summary(store / p.name) or summary
            log(
                f"[{n_done:>{len(str(n_total))}}/{n_total}] {experiment.name} "
                f"{_describe(p, swept)}: best {_fmt(s.get('best_test_acc'))} "
                f"final {_fmt(s.get('final_test_acc'))} "
                f"({summary.get('elapsed', float('nan')):.1f} s)"
            )
        flush()
    result = SweepResult(
        experiment.name,
        experiment.scale,
        results_path,
        n_total,
        n_skip,
        len(pending) - n_failed,
        n_failed,
        time.perf_counter() - t0,
        list(rows.values()),
    )
    log(result.report())
    return result


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, (int, float)) else "?"


@contextlib.contextmanager
def make_executor(
    *, workers: int = 1, scheduler: str | None = None
) -> Iterator[cf.Executor | None]:
    """Executor for a sweep: Dask (``scheduler`` address) or ``workers`` local processes.

    ``workers = 0`` yields ``None``: :func:`run_sweep` then runs the points in this
    process, one after the other.
    """
    if scheduler:
        try:
            from dask.distributed import Client
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise ValueError(
                "--scheduler needs dask.distributed: pip install 'anisotropy[dist]'"
            ) from exc
        client = Client(scheduler)
        try:
            yield client.get_executor(pure=False)
        finally:
            client.close()
        return
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an integer >= 0, got {workers!r}")
    if workers == 0:
        yield None
        return
    # spawn, not fork: a forked child of a process that already runs torch threads
    # can deadlock; the price is one torch import per worker
    with cf.ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn")
    ) as ex:
        yield ex


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="anisotropy sweep", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "experiment",
        help="experiment name (fig1, fig3, ...; see "
        "experiments/*.toml) or path to a definition file",
    )
    add_dataclass_arguments(p, SweepOptions)
    return p


def main(argv: list[str] | None = None) -> int:
    """``anisotropy sweep``: run an experiment's sweep; exit status 1 if a point failed."""
    ns = _parser().parse_args(argv)
    opts = from_namespace(SweepOptions, ns)
    if opts.scale not in SCALES:  # pragma: no cover - argparse enforces the choices
        raise ValueError(f"unknown scale {opts.scale!r}; valid: {', '.join(SCALES)}")
    exp = load_experiment(ns.experiment, opts.scale).with_overrides(opts.set)
    if opts.dry_run:
        run_sweep(exp, out=opts.out, dry_run=True)
        return 0
    with make_executor(workers=opts.workers, scheduler=opts.scheduler) as ex:
        res = run_sweep(
            exp,
            out=opts.out,
            executor=ex,
            threads=opts.threads,
            keep_checkpoints=opts.keep_checkpoints,
        )
    return 1 if res.n_failed else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
