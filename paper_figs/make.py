"""``anisotropy figures [FIG ...] [--scale quick|medium|paper] [--workers N] [--scheduler ADDRESS]
[--runs DIR] [--out DIR] [--until-decided [--max-seeds N]]``: run the sweeps the
figures need (finished runs are reused), then draw them.

A figure is a module ``paper_figs/fig<ID>.py`` (``ID`` a number, then letters or digits,
e.g. ``3`` or ``9b``; ``fig1_regimes.py`` and other names with an underscore are helpers) that
defines ``EXPERIMENTS`` (the experiment definitions it reads, ``experiments/<name>.toml``)
and ``draw(ctx)``, and optionally ``usable_row(ctx, experiment, row)`` (which results rows
it can draw; default: complete runs); the modules are found by :func:`discover_figures`, so
adding a figure is adding its module (and its definitions).

For each requested figure (default: all) in natural order (2 before 10): every
experiment the figure reads is swept with :func:`experiments.sweep.run_sweep` (a resumed sweep
trains only missing points), then the figure script draws PNG + PDF and its
results table (CSV + markdown) into ``<out>/<scale>/``.  At the end the
paper's claims are checked on every available result (``claims.json``,
``claims.md``, the forest plot ``claims_forest.png``), the wall time of each
figure (sweep and drawing, with the load average of the machine) is merged into
``timings.json``, and ``figures.md`` collects images, tables and verdicts.

A requested figure with nothing to draw (an experiment's ``results.csv`` missing, no runs
in it, every run failed) is not drawn: it is checked before anything is written, so an
existing figure or table is never replaced by an empty one; the reason is printed and the
exit status is 1.  Claims are rewritten only when some experiment has results.

With ``--until-decided`` the figures' experiments then get more seeds in rounds
(:mod:`paper_figs.until_decided`) until every claim is decided or ``--max-seeds``
is reached, the figures whose experiments grew are drawn again, and the verdicts
(the paper's claims and the related work's mean comparisons) are those of the
group-sequential design (:mod:`paper_figs.sequential`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from anisotropy.cli.args import add_dataclass_arguments, from_namespace
from experiments.definitions import Experiment, load_experiment
from experiments.sweep import DEFAULT_RUNNER, ExecutionOptions, make_executor, run_sweep

from .claims import CLAIM_EXPERIMENTS, evaluate_claims, write_claims
from .common import FigureContext, FigureOutput, NoDataError
from .forest import draw_forest
from .length_check import check_baselines, write_length_checks
from .round_plan import plan_next_round
from .sequential import MAX_SEEDS, SequentialDesign, planned_looks
from .stats import write_text_atomic
from .until_decided import run_until_decided

__all__ = ["FIGURES", "FiguresOptions", "discover_figures", "figure_key", "make_figures", "main"]

#: the module name of a figure, ``fig<ID>``: its ID starts with a digit and goes on with
#: letters and digits (``fig9b``), so helpers (``fig1_regimes``) and words (``figure``) are not
_FIGURE_MODULE = re.compile(r"fig(?P<id>[0-9][0-9A-Za-z]*)")


def figure_key(fig: str) -> tuple[tuple[int, int, str], ...]:
    """Natural sort key of a figure ID: runs of digits compare as numbers (2 < 10 < 10b)."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.split(r"(\d+)", fig)
        if part
    )


def discover_figures(package: str = __package__ or "paper_figs") -> dict[str, str]:
    """``{ID: module}`` of the figure modules ``fig<ID>`` of ``package``, in natural order.

    Found by name with :mod:`pkgutil` (nothing is imported); :func:`_module` checks on
    import that a module defines ``EXPERIMENTS`` and ``draw``.
    """
    path = importlib.import_module(package).__path__
    found = {
        m.group("id"): f"{package}.{info.name}"
        for info in pkgutil.iter_modules(path)
        if not info.ispkg and (m := _FIGURE_MODULE.fullmatch(info.name))
    }
    return {fig: found[fig] for fig in sorted(found, key=figure_key)}


#: figure ID -> module drawing it (each has EXPERIMENTS and draw(ctx)), in natural order
FIGURES: dict[str, str] = discover_figures()


