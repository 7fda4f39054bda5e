r"""Monte Carlo estimators of the (partial) local free entropy (eqs 3, 9-10, 14-18).

Two estimators (PAPER-NOTES section 3):

* :func:`local_free_entropy` - the *normalised* estimator of

  .. math::

      F(W) = -\log \int d^{|U|}x\, e^{-\beta L(W+x)} K(x)
           = -\log Z_K - \log \mathbb{E}_{x \sim K/Z_K}\big[e^{-\beta L(W+x)}\big],

  with ``x`` drawn from the normalised kernel on the mask's support (``|U|``
  coordinates; the others stay at ``W``) and ``Z_K`` its normaliser
  (``Z_1(R,k)^{|U|}`` for the box kernel ``K_{R,k}`` of eq 6, ``(2 pi/gamma)^{|U|/2}``
  for the heat kernel of eq 1).  Methods: plain Monte Carlo, randomised quasi
  Monte Carlo (scrambled Sobol), antithetic pairs and a control variate built
  from a quadratic surrogate of the loss.
* :func:`paper_m_estimator` - the paper's ``M`` exactly as in eqs 3/14/22.

Relation between them (derived in ``docs/free_entropy.md``): with ``dW`` uniform
in the box of half side ``R`` on the ``n = |U|`` smoothed coordinates and the
factor ``exp(-d^{[U]}_{R,k}(dW))``,

.. math::

    \mathbb{E}\big[e^{-\beta L(W+dW) - d(dW)}\big]
      = (2R)^{-n} \int_{[-R,R]^n} e^{-\beta L(W+x)} K_{R,k}(x)\, dx ,

so the sample mean converges to it and

.. math::

    M_y \to M_\infty = F + n\log(2R) - \log q_{\rm box},\qquad
    q_{\rm box} = \frac{\int_{[-R,R]^n} e^{-\beta L} K}{\int e^{-\beta L} K}\in(0, 1].

For ``k = inf``: ``q_box = 1`` and ``M_inf = F + log Z_K`` (``Z_K = (2R)^n``).  At
finite ``y`` the centre term gives ``M_y ~ -log((e^{-beta L(W)} + y m)/(y+1))``
with ``m = e^{-M_inf}`` (see :func:`paper_m_noiseless`): an ``O(1/y)`` bias
``-log(1 + (e^{-beta L(W)}/m - 1)/(y+1))``, on top of the ``O(1/y)`` log-mean-exp
bias ``relvar/(2y)`` of the delta method.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np
from scipy import special
from scipy.stats import qmc

from anisotropy._checks import check_choice, check_int, check_positive, check_sharpness
from anisotropy.kernels import check_mask, masked_distance, sample_kernel

from .estimators import KernelSpec, log_surrogate_averages, weight_diagnostics
from .estimators import jackknife as _jackknife

__all__ = [
    "Method",
    "METHODS",
    "RELVAR_LIMIT",
    "UnreliableEstimateWarning",
    "FreeEntropyResult",
    "local_free_entropy",
    "PaperMResult",
    "paper_m_estimator",
    "paper_m_noiseless",
    "weight_diagnostics",
]

Method = Literal["mc", "sobol", "antithetic", "control_variate"]
METHODS: tuple[str, ...] = ("mc", "sobol", "antithetic", "control_variate")

# Reliability threshold on the relative variance Var/E^2 of the weights
# exp(-beta L).  For log-normal weights relvar = e^{s^2} - 1, so relvar > 10 means a
# log-weight spread s > 1.55: the mean is then carried by rare samples (ESS < y/11),
# the sample relvar itself is badly underestimated at the y used here (<= 1e5), and
# the delta-method error bar sqrt(relvar/y) and bias relvar/(2y) stop being trustworthy.
RELVAR_LIMIT = 10.0

# Memory bound for one batch of perturbed weight vectors: 2^22 float64 = 32 MiB.
_BATCH_ELEMENTS = 2 ** 22
# A control variate whose log-weights exceed the loss's by more than this cannot
# be exponentiated on a common scale (e^700 ~ 1e304, the float64 limit).
_EXP_LIMIT = 700.0


class UnreliableEstimateWarning(RuntimeWarning):
    """The weights' relative variance exceeds :data:`RELVAR_LIMIT` (or a method failed)."""


