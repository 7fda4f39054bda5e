r"""The smoothing kernel as an object: the one extension point for new kernels.

A kernel :math:`K` acts per coordinate and the smoothed coordinates ``U`` use
the product :math:`K^{[U]}(\Delta W) = \prod_{i \in U} K(\Delta W_i)` (eq 13 of
*Partial local entropy and anisotropy in deep weight spaces*).  Everything that
smooths or estimates (the partial losses of eqs 19-23, the free-entropy
estimators of eqs 10-18, the local energy) only calls the methods of
:class:`Kernel`, so a subclass written outside the package works everywhere.

Imports numpy only (no torch, no scipy) so that numpy-only work stays light.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np

__all__ = ["Kernel"]

_SUBCLASSING = "see the 'Subclassing' section of anisotropy.kernels.Kernel"


class Kernel(abc.ABC):
    r"""A smoothing kernel :math:`K(x) \ge 0` on one coordinate of weight space.

    Instances are immutable and carry all their parameters (e.g. the half side
    ``R`` of :class:`~anisotropy.kernels.BoxKernel`); they are stateless, so one
    instance may be shared by threads.  The normalised kernel is
    :math:`K / Z_1` with :math:`Z_1 = \int K(x)\,dx`.

    Methods
    -------
    log_kernel(x)
        Per-coordinate :math:`\log K(x)`, unnormalised (eq 6 for the box).
    log_normaliser()
        Per-coordinate :math:`\log Z_1`.
    sample(shape, *, generator, dtype=None, device=None)
        Exact draws from :math:`K / Z_1`.

    Subclassing
    -----------
    A kernel needs exactly three methods:

    * ``log_kernel(self, x)``: ``log K`` elementwise; accepts a numpy array or
      a torch tensor and returns the same kind and shape (``-inf`` where
      ``K = 0``).
    * ``log_normaliser(self) -> float``: ``log`` of the integral of ``K`` over
      one coordinate.
    * ``sample(self, shape, *, generator, dtype=None, device=None)``: exact
      draws from the normalised kernel; a ``numpy.random.Generator`` gives a
      numpy array (``dtype`` default float64), a ``torch.Generator`` a torch
      tensor (``dtype`` default ``torch.get_default_dtype()``, ``device``
      default the generator's).  All randomness comes from ``generator``.

    With these, the kernel works in :class:`anisotropy.PartialLocalEntropy`,
    :func:`anisotropy.local_energy` and the Monte Carlo estimator
    ``analysis.free_entropy.local_free_entropy(method="mc")``.  Further features
    need optional capabilities; their defaults raise :class:`NotImplementedError`
    naming the method and the feature that needs it:

    * ``scale`` (property), ``with_scale(scale)`` and the classmethod
      ``from_scale(scale, **params)``: a typical displacement (the box's ``R``,
      the heat kernel's standard deviation) and copies at another scale.  Radius
      schedules (``PartialLocalEntropy(R=callable)``), the legacy ``R`` keyword
      and the control variate's secant fit need them.
    * ``variance()``: per-coordinate variance of the normalised kernel (the
      second-order smoothing :math:`\tfrac12 \mathrm{Var}\,\mathrm{tr}\,H`).
    * ``log_quadratic_average(p, q)``:
      :math:`\log \mathbb{E}_{x \sim K/Z_1} e^{-(p x + q x^2/2)}` per coordinate,
      the exact mean of the control variate (``method="control_variate"``);
      set ``tail_rate`` too when ``K`` has exponential tails.
    * ``from_uniforms(u)`` and ``uniforms_per_coordinate``: inverse-CDF map of
      uniforms to draws, for randomised quasi Monte Carlo (``method="sobol"``).
    * ``symmetric = True`` (class attribute) when :math:`K(-x) = K(x)`, which
      antithetic pairs ``(dW, -dW)`` need (``method="antithetic"``).
    * ``sample_into(out, bits)``: fill a flat numpy array from a raw
      ``numpy.random.BitGenerator`` (the threaded CPU sampler of
      :mod:`anisotropy.smoothing.sampling`); the default calls :meth:`sample`,
      override it only for speed.
    * ``name``: the label shown in results (default: the class name).

    A minimal example, the triangular kernel :math:`\max(0, 1 - |x|/a)`::

        class Triangle(Kernel):
            symmetric = True

            def __init__(self, a):
                self.a = a

            def log_kernel(self, x):
                lib = torch if torch.is_tensor(x) else np
                t = abs(x) / self.a
                inside = t < 1
                return lib.where(inside, lib.log1p(-lib.where(inside, t, 0.0)), -math.inf)

            def log_normaliser(self):
                return math.log(self.a)

            def sample(self, shape, *, generator, dtype=None, device=None):
                if isinstance(generator, np.random.Generator):
                    return self.a * (generator.random(shape) - generator.random(shape))
                u = torch.rand((2, *shape), generator=generator, dtype=dtype, device=device)
                return self.a * (u[0] - u[1])

    To use it by name in TOML configurations and on the command line, add it
    to :mod:`anisotropy.kernels.registry`.
    """

    #: :math:`K(-x) = K(x)` (antithetic sampling relies on it; declare it explicitly)
    symmetric: ClassVar[bool] = False

    # ----------------------------------------------------------- required
    @abc.abstractmethod
    def log_kernel(self, x: Any) -> Any:
        """Per-coordinate ``log K(x)`` (unnormalised); numpy in, numpy out; torch in, torch out."""

    @abc.abstractmethod
    def log_normaliser(self) -> float:
        r"""Per-coordinate :math:`\log Z_1 = \log \int K(x)\,dx`."""

    @abc.abstractmethod
    def sample(
        self, shape: tuple[int, ...], *, generator: Any, dtype: Any = None, device: Any = None
    ) -> Any:
        """Exact draws of the given shape from the normalised kernel ``K / Z_1``."""

    # ----------------------------------------------------------- optional
    @property
    def name(self) -> str:
        """Label of the kernel in results and reports (default: the class name)."""
        return type(self).__name__

    @property
    def kind(self) -> str:
        """Alias of :attr:`name` (the former ``KernelSpec.kind``)."""
        return self.name

    @property
    def scale(self) -> float:
        """Typical displacement (box: ``R``; heat kernel: its standard deviation)."""
        raise self._missing(
            "scale", "radius schedules, the R keyword and the control variate's secant fit"
        )

    def with_scale(self, scale: float) -> Kernel:
        """The same kernel family at another :attr:`scale` (a scheduled ``R``)."""
        raise self._missing("with_scale", "radius schedules (R given as a callable step -> R)")

    @classmethod
    def from_scale(cls, scale: float, **params: Any) -> Kernel:
        """A kernel of this family with the given :attr:`scale` (the legacy ``R`` keyword)."""
        raise NotImplementedError(
            f"{cls.__name__}.from_scale is not implemented; building the kernel from a radius "
            f"R needs it ({_SUBCLASSING})"
        )

    def variance(self) -> float:
        """Per-coordinate variance of the normalised kernel."""
        raise self._missing("variance", "second-moment formulas")

    def log_quadratic_average(self, p: Any, q: Any) -> np.ndarray:
        r""":math:`\log \mathbb{E}_{x \sim K/Z_1}[e^{-(p_i x + q_i x^2/2)}]` per coordinate.

        Requires ``q >= 0``.
        """
        raise self._missing(
            "log_quadratic_average", "the control variate (method='control_variate')"
        )

    @property
    def tail_rate(self) -> float:
        r"""Rate :math:`\lambda` of exponential tails :math:`K(x) \sim e^{-\lambda |x|}`.

        ``inf`` (the default) for compact support or Gaussian tails.  The control
        variate keeps its linear coefficients ``|p| <= tail_rate / 2`` where the
        curvature is zero, so that :meth:`log_quadratic_average` stays finite.
        """
        return float("inf")

    @property
    def uniforms_per_coordinate(self) -> int:
        """Sobol dimensions per coordinate consumed by :meth:`from_uniforms` (default 1)."""
        return 1

    def from_uniforms(self, u: np.ndarray) -> np.ndarray:
        """Map uniforms, shape ``(b, n * uniforms_per_coordinate)``, to draws, shape ``(b, n)``."""
        raise self._missing("from_uniforms", "randomised quasi Monte Carlo (method='sobol')")

    def sample_into(self, out: np.ndarray, bits: np.random.BitGenerator) -> None:
        """Fill the 1-D float array ``out`` with exact draws from the raw stream ``bits``."""
        out[...] = self.sample(out.shape, generator=np.random.Generator(bits), dtype=out.dtype)

    # ------------------------------------------------------------- helpers
    def _missing(self, method: str, needed_by: str) -> NotImplementedError:
        return NotImplementedError(
            f"{type(self).__name__}.{method} is not implemented; {needed_by} need(s) it "
            f"({_SUBCLASSING})"
        )

    @classmethod
    def provides(cls, method: str) -> bool:
        """True when the class overrides the optional ``method`` of :class:`Kernel`."""
        owner = next(c for c in cls.__mro__ if method in vars(c))
        return owner is not Kernel

    def require(self, *methods: str, needed_by: str) -> None:
        """Raise :class:`NotImplementedError` naming the optional ``methods`` this kernel lacks.

        ``symmetric`` counts as a method: it must be declared ``True``.
        """
        cls = type(self)
        missing = [
            m for m in methods if (not cls.symmetric if m == "symmetric" else not cls.provides(m))
        ]
        if missing:
            what = ", ".join("symmetric = True" if m == "symmetric" else m for m in missing)
            raise NotImplementedError(
                f"{needed_by} needs {what}, which {cls.__name__} does not define ({_SUBCLASSING})"
            )
