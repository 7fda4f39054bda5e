"""Layer training signals s_I (eq. 2 of the paper) and their minibatch statistics.

For layer ``I`` with weight set ``Omega_I`` of ``N_I`` weights (biases excluded),

.. math::  s_I = \\frac{1}{N_I} \\sum_{w \\in \\Omega_I} |\\partial \\mathcal{L} / \\partial w| ,

evaluated on each minibatch (eq. 2; for a single weight the Euclidean norm is
the absolute value).  The trainer uses the gradient of the loss it actually
optimises (plain cross-entropy, or the smoothed PLA / PLEA loss), read from
``param.grad`` right after ``backward()`` and before the optimiser step (so
weight decay, which torch's SGD adds inside ``step``, is not part of it).

:class:`SignalAccumulator` keeps, per layer, running statistics over the
minibatches of a logging period of

* the scalar ``s_I`` -> ``signal`` (mean over minibatches) and ``signal_std``
  (population standard deviation over minibatches, divisor ``n``);
* the gradient vector ``g`` -> ``grad_mean_norm = ||mean_b g_b||`` and
  ``grad_std_norm = sqrt(sum_w Var_b(g_w)) = sqrt(mean_b ||g_b - mean_b g_b||^2)``
  (population variance), the signal-to-noise pair of the layer;

without storing any per-batch gradient.  The gradient's sum of squared deviations
``M2 = sum_b ||g_b - mean g||^2`` is built in groups of :data:`FLUSH_EVERY`
minibatches: inside a group, Welford's update ``M2 += k/(k+1) ||g - m_k||^2``
against the running mean ``m_k`` of the group's first ``k`` gradients (kept as their
sum in the gradient's dtype); groups are merged into float64 totals by Chan's rule
``M2 = M2_A + M2_B + ||m_B - m_A||^2 n_A n_B / (n_A + n_B)``.  Every term is a
squared deviation from a mean, so the variance keeps its precision when the mean
gradient is large against its spread (no ``E||g||^2 - ||E g||^2`` cancellation).
``weight_norm`` is the Frobenius norm of the weights when
:meth:`SignalAccumulator.summary` is called.

Cost.  On the CPU the per-step work is bound by memory traffic (a 784 x 784 float32
gradient is 2.4 MiB, more than a core's L2 cache), so each layer is processed in
blocks of :data:`BLOCK` elements: a block's ``|g|`` and ``g - m_k`` are written
into one small scratch buffer that stays in cache, and only the gradient and the
group sum travel from memory, once per step.  The per-block scalars of a step
(``sum |g|`` and ``||g - m_k||^2``) are stacked into one vector each and turned
into float64 statistics when a group is merged, so a step issues no float64 or
per-layer scalar arithmetic and never synchronises with the host.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["weight_layers", "layer_signal", "SignalAccumulator", "BLOCK", "FLUSH_EVERY"]


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


#: minibatches per group (see the module docstring).  The group's running mean is
#: its sum, in the gradient's dtype, over the group's first k <= 31 gradients, whose
#: float32 rounding (at most 31 * 2^-24 ~ 2e-6 of |g| per coordinate) enters the
#: group's M2 only to first order, relative ~2e-6 * ||mean g|| / ||std g|| before
#: averaging over coordinates and steps; merging a group reads and writes the float64
#: total once (~3 ms for two 784 x 784 layers), 1/32 of it per step
FLUSH_EVERY = 32

#: elements per block on the CPU: a float32 block (256 KiB) with the matching block of
#: the group sum and the scratch buffer (768 KiB together) stays in a core's L2 cache
#: (1-2 MiB) between the five operations on it, so a large layer is read from memory
#: once per step instead of five times, while a block this large keeps the dispatch
#: of an operation (~3 us) below its arithmetic.  Per-block sums are torch's cascaded
#: sum and the BLAS dot product, whose float32 rounding over 65,536 terms is ~3e-8
#: relative (measured on a 784 x 784 layer); blocks are totalled in float64.  Other
#: devices take a layer whole (there kernel launches cost, not the cache).
BLOCK = 65536


class _LayerSums:
    """Buffers of one layer: the group sum (gradient's dtype) and the float64 total.

    Kept across :meth:`SignalAccumulator.reset` (overwritten, never zeroed or
    re-allocated) while the gradient's size, dtype and device stay the same.
    """

    def __init__(self, g: torch.Tensor, block: int) -> None:
        self.block = block
        self.group = torch.empty_like(g)
        self.total = torch.empty_like(g, dtype=torch.float64)
        self.blocks = list(zip(self.group.split(block), self.total.split(block), strict=True))

    def fits(self, g: torch.Tensor) -> bool:
        s = self.group
        return g.shape == s.shape and g.dtype == s.dtype and g.device == s.device


class SignalAccumulator:
    """Running per-layer statistics of the training signal over minibatches.

    Parameters
    ----------
    layers : dict name -> weight parameter (see :func:`weight_layers`)
    block : int or None, keyword-only
        Elements per block on the CPU (>= 1; default :data:`BLOCK`); ``None`` takes
        each layer whole.  It changes only the speed and the float rounding of the
        per-step sums, never what is computed.

    Call :meth:`update` after each ``backward()``, :meth:`summary` at the end of
    a logging period and :meth:`reset` to start the next one.
    """

    def __init__(self, layers: dict[str, nn.Parameter], *, block: int | None = BLOCK) -> None:
        if not layers:
            raise ValueError("layers must name at least one weight layer")
        if block is not None and (
            isinstance(block, bool) or not isinstance(block, int) or block < 1
        ):
            raise ValueError(f"block must be an integer >= 1 or None, got {block!r}")
        self.layers = dict(layers)
        self.block = block
        self._sums: list[_LayerSums] = []  # by layer, from the first update on
        self._scratch: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}
        self._wide = torch.empty(0, dtype=torch.float64)  # two float64 blocks for merges
        self._index = torch.empty(0, dtype=torch.long)  # block -> its layer
        self.reset()

    def reset(self) -> None:
        """Forget all minibatches seen so far."""
        self._n = 0  # minibatches in the period
        self._merged = 0  # of which merged into the totals
        # per step of the open group: block sums of |g|, and (from the group's second
        # step on) block sums of ||g - m_k||^2 with their Welford weights k / (k + 1)
        self._abs: list[torch.Tensor] = []
        self._sq: list[torch.Tensor] = []
        self._weights: list[float] = []
        # float64 per-layer vectors, set by the first merge: the first s_I (shift), the
        # sums of s_I - shift and of its square, and the gradient's M2
        self._stats: tuple[torch.Tensor, ...] = ()

    @property
    def n(self) -> int:
        """Number of minibatches accumulated since the last reset."""
        return self._n

    def _block(self, g: torch.Tensor) -> int:
        return g.numel() if self.block is None or g.device.type != "cpu" else self.block

    def _prepare(self, grads: list[torch.Tensor]) -> None:
        """Fit the buffers to the gradients (first minibatch of a period)."""
        if len(self._sums) != len(grads):
            self._sums = [_LayerSums(g, self._block(g)) for g in grads]
        for i, g in enumerate(grads):
            if not self._sums[i].fits(g):
                self._sums[i] = _LayerSums(g, self._block(g))
            key = (g.dtype, g.device)
            size = min(self._block(g), g.numel())
            if key not in self._scratch or self._scratch[key].numel() < size:
                self._scratch[key] = torch.empty(size, dtype=g.dtype, device=g.device)
        size = max(min(self._block(g), g.numel()) for g in grads)
        if self._wide.shape[-1] < size or self._wide.device != grads[0].device:
            self._wide = torch.empty((2, size), dtype=torch.float64, device=grads[0].device)
        layer_of_block = [i for i, sums in enumerate(self._sums) for _ in sums.blocks]
        if self._index.tolist() != layer_of_block or self._index.device != grads[0].device:
            self._index = torch.tensor(layer_of_block, device=grads[0].device)

    def update(self) -> None:
        """Add the current ``.grad`` of every layer as one minibatch."""
        grads = []
        for name, p in self.layers.items():
            if p.grad is None:
                raise ValueError(f"layer {name!r} has no gradient; call backward() before update()")
            grads.append(p.grad.detach().reshape(-1))
        if self._n == 0:
            self._prepare(grads)
        k = self._n - self._merged  # earlier minibatches in this group
        abs_sums: list[torch.Tensor] = []
        sq_sums: list[torch.Tensor] = []
        for name, g, sums in zip(self.layers, grads, self._sums, strict=True):
            if not sums.fits(g):
                raise ValueError(
                    f"layer {name!r} changed its gradient's shape, dtype or device within "
                    "a logging period; call reset() first"
                )
            scratch = self._scratch[(g.dtype, g.device)]
            for gb, (group, _) in zip(g.split(sums.block), sums.blocks, strict=True):
                buf = scratch[: gb.numel()]
                abs_sums.append(torch.abs(gb, out=buf).sum())  # eq. 2 numerator, this block
                if k:
                    dev = torch.add(gb, group, alpha=-1.0 / k, out=buf)  # g - m_k
                    sq_sums.append(torch.dot(dev, dev))
                    group.add_(gb)
                else:
                    group.copy_(gb)
        self._abs.append(torch.stack(abs_sums))
        if k:
            self._sq.append(torch.stack(sq_sums))
            self._weights.append(k / (k + 1))
        self._n += 1
        if self._n - self._merged == FLUSH_EVERY:
            self._merge()

    def _merge(self) -> None:
        """Merge the open group into the float64 totals (Chan's rule)."""
        k, n = self._n - self._merged, self._merged
        if k == 0:
            return
        dev = self._index.device
        nl = len(self.layers)

        def per_layer(block_sums: torch.Tensor) -> torch.Tensor:  # (..., blocks) -> (..., layers)
            out = block_sums.new_zeros((*block_sums.shape[:-1], nl))
            return out.index_add_(-1, self._index, block_sums)

        numel = torch.tensor([p.numel() for p in self.layers.values()], dtype=torch.float64)
        s = per_layer(torch.stack(self._abs).to(torch.float64)) / numel.to(dev)  # (k, layers)
        m2 = torch.zeros(nl, dtype=torch.float64, device=dev)
        if self._sq:
            w = torch.tensor(self._weights, dtype=torch.float64, device=dev)
            m2 += w @ per_layer(torch.stack(self._sq).to(torch.float64))
        cross: list[torch.Tensor] = []
        for sums in self._sums:
            for group, total in sums.blocks:
                if n == 0:
                    total.copy_(group)
                else:
                    wide, d = self._wide[0, : group.numel()], self._wide[1, : group.numel()]
                    wide.copy_(group)
                    torch.add(wide, total, alpha=-k / n, out=d)  # k (m_group - m_total)
                    cross.append(torch.dot(d, d))
                    total.add_(wide)
        if cross:  # ||m_B - m_A||^2 n_A n_B / (n_A + n_B) with m_B - m_A = d / k
            m2 += per_layer(torch.stack(cross)) * (n / (k * (n + k)))
        if not self._stats:
            zero = torch.zeros_like(s[0])
            self._stats = (s[0].clone(), zero, zero.clone(), zero.clone())
        shift, ds_sum, ds_sumsq, m2_total = self._stats
        ds = s - shift
        ds_sum += ds.sum(0)
        ds_sumsq += ds.square().sum(0)
        m2_total += m2
        self._abs, self._sq, self._weights = [], [], []
        self._merged = self._n

    def summary(self) -> dict[str, dict[str, float]]:
        """Per layer: ``signal``, ``signal_std``, ``grad_mean_norm``, ``grad_std_norm``,
        ``weight_norm`` and ``numel`` (the layer's weight count N_I of eq 2, which the
        cooling analysis needs for the noise floor of s_I)."""
        if self._n == 0:
            raise ValueError("no minibatch accumulated; call update() first")
        self._merge()
        n = self._n
        shift, ds_sum, ds_sumsq, m2 = (v.tolist() for v in self._stats)
        out = {}
        for i, ((name, p), sums) in enumerate(zip(self.layers.items(), self._sums, strict=True)):
            ds_mean = ds_sum[i] / n
            out[name] = {
                "signal": shift[i] + ds_mean,
                "signal_std": math.sqrt(max(ds_sumsq[i] / n - ds_mean * ds_mean, 0.0)),
                "grad_mean_norm": float(torch.linalg.vector_norm(sums.total)) / n,
                "grad_std_norm": math.sqrt(max(m2[i], 0.0) / n),
                "weight_norm": float(torch.linalg.vector_norm(p.detach().to(torch.float64))),
                "numel": int(p.numel()),
            }
        return out
