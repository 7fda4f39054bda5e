"""Restricted unpickling of data set files (the CIFAR10 python batches).

A pickle is a program: its ``GLOBAL``/``STACK_GLOBAL`` opcodes import any callable
and ``REDUCE`` calls it, so ``pickle.load`` on a file from a user-given directory
runs whatever code the file names.  :func:`load_data_pickle` reads with an
unpickler whose ``find_class`` admits only the few globals a CIFAR10 batch holds
(its dicts, lists, bytes, str and int need no global at all):

* ``numpy.core.multiarray._reconstruct`` (``numpy._core`` in numpy 2), ``numpy.ndarray``
  and ``numpy.dtype`` - a numpy array pickled with protocols 0-4 (the original
  batches are Python 2 protocol-2 pickles);
* ``numpy.core.numeric._frombuffer`` (``numpy._core`` in numpy 2) - a numpy array
  pickled with protocol 5;
* ``_codecs.encode`` - how Python 3 stores ``bytes`` in protocols 0-2.

Anything else is refused with a :class:`ValueError` naming the file, before it is
imported or called.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["ALLOWED_GLOBALS", "DataUnpickler", "load_data_pickle"]

#: (module, name) pairs a data set pickle may reference -> where the object lives
#: (numpy 2 moved numpy.core to numpy._core; both spellings occur in real files)
ALLOWED_GLOBALS: dict[tuple[str, str], tuple[tuple[str, ...], str]] = {
    **{
        (mod, "_reconstruct"): (("numpy._core.multiarray", "numpy.core.multiarray"), "_reconstruct")
        for mod in ("numpy.core.multiarray", "numpy._core.multiarray")
    },
    **{
        (mod, "_frombuffer"): (("numpy._core.numeric", "numpy.core.numeric"), "_frombuffer")
        for mod in ("numpy.core.numeric", "numpy._core.numeric")
    },
    ("numpy", "ndarray"): (("numpy",), "ndarray"),
    ("numpy", "dtype"): (("numpy",), "dtype"),
    ("_codecs", "encode"): (("_codecs",), "encode"),
}


class _Refused(ValueError):
    """A global or persistent id outside what a data set pickle holds."""


def _resolve(modules: tuple[str, ...], name: str) -> Callable[..., Any]:
    """The first of ``module.name`` that imports (numpy 2 spelling first: no
    deprecation warning from the ``numpy.core`` shim)."""
    for mod in modules:
        try:
            return getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"none of {', '.join(f'{m}.{name}' for m in modules)} is importable")


class DataUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only :data:`ALLOWED_GLOBALS`.

    Parameters
    ----------
    file : binary file object
    path : str or Path
        The file's name, for the error messages.
    what : str
        What the file should be (e.g. ``"CIFAR10 batch"``), for the error messages.
    """

    def __init__(self, file: Any, *, path: str | Path, what: str) -> None:
        super().__init__(file, encoding="bytes")  # Python 2 str -> bytes, as the format needs
        self.path = str(path)
        self.what = what

    def find_class(self, module: str, name: str) -> Any:
        """Resolve an allowed global; refuse every other one (ValueError naming the file)."""
        target = ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise _Refused(
                f"{self.path}: refused to load: the pickle references {module}.{name}, "
                f"which a {self.what} never holds (it holds only dicts, lists, bytes, str, "
                "int and numpy arrays); the file is damaged or crafted to run code"
            )
        return _resolve(*target)

    def persistent_load(self, pid: Any) -> Any:
        """Refuse persistent ids (a data set pickle has none)."""
        raise _Refused(f"{self.path}: refused to load: a {self.what} has no persistent ids")


def load_data_pickle(path: str | Path, *, what: str) -> Any:
    """Unpickle the data set file ``path`` with :class:`DataUnpickler`.

    Raises
    ------
    ValueError
        Naming the file, if the pickle references anything outside
        :data:`ALLOWED_GLOBALS` or is not a readable pickle (truncated, corrupt).
    """
    with open(path, "rb") as fh:
        try:
            return DataUnpickler(fh, path=path, what=what).load()
        except _Refused:
            raise
        except (
            pickle.UnpicklingError,
            EOFError,
            ValueError,
            TypeError,
            AttributeError,
            IndexError,
            KeyError,
            OverflowError,
        ) as exc:  # what a truncated or corrupt pickle raises
            raise ValueError(f"{path}: not a readable {what} ({exc})") from None
