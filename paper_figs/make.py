"""``anisotropy figures [FIG ...] [--scale quick|paper] [--workers N] [--scheduler ADDRESS]
[--runs DIR] [--out DIR]``: run the sweeps the figures need (finished runs are
reused), then draw them.

For each requested figure (default: all, 1-8) in order: every experiment the
figure reads is swept with :func:`experiments.sweep.run_sweep` (a resumed sweep
trains only missing points), then the figure script draws PNG + PDF and its
results table (CSV + markdown) into ``<out>/<scale>/``.  At the end the
paper's claims are checked on every available result (``claims.json``,
``claims.md``), the wall time of each figure (sweep and drawing, with the load
average of the machine) is merged into ``timings.json``, and ``figures.md``
collects images, tables and verdicts.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anisotropy.cli.args import add_dataclass_arguments, from_namespace
from experiments.definitions import load_experiment
from experiments.sweep import ExecutionOptions, make_executor, run_sweep

from .claims import evaluate_claims, write_claims
from .common import FigureContext, FigureOutput
from .stats import write_text_atomic

__all__ = ["FIGURES", "FiguresOptions", "make_figures", "main"]

#: figure number -> module drawing it (each has EXPERIMENTS and draw(ctx))
FIGURES: dict[str, str] = {str(i): f"paper_figs.fig{i}" for i in range(1, 9)}


@dataclass
class FiguresOptions(ExecutionOptions):
    """Options of ``anisotropy figures`` (execution options as for ``anisotropy sweep``)."""

    runs: str = field(default="runs", metadata={"help": "sweep output root (run store, results)"})
    out: str = field(default="results", metadata={"help": "figures, tables and claims go to OUT/SCALE"})
    draw_only: bool = field(default=False, metadata={
        "help": "never train: draw from the results that exist"})


def _module(fig: str):
    if fig not in FIGURES:
        raise ValueError(f"unknown figure {fig!r}; valid: {', '.join(FIGURES)}")
    return importlib.import_module(FIGURES[fig])


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - platforms without getloadavg
        return []


def make_figures(figures: list[str], opts: FiguresOptions, *, log=print) -> dict[str, Any]:
    """Sweep and draw ``figures``; returns ``{"timings": ..., "outputs": ..., "failed": n}``."""
    modules = {f: _module(f) for f in figures}
    ctx = FigureContext(opts.scale, Path(opts.runs), Path(opts.out) / opts.scale)
    ctx.out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, Any] = {}
    outputs: dict[str, FigureOutput] = {}
    failed = 0
    needs_training = not opts.draw_only and any(m.EXPERIMENTS for m in modules.values())
    with make_executor(workers=opts.workers if needs_training else 0,
                       scheduler=opts.scheduler if needs_training else None) as ex:
        for fig, mod in modules.items():
            t0, load0 = time.perf_counter(), _load()
            trained = skipped = 0
            if not opts.draw_only:
                for name in mod.EXPERIMENTS:
                    exp = load_experiment(name, opts.scale).with_overrides(opts.set)
                    res = run_sweep(exp, out=opts.runs, executor=ex, threads=opts.threads,
                                    log=log, keep_checkpoints=opts.keep_checkpoints)
                    trained, skipped, failed = (trained + res.n_run, skipped + res.n_skipped,
                                                failed + res.n_failed)
            t1 = time.perf_counter()
            try:
                outputs[fig] = mod.draw(ctx)
                log(outputs[fig].report())
            except FileNotFoundError as exc:
                log(f"figure {fig}: not drawn: {exc}")
            t2 = time.perf_counter()
            timings[fig] = {"sweep_s": round(t1 - t0, 1), "draw_s": round(t2 - t1, 1),
                            "total_s": round(t2 - t0, 1), "runs_trained": trained,
                            "runs_reused": skipped, "workers": opts.workers,
                            "loadavg_start": load0, "loadavg_end": _load(),
                            "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
            log(f"figure {fig}: {timings[fig]['total_s']} s (sweep {timings[fig]['sweep_s']} s, "
                f"{trained} runs trained, {skipped} reused; load {load0} -> "
                f"{timings[fig]['loadavg_end']})")
    # a draw-only pass keeps the timings of the run that trained in timings.json
    name = "timings_draw_only.json" if opts.draw_only else "timings.json"
    _merge_timings(ctx.out / name, timings)
    full = ctx.out / "timings.json"
    all_timings = json.loads(full.read_text()) if full.is_file() else timings
    claims = evaluate_claims(lambda e: ctx.rows(e) if ctx.has(e) else None)
    write_claims(claims, ctx.out, scale=opts.scale)
    for c in claims:
        log(c.report())
    _write_index(ctx, outputs, all_timings)
    return {"timings": timings, "outputs": outputs, "failed": failed, "claims": claims}


def _merge_timings(path: Path, new: dict[str, Any]) -> dict[str, Any]:
    old = json.loads(path.read_text()) if path.is_file() else {}
    old.update(new)
    write_text_atomic(path, json.dumps(old, indent=2, sort_keys=True) + "\n")
    return old


def _write_index(ctx: FigureContext, outputs: dict[str, FigureOutput],
                 timings: dict[str, Any]) -> None:
    lines = [f"# Figures at {ctx.scale} scale", ""]
    for fig in sorted(FIGURES, key=int):
        png = ctx.out / f"fig{fig}.png"
        if not png.is_file():
            continue
        t = timings.get(fig, {})
        lines += [f"## Figure {fig}", "", f"![figure {fig}](fig{fig}.png)", ""]
        if fig in outputs and outputs[fig].caption:
            lines += [f"*{outputs[fig].caption}*", ""]
        if t:
            lines += [f"Wall time {t['total_s']} s (sweep {t['sweep_s']} s, {t['runs_trained']} "
                      f"runs trained, {t['runs_reused']} reused, {t['workers']} workers, load "
                      f"average {t['loadavg_start']} -> {t['loadavg_end']}).", ""]
        for md in sorted(ctx.out.glob(f"fig{fig}*_table.md")):
            lines += [md.read_text(encoding="utf-8"), ""]
    claims = ctx.out / "claims.md"
    if claims.is_file():
        lines += [claims.read_text(encoding="utf-8").replace("# ", "## ", 1)]
    write_text_atomic(ctx.out / "figures.md", "\n".join(lines) + "\n")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="anisotropy figures", description=__doc__.split("\n\n")[0])
    p.add_argument("figures", nargs="*", metavar="FIG",
                   help=f"figures to make ({', '.join(FIGURES)}; default: all)")
    add_dataclass_arguments(p, FiguresOptions)
    return p


def main(argv: list[str] | None = None) -> int:
    """``anisotropy figures``: exit status 1 if a training run failed."""
    parser = _parser()
    ns = parser.parse_args(argv)
    opts = from_namespace(FiguresOptions, ns)
    bad = [f for f in ns.figures if f not in FIGURES]
    if bad:
        parser.error(f"unknown figure(s) {', '.join(bad)}; valid: {', '.join(FIGURES)}")
    figs = sorted(dict.fromkeys(ns.figures or FIGURES), key=int)
    result = make_figures(figs, opts)
    return 1 if result["failed"] else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
