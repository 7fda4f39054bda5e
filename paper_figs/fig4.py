"""Figure 4: best test accuracy vs R.  Left: the 2-layer FC net on Fashion-MNIST
with PLEA (eq. 22) on fc1, fc2 or both.  Right: the 3-layer FC net on MNIST with
PLA on each of the 7 subsets of {fc1, fc2, fc3}, coloured by the paper's RGB
nomenclature (red = layer 1, green = 2, blue = 3, unions mixed).  Mean and 95 %
t-interval across seeds; unsmoothed runs as dashed line and grey band.

Reads the ``fig4_left`` and ``fig4_right`` sweeps; never trains.
"""

from __future__ import annotations

import matplotlib.pyplot as plt

from .common import (
    FigureContext,
    FigureOutput,
    baseline_band,
    finish_figure,
    plot_vs_R,
    select,
    vs_R_table,
    write_figure_table,
)
from .fig3 import HEADERS, label

__all__ = ["EXPERIMENTS", "draw"]

EXPERIMENTS: tuple[str, ...] = ("fig4_left", "fig4_right")


def draw(ctx: FigureContext) -> FigureOutput:
    """Draw figure 4 and its two tables into ``ctx.out``."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    titles = {
        "fig4_left": "2-layer FC, Fashion-MNIST, PLEA (eq. 22)",
        "fig4_right": "3-layer FC, MNIST, PLA on every layer subset",
    }
    tables = []
    for ax, exp in zip(axes, EXPERIMENTS, strict=True):
        rows = ctx.rows(exp)
        plot_vs_R(ax, rows, "best_test_acc", label=label, offset=0.015)
        baseline_band(ax, select(rows, **{"smoothing.layers": "none"}), "best_test_acc")
        ax.set_title(titles[exp], fontsize=10)
        ax.set_ylabel("best test accuracy")
        ax.legend(fontsize=7, ncol=2 if exp == "fig4_right" else 1)
        tables += write_figure_table(
            vs_R_table(rows, metrics=["best_test_acc", "final_test_acc"]),
            ctx.out,
            f"{exp}_table",
            keys=["smoothing.layers", "smoothing.R"],
            metrics=["best_test_acc", "final_test_acc"],
            headers=HEADERS,
            title=f"Figure 4 {exp.split('_')[1]} ({ctx.scale} scale, {titles[exp]}): test "
            "accuracy in %, mean ± 95% t-interval half-width across seeds",
        )
    title = "Figure 4: best test accuracy vs R (mean and 95% t-interval across seeds)"
    images, caption = finish_figure(fig, ctx, EXPERIMENTS, "fig4", title=title)
    return FigureOutput("4", images, tables, caption)
