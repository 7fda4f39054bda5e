r"""Gradient accumulation of the smoothed losses over micro-batches (eqs 22-23).

A batch of ``B`` samples split into micro-batches of ``n_m`` samples has, for a base loss
that is a mean over its samples, the per-configuration losses
:math:`L_a = \sum_m \frac{n_m}{B} L_a^m` when every micro-batch is evaluated at the same
weights :math:`W + \Delta W^a`, i.e. with the step's displacements held fixed
(``draws=`` of :class:`~anisotropy.smoothing.losses.PartialLocalEntropy`).  The gradient
of a reduction :math:`M(L_1, \dots, L_S)` is

.. math::  \nabla M = \sum_a \frac{\partial M}{\partial L_a}(L)\,
           \sum_m \frac{n_m}{B} \nabla L_a^m .

For PLA (eq. 23) :math:`\partial M/\partial L_a = 1/S` does not depend on the losses, so
the micro-batch losses weighted by :math:`n_m/B` accumulate in one pass.  For PLEA (eq. 22)
and the beta family the weights are :math:`\mathrm{softmax}(-\beta L)_a` of the *whole*
batch's losses, which no micro-batch knows: :func:`accumulate_smoothed` first evaluates
the :math:`L_a^m` without gradients, sums them to :math:`L_a`, then runs each micro-batch
again with ``sync`` returning :math:`L` (the surrogate of
:meth:`PartialLocalEntropy.__call__ <anisotropy.smoothing.losses.PartialLocalEntropy.__call__>`),
so the accumulated gradient is the one of the whole batch, at the cost of one extra
forward pass per micro-batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch

from anisotropy.smoothing.losses import PartialLocalEntropy, SmoothedLoss, Sync, _synced
from anisotropy.validation import check_int

__all__ = ["accumulate_smoothed"]


def _backward(loss: torch.Tensor) -> None:
    loss.backward()


def accumulate_smoothed(
    ple: PartialLocalEntropy,
    micro_batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    generator: torch.Generator | None = None,
    step: int = 0,
    draws: Mapping[str, torch.Tensor] | None = None,
    sync: Sync | None = None,
    backward: Callable[[torch.Tensor], None] = _backward,
) -> SmoothedLoss:
    r"""Accumulate into ``.grad`` the gradient of the smoothed loss of a whole batch
    given as micro-batches (eqs 22-23), the step's displacements shared by all.

    Parameters
    ----------
    ple : PartialLocalEntropy
        Its ``base_loss`` must be a mean over the samples (the default cross-entropy), so
        that the batch loss is the :math:`n_m/B`-weighted sum of the micro-batch losses.
    micro_batches : iterable of (inputs, targets)
        The batch split along the first axis; ``n_m = len(inputs)``.
    generator : torch.Generator
        Draws the step's displacements (:meth:`PartialLocalEntropy.sample`) unless
        ``draws`` is given, then seeds the dropout masks of each micro-batch; each
        micro-batch's two passes use the same masks.
    step : int
        Training step (the ``R`` schedule).
    draws : mapping name -> tensor (y, \*param.shape), optional
        The step's displacements, e.g. drawn once and broadcast to all ranks.
    sync : callable(losses) -> losses, optional
        Applied once to the accumulated per-configuration losses of this process
        (shape (S,)) to get the global ones, as in
        :meth:`PartialLocalEntropy.__call__`: micro-batches and several processes
        combine (each rank then accumulates its shard, and the mean of the ranks'
        gradients is that of the whole batch for equal shards).  With a
        :attr:`~anisotropy.smoothing.reductions.LossReduction.linear` reduction it is
        applied to each micro-batch's losses instead.
    backward : callable(loss) -> None
        Called on each micro-batch's weighted loss (default ``loss.backward()``); with a
        gradient scaler, ``lambda loss: scaler.scale(loss).backward()``.

    Returns
    -------
    SmoothedLoss
        ``loss``: the smoothed loss of the whole batch (detached); ``per_sample``: its
        per-configuration losses :math:`L_a`; ``centre_output``: the micro-batches'
        centre outputs concatenated (``None`` without the centre).

    Notes
    -----
    Exact (to rounding) for any reduction when the model's output for a sample does not
    depend on the other samples of its micro-batch: a training-mode BatchNorm normalises
    each micro-batch with its own statistics, so there the result is that of the
    micro-batches, not of the batch (as for any gradient accumulation), and its running
    statistics are updated once per micro-batch (the first pass leaves them as it found
    them).  Linear reductions (PLA) take one pass, the others two: the first without
    gradients to get the whole batch's :math:`L_a`, the second with ``sync`` returning
    them, at one extra forward pass per micro-batch.
    """
    if not isinstance(ple, PartialLocalEntropy):
        raise TypeError(f"ple must be a PartialLocalEntropy, got {type(ple).__name__}")
    step = check_int("step", step, minimum=0)
    batches = _checked(micro_batches)
    sizes = [int(x.shape[0]) for x, _ in batches]
    if draws is None and ple.y > 0:
        if not isinstance(generator, torch.Generator):
            raise ValueError(
                "generator must be a torch.Generator when y > 0 and draws is not given"
            )
        draws = ple.sample(generator, step)
    weights = [n / sum(sizes) for n in sizes]
    if ple.loss_reduction.linear:
        return _one_pass(ple, batches, weights, generator, step, draws, sync, backward)
    # pass 1: the whole batch's L_a, no gradient; buffers left as they were, the
    # generator's state before each micro-batch kept so pass 2 draws the same masks
    buffers = [b.clone() for b in ple.model.buffers()]
    states, parts = [], []
    with torch.no_grad():
        for (x, t), w in zip(batches, weights, strict=True):
            states.append(None if generator is None else generator.get_state())
            parts.append(w * ple(x, t, generator=generator, step=step, draws=draws).per_sample)
        for b, saved in zip(ple.model.buffers(), buffers, strict=True):
            b.copy_(saved)
    per_sample = torch.stack(parts).sum(0)
    if sync is not None:
        per_sample = _synced(sync, per_sample)
    # pass 2: each micro-batch's gradient weighted by dM/dL_a of the whole batch
    centres = []
    for (x, t), w, state in zip(batches, weights, states, strict=True):
        if generator is not None and state is not None:
            generator.set_state(state)
        out = ple(x, t, generator=generator, step=step, draws=draws, sync=lambda _: per_sample)
        _run_backward(backward, w * out.loss)
        centres.append(out.centre_output)
    loss = ple.loss_reduction(per_sample)
    return SmoothedLoss(loss.detach(), per_sample, _concat(centres))


def _one_pass(
    ple: PartialLocalEntropy,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    weights: list[float],
    generator: torch.Generator | None,
    step: int,
    draws: Mapping[str, torch.Tensor] | None,
    sync: Sync | None,
    backward: Callable[[torch.Tensor], None],
) -> SmoothedLoss:
    """A linear reduction: each micro-batch's loss weighted by ``n_m / B``, one pass."""
    losses, parts, centres = [], [], []
    for (x, t), w in zip(batches, weights, strict=True):
        out = ple(x, t, generator=generator, step=step, draws=draws, sync=sync)
        _run_backward(backward, w * out.loss)
        losses.append(w * out.loss.detach())
        parts.append(w * out.per_sample)
        centres.append(out.centre_output)
    return SmoothedLoss(torch.stack(losses).sum(), torch.stack(parts).sum(0), _concat(centres))


