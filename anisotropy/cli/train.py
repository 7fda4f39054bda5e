"""``anisotropy train CONFIG [--set KEY=VALUE ...] [--out DIR] [--resume] [--wait S] ...``.

Reads a TOML configuration, applies the ``--set`` overrides (one grammar:
:func:`anisotropy.training.config.parse_override`) and calls
:func:`anisotropy.training.trainer.train`.  ``CONFIG`` is a file path; when no such
file exists, the name of a configuration shipped with the ``experiments`` package
(``smoke.toml``, ``fmnist_quick.toml``, ...) - the command line may know about
``experiments/``, the training core does not.

Under ``torchrun --standalone --nproc_per_node N -m anisotropy train CONFIG --out DIR``
the N processes train the run data-parallel (:mod:`anisotropy.training.distributed`);
rank 0 writes the run directory and prints the report, every rank prints its errors.

Exit status: 0 for a complete run, 2 for bad input (configuration, data, command
line, a damaged checkpoint, a run directory another process trains in), 3 for a
run stopped by a non-finite value or a callback, 130 / 143 for a run interrupted
by SIGINT (Ctrl-C) / SIGTERM: ``summary.json`` then says ``interrupted at epoch N``
and the command to resume is printed (the last checkpoint is kept).
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from types import FrameType
from typing import Any

from anisotropy.cli.args import add_override_argument

__all__ = [
    "main",
    "resolve_config",
    "Terminated",
    "EXIT_BAD_INPUT",
    "EXIT_STOPPED",
    "EXIT_SIGINT",
    "EXIT_SIGTERM",
]

#: exit status of ``anisotropy train`` for a run stopped by a non-finite value or a callback
EXIT_STOPPED = 3
#: exit status for bad input (configuration, data, command line)
EXIT_BAD_INPUT = 2
#: exit statuses of an interrupted run: 128 + the signal number, the shells' convention
EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an interrupt so that a run stops as it does on Ctrl-C."""


@contextmanager
def _interrupts() -> Iterator[list[int]]:
    """SIGTERM raises :class:`Terminated`; yields a list that receives the number of
    the first SIGINT / SIGTERM.  Later signals are ignored while the run writes its
    summary (a second Ctrl-C must not leave a half-handled stop).  Handlers are
    restored on exit; outside the main thread nothing is installed."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if caught:
            return
        caught.append(signum)
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield caught
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def resolve_config(path: str) -> Path:
    """``path`` if it is a file, else a configuration of that name shipped in the
    ``experiments`` package (if that package is installed), else ``path`` unchanged
    (loading it then reports that it does not exist)."""
    p = Path(path)
    if p.is_file():
        return p
    try:
        shipped = resources.files("experiments") / p.name
        if shipped.is_file():
            return Path(str(shipped))
    except ModuleNotFoundError:  # pragma: no cover - the package without its experiments
        pass
    return p


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="anisotropy train",
        description=("Train one network from a TOML configuration (see docs/trainer.md)."),
    )
    ap.add_argument(
        "config",
        help="TOML configuration file, e.g. experiments/smoke.toml, or the "
        "name of a shipped one (smoke.toml)",
    )
    add_override_argument(ap, dest="overrides")
    ap.add_argument("--out", default=None, help="run directory (default: runs/<config name>)")
    ap.add_argument("--resume", action="store_true", help="continue from the run's checkpoint")
    ap.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for a run directory another process trains in (default: 0, "
        "fail at once)",
    )
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap


def _report(summary: dict[str, Any], out: Path) -> str:
    def fmt(v: Any) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    by = summary.get("stopped_by")
    why = f" (stopped by {by})" if by == "max_passes" else ""
    passes = summary.get("passes")
    cost = "" if passes is None else f", {passes} passes"
    return (
        f"{out}: {summary['status']}{why} after {summary['epochs']} epoch(s), "
        f"{summary['steps']} steps{cost}, {summary['wall_time']:.1f} s\n"
        + (
            f"  test loss: final {fmt(summary['final_test_loss'])}, best "
            f"{fmt(summary['best_test_loss'])} (epoch {summary['best_epoch']})\n"
            if "best_test_loss" in summary  # no accuracy: a reconstruction
            else f"  test accuracy: final {fmt(summary['final_test_acc'])}, best "
            f"{fmt(summary['best_test_acc'])} (epoch {summary['best_epoch']})\n"
        )
        + f"  train loss (centre): {fmt(summary['final_train_loss'])}, smoothed: "
        f"{fmt(summary['final_smoothed_loss'])}\n"
        f"  files: {out / 'log.jsonl'}, {out / 'summary.json'}, {out / 'checkpoint.pt'}"
    )


def _interrupted(exc: KeyboardInterrupt, signum: int, config: Path, out: Path) -> int:
    """One line on stderr for an interrupted run; the exit status for ``signum``."""
    from anisotropy.training.trainer import TrainingInterrupted

    name = "SIGTERM" if signum == signal.SIGTERM else "SIGINT"
    if not isinstance(exc, TrainingInterrupted):  # before training started: nothing written
        print(f"anisotropy train: interrupted ({name}) before training started", file=sys.stderr)
    else:
        resume = " ".join(
            shlex.quote(a) for a in ("anisotropy", "train", str(config), "--out", str(out))
        )
        if exc.checkpoint_epoch is not None:
            then = f"resume from its epoch-{exc.checkpoint_epoch} checkpoint: {resume} --resume"
        elif exc.resumable:
            then = f"no checkpoint yet; restart with: {resume} --resume"
        else:
            then = "no checkpoint was written, so it cannot be resumed; train into a new --out"
        print(f"anisotropy train: {exc.summary['status']} ({name}); {then}", file=sys.stderr)
    return EXIT_SIGTERM if signum == signal.SIGTERM else EXIT_SIGINT


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``anisotropy train``; returns the exit status."""
    args = _parser().parse_args(argv)
    if not args.wait >= 0:
        print(
            f"anisotropy train: error: --wait must be a number of seconds >= 0, got {args.wait}",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    path = resolve_config(args.config)
    out = Path(args.out) if args.out is not None else Path("runs") / path.stem
    with _interrupts() as caught:
        try:
            from anisotropy.training.config import load_config
            from anisotropy.training.lock import RunDirLocked
            from anisotropy.training.trainer import train

            cfg = load_config(path, args.overrides)
            summary = train(
                cfg, out, resume=args.resume, progress=not args.no_progress, lock_wait=args.wait
            )
        except (ValueError, FileNotFoundError, FileExistsError, ImportError, RunDirLocked) as exc:
            print(f"anisotropy train: error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except KeyboardInterrupt as exc:
            signum = caught[0] if caught else signal.SIGINT
            return _interrupted(exc, signum, out / "config.toml", out)
    if os.environ.get("RANK", "0") == "0":  # torchrun: rank 0 reports for the run
        print(_report(summary, out))
    return 0 if summary["status"] == "complete" else EXIT_STOPPED


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
