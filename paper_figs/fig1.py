"""Figure 1: natural log of the layer training signal s_I (eq. 2, solid) and of its
standard deviation over the minibatches (dashed) vs epoch, for a long run of the
4-layer FC net, one panel per activation (ReLU, TanH), with the cooling analysis
drawn over it: the selected common late law of each channel (dotted) and the
regime boundaries (signal maximum, signal-to-noise crossing, late onset with
its interval).

The analysis is read from ``cooling.json`` in each run directory; when it is
missing, ``anisotropy cooling RUN_DIR`` (:func:`analysis.cooling.main`) computes
it from the run's ``log.jsonl`` - an analysis of a finished log, never training.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt

from .common import FigureContext, FigureOutput, footer, save_figure
from .stats import write_csv_table, write_markdown_table

__all__ = ["EXPERIMENTS", "draw", "ensure_cooling", "cooling_row"]

EXPERIMENTS: tuple[str, ...] = ("fig1",)


def ensure_cooling(run_dir) -> dict[str, Any]:
    """The run's ``cooling.json`` as a dict, computing it first if it is missing.

    Raises
    ------
    RuntimeError
        If the cooling analysis fails on the log (its message is on stderr).
    """
    from analysis.cooling import load_result, main

    if not (run_dir / "cooling.json").is_file():
        status = main([str(run_dir)])
        if status != 0:
            raise RuntimeError(f"anisotropy cooling {run_dir} failed with status {status}")
    return load_result(run_dir)


def _fmt(x: Any, spec: str = ".3g") -> str:
    return "-" if x is None else format(float(x), spec)


def cooling_row(res: Mapping[str, Any], activation: str) -> dict[str, Any]:
    """Table row: selected laws and parameters, regime epochs, factorisation p-values."""
    law = res["selected"]
    params = res["laws"][law]["params"]
    ci = res["laws"][law].get("ci", {})
    reg = res["regimes"]
    on = reg.get("late_onset") or {}
    fac = res.get("factorisation") or {}
    maxima = [v for v in reg.get("signal_max", {}).values() if v is not None]
    snr = [v["epoch"] for v in reg.get("snr_crossing", {}).values() if v.get("epoch") is not None]
    return {
        "activation": activation,
        "signal_law": law,
        "signal_params": "; ".join(
            f"{k} = {_fmt(v)} [{_fmt(ci.get(k, [None, None])[0])}, {_fmt(ci.get(k, [None, None])[1])}]"
            for k, v in params.items()
            if k in res["laws"][law].get("stderr", params)
        ),
        "noise_law": res["noise"]["selected"],
        "signal_max_epoch_median": sorted(maxima)[len(maxima) // 2] if maxima else None,
        "snr_crossing_epoch_median": sorted(snr)[len(snr) // 2] if snr else None,
        "late_onset_epoch": on.get("epoch"),
        "late_onset_ci": "-" if not on.get("ci") else f"[{_fmt(on['ci'][0])}, {_fmt(on['ci'][1])}]",
        "late_window": "-"
        if not reg.get("late_window")
        else f"[{_fmt(reg['late_window'][0])}, {_fmt(reg['late_window'][1])}]",
        "factorisation_p_signal": (fac.get("signal") or {}).get("p_value"),
        "factorisation_p_noise": (fac.get("signal_std") or {}).get("p_value"),
        "common_decay_signal": (fac.get("signal") or {}).get("common_decay"),
        "common_decay_noise": (fac.get("signal_std") or {}).get("common_decay"),
    }


def draw(ctx: FigureContext) -> FigureOutput:
    """Draw figure 1 (one panel per run) and its table into ``ctx.out``."""
    from analysis.cooling import load, plot_cooling

    rows = [r for r in ctx.rows("fig1") if r.get("status") == "complete"]
    if not rows:
        raise FileNotFoundError("no complete fig1 run to draw")
    rows.sort(key=lambda r: (str(r.get("model.activation")), r.get("seed", 0)))
    fig, axes = plt.subplots(len(rows), 1, figsize=(9, 4.8 * len(rows)), squeeze=False)
    table = []
    for ax, row in zip(axes[:, 0], rows):
        run = ctx.run_path("fig1", row)
        res = ensure_cooling(run)
        act = str(row.get("model.activation"))
        plot_cooling(res, load(run), ax=ax)
        t = ax.get_title()
        ax.set_title(f"{act}, seed {row.get('seed')}: {t}", fontsize=9)
        ax.set_xscale("log")
        table.append(cooling_row(res, act))
    fig.suptitle(
        "Figure 1: ln s_I (solid) and ln std (dashed) per layer vs epoch (log axis), "
        "with the common late law and the regime boundaries",
        fontsize=10,
    )
    caption = footer(fig, ctx, EXPERIMENTS)
    fig.tight_layout()
    images = save_figure(fig, ctx.out, "fig1")
    cols = list(table[0])
    tables = [
        write_csv_table(table, cols, ctx.out / "fig1_table.csv"),
        write_markdown_table(
            table,
            [
                "activation",
                "signal_law",
                "signal_params",
                "noise_law",
                "signal_max_epoch_median",
                "snr_crossing_epoch_median",
                "late_onset_epoch",
                "late_onset_ci",
                "factorisation_p_signal",
                "factorisation_p_noise",
            ],
            ctx.out / "fig1_table.md",
            title=f"Figure 1 ({ctx.scale} scale): cooling analysis per run "
            "(`anisotropy cooling`; parameters with 95% intervals; factorisation "
            "p: joint test that the late log layer ratios are constant)",
            headers=[
                "activation",
                "signal law",
                "parameters",
                "noise law",
                "signal max (epoch)",
                "SNR = 1 (epoch)",
                "late onset (epoch)",
                "onset 95% CI",
                "factorisation p (signal)",
                "factorisation p (noise)",
            ],
            formats={"factorisation_p_signal": ".3g", "factorisation_p_noise": ".3g"},
        ),
    ]
    return FigureOutput("1", images, tables, caption)
