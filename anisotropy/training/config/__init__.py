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

from anisotropy.training.config.checks import INITS, PRECISIONS, Init, Precision
from anisotropy.training.config.checks import R_MAX as R_MAX
from anisotropy.training.config.checks import R_MIN as R_MIN
from anisotropy.training.config.convert import (
    apply_overrides,
    config_from_dict,
    config_to_dict,
    config_to_toml,
    load_config,
    parse_override,
)
from anisotropy.training.config.optim import OptimConfig
from anisotropy.training.config.sections import (
    DataConfig,
    GuidanceConfig,
    LoggingConfig,
    ModelConfig,
)
from anisotropy.training.config.smoothing import SmoothingConfig
from anisotropy.training.config.train import TrainConfig

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
