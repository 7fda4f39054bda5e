r"""Exact kernel averages of the exponential of a separable quadratic.

Per coordinate, :math:`\log \mathbb{E}_{x \sim K/Z_1}\big[e^{-(p x + q x^2/2)}\big]`
with ``q >= 0``: the known mean of the control variate of the free-entropy
estimator (the quadratic surrogate of the loss), for the kernels shipped with
the package (:meth:`anisotropy.kernels.Kernel.log_quadratic_average`):

* box ``k = inf`` (eq 8): closed form through the integral
  ``J(alpha, q, L) = int_0^L exp(-alpha u - q u^2/2) du`` (Gauss-Legendre when its
  exponent range is small, else Mills ratios via ``erfcx``), never subtracting
  large numbers (:func:`log_box_quadratic_average`);
* heat kernel (eq 1): ``1/2 log(gamma/(gamma+q)) + p^2/(2(gamma+q))``
  (:func:`log_heat_quadratic_average`);
* finite ``k`` (eq 6): 1-D quadrature of the log-concave integrand
  ``exp(-(px + qx^2/2)) K_{R,k}(x)/Z_1`` on graded Gauss-Legendre panels
  (:func:`log_finite_k_quadratic_average`).

Imported on first use by the kernel classes (it needs scipy).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import special

from anisotropy.kernels.closed_form import log_normaliser

__all__ = [
    "log_box_quadratic_average",
    "log_heat_quadratic_average",
    "log_finite_k_quadratic_average",
]

# Gauss-Legendre rules: 32 nodes for the box-average integrals J(alpha, q, L)
# when alpha L + q L^2/2 <= _GL_RANGE (integrand varying by at most e^20, where
# the rule's error ~ 10^64/64! ~ 1e-25 is far below float64 resolution); 24
# nodes per panel of the graded mesh of the finite-k kernel averages (panel
# length ~ distance to the nearest singularity, so the error per panel is
# ~ 2.4^-48 ~ 1e-18; validated against scipy.integrate.quad in the tests).
_GL_RANGE = 20.0
_GL32 = np.polynomial.legendre.leggauss(32)
_GL_PANEL = np.polynomial.legendre.leggauss(24)
# Finite-k averages: the log-concave integrand is integrated where it lies within
# _DROP of its maximum (e^-50 ~ 2e-22 relative: below float64 resolution).
_DROP = 50.0
# Levels of the geometric meshes: the finest panel next to an edge is pi/(4k) and
# the coarsest 2^13 times that (~6400/k), wider than any window at which the
# integrand is above e^-50 of its maximum on the logistic side of an edge.
_GRADE_LEVELS = 14
_BISECT = 80  # bisection steps: 2^-80 of a bracket is below float64 resolution
_CHUNK = 256  # coordinates per vectorised chunk (~256 x 2100 nodes per array)


def _log1mexp(d: np.ndarray) -> np.ndarray:
    d = np.minimum(d, -1e-300)
    return np.where(d > -math.log(2.0), np.log(-np.expm1(d)), np.log1p(-np.exp(d)))


def _log_mills(z: np.ndarray) -> np.ndarray:
    """``log(e^{z^2/2} int_z^inf e^{-t^2/2} dt)`` for ``z >= 0`` (erfcx, no overflow)."""
    return 0.5 * math.log(0.5 * math.pi) + np.log(special.erfcx(z / math.sqrt(2.0)))


def _log_j(alpha: np.ndarray, q: np.ndarray, L: np.ndarray) -> np.ndarray:
    r"""``log int_0^L exp(-alpha u - q u^2/2) du`` for ``alpha, q, L >= 0``, elementwise.

    Gauss-Legendre when the exponent's range ``r = alpha L + q L^2/2 <= 20``;
    otherwise ``(1 - e^{-alpha L})/alpha`` (``q = 0``) or the Mills-ratio form
    ``q^{-1/2}[M(z1) - e^{-r} M(z2)]`` (``z1 = alpha/sqrt q``, ``z2 = (alpha + qL)/sqrt q``),
    whose second term is below ``e^{-20}`` of the first: no cancellation.
    """
    alpha, q, L = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (alpha, q, L)))
    r = alpha * L + 0.5 * q * L * L
    small = r <= _GL_RANGE
    x, wts = _GL32
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        u = 0.5 * L[..., None] * (1.0 + x)
        gl = np.log(0.5 * L) + special.logsumexp(
            np.log(wts) - alpha[..., None] * u - 0.5 * q[..., None] * u * u, axis=-1
        )
        lin = -np.log(alpha) + _log1mexp(-alpha * L)
        sq = np.sqrt(q)
        z1, z2 = alpha / sq, (alpha + q * L) / sq
        m1 = _log_mills(z1)
        mills = -0.5 * np.log(q) + m1 + _log1mexp(np.minimum(-r + _log_mills(z2) - m1, 0.0))
    out = np.where(small, gl, np.where(q == 0, lin, mills))
    return np.where(L > 0, out, -np.inf)


def _log_box_average(p: np.ndarray, q: np.ndarray, R: float) -> np.ndarray:
    r"""``log (1/2R) int_{-R}^{R} exp(-(p x + q x^2/2)) dx`` for ``q >= 0``, stable.

    Peak ``x* = -p/q`` inside the box: ``p^2/(2q) + log[J(0,q,R-x*) + J(0,q,R+x*)]``;
    outside (or ``q = 0``): from the nearer edge, ``|p|R - qR^2/2 + log J(|p| - qR, q, 2R)``.
    """
    p, q = np.broadcast_arrays(np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64))
    inside = (q > 0) & (np.abs(p) <= q * R)
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = np.where(inside, -p / np.where(q > 0, q, 1.0), 0.0)
        qi = np.where(inside, q, 1.0)
        zero = np.zeros_like(p)
        lin = 0.5 * p * p / qi + np.logaddexp(_log_j(zero, qi, R - xs), _log_j(zero, qi, R + xs))
        ap = np.abs(p)
        alpha = np.maximum(ap - q * R, 0.0)
        out = ap * R - 0.5 * q * R * R + _log_j(alpha, q, np.full_like(p, 2.0 * R))
    return np.where(inside, lin, out) - math.log(2.0 * R)


def _log_gauss_average(p: np.ndarray, q: np.ndarray, gamma: float) -> np.ndarray:
    r"""``log E exp(-(p x + q x^2/2))`` for ``x ~ N(0, 1/gamma)``.

    Equals ``1/2 log(gamma/(gamma+q)) + p^2/(2(gamma+q))``.
    """
    s = gamma + q
    return 0.5 * (math.log(gamma) - np.log(s)) + 0.5 * p * p / s


def _finite_k_log_f(x, p, q, R, k, log_z1):
    two_k = 2.0 * k
    return (
        -(p * x + 0.5 * q * x * x)
        - np.logaddexp(0.0, two_k * (x - R))
        - np.logaddexp(0.0, -two_k * (x + R))
        - log_z1
    )


def _finite_k_dlog_f(x, p, q, R, k):
    two_k = 2.0 * k
    return -(p + q * x) - two_k * (special.expit(two_k * (x - R)) - special.expit(-two_k * (x + R)))


def _log_finite_k_average_chunk(p: np.ndarray, q: np.ndarray, R: float, k: float) -> np.ndarray:
    log_z1 = log_normaliser(R, k, 1)
    f = lambda x: _finite_k_log_f(x, p, q, R, k, log_z1)
    # 1. Mode of the log-concave integrand (d_{R,k} is convex): the derivative is
    #    positive left of min(-R - t, (-p - 2k)/q) and negative right of
    #    max(R + t, (-p + 2k)/q) (t = 20/k saturates the sigmoids); bisection.
    t = 20.0 / k
    with np.errstate(divide="ignore", invalid="ignore"):
        qpos = q > 0
        a = np.where(qpos, np.minimum(-R - t, (-p - 2 * k) / np.where(qpos, q, 1.0)), -R - t)
        b = np.where(qpos, np.maximum(R + t, (-p + 2 * k) / np.where(qpos, q, 1.0)), R + t)
    for _ in range(_BISECT):
        mid = 0.5 * (a + b)
        pos = _finite_k_dlog_f(mid, p, q, R, k) > 0
        a, b = np.where(pos, mid, a), np.where(pos, b, mid)
    mode = 0.5 * (a + b)
    top = f(mode)
    # 2. Where log f has dropped by _DROP on either side (doubling search, then bisection).
    curv = q + (2 * k) ** 2 * (
        special.expit(2 * k * (mode - R)) * special.expit(-2 * k * (mode - R))
        + special.expit(2 * k * (mode + R)) * special.expit(-2 * k * (mode + R))
    )
    width = 1.0 / np.sqrt(curv)
    ends = []
    for sign in (-1.0, 1.0):
        step = width.copy()
        for _ in range(200):
            far = f(mode + sign * step) < top - _DROP
            if far.all():
                break
            step = np.where(far, step, 2.0 * step)
        lo, hi = np.zeros_like(step), step
        for _ in range(_BISECT):
            mid = 0.5 * (lo + hi)
            far = f(mode + sign * mid) < top - _DROP
            lo, hi = np.where(far, lo, mid), np.where(far, mid, hi)
        ends.append(mode + sign * hi)
    left, right = ends
    # 3. Graded panels: geometric meshes (ratio 2) towards the kernel edges +-R (where
    #    K has poles at distance pi/(2k) off the real axis) and towards the mode, so
    #    every panel is about as long as its distance to the nearest feature and a
    #    24-node Gauss-Legendre rule per panel converges geometrically.
    one = np.ones_like(p)[..., None]
    grade = 2.0 ** np.arange(_GRADE_LEVELS)
    h = math.pi / (4.0 * k)
    edge = (
        np.concatenate(
            [s0 + s1 * h * grade for s0 in (-R, R) for s1 in (-1.0, 1.0)] + [np.array([-R, R])]
        )
        * one
    )
    around = np.concatenate(
        [
            mode[..., None] - width[..., None] * grade,
            mode[..., None] + width[..., None] * grade,
            mode[..., None],
        ],
        axis=-1,
    )
    cuts = np.clip(np.concatenate([edge, around], axis=-1), left[..., None], right[..., None])
    cuts = np.sort(np.concatenate([left[..., None], cuts, right[..., None]], axis=-1), axis=-1)
    x, wts = _GL_PANEL
    a, b = cuts[..., :-1], cuts[..., 1:]
    half = 0.5 * (b - a)
    nodes = (0.5 * (a + b))[..., None] + half[..., None] * x
    with np.errstate(divide="ignore"):
        logs = np.log(half)[..., None] + np.log(wts) + _f_nodes(nodes, p, q, R, k, log_z1)
    return special.logsumexp(logs.reshape(p.shape[0], -1), axis=-1)


def _f_nodes(nodes, p, q, R, k, log_z1):
    return _finite_k_log_f(nodes, p[:, None, None], q[:, None, None], R, k, log_z1)


def _as_pq(p: Any, q: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.atleast_1d(np.asarray(p, dtype=np.float64))
    q = np.atleast_1d(np.asarray(q, dtype=np.float64))
    if (q < 0).any():
        raise ValueError("q must be >= 0 (clip the surrogate's curvature)")
    return p, q


def log_box_quadratic_average(p: Any, q: Any, R: float) -> np.ndarray:
    """Closed-form ``log E exp(-(p x + q x^2/2))`` per coordinate, ``x ~ Uniform(-R, R)`` (eq 8)."""
    p, q = _as_pq(p, q)
    return _log_box_average(p, q, R)


def log_heat_quadratic_average(p: Any, q: Any, gamma: float) -> np.ndarray:
    """Closed-form ``log E exp(-(p x + q x^2/2))`` per coordinate, ``x ~ N(0, 1/gamma)`` (eq 1)."""
    p, q = _as_pq(p, q)
    return _log_gauss_average(p, q, gamma)


def log_finite_k_quadratic_average(p: Any, q: Any, R: float, k: float) -> np.ndarray:
    r"""``log E exp(-(p x + q x^2/2))`` per coordinate for ``x ~ K_{R,k}/Z_1`` (eq 6).

    The integrand is log-concave; 24-node Gauss-Legendre panels graded towards the
    kernel edges and the mode, over the window where it is within ``e^-50`` of its
    maximum.  For ``q = 0``, ``|p| < 2k`` is required (the logistic tail decays
    like ``e^{-2k|x|}``), else the mean is infinite.
    """
    p, q = _as_pq(p, q)
    if ((q == 0) & (np.abs(p) >= 2 * k)).any():
        raise ValueError("for finite k and q = 0, |p| must be < 2k (else the average is infinite)")
    out = np.empty_like(p)
    for s in range(0, p.shape[0], _CHUNK):
        out[s : s + _CHUNK] = _log_finite_k_average_chunk(
            p[s : s + _CHUNK], q[s : s + _CHUNK], R, k
        )
    return out
