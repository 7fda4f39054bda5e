"""Training loop: SGD on plain or partially smoothed cross-entropy, with layer signals.

:func:`train` runs one configuration (the command line ``anisotropy train`` is
:mod:`anisotropy.cli.train`).  One run = one
:class:`~anisotropy.training.config.TrainConfig` and one run directory:

* ``config.toml`` - the configuration (after overrides);
* ``log.jsonl``   - one JSON line per logging period (format in ``docs/trainer.md``);
* ``checkpoint.pt`` - the last good state (model, optimiser, both generators,
  epoch, best accuracy, log position), written atomically;
* ``summary.json`` - configuration, best / final test accuracy, status (also
  written, as ``interrupted at epoch N``, when a KeyboardInterrupt stops the run);
* ``.lock`` - held for the whole run (:mod:`anisotropy.training.lock`): one writer;
* ``steps.jsonl`` - with ``logging.steps``: the layer statistics at geometrically
  spaced steps from step 1 (:mod:`anisotropy.training.steplog`).

Each step draws a minibatch (order and augmentation from the *data* generator)
and, when layers are smoothed, ``y`` fresh perturbations from the *perturbation*
generator (:class:`~anisotropy.smoothing.losses.PartialLocalEntropy`, eqs 22-23); both
generators and the initialisation are seeded from ``cfg.seed``, and their
states are checkpointed, so a resumed run follows the same trajectory bit for
bit.  With no smoothed layers the loss is plain cross-entropy; a smoothing
radius that a schedule has brought to 0 also means a plain step.

The layer signals s_I (eq. 2) use the gradient of the loss actually optimised
(:mod:`anisotropy.training.signals`).  A non-finite loss or weight stops the run with a
clear status; the last good checkpoint and log lines are kept.  A resume never
cuts a log that no checkpoint covers (it is refused instead).

Callbacks (:mod:`anisotropy.training.hooks`) observe every step and every log line,
and may stop the run cleanly by raising.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anisotropy import models
from anisotropy.data.augment import augment_batch
from anisotropy.data.datasets import Dataset, load_dataset, minibatches
from anisotropy.io import (
    append_jsonl,
    check_record,
    load_checkpoint,
    save_checkpoint,
    truncate_log,
    write_json_atomic,
    write_text_atomic,
)
from anisotropy.smoothing.schedules import radius_schedule
from anisotropy.threads import torch_threads
from anisotropy.training.config import TrainConfig, config_to_dict, config_to_toml
from anisotropy.training.hooks import CallbackError, TrainCallback, TrainState
from anisotropy.training.lock import RunLock
from anisotropy.training.signals import SignalAccumulator, weight_layers
from anisotropy.training.steplog import geometric_steps

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

#: version of the checkpoint layout; bumped when its keys change
CHECKPOINT_FORMAT = 1
#: configuration keys that may differ between a checkpoint and a resumed run
RESUME_MAY_CHANGE = ("epochs", "device", "threads")


class NonFiniteError(RuntimeError):
    """A loss, gradient statistic or weight became NaN or infinite."""


class TrainingInterrupted(KeyboardInterrupt):
    """:func:`train` was interrupted (Ctrl-C, or a signal turned into an interrupt).

    Raised from the :class:`KeyboardInterrupt` after ``summary.json`` was written with
    the status ``"interrupted at epoch N"`` (``N`` epochs completed).

    Attributes
    ----------
    summary : dict
        The summary written.
    run_dir : Path
    checkpoint_epoch : int or None
        Epoch of the checkpoint a resume continues from (``None``: none written).
    resumable : bool
        Whether ``train(..., resume=True)`` accepts the directory: a checkpoint
        exists, or no log line was written yet (a resume then starts afresh).
    """

    def __init__(
        self, summary: dict[str, Any], run_dir: Path, checkpoint_epoch: int | None, resumable: bool
    ) -> None:
        super().__init__(summary["status"])
        self.summary, self.run_dir = summary, run_dir
        self.checkpoint_epoch, self.resumable = checkpoint_epoch, resumable


@dataclass(frozen=True)
class RunPaths:
    """Files of a run directory."""

    root: Path

    @property
    def log(self) -> Path:
        return self.root / "log.jsonl"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.pt"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def steps(self) -> Path:
        return self.root / "steps.jsonl"

    def logged(self) -> bool:
        """Whether ``log.jsonl`` or ``steps.jsonl`` holds anything (a record to lose)."""
        return any(p.is_file() and p.stat().st_size > 0 for p in (self.log, self.steps))


def check_device(device: str) -> None:
    """Raise ValueError unless this torch build can use ``device`` (before any work)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            why = "has no CUDA support" if not torch.backends.cuda.is_built() else "sees no GPU"
            raise ValueError(
                f"device = {device!r}: this torch build ({torch.__version__}) {why}; "
                "use device = 'cpu'"
            )
        if dev.index is not None and dev.index >= count:
            raise ValueError(
                f"device = {device!r}: only {count} CUDA device(s) here, cuda:0..cuda:{count - 1}"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device = {device!r}: MPS is not available here; use device = 'cpu'")


def derive_seeds(seed: int) -> tuple[int, int, int]:
    """Independent seeds (initialisation, data order, perturbations) from one seed."""
    a, b, c = np.random.SeedSequence(seed).generate_state(3, dtype=np.uint64)
    return int(a), int(b), int(c)


def build_model(
    cfg: TrainConfig, input_shape: tuple[int, ...], classes: int, *, seed: int
) -> nn.Sequential:
    """The network of ``cfg.model`` for inputs of ``input_shape``, initialised from ``seed``.

    The global torch RNG is forked, so building a model does not touch global state.
    """
    m = cfg.model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if m.name == "mlp":
            return models.mlp(
                depth=m.depth,
                width=m.width,
                in_features=int(np.prod(input_shape)),
                classes=classes,
                activation=m.activation,
            )
        if len(input_shape) != 3 or input_shape[1] != input_shape[2]:
            raise ValueError(
                f"model {m.name!r} needs square images (C, H, H), the data set "
                f"gives samples of shape {input_shape}"
            )
        for key, value in (("in_channels", input_shape[0]), ("input_size", input_shape[1])):
            given = getattr(m, key)
            if given is not None and given != value:
                raise ValueError(f"model.{key} = {given} does not match the data ({value})")
        build = models.cnn_table24 if m.name == "cnn_table24" else models.cnn_table25
        return build(
            in_channels=input_shape[0],
            input_size=input_shape[1],
            padding=m.padding,
            classes=classes,
        )


@torch.no_grad()
def evaluate(
    model: nn.Module, data: Dataset, x: torch.Tensor, y: torch.Tensor, *, batch_size: int
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)`` (``x`` un-normalised)."""
    model.eval()
    total, correct = 0.0, 0
    for idx in minibatches(len(x), batch_size):
        out = model(data.normalise(x[idx]))
        total += float(F.cross_entropy(out, y[idx], reduction="sum"))
        correct += int((out.argmax(dim=1) == y[idx]).sum())
    model.train()
    return total / len(x), correct / len(x)


def _make_loss(cfg: TrainConfig, model: nn.Module, steps_per_epoch: int):
    """The smoothed loss and the radius schedule, or ``(None, None)`` for plain CE."""
    s = cfg.smoothing
    if not s.active:
        return None, None
    from anisotropy.smoothing.losses import PartialLocalEntropy

    epochs = s.schedule_epochs if s.schedule_epochs is not None else cfg.epochs
    schedule = radius_schedule(
        s.schedule, R=s.R, R_final=s.R_final, total_steps=max(1, epochs * steps_per_epoch)
    )
    R: float | Callable[[int], float] = s.R if s.schedule == "constant" else schedule
    ple = PartialLocalEntropy(
        model,
        base_loss=F.cross_entropy,
        layers=tuple(s.layers),
        reduction=s.make_reduction(),
        kernel=s.kernel,
        R=R,
        k=s.k,
        gamma=s.gamma,
        y=s.y,
        include_centre=s.include_centre,
        include_biases=s.include_biases,
        cut="auto",
    )
    return ple, schedule


class _Period:
    """Running sums of one logging period (float64 on the device: no per-step sync)."""

    def __init__(self, device: torch.device) -> None:
        z = lambda: torch.zeros((), dtype=torch.float64, device=device)
        self.loss, self.smoothed, self.correct = z(), z(), z()
        self.steps = self.samples = 0

    def add(self, centre: torch.Tensor, smoothed: torch.Tensor, correct: torch.Tensor, n: int):
        self.loss += centre.detach().to(torch.float64)
        self.smoothed += smoothed.detach().to(torch.float64)
        self.correct += correct.to(torch.float64)
        self.steps += 1
        self.samples += n

    def means(self) -> dict[str, float]:
        """``train_loss``, ``smoothed_loss`` (per step) and ``train_acc`` (per sample)."""
        return {
            "train_loss": float(self.loss) / self.steps,
            "smoothed_loss": float(self.smoothed) / self.steps,
            "train_acc": float(self.correct) / self.samples,
        }


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _check_resume(saved: dict[str, Any], cfg: TrainConfig) -> None:
    """Raise ValueError if ``cfg`` differs from the checkpoint's configuration."""
    a, b = _flatten(saved), _flatten(config_to_dict(cfg, json_safe=True))
    diff = sorted(
        k
        for k in a.keys() | b.keys()
        if k not in RESUME_MAY_CHANGE and a.get(k, "<absent>") != b.get(k, "<absent>")
    )
    if diff:
        raise ValueError(
            "cannot resume: the configuration differs from the checkpoint's in "
            f"{', '.join(diff)} (only {', '.join(RESUME_MAY_CHANGE)} may change)"
        )


class _Run:
    """State of one training run (model, optimiser, generators, counters)."""

    def __init__(
        self,
        cfg: TrainConfig,
        paths: RunPaths,
        progress: bool,
        callbacks: tuple[TrainCallback, ...] = (),
    ) -> None:
        self.cfg, self.paths, self.progress = cfg, paths, progress
        self.callbacks = callbacks
        self.device = torch.device(cfg.device)
        self.data = load_dataset(cfg.data)
        if self.device.type != "cpu":
            for key in ("x_train", "y_train", "x_test", "y_test"):
                setattr(self.data, key, getattr(self.data, key).to(self.device))
        init_seed, data_seed, pert_seed = derive_seeds(cfg.seed)
        self.model = build_model(cfg, self.data.input_shape, self.data.classes, seed=init_seed).to(
            self.device
        )
        o = cfg.optim
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=o.lr,
            momentum=o.momentum,
            nesterov=o.nesterov,
            weight_decay=o.weight_decay,
        )
        self.data_gen = torch.Generator().manual_seed(data_seed)
        self.pert_gen = torch.Generator(device=self.device).manual_seed(pert_seed)
        self.n_train = len(self.data.x_train)
        self.steps_per_epoch = math.ceil(self.n_train / o.batch_size)
        self.ple, self.schedule = _make_loss(cfg, self.model, self.steps_per_epoch)
        self.signals = SignalAccumulator(weight_layers(self.model)) if cfg.logging.signals else None
        lg = cfg.logging
        # step log: its own accumulators over the window since the last step record
        self.step_signals = SignalAccumulator(weight_layers(self.model)) if lg.steps else None
        self.step_period = _Period(self.device)
        self.step_marks = (
            frozenset(
                geometric_steps(
                    cfg.epochs * self.steps_per_epoch,
                    dense=lg.steps_dense,
                    per_decade=lg.steps_per_decade,
                )
            )
            if lg.steps
            else frozenset()
        )
        self.steps_position = 0
        self.epoch = self.step = 0
        self.best_test_acc = -1.0
        self.best_epoch = 0
        self.log_position = 0
        self.checkpoint_epoch: int | None = None  # epoch of the checkpoint on disk
        self.elapsed = 0.0
        self.last: dict[str, Any] | None = None
        self.last_loss: torch.Tensor | None = None

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "step": self.step,
            "best_test_acc": self.best_test_acc,
            "best_epoch": self.best_epoch,
            "log_position": self.log_position,
            "steps_position": self.steps_position,
            "elapsed": self.elapsed,
            "last": self.last,
            "config": config_to_dict(self.cfg, json_safe=True),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "data_generator": self.data_gen.get_state(),
            "perturb_generator": self.pert_gen.get_state(),
        }

    def restore(self, ck: dict[str, Any]) -> None:
        if ck.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(
                f"checkpoint format {ck.get('format')!r} is not "
                f"{CHECKPOINT_FORMAT}; it was written by another version"
            )
        _check_resume(ck["config"], self.cfg)
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.data_gen.set_state(ck["data_generator"].cpu())
        self._restore_perturbation_stream(ck["perturb_generator"].cpu(), ck["config"])
        for key in (
            "epoch",
            "step",
            "best_test_acc",
            "best_epoch",
            "log_position",
            "elapsed",
            "last",
        ):
            setattr(self, key, ck[key])
        self.steps_position = ck.get("steps_position", 0)
        self.checkpoint_epoch = self.epoch

    def _restore_perturbation_stream(self, state: torch.Tensor, saved: dict[str, Any]) -> None:
        """Set the perturbation generator, which lives on the run's device.

        A CPU and a CUDA generator have different states, so a run checkpointed on
        one device and resumed on another cannot continue its perturbation stream.
        An unsmoothed run never draws from it (the stream is only re-seeded); a
        smoothed one is refused with a clear error.
        """
        try:
            self.pert_gen.set_state(state)
        except RuntimeError:
            if self.ple is not None:
                raise ValueError(
                    f"cannot resume: the checkpoint was written on device "
                    f"{saved.get('device')!r} and this run uses {self.cfg.device!r}; the "
                    "perturbation stream of a smoothed run is device-specific, so resume it "
                    "on the device it started on"
                ) from None

    # ------------------------------------------------------------------ one step
    def train_step(self, idx: torch.Tensor, period: _Period) -> None:
        d, cfg = self.data, self.cfg
        idx = idx.to(self.device)
        x = d.x_train[idx]
        if cfg.data.augment != "none":
            x = augment_batch(x, cfg.data.augment, generator=self.data_gen)
        x, t = d.normalise(x), d.y_train[idx]
        radius = self.schedule(self.step) if self.schedule is not None else 0.0
        if self.ple is None or radius == 0.0:
            logits = self.model(x)
            loss = F.cross_entropy(logits, t)
            centre = loss.detach()
        else:
            out = self.ple(x, t, generator=self.pert_gen, step=self.step)
            loss, logits = out.loss, out.centre_output
            if logits is None:  # centre excluded from the loss: one extra forward for the log
                with torch.no_grad():
                    logits = self.model(x)
            centre = F.cross_entropy(logits.detach(), t)
        if not bool(torch.isfinite(loss)):
            raise NonFiniteError(
                f"non-finite training loss ({float(loss.detach())}) at epoch "
                f"{self.epoch + 1}, step {self.step}"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.signals is not None:
            self.signals.update()
        if self.step_signals is not None:
            self.step_signals.update()
        self.optimizer.step()
        correct = (logits.detach().argmax(dim=1) == t).sum()
        period.add(centre, loss, correct, len(idx))
        self.last_loss = loss.detach()
        self.step += 1
        if self.step_signals is not None:
            self.step_period.add(centre, loss, correct, len(idx))
            if self.step in self.step_marks:
                self.write_step_record()

    def write_step_record(self) -> None:
        """Append the window since the last step record to ``steps.jsonl`` and reset it.

        The spreads of a one-minibatch window are written as ``null`` (not defined).
        A run resumed from a checkpoint restarts the window that was in progress, so
        that one record covers fewer minibatches than in an uninterrupted run (its
        ``batches`` says how many).
        """
        if self.step_signals is None:  # step logging is off
            return
        w = self.step_period
        # values become None below (no spread in a one-batch window)
        layers: dict[str, dict[str, Any]] = self.step_signals.summary()
        if w.steps == 1:
            for stats in layers.values():
                stats["signal_std"] = stats["grad_std_norm"] = None
        rec = {
            "step": self.step,
            "epoch": self.epoch + 1,
            "batches": w.steps,
            **w.means(),
            "layers": layers,
        }
        try:
            check_record(rec, "steps log")
        except ValueError as exc:
            raise NonFiniteError(f"step {self.step}: {exc}") from None
        self.steps_position = append_jsonl(self.paths.steps, rec)
        self.step_period = _Period(self.device)
        self.step_signals.reset()

    # ------------------------------------------------------------------ callbacks
    def notify(self, hook: str, *args: Any) -> None:
        """Call ``hook`` (``"on_step"`` or ``"on_epoch"``) of every callback with the run's
        state; an exception in one becomes :class:`CallbackError` (a clean stop)."""
        if not self.callbacks:
            return
        state = TrainState(
            epoch=self.epoch,
            step=self.step,
            model=self.model,
            optimizer=self.optimizer,
            loss=self.last_loss,
            record=self.last,
        )
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is None:
                continue
            try:
                fn(state, *args)
            except Exception as exc:
                raise CallbackError(f"callback {hook} raised {type(exc).__name__}: {exc}") from exc

    # ------------------------------------------------------------------ one period
    def record(self, period: _Period, wall_start: float) -> dict[str, Any]:
        for name, p in self.model.named_parameters():
            if not bool(torch.isfinite(p).all()):
                raise NonFiniteError(f"parameter {name} became non-finite in epoch {self.epoch}")
        test_loss, test_acc = evaluate(
            self.model,
            self.data,
            self.data.x_test,
            self.data.y_test,
            batch_size=self.cfg.optim.eval_batch_size,
        )
        best = max(self.best_test_acc, test_acc)
        rec: dict[str, Any] = {
            "epoch": self.epoch,
            "step": self.step,
            **period.means(),
            "test_loss": test_loss,
            "test_acc": test_acc,
            "best_test_acc": best,
            "wall_time": self.elapsed + (time.perf_counter() - wall_start),
            "lr": self.optimizer.param_groups[0]["lr"],
            "R": None if self.schedule is None else self.schedule(max(self.step - 1, 0)),
            "layers": self.signals.summary() if self.signals is not None else {},
        }
        try:
            check_record(rec, "log")
        except ValueError as exc:
            raise NonFiniteError(f"epoch {self.epoch}: {exc}") from None
        if test_acc > self.best_test_acc:
            self.best_test_acc, self.best_epoch = test_acc, self.epoch
        return rec


def _summary(run: _Run, status: str, wall: float) -> dict[str, Any]:
    last = run.last or {}
    return {
        "status": status,
        "config": config_to_dict(run.cfg, json_safe=True),
        "epochs": last.get("epoch", 0),
        "steps": last.get("step", 0),
        "best_test_acc": run.best_test_acc if run.best_test_acc >= 0 else None,
        "best_epoch": run.best_epoch if run.best_test_acc >= 0 else None,
        "final_test_acc": last.get("test_acc"),
        "final_train_loss": last.get("train_loss"),
        "final_smoothed_loss": last.get("smoothed_loss"),
        "final_train_acc": last.get("train_acc"),
        "wall_time": wall,
        "parameters": sum(p.numel() for p in run.model.parameters()),
        "smoothed_parameters": list(run.ple.smoothed_names) if run.ple is not None else [],
        "checkpoint_epoch": run.checkpoint_epoch,
    }


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
    _check_run_dir(paths, resume)  # fail fast; repeated under the lock
    with torch_threads(cfg.threads):
        run = _Run(cfg, paths, progress, hooks)  # data, model, loss: nothing written yet
        with RunLock(paths.root, wait=lock_wait):
            _check_run_dir(paths, resume)
            if resume and paths.checkpoint.exists():
                run.restore(load_checkpoint(paths.checkpoint, map_location="cpu"))
                truncate_log(paths.log, run.log_position)
                if cfg.logging.steps and paths.steps.exists():
                    truncate_log(paths.steps, run.steps_position)
            else:
                write_text_atomic(paths.log, "")
                if cfg.logging.steps:
                    write_text_atomic(paths.steps, "")
            write_text_atomic(paths.config, config_to_toml(cfg))
            try:
                status = _loop(run)
            except KeyboardInterrupt as exc:
                summary = _summary(run, f"interrupted at epoch {run.epoch}", run.elapsed)
                write_json_atomic(paths.summary, summary)
                resumable = run.checkpoint_epoch is not None or not paths.logged()
                raise TrainingInterrupted(
                    summary, paths.root, run.checkpoint_epoch, resumable
                ) from exc
            summary = _summary(run, status, run.elapsed)
            write_json_atomic(paths.summary, summary)
    return summary


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


def _loop(run: _Run) -> str:
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
        period = _Period(run.device)
        if run.signals is not None:
            run.signals.reset()
        while run.epoch < cfg.epochs:
            for idx in minibatches(run.n_train, cfg.optim.batch_size, generator=run.data_gen):
                run.train_step(idx, period)
                run.notify("on_step")
                bar.update(1)
            run.epoch += 1
            if run.epoch % cfg.logging.log_every and run.epoch != cfg.epochs:
                continue
            rec = run.record(period, wall_start)
            run.log_position = append_jsonl(run.paths.log, rec)
            run.last = rec
            bar.set_postfix(loss=f"{rec['train_loss']:.4g}", test_acc=f"{rec['test_acc']:.4f}")
            period = _Period(run.device)
            if run.signals is not None:
                run.signals.reset()
            run.elapsed, wall_start = rec["wall_time"], time.perf_counter()
            every = cfg.logging.checkpoint_every
            if (every and run.epoch % every == 0) or run.epoch == cfg.epochs:
                save_checkpoint(run.paths.checkpoint, run.state())
                run.checkpoint_epoch = run.epoch
            run.notify("on_epoch", rec)
    except (NonFiniteError, CallbackError) as exc:
        status = f"stopped: {exc}"
        print(f"anisotropy train: {status}; {_kept(run)}", file=sys.stderr)
    finally:
        bar.close()
        run.elapsed += time.perf_counter() - wall_start
    return status


def _kept(run: _Run) -> str:
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
