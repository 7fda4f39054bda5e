r"""The three training regimes of section 2.1: signal maximum, SNR crossing, late onset.

* **Signal maximum**: the epoch of the maximum of each layer's log signal after a
  centred running mean over ``smooth`` epochs (a raw argmax follows single noisy epochs).
* **Signal-to-noise crossing**: the first epoch at which the smoothed log
  signal-to-noise ratio falls through 0, linearly interpolated between epochs.  The
  ratio is ``signal/signal_std`` (the solid and dashed curves of figure 1) or, with
  ``source="gradient"``, ``grad_mean_norm/grad_std_norm`` (the norm of the mean gradient
  against the size of its minibatch fluctuations, as in Shwartz-Ziv and Tishby).
* **Onset of the late common-decay regime**: in that regime the log-ratios between
  layers are constant.  Before it, each layer relaxes with its own power-law factor,
  i.e. the centred log-ratios ``r_I(t) = ln s_I - mean_J ln s_J`` are linear in ``ln t``.
  The onset ``t_on`` is the break of the continuous piecewise-linear ("hinge") model

  .. math::  r_I(t) = \alpha_I + \delta_I \min(0, \ln t - \ln t_{on}) + \varepsilon_I(t),

  fitted by least squares for every candidate epoch (closed form with cumulative sums,
  ``O(n L)`` for all candidates together): the profile of the residual sum of squares
  over ``t_on``.  Its uncertainty comes from a moving-block bootstrap of the hinge
  residuals (blocks of epochs shared by all layers, block length from their
  autocorrelation), re-estimating ``t_on`` in each resample; percentile interval.

The onset search starts after the latest per-layer signal maximum (the late regime
follows the maximum) and leaves at least ``min_late`` epochs and a quarter of the searched
epochs after each candidate (:data:`LATE_MIN_FRACTION`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from anisotropy.validation import check_choice, check_int, check_probability

from .io import CoolingData
from .timeseries import RHO_MAX, block_indices, block_length, running_mean

__all__ = [
    "Onset",
    "signal_maximum",
    "snr_crossing",
    "late_onset",
    "hinge_profile",
    "MIN_PRE_POINTS",
    "LATE_MIN_FRACTION",
]

SnrSource = Literal["signal", "gradient"]

#: a candidate onset needs this many epochs before it to estimate the pre-onset slope
MIN_PRE_POINTS = 3
#: the late regime is the long final part of training (section 2.1): a candidate onset must
#: leave at least this fraction of the searched epochs after it (and at least min_late).  A
#: break in the last quarter would leave too short a window for a law fit anyway, and it is
#: where autocorrelated wanders of the ratios most easily mimic a hinge.
LATE_MIN_FRACTION = 0.25
#: bootstrap replicates of the onset are processed in chunks of this many (memory ~ chunk*L*n)
_CHUNK = 64


def signal_maximum(data: CoolingData, *, smooth: int = 5) -> dict:
    """Epoch of the maximum of each layer's smoothed log signal ``{layer: epoch}``."""
    y = np.where(
        data.valid("signal"), np.log(np.where(data.valid("signal"), data.signal, 1.0)), np.nan
    )
    ys = running_mean(y, smooth)
    out = {}
    for i, layer in enumerate(data.layers):
        out[layer] = float(data.epochs[np.nanargmax(ys[i])]) if np.any(np.isfinite(ys[i])) else None
    return out


def snr_crossing(data: CoolingData, *, source: SnrSource = "signal", smooth: int = 5) -> dict:
    """First downward crossing of the smoothed log signal-to-noise ratio through 0.

    Returns ``{layer: {"epoch": float or None, "note": str}}``; ``epoch`` is None when the
    ratio never crosses (the note says whether it stays above or starts below 1).
    """
    check_choice("snr_source", source, ("signal", "gradient"))
    num, den = (
        ("signal", "signal_std") if source == "signal" else ("grad_mean_norm", "grad_std_norm")
    )
    if getattr(data, num) is None or getattr(data, den) is None:
        raise ValueError(f"snr_source={source!r} needs {num} and {den} in the log")
    ok = data.valid(num) & data.valid(den)
    with np.errstate(divide="ignore", invalid="ignore"):
        lr = np.where(ok, np.log(getattr(data, num)) - np.log(getattr(data, den)), np.nan)
    ls = running_mean(lr, smooth)
    t = data.epochs
    out: dict[str, dict[str, float | str | None]] = {}
    for i, layer in enumerate(data.layers):
        x = ls[i]
        idx = np.flatnonzero(np.isfinite(x))
        if idx.size < 2:
            out[layer] = {"epoch": None, "note": "fewer than 2 valid epochs"}
            continue
        xv, tv = x[idx], t[idx]
        down = np.flatnonzero((xv[:-1] > 0) & (xv[1:] <= 0))
        if down.size == 0:
            note = (
                "signal-dominated throughout"
                if np.all(xv > 0)
                else "noise-dominated from the first epoch"
                if xv[0] <= 0
                else "no downward crossing"
            )
            out[layer] = {"epoch": None, "note": note}
            continue
        k = down[0]
        e = tv[k] + (tv[k + 1] - tv[k]) * xv[k] / (xv[k] - xv[k + 1])
        out[layer] = {"epoch": float(e), "note": "signal-dominated -> noise-dominated"}
    return out


