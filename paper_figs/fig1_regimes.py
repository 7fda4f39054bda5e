"""Plain-words verdicts on the three training regimes of figure 1, computed from the numbers.

Section 2.1 of *Partial local entropy and anisotropy in deep weight spaces* describes, for
the layer signal s_I of eq. 2 and its standard deviation: (1) an early signal-dominated
regime, (2) a short noise-dominated transition near the signal maximum, (3) a long late
regime in which all layers decay sub-exponentially with a common law.  :func:`regime_verdicts`
turns a cooling analysis (the dict of ``cooling.json``) and the logged series into one
sentence per regime, ``"present: ..."`` or ``"absent: ... because ..."``, with these rules:

* regime 1 is present iff the signal-to-noise ratio ``grad_mean_norm / grad_std_norm``
  (median over layers) exceeds 1 in at least one early window of >= 2 minibatches (before
  the late onset; a one-minibatch window has no spread) **and** the signal maximum (median
  over layers) lies after the first logged time;
* regime 2 is present iff the smoothed SNR crosses 1 downwards (the cooling analysis'
  crossing, median over the layers that cross, at least half of them) before the late onset;
  its distance to the signal maximum in decades is reported;
* regime 3 is present iff a late onset was found, the selected law of the signal decays
  sub-exponentially and the late window spans at least one decade of time
  (``last / onset >= 10``);
* the common law (factorisation) holds iff the joint test that the late log layer ratios are
  constant is not rejected at the analysis' level; otherwise the largest drift of a log
  ratio over the window is set against the fall of ln s_I.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "SNR_SIGNAL_DOMINATED",
    "LATE_MIN_DECADES",
    "SUB_EXPONENTIAL_LAWS",
    "early_snr",
    "regime_verdicts",
]

#: the signal dominates the noise when the norm of the mean gradient exceeds the norm of
#: its minibatch standard deviation (SNR = 1 is the "signal = noise" line of figure 1)
SNR_SIGNAL_DOMINATED = 1.0
#: the late regime is "long" when it spans at least this many decades of time
LATE_MIN_DECADES = 1.0
#: registered laws that decay slower than an exponential (the stretched-then-exponential
#: law is the paper's "sub-exponential, possibly turning exponential at late times")
SUB_EXPONENTIAL_LAWS = ("stretched_exponential", "power_law", "stretched_then_exponential")


def _median(values) -> float | None:
    v = [float(x) for x in values if x is not None]
    return float(np.median(v)) if v else None


def early_snr(data: Any, onset: float | None) -> dict[str, Any]:
    """SNR ``grad_mean_norm / grad_std_norm`` (median over layers) in the early windows.

    Early windows: times before ``onset`` (all times when None) whose record covers at least
    2 minibatches (``data.batches``; every epoch record does) and has both norms.

    Returns
    -------
    dict
        ``n_windows``, ``n_above`` (windows with SNR > 1), ``max`` and ``t_max`` (largest
        SNR and its time), ``first`` and ``t_first`` (the first such window), ``batches_first``
        (its minibatches); ``None`` entries when there is no such window.
    """
    out: dict[str, Any] = {
        "n_windows": 0,
        "n_above": 0,
        "max": None,
        "t_max": None,
        "first": None,
        "t_first": None,
        "batches_first": None,
    }
    if data.grad_mean_norm is None or data.grad_std_norm is None:
        return out
    t = np.asarray(data.epochs, float)
    ok = data.valid("grad_mean_norm") & data.valid("grad_std_norm")
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(ok, data.grad_mean_norm / data.grad_std_norm, np.nan)
    multi = np.ones(t.size, bool) if data.batches is None else np.asarray(data.batches) >= 2
    early = multi & np.any(ok, axis=0) & (t < onset if onset is not None else True)
    if not np.any(early):
        return out
    with np.errstate(all="ignore"):
        med = np.nanmedian(snr[:, early], axis=0)
    te = t[early]
    k = int(np.nanargmax(med))
    out.update(
        n_windows=int(early.sum()),
        n_above=int(np.sum(med > SNR_SIGNAL_DOMINATED)),
        max=float(med[k]),
        t_max=float(te[k]),
        first=float(med[0]),
        t_first=float(te[0]),
        batches_first=None if data.batches is None else int(np.asarray(data.batches)[early][0]),
    )
    return out


def _decades(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or a <= 0 or b <= 0:
        return None
    return float(math.log10(b / a))


def regime_verdicts(res: Mapping[str, Any], data: Any) -> dict[str, Any]:
    """Verdicts on regimes 1-3 and on the common law, with the numbers behind them.

    Parameters
    ----------
    res : mapping
        A cooling analysis as read from ``cooling.json``.
    data : CoolingData
        The series it was computed from (for the early SNR and the window sizes).

    Returns
    -------
    dict
        ``regime1``, ``regime2``, ``regime3``, ``common_law`` (sentences), the booleans
        ``regime1_present``, ``regime2_present``, ``regime3_present``, ``common_law_holds``,
        and the numbers: ``time_axis``, ``signal_max_median``, ``snr_crossing_median``,
        ``early_snr`` (see :func:`early_snr`), ``late_onset``, ``last``,
        ``late_span_decades``.
    """
    unit = res.get("time_axis", "epoch")
    reg = res["regimes"]
    on = reg.get("late_onset") or {}
    onset = on.get("epoch")
    t0, last = float(data.epochs[0]), float(data.epochs[-1])
    smax = _median(reg.get("signal_max", {}).values())
    crossings = [v.get("epoch") for v in reg.get("snr_crossing", {}).values()]
    n_layers = len(crossings)
    crossed = [c for c in crossings if c is not None]
    cross = _median(crossed) if 2 * len(crossed) >= max(n_layers, 1) else None
    snr = early_snr(data, onset)
    out: dict[str, Any] = {
        "time_axis": unit,
        "signal_max_median": smax,
        "snr_crossing_median": cross,
        "early_snr": snr,
        "late_onset": onset,
        "last": last,
    }
    # ------------------------------------------------------------------ regime 1
    reasons = []
    if snr["n_windows"] == 0:
        reasons.append("no early window of >= 2 minibatches with both gradient norms logged")
    elif snr["n_above"] == 0:
        b = snr["batches_first"]
        pure = f"; pure noise would give 1/sqrt(B) = {1 / math.sqrt(b):.2f}" if b else ""
        reasons.append(
            f"SNR < 1 in all {snr['n_windows']} early windows of >= 2 minibatches (largest "
            f"{snr['max']:.2f} at {unit} {snr['t_max']:g}; first such window at {unit} "
            f"{snr['t_first']:g}, SNR {snr['first']:.2f}{pure})"
        )
    if smax is None or smax <= t0:
        reasons.append(
            f"the signal is largest at the first logged {unit} ({t0:g}): it falls from the start"
        )
    present1 = not reasons
    if present1:
        out["regime1"] = (
            f"present: SNR > 1 in {snr['n_above']} of {snr['n_windows']} early windows "
            f"(largest {snr['max']:.2f} at {unit} {snr['t_max']:g}); signal maximum at {unit} "
            f"{smax:g} (median over layers)"
        )
    else:
        note = (
            f"; before {unit} {snr['t_first']:g} the windows hold one minibatch and have no "
            f"spread, so a signal-dominated phase confined there is not resolved"
            if unit == "step" and snr["t_first"] is not None and snr["t_first"] > t0 + 1
            else ""
        )
        out["regime1"] = "absent: " + "; and ".join(reasons) + note
    out["regime1_present"] = present1
    # ------------------------------------------------------------------ regime 2
    if cross is not None and (onset is None or cross < onset):
        dist = _decades(smax, cross)
        where = (
            f", {abs(dist):.2f} decades {'after' if dist >= 0 else 'before'} the signal maximum"
            if dist is not None
            else ""
        )
        out["regime2"] = (
            f"present: the SNR crosses 1 downwards at {unit} {cross:.4g} (median of "
            f"{len(crossed)} of {n_layers} layers){where}"
            + (f", before the late onset at {unit} {onset:g}" if onset is not None else "")
        )
        present2 = True
    else:
        if cross is not None:
            why = f"the SNR crossing ({unit} {cross:.4g}) lies after the late onset ({onset:g})"
        else:
            notes = {
                str(v.get("note")).replace("first epoch", f"first {unit}")
                for v in reg.get("snr_crossing", {}).values()
                if v and v.get("note")
            }
            why = (
                f"no downward SNR crossing in at least half of the layers "
                f"({len(crossed)} of {n_layers} cross; " + "; ".join(sorted(notes)) + ")"
            )
        out["regime2"] = "absent: " + why
        present2 = False
    out["regime2_present"] = present2
    # ------------------------------------------------------------------ regime 3
    law = res.get("selected")
    span = _decades(onset, last)
    out["late_span_decades"] = span
    reasons = []
    if onset is None:
        reasons.append("no late onset was located")
    if law not in SUB_EXPONENTIAL_LAWS:
        reasons.append(f"the selected late law is {law}, not sub-exponential")
    if span is not None and span < LATE_MIN_DECADES:
        reasons.append(
            f"the late window spans {span:.2f} decades ({unit} {onset:g} to {last:g}; "
            f"needs last/onset >= 10)"
        )
    present3 = not reasons
    if present3:
        f = res["laws"][law]
        ci = f.get("ci", {})
        pars = ", ".join(
            f"{k} = {f['params'][k]:.3g} [{ci[k][0]:.3g}, {ci[k][1]:.3g}]"
            if k in ci
            else f"{k} = {f['params'][k]:.3g}"
            for k in f.get("stderr", f["params"])
        )
        lo, hi = on.get("ci", [None, None])
        stab = res.get("stability") or {}
        moves = (
            f"; the law's parameters move by up to {stab['max_shift_in_stderr']:.3g} standard "
            f"errors as the window start moves (not stable)"
            if stab and not stab.get("stable", True)
            else ""
        )
        out["regime3"] = (
            f"present: from {unit} {onset:g} [{lo:g}, {hi:g}] to {last:g} ({span:.2f} decades), "
            f"{law} ({pars}){moves}"
        )
    else:
        out["regime3"] = "absent: " + "; and ".join(reasons)
    out["regime3_present"] = present3
    # ------------------------------------------------------------------ common law
    fac = (res.get("factorisation") or {}).get("signal") or {}
    p = fac.get("p_value")
    alpha = 1.0 - float(res.get("config", {}).get("level", 0.95))
    lo_w, hi_w = reg.get("late_window") or (onset, last)
    t_all = np.asarray(data.epochs, float)
    n_win = int(np.sum((t_all >= lo_w) & (t_all <= hi_w))) if lo_w is not None else 0
    on_n = f", {n_win} logged {unit}s in the window"
    if p is None:
        out["common_law"] = "not tested: no factorisation test in the analysis"
        out["common_law_holds"] = None
    elif p >= alpha:
        out["common_law"] = (
            f"holds: constant late log layer ratios not rejected (p = {p:.3g} >= {alpha:g}{on_n})"
        )
        out["common_law_holds"] = True
    else:
        drift = [
            abs(v["change_over_window"])
            for v in (fac.get("series") or {}).values()
            if isinstance(v, Mapping) and v.get("change_over_window") is not None
        ]
        fall = _late_fall(res, data)
        size = (
            f"; largest drift of a log ratio over the window {max(drift):.2f}"
            + (f" against a fall of {fall:.2f} in ln s_I" if fall is not None else "")
            if drift
            else ""
        )
        out["common_law"] = (
            f"rejected: the late log layer ratios drift (p = {p:.3g} < {alpha:g}{on_n}){size}"
        )
        out["common_law_holds"] = False
    return out


def _late_fall(res: Mapping[str, Any], data: Any) -> float | None:
    """Fall of ln s_I across the late window (median over layers) from the logged values."""
    lo, hi = res["regimes"].get("late_window") or (None, None)
    if lo is None:
        return None
    t = np.asarray(data.epochs, float)
    ok = data.valid("signal")
    falls = []
    for i in range(data.n_layers):
        k = np.flatnonzero(ok[i] & (t >= lo) & (t <= hi))
        if k.size >= 2:
            falls.append(math.log(data.signal[i, k[0]]) - math.log(data.signal[i, k[-1]]))
    return float(np.median(falls)) if falls else None
