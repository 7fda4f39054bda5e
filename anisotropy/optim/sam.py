r"""Sharpness-aware minimisation (SAM; Foret et al., ICLR 2021), optionally partial.

SAM descends the worst loss in a ball of radius :math:`\rho` around the weights,
:math:`\max_{\|e\| \le \rho} L(w + e)`, to first order in :math:`\rho`.  Each step
takes two passes (two calls of the closure):

1. the gradient :math:`g = \nabla L(w)` at the weights;
2. the ascent :math:`e = \rho\, g / \|g\|` and the gradient at the perturbed point,
   :math:`\nabla L(w + e)`;

then the weights are put back to :math:`w` and the base optimiser steps with the
second gradient.  With plain SGD of learning rate :math:`\eta`,

.. math::

    w_{t+1} = w_t - \eta\, \nabla L\Big(w_t + \rho\, \frac{\nabla L(w_t)}{\|\nabla L(w_t)\|}\Big).

``rho`` is set per parameter group and the norm :math:`\|g\|` is taken over the
perturbed tensors of the group, so each group moves by exactly :math:`\rho` (with
one group this is Foret et al.'s global norm).  A group whose gradient vanishes is
not perturbed.  ``rho = 0`` is the base optimiser, bit for bit.

**Partial SAM.**  With ``layers`` (and ``model``), only the selected tensors are
perturbed: :math:`e` and its norm live on those coordinates, the others stay at
:math:`w` during the second pass.  *Every* tensor of the optimiser then steps with
the gradient of the second pass (taken at :math:`w + e`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from anisotropy.optim._partial import partial_ids
from anisotropy.validation import check_nonnegative

__all__ = ["SAM"]


class SAM(torch.optim.Optimizer):
    r"""Sharpness-aware minimisation around a base optimiser (see the module docstring).

    Parameters
    ----------
    params : iterable of torch.Tensor or of dict
        Parameters or parameter groups, as for any :mod:`torch.optim` optimiser;
        a group may set its own ``rho``.
    base_optimizer : type of torch.optim.Optimizer
        The class applying the update (default :class:`torch.optim.SGD`); it is
        built on the same parameter groups with ``**kwargs``, and the groups are
        shared, so learning-rate schedulers may be built on either object.
    rho : float, keyword-only
        Radius :math:`\rho \ge 0` of the ascent step (default 0.05, Foret et al.).
    layers : str or iterable of str, optional, keyword-only
        Perturb only these tensors (names, module names or globs as for
        :class:`~anisotropy.smoothing.losses.PartialLocalEntropy`); needs ``model``.
    model : torch.nn.Module, optional, keyword-only
        The model whose names resolve ``layers``.
    include_biases : bool, keyword-only
        With ``layers``, also perturb the biases of the selected modules.
    **kwargs
        Passed to ``base_optimizer`` (``lr``, ``momentum``, ...).

    Notes
    -----
    ``step(closure)`` calls ``closure()`` twice with gradients enabled; the closure
    must zero the gradients, compute the loss at the current parameter values,
    call ``backward()`` and return the loss.  ``step`` returns the first loss (at
    :math:`w`).  :meth:`state_dict` is the base optimiser's (its groups carry
    ``rho``).

    Examples
    --------
    >>> opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
    >>> def closure():
    ...     opt.zero_grad(); loss = F.cross_entropy(model(x), t); loss.backward(); return loss
    >>> opt.step(closure)
    """

    def __init__(
        self,
        params: Iterable[Any],
        base_optimizer: type[torch.optim.Optimizer] = torch.optim.SGD,
        *,
        rho: float = 0.05,
        layers: str | Iterable[str] | None = None,
        model: nn.Module | None = None,
        include_biases: bool = False,
        **kwargs: Any,
    ) -> None:
        if not (
            isinstance(base_optimizer, type) and issubclass(base_optimizer, torch.optim.Optimizer)
        ):
            raise ValueError(
                "base_optimizer must be a torch.optim.Optimizer class (e.g. torch.optim.SGD), "
                f"got {base_optimizer!r}"
            )
        super().__init__(params, dict(rho=check_nonnegative("rho", rho)))
        for group in self.param_groups:
            group["rho"] = check_nonnegative("rho", group["rho"])
        held = [p for g in self.param_groups for p in g["params"]]
        self._perturbed = partial_ids(
            held, model=model, layers=layers, include_biases=include_biases
        )
        self.base_optimizer = base_optimizer(self.param_groups, **kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)

    def _call(self, closure: Callable[[], Any]) -> Any:
        with torch.enable_grad():
            return closure()

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        r"""One SAM step: gradient at :math:`w`, ascent, gradient at :math:`w + e`, base step.

        Returns
        -------
        The closure's return value at the unperturbed weights (first call).
        """
        if closure is None or not callable(closure):
            raise ValueError(
                "SAM.step needs a closure that zeroes the gradients, computes the loss, "
                "calls backward() and returns the loss"
            )
        loss = self._call(closure)
        saved: list[tuple[torch.Tensor, torch.Tensor]] = []
        for group in self.param_groups:
            chosen = [p for p in group["params"] if id(p) in self._perturbed and p.grad is not None]
            if not chosen or group["rho"] == 0:
                continue
            norm = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(p.grad) for p in chosen])
            )
            # rho / ||g||, and no move at all where the gradient vanishes (no sync)
            scale = torch.where(norm > 0, group["rho"] / norm, torch.zeros_like(norm))
            for p in chosen:
                saved.append((p, p.detach().clone()))
                p.add_(p.grad * scale.to(p.dtype))
        self._call(closure)
        for p, w in saved:
            p.copy_(w)  # back to w exactly (w + e - e would round)
        self.base_optimizer.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        """The base optimiser's state dict (its parameter groups carry ``rho``)."""
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (``rho`` is checked)."""
        for group in state_dict.get("param_groups", ()):
            if "rho" not in group:
                raise ValueError("state_dict is not a SAM state dict: its param_groups lack 'rho'")
            check_nonnegative("rho", group["rho"])
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups  # loading rebinds them
