"""Argument validation shared by the whole package.

Every public function validates its inputs with these helpers so that bad input
raises a :class:`ValueError` (or :class:`TypeError`) that names the argument and
the accepted range, never a bare ``assert`` or a silent NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, TypeVar

import numpy as np

__all__ = [
    "check_positive",
    "check_nonnegative",
    "check_sharpness",
    "check_choice",
    "check_finite",
    "check_int",
    "check_probability",
]


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def check_positive(name: str, value: Any, *, allow_inf: bool = False) -> float:
    """Return ``float(value)`` after checking ``0 < value < inf`` (``<= inf`` if allowed)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a real number > 0, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number > 0, got {value!r}") from None
    upper = "inf]" if allow_inf else "inf)"
    if math.isnan(v) or v <= 0 or (math.isinf(v) and not allow_inf):
        raise ValueError(f"{name} must lie in (0, {upper}, got {value!r}")
    return v


def check_nonnegative(name: str, value: Any, *, allow_inf: bool = False) -> float:
    """Return ``float(value)`` after checking ``0 <= value < inf`` (``<= inf`` if allowed)."""
    bad = f"{name} must be a {'' if allow_inf else 'finite '}number >= 0, got {value!r}"
    if isinstance(value, bool):
        raise ValueError(bad)
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(bad) from None
    if math.isnan(v) or v < 0 or (math.isinf(v) and not allow_inf):
        raise ValueError(bad)
    return v


def check_sharpness(k: Any) -> float:
    """Kernel sharpness ``k`` in ``(0, inf]``; ``inf`` is the hard hypercube."""
    return check_positive("k", k, allow_inf=True)


def check_int(name: str, value: Any, *, minimum: int = 0, maximum: int | None = None) -> int:
    """Return ``int(value)`` after checking it is an integer in ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    v = int(value)
    if v < minimum or (maximum is not None and v > maximum):
        hi = "inf)" if maximum is None else f"{maximum}]"
        raise ValueError(f"{name} must be an integer in [{minimum}, {hi}, got {value!r}")
    return v


def check_probability(name: str, value: Any) -> float:
    """Return ``float(value)`` after checking ``0 <= value <= 1``."""
    v = float(value)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
    return v


_Choice = TypeVar("_Choice", bound=str)


def check_choice(name: str, value: Any, choices: Iterable[_Choice]) -> _Choice:
    """Check that ``value`` is one of ``choices``; the error lists the valid ones."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(map(repr, choices))}")
    return value


def check_finite(name: str, x: Any) -> Any:
    """Raise if the numpy array or torch tensor ``x`` holds NaN or +-inf."""
    if _is_torch(x):
        import torch

        ok = bool(torch.isfinite(x).all()) if x.is_floating_point() else True
    else:
        arr = np.asarray(x)
        ok = bool(np.isfinite(arr).all()) if arr.dtype.kind in "fc" else True
    if not ok:
        raise ValueError(f"{name} contains NaN or inf; it must be finite")
    return x
