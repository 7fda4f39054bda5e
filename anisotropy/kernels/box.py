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

__all__ = ["BoxKernel", "top_bits", "uniform_from_bits", "logistic_from_bits"]

# Widths of the uniform grids: ``m`` random bits per draw, the significand width of the
# output dtype (24 for float32, 53 for float64), so that every grid point below is
# exact in that dtype.
_MANTISSA = {np.dtype(np.float32): 24, np.dtype(np.float64): 53}
# Signed integer views of the words: ``m``-bit integers fit and convert exactly.
_SIGNED = {24: np.int32, 53: np.int64}
# The finite-k sampler works on chunks of this many draws: its half a dozen
# temporaries (64-256 KiB each) then come from the reused heap instead of fresh
# pages (page faults cost as much as the logarithms on a 1 MiB block).
_CHUNK = 1 << 16


def top_bits(bits: np.random.BitGenerator, n: int, m: int) -> np.ndarray:
    """``n`` uniform ``m``-bit integers ``j`` in ``[0, 2^m)`` from raw 64-bit words.

    ``m = 24``: the top 24 bits of each 32-bit half of a word (two per word);
    ``m = 53``: the top 53 bits of each word.  Returned as a signed integer array
    (int32 / int64), which converts to float32 / float64 without a float64 detour.
    """
    u: np.ndarray
    if m == 24:
        u = bits.random_raw(-(-n // 2)).view(np.uint32)[:n]
        u >>= 32 - m
    else:
        u = bits.random_raw(n)
        u >>= 64 - m
    return u.view(_SIGNED[m])


def uniform_from_bits(
    bits: np.random.BitGenerator, out: np.ndarray, lo: float, width: float
) -> None:
    r"""Fill ``out`` (float32/64) with ``lo + width * V`` from raw 64-bit words.

    ``V`` is uniform on the ``2^m`` midpoints :math:`(j + 1/2)\,2^{-m}` of the
    cells of the ``m``-bit grid of ``(0, 1)`` (``m`` = 24 for float32, 53 for
    float64): never 0 or 1.  The draw is computed as
    :math:`c + w\,2^{-m}\,(j - (2^{m-1} - 1/2))` with ``c = lo + width/2``: the
    half-integer is exact in the output dtype (magnitude below :math:`2^{m-1}`), so
    the integers convert straight to the output dtype (no float64 detour) and, for
    ``c = 0`` (a centred interval such as the box's ``(-R, R)``), the law is exactly
    symmetric in floating point: ``j`` and ``2^m - 1 - j`` give opposite draws.
    All-zero words give the lowest midpoint :math:`lo + width\,2^{-m-1}`.
    """
    m = _MANTISSA[out.dtype]
    j = top_bits(bits, out.size, m)
    np.subtract(j, out.dtype.type(2.0 ** (m - 1) - 0.5), out=out, dtype=out.dtype)
    out *= out.dtype.type(width * 2.0**-m)
    centre = lo + 0.5 * width
    if centre:
        out += out.dtype.type(centre)


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
    u = top_bits(bits, out.size, m)
    # the tail: the low bit moved to the sign bit (1: V = 1 - w, a positive draw)
    upper = np.left_shift(u, 8 * u.itemsize - 1)
    u |= 1  # 2j + 1
    w = np.multiply(u, out.dtype.type(2.0 ** -(m + 1)), dtype=out.dtype)  # (j + 1/2) 2^-m
    np.log(w, out=out)
    np.negative(w, out=w)
    out -= np.log1p(w, out=w)  # log(w / (1 - w)) < 0, the lower tail
    out.view(upper.dtype)[...] ^= upper  # exact negation in the upper tail


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
        if not self.finite_k:
            uniform_from_bits(bits, out, -self.R, 2.0 * self.R)
            return
        scale = out.dtype.type(1.0 / (2.0 * self.k))
        v = np.empty(min(out.size, _CHUNK), out.dtype)
        for start in range(0, out.size, _CHUNK):
            part = out[start : start + _CHUNK]
            uniform_from_bits(bits, part, -self.R, 2.0 * self.R)
            logistic = v[: part.size]
            logistic_from_bits(bits, logistic)  # symmetric, no clamped endpoint
            logistic *= scale
            part += logistic
