"""Training configuration: nested dataclasses read from TOML, with ``--set`` overrides.

One :class:`TrainConfig` describes one training run completely (model, data,
optimiser, smoothed loss, logging, seed); the run directory stores it next to
the log, so every number can be traced back to its configuration.

TOML layout (every key optional; defaults are the paper's settings where the
paper gives one: section 4 of
*Partial local entropy and anisotropy in deep weight spaces*)::

    seed = 0
    epochs = 120
    max_passes = 100000      # optional budget of minibatch passes (docs/trainer.md)
    precision = "float32"    # or "bfloat16", "float16" (cpu or cuda)
    [model]      name = "mlp", depth = 2, width = 784, activation = "relu", ...
    [data]       name = "fashion_mnist", root = "...", n_train = 10000, ...
    [optim]      lr = 1e-4, momentum = 0.9, nesterov = false, weight_decay = 0.0, batch_size = 256,
                 accumulate = 1, name = "sgd" (or "sam", "replicated", ...: the optimiser)
    [smoothing]  layers = ["fc2"], reduction = "pla", R = 0.01, y = 4, ...
    [logging]    log_every = 1, checkpoint_every = 1, flatness = false, ...
    [guidance]   dense_weight = 0.0, conv_weight = 0.0, layers = [], target = 0.0

``None`` values (e.g. ``data.root``, ``smoothing.gamma``) are written as absent
keys, since TOML has no null.  Unknown keys and values of the wrong type or out
of range raise :class:`ValueError` naming the key and the accepted values.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from anisotropy.data.augment import AugmentName
from anisotropy.data.datasets import DataName, Normalisation
from anisotropy.kernels.base import Kernel
from anisotropy.kernels.registry import KernelName, as_kernel
from anisotropy.models import Activation, ModelName
from anisotropy.smoothing.reductions import REDUCTIONS, LossReduction, Reduction, as_reduction
from anisotropy.smoothing.schedules import Schedule
from anisotropy.training.optimisers import (
    OPTIMISERS,
    GammaSchedule,
    OptimName,
    check_optimiser,
    check_optimiser_combination,
)
from anisotropy.training.steplog import DEFAULT_DENSE_STEPS, DEFAULT_PER_DECADE
from anisotropy.validation import check_choice

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "Precision",
    "PRECISIONS",
    "Init",
    "INITS",
    "ModelConfig",
    "DataConfig",
    "OptimConfig",
    "SmoothingConfig",
    "LoggingConfig",
    "GuidanceConfig",
    "TrainConfig",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "config_to_toml",
    "apply_overrides",
    "parse_override",
]


#: accepted smoothing radii: the Gaussian kernel's precision gamma = 1/R^2 (eq 1) and
#: the box's variance R^2/3 (eqs 5-8) must be finite, non-zero float64 numbers, which
#: holds for 1e-150 <= R <= 1e150 (float64 spans about 1e-308..1e308); a radius below
#: ~1e-45 already moves no float32 weight, so the bound excludes nothing meaningful
R_MIN, R_MAX = 1e-150, 1e150
_R_RANGE = f"a number in [{R_MIN:g}, {R_MAX:g}] (gamma = 1/R^2 must be finite)"


#: initialisation of the weights: Kaiming-normal with zero biases (the package's
#: networks, :mod:`anisotropy.models`), or PyTorch's default ``reset_parameters`` of
#: every ``nn.Linear`` / ``nn.Conv2d`` (weights and biases uniform in +-1/sqrt(fan_in):
#: weight variance 1/(3 fan_in), a poor start for a deep ReLU network)
Init = Literal["kaiming", "torch_default"]
INITS: tuple[Init, ...] = get_args(Init)


#: arithmetic of the forward passes: float32, or torch.autocast to bfloat16 / float16
#: (weights, optimiser and the reduction of the smoothed loss stay float32)
Precision = Literal["float32", "bfloat16", "float16"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)


def _range_error(key: str, value: Any, accepted: str) -> ValueError:
    return ValueError(f"{key} must be {accepted}, got {value!r}")


def _require(cond: bool, key: str, value: Any, accepted: str) -> None:
    if not cond:
        raise _range_error(key, value, accepted)


@dataclass
class ModelConfig:
    """Network (``anisotropy.models``); input size and class count come from the data."""

    name: ModelName = field(
        default="mlp", metadata={"help": "network: mlp | cnn_table24 | cnn_table25"}
    )
    depth: int = field(default=2, metadata={"help": "mlp: number of hidden layers"})
    width: int = field(default=784, metadata={"help": "mlp: units per hidden layer"})
    activation: Activation = field(default="relu", metadata={"help": "mlp activation"})
    in_channels: int | None = field(
        default=None, metadata={"help": "cnn: input channels (default: from the data)"}
    )
    input_size: int | None = field(
        default=None, metadata={"help": "cnn: input side (default: from the data)"}
    )
    padding: int = field(default=0, metadata={"help": "cnn: padding of the 3x3 convolutions"})
    init: Init = field(
        default="kaiming",
        metadata={
            "help": "kaiming (Kaiming-normal weights, zero biases) | torch_default "
            "(PyTorch's reset_parameters: uniform +-1/sqrt(fan_in))"
        },
    )

    def __post_init__(self) -> None:
        check_choice("model.init", self.init, INITS)
        _require(self.depth >= 1, "model.depth", self.depth, "an integer >= 1")
        _require(self.width >= 1, "model.width", self.width, "an integer >= 1")
        _require(self.padding >= 0, "model.padding", self.padding, "an integer >= 0")
        for key in ("in_channels", "input_size"):
            v = getattr(self, key)
            _require(v is None or v >= 1, f"model.{key}", v, "an integer >= 1 (or absent)")


@dataclass
class DataConfig:
    """Data set, subset sizes, normalisation and training-set augmentation."""

    name: DataName = field(default="fashion_mnist", metadata={"help": "data set"})
    root: str | None = field(
        default=None,
        metadata={
            "help": "data directory (fashion_mnist default: /usr/share/datasets/fashion-mnist; "
            "required for cifar10 / stl10)"
        },
    )
    n_train: int | None = field(
        default=None, metadata={"help": "training subset size (default: all)"}
    )
    n_test: int | None = field(default=None, metadata={"help": "test subset size (default: all)"})
    test_fraction: float = field(
        default=0.2,
        metadata={
            "help": "held-out fraction for sets without a fixed split (mnist, digits, synthetic)"
        },
    )
    split_seed: int = field(
        default=0,
        metadata={
            "help": "seed of the train/test split and of the subsets (fixed across training seeds)"
        },
    )
    normalize: Normalisation = field(
        default="standard",
        metadata={
            "help": "unit: pixels in [0, 1]; "
            "standard: minus training mean, over training std (per channel)"
        },
    )
    augment: AugmentName = field(
        default="none", metadata={"help": "none | crop (section 5.2) | heavy (section 5.3)"}
    )
    synthetic_features: int = field(default=16, metadata={"help": "synthetic: input dimension"})
    synthetic_classes: int = field(default=4, metadata={"help": "synthetic: number of classes"})
    synthetic_size: int = field(default=1024, metadata={"help": "synthetic: total samples"})

    def __post_init__(self) -> None:
        for key in ("n_train", "n_test"):
            v = getattr(self, key)
            _require(v is None or v >= 1, f"data.{key}", v, "an integer >= 1 (or absent for all)")
        _require(
            0.0 < self.test_fraction < 1.0,
            "data.test_fraction",
            self.test_fraction,
            "a number in (0, 1)",
        )
        _require(self.split_seed >= 0, "data.split_seed", self.split_seed, "an integer >= 0")
        _require(
            self.synthetic_features >= 1,
            "data.synthetic_features",
            self.synthetic_features,
            "an integer >= 1",
        )
        _require(
            self.synthetic_classes >= 2,
            "data.synthetic_classes",
            self.synthetic_classes,
            "an integer >= 2",
        )
        _require(
            self.synthetic_size >= 4, "data.synthetic_size", self.synthetic_size, "an integer >= 4"
        )


@dataclass
class OptimConfig:
    """torch SGD with momentum (paper: lr 1e-4, momentum 0.9, no Nesterov, batch 256), or
    another optimiser of :mod:`anisotropy.optim` (``name``) with its parameters."""

    lr: float = field(default=1e-4, metadata={"help": "learning rate"})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum in [0, 1)"})
    nesterov: bool = field(default=False, metadata={"help": "Nesterov momentum"})
    weight_decay: float = field(default=0.0, metadata={"help": "L2 weight decay (figure 7)"})
    batch_size: int = field(default=256, metadata={"help": "minibatch size"})
    eval_batch_size: int = field(default=1024, metadata={"help": "batch size of the evaluation"})
    accumulate: int = field(
        default=1,
        metadata={
            "help": "micro-batches per step (gradient accumulation; the step's perturbations "
            "are shared, the update is that of the whole minibatch)"
        },
    )
    # --- the optimiser (anisotropy.training.optimisers; docs/trainer.md "Optimisers").
    # Each parameter below is used by the optimisers named in its help; giving one a
    # value other than its default while another optimiser is chosen is an error.
    name: OptimName = field(
        default="sgd",
        metadata={
            "help": f"{' | '.join(OPTIMISERS)}: torch SGD (default), SAM, Replicated-SGD, "
            "Entropy-SGD, variational moment matching, heat regularisation (anisotropy.optim)"
        },
    )
    layers: list[str] = field(
        default_factory=list,
        metadata={"help": "not sgd: act on these layers only (names or globs; empty: all)"},
    )
    include_biases: bool = field(
        default=False, metadata={"help": "not sgd: with layers, also the selected biases"}
    )
    rho: float = field(default=0.05, metadata={"help": "sam: radius of the ascent step"})
    replicas: int = field(default=3, metadata={"help": "replicated: number of replicas y"})
    gamma: float | None = field(
        default=None,
        metadata={
            "help": "replicated, entropy_sgd: coupling to the centre (at step 0); "
            "moment_matching, heat: precision 1/tau of the Gaussian (required by all four)"
        },
    )
    gamma_schedule: GammaSchedule = field(
        default="constant",
        metadata={
            "help": "replicated, entropy_sgd: scoping of gamma, constant | exp | linear | cosine"
        },
    )
    gamma_rate: float = field(
        default=0.0,
        metadata={"help": "replicated, entropy_sgd: growth of gamma per step (exp, linear)"},
    )
    gamma_max: float = field(
        default=math.inf,
        metadata={
            "help": "replicated, entropy_sgd: cap of gamma (exp, linear), final value (cosine)"
        },
    )
    init_noise: float = field(
        default=0.0,
        metadata={"help": "replicated: std of the noise added to each replica at the start"},
    )
    inner_steps: int | None = field(
        default=None,
        metadata={
            "help": "entropy_sgd: Langevin steps L (default 20); heat: gradient steps per "
            "proximal step (default 1)"
        },
    )
    inner_lr: float = field(default=0.1, metadata={"help": "entropy_sgd: Langevin step size"})
    noise: float = field(default=1e-4, metadata={"help": "entropy_sgd: Langevin noise epsilon"})
    alpha: float = field(
        default=0.75, metadata={"help": "entropy_sgd: weight of the newest replica in its mean"}
    )
    samples: int | None = field(
        default=None,
        metadata={
            "help": "moment_matching (default 64), heat (default 16): Gaussian samples per step"
        },
    )
    beta: float = field(
        default=1.0, metadata={"help": "moment_matching, heat: inverse temperature of exp(-beta L)"}
    )
    chunk_size: int | None = field(
        default=None,
        metadata={"help": "moment_matching, heat: samples evaluated at once (default: all)"},
    )

    def __post_init__(self) -> None:
        _require(math.isfinite(self.lr) and self.lr > 0, "optim.lr", self.lr, "a number > 0")
        _require(0.0 <= self.momentum < 1.0, "optim.momentum", self.momentum, "a number in [0, 1)")
        _require(
            not self.nesterov or self.momentum > 0,
            "optim.nesterov",
            self.nesterov,
            "false when momentum = 0 (Nesterov needs momentum)",
        )
        _require(
            math.isfinite(self.weight_decay) and self.weight_decay >= 0,
            "optim.weight_decay",
            self.weight_decay,
            "a number >= 0",
        )
        _require(self.batch_size >= 1, "optim.batch_size", self.batch_size, "an integer >= 1")
        _require(
            self.eval_batch_size >= 1,
            "optim.eval_batch_size",
            self.eval_batch_size,
            "an integer >= 1",
        )
        _require(self.accumulate >= 1, "optim.accumulate", self.accumulate, "an integer >= 1")
        _require(
            self.batch_size % self.accumulate == 0,
            "optim.accumulate",
            self.accumulate,
            f"a divisor of optim.batch_size = {self.batch_size} (equal micro-batches)",
        )
        check_optimiser(self)


@dataclass
class SmoothingConfig:
    """Partial local entropy loss (eqs 19-23); ``layers = []`` is plain cross-entropy.

    The radius follows ``schedule`` from ``R`` at step 0 to ``R_final`` at the end
    of ``schedule_epochs`` (default: the whole run) and stays at ``R_final`` after
    (the scoping of *Entropic alternatives to initialization* (Musso): smoothing
    strong early, fading).
    """

    layers: list[str] = field(
        default_factory=list,
        metadata={"help": "smoothed layers by name, e.g. fc2 (empty: plain cross-entropy)"},
    )
    reduction: Reduction = field(
        default="pla",
        metadata={
            "help": f"{' | '.join(REDUCTIONS)}: pla (eq 23), plea (eq 22), beta "
            "(-(1/beta) log mean exp(-beta L)); see anisotropy.smoothing.reductions"
        },
    )
    beta: float = field(default=1.0, metadata={"help": "inverse temperature of the beta reduction"})
    kernel: KernelName = field(default="box", metadata={"help": "box (eqs 5-8) | gaussian (eq 1)"})
    R: float = field(default=0.01, metadata={"help": "half-side of the smoothing hypercube"})
    k: float = field(default=math.inf, metadata={"help": "kernel sharpness (inf: hard box)"})
    gamma: float | None = field(default=None, metadata={"help": "gaussian kernel: precision"})
    y: int = field(default=4, metadata={"help": "perturbed samples per step"})
    include_centre: bool = field(default=True, metadata={"help": "average the centre W too"})
    include_biases: bool = field(default=False, metadata={"help": "smooth biases too"})
    schedule: Schedule = field(default="constant", metadata={"help": "radius schedule"})
    R_final: float = field(default=0.0, metadata={"help": "radius at the end of the schedule"})
    schedule_epochs: int | None = field(
        default=None, metadata={"help": "epochs over which the schedule runs (default: all)"}
    )

    def __post_init__(self) -> None:
        _require(
            len(set(self.layers)) == len(self.layers),
            "smoothing.layers",
            self.layers,
            "a list of distinct layer names",
        )
        _require(
            math.isfinite(self.beta) and self.beta > 0, "smoothing.beta", self.beta, "a number > 0"
        )
        _require(R_MIN <= self.R <= R_MAX, "smoothing.R", self.R, _R_RANGE)
        _require(self.k > 0, "smoothing.k", self.k, "a number in (0, inf]")
        _require(
            self.gamma is None or (math.isfinite(self.gamma) and self.gamma > 0),
            "smoothing.gamma",
            self.gamma,
            "a number > 0 (or absent)",
        )
        _require(self.y >= 0, "smoothing.y", self.y, "an integer >= 0")
        _require(
            self.include_centre or self.y >= 1,
            "smoothing.include_centre",
            self.include_centre,
            "true when y = 0 (nothing would be averaged)",
        )
        _require(
            self.R_final == 0 or R_MIN <= self.R_final <= R_MAX,
            "smoothing.R_final",
            self.R_final,
            f"0 or {_R_RANGE}",
        )
        _require(
            self.schedule != "exponential" or self.R_final > 0,
            "smoothing.R_final",
            self.R_final,
            "a number > 0 for the exponential schedule",
        )
        _require(
            self.schedule_epochs is None or self.schedule_epochs >= 1,
            "smoothing.schedule_epochs",
            self.schedule_epochs,
            "an integer >= 1 (or absent)",
        )
        check_choice("smoothing.reduction", self.reduction, REDUCTIONS)
        check_choice("smoothing.kernel", self.kernel, typing.get_args(KernelName))
        try:
            self.make_kernel()
        except ValueError as err:  # a parameter of another kernel (e.g. gamma for the box)
            raise ValueError(f"smoothing: {err}") from None

    def make_kernel(self) -> Kernel:
        """The kernel at radius ``R`` (:func:`anisotropy.kernels.as_kernel`): ``box``
        is ``BoxKernel(R, k)``; ``gaussian`` is ``GaussianKernel(gamma)``, of standard
        deviation ``R`` when ``gamma`` is absent (a radius schedule then applies to it)."""
        return as_kernel(self.kernel, scale=self.R, k=self.k, gamma=self.gamma)

    def make_reduction(self) -> LossReduction:
        """The reduction of the per-configuration losses
        (:func:`anisotropy.smoothing.reductions.as_reduction`): ``reduction`` by name with
        ``beta`` (used by ``"beta"`` only)."""
        return as_reduction(self.reduction, beta=self.beta)

    @property
    def active(self) -> bool:
        """True when a smoothed loss is used (some layer is smoothed)."""
        return bool(self.layers)


@dataclass
class LoggingConfig:
    """When to write log lines and checkpoints (in epochs)."""

    log_every: int = field(
        default=1,
        metadata={
            "help": "epochs per log line (statistics cover the minibatches since the previous line)"
        },
    )
    checkpoint_every: int = field(
        default=1, metadata={"help": "epochs per checkpoint (a multiple of log_every; 0: never)"}
    )
    signals: bool = field(default=True, metadata={"help": "log the layer signals s_I (eq 2)"})
    steps: bool = field(
        default=False,
        metadata={
            "help": "also write the layer statistics at geometrically spaced steps from step 1 "
            "to steps.jsonl (figure 1's early regimes)"
        },
    )
    steps_dense: int = field(
        default=DEFAULT_DENSE_STEPS, metadata={"help": "step log: every step up to this one"}
    )
    steps_per_decade: int = field(
        default=DEFAULT_PER_DECADE,
        metadata={"help": "step log: logged steps per factor 10 after the dense start"},
    )
    # --- end-of-run flatness (anisotropy.training.flatness; docs/trainer.md "Flatness")
    flatness: bool = field(
        default=False,
        metadata={
            "help": "at the end of the run, measure the final model's per-layer and "
            "whole-model local energy and Monte Carlo local free entropy into summary.json"
        },
    )
    flatness_n_train: int = field(
        default=1024,
        metadata={"help": "flatness: size of the fixed training subset (seeded by seed)"},
    )
    flatness_sigmas: list[float] = field(
        default_factory=lambda: [0.1, 0.2, 0.4],
        metadata={"help": "flatness: multiplicative noise scales of the local energy"},
    )
    flatness_R: list[float] = field(
        default_factory=lambda: [0.01],
        metadata={"help": "flatness: box radii of the Monte Carlo local free entropy"},
    )
    flatness_samples: int = field(
        default=256,
        metadata={"help": "flatness: noise draws per local energy curve and per free entropy"},
    )

    def __post_init__(self) -> None:
        _require(self.log_every >= 1, "logging.log_every", self.log_every, "an integer >= 1")
        _require(self.steps_dense >= 1, "logging.steps_dense", self.steps_dense, "an integer >= 1")
        _require(
            self.steps_per_decade >= 1,
            "logging.steps_per_decade",
            self.steps_per_decade,
            "an integer >= 1",
        )
        _require(
            self.checkpoint_every >= 0 and self.checkpoint_every % self.log_every == 0,
            "logging.checkpoint_every",
            self.checkpoint_every,
            f"0 or a multiple of logging.log_every = {self.log_every}",
        )
        _require(
            self.flatness_n_train >= 1,
            "logging.flatness_n_train",
            self.flatness_n_train,
            "an integer >= 1",
        )
        _require(
            bool(self.flatness_sigmas)
            and all(math.isfinite(v) and v >= 0 for v in self.flatness_sigmas),
            "logging.flatness_sigmas",
            self.flatness_sigmas,
            "a non-empty list of finite numbers >= 0",
        )
        _require(
            bool(self.flatness_R) and all(R_MIN <= v <= R_MAX for v in self.flatness_R),
            "logging.flatness_R",
            self.flatness_R,
            f"a non-empty list, each {_R_RANGE}",
        )
        _require(
            self.flatness_samples >= 2,
            "logging.flatness_samples",
            self.flatness_samples,
            "an integer >= 2 (a standard error needs two draws)",
        )


@dataclass
class GuidanceConfig:
    """Entropy guidance (Meni et al.): the training loss becomes
    ``L + dense_weight * L_dense + conv_weight * L_conv``
    (:func:`anisotropy.related.entropy_flow.dense_entropy_loss`,
    :func:`~anisotropy.related.entropy_flow.conv_entropy_loss`); both weights 0 (the
    default) is the plain loss, bit for bit."""

    dense_weight: float = field(
        default=0.0, metadata={"help": "weight of L_dense (square or tall nn.Linear layers)"}
    )
    conv_weight: float = field(
        default=0.0, metadata={"help": "weight of L_conv (square-channel valid nn.Conv2d)"}
    )
    layers: list[str] = field(
        default_factory=list,
        metadata={
            "help": "guided layers (names or globs; each term takes those of its kind); "
            "empty: every eligible layer"
        },
    )
    target: float | dict[str, float] = field(
        default=0.0,
        metadata={
            "help": "target entropy change per coordinate t_k: one number, or a table "
            "layer -> number (missing layers: 0)"
        },
    )

    def __post_init__(self) -> None:
        for key in ("dense_weight", "conv_weight"):
            v = getattr(self, key)
            _require(math.isfinite(v) and v >= 0, f"guidance.{key}", v, "a finite number >= 0")
        _require(
            len(set(self.layers)) == len(self.layers),
            "guidance.layers",
            self.layers,
            "a list of distinct layer names",
        )
        values = self.target.values() if isinstance(self.target, dict) else [self.target]
        _require(
            all(math.isfinite(v) for v in values),
            "guidance.target",
            self.target,
            "a finite number or a table of layer -> finite number",
        )

    @property
    def active(self) -> bool:
        """True when a guidance term enters the training loss (a weight > 0)."""
        return self.dense_weight > 0 or self.conv_weight > 0


@dataclass
class TrainConfig:
    """One training run."""

    seed: int = field(
        default=0, metadata={"help": "seed of initialisation, data order and perturbations"}
    )
    epochs: int = field(
        default=120,
        metadata={"help": "number of epochs (the upper limit when max_passes is set)"},
    )
    max_passes: int | None = field(
        default=None,
        metadata={
            "help": "budget: stop once passes + forward_passes reaches it (checked after each "
            "step; the partial last epoch is logged); absent: no budget"
        },
    )
    device: str = field(default="cpu", metadata={"help": "torch device, e.g. cpu or cuda"})
    threads: int | None = field(
        default=None, metadata={"help": "torch intra-op threads (default: leave torch's setting)"}
    )
    precision: Precision = field(
        default="float32",
        metadata={
            "help": "float32 | bfloat16 | float16 (with a gradient scaler): torch.autocast "
            "of the training forward passes (cpu or cuda)"
        },
    )
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)

    def __post_init__(self) -> None:
        _require(self.seed >= 0, "seed", self.seed, "an integer >= 0")
        _require(self.epochs >= 1, "epochs", self.epochs, "an integer >= 1")
        _require(
            self.max_passes is None or self.max_passes >= 1,
            "max_passes",
            self.max_passes,
            "an integer >= 1 (or absent: no budget)",
        )
        _require(
            re.fullmatch(r"cpu|cuda(:\d+)?|mps", self.device) is not None,
            "device",
            self.device,
            "'cpu', 'cuda', 'cuda:N' or 'mps'",
        )
        _require(
            self.threads is None or self.threads >= 1,
            "threads",
            self.threads,
            "an integer >= 1 (or absent)",
        )
        check_choice("precision", self.precision, PRECISIONS)
        _require(
            self.precision == "float32" or self.device.split(":")[0] in ("cpu", "cuda"),
            "precision",
            self.precision,
            f"'float32' on device {self.device!r} (mixed precision: cpu or cuda)",
        )
        check_optimiser_combination(self)


# ----------------------------------------------------------------------------- conversion


#: strings that JSON-safe dicts use for infinite floats (see config_to_dict)
_INF_STRINGS = {"inf": math.inf, "+inf": math.inf, "-inf": -math.inf}


def _coerce(key: str, tp: Any, value: Any) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted for floats."""
    origin = get_origin(tp)
    if origin is Literal:
        return check_choice(key, value, get_args(tp))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        tables = [a for a in args if get_origin(a) is dict]
        if isinstance(value, dict) and tables:  # e.g. a per-layer table
            return _coerce(key, tables[0], value)
        return _coerce(key, args[0], value)
    if origin is dict:
        _, inner = get_args(tp)
        if not isinstance(value, dict):
            raise ValueError(f"{key} must be a table (dict), got {value!r}")
        for k in value:
            if not isinstance(k, str) or not k:
                raise ValueError(f"{key} must have non-empty string keys, got {k!r}")
        return {k: _coerce(f"{key}.{k}", inner, v) for k, v in value.items()}
    if origin is list:
        (inner,) = get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key} must be a list, got {value!r}")
        return [_coerce(f"{key}[{i}]", inner, v) for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and value in _INF_STRINGS:
            return _INF_STRINGS[value]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{key} must be a number, got {value!r}")
        if math.isnan(value):
            raise ValueError(f"{key} must not be NaN")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{key} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported configuration type {tp!r} for {key}")  # pragma: no cover


def _from_dict(cls: type, d: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "the configuration"
    if not isinstance(d, dict):
        raise ValueError(f"{where} must be a table (dict), got {d!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in d if k not in names]
    if unknown:
        raise ValueError(
            f"unknown configuration key {prefix + unknown[0]!r}; valid keys in "
            f"{where}: {', '.join(names)}"
        )
    values = {}
    for name, v in d.items():
        tp = hints[name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            values[name] = _from_dict(tp, v, f"{prefix}{name}.")
        else:
            values[name] = _coerce(f"{prefix}{name}", tp, v)
    return cls(**values)


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """Build a validated :class:`TrainConfig` from a nested dict (missing keys: defaults).

    Raises
    ------
    ValueError
        On an unknown key (the message lists the valid ones), a value of the
        wrong type, or a value out of range.
    """
    return _from_dict(TrainConfig, d, "")


def _sections(cls: type, prefix: str = "") -> frozenset[str]:
    """Dotted names of the configuration sections (dataclass fields) under ``cls``; a
    dict that is a value (``guidance.target`` as a table) is not one."""
    out: set[str] = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            out |= {prefix + f.name} | _sections(tp, f"{prefix}{f.name}.")
    return frozenset(out)


def _json_safe(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json_safe(x) for x in v]
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def config_to_dict(cfg: TrainConfig, *, json_safe: bool = False) -> dict[str, Any]:
    """Nested plain dict of ``cfg`` (``None`` kept).

    With ``json_safe=True`` infinite floats (``smoothing.k = inf``) become the
    strings ``"inf"`` / ``"-inf"`` (strict JSON has no infinity);
    :func:`config_from_dict` reads those strings back as floats.
    """
    d = dataclasses.asdict(cfg)
    return _json_safe(d) if json_safe else d


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):  # an inline table, keys quoted
        return "{" + ", ".join(f"{_toml_value(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {v!r} as TOML")  # pragma: no cover


def config_to_toml(cfg: TrainConfig) -> str:
    """TOML text of ``cfg`` that :func:`load_config` reads back to an equal config.

    ``None`` values are left out (TOML has no null; absent keys take the default ``None``).
    """
    d = config_to_dict(cfg)
    sections = _sections(TrainConfig)
    top = [f"{k} = {_toml_value(v)}" for k, v in d.items() if k not in sections and v is not None]
    lines = top + [""]
    for section, sub in d.items():
        if section in sections:
            lines.append(f"[{section}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in sub.items() if v is not None]
            lines.append("")
    return "\n".join(lines)


#: an unquoted command-line word taken as a string (digits, /data/cifar-10, ~/x):
#: no blanks, brackets, braces, quotes, commas or equals signs
_BARE_WORD = re.compile(r"[^\s\[\]{}\"',=]+")


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split ``"section.key=value"`` into the key path and the parsed value.

    The value is read as a TOML literal (``0.01``, ``true``, ``["fc1", "fc2"]``,
    ``"digits"``, ``inf``); a bare word that is not a TOML literal (``digits``,
    ``/data/cifar-10``) is taken as a string for convenience on the command line.
    """
    if not isinstance(item, str) or "=" not in item:
        raise ValueError(f"override {item!r} must have the form KEY=VALUE, e.g. smoothing.R=0.01")
    key, raw = item.split("=", 1)
    key, raw = key.strip(), raw.strip()
    path = key.split(".")
    if not key or any(not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p) for p in path):
        raise ValueError(f"override {item!r}: {key!r} is not a dotted key like optim.lr")
    if not raw:
        raise ValueError(f"override {item!r} has an empty value")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        if _BARE_WORD.fullmatch(raw) is None:
            raise ValueError(
                f"override {item!r}: value {raw!r} is not a TOML literal "
                '(quote strings, write lists as ["fc1", "fc2"])'
            ) from None
        value = raw
    return path, value


def apply_overrides(cfg: TrainConfig, overrides: typing.Iterable[str] = ()) -> TrainConfig:
    """Return a new config with ``["smoothing.R=0.01", "optim.lr=1e-3", ...]`` applied.

    Raises
    ------
    ValueError
        On bad syntax, an unknown key (listing the valid ones) or a bad value.
    """
    if isinstance(overrides, str):
        raise ValueError("overrides must be a list of KEY=VALUE strings, not one string")
    d = config_to_dict(cfg)
    sections = _sections(TrainConfig)
    for item in overrides:
        path, value = parse_override(item)
        node: Any = d
        for depth, part in enumerate(path[:-1]):
            if ".".join(path[: depth + 1]) not in sections:
                here = ".".join(path[:depth])
                valid = [k for k in node if ".".join([*path[:depth], k]) in sections]
                where = f"valid sections{' in ' + here if here else ''}: {', '.join(valid)}"
                raise ValueError(
                    f"override {item!r}: {'.'.join(path[: depth + 1])!r} is not a "
                    "configuration section; "
                    + (where if valid else f"set the key {'.'.join(path[: depth + 1])!r} whole")
                )
            node = node[part]
        last = path[-1]
        prefix = path[:-1]
        if last not in node or ".".join(path) in sections:
            valid = [k for k in node if ".".join([*prefix, k]) not in sections]
            raise ValueError(
                f"override {item!r}: unknown key {'.'.join(path)!r}; valid keys "
                f"here: {', '.join(valid)}"
            )
        node[last] = value
    return config_from_dict(d)


def load_config(path: str | Path, overrides: typing.Iterable[str] = ()) -> TrainConfig:
    """Read a TOML configuration file and apply ``overrides`` (see :func:`apply_overrides`)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"configuration file {str(p)!r} does not exist")
    try:
        d = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"configuration file {str(p)!r} is not valid TOML: {exc}") from None
    return apply_overrides(config_from_dict(d), overrides)
