"""Figure 1: natural log of the layer training signal s_I (eq. 2, solid) and of its
standard deviation over the minibatches (dashed) vs time on a log axis, for a long run of
the 4-layer FC net, one panel per activation (ReLU, TanH), with the cooling analysis drawn
over it: the selected common late law of each channel (dotted) and the regime boundaries
(signal maximum, signal-to-noise crossing, late onset with its interval).

Time is the training step when the run wrote its step log ``steps.jsonl``
(``logging.steps = true``: records at geometrically spaced steps from step 1, so the early
regimes inside the first epoch are resolved), the epoch of ``log.jsonl`` otherwise.  A
second figure, ``fig1_gradients``, is the Shwartz-Ziv-Tishby view of the same runs: the norm
of the mean gradient (``grad_mean_norm``, solid) and of its minibatch standard deviation
(``grad_std_norm``, dashed) per layer vs time, log-log, with the level ``grad_std_norm /
sqrt(B)`` that the mean of ``B`` pure-noise minibatch gradients would reach (dotted).

Nothing the run logged is recomputed: the curves are the logged values.  The cooling
analysis (:func:`analysis.cooling.analyse` on the same series) is cached as JSON next to
the figure (``fig1_cooling_<activation>_s<seed>.json``) and recomputed only when the log
has grown since; the run directories are only read (a run may still be training: it is
drawn as partial).  The table ``fig1_table.csv/.md`` gives per activation the regime
boundaries, the selected law with its intervals, the factorisation p-values and the
plain-words verdict on each regime (:mod:`paper_figs.fig1_regimes`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np

from anisotropy.io import iter_jsonl, write_text_atomic

from .common import FigureContext, FigureOutput, NoDataError, footer, save_figure
from .fig1_early import EXPERIMENT as EARLY_EXPERIMENT
from .fig1_early import activation_verdicts, draw_early, early_runs, early_verdict
from .fig1_regimes import regime_verdicts
from .stats import markdown_table, write_csv_table

if TYPE_CHECKING:  # pragma: no cover - analysis.cooling is imported on use
    from analysis.cooling.io import TimeAxis

__all__ = [
    "EXPERIMENTS",
    "draw",
    "usable_row",
    "time_axis_of",
    "ensure_cooling",
    "cooling_row",
    "TABLE_COLUMNS",
]

#: the long runs, and the early probe of their first epochs (:mod:`paper_figs.fig1_early`)
EXPERIMENTS: tuple[str, ...] = ("fig1", EARLY_EXPERIMENT)

#: columns of fig1_table.csv (the markdown table shows the numbers, then the verdicts)
TABLE_COLUMNS: tuple[str, ...] = (
    "activation",
    "seed",
    "status",
    "time_axis",
    "last_time",
    "signal_max",
    "signal_max_median",
    "snr_crossing",
    "snr_crossing_median",
    "early_snr_max",
    "late_onset",
    "late_onset_ci",
    "late_span_decades",
    "signal_law",
    "signal_params",
    "law_stable",
    "noise_law",
    "noise_params",
    "factorisation_p_signal",
    "factorisation_p_noise",
    "regime1_present",
    "regime2_present",
    "regime3_present",
    "common_law_holds",
    "regime1",
    "regime2",
    "regime3",
    "common_law",
)
_MD_COLUMNS = (
    ("activation", "activation"),
    ("time_axis", "time"),
    ("last_time", "last"),
    ("signal_max", "signal max per layer"),
    ("snr_crossing_median", "SNR = 1"),
    ("late_onset", "late onset"),
    ("late_onset_ci", "onset 95% CI"),
    ("late_span_decades", "late decades"),
    ("signal_law", "signal law"),
    ("signal_params", "parameters (95% CI)"),
    ("factorisation_p_signal", "factorisation p (signal)"),
    ("factorisation_p_noise", "factorisation p (noise)"),
)


def time_axis_of(run_dir: Path) -> TimeAxis:
    """``"step"`` when the run wrote its step log ``steps.jsonl``, else ``"epoch"``."""
    from analysis.cooling.io import STEP_LOG

    return "step" if (Path(run_dir) / STEP_LOG).is_file() else "epoch"


def _cache_matches(res: Mapping[str, Any], data: Any) -> bool:
    d = res.get("data", {})
    ep = d.get("epochs", {})
    return (
        res.get("time_axis", "epoch") == data.time_axis
        and d.get("source") == data.source
        and ep.get("count") == int(data.epochs.size)
        and ep.get("last") == float(data.epochs[-1])
    )


def ensure_cooling(data: Any, cache: Path) -> dict[str, Any]:
    """The cooling analysis of ``data`` as a dict, from ``cache`` when it matches the data.

    The cache matches when its source, time axis, number of logged times and last time are
    those of ``data`` (a run that kept training invalidates it); otherwise the analysis runs
    (default :class:`~analysis.cooling.pipeline.CoolingConfig`) and is saved to ``cache``.
    """
    from analysis.cooling import CoolingConfig, analyse, load_result

    if cache.is_file():
        try:
            res = load_result(cache)
        except (ValueError, OSError):
            res = None
        if res is not None and _cache_matches(res, data):
            return res
    analyse(data, CoolingConfig()).save(cache)
    return load_result(cache)


def _fmt(x: Any, spec: str = ".3g") -> str:
    return "-" if x is None else format(float(x), spec)


def _law_text(block: Mapping[str, Any], law: str) -> str:
    f = block["laws"][law]
    ci = f.get("ci", {})
    return "; ".join(
        f"{k} = {_fmt(v)} [{_fmt(ci.get(k, [None, None])[0])}, {_fmt(ci.get(k, [None, None])[1])}]"
        for k, v in f["params"].items()
        if k in f.get("stderr", f["params"])
    )


def _per_layer(values: Mapping[str, Any]) -> str:
    return "; ".join(f"{k} {_fmt(x, '.4g')}" for k, x in values.items())


def cooling_row(
    res: Mapping[str, Any], data: Any, activation: str, *, seed: Any = 0, status: str = ""
) -> dict[str, Any]:
    """Table row: regime times, selected laws with intervals, factorisation p-values, verdicts."""
    reg = res["regimes"]
    on = reg.get("late_onset") or {}
    fac = res.get("factorisation") or {}
    v = regime_verdicts(res, data)
    return {
        "activation": activation,
        "seed": seed,
        "status": status,
        "time_axis": v["time_axis"],
        "last_time": v["last"],
        "signal_max": _per_layer(reg.get("signal_max", {})),
        "signal_max_median": v["signal_max_median"],
        "snr_crossing": _per_layer({k: c.get("epoch") for k, c in reg["snr_crossing"].items()}),
        "snr_crossing_median": v["snr_crossing_median"],
        "early_snr_max": v["early_snr"]["max"],
        "late_onset": on.get("epoch"),
        "late_onset_ci": "-" if not on.get("ci") else f"[{_fmt(on['ci'][0])}, {_fmt(on['ci'][1])}]",
        "late_span_decades": v["late_span_decades"],
        "signal_law": res["selected"],
        "signal_params": _law_text(res, res["selected"]),
        "law_stable": (res.get("stability") or {}).get("stable"),
        "noise_law": res["noise"]["selected"],
        "noise_params": _law_text(res["noise"], res["noise"]["selected"]),
        "factorisation_p_signal": (fac.get("signal") or {}).get("p_value"),
        "factorisation_p_noise": (fac.get("signal_std") or {}).get("p_value"),
        **{k: v[k] for k in ("regime1_present", "regime2_present", "regime3_present")},
        "common_law_holds": v["common_law_holds"],
        **{k: v[k] for k in ("regime1", "regime2", "regime3", "common_law")},
    }


def _last_epoch(run: Path, axis: str) -> Any:
    """Epoch of the last record the run logged (the trainer's own count; None if absent)."""
    last = None
    for _, rec in iter_jsonl(run / ("steps.jsonl" if axis == "step" else "log.jsonl")):
        last = rec.get("epoch", last)
    return last


def usable_row(ctx: FigureContext, experiment: str, row: Mapping[str, Any]) -> bool:
    """Figure 1 draws complete runs, and runs still training whose log exists (partial)."""
    return (
        row.get("status") == "complete" or (ctx.run_path(experiment, row) / "log.jsonl").is_file()
    )


def _runs(ctx: FigureContext) -> list[dict[str, Any]]:
    """Fig1 rows to draw (:func:`usable_row`), by activation and seed."""
    out = [row for row in ctx.rows("fig1") if usable_row(ctx, "fig1", row)]
    if not out:
        raise NoDataError("fig1: no run with a log to draw")
    return sorted(out, key=lambda r: (str(r.get("model.activation")), r.get("seed", 0)))


def _gradient_panel(ax: plt.Axes, data: Any, res: Mapping[str, Any], title: str) -> None:
    """Tishby-style view: logged grad_mean_norm (solid), grad_std_norm (dashed) vs time."""
    t = data.epochs
    for i, layer in enumerate(data.layers):
        c = f"C{i % 10}"
        for name, ls, lw in (("grad_mean_norm", "-", 1.1), ("grad_std_norm", "--", 1.0)):
            arr = getattr(data, name)
            if arr is None:
                continue
            ax.plot(
                t,
                np.where(data.valid(name)[i], arr[i], np.nan),
                ls,
                color=c,
                lw=lw,
                label=layer if name == "grad_mean_norm" else None,
            )
        if data.grad_std_norm is not None and data.batches is not None:
            ref = np.where(data.valid("grad_std_norm")[i], data.grad_std_norm[i], np.nan)
            ax.plot(t, ref / np.sqrt(data.batches), ":", color=c, lw=0.8, alpha=0.7)
    reg = res["regimes"]
    snr = [v["epoch"] for v in reg["snr_crossing"].values() if v.get("epoch") is not None]
    if snr:
        ax.axvline(
            float(np.median(snr)),
            color="tab:purple",
            lw=0.9,
            ls=(0, (1, 2)),
            label="SNR = 1 (median)",
        )
    on = reg.get("late_onset")
    if on:
        ax.axvspan(on["ci"][0], on["ci"][1], color="tab:olive", alpha=0.15, lw=0)
        ax.axvline(on["epoch"], color="tab:olive", lw=1.2, label="late onset (95% band)")
    ax.plot([], [], "-", color="0.2", label="|mean gradient|")
    ax.plot([], [], "--", color="0.2", label="|std of gradient|")
    if data.batches is not None:
        ax.plot([], [], ":", color="0.2", label="|std| / sqrt(batches): pure-noise mean")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(data.time_axis)
    ax.set_ylabel("gradient norm")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=2, loc="lower left", framealpha=0.85)


