"""Trainer callbacks: observe (or stop) a run without patching the trainer's internals.

A callback is any object with one or both of the methods

* ``on_step(state)`` - after every optimiser step (``state.step`` already counts it);
* ``on_epoch(state, record)`` - after every logging period (every epoch with
  ``logging.log_every = 1``), once ``record`` (the dict of one ``log.jsonl`` line)
  has been written and the checkpoint, when one is due, saved.

Pass them as ``train(cfg, out_dir, callbacks=[...])``; they are called in order.
Subclass :class:`Callback` to define only the method you need.

A callback may change the model in place (e.g. to inject a fault in a test).  A
callback that raises an :class:`Exception` stops the run cleanly: the status is
``"stopped: callback on_step raised ValueError: ..."``, ``summary.json`` is written
and the last checkpoint and log lines are kept, so the run can be resumed.  A
``KeyboardInterrupt`` (or another ``BaseException``) propagates as an interrupt would,
leaving the files of the last completed checkpoint as a killed process does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = ["TrainState", "Callback", "TrainCallback", "CallbackError"]


@dataclass
class TrainState:
    """What a callback sees; one object per run, updated in place.

    Attributes
    ----------
    epoch : int
        Epochs completed (during epoch ``e``'s steps, ``e - 1``).
    step : int
        Optimiser steps completed since the start of the run (resumes included).
    model : torch.nn.Module
        The network being trained (on the run's device).
    optimizer : torch.optim.Optimizer
        Its optimiser.
    loss : torch.Tensor or None
        The loss optimised at the last step (a detached 0-d tensor, possibly on the
        GPU: ``float(state.loss)`` synchronises); ``None`` before the first step.
    record : dict or None
        The last ``log.jsonl`` record written; ``None`` before the first.
    """

    epoch: int
    step: int
    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss: torch.Tensor | None = None
    record: dict[str, Any] | None = None


@runtime_checkable
class TrainCallback(Protocol):
    """Structural type of a callback: ``on_step`` and ``on_epoch`` (see the module)."""

    def on_step(self, state: TrainState) -> None: ...

    def on_epoch(self, state: TrainState, record: dict[str, Any]) -> None: ...


class Callback:
    """Base class with no-op hooks: override ``on_step`` and/or ``on_epoch``."""

    def on_step(self, state: TrainState) -> None:
        """Called after every optimiser step."""

    def on_epoch(self, state: TrainState, record: dict[str, Any]) -> None:
        """Called after every logging period with its ``log.jsonl`` record."""


class CallbackError(RuntimeError):
    """A callback raised: the run stops cleanly (the message names the hook and the error)."""
