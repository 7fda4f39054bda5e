"""Figure 5: finer sampling.  Best test accuracy vs R of figure 3's setting with
y = 4 (darker, solid) and y = 8 (lighter, dashed) perturbed samples per step.
Mean and 95 % t-interval across seeds; unsmoothed runs as dashed line and band.

Reads the ``fig5`` sweep (its y = 4 runs are figure 3's); never trains.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .common import (
    FigureContext,
    FigureOutput,
    baseline_band,
    finish_figure,
    plot_vs_R,
    select,
    subset_color,
    subsets_of,
    vs_R_table,
    write_figure_table,
)
from .fig3 import HEADERS, label

__all__ = ["EXPERIMENTS", "draw"]

EXPERIMENTS: tuple[str, ...] = ("fig5",)


def draw(ctx: FigureContext) -> FigureOutput:
    """Draw figure 5 and its table into ``ctx.out``."""
    rows = ctx.rows("fig5")
    subsets = subsets_of(rows)
    fig, axes = plt.subplots(
        1, len(subsets), figsize=(5.5 * len(subsets), 4.2), squeeze=False, sharey=True
    )
    for ax, subset in zip(axes[0], subsets, strict=True):
        sub = select(rows, **{"smoothing.layers": subset})
        base = np.array(subset_color(subset))

        def color(y, base=base):
            return tuple(base) if y == 4 else tuple(base + (1 - base) * 0.5)

        plot_vs_R(
            ax,
            sub,
            "best_test_acc",
            group="smoothing.y",
            color=color,
            label=lambda y: f"y = {y}",
            style=lambda y: {"ls": "-" if y == 4 else "--"},
            offset=0.015,
        )
        baseline_band(ax, select(rows, **{"smoothing.layers": "none"}), "best_test_acc")
        ax.set_title(f"PLA on {label(subset)}", fontsize=10)
        ax.set_ylabel("best test accuracy")
        ax.legend(fontsize=8)
    title = (
        "Figure 5: y = 4 vs y = 8 samples per step, 2-layer FC net on Fashion-MNIST "
        "(mean and 95% t-interval across seeds)"
    )
    images, caption = finish_figure(fig, ctx, EXPERIMENTS, "fig5", title=title)
    table = vs_R_table(
        rows,
        metrics=["best_test_acc", "final_test_acc"],
        by=("smoothing.layers", "smoothing.y", "smoothing.R"),
    )
    for r in table:
        if r["smoothing.layers"] == "none":
            r["smoothing.y"] = None
    tables = write_figure_table(
        table,
        ctx.out,
        "fig5_table",
        keys=["smoothing.layers", "smoothing.y", "smoothing.R"],
        metrics=["best_test_acc", "final_test_acc"],
        headers=HEADERS,
        title=f"Figure 5 ({ctx.scale} scale): test accuracy in %, mean ± 95% t-interval "
        "half-width across seeds",
    )
    return FigureOutput("5", images, tables, caption)
