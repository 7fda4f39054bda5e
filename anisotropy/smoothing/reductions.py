r"""Reductions of the per-configuration losses as objects: the extension point.

With :math:`L_a` the minibatch loss at the ``S`` evaluated configurations (the centre
:math:`W` and ``y`` perturbed weights :math:`W + \Delta W^a`), the smoothed loss of
*Partial local entropy and anisotropy in deep weight spaces* is a mean of the
:math:`L_a`:

* PLA, eq. 23: :math:`\frac1S \sum_a L_a` (:class:`PLA`);
* PLEA, eq. 22: :math:`-\log \frac1S \sum_a e^{-L_a}` (:class:`PLEA`);
* the beta family, :math:`-\frac1\beta \log \frac1S \sum_a e^{-\beta L_a}`, PLEA at
  ``beta = 1`` and PLA as ``beta -> 0`` (:class:`BetaReduction`).

:class:`anisotropy.smoothing.losses.PartialLocalEntropy` only calls a
:class:`LossReduction`, so a subclass written outside the package works there.  The names
of configurations and the command line (:data:`Reduction`) are mapped to classes by
:data:`REDUCTION_CLASSES`; :func:`as_reduction` turns a name or an instance into a
reduction, so a new named reduction is one class plus its name in this module.
"""

from __future__ import annotations

import abc
import functools
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Literal, get_args

import torch

from anisotropy.validation import check_choice, check_positive

__all__ = [
    "Reduction",
    "REDUCTIONS",
    "REDUCTION_CLASSES",
    "LossReduction",
    "widen_losses",
    "PLA",
    "PLEA",
    "BetaReduction",
    "beta_mean",
    "as_reduction",
    "reduction_parameters",
]

#: the reductions by name: ``pla`` is eq. 23, ``plea`` eq. 22, ``beta`` the beta family
Reduction = Literal["pla", "plea", "beta"]
REDUCTIONS: tuple[Reduction, ...] = get_args(Reduction)

#: losses in a floating dtype narrower than this (float16, bfloat16: the autocast dtypes)
#: are reduced in float32: bfloat16 keeps 8 significant bits, so a log-mean-exp evaluated
#: in it would be off by ~2^-8 relative before any training noise
_MIN_REDUCTION_BITS = 32


def widen_losses(losses: torch.Tensor) -> torch.Tensor:
    """``losses`` in float32 when their dtype is float16 or bfloat16, else unchanged.

    Mixed precision (``torch.autocast``) may leave the per-configuration losses in a
    16-bit dtype; the reductions of eqs. 22-23 run on them in float32.
    """
    if losses.is_floating_point() and torch.finfo(losses.dtype).bits < _MIN_REDUCTION_BITS:
        return losses.float()
    return losses


