r"""Joint and per-layer fits of a decay law on the late window.

Model (section 2.1 of the paper, PAPER-NOTES section 5): for layer ``I`` at epoch ``t``

.. math::

    y_{It} = \ln s_I(t) = a_I + g(t;\theta) + r_{It}\,\sigma_I\,u_{It},

with :math:`g = \ln f` a law of :mod:`analysis.cooling.laws` shared by all layers,
per-layer log amplitudes :math:`a_I = \ln A_I`, a known relative noise scale
:math:`r_{It}` (``weights="logged"``: the logged ``signal_std / signal`` smoothed over
:data:`WEIGHT_SMOOTH` epochs, i.e. the standard error of the log of an epoch mean up to a
constant; ``"uniform"``: 1),
an unknown per-layer scale :math:`\sigma_I` and a unit-variance stationary
Gaussian AR(1) process :math:`u_{It}` per layer (``noise_model="ar1"``) or white
noise (``"white"``).  The parameters are estimated by maximum likelihood in the
form of iterated feasible GLS (see :mod:`analysis.cooling.timeseries`): at fixed
:math:`(\rho_I, \sigma_I)` the likelihood is a weighted least-squares problem in the
whitened residuals, solved by :func:`scipy.optimize.least_squares` with the
analytic Jacobian of the law; the amplitudes enter linearly and are profiled out
exactly (variable projection), so the optimiser only sees the 1-3 shape parameters.

Uncertainty (``uncertainty=``):

* ``"sandwich"`` (default): :math:`H^{-1}\Omega H^{-1}` with the Newey-West long-run
  covariance of the whitened scores summed over layers at each epoch - honest under
  leftover autocorrelation and under correlation between layers;
* ``"bootstrap"``: a moving-block bootstrap of the whitened residuals (all layers of an
  epoch move together), re-coloured with the fitted AR(1) and refitted, re-estimating
  :math:`(\rho, \sigma)` in every resample (:mod:`analysis.cooling.bootstrap`);
  symmetric percentile-t intervals, which also carry the small-sample uncertainty of
  :math:`\hat\rho` near 1 that the sandwich misses on short windows;
* ``"jacobian"``: the classical :math:`s^2 H^{-1}`; with ``noise_model="white"`` this is
  the plain covariance that under-covers badly for autocorrelated residuals (kept to
  demonstrate exactly that).

Intervals are formed on the internal scale (``ln tau``, ``beta``, ``p``, ``ln t_c``)
and mapped to the natural parameters.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import optimize, stats

from anisotropy.validation import check_choice, check_int, check_probability

from .io import CoolingData
from .laws import Law, get_law, initial_guess
from .timeseries import ar1_coefficients, estimate_rho, hac_covariance, running_mean

__all__ = ["NoiseModel", "Uncertainty", "Weights", "Panel", "LawFit", "build_panel", "fit_law",
           "MIN_POINTS_PER_LAYER"]

NoiseModel = Literal["ar1", "white"]
Uncertainty = Literal["sandwich", "bootstrap", "jacobian"]
Weights = Literal["logged", "uniform"]

#: a layer needs this many valid epochs in a window: with 3 shape parameters, an amplitude,
#: a scale and an AR(1) coefficient, fewer points leave no degrees of freedom worth the name.
MIN_POINTS_PER_LAYER = 8
#: feasible-GLS iterations stop when no rho moves by more than this (a change of 1e-3 in rho
#: changes the long-run variance factor (1+rho)/(1-rho) by < 2% even at rho = 0.9) ...
RHO_TOL = 1e-3
#: ... or after this many refits (FGLS converges in 2-3 in practice).
FGLS_MAX_ITER = 6
#: the logged relative noise signal_std/signal is smoothed by a centred running mean of its log
#: over this many epochs before it weights the fit: the sampling jitter of a standard deviation
#: over M minibatches (1/sqrt(2(M-1)), about 5% for M = 235) is averaged down by sqrt(11) ~ 3.3,
#: while the noise level itself changes over tens of epochs.  Unsmoothed weights with 10% jitter
#: made 95% intervals cover only 92% (AR(1) rho = 0.9, 2000 epochs; docs/cooling.md).
WEIGHT_SMOOTH = 11
#: Ljung-Box lags on the whitened residuals (capped at a fifth of the series length).
LJUNG_BOX_LAGS = 10
#: a parameter closer than this (relative) to a bound of its box is reported as at the bound.
AT_BOUND_RTOL = 1e-6


@dataclass
class Panel:
    """Valid points of ``L`` layers inside a window, concatenated layer by layer.

    Attributes
    ----------
    epochs : ndarray (n_e,)
        Epoch grid of the window (law evaluated here once, then gathered).
    col : ndarray (N,) int
        Index of each point into ``epochs``.
    layer : ndarray (N,) int
    y, r, gap : ndarray (N,)
        Log values, relative noise scale, gap (in steps) to the previous point of the layer.
    layers : tuple of str
    """

    epochs: np.ndarray
    col: np.ndarray
    layer: np.ndarray
    y: np.ndarray
    r: np.ndarray
    gap: np.ndarray
    layers: tuple
    channel: str = "signal"

    @property
    def t(self) -> np.ndarray:
        return self.epochs[self.col]

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def subset(self, i: int) -> "Panel":
        """The panel of layer ``i`` alone."""
        m = self.layer == i
        return Panel(self.epochs, self.col[m], np.zeros(int(m.sum()), int), self.y[m], self.r[m],
                     self.gap[m], (self.layers[i],), self.channel)

    def with_y(self, y: np.ndarray) -> "Panel":
        return Panel(self.epochs, self.col, self.layer, y, self.r, self.gap, self.layers, self.channel)


def build_panel(data: CoolingData, channel: Literal["signal", "signal_std"], t_lo: float,
                t_hi: float | None = None, *, weights: Weights = "logged") -> Panel:
    """Collect the valid points of ``channel`` with ``t_lo <= epoch <= t_hi`` (and epoch > 0).

    ``weights="logged"`` uses ``r = signal_std/signal`` (smoothed over :data:`WEIGHT_SMOOTH`
    epochs) for the signal channel (points whose
    ``signal_std`` is unusable are then left out; they are listed in ``data.issues``).  The
    noise channel always has ``r = 1``: the relative error of a standard deviation over ``M``
    minibatches, ``1/sqrt(2(M-1))``, does not depend on the epoch.

    Raises ValueError when a layer keeps fewer than :data:`MIN_POINTS_PER_LAYER` points.
    """
    check_choice("channel", channel, ("signal", "signal_std"))
    check_choice("weights", weights, ("logged", "uniform"))
    t_hi = data.epochs.max() if t_hi is None else t_hi
    win = (data.epochs >= t_lo) & (data.epochs <= t_hi) & (data.epochs > 0)
    ok = data.valid(channel) & win
    vals = getattr(data, channel)
    if channel == "signal" and weights == "logged":
        ok &= data.valid("signal_std")
    counts = ok.sum(axis=1)
    if np.any(counts < MIN_POINTS_PER_LAYER):
        bad = {data.layers[i]: int(c) for i, c in enumerate(counts) if c < MIN_POINTS_PER_LAYER}
        raise ValueError(f"too few valid epochs of {channel} in the window [{t_lo:g}, {t_hi:g}]: "
                         f"{bad}; each layer needs at least {MIN_POINTS_PER_LAYER}")
    cols = np.flatnonzero(win)
    sub = ok[:, cols]
    li, ci = np.nonzero(sub)
    epochs = data.epochs[cols]
    y = np.log(vals[:, cols][li, ci])
    if channel == "signal" and weights == "logged":
        # smoothed log relative noise: the epoch-to-epoch jitter of a logged std would otherwise
        # enter the residuals as extra white noise and bias the AR(1) coefficient towards 0
        sub_ok = ok[:, cols]
        with np.errstate(divide="ignore", invalid="ignore"):
            lr = np.where(sub_ok, np.log(data.signal_std[:, cols] / data.signal[:, cols]), np.nan)
        lr = running_mean(lr, WEIGHT_SMOOTH)[li, ci]
        # the scale of r is absorbed by sigma_I; centre per layer for conditioning
        lr -= (np.bincount(li, lr, data.n_layers) / np.bincount(li, minlength=data.n_layers))[li]
        r = np.exp(lr)
    else:
        r = np.ones(li.size)
    gap = np.zeros(li.size)
    same = np.r_[False, li[1:] == li[:-1]]
    gap[same] = np.rint(np.diff(epochs[ci])[same[1:]] / data.step)
    return Panel(epochs, ci, li, y, r, gap, data.layers, channel)


@dataclass
class LawFit:
    """Result of fitting one law to a panel (jointly over its layers).

    ``params``, ``stderr``, ``ci`` are keyed by the law's natural parameter names;
    ``log_amplitudes``, ``rho`` and ``sigma`` by layer.  ``loglik`` is the Gaussian
    log-likelihood of the log values (AR(1) or white, layers independent), ``n_params`` counts
    shape parameters, amplitudes, scales and AR coefficients.  Because the layers are in
    general correlated, that likelihood is a composite likelihood; ``aic`` and ``bic`` count
    the shape parameters by their effective dimension ``tr(H^-1 Omega)`` (Varin and Vidoni
    2005), ``inflation`` is the ratio of sandwich to model-based variance per parameter.
    """

    law: str
    params: dict
    stderr: dict
    ci: dict
    z: np.ndarray
    cov: np.ndarray
    log_amplitudes: dict
    rho: dict
    sigma: dict
    loglik: float
    n_obs: int
    n_params: int
    window: tuple
    level: float
    noise_model: str
    uncertainty: str
    at_bound: list
    gof: dict
    pointwise: np.ndarray = field(repr=False)          # log-lik per epoch of the window
    boot: np.ndarray | None = field(default=None, repr=False)
    n_boot_failed: int = 0
    shape_dimension: float = 0.0                       # sum of max(1, eigenvalues of H^-1 Omega)
    inflation: dict = field(default_factory=dict)      # sandwich / model variance per parameter

    @property
    def n_params_effective(self) -> float:
        """``n_params`` with the shape parameters counted as ``sum max(1, eig(H^-1 Omega))``."""
        p = len(self.z)
        return self.n_params - p + self.shape_dimension

    @property
    def aic(self) -> float:
        """Composite-likelihood AIC, ``2 k_eff - 2 ln L``."""
        return 2 * self.n_params_effective - 2 * self.loglik

    @property
    def bic(self) -> float:
        """Composite-likelihood BIC, ``k_eff ln N - 2 ln L``."""
        return self.n_params_effective * np.log(self.n_obs) - 2 * self.loglik

    def to_dict(self) -> dict:
        return {"params": self.params, "stderr": self.stderr,
                "ci": {k: list(v) for k, v in self.ci.items()}, "level": self.level,
                "aic": self.aic, "bic": self.bic, "loglik": self.loglik, "n_obs": self.n_obs,
                "n_params": self.n_params, "n_params_effective": self.n_params_effective,
                "variance_inflation": self.inflation, "window": list(self.window),
                "log_amplitudes": self.log_amplitudes, "rho": self.rho, "sigma": self.sigma,
                "noise_model": self.noise_model, "uncertainty": self.uncertainty,
                "at_bound": self.at_bound, "gof": self.gof,
                **({"n_boot": int(self.boot.shape[0]), "n_boot_failed": self.n_boot_failed}
                   if self.boot is not None else {})}


class _Problem:
    """Whitened, profiled least-squares problem at fixed (rho, sigma).

    Residual ``e = W (y - a[layer] - g)`` with ``W v = A v - B shift(v)``,
    ``A = c1/(r sigma)``, ``B = c2/(r_prev sigma)``; ``a`` profiled out in closed form.
    Jacobian columns are kept as rows of a ``(p, N)`` array (contiguous 1-D operations).
    """

    def __init__(self, panel: Panel, law: Law, rho: np.ndarray, sigma: np.ndarray):
        self.p, self.law = panel, law
        L = panel.n_layers
        c1, c2, self.logdet = ar1_coefficients(rho[panel.layer], panel.gap)
        s = sigma[panel.layer]
        self.A = c1 / (panel.r * s)
        self.B = np.zeros_like(c2)
        self.B[1:] = c2[1:] / (panel.r[:-1] * s[1:])
        self.w1 = self.W(np.ones_like(panel.y))
        self.hw = np.bincount(panel.layer, self.w1 * self.w1, L)
        self.set_y(panel.y)

    def W(self, v: np.ndarray) -> np.ndarray:
        """Whiten along the last axis (``v`` of shape ``(N,)`` or ``(p, N)``)."""
        out = self.A * v
        out[..., 1:] -= self.B[1:] * v[..., :-1]
        return out

    def _project(self, v: np.ndarray) -> np.ndarray:
        """Remove the per-layer amplitude direction ``w1`` from a whitened vector."""
        lay = self.p.layer
        return v - self.w1 * np.take(np.bincount(lay, self.w1 * v, self.p.n_layers) / self.hw, lay)

    def set_y(self, y: np.ndarray) -> None:
        self.zy = self.W(y)
        self._key = None

    def _eval(self, z):
        key = z.tobytes()
        if key != self._key:
            g, G = self.law.log_f(self.p.epochs, z)
            col = self.p.col
            self._g = np.take(g, col)
            self._Gt = np.take(np.ascontiguousarray(G.T), col, axis=1)
            self._Wg = self.W(self._g)
            self._key = key
        return self._g, self._Gt

    def amplitudes(self, z) -> np.ndarray:
        self._eval(z)
        e0 = self.zy - self._Wg
        return np.bincount(self.p.layer, self.w1 * e0, self.p.n_layers) / self.hw

    def fun(self, z) -> np.ndarray:
        self._eval(z)
        return self._project(self.zy - self._Wg)

    def jac_rows(self, z) -> np.ndarray:
        """Jacobian as ``(p, N)``."""
        _, Gt = self._eval(z)
        WG = self.W(Gt)
        for j in range(WG.shape[0]):
            WG[j] = -self._project(WG[j])
        return WG

    def jac(self, z) -> np.ndarray:
        return self.jac_rows(z).T


def _solve(prob: _Problem, z0: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """``least_squares`` (trust-region reflective, bounded) from ``z0`` moved inside the box."""
    pad = 1e-9 * (1 + np.abs(np.where(np.isfinite(lo), lo, 0)) + np.abs(np.where(np.isfinite(hi), hi, 0)))
    z0 = np.clip(np.where(np.isfinite(z0), z0, 0.0), lo + pad, hi - pad)
    return optimize.least_squares(prob.fun, z0, jac=prob.jac, bounds=(lo, hi), method="trf",
                                  x_scale="jac")


def _innovations(prob: _Problem, panel: Panel, z, rho):
    """Standardised residuals u = (y - a - g)/r and their whitened version (unscaled)."""
    a = prob.amplitudes(z)
    g, _ = prob._eval(z)
    u = (panel.y - a[panel.layer] - g) / panel.r
    c1, c2, _ = ar1_coefficients(rho[panel.layer], panel.gap)
    e = c1 * u
    e[1:] -= c2[1:] * u[:-1]
    return u, e, a


def _ljung_box(e: np.ndarray, layer: np.ndarray, L: int) -> list:
    out = []
    for i in range(L):
        x = e[layer == i]
        x = x - x.mean()
        n = x.size
        m = int(min(LJUNG_BOX_LAGS, n // 5))
        if m < 2:
            out.append(None)
            continue
        d = x @ x
        r = np.array([x[k:] @ x[:-k] / d for k in range(1, m + 1)])
        q = n * (n + 2) * np.sum(r ** 2 / (n - np.arange(1, m + 1)))
        out.append(float(stats.chi2.sf(q, m - 1)))
    return out


def fit_law(panel: Panel, law: str, *, noise_model: NoiseModel = "ar1",
            uncertainty: Uncertainty = "sandwich", level: float = 0.95, n_boot: int = 200,
            rng: np.random.Generator | int | None = None, z0: np.ndarray | None = None) -> LawFit:
    """Fit ``law`` jointly to all layers of ``panel`` (shared shape, per-layer amplitude).

    Parameters
    ----------
    panel : Panel
        From :func:`build_panel`.
    law : str
        One of :data:`analysis.cooling.laws.LAW_NAMES`.
    noise_model : {"ar1", "white"}
    uncertainty : {"sandwich", "bootstrap", "jacobian"}
    level : float
        Confidence level of the intervals.
    n_boot : int
        Bootstrap resamples (``uncertainty="bootstrap"`` only).
    rng : numpy Generator or seed
        Randomness of the bootstrap.
    z0 : ndarray, optional
        Starting internal parameters (otherwise :func:`initial_guess`).

    Returns
    -------
    LawFit
    """
    lw = get_law(law)
    check_choice("noise_model", noise_model, ("ar1", "white"))
    check_choice("uncertainty", uncertainty, ("sandwich", "bootstrap", "jacobian"))
    check_probability("level", level)
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    L, lay = panel.n_layers, panel.layer
    lo, hi = lw.bounds(panel.epochs.min(), panel.epochs.max())
    # starting points from the layer-averaged, per-layer-centred log signal
    yc = panel.y - (np.bincount(lay, panel.y, L) / np.bincount(lay, minlength=L))[lay]
    ybar = np.bincount(panel.col, yc, panel.epochs.size) / np.maximum(
        np.bincount(panel.col, minlength=panel.epochs.size), 1)
    present = np.bincount(panel.col, minlength=panel.epochs.size) > 0
    starts = [z0] if z0 is not None else initial_guess(law, panel.epochs[present], ybar[present])

    rho, sigma = np.zeros(L), np.ones(L)
    prob = _Problem(panel, lw, rho, sigma)
    res = min((_solve(prob, s, lo, hi) for s in starts), key=lambda r: r.cost)
    for _ in range(FGLS_MAX_ITER):
        u, _, _ = _innovations(prob, panel, res.x, rho)
        new_rho = estimate_rho(u, panel.gap, lay, L) if noise_model == "ar1" else rho
        _, e, _ = _innovations(prob, panel, res.x, new_rho)
        new_sigma = np.sqrt(np.bincount(lay, e * e, L) / np.bincount(lay, minlength=L))
        done = (np.max(np.abs(new_rho - rho)) < RHO_TOL
                and np.max(np.abs(np.log(new_sigma / sigma))) < RHO_TOL)
        rho, sigma = new_rho, new_sigma
        prob = _Problem(panel, lw, rho, sigma)
        res = _solve(prob, res.x, lo, hi)
        if done:
            break
    z = res.x
    # profile sigma at the final estimate (closed form), then likelihood and scores
    _, e_raw, a = _innovations(prob, panel, z, rho)
    sigma = np.sqrt(np.bincount(lay, e_raw * e_raw, L) / np.bincount(lay, minlength=L))
    prob = _Problem(panel, lw, rho, sigma)
    e = prob.fun(z)
    J = prob.jac_rows(z).T
    ll_point = (-0.5 * np.log(2 * np.pi) - np.log(sigma[lay]) - 0.5 * e * e + prob.logdet
                - np.log(panel.r))
    pointwise = np.bincount(panel.col, ll_point, panel.epochs.size)
    loglik = float(pointwise.sum())
    n_obs = int(panel.y.size)
    k = lw.n_params + 2 * L + (L if noise_model == "ar1" else 0)

    H = J.T @ J
    Hinv = np.linalg.pinv(H)
    S = np.column_stack([np.bincount(panel.col, J[:, j] * e, panel.epochs.size)
                         for j in range(J.shape[1])])
    cov_sandwich = Hinv @ hac_covariance(S) @ Hinv
    cov_model = Hinv * float(e @ e) / max(n_obs - k, 1)
    # composite-likelihood effective dimension of the shape parameters, tr(H^-1 Omega)
    # (Varin and Vidoni 2005): p when the noise model is right, larger when the layers are
    # correlated or the residuals more persistent than the AR(1) model says.  Each eigenvalue
    # of H^-1 Omega is floored at 1 so that a direction the data do not identify (t_c at the
    # end of the window: H singular) still costs a full parameter.  The criteria use it.
    eig = np.real(np.linalg.eigvals(cov_sandwich @ H))
    p_eff = float(np.sum(np.maximum(eig, 1.0)))
    with np.errstate(divide="ignore", invalid="ignore"):
        inflation = np.where(np.diag(cov_model) > 0, np.diag(cov_sandwich) / np.diag(cov_model), 1.0)
    boot, n_failed = None, 0
    if uncertainty == "jacobian":
        cov = cov_model
    elif uncertainty == "sandwich":
        cov = cov_sandwich
    else:
        check_int("n_boot", n_boot, minimum=10)
        from .bootstrap import bootstrap_fits   # bootstrap builds on this module's problem

        boot, boot_se, n_failed = bootstrap_fits(prob, panel, z, rho, sigma, e, lo, hi, n_boot,
                                                 np.random.default_rng(rng), noise_model, k)
        cov = np.atleast_2d(np.cov(boot, rowvar=False))
        se0 = np.sqrt(np.diag(Hinv) * float(e @ e) / max(n_obs - k, 1))

    se_int = np.sqrt(np.clip(np.diag(cov), 0, None))
    q = stats.norm.ppf(0.5 + level / 2)
    if boot is not None:
        # symmetric percentile-t: the level-quantile of |z* - z| / se* times the model-based se;
        # a parameter at a bound (se* = 0) falls back to the percentile interval
        with np.errstate(divide="ignore", invalid="ignore"):
            tstat = np.abs(boot - z) / boot_se
        studentised = np.all(boot_se > 0, axis=0) & (se0 > 0)
        crit = np.where(studentised, np.quantile(np.where(boot_se > 0, tstat, 0.0), level, axis=0), 0.0)
        pct = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2], axis=0).T
        ci_int = np.where(studentised[:, None],
                          np.column_stack([z - crit * se0, z + crit * se0]), pct)
    else:
        ci_int = np.column_stack([z - q * se_int, z + q * se_int])
    params = lw.to_natural(z)
    stderr, ci = {}, {}
    for j, (name, lg) in enumerate(zip(lw.params, lw.log_params)):
        stderr[name] = float(params[name] * se_int[j] if lg else se_int[j])
        with np.errstate(over="ignore"):        # an unidentified parameter may have an inf bound
            lo_c, hi_c = (np.exp(ci_int[j]) if lg else ci_int[j])
        ci[name] = (float(lo_c), float(hi_c))
    tol = AT_BOUND_RTOL * (1 + np.abs(np.where(np.isfinite(lo), lo, 0)))
    at_bound = [lw.params[j] for j in range(lw.n_params)
                if z[j] - lo[j] < tol[j] or hi[j] - z[j] < tol[j]]
    g, _ = prob._eval(z)
    resid = panel.y - a[lay] - g
    gof = {"rms_log_residual": {panel.layers[i]: float(np.sqrt(np.mean(resid[lay == i] ** 2)))
                                for i in range(L)},
           "ljung_box_p": dict(zip(panel.layers, _ljung_box(e, lay, L))),
           "converged": bool(res.success)}
    if law == "stretched_then_exponential":
        qc = (params["t_c"] / params["tau"]) ** params["beta"]
        params["tau_late"] = float(params["t_c"] / (params["beta"] * qc))
    a = prob.amplitudes(z)
    return LawFit(law, params, stderr, ci, z, cov, dict(zip(panel.layers, map(float, a))),
                  dict(zip(panel.layers, map(float, rho))), dict(zip(panel.layers, map(float, sigma))),
                  loglik, n_obs, k, (float(panel.epochs.min()), float(panel.epochs.max())), level,
                  noise_model, uncertainty, at_bound, gof, pointwise, boot, n_failed, p_eff,
                  dict(zip(lw.params, map(float, inflation))))
