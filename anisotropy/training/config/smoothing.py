"""The ``[smoothing]`` configuration section: the partial local entropy loss (eqs 19-23)."""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field

from anisotropy.kernels.base import Kernel
from anisotropy.kernels.registry import KernelName, as_kernel
from anisotropy.smoothing.reductions import REDUCTIONS, LossReduction, Reduction, as_reduction
from anisotropy.smoothing.schedules import Schedule
from anisotropy.training.config.checks import _R_RANGE, R_MAX, R_MIN, _require
from anisotropy.validation import check_choice

__all__ = ["SmoothingConfig"]


@dataclass
class SmoothingConfig:
    """Partial local entropy loss (eqs 19-23); ``layers = []`` is plain cross-entropy.

    The radius follows ``schedule`` from ``R`` at step 0 to ``R_final`` at the end
    of ``schedule_epochs`` (default: the whole run) and stays at ``R_final`` after
    (the scoping of *Entropic alternatives to initialization* (Musso): smoothing
    strong early, fading).
    """

    layers: list[str] = field(
        default_factory=list,
        metadata={"help": "smoothed layers by name, e.g. fc2 (empty: plain cross-entropy)"},
    )
    reduction: Reduction = field(
        default="pla",
        metadata={
            "help": f"{' | '.join(REDUCTIONS)}: pla (eq 23), plea (eq 22), beta "
            "(-(1/beta) log mean exp(-beta L)); see anisotropy.smoothing.reductions"
        },
    )
    beta: float = field(default=1.0, metadata={"help": "inverse temperature of the beta reduction"})
    kernel: KernelName = field(default="box", metadata={"help": "box (eqs 5-8) | gaussian (eq 1)"})
    R: float = field(default=0.01, metadata={"help": "half-side of the smoothing hypercube"})
    k: float = field(default=math.inf, metadata={"help": "kernel sharpness (inf: hard box)"})
    gamma: float | None = field(default=None, metadata={"help": "gaussian kernel: precision"})
    y: int = field(default=4, metadata={"help": "perturbed samples per step"})
    include_centre: bool = field(default=True, metadata={"help": "average the centre W too"})
    include_biases: bool = field(default=False, metadata={"help": "smooth biases too"})
    schedule: Schedule = field(default="constant", metadata={"help": "radius schedule"})
    R_final: float = field(default=0.0, metadata={"help": "radius at the end of the schedule"})
    schedule_epochs: int | None = field(
        default=None, metadata={"help": "epochs over which the schedule runs (default: all)"}
    )

    def __post_init__(self) -> None:
        _require(
            len(set(self.layers)) == len(self.layers),
            "smoothing.layers",
            self.layers,
            "a list of distinct layer names",
        )
        _require(
            math.isfinite(self.beta) and self.beta > 0, "smoothing.beta", self.beta, "a number > 0"
        )
        _require(R_MIN <= self.R <= R_MAX, "smoothing.R", self.R, _R_RANGE)
        _require(self.k > 0, "smoothing.k", self.k, "a number in (0, inf]")
        _require(
            self.gamma is None or (math.isfinite(self.gamma) and self.gamma > 0),
            "smoothing.gamma",
            self.gamma,
            "a number > 0 (or absent)",
        )
        _require(self.y >= 0, "smoothing.y", self.y, "an integer >= 0")
        _require(
            self.include_centre or self.y >= 1,
            "smoothing.include_centre",
            self.include_centre,
            "true when y = 0 (nothing would be averaged)",
        )
        _require(
            self.R_final == 0 or R_MIN <= self.R_final <= R_MAX,
            "smoothing.R_final",
            self.R_final,
            f"0 or {_R_RANGE}",
        )
        _require(
            self.schedule != "exponential" or self.R_final > 0,
            "smoothing.R_final",
            self.R_final,
            "a number > 0 for the exponential schedule",
        )
        _require(
            self.schedule_epochs is None or self.schedule_epochs >= 1,
            "smoothing.schedule_epochs",
            self.schedule_epochs,
            "an integer >= 1 (or absent)",
        )
        check_choice("smoothing.reduction", self.reduction, REDUCTIONS)
        check_choice("smoothing.kernel", self.kernel, typing.get_args(KernelName))
        try:
            self.make_kernel()
        except ValueError as err:  # a parameter of another kernel (e.g. gamma for the box)
            raise ValueError(f"smoothing: {err}") from None

    def make_kernel(self) -> Kernel:
        """The kernel at radius ``R`` (:func:`anisotropy.kernels.as_kernel`): ``box``
        is ``BoxKernel(R, k)``; ``gaussian`` is ``GaussianKernel(gamma)``, of standard
        deviation ``R`` when ``gamma`` is absent (a radius schedule then applies to it)."""
        return as_kernel(self.kernel, scale=self.R, k=self.k, gamma=self.gamma)

    def make_reduction(self) -> LossReduction:
        """The reduction of the per-configuration losses
        (:func:`anisotropy.smoothing.reductions.as_reduction`): ``reduction`` by name with
        ``beta`` (used by ``"beta"`` only)."""
        return as_reduction(self.reduction, beta=self.beta)

    @property
    def active(self) -> bool:
        """True when a smoothed loss is used (some layer is smoothed)."""
        return bool(self.layers)
