r"""Entropy propagation through linear layers and entropy-based loss terms (*Entropy-based
Guidance of Deep Neural Networks for Accelerated Convergence and Improved Performance*,
Meni et al.).

**Dense layers.**  For an invertible square ``W`` (n x n) and a random vector ``X``
with a density, the change of variables ``Y = WX + b`` gives
:math:`H(Y) = H(X) + \log|\det W|` (differential entropies, nats):
:func:`dense_entropy_change`, computed with :func:`torch.linalg.slogdet`.

*Tall layers* (``W`` of shape m x n, ``m > n``, an ``nn.Linear`` with more outputs
than inputs).  Assumption: ``W`` is injective (rank n).  Then ``Y = WX + b`` lives on
the n-dimensional affine image of ``W``, and its entropy is taken with respect to the
n-dimensional volume (Hausdorff measure) on that image; the area formula gives
:math:`H(Y) = H(X) + \frac12\log\det(W^T W)` (the square case is the special case
:math:`\frac12\log\det(W^TW) = \log|\det W|`).  A rank-deficient ``W`` gives ``-inf``.

*Wide layers* (``m < n``) have no such formula: ``WX`` has a density on
:math:`R^m`, but its entropy depends on the law of ``X`` (on how ``X`` is spread
along the kernel of ``W``), not on ``W`` and :math:`H(X)` alone.
:func:`dense_entropy_change` and :func:`dense_entropy_loss` raise a ``ValueError``
naming the shape (and layer); :func:`entropy_flow` reports NaN with that reason.

**Convolutions.**  That paper states :math:`H(C*X) = H(X) + (l-p+1)(w-q+1)\log|c_{11}|`
for a single-channel 'valid' 2-D convolution of an ``l x w`` input with a
``p x q`` kernel.  The output has fewer coordinates than the input, so the
formula holds in this precise sense (implemented here):

* the convolution is torch's (a cross-correlation, ``F.conv2d``):
  :math:`Y_{ij} = \sum_{a,b} c_{ab}\, X_{si + da,\ sj + db}` (0-based, stride ``s``,
  dilation ``d``; the seed's case is ``s = d = 1``), with no padding, and
  :math:`c_{11}` is ``kernel[0, 0]``;
* split the input into the block ``X_B`` of the pixels :math:`X_{si', sj'}`
  (``i' < H_out``, ``j' < W_out``: one per output pixel, top-left anchored) and the
  rest ``X_R``.  For fixed ``X_R``, ``Y = T X_B + const`` where, in row-major order,
  ``T`` is upper triangular (``Y_ij`` only involves block pixels with ``i' >= i``,
  ``j' >= j``) with every diagonal entry equal to :math:`c_{11}`
  (:func:`conv_block_matrix` builds it);
* hence :math:`H(Y \mid X_R) = H(X_B \mid X_R) + H_{out} W_{out} \log|c_{11}|`,
  with :math:`H_{out}W_{out} = (l-p+1)(w-q+1)` at ``s = d = 1``: the seed's
  :math:`H(X)` is the conditional entropy of the block given the other pixels.

With ``C`` input and ``C`` output channels (``groups`` dividing ``C``) the same
argument, ordering the block position-major and channel-minor, makes ``T``
block upper triangular with the ``C x C`` diagonal block ``K[:, :, 0, 0]``
(block diagonal over groups), so the change is
:math:`H_{out}W_{out}\sum_g \log|\det K_g[:, :, 0, 0]|` (:func:`conv_entropy_change`).
Padding breaks the triangular structure (the centre tap lands on the diagonal),
so only 'valid' convolutions are accepted.

**Loss terms.**  That paper only sketches :math:`L = L_{acc} + \lambda_1 L_{dense} +
\lambda_2 L_{conv}`, losses that steer each layer's entropy change towards a
pattern.  The exact form chosen here: with the per-coordinate entropy change
:math:`h_k = \Delta H_k / D_k` of layer ``k`` (``D_k`` = output coordinates;
:math:`h_k = \frac1n\log|\det W_k|` for a square dense layer,
:math:`\frac{1}{2n}\log\det(W_k^T W_k)` for a tall one, ``n`` the input width = the
dimension of the image,
:math:`\frac1C\sum_g\log|\det K_{k,g}[:,:,0,0]|` for a convolution, independent of
the input size) and a target :math:`t_k`,

.. math::

    L_{dense} = \sum_{k\ \rm dense} (h_k - t_k)^2,\qquad
    L_{conv} = \sum_{k\ \rm conv} (h_k - t_k)^2 .

``t_k = 0`` asks for volume-preserving layers, ``t_k < 0`` for layers that
contract (lose entropy per coordinate), ``t_k > 0`` for expanding ones
(:func:`dense_entropy_loss`, :func:`conv_entropy_loss`; differentiable).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from anisotropy.smoothing.sampling import select_parameters
from anisotropy.validation import check_int

__all__ = [
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

_LOG_2PI_E = math.log(2.0 * math.pi) + 1.0


def gaussian_entropy(cov: torch.Tensor) -> torch.Tensor:
    r"""Differential entropy of :math:`N(\mu, \Sigma)`: :math:`\frac12\log\det(2\pi e\Sigma)`.

    Parameters
    ----------
    cov : torch.Tensor, shape (..., n, n)
        Symmetric positive definite covariances (only the lower triangle is read).

    Returns
    -------
    torch.Tensor, shape (...)
    """
    if cov.dim() < 2 or cov.shape[-1] != cov.shape[-2]:
        raise ValueError(f"cov must have shape (..., n, n), got {tuple(cov.shape)}")
    chol, info = torch.linalg.cholesky_ex(cov)
    if bool((info != 0).any()):
        raise ValueError("cov must be positive definite (its Cholesky factorisation failed)")
    logdet = 2.0 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return 0.5 * (cov.shape[-1] * _LOG_2PI_E + logdet)


def dense_entropy_change(weight: torch.Tensor) -> torch.Tensor:
    r"""The entropy change :math:`H(WX) - H(X)` of a square or tall (injective) layer.

    :math:`\log|\det W|` for a square ``W``; :math:`\frac12\log\det(W^T W)` for a tall
    ``W`` (m > n), assuming ``W`` injective and measuring the entropy of ``WX`` on its
    n-dimensional image (module docstring).

    Parameters
    ----------
    weight : torch.Tensor, shape (..., m, n) with ``m >= n``

    Returns
    -------
    torch.Tensor, shape (...); ``-inf`` for a singular (rank-deficient) ``W``.
    Differentiable: the gradient is :math:`W^{-T}` (square) or
    :math:`W (W^T W)^{-1} = (W^+)^T` (tall).

    Raises
    ------
    ValueError
        For a wide ``W`` (m < n): :math:`H(WX)` then depends on the law of ``X``.
    """
    if weight.dim() < 2:
        raise ValueError(
            f"weight must have shape (..., m, n) with m >= n (square or tall), got "
            f"{tuple(weight.shape)}"
        )
    m, n = weight.shape[-2:]
    if m < n:
        raise ValueError(
            f"weight of shape {tuple(weight.shape)} is wide (m = {m} < n = {n}): H(WX) "
            "depends on the law of X, not on W alone; only square or tall (injective) "
            "W have an entropy change"
        )
    if m == n:
        return torch.linalg.slogdet(weight)[1]
    return 0.5 * torch.linalg.slogdet(weight.mT @ weight)[1]


def _pair(name: str, v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, bool):
        raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}")
    t = (v, v) if isinstance(v, int) else tuple(v)
    if len(t) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    return check_int(name, t[0], minimum=1), check_int(name, t[1], minimum=1)


def conv_output_shape(
    input_shape: Sequence[int],
    kernel_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    dilation: int | Sequence[int] = 1,
) -> tuple[int, int]:
    """``(H_out, W_out)`` of a 'valid' 2-D convolution of an ``(l, w)`` input.

    Raises ValueError when the kernel does not fit in the input.
    """
    ell, w = _pair("input_shape", input_shape)
    p, q = _pair("kernel_size", kernel_size)
    (sh, sw), (dh, dw) = _pair("stride", stride), _pair("dilation", dilation)
    eh, ew = dh * (p - 1) + 1, dw * (q - 1) + 1
    if eh > ell or ew > w:
        raise ValueError(f"kernel of extent {(eh, ew)} does not fit in input_shape {(ell, w)}")
    return (ell - eh) // sh + 1, (w - ew) // sw + 1


def _kernel4(kernel: torch.Tensor, groups: int) -> torch.Tensor:
    """(p, q) -> (1, 1, p, q); check (C, C/groups, p, q)."""
    if kernel.dim() == 2:
        kernel = kernel.reshape(1, 1, *kernel.shape)
    if kernel.dim() != 4:
        raise ValueError(
            f"kernel must have shape (p, q) or (C, C/groups, p, q), got {tuple(kernel.shape)}"
        )
    groups = check_int("groups", groups, minimum=1)
    c_out, c_in_g = kernel.shape[:2]
    if c_out % groups or c_in_g * groups != c_out:
        raise ValueError(
            f"kernel {tuple(kernel.shape)} with groups={groups} is not square in "
            "channels (needs C_in = C_out); the entropy change needs a square map"
        )
    return kernel


def conv_block_matrix(
    kernel: torch.Tensor,
    input_shape: Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> torch.Tensor:
    r"""The matrix ``T`` of ``X_B -> Y`` (module docstring): block upper triangular.

    Parameters
    ----------
    kernel : torch.Tensor, shape (p, q) or (C, C/groups, p, q)
        ``F.conv2d`` weight; a 2-D kernel is one channel.
    input_shape : (l, w)
        Spatial input size.

    Returns
    -------
    torch.Tensor, shape (N, N), ``N = C * H_out * W_out``; rows ``(i, j, c)``, columns
    ``(i', j', c')`` in that (position-major, channel-minor) order.  Dense: for tests
    and small examples only.
    """
    k4 = _kernel4(kernel, groups)
    c, cg, p, q = k4.shape
    (sh, sw), (dh, dw) = _pair("stride", stride), _pair("dilation", dilation)
    ho, wo = conv_output_shape(input_shape, (p, q), stride=(sh, sw), dilation=(dh, dw))
    T = k4.new_zeros(ho, wo, c, ho, wo, c)
    for g in range(c // cg):
        sl = slice(g * cg, (g + 1) * cg)
        for a in range(p):
            if (dh * a) % sh:
                continue
            di = dh * a // sh  # block row offset i' - i
            for b in range(q):
                if (dw * b) % sw:
                    continue
                dj = dw * b // sw
                for i in range(ho - di):
                    for j in range(wo - dj):
                        T[i, j, sl, i + di, j + dj, sl] = k4[sl, :, a, b]
    n = ho * wo * c
    return T.reshape(n, n)


def conv_entropy_change(
    kernel: torch.Tensor,
    input_shape: Sequence[int],
    *,
    stride: int | Sequence[int] = 1,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> torch.Tensor:
    r""":math:`H(Y \mid X_R) - H(X_B \mid X_R) = H_{out}W_{out}\sum_g\log|\det K_g[:,:,0,0]|`.

    For one channel, the seed's :math:`(l-p+1)(w-q+1)\log|c_{11}|` (module docstring
    for the exact statement).  Shapes as in :func:`conv_block_matrix`; returns a
    differentiable scalar tensor, ``-inf`` when the diagonal block is singular.
    """
    k4 = _kernel4(kernel, groups)
    c, cg = k4.shape[:2]
    ho, wo = conv_output_shape(input_shape, k4.shape[2:], stride=stride, dilation=dilation)
    diag = k4[:, :, 0, 0].reshape(c // cg, cg, cg)  # (groups, C/g, C/g)
    return ho * wo * torch.linalg.slogdet(diag)[1].sum()


# ------------------------------------------------------------------ model level
def _per_coordinate(mod: nn.Module, name: str, kind: str) -> torch.Tensor:
    """h_k: the layer's entropy change per output coordinate."""
    if kind == "dense":
        if type(mod) is not nn.Linear:
            raise ValueError(f"layer {name!r} is a {type(mod).__name__}, not an nn.Linear")
        w = mod.weight
        if w.shape[0] < w.shape[1]:
            raise ValueError(
                f"layer {name!r} is wide, weight {tuple(w.shape)} (out_features < "
                "in_features): L_dense needs square or tall (injective) layers, the "
                "entropy of a wide layer's output depends on the law of its input"
            )
        return dense_entropy_change(w) / w.shape[1]
    if type(mod) is not nn.Conv2d:
        raise ValueError(f"layer {name!r} is a {type(mod).__name__}, not an nn.Conv2d")
    if mod.padding not in ("valid", (0, 0)):
        raise ValueError(
            f"layer {name!r} has padding {mod.padding!r}; the triangular "
            "structure needs a 'valid' (padding 0) convolution"
        )
    k4 = _kernel4(mod.weight, mod.groups)
    c, cg = k4.shape[:2]
    return torch.linalg.slogdet(k4[:, :, 0, 0].reshape(c // cg, cg, cg))[1].sum() / c


def _eligible(mod: nn.Module, kind: str) -> bool:
    if kind == "dense":
        return type(mod) is nn.Linear and mod.out_features >= mod.in_features
    return (
        type(mod) is nn.Conv2d
        and mod.in_channels == mod.out_channels
        and mod.padding in ("valid", (0, 0))
    )


def _entropy_loss(model: nn.Module, layers, target, kind: str) -> torch.Tensor:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if layers is None:
        mods = [n for n, m in model.named_modules() if n and _eligible(m, kind)]
        if not mods:
            what = "square or tall nn.Linear" if kind == "dense" else "square valid nn.Conv2d"
            raise ValueError(f"model has no {what} layer; pass layers explicitly")
    else:
        names = select_parameters(model, layers)
        bad = [n for n in names if n.rsplit(".", 1)[-1] != "weight"]
        if bad:
            raise ValueError(f"layers must select layer weights, got {', '.join(bad)}")
        mods = [n.rsplit(".", 1)[0] if "." in n else "" for n in names]  # "": the model itself
    if isinstance(target, Mapping):
        unknown = sorted(set(target) - set(mods))
        if unknown:
            raise ValueError(f"target names unknown layers {unknown}; selected: {mods}")
    total: torch.Tensor | None = None
    for name in mods:
        h = _per_coordinate(model.get_submodule(name), name, kind)
        if not bool(torch.isfinite(h)):
            raise ValueError(
                f"layer {name!r} is singular (log|det| = {float(h.detach()):g}); its "
                "entropy change is -inf"
            )
        t = float(target.get(name, 0.0)) if isinstance(target, Mapping) else float(target)
        if not math.isfinite(t):
            raise ValueError(f"target for {name!r} must be finite, got {t!r}")
        term = (h - t) ** 2
        total = term if total is None else total + term
    if total is None:
        raise ValueError("layers must select at least one layer")
    return total


def dense_entropy_loss(
    model: nn.Module,
    *,
    layers: str | Iterable[str] | None = None,
    target: float | Mapping[str, float] = 0.0,
) -> torch.Tensor:
    r""":math:`L_{dense} = \sum_k (h_k - t_k)^2` over square and tall linear layers.

    :math:`h_k = \frac{1}{n_k}\log|\det W_k|` (square) or
    :math:`\frac{1}{2n_k}\log\det(W_k^T W_k)` (tall, ``W_k`` assumed injective),
    ``n_k`` the layer's input width (module docstring).

    Parameters
    ----------
    model : torch.nn.Module
    layers : str or iterable of str, optional
        Layers (module names, weight names or globs, as in
        :func:`anisotropy.smoothing.sampling.select_parameters`); each must be a square
        or tall ``nn.Linear`` (a wide one raises a ``ValueError`` naming it and its
        shape).  ``None``: every square or tall ``nn.Linear``.
    target : float or mapping layer name -> float
        Target per-coordinate entropy change :math:`t_k` (missing names: 0).

    Returns
    -------
    torch.Tensor, scalar, differentiable w.r.t. the weights.
    """
    return _entropy_loss(model, layers, target, "dense")


def conv_entropy_loss(
    model: nn.Module,
    *,
    layers: str | Iterable[str] | None = None,
    target: float | Mapping[str, float] = 0.0,
) -> torch.Tensor:
    r""":math:`L_{conv} = \sum_k (\frac{1}{C_k}\sum_g\log|\det K_{k,g}[:,:,0,0]| - t_k)^2`.

    Over ``nn.Conv2d`` layers with as many input as output channels and no
    padding (single channel: :math:`(\log|c_{11}| - t_k)^2`).  Parameters as in
    :func:`dense_entropy_loss`; ``None`` selects every eligible convolution.
    """
    return _entropy_loss(model, layers, target, "conv")


@dataclass(frozen=True)
class EntropyFlowResult:
    """Entropy change of each linear layer of a model for one input shape.

    Attributes
    ----------
    layers : tuple of str
        ``nn.Linear`` and ``nn.Conv2d`` modules in call order.
    delta_h : tuple of float
        :math:`\\Delta H` (nats, per sample) where the exact formula applies
        (square or tall dense layer, square-channel valid convolution), else NaN;
        for a tall layer, the entropy on the layer's image (module docstring).
    coordinates : tuple of int
        Output coordinates of the layer per sample.
    notes : tuple of str
        Why a layer has no formula.
    """

    layers: tuple[str, ...]
    delta_h: tuple[float, ...]
    coordinates: tuple[int, ...]
    notes: tuple[str, ...]

    def report(self) -> str:
        """Table of the per-layer entropy changes."""
        rows = ["layer            delta_H (nats)   per coordinate   note"]
        for n, d, c, note in zip(
            self.layers, self.delta_h, self.coordinates, self.notes, strict=True
        ):
            rows.append(f"{n:<16} {d:>14.6g}   {d / c:>14.6g}   {note}")
        return "\n".join(rows)


def entropy_flow(model: nn.Module, input_shape: Sequence[int]) -> EntropyFlowResult:
    """Per-layer entropy changes of ``model`` on inputs of shape ``input_shape`` (no batch axis).

    One forward pass on zeros (no gradient) records the input shape of every
    ``nn.Linear`` / ``nn.Conv2d``; nonlinearities are not accounted for.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    shape = tuple(check_int("input_shape", s, minimum=1) for s in input_shape)
    seen: list[tuple[str, nn.Module, tuple[int, ...], tuple[int, ...]]] = []
    hooks = []
    for name, mod in model.named_modules():
        if type(mod) in (nn.Linear, nn.Conv2d):
            hooks.append(
                mod.register_forward_hook(
                    lambda m, i, o, name=name: seen.append(
                        (name, m, tuple(i[0].shape), tuple(o.shape))
                    )
                )
            )
    try:
        p = next(model.parameters(), None)
        x = torch.zeros(
            (1, *shape),
            dtype=p.dtype if p is not None else None,
            device=p.device if p is not None else None,
        )
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    names: list[str] = []
    dh: list[float] = []
    coords: list[int] = []
    notes: list[str] = []
    with torch.no_grad():
        for name, mod, ishape, oshape in seen:
            names.append(name)
            coords.append(math.prod(oshape[1:]))
            if isinstance(mod, nn.Linear) and _eligible(mod, "dense"):
                dh.append(float(dense_entropy_change(mod.weight)) * coords[-1] / mod.out_features)
                notes.append(
                    "" if mod.out_features == mod.in_features else "tall: entropy on the image"
                )
            elif isinstance(mod, nn.Conv2d) and _eligible(mod, "conv"):
                dh.append(
                    float(
                        conv_entropy_change(
                            mod.weight,
                            ishape[-2:],
                            stride=mod.stride,
                            dilation=mod.dilation,
                            groups=mod.groups,
                        )
                    )
                )
                notes.append("conditional on the non-block input pixels")
            else:
                dh.append(math.nan)
                notes.append(
                    "wide (no exact formula: depends on the input law)"
                    if type(mod) is nn.Linear
                    else "channels differ or padded (no exact formula)"
                )
    return EntropyFlowResult(tuple(names), tuple(dh), tuple(coords), tuple(notes))
