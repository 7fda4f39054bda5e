r"""One optimisation step: minibatch, (smoothed) loss, gradient, update.

A minibatch of ``B`` samples is cut into *pieces*: the ``N`` ranks of a
data-parallel run (:mod:`anisotropy.training.distributed`) each take a contiguous
shard, and each shard is cut into ``k = optim.accumulate`` micro-batches.  A piece
``p`` of ``n_p`` samples contributes its loss with the weight ``n_p / B`` (``1/(Nk)``
for equal pieces), so that, with :math:`L_a = \sum_p (n_p/B) L_a^p` the
per-configuration losses of the whole minibatch,

* the gradients, accumulated over the micro-batches and summed over the ranks, are
  those of one process on the whole minibatch;
* the perturbations of the step are drawn once (``PartialLocalEntropy.sample``,
  the same on every rank) and shared by all pieces (``draws=``);
* a nonlinear reduction (PLEA, eq. 22 of the paper; the beta family) is applied
  to the global :math:`L_a` through the loss's ``sync=`` hook, so its softmax
  weights are those of the whole minibatch.  With several ranks and ``k = 1`` the
  hook is an all-reduce; with ``k > 1`` the global :math:`L_a` are first computed
  by a gradient-free pass over the micro-batches (one more forward each).  PLA
  (eq. 23) is linear in the :math:`L_a` and needs neither.

A single process with ``k = 1`` takes the historical path (one call of the loss
with the perturbation generator), bitwise as before.  The precision
(``TrainConfig.precision``) wraps the forward passes in ``torch.autocast``; with
float16 a gradient scaler scales the losses and unscales the gradients before the
layer signals and the update (a step whose gradients overflow is skipped by the
scaler, and not counted in the signals).

The optimiser's own step (SAM's two passes, the replicas' and the Langevin steps'
minibatches, the variational schemes' batched evaluations) is
:mod:`anisotropy.training.optimisers`; it calls :func:`gradient` for each
(smoothed) loss gradient it needs, so accumulation, ranks and precision apply to
all of them.  Every evaluation is counted in ``run.passes`` / ``run.forward_passes``
(a minibatch pass: see that module).

With entropy guidance (``[guidance]``, :mod:`anisotropy.training.guidance`) every
gradient evaluation back-propagates ``L + lambda_d L_dense + lambda_c L_conv``: on the
whole-minibatch path the terms are added to the loss, on the pieces path rank 0 alone
back-propagates them once (the summed gradient then holds them once).  Without it the
code path is the one above, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from anisotropy.data.augment import augment_batch
from anisotropy.smoothing.reductions import PLA
from anisotropy.training.distributed import shard_bounds
from anisotropy.training.guidance import EntropyGuidance, GuidanceError
from anisotropy.training.objective import Objective
from anisotropy.training.optimisers import StepOps, optimiser_step
from anisotropy.training.run import NonFiniteError, Period, Run
from anisotropy.training.spread import within_batch_spread

__all__ = ["train_step", "pieces", "gradient"]

Draws = Mapping[str, torch.Tensor]


def pieces(batch: int, world_size: int, rank: int, accumulate: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` of this rank's micro-batches within a minibatch of ``batch`` samples:
    rank ``rank``'s contiguous shard, cut into ``accumulate`` contiguous pieces."""
    parts = world_size * accumulate
    return [shard_bounds(batch, parts, rank * accumulate + j) for j in range(accumulate)]


