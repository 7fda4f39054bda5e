"""Loss smoothing restricted to chosen layers: parameter selection and
sampling of perturbations, the stacked prefix-once evaluation, the reductions
of the per-configuration losses (eqs 22-23), the smoothed losses (eqs 19-23) and radius
schedules.
"""

from .losses import PartialLocalEntropy, SmoothedLoss, reduce_losses
from .reductions import (
    PLA,
    PLEA,
    REDUCTION_CLASSES,
    REDUCTIONS,
    BetaReduction,
    LossReduction,
    Reduction,
    as_reduction,
)
from .sampling import (
    BLOCK,
    KERNELS,
    Kernel,
    PendingDraws,
    is_bias,
    sample_perturbations,
    select_parameters,
    start_perturbations,
)
from .schedules import SCHEDULES, radius_schedule
from .stacked import PER_SAMPLE, children_for, stacked_outputs

__all__ = [
    "radius_schedule",
    "SCHEDULES",
    "Kernel",
    "KERNELS",
    "BLOCK",
    "is_bias",
    "select_parameters",
    "PendingDraws",
    "start_perturbations",
    "sample_perturbations",
    "PER_SAMPLE",
    "children_for",
    "stacked_outputs",
    "Reduction",
    "REDUCTIONS",
    "REDUCTION_CLASSES",
    "LossReduction",
    "PLA",
    "PLEA",
    "BetaReduction",
    "as_reduction",
    "reduce_losses",
    "SmoothedLoss",
    "PartialLocalEntropy",
]
