"""State of one training run: the run directory, the model, optimiser and generators,
and their checkpoint.

:class:`Run` holds everything a step needs (data, model, optimiser, smoothed loss,
both generators, the precision's gradient scaler) and the counters a checkpoint
restores; :meth:`Run.state` / :meth:`Run.restore` are the checkpoint's content
(``checkpoint.pt``, format :data:`CHECKPOINT_FORMAT`).  The step is
:mod:`anisotropy.training.step`, the loop over epochs :mod:`anisotropy.training.loop`,
the entry point :func:`anisotropy.training.trainer.train`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from anisotropy import models
from anisotropy.data.datasets import batches_per_epoch, load_dataset
from anisotropy.smoothing.schedules import radius_schedule
from anisotropy.training.config import Precision, TrainConfig, config_to_dict
from anisotropy.training.distributed import Context
from anisotropy.training.guidance import EntropyGuidance, entropy_profile
from anisotropy.training.hooks import TrainCallback
from anisotropy.training.objective import get_objective
from anisotropy.training.optimisers import build_optimizer, gradient_free, streams
from anisotropy.training.signals import SignalAccumulator, weight_layers
from anisotropy.training.steplog import geometric_steps

if TYPE_CHECKING:
    from anisotropy.smoothing.losses import PartialLocalEntropy

__all__ = [
    "Run",
    "RunPaths",
    "Period",
    "CHECKPOINT_FORMAT",
    "RESUME_MAY_CHANGE",
    "NonFiniteError",
    "TrainingInterrupted",
    "build_model",
    "check_device",
    "derive_seeds",
]

#: version of the checkpoint layout; bumped when its keys change
CHECKPOINT_FORMAT = 1
#: configuration keys that may differ between a checkpoint and a resumed run (the
#: accumulation and the number of ranks change only the order of floating-point sums;
#: the end-of-run flatness measurement does not touch the trajectory)
RESUME_MAY_CHANGE = (
    "epochs",
    "device",
    "threads",
    "optim.accumulate",
    "logging.flatness",
    "logging.flatness_n_train",
    "logging.flatness_sigmas",
    "logging.flatness_R",
    "logging.flatness_samples",
)
#: the autocast dtype of each precision (float32: no autocast)
PRECISION_DTYPES: dict[Precision, torch.dtype | None] = {
    "float32": None,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


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
    With ``model.init = "torch_default"`` every layer's ``reset_parameters()`` then
    redraws its weights and biases, in model order, from the same seeded stream.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _network(cfg, input_shape, classes)
        if cfg.model.init == "torch_default":
            for module in model.modules():
                if isinstance(module, (nn.Linear, nn.Conv2d)):
                    module.reset_parameters()
        return model


def _network(cfg: TrainConfig, input_shape: tuple[int, ...], classes: int) -> nn.Sequential:
    """The network of ``cfg.model`` (its own initialisation), drawn from the global RNG."""
    m = cfg.model
    if m.name == "autoencoder":
        return models.autoencoder(
            in_features=int(np.prod(input_shape)),
            width=m.width,
            bottleneck=m.bottleneck,
            activation=m.activation,
        )
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


def make_loss(
    cfg: TrainConfig, model: nn.Module, steps_per_epoch: int
) -> tuple[PartialLocalEntropy | None, Callable[[int], float] | None]:
    """The smoothed loss (of the run's objective, :mod:`anisotropy.training.objective`)
    and the radius schedule, or ``(None, None)`` for the plain loss."""
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
        base_loss=get_objective(cfg.objective),
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


class Period:
    """Running sums of one logging period (float64 on the device: no per-step sync).

    ``accuracy=False`` (an objective without accuracy): ``train_acc`` is ``None``."""

    def __init__(self, device: torch.device, *, accuracy: bool = True) -> None:
        z = lambda: torch.zeros((), dtype=torch.float64, device=device)
        self.loss, self.smoothed, self.correct = z(), z(), z()
        self.steps = self.samples = 0
        self.accuracy = accuracy

    def add(self, centre: torch.Tensor, smoothed: torch.Tensor, correct: torch.Tensor, n: int):
        self.loss += centre.detach().to(torch.float64)
        self.smoothed += smoothed.detach().to(torch.float64)
        self.correct += correct.to(torch.float64)
        self.steps += 1
        self.samples += n

    def means(self) -> dict[str, float | None]:
        """``train_loss``, ``smoothed_loss`` (per step) and ``train_acc`` (per sample;
        ``None`` without accuracy)."""
        return {
            "train_loss": float(self.loss) / self.steps,
            "smoothed_loss": float(self.smoothed) / self.steps,
            "train_acc": float(self.correct) / self.samples if self.accuracy else None,
        }


def _by_field(d: dict[str, Any]) -> dict[str, Any]:
    """A configuration dict keyed by field, ``section.field`` (``optim.lr``): its
    sections opened one level, each field's value whole (a table such as
    ``guidance.target = {fc3 = 1.47}`` is one value, not keys of its own)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if k in _SECTIONS and isinstance(v, dict):
            out.update({f"{k}.{name}": value for name, value in v.items()})
        else:
            out[k] = v
    return out


