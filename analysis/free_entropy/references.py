r"""Exact local free entropies of simple losses: the references for the Monte Carlo estimators.

All functions compute, in float64 and in log space, the (partial) local free
entropy of eqs 10/16/18 of the paper with an inverse temperature ``beta``
(the delta method of the estimator: variance and bias),

.. math::

    F(W) = -\log \int d^{|U|}x \; e^{-\beta L(W + x)}\, K(x)
         = -\log Z_K - \log \mathbb{E}_{x \sim K/Z_K}\big[e^{-\beta L(W+x)}\big],

where ``x`` runs over the ``|U|`` smoothed coordinates (``mask``), the other
coordinates stay at ``W`` and contribute ``beta L_i(W_i)`` for separable
losses.  The kernels are the box ``K_{R,inf}`` (``Z_K = (2R)^{|U|}``), the
finite-``k`` kernel ``K_{R,k}`` of eq 6 (``Z_K = Z_1(R,k)^{|U|}``) and the heat
kernel ``exp(-(gamma/2)|x|^2)`` of eq 1 (``Z_K = (2 pi/gamma)^{|U|/2}``).

Losses covered:

* separable quadratic ``L(W) = 1/2 sum_i lam_i (W_i - c_i)^2`` with the box
  (closed form with normal CDF differences), the heat kernel (closed form) and
  finite ``k`` (1-D quadrature per coordinate);
* linear ``L(W) = g . W`` with the box (``sinh(x)/x`` per coordinate);
* non-diagonal quadratic ``L(W) = 1/2 (W-c)^T A (W-c)`` with the box
  (a normal box probability).

:class:`WeightMoments` gives the first two moments of the Monte Carlo weights
``exp(-beta L)`` under the normalised kernel, for the delta-method predictions
of the estimator's bias ``relvar/(2y)`` and standard error ``sqrt(relvar/y)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import integrate, special, stats

from anisotropy.kernels import check_mask, heat_log_normaliser, log_normaliser
from anisotropy.validation import check_positive, check_sharpness

__all__ = [
    "quadratic_loss",
    "linear_loss",
    "full_quadratic_loss",
    "quadratic_box_free_entropy",
    "quadratic_gaussian_free_entropy",
    "quadratic_finite_k_free_entropy",
    "linear_box_free_entropy",
    "quadratic_full_box_free_entropy",
    "quadratic_paper_m_limit",
    "WeightMoments",
    "quadratic_box_weight_moments",
    "quadratic_gaussian_weight_moments",
    "quadratic_finite_k_weight_moments",
    "log_normal_interval",
    "log_sinhc",
]

LOG_2PI = math.log(2.0 * math.pi)

# Gauss-Legendre rule for "narrow" normal intervals (b - a <= 1 and
# |mid| (b - a) <= 8): there the integrand exp(-t^2/2) is an entire function
# varying by at most e^8 over the interval, and a 24-node rule is exact to
# machine precision (error ~ 4^48/48! ~ 1e-32), whereas the difference of two
# log-CDFs would lose digits to cancellation.
_NARROW_WIDTH = 1.0
_NARROW_SPREAD = 8.0
_GL_X, _GL_W = np.polynomial.legendre.leggauss(24)

# Below this |x|, log(sinh x / x) is log1p of a Taylor series (the closed form
# cancels there: relative error ~ eps/x^2); above it the value is >= 0.04 and
# the closed form is accurate to a few eps.
_SINHC_SERIES = 0.5

# Quadrature tolerances for the finite-k and non-diagonal references: quad is
# asked for relative accuracy 1e-11 (abs. 0 so tiny integrals keep relative
# accuracy); its typical achieved accuracy is ~1e-13 on these smooth integrands.
_QUAD_EPSREL = 1e-11
_QUAD_LIMIT = 400
# The logistic tail of K_{R,k} beyond R + 40/(2k) carries e^-40 ~ 4e-18 of the
# mass; breakpoints at +-R +- _EDGE/(2k) keep quad from stepping over the edges.
_EDGE = 40.0
# Half-width, in standard deviations, of the window around the Gaussian peak
# handed to quad as breakpoints (mass beyond 12 sd: ~3e-33).
_PEAK_SD = 12.0


# --------------------------------------------------------------------- losses
def quadratic_loss(lam: Any, c: Any) -> Callable[[np.ndarray], np.ndarray]:
    r"""Separable quadratic ``L(W) = 1/2 sum_i lam_i (W_i - c_i)^2``.

    Parameters
    ----------
    lam, c : array_like, shape (N,)
        Curvatures (``>= 0``) and centres.

    Returns
    -------
    callable
        Maps an array of shape ``(..., N)`` to losses of shape ``(...)``.
    """
    lam, c = _vectors(lam=lam, c=c)
    _nonneg("lam", lam)

    def loss(W: np.ndarray) -> np.ndarray:
        W = np.asarray(W, dtype=np.float64)
        return 0.5 * np.sum(lam * (W - c) ** 2, axis=-1)

    return loss


def linear_loss(g: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Linear loss ``L(W) = g . W``; maps ``(..., N)`` to ``(...)``."""
    (g,) = _vectors(g=g)

    def loss(W: np.ndarray) -> np.ndarray:
        return np.asarray(W, dtype=np.float64) @ g

    return loss


