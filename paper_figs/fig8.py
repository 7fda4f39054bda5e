"""Figure 8: training loss and test accuracy vs epoch of the light CNN (table 25)
on a small, heavily augmented training set, PLA (R = 0.01, y = 4) on FC layer I
or II, or none.  Mean and 95 % band across seeds; right panel: last third.

Reads the ``fig8`` sweep; never trains.
"""

from __future__ import annotations

from .common import FigureContext, FigureOutput, Variant, draw_curves

__all__ = ["EXPERIMENTS", "VARIANTS", "draw"]

EXPERIMENTS: tuple[str, ...] = ("fig8",)
VARIANTS = (
    Variant("no smoothing", "k", {"smoothing.layers": "none"}),
    Variant("I: PLA on fc1", (0.85, 0.1, 0.1), {"smoothing.layers": "fc1"}),
    Variant("II: PLA on fc2", (0.1, 0.6, 0.1), {"smoothing.layers": "fc2"}),
)


def draw(ctx: FigureContext) -> FigureOutput:
    """Draw figure 8 and its table into ``ctx.out``."""
    return draw_curves(
        ctx,
        "fig8",
        VARIANTS,
        figure="8",
        title="light CNN, small heavily augmented training set, PLA on FC layer I or II",
    )