def hinge_profile(x: np.ndarray, R: np.ndarray, cand: np.ndarray, rho: float = 0.0) -> np.ndarray:
    """Residual sum of squares of the (AR(1)-quasi-differenced) hinge model for every break.

    With ``rho != 0`` the model is fitted by GLS: series and regressors are
    quasi-differenced, ``v_t - rho v_{t-1}`` for ``t >= 1`` (the first point is dropped), so
    that autocorrelated wanders of the ratios are not mistaken for the pre-onset drift.

    Parameters
    ----------
    x : ndarray (n,)
        Increasing abscissa (``ln t``).
    R : ndarray (..., K, n)
        Series (leading axes: bootstrap replicates).
    cand : ndarray (m,) of int, all >= 1
        Candidate break indices into ``x``: the regressor is ``min(0, x - x[c])``, so points
        ``j < c`` carry the slope.
    rho : float
        AR(1) coefficient of the residuals (0: ordinary least squares).

    Returns
    -------
    rss : ndarray (..., m)
        Summed over the ``K`` series.
    """
    xt = x[1:] - rho * x[:-1]  # quasi-differenced ln t, index t = 1..n-1
    yt = R[..., 1:] - rho * R[..., :-1]
    m = xt.size
    zero = np.zeros(R.shape[:-1] + (1,))
    cx = np.r_[0.0, np.cumsum(xt)]  # cx[k] = sum over t = 1..k of xt
    cxx = np.r_[0.0, np.cumsum(xt * xt)]
    cy = np.concatenate([zero, np.cumsum(yt, axis=-1)], axis=-1)
    cxy = np.concatenate([zero, np.cumsum(yt * xt, axis=-1)], axis=-1)
    k = cand - 1  # points t = 1..c-1 carry the slope
    xc = x[cand]
    a = (1 - rho) * xc
    edge = rho * (x[cand] - x[cand - 1])  # the regressor at t = c
    yc = yt[..., cand - 1]
    sh = cx[k] - k * a + edge
    shh = cxx[k] - 2 * a * cx[k] + k * a * a + edge * edge
    shy = cxy[..., k] - a * cy[..., k] + edge * yc
    sy = cy[..., -1:]
    syy = np.sum(yt * yt, axis=-1, keepdims=True)
    vhh = shh - sh * sh / m
    vhy = shy - sh * sy / m
    rss = syy - sy * sy / m - np.where(vhh > 0, vhy * vhy / np.where(vhh > 0, vhh, 1.0), 0.0)
    return rss.sum(axis=-2)


def _hinge_fit(x, R, c):
    h = np.minimum(0.0, x - x[c])
    hc = h - h.mean()
    rc = R - R.mean(axis=-1, keepdims=True)
    delta = rc @ hc / max(hc @ hc, np.finfo(float).tiny)
    fitted = R.mean(axis=-1, keepdims=True) + delta[:, None] * hc
    return fitted, delta


@dataclass
class Onset:
    """Estimated onset of the late common-decay regime.

    Attributes
    ----------
    epoch : float
    ci : (float, float)
        Bootstrap percentile interval at ``level``.
    stderr : float
        Bootstrap standard deviation.
    drift : dict
        Pre-onset slope of each layer's centred log-ratio per unit ``ln t``.
    profile_epochs, profile_rss : ndarray
        Candidate epochs and the residual sum of squares (profile) of the hinge model.
    """

    epoch: float
    ci: tuple
    stderr: float
    level: float
    n_boot: int
    block: int
    drift: dict
    search: tuple
    rho: float
    method: str = "hinge in ln t on centred log layer ratios; moving-block bootstrap"
    profile_epochs: np.ndarray | None = field(default=None, repr=False)
    profile_rss: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "ci": list(self.ci),
            "stderr": self.stderr,
            "level": self.level,
            "n_boot": self.n_boot,
            "block_length": self.block,
            "drift_per_ln_t": self.drift,
            "search_range": list(self.search),
            "rho": self.rho,
            "method": self.method,
        }


