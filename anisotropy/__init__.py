"""anisotropy: partial local entropy - loss smoothing restricted to chosen
layers of a neural network, and the tools to study it.

Data flows one way: kernels -> losses -> trainer -> logs -> analysis -> figures.
"""
from . import kernels
from .kernels import *  # noqa: F401,F403

__version__ = "0.1.0"

__all__ = ["kernels", *kernels.__all__]
