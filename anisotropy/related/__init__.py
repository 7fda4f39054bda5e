"""Methods of the related papers: local energy (flatness), entropy propagation
(entropy flow).  The optimisers (Entropy-SGD and the others) live in
:mod:`anisotropy.optim`.
"""

from .entropy_flow import (
    EntropyFlowResult,
    conv_block_matrix,
    conv_entropy_change,
    conv_entropy_loss,
    conv_output_shape,
    dense_entropy_change,
    dense_entropy_loss,
    entropy_flow,
    gaussian_entropy,
)
from .local_energy import NOISES, FlatnessResult, Noise, local_energy, local_energy_curve

__all__ = [
    "Noise",
    "NOISES",
    "FlatnessResult",
    "local_energy",
    "local_energy_curve",
    "gaussian_entropy",
    "dense_entropy_change",
    "conv_output_shape",
    "conv_block_matrix",
    "conv_entropy_change",
    "dense_entropy_loss",
    "conv_entropy_loss",
    "EntropyFlowResult",
    "entropy_flow",
]
