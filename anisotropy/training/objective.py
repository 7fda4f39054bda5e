r"""The training objective: what the network is asked to output, the loss it is trained
on, and what the evaluation reports (the one definition of the objective vocabulary).

Two objectives, selected by the network (``model.name``, :func:`objective_of`):

* **classification** (every classifier: ``mlp``, ``cnn_table24``, ``cnn_table25``): the
  targets are the class labels ``y`` (int64, shape ``(B,)``), the loss is the
  cross-entropy of the logits ``z`` (shape ``(B, C)``),

  .. math::  L = \frac1B \sum_i \Big(\log \sum_c e^{z_{ic}} - z_{i y_i}\Big),

  (:func:`torch.nn.functional.cross_entropy`, exactly the call the trainer always made)
  and the evaluation reports the accuracy, the fraction of samples with
  :math:`\arg\max_c z_{ic} = y_i`;
* **reconstruction** (``autoencoder``): the targets are the inputs themselves,
  normalised as the network sees them (``data.normalize``) and flattened to
  ``u`` of shape ``(B, D)``; the loss is the mean squared error of the output ``v``
  (shape ``(B, D)``),

  .. math::  L = \frac1B \sum_i \ell_i,\qquad \ell_i = \frac1D \sum_{j} (v_{ij} - u_{ij})^2,

  and there is no accuracy (the log's accuracies are ``null``).  With the default
  ``"standard"`` normalisation the pixels have mean 0 and variance 1 over the training
  set, so the constant output 0 has a loss of about 1: the loss is the fraction of the
  pixel variance left unexplained.

The labels stay in the data (the evaluation split, the flatness subset), but a
reconstruction never reads them.
"""

from __future__ import annotations

from typing import ClassVar, Literal, get_args

import torch
import torch.nn.functional as F

from anisotropy.models import ModelName

__all__ = [
    "ObjectiveName",
    "OBJECTIVES",
    "Reduction",
    "Objective",
    "Classification",
    "Reconstruction",
    "CLASSIFICATION",
    "RECONSTRUCTION",
    "objective_of",
    "get_objective",
]

#: the training objectives (the one definition)
ObjectiveName = Literal["classification", "reconstruction"]
OBJECTIVES: tuple[ObjectiveName, ...] = get_args(ObjectiveName)
#: how the per-sample losses of a batch are combined: their mean (the training loss) or
#: their sum (the evaluation, which divides by the number of samples at the end)
Reduction = Literal["mean", "sum"]
_REDUCTIONS: tuple[Reduction, ...] = get_args(Reduction)


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {list(_REDUCTIONS)}, got {reduction!r}")


class Objective:
    """One objective: targets, loss and correct count (module docstring).

    Subclasses set :attr:`name` and :attr:`has_accuracy` and implement the three methods.
    """

    #: the objective's name (:data:`ObjectiveName`)
    name: ClassVar[ObjectiveName]
    #: whether the evaluation reports an accuracy
    has_accuracy: ClassVar[bool]

    def targets(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The targets of a minibatch whose normalised inputs are ``x`` (shape ``(B, ...)``)
        and whose labels are ``labels`` (shape ``(B,)``)."""
        raise NotImplementedError

    def loss(
        self, output: torch.Tensor, targets: torch.Tensor, *, reduction: Reduction = "mean"
    ) -> torch.Tensor:
        """The loss of ``output`` (the network's, shape ``(B, ...)``) against ``targets``: the
        mean (``"mean"``) or the sum (``"sum"``) of the per-sample losses; a scalar."""
        raise NotImplementedError

    def correct(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The number of correctly classified samples (a 0-d tensor; 0 without accuracy)."""
        raise NotImplementedError

    def __call__(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean loss: the ``base_loss(output, targets)`` of a smoothed loss."""
        return self.loss(output, targets)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Classification(Objective):
    """Cross-entropy of the logits against the class labels, and the accuracy."""

    name: ClassVar[ObjectiveName] = "classification"
    has_accuracy: ClassVar[bool] = True

    def targets(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The labels themselves (the same tensor)."""
        return labels

    def loss(
        self, output: torch.Tensor, targets: torch.Tensor, *, reduction: Reduction = "mean"
    ) -> torch.Tensor:
        """:func:`torch.nn.functional.cross_entropy` of logits ``(B, C)`` and labels ``(B,)``."""
        _check_reduction(reduction)
        if reduction == "mean":  # the historical call, bit for bit
            return F.cross_entropy(output, targets)
        return F.cross_entropy(output, targets, reduction="sum")

    def correct(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``sum_i [argmax_c output_ic == targets_i]``."""
        return (output.argmax(dim=1) == targets).sum()


class Reconstruction(Objective):
    """Mean squared error of the output against the flattened normalised input."""

    name: ClassVar[ObjectiveName] = "reconstruction"
    has_accuracy: ClassVar[bool] = False

    def targets(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``x`` flattened to ``(B, D)``, ``D`` the number of input features."""
        return x.flatten(1)

    def loss(
        self, output: torch.Tensor, targets: torch.Tensor, *, reduction: Reduction = "mean"
    ) -> torch.Tensor:
        r"""Mean (over samples) or sum of :math:`\ell_i = \frac1D \sum_j (v_{ij} - u_{ij})^2`
        for ``output`` ``v`` and ``targets`` ``u`` of shape ``(B, D)``."""
        _check_reduction(reduction)
        if output.shape != targets.shape:
            raise ValueError(
                f"reconstruction: the output shape {tuple(output.shape)} must equal the "
                f"target shape {tuple(targets.shape)} (an autoencoder's output)"
            )
        if reduction == "mean":  # every sample has D features: the mean over all entries
            return F.mse_loss(output, targets)
        per_sample = (output - targets).square().flatten(1).mean(dim=1)
        return per_sample.sum()

    def correct(self, output: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """0: a reconstruction has no accuracy."""
        return torch.zeros((), dtype=torch.int64, device=output.device)


#: the objectives' instances (they hold no state)
CLASSIFICATION = Classification()
RECONSTRUCTION = Reconstruction()
_BY_NAME: dict[str, Objective] = {o.name: o for o in (CLASSIFICATION, RECONSTRUCTION)}
#: the objective of each network that is not a classifier
_MODEL_OBJECTIVE: dict[str, ObjectiveName] = {"autoencoder": "reconstruction"}


def objective_of(model_name: ModelName) -> ObjectiveName:
    """The objective a network is trained on: ``"reconstruction"`` for the autoencoder,
    ``"classification"`` for every other network of :mod:`anisotropy.models`."""
    return _MODEL_OBJECTIVE.get(model_name, "classification")


def get_objective(name: ObjectiveName) -> Objective:
    """The :class:`Objective` called ``name`` (one of :data:`OBJECTIVES`)."""
    if name not in _BY_NAME:
        raise ValueError(f"objective must be one of {list(OBJECTIVES)}, got {name!r}")
    return _BY_NAME[name]
