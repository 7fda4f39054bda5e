"""Choosing the layers an optimiser acts on (partial optimisers).

Every optimiser of :mod:`anisotropy.optim` can act on chosen layers only, like
the partial losses of the paper (eq 13: the smoothed coordinates ``U`` are whole
parameter tensors).  The layers are named exactly as for
:class:`anisotropy.smoothing.losses.PartialLocalEntropy`: parameter names, module
names (their weights, not their biases) or glob patterns, resolved by
:func:`anisotropy.smoothing.sampling.select_parameters` against ``model``.  One way
for all: the keywords ``layers=`` and ``model=``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from anisotropy.smoothing.sampling import select_parameters

__all__ = ["partial_ids"]


def partial_ids(
    params: Iterable[torch.Tensor],
    *,
    model: nn.Module | None,
    layers: str | Iterable[str] | None,
    include_biases: bool = False,
) -> set[int]:
    """``id`` of each tensor of ``params`` the optimiser acts on.

    Parameters
    ----------
    params : iterable of torch.Tensor
        The tensors the optimiser holds (all of its parameter groups).
    model : torch.nn.Module or None, keyword-only
        The model whose parameter names resolve ``layers``; required with
        ``layers``.
    layers : str or iterable of str or None, keyword-only
        Parameter names, module names or glob patterns
        (:func:`~anisotropy.smoothing.sampling.select_parameters`); ``None``:
        every tensor of ``params`` (biases included).
    include_biases : bool, keyword-only
        With ``layers``, also select the biases of the selected modules.

    Returns
    -------
    set of int

    Raises
    ------
    ValueError
        If ``layers`` is given without a ``model``, if ``model`` is not an
        :class:`~torch.nn.Module`, or if ``layers`` selects a parameter that is
        not in ``params`` (the message names it).
    """
    params = list(params)
    if layers is None:
        if include_biases:
            raise ValueError("include_biases=True needs layers (None already selects all)")
        return {id(p) for p in params}
    if not isinstance(model, nn.Module):
        raise ValueError(
            "model must be the torch.nn.Module whose parameter names resolve layers, "
            f"got {type(model).__name__}"
        )
    names = select_parameters(model, layers, include_biases=include_biases)
    named = dict(model.named_parameters())
    held = {id(p) for p in params}
    missing = [n for n in names if id(named[n]) not in held]
    if missing:
        raise ValueError(
            f"layers selects parameters the optimiser does not hold: {', '.join(missing)}"
        )
    return {id(named[n]) for n in names}
