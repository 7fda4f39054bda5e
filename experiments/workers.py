"""Where a sweep's points run, and how its workers live and die with it.

* **Local workers** are a ``spawn`` :class:`~concurrent.futures.ProcessPoolExecutor`
  whose processes are bound to the sweep process (their parent): each worker asks
  the Linux kernel for ``SIGTERM`` when its parent dies (``prctl(PR_SET_PDEATHSIG)``)
  and runs a watchdog thread that polls :func:`os.getppid` (the portable fallback,
  and the backstop if the signal is handled).  A sweep killed by PID, even with
  ``SIGKILL``, therefore leaves no worker training unsupervised.  Workers ignore
  ``SIGINT``: Ctrl-C at a terminal reaches the whole process group, and the sweep
  (not each worker) decides what happens.
* **SIGINT / SIGTERM on the sweep** (:func:`interrupt_on_signals`) raise
  :class:`SweepInterrupted` in the sweep's main thread; leaving
  :func:`make_executor` with an exception cancels the pending points and stops
  the workers (``SIGTERM``, then ``SIGKILL`` after :data:`STOP_GRACE_SECONDS`).
* **A Dask scheduler** is checked with a bounded TCP connect before the client is
  made, so an unreachable address fails in seconds with :class:`SchedulerError`.
  Tasks already running on Dask workers cannot be killed from the client; the run
  directory lock (:mod:`anisotropy.training.lock`) keeps a rerun from training
  them twice.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import ctypes
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from types import FrameType

__all__ = [
    "SCHEDULER_TIMEOUT_SECONDS",
    "STOP_GRACE_SECONDS",
    "SchedulerError",
    "SweepInterrupted",
    "init_worker",
    "interrupt_on_signals",
    "interrupting_signal",
    "make_executor",
    "stop_process_pool",
]

#: how often a worker checks that its parent is alive: a dead parent is noticed
#: within half a second, at a negligible cost next to a training step
WATCHDOG_SECONDS = 0.5
#: time an orphaned worker leaves a SIGTERM handler (a trainer writing its summary,
#: a few atomic writes) before it exits regardless
EXIT_GRACE_SECONDS = 5.0
#: time the sweep gives stopped workers to exit on SIGTERM before SIGKILL; the
#: same budget as an orphaned worker's, plus the process start-up it may be in
STOP_GRACE_SECONDS = 10.0
#: bound on connecting to a Dask scheduler: a reachable scheduler answers in well
#: under a second on a LAN; Dask's own default (30 s, then a traceback) is the bug
SCHEDULER_TIMEOUT_SECONDS = 10.0
#: time a Dask client may take beyond its connect timeout to finish the handshake
#: with a scheduler that answered (a local round trip: milliseconds)
_HANDSHAKE_SLACK_SECONDS = 2.0
#: exit status of a worker whose parent died (EX_SOFTWARE would mislead; 1 is generic)
_ORPHAN_EXIT_STATUS = 1
#: ``PR_SET_PDEATHSIG`` from ``<linux/prctl.h>``
_PR_SET_PDEATHSIG = 1


class SweepInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM reached the sweep.

    A :class:`KeyboardInterrupt`: no ``except Exception`` counts it as a failed
    point, and a trainer running in the sweep's process (``--workers 0``) treats it
    as Ctrl-C (it records where it stopped, then re-raises).
    """

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(signal.Signals(self.signum).name)

    @property
    def name(self) -> str:
        """``"SIGINT"`` or ``"SIGTERM"``."""
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        """``128 + signal number``: 130 for SIGINT, 143 for SIGTERM (the shell's rule)."""
        return 128 + self.signum


def interrupting_signal(exc: BaseException) -> signal.Signals:
    """The signal behind ``exc`` (a :class:`SweepInterrupted` in its chain of causes),
    SIGINT when there is none (a plain Ctrl-C)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, SweepInterrupted):
            return signal.Signals(seen.signum)
        seen = seen.__cause__ or seen.__context__
    return signal.SIGINT


class SchedulerError(ConnectionError):
    """The Dask scheduler given with ``--scheduler`` cannot be used."""


@contextlib.contextmanager
def interrupt_on_signals(
    signums: Iterable[int] = (signal.SIGINT, signal.SIGTERM),
) -> Iterator[None]:
    """Turn the first of ``signums`` into :class:`SweepInterrupted` in the main thread.

    Later signals are ignored while the sweep stops (a second Ctrl-C must not
    interrupt the clean-up).  Outside the main thread this is a no-op: Python only
    delivers signals there.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if fired:
            return
        fired.append(signum)
        raise SweepInterrupted(signum)

    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# ----------------------------------------------------------------------------- workers


def _set_parent_death_signal(signum: int) -> bool:
    """Ask Linux to send ``signum`` to this process when its parent dies."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)) == 0
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        return False


def _orphaned() -> None:
    """The parent is gone: stop as a terminated process would, then exit regardless."""
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(EXIT_GRACE_SECONDS)
    os._exit(_ORPHAN_EXIT_STATUS)


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(WATCHDOG_SECONDS)
    _orphaned()


def _thread_lock_for_progress_bars() -> None:
    """Give tqdm a thread lock before the trainer's (disabled) progress bar makes a
    multiprocessing one: that lock is registered with the sweep's resource tracker,
    a worker stopped by a signal cannot unregister it, and the tracker then warns of
    a "leaked semaphore" on the sweep's stderr.  A worker has one bar at a time."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency of the trainer
        return
    tqdm.set_lock(threading.RLock())