#: the sections of :class:`TrainConfig` (fields whose value is a configuration dataclass)
_SECTIONS = frozenset(
    name for name, value in vars(TrainConfig()).items() if dataclasses.is_dataclass(value)
)


def check_resume(saved: dict[str, Any], cfg: TrainConfig) -> None:
    """Raise ValueError if ``cfg`` differs from the checkpoint's configuration.

    A key the checkpoint's configuration lacks (a field added to :class:`TrainConfig`
    after the checkpoint was written) counts as its default, the value that reproduces
    the behaviour from before the field existed: the rule of the run store's identity
    (``experiments.grid.config_hash`` ignores settings at their defaults).
    """
    a = {**_by_field(config_to_dict(TrainConfig(), json_safe=True)), **_by_field(saved)}
    b = _by_field(config_to_dict(cfg, json_safe=True))
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


def check_shards(cfg: TrainConfig, n_train: int, world_size: int) -> None:
    """Raise ValueError unless every minibatch splits into ``world_size * accumulate``
    non-empty contiguous pieces (:func:`anisotropy.training.distributed.shard_bounds`).

    The full minibatches must split equally; the last, shorter one of an epoch (``n_train
    % batch_size`` samples) may split unequally (the pieces are then weighted by size).
    With ``optim.drop_last`` there is no shorter one, and ``n_train`` must hold one full
    minibatch.
    """
    o = cfg.optim
    if o.drop_last and n_train < o.batch_size:
        raise ValueError(
            f"optim.drop_last = true needs data.n_train >= optim.batch_size = {o.batch_size} "
            f"(an epoch would hold no full minibatch), got {n_train} training samples"
        )
    parts = world_size * o.accumulate
    if o.batch_size % parts:
        raise ValueError(
            f"optim.batch_size = {o.batch_size} must be divisible by the number of ranks "
            f"({world_size}) times optim.accumulate ({o.accumulate}) = {parts}: every rank "
            "takes an equal contiguous slice of each minibatch"
        )
    last = 0 if o.drop_last else n_train % o.batch_size
    if 0 < last < parts:
        raise ValueError(
            f"the last minibatch of an epoch holds {last} samples (n_train = {n_train} modulo "
            f"optim.batch_size = {o.batch_size}), fewer than the {parts} pieces (ranks x "
            "optim.accumulate) it must split into; change data.n_train or optim.batch_size"
        )


