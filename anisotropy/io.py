"""Every file the package writes, and its one JSON-lines reader; all crash-safe.

* ``log.jsonl`` - one JSON object per line, appended, flushed and fsynced, so a
  killed run loses at most the line being written; :func:`append_jsonl` returns
  the byte position after the line, which checkpoints store so that a resumed
  run can cut the log back to the checkpoint (:func:`truncate_log`).
* every other file (``summary.json``, ``config.toml``, results tables, reports,
  figures, checkpoints) - written atomically: a temporary file in the same
  directory, fsync, ``os.replace`` (:func:`write_atomic` and the typed writers
  :func:`write_text_atomic`, :func:`write_json_atomic`, :func:`write_jsonl_atomic`,
  :func:`write_csv_atomic`, :func:`save_figure_atomic`, :func:`save_checkpoint`);
* an output directory given by the user is checked before any work starts
  (:func:`check_output_dir`), so a command never computes for minutes and then fails.

Non-finite numbers: one policy
------------------------------
Files hold strict JSON (RFC 8259 has no ``NaN`` / ``Infinity``).  Every JSON writer
refuses a NaN or +-inf with a ValueError naming the offending key
(:func:`check_record`); a training run that produces one stops (``docs/trainer.md``).
A result in which "no value" is a legitimate outcome (a fit that did not converge)
says so explicitly: :func:`nonfinite_to_null` turns such numbers into ``null``
before writing.  Configurations keep +-inf as the strings ``"inf"`` / ``"-inf"``
(:func:`anisotropy.training.config.config_to_dict`), which the configuration reader
accepts back.  The reader is lenient: logs written by other tools may hold ``NaN``
tokens, and the analyses report them rather than fail.

Torn last line: one rule
------------------------
A crash while appending leaves a last line without its terminating newline.
:func:`read_jsonl` ignores such a line when it does not parse; every other line
that is not a JSON object raises ValueError naming the file and the line number.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = [
    "check_record",
    "nonfinite_to_null",
    "append_jsonl",
    "iter_jsonl",
    "read_jsonl",
    "truncate_log",
    "write_atomic",
    "write_text_atomic",
    "write_json_atomic",
    "write_jsonl_atomic",
    "write_csv_atomic",
    "save_figure_atomic",
    "save_checkpoint",
    "load_checkpoint",
    "check_output_dir",
]


def check_record(record: Any, where: str = "record") -> None:
    """Raise ValueError if a (nested) number in ``record`` is NaN or +-inf."""
    if isinstance(record, dict):
        for k, v in record.items():
            check_record(v, f"{where}.{k}")
    elif isinstance(record, (list, tuple)):
        for i, v in enumerate(record):
            check_record(v, f"{where}[{i}]")
    elif isinstance(record, float) and not math.isfinite(record):
        raise ValueError(f"{where} is {record}; logs must hold finite numbers")


def nonfinite_to_null(obj: Any) -> Any:
    """A copy of ``obj`` ready for strict JSON: NaN / +-inf become ``None`` (``null``).

    Recurses into dicts (keys become strings), lists / tuples and arrays (which
    become lists); numpy / torch scalars become Python numbers.  Use it where a missing number is
    a legitimate result; the writers themselves refuse non-finite values.
    """
    if isinstance(obj, Mapping):
        return {str(k): nonfinite_to_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [nonfinite_to_null(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if getattr(obj, "ndim", 0) and hasattr(obj, "tolist"):  # numpy array / torch tensor
        return nonfinite_to_null(obj.tolist())
    if hasattr(obj, "item") and getattr(obj, "shape", None) == ():  # numpy / torch scalar
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def append_jsonl(path: str | Path, record: dict[str, Any]) -> int:
    """Append ``record`` as one line; flush and fsync. Returns the file size after it."""
    check_record(record)
    line = json.dumps(record, allow_nan=False) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())
        return fh.tell()


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, record)`` for each JSON object of a JSON-lines file.

    Blank lines are skipped.  A last line without its terminating newline that
    does not parse is a write torn by a crash and is ignored (the module's one
    rule); ``NaN`` / ``Infinity`` tokens are read as floats.

    Raises
    ------
    ValueError
        If any other line is not valid JSON, or is valid JSON but not an object;
        the message names ``path:line``.
    """
    text = Path(path).read_text(encoding="utf-8")
    lines = text.split("\n")
    # text ending in "\n" splits into a last empty string: every real line was terminated
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            if i == len(lines) - 1:  # not terminated by a newline: torn by a crash
                return
            raise ValueError(f"{path}:{i + 1}: not valid JSON ({exc.msg})") from None
        if not isinstance(rec, dict):
            raise ValueError(
                f"{path}:{i + 1}: a JSON-lines record must be an object, got {type(rec).__name__}"
            )
        yield i + 1, rec


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file (see :func:`iter_jsonl` for the torn-line rule)."""
    return [rec for _, rec in iter_jsonl(path)]


def truncate_log(path: str | Path, position: int) -> None:
    """Cut ``path`` back to ``position`` bytes (a position returned by :func:`append_jsonl`)."""
    p = Path(path)
    size = p.stat().st_size if p.exists() else 0
    if position > size:
        raise ValueError(
            f"{p}: checkpoint log position {position} is past the end ({size} bytes); "
            "the log does not belong to this checkpoint"
        )
    with open(p, "r+b") as fh:
        fh.truncate(position)
        fh.flush()
        os.fsync(fh.fileno())


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(fh)`` on a binary handle to a temporary file next to ``path``,
    fsync it and ``os.replace`` it into place: a reader (or a crash) never sees a
    half-written file.  The parent directory is created if needed; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a fresh name opened with "xb" gets the usual 0666 & ~umask permissions
    tmp = str(path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (tmp + fsync + os.replace); returns the path.

    The parent directory is created if needed.  Every text result of the package
    (logs' side files, results tables, figure tables, claims) goes through here.
    """
    return write_atomic(path, lambda fh: fh.write(text.encode("utf-8")))


