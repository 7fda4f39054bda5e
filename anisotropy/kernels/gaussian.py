r"""The heat kernel of eq 1 as a :class:`~anisotropy.kernels.Kernel`.

Per coordinate :math:`K(x) = e^{-(\gamma/2) x^2}` (the ``gamma/2`` convention of
eq 1, not the ``gamma`` of eq 11): the normalised kernel is a Gaussian of
variance :math:`1/\gamma` and :math:`Z_1 = \sqrt{2\pi/\gamma}`.  The arithmetic
is that of :mod:`anisotropy.kernels.closed_form`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from anisotropy.kernels import closed_form as cf
from anisotropy.kernels.base import Kernel
from anisotropy.validation import check_positive

__all__ = ["GaussianKernel"]


@dataclass(frozen=True)
class GaussianKernel(Kernel):
    r"""Heat kernel :math:`\exp(-(\gamma/2) x^2)` of eq 1.

    Parameters
    ----------
    gamma : float
        Precision, ``gamma > 0``: the normalised kernel is ``N(0, 1/gamma)``.
    """

    gamma: float
    symmetric: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "gamma", check_positive("gamma", self.gamma))

    # ----------------------------------------------------------- required
    def log_kernel(self, x: Any) -> Any:
        r"""``-(gamma/2) x^2`` per coordinate."""
        return cf.heat_log_kernel(x, gamma=self.gamma)

    def log_normaliser(self) -> float:
        r"""``1/2 log(2 pi / gamma)``."""
        return cf.heat_log_normaliser(self.gamma, 1)

    def sample(
        self, shape: tuple[int, ...], *, generator: Any, dtype: Any = None, device: Any = None
    ) -> Any:
        """Gaussian draws of variance ``1/gamma``."""
        return cf.sample_heat(shape, gamma=self.gamma, rng=generator, dtype=dtype, device=device)

    # ----------------------------------------------------------- optional
    @property
    def name(self) -> str:
        """``"gaussian"``, its name in configurations."""
        return "gaussian"

    @property
    def scale(self) -> float:
        """The standard deviation ``1/sqrt(gamma)``."""
        return 1.0 / math.sqrt(self.gamma)

    def with_scale(self, scale: float) -> GaussianKernel:
        """The heat kernel of standard deviation ``scale`` (``gamma = 1/scale^2``)."""
        return GaussianKernel.from_scale(scale)

    @classmethod
    def from_scale(cls, scale: float, **params: Any) -> GaussianKernel:
        """``GaussianKernel(gamma = 1/scale^2)``; no other parameter."""
        if params:
            raise ValueError(
                f"GaussianKernel.from_scale takes only the scale, got {sorted(params)}"
            )
        scale = check_positive("R", scale)
        return cls(1.0 / (scale * scale))

    def variance(self) -> float:
        """``1/gamma``."""
        return 1.0 / self.gamma

    def log_quadratic_average(self, p: Any, q: Any) -> np.ndarray:
        """``1/2 log(gamma/(gamma+q)) + p^2/(2(gamma+q))``.

        See :mod:`anisotropy.kernels.quadratic_average`.
        """
        from anisotropy.kernels import quadratic_average as qa

        return qa.log_heat_quadratic_average(p, q, self.gamma)

    def from_uniforms(self, u: np.ndarray) -> np.ndarray:
        """``ndtri(u) / sqrt(gamma)`` (inverse normal CDF)."""
        from scipy import special

        return special.ndtri(u) / math.sqrt(self.gamma)

    def sample_into(self, out: np.ndarray, bits: np.random.BitGenerator) -> None:
        """Fill ``out`` with standard normals of its dtype, times ``1/sqrt(gamma)``."""
        np.random.Generator(bits).standard_normal(out=out, dtype=out.dtype)
        out *= 1.0 / math.sqrt(self.gamma)
