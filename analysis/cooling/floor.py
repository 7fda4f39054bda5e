r"""The noise floor of the logged signals.

A minibatch gradient of weight ``w`` is ``g_w = mu_w + xi_w`` with ``mu_w`` the true
gradient and ``xi_w`` of standard deviation ``sd_w = sigma_w/sqrt(B)`` over minibatches.
Its absolute value does not vanish with ``mu_w``: ``E|g_w| -> sd_w sqrt(2/pi)`` (the mean
of a half-normal), i.e. about ``sigma_w sqrt(2/(pi B))``.  The signal of eq. 2 averages
``|g_w|`` over the ``N_I`` weights of the layer, so its floor is

.. math::  F_I = \sqrt{2/\pi}\, \frac{1}{N_I}\sum_w sd_w \le \sqrt{2/\pi}\,
           \frac{\mathrm{grad\_std\_norm}_I}{\sqrt{N_I}},

using the logged ``grad_std_norm = sqrt(sum_w Var_batches(g_w))`` and the Cauchy-Schwarz
bound (equality when all weights of the layer are equally noisy; the floor used here
is therefore an upper bound).  The floor-corrected signal uses the interpolation
``E|g| ~ sqrt(mu^2 + (2/pi) sd^2)`` (exact in both limits):
``s_corr = sqrt(s^2 - F^2)``, NaN where ``s <= F``.  It needs ``grad_std_norm`` and the
weight count ``numel`` of each layer.

Likewise the squared norm of a minibatch mean gradient carries ``tr(Sigma)/B``: averaged over
the minibatches of an epoch, ``mean_b ||g_b||^2 = grad_mean_norm^2 + grad_std_norm^2`` exactly,
and its noise part is ``grad_std_norm^2``.  The module reports the median noise fraction
``grad_std_norm^2 / (grad_mean_norm^2 + grad_std_norm^2)`` per layer.  (The norm of the
*epoch*-mean gradient has no such simple floor: an epoch that visits every sample once has
no minibatch-sampling variance at fixed weights, only the drift of the weights.)

Whatever the log holds, the module also tests whether the signal decays like its own
noise: the slope of ``ln(signal/signal_std)`` in the late window (prewhitened-HAC
interval).  When that ratio is constant, a "common decay" of the signal cannot be told
apart from the decay of the gradient noise itself, and the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anisotropy.validation import check_probability

from .io import CoolingData
from .timeseries import TrendTest, trend_test

__all__ = ["FLOOR_DOMINATED", "FloorAnalysis", "noise_floor", "floor_series"]

#: a layer is "at the floor" when its median floor/signal ratio in the late window exceeds
#: this: at F/s = 0.9 the floor-corrected signal is sqrt(1 - 0.81) = 44% of the raw one, so
#: more than half of the raw value is noise.
FLOOR_DOMINATED = 0.9


def floor_series(data: CoolingData) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """Return ``(floor, corrected, reason)``; arrays ``(L, n)`` or None with the reason."""
    if data.grad_std_norm is None or data.numel is None:
        missing = [
            n
            for n, v in (("grad_std_norm", data.grad_std_norm), ("numel", data.numel))
            if v is None
        ]
        return None, None, f"the log lacks {' and '.join(missing)}"
    floor = np.sqrt(2 / np.pi) * data.grad_std_norm / np.sqrt(data.numel)[:, None]
    with np.errstate(invalid="ignore"):
        d = data.signal**2 - floor**2
        corrected = np.where(d > 0, np.sqrt(np.where(d > 0, d, 0.0)), np.nan)
    return floor, corrected, ""


@dataclass
class FloorAnalysis:
    """Floor of the signal (when the log allows), and signal-vs-noise decay in the late window."""

    window: tuple
    available: bool
    reason: str
    floor: np.ndarray | None
    corrected: np.ndarray | None
    floor_fraction: dict  # layer -> median F/s in the window (empty if unavailable)
    minibatch_noise_fraction: dict  # layer -> median gstd^2 / (gmean^2 + gstd^2)
    tracks_floor: TrendTest | None
    tracks_noise: TrendTest | None
    level: float
    verdict: str

    def to_dict(self) -> dict:
        return {
            "window": list(self.window),
            "available": self.available,
            "reason": self.reason,
            "floor_fraction_median": self.floor_fraction,
            "at_floor": {k: v > FLOOR_DOMINATED for k, v in self.floor_fraction.items()},
            "minibatch_noise_fraction_median": self.minibatch_noise_fraction,
            "signal_over_floor_trend": self.tracks_floor.to_dict() if self.tracks_floor else None,
            "signal_over_noise_trend": self.tracks_noise.to_dict() if self.tracks_noise else None,
            "verdict": self.verdict,
        }

    def report(self) -> str:
        lines = [f"noise floor in [{self.window[0]:g}, {self.window[1]:g}]:"]
        if self.available:
            lines.append(
                "  median floor/signal: "
                + ", ".join(f"{k} {v:.3f}" for k, v in self.floor_fraction.items())
            )
        else:
            lines.append(f"  floor of the signal not computed: {self.reason}")
        if self.minibatch_noise_fraction:
            lines.append(
                "  median noise fraction of |minibatch gradient|^2: "
                + ", ".join(f"{k} {v:.3f}" for k, v in self.minibatch_noise_fraction.items())
            )
        if self.tracks_noise is not None:
            t = self.tracks_noise
            lines.append(
                f"  ln(signal/noise) constant? joint p = {t.p_value:.3g}; slopes "
                + ", ".join(f"{n} {b:+.2e}" for n, b in zip(t.names, t.slope, strict=True))
            )
        lines.append("  => " + self.verdict)
        return "\n".join(lines)


def _median_in(x: np.ndarray, win: np.ndarray, layers) -> dict:
    out = {}
    for i, layer in enumerate(layers):
        v = x[i, win]
        v = v[np.isfinite(v)]
        out[layer] = float(np.median(v)) if v.size else float("nan")
    return out


def noise_floor(data: CoolingData, window: tuple, *, level: float = 0.95) -> FloorAnalysis:
    """Analyse the noise floor in ``window = (t_lo, t_hi)`` (see the module docstring)."""
    check_probability("level", level)
    t_lo, t_hi = window
    win = (data.epochs >= t_lo) & (data.epochs <= t_hi)
    floor, corrected, reason = floor_series(data)
    available = floor is not None
    frac, tracks_floor = {}, None
    t = data.epochs[win]
    if floor is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = _median_in(floor / data.signal, win, data.layers)
            lr = np.log(data.signal[:, win]) - np.log(floor[:, win])
        try:
            tracks_floor = trend_test(
                t,
                np.where(np.isfinite(lr), lr, np.nan),
                names=data.layers,
                level=level,
                step=data.step,
            )
        except ValueError:
            tracks_floor = None
    mg = {}
    if data.grad_mean_norm is not None and data.grad_std_norm is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            v = data.grad_std_norm**2
            mg = _median_in(v / (data.grad_mean_norm**2 + v), win, data.layers)
    ok = data.valid("signal") & data.valid("signal_std")
    with np.errstate(divide="ignore", invalid="ignore"):
        ln = np.where(ok, np.log(np.where(ok, data.signal / data.signal_std, 1.0)), np.nan)[:, win]
    try:
        tracks_noise = trend_test(t, ln, names=data.layers, level=level, step=data.step)
    except ValueError:
        tracks_noise = None
    alpha = 1 - level
    parts = []
    at_floor = [k for k, v in frac.items() if v > FLOOR_DOMINATED]
    if available and len(at_floor) == data.n_layers:
        parts.append(
            "every layer's late signal sits at the noise floor of a mean absolute "
            "minibatch gradient (floor/signal > "
            f"{FLOOR_DOMINATED}): its decay is the decay of the gradient noise, not of the "
            "true gradient"
        )
    elif at_floor:
        parts.append(
            f"layers {', '.join(at_floor)} sit at the noise floor (floor/signal > "
            f"{FLOOR_DOMINATED})"
        )
    if tracks_floor is not None and tracks_floor.p_value >= alpha:
        parts.append(
            f"signal/floor is constant in the window (joint p = {tracks_floor.p_value:.3g}): "
            "the common decay is indistinguishable from the decay of the noise floor"
        )
    if tracks_noise is not None:
        if tracks_noise.p_value >= alpha:
            parts.append(
                f"signal/noise is constant in the window (joint p = {tracks_noise.p_value:.3g}): "
                "the common decay of the signal is indistinguishable from the decay of "
                "its own noise (signal_std)"
            )
        else:
            parts.append(
                f"signal and noise decay differently (joint p = {tracks_noise.p_value:.3g})"
            )
    verdict = "; ".join(parts) if parts else "no test possible"
    return FloorAnalysis(
        (float(t_lo), float(t_hi)),
        available,
        reason,
        floor,
        corrected,
        frac,
        mg,
        tracks_floor,
        tracks_noise,
        level,
        verdict,
    )
