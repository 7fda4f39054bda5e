r"""Partial local entropy losses for any torch model (eqs 19-23 of the paper).

With :math:`L_a` the minibatch loss at the weights :math:`W + \Delta W^a`
(``a = 1..y``, displacements non-zero only on the smoothed parameters ``U``)
and :math:`L_0 = L(W)` the centre, the ``S = y + 1`` terms combine as

* PLA, eq 23: :math:`\frac{1}{S}\sum_a L_a`;
* PLEA, eq 22: :math:`-\log \frac{1}{S}\sum_a e^{-L_a}`;
* the beta family: :math:`-\frac{1}{\beta}\log\frac{1}{S}\sum_a e^{-\beta L_a}`,
  PLEA at ``beta = 1`` and PLA as ``beta -> 0`` (a generalisation of eqs 22-23);
* any other mean, a :class:`~anisotropy.smoothing.reductions.LossReduction` subclass
  (:mod:`anisotropy.smoothing.reductions`, where the names above are defined).

The gradient is the mean of the ``S`` per-configuration gradients (PLA) or
their ``softmax(-beta L)``-weighted sum (PLEA, beta), so sampling does not act
as a larger learning rate.  Fresh displacements are drawn at every call from
the normalised kernel, any :class:`anisotropy.kernels.Kernel`
(:mod:`anisotropy.smoothing.sampling`); a box kernel at ``k = inf``
is the uniform hypercube of the paper's experiments, a finite ``k`` the exact
sampler of the kernel of eqs 5-6 (so the kernel weights of eqs 14 and 19 are
carried by the sampling law), and the Gaussian kernel the heat kernel of eq 1.
The evaluation itself lives in :mod:`anisotropy.smoothing.stacked`.

For real training loops a call takes pre-drawn displacements (``draws=``: micro-batches
of one step share them; :mod:`anisotropy.smoothing.accumulation` accumulates the exact
batch gradient of every reduction) and a ``sync=`` hook mapping this process's
per-configuration losses to the global ones (several processes); under ``torch.autocast``
the losses are reduced in float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import nn
from torch.nn import functional as F

from anisotropy.kernels import Kernel, KernelName
from anisotropy.smoothing.reductions import (
    REDUCTIONS,
    LossReduction,
    Reduction,
    as_reduction,
    widen_losses,
)
from anisotropy.smoothing.sampling import (
    _SEED_HIGH,
    PendingDraws,
    check_antithetic,
    resolve_kernel,
    select_parameters,
    start_perturbations,
)
from anisotropy.smoothing.stacked import children_for, stacked_outputs
from anisotropy.validation import check_choice, check_int, check_positive, check_sharpness

__all__ = [
    "Reduction",
    "REDUCTIONS",
    "R_NEGLIGIBLE",
    "reduce_losses",
    "SmoothedLoss",
    "PartialLocalEntropy",
]

Cut = Literal["auto", "off"]
CUTS: tuple[Cut, ...] = get_args(Cut)

#: modules whose training-mode forward draws from torch's global generator (dropout
#: masks, RReLU slopes); nn.MultiheadAttention counts when its ``dropout > 0``
_RANDOM_MODULES: tuple[type[nn.Module], ...] = (nn.modules.dropout._DropoutNd, nn.RReLU)


def _draws_global_rng(model: nn.Module) -> bool:
    """True if a module of ``model`` in training mode draws from torch's global generator."""
    return any(
        m.training
        and (
            isinstance(m, _RANDOM_MODULES)
            or (isinstance(m, nn.MultiheadAttention) and m.dropout > 0)
        )
        for m in model.modules()
    )


