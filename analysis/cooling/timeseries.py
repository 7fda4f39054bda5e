r"""Autocorrelation-robust building blocks shared by the cooling fits and tests.

Epoch-to-epoch fluctuations of a logged signal are strongly autocorrelated (the
weights move slowly), so every uncertainty in :mod:`analysis.cooling` follows
the same recipe (Andrews and Monahan 1992, "prewhitened HAC"):

1. model the residuals of each series as a stationary AR(1) process
   :math:`u_t = \rho u_{t-\Delta} + \eta_t`, estimate :math:`\rho` from the lag-one
   autocorrelation with the Marriott-Pope bias correction, and *whiten*:
   :math:`e_1 = u_1`, :math:`e_t = (u_t - \phi_t u_{t-1})/\sqrt{1-\phi_t^2}` with
   :math:`\phi_t = \rho^{\Delta_t}` for a gap of :math:`\Delta_t` epochs (so missing
   epochs are handled exactly and every :math:`e_t` has the stationary variance);
2. estimate parameters by (generalised) least squares on the whitened values;
3. estimate their covariance with a Newey-West (Bartlett kernel) sandwich of the
   whitened scores summed over all series at the same epoch (so correlations
   *between* layers are accounted for too), bandwidth from Andrews' (1991) AR(1)
   plug-in rule.

When the AR(1) model is right the whitened scores are white and the sandwich
reduces to the classical covariance; when it is not, the HAC step still gives a
consistent covariance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from anisotropy.validation import check_int

__all__ = [
    "RHO_MAX",
    "ar1_coefficients",
    "whiten",
    "recolor",
    "estimate_rho",
    "andrews_bandwidth",
    "hac_covariance",
    "block_length",
    "block_indices",
    "running_mean",
    "TrendTest",
    "trend_test",
]

#: |rho| is clipped here: beyond 0.99 a few hundred epochs cannot tell an AR(1) from a random
#: walk, and 1 - rho^2 (the weight of the first point) would lose all precision.
RHO_MAX = 0.99
#: Andrews' plug-in uses the AR(1) coefficient of each score column; capped so that the
#: bandwidth stays finite for near-unit-root scores.
_RHO_BANDWIDTH_MAX = 0.97


def ar1_coefficients(rho: np.ndarray, gap: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whitening coefficients of an AR(1) process observed with gaps.

    Parameters
    ----------
    rho : ndarray, shape (m,)
        AR(1) coefficient of the series each point belongs to.
    gap : ndarray, shape (m,)
        Distance in steps to the previous observed point of the same series, ``0`` for the
        first point of a series.

    Returns
    -------
    c1, c2, log_det : ndarray, shape (m,)
        ``e_k = c1_k u_k - c2_k u_{k-1}``; ``log_det_k = -ln sqrt(1 - phi_k^2)`` is the
        log-Jacobian of that map (enters the Gaussian log-likelihood).
    """
    rho = np.broadcast_to(np.asarray(rho, float), np.shape(gap))
    phi = np.where(gap == 1, rho, 0.0)
    far = np.flatnonzero(gap > 1)  # rare: only at missing epochs
    if far.size:
        phi[far] = rho[far] ** gap[far]
    s = np.sqrt(1.0 - phi * phi)
    return 1.0 / s, phi / s, -np.log(s)