def _centre_loss(objective: Objective, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The objective's loss of the detached centre output, in at least float32."""
    wide = torch.promote_types(logits.dtype, torch.float32)
    return objective.loss(logits.detach().to(wide), targets)


def train_step(run: Run, idxs: torch.Tensor | Sequence[torch.Tensor], period: Period) -> None:
    """One step of ``run`` on the minibatch ``idxs`` (the same indices on every rank), or on
    one minibatch per stream (:func:`anisotropy.training.optimisers.streams`): the
    optimiser's step (:func:`anisotropy.training.optimisers.optimiser_step`)."""
    d, cfg = run.data, run.cfg
    batches = []
    for idx in [idxs] if isinstance(idxs, torch.Tensor) else idxs:
        idx = idx.to(run.device)
        x = d.x_train[idx]
        if cfg.data.augment != "none":  # the whole minibatch: the data generator stays in step
            x = augment_batch(x, cfg.data.augment, generator=run.data_gen)
        x = d.normalise(x)  # the targets: the labels, or the inputs (a reconstruction)
        batches.append((x, run.objective.targets(x, d.y_train[idx])))
    split = cfg.logging.steps_split  # > 0 only with the step log (config check)
    if (
        split
        and run.step_signals is not None
        and run.ctx.is_main
        and run.step + 1 in run.step_marks
    ):
        # the gradient noise inside this minibatch, at the weights before the update (a
        # measurement, like the evaluation: not counted in the passes of the budget)
        run.step_within = within_batch_spread(
            run.model,
            *batches[0],
            run.step_signals.layers,
            parts=split,
            loss_fn=run.objective,
        )
    res = optimiser_step(run, batches, _OPS)
    if not bool(torch.isfinite(res.loss)):
        raise NonFiniteError(
            f"non-finite training loss ({float(res.loss)}) at epoch {run.epoch + 1}, "
            f"step {run.step}"
        )
    period.add(res.centre, res.loss, res.correct, res.samples)
    run.last_loss = res.loss
    run.step += 1
    if run.step_signals is not None:
        run.step_period.add(res.centre, res.loss, res.correct, res.samples)
        if run.step in run.step_marks:
            from anisotropy.training.loop import write_step_record

            write_step_record(run)


def gradient(
    run: Run, x: torch.Tensor, t: torch.Tensor, *, draws: Draws | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Zero the gradients, evaluate the (smoothed) loss of the minibatch ``(x, t)`` at the
    current weights, call ``backward()`` (unless the loss is non-finite) and count the
    passes; return (centre loss, loss, correct count), detached.  ``draws``: the
    perturbations of the step (default: drawn from the perturbation generator)."""
    if run.ctx.parallel or run.cfg.optim.accumulate > 1:
        return _pieces_backward(run, x, t, draws)
    return _whole_backward(run, x, t, draws)


def _backward(run: Run, loss: torch.Tensor) -> None:
    (run.scaler.scale(loss) if run.scaler is not None else loss).backward()


def _whole_backward(
    run: Run, x: torch.Tensor, t: torch.Tensor, draws: Draws | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One process, one piece: (centre loss, smoothed loss, correct count), detached."""
    run.passes += run.configurations(run.step)
    with run.autocast():
        if run.ple is None or not run.smoothed(run.step):
            logits = run.model(x)
            loss = run.objective.loss(logits, t)
        else:
            out = run.ple(x, t, generator=run.pert_gen, step=run.step, draws=draws)
            loss, logits = out.loss, out.centre_output
            if logits is None:  # centre excluded from the loss: one extra forward for the log
                run.forward_passes += 1
                with torch.no_grad():
                    logits = run.model(x)
    centre = _centre_loss(run.objective, logits, t)
    if not bool(torch.isfinite(loss)):  # checked before the backward, as always
        return centre, loss.detach(), torch.zeros((), device=run.device)
    run.model.zero_grad(set_to_none=True)
    _backward(run, loss if run.guidance is None else loss + _guidance(run, run.guidance))
    return centre, loss.detach(), run.objective.correct(logits.detach(), t)


def _guidance(run: Run, guidance: EntropyGuidance) -> torch.Tensor:
    """The entropy guidance term (``run.guidance``) at the current weights (outside
    autocast: float32 log-determinants), added to the period's means; a singular layer
    stops the run."""
    try:
        total, parts = guidance.terms()
    except GuidanceError as err:
        raise NonFiniteError(
            f"non-finite guidance loss ({err}) at epoch {run.epoch + 1}, step {run.step}"
        ) from None
    guidance.add(total, parts)
    return total


def _pieces_backward(
    run: Run, x: torch.Tensor, t: torch.Tensor, draws: Draws | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pieces of the minibatch on this rank (see the module's notes): accumulate their
    weighted gradients and sum them over the ranks; return the minibatch's (centre
    loss, smoothed loss, correct count), the same on every rank."""
    ctx, b = run.ctx, len(t)
    bounds = pieces(b, ctx.world_size, ctx.rank, run.cfg.optim.accumulate)
    ple, step = run.ple, run.step
    smoothed = ple is not None and run.smoothed(step)
    run.passes += run.configurations(step)
    if smoothed and ple is not None and ple.y > 0 and draws is None:
        draws = ple.sample(run.pert_gen, step)
    if smoothed and ple is not None and not ple.include_centre:
        run.forward_passes += 1  # the centre forward for the log, over all pieces
    sync: Callable[[torch.Tensor], torch.Tensor] | None = None
    if smoothed and ple is not None and not isinstance(ple.loss_reduction, PLA):
        if len(bounds) == 1:  # one piece per rank: sum the weighted losses over the ranks
            w = (bounds[0][1] - bounds[0][0]) / b
            sync = lambda local: ctx.all_reduce_sum(local * w)
        else:  # micro-batches: the minibatch's losses from a gradient-free pass first
            run.forward_passes += run.configurations(step)
            with torch.no_grad(), run.autocast():
                parts = [
                    ple(
                        x[lo:hi], t[lo:hi], generator=run.pert_gen, step=step, draws=draws
                    ).per_sample.mul((hi - lo) / b)
                    for lo, hi in bounds
                ]
            whole = ctx.all_reduce_sum(torch.stack(parts).sum(0))
            sync = lambda local: whole
    run.model.zero_grad(set_to_none=True)
    stats = torch.zeros(3, dtype=torch.float64, device=run.device)
    for lo, hi in bounds:
        xp, tp, w = x[lo:hi], t[lo:hi], (hi - lo) / b
        with run.autocast():
            if not smoothed or ple is None:
                logits = run.model(xp)
                loss = run.objective.loss(logits, tp)
            else:
                out = ple(xp, tp, generator=run.pert_gen, step=step, draws=draws, sync=sync)
                loss, logits = out.loss, out.centre_output
                if logits is None:
                    with torch.no_grad():
                        logits = run.model(xp)
        _backward(run, loss * w)
        stats[0] += w * _centre_loss(run.objective, logits, tp).to(torch.float64)
        stats[1] += w * loss.detach().to(torch.float64)
        stats[2] += run.objective.correct(logits.detach(), tp)
    if run.guidance is not None:  # once per minibatch: on rank 0, whose sum counts it once
        g = _guidance(run, run.guidance)
        if ctx.is_main:
            _backward(run, g)
    ctx.sum_gradients(list(run.model.parameters()))
    stats = ctx.all_reduce_sum(stats)
    return stats[0], stats[1], stats[2]


def _update(run: Run) -> None:
    """Layer signals (of the unscaled gradient) and the optimiser step."""
    scaler = run.scaler
    finite = True
    if scaler is not None:
        scaler.unscale_(run.optimizer)
        finite = all(
            bool(torch.isfinite(p.grad).all()) for p in run.model.parameters() if p.grad is not None
        )
    if finite:
        if run.signals is not None:
            run.signals.update()
        if run.step_signals is not None:
            run.step_signals.update()
    if scaler is not None:
        scaler.step(run.optimizer)
        scaler.update()
    else:
        run.optimizer.step()


_OPS = StepOps(gradient=gradient, update=_update, signals=Run.record_signals)
