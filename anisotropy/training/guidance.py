r"""Entropy guidance in training: the loss terms :math:`L_{dense}`, :math:`L_{conv}` added
to the training loss (*Entropy-based Guidance of Deep Neural Networks for Accelerated
Convergence and Improved Performance*, Meni et al.).

With ``[guidance]`` weights :math:`\lambda_d` (``dense_weight``) and :math:`\lambda_c`
(``conv_weight``) the loss of every gradient evaluation of a step is

.. math::

    L_{train} = L + \lambda_d L_{dense} + \lambda_c L_{conv},\qquad
    L_{dense} = \sum_{k\ \rm dense} (h_k - t_k)^2,\quad
    L_{conv} = \sum_{k\ \rm conv} (h_k - t_k)^2,

``L`` the (smoothed) cross-entropy and :math:`h_k` the per-coordinate entropy change
of layer ``k`` (:mod:`anisotropy.related.entropy_flow`, where the terms are defined:
:func:`~anisotropy.related.entropy_flow.dense_entropy_loss`,
:func:`~anisotropy.related.entropy_flow.conv_entropy_loss`).  The terms depend on the
weights only, not on the minibatch.  A weight of 0 leaves its term out (not computed):
both weights 0 is the plain training loss, bit for bit.

Layers: with ``guidance.layers`` empty, :math:`L_{dense}` takes every square or tall
``nn.Linear`` and :math:`L_{conv}` every ``nn.Conv2d`` with as many input as output
channels and no padding; with names, each term takes the named layers of its kind
(a named layer of neither kind is an error).  ``guidance.target`` is one
:math:`t_k` for every layer, or a table ``layer -> t_k`` (missing layers: 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from anisotropy.related.entropy_flow import (
    _eligible,
    _per_coordinate,
    conv_entropy_loss,
    dense_entropy_loss,
)
from anisotropy.smoothing.sampling import select_parameters
from anisotropy.training.config import GuidanceConfig

__all__ = ["EntropyGuidance", "GuidanceError", "entropy_profile"]

_KIND_MODULE: dict[str, type[nn.Module]] = {"dense": nn.Linear, "conv": nn.Conv2d}


class GuidanceError(ValueError):
    """A guidance term could not be evaluated during training (a singular layer: its
    entropy change is ``-inf``); the trainer stops the run cleanly on it."""


class EntropyGuidance:
    """The guidance term of one run's training loss, and its running means for the log.

    Parameters
    ----------
    cfg : GuidanceConfig
        Weights, layers and targets (``cfg.active`` must be true).
    model : torch.nn.Module
        The trained model; the layers are resolved and the terms evaluated once here.

    Raises
    ------
    ValueError
        If a weight > 0 finds no eligible layer, a named layer is not an ``nn.Linear``
        or ``nn.Conv2d`` (or is a wide linear / padded or non-square convolution),
        ``target`` names a layer that is not guided, or a guided layer is singular
        at the initial weights; the message names the key.
    """

    def __init__(self, cfg: GuidanceConfig, model: nn.Module) -> None:
        if not cfg.active:
            raise ValueError("guidance: both weights are 0; no guidance term to build")
        self.model = model
        self.weights = {"dense": cfg.dense_weight, "conv": cfg.conv_weight}
        self.layers = self._resolve(cfg, model)
        target = cfg.target
        guided = [n for names in self.layers.values() for n in names]
        #: each term's target: one number, or the table's entries of its layers
        self.targets: dict[str, float | dict[str, float]] = {}
        if isinstance(target, Mapping):
            unknown = sorted(set(target) - set(guided))
            if unknown:
                raise ValueError(
                    f"guidance.target names layers that are not guided: {unknown}; "
                    f"guided layers: {guided}"
                )
            for kind, names in self.layers.items():
                self.targets[kind] = {n: float(t) for n, t in target.items() if n in names}
        else:
            self.targets = dict.fromkeys(self.layers, float(target))
        device = next(model.parameters()).device
        # running sums on the model's device: no synchronisation per step
        self._sums = torch.zeros(3, dtype=torch.float64, device=device)
        self._count = 0
        try:
            with torch.no_grad():
                self.terms()
        except GuidanceError as err:
            raise ValueError(f"guidance: at the initial weights, {err}") from None

    @staticmethod
    def _resolve(cfg: GuidanceConfig, model: nn.Module) -> dict[str, list[str]]:
        """Module names of the guided layers of each active kind."""
        modules = dict(model.named_modules())
        if cfg.layers:
            try:
                names = select_parameters(model, cfg.layers)
            except ValueError as err:
                raise ValueError(f"guidance.layers: {err}") from None
            mods = [n.rsplit(".", 1)[0] for n in names if n.endswith(".weight") and "." in n]
            other = [m for m in mods if not isinstance(modules[m], (nn.Linear, nn.Conv2d))]
            if other or len(mods) != len(names):
                raise ValueError(
                    f"guidance.layers = {cfg.layers!r} must select nn.Linear or nn.Conv2d "
                    f"layers, got {other or list(names)}"
                )
        out: dict[str, list[str]] = {}
        for kind, weight in (("dense", cfg.dense_weight), ("conv", cfg.conv_weight)):
            if weight == 0:
                continue
            if cfg.layers:
                chosen = [m for m in mods if type(modules[m]) is _KIND_MODULE[kind]]
            else:
                chosen = [n for n, m in modules.items() if n and _eligible(m, kind)]
            if not chosen:
                what = "square or tall nn.Linear" if kind == "dense" else "square valid nn.Conv2d"
                among = f" among guidance.layers = {cfg.layers!r}" if cfg.layers else ""
                raise ValueError(
                    f"guidance.{kind}_weight = {weight:g} > 0 but the model has no {what} "
                    f"layer{among}; set guidance.{kind}_weight = 0"
                )
            out[kind] = chosen
        return out

    def terms(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The weighted sum ``lambda_d L_dense + lambda_c L_conv`` (differentiable) and the
        unweighted terms by kind, at the current weights.

        Raises
        ------
        GuidanceError
            If a guided layer is singular or a term is not finite.
        """
        parts: dict[str, torch.Tensor] = {}
        total: torch.Tensor | None = None
        for kind, names in self.layers.items():
            fn = dense_entropy_loss if kind == "dense" else conv_entropy_loss
            try:
                term = fn(self.model, layers=names, target=self.targets[kind])
            except ValueError as err:  # a singular layer (shapes were checked at setup)
                raise GuidanceError(str(err)) from None
            if not bool(torch.isfinite(term)):
                raise GuidanceError(f"the {kind} guidance term is {float(term.detach())}")
            parts[kind] = term
            weighted = self.weights[kind] * term
            total = weighted if total is None else total + weighted
        if total is None:  # pragma: no cover - __init__ refuses no active term
            raise GuidanceError("no guidance term")
        return total, parts

    def add(self, total: torch.Tensor, parts: Mapping[str, torch.Tensor]) -> None:
        """Add one evaluation to the running means of the logging period."""
        zero = torch.zeros((), dtype=torch.float64, device=self._sums.device)
        vals = [total] + [parts.get(k, zero) for k in ("dense", "conv")]
        self._sums += torch.stack([v.detach().to(torch.float64) for v in vals])
        self._count += 1

    def entropy_changes(self) -> dict[str, float]:
        """:math:`h_k` of every guided layer at the current weights (nats per coordinate)."""
        out: dict[str, float] = {}
        with torch.no_grad():
            for kind, names in self.layers.items():
                for name in names:
                    mod = self.model.get_submodule(name)
                    out[name] = float(_per_coordinate(mod, name, kind))
        return out

    def record(self) -> dict[str, object]:
        """The log line's guidance values over the period (and reset the means):
        ``guidance_loss`` (mean weighted sum over the period's evaluations) and
        ``guidance`` (mean unweighted ``dense`` / ``conv`` terms, ``null`` for an
        inactive one, and ``h``: each guided layer's entropy change at the period's end)."""
        n = max(self._count, 1)
        means = (self._sums / n).tolist()
        rec: dict[str, object] = {
            "guidance_loss": means[0],
            "guidance": {
                "dense": means[1] if "dense" in self.layers else None,
                "conv": means[2] if "conv" in self.layers else None,
                "h": self.entropy_changes(),
            },
        }
        self._sums.zero_()
        self._count = 0
        return rec


