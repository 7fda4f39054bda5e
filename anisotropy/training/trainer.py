"""Training loop: SGD on the plain or partially smoothed loss of the objective
(cross-entropy, or an autoencoder's reconstruction error:
:mod:`anisotropy.training.objective`), with layer signals
(or another optimiser of :mod:`anisotropy.optim`, ``optim.name``:
:mod:`anisotropy.training.optimisers`).

:func:`train` runs one configuration (the command line ``anisotropy train`` is
:mod:`anisotropy.cli.train`).  One run = one
:class:`~anisotropy.training.config.TrainConfig` and one run directory:

* ``config.toml`` - the configuration (after overrides);
* ``log.jsonl``   - one JSON line per logging period (format in ``docs/trainer.md``);
* ``checkpoint.pt`` - the last good state (model, the optimiser's ``state_dict``, both
  generators, epoch, best accuracy, log position, passes), written atomically;
* ``summary.json`` - configuration, best / final test accuracy, status (also
  written, as ``interrupted at epoch N``, when a KeyboardInterrupt stops the run);
* ``.lock`` - held for the whole run (:mod:`anisotropy.training.lock`): one writer;
* ``steps.jsonl`` - with ``logging.steps``: the layer statistics at geometrically
  spaced steps from step 1 (:mod:`anisotropy.training.steplog`).

A run ends after ``epochs`` epochs or, with ``max_passes``, once its passes reach the
budget (:mod:`anisotropy.training.loop`); with ``logging.flatness`` the final model's
flatness is then measured into ``summary.json`` (:mod:`anisotropy.training.flatness`).
The training loss may carry entropy guidance terms (``[guidance]``,
:mod:`anisotropy.training.guidance`); the final model's entropy profile of the named or
guided layers (guided or not) is written into ``summary.json`` too (``"entropy"``,
:func:`~anisotropy.training.guidance.entropy_profile`).

Each step draws a minibatch (order and augmentation from the *data* generator)
and, when layers are smoothed, ``y`` fresh perturbations from the *perturbation*
generator (:class:`~anisotropy.smoothing.losses.PartialLocalEntropy`, eqs 22-23); both
generators and the initialisation are seeded from ``cfg.seed``, and their
states are checkpointed, so a resumed run follows the same trajectory bit for
bit.  With no smoothed layers the loss is the objective's plain loss; a smoothing
radius that a schedule has brought to 0 also means a plain step.

The layer signals s_I (eq. 2) use the gradient of the loss actually optimised
(:mod:`anisotropy.training.signals`).  A non-finite loss or weight stops the run with a
clear status; the last good checkpoint and log lines are kept.  A resume never
cuts a log that no checkpoint covers (it is refused instead).

Callbacks (:mod:`anisotropy.training.hooks`) observe every step and every log line,
and may stop the run cleanly by raising.

Several processes started by ``torchrun`` train one run data-parallel
(:mod:`anisotropy.training.distributed`); the trainer is split into the run's
state and checkpoint (:mod:`anisotropy.training.run`), the step
(:mod:`anisotropy.training.step`) and the loop over epochs
(:mod:`anisotropy.training.loop`).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from anisotropy.io import load_checkpoint, truncate_log, write_json_atomic, write_text_atomic
from anisotropy.threads import torch_threads
from anisotropy.training.config import TrainConfig, config_to_toml
from anisotropy.training.distributed import open_context
from anisotropy.training.flatness import run_flatness
from anisotropy.training.guidance import entropy_profile
from anisotropy.training.hooks import TrainCallback
from anisotropy.training.lock import RunLock
from anisotropy.training.loop import evaluate, loop, summary
from anisotropy.training.run import (
    CHECKPOINT_FORMAT,
    NonFiniteError,
    Run,
    RunPaths,
    TrainingInterrupted,
    build_model,
    check_device,
    derive_seeds,
)

__all__ = [
    "train",
    "build_model",
    "derive_seeds",
    "evaluate",
    "RunPaths",
    "CHECKPOINT_FORMAT",
    "NonFiniteError",
    "TrainingInterrupted",
]


def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    callbacks: Iterable[TrainCallback] = (),
    lock_wait: float = 0.0,
) -> dict[str, Any]:
    """Train one run described by ``cfg`` into the directory ``out_dir``.

    Parameters
    ----------
    cfg : TrainConfig
    out_dir : path
        Run directory (created).  Without ``resume`` it must not hold a log yet.
        The run holds its lock (:class:`~anisotropy.training.lock.RunLock`) from
        start to end: one writer per run directory.
    resume : bool
        Continue from ``out_dir/checkpoint.pt`` (same trajectory as an
        uninterrupted run).  Without a checkpoint the run starts afresh if no log
        line was written yet, and is refused if one was (no checkpoint covers it).
    progress : bool
        Show a tqdm progress bar on stderr.
    callbacks : iterable of callbacks
        Objects with ``on_step(state)`` and/or ``on_epoch(state, record)``
        (:mod:`anisotropy.training.hooks`), called in order.
    lock_wait : float
        Seconds to wait for a run directory that another process trains in.

    Returns
    -------
    dict
        The summary also written to ``out_dir/summary.json``; ``status`` is
        ``"complete"`` or ``"stopped: <reason>"`` (a non-finite value, or a
        callback that raised); ``checkpoint_epoch`` is the epoch of the checkpoint
        on disk (``None``: none was written).

    Raises
    ------
    ValueError, FileNotFoundError, FileExistsError
        On a bad configuration, a device this torch cannot use, missing data, a
        damaged checkpoint, an existing run without ``resume``, or a log that no
        checkpoint covers with ``resume``; all before anything is written.
    RunDirLocked
        If another process trains in ``out_dir`` (after ``lock_wait`` seconds).
    TrainingInterrupted
        On a :class:`KeyboardInterrupt` during training, after ``summary.json``
        was written with the status ``"interrupted at epoch N"``; the last
        checkpoint is kept.
    TypeError
        If a callback has neither ``on_step`` nor ``on_epoch``.
    """
    if not isinstance(cfg, TrainConfig):
        raise ValueError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    hooks = tuple(callbacks)
    for cb in hooks:
        if not any(callable(getattr(cb, h, None)) for h in ("on_step", "on_epoch")):
            raise TypeError(
                f"callbacks: {cb!r} has neither on_step(state) nor on_epoch(state, record)"
            )
    check_device(cfg.device)
    paths = RunPaths(Path(out_dir))
    ctx = open_context(cfg.device)  # one rank of several under torchrun
    finished = False
    try:
        ctx.on_main(lambda: _check_run_dir(paths, resume))  # fail fast; repeated under the lock
        with torch_threads(cfg.threads), ExitStack() as held:
            # data, model, loss: nothing written yet
            run = Run(cfg, paths, progress and ctx.is_main, hooks, ctx)
            restored = ctx.on_main(lambda: _open_run_dir(run, held, resume, lock_wait))
            if restored and not ctx.is_main:  # rank 0 has checked the checkpoint
                run.restore(load_checkpoint(paths.checkpoint, map_location="cpu"))
            ctx.broadcast_module(run.model)
            ctx.check_same("data-order generator state", run.data_gen.get_state())
            ctx.check_same("perturbation generator state", run.pert_gen.get_state())
            flat: dict[str, Any] | None = None
            try:
                status = loop(run)
                if status == "complete" and cfg.logging.flatness:
                    flat = ctx.on_main(lambda: run_flatness(cfg, run.model, run.data))
            except KeyboardInterrupt as exc:
                stopped = summary(run, f"interrupted at epoch {run.epoch}", run.elapsed)
                if ctx.is_main:
                    write_json_atomic(paths.summary, stopped)
                resumable = run.checkpoint_epoch is not None or not paths.logged()
                raise TrainingInterrupted(
                    stopped, paths.root, run.checkpoint_epoch, resumable
                ) from exc
            done = summary(run, status, run.elapsed)
            if flat is not None:
                done["flatness"] = flat
            profile = entropy_profile(cfg.guidance, run.model) if status == "complete" else {}
            if profile:
                done["entropy"] = profile
            if ctx.is_main:
                write_json_atomic(paths.summary, done)
        finished = True
    finally:
        ctx.close(finished=finished)
    return done


def _open_run_dir(run: Run, held: ExitStack, resume: bool, lock_wait: float) -> bool:
    """Take the run directory (rank 0): lock it, check it, restore the checkpoint or
    start the logs, write the configuration.  Whether a checkpoint was restored."""
    paths, cfg = run.paths, run.cfg
    held.enter_context(RunLock(paths.root, wait=lock_wait))
    _check_run_dir(paths, resume)
    restored = resume and paths.checkpoint.exists()
    if restored:
        run.restore(load_checkpoint(paths.checkpoint, map_location="cpu"))
        truncate_log(paths.log, run.log_position)
        if cfg.logging.steps and paths.steps.exists():
            truncate_log(paths.steps, run.steps_position)
    else:
        write_text_atomic(paths.log, "")
        if cfg.logging.steps:
            write_text_atomic(paths.steps, "")
    write_text_atomic(paths.config, config_to_toml(cfg))
    return restored


def _check_run_dir(paths: RunPaths, resume: bool) -> None:
    """Refuse a directory that holds a run without ``resume``, and with ``resume`` one
    whose log no checkpoint covers (a restart would have to cut it).  An empty log
    (a run stopped before its first log line) holds nothing to lose."""
    if not resume and (paths.checkpoint.exists() or paths.logged()):
        raise FileExistsError(
            f"run directory {str(paths.root)!r} already holds a run; pass "
            "resume=True (--resume) to continue it, or choose another directory"
        )
    if resume and not paths.checkpoint.exists() and paths.logged():
        raise FileExistsError(
            f"cannot resume {str(paths.root)!r}: it has a log but no checkpoint.pt "
            "(logging.checkpoint_every = 0, or it was deleted), so resuming would "
            "discard the log; train into a new directory, or delete log.jsonl and "
            "steps.jsonl there to start over"
        )