def _markdown(table: list[dict[str, Any]], ctx: FigureContext) -> str:
    md = markdown_table(
        table,
        [c for c, _ in _MD_COLUMNS],
        headers=[h for _, h in _MD_COLUMNS],
        formats={
            "last_time": ".6g",
            "snr_crossing_median": ".4g",
            "late_onset": ".6g",
            "late_span_decades": ".2f",
            "factorisation_p_signal": ".3g",
            "factorisation_p_noise": ".3g",
        },
    )
    lines = [
        f"Figure 1 ({ctx.scale} scale): cooling analysis per run (`anisotropy cooling`, on the "
        "step log when the run wrote one); parameters with 95% intervals; factorisation p: "
        "joint test that the late log layer ratios are constant",
        "",
        md,
        "",
        "Regimes (section 2.1): 1 early signal-dominated, 2 short noise-dominated transition "
        "near the signal maximum, 3 long late sub-exponential decay; common law = "
        "factorisation of the late decay.",
        "",
    ]
    for r in table:
        head = f"**{r['activation']}, seed {r['seed']}** ({r['status']}, {r['time_axis']} axis):"
        lines.append(head)
        lines.append("")
        for k, name in (
            ("regime1", "regime 1"),
            ("regime2", "regime 2"),
            ("regime3", "regime 3"),
            ("common_law", "common law"),
        ):
            lines.append(f"- {name}: {r[k]}")
        lines.append("")
    return "\n".join(lines)


