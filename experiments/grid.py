"""Grid expansion: from an experiment's axes to one configuration per training run.

A *grid* is a list of groups; each group maps dotted configuration keys
(``"smoothing.R"``, ``"optim.weight_decay"``) to the list of values that key
takes.  A group expands to the Cartesian product of its axes, the groups are
concatenated (so a baseline can be its own one-point group next to a
``layers x R`` product), the seeds multiply everything, and duplicates are
dropped.  Each point becomes a full nested configuration dict: defaults, then
the experiment's base settings, then the point's settings.

Run directories are named from the *full* configuration, not from the
experiment that asked for it: a readable slug of the settings that matter for
the paper's figures plus a hash of the canonical configuration.  Two
experiments that need the same run (figure 5 reuses figure 3's ``y = 4``
runs, figure 7 reuses figure 6's) therefore share one directory in a common
run store, and a finished run is never trained twice.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import itertools
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Point",
    "flatten",
    "unflatten",
    "set_dotted",
    "get_dotted",
    "expand_grid",
    "config_hash",
    "run_name",
    "format_value",
    "SLUG_KEYS",
    "HASH_EXCLUDED_KEYS",
]

#: settings shown, in this order, in a run directory's name (when present)
SLUG_KEYS: tuple[str, ...] = (
    "data.name",
    "model.name",
    "model.depth",
    "model.activation",
    "smoothing.layers",
    "smoothing.reduction",
    "smoothing.R",
    "smoothing.y",
    "optim.weight_decay",
    "seed",
)
#: execution details that do not enter a run's identity: a run done with 1 or 4
#: threads, or on a GPU instead of the CPU, is the same experiment (its numbers
#: agree to floating-point reordering, not bitwise; the run's config.toml and
#: summary.json still record where it ran)
HASH_EXCLUDED_KEYS: tuple[str, ...] = ("threads", "device")
#: hex digits of the configuration hash in a run name: 40 bits, so by the birthday
#: bound n^2 / 2^41 the chance that any two of n = 10^4 distinct configurations
#: in one run store collide is below 5e-5
_HASH_DIGITS = 10
_SHORT = {
    "data.name": "",
    "model.name": "",
    "model.depth": "d",
    "model.activation": "",
    "smoothing.layers": "",
    "smoothing.reduction": "",
    "smoothing.R": "R",
    "smoothing.y": "y",
    "optim.weight_decay": "wd",
    "seed": "s",
}


@dataclass(frozen=True)
class Point:
    """One grid point: the settings that vary (``settings``, dotted keys), the
    full nested configuration dict it trains with (``config``) and its run
    directory name (``name``)."""

    settings: dict
    config: dict
    name: str


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> ``{"a.b": leaf}`` (a leaf is anything that is not a dict)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, prefix=f"{key}."))
        else:
            out[key] = v
    return out


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten`."""
    out: dict[str, Any] = {}
    for k, v in flat.items():
        set_dotted(out, k, v)
    return out


def set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    """Set ``d["a"]["b"] = value`` for ``key = "a.b"``, creating sub-dicts as needed."""
    parts = key.split(".")
    if not all(parts):
        raise ValueError(f"key {key!r} must be a dotted name like 'smoothing.R'")
    node = d
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ValueError(f"key {key!r}: {p!r} is a value, not a section")
        node = nxt
    node[parts[-1]] = copy.deepcopy(value)


