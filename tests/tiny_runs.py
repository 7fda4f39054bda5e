"""The tests' tiny training run, defined once: a 16-8-8-3 MLP on a 240-sample synthetic
Gaussian mixture (192 training samples, 6 minibatches of 32 per epoch), one thread, a run
of a second or less.  Test modules import it as ``from tiny_runs import ...`` (pytest's
default ``prepend`` import mode puts ``tests/`` on ``sys.path``)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from anisotropy.training.config import TrainConfig, apply_overrides, config_from_dict

#: the base run: plain SGD (no smoothing section), 2 epochs, seed 1
TINY_RUN: dict[str, Any] = {
    "seed": 1,
    "epochs": 2,
    "threads": 1,
    "model": {"name": "mlp", "depth": 2, "width": 8},
    "data": {
        "name": "synthetic",
        "synthetic_size": 240,
        "synthetic_features": 16,
        "synthetic_classes": 3,
    },
    "optim": {"lr": 0.05, "batch_size": 32},
}
#: 192 training samples in minibatches of 32
STEPS_PER_EPOCH = 6


def _merge(into: dict[str, Any], changes: Mapping[str, Any]) -> None:
    """Deep-merge ``changes`` into ``into`` in place (mappings merge, other values replace)."""
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def tiny_run(changes: Mapping[str, Any] | None = None, /, **keys: Any) -> dict[str, Any]:
    """A fresh configuration dictionary of the tiny run.

    Parameters
    ----------
    changes
        Deep-merged into a copy of :data:`TINY_RUN`: a mapping merges into the section of
        the same name (``{"optim": {"lr": 0.2}}`` keeps the batch size), any other value
        replaces the entry; new sections are added.
    **keys
        Set after ``changes``, by dotted key (``**{"optim.accumulate": 2}``,
        ``epochs=3``); missing sections are created.  The values are Python values, used
        as they are.

    Returns
    -------
    dict
        A deep copy: the caller may change it freely.
    """
    d = copy.deepcopy(TINY_RUN)
    _merge(d, changes or {})
    for key, value in keys.items():
        node = d
        *sections, last = key.split(".")
        for section in sections:
            node = node.setdefault(section, {})
        node[last] = value
    return d


def tiny_config(changes: Mapping[str, Any] | None = None, /, **overrides: Any) -> TrainConfig:
    """The tiny run as a :class:`TrainConfig`, with command-line style overrides.

    Parameters
    ----------
    changes
        Deep-merged into the base run as in :func:`tiny_run`.
    **overrides
        Applied afterwards through ``apply_overrides`` as ``KEY=VALUE`` strings, so each
        value is read as a TOML literal as ``--set`` reads it (``'["fc2"]'``, ``0.05``,
        ``"{fc2 = 0.5}"``); Python booleans are written ``true`` / ``false``.
    """
    cfg = config_from_dict(tiny_run(changes))
    items = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in overrides.items()}
    return apply_overrides(cfg, [f"{k}={v}" for k, v in items.items()])
