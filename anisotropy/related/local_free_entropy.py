r"""Plain Monte Carlo local free entropy of chosen weights, streamed through the training path.

:func:`mc_local_free_entropy` estimates the partial local free entropy of the
weights ``U`` of one or several layers (eqs 16-18 of the paper; biases are never
smoothed, footnote 15),

.. math::

    F = -\log Z_K - \log \frac1y \sum_{a=1}^{y} e^{-\beta L(W + dW_a)},

with ``dW_a`` drawn from the normalised kernel on every coordinate of ``U`` and
``log Z_K = |U| log Z_1`` the kernel's normaliser, computed the way a training
step computes the smoothed loss (:class:`anisotropy.smoothing.losses.PartialLocalEntropy`):

* the model is evaluated in its own dtype (float32 staging); the log-weights
  ``-beta L(W + dW_a)`` are accumulated in float64;
* the part of the network before the first smoothed layer is evaluated once per
  chunk, and the ``chunk`` perturbed copies of the rest in one batched product
  (the prefix-once path of :mod:`anisotropy.smoothing.stacked`);
* the noise is drawn by the training sampler straight into the weights' dtype.

Memory is bounded by ``chunk`` copies of the smoothed weights plus the activations
of ``chunk`` configurations, whatever ``y`` is.  This is the one implementation
of the streamed estimator: :func:`analysis.free_entropy.layer_free_entropy` (one
layer, with the analysis package's diagnostics) and the trainer's end-of-run
flatness measurement (:mod:`anisotropy.training.flatness`) call it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from anisotropy.kernels import Kernel, as_kernel
from anisotropy.smoothing.losses import PartialLocalEntropy
from anisotropy.validation import check_int, check_positive

__all__ = ["MCFreeEntropy", "mc_local_free_entropy", "DEFAULT_CHUNK"]

#: perturbed configurations per batched evaluation: 64 copies of a 784 x 784
#: float32 layer are 157 MB, and the batched product is already GEMM-bound there
DEFAULT_CHUNK = 64


@dataclass(frozen=True)
class MCFreeEntropy:
    r"""Plain Monte Carlo estimate of the local free entropy (eq. 18 of the paper).

    Attributes
    ----------
    estimate : float
        :math:`F = -\log Z_K - \log \frac1y\sum_a e^{-\beta L(W + dW_a)}`.
    stderr : float
        Delta-method standard error ``sd(w) / (sqrt(y) mean(w))`` of the weights
        ``w_a = exp(-beta L_a)`` (``ddof = 1``).
    y : int
        Number of kernel samples.
    log_normaliser : float
        :math:`\log Z_K = |U| \log Z_1`; ``estimate + log_normaliser`` is
        ``beta`` times the local loss :math:`-\frac1\beta\log\frac1y\sum_a e^{-\beta L_a}`.
    n_smoothed : int
        :math:`|U|`, the number of smoothed coordinates.
    ess : float
        Effective sample size ``(sum w)^2 / sum w^2`` (between 1 and ``y``).
    log_weights : numpy.ndarray
        The ``y`` float64 log-weights ``-beta L(W + dW_a)``, in draw order.
    names : tuple of str
        The smoothed parameters.
    kernel : str
        The kernel's name.
    beta : float
        The inverse temperature.
    """

    estimate: float
    stderr: float
    y: int
    log_normaliser: float
    n_smoothed: int
    ess: float
    log_weights: np.ndarray
    names: tuple[str, ...]
    kernel: str
    beta: float


def mc_local_free_entropy(
    model: nn.Module,
    layers: str | Iterable[str],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    kernel: Kernel | str,
    y: int,
    generator: torch.Generator,
    beta: float = 1.0,
    chunk: int = DEFAULT_CHUNK,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
) -> MCFreeEntropy:
    r"""Monte Carlo local free entropy of the weights ``layers`` of ``model`` (eq. 18).

    Parameters
    ----------
    model : torch.nn.Module
        Evaluated as it is, in its own dtype; put it in ``eval()`` mode first if it
        has dropout or batch norm.  A flat ``nn.Sequential`` gets the prefix-once path.
    layers : str or iterable of str
        Smoothed parameters: parameter names, module names (their weights) or globs
        (:func:`anisotropy.smoothing.sampling.select_parameters`); biases only when
        named explicitly.
    inputs : torch.Tensor, shape (B, ...)
    targets : torch.Tensor, shape (B,)
        The fixed batch on which ``L`` is evaluated.
    kernel : Kernel or name, keyword-only
        Law of the displacements, e.g. ``BoxKernel(R)`` (a name is converted by
        :func:`anisotropy.kernels.as_kernel` with its defaults).
    y : int, keyword-only
        Number of kernel samples (``>= 2``).
    generator : torch.Generator, keyword-only
        Source of the draws (it advances): the estimate is reproducible from its seed.
    beta : float, keyword-only
        Inverse temperature (``> 0``).
    chunk : int, keyword-only
        Configurations per batched evaluation (memory bound; ``>= 1``).
    loss_fn : callable(outputs, targets) -> scalar tensor, keyword-only
        Mean loss of one configuration (default cross-entropy).

    Returns
    -------
    MCFreeEntropy

    Raises
    ------
    ValueError
        On a bad argument, an unknown layer, or a loss that is not finite at some
        perturbed weights.
    """
    y = check_int("y", y, minimum=2)
    chunk = check_int("chunk", chunk, minimum=1)
    beta = check_positive("beta", beta)
    kern = as_kernel(kernel)
    if inputs.shape[0] != targets.shape[0]:
        raise ValueError(
            f"inputs and targets must have the same batch size, got "
            f"{inputs.shape[0]} and {targets.shape[0]}"
        )
    log_w = np.empty(y)
    losses: dict[int, PartialLocalEntropy] = {}
    with torch.no_grad():
        for start in range(0, y, chunk):
            b = min(chunk, y - start)
            if b not in losses:  # at most two sizes: chunk and the remainder
                losses[b] = PartialLocalEntropy(
                    model, loss_fn, layers=layers, kernel=kern, y=b, include_centre=False
                )
            out = losses[b](inputs, targets, generator=generator)
            log_w[start : start + b] = -beta * out.per_sample.double().cpu().numpy()
    if not np.all(np.isfinite(log_w)):
        raise ValueError("the loss is not finite at some perturbed weights (NaN or inf)")
    names = losses[min(chunk, y)].smoothed_names
    params = dict(model.named_parameters())
    n = sum(params[nm].numel() for nm in names)
    log_z = n * kern.log_normaliser()
    shift = float(log_w.max())
    u = np.exp(log_w - shift)
    mean = float(u.mean())
    return MCFreeEntropy(
        estimate=-log_z - shift - math.log(mean),
        stderr=float(u.std(ddof=1) / math.sqrt(y) / mean),
        y=y,
        log_normaliser=log_z,
        n_smoothed=n,
        ess=float(u.sum() ** 2 / np.dot(u, u)),
        log_weights=log_w,
        names=names,
        kernel=kern.name,
        beta=beta,
    )
