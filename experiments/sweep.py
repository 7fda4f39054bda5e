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
* A definition whose scale has a tuning stage (``[<scale>.tuning]``,
  :mod:`experiments.tuning`) is swept in two stages: every cell at the tuning seeds
  (results in ``DIR/<scale>/<experiment>_tuning/``), then, once all of them are
  finished, each grid group's best cell at the evaluation seeds (``selection.json``
  next to ``results.csv`` records the choice).
* Executors: local processes by default (``--workers N``; a ``spawn``
  :class:`~concurrent.futures.ProcessPoolExecutor`, each worker with ``--threads``
  torch threads, 1 unless told otherwise), or a Dask cluster with
  ``--scheduler ADDRESS`` (``dask.distributed.Client(ADDRESS).get_executor()``;
  the workers must see the same file system as ``--out``).  Local workers die
  with the sweep, however it dies (:mod:`experiments.workers`).
* Outcomes of a point: *trained* (complete), *failed* (an exception; traceback in
  ``error.txt``; retried on a rerun, and a point that then completes keeps it as
  ``error_before_retry.txt``), *stopped* (the trainer stopped it, e.g. a
  non-finite loss; not retried unless ``--retry-stopped``: the same run would stop
  again), *busy* (another process holds the run directory's lock,
  :mod:`anisotropy.training.lock`, and is training it; left alone) or
  *unfinished* (the runner returned without completing it).  The exit status is
  0 only when every point is complete, 1 otherwise.
* SIGINT / SIGTERM cancel the pending points, stop the workers, print one line
  with the command that resumes the sweep and exit with 130 / 143.  Bad input
  (unknown experiment, missing file, bad option value, bad ``--set``, a scale the
  definition lacks, an unreachable scheduler) is reported in one line with exit
  status 2 before anything runs.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import dataclasses
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from anisotropy.cli.args import add_dataclass_arguments, from_namespace
from anisotropy.io import write_csv_atomic, write_json_atomic, write_text_atomic

from .definitions import SCALES, Experiment, Scale, load_experiment, normalise_config
from .grid import Point, format_value
from .points import (
    DEFAULT_RUNNER,
    LOCK_PROBE_WAIT_SECONDS,
    STATUS_BUSY,
    SweepResult,
    held_elsewhere,
    run_point,
    run_points,
    train_config_dict,
)
from .results import is_complete, is_stopped, read_summary, result_columns, result_row
from .tuning import evaluation_experiment, select_cells, tuning_experiment
from .workers import SchedulerError, interrupt_on_signals, interrupting_signal, make_executor

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
    "check_options",
    "resume_command",
    "main",
]


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
    retry_stopped: bool = field(
        default=False,
        metadata={
            "help": "retrain points the trainer stopped (non-finite loss, ...); by default "
            "they are listed and left alone"
        },
    )


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