class Run:
    """State of one training run (model, optimiser, generators, counters)."""

    def __init__(
        self,
        cfg: TrainConfig,
        paths: RunPaths,
        progress: bool,
        callbacks: tuple[TrainCallback, ...] = (),
        ctx: Context | None = None,
    ) -> None:
        self.cfg, self.paths, self.progress = cfg, paths, progress
        self.callbacks = callbacks
        self.ctx = ctx if ctx is not None else Context(device=torch.device(cfg.device))
        self.device = self.ctx.device
        self.data = load_dataset(cfg.data)
        self.n_train = len(self.data.x_train)
        check_shards(cfg, self.n_train, self.ctx.world_size)
        if self.device.type != "cpu":
            for key in ("x_train", "y_train", "x_test", "y_test"):
                setattr(self.data, key, getattr(self.data, key).to(self.device))
        init_seed, data_seed, pert_seed = derive_seeds(cfg.seed)
        self.model = build_model(cfg, self.data.input_shape, self.data.classes, seed=init_seed).to(
            self.device
        )
        #: the training objective: targets, loss, correct count (anisotropy.training.objective)
        self.objective = get_objective(cfg.objective)
        o = cfg.optim
        self.data_gen = torch.Generator().manual_seed(data_seed)
        self.pert_gen = torch.Generator(device=self.device).manual_seed(pert_seed)
        self.steps_per_epoch = batches_per_epoch(self.n_train, o.batch_size, drop_last=o.drop_last)
        # the optimiser (anisotropy.training.optimisers); its randomness: pert_gen
        self.optimizer = build_optimizer(
            cfg,
            self.model,
            generator=self.pert_gen,
            total_steps=cfg.epochs * self.steps_per_epoch,
            world_size=self.ctx.world_size,
            on_gradient=self.record_signals,
        )
        #: minibatches per step, each from its own permutation of the data per epoch
        self.streams = streams(o)
        # float16 needs a gradient scaler (its small gradients underflow); bfloat16 has
        # float32's exponent range and float32 none
        self.scaler = torch.amp.GradScaler(self.device.type) if cfg.precision == "float16" else None
        self.ple, self.schedule = make_loss(cfg, self.model, self.steps_per_epoch)
        #: the entropy guidance term of the training loss (None: off, the plain loss)
        self.guidance = EntropyGuidance(cfg.guidance, self.model) if cfg.guidance.active else None
        if cfg.guidance.layers:
            # the named layers' end-of-run profile (guided or not): refuse a name without
            # an entropy change now, not after the training
            entropy_profile(cfg.guidance, self.model)
        # a gradient-free optimiser leaves no gradient to take the signals of
        with_signals = cfg.logging.signals and not gradient_free(o)
        self.signals = SignalAccumulator(weight_layers(self.model)) if with_signals else None
        lg = cfg.logging
        # step log: its own accumulators over the window since the last step record
        self.step_signals = SignalAccumulator(weight_layers(self.model)) if lg.steps else None
        self.step_period = self.new_period()
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
        #: the within-minibatch gradient noise of the coming logged step
        #: (logging.steps_split; anisotropy.training.spread)
        self.step_within: dict[str, dict[str, float | None]] | None = None
        self.steps_position = 0
        self.epoch = self.step = 0
        self.best_test_acc = -1.0
        #: the lowest test loss so far (the best of an objective without accuracy)
        self.best_test_loss = math.inf
        self.best_epoch = 0
        self.log_position = 0
        self.checkpoint_epoch: int | None = None  # epoch of the checkpoint on disk
        self.elapsed = 0.0
        self.last: dict[str, Any] | None = None
        self.last_loss: torch.Tensor | None = None
        #: cumulative minibatch passes with / without backward (optimisers module)
        self.passes = self.forward_passes = 0
        #: per-optimiser values of the last step for the log (optimisers.log_extras)
        self.optim_log: dict[str, float] = {}

    def new_period(self) -> Period:
        """Empty running sums of a logging period (with accuracy if the objective has one)."""
        return Period(self.device, accuracy=self.objective.has_accuracy)

    def budget_reached(self) -> bool:
        """Whether the run has spent its budget ``max_passes`` (a forward-only pass counts
        as one pass: ``passes + forward_passes >= max_passes``); never without one."""
        budget = self.cfg.max_passes
        return budget is not None and self.passes + self.forward_passes >= budget

    def smoothed(self, step: int) -> bool:
        """Whether the training loss at ``step`` is the smoothed one (a smoothed layer,
        and a radius that no schedule has brought to 0)."""
        return self.ple is not None and self.schedule is not None and self.schedule(step) != 0.0

    def configurations(self, step: int) -> int:
        """Network evaluations of one minibatch by the training loss at ``step``: the
        ``y`` perturbed weights and the centre (if included) when smoothed, else 1."""
        if self.ple is None or not self.smoothed(step):
            return 1
        return self.ple.y + int(self.ple.include_centre)

    def record_signals(self) -> None:
        """Add the current ``.grad`` of the weight layers to the layer signals (eq. 2 of
        the paper) of the period and of the step log: the gradient the update uses;
        nothing when a layer has no gradient (a non-finite loss skipped its backward,
        and the run stops at this step)."""
        if self.signals is None and self.step_signals is None:
            return
        if any(p.grad is None for p in weight_layers(self.model).values()):
            return
        if self.signals is not None:
            self.signals.update()
        if self.step_signals is not None:
            self.step_signals.update()

    def autocast(self) -> AbstractContextManager[Any]:
        """``torch.autocast`` at the run's precision on its device (float32: none)."""
        dtype = PRECISION_DTYPES[self.cfg.precision]
        if dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        extra = {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}
        return {
            **extra,
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "step": self.step,
            "best_test_acc": self.best_test_acc,
            "best_epoch": self.best_epoch,
            **({} if self.objective.has_accuracy else {"best_test_loss": self.best_test_loss}),
            "log_position": self.log_position,
            "steps_position": self.steps_position,
            "elapsed": self.elapsed,
            "last": self.last,
            "passes": self.passes,
            "forward_passes": self.forward_passes,
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
        check_resume(ck["config"], self.cfg)
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
        self.best_test_loss = ck.get("best_test_loss", math.inf)
        if "passes" in ck:
            self.passes, self.forward_passes = ck["passes"], ck["forward_passes"]
        else:  # written before the passes were counted: by the sgd step, which is known
            self._count_sgd_passes()
        if self.scaler is not None and "scaler" in ck:
            self.scaler.load_state_dict(ck["scaler"])
        self.checkpoint_epoch = self.epoch

    def _count_sgd_passes(self) -> None:
        """The passes of ``self.step`` sgd steps (one process, no accumulation: all a
        checkpoint from before the count could hold)."""
        for s in range(self.step):
            self.passes += self.configurations(s)
            if self.ple is not None and self.smoothed(s) and not self.ple.include_centre:
                self.forward_passes += 1

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