@dataclass(frozen=True)
class FreeEntropyResult:
    r"""Result of :func:`local_free_entropy`.

    Attributes
    ----------
    estimate : float
        ``F = -log Z_K - log mean exp(-beta L(W + dW))`` (jackknife-corrected
        when ``jackknife=True``; ``raw_estimate`` is the uncorrected value).
    stderr : float
        Standard error of ``estimate`` (delta method: stderr of the mean weight
        divided by the mean weight; for ``sobol`` the std of the per-scrambling
        estimates over ``sqrt(n_scramblings)``).
    y : int
        Samples per estimate as requested (per scrambling for ``sobol``).
    method : str
    log_normaliser : float
        ``log Z_K``.
    relative_variance : float
        ``Var/mean^2`` of all evaluated weights ``exp(-beta L)`` (ddof 1).
    ess : float
        ``(sum w)^2 / sum w^2`` over all evaluated weights.
    reliable : bool
        ``relative_variance <= RELVAR_LIMIT`` and no fallback happened.
    jackknife_bias : float or None
        Delete-a-group jackknife bias estimate (subtracted from ``estimate``).
    raw_estimate : float
    n_evaluations : int
        Loss evaluations spent on the estimate (``n_scramblings * y`` for
        ``sobol``; the control variate's finite differences are counted in
        ``n_surrogate_evaluations``).
    n_smoothed : int
        ``|U|``.
    kernel : str
    beta : float
    cv_coefficient : float or None
        Control-variate coefficient (``control_variate`` only).
    n_surrogate_evaluations : int
    notes : tuple of str
    """

    estimate: float
    stderr: float
    y: int
    method: str
    log_normaliser: float
    relative_variance: float
    ess: float
    reliable: bool
    jackknife_bias: float | None
    raw_estimate: float
    n_evaluations: int
    n_smoothed: int
    kernel: str
    beta: float
    cv_coefficient: float | None = None
    n_surrogate_evaluations: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def report(self) -> str:
        """Human-readable summary."""
        lines = [
            f"local free entropy ({self.method}, kernel={self.kernel}, |U|={self.n_smoothed}, "
            f"beta={self.beta:g})",
            f"  F = {self.estimate:.10g} +- {self.stderr:.3g}   (y={self.y}, "
            f"{self.n_evaluations} loss evaluations)",
            f"  log Z_K = {self.log_normaliser:.10g}",
            f"  weights: relative variance {self.relative_variance:.4g}, ESS {self.ess:.1f}"
            f"  -> {'reliable' if self.reliable else 'UNRELIABLE'}",
        ]
        if self.jackknife_bias is not None:
            lines.append(f"  jackknife bias {self.jackknife_bias:.3g} (raw {self.raw_estimate:.10g})")
        if self.cv_coefficient is not None:
            lines.append(f"  control variate coefficient {self.cv_coefficient:.4g} "
                         f"({self.n_surrogate_evaluations} surrogate evaluations)")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


# ------------------------------------------------------------------ helpers
def _rng(seed: Any) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int or a numpy.random.Generator, got {seed!r}")
    return np.random.default_rng(int(seed))