class LossReduction(abc.ABC):
    r"""A mean :math:`M(L_1, \dots, L_S)` of the ``S`` per-configuration losses.

    Calling the reduction on ``losses`` of shape ``(S, ...)`` (``S = y + 1`` with the
    centre first, or ``S = y`` without it) reduces the first axis and returns a tensor of
    shape ``losses.shape[1:]`` (a scalar for the ``(S,)`` losses of
    :class:`~anisotropy.smoothing.losses.PartialLocalEntropy`), differentiable with
    respect to ``losses``: its gradient weights the ``S`` per-configuration gradients.
    A single loss (``S = 1``) is returned unchanged, so ``y = 0`` is exactly the plain
    loss for every reduction.

    **Mixed precision.**  Losses in float16 or bfloat16 are cast to float32 first
    (:func:`widen_losses`) and the reduction runs with ``torch.autocast`` disabled, so
    under autocast the log-mean-exp of eq. 22 is evaluated in float32 (or in the losses'
    own dtype when wider) and the result is float32 at least.

    Attributes
    ----------
    linear : bool, class attribute
        ``True`` when the reduction is a fixed weighted sum of the ``L_a`` (its weights do
        not depend on the losses, as for PLA): micro-batches then accumulate in one pass
        (:func:`~anisotropy.smoothing.accumulation.accumulate_smoothed`).  Default
        ``False``, which is always correct (two passes).

    Subclassing
    -----------
    Implement ``reduce(self, losses)``: ``losses`` has shape ``(S, ...)`` with ``S >= 2``;
    reduce axis 0 with differentiable torch operations.  Pass the instance as
    ``PartialLocalEntropy(..., reduction=instance)`` or to :func:`reduce_losses
    <anisotropy.smoothing.losses.reduce_losses>`; nothing to register.  To use it by name
    in TOML configurations and on the command line, add its name to :data:`Reduction` and
    the class to :data:`REDUCTION_CLASSES` (its constructor parameters must then be
    among the configuration's, i.e. ``beta``).  The conditional value at risk, the mean of
    the ``ceil(q S)`` largest losses, for example::

        class CVaR(LossReduction):
            def __init__(self, q):
                self.q = q

            def reduce(self, losses):
                return losses.topk(math.ceil(self.q * losses.shape[0]), dim=0).values.mean(0)
    """

    linear: ClassVar[bool] = False

    def __call__(self, losses: torch.Tensor) -> torch.Tensor:
        """Reduce ``losses``, shape ``(S, ...)`` with ``S >= 1``, over its first axis
        (in float32 at least, outside autocast)."""
        if not isinstance(losses, torch.Tensor):
            raise TypeError(f"losses must be a torch.Tensor, got {type(losses).__name__}")
        if losses.dim() == 0 or losses.shape[0] == 0:
            raise ValueError(
                f"losses must have shape (S, ...) with S >= 1, got {tuple(losses.shape)}"
            )
        losses = widen_losses(losses)
        if losses.shape[0] == 1:
            return losses[0]
        device = losses.device.type
        if torch.is_autocast_enabled(device):
            with torch.autocast(device, enabled=False):
                return self.reduce(losses)
        return self.reduce(losses)

    @abc.abstractmethod
    def reduce(self, losses: torch.Tensor) -> torch.Tensor:
        """The mean of ``losses``, shape ``(S, ...)`` with ``S >= 2``, over axis 0."""

    @property
    def name(self) -> str:
        """Label of the reduction in reports (default: the class name)."""
        return type(self).__name__


def beta_mean(losses: torch.Tensor, beta: float) -> torch.Tensor:
    r""":math:`-\frac1\beta \log \frac1S \sum_a e^{-\beta L_a}` over axis 0 (eq. 22 at
    ``beta = 1``).

    Parameters
    ----------
    losses : torch.Tensor, shape (S, ...)
    beta : float
        Inverse temperature ``> 0`` (not validated here).

    Returns
    -------
    torch.Tensor, shape ``losses.shape[1:]``

    Notes
    -----
    This is :math:`-\frac1\beta(\mathrm{logsumexp}(-\beta L) - \log S)`, evaluated as
    :math:`c - \frac1\beta \mathrm{log1p}(\mathrm{mean}(\mathrm{expm1}(-\beta(L-c))))`
    with ``c = min L`` (detached): every exponent is ``<= 0`` (no overflow at large
    ``beta``) and for small ``beta`` no ``log S`` is subtracted from a nearly equal
    number, so the ``beta -> 0`` limit (PLA) is reached smoothly.  The gradient with
    respect to :math:`L_a` is :math:`\mathrm{softmax}(-\beta L)_a`.
    """
    c = losses.detach().amin(0)
    return c - torch.log1p(torch.expm1(-beta * (losses - c)).mean(0)) / beta


@dataclass(frozen=True)
class PLA(LossReduction):
    r"""Partial local average, eq. 23: :math:`\frac1S \sum_a L_a`."""

    linear: ClassVar[bool] = True

    def reduce(self, losses: torch.Tensor) -> torch.Tensor:
        """The arithmetic mean over axis 0."""
        return losses.mean(0)

    @property
    def name(self) -> str:
        """``"pla"``, its name in configurations."""
        return "pla"


