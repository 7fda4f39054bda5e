r"""Gradient noise inside one minibatch: the signal-to-noise ratio at a single step.

The layer statistics of a logging window (:mod:`anisotropy.training.signals`) measure the
spread of the minibatch gradient *across the minibatches of the window*.  At the start of
training the window of the step log holds a single minibatch (no spread is defined), and
over a window of several early steps the weights move so fast that the spread mixes the
drift of the mean gradient with its noise.  The early signal-dominated regime of figure 1
of *Partial local entropy and anisotropy in deep weight spaces* (section 2.1) lives
exactly there, inside the first ~100 steps.

At a fixed weight vector the spread is measured inside the minibatch instead: cut the
``B`` samples into ``K`` equal contiguous parts of ``m = B / K`` samples, take the gradient
``g_j`` of the mean loss of each part with respect to a layer's weights (the minibatch
gradient is their mean :math:`\bar g`), and estimate

.. math::

    \hat\sigma_B^2 = \frac{1}{K} \frac{1}{K - 1} \sum_j \|g_j - \bar g\|^2 , \qquad
    \widehat{\|G\|^2} = \|\bar g\|^2 - \hat\sigma_B^2 ,

where :math:`\sigma_B^2 = \operatorname{tr} \operatorname{Cov}(\bar g)` is the variance
of a minibatch gradient around the full-data gradient ``G`` (the samples of a minibatch
are drawn without replacement from many more, so the parts are exchangeable and
:math:`E \hat\sigma_B^2 = \sigma_B^2`, :math:`E \widehat{\|G\|^2} = \|G\|^2` up to the
finite-population factor ``1 - B/N``).  The step's signal-to-noise ratio is

.. math::  \mathrm{SNR} = \sqrt{\max(\widehat{\|G\|^2}, 0)} / \hat\sigma_B ,

the ratio of the norm of the mean gradient to the norm of the standard deviation of a
minibatch gradient: the quantity ``grad_mean_norm / grad_std_norm`` of a long window at
frozen weights, without the drift.  ``SNR > 1`` is the signal-dominated regime (for
pure noise, ``G = 0``, the estimate of ``|G|^2`` is 0 on average; its positive part, and so
the SNR, is not).  In the language of McCandlish et
al. (2018), ``SNR^2 = B / B_noise`` with the gradient noise scale
``B_noise = tr Cov(g_1) / |G|^2`` of one sample.

The measurement has no side effect on training: it uses :func:`torch.autograd.grad` (the
``.grad`` buffers are untouched), restores every buffer of the model (BatchNorm running
statistics) and forks torch's global random state (dropout) around its forward passes.
It costs one extra forward and backward pass over the minibatch, in ``K`` pieces.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["within_batch_spread", "SPLIT_MIN"]

#: at least two parts: a spread over one part is not defined
SPLIT_MIN = 2


def within_batch_spread(
    model: nn.Module,
    x: torch.Tensor,
    t: torch.Tensor,
    layers: Mapping[str, nn.Parameter],
    *,
    parts: int,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
) -> dict[str, dict[str, float | None]]:
    """Per-layer norm of the minibatch gradient, its noise and their ratio at one step.

    Parameters
    ----------
    model : nn.Module
        Evaluated as it is (train or eval mode); its buffers are restored afterwards.
    x : tensor, shape (B, ...)
        The minibatch (already normalised), ``B >= parts``.
    t : tensor, shape (B, ...)
        Targets: class labels (int, shape ``(B,)``) for the default loss, or those of
        ``loss_fn`` (a reconstruction's flattened inputs).
    layers : mapping name -> weight parameter
        The layers to measure (:func:`anisotropy.training.signals.weight_layers`).
    parts : int, keyword-only
        Number ``K >= 2`` of equal parts; the last ``B mod K`` samples are left out.
    loss_fn : callable(output, targets) -> scalar, keyword-only
        The mean loss of a part (default: cross-entropy; the trainer passes its
        objective, :mod:`anisotropy.training.objective`).

    Returns
    -------
    dict
        ``{layer: {"within_mean_norm": ||g_bar||, "within_noise_norm": sigma_B,
        "within_snr": SNR}}`` (module docstring), floats computed in float64.
        ``within_snr`` is ``None`` when the parts' gradients agree exactly (no noise).
    """
    if isinstance(parts, bool) or not isinstance(parts, int) or parts < SPLIT_MIN:
        raise ValueError(f"parts must be an integer >= {SPLIT_MIN}, got {parts!r}")
    if len(x) != len(t):
        raise ValueError(f"x and t must hold the same number of samples, got {len(x)} and {len(t)}")
    m = len(x) // parts
    if m < 1:
        raise ValueError(f"parts must be at most the minibatch size {len(x)}, got {parts}")
    if not layers:
        raise ValueError("layers must name at least one weight layer")
    names = list(layers)
    params = [layers[n] for n in names]
    # Welford's update in float64: mean_j and M2 = sum_j ||g_j - mean||^2 without the
    # cancellation of sum ||g_j||^2 - K ||mean||^2 when the mean dominates the spread
    mean = [torch.zeros(p.shape, dtype=torch.float64, device=p.device) for p in params]
    m2 = [torch.zeros((), dtype=torch.float64, device=p.device) for p in params]
    saved = {k: b.detach().clone() for k, b in model.named_buffers()}
    devices = [x.device] if x.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            for j in range(parts):
                sl = slice(j * m, (j + 1) * m)
                loss = loss_fn(model(x[sl]), t[sl])
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                for i, g in enumerate(grads):
                    g64 = torch.zeros_like(mean[i]) if g is None else g.detach().to(torch.float64)
                    delta = g64 - mean[i]
                    mean[i] += delta / (j + 1)
                    m2[i] += torch.dot(delta.reshape(-1), (g64 - mean[i]).reshape(-1))
    finally:
        with torch.no_grad():
            for k, b in model.named_buffers():
                b.copy_(saved[k])
    out: dict[str, dict[str, float | None]] = {}
    for name, mu, dev in zip(names, mean, m2, strict=True):
        mean_sq = float(mu.square().sum())  # ||g_bar||^2
        noise_sq = max(float(dev), 0.0) / (parts * (parts - 1))
        signal_sq = max(mean_sq - noise_sq, 0.0)
        noise = noise_sq**0.5
        out[name] = {
            "within_mean_norm": mean_sq**0.5,
            "within_noise_norm": noise,
            "within_snr": signal_sq**0.5 / noise if noise > 0 else None,
        }
    return out
