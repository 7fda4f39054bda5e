"""The whole configuration of one training run: :class:`TrainConfig` and its sections."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from anisotropy.training.config.checks import PRECISIONS, Precision, _require
from anisotropy.training.config.optim import OptimConfig
from anisotropy.training.config.sections import (
    DataConfig,
    GuidanceConfig,
    LoggingConfig,
    ModelConfig,
)
from anisotropy.training.config.smoothing import SmoothingConfig
from anisotropy.training.objective import ObjectiveName, objective_of
from anisotropy.training.optimisers import check_optimiser_combination
from anisotropy.validation import check_choice

__all__ = ["TrainConfig"]


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
        _require(
            self.logging.steps_split <= self.optim.batch_size,
            "logging.steps_split",
            self.logging.steps_split,
            f"at most optim.batch_size = {self.optim.batch_size} (parts of one minibatch)",
        )
        check_choice("precision", self.precision, PRECISIONS)
        _require(
            self.precision == "float32" or self.device.split(":")[0] in ("cpu", "cuda"),
            "precision",
            self.precision,
            f"'float32' on device {self.device!r} (mixed precision: cpu or cuda)",
        )
        check_optimiser_combination(self)

    @property
    def objective(self) -> ObjectiveName:
        """The training objective, implied by the network (``model.name``):
        :func:`anisotropy.training.objective.objective_of`."""
        return objective_of(self.model.name)