def _retire_error(run_dir: Path) -> None:
    """A point that completes on a retry keeps its earlier failure's traceback as
    ``error_before_retry.txt``: ``error.txt`` in a run directory means its last
    attempt failed."""
    err = run_dir / "error.txt"
    if err.is_file():
        with contextlib.suppress(OSError):
            err.replace(run_dir / "error_before_retry.txt")


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
    retry_stopped: bool = False,
    lock_wait: float = LOCK_PROBE_WAIT_SECONDS,
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
    retry_stopped : bool
        Retrain the points the trainer stopped on an earlier run (by default they
        are counted as stopped and left alone).
    lock_wait : float
        Seconds to wait for run directories another process holds before counting
        them as busy (see :func:`experiments.points.held_elsewhere`).

    Returns
    -------
    SweepResult
        Failed points are counted (and their traceback written to ``error.txt`` in
        the run directory); the other points still run.  A point whose run
        directory another process holds is counted as busy and not trained.
    """
    if experiment.tuning is not None:
        return _run_two_stages(
            experiment,
            out=out,
            executor=executor,
            runner=runner,
            threads=threads,
            normalise=normalise,
            log=log,
            dry_run=dry_run,
            keep_checkpoints=keep_checkpoints,
            retry_stopped=retry_stopped,
            lock_wait=lock_wait,
        )
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
    stopped: list[tuple[str, str]] = []
    busy: list[tuple[str, str]] = []
    state: dict[str, str] = {}

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

    def why_stopped(p: Point) -> str:
        return str((read_summary(store / p.name) or {}).get("status", "stopped"))

    todo: list[Point] = []
    for p in points.values():
        run_dir = store / p.name
        if is_complete(run_dir):
            state[p.name], rows[p.name] = "done", row(p)
        elif is_stopped(run_dir) and not retry_stopped:
            state[p.name], rows[p.name] = "stopped", row(p)
            stopped.append((p.name, why_stopped(p)))
        else:
            todo.append(p)
    held = held_elsewhere([store / p.name for p in todo], wait=lock_wait)
    for p in todo:
        if (holder := held.get(store / p.name)) is not None:
            state[p.name], rows[p.name] = STATUS_BUSY, row(p, status=STATUS_BUSY)
            busy.append((p.name, holder))
        else:
            state[p.name], rows[p.name] = "pending", row(p, status="pending")
            pending.append(p)
    # seed-major order: the sweep completes whole rounds of seeds across every arm,
    # so an interrupted sweep leaves paired comparisons, not a few finished arms
    pending.sort(key=lambda p: p.settings.get("seed", 0))
    n_total = len(points)
    n_skip = sum(v == "done" for v in state.values())
    counts = {"trained": 0, "failed": 0, "unfinished": 0}

    def result() -> SweepResult:
        return SweepResult(
            experiment.name,
            experiment.scale,
            results_path,
            n_total,
            n_skip,
            counts["trained"],
            counts["failed"],
            time.perf_counter() - t0,
            list(rows.values()),
            n_stopped=len(stopped),
            n_busy=len(busy),
            n_unfinished=counts["unfinished"],
            stopped=stopped,
            busy=busy,
        )

    if dry_run:
        for p in points.values():
            log(f"  {state[p.name]:<7} {p.name}  [{_describe(p, swept)}]")
        return result()
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
    if stopped:
        log(f"  {len(stopped)} points stopped on an earlier run (not retried; --retry-stopped)")
    for name, holder in busy:
        log(f"  busy (another process is training it): {name} ({holder})")
    calls = [
        (
            p,
            (p.config, str(store / p.name)),
            {"threads": threads, "runner": runner, "keep_checkpoint": keep_checkpoints},
        )
        for p in pending
    ]
    n_done = n_total - len(pending)
    width = len(str(n_total))
    for p, summary, exc in run_points(executor, calls):
        n_done += 1
        head = f"[{n_done:>{width}}/{n_total}]"
        run_dir = store / p.name
        if exc is not None:  # one failed point must not stop the sweep
            counts["failed"] += 1
            rows[p.name] = row(p, status="failed")
            with contextlib.suppress(OSError):
                run_dir.mkdir(parents=True, exist_ok=True)
                write_text_atomic(run_dir / "error.txt", "".join(traceback.format_exception(exc)))
            log(f"{head} FAILED {p.name}: {type(exc).__name__}: {exc}")
            flush()
            continue
        summary = summary or {}
        if summary.get("status") == STATUS_BUSY:  # lost the race for the lock: not ours
            rows[p.name] = row(p, status=STATUS_BUSY)
            busy.append((p.name, str(summary.get("holder", "pid unknown"))))
            log(f"{head} BUSY {p.name}: another process is training it; not trained here")
            flush()
            continue
        s = read_summary(run_dir) or summary
        status = str(s.get("status", ""))
        if is_complete(run_dir) or status == "complete":
            counts["trained"] += 1
            rows[p.name] = row(p)
            _retire_error(run_dir)
            log(
                f"{head} {experiment.name} {_describe(p, swept)}: "
                + (
                    f"best loss {_fmt(s.get('best_test_loss'))} "
                    f"final loss {_fmt(s.get('final_test_loss'))} "
                    if s.get("best_test_loss") is not None  # a reconstruction: no accuracy
                    else f"best {_fmt(s.get('best_test_acc'))} "
                    f"final {_fmt(s.get('final_test_acc'))} "
                )
                + f"({summary.get('elapsed', float('nan')):.1f} s)"
            )
        elif is_stopped(run_dir):
            rows[p.name] = row(p)
            stopped.append((p.name, status))
            log(f"{head} STOPPED {p.name}: {status}")
        else:
            counts["unfinished"] += 1
            rows[p.name] = row(p, status="pending")
            log(f"{head} UNFINISHED {p.name}: status {status or 'missing'!r}; a rerun resumes it")
        flush()
    res = result()
    log(res.report())
    return res


def _run_two_stages(
    experiment: Experiment,
    *,
    out: str | Path,
    normalise: Callable[[Mapping[str, Any]], dict],
    log: Callable[[str], None],
    dry_run: bool,
    **kw: Any,
) -> SweepResult:
    """A definition with a tuning stage (:mod:`experiments.tuning`): sweep every cell at
    the tuning seeds, choose each group's best cell, write ``selection.json`` next to
    the results and sweep the chosen cells at the evaluation seeds.

    Returns the two stages' outcomes together (:func:`_both`): its counts cover the
    tuning points and the evaluation points, so a stopped tuning run makes the sweep
    not ok, as a stopped point of a one-stage sweep does.  Until the tuning stage is
    finished only its outcome is returned (the evaluation has not started); a finished
    tuning stage with a group lacking an eligible cell counts as one unfinished point
    (a plain rerun cannot start the evaluation; ``--retry-stopped`` may).
    """
    log(experiment.report())
    store, res_dir = sweep_paths(out, experiment.scale, experiment.name)
    tuned = run_sweep(
        tuning_experiment(experiment),
        out=out,
        normalise=normalise,
        log=log,
        dry_run=dry_run,
        **kw,
    )
    selection = select_cells(experiment, store, normalise)
    log(selection.report())
    if not selection.ready:
        if not dry_run and selection.n_finished == selection.n_points:
            log(
                f"  no evaluation: a group of {experiment.name} has no cell whose tuning runs "
                "all completed (rerun with --retry-stopped, or change the group's grid)"
            )
            tuned.n_unfinished += 1
        return tuned
    if not dry_run:
        res_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(res_dir / "selection.json", selection.to_json(), sort_keys=True)
    evaluated = run_sweep(
        evaluation_experiment(experiment, selection),
        out=out,
        normalise=normalise,
        log=log,
        dry_run=dry_run,
        **kw,
    )
    return _both(tuned, evaluated)


def _both(tuned: SweepResult, evaluated: SweepResult) -> SweepResult:
    """The outcome of a two-stage sweep: the evaluation's name, table and rows, the counts
    of both stages added."""
    return dataclasses.replace(
        evaluated,
        n_points=tuned.n_points + evaluated.n_points,
        n_skipped=tuned.n_skipped + evaluated.n_skipped,
        n_run=tuned.n_run + evaluated.n_run,
        n_failed=tuned.n_failed + evaluated.n_failed,
        wall_time=tuned.wall_time + evaluated.wall_time,
        n_stopped=tuned.n_stopped + evaluated.n_stopped,
        n_busy=tuned.n_busy + evaluated.n_busy,
        n_unfinished=tuned.n_unfinished + evaluated.n_unfinished,
        stopped=tuned.stopped + evaluated.stopped,
        busy=tuned.busy + evaluated.busy,
    )


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, (int, float)) else "?"


class _Parser(argparse.ArgumentParser):
    """Argument errors in one line (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="anisotropy sweep", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "experiment",
        help="experiment name (fig1, fig3, ...; see "
        "experiments/*.toml) or path to a definition file",
    )
    add_dataclass_arguments(p, SweepOptions)
    return p


