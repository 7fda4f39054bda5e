"""Figure 7: figure 6's CNN with weight decay 1e-2, 1e-3, 1e-4 (yellow, darker to
lighter) and no smoothing, next to the unregularised (black) and PLA runs (red:
fc1, green: fc2).  Mean and 95 % band across seeds; right panel: last third.

Reads the ``fig7`` sweep (its unregularised and PLA runs are figure 6's); never trains.
"""

from __future__ import annotations

from .common import FigureContext, FigureOutput, Variant, draw_curves

__all__ = ["EXPERIMENTS", "VARIANTS", "draw"]

EXPERIMENTS: tuple[str, ...] = ("fig7",)
VARIANTS = (
    Variant("no regularisation", "k", {"smoothing.layers": "none", "optim.weight_decay": 0.0}),
    Variant("I: PLA on fc1", (0.85, 0.1, 0.1), {"smoothing.layers": "fc1"}),
    Variant("II: PLA on fc2", (0.1, 0.6, 0.1), {"smoothing.layers": "fc2"}),
    Variant(
        "weight decay 1e-2",
        (0.6, 0.45, 0.0),
        {"smoothing.layers": "none", "optim.weight_decay": 1e-2},
        ls="--",
    ),
    Variant(
        "weight decay 1e-3",
        (0.85, 0.7, 0.0),
        {"smoothing.layers": "none", "optim.weight_decay": 1e-3},
        ls="--",
    ),
    Variant(
        "weight decay 1e-4",
        (0.95, 0.85, 0.3),
        {"smoothing.layers": "none", "optim.weight_decay": 1e-4},
        ls="--",
    ),
)


def draw(ctx: FigureContext) -> FigureOutput:
    """Draw figure 7 and its table into ``ctx.out``."""
    return draw_curves(
        ctx, "fig7", VARIANTS, figure="7", title="CNN, weight decay vs PLA on FC layer I or II"
    )
