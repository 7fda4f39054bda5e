"""Smoothing kernels (eqs 1, 5-8 of the paper): kernel objects, their registry
of names, and the closed-form distances, log kernels, normalisers and exact
samplers behind them, for numpy arrays and torch tensors.

:class:`Kernel` is the extension point: a subclass with ``log_kernel``,
``log_normaliser`` and ``sample`` works in every API that takes a kernel.

Imports numpy only (no torch) so that numpy-only work stays light.
"""

from .base import Kernel
from .box import BoxKernel
from .closed_form import (
    check_mask,
    distance,
    heat_distance,
    heat_log_kernel,
    heat_log_normaliser,
    kernel,
    log_kernel,
    log_normaliser,
    masked_distance,
    masked_log_kernel,
    sample_heat,
    sample_kernel,
)
from .gaussian import GaussianKernel
from .registry import KERNEL_CLASSES, KERNEL_NAMES, KernelName, as_kernel, kernel_parameters

__all__ = [
    "Kernel",
    "BoxKernel",
    "GaussianKernel",
    "KernelName",
    "KERNEL_NAMES",
    "KERNEL_CLASSES",
    "as_kernel",
    "kernel_parameters",
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
