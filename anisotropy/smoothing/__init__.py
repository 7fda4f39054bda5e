"""Loss smoothing restricted to chosen layers: parameter selection and
sampling of perturbations, the stacked prefix-once evaluation, the smoothed
losses (eqs 19-23) and radius schedules.
"""

from .schedules import radius_schedule, SCHEDULES
from .sampling import Kernel, KERNELS, BLOCK, is_bias, select_parameters, PendingDraws, start_perturbations, sample_perturbations
from .stacked import PER_SAMPLE, children_for, stacked_outputs
from .losses import Reduction, REDUCTIONS, reduce_losses, SmoothedLoss, PartialLocalEntropy

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
    "reduce_losses",
    "SmoothedLoss",
    "PartialLocalEntropy",
]
