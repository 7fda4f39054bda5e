"""Figure 6: training loss and test accuracy vs epoch of the CNN with PLA (R = 0.01,
y = 4) on FC layer I (fc1) or II (fc2) of the head, or none (black); the extra
purple variant smooths the last convolution (section 5.1's claim that smoothing
convolutional layers hurts).  Mean and 95 % band across seeds; the right panel
zooms on the last third of the training.

Reads the ``fig6`` sweep; never trains.
"""

from __future__ import annotations

from .common import FigureContext, FigureOutput, Variant, draw_curves

__all__ = ["EXPERIMENTS", "VARIANTS", "draw"]

EXPERIMENTS: tuple[str, ...] = ("fig6",)
VARIANTS = (
    Variant("no smoothing", "k", {"smoothing.layers": "none", "optim.weight_decay": 0.0}),
    Variant("I: PLA on fc1", (0.85, 0.1, 0.1), {"smoothing.layers": "fc1"}),
    Variant("II: PLA on fc2", (0.1, 0.6, 0.1), {"smoothing.layers": "fc2"}),
    Variant("PLA on conv5", (0.55, 0.2, 0.7), {"smoothing.layers": "conv5"}, ls="-."),
)


def draw(ctx: FigureContext) -> FigureOutput:
    """Draw figure 6 and its table into ``ctx.out``."""
    return draw_curves(
        ctx,
        "fig6",
        VARIANTS,
        figure="6",
        title="CNN, PLA on FC layer I or II (R = 0.01, y = 4), or on conv5",
    )
