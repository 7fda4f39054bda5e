r"""Smoothing kernels of the paper, their normalisers and exact samplers.

Per coordinate, with the logistic sigmoid :math:`s(x) = 1/(1+e^{-x})`
(eqs 5-6 of the paper),

.. math::

    d_{R,k}(x) = \operatorname{softplus}(2k(x-R)) + \operatorname{softplus}(-2k(x+R)),
    \qquad K_{R,k}(x) = e^{-d_{R,k}(x)} = s(2k(R-x))\, s(2k(R+x)).

The softplus form never overflows: for ``k`` up to 1e6 and ``|x|`` up to 1e3 the
arguments stay below 1e10, far inside the float32 range, and ``softplus`` of a
large negative argument underflows cleanly to ``+0``.  ``k = inf`` is the hard
hypercube (eqs 7-8): ``d = 0`` inside, ``log 2`` on the boundary (``K = 1/2``)
and ``+inf`` outside.

The 1-D normaliser is :math:`Z_1(R,k) = \int K\,dx = 2R / (1 - e^{-4kR})` and
the normalised kernel is *exactly* the law of ``U + L`` with
``U ~ Uniform(-R, R)`` and ``L ~ Logistic(0, 1/(2k))`` (proved in ``anisotropy facts``;
proved in :mod:`analysis.facts`), which gives the exact sampler
:func:`sample_kernel`.

The heat kernel of eq 1 is :math:`\exp(-(\gamma/2) x^2)`, i.e. a Gaussian of
variance :math:`1/\gamma`.  **Convention:** this package always uses the
``gamma/2`` of eq 1, not the ``gamma`` of eq 11.

Masked (partial) versions sum the distance over the mask's support only
(eq 13 of the paper): coordinates outside the mask contribute nothing, and
the partial normaliser is :math:`Z_1^{|U|}`.

Every function accepts numpy arrays or torch tensors and returns the same kind.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from anisotropy.validation import (
    _is_torch,
    check_finite,
    check_int,
    check_positive,
    check_sharpness,
)

__all__ = [
    "distance",
    "log_kernel",
    "kernel",
    "masked_distance",
    "masked_log_kernel",
    "heat_distance",
    "heat_log_kernel",
    "log_normaliser",
    "heat_log_normaliser",
    "sample_kernel",
    "sample_heat",
    "check_mask",
]

LOG2 = math.log(2.0)

#: torch's softplus returns z itself above its default threshold 20, an error of
#: log1p(e^-20) = 2e-9 (1e-10 relative) in float64; above 40 the error e^-40 = 4e-18 is
#: below half an ulp of z in float64 (and exp(40) is still finite in float32).
_TORCH_SOFTPLUS_THRESHOLD = 40.0


def _as_float_array(name: str, x: Any) -> Any:
    if _is_torch(x):
        if not x.is_floating_point():
            x = x.double()
    else:
        x = np.asarray(x)
        if x.dtype.kind not in "f":
            x = x.astype(np.float64)
    return check_finite(name, x)


def _softplus(z: Any) -> Any:
    if _is_torch(z):
        import torch

        return torch.nn.functional.softplus(z, threshold=_TORCH_SOFTPLUS_THRESHOLD)
    return np.logaddexp(0.0, z)


def _check_rk(R: Any, k: Any) -> tuple[float, float]:
    return check_positive("R", R), check_sharpness(k)


def distance(x: Any, *, R: float, k: float = math.inf) -> Any:
    r"""Per-coordinate distance :math:`d_{R,k}(x)` (stable form of eq 5).

    Parameters
    ----------
    x : array_like or torch.Tensor, any shape
        Displacements :math:`\Delta W_i`.  Must be finite.
    R : float
        Half side of the smoothing box, ``R > 0``.
    k : float, keyword-only
        Sharpness in ``(0, inf]``; ``inf`` gives the hard box.

    Returns
    -------
    Same type and shape as ``x``; ``d >= 0`` (``+0``, never ``-0``).
    """
    R, k = _check_rk(R, k)
    x = _as_float_array("x", x)
    if math.isinf(k):
        ax = abs(x)
        if _is_torch(x):
            import torch

            inside = torch.zeros_like(x)
            out = torch.where(ax < R, inside, torch.full_like(x, math.inf))
            return torch.where(ax == R, torch.full_like(x, LOG2), out)
        hard = np.where(ax < R, 0.0, np.inf)
        return np.where(ax == R, LOG2, hard).astype(x.dtype, copy=False)
    two_k = 2.0 * k
    return _softplus(two_k * (x - R)) + _softplus(-two_k * (x + R))


def log_kernel(x: Any, *, R: float, k: float = math.inf) -> Any:
    """Per-coordinate :math:`\\log K_{R,k}(x) = -d_{R,k}(x)` (eq 6); ``<= 0``, never ``-0``."""
    return 0.0 - distance(x, R=R, k=k)


def kernel(x: Any, *, R: float, k: float = math.inf) -> Any:
    """Per-coordinate kernel :math:`K_{R,k}(x) \\in [0, 1]` (eq 6; eq 8 at ``k = inf``)."""
    lk = log_kernel(x, R=R, k=k)
    if _is_torch(lk):
        return lk.exp()
    return np.exp(lk)


def check_mask(mask: Any, n: int) -> Any:
    """Validate a boolean mask of shape ``(n,)``; returns it (array_like as an ndarray).

    Raises
    ------
    ValueError
        If ``mask`` is not boolean or its shape is not ``(n,)``.
    """
    if not _is_torch(mask):
        mask = np.asarray(mask)
        dtype_ok = mask.dtype == np.bool_
    else:
        import torch

        dtype_ok = mask.dtype == torch.bool
    if not dtype_ok:
        raise ValueError(f"mask must be a boolean array of shape ({n},), got dtype {mask.dtype}")
    if tuple(mask.shape) != (n,):
        raise ValueError(
            f"mask must have shape ({n},) to match the last axis, got {tuple(mask.shape)}"
        )
    return mask


def masked_distance(dw: Any, mask: Any | None = None, *, R: float, k: float = math.inf) -> Any:
    r"""Partial distance :math:`d^{[U]}_{R,k}(\Delta W)` (eq 13 of the paper).

    The sum of :func:`distance` over the coordinates where ``mask`` is true;
    masked-out coordinates contribute nothing (not the constant
    ``2 softplus(-2kR)`` a literal reading of eq 13 would add).

    Parameters
    ----------
    dw : array_like or torch.Tensor, shape (..., N)
    mask : bool array of shape (N,), optional
        Smoothed coordinates; ``None`` means all of them.

    Returns
    -------
    shape (...)
    """
    dw = _as_float_array("dw", dw)
    if dw.ndim == 0:
        raise ValueError("dw must have at least one axis (..., N), got a scalar")
    d = distance(dw, R=R, k=k)
    if mask is not None:
        mask = check_mask(mask, dw.shape[-1])
        if _is_torch(d):
            import torch

            mask = torch.as_tensor(mask, device=d.device)
            d = torch.where(mask, d, torch.zeros_like(d))
        else:
            d = np.where(mask, d, 0.0)
    return d.sum(-1) if _is_torch(d) else d.sum(axis=-1)


def masked_log_kernel(dw: Any, mask: Any | None = None, *, R: float, k: float = math.inf) -> Any:
    """:math:`\\log K^{[U]}_{R,k}(\\Delta W) = -d^{[U]}_{R,k}(\\Delta W)`; shape (...)."""
    return 0.0 - masked_distance(dw, mask, R=R, k=k)


def heat_distance(x: Any, *, gamma: float) -> Any:
    r"""Per-coordinate heat-kernel distance :math:`(\gamma/2) x^2` (eq 1 convention)."""
    gamma = check_positive("gamma", gamma)
    x = _as_float_array("x", x)
    return 0.5 * gamma * x * x


def heat_log_kernel(x: Any, *, gamma: float) -> Any:
    r"""Per-coordinate :math:`\log` of the heat kernel :math:`\exp(-(\gamma/2)x^2)` of eq 1."""
    return 0.0 - heat_distance(x, gamma=gamma)


def log_normaliser(R: float, k: float = math.inf, n: int = 1) -> float:
    r"""``n log Z_1(R, k)`` with :math:`Z_1 = 2R/(1 - e^{-4kR})`, in log space.

    ``log Z_1 = log(2R) - log(-expm1(-4kR))``, accurate for ``4kR`` from 1e-300
    to ``inf`` (at ``k = inf`` it is ``log 2R``).  ``n`` is the number of smoothed
    coordinates :math:`|U|`.
    """
    R, k = _check_rk(R, k)
    n = check_int("n", n, minimum=0)
    log_z1 = math.log(2.0 * R)
    if not math.isinf(k):
        log_z1 -= math.log(-math.expm1(-4.0 * k * R))
    return n * log_z1


def heat_log_normaliser(gamma: float, n: int = 1) -> float:
    r"""``n log`` of :math:`\int e^{-(\gamma/2)x^2}dx = \sqrt{2\pi/\gamma}`."""
    gamma = check_positive("gamma", gamma)
    n = check_int("n", n, minimum=0)
    return 0.5 * n * math.log(2.0 * math.pi / gamma)


def _torch_bits(shape, generator, dtype, device):
    """Uniform ``m``-bit integers ``j`` (``m`` = the significand width of ``dtype``:
    24 for float32, 53 for float64) and ``m``."""
    import torch

    m = 1 - round(math.log2(torch.finfo(dtype).eps))  # eps = 2^(1 - m)
    idtype = torch.int32 if m < 31 else torch.int64
    return torch.randint(0, 2**m, shape, generator=generator, dtype=idtype, device=device), m


def _torch_uniform(shape, generator, dtype, device, R):
    """``Uniform(-R, R)`` on the ``2^m`` cell midpoints: exact and symmetric in ``dtype``.

    ``R (j - (2^{m-1} - 1/2)) 2^{1-m}`` with a half-integer exact in ``dtype``
    (as :func:`anisotropy.kernels.box.uniform_from_bits`): never ``-R`` or ``R``, and
    ``j``, ``2^m - 1 - j`` give opposite draws.
    """
    j, m = _torch_bits(shape, generator, dtype, device)
    return j.to(dtype).sub_(2.0 ** (m - 1) - 0.5).mul_(R * 2.0 ** (1 - m))


def _torch_logistic(shape, generator, dtype, device):
    r"""Standard logistic draws ``log(V / (1 - V))``, ``V`` on the ``2^m`` cell midpoints.

    The construction of :func:`anisotropy.kernels.box.logistic_from_bits`: the low bit
    of ``j`` picks the tail and the others the distance ``w = (j' + 1/2) 2^{-m}`` of
    ``V`` from it, exact in ``dtype``; no ``V`` is 0 or 1 (no clamp, no point mass at
    the smallest normal as before) and the law is exactly symmetric.
    """
    import torch

    j, m = _torch_bits(shape, generator, dtype, device)
    w = (j | 1).to(dtype).mul_(2.0 ** -(m + 1))  # (j' + 1/2) 2^-m, exact: 2j' + 1 < 2^m
    lower = torch.log(w) - torch.log1p(-w)  # the lower tail, < 0
    return torch.where((j & 1).bool(), -lower, lower)


def sample_kernel(
    shape: tuple[int, ...],
    *,
    R: float,
    k: float = math.inf,
    rng: Any,
    dtype: Any = None,
    device: Any = None,
) -> Any:
    r"""Exact draws from the normalised kernel :math:`K_{R,k}/Z_1` per coordinate.

    ``U + L`` with ``U ~ Uniform(-R, R)`` and ``L ~ Logistic(0, 1/(2k))``; at
    ``k = inf`` only ``U``.

    Parameters
    ----------
    shape : tuple of int
    R, k : float
        Kernel parameters (``R > 0``, ``k`` in ``(0, inf]``).
    rng : numpy.random.Generator or torch.Generator
        Source of randomness; the result is a numpy array for a numpy generator
        and a torch tensor (``dtype``, ``device``) for a torch generator.
    """
    R, k = _check_rk(R, k)
    if isinstance(rng, np.random.Generator):
        draws = rng.uniform(-R, R, size=shape)
        if not math.isinf(k):
            draws = draws + rng.logistic(0.0, 1.0 / (2.0 * k), size=shape)
        return draws.astype(dtype or np.float64, copy=False)
    import torch

    if not isinstance(rng, torch.Generator):
        raise ValueError(
            f"rng must be a numpy.random.Generator or torch.Generator, got {type(rng)}"
        )
    dtype = dtype or torch.get_default_dtype()
    device = device or rng.device
    out = _torch_uniform(shape, rng, dtype, device, R)
    if not math.isinf(k):
        out += _torch_logistic(shape, rng, dtype, device).mul_(1.0 / (2.0 * k))
    return out


def sample_heat(
    shape: tuple[int, ...], *, gamma: float, rng: Any, dtype: Any = None, device: Any = None
) -> Any:
    r"""Exact draws from the normalised heat kernel: Gaussian of variance ``1/gamma``."""
    gamma = check_positive("gamma", gamma)
    sd = 1.0 / math.sqrt(gamma)
    if isinstance(rng, np.random.Generator):
        return rng.normal(0.0, sd, size=shape).astype(dtype or np.float64, copy=False)
    import torch

    if not isinstance(rng, torch.Generator):
        raise ValueError(
            f"rng must be a numpy.random.Generator or torch.Generator, got {type(rng)}"
        )
    dtype = dtype or torch.get_default_dtype()
    device = device or rng.device
    return torch.randn(shape, generator=rng, dtype=dtype, device=device).mul_(sd)
