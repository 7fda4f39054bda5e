"""Figure 9d: flatness and generalisation (*Entropic gradient descent algorithms and wide
flat minima*): every final model of the ``rel_flatness`` sweep (figure 3's sweep with the
end-of-run flatness measured; and of ``rel_compare`` when its sweep has run).

Left: final test accuracy against the whole-model local energy (the middle noise scale),
one point per model, coloured by smoothed layer subset.  Right: Kendall's tau-b of each
flatness measure (per layer and whole model; local energy per sigma, local free energy
above the minimum's own loss per R, :func:`paper_figs.related_data.flatness_columns`;
flatness = minus the measure) with the final test accuracy and with minus the
generalisation gap, and its 95 % seed-bootstrap interval.  The table lists every tau;
the claims (flatter generalises better, which layer predicts best) get verdicts.

Reads the ``rel_flatness`` sweep (and ``rel_compare``'s if present); never trains.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from .common import (
    FigureContext,
    FigureOutput,
    NoDataError,
    finish_figure,
    subset_color,
)
from .rank_correlation import bootstrap_tau
from .related_claims import BOOTSTRAP_SEED, RELATED_CLAIMS, write_figure_claims
from .related_data import SCOPE_MODEL, enrich, flat_column, flatness_keys
from .stats import CONFIDENCE, write_csv_table, write_markdown_table

__all__ = ["EXPERIMENTS", "draw", "FIGURE", "CLAIM_IDS", "tau_table"]

FIGURE = "9d"
EXPERIMENTS: tuple[str, ...] = ("rel_flatness",)
#: also drawn and checked when its sweep has run (its final models measured flatness too)
OPTIONAL: tuple[str, ...] = ("rel_compare",)
CLAIM_IDS: tuple[str, ...] = tuple(c[0] for c in RELATED_CLAIMS if "rel_flatness" in c[3])
#: the targets the flatness is ranked against: final test accuracy, minus the gap
_TARGETS: dict[str, Any] = {
    "test accuracy": lambda r: float(r["final_test_acc"]),
    "minus the gap": lambda r: -float(r["gap"]),
}


def tau_table(
    rows: Sequence[Mapping[str, Any]], *, experiment: str, n_boot: int | None = None
) -> list[dict[str, Any]]:
    """One row per (flatness measure, target): tau-b over the complete models and its
    95 % seed-bootstrap interval (flatness = minus the measure)."""
    done = [r for r in rows if r.get("status") == "complete"]
    seeds = [int(r["seed"]) for r in done]
    out: list[dict[str, Any]] = []
    if len(set(seeds)) < 2:
        return out
    for key in flatness_keys(done):
        x = [-float(r[flat_column(*key)]) for r in done]
        for target, y_of in _TARGETS.items():
            kw = {} if n_boot is None else {"n_boot": n_boot}
            b = bootstrap_tau(
                x,
                [y_of(r) for r in done],
                seeds,
                alpha=1 - CONFIDENCE,
                rng=np.random.default_rng(BOOTSTRAP_SEED),
                **kw,
            )
            out.append(
                {
                    "experiment": experiment,
                    "scope": key[1],
                    "measure": key[0],
                    "param": key[2],
                    "target": target,
                    "tau": b.tau,
                    "lo": b.lo,
                    "hi": b.hi,
                    "tau_fmt": f"{b.tau:+.3f} [{b.lo:+.3f}, {b.hi:+.3f}]",
                    "n": b.n,
                    "seeds": b.n_seeds,
                }
            )
    return out


def _scatter(ax: plt.Axes, rows: Sequence[Mapping[str, Any]]) -> None:
    done = [r for r in rows if r.get("status") == "complete"]
    whole = [k for k in flatness_keys(done) if k[1] == SCOPE_MODEL and k[0] == "local_energy"]
    if not whole:
        return
    key = whole[len(whole) // 2]
    for subset in sorted({str(r.get("smoothing.layers")) for r in done}):
        sel = [r for r in done if str(r.get("smoothing.layers")) == subset]
        ax.scatter(
            [float(r[flat_column(*key)]) for r in sel],
            [float(r["final_test_acc"]) for r in sel],
            color=subset_color(subset),
            s=14,
            label=subset,
        )
    ax.set_xscale("symlog", linthresh=1e-3)
    ax.set_xlabel(f"whole-model local energy at sigma = {key[2]:g} (sharper to the right)")
    ax.set_ylabel("final test accuracy")
    ax.legend(fontsize=8, title="smoothed layers", title_fontsize=8)
    ax.grid(alpha=0.3)


def draw(ctx: FigureContext) -> FigureOutput:
    """Draw figure 9d, its table and its claims into ``ctx.out``."""
    experiments = [*EXPERIMENTS, *(e for e in OPTIONAL if ctx.has(e))]
    data = {e: enrich(ctx, e, ctx.rows(e)) for e in experiments}
    table = [t for e in experiments for t in tau_table(data[e], experiment=e)]
    if not table:
        raise NoDataError(
            "figure 9d: no flatness in the summaries of rel_flatness (logging.flatness) "
            "or fewer than 2 seeds"
        )
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(14, 4.8), gridspec_kw={"width_ratios": [2, 3]})
    _scatter(ax, data["rel_flatness"])
    main = [t for t in table if t["experiment"] == "rel_flatness"]
    labels = list(dict.fromkeys(f"{t['scope']}: {t['measure']} {t['param']:g}" for t in main))
    for j, (target, marker) in enumerate(zip(_TARGETS, ("o", "s"), strict=True)):
        sel = [t for t in main if t["target"] == target]
        y = np.arange(len(sel)) + 0.2 * j
        bx.errorbar(
            [t["tau"] for t in sel],
            y,
            xerr=np.nan_to_num(
                [[t["tau"] - t["lo"] for t in sel], [t["hi"] - t["tau"] for t in sel]]
            ),
            fmt=marker,
            capsize=3,
            ms=4,
            label=f"tau(flatness, {target})",
        )
    bx.set_yticks(range(len(labels)), labels, fontsize=7)
    bx.invert_yaxis()
    bx.axvline(0.0, color="k", lw=0.8)
    bx.set_xlabel("Kendall tau-b, 95% seed-bootstrap interval (flatness = minus the measure)")
    bx.legend(fontsize=8)
    bx.grid(alpha=0.3, axis="x")
    title = (
        "Figure 9d: flatness of the final models and their generalisation, 2-layer FC net "
        "on Fashion-MNIST"
    )
    images, caption = finish_figure(fig, ctx, experiments, "fig9d", title=title)
    cols = ["experiment", "scope", "measure", "param", "target", "tau", "lo", "hi", "n", "seeds"]
    tables = [
        write_csv_table(table, cols, ctx.out / "fig9d_table.csv"),
        write_markdown_table(
            table,
            ["experiment", "scope", "measure", "param", "target", "tau_fmt", "n", "seeds"],
            ctx.out / "fig9d_table.md",
            title=f"Figure 9d ({ctx.scale} scale): Kendall tau-b [95% seed-bootstrap interval] "
            "of flatness (minus the measure) with the final test accuracy and minus the gap",
            headers=[
                "experiment",
                "scope",
                "measure",
                "param",
                "target",
                "tau [95%]",
                "n",
                "seeds",
            ],
        ),
    ]
    _, files = write_figure_claims(ctx, FIGURE, experiments, ids=CLAIM_IDS)
    return FigureOutput(FIGURE, images, tables + files, caption)
