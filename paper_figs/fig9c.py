"""Figure 9c: entropy guidance (*Entropy-based guidance*): networks trained with and
without the guidance terms ``L_dense`` and ``L_conv``.

Top row, the classifier (``rel_guidance``: the 2-layer FC net on Fashion-MNIST).  Left:
test accuracy against the epoch per guidance weight (mean and 95 % band across seeds)
with the target accuracy of the convergence claim.  Middle: epochs to that target per
weight (mean and 95 % interval; a run that never reaches it counts as its epochs + 1).
Right: the entropy change ``h_k`` of each guided layer (per coordinate for ``L_dense``,
per channel for ``L_conv``) at the end of the run (the log's ``guidance.h``; an unguided
run that names its layers: the final profile of its ``summary.json``), against its target.

Next row, the CNN with ``L_conv`` (``rel_guidance_cnn``: table 25's CNN with valid
convolutions, drawn when that sweep has complete runs): the same three panels, the
weight of ``L_conv`` in place of ``L_dense``'s.

Bottom row, the autoencoder (``rel_guidance_ae``: the reconstruction objective, drawn
when that sweep has complete runs): the same three panels with the test reconstruction
loss (mean squared error) in place of the accuracy, and the target test loss of
:func:`paper_figs.related_claims.guidance_loss_target`.

The CNN's and the autoencoder's targets are the entropy profile of trained networks,
measured by a profile sweep (``rel_guidance_cnn_profile``, ``rel_guidance_ae_profile``:
unguided runs at seeds of their own, whose ``summary.json`` holds the final entropy
profile).  When it has run, its mean and 95 % interval per layer are drawn as grey
bands in the arm's ``h_k`` panel and tabled beside the targets (``fig9c_cnn_profile``,
``fig9c_ae_profile``): the measurement the targets are read from.

The tables: epochs to target, best and final test accuracy per weight
(``fig9c_table``, ``fig9c_cnn_table``), and epochs to the target loss, best and final
test loss per weight (``fig9c_ae_table``); the claims (fewer epochs, better final
accuracy, lower final loss) with verdicts.

Reads the ``rel_guidance`` sweep and, when they have runs, the other four; never trains.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from experiments.results import read_summary

from .common import FigureContext, FigureOutput, NoDataError, finish_figure, plot_curve
from .related_claims import (
    RELATED_CLAIMS,
    NotRun,
    epochs_to,
    epochs_to_loss,
    guidance_loss_target,
    guidance_target,
    write_figure_claims,
)
from .related_data import curve_by, enrich, summarise
from .stats import t_interval, write_csv_table, write_markdown_table, write_table

__all__ = ["EXPERIMENTS", "draw", "FIGURE", "CLAIM_IDS"]

FIGURE = "9c"
#: the classifier's sweep (required), the CNN's and the autoencoder's (drawn when they
#: have runs) and their unguided profiles, whose means set their targets (tabled when
#: they have runs)
EXPERIMENTS: tuple[str, ...] = (
    "rel_guidance",
    "rel_guidance_cnn",
    "rel_guidance_cnn_profile",
    "rel_guidance_ae",
    "rel_guidance_ae_profile",
)
CLAIM_IDS: tuple[str, ...] = tuple(c[0] for c in RELATED_CLAIMS if set(c[3]) <= set(EXPERIMENTS))
#: markers of the guided layers in the entropy-change panel, in layer-name order
_MARKERS = ("o", "^", "s", "D", "v")


@dataclass(frozen=True)
class _Arm:
    """What one row of panels draws: the experiment, the metric of its curves and claims,
    and how its target and epochs-to-target are computed."""

    experiment: str
    #: the results column of its guidance weight, the term's name and the unit of its h_k
    weight: str
    term: str
    h_unit: str
    metric: str
    ylabel: str
    target_of: Callable[[Sequence[Mapping[str, Any]]], float]
    time_of: Callable[[Mapping[str, Any], float], float]
    target_label: Callable[[float], str]
    metrics: tuple[str, ...]
    headers: dict[str, str]
    stem: str
    what: str
    #: the title of its table, and the target in words (in the title)
    table_title: str
    table_target: Callable[[float], str]
    #: the unguided sweep whose final profile sets the targets (None: fixed targets)
    profile: str | None = None


_CLASSIFIER = _Arm(
    experiment="rel_guidance",
    weight="guidance.dense_weight",
    term="L_dense",
    h_unit="nats per coordinate",
    metric="test_acc",
    ylabel="test accuracy",
    target_of=guidance_target,
    time_of=epochs_to,
    target_label=lambda t: f"target {100 * t:.2f} %",
    metrics=("epochs_to", "best_test_acc", "final_test_acc"),
    headers={
        "epochs_to": "epochs to target",
        "best_test_acc": "best test acc (%)",
        "final_test_acc": "final test acc (%)",
    },
    stem="fig9c_table",
    what="2-layer FC net",
    table_title="Figure 9c",
    table_target=lambda t: f"target test accuracy {100 * t:.2f} %",
)
#: the CNN's row: the classifier's (accuracy, its target and table columns) with its own
#: experiment, term and files
_CNN = dataclasses.replace(
    _CLASSIFIER,
    experiment="rel_guidance_cnn",
    weight="guidance.conv_weight",
    term="L_conv",
    h_unit="nats per channel",
    stem="fig9c_cnn_table",
    what="CNN (table 25, valid convolutions), L_conv",
    table_title="Figure 9c, CNN with L_conv",
    profile="rel_guidance_cnn_profile",
)
_AUTOENCODER = _Arm(
    experiment="rel_guidance_ae",
    weight="guidance.dense_weight",
    term="L_dense",
    h_unit="nats per coordinate",
    metric="test_loss",
    ylabel="test reconstruction loss (MSE)",
    target_of=guidance_loss_target,
    time_of=epochs_to_loss,
    target_label=lambda t: f"target loss {t:.4g}",
    metrics=("epochs_to", "best_test_loss", "final_test_loss"),
    headers={
        "epochs_to": "epochs to target loss",
        "best_test_loss": "best test loss",
        "final_test_loss": "final test loss",
    },
    stem="fig9c_ae_table",
    what="autoencoder",
    table_title="Figure 9c, autoencoder",
    table_target=lambda t: f"target test loss {t:.4g}",
    profile="rel_guidance_ae_profile",
)
#: the rows of the figure, top to bottom (the first is required)
_ARMS: tuple[_Arm, ...] = (_CLASSIFIER, _CNN, _AUTOENCODER)
#: the rows' names in the figure's title
_ROW_NAMES = {
    _CLASSIFIER.experiment: "2-layer FC net",
    _CNN.experiment: "CNN (L_conv)",
    _AUTOENCODER.experiment: "autoencoder",
}


def _final_h(ctx: FigureContext, experiment: str, row: dict[str, Any]) -> dict[str, float]:
    """``guidance.h`` of the last log line that has it; for an unguided run that names its
    layers, the final profile of its ``summary.json`` (``"entropy"``, a singular layer
    left out); else ``{}``."""
    for rec in reversed(ctx.log(experiment, row)):
        h = (rec.get("guidance") or {}).get("h")
        if h:
            return {str(k): float(v) for k, v in h.items()}
    entropy = (read_summary(ctx.run_path(experiment, row)) or {}).get("entropy") or {}
    return {str(k): float(v) for k, v in entropy.items() if v is not None}


def _h_targets(ctx: FigureContext, arm: _Arm, rows: Sequence[Mapping[str, Any]]) -> Any:
    """``guidance.target`` of the first guided run (its ``summary.json`` configuration):
    one number or a table layer -> number (a layer missing from it: 0); ``None`` when
    no run is guided."""
    for r in rows:
        if float(r.get(arm.weight) or 0.0) > 0:
            config = (read_summary(ctx.run_path(arm.experiment, r)) or {}).get("config") or {}
            return (config.get("guidance") or {}).get("target", 0.0)
    return None


def _profile(ctx: FigureContext, profile: str, targets: Any) -> list[dict[str, Any]]:
    """Per layer: the final ``h_k`` of the complete runs of the profile sweep ``profile``
    (``summary.json``'s ``"entropy"``), mean and 95 % t-interval across seeds, beside the
    layer's target."""
    values: dict[str, list[float]] = {}
    for r in _complete(ctx, profile):
        entropy = (read_summary(ctx.run_path(profile, r)) or {}).get("entropy") or {}
        for layer, h in entropy.items():
            if h is not None:
                values.setdefault(str(layer), []).append(float(h))
    table = []
    for layer, vals in values.items():
        iv = t_interval(vals)
        target = targets.get(layer, 0.0) if isinstance(targets, Mapping) else targets
        table.append(
            {
                "layer": layer,
                "mean": iv.mean,
                "lo": iv.lo,
                "hi": iv.hi,
                "sd": float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan"),
                "n": iv.n,
                "target": "" if target is None else float(target),
            }
        )
    return table


def _write_profile(ctx: FigureContext, arm: _Arm, table: list[dict[str, Any]]) -> list[Path]:
    cols = ["layer", "mean", "lo", "hi", "sd", "n", "target"]
    title = (
        f"{arm.table_title} ({ctx.scale} scale): the final entropy profile h_k ({arm.h_unit}) "
        f"of the unguided runs of {arm.profile} (seeds of their own): mean, "
        "95% t-interval and standard deviation across seeds, beside the guidance target"
    )
    formats = {c: ".4f" for c in ("mean", "lo", "hi", "sd", "target")}
    stem = arm.stem.replace("_table", "_profile")
    return list(write_table(table, cols, ctx.out / stem, title=title, formats=formats))


def _complete(ctx: FigureContext, experiment: str) -> list[dict[str, Any]]:
    return [
        r for r in enrich(ctx, experiment, ctx.rows(experiment)) if r.get("status") == "complete"
    ]


def _draw_arm(
    ctx: FigureContext, arm: _Arm, rows: list[dict[str, Any]], axes: Sequence[Any]
) -> tuple[list[dict[str, Any]], float | None]:
    """Draw one row of panels; the table rows (one per weight) and the target."""
    ax, bx, cx = axes
    try:
        target: float | None = arm.target_of(rows)
    except NotRun:
        target = None
    weights = sorted({float(r.get(arm.weight) or 0.0) for r in rows})
    cmap = plt.get_cmap("viridis")
    table = []
    layers_seen: list[str] = []
    for i, w in enumerate(weights):
        members = [r for r in rows if float(r.get(arm.weight) or 0.0) == w]
        colour = "k" if w == 0 else cmap(0.15 + 0.7 * i / max(len(weights) - 1, 1))
        label = "no guidance" if w == 0 else f"{arm.term} weight {w:g}"
        x, m, lo, hi, n = curve_by(
            ctx, arm.experiment, members, lambda rec: rec.get("epoch"), metric=arm.metric
        )
        plot_curve(ax, x, m, lo, hi, color=colour, label=f"{label} (n={n})")
        if target is not None:
            for r in members:
                r["epochs_to"] = arm.time_of(r, target)
        summ = summarise(members, arm.metrics)
        hs = [_final_h(ctx, arm.experiment, r) for r in members]
        for j, layer in enumerate(sorted({k for h in hs for k in h})):
            vals = [h[layer] for h in hs if layer in h]
            summ[f"h_{layer}"] = f"{np.mean(vals):+.4f}"
            marker = _MARKERS[j % len(_MARKERS)]
            cx.scatter([i] * len(vals), vals, color=colour, s=14, marker=marker)
            if layer not in layers_seen:
                layers_seen.append(layer)
        table.append({"weight": w, **summ})
        if "epochs_to_mean" in summ:
            e = summ["epochs_to_mean"]
            err = [[e - summ["epochs_to_lo"]], [summ["epochs_to_hi"] - e]]
            bx.errorbar([i], [e], yerr=np.nan_to_num(err), color=colour, marker="o", capsize=3)
    if target is not None:
        ax.axhline(target, color="tab:red", ls=":", lw=1, label=arm.target_label(target))
    ax.set_xlabel("epoch")
    ax.set_ylabel(arm.ylabel)
    ax.set_title(arm.what, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    names = ["none" if w == 0 else f"{w:g}" for w in weights]
    shapes = ", ".join(
        f"{_MARKERS[j % len(_MARKERS)]}: {layer}" for j, layer in enumerate(sorted(layers_seen))
    )
    for b, what in (
        (bx, "epochs to the target"),
        (cx, f"h_k at the end ({shapes or 'guided layers'})"),
    ):
        b.set_xticks(range(len(weights)), names)
        b.set_xlabel(f"{arm.term} weight")
        b.set_ylabel(what, fontsize=9)
        b.grid(alpha=0.3)
    h_target = _h_targets(ctx, arm, rows)
    if isinstance(h_target, Mapping):  # one target per layer: a labelled line each
        for layer in sorted(layers_seen):
            if layer in h_target:
                cx.axhline(float(h_target[layer]), color="tab:red", ls=":", lw=1)
                cx.text(
                    0.99,
                    float(h_target[layer]),
                    f"target {layer}",
                    transform=cx.get_yaxis_transform(),
                    fontsize=7,
                    color="tab:red",
                    ha="right",
                    va="bottom",
                )
    elif h_target is not None:
        cx.axhline(float(h_target), color="tab:red", ls=":", lw=1)
    return table, target


def _write_tables(
    ctx: FigureContext, arm: _Arm, table: list[dict[str, Any]], target: float | None
) -> list[Path]:
    """The CSV and Markdown tables of one arm (``<stem>.csv``, ``<stem>.md``)."""
    h_cols = sorted({k for r in table for k in r if k.startswith("h_")})
    present = [m for m in arm.metrics if any(f"{m}_fmt" in r for r in table)]
    cols = ["weight", *[f"{m}_{s}" for m in present for s in ("mean", "lo", "hi")], *h_cols, "n"]
    title = (
        f"{arm.table_title} ({ctx.scale} scale): mean ± 95% t-interval half-width across seeds"
        + (f"; {arm.table_target(target)}" if target is not None else "")
    )
    return [
        write_csv_table(table, cols, ctx.out / f"{arm.stem}.csv"),
        write_markdown_table(
            table,
            ["weight", *[f"{m}_fmt" for m in present], *h_cols, "n"],
            ctx.out / f"{arm.stem}.md",
            title=title,
            headers=[f"{arm.term} weight", *[arm.headers[m] for m in present], *h_cols, "n"],
        ),
    ]


def draw(ctx: FigureContext) -> FigureOutput:
    """Draw figure 9c, its tables and its claims into ``ctx.out``."""
    rows = _complete(ctx, _CLASSIFIER.experiment)
    if not rows:
        raise NoDataError("figure 9c: no complete run in rel_guidance")
    arms = [(_CLASSIFIER, rows)]
    for arm in _ARMS[1:]:  # the other rows when their sweeps have complete runs
        arm_rows = _complete(ctx, arm.experiment) if ctx.has(arm.experiment) else []
        if arm_rows:
            arms.append((arm, arm_rows))
    fig, grid = plt.subplots(len(arms), 3, figsize=(15, 4.3 * len(arms)), squeeze=False)
    tables: list[Path] = []
    shown: tuple[str, ...] = ()
    for (arm, arm_rows), axes in zip(arms, grid, strict=True):
        table, target = _draw_arm(ctx, arm, arm_rows, axes)
        tables += _write_tables(ctx, arm, table, target)
        shown += (arm.experiment,)
        if arm.profile is not None and ctx.has(arm.profile):
            profile = _profile(ctx, arm.profile, _h_targets(ctx, arm, arm_rows))
            for p in profile:  # the trained profile: a grey band per layer
                axes[2].axhspan(p["lo"], p["hi"], color="0.6", alpha=0.35, lw=0)
            if profile:
                axes[2].set_title(
                    f"grey: unguided profile, {arm.profile} (n={profile[0]['n']})", fontsize=8
                )
                tables += _write_profile(ctx, arm, profile)
                shown += (arm.profile,)
    names = [_ROW_NAMES[arm.experiment] for arm, _ in arms]
    title = (
        "Figure 9c: entropy guidance, "
        + ", ".join(names)
        + (" (top to bottom)" if len(names) > 1 else "")
        + " on Fashion-MNIST (mean and 95% t-intervals across seeds)"
    )
    images, caption = finish_figure(fig, ctx, shown, "fig9c", title=title)
    _, files = write_figure_claims(ctx, FIGURE, EXPERIMENTS, ids=CLAIM_IDS)
    return FigureOutput(FIGURE, images, tables + files, caption)
