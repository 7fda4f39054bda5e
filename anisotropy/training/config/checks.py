"""Shared pieces of the configuration sections: accepted ranges and the range check.

The smoothing radius bounds (``R_MIN``, ``R_MAX``), the ``Literal`` names of the
weight initialisation (``Init``) and of the forward-pass arithmetic (``Precision``),
and the helpers that raise a :class:`ValueError` naming the key and the accepted values.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from anisotropy.smoothing.losses import R_NEGLIGIBLE

#: accepted smoothing radii: the Gaussian kernel's precision gamma = 1/R^2 (eq 1) and
#: the box's variance R^2/3 (eqs 5-8) must be finite, non-zero float64 numbers, which
#: holds for 1e-150 <= R <= 1e150 (float64 spans about 1e-308..1e308); a radius below
#: ~1e-45 already moves no float32 weight, so the bound excludes nothing meaningful (a
#: schedule that fades below it is the plain loss there: smoothing.losses.R_NEGLIGIBLE)
R_MIN, R_MAX = R_NEGLIGIBLE, 1e150
_R_RANGE = f"a number in [{R_MIN:g}, {R_MAX:g}] (gamma = 1/R^2 must be finite)"


#: initialisation of the weights: Kaiming-normal with zero biases (the package's
#: networks, :mod:`anisotropy.models`), or PyTorch's default ``reset_parameters`` of
#: every ``nn.Linear`` / ``nn.Conv2d`` (weights and biases uniform in +-1/sqrt(fan_in):
#: weight variance 1/(3 fan_in), a poor start for a deep ReLU network)
Init = Literal["kaiming", "torch_default"]
INITS: tuple[Init, ...] = get_args(Init)


#: arithmetic of the forward passes: float32, or torch.autocast to bfloat16 / float16
#: (weights, optimiser and the reduction of the smoothed loss stay float32)
Precision = Literal["float32", "bfloat16", "float16"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)


def _range_error(key: str, value: Any, accepted: str) -> ValueError:
    return ValueError(f"{key} must be {accepted}, got {value!r}")


def _require(cond: bool, key: str, value: Any, accepted: str) -> None:
    if not cond:
        raise _range_error(key, value, accepted)
