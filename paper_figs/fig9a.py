"""Figure 9a: the compute-matched comparison of every method on the 2-layer FC net on
Fashion-MNIST (SGD, PLA and PLEA on one layer and on every hidden layer, SAM,
Entropy-SGD, Replicated-SGD coupling one layer or every layer, moment matching, heat
regularisation), every method with the same budget of minibatch passes.

Left: test accuracy against the passes spent (forward-only passes count as one), each
method at its best tuning cell (highest mean best test accuracy), mean and 95 % band
across seeds.  Right: best and final test accuracy of that cell with its 95 % interval.
Tables: one row per method at its best cell (best and final test accuracy,
generalisation gap, wall time, passes, and the cell's settings on the edge of the
values its grid tried, :func:`experiments.tuning.grid_edges`: a method whose optimum
may lie beyond its grid) and one row per tuning cell; the claims (partial smoothing
vs isotropic smoothing and vs every other method) with verdicts.

When the scale tunes in a separate stage (:mod:`experiments.tuning`; medium and paper)
the sweep has already chosen each method's cell on the tuning seeds: ``rel_compare``
holds only the chosen cells at the evaluation seeds, and the table of every cell reads
``rel_compare_tuning`` (the tuning seeds).  Without one (quick) the best cell is chosen
on the seeds that measure it.

Reads the ``rel_compare`` sweep (and its tuning stage when present); never trains.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import partial
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from experiments.tuning import TUNING_SUFFIX, describe_edges, grid_edges

from .common import FigureContext, FigureOutput, NoDataError, finish_figure, plot_curve
from .related_claims import RELATED_CLAIMS, write_figure_claims
from .related_data import (
    METHOD_ORDER,
    best_cell,
    cells,
    curve_by,
    describe_cell,
    enrich,
    summarise,
)
from .stats import write_csv_table, write_markdown_table

TUNING = "rel_compare" + TUNING_SUFFIX

__all__ = ["EXPERIMENTS", "draw", "FIGURE", "METRICS", "CLAIM_IDS"]

FIGURE = "9a"
EXPERIMENTS: tuple[str, ...] = ("rel_compare",)
#: the columns of the table, summarised over the seeds of a cell
METRICS: tuple[str, ...] = ("best_test_acc", "final_test_acc", "gap", "wall_time", "cost_passes")
_HEADERS = {
    "best_test_acc": "best test acc (%)",
    "final_test_acc": "final test acc (%)",
    "gap": "gap, train - test (pp)",
    "wall_time": "wall time (s)",
    "cost_passes": "passes",
}
_COLOURS = plt.get_cmap("tab20")
#: the claims this figure shows: those read on rel_compare alone (the flatness claims
#: on its final models are figure 9d's)
CLAIM_IDS: tuple[str, ...] = tuple(c[0] for c in RELATED_CLAIMS if c[3] == EXPERIMENTS)


def _passes(rec: dict[str, Any]) -> float | None:
    p = rec.get("passes")
    return None if p is None else float(p) + float(rec.get("forward_passes") or 0)


def _is_method(method: str, row: Mapping[str, Any]) -> bool:
    return row.get("method") == method


def _methods(rows: list[dict]) -> list[str]:
    """The methods of ``rows``: those of :data:`METHOD_ORDER` in its order, then any other."""
    present = [m for m in METHOD_ORDER if any(r.get("method") == m for r in rows)]
    return present + sorted({str(r["method"]) for r in rows if r.get("method")} - set(present))


def _every_cell(rows: list[dict]) -> list[dict]:
    """One summary row per (method, cell) of ``rows``."""
    out = []
    for method in _methods(rows):
        for k, members in cells(rows, partial(_is_method, method)).items():
            out.append({"method": method, "cell": describe_cell(k), **summarise(members, METRICS)})
    return out


def _edge(groups: Mapping[Any, list], k: Any, tuned: bool) -> str:
    """The best cell ``k``'s settings on its grid's edge, in words: from the tuning
    stage's choice (``tuning_edge`` of its rows) or, without one, from the cells of
    ``groups`` (the method's cells on these seeds)."""
    if tuned:
        return str(groups[k][0].get("tuning_edge") or "")
    keys = list(groups)
    return describe_edges(grid_edges([dict(c) for c in keys], keys.index(k)))


def _tuning_split(ctx: FigureContext) -> str:
    """What the tuning stage evaluated on (``data.eval_split`` of its ``experiment.json``)."""
    path = ctx.results_dir(TUNING) / "experiment.json"
    base = json.loads(path.read_text(encoding="utf-8")).get("base", {}) if path.is_file() else {}
    return str(base.get("data.eval_split", "test"))


def _tables(ctx: FigureContext, best: list[dict], every: list[dict], tuned: bool) -> list:
    cols = ["method", "cell", *[f"{m}_{s}" for m in METRICS for s in ("mean", "lo", "hi")], "n"]
    md_cols = ["method", "cell", *[f"{m}_fmt" for m in METRICS], "n"]
    md_headers = ["method", "best cell", *[_HEADERS[m] for m in METRICS], "n"]
    edge_cols, edge_headers = [*md_cols, "edge"], [*md_headers, "on the grid's edge"]
    title = (
        f"Figure 9a ({ctx.scale} scale): each method at its best tuning cell"
        + (" (chosen on the separate tuning seeds)" if tuned else "")
        + ", the same budget of passes; mean ± 95% t-interval half-width across seeds"
    )
    every_title = f"Figure 9a ({ctx.scale} scale): every tuning cell of every method" + (
        " at the tuning seeds (the stage that chose each method's cell)" if tuned else ""
    )
    if tuned and _tuning_split(ctx) == "validation":
        every_title += (
            "; its accuracies are on held-out training images (data.eval_split = "
            "validation), not on the test set"
        )
    return [
        write_csv_table(best, [*cols, "edge"], ctx.out / "fig9a_table.csv"),
        write_markdown_table(
            best, edge_cols, ctx.out / "fig9a_table.md", title=title, headers=edge_headers
        ),
        write_csv_table(every, cols, ctx.out / "fig9a_cells_table.csv"),
        write_markdown_table(
            every,
            md_cols,
            ctx.out / "fig9a_cells_table.md",
            title=every_title,
            headers=md_headers,
        ),
    ]


def draw(ctx: FigureContext) -> FigureOutput:
    """Draw figure 9a, its tables and its claims into ``ctx.out``."""
    rows = enrich(ctx, "rel_compare", ctx.rows("rel_compare"))
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(14, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    best_rows: list[dict] = []
    present = _methods(rows)
    tuned = ctx.has(TUNING)
    every = _every_cell(enrich(ctx, TUNING, ctx.rows(TUNING)) if tuned else rows)
    for i, method in enumerate(present):
        groups = cells(rows, partial(_is_method, method))
        k = best_cell(groups, "best_test_acc", min_runs=1)
        if k is None:
            continue
        members = groups[k]
        colour = _COLOURS(i % 20)
        x, m, lo, hi, n = curve_by(ctx, "rel_compare", members, _passes)
        plot_curve(ax, x, m, lo, hi, color=colour, label=f"{method} (n={n})")
        summ = summarise(members, METRICS)
        best_rows.append(
            {
                "method": method,
                "cell": describe_cell(k),
                **summ,
                "edge": _edge(groups, k, tuned),
            }
        )
        for j, metric in enumerate(("best_test_acc", "final_test_acc")):
            mean = summ[f"{metric}_mean"]
            err = [[mean - summ[f"{metric}_lo"]], [summ[f"{metric}_hi"] - mean]]
            bx.errorbar(
                [mean],
                [i + 0.15 * j],
                xerr=np.nan_to_num(err),
                color=colour,
                marker="o" if j == 0 else "s",
                mfc=colour if j == 0 else "white",
                capsize=3,
                ms=5,
            )
    if not best_rows:
        plt.close(fig)
        raise NoDataError("figure 9a: no complete run of any method in rel_compare")
    ax.set_xlabel("minibatch passes (forward + backward; a forward-only pass counts as one)")
    ax.set_ylabel("test accuracy")
    ax.set_title("test accuracy against cost (each method at its best cell)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    edged = {r["method"] for r in best_rows if r["edge"]}
    labels = [f"{m} *" if m in edged else m for m in present]
    bx.set_yticks(range(len(present)), labels, fontsize=8)
    bx.invert_yaxis()
    bx.set_xlabel("test accuracy: best (filled) and final (open), 95% interval")
    bx.grid(alpha=0.3, axis="x")
    title = (
        "Figure 9a: every method at the same budget of passes, 2-layer FC net on "
        "Fashion-MNIST (mean and 95% t-band across seeds)"
        + ("; * its chosen cell is on the edge of its grid" if edged else "")
    )
    images, caption = finish_figure(fig, ctx, EXPERIMENTS, "fig9a", title=title)
    tables = _tables(ctx, best_rows, every, tuned)
    _, claim_files = write_figure_claims(ctx, FIGURE, EXPERIMENTS, ids=CLAIM_IDS)
    return FigureOutput(FIGURE, images, tables + claim_files, caption)