@contextmanager
def _global_rng_seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Torch's global CPU generator (and that of ``device`` when it is a CUDA device)
    seeded with ``seed`` inside the block, their states restored on exit."""
    index = None
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
    with torch.random.fork_rng(devices=[] if index is None else [index], device_type="cuda"):
        torch.default_generator.manual_seed(seed)
        if index is not None:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


#: a scheduled radius below this is no smoothing (the plain loss at that step): it moves
#: no float32 weight (their spacing near 1 is 1e-7, their smallest normal 1e-38), and
#: below it the heat kernel's precision gamma = 1/R^2 (eq 1) overflows float64 (1e308)
#: long before R reaches 0, as a fading schedule's last steps may
R_NEGLIGIBLE = 1e-150


def _check_radius(value: object) -> float:
    """A scheduled radius ``R(step)``: a finite number ``>= 0`` (0: no smoothing)."""
    if not isinstance(value, bool):
        try:
            v = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            v = math.nan
        if math.isfinite(v) and v >= 0:
            return v
    raise ValueError(
        f"R must be a finite number >= 0 at every step (0: no smoothing), got {value!r}"
    )


#: ``sync(losses) -> losses``: the per-configuration losses of this process (detached,
#: shape (S,)) to the global ones, e.g. their mean over the ranks of torch.distributed
Sync = Callable[[torch.Tensor], torch.Tensor]


def _check_draws(
    draws: object, params: Mapping[str, torch.Tensor], names: tuple[str, ...], y: int
) -> dict[str, torch.Tensor]:
    """``draws`` checked against the smoothed parameters: one tensor (y, *param.shape) of
    the parameter's dtype and device per name of ``names``, no other name."""
    if not isinstance(draws, Mapping):
        raise TypeError(
            f"draws must be a mapping name -> tensor (y, *param.shape) as returned by "
            f"PartialLocalEntropy.sample, got {type(draws).__name__}"
        )
    if set(draws) != set(names):
        missing, extra = sorted(set(names) - set(draws)), sorted(set(draws) - set(names))
        raise ValueError(
            f"draws must have exactly the smoothed parameters {list(names)} as keys; "
            f"missing {missing}, unexpected {extra}"
        )
    out = {}
    for n in names:
        d, p = draws[n], params[n]
        if not isinstance(d, torch.Tensor):
            raise TypeError(f"draws[{n!r}] must be a torch.Tensor, got {type(d).__name__}")
        if d.shape != (y, *p.shape) or d.dtype != p.dtype or d.device != p.device:
            raise ValueError(
                f"draws[{n!r}] must have shape {(y, *p.shape)} (y, *param.shape), dtype "
                f"{p.dtype} and device {p.device} like the parameter; got shape "
                f"{tuple(d.shape)}, dtype {d.dtype}, device {d.device}"
            )
        out[n] = d.detach()
    return out


def _synced(sync: Sync, local: torch.Tensor) -> torch.Tensor:
    """``sync(local)`` checked: a tensor of ``local``'s shape, cast to its dtype/device."""
    total = sync(local.clone())
    if not isinstance(total, torch.Tensor) or total.shape != local.shape:
        got = tuple(total.shape) if isinstance(total, torch.Tensor) else type(total).__name__
        raise ValueError(
            f"sync must return a tensor of the shape {tuple(local.shape)} of the "
            f"per-configuration losses it is given (their global values), got {got}"
        )
    return total.detach().to(dtype=local.dtype, device=local.device)


def reduce_losses(
    losses: torch.Tensor,
    *,
    reduction: LossReduction | Reduction = "pla",
    beta: float | None = None,
) -> torch.Tensor:
    r"""Combine per-configuration losses ``L_a`` (eqs 22-23, the beta family or any
    :class:`~anisotropy.smoothing.reductions.LossReduction`).

    Parameters
    ----------
    losses : torch.Tensor, shape (S, ...)
        ``L_a`` for the ``S >= 1`` evaluated configurations (centre included or not),
        reduced over the first axis.
    reduction : LossReduction or {"pla", "plea", "beta"}
        An instance, or a name: eq 23, eq 22, or
        :math:`-\frac1\beta\log\frac1S\sum_a e^{-\beta L_a}`
        (:func:`~anisotropy.smoothing.reductions.as_reduction`).
    beta : float, optional
        Inverse temperature of ``"beta"`` (default 1; ``"plea"`` is ``beta = 1``); ignored
        by the other names, unset with an instance.

    Returns
    -------
    torch.Tensor, shape ``losses.shape[1:]``
        A single loss (``S = 1``) is returned unchanged.
    """
    return as_reduction(reduction, beta=beta)(losses)


