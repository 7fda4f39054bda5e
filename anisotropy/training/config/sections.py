"""The configuration sections model, data, logging and guidance.

The optimiser and smoothed-loss sections are :mod:`anisotropy.training.config.optim` and
:mod:`anisotropy.training.config.smoothing`;
:class:`~anisotropy.training.config.train.TrainConfig` gathers them all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from anisotropy.data.augment import AugmentName
from anisotropy.data.datasets import EVAL_SPLITS, DataName, EvalSplit, Normalisation
from anisotropy.models import Activation, ModelName
from anisotropy.training.config.checks import _R_RANGE, INITS, R_MAX, R_MIN, Init, _require
from anisotropy.training.spread import SPLIT_MIN
from anisotropy.training.steplog import DEFAULT_DENSE_STEPS, DEFAULT_PER_DECADE
from anisotropy.validation import check_choice

__all__ = ["ModelConfig", "DataConfig", "LoggingConfig", "GuidanceConfig"]


@dataclass
class ModelConfig:
    """Network (``anisotropy.models``); input size and class count come from the data."""

    name: ModelName = field(
        default="mlp",
        metadata={
            "help": "network: mlp | cnn_table24 | cnn_table25 (classification) | "
            "autoencoder (reconstruction: anisotropy.training.objective)"
        },
    )
    depth: int = field(default=2, metadata={"help": "mlp: number of hidden layers"})
    width: int = field(default=784, metadata={"help": "mlp, autoencoder: units per hidden layer"})
    bottleneck: int = field(
        default=32,
        metadata={"help": "autoencoder: units of the code (1..width)"},
    )
    activation: Activation = field(
        default="relu", metadata={"help": "mlp, autoencoder: activation"}
    )
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
        _require(
            self.bottleneck >= 1 and (self.name != "autoencoder" or self.bottleneck <= self.width),
            "model.bottleneck",
            self.bottleneck,
            f"an integer in [1, model.width = {self.width}]"
            if self.name == "autoencoder"
            else "an integer >= 1",
        )
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
    eval_split: EvalSplit = field(
        default="test",
        metadata={
            "help": "test: evaluate on the test set; validation: on held-out training images "
            "outside the n_train subset (as many as the test set would have), for tuning"
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
        check_choice("data.eval_split", self.eval_split, EVAL_SPLITS)
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
    steps_split: int = field(
        default=0,
        metadata={
            "help": "step log: at each logged step also cut the minibatch into this many "
            "equal parts and log the gradient noise inside it and the step's SNR "
            "(within_* keys; 0: off, else 2..batch_size; one extra pass per logged step)"
        },
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
            self.steps_split == 0 or (self.steps_split >= SPLIT_MIN and self.steps),
            "logging.steps_split",
            self.steps_split,
            f"0 (off) or an integer >= {SPLIT_MIN} with logging.steps = true",
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