@dataclass
class FiguresOptions(ExecutionOptions):
    """Options of ``anisotropy figures`` (execution options as for ``anisotropy sweep``)."""

    runs: str = field(default="runs", metadata={"help": "sweep output root (run store, results)"})
    out: str = field(
        default="results", metadata={"help": "figures, tables and claims go to OUT/SCALE"}
    )
    draw_only: bool = field(
        default=False, metadata={"help": "never train: draw from the results that exist"}
    )
    until_decided: bool = field(
        default=False,
        metadata={
            "help": "add seeds in rounds (looks at 4, 8, ... seeds) to the arms of undecided "
            "claims until every claim is decided; verdicts from a group-sequential design "
            "with O'Brien-Fleming alpha spending"
        },
    )
    max_seeds: int = field(
        default=MAX_SEEDS,
        metadata={"help": "with --until-decided: the last planned look (seeds per arm at most)"},
    )
    plan: bool = field(
        default=False,
        metadata={
            "help": "with --until-decided: print what the next round would train (experiments, "
            "seeds, runs) and its run time estimated from the store; train and draw nothing"
        },
    )

    def design(self) -> SequentialDesign | None:
        """The sequential design of ``--until-decided`` (``None`` without it)."""
        return SequentialDesign(planned_looks(self.max_seeds)) if self.until_decided else None


def _module(fig: str) -> Any:
    if fig not in FIGURES:
        raise ValueError(f"unknown figure {fig!r}; valid: {', '.join(FIGURES)}")
    mod = importlib.import_module(FIGURES[fig])
    if not isinstance(getattr(mod, "EXPERIMENTS", None), tuple) or not callable(
        getattr(mod, "draw", None)
    ):
        raise TypeError(
            f"figure module {mod.__name__} must define EXPERIMENTS (a tuple of experiment "
            "names) and draw(ctx)"
        )
    return mod


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - platforms without getloadavg
        return []


def _draw(
    fig: str,
    mod: Any,
    ctx: FigureContext,
    outputs: dict[str, FigureOutput],
    not_drawn: dict[str, str],
    log: Callable[[str], None],
) -> None:
    """Draw ``fig`` if every experiment it reads has data; else record why in ``not_drawn``.

    The data are checked before ``mod.draw`` writes anything, so an existing figure or
    table is left as it is when there is nothing to draw.
    """
    usable = getattr(mod, "usable_row", None)
    problems = [p for e in mod.EXPERIMENTS if (p := ctx.data_problem(e, usable)) is not None]
    try:
        if problems:
            raise NoDataError("; ".join(problems))
        outputs[fig] = mod.draw(ctx)
    except (NoDataError, FileNotFoundError) as exc:
        not_drawn[fig] = str(exc)
        log(f"figure {fig}: not drawn (existing files left unchanged): {exc}")
        return
    not_drawn.pop(fig, None)
    log(outputs[fig].report())


def _experiments(modules: Iterable[ModuleType], opts: FiguresOptions) -> dict[str, Experiment]:
    """The experiments of the figure ``modules`` at ``opts.scale`` with ``opts.set``."""
    return {
        name: load_experiment(name, opts.scale).with_overrides(opts.set)
        for mod in modules
        for name in mod.EXPERIMENTS
    }


