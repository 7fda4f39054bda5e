r"""Evaluating a network at its centre weights and at ``y`` perturbed weights at once.

The partial losses (eqs 22-23) need the outputs of the network at the
``S = y + include_centre`` weight configurations :math:`W` and
:math:`W + \Delta W^a`, where :math:`\Delta W^a` is non-zero only on the
smoothed parameters.  Perturbations are applied out of place, so autograd
differentiates the loss at the perturbed weights and no copy of the model is
made.

**The cut.**  In a flat :class:`torch.nn.Sequential` every child before the
first child holding a smoothed parameter sees the same input and the same
weights in all ``S`` configurations: :func:`stacked_outputs` evaluates that
prefix once and the suffix ``S`` times (autograd then sums the ``S`` gradients
arriving at the cut).  From the first smoothed child on, activations carry a
leading axis of length ``S``:

* a :class:`~torch.nn.Linear` child (exact type, no forward hooks) whose input
  is still shared computes
  :math:`hW^T + b` once and adds :math:`h\,\Delta W_a^T` for all ``a`` in one
  GEMM ``h @ [ΔW_1; ...; ΔW_y]^T``; because ``ΔW`` is a constant, backward
  costs one GEMM for the weight gradient (the ``S`` output gradients are summed
  first) instead of ``S``; with antithetic pairs :math:`(\Delta W_a, -\Delta W_a)`
  the GEMM covers the first half only, :math:`h(W \pm \Delta W_a)^T = hW^T \pm
  h\,\Delta W_a^T`, halving it and the input-gradient GEMM of the backward;
* a Linear child on stacked input uses :func:`torch.baddbmm` with the stacked
  weights ``W + ΔW_a`` (backward: one ``bmm`` for the input gradient, one GEMM
  over the ``S * B`` rows for the weight gradient; see :class:`_StackedLinear`);
* parameter-free or unsmoothed children that act sample by sample (see
  :data:`PER_SAMPLE`) run once on the ``S * B`` merged batch;
* anything else (BatchNorm in training mode, custom modules, smoothed
  convolutions) runs ``S`` times via :func:`torch.func.functional_call`.

A model that is not an ``nn.Sequential`` is one opaque child: it is run
``S`` times with :func:`~torch.func.functional_call` (the generic fallback).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.func import functional_call
from torch.nn import functional as F

from anisotropy.smoothing.sampling import PendingDraws

__all__ = ["PER_SAMPLE", "children_for", "stacked_outputs"]

# Modules whose output for one sample depends only on that sample (no batch
# statistics, no cross-sample mixing): they can be applied to the S*B merged
# batch.  BatchNorm qualifies only in eval mode (checked separately).
PER_SAMPLE: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Bilinear,
    nn.Identity,
    nn.Flatten,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Softmax,
    nn.LogSoftmax,
    nn.LayerNorm,
    nn.GroupNorm,
)


def _per_sample(mod: nn.Module) -> bool:
    if isinstance(mod, nn.modules.batchnorm._BatchNorm):
        return not mod.training
    if isinstance(mod, nn.Flatten):
        return mod.start_dim >= 1 or mod.start_dim < -1
    if isinstance(mod, (nn.Softmax, nn.LogSoftmax)):
        return mod.dim is not None and mod.dim != 0
    return type(mod) in PER_SAMPLE


def _tied(model: nn.Module, names: Sequence[str]) -> bool:
    """True if a smoothed tensor is shared by several modules (then no cut)."""
    wanted = {id(p) for n, p in model.named_parameters() if n in names}
    seen: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        if id(p) in wanted:
            seen[id(p)] = seen.get(id(p), 0) + 1
    return any(c > 1 for c in seen.values())


def children_for(
    model: nn.Module, names: Sequence[str], *, cut: bool
) -> list[tuple[str, nn.Module]]:
    """The (prefix-name, module) pieces :func:`stacked_outputs` walks through.

    With ``cut`` and a flat ``nn.Sequential`` whose smoothed tensors are all
    owned by its children (not tied across modules), the children; otherwise
    the whole model as the single piece ``("", model)``.  A module instance used
    several times (a shared activation, a tied layer) is a piece at each of its
    places, under the name of that place.
    """
    if cut and isinstance(model, nn.Sequential) and not _tied(model, names):
        # every entry in order, as nn.Sequential.forward runs them: named_children()
        # would drop the later entries of a module instance used twice
        kids = [(c, m) for c, m in model._modules.items() if m is not None]
        owned = {f"{c}.{n}" for c, m in kids for n, _ in m.named_parameters()}
        if all(n in owned for n in names):
            return kids
    return [("", model)]


def _local(prefix: str, mod: nn.Module, names: frozenset[str]) -> dict[str, str]:
    """Own name -> full name of the smoothed parameters of ``mod``."""
    pre = f"{prefix}." if prefix else ""
    return {n: pre + n for n, _ in mod.named_parameters() if pre + n in names}


def _linear_shared(
    mod: nn.Linear,
    h: torch.Tensor,
    z0: torch.Tensor,
    local: Mapping[str, torch.Tensor],
    centre: bool,
    antithetic: bool = False,
) -> torch.Tensor:
    """Shared input ``h`` (B..., in) and its centre output ``z0`` -> (S, B..., out).

    With ``antithetic`` the rows ``a`` and ``a + y/2`` of the displacements are
    opposite: only the first half enters the GEMM.
    """
    dw, db = local.get("weight"), local.get("bias")
    first = dw if dw is not None else db
    if first is None:
        raise ValueError("local must hold a 'weight' or 'bias' displacement")
    y = first.shape[0]
    out = mod.out_features
    zs = z0.unsqueeze(0)
    if dw is not None and antithetic:
        # one GEMM for the y/2 pairs: h(W +- dW_a)^T = hW^T +- h dW_a^T
        half = y // 2
        p = F.linear(h, dw[:half].reshape(half * out, mod.in_features))
        p = p.unflatten(-1, (half, out)).movedim(-2, 0)
        zs = torch.cat([zs + p, zs - p])
    elif dw is not None:
        # one GEMM for all y perturbations: (B..., in) x (in, y*out)
        p = F.linear(h, dw.reshape(y * out, mod.in_features))
        zs = zs + p.unflatten(-1, (y, out)).movedim(-2, 0)
    if db is not None:
        zs = zs + db.reshape(y, *([1] * (h.dim() - 1)), out)
    return torch.cat([z0.unsqueeze(0), zs]) if centre else zs


class _StackedLinear(torch.autograd.Function):
    """``z[s] = h[s] @ (W + dW_s)^T + b`` with ``dW`` constant; shapes (S, N, in) -> (S, N, out).

    Autograd of ``baddbmm`` on the stacked weights would materialise the S
    weight gradients (S, out, in) and then sum them; here the weight gradient
    is one GEMM over the S*N rows and the input gradient one ``bmm``.
    """

    @staticmethod
    def forward(ctx, h3, weight, bias, ws):
        ctx.save_for_backward(h3, ws)
        ctx.has_bias = bias is not None
        # under torch.autocast the GEMMs below run in the autocast dtype: the backward
        # computes in the dtype of the output gradient and returns each gradient in
        # the dtype of its input
        ctx.dtypes = (h3.dtype, weight.dtype, None if bias is None else bias.dtype)
        wt = ws.transpose(1, 2)
        return (
            torch.baddbmm(bias.reshape(1, 1, -1), h3, wt)
            if bias is not None
            else (torch.bmm(h3, wt))
        )

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        h3, ws = ctx.saved_tensors
        h_dtype, w_dtype, b_dtype = ctx.dtypes
        gh = torch.bmm(g, ws.to(g.dtype)).to(h_dtype) if ctx.needs_input_grad[0] else None
        gw = gb = None
        if ctx.needs_input_grad[1]:
            rows = h3.reshape(-1, h3.shape[-1]).to(g.dtype)
            gw = g.reshape(-1, g.shape[-1]).t().mm(rows).to(w_dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g.sum((0, 1)).to(b_dtype)
        return gh, gw, gb, None


def _linear_stacked(
    mod: nn.Linear, h: torch.Tensor, local: Mapping[str, torch.Tensor], centre: bool
) -> torch.Tensor:
    """Stacked input ``h`` (S, B..., in) -> (S, B..., out) with batched GEMMs."""
    s = h.shape[0]
    dw, db = local.get("weight"), local.get("bias")
    if dw is None:  # only the bias moves: one GEMM over the merged S*B rows
        z = F.linear(h, mod.weight, mod.bias)
    else:
        with torch.no_grad():  # W + dW_s as data; _StackedLinear routes the gradient to W
            w = mod.weight
            ws = torch.empty((s, *w.shape), dtype=w.dtype, device=w.device)  # (S, out, in)
            if centre:
                ws[0].copy_(w)
            torch.add(w, dw, out=ws[int(centre) :])  # one pass, no temporary
        h3 = h.reshape(s, -1, mod.in_features)
        z = _StackedLinear.apply(h3, mod.weight, mod.bias, ws)
        z = z.reshape(*h.shape[:-1], mod.out_features)
    if db is not None:
        if centre:
            db = torch.cat([torch.zeros_like(db[:1]), db])
        z = z + db.reshape(s, *([1] * (h.dim() - 2)), -1)
    return z


def _updates_buffers(mod: nn.Module) -> bool:
    """True if a module in training mode owns buffers (BatchNorm running statistics)."""
    return any(
        m.training and next(m.buffers(recurse=False), None) is not None for m in mod.modules()
    )


def _buffer_copies(mod: nn.Module) -> dict[str, torch.Tensor]:
    return {n: b.clone() for n, b in mod.named_buffers()}


def _run(
    mod: nn.Module,
    h: torch.Tensor,
    params: Mapping[str, torch.Tensor],
    buffers: Mapping[str, torch.Tensor] | None,
) -> torch.Tensor:
    """``mod(h)`` with some parameters replaced and, given ``buffers``, its buffers
    replaced by those tensors: its own buffers are then neither read nor changed."""
    if buffers is None and not params:
        return mod(h)
    named: dict[str, torch.Tensor] = {**dict(mod.named_parameters()), **dict(mod.named_buffers())}
    value = {id(named[n]): v for n, v in params.items()}
    value.update({id(named[n]): b.clone() for n, b in (buffers or {}).items()})
    # every place holding a replaced tensor, once per module instance: functional_call's
    # own tying names a module used twice twice and then restores it wrongly (the
    # model would keep the replacement)
    over = {}
    for prefix, m in mod.named_modules():
        pre = f"{prefix}." if prefix else ""
        for attr, tensor in (*m._parameters.items(), *m._buffers.items()):
            if tensor is not None and id(tensor) in value:
                over[pre + attr] = value[id(tensor)]
    return functional_call(mod, over, (h,), tie_weights=False)


def _generic(
    mod: nn.Module,
    h: torch.Tensor,
    local: Mapping[str, torch.Tensor],
    centre: bool,
    stacked: bool,
    s: int,
) -> torch.Tensor:
    """Run ``mod`` S times with its smoothed tensors replaced out of place.

    Every configuration sees the buffers as they were on entry; only the centre
    configuration (if any) changes them, as a plain forward would.
    """
    own = dict(mod.named_parameters())
    entry = _buffer_copies(mod) if _updates_buffers(mod) else None
    outs = []
    for i in range(s):
        a = i - 1 if centre else i
        hi = h[i] if stacked else h
        if a < 0:
            outs.append(mod(hi))
        else:
            params = {n: own[n] + d[a] for n, d in local.items()}
            outs.append(_run(mod, hi, params, entry))
    return torch.stack(outs)


def stacked_outputs(
    pieces: Sequence[tuple[str, nn.Module]],
    x: torch.Tensor,
    deltas: Mapping[str, torch.Tensor] | PendingDraws,
    *,
    centre: bool,
    antithetic: bool = False,
) -> torch.Tensor:
    r"""Outputs at the centre (optional) and at each perturbed configuration.

    Parameters
    ----------
    pieces : list of (name, module)
        From :func:`children_for`; applied in order.
    x : torch.Tensor, shape (B, ...)
        Network input.
    deltas : mapping name -> tensor (y, *param.shape), or PendingDraws
        Displacements :math:`\Delta W^a` of the smoothed parameters (full
        names), ``y >= 1``.  Pending draws are waited for only when the first
        smoothed piece is reached, so they are filled while the prefix runs.
    centre : bool
        Prepend the output at the unperturbed weights.
    antithetic : bool
        The caller guarantees that rows ``a`` and ``a + y/2`` of every displacement
        are opposite (``y`` even), as drawn by
        :func:`~anisotropy.smoothing.sampling.start_perturbations` with
        ``antithetic=True``: a first smoothed Linear on the shared input then
        computes half the perturbation GEMM.  Pending draws carry their own flag
        (this one is then ignored).

    Returns
    -------
    torch.Tensor, shape (S, B, ...) with ``S = y + centre``; row 0 is the
    centre when ``centre``.

    Notes
    -----
    Buffers (BatchNorm running statistics) change as in one plain forward at the
    centre weights, whatever the path: modules before the cut run once (on the
    centre), those run per configuration update them in the centre configuration
    only (the others get copies), and without ``centre`` a gradient-free centre
    forward after the others makes the update (run only when a module in
    training mode owns buffers; the others then all get copies).
    """
    if isinstance(deltas, PendingDraws):
        names, y = frozenset(deltas.names), deltas.y
        antithetic = deltas.antithetic
    else:
        names, y = frozenset(deltas), next(iter(deltas.values())).shape[0]
    if antithetic and y % 2:
        raise ValueError(f"antithetic pairs need an even number of displacements, got {y}")
    h = _outputs(pieces, x, deltas, names, y + int(centre), centre, bool(antithetic))
    if not centre and any(_updates_buffers(m) for _, m in pieces):
        # no centre configuration ran: the buffers' update of a plain forward
        with torch.no_grad():
            c = x
            for _, mod in pieces:
                c = mod(c)
    return h


def _outputs(
    pieces: Sequence[tuple[str, nn.Module]],
    x: torch.Tensor,
    deltas: Mapping[str, torch.Tensor] | PendingDraws,
    names: frozenset[str],
    s: int,
    centre: bool,
    antithetic: bool,
) -> torch.Tensor:
    """The body of :func:`stacked_outputs`: ``S = s`` configurations."""
    h, stacked = x, False
    for name, mod in pieces:
        own = _local(name, mod, names)
        if not own and not stacked:  # the prefix: run once, at the centre
            frozen = not centre and _updates_buffers(mod)
            h = _run(mod, h, {}, _buffer_copies(mod) if frozen else None)
            continue
        if not own and _per_sample(mod):
            h = mod(h.flatten(0, 1)).unflatten(0, h.shape[:2])
            continue
        # a plain Linear (not a subclass) without hooks takes the fast path
        fast = (
            mod
            if isinstance(mod, nn.Linear)
            and type(mod) is nn.Linear
            and set(own) <= {"weight", "bias"}
            and not (mod._forward_hooks or mod._forward_pre_hooks)
            else None
        )
        # the centre output of a first smoothed Linear needs no draw: compute it
        # while they are still being filled
        z0 = F.linear(h, fast.weight, fast.bias) if fast is not None and not stacked else None
        drawn = deltas.result() if isinstance(deltas, PendingDraws) else deltas
        local = {n: drawn[full] for n, full in own.items()}
        if fast is not None and stacked:
            h = _linear_stacked(fast, h, local, centre)
        elif fast is not None and z0 is not None:
            h = _linear_shared(fast, h, z0, local, centre, antithetic)
        else:
            h = _generic(mod, h, local, centre, stacked, s)
        stacked = True
    if not stacked:  # no piece owned a smoothed tensor: cannot happen via children_for
        raise ValueError("no smoothed parameter found in the model pieces")
    return h
