"""Forest plot of the claims: every claim's effect with its intervals against the
margin band of "negligible" (``claims_forest.png`` / ``.pdf`` next to ``claims.md``).

One row per (claim, experiment): the difference the verdict read (in pp,
oriented so that the claim says "positive" for a directional claim and
"below +margin" for a "no better" claim), the decision interval as a thick bar
(Bonferroni- and look-adjusted: the one the verdict read), the 95 % interval of
the test used (paired or Welch) as a thin bar, and the band ``+-MARGIN``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from .claim_rules import ClaimResult
from .common import save_figure
from .verdicts import MARGIN

__all__ = ["VERDICT_COLORS", "forest_rows", "draw_forest"]

#: marker colour of each outcome
VERDICT_COLORS: dict[str, str] = {
    "holds": "tab:green",
    "does not hold": "tab:red",
    "negligible": "tab:blue",
    "inconclusive": "tab:gray",
    "not run": "lightgray",
}
#: inches of figure height per claim row (a 23-row plot is ~8 inches tall)
_ROW_IN = 0.32


def forest_rows(results: Sequence[ClaimResult]) -> list[dict]:
    """Plot rows in pp: label, verdict, diff, decision ``lo``/``hi`` and the 95 %
    ``lo95``/``hi95`` of the test used (NaN where absent); a comparison reported
    in the reverse orientation (the edge of the R grid against an inner R) is
    negated so that positive always points the claim's way."""
    out = []
    for r in results:
        nb = r.numbers
        sign = -1.0 if nb.get("orientation") == "reversed" else 1.0
        test = nb.get("paired" if nb.get("test") == "paired" else "welch") or {}

        def pp(key: str, src: dict = nb, sign: float = sign) -> float:
            v = src.get(key)
            return 100 * sign * float(v) if isinstance(v, (int, float)) else math.nan

        lo, hi = sorted((pp("lo"), pp("hi"))) if "lo" in nb else (math.nan, math.nan)
        lo95, hi95 = sorted((pp("lo", test), pp("hi", test))) if test else (math.nan, math.nan)
        out.append(
            {
                "label": f"{r.id} ({r.experiment})",
                "verdict": r.verdict,
                "diff": pp("diff"),
                "lo": lo,
                "hi": hi,
                "lo95": lo95,
                "hi95": hi95,
                "kind": nb.get("kind", ""),
            }
        )
    return out


def draw_forest(
    results: Sequence[ClaimResult], out: str | Path, *, stem: str = "claims_forest", title: str = ""
) -> list[Path]:
    """Draw the forest plot of ``results`` into ``out`` (PNG + PDF); returns the paths."""
    rows = forest_rows(results)
    fig, ax = plt.subplots(figsize=(8.5, 1.2 + _ROW_IN * max(len(rows), 1)))
    ax.axvspan(
        -100 * MARGIN,
        100 * MARGIN,
        color="tab:blue",
        alpha=0.12,
        lw=0,
        label=f"negligible: |difference| < {100 * MARGIN:g} pp",
    )
    ax.axvline(0.0, color="k", lw=0.8)
    for i, r in enumerate(rows):
        y = len(rows) - 1 - i
        color = VERDICT_COLORS.get(r["verdict"], "k")
        if math.isfinite(r["lo95"]):
            ax.plot([r["lo95"], r["hi95"]], [y, y], color=color, lw=1.0)
        if math.isfinite(r["lo"]) and math.isfinite(r["hi"]):
            ax.plot(
                [r["lo"], r["hi"]], [y, y], color=color, lw=3.5, alpha=0.6, solid_capstyle="butt"
            )
        if math.isfinite(r["diff"]):
            ax.plot(
                [r["diff"]],
                [y],
                "o",
                color=color,
                ms=5,
                mfc="white" if r["kind"] == "no better" else color,
            )
        else:
            ax.text(0.0, y, r["verdict"], ha="center", va="center", fontsize=7, color="gray")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{r['label']}: {r['verdict']}" for r in reversed(rows)], fontsize=7)
    ax.set_xlabel(
        "difference of test accuracy (pp), claim's direction positive; thick: "
        "decision interval, thin: 95% interval; open marker: 'no better' claim",
        fontsize=7,
    )
    ax.set_ylim(-0.8, len(rows) - 0.2)
    # x range from the point estimates and 95 % intervals (a decision interval of an
    # early sequential look can be ten times wider; it is clipped at the frame)
    ends = [abs(v) for r in rows for v in (r["diff"], r["lo95"], r["hi95"]) if math.isfinite(v)]
    x = 1.1 * max([3 * 100 * MARGIN, *ends])
    ax.set_xlim(-x, x)
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    if title:
        ax.set_title(title, fontsize=9, loc="left")
    ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, Path(out), stem)
