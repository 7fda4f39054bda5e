"""One writer per run directory: an advisory lock held for the whole training run.

A run directory (``log.jsonl``, ``checkpoint.pt``, ``summary.json``) must have at
most one writer: two processes appending to one log duplicate epochs, and the
cooling analysis then refuses the log.  :class:`RunLock` takes an exclusive
``fcntl.flock`` on ``<run_dir>/.lock`` and keeps the file descriptor open until
released.  The kernel drops the lock when the holder exits, however it exits
(SIGKILL included), so a stale lock never blocks a rerun; the pid written into the
file is only for the error message.

A second writer either fails at once with :class:`RunDirLocked` (``wait=0``, the
default) or waits up to ``wait`` seconds, polling every :data:`POLL_SECONDS`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import TracebackType
from typing import IO

try:  # POSIX; see RunLock for the fallback
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["RunDirLocked", "RunLock", "LOCK_NAME", "POLL_SECONDS"]

#: name of the lock file inside a run directory
LOCK_NAME = ".lock"
#: polling interval while waiting for a lock; a training step is ~10-100 ms, a
#: run lasts minutes, so a quarter second is responsive without busy-waiting
POLL_SECONDS = 0.25


class RunDirLocked(RuntimeError):
    """Another process holds the run directory's lock (it is training there now)."""

    def __init__(self, run_dir: Path, holder: str) -> None:
        self.run_dir = run_dir
        self.holder = holder
        super().__init__(
            f"run directory {run_dir} is in use by another process ({holder}); "
            "wait for it to finish or stop it, then rerun (only one writer per run directory)"
        )


class RunLock:
    """Exclusive lock on a run directory, as a context manager.

    Parameters
    ----------
    run_dir : path
        The run directory (created if missing).
    wait : float, keyword-only
        Seconds to wait for a held lock before raising :class:`RunDirLocked`;
        ``0`` fails at once.

    Notes
    -----
    Advisory: only processes that take the lock are excluded (every writer in this
    package does).  Without ``fcntl`` (Windows) the lock is a no-op and a warning
    is not raised; the sweep's own bookkeeping then is the only guard.
    """

    def __init__(self, run_dir: str | Path, *, wait: float = 0.0) -> None:
        if not (wait >= 0.0):
            raise ValueError(f"wait must be a number of seconds >= 0, got {wait!r}")
        self.run_dir = Path(run_dir)
        self.wait = float(wait)
        self._fh: IO[str] | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fh is not None

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`RunDirLocked`; returns ``self``."""
        if self._fh is not None:
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / LOCK_NAME
        fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
        if fcntl is None:  # pragma: no cover - Windows
            self._fh = fh
            return self
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    fh.seek(0)
                    holder = fh.read().strip() or "pid unknown"
                    fh.close()
                    raise RunDirLocked(self.run_dir, holder) from None
                time.sleep(POLL_SECONDS)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        """Release the lock (idempotent); the lock file stays, empty of meaning."""
        fh, self._fh = self._fh, None
        if fh is None:
            return
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
