r"""Joint and per-layer fits of a decay law on the late window.

Model (section 2.1 of the paper): for layer ``I`` at epoch ``t``

.. math::

    y_{It} = \ln s_I(t) = a_I + g(t;\theta) + r_{It}\,\sigma_I\,u_{It},

with :math:`g = \ln f` a law of :mod:`analysis.cooling.laws` shared by all layers,
per-layer log amplitudes :math:`a_I = \ln A_I`, a known relative noise scale
:math:`r_{It}` (``weights="logged"``: the logged ``signal_std / signal`` smoothed over
:data:`~analysis.cooling.panel.WEIGHT_SMOOTH` epochs, i.e. the standard error of the log
of an epoch mean up to a constant; ``"uniform"``: 1),
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

:func:`fit_law` runs the stages, each a function of its own: :func:`start_points`,
:func:`fgls` (the FGLS/AR(1) weighted fit), :func:`log_likelihood`, :func:`covariances`
(HAC sandwich, model-based Jacobian, effective dimension), :func:`intervals` (incl. the
block bootstrap), :func:`natural_scale`, :func:`goodness_of_fit`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import stats

from anisotropy.validation import check_choice, check_int, check_probability

from .bootstrap import bootstrap_fits, percentile_t_intervals
from .laws import Law, LawLike, get_law, initial_guess
from .panel import MIN_POINTS_PER_LAYER, WEIGHT_SMOOTH, Panel, Weights, build_panel
from .problem import WhitenedProblem, innovations, solve
from .timeseries import estimate_rho, hac_covariance

__all__ = [
    "NoiseModel",
    "Uncertainty",
    "Weights",
    "Panel",
    "LawFit",
    "build_panel",
    "fit_law",
    "MIN_POINTS_PER_LAYER",
    "WEIGHT_SMOOTH",
    "GlsEstimate",
    "Covariances",
    "Intervals",
    "start_points",
    "fgls",
    "n_parameters",
    "log_likelihood",
    "covariances",
    "intervals",
    "natural_scale",
    "params_at_bound",
    "goodness_of_fit",
]

NoiseModel = Literal["ar1", "white"]
Uncertainty = Literal["sandwich", "bootstrap", "jacobian"]

#: feasible-GLS iterations stop when no rho moves by more than this (a change of 1e-3 in rho
#: changes the long-run variance factor (1+rho)/(1-rho) by < 2% even at rho = 0.9) ...
RHO_TOL = 1e-3
#: ... or after this many refits (FGLS converges in 2-3 in practice).
FGLS_MAX_ITER = 6
#: Ljung-Box lags on the whitened residuals (capped at a fifth of the series length).
LJUNG_BOX_LAGS = 10
#: a parameter closer than this (relative) to a bound of its box is reported as at the bound.
AT_BOUND_RTOL = 1e-6


@dataclass
class LawFit:
    """Result of fitting one law to a panel (jointly over its layers).

    ``params``, ``stderr``, ``ci`` are keyed by the law's natural parameter names (``params``
    also holds the law's derived quantities); ``log_amplitudes``, ``rho`` and ``sigma`` by
    layer.  ``loglik`` is the Gaussian
    log-likelihood of the log values (AR(1) or white, layers independent), ``n_params`` counts
    shape parameters, amplitudes, scales and AR coefficients.  Because the layers are in
    general correlated, that likelihood is a composite likelihood; ``aic`` and ``bic`` count
    the shape parameters by their effective dimension ``tr(H^-1 Omega)`` (Varin and Vidoni
    2005), ``inflation`` is the ratio of sandwich to model-based variance per parameter.
    ``model`` is the fitted :class:`~analysis.cooling.laws.Law` (``law`` is its name).
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
    pointwise: np.ndarray = field(repr=False)  # log-lik per epoch of the window
    boot: np.ndarray | None = field(default=None, repr=False)
    n_boot_failed: int = 0
    shape_dimension: float = 0.0  # sum of max(1, eigenvalues of H^-1 Omega)
    inflation: dict = field(default_factory=dict)  # sandwich / model variance per parameter
    model: Law | None = field(default=None, repr=False, compare=False)

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

    @property
    def law_model(self) -> Law:
        """The fitted law: ``model``, or the registered law named ``law``."""
        return self.model if self.model is not None else get_law(self.law)

    def to_dict(self) -> dict:
        return {
            "params": self.params,
            "stderr": self.stderr,
            "ci": {k: list(v) for k, v in self.ci.items()},
            "level": self.level,
            "aic": self.aic,
            "bic": self.bic,
            "loglik": self.loglik,
            "n_obs": self.n_obs,
            "n_params": self.n_params,
            "n_params_effective": self.n_params_effective,
            "variance_inflation": self.inflation,
            "window": list(self.window),
            "log_amplitudes": self.log_amplitudes,
            "rho": self.rho,
            "sigma": self.sigma,
            "noise_model": self.noise_model,
            "uncertainty": self.uncertainty,
            "at_bound": self.at_bound,
            "gof": self.gof,
            **(
                {"n_boot": int(self.boot.shape[0]), "n_boot_failed": self.n_boot_failed}
                if self.boot is not None
                else {}
            ),
        }


