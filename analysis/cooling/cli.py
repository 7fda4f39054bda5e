"""``anisotropy cooling LOG [--out DIR] [options]``: run the analysis, write cooling.json and cooling.png.

``LOG`` is a run directory (its ``log.jsonl``), a ``.jsonl`` log or a ``.csv`` file (columns
in :mod:`analysis.cooling.io`).  ``--out`` defaults to the run directory, or the directory of
the file.  The options are the fields of :class:`~analysis.cooling.pipeline.CoolingConfig`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from anisotropy.cli.args import add_dataclass_arguments, from_namespace

from .io import load
from .pipeline import CoolingConfig, analyse
from .plot import plot_cooling

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="anisotropy cooling",
        description="cooling-law analysis of logged layer signals (section 2.1 of the paper)",
    )
    p.add_argument("log", metavar="LOG", help="run directory, log.jsonl or CSV")
    p.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="output directory (default: the run directory / the file's directory)",
    )
    add_dataclass_arguments(p, CoolingConfig)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``anisotropy cooling``; returns the exit status."""
    ns = build_parser().parse_args(argv)
    try:
        cfg = from_namespace(CoolingConfig, ns)
        data = load(ns.log)
        result = analyse(data, cfg)
    except ValueError as exc:
        print(f"anisotropy cooling: error: {exc}", file=sys.stderr)
        return 2
    src = Path(ns.log)
    out = Path(ns.out) if ns.out else (src if src.is_dir() else src.parent)
    out.mkdir(parents=True, exist_ok=True)
    path = result.save(out / "cooling.json")
    plot_cooling(result, data, path=out / "cooling.png")
    print(result.report())
    print(f"wrote {path} and {out / 'cooling.png'}")
    return 0
