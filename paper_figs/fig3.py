"""Figure 3: best (left) and final (right) test accuracy vs R of the 2-layer FC net
on Fashion-MNIST with PLA (eq. 23) on fc1, fc2 or both; the unsmoothed runs are the
dashed line and grey band.  Mean and 95 % t-interval across seeds.

Reads the ``fig3`` sweep; never trains.
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

__all__ = ["EXPERIMENTS", "draw", "LABELS"]

EXPERIMENTS: tuple[str, ...] = ("fig3",)
LABELS = {
    "fc1": "layer 1",
    "fc2": "layer 2",
    "fc1+fc2": "both (isotropic)",
    "fc3": "layer 3",
    "fc1+fc3": "layers 1+3",
    "fc2+fc3": "layers 2+3",
    "fc1+fc2+fc3": "all (isotropic)",
}
HEADERS = {
    "smoothing.layers": "smoothed layers",
    "smoothing.R": "R",
    "smoothing.y": "y",
    "best_test_acc": "best test acc",
    "final_test_acc": "final test acc",
}


def label(subset: str) -> str:
    return f"{subset}: {LABELS.get(subset, subset)}"


def draw(ctx: FigureContext) -> FigureOutput:
    """Draw figure 3 and its table into ``ctx.out``."""
    rows = ctx.rows("fig3")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, metric, name in zip(
        axes, ("best_test_acc", "final_test_acc"), ("best", "final"), strict=True
    ):
        plot_vs_R(ax, rows, metric, label=label, offset=0.02)
        baseline_band(ax, select(rows, **{"smoothing.layers": "none"}), metric)
        ax.set_title(f"{name} test accuracy (PLA, y = 4)")
        ax.set_ylabel("test accuracy")
    axes[0].legend(fontsize=8)
    title = (
        "Figure 3: 2-layer FC net on Fashion-MNIST, PLA on layer 1, 2 or both "
        "(mean and 95% t-interval across seeds)"
    )
    images, caption = finish_figure(fig, ctx, EXPERIMENTS, "fig3", title=title)
    table = vs_R_table(rows, metrics=["best_test_acc", "final_test_acc"])
    tables = write_figure_table(
        table,
        ctx.out,
        "fig3_table",
        keys=["smoothing.layers", "smoothing.R"],
        metrics=["best_test_acc", "final_test_acc"],
        headers=HEADERS,
        title=f"Figure 3 ({ctx.scale} scale): test accuracy in %, mean ± 95% t-interval "
        "half-width across seeds",
    )
    return FigureOutput("3", images, tables, caption)