def _weights_vector(w: Any) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 1 or w.shape[0] == 0:
        raise ValueError(f"w must be a non-empty 1-D array of shape (N,), got shape {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError("w contains NaN or inf; it must be finite")
    return w


def _support(mask: Any, n: int) -> np.ndarray:
    if mask is None:
        return np.arange(n)
    mask = check_mask(np.asarray(mask), n)
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        raise ValueError("mask selects no coordinate; it must select at least one (|U| >= 1)")
    return idx


def _batch(batch_size: Any, N: int) -> int:
    if batch_size is None:
        return max(1, _BATCH_ELEMENTS // N)
    return check_int("batch_size", batch_size, minimum=1)


def _evaluate(loss: Callable, w: np.ndarray, idx: np.ndarray, dw: np.ndarray) -> np.ndarray:
    """``L(w + dW)`` for a batch ``dw`` of shape (b, |U|) -> (b,), validated."""
    x = np.repeat(w[None, :], dw.shape[0], axis=0)
    x[:, idx] += dw
    out = np.asarray(loss(x), dtype=np.float64)
    if out.shape != (dw.shape[0],):
        raise ValueError(f"loss must map an array of shape (b, N) = {x.shape} to shape "
                         f"({dw.shape[0]},), got shape {out.shape}")
    if not np.isfinite(out).all():
        raise ValueError("loss returned NaN or inf; it must be finite at every evaluated point")
    return out


def _log_weights(loss, w, idx, draw, total, batch, beta):
    """-beta L(w + dW) for ``total`` perturbations produced ``draw(b)`` at a time."""
    out = np.empty(total)
    for s in range(0, total, batch):
        b = min(batch, total - s)
        out[s:s + b] = -beta * _evaluate(loss, w, idx, draw(b))
    return out


def _log_mean(lw: np.ndarray) -> float:
    return float(special.logsumexp(lw) - math.log(lw.size))


# ------------------------------------------------------------------ methods
def _plain(lw: np.ndarray, log_z: float):
    """Estimate, stderr, jackknife units and statistic for a mean of weights."""
    y = lw.size
    shift = lw.max()
    u = np.exp(lw - shift)
    mean = u.mean()
    se = float(u.std(ddof=1) / math.sqrt(y) / mean) if y > 1 else math.inf
    est = -log_z - shift - math.log(mean)
    sums = np.stack([np.ones(y), u], axis=-1)

    def stat(t):
        return -log_z - shift - math.log(t[1] / t[0])

    return est, se, sums, stat


def _sobol_draws(spec: KernelSpec, n: int, y: int, rng: np.random.Generator, batch: int):
    dims = n * spec.uniforms_per_coordinate
    if dims > qmc.Sobol.MAXDIM:
        raise ValueError(f"method='sobol' supports at most {qmc.Sobol.MAXDIM} Sobol dimensions; "
                         f"|U| = {n} needs {dims} (use method='mc' or 'antithetic')")
    try:
        sampler = qmc.Sobol(dims, scramble=True, rng=rng)
    except TypeError:  # scipy < 1.15 names the generator argument `seed`
        sampler = qmc.Sobol(dims, scramble=True, seed=rng)
    # Points are multiples of 2^-bits; the half-cell offset keeps them in (0, 1),
    # where the inverse CDFs (ndtri, logit) are finite.
    half_cell = 2.0 ** -(sampler.bits + 1)
    # The power-of-two batches below keep every partial sum a multiple of the batch,
    # and the total y is a power of two, so the balance properties hold.
    b = min(1 << (max(batch, 1).bit_length() - 1), y)

    def draw(m):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*balance properties.*")
            u = sampler.random(m)
        return spec.from_uniforms(u + half_cell)

    return draw, b


def _fit_surrogate(loss, w, idx, spec, batch, beta, grad, hess_diag):
    """Per-coordinate (p, q) = beta (g, h) of the quadratic surrogate and L(w)."""
    N = w.shape[0]
    L0 = float(_evaluate(loss, w, idx, np.zeros((1, idx.size)))[0])
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
            vals[rows] = _evaluate(loss, w, idx, steps)
        lp, lm = vals[:n], vals[n:]
        g = (lp - lm) / (2.0 * delta)
        h = (lp - 2.0 * L0 + lm) / (delta * delta)
        n_eval += 2 * n
    p, q = beta * g, np.maximum(beta * h, 0.0)  # q >= 0: the kernel average stays finite
    if spec.finite_k:
        # Without curvature the logistic tail e^{-2k|x|} must beat e^{|p x|}: keep |p| <= k.
        p = np.where(q == 0, np.clip(p, -spec.k, spec.k), p)
    return L0, p, q, n_eval


def _control_variate(lw, lq, log_mu, log_z):
    """Optimal-coefficient control variate on a common exponent shift."""
    y = lw.size
    shift = lw.max()
    if (lq - shift).max() > _EXP_LIMIT or log_mu - shift > _EXP_LIMIT:
        return None
    f, g = np.exp(lw - shift), np.exp(lq - shift)
    mu = math.exp(log_mu - shift)
    sums = np.stack([np.ones(y), f, g, f * f, g * g, f * g], axis=-1)

    def coef_mean(t):
        n, sf, sg, sff, sgg, sfg = t
        vg = sgg - sg * sg / n
        c = (sfg - sf * sg / n) / vg if vg > 0 else 0.0
        return c, sf / n - c * (sg / n - mu)

    c, m = coef_mean(sums.sum(axis=0))
    if not m > 0:
        return None
    r = f - c * (g - mu)
    se = float(r.std(ddof=2) / math.sqrt(y) / m) if y > 2 else math.inf

    def stat(t):
        mm = coef_mean(t)[1]
        return -log_z - shift - math.log(mm) if mm > 0 else math.nan

    return -log_z - shift - math.log(m), se, sums, stat, float(c)


# --------------------------------------------------------------- estimator
def local_free_entropy(loss: Callable[[np.ndarray], np.ndarray], w: Any, *, R: float | None = None,
                       k: float = math.inf, gamma: float | None = None,
                       kernel: Literal["box", "gaussian"] = "box", mask: Any = None, y: int,
                       method: Method = "mc", beta: float = 1.0, seed: Any,
                       n_scramblings: int = 8, jackknife: bool = False,
                       batch_size: int | None = None, grad: Any = None,
                       hess_diag: Any = None) -> FreeEntropyResult:
    r"""Monte Carlo estimate of the partial local free entropy ``F`` (eqs 10, 16, 18).

    ``F = -log Z_K - log mean_a exp(-beta L(W + dW_a))`` with ``dW_a`` drawn from the
    normalised kernel on the smoothed coordinates.

    Parameters
    ----------
    loss : callable
        Maps weight vectors of shape ``(b, N)`` to losses of shape ``(b,)``
        (vectorised; evaluated ``batch_size`` perturbations at a time).
    w : array_like, shape (N,)
        Centre ``W``.
    R, k : float
        Box kernel ``K_{R,k}`` (eq 6): ``R > 0`` required, ``k`` in ``(0, inf]``
        (``inf``: uniform hypercube; finite: exact Uniform + Logistic sampler).
    gamma : float
        Heat kernel ``exp(-(gamma/2)|x|^2)`` (``kernel="gaussian"``; required there).
    kernel : {"box", "gaussian"}
    mask : bool array, shape (N,), optional
        Smoothed coordinates ``U`` (all if ``None``; at least one).
    y : int
        Number of kernel samples (``>= 2``; per scrambling for ``sobol``, where it
        must be a power of two; even for ``antithetic``; ``>= 3`` for ``control_variate``).
    method : {"mc", "sobol", "antithetic", "control_variate"}
        * ``mc``: i.i.d. draws; stderr ``sd(w)/(sqrt(y) mean(w))``.
        * ``sobol``: ``n_scramblings`` independent scrambled Sobol sequences
          (scipy.stats.qmc) mapped by inverse CDFs (finite ``k`` uses two
          dimensions per coordinate: uniform and logistic); the estimate pools
          all ``n_scramblings * y`` points, the error bar is the std of the
          per-scrambling estimates over ``sqrt(n_scramblings)``.
        * ``antithetic``: ``y/2`` pairs ``(dW, -dW)``; stderr from pair means.
        * ``control_variate``: ``exp(-beta Q(dW))`` with the quadratic surrogate
          ``Q = L(W) + g.dW + 1/2 sum h_i dW_i^2`` (secant finite differences at
          ``+-`` the kernel scale, or ``grad``/``hess_diag``; ``h`` clipped to
          ``>= 0``), whose kernel average is exact
          (:func:`analysis.estimators.log_surrogate_averages`); optimal coefficient
          from the same sample; stderr from the residuals.  Falls back to ``mc`` on the
          same sample (``reliable=False``) if the controlled mean is not positive.
    beta : float
        Inverse temperature ``> 0``.
    seed : int or numpy.random.Generator
    n_scramblings : int
        ``>= 2``; ``sobol`` only.
    jackknife : bool
        Subtract the delete-a-group jackknife bias estimate (units: samples, pairs or
        scramblings; at most 100 groups).
    batch_size : int, optional
        Perturbations per loss call (default: ``2^22 // N``).
    grad, hess_diag : array_like, shape (N,), optional
        Surrogate derivatives for ``control_variate`` (``hess_diag`` defaults to 0 when
        only ``grad`` is given).

    Returns
    -------
    FreeEntropyResult

    Warns
    -----
    UnreliableEstimateWarning
        If the weights' relative variance exceeds :data:`RELVAR_LIMIT`.
    """
    check_choice("method", method, METHODS)
    spec = KernelSpec.make(kernel, R=R, k=k, gamma=gamma)
    w = _weights_vector(w)
    idx = _support(mask, w.shape[0])
    n = idx.size
    y = check_int("y", y, minimum=2)
    beta = check_positive("beta", beta)
    batch = _batch(batch_size, w.shape[0])
    rng = _rng(seed)
    if not callable(loss):
        raise ValueError(f"loss must be callable, got {type(loss)}")
    log_z = spec.log_normaliser(n)
    notes: list[str] = []
    cv_coef = None
    n_sur = 0

    if method == "mc":
        lw = _log_weights(loss, w, idx, lambda b: spec.sample((b, n), rng), y, batch, beta)
        est, se, sums, stat = _plain(lw, log_z)
        all_lw = lw
    elif method == "antithetic":
        if y % 2:
            raise ValueError(f"y must be even for method='antithetic' (pairs dW, -dW), got {y}")
        pairs = y // 2
        half = max(1, batch // 2)
        lp = np.empty(pairs)
        lm = np.empty(pairs)
        for s in range(0, pairs, half):
            b = min(half, pairs - s)
            dw = spec.sample((b, n), rng)
            vals = -beta * _evaluate(loss, w, idx, np.concatenate([dw, -dw]))
            lp[s:s + b], lm[s:s + b] = vals[:b], vals[b:]
        all_lw = np.concatenate([lp, lm])
        shift = all_lw.max()
        pm = 0.5 * (np.exp(lp - shift) + np.exp(lm - shift))
        mean = pm.mean()
        est = -log_z - shift - math.log(mean)
        se = float(pm.std(ddof=1) / math.sqrt(pairs) / mean) if pairs > 1 else math.inf
        sums = np.stack([np.ones(pairs), pm], axis=-1)

        def stat(t):
            return -log_z - shift - math.log(t[1] / t[0])
    elif method == "sobol":
        if y & (y - 1):
            raise ValueError(f"y must be a power of two for method='sobol', got {y}")
        n_s = check_int("n_scramblings", n_scramblings, minimum=2)
        per = []
        for _ in range(n_s):
            draw, b = _sobol_draws(spec, n, y, rng, batch)
            per.append(_log_weights(loss, w, idx, draw, y, b, beta))
        lws = np.array(per)
        all_lw = lws.ravel()
        shift = all_lw.max()
        means = np.exp(lws - shift).mean(axis=1)
        est = -log_z - shift - math.log(means.mean())
        per_est = -log_z - shift - np.log(means)
        se = float(per_est.std(ddof=1) / math.sqrt(n_s))
        sums = np.stack([np.ones(n_s), means], axis=-1)

        def stat(t):
            return -log_z - shift - math.log(t[1] / t[0])
    else:  # control_variate
        if y < 3:
            raise ValueError(f"y must be >= 3 for method='control_variate', got {y}")
        L0, p, q, n_sur = _fit_surrogate(loss, w, idx, spec, batch, beta, grad, hess_diag)
        log_mu = -beta * L0 + float(np.sum(log_surrogate_averages(p, q, spec)))
        lw = np.empty(y)
        lq = np.empty(y)
        for s in range(0, y, batch):
            b = min(batch, y - s)
            dw = spec.sample((b, n), rng)
            lw[s:s + b] = -beta * _evaluate(loss, w, idx, dw)
            lq[s:s + b] = -beta * L0 - (dw @ p + 0.5 * (dw * dw) @ q)
        all_lw = lw
        cv = _control_variate(lw, lq, log_mu, log_z)
        if cv is None:
            notes.append("control variate unusable (non-positive controlled mean or overflow); "
                         "plain Monte Carlo on the same sample")
            warnings.warn("control variate unusable; falling back to plain Monte Carlo",
                          UnreliableEstimateWarning, stacklevel=2)
            est, se, sums, stat = _plain(lw, log_z)
        else:
            est, se, sums, stat, cv_coef = cv

    relvar, ess = weight_diagnostics(all_lw)
    reliable = relvar <= RELVAR_LIMIT and not notes
    if relvar > RELVAR_LIMIT:
        warnings.warn(f"relative variance of the weights {relvar:.3g} exceeds RELVAR_LIMIT = "
                      f"{RELVAR_LIMIT:g} (ESS {ess:.1f} of {all_lw.size}); the estimate and its "
                      "error bar are unreliable", UnreliableEstimateWarning, stacklevel=2)
    jk = _jackknife(sums, stat) if jackknife else None
    final = est - jk if jk is not None and math.isfinite(jk) else est
    return FreeEntropyResult(
        estimate=float(final), stderr=float(se), y=y, method=method, log_normaliser=float(log_z),
        relative_variance=relvar, ess=ess, reliable=bool(reliable), jackknife_bias=jk,
        raw_estimate=float(est), n_evaluations=int(all_lw.size), n_smoothed=int(n),
        kernel=spec.kind, beta=beta, cv_coefficient=cv_coef, n_surrogate_evaluations=n_sur,
        notes=tuple(notes))



# --------------------------------------------------------------- paper's M
@dataclass(frozen=True)
class PaperMResult:
    r"""Result of :func:`paper_m_estimator` (the paper's ``M``, eqs 3, 14, 22).

    Attributes
    ----------
    estimate : float
        ``M_y = -log{(e^{-beta L(W)} + sum_a e^{-beta L(W+dW_a) - d(dW_a)})/(y+1)}``.
    stderr : float
        Delta-method standard error from the ``y`` random terms (0 for ``y = 0``).
    y : int
    centre_log_weight : float
        ``-beta L(W)``.
    log_mean_sample_weight : float
        ``log`` of the mean of the ``y`` random terms (``-inf`` for ``y = 0``);
        ``-log_mean_sample_weight`` estimates ``M_inf`` without the centre bias.
    log_box_volume : float
        ``|U| log(2R)``: ``M_inf = F + log_box_volume`` for ``k = inf``.
    n_smoothed : int
    R, k, beta : float
    """

    estimate: float
    stderr: float
    y: int
    centre_log_weight: float
    log_mean_sample_weight: float
    log_box_volume: float
    n_smoothed: int
    R: float
    k: float
    beta: float

    def report(self) -> str:
        """Human-readable summary."""
        return (f"paper M (eq 14; R={self.R:g}, k={self.k:g}, y={self.y}, |U|={self.n_smoothed}, "
                f"beta={self.beta:g})\n"
                f"  M = {self.estimate:.10g} +- {self.stderr:.3g}\n"
                f"  centre -beta L(W) = {self.centre_log_weight:.10g}; "
                f"-log mean of the y terms = {-self.log_mean_sample_weight:.10g}\n"
                f"  |U| log 2R = {self.log_box_volume:.10g} (M_inf = F + this for k = inf)")


def paper_m_estimator(loss: Callable[[np.ndarray], np.ndarray], w: Any, *, R: float,
                      k: float = math.inf, mask: Any = None, y: int, seed: Any,
                      beta: float = 1.0, batch_size: int | None = None) -> PaperMResult:
    r"""The paper's ``M^{[U]}(R, k, y; W)`` exactly as eqs 3/14 (eq 22 at ``k = inf``).

    ``M = -log{ (1/(y+1)) [ e^{-beta L(W)} + sum_{a=1}^{y} e^{-beta L(W + dW_a) - d^{[U]}_{R,k}(dW_a)} ] }``
    with ``dW_a`` *uniform* in the box of half side ``R`` on the smoothed
    coordinates (eq 3: "shifted by a uniformly distributed random vector") and no
    normaliser; ``beta = 1`` is the paper.  ``y = 0`` gives ``beta L(W)`` (eq 4).

    Limit (module docstring): ``M_y -> M_inf = F + |U| log(2R) - log q_box``
    (``q_box = 1`` at ``k = inf``, so ``M_inf = F + log Z_K``); finite-``y`` centre
    term: :func:`paper_m_noiseless`.
    """
    R = check_positive("R", R)
    k = check_sharpness(k)
    w = _weights_vector(w)
    idx = _support(mask, w.shape[0])
    n = idx.size
    y = check_int("y", y, minimum=0)
    beta = check_positive("beta", beta)
    batch = _batch(batch_size, w.shape[0])
    rng = _rng(seed)
    lc = -beta * float(_evaluate(loss, w, idx, np.zeros((1, n)))[0])
    terms = np.empty(y)
    for s in range(0, y, batch):
        b = min(batch, y - s)
        dw = sample_kernel((b, n), R=R, k=math.inf, rng=rng)
        terms[s:s + b] = -beta * _evaluate(loss, w, idx, dw) - masked_distance(dw, R=R, k=k)
    log_m = _log_mean(terms) if y else -math.inf
    total = np.logaddexp(lc, special.logsumexp(terms) if y else -math.inf)
    estimate = float(math.log(y + 1) - total)
    if y >= 2:
        # dM = -dS / (e^{-beta L(W)} + S) with S the sum of the y terms, Var S = y Var(term).
        se = float(math.sqrt(y) * np.exp(terms - total).std(ddof=1))
    else:
        se = 0.0 if y == 0 else math.inf
    return PaperMResult(estimate=estimate, stderr=se, y=y, centre_log_weight=lc,
                        log_mean_sample_weight=float(log_m), log_box_volume=n * math.log(2 * R),
                        n_smoothed=int(n), R=R, k=k, beta=beta)


def paper_m_noiseless(m_limit: float, centre_loss: float, y: int, *, beta: float = 1.0) -> float:
    r"""``-log((e^{-beta L(W)} + y e^{-M_inf})/(y+1))``: ``M_y`` without sampling noise.

    The centre point enters eq 3 with weight ``1/(y+1)``, so even with exact
    averages ``M_y`` differs from ``M_inf`` by this ``O(1/y)`` term.
    """
    y = check_int("y", y, minimum=0)
    beta = check_positive("beta", beta)
    lc = -beta * float(centre_loss)
    total = np.logaddexp(lc, math.log(y) - m_limit) if y else lc
    return float(math.log(y + 1) - total)