def init_worker(parent_pid: int) -> None:
    """Initializer of a local worker: die with the sweep process ``parent_pid``.

    The parent-death signal covers a parent killed at any moment; the watchdog
    thread covers platforms without ``prctl`` and a worker whose SIGTERM handler
    does not exit.  A parent that died before this ran is caught by the first check.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the sweep decides on Ctrl-C
    _set_parent_death_signal(signal.SIGTERM)
    _thread_lock_for_progress_bars()
    if os.getppid() != parent_pid:
        _orphaned()
    threading.Thread(
        target=_watch_parent, args=(parent_pid,), name="parent-watchdog", daemon=True
    ).start()


def stop_process_pool(
    executor: cf.ProcessPoolExecutor, *, grace: float = STOP_GRACE_SECONDS
) -> None:
    """Cancel the pending calls of ``executor`` and stop its workers now.

    Workers get SIGTERM (a trainer that handles it records where it stopped) and
    SIGKILL if still alive after ``grace`` seconds.
    """
    # the pool has no public way to stop running calls before Python 3.14
    processes = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + grace
    for p in processes:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join(1.0)


# ----------------------------------------------------------------------------- executors


def check_scheduler(address: str, *, timeout: float = SCHEDULER_TIMEOUT_SECONDS) -> None:
    """Raise :class:`SchedulerError` unless a TCP connection to ``address`` opens
    within ``timeout`` seconds (``tcp://host:port``, ``tls://host:port`` or
    ``host:port``; other protocols are left to Dask)."""
    proto, sep, rest = address.partition("://")
    if not sep:
        proto, rest = "tcp", address
    if proto not in ("tcp", "tls"):
        return
    host, colon, port = rest.rpartition(":")
    host = host.strip("[]")
    if not colon or not host or not port.isdigit():
        raise SchedulerError(
            f"--scheduler {address!r} is not an address; expected tcp://HOST:PORT, "
            "e.g. tcp://10.0.0.1:8786"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise SchedulerError(
            f"--scheduler {address}: no Dask scheduler reachable ({reason}, "
            f"waited at most {timeout:g} s); start one with 'dask scheduler' or check the address"
        ) from None


def _connect(address: str, timeout: float) -> object:
    check_scheduler(address, timeout=timeout)  # before importing Dask (seconds)
    try:
        from dask.distributed import Client
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise SchedulerError(
            "--scheduler needs dask.distributed: pip install 'anisotropy[dist]'"
        ) from exc
    # Dask bounds the TCP connect by ``timeout`` but not its handshake: a peer that
    # accepts and stays silent would block forever, so the client starts in a thread
    # that is abandoned (a daemon) if it has not connected in time
    box: dict[str, object] = {}

    def start() -> None:
        try:
            box["client"] = Client(address, timeout=timeout, set_as_default=False)
        except Exception as exc:  # anything that is not a scheduler answering in time
            box["error"] = exc

    starter = threading.Thread(target=start, name="dask-connect", daemon=True)
    starter.start()
    starter.join(timeout + _HANDSHAKE_SLACK_SECONDS)
    if "client" in box:
        return box["client"]
    why = (
        f"{type(box['error']).__name__}: {box['error']}"
        if "error" in box
        else f"it accepted the connection but did not answer within {timeout:g} s"
    )
    raise SchedulerError(f"--scheduler {address}: not a usable Dask scheduler ({why})")


@contextlib.contextmanager
def make_executor(
    *,
    workers: int = 1,
    scheduler: str | None = None,
    scheduler_timeout: float = SCHEDULER_TIMEOUT_SECONDS,
) -> Iterator[cf.Executor | None]:
    """Executor for a sweep: Dask (``scheduler`` address) or ``workers`` local processes.

    ``workers = 0`` yields ``None``: the points then run in this process, one after
    the other.  Leaving the block with an exception (:class:`SweepInterrupted`
    included) cancels the pending points and stops the local workers at once;
    leaving it normally waits for them.

    Raises
    ------
    ValueError
        If ``workers`` is not an integer >= 0.
    SchedulerError
        If ``scheduler`` cannot be reached within ``scheduler_timeout`` seconds.
    """
    if scheduler:
        client = _connect(scheduler, scheduler_timeout)
        executor = client.get_executor(pure=False)  # type: ignore[attr-defined]
        try:
            yield executor
        except BaseException:
            executor.shutdown(wait=False)  # cancels what has not started
            raise
        finally:
            client.close()  # type: ignore[attr-defined]
        return
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an integer >= 0, got {workers!r}")
    if workers == 0:
        yield None
        return
    # spawn, not fork: a forked child of a process that already runs torch threads
    # can deadlock; the price is one torch import per worker
    pool = cf.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=init_worker,
        initargs=(os.getpid(),),
    )
    try:
        yield pool
    except BaseException:
        stop_process_pool(pool)
        raise
    pool.shutdown(wait=True)
