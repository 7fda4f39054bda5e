"""Training: configuration dataclasses, the layer signals s_I (eq 2) and
the trainer with atomic checkpoints and bitwise resume.
"""

from .config import ModelConfig, DataConfig, OptimConfig, SmoothingConfig, LoggingConfig, TrainConfig, load_config, config_from_dict, config_to_dict, config_to_toml, apply_overrides, parse_override
from .signals import weight_layers, layer_signal, SignalAccumulator
from .trainer import train, main, build_model, derive_seeds, evaluate, RunPaths, CHECKPOINT_FORMAT, NonFiniteError

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
    "train",
    "main",
    "build_model",
    "derive_seeds",
    "evaluate",
    "RunPaths",
    "CHECKPOINT_FORMAT",
    "NonFiniteError",
]
