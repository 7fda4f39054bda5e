"""Figure 9b: scoping as an alternative to initialisation (*Entropic alternatives to
initialization*): a 6-layer FC net on Fashion-MNIST started from PyTorch's default
initialisation, with and without a scoping schedule (PLA on every hidden layer, the
radius fading linearly to 0), against Kaiming's initialisation.

Training loss, test accuracy (train accuracy dotted) and a zoom on the last third
against the epoch, mean and 95 % band across seeds per arm; the table of best / final
accuracy per arm; the claims (the poor initialisation is poor, scoping helps it,
scoping replaces the good initialisation) with verdicts.

Reads the ``rel_scoping`` sweep; never trains.
"""

from __future__ import annotations

from typing import Any

from .common import FigureContext, FigureOutput, Variant, draw_curves, select
from .related_claims import RELATED_CLAIMS, write_figure_claims

__all__ = ["EXPERIMENTS", "draw", "FIGURE", "CLAIM_IDS", "variants"]

FIGURE = "9b"
EXPERIMENTS: tuple[str, ...] = ("rel_scoping",)
CLAIM_IDS: tuple[str, ...] = tuple(c[0] for c in RELATED_CLAIMS if c[3] == EXPERIMENTS)
_INIT_LABEL = {"kaiming": "Kaiming", "torch_default": "PyTorch default"}
#: colours: the good initialisation black, the poor one red, scoped runs of the poor one
#: in shades of blue (darker = stronger initial smoothing), scoped Kaiming grey
_SCOPED = ("#9ecae1", "#4292c6", "#08519c", "#08306b")


def variants(rows: list) -> list[Variant]:
    """One curve per arm present: each initialisation unsmoothed, then each scoped
    (initialisation, R) cell."""
    out = []
    for init, colour in (("kaiming", "k"), ("torch_default", "tab:red")):
        where: dict[str, Any] = {"model.init": init, "smoothing.layers": "none"}
        if select(rows, **where):
            out.append(Variant(f"{_INIT_LABEL.get(init, init)}, no smoothing", colour, where))
    scoped = sorted(
        {
            (str(r["model.init"]), str(r["smoothing.layers"]), float(r["smoothing.R"]))
            for r in rows
            if r.get("status") == "complete" and str(r.get("smoothing.layers")) != "none"
        },
        key=lambda t: (t[0] != "torch_default", t[2]),
    )
    for i, (init, layers, R) in enumerate(scoped):
        where = {"model.init": init, "smoothing.layers": layers, "smoothing.R": R}
        colour = _SCOPED[min(i, len(_SCOPED) - 1)] if init == "torch_default" else "0.55"
        out.append(
            Variant(
                f"{_INIT_LABEL.get(init, init)} + scoping (R {R:g} -> 0)",
                colour,
                where,
                ls="--" if init != "torch_default" else "-",
            )
        )
    return out


def draw(ctx: FigureContext) -> FigureOutput:
    """Draw figure 9b, its table and its claims into ``ctx.out``."""
    out = draw_curves(
        ctx,
        "rel_scoping",
        variants(ctx.rows("rel_scoping")),
        figure=FIGURE,
        title="scoping vs initialisation, 6-layer FC net on Fashion-MNIST",
    )
    _, files = write_figure_claims(ctx, FIGURE, EXPERIMENTS, ids=CLAIM_IDS)
    out.tables = [*out.tables, *files]
    return out