def full_quadratic_loss(A: Any, c: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Non-diagonal quadratic ``L(W) = 1/2 (W-c)^T A (W-c)``; maps ``(..., N)`` to ``(...)``."""
    A, c = _matrix(A, c)

    def loss(W: np.ndarray) -> np.ndarray:
        d = np.asarray(W, dtype=np.float64) - c
        return 0.5 * np.einsum("...i,ij,...j->...", d, A, d)

    return loss


# ------------------------------------------------------------------- helpers
def _vectors(**arrays: Any) -> list[np.ndarray]:
    out = []
    n = None
    for name, a in arrays.items():
        a = np.asarray(a, dtype=np.float64)
        if a.ndim != 1:
            raise ValueError(f"{name} must be a 1-D array of shape (N,), got shape {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN or inf; it must be finite")
        if n is not None and a.shape[0] != n:
            raise ValueError(f"{name} must have shape ({n},) like the other vectors, got {a.shape}")
        n = a.shape[0]
        out.append(a)
    return out


def _nonneg(name: str, a: np.ndarray) -> None:
    if (a < 0).any():
        raise ValueError(f"{name} must be >= 0 elementwise, got min {a.min()!r}")


def _matrix(A: Any, c: Any) -> tuple[np.ndarray, np.ndarray]:
    (c,) = _vectors(c=c)
    A = np.asarray(A, dtype=np.float64)
    n = c.shape[0]
    if A.shape != (n, n):
        raise ValueError(f"A must have shape ({n}, {n}) to match c, got {A.shape}")
    if not np.isfinite(A).all():
        raise ValueError("A contains NaN or inf; it must be finite")
    if not np.allclose(A, A.T, rtol=1e-12, atol=1e-14 * np.abs(A).max(initial=1.0)):
        raise ValueError("A must be symmetric")
    return A, c


def _mask(mask: Any, n: int) -> np.ndarray:
    if mask is None:
        return np.ones(n, dtype=bool)
    mask = check_mask(np.asarray(mask), n)
    return mask


def _beta(beta: Any) -> float:
    return check_positive("beta", beta)


def log_sinhc(x: Any) -> np.ndarray:
    r"""``log(sinh(x)/x)`` elementwise, stable for tiny and huge ``|x|`` (``0`` at ``x = 0``).

    ``|x| < 1/2``: ``log1p`` of the Taylor series of ``sinh(x)/x - 1`` (terms up to
    ``x^18/19!``, truncation error < 1e-22 there); otherwise
    ``|x| + log(1 - e^{-2|x|}) - log 2 - log|x|``.
    """
    x = np.abs(np.asarray(x, dtype=np.float64))
    small = x < _SINHC_SERIES
    xs = np.where(small, 1.0, x)
    big = xs + np.log(-np.expm1(-2.0 * xs)) - math.log(2.0) - np.log(xs)
    x2 = np.where(small, x * x, 0.0)
    term = np.ones_like(x2)
    series = np.zeros_like(x2)
    for n in range(1, 10):
        term = term * x2 / ((2 * n) * (2 * n + 1))
        series = series + term
    return np.where(small, np.log1p(series), big)


def _log1mexp(d: np.ndarray) -> np.ndarray:
    """``log(1 - e^d)`` for ``d <= 0`` (Maechler's switch at ``-log 2``)."""
    d = np.minimum(d, -1e-300)
    return np.where(d > -math.log(2.0), np.log(-np.expm1(d)), np.log1p(-np.exp(d)))


def log_normal_interval(a: Any, b: Any) -> np.ndarray:
    r"""``log(Phi(b) - Phi(a))`` for ``a <= b``, elementwise, accurate everywhere.

    Intervals are reflected to the left half-line (``Phi(b)-Phi(a) =
    Phi(-a)-Phi(-b)``) so that log-CDFs are taken where they are accurate; then
    ``log Phi(b) + log(1 - exp(log Phi(a) - log Phi(b)))``.  Narrow intervals
    (width <= 1 and |mid| width <= 8), where that difference cancels, use a
    24-node Gauss-Legendre rule in log space.  ``a == b`` gives ``-inf``.
    """
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    flip = a + b > 0
    a, b = np.where(flip, -b, a), np.where(flip, -a, b)
    width = b - a
    mid = 0.5 * (a + b)
    narrow = (width <= _NARROW_WIDTH) & (np.abs(mid) * width <= _NARROW_SPREAD)
    with np.errstate(divide="ignore"):
        la, lb = special.log_ndtr(a), special.log_ndtr(b)
        wide = lb + _log1mexp(la - lb)
        half = 0.5 * width
        t = mid[..., None] + half[..., None] * _GL_X
        gl = np.log(half) + special.logsumexp(np.log(_GL_W) - 0.5 * t * t, axis=-1) - 0.5 * LOG_2PI
    out = np.where(narrow, gl, wide)
    return np.where(width > 0, out, -np.inf)


# --------------------------------------------------------- per-coordinate logs
def _log_box_integrals(d: np.ndarray, lam_b: np.ndarray, R: float) -> np.ndarray:
    r"""``log int_{-R}^{R} exp(-(lam_b/2) (d + x)^2) dx`` per coordinate (erf formula)."""
    flat = lam_b == 0
    lb = np.where(flat, 1.0, lam_b)
    t = np.sqrt(lb)
    out = 0.5 * (LOG_2PI - np.log(lb)) + log_normal_interval(t * (d - R), t * (d + R))
    return np.where(flat, math.log(2.0 * R), out)


def _log_gauss_averages(d: np.ndarray, lam_b: np.ndarray, gamma: float) -> np.ndarray:
    r"""``log E[exp(-(lam_b/2)(d + x)^2)]``, ``x ~ N(0, 1/gamma)``, per coordinate (closed form)."""
    s = gamma + lam_b
    return 0.5 * (np.log(gamma) - np.log(s)) - 0.5 * gamma * lam_b * d * d / s


def _log_k_integral_1d(
    d: float, lam_b: float, R: float, k: float, lo: float = -math.inf, hi: float = math.inf
) -> float:
    r"""``log int_lo^hi exp(-(lam_b/2)(d+x)^2) K_{R,k}(x) dx`` by adaptive quadrature."""
    two_k = 2.0 * k

    def log_f(x: Any) -> Any:
        x = np.asarray(x, dtype=np.float64)
        out = -0.5 * lam_b * (d + x) ** 2
        if math.isfinite(k):  # eq 6 in the softplus form of anisotropy.kernels.distance
            out = out - np.logaddexp(0.0, two_k * (x - R)) - np.logaddexp(0.0, -two_k * (x + R))
        return out

    # Breakpoints: the kernel edges (+- R, +- R +- _EDGE/(2k)) and the Gaussian peak.
    pts = [-R, R]
    if math.isfinite(k):
        e = _EDGE / (2.0 * k)
        pts += [-R - e, -R + e, R - e, R + e]
    if lam_b > 0:
        sd = 1.0 / math.sqrt(lam_b)
        pts += [-d, -d - _PEAK_SD * sd, -d + _PEAK_SD * sd]
    pts = sorted({min(max(p, lo), hi) for p in pts if math.isfinite(p)} | {lo, hi})
    pts = [p for p in pts if math.isfinite(p) or p in (lo, hi)]
    inner = [p for p in pts if math.isfinite(p)]
    grid = np.linspace(inner[0], inner[-1], 2001) if len(inner) > 1 else np.array(inner)
    shift = float(max(np.max(log_f(np.array(inner))), np.max(log_f(grid))))
    # Absolute tolerance relative to a crude (trapezoid) estimate of the total, so
    # that pieces carrying a negligible share (the logistic tails) do not
    # exhaust quad on a relative tolerance it cannot reach.
    est = float(np.trapezoid(np.exp(log_f(grid) - shift), grid)) if len(grid) > 1 else 0.0
    epsabs = _QUAD_EPSREL * est
    total = 0.0
    for x0, x1 in zip(pts[:-1], pts[1:], strict=True):
        if x1 <= x0:
            continue
        val, _ = integrate.quad(
            lambda x: math.exp(float(log_f(x)) - shift),
            x0,
            x1,
            epsabs=epsabs,
            epsrel=_QUAD_EPSREL,
            limit=_QUAD_LIMIT,
        )
        total += val
    return shift + math.log(total)


def _split(w: Any, lam: Any, c: Any, mask: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w, lam, c = _vectors(w=w, lam=lam, c=c)
    _nonneg("lam", lam)
    m = _mask(mask, w.shape[0])
    return w - c, lam, m


# ------------------------------------------------------------- free entropies
def quadratic_box_free_entropy(
    w: Any, *, lam: Any, c: Any, R: float, beta: float = 1.0, mask: Any = None
) -> float:
    r"""Exact ``F`` of the quadratic loss with the box kernel ``k = inf`` (eq 18).

    Per smoothed coordinate ``int_{-R}^{R} exp(-(lam'/2)(W + x - c)^2) dx =
    sqrt(pi/(2 lam')) [erf(a(W+R-c)) - erf(a(W-R-c))]`` with ``lam' = beta lam``,
    ``a = sqrt(lam'/2)`` (the delta method of the estimator: variance and bias), evaluated as
    ``sqrt(2 pi/lam') (Phi(b) - Phi(a))`` by :func:`log_normal_interval`
    (relative accuracy ~1e-15 for any ``a R``); ``lam_i = 0`` gives ``2R``.

    Parameters
    ----------
    w, lam, c : array_like, shape (N,)
    R : float
        Half side of the box, ``> 0``.
    beta : float
        Inverse temperature, ``> 0``.
    mask : bool array, shape (N,), optional
        Smoothed coordinates (all if ``None``); the others contribute ``beta L_i(W_i)``.

    Returns
    -------
    float
        ``F = -log Z_K - log E[exp(-beta L(W + dW))]`` with ``Z_K = (2R)^{|U|}``.
    """
    R = check_positive("R", R)
    d, lam, m = _split(w, lam, c, mask)
    lam_b = _beta(beta) * lam
    logs = _log_box_integrals(d[m], lam_b[m], R)
    return float(0.5 * np.sum(lam_b[~m] * d[~m] ** 2) - np.sum(logs))


def quadratic_gaussian_free_entropy(
    w: Any, *, lam: Any, c: Any, gamma: float, beta: float = 1.0, mask: Any = None
) -> float:
    r"""Exact ``F`` of the quadratic loss with the heat kernel ``exp(-(gamma/2)|x|^2)`` (eq 1).

    Per coordinate ``E_{x ~ N(0,1/gamma)} exp(-(lam'/2)(d+x)^2) =
    sqrt(gamma/(gamma+lam')) exp(-gamma lam' d^2 / (2(gamma+lam')))``,
    ``d = W - c``, ``lam' = beta lam``; ``F = -log Z_K - sum log E`` with
    ``Z_K = (2 pi/gamma)^{|U|/2}``.
    """
    gamma = check_positive("gamma", gamma)
    d, lam, m = _split(w, lam, c, mask)
    lam_b = _beta(beta) * lam
    logs = _log_gauss_averages(d[m], lam_b[m], gamma)
    return float(
        0.5 * np.sum(lam_b[~m] * d[~m] ** 2)
        - heat_log_normaliser(gamma, int(m.sum()))
        - np.sum(logs)
    )


def quadratic_finite_k_free_entropy(
    w: Any, *, lam: Any, c: Any, R: float, k: float, beta: float = 1.0, mask: Any = None
) -> float:
    r"""``F`` of the quadratic loss with the finite-``k`` kernel ``K_{R,k}`` (eq 16).

    Each smoothed coordinate's ``log int exp(-beta L_i(W_i + x)) K_{R,k}(x) dx`` is
    computed by :func:`scipy.integrate.quad` (relative tolerance 1e-11) on
    pieces split at the kernel edges and the Gaussian peak, after shifting the
    log-integrand by its maximum.  ``k = inf`` is accepted and equals
    :func:`quadratic_box_free_entropy`.
    """
    R = check_positive("R", R)
    k = check_sharpness(k)
    d, lam, m = _split(w, lam, c, mask)
    lam_b = _beta(beta) * lam
    if math.isinf(k):
        logs = [
            _log_k_integral_1d(di, li, R, k, -R, R) for di, li in zip(d[m], lam_b[m], strict=True)
        ]
    else:
        logs = [_log_k_integral_1d(di, li, R, k) for di, li in zip(d[m], lam_b[m], strict=True)]
    return float(0.5 * np.sum(lam_b[~m] * d[~m] ** 2) - np.sum(logs))


def quadratic_paper_m_limit(
    w: Any, *, lam: Any, c: Any, R: float, k: float = math.inf, beta: float = 1.0, mask: Any = None
) -> float:
    r"""The ``y -> inf`` limit of the paper's ``M`` (eqs 3, 14) for the quadratic loss.

    With ``dW`` uniform in the box of half side ``R`` and the factor
    ``exp(-d^{[U]}(dW))``,

    .. math:: M_\infty = |U| \log(2R) - \log \int_{[-R,R]^{|U|}} e^{-\beta L(W+x)} K_{R,k}(x)\,dx ,

    computed per coordinate by quadrature over ``[-R, R]`` (for ``k = inf`` this
    is ``F + |U| log 2R = F + log Z_K``).
    """
    R = check_positive("R", R)
    k = check_sharpness(k)
    d, lam, m = _split(w, lam, c, mask)
    lam_b = _beta(beta) * lam
    logs = [_log_k_integral_1d(di, li, R, k, -R, R) for di, li in zip(d[m], lam_b[m], strict=True)]
    return float(0.5 * np.sum(lam_b[~m] * d[~m] ** 2) - np.sum(logs) + m.sum() * math.log(2 * R))


def linear_box_free_entropy(
    w: Any, *, g: Any, R: float, beta: float = 1.0, mask: Any = None
) -> float:
    r"""Exact ``F`` of the linear loss ``L = g . W`` with the box kernel.

    ``int_{-R}^{R} exp(-beta g (W + x)) dx = 2R exp(-beta g W) sinh(beta g R)/(beta g R)``,
    so ``F = beta g . W - |U| log 2R - sum_U log sinhc(beta g_i R)`` (:func:`log_sinhc`).
    """
    R = check_positive("R", R)
    w, g = _vectors(w=w, g=g)
    m = _mask(mask, w.shape[0])
    b = _beta(beta)
    return float(b * np.dot(g, w) - m.sum() * math.log(2.0 * R) - np.sum(log_sinhc(b * g[m] * R)))


def quadratic_full_box_free_entropy(
    w: Any, *, A: Any, c: Any, R: float, beta: float = 1.0, mask: Any = None
) -> float:
    r"""``F`` of ``L = 1/2 (W-c)^T A (W-c)`` (``A`` symmetric) with the box kernel.

    The smoothed block ``A_UU`` must be positive definite.  Completing the square
    in the smoothed displacement ``x`` (``d = W - c``, ``V`` = masked-out set),

    ``L(W + x) = 1/2 (x - mu)^T A_UU (x - mu) + 1/2 d_V^T S d_V``,
    ``mu = -d_U - A_UU^{-1} A_UV d_V``, ``S = A_VV - A_VU A_UU^{-1} A_UV``,

    so ``F = beta/2 d_V^T S d_V - (|U|/2) log 2 pi + 1/2 log det(beta A_UU) - log P``
    with ``P`` the probability that ``N(mu, (beta A_UU)^{-1})`` falls in ``[-R, R]^{|U|}``.

    Accuracy of ``P``: for ``|U| <= 3`` it is computed by nested adaptive
    quadrature over the sequential conditionals (relative accuracy ~1e-10);
    for ``|U| > 3`` by :func:`scipy.stats.multivariate_normal.cdf` (Genz's
    randomised lattice rule; absolute error ~1e-8, so ``log P`` is only
    accurate when ``P`` is not tiny).
    """
    R = check_positive("R", R)
    A, c = _matrix(A, c)
    (w,) = _vectors(w=w)
    if w.shape != c.shape:
        raise ValueError(f"w must have shape {c.shape} like c, got {w.shape}")
    m = _mask(mask, w.shape[0])
    b = _beta(beta)
    d = w - c
    Auu, Auv, Avv = A[np.ix_(m, m)], A[np.ix_(m, ~m)], A[np.ix_(~m, ~m)]
    try:
        chol = np.linalg.cholesky(Auu)
    except np.linalg.LinAlgError:
        raise ValueError(
            "A restricted to the smoothed coordinates must be positive definite"
        ) from None
    sol = np.linalg.solve(Auu, Auv @ d[~m])
    mu = -d[m] - sol
    const = 0.5 * float(d[~m] @ (Avv @ d[~m]) - (Auv @ d[~m]) @ sol)
    n = int(m.sum())
    logdet = 2.0 * float(np.sum(np.log(np.diag(chol)))) + n * math.log(b)
    cov = np.linalg.inv(b * Auu)
    cov = 0.5 * (cov + cov.T)
    log_p = _log_box_probability(np.full(n, -R), np.full(n, R), mu, cov)
    return b * const - 0.5 * n * LOG_2PI + 0.5 * logdet - log_p


def _log_box_probability(lo: np.ndarray, hi: np.ndarray, mu: np.ndarray, cov: np.ndarray) -> float:
    n = mu.shape[0]
    if n > 3:
        p = stats.multivariate_normal(mean=mu, cov=cov).cdf(hi, lower_limit=lo)
        return math.log(p) if p > 0 else -math.inf
    p = _box_probability(lo, hi, mu, cov, shift=0.0)
    return math.log(p) if p > 0 else -math.inf


def _box_probability(lo, hi, mu, cov, shift):
    """P(N(mu, cov) in [lo, hi]) by sequential conditioning (n <= 3)."""
    if mu.shape[0] == 1:
        sd = math.sqrt(cov[0, 0])
        return math.exp(float(log_normal_interval((lo[0] - mu[0]) / sd, (hi[0] - mu[0]) / sd)))
    s11 = cov[0, 0]
    sd1 = math.sqrt(s11)
    s21 = cov[1:, 0]
    cond_cov = cov[1:, 1:] - np.outer(s21, s21) / s11

    def f(x1):
        cond_mu = mu[1:] + s21 * (x1 - mu[0]) / s11
        dens = math.exp(-0.5 * ((x1 - mu[0]) / sd1) ** 2) / (sd1 * math.sqrt(2 * math.pi))
        return dens * _box_probability(lo[1:], hi[1:], cond_mu, cond_cov, shift)

    a, b = lo[0], hi[0]
    pts = [p for p in (mu[0] - _PEAK_SD * sd1, mu[0], mu[0] + _PEAK_SD * sd1) if a < p < b]
    val, _ = integrate.quad(
        f, a, b, points=pts or None, epsabs=0.0, epsrel=_QUAD_EPSREL, limit=_QUAD_LIMIT
    )
    return val


# ------------------------------------------------------------- weight moments
@dataclass(frozen=True)
class WeightMoments:
    r"""First two moments of the Monte Carlo weights ``exp(-beta L(W + dW))``.

    ``dW`` follows the *normalised* kernel.  ``log_mean = -F(beta) - log Z_K``
    and ``log_second_moment = -F(2 beta) - log Z_K``.

    Attributes
    ----------
    log_mean, log_second_moment : float
    relative_variance : float
        ``Var/E^2 = expm1(log_second_moment - 2 log_mean)``; the delta method
        gives the estimator's bias ``relative_variance/(2y)`` and standard error
        ``sqrt(relative_variance/y)``.
    """

    log_mean: float
    log_second_moment: float

    @property
    def relative_variance(self) -> float:
        return float(math.expm1(self.log_second_moment - 2.0 * self.log_mean))


def _moments(f: Callable[[float], float], log_z: float, beta: float) -> WeightMoments:
    return WeightMoments(log_mean=-f(beta) - log_z, log_second_moment=-f(2.0 * beta) - log_z)


def quadratic_box_weight_moments(
    w: Any, *, lam: Any, c: Any, R: float, beta: float = 1.0, mask: Any = None
) -> WeightMoments:
    """:class:`WeightMoments` for the quadratic loss and the box kernel (exact, erf formula)."""
    n = int(_mask(mask, np.asarray(w).shape[-1]).sum())
    return _moments(
        lambda b: quadratic_box_free_entropy(w, lam=lam, c=c, R=R, beta=b, mask=mask),
        log_normaliser(R, math.inf, n),
        _beta(beta),
    )


def quadratic_gaussian_weight_moments(
    w: Any, *, lam: Any, c: Any, gamma: float, beta: float = 1.0, mask: Any = None
) -> WeightMoments:
    """:class:`WeightMoments` for the quadratic loss and the heat kernel (exact)."""
    n = int(_mask(mask, np.asarray(w).shape[-1]).sum())
    return _moments(
        lambda b: quadratic_gaussian_free_entropy(w, lam=lam, c=c, gamma=gamma, beta=b, mask=mask),
        heat_log_normaliser(gamma, n),
        _beta(beta),
    )


def quadratic_finite_k_weight_moments(
    w: Any, *, lam: Any, c: Any, R: float, k: float, beta: float = 1.0, mask: Any = None
) -> WeightMoments:
    """:class:`WeightMoments` for the quadratic loss and ``K_{R,k}`` (quadrature)."""
    n = int(_mask(mask, np.asarray(w).shape[-1]).sum())
    return _moments(
        lambda b: quadratic_finite_k_free_entropy(w, lam=lam, c=c, R=R, k=k, beta=b, mask=mask),
        log_normaliser(R, k, n),
        _beta(beta),
    )
