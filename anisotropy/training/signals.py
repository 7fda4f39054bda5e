"""Layer training signals s_I (eq. 2 of the paper) and their minibatch statistics.

For layer ``I`` with weight set ``Omega_I`` of ``N_I`` weights (biases excluded),

.. math::  s_I = \\frac{1}{N_I} \\sum_{w \\in \\Omega_I} |\\partial \\mathcal{L} / \\partial w| ,

evaluated on each minibatch (eq. 2; for a single weight the Euclidean norm is
the absolute value).  The trainer uses the gradient of the loss it actually
optimises (plain cross-entropy, or the smoothed PLA / PLEA loss), read from
``param.grad`` right after ``backward()`` and before the optimiser step (so
weight decay, which torch's SGD adds inside ``step``, is not part of it).

:class:`SignalAccumulator` keeps, per layer and in float64 on the gradient's
device, Welford running moments of

* the scalar ``s_I`` -> ``signal`` (mean over minibatches) and ``signal_std``
  (population standard deviation over minibatches, divisor ``n``);
* the gradient vector ``g`` -> ``grad_mean_norm = ||mean_b g_b||`` and
  ``grad_std_norm = sqrt(sum_w Var_b(g_w))`` (population variance), the
  signal-to-noise pair of the layer;

so no per-batch gradient is stored.  ``weight_norm`` is the Frobenius norm of
the weights when :meth:`SignalAccumulator.summary` is called.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["weight_layers", "layer_signal", "SignalAccumulator"]


def weight_layers(model: nn.Module) -> dict[str, nn.Parameter]:
    """Weight tensors of the layers of ``model``, by layer name (``"fc1"``, ``"conv3"``).

    A layer's weight is a parameter named ``<layer>.weight`` with at least two
    dimensions (linear and convolution weights; biases and 1-D norm scales are excluded).
    """
    out = {}
    for name, p in model.named_parameters():
        if name.endswith(".weight") and p.ndim >= 2:
            out[name[: -len(".weight")]] = p
    return out


def layer_signal(grad: torch.Tensor) -> torch.Tensor:
    """Eq. 2: mean absolute gradient of one layer's weights, a float64 0-d tensor.

    Parameters
    ----------
    grad : tensor of any shape (the ``N_I`` weights of layer ``I``)
    """
    return grad.detach().to(torch.float64).abs().mean()


class _Moments:
    """Welford running mean and sum of squared deviations of a tensor (float64)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().to(torch.float64)
        self.n += 1
        if self.mean is None:
            self.mean = x.clone()
            self.m2 = torch.zeros_like(x)
            return
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    def variance(self) -> torch.Tensor:
        """Population variance (divisor ``n``)."""
        return self.m2 / self.n


class SignalAccumulator:
    """Running per-layer statistics of the training signal over minibatches.

    Parameters
    ----------
    layers : dict name -> weight parameter (see :func:`weight_layers`)

    Call :meth:`update` after each ``backward()``, :meth:`summary` at the end of
    a logging period and :meth:`reset` to start the next one.
    """

    def __init__(self, layers: dict[str, nn.Parameter]) -> None:
        if not layers:
            raise ValueError("layers must name at least one weight layer")
        self.layers = dict(layers)
        self.reset()

    def reset(self) -> None:
        """Forget all minibatches seen so far."""
        self._signal = {k: _Moments() for k in self.layers}
        self._grad = {k: _Moments() for k in self.layers}

    @property
    def n(self) -> int:
        """Number of minibatches accumulated since the last reset."""
        return next(iter(self._signal.values())).n

    def update(self) -> None:
        """Add the current ``.grad`` of every layer as one minibatch."""
        for name, p in self.layers.items():
            if p.grad is None:
                raise ValueError(f"layer {name!r} has no gradient; call backward() before update()")
            self._signal[name].update(layer_signal(p.grad))
            self._grad[name].update(p.grad)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per layer: ``signal``, ``signal_std``, ``grad_mean_norm``, ``grad_std_norm``,
        ``weight_norm`` and ``numel`` (the layer's weight count N_I of eq 2, which the
        cooling analysis needs for the noise floor of s_I)."""
        if self.n == 0:
            raise ValueError("no minibatch accumulated; call update() first")
        out = {}
        for name, p in self.layers.items():
            s, g = self._signal[name], self._grad[name]
            out[name] = {
                "signal": float(s.mean),
                "signal_std": math.sqrt(max(float(s.variance()), 0.0)),
                "grad_mean_norm": float(torch.linalg.vector_norm(g.mean)),
                "grad_std_norm": math.sqrt(max(float(g.variance().sum()), 0.0)),
                "weight_norm": float(torch.linalg.vector_norm(p.detach().to(torch.float64))),
                "numel": int(p.numel()),
            }
        return out
