"""Figure in the style of figure 1 of the paper, drawn from a result without refitting.

:func:`plot_cooling` takes a :class:`~analysis.cooling.report.CoolingResult` *or* the dict
read from ``cooling.json`` (:func:`~analysis.cooling.report.load_result`) together with the
logged data, so that the paper-figure script can redraw figure 1 from files alone.
Natural-log values on the vertical axis; per layer one colour, the signal solid, its noise
(``signal_std``) dashed, the selected joint law of each channel dotted over the late
window, and vertical markers at the regime boundaries (median signal maximum, median SNR
crossing, late onset with its interval shaded).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from anisotropy.io import save_figure_atomic
from anisotropy.validation import check_choice

from .io import CoolingData
from .laws import Law, LawLike, evaluate

__all__ = ["plot_cooling"]


def _as_dict(result) -> dict:
    return result if isinstance(result, dict) else result.to_dict()


def _law_objects(result) -> dict[str, Law]:
    """The fitted :class:`Law` objects of a result by name (none for a ``cooling.json`` dict,
    whose laws are looked up by name)."""
    if isinstance(result, dict):
        return {}
    return {name: f.law_model for ch in result.channels.values() for name, f in ch["fits"].items()}


def _fitted(res: dict, channel_block: dict, layers, t, laws: dict[str, Law]):
    law = channel_block["selected"]
    f = channel_block["laws"][law]
    names = [k for k in f["stderr"]]
    params = {k: f["params"][k] for k in names}
    spec: LawLike = laws.get(law, law)
    return law, {layer: evaluate(spec, t, params, f["log_amplitudes"][layer]) for layer in layers}


def plot_cooling(
    result,
    data: CoolingData,
    *,
    ax=None,
    path=None,
    title: str | None = None,
    xscale: str = "linear",
):
    """Draw ln(signal) (solid), ln(noise) (dashed), fitted laws and regime boundaries.

    Parameters
    ----------
    result : CoolingResult or dict
        An analysis result or the content of its ``cooling.json``.
    data : CoolingData
        The logged series the result was computed from.
    ax : matplotlib Axes, optional
        Draw into this axes; otherwise a new figure is made.
    path : str or Path, optional
        Save the figure there (PNG by suffix).
    title : str, optional
    xscale : {"linear", "log"}
        Scale of the epoch axis ("log" spreads out the early regimes of a long run).

    Returns
    -------
    matplotlib.figure.Figure
    """
    res = _as_dict(result)
    if list(res["data"]["layers"]) != list(data.layers):
        raise ValueError(
            f"result layers {res['data']['layers']} do not match the data's {list(data.layers)}"
        )
    if ax is None:
        fig = Figure(figsize=(7.0, 4.6), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    t = data.epochs
    colours = [f"C{i % 10}" for i in range(data.n_layers)]
    lo, hi = res["regimes"]["late_window"]
    tw = np.linspace(max(lo, 1e-12), hi, 400)
    laws = _law_objects(result)
    law_s, fit_s = _fitted(res, res, data.layers, tw, laws)
    law_n, fit_n = _fitted(res, res["noise"], data.layers, tw, laws)
    handles = []
    for i, layer in enumerate(data.layers):
        c = colours[i]
        with np.errstate(divide="ignore", invalid="ignore"):
            ys = np.where(data.valid("signal")[i], np.log(np.abs(data.signal[i])), np.nan)
            yn = np.where(data.valid("signal_std")[i], np.log(np.abs(data.signal_std[i])), np.nan)
        handles += ax.plot(t, ys, "-", color=c, lw=1.1, label=layer)
        ax.plot(t, yn, "--", color=c, lw=1.0, alpha=0.8)
        ax.plot(tw, fit_s[layer], ":", color="k", lw=1.3)
        ax.plot(tw, fit_n[layer], ":", color="0.45", lw=1.3)
    reg = res["regimes"]
    maxima = [v for v in reg["signal_max"].values() if v is not None]
    if maxima:
        handles.append(
            ax.axvline(
                float(np.median(maxima)),
                color="tab:gray",
                lw=0.9,
                ls="-.",
                label="signal max (median)",
            )
        )
    snr = [v["epoch"] for v in reg["snr_crossing"].values() if v["epoch"] is not None]
    if snr:
        handles.append(
            ax.axvline(
                float(np.median(snr)),
                color="tab:purple",
                lw=0.9,
                ls=(0, (1, 2)),
                label="signal = noise (median)",
            )
        )
    on = reg.get("late_onset")
    if on is not None:
        ax.axvspan(on["ci"][0], on["ci"][1], color="tab:olive", alpha=0.15, lw=0)
        handles.append(
            ax.axvline(on["epoch"], color="tab:olive", lw=1.2, label="late onset (95% band)")
        )
    handles += ax.plot([], [], "-", color="0.2", label="signal")
    handles += ax.plot([], [], "--", color="0.2", label="noise (signal_std)")
    handles += ax.plot([], [], ":", color="k", label=f"fit: {law_s}")
    handles += ax.plot([], [], ":", color="0.45", label=f"noise fit: {law_n}")
    ax.set_xscale(check_choice("xscale", xscale, ("linear", "log")))
    ax.set_xlabel(getattr(data, "time_axis", "epoch"))
    ax.set_ylabel("natural log of signal (solid) and noise (dashed)")
    if title is None:
        f = res["laws"][law_s]
        pars = ", ".join(f"{k} = {f['params'][k]:.3g}" for k in f["stderr"])
        title = f"late law: {law_s} ({pars})"
    ax.set_title(title, fontsize=10)
    ax.legend(handles=handles, fontsize=7, ncol=2, loc="upper right", framealpha=0.85)
    if path is not None:
        save_figure_atomic(fig, path, dpi=130)
    return fig