def _checked(micro_batches: object) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The micro-batches as a list of (inputs, targets), each with >= 1 sample."""
    if not isinstance(micro_batches, Iterable):
        raise TypeError(
            f"micro_batches must be an iterable of (inputs, targets), got "
            f"{type(micro_batches).__name__}"
        )
    batches = list(micro_batches)
    if not batches:
        raise ValueError("micro_batches must hold at least one (inputs, targets) pair")
    for i, pair in enumerate(batches):
        if (
            not isinstance(pair, (tuple, list))
            or len(pair) != 2
            or not isinstance(pair[0], torch.Tensor)
            or pair[0].dim() == 0
            or pair[0].shape[0] < 1
        ):
            raise ValueError(
                f"micro_batches[{i}] must be a pair (inputs, targets) with inputs a tensor "
                f"of shape (n, ...), n >= 1"
            )
    return [(x, t) for x, t in batches]


def _run_backward(backward: Callable[[torch.Tensor], None], loss: torch.Tensor) -> None:
    """``backward(loss)`` outside autocast (backward passes under autocast are not
    recommended by PyTorch; the backward ops follow the forward's dtypes anyway)."""
    device = loss.device.type
    if torch.is_autocast_enabled(device):
        with torch.autocast(device, enabled=False):
            backward(loss)
    else:
        backward(loss)


def _concat(centres: list[torch.Tensor | None]) -> torch.Tensor | None:
    if any(c is None for c in centres):
        return None
    return torch.cat([c for c in centres if c is not None])
