"""``anisotropy cooling LOG [--out DIR] [--time epoch|step] [options]``: run the analysis,
write cooling.json and cooling.png.

``LOG`` is a run directory (its ``log.jsonl``), a ``.jsonl`` log or a ``.csv`` file (columns
in :mod:`analysis.cooling.io`).  With ``--time step`` the time axis is the training step and
the input is the run's step log ``steps.jsonl`` (written with ``logging.steps = true``); the
outputs are then ``cooling_steps.json`` and ``cooling_steps.png`` (log time axis), so that
both analyses of a run can live side by side.  ``--out`` defaults to the run directory, or
the directory of the file.  The other options are the fields of
:class:`~analysis.cooling.pipeline.CoolingConfig`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from anisotropy.cli.args import add_dataclass_arguments, from_namespace
from anisotropy.io import check_output_dir

from .io import TIME_AXES, TimeAxis, load
from .pipeline import CoolingConfig, analyse
from .plot import plot_cooling

__all__ = ["main", "build_parser", "output_stem"]


def output_stem(time_axis: TimeAxis) -> str:
    """Stem of the output files: ``cooling`` (epoch axis) or ``cooling_steps`` (step axis)."""
    return "cooling_steps" if time_axis == "step" else "cooling"


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
    p.add_argument(
        "--time",
        choices=TIME_AXES,
        default="epoch",
        help="time axis: epoch (log.jsonl, default) or step (the step log steps.jsonl, "
        "written with logging.steps = true)",
    )
    add_dataclass_arguments(p, CoolingConfig)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``anisotropy cooling``; returns the exit status."""
    ns = build_parser().parse_args(argv)
    src = Path(ns.log)
    try:
        # the output directory first: a bad --out is refused before the analysis runs
        out = check_output_dir(ns.out if ns.out else (src if src.is_dir() else src.parent))
        cfg = from_namespace(CoolingConfig, ns)
        data = load(ns.log, time_axis=ns.time)
        result = analyse(data, cfg)
    except ValueError as exc:
        print(f"anisotropy cooling: error: {exc}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    stem = output_stem(ns.time)
    path = result.save(out / f"{stem}.json")
    png = out / f"{stem}.png"
    plot_cooling(result, data, path=png, xscale="log" if ns.time == "step" else "linear")
    print(result.report())
    print(f"wrote {path} and {png}")
    return 0
