"""Schedules of the smoothing radius ``R`` over training (the "scoping" of
*Entropic alternatives to initialization* (Musso)).

Smoothing strong early and fading during training is an alternative to a good
initialisation (the same paper).  With ``t = min(step / total_steps, 1)``:

* ``constant``:    ``R(t) = R``
* ``linear``:      ``R(t) = R + (R_final - R) t``
* ``cosine``:      ``R(t) = R_final + (R - R_final) (1 + cos(pi t)) / 2``
* ``exponential``: ``R(t) = R (R_final / R)^t``   (geometric; needs ``R_final > 0``)

``step`` counts minibatches from 0; after ``total_steps`` the radius stays at ``R_final``.
A radius of 0 (``R_final = 0``, the default) means no smoothing at that step:
:class:`~anisotropy.smoothing.losses.PartialLocalEntropy` then gives the plain loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, get_args

from anisotropy.validation import check_choice, check_int, check_positive

__all__ = ["radius_schedule", "Schedule", "SCHEDULES"]

#: radius schedules (the one definition; configuration and CLI import it)
Schedule = Literal["constant", "linear", "cosine", "exponential"]
SCHEDULES: tuple[str, ...] = get_args(Schedule)


def radius_schedule(
    kind: Schedule, *, R: float, R_final: float = 0.0, total_steps: int = 1
) -> Callable[[int], float]:
    """Return ``step -> R(step)`` (see the module docstring for the formulas).

    Parameters
    ----------
    kind : {"constant", "linear", "cosine", "exponential"}
    R : float
        Radius at step 0 (``> 0``).
    R_final : float
        Radius from ``total_steps`` on (``>= 0``; ``> 0`` for ``exponential``).
    total_steps : int
        Length of the schedule in minibatch steps (``>= 1``).
    """
    check_choice("schedule", kind, SCHEDULES)
    R = check_positive("R", R)
    if kind == "exponential":
        R_final = check_positive("R_final", R_final)
    elif not (math.isfinite(R_final) and R_final >= 0):
        raise ValueError(f"R_final must be a finite number >= 0, got {R_final!r}")
    total = check_int("total_steps", total_steps, minimum=1)

    def radius(step: int) -> float:
        if isinstance(step, bool) or int(step) != step or step < 0:
            raise ValueError(f"step must be an integer >= 0, got {step!r}")
        t = min(step / total, 1.0)
        if kind == "constant":
            return R
        if kind == "linear":
            return R + (R_final - R) * t
        if kind == "cosine":
            return R_final + (R - R_final) * 0.5 * (1.0 + math.cos(math.pi * t))
        return R * (R_final / R) ** t

    return radius