# ------------------------------------------------------------------ stage 1: start points
def start_points(panel: Panel, law: Law, z0: np.ndarray | None = None) -> list[np.ndarray]:
    """Starting internal parameters: ``[z0]``, or the law's closed-form guesses from the
    layer-averaged, per-layer-centred log signal."""
    if z0 is not None:
        return [z0]
    L, lay = panel.n_layers, panel.layer
    yc = panel.y - (np.bincount(lay, panel.y, L) / np.bincount(lay, minlength=L))[lay]
    ybar = np.bincount(panel.col, yc, panel.epochs.size) / np.maximum(
        np.bincount(panel.col, minlength=panel.epochs.size), 1
    )
    present = np.bincount(panel.col, minlength=panel.epochs.size) > 0
    return initial_guess(law, panel.epochs[present], ybar[present])


# ------------------------------------------------------------------ stage 2: FGLS / AR(1) fit
@dataclass
class GlsEstimate:
    """The iterated feasible-GLS estimate (:func:`fgls`).

    ``problem`` is the whitened problem at the final ``(rho, sigma)`` (``sigma`` profiled at
    ``z``), ``e`` its residuals and ``jac`` their Jacobian ``(N, p)``; ``amplitudes`` are the
    profiled log amplitudes of the last refit; ``lo``, ``hi`` the box of the law.
    """

    law: Law
    z: np.ndarray
    rho: np.ndarray
    sigma: np.ndarray
    problem: WhitenedProblem
    e: np.ndarray
    jac: np.ndarray
    amplitudes: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    converged: bool


def fgls(
    panel: Panel, law: Law, starts: list[np.ndarray], *, noise_model: NoiseModel = "ar1"
) -> GlsEstimate:
    """Maximum likelihood as iterated feasible GLS.

    Fit at ``rho = 0, sigma = 1`` from the best of ``starts``, then re-estimate ``rho``
    (``noise_model="ar1"``) and ``sigma`` from the innovations and refit, until they move by
    less than :data:`RHO_TOL` or :data:`FGLS_MAX_ITER` refits; ``sigma`` is finally profiled
    at the estimate in closed form.
    """
    L, lay = panel.n_layers, panel.layer
    lo, hi = law.bounds(panel.epochs.min(), panel.epochs.max())
    rho, sigma = np.zeros(L), np.ones(L)
    prob = WhitenedProblem(panel, law, rho, sigma)
    res = min((solve(prob, s, lo, hi) for s in starts), key=lambda r: r.cost)
    for _ in range(FGLS_MAX_ITER):
        u, _, _ = innovations(prob, panel, res.x, rho)
        new_rho = estimate_rho(u, panel.gap, lay, L) if noise_model == "ar1" else rho
        _, e, _ = innovations(prob, panel, res.x, new_rho)
        new_sigma = np.sqrt(np.bincount(lay, e * e, L) / np.bincount(lay, minlength=L))
        done = (
            np.max(np.abs(new_rho - rho)) < RHO_TOL
            and np.max(np.abs(np.log(new_sigma / sigma))) < RHO_TOL
        )
        rho, sigma = new_rho, new_sigma
        prob = WhitenedProblem(panel, law, rho, sigma)
        res = solve(prob, res.x, lo, hi)
        if done:
            break
    z = res.x
    _, e_raw, a = innovations(prob, panel, z, rho)
    sigma = np.sqrt(np.bincount(lay, e_raw * e_raw, L) / np.bincount(lay, minlength=L))
    prob = WhitenedProblem(panel, law, rho, sigma)
    return GlsEstimate(
        law=law,
        z=z,
        rho=rho,
        sigma=sigma,
        problem=prob,
        e=prob.fun(z),
        jac=prob.jac_rows(z).T,
        amplitudes=a,
        lo=lo,
        hi=hi,
        converged=bool(res.success),
    )


# ------------------------------------------------------------------ stage 3: likelihood
def n_parameters(law: Law, n_layers: int, noise_model: NoiseModel) -> int:
    """Estimated parameters: shape, an amplitude and a scale per layer (+ an AR coefficient)."""
    return law.n_params + 2 * n_layers + (n_layers if noise_model == "ar1" else 0)