def draw(ctx: FigureContext) -> FigureOutput:
    """Draw figure 1, its gradient-norm companion and the table into ``ctx.out``."""
    from analysis.cooling import load, plot_cooling

    rows = _runs(ctx)
    ctx.out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 4.8 * len(rows)), squeeze=False)
    gfig, gaxes = plt.subplots(len(rows), 1, figsize=(9, 4.4 * len(rows)), squeeze=False)
    table = []
    for ax, gax, row in zip(axes[:, 0], gaxes[:, 0], rows, strict=True):
        run = ctx.run_path("fig1", row)
        axis = time_axis_of(run)
        data = load(run, time_axis=axis)
        act, seed = str(row.get("model.activation")), row.get("seed", 0)
        res = ensure_cooling(data, ctx.out / f"fig1_cooling_{act}_s{seed}.json")
        status = str(row.get("status"))
        if status != "complete":
            status = f"partial: epoch {_last_epoch(run, axis)} of {row.get('epochs')}"
        plot_cooling(res, data, ax=ax, xscale="log")
        label = f"{act}, seed {seed} ({status})"
        ax.set_title(f"{label}: {ax.get_title()}", fontsize=9)
        ax.set_xlabel(f"{axis} (log axis)")
        _gradient_panel(gax, data, res, f"{label}: gradient norms per layer")
        table.append(cooling_row(res, data, act, seed=seed, status=status))
    fig.suptitle(
        "Figure 1: ln s_I (solid) and ln std (dashed) per layer vs time (log axis), "
        "with the common late law and the regime boundaries",
        fontsize=10,
    )
    caption = footer(fig, ctx, EXPERIMENTS)
    fig.tight_layout()
    gfig.suptitle(
        "Figure 1, gradient view: norm of the mean gradient (solid) and of its minibatch "
        "standard deviation (dashed) per layer, log-log",
        fontsize=10,
    )
    footer(gfig, ctx, EXPERIMENTS)
    gfig.tight_layout()
    images = save_figure(fig, ctx.out, "fig1") + save_figure(gfig, ctx.out, "fig1_gradients")
    early = early_runs(ctx)
    if early:  # regimes 1-2 from the within-minibatch noise of the early probe
        for r in table:
            seeded = early.get(str(r["activation"]))
            if seeded:
                v = activation_verdicts([early_verdict(run) for _, run in seeded])
                for k in ("regime1", "regime2"):
                    r[f"{k}_present"] = v[f"{k}_present"]
                    r[k] = f"{v[k]} [early probe {EARLY_EXPERIMENT}]"
        efig = draw_early(early)
        efig.suptitle(
            "Figure 1, early regimes: the step's signal-to-noise ratio |G| / sigma_B from the "
            "gradient noise inside each minibatch (16 parts), first epochs",
            fontsize=10,
        )
        footer(efig, ctx, (EARLY_EXPERIMENT,))
        efig.tight_layout()
        images += save_figure(efig, ctx.out, "fig1_early")
    tables = [
        write_csv_table(table, TABLE_COLUMNS, ctx.out / "fig1_table.csv"),
        write_text_atomic(ctx.out / "fig1_table.md", _markdown(table, ctx)),
    ]
    return FigureOutput("1", images, tables, caption)
