"""Derive argparse options from configuration dataclasses (one source of truth).

Each field of a (possibly nested) dataclass becomes ``--field-name`` (nested:
``--section.field-name``); booleans become ``--flag/--no-flag``; ``Literal``
fields get ``choices``; the field's ``metadata["help"]`` is the help text.
``from_namespace`` rebuilds the dataclass from the parsed namespace.

Configuration overrides have one grammar on every command (``train``, ``sweep``,
``figures``): ``--set KEY=VALUE``, repeatable, the value a TOML literal, parsed by
:func:`anisotropy.training.config.parse_override` where the overrides are applied (so
that a bad one is reported by the command like any other bad input).  A dataclass
field marked ``metadata={"override": True}`` (a ``list[str]``) gets that option.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, Literal, get_args, get_origin

__all__ = ["add_dataclass_arguments", "add_override_argument", "from_namespace"]

#: help of ``--set`` (the grammar is :func:`anisotropy.training.config.parse_override`)
OVERRIDE_HELP = (
    "override a configuration value, KEY=VALUE with a TOML literal value, e.g. "
    "--set smoothing.R=0.02 --set 'smoothing.layers=[\"fc1\"]'; repeatable"
)


def _resolve(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _scalar_type(tp: Any) -> tuple[Any, tuple | None]:
    """Return (converter, choices) for a field type; Optional[X] -> X."""
    origin = get_origin(tp)
    if origin is Literal:
        choices = get_args(tp)
        return type(choices[0]), choices
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _scalar_type(args[0])
        return str, None
    if tp in (int, float, str):
        return tp, None
    return str, None


def add_override_argument(
    parser: argparse.ArgumentParser, *, dest: str = "set", help: str = OVERRIDE_HELP
) -> None:
    """Add the repeatable ``--set KEY=VALUE`` option, collected as a list of strings in
    ``dest`` (empty when not given)."""
    parser.add_argument(
        "--set",
        dest=dest,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=help.replace("%", "%%"),
    )


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, prefix: str = "") -> None:
    """Add one option per field of dataclass ``cls`` (recursing into nested dataclasses)."""
    hints = _resolve(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        dest = f"{prefix}{f.name}"
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            add_dataclass_arguments(parser, tp, prefix=f"{dest}.")
            continue
        flag = "--" + dest.replace("_", "-")
        # argparse %-formats help strings: escape a literal % so "5%" cannot crash --help.
        help_ = f.metadata.get("help", "").replace("%", "%%")
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        )
        if f.metadata.get("override"):
            add_override_argument(parser, dest=dest, help=f.metadata.get("help", OVERRIDE_HELP))
            continue
        if tp is bool:
            parser.add_argument(
                flag, dest=dest, action=argparse.BooleanOptionalAction, default=default, help=help_
            )
            continue
        origin = get_origin(tp)
        if origin in (list, tuple):
            (inner,) = get_args(tp)[:1]
            conv, choices = _scalar_type(inner)
            parser.add_argument(
                flag,
                dest=dest,
                nargs="*",
                type=conv,
                choices=choices,
                default=default,
                help=f"{help_} (default: {str(default).replace('%', '%%')})",
            )
            continue
        conv, choices = _scalar_type(tp)
        parser.add_argument(
            flag,
            dest=dest,
            type=conv,
            choices=choices,
            default=default,
            help=f"{help_} (default: {str(default).replace('%', '%%')})",
        )


def from_namespace(cls: type, ns: argparse.Namespace, prefix: str = "") -> Any:
    """Build an instance of dataclass ``cls`` from a namespace filled by
    :func:`add_dataclass_arguments`."""
    hints = _resolve(cls)
    values = {}
    for f in dataclasses.fields(cls):
        dest = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            values[f.name] = from_namespace(hints[f.name], ns, prefix=f"{dest}.")
        else:
            values[f.name] = getattr(ns, dest)
    return cls(**values)