def log_likelihood(est: GlsEstimate, panel: Panel) -> tuple[np.ndarray, float]:
    """Gaussian (AR(1) or white) log-likelihood of the log values per epoch of the window,
    and its sum."""
    lay = panel.layer
    ll_point = (
        -0.5 * np.log(2 * np.pi)
        - np.log(est.sigma[lay])
        - 0.5 * est.e * est.e
        + est.problem.logdet
        - np.log(panel.r)
    )
    pointwise = np.bincount(panel.col, ll_point, panel.epochs.size)
    return pointwise, float(pointwise.sum())


# ------------------------------------------------------------------ stage 4: covariances
@dataclass
class Covariances:
    """Covariances of the internal parameters (:func:`covariances`)."""

    H: np.ndarray  # Gauss-Newton Hessian J^T J
    Hinv: np.ndarray
    sandwich: np.ndarray  # H^-1 Omega H^-1, Omega the Newey-West covariance of the scores
    model: np.ndarray  # s^2 H^-1
    shape_dimension: float  # sum_j max(1, eig_j(H^-1 Omega))
    inflation: np.ndarray  # diag(sandwich) / diag(model)


def covariances(est: GlsEstimate, panel: Panel, *, k: int) -> Covariances:
    """HAC sandwich and model-based (Jacobian) covariances at the estimate; ``k`` counts all
    estimated parameters (the degrees of freedom of ``s^2``)."""
    e, J = est.e, est.jac
    n_obs = int(panel.y.size)
    H = J.T @ J
    Hinv = np.linalg.pinv(H)
    S = np.column_stack(
        [np.bincount(panel.col, J[:, j] * e, panel.epochs.size) for j in range(J.shape[1])]
    )
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
        inflation = np.where(
            np.diag(cov_model) > 0, np.diag(cov_sandwich) / np.diag(cov_model), 1.0
        )
    return Covariances(
        H=H,
        Hinv=Hinv,
        sandwich=cov_sandwich,
        model=cov_model,
        shape_dimension=p_eff,
        inflation=inflation,
    )


# ------------------------------------------------------------------ stage 5: intervals
@dataclass
class Intervals:
    """Covariance, standard errors and intervals of the internal parameters (:func:`intervals`)."""

    cov: np.ndarray
    se: np.ndarray  # (p,)
    ci: np.ndarray  # (p, 2)
    boot: np.ndarray | None = None
    n_boot_failed: int = 0


def intervals(
    est: GlsEstimate,
    covs: Covariances,
    panel: Panel,
    *,
    uncertainty: Uncertainty,
    level: float,
    k: int,
    noise_model: NoiseModel = "ar1",
    n_boot: int = 200,
    rng: np.random.Generator | int | None = None,
) -> Intervals:
    """Normal intervals from the sandwich or the Jacobian covariance, or symmetric percentile-t
    intervals of the block bootstrap (:mod:`analysis.cooling.bootstrap`)."""
    z = est.z
    if uncertainty == "bootstrap":
        check_int("n_boot", n_boot, minimum=10)
        boot, boot_se, n_failed = bootstrap_fits(
            est.problem,
            panel,
            z,
            est.rho,
            est.sigma,
            est.e,
            est.lo,
            est.hi,
            n_boot,
            np.random.default_rng(rng),
            noise_model,
            k,
        )
        cov = np.atleast_2d(np.cov(boot, rowvar=False))
        se0 = np.sqrt(np.diag(covs.Hinv) * float(est.e @ est.e) / max(int(panel.y.size) - k, 1))
        return Intervals(
            cov=cov,
            se=np.sqrt(np.clip(np.diag(cov), 0, None)),
            ci=percentile_t_intervals(z, boot, boot_se, se0, level),
            boot=boot,
            n_boot_failed=n_failed,
        )
    cov = covs.model if uncertainty == "jacobian" else covs.sandwich
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    q = stats.norm.ppf(0.5 + level / 2)
    return Intervals(cov=cov, se=se, ci=np.column_stack([z - q * se, z + q * se]))


def natural_scale(law: Law, z: np.ndarray, iv: Intervals) -> tuple[dict, dict, dict]:
    """``(params, stderr, ci)`` keyed by the natural parameter names (delta method for the
    standard errors of log-parameters, intervals mapped end point by end point)."""
    params = law.to_natural(z)
    stderr, ci = {}, {}
    for j, (name, lg) in enumerate(zip(law.params, law.log_params, strict=True)):
        stderr[name] = float(params[name] * iv.se[j] if lg else iv.se[j])
        with np.errstate(over="ignore"):  # an unidentified parameter may have an inf bound
            lo_c, hi_c = np.exp(iv.ci[j]) if lg else iv.ci[j]
        ci[name] = (float(lo_c), float(hi_c))
    return params, stderr, ci


