"""``anisotropy train CONFIG [--set KEY=VALUE ...] [--out DIR] [--resume] [--no-progress]``.

Reads a TOML configuration, applies the ``--set`` overrides (one grammar:
:func:`anisotropy.training.config.parse_override`) and calls
:func:`anisotropy.training.trainer.train`.  ``CONFIG`` is a file path; when no such
file exists, the name of a configuration shipped with the ``experiments`` package
(``smoke.toml``, ``fmnist_quick.toml``, ...) - the command line may know about
``experiments/``, the training core does not.

Exit status: 0 for a complete run, 2 for bad input (configuration, data, command
line), 3 for a run stopped by a non-finite value or a callback.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from anisotropy.cli.args import add_override_argument

__all__ = ["main", "resolve_config", "EXIT_BAD_INPUT", "EXIT_STOPPED"]

#: exit status of ``anisotropy train`` for a run stopped by a non-finite value or a callback
EXIT_STOPPED = 3
#: exit status for bad input (configuration, data, command line)
EXIT_BAD_INPUT = 2


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
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap


def _report(summary: dict[str, Any], out: Path) -> str:
    def fmt(v: Any) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    return (
        f"{out}: {summary['status']} after {summary['epochs']} epoch(s), "
        f"{summary['steps']} steps, {summary['wall_time']:.1f} s\n"
        f"  test accuracy: final {fmt(summary['final_test_acc'])}, best "
        f"{fmt(summary['best_test_acc'])} (epoch {summary['best_epoch']})\n"
        f"  train loss (centre): {fmt(summary['final_train_loss'])}, smoothed: "
        f"{fmt(summary['final_smoothed_loss'])}\n"
        f"  files: {out / 'log.jsonl'}, {out / 'summary.json'}, {out / 'checkpoint.pt'}"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``anisotropy train``; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        from anisotropy.training.config import load_config
        from anisotropy.training.trainer import train

        path = resolve_config(args.config)
        cfg = load_config(path, args.overrides)
        out = Path(args.out) if args.out is not None else Path("runs") / path.stem
        summary = train(cfg, out, resume=args.resume, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as exc:
        print(f"anisotropy train: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(_report(summary, out))
    return 0 if summary["status"] == "complete" else EXIT_STOPPED


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
