r"""Plain Monte Carlo free entropy of one real layer, streamed through the training path.

:func:`layer_free_entropy` estimates the partial local free entropy of a layer's
weight matrix ``U`` (eqs 16-18 of the paper; biases are never smoothed, footnote 15),

.. math::

    F = -\log Z_K - \log \frac1y \sum_{a=1}^{y} e^{-\beta L(W + dW_a)},

with ``dW_a`` drawn from the normalised kernel on every coordinate of the layer,
the same quantity as :func:`analysis.free_entropy.local_free_entropy` with
``method="mc"`` on :func:`analysis.free_entropy.layer_loss_function`, but computed
the way a training step computes the smoothed loss
(:class:`anisotropy.smoothing.losses.PartialLocalEntropy`):

* float32 staging (the model is evaluated in its own dtype; the log-weights are
  accumulated in float64);
* the part of the network before the layer is evaluated once per chunk, and the
  ``chunk`` perturbed copies of the rest in one batched product (the prefix-once
  path of :mod:`anisotropy.smoothing.stacked`);
* the noise is drawn by the training sampler straight into the layer's dtype and
  added to the weights (no float64 weight vectors of length ``N`` per sample).

Memory is bounded by ``chunk`` copies of the layer plus the activations of
``chunk`` configurations, whatever ``y`` is: the only array of length ``y`` is the
float64 vector of log-weights (``8 y`` bytes: 0.8 MB at ``y = 1e5``).

The estimator itself is :func:`anisotropy.related.local_free_entropy.mc_local_free_entropy`
(one implementation, also used by the trainer's end-of-run flatness measurement);
this function adds the layer check and the analysis package's diagnostics.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from analysis.free_entropy.estimate import RELVAR_LIMIT, FreeEntropyResult
from analysis.free_entropy.estimators import weight_diagnostics
from anisotropy.kernels import Kernel
from anisotropy.related.local_free_entropy import DEFAULT_CHUNK, mc_local_free_entropy

__all__ = ["layer_free_entropy", "DEFAULT_CHUNK"]


def layer_free_entropy(
    model: nn.Module,
    layer_name: str,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    kernel: Kernel,
    y: int,
    generator: torch.Generator,
    beta: float = 1.0,
    chunk: int = DEFAULT_CHUNK,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
) -> FreeEntropyResult:
    r"""Monte Carlo estimate of the free entropy of ``layer_name``'s weight matrix (eq 18).

    Parameters
    ----------
    model : torch.nn.Module
        Evaluated as it is, in its own dtype (``model.float()`` for float32
        staging); put it in ``eval()`` mode first if it has dropout or batch norm.
        A flat ``nn.Sequential`` gets the prefix-once path.
    layer_name : str
        Module whose ``weight`` is smoothed, e.g. ``"fc1"``.
    inputs : torch.Tensor, shape (B, ...)
    targets : torch.Tensor, shape (B,)
        The fixed batch on which ``L`` is evaluated.
    kernel : Kernel, keyword-only
        Law of the displacements, e.g. ``BoxKernel(R)`` (a name is converted by
        :func:`anisotropy.kernels.as_kernel` with its defaults).
    y : int
        Number of kernel samples (``>= 2``).
    generator : torch.Generator
        Source of the draws (the training sampler's: the estimate is reproducible
        from its seed).
    beta : float
        Inverse temperature (``> 0``).
    chunk : int
        Configurations per batched evaluation (memory bound; ``>= 1``).
    loss_fn : callable(outputs, targets) -> scalar tensor
        Mean loss of one configuration (default cross-entropy).

    Returns
    -------
    FreeEntropyResult
        ``method = "mc"``; ``stderr`` by the delta method (``sd(w) / (sqrt(y) mean w)``).
    """
    modules = dict(model.named_modules())
    weight = getattr(modules.get(layer_name), "weight", None) if layer_name else None
    if not isinstance(weight, torch.Tensor):
        names = [
            n
            for n, m in modules.items()
            if n and isinstance(getattr(m, "weight", None), torch.Tensor)
        ]
        raise ValueError(f"unknown layer_name {layer_name!r}; layers with weights: {names}")
    res = mc_local_free_entropy(
        model,
        [f"{layer_name}.weight"],
        inputs,
        targets,
        kernel=kernel,
        y=y,
        generator=generator,
        beta=beta,
        chunk=chunk,
        loss_fn=loss_fn,
    )
    relvar, ess = weight_diagnostics(res.log_weights)
    return FreeEntropyResult(
        estimate=res.estimate,
        stderr=res.stderr,
        dof=res.y - 1,
        y=res.y,
        method="mc",
        log_normaliser=res.log_normaliser,
        relative_variance=relvar,
        ess=ess,
        reliable=relvar <= RELVAR_LIMIT,
        jackknife_bias=None,
        raw_estimate=res.estimate,
        n_evaluations=res.y,
        n_smoothed=res.n_smoothed,
        kernel=res.kernel,
        beta=res.beta,
        notes=(f"streamed in chunks of {chunk} through the prefix-once training path",),
    )
