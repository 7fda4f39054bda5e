r"""Building blocks of the Monte Carlo free-entropy estimator (:mod:`analysis.free_entropy`).

* :class:`KernelSpec` - the normalised smoothing kernel (box ``K_{R,k}`` or heat)
  with its exact sampler and its inverse-CDF transform of uniforms (for
  randomised quasi Monte Carlo);
* :func:`weight_diagnostics` - relative variance and effective sample size of
  importance weights given in log space;
* :func:`jackknife` - delete-a-group jackknife bias estimate of a statistic of
  group sums;
* input checks and batched, validated loss evaluation shared by the estimators.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from scipy import special

from anisotropy.validation import check_choice, check_int, check_positive, check_sharpness
from anisotropy.kernels import (KERNEL_NAMES, KernelName, check_mask, heat_log_normaliser, log_normaliser, sample_heat,
                               sample_kernel)

__all__ = [
    "KernelName",
    "KERNELS",
    "KernelSpec",
    "weight_diagnostics",
    "jackknife",
    "JACKKNIFE_MAX_GROUPS",
    "as_generator",
    "check_centre",
    "smoothed_indices",
    "batch_rows",
    "evaluate_loss",
    "log_weights",
]

KernelName = KernelName
KERNELS: tuple[str, ...] = KERNEL_NAMES

# Memory bound for one batch of perturbed weight vectors: 2^22 float64 = 32 MiB.
_BATCH_ELEMENTS = 2 ** 22

# Delete-a-group jackknife with at most this many groups: the bias estimate's
# own standard error shrinks like 1/sqrt(groups) only up to the sampling noise,
# and 100 groups cost 100 cheap re-evaluations of a statistic of group sums.
JACKKNIFE_MAX_GROUPS = 100

@dataclass(frozen=True)
class KernelSpec:
    """A normalised smoothing kernel on the smoothed coordinates.

    Attributes
    ----------
    kind : {"box", "gaussian"}
    R, k : float or None
        Box kernel ``K_{R,k}`` (eq 6; ``k = inf`` is the uniform hypercube).
    gamma : float or None
        Heat kernel ``exp(-(gamma/2) x^2)`` (eq 1 convention, variance ``1/gamma``).
    """

    kind: str
    R: float | None = None
    k: float = math.inf
    gamma: float | None = None

    @classmethod
    def make(cls, kind: str, *, R: Any = None, k: Any = math.inf, gamma: Any = None) -> "KernelSpec":
        """Validate the kernel arguments (ValueError naming the bad one)."""
        check_choice("kernel", kind, KERNELS)
        if kind == "box":
            if R is None:
                raise ValueError("R is required for kernel='box' (half side of the box, R > 0)")
            if gamma is not None:
                raise ValueError("gamma applies only to kernel='gaussian'; leave it None for 'box'")
            return cls("box", R=check_positive("R", R), k=check_sharpness(k))
        if gamma is None:
            raise ValueError("gamma is required for kernel='gaussian' (inverse variance, gamma > 0)")
        if R is not None or k != math.inf:
            raise ValueError("R and k apply only to kernel='box'; leave them unset for 'gaussian'")
        return cls("gaussian", gamma=check_positive("gamma", gamma))

    @property
    def finite_k(self) -> bool:
        return self.kind == "box" and not math.isinf(self.k)

    @property
    def scale(self) -> float:
        """Typical displacement: ``R`` for the box, ``1/sqrt(gamma)`` for the heat kernel."""
        return self.R if self.kind == "box" else 1.0 / math.sqrt(self.gamma)

    @property
    def uniforms_per_coordinate(self) -> int:
        """Sobol dimensions per coordinate: 2 for finite ``k`` (uniform + logistic), else 1."""
        return 2 if self.finite_k else 1

    def log_normaliser(self, n: int) -> float:
        """``log Z_K`` for ``n`` smoothed coordinates."""
        if self.kind == "box":
            return log_normaliser(self.R, self.k, n)
        return heat_log_normaliser(self.gamma, n)

    def sample(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        """Exact draws from the normalised kernel (``anisotropy.kernels`` samplers)."""
        if self.kind == "box":
            return sample_kernel(shape, R=self.R, k=self.k, rng=rng)
        return sample_heat(shape, gamma=self.gamma, rng=rng)

    def from_uniforms(self, u: np.ndarray) -> np.ndarray:
        r"""Map uniforms ``u`` of shape ``(b, n * uniforms_per_coordinate)`` in ``(0, 1)``
        to kernel draws of shape ``(b, n)`` by inverse CDFs.

        Box: ``R (2u - 1)``; finite ``k``: that plus a logistic
        ``(1/(2k)) logit(u')`` from a second uniform (the kernel is exactly the law of
        Uniform + Logistic, PAPER-NOTES section 1); heat: ``ndtri(u)/sqrt(gamma)``.
        """
        if self.kind == "gaussian":
            return special.ndtri(u) / math.sqrt(self.gamma)
        if not self.finite_k:
            return self.R * (2.0 * u - 1.0)
        n = u.shape[-1] // 2
        uni, v = u[..., :n], u[..., n:]
        return self.R * (2.0 * uni - 1.0) + (np.log(v) - np.log1p(-v)) / (2.0 * self.k)


# --------------------------------------------------------------- diagnostics
def weight_diagnostics(log_w: Any) -> tuple[float, float]:
    r"""Relative variance and effective sample size of weights given by their logs.

    With ``w_a = exp(log_w_a)`` (``y`` of them), computed after subtracting
    ``max log_w`` so nothing overflows:

    * ``relative_variance = s^2 / mean^2`` with the unbiased sample variance
      ``s^2`` (``ddof = 1``; ``0`` for ``y = 1``);
    * ``ess = (sum w)^2 / sum w^2`` (between 1 and ``y``).

    Returns
    -------
    (relative_variance, ess) : tuple of float
    """
    lw = np.asarray(log_w, dtype=np.float64).ravel()
    if lw.size == 0:
        raise ValueError("log_w must contain at least one weight")
    if np.isnan(lw).any() or (lw == np.inf).any():
        raise ValueError("log_w contains NaN or +inf")
    u = np.exp(lw - lw.max())
    s1, s2 = u.sum(), np.dot(u, u)
    ess = float(s1 * s1 / s2)
    y = lw.size
    if y == 1:
        return 0.0, ess
    mean = s1 / y
    var = np.sum((u - mean) ** 2) / (y - 1)
    return float(var / (mean * mean)), ess


# ----------------------------------------------------------------- jackknife
def jackknife(sums: np.ndarray, statistic: Callable[[np.ndarray], float],
              *, max_groups: int = JACKKNIFE_MAX_GROUPS) -> float:
    r"""Delete-a-group jackknife estimate of the bias of ``statistic(total)``.

    Parameters
    ----------
    sums : ndarray, shape (units, m)
        Per-unit additive statistics (e.g. ``[1, w_a]`` or ``[1, f, g, f^2, g^2, f g]``).
    statistic : callable
        Maps summed statistics of shape ``(m,)`` to the estimate.
    max_groups : int
        The units are split into ``G = min(units, max_groups)`` contiguous groups
        (leave-one-out when ``units <= max_groups``).

    Returns
    -------
    float
        ``(G - 1) (mean_g theta_(-g) - theta)``; subtract it from the estimate.
        Exact for equal group sizes; ``np.array_split`` sizes differ by at most one
        unit, an ``O(1/units^2)`` effect.
    """
    sums = np.asarray(sums, dtype=np.float64)
    units = sums.shape[0]
    if units < 2:
        raise ValueError(f"the jackknife needs at least 2 units, got {units}")
    groups = min(units, max_groups)
    total = sums.sum(axis=0)
    theta = statistic(total)
    parts = np.array([g.sum(axis=0) for g in np.array_split(sums, groups)])
    loo = np.array([statistic(total - p) for p in parts])
    return float((groups - 1) * (loo.mean() - theta))


# ------------------------------------------------------- input and evaluation
def as_generator(seed: Any) -> np.random.Generator:
    """``seed`` (int) -> ``numpy.random.default_rng(seed)``; a Generator is used as is."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int or a numpy.random.Generator, got {seed!r}")
    return np.random.default_rng(int(seed))


