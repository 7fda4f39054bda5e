"""anisotropy: partial local entropy - loss smoothing restricted to chosen
layers of a neural network, and the tools to study it.

Data flows one way: kernels -> losses -> trainer -> logs -> analysis -> figures.

The kernels (numpy or torch) are imported eagerly; everything that needs torch
(models, losses, trainer, ...) is imported on first use, so that numpy-only
work such as ``anisotropy limits`` does not pay for importing torch.
"""
from __future__ import annotations

import importlib
from typing import Any

from . import kernels
from .kernels import *  # noqa: F401,F403

__version__ = "0.1.0"

#: public name -> submodule that defines it (imported lazily, PEP 562)
_LAZY: dict[str, str] = {
    # smoothed losses (eqs 19-23)
    "PartialLocalEntropy": "losses", "SmoothedLoss": "losses", "reduce_losses": "losses",
    "REDUCTIONS": "losses", "select_parameters": "perturb", "sample_perturbations": "perturb",
    # models of sections 4-5
    "mlp": "models", "cnn_table24": "models", "cnn_table25": "models", "conv_net": "models",
    # configuration, data, training, logs
    "TrainConfig": "config", "ModelConfig": "config", "DataConfig": "config",
    "OptimConfig": "config", "SmoothingConfig": "config", "LoggingConfig": "config",
    "load_config": "config", "config_from_dict": "config", "config_to_dict": "config",
    "apply_overrides": "config", "load_dataset": "data", "DATASETS": "data",
    "train": "trainer", "radius_schedule": "schedules", "layer_signal": "signals",
    "SignalAccumulator": "signals", "read_jsonl": "logs",
    # related methods: seed 003 (local energy, Entropy-SGD), seed 002 (entropy flow)
    "local_energy": "flatness", "local_energy_curve": "flatness",
    "EntropySGD": "entropy_sgd", "gamma_scoping": "entropy_sgd",
    "dense_entropy_loss": "entropy_flow", "conv_entropy_loss": "entropy_flow",
    "EntropyFlowResult": "entropy_flow",  # (the function entropy_flow shares its module's name)
}

__all__ = ["kernels", "__version__", *kernels.__all__, *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'anisotropy' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
