"""Training: configuration dataclasses, the layer signals s_I (eq 2) and
the trainer with atomic checkpoints, bitwise resume and callbacks.
"""

from .config import (
    DataConfig,
    LoggingConfig,
    ModelConfig,
    OptimConfig,
    SmoothingConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    config_to_toml,
    load_config,
    parse_override,
)
from .hooks import Callback, CallbackError, TrainCallback, TrainState
from .objective import (
    OBJECTIVES,
    Objective,
    ObjectiveName,
    get_objective,
    objective_of,
)
from .signals import SignalAccumulator, layer_signal, weight_layers
from .trainer import (
    CHECKPOINT_FORMAT,
    NonFiniteError,
    RunPaths,
    build_model,
    derive_seeds,
    evaluate,
    train,
)

__all__ = [
    "ModelConfig",
    "DataConfig",
    "OptimConfig",
    "SmoothingConfig",
    "LoggingConfig",
    "TrainConfig",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "config_to_toml",
    "apply_overrides",
    "parse_override",
    "weight_layers",
    "layer_signal",
    "SignalAccumulator",
    "TrainState",
    "Callback",
    "TrainCallback",
    "CallbackError",
    "Objective",
    "ObjectiveName",
    "OBJECTIVES",
    "get_objective",
    "objective_of",
    "train",
    "build_model",
    "derive_seeds",
    "evaluate",
    "RunPaths",
    "CHECKPOINT_FORMAT",
    "NonFiniteError",
]
