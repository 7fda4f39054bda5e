"""Monte Carlo (partial) local free entropy with error bars: estimators,
surrogates, the paper's M estimator, exact references and one layer's loss.
"""

from .references import quadratic_loss, linear_loss, full_quadratic_loss, quadratic_box_free_entropy, quadratic_gaussian_free_entropy, quadratic_finite_k_free_entropy, linear_box_free_entropy, quadratic_full_box_free_entropy, quadratic_paper_m_limit, WeightMoments, quadratic_box_weight_moments, quadratic_gaussian_weight_moments, quadratic_finite_k_weight_moments, log_normal_interval, log_sinhc
from .estimators import KernelName, KERNELS, KernelSpec, estimator_kernel, weight_diagnostics, jackknife, JACKKNIFE_MAX_GROUPS, as_generator, check_centre, smoothed_indices, batch_rows, evaluate_loss, log_weights
from .surrogate import log_surrogate_averages, fit_surrogate, control_variate_estimate
from .paper_m import PaperMResult, paper_m_estimator, paper_m_noiseless
from .layer_loss import layer_loss_function, layer_weight_vector
from .estimate import Method, METHODS, RELVAR_LIMIT, UnreliableEstimateWarning, FreeEntropyResult, local_free_entropy, PaperMResult, paper_m_estimator, paper_m_noiseless, weight_diagnostics

__all__ = [
    "quadratic_loss",
    "linear_loss",
    "full_quadratic_loss",
    "quadratic_box_free_entropy",
    "quadratic_gaussian_free_entropy",
    "quadratic_finite_k_free_entropy",
    "linear_box_free_entropy",
    "quadratic_full_box_free_entropy",
    "quadratic_paper_m_limit",
    "WeightMoments",
    "quadratic_box_weight_moments",
    "quadratic_gaussian_weight_moments",
    "quadratic_finite_k_weight_moments",
    "log_normal_interval",
    "log_sinhc",
    "KernelName",
    "KERNELS",
    "KernelSpec",
    "estimator_kernel",
    "weight_diagnostics",
    "jackknife",
    "JACKKNIFE_MAX_GROUPS",
    "as_generator",
    "check_centre",
    "smoothed_indices",
    "batch_rows",
    "evaluate_loss",
    "log_weights",
    "log_surrogate_averages",
    "fit_surrogate",
    "control_variate_estimate",
    "PaperMResult",
    "paper_m_estimator",
    "paper_m_noiseless",
    "layer_loss_function",
    "layer_weight_vector",
    "Method",
    "METHODS",
    "RELVAR_LIMIT",
    "UnreliableEstimateWarning",
    "FreeEntropyResult",
    "local_free_entropy",
    "PaperMResult",
    "paper_m_estimator",
    "paper_m_noiseless",
    "weight_diagnostics",
]
