r"""Control variate of the free-entropy estimator: a quadratic surrogate of the loss.

The control variate is ``exp(-beta Q(dW))`` with the separable quadratic surrogate
``beta Q(x) = beta L(W) + sum_i (p_i x_i + q_i x_i^2 / 2)`` (:func:`fit_surrogate`);
its mean under the normalised kernel factorises over coordinates and is computed
exactly by :func:`log_surrogate_averages`:

* box ``k = inf``: closed form through the integral
  ``J(alpha, q, L) = int_0^L exp(-alpha u - q u^2/2) du`` (Gauss-Legendre when its
  exponent range is small, else Mills ratios via ``erfcx``), never subtracting
  large numbers;
* heat kernel: ``1/2 log(gamma/(gamma+q)) + p^2/(2(gamma+q))``;
* finite ``k``: 1-D quadrature of the log-concave integrand
  ``exp(-(px + qx^2/2)) K_{R,k}(x)/Z_1`` on graded Gauss-Legendre panels.

:func:`control_variate_estimate` combines the samples with the optimal coefficient.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
from scipy import special

from anisotropy.kernels import log_normaliser

from analysis.free_entropy.estimators import KernelSpec, evaluate_loss

__all__ = ["log_surrogate_averages", "fit_surrogate", "control_variate_estimate"]

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
_BISECT = 80          # bisection steps: 2^-80 of a bracket is below float64 resolution
_CHUNK = 256          # coordinates per vectorised chunk (~256 x 2100 nodes per array)
# A control variate whose log-weights exceed the loss's by more than this cannot
# be exponentiated on a common scale (e^700 ~ 1e304, the float64 limit).
_EXP_LIMIT = 700.0


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
            np.log(wts) - alpha[..., None] * u - 0.5 * q[..., None] * u * u, axis=-1)
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
    r"""``log E exp(-(p x + q x^2/2))`` for ``x ~ N(0, 1/gamma)``: ``1/2 log(gamma/(gamma+q)) + p^2/(2(gamma+q))``."""
    s = gamma + q
    return 0.5 * (math.log(gamma) - np.log(s)) + 0.5 * p * p / s


def _finite_k_log_f(x, p, q, R, k, log_z1):
    two_k = 2.0 * k
    return (-(p * x + 0.5 * q * x * x) - np.logaddexp(0.0, two_k * (x - R))
            - np.logaddexp(0.0, -two_k * (x + R)) - log_z1)


def _finite_k_dlog_f(x, p, q, R, k):
    two_k = 2.0 * k
    return -(p + q * x) - two_k * (special.expit(two_k * (x - R)) - special.expit(-two_k * (x + R)))


def _log_finite_k_average_chunk(p: np.ndarray, q: np.ndarray, R: float, k: float) -> np.ndarray:
    log_z1 = log_normaliser(R, k, 1)
    f = lambda x: _finite_k_log_f(x, p, q, R, k, log_z1)  # noqa: E731
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
    curv = q + (2 * k) ** 2 * (special.expit(2 * k * (mode - R)) * special.expit(-2 * k * (mode - R))
                               + special.expit(2 * k * (mode + R)) * special.expit(-2 * k * (mode + R)))
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
    edge = np.concatenate([s0 + s1 * h * grade for s0 in (-R, R) for s1 in (-1.0, 1.0)]
                          + [np.array([-R, R])]) * one
    around = np.concatenate([mode[..., None] - width[..., None] * grade,
                             mode[..., None] + width[..., None] * grade, mode[..., None]], axis=-1)
    cuts = np.clip(np.concatenate([edge, around], axis=-1), left[..., None], right[..., None])
    cuts = np.sort(np.concatenate([left[..., None], cuts, right[..., None]], axis=-1), axis=-1)
    x, wts = _GL_PANEL
    a, b = cuts[..., :-1], cuts[..., 1:]
    half = 0.5 * (b - a)
    nodes = (0.5 * (a + b))[..., None] + half[..., None] * x
    with np.errstate(divide="ignore"):
        logs = (np.log(half)[..., None] + np.log(wts)
                + _f_nodes(nodes, p, q, R, k, log_z1))
    return special.logsumexp(logs.reshape(p.shape[0], -1), axis=-1)


def _f_nodes(nodes, p, q, R, k, log_z1):
    return _finite_k_log_f(nodes, p[:, None, None], q[:, None, None], R, k, log_z1)


def log_surrogate_averages(p: Any, q: Any, spec: KernelSpec) -> np.ndarray:
    r"""``log E_{x ~ K/Z}[exp(-(p_i x + q_i x^2/2))]`` per coordinate, exactly.

    The control variate's known mean (the quadratic surrogate
    ``beta Q(x) = sum_i p_i x_i + q_i x_i^2/2`` has ``p = beta g``, ``q = beta h``).

    * box, ``k = inf``: closed form (:func:`_log_box_average`, erf / Mills ratio, no cancellation);
    * heat kernel: ``1/2 log(gamma/(gamma+q)) + p^2/(2(gamma+q))``;
    * finite ``k``: the integrand ``exp(-(px + qx^2/2)) K_{R,k}(x)/Z_1`` is
      log-concave; 48-node Gauss-Legendre panels split at the kernel edges and
      around the mode, over the window where it is within ``e^-50`` of its maximum.

    Parameters
    ----------
    p, q : array_like, shape (n,)
        ``q >= 0`` is required; for finite ``k`` and ``q = 0``, ``|p| < 2k``
        (the logistic tail decays like ``e^{-2k|x|}``) else the mean is infinite.

    Returns
    -------
    ndarray, shape (n,)
    """
    p = np.atleast_1d(np.asarray(p, dtype=np.float64))
    q = np.atleast_1d(np.asarray(q, dtype=np.float64))
    if (q < 0).any():
        raise ValueError("q must be >= 0 (clip the surrogate's curvature)")
    if spec.kind == "gaussian":
        return _log_gauss_average(p, q, spec.gamma)
    if not spec.finite_k:
        return _log_box_average(p, q, spec.R)
    if ((q == 0) & (np.abs(p) >= 2 * spec.k)).any():
        raise ValueError("for finite k and q = 0, |p| must be < 2k (else the average is infinite)")
    out = np.empty_like(p)
    for s in range(0, p.shape[0], _CHUNK):
        out[s:s + _CHUNK] = _log_finite_k_average_chunk(p[s:s + _CHUNK], q[s:s + _CHUNK],
                                                        spec.R, spec.k)
    return out


def fit_surrogate(loss: Callable, w: np.ndarray, idx: np.ndarray, spec: KernelSpec, batch: int,
                  beta: float, grad: Any = None, hess_diag: Any = None
                  ) -> tuple[float, np.ndarray, np.ndarray, int]:
    r"""The quadratic surrogate ``beta Q(x) = beta L(W) + sum_i p_i x_i + q_i x_i^2 / 2``.

    ``p = beta g``, ``q = beta h`` on the smoothed coordinates ``idx``, from secant
    finite differences at ``+-`` the kernel scale (``2|U| + 1`` evaluations) or
    from ``grad`` (and ``hess_diag``, default 0), each of shape ``(N,)``.  ``q`` is
    clipped to ``>= 0`` and, for finite ``k`` where ``q = 0``, ``|p|`` to ``<= k``, so
    the surrogate's kernel average is finite (any surrogate is a valid control
    variate; the clipping only costs efficiency).

    Returns
    -------
    (L(W), p, q, number of loss evaluations)
    """
    N = w.shape[0]
    L0 = float(evaluate_loss(loss, w, idx, np.zeros((1, idx.size)))[0])
    n_eval = 1
    if grad is not None:
        g = np.asarray(grad, dtype=np.float64)
        if g.shape != (N,) or not np.isfinite(g).all():
            raise ValueError(f"grad must be a finite array of shape ({N},), got shape {g.shape}")
        g = g[idx]
        if hess_diag is None:
            h = np.zeros_like(g)
        else:
            h = np.asarray(hess_diag, dtype=np.float64)
            if h.shape != (N,) or not np.isfinite(h).all():
                raise ValueError(f"hess_diag must be a finite array of shape ({N},), got {h.shape}")
            h = h[idx]
    else:
        if hess_diag is not None:
            raise ValueError("hess_diag requires grad (pass both or neither)")
        # Secant fit over the kernel's own scale (not a tangent): the surrogate must
        # match the loss where the kernel puts its mass; a quadratic is reproduced exactly.
        delta = spec.scale
        n = idx.size
        vals = np.empty(2 * n)
        for s in range(0, 2 * n, batch):
            rows = np.arange(s, min(s + batch, 2 * n))
            steps = np.zeros((rows.size, n))
            steps[np.arange(rows.size), rows % n] = np.where(rows < n, delta, -delta)
            vals[rows] = evaluate_loss(loss, w, idx, steps)
        lp, lm = vals[:n], vals[n:]
        g = (lp - lm) / (2.0 * delta)
        h = (lp - 2.0 * L0 + lm) / (delta * delta)
        n_eval += 2 * n
    p, q = beta * g, np.maximum(beta * h, 0.0)  # q >= 0: the kernel average stays finite
    if spec.finite_k:
        # Without curvature the logistic tail e^{-2k|x|} must beat e^{|p x|}: keep |p| <= k.
        p = np.where(q == 0, np.clip(p, -spec.k, spec.k), p)
    return L0, p, q, n_eval


def control_variate_estimate(lw: np.ndarray, lq: np.ndarray, log_mu: float, log_z: float):
    r"""Control-variate estimate of ``F`` with the optimal coefficient.

    ``f_a = e^{lw_a}`` (weights ``exp(-beta L)``), ``g_a = e^{lq_a}`` (surrogate
    weights ``exp(-beta Q)``) with exact mean ``e^{log_mu}``; both on the common
    shift ``max lw``.  ``c = Cov(f, g)/Var(g)`` from the same sample,
    ``m = mean f - c (mean g - mu)``, ``F = -log_z - log m``, stderr
    ``sd(f - c g)/(sqrt(y) m)`` (ddof 2).  Sums are taken of values centred at the
    sample means (no cancellation when ``Var g << mean g^2``).

    Returns
    -------
    (estimate, stderr, per-sample sums for the jackknife, statistic of summed sums,
    coefficient), or ``None`` if the controlled mean is not positive or the
    surrogate weights overflow on the common scale.
    """
    y = lw.size
    shift = lw.max()
    if (lq - shift).max() > _EXP_LIMIT or log_mu - shift > _EXP_LIMIT:
        return None
    f, g = np.exp(lw - shift), np.exp(lq - shift)
    a, b = f.mean(), g.mean()
    fc, gc = f - a, g - b
    mu_c = math.exp(log_mu - shift) - b
    sums = np.stack([np.ones(y), fc, gc, gc * gc, fc * gc], axis=-1)

    def coef_mean(t):
        n, sf, sg, sgg, sfg = t
        vg = sgg - sg * sg / n
        c = (sfg - sf * sg / n) / vg if vg > 0 else 0.0
        return c, a + sf / n - c * (sg / n - mu_c)

    c, m = coef_mean(sums.sum(axis=0))
    if not m > 0:
        return None
    se = float((fc - c * gc).std(ddof=2) / math.sqrt(y) / m) if y > 2 else math.inf

    def stat(t):
        mm = coef_mean(t)[1]
        return -log_z - shift - math.log(mm) if mm > 0 else math.nan

    return -log_z - shift - math.log(m), se, sums, stat, float(c)
