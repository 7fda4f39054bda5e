r"""A network's loss as a vectorised function of one layer's weights.

:func:`layer_loss_function` turns a torch model, a fixed batch and a layer name
into the ``loss`` callable of :func:`analysis.free_entropy.local_free_entropy`:
numpy arrays of shape ``(..., N)`` (``N`` = the layer's ``weight.numel()``,
flattened in row-major order) to float64 losses of shape ``(...)``.  Many
perturbed weight matrices are evaluated in one call with
:func:`torch.func.functional_call` under :func:`torch.vmap` over the stacked
weights, so estimating the *partial* free entropy of that layer (eqs 16-18,
``U`` = the layer's weight matrix; biases are never smoothed, footnote 15)
costs ``y / batch_size`` batched forward passes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from anisotropy.validation import check_int

__all__ = ["layer_loss_function", "layer_weight_vector"]


def _weight(model: nn.Module, layer_name: str) -> tuple[str, torch.Tensor]:
    modules = dict(model.named_modules())
    if layer_name not in modules or layer_name == "":
        names = [n for n, m in modules.items() if n and getattr(m, "weight", None) is not None]
        raise ValueError(f"unknown layer_name {layer_name!r}; layers with weights: {names}")
    weight = getattr(modules[layer_name], "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise ValueError(f"layer {layer_name!r} has no weight tensor")
    return f"{layer_name}.weight", weight


def layer_weight_vector(model: nn.Module, layer_name: str) -> np.ndarray:
    """The layer's weights flattened to a float64 vector of shape ``(N,)`` (the centre ``W``)."""
    _, weight = _weight(model, layer_name)
    return weight.detach().cpu().double().reshape(-1).numpy().copy()


def layer_loss_function(
    model: nn.Module,
    layer_name: str,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = nn.functional.cross_entropy,
    batch_size: int = 64,
) -> Callable[[np.ndarray], np.ndarray]:
    r"""The model's loss on a fixed batch as a function of one layer's flattened weights.

    Parameters
    ----------
    model : torch.nn.Module
        Evaluated as it is (call ``model.eval()`` first if it has dropout or batch
        norm: the vmapped forward pass must be deterministic and must not update buffers).
    layer_name : str
        Module name, e.g. ``"fc1"``; its ``weight`` is the smoothed parameter.
    inputs, targets : torch.Tensor
        The fixed batch (``inputs`` of shape ``(B, ...)``).
    loss_fn : callable
        ``loss_fn(outputs, targets) -> scalar``; default mean cross-entropy.
    batch_size : int
        Weight vectors per vmapped forward pass (bounds memory: ``batch_size``
        copies of the activations of ``B`` inputs).

    Returns
    -------
    callable
        ``loss(W)`` for numpy ``W`` of shape ``(..., N)`` -> float64 ndarray of shape
        ``(...)``; computed in the model's dtype without gradients.  It has the
        attributes ``n_weights`` (``N``), ``parameter_name`` and ``gradient(W)``
        (autograd ``dL/dW`` of shape ``(N,)``, e.g. the ``grad`` of the control
        variate, which saves the ``2N`` finite-difference evaluations).
    """
    batch_size = check_int("batch_size", batch_size, minimum=1)
    pname, weight = _weight(model, layer_name)
    shape = tuple(weight.shape)
    n = weight.numel()
    dtype, device = weight.dtype, weight.device
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = {name: b.detach() for name, b in model.named_buffers()}
    if inputs.shape[0] != targets.shape[0]:
        raise ValueError(
            f"inputs and targets must have the same batch size, got "
            f"{inputs.shape[0]} and {targets.shape[0]}"
        )

    def one(wvec: torch.Tensor) -> torch.Tensor:
        p = dict(params)
        p[pname] = wvec.reshape(shape)
        out = functional_call(model, (p, buffers), (inputs,))
        return loss_fn(out, targets)

    batched = torch.vmap(one)

    def loss(W: Any) -> np.ndarray:
        W = np.asarray(W)
        if W.ndim == 0 or W.shape[-1] != n:
            raise ValueError(
                f"W must have shape (..., {n}) for layer {layer_name!r}, got {W.shape}"
            )
        lead = W.shape[:-1]
        flat = W.reshape(-1, n)
        out = np.empty(flat.shape[0])
        with torch.no_grad():
            for s in range(0, flat.shape[0], batch_size):
                chunk = torch.as_tensor(flat[s : s + batch_size], dtype=dtype, device=device)
                out[s : s + chunk.shape[0]] = batched(chunk).double().cpu().numpy()
        return out.reshape(lead)

    def gradient(W: Any) -> np.ndarray:
        """``dL/dW`` at one weight vector ``W`` of shape ``(N,)`` by autograd (float64 numpy)."""
        W = np.asarray(W)
        if W.shape != (n,):
            raise ValueError(f"W must have shape ({n},) for layer {layer_name!r}, got {W.shape}")
        wt = torch.tensor(W, dtype=dtype, device=device, requires_grad=True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(one(wt), wt)
        return g.double().cpu().numpy()

    loss.gradient = gradient  # type: ignore[attr-defined]
    loss.n_weights = n  # type: ignore[attr-defined]
    loss.parameter_name = pname  # type: ignore[attr-defined]
    return loss
