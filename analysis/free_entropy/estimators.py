r"""Building blocks of the Monte Carlo free-entropy estimator (:mod:`analysis.free_entropy`).

* :func:`estimator_kernel` - the kernel of the keyword forms ``kernel=instance``
  or ``kernel=name, R=..., k=..., gamma=...`` (any :class:`anisotropy.kernels.Kernel`:
  exact sampler, normaliser and, optionally, inverse-CDF transform of uniforms);
  :class:`KernelSpec` is its former name-based wrapper, kept for compatibility;
* :func:`weight_diagnostics` - relative variance and effective sample size of
  importance weights given in log space;
* :func:`jackknife` and :func:`jackknife_stderr` - delete-a-group jackknife
  bias estimate and standard error of a statistic of group sums;
* input checks and batched, validated loss evaluation shared by the estimators.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from anisotropy.kernels import KERNEL_NAMES, Kernel, KernelName, as_kernel, check_mask
from anisotropy.validation import check_int

__all__ = [
    "KernelName",
    "KERNELS",
    "KernelSpec",
    "estimator_kernel",
    "weight_diagnostics",
    "jackknife",
    "jackknife_stderr",
    "JACKKNIFE_MAX_GROUPS",
    "as_generator",
    "check_centre",
    "smoothed_indices",
    "batch_rows",
    "evaluate_loss",
    "log_weights",
]

KERNELS: tuple[str, ...] = KERNEL_NAMES  # the names are defined once, in anisotropy.kernels

# Memory bound for one batch of perturbed weight vectors: 2^22 float64 = 32 MiB.
_BATCH_ELEMENTS = 2**22

# Delete-a-group jackknife with at most this many groups: the bias estimate's
# own standard error shrinks like 1/sqrt(groups) only up to the sampling noise,
# and 100 groups cost 100 cheap re-evaluations of a statistic of group sums.
JACKKNIFE_MAX_GROUPS = 100


def estimator_kernel(
    kernel: Kernel | KernelName | KernelSpec, *, R: Any = None, k: Any = math.inf, gamma: Any = None
) -> Kernel:
    """The kernel of the estimators: an instance as it is (``R``, ``k``, ``gamma``
    unset), or a name with its own parameters, strictly
    (:func:`anisotropy.kernels.as_kernel`: ``R`` is required for ``"box"``,
    ``gamma`` for ``"gaussian"``, and a parameter of the other kernel is an error)."""
    if isinstance(kernel, KernelSpec):
        kernel = kernel.kernel
    return as_kernel(kernel, R=R, k=k, gamma=gamma)


#: values of the former ``KernelSpec`` fields for a kernel that lacks them
_SPEC_DEFAULTS: dict[str, Any] = {"R": None, "k": math.inf, "gamma": None}


@dataclass(frozen=True)
class KernelSpec:
    """Former name-based description of the kernel, kept for compatibility.

    Wraps a :class:`anisotropy.kernels.Kernel`; its attributes (``R``, ``k``,
    ``gamma``, ``finite_k``, ``scale``, ...) are the kernel's and ``kind`` is its
    name.  New code passes the kernel itself.
    """

    kernel: Kernel

    @classmethod
    def make(cls, kind: Any, *, R: Any = None, k: Any = math.inf, gamma: Any = None) -> KernelSpec:
        """Validate the kernel arguments (ValueError naming the bad one)."""
        return cls(estimator_kernel(kind, R=R, k=k, gamma=gamma))

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") or attr == "kernel":  # not yet set (copy, pickle)
            raise AttributeError(attr)
        if attr in _SPEC_DEFAULTS:  # the former fields of every kind
            return getattr(self.kernel, attr, _SPEC_DEFAULTS[attr])
        return getattr(self.kernel, attr)

    @property
    def finite_k(self) -> bool:
        """True for a kernel with exponential tails (the box at finite ``k``)."""
        return math.isfinite(self.kernel.tail_rate)

    def log_normaliser(self, n: int) -> float:
        """``log Z_K`` for ``n`` smoothed coordinates."""
        return n * self.kernel.log_normaliser()

    def sample(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        """Exact draws from the normalised kernel."""
        return self.kernel.sample(shape, generator=rng)


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
def _leave_group_out(
    sums: np.ndarray, statistic: Callable[[np.ndarray], float], max_groups: int
) -> tuple[float, np.ndarray]:
    """``statistic`` of all units and of the ``G`` delete-a-group totals."""
    sums = np.asarray(sums, dtype=np.float64)
    units = sums.shape[0]
    if units < 2:
        raise ValueError(f"the jackknife needs at least 2 units, got {units}")
    groups = min(units, check_int("max_groups", max_groups, minimum=2))
    total = sums.sum(axis=0)
    parts = np.array([g.sum(axis=0) for g in np.array_split(sums, groups)])
    return statistic(total), np.array([statistic(total - p) for p in parts])


def jackknife(
    sums: np.ndarray,
    statistic: Callable[[np.ndarray], float],
    *,
    max_groups: int = JACKKNIFE_MAX_GROUPS,
) -> float:
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
    theta, loo = _leave_group_out(sums, statistic, max_groups)
    return float((loo.size - 1) * (loo.mean() - theta))


def jackknife_stderr(
    sums: np.ndarray,
    statistic: Callable[[np.ndarray], float],
    *,
    max_groups: int = JACKKNIFE_MAX_GROUPS,
) -> tuple[float, int]:
    r"""Delete-a-group jackknife standard error of ``statistic(total)``.

    ``se^2 = (G - 1)/G sum_g (theta_(-g) - mean_g theta_(-g))^2`` over the
    ``G = min(units, max_groups)`` delete-a-group estimates (same groups as
    :func:`jackknife`).  Unlike the delta method applied with plugged-in
    coefficients, it re-estimates everything the statistic estimates from the
    sample (the control variate's coefficient, the log of the mean), so their
    sampling noise enters the error bar; by the Efron-Stein inequality it errs
    on the large side.

    Returns
    -------
    (stderr, dof) : (float, int)
        ``dof = G - 1``, the degrees of freedom of the Student ``t`` interval
        ``theta +- t_{dof} se``.  ``stderr`` is ``inf`` if a delete-a-group
        estimate is not finite (the statistic is undefined on a sub-sample).
    """
    _, loo = _leave_group_out(sums, statistic, max_groups)
    groups = loo.size
    if not np.isfinite(loo).all():
        return math.inf, groups - 1
    return float(math.sqrt((groups - 1) / groups * np.sum((loo - loo.mean()) ** 2))), groups - 1


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
        raise ValueError(
            f"loss must map an array of shape (b, N) = {x.shape} to shape "
            f"({dw.shape[0]},), got shape {out.shape}"
        )
    if not np.isfinite(out).all():
        raise ValueError("loss returned NaN or inf; it must be finite at every evaluated point")
    return out


def log_weights(
    loss: Callable,
    w: np.ndarray,
    idx: np.ndarray,
    draw: Callable[[int], np.ndarray],
    total: int,
    batch: int,
    beta: float,
) -> np.ndarray:
    """-beta L(w + dW) for ``total`` perturbations produced ``draw(b)`` at a time."""
    out = np.empty(total)
    for s in range(0, total, batch):
        b = min(batch, total - s)
        out[s : s + b] = -beta * evaluate_loss(loss, w, idx, draw(b))
    return out