def check_options(experiment: str, opts: SweepOptions) -> Experiment:
    """Every check of ``anisotropy sweep``'s input that can be made before work starts:
    the option values, the definition, its scale, and each ``--set`` against every
    point.  Returns the experiment with the overrides applied.

    Raises
    ------
    ValueError, FileNotFoundError
        With a one-line message naming the option or file and what is accepted.
    """
    from anisotropy.training.config import parse_override

    w = opts.workers
    if isinstance(w, bool) or not isinstance(w, int) or w < 0:
        raise ValueError(
            f"--workers must be an integer >= 0 (0 runs the points one after the other "
            f"in this process), got {w!r}"
        )
    t = opts.threads
    if isinstance(t, bool) or not isinstance(t, int) or t < 1:
        raise ValueError(f"--threads must be an integer >= 1 (torch threads per run), got {t!r}")
    if opts.scale not in SCALES:  # pragma: no cover - argparse enforces the choices
        raise ValueError(f"--scale must be one of {', '.join(SCALES)}, got {opts.scale!r}")
    if opts.scheduler is not None and not opts.scheduler.strip():
        raise ValueError("--scheduler must be an address such as tcp://10.0.0.1:8786, got ''")
    exp = load_experiment(experiment, opts.scale)
    for item in opts.set:
        try:
            parse_override(item)
        except ValueError as exc:
            raise ValueError(f"--set: {exc}") from None
    full = exp.with_overrides(opts.set)
    try:
        full.points()
        if full.tuning is not None:
            tuning_experiment(full).points()
    except ValueError as exc:
        if not opts.set:
            raise
        try:
            exp.points()
        except ValueError:  # the definition itself is at fault, not a --set
            raise exc from None
        for k, item in enumerate(opts.set, start=1):  # the first --set that breaks a point
            try:
                exp.with_overrides(opts.set[:k]).points()
            except ValueError as bad:
                raise ValueError(f"--set {item}: {bad}") from None
        raise
    return full