def make_figures(
    figures: list[str], opts: FiguresOptions, *, log=print, runner: str | Callable = DEFAULT_RUNNER
) -> dict[str, Any]:
    """Sweep and draw ``figures``; returns ``{"timings": ..., "outputs": ..., "failed": n,
    "not_drawn": {figure: reason}, "claims": ...}`` (and ``"rounds"`` with ``--until-decided``;
    with ``--plan`` only the next round's plan, ``"plan"``: nothing trained or drawn).

    ``runner`` trains one point (see :func:`experiments.sweep.run_sweep`; tests pass a
    stand-in).
    """
    if opts.until_decided and opts.draw_only:
        raise ValueError("until_decided trains new seeds; it cannot be combined with draw_only")
    design = opts.design()
    if opts.plan:
        if design is None:
            raise ValueError("plan shows the next round of until_decided: pass until_decided too")
        exps = _experiments([_module(f) for f in figures], opts)
        plan = plan_next_round(exps, runs=opts.runs, design=design, log=log)
        log(plan.report(workers=max(opts.workers, 1)))
        return {
            "timings": {},
            "outputs": {},
            "failed": 0,
            "not_drawn": {},
            "claims": plan.claims,
            "plan": plan,
        }
    modules = {f: _module(f) for f in figures}
    ctx = FigureContext(opts.scale, Path(opts.runs), Path(opts.out) / opts.scale, design)
    ctx.out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, Any] = {}
    outputs: dict[str, FigureOutput] = {}
    not_drawn: dict[str, str] = {}
    failed = 0
    needs_training = not opts.draw_only and any(m.EXPERIMENTS for m in modules.values())
    with make_executor(
        workers=opts.workers if needs_training else 0,
        scheduler=opts.scheduler if needs_training else None,
    ) as ex:
        for fig, mod in modules.items():
            t0, load0 = time.perf_counter(), _load()
            trained = skipped = 0
            if not opts.draw_only:
                for name in mod.EXPERIMENTS:
                    exp = load_experiment(name, opts.scale).with_overrides(opts.set)
                    res = run_sweep(
                        exp,
                        out=opts.runs,
                        executor=ex,
                        threads=opts.threads,
                        log=log,
                        keep_checkpoints=opts.keep_checkpoints,
                        runner=runner,
                    )
                    trained, skipped, failed = (
                        trained + res.n_run,
                        skipped + res.n_skipped,
                        # every point not complete counts: failed, stopped (diverged),
                        # busy (trained by another process) or unfinished
                        failed + res.n_failed + res.n_stopped + res.n_busy + res.n_unfinished,
                    )
            t1 = time.perf_counter()
            _draw(fig, mod, ctx, outputs, not_drawn, log)
            t2 = time.perf_counter()
            timings[fig] = {
                "sweep_s": round(t1 - t0, 1),
                "draw_s": round(t2 - t1, 1),
                "total_s": round(t2 - t0, 1),
                "runs_trained": trained,
                "runs_reused": skipped,
                "workers": opts.workers,
                "loadavg_start": load0,
                "loadavg_end": _load(),
                "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
            log(
                f"figure {fig}: {timings[fig]['total_s']} s (sweep {timings[fig]['sweep_s']} s, "
                f"{trained} runs trained, {skipped} reused; load {load0} -> "
                f"{timings[fig]['loadavg_end']})"
            )
        rounds = None
        if design is not None:
            t0, load0 = time.perf_counter(), _load()
            exps = _experiments(modules.values(), opts)
            rounds = run_until_decided(
                exps,
                runs=opts.runs,
                design=design,
                executor=ex,
                runner=runner,
                threads=opts.threads,
                keep_checkpoints=opts.keep_checkpoints,
                log=log,
            )
            failed += rounds.failed
            grown = {n for r in rounds.rounds for n in r["experiments"]}
            ctx = FigureContext(opts.scale, Path(opts.runs), ctx.out, design)  # fresh results
            t1 = time.perf_counter()
            for fig, mod in modules.items():
                if grown & set(mod.EXPERIMENTS):
                    _draw(fig, mod, ctx, outputs, not_drawn, log)
            timings["until_decided"] = {
                "total_s": round(time.perf_counter() - t0, 1),
                "sweep_s": round(t1 - t0, 1),
                "runs_trained": rounds.trained,
                "rounds": rounds.rounds,
                "seeds": rounds.seeds,
                "looks": list(design.looks),
                "stopped": rounds.stopped,
                "loadavg_start": load0,
                "loadavg_end": _load(),
                "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
    # a draw-only pass keeps the timings of the run that trained in timings.json
    name = "timings_draw_only.json" if opts.draw_only else "timings.json"
    _merge_timings(ctx.out / name, timings)
    full = ctx.out / "timings.json"
    all_timings = json.loads(full.read_text()) if full.is_file() else timings
    claims = evaluate_claims(lambda e: ctx.rows(e) if ctx.has(e) else None, design=design)
    if all(c.verdict == "not run" for c in claims) and (ctx.out / "claims.json").is_file():
        # no experiment has results (e.g. a wrong --runs): keep the claims of the last run
        log(f"claims: no results under {opts.runs}; existing claims files left unchanged")
    else:
        write_claims(claims, ctx.out, scale=opts.scale, design=design)
        draw_forest(
            claims,
            ctx.out,
            title=f"The paper's claims at {opts.scale} scale ("
            + (
                "fixed sample"
                if design is None
                else f"sequential, looks at n = {', '.join(map(str, design.looks))}"
            )
            + ")",
        )
    for c in claims:
        log(c.report())
    checks = check_baselines(
        lambda e: ctx.rows(e) if ctx.has(e) else None, ctx.log, CLAIM_EXPERIMENTS
    )
    if checks:  # else: no results (keep an existing check, as for the claims)
        write_length_checks(checks, ctx.out, scale=opts.scale)
        for chk in checks:
            log(chk.report())
    _write_index(ctx, outputs, all_timings)
    out = {
        "timings": timings,
        "outputs": outputs,
        "failed": failed,
        "not_drawn": not_drawn,
        "claims": claims,
    }
    if rounds is not None:
        out["rounds"] = rounds
    return out


def _merge_timings(path: Path, new: dict[str, Any]) -> dict[str, Any]:
    old = json.loads(path.read_text()) if path.is_file() else {}
    old.update(new)
    write_text_atomic(path, json.dumps(old, indent=2, sort_keys=True) + "\n")
    return old


def _write_index(
    ctx: FigureContext, outputs: dict[str, FigureOutput], timings: dict[str, Any]
) -> None:
    lines = [f"# Figures at {ctx.scale} scale", ""]
    for fig in FIGURES:
        png = ctx.out / f"fig{fig}.png"
        if not png.is_file():
            continue
        t = timings.get(fig, {})
        lines += [f"## Figure {fig}", "", f"![figure {fig}](fig{fig}.png)", ""]
        if fig in outputs and outputs[fig].caption:
            lines += [f"*{outputs[fig].caption}*", ""]
        if t:
            lines += [
                f"Wall time {t['total_s']} s (sweep {t['sweep_s']} s, {t['runs_trained']} "
                f"runs trained, {t['runs_reused']} reused, {t['workers']} workers, load "
                f"average {t['loadavg_start']} -> {t['loadavg_end']}).",
                "",
            ]
        for md in sorted(ctx.out.glob(f"fig{fig}*_table.md")):
            lines += [md.read_text(encoding="utf-8"), ""]
    length = ctx.out / "length_check.md"
    if length.is_file():
        lines += [length.read_text(encoding="utf-8").replace("# ", "## ", 1)]
    claims = ctx.out / "claims.md"
    if claims.is_file():
        lines += [claims.read_text(encoding="utf-8").replace("# ", "## ", 1)]
    if (ctx.out / "claims_forest.png").is_file():
        lines += ["![claims forest plot](claims_forest.png)", ""]
    write_text_atomic(ctx.out / "figures.md", "\n".join(lines) + "\n")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="anisotropy figures", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "figures",
        nargs="*",
        metavar="FIG",
        help=f"figures to make ({', '.join(FIGURES)}; default: all)",
    )
    add_dataclass_arguments(p, FiguresOptions)
    return p


def main(argv: list[str] | None = None) -> int:
    """``anisotropy figures``: exit status 1 if a training run did not complete (failed,
    stopped, busy or unfinished) or a requested
    figure had nothing to draw (one line per such figure on stderr saying why)."""
    parser = _parser()
    ns = parser.parse_args(argv)
    opts = from_namespace(FiguresOptions, ns)
    bad = [f for f in ns.figures if f not in FIGURES]
    if bad:
        parser.error(f"unknown figure(s) {', '.join(bad)}; valid: {', '.join(FIGURES)}")
    figs = sorted(dict.fromkeys(ns.figures or FIGURES), key=figure_key)
    result = make_figures(figs, opts)
    for fig, why in result["not_drawn"].items():
        print(f"anisotropy figures: figure {fig} not drawn: {why}", file=sys.stderr)
    return 1 if result["failed"] or result["not_drawn"] else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