@dataclass(frozen=True)
class PLEA(LossReduction):
    r"""Partial local entropy average, eq. 22: :math:`-\log \frac1S \sum_a e^{-L_a}`
    (:func:`beta_mean` at ``beta = 1``)."""

    def reduce(self, losses: torch.Tensor) -> torch.Tensor:
        """:func:`beta_mean` at ``beta = 1`` over axis 0."""
        return beta_mean(losses, 1.0)

    @property
    def name(self) -> str:
        """``"plea"``, its name in configurations."""
        return "plea"


@dataclass(frozen=True)
class BetaReduction(LossReduction):
    r"""The beta family :math:`-\frac1\beta \log \frac1S \sum_a e^{-\beta L_a}`: PLEA
    (eq. 22) at ``beta = 1``, PLA (eq. 23) as ``beta -> 0``, ``min L`` as ``beta -> inf``.

    Parameters
    ----------
    beta : float
        Inverse temperature in ``(0, inf)``.
    """

    beta: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "beta", check_positive("beta", self.beta))

    def reduce(self, losses: torch.Tensor) -> torch.Tensor:
        """:func:`beta_mean` over axis 0."""
        return beta_mean(losses, self.beta)

    @property
    def name(self) -> str:
        """``"beta"``, its name in configurations."""
        return "beta"


#: the class of each name of :data:`Reduction`
REDUCTION_CLASSES: dict[str, type[LossReduction]] = {
    "pla": PLA,
    "plea": PLEA,
    "beta": BetaReduction,
}
if set(REDUCTION_CLASSES) != set(REDUCTIONS):  # the two lists of this module must agree
    raise RuntimeError(f"Reduction {REDUCTIONS} and REDUCTION_CLASSES {tuple(REDUCTION_CLASSES)}")


def reduction_parameters(name: str) -> Mapping[str, Any]:
    """Constructor parameters of the reduction ``name``: ``{parameter: default}``."""
    return _parameters(check_choice("reduction", name, REDUCTIONS))


@functools.cache
def _parameters(name: str) -> Mapping[str, Any]:
    sig = inspect.signature(REDUCTION_CLASSES[name])
    return MappingProxyType({p.name: p.default for p in sig.parameters.values()})


def as_reduction(spec: LossReduction | str, /, **params: Any) -> LossReduction:
    """A :class:`LossReduction` from an instance or a name and its parameters.

    Parameters
    ----------
    spec : LossReduction or {"pla", "plea", "beta"}
        An instance is returned as is (it carries its own parameters; every entry of
        ``params`` must then be ``None``).
    **params
        Constructor parameters of the named reduction (``beta`` for ``"beta"``).  ``None``
        counts as unset (the class default); a parameter the named reduction does not take
        is ignored, since a configuration carries ``beta`` whatever its reduction.

    Raises
    ------
    ValueError
        Unknown name (the message lists the valid ones), a parameter set together with an
        instance, or an out-of-range value.
    TypeError
        ``spec`` is neither a :class:`LossReduction` nor a string.
    """
    if isinstance(spec, LossReduction):
        given = [p for p, v in params.items() if v is not None]
        if given:
            raise ValueError(
                f"{', '.join(given)} must be left unset when reduction is a "
                f"{type(spec).__name__} instance (it carries its own parameters)"
            )
        return spec
    if not isinstance(spec, str):
        raise TypeError(
            f"reduction must be a LossReduction instance or one of the names "
            f"{', '.join(map(repr, REDUCTIONS))}, got {type(spec).__name__}"
        )
    own = reduction_parameters(spec)
    return REDUCTION_CLASSES[spec](
        **{p: v for p, v in params.items() if p in own and v is not None}
    )
