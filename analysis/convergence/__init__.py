"""Convergence of the free-entropy estimators at the predicted rates and
constants: references, theory, fits, the study, its output and plot.
"""

from .fits import fit_k_study, fit_method
from .output import CSV_COLUMNS, write_study
from .plot import plot_study
from .rates import LinearFit, RepetitionStats, log_std_se, repetition_stats, weighted_linear_fit
from .reference import QuadraticReference, quadratic_box_log_average
from .study import (
    METHODS,
    ConvergenceStudy,
    ConvergeOptions,
    Method,
    main,
    reference_from_options,
    replicate,
    resolve_options,
    run_convergence,
)
from .theory import (
    DeltaMethod,
    delta_method_from_moments,
    finite_k_coefficient,
    finite_k_coefficient_fd,
    quadratic_box_antithetic_moment,
)

__all__ = [
    "RepetitionStats",
    "LinearFit",
    "repetition_stats",
    "weighted_linear_fit",
    "log_std_se",
    "DeltaMethod",
    "delta_method_from_moments",
    "finite_k_coefficient",
    "finite_k_coefficient_fd",
    "quadratic_box_antithetic_moment",
    "QuadraticReference",
    "quadratic_box_log_average",
    "fit_method",
    "fit_k_study",
    "Method",
    "METHODS",
    "CSV_COLUMNS",
    "ConvergeOptions",
    "ConvergenceStudy",
    "resolve_options",
    "reference_from_options",
    "replicate",
    "run_convergence",
    "write_study",
    "main",
    "plot_study",
]