def late_onset(
    data: CoolingData,
    *,
    t_from: float | None = None,
    min_late: int = 20,
    level: float = 0.95,
    n_boot: int = 200,
    smooth: int = 5,
    gls: bool = False,
    rng: np.random.Generator | int | None = None,
) -> Onset:
    """Onset of the late regime by the hinge changepoint model (see the module docstring).

    Parameters
    ----------
    data : CoolingData
        At least two layers.
    t_from : float, optional
        Start of the search; default: the latest per-layer signal maximum.
    min_late : int
        Minimum number of epochs from a candidate onset to the end.
    level : float
        Level of the bootstrap interval.
    n_boot : int
        Bootstrap resamples.
    smooth : int
        Running-mean window used for the signal maxima.
    gls : bool
        Fit the hinge by AR(1) GLS instead of least squares.  On synthetic ratios with
        AR(1) noise of coefficient 0.9 GLS gives better-calibrated intervals but a larger
        median error of the onset itself (docs/cooling.md); least squares is the default.
    rng : numpy Generator or seed
    """
    if data.n_layers < 2:
        raise ValueError(
            "the late-onset changepoint uses layer ratios and needs at least 2 layers; "
            "give late_start explicitly for a single layer"
        )
    check_int("min_late", min_late, minimum=2)
    check_int("n_boot", n_boot, minimum=10)
    check_probability("level", level)
    rng = np.random.default_rng(rng)
    if t_from is None:
        maxima = [m for m in signal_maximum(data, smooth=smooth).values() if m is not None]
        t_from = max(maxima) if maxima else data.epochs.min()
    ok = np.all(data.valid("signal"), axis=0) & (data.epochs >= t_from) & (data.epochs > 0)
    t = data.epochs[ok]
    n = t.size
    if n < MIN_PRE_POINTS + min_late:
        raise ValueError(
            f"too short a series for the late-onset search: {n} epochs from {t_from:g} "
            f"with all layers valid; need at least {MIN_PRE_POINTS + min_late}"
        )
    x = np.log(t)
    Y = np.log(data.signal[:, ok])
    R = Y - Y.mean(axis=0)
    cand = np.arange(
        max(MIN_PRE_POINTS, 1), n - max(min_late, int(np.ceil(LATE_MIN_FRACTION * n))) + 1
    )
    # first pass by least squares; its residuals give the AR(1) coefficient of the ratios
    # (pooled over layers, bias corrected as in timeseries.estimate_rho) for the block length
    # and, with gls=True, for the GLS profile
    c0 = int(cand[np.argmin(hinge_profile(x, R, cand))])
    fitted, _ = _hinge_fit(x, R, c0)
    E = R - fitted
    rho = float(np.sum(E[:, 1:] * E[:, :-1]) / max(np.sum(E * E), np.finfo(float).tiny))
    rho = float(np.clip(rho + (2 + 4 * rho) / n, 0.0, RHO_MAX))
    rho_fit = rho if gls else 0.0
    rss = hinge_profile(x, R, cand, rho_fit)
    c_hat = int(cand[np.argmin(rss)])
    fitted, delta = _hinge_fit(x, R, c_hat)
    E = R - fitted
    block = block_length(rho, n)
    est = []
    for start in range(0, n_boot, _CHUNK):
        b = min(_CHUNK, n_boot - start)
        idx = block_indices(n, block, b, rng)
        Rs = fitted[None] + E[:, idx].transpose(1, 0, 2)  # (b, K, n)
        est.append(cand[np.argmin(hinge_profile(x, Rs, cand, rho_fit), axis=-1)])
    boot = t[np.concatenate(est)]
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return Onset(
        float(t[c_hat]),
        (float(lo), float(hi)),
        float(np.std(boot)),
        level,
        n_boot,
        block,
        dict(zip(data.layers, map(float, delta), strict=True)),
        (float(t[0]), float(t[-1])),
        rho,
        "hinge in ln t on centred log layer ratios, "
        + ("AR(1) GLS" if gls else "least squares")
        + "; moving-block bootstrap interval",
        profile_epochs=t[cand],
        profile_rss=rss,
    )
