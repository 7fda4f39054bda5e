"""Layer training signals s_I (eq. 2 of the paper) and their minibatch statistics.

For layer ``I`` with weight set ``Omega_I`` of ``N_I`` weights (biases excluded),

.. math::  s_I = \\frac{1}{N_I} \\sum_{w \\in \\Omega_I} |\\partial \\mathcal{L} / \\partial w| ,

evaluated on each minibatch (eq. 2; for a single weight the Euclidean norm is
the absolute value).  The trainer uses the gradient of the loss it actually
optimises (plain cross-entropy, or the smoothed PLA / PLEA loss), read from
``param.grad`` right after ``backward()`` and before the optimiser step (so
weight decay, which torch's SGD adds inside ``step``, is not part of it).

:class:`SignalAccumulator` keeps, per layer and in float64 on the gradient's
device, running sums of

* the scalar ``s_I`` -> ``signal`` (mean over minibatches) and ``signal_std``
  (population standard deviation over minibatches, divisor ``n``);
* the gradient vector ``g`` -> ``grad_mean_norm = ||mean_b g_b||`` and
  ``grad_std_norm = sqrt(sum_w Var_b(g_w)) = sqrt(mean_b ||g_b||^2 - ||mean_b g_b||^2)``
  (population variance), the signal-to-noise pair of the layer;

as running sums shifted by the period's first minibatch (:class:`_ShiftedSums`),
so no per-batch gradient is stored and no Welford temporaries are made.
``weight_norm`` is the Frobenius norm of the weights when
:meth:`SignalAccumulator.summary` is called.
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


#: steps between flushes of the running sum, kept in the gradient's dtype, into the
#: float64 total: a float32 partial sum of at most 16 terms carries a relative
#: rounding of at most 16 * 2^-24 ~ 1e-6 per coordinate (the minibatch noise of the
#: logged statistics is ~1/sqrt(batches), over 1e-2), while a float64 add costs three
#: times a float32 one on a 784 x 784 layer
FLUSH_EVERY = 16


class _ShiftedSums:
    """Running sums of a tensor shifted by its first value, totalled in float64.

    With ``d_b = x_b - x_1`` it keeps ``n``, ``sum_b d_b`` and ``sum_b ||d_b||^2``
    (a scalar), so that

    * mean  = x_1 + (1/n) sum d_b,
    * total population variance = (1/n) sum ||d_b||^2 - ||(1/n) sum d_b||^2
      (the exact identity Var = E||d||^2 - ||E d||^2 for any shift).

    Shifting by the first value removes the cancellation that plain sums of
    squares suffer when the mean is large against the spread (the residual error
    is relative to ||d||^2, not to ||x||^2).  ``d_b``, its squared norm and a partial
    sum of up to :data:`FLUSH_EVERY` terms are computed in the gradient's own dtype
    (float32 training: relative rounding ~1e-6, that of the gradient itself; a
    float64 model gets float64 throughout), into reused buffers; the totals are
    float64.  One update is one subtraction, one add and one norm over the layer,
    allocates nothing and never synchronises with the host (everything stays a
    tensor until :meth:`SignalAccumulator.summary`).
    """

    def __init__(self) -> None:
        self.n = 0
        empty = torch.empty(0)  # placeholders until the first observation fixes shape and dtype
        self.shift, self.buffer, self.partial, self.sum, self.sumsq = (empty,) * 5

    def update(self, x: torch.Tensor) -> None:
        """Add one observation (``x`` is read, not kept or modified)."""
        self.n += 1
        if self.n == 1:
            self.shift = x.detach().clone()
            self.buffer = torch.empty_like(self.shift)
            self.partial = torch.zeros_like(self.shift)
            self.sum = torch.zeros_like(self.shift, dtype=torch.float64)
            self.sumsq = torch.zeros((), dtype=torch.float64, device=x.device)
            return
        d = torch.sub(x.detach(), self.shift, out=self.buffer)
        self.partial.add_(d)
        self.sumsq.add_(torch.linalg.vector_norm(d).to(torch.float64).square())
        if (self.n - 1) % FLUSH_EVERY == 0:
            self._flush()

    def _flush(self) -> None:
        if self.n:
            self.sum.add_(self.partial)
            self.partial.zero_()

    def mean(self) -> torch.Tensor:
        self._flush()
        return self.shift.to(torch.float64) + self.sum / self.n

    def total_variance(self) -> float:
        """Sum over coordinates of the population variance (divisor ``n``), >= 0."""
        self._flush()
        m = self.sum.reshape(-1) / self.n
        return max(float(self.sumsq / self.n - torch.dot(m, m)), 0.0)


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
        self._abs: dict[str, torch.Tensor] = {}
        self._signal = {k: _ShiftedSums() for k in self.layers}
        self._grad = {k: _ShiftedSums() for k in self.layers}

    @property
    def n(self) -> int:
        """Number of minibatches accumulated since the last reset."""
        return next(iter(self._signal.values())).n

    def update(self) -> None:
        """Add the current ``.grad`` of every layer as one minibatch."""
        for name, p in self.layers.items():
            if p.grad is None:
                raise ValueError(f"layer {name!r} has no gradient; call backward() before update()")
            g = p.grad.detach()
            buf = self._abs.get(name)
            if buf is None or buf.shape != g.shape or buf.dtype != g.dtype:
                buf = self._abs[name] = torch.empty_like(g)
            # eq. 2: |g| summed in the gradient's dtype (torch's cascaded sum), then float64
            s_i = torch.abs(g, out=buf).sum().to(torch.float64) / g.numel()
            self._signal[name].update(s_i)
            self._grad[name].update(g)

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
                "signal": float(s.mean()),
                "signal_std": math.sqrt(s.total_variance()),
                "grad_mean_norm": float(torch.linalg.vector_norm(g.mean())),
                "grad_std_norm": math.sqrt(g.total_variance()),
                "weight_norm": float(torch.linalg.vector_norm(p.detach().to(torch.float64))),
                "numel": int(p.numel()),
            }
        return out