def entropy_profile(cfg: GuidanceConfig, model: nn.Module) -> dict[str, float | None]:
    r"""The entropy profile of ``model``: the entropy change per coordinate
    :math:`h_k` (nats) of the layers that ``cfg`` names or guides, whatever the guidance
    weights.

    .. math::

        h_k = \frac{1}{n}\log|\det W_k| \ \text{(square)},\qquad
        h_k = \frac{1}{2n}\log\det(W_k^T W_k) \ \text{(tall, } W_k \in
        \mathbb{R}^{m\times n},\ m > n),

    and for a square-channel valid convolution :math:`\frac1C\sum_g \log|\det
    K_g[:, :, 0, 0]|` per output pixel (:mod:`anisotropy.related.entropy_flow`, the
    quantity the guidance terms compare with their targets).

    The layers: every layer ``cfg.layers`` selects (each must have an entropy change:
    a square or tall ``nn.Linear``, a square-channel valid ``nn.Conv2d``); with
    ``cfg.layers`` empty, the layers the active terms guide (every eligible layer of
    their kind), or none when both weights are 0.  The trainer checks the names before
    training and writes the profile into ``summary.json`` under ``"entropy"`` at the end
    of a complete run, so an unguided run that names layers records the profile training
    alone reaches: the measurement guidance targets are read from
    (``experiments/rel_guidance_ae_profile.toml``).

    Parameters
    ----------
    cfg : GuidanceConfig
        Its ``layers`` (names or globs), ``dense_weight`` and ``conv_weight`` choose the
        layers.
    model : torch.nn.Module
        The model at the weights to measure.

    Returns
    -------
    dict
        Layer name -> :math:`h_k`, in the model's order; a singular layer
        (:math:`h_k = -\infty`) gives ``None``, which strict JSON can hold.  Empty when
        no layer is named or guided.

    Raises
    ------
    ValueError
        If ``cfg.layers`` selects nothing in ``model``, a parameter other than a layer
        weight, or a layer without an entropy change (not an ``nn.Linear`` /
        ``nn.Conv2d``, a wide linear layer, a padded or non-square convolution); the
        message names ``guidance.layers``.
    """
    kinds: tuple[str, ...] = ("dense", "conv")
    if cfg.layers:
        try:
            names = select_parameters(model, cfg.layers)
        except ValueError as err:
            raise ValueError(f"guidance.layers: {err}") from None
        bad = [n for n in names if not n.endswith(".weight") or "." not in n]
        if bad:
            raise ValueError(
                f"guidance.layers = {cfg.layers!r} must select layer weights, got {bad}"
            )
        chosen = {n.rsplit(".", 1)[0] for n in names}
        modules = dict(model.named_modules())
        without = [m for m in chosen if not any(_eligible(modules[m], k) for k in kinds)]
        if without:
            raise ValueError(
                f"guidance.layers = {cfg.layers!r} selects {sorted(without)}, which have no "
                "entropy change: name square or tall nn.Linear layers or square-channel "
                "valid nn.Conv2d layers"
            )
    else:
        kinds = tuple(k for k in kinds if getattr(cfg, f"{k}_weight") > 0)
        chosen = None
    out: dict[str, float | None] = {}
    with torch.no_grad():
        for name, mod in model.named_modules():
            if chosen is not None and name not in chosen:
                continue
            for kind in kinds:
                if name and _eligible(mod, kind):
                    h = float(_per_coordinate(mod, name, kind))
                    out[name] = h if math.isfinite(h) else None
    return out