@dataclass(frozen=True)
class SmoothedLoss:
    """Result of one evaluation of :class:`PartialLocalEntropy`.

    Attributes
    ----------
    loss : torch.Tensor, scalar
        The smoothed loss, differentiable w.r.t. the model parameters.
    per_sample : torch.Tensor, shape (y + include_centre,)
        The detached ``L_a``, centre first when included.
    centre_output : torch.Tensor or None
        Detached model output at the unperturbed weights, shape (B, ...), or
        ``None`` when the centre is excluded.
    """

    loss: torch.Tensor
    per_sample: torch.Tensor
    centre_output: torch.Tensor | None


class PartialLocalEntropy:
    r"""Smoothed loss of ``model`` restricted to chosen parameters (eqs 19-23).

    Parameters
    ----------
    model : torch.nn.Module
        Any model; a flat ``nn.Sequential`` gets the fast cut path.
    base_loss : callable(output, targets) -> scalar tensor
        The loss :math:`L` being smoothed (default: mean cross-entropy).
    layers : str or iterable of str, keyword-only
        Smoothed parameters: exact parameter names, module names (their
        weights) or glob patterns; see :func:`anisotropy.smoothing.sampling.select_parameters`.
    reduction : LossReduction or {"pla", "plea", "beta"}
        How the ``S`` losses combine: any
        :class:`~anisotropy.smoothing.reductions.LossReduction` instance (e.g.
        ``BetaReduction(2.0)`` or a subclass of your own), or a name: eq 23, eq 22, or the
        beta family (:func:`~anisotropy.smoothing.reductions.as_reduction`).  Kept as
        given in :attr:`reduction`; the object called is :attr:`loss_reduction`.
    beta : float, optional
        Inverse temperature of the name ``"beta"`` (``> 0``; default 1); must be left
        unset with an instance.
    kernel : Kernel or {"box", "gaussian"}
        Law of the displacements: the normalised kernel, e.g.
        ``BoxKernel(R, k)`` (eqs 5-6; ``k = inf``: uniform hypercube of half side
        ``R``), ``GaussianKernel(gamma)`` (the heat kernel of eq 1) or any
        :class:`~anisotropy.kernels.Kernel` subclass.  A name is converted with
        ``R``, ``k`` and ``gamma`` (:func:`anisotropy.smoothing.sampling.resolve_kernel`).
    R : float or callable(step) -> float, optional
        With a name: the box half side (default 0.01), or the heat kernel's
        standard deviation when ``gamma`` is ``None`` (``gamma = 1/R**2``).
        A callable is a schedule evaluated at every call's ``step`` and applied
        with :meth:`~anisotropy.kernels.Kernel.with_scale` (to an instance too;
        a float ``R`` with an instance is an error: the instance carries its scale).
        A schedule may reach ``R(step) = 0``: no smoothing at that step, the loss
        and its gradient are then exactly the plain (centre) ones.
    k : float, optional
        Box sharpness in ``(0, inf]`` (name form only; default ``inf``).
    gamma : float, optional
        Heat-kernel precision (variance ``1/gamma``; name form only).  When given,
        a schedule on ``R`` does not change it.
    y : int
        Number of perturbed configurations per call (``>= 0``; ``y = 0`` is
        exactly the plain loss).
    include_centre : bool
        Include :math:`L(W)` with weight ``1/(y+1)`` as in eqs 22-23.
    include_biases : bool
        Also smooth the biases of the selected modules (never in the paper).
    cut : {"auto", "off"}
        ``"auto"``: for an ``nn.Sequential``, evaluate the children before the
        first smoothed one once and batch the rest (:mod:`anisotropy.smoothing.stacked`);
        ``"off"``: run the whole model once per configuration.
    antithetic : bool
        Draw the displacements as ``y / 2`` antithetic pairs :math:`(\Delta W^a,
        -\Delta W^a)` sharing one draw (``y`` must be even, the kernel symmetric):
        every configuration keeps the kernel's law, so PLA stays unbiased, and the
        odd-order terms of the loss cancel within a pair (on a quadratic loss the
        PLA gradient is then exact).  On the cut path the first smoothed Linear
        computes :math:`h(W \pm \Delta W^a)^T` from :math:`hW^T` and one GEMM
        :math:`h\,\Delta W^{aT}` per pair (:mod:`anisotropy.smoothing.stacked`).

    Notes
    -----
    **Determinism.**  A call is a deterministic function of the model, the data,
    ``step`` and the state of the ``generator`` passed to it.  The perturbations
    are drawn from it first; then, when a module in training mode draws from
    torch's global generator (the dropout modules of ``torch.nn``, ``nn.RReLU``,
    ``nn.MultiheadAttention`` with ``dropout > 0``), one more seed is drawn from
    ``generator`` and the global generators of the CPU and of the input's CUDA
    device are seeded with it for the call, then restored: the global random
    state is left as it was.  Randomness of any other kind inside ``forward``
    (a custom module calling ``torch.rand`` or ``F.dropout``) still comes from the
    global generator and is not covered.  With ``y = 0`` and no generator the
    global generator is used as by a plain forward.

    **Buffers.**  BatchNorm running statistics (any buffer a module changes in
    its forward) end as after one plain forward at the centre weights, with the
    cut on or off: the perturbed configurations do not update them (with
    ``include_centre=False`` a gradient-free centre forward makes the update).
    """

    def __init__(
        self,
        model: nn.Module,
        base_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
        *,
        layers: str | Iterable[str] = ("fc2",),
        reduction: LossReduction | Reduction = "pla",
        beta: float | None = None,
        kernel: Kernel | KernelName = "box",
        R: float | Callable[[int], float] | None = None,
        k: float | None = None,
        gamma: float | None = None,
        y: int = 4,
        include_centre: bool = True,
        include_biases: bool = False,
        cut: Cut = "auto",
        antithetic: bool = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(base_loss):
            raise ValueError("base_loss must be callable(output, targets) -> scalar tensor")
        self.model = model
        self.base_loss = base_loss
        if isinstance(reduction, LossReduction):
            self.beta: float | None = beta
        else:  # a name: validated (beta too, whatever the name) as before the objects
            check_choice("reduction", reduction, REDUCTIONS)
            self.beta = check_positive("beta", 1.0 if beta is None else beta)
        self.reduction: LossReduction | Reduction = reduction
        self.loss_reduction: LossReduction = as_reduction(reduction, beta=self.beta)
        self.R = R
        self.kernel, self._schedule = self._make_kernel(kernel, R, k, gamma)
        self.y = check_int("y", y, minimum=0)
        self.include_centre = bool(include_centre)
        if self.y == 0 and not self.include_centre:
            raise ValueError("y must be >= 1 when include_centre=False (nothing to evaluate)")
        self.include_biases = bool(include_biases)
        self.cut = check_choice("cut", cut, CUTS)
        self.antithetic = check_antithetic(antithetic, self.y, self.kernel)
        self._names = select_parameters(model, layers, include_biases=self.include_biases)
        self._pieces = children_for(model, self._names, cut=self.cut == "auto")

    @property
    def smoothed_names(self) -> tuple[str, ...]:
        """Names of the smoothed parameters, in model order."""
        return self._names

    @property
    def uses_cut(self) -> bool:
        """True when the prefix before the first smoothed child is evaluated once."""
        return len(self._pieces) > 1

    @staticmethod
    def _make_kernel(
        kernel: Kernel | KernelName,
        R: float | Callable[[int], float] | None,
        k: float | None,
        gamma: float | None,
    ) -> tuple[Kernel, Callable[[int], float] | None]:
        """The kernel (at scale 1 when scheduled) and the ``R`` schedule it follows, if any."""
        if k is not None:
            check_sharpness(k)  # validated first: the messages name the argument
        if gamma is not None:
            check_positive("gamma", gamma)
        if not callable(R):
            return resolve_kernel(kernel, R, k, gamma), None
        if isinstance(kernel, Kernel):
            kernel.require("with_scale", needed_by="a radius schedule (R given as a callable)")
            return resolve_kernel(kernel, None, k, gamma), R
        # name form: the scale is the schedule's, unless gamma fixes the heat kernel
        return resolve_kernel(kernel, 1.0, k, gamma), R if gamma is None else None

    def radius(self, step: int = 0) -> float:
        """The kernel's scale at ``step``: the schedule's ``R(step)`` (validated ``>= 0``;
        0 means no smoothing at that step), else
        :attr:`Kernel.scale <anisotropy.kernels.Kernel.scale>` (the box's ``R``)."""
        step = check_int("step", step, minimum=0)
        if self._schedule is not None:
            return _check_radius(self._schedule(step))
        return self.kernel.scale

    def kernel_at(self, step: int = 0) -> Kernel:
        """The kernel the displacements follow at ``step`` (the schedule applied).

        Raises
        ------
        ValueError
            If the schedule gives ``R(step) = 0`` (no smoothing: no kernel).
        """
        kernel = self._kernel_or_none(step)
        if kernel is None:
            raise ValueError(f"R({step}) = 0: no smoothing at step {step}, so no kernel")
        return kernel

    def _kernel_or_none(self, step: int) -> Kernel | None:
        """The kernel at ``step``, or ``None`` where the schedule gives ``R(step) = 0``
        (or below :data:`R_NEGLIGIBLE`)."""
        if self._schedule is None:
            check_int("step", step, minimum=0)
            return self.kernel
        radius = self.radius(step)
        return None if radius < R_NEGLIGIBLE else self.kernel.with_scale(radius)

    def sample(self, generator: torch.Generator, step: int = 0) -> dict[str, torch.Tensor]:
        """The displacements one call with this generator state would use.

        Returns
        -------
        dict name -> tensor (y, *param.shape), in :attr:`smoothed_names` order;
        zeros, the generator untouched, when the schedule gives ``R(step) = 0``.
        """
        kernel = self._kernel_or_none(step)
        if kernel is None:
            params = dict(self.model.named_parameters())
            return {n: params[n].new_zeros((self.y, *params[n].shape)) for n in self._names}
        return self._start(generator, kernel).result()

    def _start(self, generator: torch.Generator, kernel: Kernel) -> PendingDraws:
        params = dict(self.model.named_parameters())
        return start_perturbations(
            [(n, params[n]) for n in self._names],
            self.y,
            generator=generator,
            kernel=kernel,
            antithetic=self.antithetic,
        )

    def _loss(self, out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        loss = self.base_loss(out, targets)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise ValueError("base_loss must return a scalar tensor (use a mean reduction)")
        return loss

    def __call__(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        step: int = 0,
        draws: Mapping[str, torch.Tensor] | None = None,
        sync: Sync | None = None,
    ) -> SmoothedLoss:
        r"""Evaluate the smoothed loss on one minibatch.

        Parameters
        ----------
        inputs : torch.Tensor, shape (B, ...)
        targets : torch.Tensor
            Passed to ``base_loss`` with the output of each configuration.
        generator : torch.Generator
            Source of the ``y`` fresh displacements (required when ``y > 0`` and
            ``draws`` is not given) and of the dropout masks (see Notes of the class).
        step : int
            Training step, passed to the ``R`` schedule.
        draws : mapping name -> tensor (y, \*param.shape), optional, keyword-only
            Displacements to use instead of drawing: the dict :meth:`sample` returns
            (for this ``step``), one entry per smoothed parameter, of its dtype and
            device.  The ``k`` micro-batches of one step then share its perturbations
            (gradient accumulation); ``generator``, if given, only seeds the dropout
            masks, consumed as after :meth:`sample`, so ``sample(g, step)`` then a
            call with these draws and ``g`` gives bitwise the call with ``g`` alone.
            Where the schedule gives ``R(step) = 0`` they are checked and not used
            (the plain loss, as without them).
        sync : callable(losses) -> losses, optional, keyword-only
            Maps the detached per-configuration losses of this process, shape
            ``(S,)``, ``S = y + include_centre``, to the global ones (e.g. their mean
            over the ranks of ``torch.distributed``).  It receives a copy (an in-place
            ``all_reduce`` is fine) and is called exactly once per call on every path,
            so a collective inside it stays matched across ranks.  The loss is then
            the surrogate :math:`M(G + (L - \mathrm{sg}(L)))` with :math:`G` the global
            and :math:`L` the local losses: its value is :math:`M(G)` exactly and its
            gradient :math:`\sum_a \partial M/\partial L_a(G)\, \nabla L_a`, so the mean
            over ranks of these gradients is the gradient of the whole batch (equal
            shards; see docs/losses.md).  ``per_sample`` is then :math:`G`.

        Returns
        -------
        SmoothedLoss
            With ``R(step) = 0`` the plain loss at the centre; ``per_sample`` then
            repeats it ``y + include_centre`` times (all configurations coincide).
            Under ``torch.autocast`` the per-configuration losses are cast to float32
            (when in float16/bfloat16) and reduced in float32 outside autocast, so
            ``loss`` and ``per_sample`` are float32 (see
            :class:`~anisotropy.smoothing.reductions.LossReduction`).
        """
        step = check_int("step", step, minimum=0)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if sync is not None and not callable(sync):
            raise TypeError(f"sync must be callable(losses) -> losses, got {type(sync).__name__}")
        if draws is not None:
            draws = _check_draws(draws, dict(self.model.named_parameters()), self._names, self.y)
        elif generator is None and self.y > 0:
            raise ValueError("generator must be a torch.Generator when y > 0 (or pass draws=)")
        # no kernel: y = 0, or the schedule gives R(step) = 0 (no smoothing)
        kernel = self._kernel_or_none(step) if self.y > 0 else None
        # the draws fill in background threads while the prefix before the cut runs
        deltas: Mapping[str, torch.Tensor] | PendingDraws | None = None
        if kernel is not None:
            deltas = draws
            if deltas is None and generator is not None:  # set when y > 0 without draws
                deltas = self._start(generator, kernel)
        rng: AbstractContextManager[None] = nullcontext()
        if generator is not None and _draws_global_rng(self.model):
            seed = torch.randint(
                0, _SEED_HIGH, (1,), generator=generator, device=generator.device
            ).item()
            rng = _global_rng_seeded(int(seed), inputs.device)
        s = self.y + int(self.include_centre)
        with rng:
            if deltas is None:
                out = self.model(inputs)
                loss = widen_losses(self._loss(out, targets))
                centre = out.detach() if self.include_centre else None
                if sync is None:
                    return SmoothedLoss(loss, loss.detach().reshape(1).repeat(s), centre)
                reduced, seen = self._reduce(loss.reshape(1).repeat(s), sync)
                return SmoothedLoss(reduced, seen, centre)
            outs = stacked_outputs(self._pieces, inputs, deltas, centre=self.include_centre)
        losses = widen_losses(torch.stack([self._loss(o, targets) for o in outs.unbind(0)]))
        loss, seen = self._reduce(losses, sync)
        centre = outs[0].detach() if self.include_centre else None
        return SmoothedLoss(loss, seen, centre)

    def _reduce(self, losses: torch.Tensor, sync: Sync | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The reduced loss and the detached losses it was reduced from (global with
        ``sync``: the surrogate of :meth:`__call__`)."""
        if sync is None:
            return self.loss_reduction(losses), losses.detach()
        local = losses.detach()
        total = _synced(sync, local)
        # losses - local is exactly 0 (value) with the gradient of the local losses
        return self.loss_reduction(total + (losses - local)), total
