"""Smoothing kernels (eqs 1, 5-8 of the paper): distances, log kernels,
normalisers and exact samplers, for numpy arrays and torch tensors.

Imports numpy only (no torch) so that numpy-only work stays light.
"""

from .closed_form import KernelName, KERNEL_NAMES, distance, log_kernel, kernel, masked_distance, masked_log_kernel, heat_distance, heat_log_kernel, log_normaliser, heat_log_normaliser, sample_kernel, sample_heat, check_mask

__all__ = [
    "KernelName",
    "KERNEL_NAMES",
    "distance",
    "log_kernel",
    "kernel",
    "masked_distance",
    "masked_log_kernel",
    "heat_distance",
    "heat_log_kernel",
    "log_normaliser",
    "heat_log_normaliser",
    "sample_kernel",
    "sample_heat",
    "check_mask",
]