def write_json_atomic(
    path: str | Path, obj: Any, *, indent: int = 2, sort_keys: bool = False
) -> Path:
    """Write ``obj`` as indented strict JSON, atomically; returns the path.

    Raises
    ------
    ValueError
        If a number in ``obj`` is NaN or +-inf (see the module's policy; map
        legitimately missing numbers with :func:`nonfinite_to_null` first).
    """
    check_record(obj, Path(path).name)
    return write_text_atomic(
        path, json.dumps(obj, indent=indent, sort_keys=sort_keys, allow_nan=False) + "\n"
    )


def write_jsonl_atomic(path: str | Path, records: Iterable[dict[str, Any]]) -> Path:
    """Write ``records`` as a whole JSON-lines file, atomically (strict JSON, as
    :func:`append_jsonl`); returns the path."""
    lines = []
    for i, rec in enumerate(records):
        check_record(rec, f"{Path(path).name}[{i}]")
        lines.append(json.dumps(rec, allow_nan=False) + "\n")
    return write_text_atomic(path, "".join(lines))


def write_csv_atomic(
    path: str | Path, rows: Iterable[Mapping[str, Any]], columns: Sequence[str]
) -> Path:
    """Write ``rows`` (dicts) as CSV with the header ``columns``, atomically.

    A missing key is an empty cell; a key outside ``columns`` raises ValueError.
    Cells are written with :func:`str` (format numbers before, e.g. ``repr``).
    """
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="raise", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c, "") for c in columns})
    return write_text_atomic(path, buf.getvalue())


def save_figure_atomic(fig: Any, path: str | Path, **savefig_kwargs: Any) -> Path:
    """``fig.savefig`` to ``path`` atomically (format from the suffix, e.g. ``.png``,
    ``.pdf``); ``savefig_kwargs`` go to matplotlib (``dpi``, ``bbox_inches``).

    Works with any object whose ``savefig(fh, format=...)`` writes to a binary handle.
    """
    path = Path(path)
    fmt = savefig_kwargs.pop("format", None) or path.suffix.lstrip(".").lower()
    if not fmt:
        raise ValueError(f"path {str(path)!r} has no suffix; pass format= (e.g. 'png')")
    return write_atomic(path, lambda fh: fig.savefig(fh, format=fmt, **savefig_kwargs))


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save(state)`` atomically: a crash leaves the previous checkpoint intact."""
    import torch  # only checkpoints need torch; logs and results stay importable without it

    write_atomic(path, lambda fh: torch.save(state, fh))


#: characters of the underlying reason kept in a checkpoint error (one readable line)
_REASON_CHARS = 160


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    The file is read with ``torch.load(weights_only=True)``: its pickle may hold
    only tensors, numbers, strings and plain containers, so a crafted file cannot
    run code (an object of any other type is refused, never constructed).

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a file.
    ValueError
        If the file is truncated, corrupt, not a checkpoint, or holds objects a
        checkpoint never holds; the message names the file and how to recover.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {str(p)!r} does not exist")
    import pickle

    import torch

    recover = "delete it to start the run over, or put back a good copy"
    try:
        with warnings.catch_warnings():
            # torch.save writes protocol 2; another protocol means a foreign file, which
            # the errors below report (torch's warning would only add noise)
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            ck = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        what = (
            f"it holds a Python object ({found.group(1)}) that no checkpoint holds; "
            "refused, not executed"
            if found
            else "it is not a valid checkpoint pickle"
        )
        raise ValueError(f"cannot read checkpoint {str(p)!r}: {what}; {recover}") from None
    except Exception as exc:  # any failure to parse the file means it is damaged
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        reason = reason.split(". ")[0][:_REASON_CHARS]
        raise ValueError(
            f"cannot read checkpoint {str(p)!r}: it is truncated or corrupt ({reason}); {recover}"
        ) from None
    if not isinstance(ck, dict):
        raise ValueError(
            f"cannot read checkpoint {str(p)!r}: it holds a {type(ck).__name__}, not the "
            f"dict a checkpoint holds; {recover}"
        )
    return ck


# ------------------------------------------------------------ output directories
def check_output_dir(path: str | os.PathLike[str], *, option: str = "--out") -> Path:
    """Return ``Path(path)`` if it is, or can be created as, a writable directory.

    Nothing is created: the first existing ancestor must be a directory the user
    may write to (or ``path`` itself an existing directory).

    Raises
    ------
    ValueError
        Naming ``option`` and the path when ``path`` is an existing file, lies below
        a file, or its nearest existing directory is not writable.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(
            f"{option} {str(p)!r} is an existing file; {option} takes a directory "
            "(existing or to be created)"
        )
    anc = p
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.exists():  # a relative path whose every parent is missing: the cwd
        anc = Path.cwd()
    if not anc.is_dir():
        raise ValueError(
            f"{option} {str(p)!r} cannot be a directory: {str(anc)!r} is a file; "
            f"{option} takes a directory (existing or to be created)"
        )
    if not os.access(anc, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {str(p)!r}: directory {str(anc)!r} is not writable")
    return p