def get_dotted(d: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """``d["a"]["b"]`` for ``key = "a.b"`` (``default`` when missing)."""
    node: Any = d
    for p in key.split("."):
        if not isinstance(node, Mapping) or p not in node:
            return default
        node = node[p]
    return node


def _freeze(v: Any) -> Any:
    return json.dumps(v, sort_keys=True)


def expand_grid(
    groups: Iterable[Mapping[str, Iterable[Any]]], seeds: Iterable[int] = (0,)
) -> list[dict[str, Any]]:
    """Settings of every grid point, in a deterministic order.

    Parameters
    ----------
    groups : list of dict
        Each maps dotted keys to a non-empty list of values; a group expands to
        the product of its axes (keys in the order given), groups are concatenated.
        An empty list of groups is one point with no settings.
    seeds : list of int
        Every point is repeated for each seed (innermost loop), as key ``"seed"``.

    Returns
    -------
    list of dict
        ``{"smoothing.R": 0.01, ..., "seed": 0}`` per point, duplicates removed.
    """
    groups = list(groups) or [{}]
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must be a non-empty list of integers >= 0")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ValueError(f"seeds must be integers >= 0, got {s!r}")
    out, seen = [], set()
    for gi, group in enumerate(groups):
        if not isinstance(group, Mapping):
            raise ValueError(f"grid group {gi} must be a table of key -> list of values")
        keys = list(group)
        if "seed" in keys:
            raise ValueError(f"grid group {gi}: give seeds in 'seeds', not as an axis")
        axes = []
        for k in keys:
            vals = group[k]
            if not isinstance(vals, (list, tuple)) or len(vals) == 0:
                raise ValueError(
                    f"grid group {gi}: axis {k!r} must be a non-empty list of values, got {vals!r}"
                )
            axes.append(list(vals))
        for combo in itertools.product(*axes):
            for seed in seeds:
                settings = dict(zip(keys, combo, strict=True))
                settings["seed"] = seed
                frozen = _freeze(settings)
                if frozen not in seen:
                    seen.add(frozen)
                    out.append(settings)
    return out


@functools.lru_cache(maxsize=1)
def _default_settings() -> dict[str, Any]:
    """Flat default training configuration (``anisotropy.training.config``), built
    once per process (every run name hashes against it; callers only read it)."""
    from anisotropy.training.config import TrainConfig, config_to_dict

    return flatten(config_to_dict(TrainConfig()))


def _canonical(config: Mapping[str, Any]) -> str:
    defaults = _default_settings()
    flat = {
        k: v
        for k, v in flatten(config).items()
        if k not in HASH_EXCLUDED_KEYS and not (k in defaults and _same(defaults[k], v))
    }
    return json.dumps(flat, sort_keys=True, allow_nan=True, separators=(",", ":"))


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, allow_nan=True) == json.dumps(
        b, sort_keys=True, allow_nan=True
    )


def config_hash(config: Mapping[str, Any]) -> str:
    """Hex digest (``_HASH_DIGITS`` long) of the canonical JSON of a configuration.

    The canonical form keeps only the settings that differ from the defaults of
    :class:`anisotropy.training.config.TrainConfig`: a new configuration field whose default
    reproduces the old behaviour leaves every existing run's identity (and so the
    run store) intact.  Key order does not matter; the execution details in
    :data:`HASH_EXCLUDED_KEYS` (``threads``, ``device``) are ignored.
    """
    return hashlib.sha256(_canonical(config).encode()).hexdigest()[:_HASH_DIGITS]


def format_value(v: Any) -> str:
    """Short text of a setting: lists joined by ``+`` (``[]`` -> ``none``), floats in ``%g``."""
    if isinstance(v, (list, tuple)):
        return "+".join(map(format_value, v)) if v else "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:g}"
    return str(v)


def run_name(config: Mapping[str, Any]) -> str:
    """Deterministic run-directory name: slug of :data:`SLUG_KEYS` + configuration hash.

    The slug is for people (``fashion_mnist-mlp-d2-fc2-pla-R0.01-y4-wd0-s1``);
    uniqueness comes from the hash of the whole configuration.  Smoothing
    settings are left out of the slug of an unsmoothed run; an optimiser other than
    SGD is named before the weight decay (``...-sam-wd0-s1``).
    """
    parts = []
    smoothed = bool(get_dotted(config, "smoothing.layers", []))
    for key in SLUG_KEYS:
        v = get_dotted(config, key, None)
        if v is None:
            continue
        if key.startswith("smoothing.") and key != "smoothing.layers" and not smoothed:
            continue
        if key in ("model.depth", "model.activation") and get_dotted(config, "model.name") != "mlp":
            continue
        if key == "optim.weight_decay" and get_dotted(config, "optim.name", "sgd") != "sgd":
            parts.append(format_value(get_dotted(config, "optim.name")))  # before its wd
        parts.append(_SHORT.get(key, "") + format_value(v))
    slug = re.sub(r"[^A-Za-z0-9_.+=-]", "_", "-".join(parts))
    return f"{slug}-{config_hash(config)}"
