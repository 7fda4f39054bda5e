"""The loop over epochs: steps, log lines, checkpoints, callbacks and the summary.

:func:`loop` runs the epochs of a :class:`~anisotropy.training.run.Run` from its
current epoch: each step is :func:`anisotropy.training.step.train_step`; every
``logging.log_every`` epochs the period's means, the test loss and accuracy (``null``
for an objective without accuracy, :mod:`anisotropy.training.objective`) and
the layer signals (eq. 2 of the paper) and the cumulative passes (the compute
spent, :mod:`anisotropy.training.optimisers`) become one line of ``log.jsonl``, and every
``logging.checkpoint_every`` epochs the run's state is checkpointed.  In a
data-parallel run every rank computes the same means and signals (its gradients
and statistics are the minibatch's, summed over the ranks); rank 0 alone
evaluates (its test loss and accuracy are sent to the others, which wait for them)
and writes the log, the step log and the checkpoints.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import torch
from torch import nn

from anisotropy.data.datasets import Dataset, minibatches
from anisotropy.io import append_jsonl, check_record, save_checkpoint
from anisotropy.training.config import config_to_dict
from anisotropy.training.hooks import CallbackError, TrainState
from anisotropy.training.objective import CLASSIFICATION, Objective
from anisotropy.training.optimisers import log_extras
from anisotropy.training.run import NonFiniteError, Period, Run
from anisotropy.training.step import train_step

__all__ = [
    "evaluate",
    "evaluate_test",
    "loop",
    "summary",
    "write_step_record",
    "record",
    "notify",
    "epoch_batches",
]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Dataset,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    objective: Objective = CLASSIFICATION,
) -> tuple[float, float | None]:
    """Mean loss and accuracy of ``model`` on ``(x, y)`` (``x`` un-normalised, ``y`` the
    labels) under ``objective`` (default: cross-entropy and accuracy); the accuracy is
    ``None`` for an objective without one (a reconstruction's mean squared error)."""
    model.eval()
    total, correct = 0.0, 0
    for idx in minibatches(len(x), batch_size):
        inputs = data.normalise(x[idx])
        out = model(inputs)
        targets = objective.targets(inputs, y[idx])
        total += float(objective.loss(out, targets, reduction="sum"))
        if objective.has_accuracy:
            correct += int(objective.correct(out, targets))
    model.train()
    return total / len(x), correct / len(x) if objective.has_accuracy else None


def evaluate_test(run: Run) -> tuple[float, float | None]:
    """:func:`evaluate` of the run's model on its test set, in its evaluation batches and
    under its objective: the numbers of a log line."""
    return evaluate(
        run.model,
        run.data,
        run.data.x_test,
        run.data.y_test,
        batch_size=run.cfg.optim.eval_batch_size,
        objective=run.objective,
    )


def write_step_record(run: Run) -> None:
    """Append the window since the last step record to ``steps.jsonl`` and reset it
    (rank 0 writes; every rank checks the record and resets its window).

    The spreads of a one-minibatch window are written as ``null`` (not defined).
    A run resumed from a checkpoint restarts the window that was in progress, so
    that one record covers fewer minibatches than in an uninterrupted run (its
    ``batches`` says how many).
    """
    if run.step_signals is None:  # step logging is off
        return
    w = run.step_period
    # values become None below (no spread in a one-batch window)
    layers: dict[str, dict[str, Any]] = run.step_signals.summary()
    if w.steps == 1:
        for stats in layers.values():
            stats["signal_std"] = stats["grad_std_norm"] = None
    extra: dict[str, Any] = {}
    if run.step_within is not None:  # the gradient noise inside the step's minibatch
        for name, stats in run.step_within.items():
            layers[name].update(stats)
        extra["within_parts"] = run.cfg.logging.steps_split
        run.step_within = None
    rec = {
        "step": run.step,
        "epoch": run.epoch + 1,
        "batches": w.steps,
        **extra,
        **w.means(),
        "layers": layers,
    }
    try:
        check_record(rec, "steps log")
    except ValueError as exc:
        raise NonFiniteError(f"step {run.step}: {exc}") from None
    if run.ctx.is_main:
        run.steps_position = append_jsonl(run.paths.steps, rec)
    run.step_period = run.new_period()
    run.step_signals.reset()


def notify(run: Run, hook: str, *args: Any) -> None:
    """Call ``hook`` (``"on_step"`` or ``"on_epoch"``) of every callback with the run's
    state; an exception in one becomes :class:`CallbackError` (a clean stop).  With
    several ranks, a callback that raised on one rank stops every rank."""
    failure: CallbackError | None = None
    if run.callbacks:
        state = TrainState(
            epoch=run.epoch,
            step=run.step,
            model=run.model,
            optimizer=run.optimizer,
            loss=run.last_loss,
            record=run.last,
        )
        for cb in run.callbacks:
            fn = getattr(cb, hook, None)
            if fn is None:
                continue
            try:
                fn(state, *args)
            except Exception as exc:
                failure = CallbackError(f"callback {hook} raised {type(exc).__name__}: {exc}")
                failure.__cause__ = exc
                break
    if run.ctx.parallel and run.ctx.any(failure is not None) and failure is None:
        failure = CallbackError(f"a callback {hook} raised on another rank")
    if failure is not None:
        raise failure


def record(run: Run, period: Period, wall_start: float) -> dict[str, Any]:
    """The log line of the period that ends now (rank 0 evaluates; every rank gets it)."""
    for name, p in run.model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            raise NonFiniteError(f"parameter {name} became non-finite in epoch {run.epoch}")

    def measure() -> tuple[float, float | None, float]:
        test_loss, test_acc = evaluate_test(run)
        return test_loss, test_acc, run.elapsed + (time.perf_counter() - wall_start)

    test_loss, test_acc, wall = run.ctx.on_main(measure)
    # the best so far: the highest test accuracy, or (no accuracy) the lowest test loss
    best: dict[str, Any] = (
        {"best_test_acc": max(run.best_test_acc, test_acc)}
        if test_acc is not None
        else {"best_test_acc": None, "best_test_loss": min(run.best_test_loss, test_loss)}
    )
    rec: dict[str, Any] = {
        "epoch": run.epoch,
        "step": run.step,
        **period.means(),
        "test_loss": test_loss,
        "test_acc": test_acc,
        **best,
        "wall_time": wall,
        "lr": run.optimizer.param_groups[0]["lr"],
        "R": None if run.schedule is None else run.schedule(max(run.step - 1, 0)),
        "layers": run.signals.summary() if run.signals is not None else {},
        "passes": run.passes,
        "forward_passes": run.forward_passes,
    }
    extras = log_extras(run)
    if extras:
        rec["optim"] = extras
    if run.guidance is not None:
        rec.update(run.guidance.record())
    try:
        check_record(rec, "log")
    except ValueError as exc:
        raise NonFiniteError(f"epoch {run.epoch}: {exc}") from None
    if test_acc is not None and test_acc > run.best_test_acc:
        run.best_test_acc, run.best_epoch = test_acc, run.epoch
    if test_acc is None and test_loss < run.best_test_loss:
        run.best_test_loss, run.best_epoch = test_loss, run.epoch
    return rec


def summary(run: Run, status: str, wall: float) -> dict[str, Any]:
    """The content of ``summary.json``.

    Without accuracy (a reconstruction) ``best_test_acc``, ``final_test_acc`` and
    ``final_train_acc`` are ``None``, ``best_epoch`` is the epoch of the lowest test loss
    and two keys are added: ``best_test_loss`` and ``final_test_loss``."""
    last = run.last or {}
    if run.objective.has_accuracy:
        logged = run.best_test_acc >= 0
        best: dict[str, Any] = {
            "best_test_acc": run.best_test_acc if logged else None,
            "best_epoch": run.best_epoch if logged else None,
        }
    else:
        logged = math.isfinite(run.best_test_loss)
        best = {
            "best_test_acc": None,
            "best_epoch": run.best_epoch if logged else None,
            "best_test_loss": run.best_test_loss if logged else None,
            "final_test_loss": last.get("test_loss"),
        }
    return {
        "status": status,
        "config": config_to_dict(run.cfg, json_safe=True),
        "epochs": last.get("epoch", 0),
        "steps": last.get("step", 0),
        **best,
        "final_test_acc": last.get("test_acc"),
        "final_train_loss": last.get("train_loss"),
        "final_smoothed_loss": last.get("smoothed_loss"),
        "final_train_acc": last.get("train_acc"),
        "passes": last.get("passes", 0),
        "forward_passes": last.get("forward_passes", 0),
        "wall_time": wall,
        "parameters": sum(p.numel() for p in run.model.parameters()),
        "smoothed_parameters": list(run.ple.smoothed_names) if run.ple is not None else [],
        "checkpoint_epoch": run.checkpoint_epoch,
        "world_size": run.ctx.world_size,
        "stopped_by": stopped_by(run, status),
    }


def stopped_by(run: Run, status: str) -> str | None:
    """What ended a complete run: ``"max_passes"`` (the budget is spent, also when that
    happened at the last step of the last epoch) or ``"epochs"``; ``None`` for a run that
    was stopped or interrupted."""
    if status != "complete":
        return None
    return "max_passes" if run.budget_reached() else "epochs"


def loop(run: Run) -> str:
    """Train from the run's epoch to ``cfg.epochs``, or until the budget ``cfg.max_passes``
    is spent (checked after every step: the epoch in progress ends there, and its log
    line has ``"partial": true``); the status (``complete`` or ``stopped: <reason>``)."""
    cfg = run.cfg
    from tqdm import tqdm

    bar = tqdm(
        total=cfg.epochs * run.steps_per_epoch,
        initial=run.epoch * run.steps_per_epoch,
        file=sys.stderr,
        disable=not run.progress,
        desc="train",
        unit="step",
        dynamic_ncols=True,
        leave=False,
    )
    wall_start = time.perf_counter()
    status = "complete"
    try:
        run.model.train()
        period = run.new_period()
        if run.signals is not None:
            run.signals.reset()
        while run.epoch < cfg.epochs and not run.budget_reached():
            batches = epoch_batches(run)
            partial = False
            for i, idxs in enumerate(batches):
                train_step(run, idxs, period)
                notify(run, "on_step")
                bar.update(1)
                if run.budget_reached():
                    partial = i + 1 < len(batches)
                    break
            run.epoch += 1
            last = run.epoch == cfg.epochs or run.budget_reached()
            if run.epoch % cfg.logging.log_every and not last:
                continue
            if run.budget_reached() and run.step_period.steps:
                write_step_record(run)  # the run's last step ends the step log
            rec = record(run, period, wall_start)
            if partial:
                rec["partial"] = True
            if run.ctx.is_main:
                run.log_position = append_jsonl(run.paths.log, rec)
            run.last = rec
            shown = (
                {"test_acc": f"{rec['test_acc']:.4f}"}
                if rec["test_acc"] is not None
                else {"test_loss": f"{rec['test_loss']:.4g}"}
            )
            bar.set_postfix(loss=f"{rec['train_loss']:.4g}", **shown)
            period = run.new_period()
            if run.signals is not None:
                run.signals.reset()
            run.elapsed, wall_start = rec["wall_time"], time.perf_counter()
            every = cfg.logging.checkpoint_every
            if (every and run.epoch % every == 0) or last:
                if run.ctx.is_main:
                    save_checkpoint(run.paths.checkpoint, run.state())
                run.checkpoint_epoch = run.epoch
            notify(run, "on_epoch", rec)
    except (NonFiniteError, CallbackError) as exc:
        status = f"stopped: {exc}"
        if run.ctx.is_main:
            print(f"anisotropy train: {status}; {_kept(run)}", file=sys.stderr)
    finally:
        bar.close()
        run.elapsed += time.perf_counter() - wall_start
    return status


def epoch_batches(run: Run) -> list[tuple[torch.Tensor, ...]]:
    """The minibatches of one epoch, one tuple per step: one permutation of the training
    set per stream (``run.streams``: the replicas, the Langevin steps, else one), all
    drawn from the data generator at the start of the epoch."""
    orders = [
        list(
            minibatches(
                run.n_train,
                run.cfg.optim.batch_size,
                generator=run.data_gen,
                drop_last=run.cfg.optim.drop_last,
            )
        )
        for _ in range(run.streams)
    ]
    return list(zip(*orders, strict=True))


def _kept(run: Run) -> str:
    """What a stopped run leaves to resume from (never a checkpoint that was not written)."""
    if run.checkpoint_epoch is not None:
        return (
            f"kept the last good checkpoint ({run.paths.checkpoint}, epoch {run.checkpoint_epoch})"
        )
    if run.paths.logged():
        return (
            "no checkpoint was written (logging.checkpoint_every), so the run cannot be "
            "resumed; start it over in a new directory"
        )
    return "no checkpoint was written before the stop (a resume starts the run over)"