def check_centre(w: Any) -> np.ndarray:
    """The centre ``W`` as a finite float64 vector of shape ``(N,)``."""
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 1 or w.shape[0] == 0:
        raise ValueError(f"w must be a non-empty 1-D array of shape (N,), got shape {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError("w contains NaN or inf; it must be finite")
    return w


def smoothed_indices(mask: Any, n: int) -> np.ndarray:
    """Indices of the smoothed coordinates ``U`` (all for ``mask=None``; at least one)."""
    if mask is None:
        return np.arange(n)
    mask = check_mask(np.asarray(mask), n)
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        raise ValueError("mask selects no coordinate; it must select at least one (|U| >= 1)")
    return idx


def batch_rows(batch_size: Any, N: int) -> int:
    """Perturbations per loss call: ``batch_size`` or ``2^22 // N`` (32 MiB of float64)."""
    if batch_size is None:
        return max(1, _BATCH_ELEMENTS // N)
    return check_int("batch_size", batch_size, minimum=1)


def evaluate_loss(loss: Callable, w: np.ndarray, idx: np.ndarray, dw: np.ndarray) -> np.ndarray:
    """``L(w + dW)`` for displacements ``dw`` of shape (b, |U|) on ``idx`` -> (b,).

    Raises ValueError if the loss returns another shape or a non-finite value.
    """
    x = np.repeat(w[None, :], dw.shape[0], axis=0)
    x[:, idx] += dw
    out = np.asarray(loss(x), dtype=np.float64)
    if out.shape != (dw.shape[0],):
        raise ValueError(f"loss must map an array of shape (b, N) = {x.shape} to shape "
                         f"({dw.shape[0]},), got shape {out.shape}")
    if not np.isfinite(out).all():
        raise ValueError("loss returned NaN or inf; it must be finite at every evaluated point")
    return out


def log_weights(loss: Callable, w: np.ndarray, idx: np.ndarray, draw: Callable[[int], np.ndarray],
                total: int, batch: int, beta: float) -> np.ndarray:
    """-beta L(w + dW) for ``total`` perturbations produced ``draw(b)`` at a time."""
    out = np.empty(total)
    for s in range(0, total, batch):
        b = min(batch, total - s)
        out[s:s + b] = -beta * evaluate_loss(loss, w, idx, draw(b))
    return out
