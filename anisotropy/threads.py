"""torch's intra-op thread count for a block of code: the one helper the trainer and the
sweep use (a sweep point running in the calling process must not leave it changed)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["torch_threads"]


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Set ``torch.set_num_threads(n)`` for the block and restore the previous count after.

    Parameters
    ----------
    n : int or None
        Threads (``>= 1``); ``None`` leaves torch's setting alone (and does not import torch).

    Raises
    ------
    ValueError
        If ``n`` is not ``None`` or an integer ``>= 1``.
    """
    if n is None:
        yield
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be an integer >= 1 (or None), got {n!r}")
    import torch  # only when a count is set: callers stay importable without torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