# ------------------------------------------------------------------ stage 6: goodness of fit
def params_at_bound(law: Law, z: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> list[str]:
    """Natural names of the parameters within :data:`AT_BOUND_RTOL` of their box."""
    tol = AT_BOUND_RTOL * (1 + np.abs(np.where(np.isfinite(lo), lo, 0)))
    return [
        law.params[j] for j in range(law.n_params) if z[j] - lo[j] < tol[j] or hi[j] - z[j] < tol[j]
    ]


def _ljung_box(e: np.ndarray, layer: np.ndarray, L: int) -> list[float | None]:
    out: list[float | None] = []
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
        q = n * (n + 2) * np.sum(r**2 / (n - np.arange(1, m + 1)))
        out.append(float(stats.chi2.sf(q, m - 1)))
    return out


def goodness_of_fit(est: GlsEstimate, panel: Panel) -> dict:
    """RMS log residual per layer, Ljung-Box p values of the whitened residuals, convergence."""
    L, lay = panel.n_layers, panel.layer
    g, _ = est.problem.curve(est.z)
    resid = panel.y - est.amplitudes[lay] - g
    return {
        "rms_log_residual": {
            panel.layers[i]: float(np.sqrt(np.mean(resid[lay == i] ** 2))) for i in range(L)
        },
        "ljung_box_p": dict(zip(panel.layers, _ljung_box(est.e, lay, L), strict=True)),
        "converged": est.converged,
    }


# ------------------------------------------------------------------ all stages
def fit_law(
    panel: Panel,
    law: LawLike,
    *,
    noise_model: NoiseModel = "ar1",
    uncertainty: Uncertainty = "sandwich",
    level: float = 0.95,
    n_boot: int = 200,
    rng: np.random.Generator | int | None = None,
    z0: np.ndarray | None = None,
) -> LawFit:
    """Fit ``law`` jointly to all layers of ``panel`` (shared shape, per-layer amplitude).

    Parameters
    ----------
    panel : Panel
        From :func:`build_panel`.
    law : str or Law
        One of :data:`analysis.cooling.laws.LAW_NAMES`, or a :class:`~analysis.cooling.laws.Law`.
    noise_model : {"ar1", "white"}
    uncertainty : {"sandwich", "bootstrap", "jacobian"}
    level : float
        Confidence level of the intervals.
    n_boot : int
        Bootstrap resamples (``uncertainty="bootstrap"`` only).
    rng : numpy Generator or seed
        Randomness of the bootstrap.
    z0 : ndarray, optional
        Starting internal parameters (otherwise the law's ``initial_guess``).

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
    est = fgls(panel, lw, start_points(panel, lw, z0), noise_model=noise_model)
    pointwise, loglik = log_likelihood(est, panel)
    k = n_parameters(lw, panel.n_layers, noise_model)
    covs = covariances(est, panel, k=k)
    iv = intervals(
        est,
        covs,
        panel,
        uncertainty=uncertainty,
        level=level,
        k=k,
        noise_model=noise_model,
        n_boot=n_boot,
        rng=rng,
    )
    params, stderr, ci = natural_scale(lw, est.z, iv)
    params.update(lw.derived(params))
    layers = panel.layers
    return LawFit(
        law=lw.name,
        params=params,
        stderr=stderr,
        ci=ci,
        z=est.z,
        cov=iv.cov,
        log_amplitudes=dict(zip(layers, map(float, est.problem.amplitudes(est.z)), strict=True)),
        rho=dict(zip(layers, map(float, est.rho), strict=True)),
        sigma=dict(zip(layers, map(float, est.sigma), strict=True)),
        loglik=loglik,
        n_obs=int(panel.y.size),
        n_params=k,
        window=(float(panel.epochs.min()), float(panel.epochs.max())),
        level=level,
        noise_model=noise_model,
        uncertainty=uncertainty,
        at_bound=params_at_bound(lw, est.z, est.lo, est.hi),
        gof=goodness_of_fit(est, panel),
        pointwise=pointwise,
        boot=iv.boot,
        n_boot_failed=iv.n_boot_failed,
        shape_dimension=covs.shape_dimension,
        inflation=dict(zip(lw.params, map(float, covs.inflation), strict=True)),
        model=lw,
    )
