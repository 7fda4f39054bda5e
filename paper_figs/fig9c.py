"""Figure 9c: entropy guidance (*Entropy-based guidance*): the 2-layer FC net on
Fashion-MNIST trained with and without the dense guidance term ``L_dense``.

Left: test accuracy against the epoch per guidance weight (mean and 95 % band across
seeds) with the target accuracy of the convergence claim.  Middle: epochs to that target
per weight (mean and 95 % interval; a run that never reaches it counts as its epochs + 1).
Right: the per-coordinate entropy change ``h_k`` of each guided layer at the end of the
run (the log's ``guidance.h``), against its target.  The table: epochs to target, best
and final test accuracy per weight; the claims (fewer epochs, better final accuracy)
with verdicts.

Reads the ``rel_guidance`` sweep; never trains.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from .common import FigureContext, FigureOutput, NoDataError, finish_figure, plot_curve
from .related_claims import (
    RELATED_CLAIMS,
    NotRun,
    epochs_to,
    guidance_target,
    write_figure_claims,
)
from .related_data import curve_by, enrich, summarise
from .stats import write_csv_table, write_markdown_table

__all__ = ["EXPERIMENTS", "draw", "FIGURE", "CLAIM_IDS"]

FIGURE = "9c"
EXPERIMENTS: tuple[str, ...] = ("rel_guidance",)
CLAIM_IDS: tuple[str, ...] = tuple(c[0] for c in RELATED_CLAIMS if c[3] == EXPERIMENTS)
_WEIGHT = "guidance.dense_weight"
_METRICS = ("epochs_to", "best_test_acc", "final_test_acc")
#: markers of the guided layers in the entropy-change panel, in layer-name order
_MARKERS = ("o", "^", "s", "D", "v")


def _final_h(ctx: FigureContext, row: dict[str, Any]) -> dict[str, float]:
    """``guidance.h`` of the last log line that has it (``{}`` for an unguided run)."""
    for rec in reversed(ctx.log("rel_guidance", row)):
        h = (rec.get("guidance") or {}).get("h")
        if h:
            return {str(k): float(v) for k, v in h.items()}
    return {}


def draw(ctx: FigureContext) -> FigureOutput:
    """Draw figure 9c, its table and its claims into ``ctx.out``."""
    rows = [
        r
        for r in enrich(ctx, "rel_guidance", ctx.rows("rel_guidance"))
        if r.get("status") == "complete"
    ]
    try:
        target: float | None = guidance_target(rows)
    except NotRun:
        target = None
    weights = sorted({float(r.get(_WEIGHT) or 0.0) for r in rows})
    if not weights:
        raise NoDataError("figure 9c: no complete run in rel_guidance")
    cmap = plt.get_cmap("viridis")
    fig, (ax, bx, cx) = plt.subplots(1, 3, figsize=(15, 4.3))
    table = []
    for i, w in enumerate(weights):
        members = [r for r in rows if float(r.get(_WEIGHT) or 0.0) == w]
        colour = "k" if w == 0 else cmap(0.15 + 0.7 * i / max(len(weights) - 1, 1))
        label = "no guidance" if w == 0 else f"L_dense weight {w:g}"
        x, m, lo, hi, n = curve_by(ctx, "rel_guidance", members, lambda rec: rec.get("epoch"))
        plot_curve(ax, x, m, lo, hi, color=colour, label=f"{label} (n={n})")
        if target is not None:
            for r in members:
                r["epochs_to"] = epochs_to(r, target)
        summ = summarise(members, _METRICS)
        hs = [_final_h(ctx, r) for r in members]
        for j, layer in enumerate(sorted({k for h in hs for k in h})):
            vals = [h[layer] for h in hs if layer in h]
            summ[f"h_{layer}"] = f"{np.mean(vals):+.4f}"
            marker = _MARKERS[j % len(_MARKERS)]
            cx.scatter([i] * len(vals), vals, color=colour, s=14, marker=marker)
        table.append({"weight": w, **summ})
        if "epochs_to_mean" in summ:
            e = summ["epochs_to_mean"]
            err = [[e - summ["epochs_to_lo"]], [summ["epochs_to_hi"] - e]]
            bx.errorbar([i], [e], yerr=np.nan_to_num(err), color=colour, marker="o", capsize=3)
    if target is not None:
        ax.axhline(target, color="tab:red", ls=":", lw=1, label=f"target {100 * target:.2f} %")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    names = ["none" if w == 0 else f"{w:g}" for w in weights]
    for b, what in (
        (bx, "epochs to the target accuracy"),
        (cx, "h_k at the end (o, ^, s: guided layers in name order)"),
    ):
        b.set_xticks(range(len(weights)), names)
        b.set_xlabel("L_dense weight")
        b.set_ylabel(what)
        b.grid(alpha=0.3)
    cx.axhline(0.0, color="tab:red", ls=":", lw=1)
    title = (
        "Figure 9c: entropy guidance, 2-layer FC net on Fashion-MNIST (mean and 95% "
        "t-intervals across seeds)"
    )
    images, caption = finish_figure(fig, ctx, EXPERIMENTS, "fig9c", title=title)
    h_cols = sorted({k for r in table for k in r if k.startswith("h_")})
    present = [m for m in _METRICS if any(f"{m}_fmt" in r for r in table)]
    cols = ["weight", *[f"{m}_{s}" for m in present for s in ("mean", "lo", "hi")], *h_cols, "n"]
    heads = {
        "epochs_to": "epochs to target",
        "best_test_acc": "best test acc (%)",
        "final_test_acc": "final test acc (%)",
    }
    title = f"Figure 9c ({ctx.scale} scale): mean ± 95% t-interval half-width across seeds" + (
        f"; target test accuracy {100 * target:.2f} %" if target is not None else ""
    )
    tables = [
        write_csv_table(table, cols, ctx.out / "fig9c_table.csv"),
        write_markdown_table(
            table,
            ["weight", *[f"{m}_fmt" for m in present], *h_cols, "n"],
            ctx.out / "fig9c_table.md",
            title=title,
            headers=["L_dense weight", *[heads[m] for m in present], *h_cols, "n"],
        ),
    ]
    _, files = write_figure_claims(ctx, FIGURE, EXPERIMENTS, ids=CLAIM_IDS)
    return FigureOutput(FIGURE, images, tables + files, caption)
