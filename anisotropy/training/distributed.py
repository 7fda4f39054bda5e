"""Data-parallel training over ``torch.distributed`` processes (``torchrun``).

``torchrun --standalone --nproc_per_node N -m anisotropy train CONFIG --out DIR``
starts ``N`` processes (ranks) that train *one* run together.  Every rank holds the
whole model, reads the same data in the same order (same data generator) and draws
the same perturbations (same perturbation generator, checked at the start); each
takes a contiguous shard of every minibatch.  The per-configuration losses ``L_a``
of the smoothed loss (eqs 22-23 of the paper) and the gradients are summed over the
ranks with weights ``n_r / B`` (shard size over minibatch size), so the update is
that of one process on the whole minibatch, up to the floating-point order of the
sums (:mod:`anisotropy.training.step`).  Rank 0 alone evaluates and writes the run
directory; the others wait for it.

:class:`Context` is the rank's view: a single-process run has ``world_size = 1`` and
no process group (every collective below is then the identity).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["Context", "open_context", "shard_bounds", "ENV_KEYS"]

#: environment variables set by ``torchrun`` that make a process one of several ranks
ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")

#: exception types a rank re-raises when rank 0 failed to set the run up (others:
#: RuntimeError); the command line turns the first three into exit status 2
_ERROR_TYPES: dict[str, type[Exception]] = {
    "ValueError": ValueError,
    "FileNotFoundError": FileNotFoundError,
    "FileExistsError": FileExistsError,
    "RunDirLocked": FileExistsError,
}

T = TypeVar("T")


def _env_int(key: str) -> int:
    raw = os.environ[key]
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {key} must be an integer, got {raw!r}") from None


def shard_bounds(batch: int, parts: int, index: int) -> tuple[int, int]:
    """``[lo, hi)`` of part ``index`` of ``parts`` contiguous slices of a batch of ``batch``.

    Equal slices when ``parts`` divides ``batch``; otherwise the first ``batch % parts``
    slices hold one sample more (the last, shorter minibatch of an epoch).

    Raises
    ------
    ValueError
        If a slice would be empty (``batch < parts``) or ``index`` is out of range.
    """
    if not 0 <= index < parts:
        raise ValueError(f"index must be in [0, {parts - 1}], got {index}")
    if batch < parts:
        raise ValueError(
            f"a minibatch of {batch} samples cannot be split into {parts} non-empty parts"
        )
    size, extra = divmod(batch, parts)
    lo = index * size + min(index, extra)
    return lo, lo + size + (index < extra)


@dataclass
class Context:
    """This process's place in a data-parallel run.

    Attributes
    ----------
    rank, world_size, local_rank : int
    device : torch.device
        The rank's device (``cuda:LOCAL_RANK`` for a CUDA run of several ranks).
    owns_group : bool
        Whether :func:`open_context` created the process group (and :meth:`close`
        destroys it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the rank that evaluates and writes the run directory."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        """More than one rank (collectives are real)."""
        return self.world_size > 1

    def close(self, *, finished: bool = True) -> None:
        """Destroy the process group if this context created it; when every rank
        ``finished`` (no exception), after a barrier, so that no rank tears its
        connections down while another still uses them."""
        if self.owns_group and dist.is_initialized():
            if finished:
                dist.barrier()
            dist.destroy_process_group()
        self.owns_group = False

    # ------------------------------------------------------------------ collectives
    def _comm(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` on the device the backend communicates from (NCCL: the GPU)."""
        return t.to(self.device) if dist.get_backend() == "nccl" else t

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """The sum of ``t`` over the ranks (a new tensor; ``t`` itself when alone)."""
        if not self.parallel:
            return t
        buf = self._comm(t.detach().clone())
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
        return buf.to(t.device)

    def sum_gradients(self, params: list[nn.Parameter]) -> None:
        """Replace every ``p.grad`` by its sum over the ranks (one flat buffer per dtype).

        A parameter without a gradient counts as a zero gradient (so that the ranks
        stay in step).
        """
        if not self.parallel:
            return
        by_dtype: dict[torch.dtype, list[nn.Parameter]] = {}
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            by_dtype.setdefault(p.grad.dtype, []).append(p)
        for group in by_dtype.values():
            flat = torch.cat([p.grad.reshape(-1) for p in group])  # type: ignore[union-attr]
            flat = self._comm(flat)
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            offset = 0
            for p in group:
                n = p.numel()
                p.grad.copy_(flat[offset : offset + n].view_as(p))  # type: ignore[union-attr]
                offset += n

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on some rank (every rank must call it)."""
        if not self.parallel:
            return flag
        return bool(self.all_reduce_sum(torch.tensor([float(flag)], dtype=torch.float64)) > 0)

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (any picklable object)."""
        if not self.parallel:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def broadcast_module(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers into every rank's ``module``."""
        if not self.parallel:
            return
        with torch.no_grad():
            for t in [*module.parameters(), *module.buffers()]:
                buf = self._comm(t.detach().clone())
                dist.broadcast(buf, src=0)
                t.copy_(buf)

    def check_same(self, what: str, state: torch.Tensor) -> None:
        """Raise RuntimeError on every rank unless ``state`` is equal on all of them.

        Used for the generator states: equal states draw equal minibatch orders and
        perturbations on every rank (same device type).
        """
        if not self.parallel:
            return
        mine = state.detach().to(torch.float64).reshape(-1).cpu()
        ref = self.broadcast(mine)
        differs = self.any(ref.shape != mine.shape or not torch.equal(ref, mine))
        if differs:
            raise RuntimeError(
                f"the {what} differs between the ranks; every rank must hold the same "
                "one (same seed and checkpoint)"
            )

    def on_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 and give its result to every rank; an exception raised
        there is raised on every rank (its type when a ValueError, FileNotFoundError or
        FileExistsError, else RuntimeError), so no rank waits for a failed one."""
        if not self.parallel:
            return fn()
        outcome: tuple[str, Any]
        if self.is_main:
            try:
                outcome = ("ok", fn())
            except Exception as exc:
                self.broadcast(("error", (type(exc).__name__, str(exc))))
                raise
            self.broadcast(outcome)
            result: T = outcome[1]
            return result
        empty: tuple[str, Any] = ("", None)
        kind, value = self.broadcast(empty)
        if kind == "error":
            name, message = value
            raise _ERROR_TYPES.get(name, RuntimeError)(f"rank 0: {message}")
        received: T = value
        return received


def _resolve_device(device: str, local_rank: int, world_size: int) -> torch.device:
    dev = torch.device(device)
    if world_size > 1 and dev.type == "cuda":
        if dev.index is not None:
            raise ValueError(
                f"device = {device!r}: with several ranks set device = 'cuda'; each rank "
                "then takes cuda:LOCAL_RANK"
            )
        return torch.device("cuda", local_rank)
    if world_size > 1 and dev.type not in ("cpu", "cuda"):
        raise ValueError(
            f"device = {device!r}: several ranks run on 'cpu' (gloo) or 'cuda' (NCCL) only"
        )
    return dev


def open_context(device: str) -> Context:
    """The rank's :class:`Context`, from ``torchrun``'s environment.

    Without ``WORLD_SIZE`` (a plain process) or with ``WORLD_SIZE = 1``: a single-process
    context.  Otherwise the default process group is initialised from the environment
    (``env://``: ``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``) with the
    gloo backend on CPU and NCCL on CUDA, unless the caller initialised one already
    (it is then used and left open).

    Raises
    ------
    ValueError
        On malformed variables, a world size that does not match an existing
        process group, or a device that cannot be shared by several ranks.
    """
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else rank
        dev = _resolve_device(device, local, world)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        return Context(rank, world, local, dev, owns_group=False)
    if "WORLD_SIZE" not in os.environ or _env_int("WORLD_SIZE") == 1:
        return Context(device=torch.device(device))
    missing = [k for k in ENV_KEYS if k not in os.environ]
    if missing:
        raise ValueError(
            f"WORLD_SIZE is set but {', '.join(missing)} is not: start several ranks with "
            "torchrun --nproc_per_node N -m anisotropy train ..."
        )
    if not dist.is_available():
        raise ValueError("this torch build has no torch.distributed; run one process")
    rank, world, local = (_env_int(k) for k in ENV_KEYS)
    dev = _resolve_device(device, local, world)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world)
    return Context(rank, world, local, dev, owns_group=True)