def resume_command(argv: list[str]) -> str:
    """The command line that resumes an interrupted sweep: the same command."""
    return shlex.join(["anisotropy", "sweep", *argv])


def _error(exc: BaseException) -> int:
    print(f"anisotropy sweep: error: {exc}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """``anisotropy sweep``: run an experiment's sweep.

    Exit status: 0 when every point is complete; 1 when a point failed, was
    stopped by the trainer, is busy in another process or is unfinished; 2 on bad
    input (one line on stderr, nothing run); 130 / 143 after SIGINT / SIGTERM
    (pending points cancelled, workers stopped, the resume command printed).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    ns = _parser().parse_args(argv)
    opts = from_namespace(SweepOptions, ns)
    try:
        exp = check_options(ns.experiment, opts)
    except (ValueError, FileNotFoundError) as exc:
        return _error(exc)
    if opts.dry_run:
        res = run_sweep(exp, out=opts.out, dry_run=True, retry_stopped=opts.retry_stopped)
        return 0
    try:
        with (
            interrupt_on_signals(),
            make_executor(workers=opts.workers, scheduler=opts.scheduler) as ex,
        ):
            res = run_sweep(
                exp,
                out=opts.out,
                executor=ex,
                threads=opts.threads,
                keep_checkpoints=opts.keep_checkpoints,
                retry_stopped=opts.retry_stopped,
            )
    except SchedulerError as exc:
        return _error(exc)
    except KeyboardInterrupt as exc:  # SweepInterrupted, or the trainer's report of it
        sig = interrupting_signal(exc)
        print(
            f"anisotropy sweep: {sig.name}: pending points cancelled, workers stopped; "
            f"resume with: {resume_command(argv)}",
            file=sys.stderr,
            flush=True,
        )
        return 128 + sig.value
    return 0 if res.ok else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
