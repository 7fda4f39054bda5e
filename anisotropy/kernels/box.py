r"""The box kernel :math:`K_{R,k}` of eqs 5-8 as a :class:`~anisotropy.kernels.Kernel`.

Per coordinate :math:`K_{R,k}(x) = s(2k(R-x))\,s(2k(R+x))` with the logistic
sigmoid ``s`` (eq 6), evaluated through the stable softplus distance of eq 5;
``k = inf`` is the hard hypercube of eqs 7-8.  The normalised kernel is exactly
the law of ``Uniform(-R, R) + Logistic(0, 1/(2k))``, which gives the exact
sampler.  The arithmetic is that of :mod:`anisotropy.kernels.closed_form`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from anisotropy.kernels import closed_form as cf
from anisotropy.kernels.base import Kernel
from anisotropy.validation import check_positive, check_sharpness

__all__ = ["BoxKernel", "uniform_from_bits", "logistic_from_bits"]

# Mantissa widths of the uniform grids: U[0, 1) is (bits >> (width - m)) * 2**-m,
# the construction of numpy's Generator.random, with m = 24 (float32) or 53.
_MANTISSA = {np.dtype(np.float32): 24, np.dtype(np.float64): 53}


def uniform_from_bits(
    bits: np.random.BitGenerator, out: np.ndarray, lo: float, width: float
) -> None:
    """Fill ``out`` (float32/64) with ``lo + width * U[0, 1)`` from raw 64-bit words.

    Converting raw words in place (two float32 per word) is about 1.5x faster
    than ``Generator.random(dtype=float32)``, which draws one buffered 32-bit
    word per call, and gives the same law.
    """
    m = _MANTISSA[out.dtype]
    u: np.ndarray  # raw words: uint32 halves for float32, uint64 for float64
    if m == 24:
        u = bits.random_raw(-(-out.size // 2)).view(np.uint32)[: out.size]
        u >>= 32 - m
    else:
        u = bits.random_raw(out.size)
        u >>= 64 - m
    np.multiply(u, out.dtype.type(width * 2.0**-m), out=out, casting="unsafe")
    if lo:
        out += out.dtype.type(lo)


def logistic_from_bits(bits: np.random.BitGenerator, out: np.ndarray) -> None:
    r"""Fill ``out`` (float32/64) with standard logistic draws ``log(V / (1 - V))``.

    ``V`` is uniform on the ``2^m`` midpoints ``(j + 1/2) 2^{-m}`` of the cells of
    the ``m``-bit grid of ``(0, 1)`` (``m`` = 24 for float32, 53 for float64): the
    low bit of each ``m``-bit word picks the tail and the other ``m - 1`` bits
    ``j`` the distance ``w = (j + 1/2) 2^{-m}`` of ``V`` from it, so the draw is
    :math:`\mp(\log(1 - w) - \log w)`.  Every ``w`` is exact in the output
    dtype (``2j + 1 < 2^m``), no ``V`` is 0 or 1 (no clamp, no point mass) and
    the law is exactly symmetric in floating point: the extremes are
    :math:`\pm\log(2^{m+1} - 1)`, about 17.33 (float32) and 37.43 (float64).
    """
    m = _MANTISSA[out.dtype]
    u: np.ndarray
    if m == 24:
        u = bits.random_raw(-(-out.size // 2)).view(np.uint32)[: out.size]
        u >>= 32 - m
    else:
        u = bits.random_raw(out.size)
        u >>= 64 - m
    lower = (u & 1) == 0  # the tail: V = w (below 1/2) or 1 - w
    u |= 1  # 2j + 1
    w = np.multiply(u, out.dtype.type(2.0 ** -(m + 1)), dtype=out.dtype)  # (j + 1/2) 2^-m
    np.log1p(-w, out=out)
    out -= np.log(w)  # log((1 - w) / w) > 0
    np.negative(out, out=out, where=lower)


@dataclass(frozen=True)
class BoxKernel(Kernel):
    r"""Box kernel :math:`K_{R,k}` (eqs 5-6; ``k = inf``: the hypercube of eqs 7-8).

    Parameters
    ----------
    R : float
        Half side of the box, ``R > 0``.
    k : float
        Sharpness in ``(0, inf]``.

    Notes
    -----
    :math:`Z_1 = 2R/(1 - e^{-4kR})`; variance :math:`R^2/3 + \pi^2/(12 k^2)`
    (uniform plus logistic of scale ``1/(2k)``).
    """

    R: float
    k: float = math.inf
    symmetric: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "R", check_positive("R", self.R))
        object.__setattr__(self, "k", check_sharpness(self.k))

    # ----------------------------------------------------------- required
    def log_kernel(self, x: Any) -> Any:
        """``log K_{R,k}(x) = -d_{R,k}(x)`` (eq 6), per coordinate."""
        return cf.log_kernel(x, R=self.R, k=self.k)

    def log_normaliser(self) -> float:
        """``log Z_1(R, k)``, accurate for any ``4kR``."""
        return cf.log_normaliser(self.R, self.k, 1)

    def sample(
        self, shape: tuple[int, ...], *, generator: Any, dtype: Any = None, device: Any = None
    ) -> Any:
        """``Uniform(-R, R) + Logistic(0, 1/(2k))`` (only the uniform at ``k = inf``)."""
        return cf.sample_kernel(
            shape, R=self.R, k=self.k, rng=generator, dtype=dtype, device=device
        )

    # ----------------------------------------------------------- optional
    @property
    def name(self) -> str:
        """``"box"``, its name in configurations."""
        return "box"

    @property
    def finite_k(self) -> bool:
        """True for a finite sharpness (the logistic part is present)."""
        return not math.isinf(self.k)

    @property
    def scale(self) -> float:
        """The half side ``R``."""
        return self.R

    def with_scale(self, scale: float) -> BoxKernel:
        """The box of half side ``scale`` and the same ``k``."""
        return BoxKernel(scale, self.k)

    @classmethod
    def from_scale(cls, scale: float, **params: Any) -> BoxKernel:
        """``BoxKernel(R=scale, **params)``."""
        return cls(scale, **params)

    def variance(self) -> float:
        """``R^2/3 + pi^2/(12 k^2)``."""
        return self.R**2 / 3.0 + (math.pi**2 / (12.0 * self.k**2) if self.finite_k else 0.0)

    @property
    def uniforms_per_coordinate(self) -> int:
        """2 for finite ``k`` (uniform + logistic), else 1."""
        return 2 if self.finite_k else 1

    @property
    def tail_rate(self) -> float:
        """``2k``: the logistic tail decays like ``e^{-2k|x|}``."""
        return 2.0 * self.k

    def log_quadratic_average(self, p: Any, q: Any) -> np.ndarray:
        """Exact control-variate mean (:mod:`anisotropy.kernels.quadratic_average`)."""
        from anisotropy.kernels import quadratic_average as qa

        if self.finite_k:
            return qa.log_finite_k_quadratic_average(p, q, self.R, self.k)
        return qa.log_box_quadratic_average(p, q, self.R)

    def from_uniforms(self, u: np.ndarray) -> np.ndarray:
        r"""``R (2u - 1)``; finite ``k``: plus ``(1/(2k)) logit(u')``.

        ``u'`` is the second half of ``u``.
        """
        if not self.finite_k:
            return self.R * (2.0 * u - 1.0)
        n = u.shape[-1] // 2
        uni, v = u[..., :n], u[..., n:]
        return self.R * (2.0 * uni - 1.0) + (np.log(v) - np.log1p(-v)) / (2.0 * self.k)

    def sample_into(self, out: np.ndarray, bits: np.random.BitGenerator) -> None:
        """Fill ``out`` from raw words: ``U(-R, R)``, plus ``Logistic(0, 1/(2k))`` for finite ``k``
        (:func:`logistic_from_bits`)."""
        uniform_from_bits(bits, out, -self.R, 2.0 * self.R)
        if self.finite_k:
            v = np.empty_like(out)
            logistic_from_bits(bits, v)  # symmetric, no clamped endpoint
            v *= out.dtype.type(1.0 / (2.0 * self.k))
            out += v