def whiten(v: np.ndarray, c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """Apply the AR(1) whitening ``e_k = c1_k v_k - c2_k v_{k-1}`` along axis 0.

    ``v`` has shape ``(m,)`` or ``(m, p)``; points of different series are concatenated
    and ``c2 = 0`` at the first point of each series, so they never mix.
    """
    if v.ndim == 1:
        out = c1 * v
        out[1:] -= c2[1:] * v[:-1]
    else:
        out = c1[:, None] * v
        out[1:] -= c2[1:, None] * v[:-1]
    return out


def recolor(e: np.ndarray, c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """Inverse of :func:`whiten` along the last axis: ``u_k = (e_k + c2_k u_{k-1}) / c1_k``.

    ``e`` has shape ``(..., m)``; the recursion runs over ``m`` with all leading axes
    (bootstrap replicates) vectorised.
    """
    u = np.empty_like(e)
    u[..., 0] = e[..., 0] / c1[0]
    for k in range(1, e.shape[-1]):
        u[..., k] = (e[..., k] + c2[k] * u[..., k - 1]) / c1[k]
    return u


def estimate_rho(u: np.ndarray, gap: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """Lag-one autocorrelation of residuals ``u`` per series, bias corrected.

    Uses the pairs one step apart (``gap == 1``).  The residual-based estimate is biased
    towards 0 because the fitted curve absorbs part of the slow fluctuations: by about
    ``-(1 + 3 rho)/n`` when only a mean is fitted (Marriott and Pope 1954) and
    ``-(2 + 4 rho)/n`` when a mean and a trend are (the situation of a decay law with an
    amplitude, and of :func:`trend_test`).  The trend value is added back, then ``|rho|`` is
    clipped to :data:`RHO_MAX`.

    Parameters
    ----------
    u : (m,) residuals of all series concatenated; gap : (m,) as in :func:`ar1_coefficients`;
    group : (m,) series index in ``[0, n_groups)``.
    """
    pair = np.zeros(u.shape, bool)
    pair[1:] = gap[1:] == 1
    num = np.bincount(group[pair], u[pair] * u[np.flatnonzero(pair) - 1], minlength=n_groups)
    den = np.bincount(group, u * u, minlength=n_groups)
    n = np.bincount(group, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(den > 0, num / den, 0.0)
        rho = rho + (2.0 + 4.0 * rho) / np.maximum(n, 1)
    return np.clip(rho, -RHO_MAX, RHO_MAX)


def andrews_bandwidth(scores: np.ndarray) -> float:
    """Andrews (1991) AR(1) plug-in bandwidth of the Bartlett kernel for ``scores`` ``(n, p)``."""
    n = scores.shape[0]
    x0, x1 = scores[:-1], scores[1:]
    den = np.sum(x0 * x0, axis=0)
    ok = den > 0
    if n < 3 or not np.any(ok):
        return 0.0
    rho = np.clip(np.sum(x0 * x1, axis=0)[ok] / den[ok], -_RHO_BANDWIDTH_MAX, _RHO_BANDWIDTH_MAX)
    s2 = np.sum((x1[:, ok] - rho * x0[:, ok]) ** 2, axis=0) / (n - 1)
    num = np.sum(4 * rho**2 * s2**2 / ((1 - rho) ** 6 * (1 + rho) ** 2))
    dn = np.sum(s2**2 / (1 - rho) ** 4)
    if dn <= 0:
        return 0.0
    return float(min(1.1447 * (num / dn * n) ** (1.0 / 3.0), n - 1))


def hac_covariance(scores: np.ndarray, bandwidth: float | None = None) -> np.ndarray:
    """Newey-West long-run covariance ``sum_j w_j Gamma_j`` of ``scores`` ``(n, p)``.

    Bartlett weights ``w_j = 1 - j/(m+1)`` for ``|j| <= m``; ``m`` from
    :func:`andrews_bandwidth` unless given.  Rows are epochs (scores of all layers at one
    epoch already summed), so the result is robust to correlation in time and across
    layers.  Returns the *sum* (not the mean) over epochs, i.e. the ``Omega`` of
    ``H^-1 Omega H^-1``.
    """
    s = np.asarray(scores, float)
    m = andrews_bandwidth(s) if bandwidth is None else float(bandwidth)
    omega = s.T @ s
    for j in range(1, int(np.floor(m)) + 1):
        w = 1.0 - j / (m + 1.0)
        g = s[j:].T @ s[:-j]
        omega += w * (g + g.T)
    return omega


def block_length(rho: float, n: int) -> int:
    """Moving-block length for a series with lag-one autocorrelation ``rho``.

    The AR(1) plug-in of the MSE-optimal block length for the variance of a mean
    (Politis and White 2004, with Patton et al. 2009): ``b = (6 rho^2/(1-rho^2)^2)^(1/3)
    n^(1/3)``, at least 1 and at most ``n/4`` (four blocks).
    """
    r = min(abs(float(rho)), RHO_MAX)
    b = (6 * r**2 / (1 - r**2) ** 2) ** (1 / 3) * n ** (1 / 3)
    return int(np.clip(np.ceil(b), 1, max(1, n // 4)))


def block_indices(n: int, block: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Index arrays ``(size, n)`` of a moving-block bootstrap of a length-``n`` series."""
    n_blocks = -(-n // block)
    starts = rng.integers(0, n - block + 1, size=(size, n_blocks))
    idx = (starts[:, :, None] + np.arange(block)).reshape(size, -1)
    return idx[:, :n]


def running_mean(y: np.ndarray, window: int) -> np.ndarray:
    """Centred running mean over ``window`` (odd) points along the last axis, ignoring NaN.

    Near the ends the window is truncated; an entry with no finite neighbour stays NaN.
    """
    check_int("window", window, minimum=1)
    y = np.asarray(y, float)
    h = window // 2
    ok = np.isfinite(y)
    v = np.where(ok, y, 0.0)
    pad = [(0, 0)] * (y.ndim - 1) + [(h + 1, h)]
    cv = np.cumsum(np.pad(v, pad), axis=-1)
    cn = np.cumsum(np.pad(ok.astype(float), pad), axis=-1)
    s = cv[..., window:] - cv[..., :-window]
    c = cn[..., window:] - cn[..., :-window]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(c > 0, s / c, np.nan)


@dataclass
class TrendTest:
    """Slopes of ``K`` series against time with autocorrelation-robust intervals.

    Attributes
    ----------
    names : list of str
    slope, stderr, rho : ndarray, shape (K,)
        Slope per unit of ``t``, its prewhitened-HAC standard error, the AR(1) coefficient.
    ci : ndarray, shape (K, 2)
    wald, df, p_value : joint Wald test of "all slopes are 0" (chi^2 with ``df = K``).
    span : float
        Length of the time window (``slope * span`` is the total change of the series).
    """

    names: list
    slope: np.ndarray
    stderr: np.ndarray
    ci: np.ndarray
    rho: np.ndarray
    wald: float
    df: int
    p_value: float
    span: float
    level: float

    def to_dict(self) -> dict:
        return {
            "level": self.level,
            "span": self.span,
            "wald": self.wald,
            "df": self.df,
            "p_value": self.p_value,
            "series": {
                n: {
                    "slope": float(b),
                    "stderr": float(s),
                    "ci": [float(c[0]), float(c[1])],
                    "rho": float(r),
                    "change_over_window": float(b * self.span),
                }
                for n, b, s, c, r in zip(
                    self.names, self.slope, self.stderr, self.ci, self.rho, strict=True
                )
            },
        }


def trend_test(
    t: np.ndarray, Y: np.ndarray, *, names=None, level: float = 0.95, step: float = 1.0
) -> TrendTest:
    """Prais-Winsten (AR(1) feasible GLS) slopes of the rows of ``Y`` on ``t``; joint Wald test.

    Parameters
    ----------
    t : ndarray, shape (n,)
        Epochs (increasing).
    Y : ndarray, shape (K, n)
        Series; NaN marks a missing value (it becomes a gap of the AR(1) model).
    names : sequence of str, optional
    level : float
        Confidence level of the intervals.
    step : float
        Epoch spacing of consecutive logged epochs (gaps are measured in steps).
    """
    t = np.asarray(t, float)
    Y = np.atleast_2d(np.asarray(Y, float))
    K, n = Y.shape
    names = list(names) if names is not None else [str(k) for k in range(K)]
    ok = np.isfinite(Y)
    if np.any(ok.sum(axis=1) < 4):
        raise ValueError(
            "each series needs at least 4 finite points in the window for a trend test"
        )
    kk, ii = np.nonzero(ok)  # flat layout: series-major, time-sorted
    tt, yy = t[ii], Y[kk, ii]
    gap = np.zeros(ii.size)
    same = np.zeros(ii.size, bool)
    same[1:] = kk[1:] == kk[:-1]
    gap[1:] = np.where(same[1:], np.rint((tt[1:] - tt[:-1]) / step), 0)
    tc = tt - np.bincount(kk, tt, K)[kk] / np.bincount(kk, minlength=K)[kk]

    def gls(rho):
        c1, c2, _ = ar1_coefficients(rho[kk], gap)
        w1, wt, wy = whiten(np.ones_like(tt), c1, c2), whiten(tc, c1, c2), whiten(yy, c1, c2)

        # regress wy on (w1, wt) per series: project w1 out of wt and wy
        def proj(v):
            return v - w1 * (np.bincount(kk, w1 * v, K) / np.bincount(kk, w1 * w1, K))[kk]

        xt, yt = proj(wt), proj(wy)
        hk = np.bincount(kk, xt * xt, K)
        b = np.bincount(kk, xt * yt, K) / hk
        return b, yt - b[kk] * xt, xt, hk, c1, c2

    b, _, _, _, _, _ = gls(np.zeros(K))
    resid = yy - b[kk] * tc
    resid -= (np.bincount(kk, resid, K) / np.bincount(kk, minlength=K))[kk]
    rho = estimate_rho(resid, gap, kk, K)
    b, e, xt, hk, _, _ = gls(rho)
    scores = np.zeros((n, K))
    np.add.at(scores, (ii, kk), xt * e)
    V = hac_covariance(scores) / np.outer(hk, hk)
    se = np.sqrt(np.diag(V))
    z = stats.norm.ppf(0.5 + level / 2)
    wald = float(b @ np.linalg.solve(V, b))
    return TrendTest(
        names,
        b,
        se,
        np.column_stack([b - z * se, b + z * se]),
        rho,
        wald,
        K,
        float(stats.chi2.sf(wald, K)),
        float(t.max() - t.min()),
        level,
    )
