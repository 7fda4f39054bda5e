"""Conversion of a :class:`~anisotropy.training.config.train.TrainConfig`: from and to
nested dicts and TOML text, ``--set`` overrides, and reading a TOML file."""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from anisotropy.training.config.train import TrainConfig
from anisotropy.validation import check_choice

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "config_to_toml",
    "apply_overrides",
    "parse_override",
]


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
