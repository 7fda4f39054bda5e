"""Training: configuration dataclasses, the layer signals s_I (eq 2) and
the trainer with atomic checkpoints, bitwise resume and callbacks.
"""

from .config import ModelConfig, DataConfig, OptimConfig, SmoothingConfig, LoggingConfig, TrainConfig, load_config, config_from_dict, config_to_dict, config_to_toml, apply_overrides, parse_override
from .signals import weight_layers, layer_signal, SignalAccumulator
from .hooks import TrainState, Callback, TrainCallback, CallbackError
from .trainer import train, build_model, derive_seeds, evaluate, RunPaths, CHECKPOINT_FORMAT, NonFiniteError

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
    "train",
    "build_model",
    "derive_seeds",
    "evaluate",
    "RunPaths",
    "CHECKPOINT_FORMAT",
    "NonFiniteError",
]
