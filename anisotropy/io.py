"""Run-directory files: JSON-lines log, JSON summary, checkpoints; all crash-safe.

* ``log.jsonl`` - one JSON object per line, appended, flushed and fsynced, so a
  killed run loses at most the line being written; :func:`append_jsonl` returns
  the byte position after the line, which checkpoints store so that a resumed
  run can cut the log back to the checkpoint (:func:`truncate_log`).
* ``summary.json`` / ``config.toml`` - written atomically (temporary file in the
  same directory, fsync, ``os.replace``).
* ``checkpoint.pt`` - ``torch.save`` of plain containers and tensors, written
  atomically and read back with ``weights_only=True``.

Every record is checked for NaN / inf before it is written (strict JSON has
neither): :func:`check_record` raises naming the offending key.
"""
from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path
from typing import Any


__all__ = ["check_record", "append_jsonl", "read_jsonl", "truncate_log", "write_json_atomic",
           "write_text_atomic", "write_atomic", "save_checkpoint", "load_checkpoint"]


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


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSON-lines file; a torn last line (crash while writing) is ignored.

    Raises
    ------
    ValueError
        If a line other than the last is not valid JSON.
    """
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path}: line {i + 1} is not valid JSON") from None
    return out


def truncate_log(path: str | Path, position: int) -> None:
    """Cut ``path`` back to ``position`` bytes (a position returned by :func:`append_jsonl`)."""
    p = Path(path)
    size = p.stat().st_size if p.exists() else 0
    if position > size:
        raise ValueError(f"{p}: checkpoint log position {position} is past the end ({size} bytes); "
                         "the log does not belong to this checkpoint")
    with open(p, "r+b") as fh:
        fh.truncate(position)
        fh.flush()
        os.fsync(fh.fileno())


def write_atomic(path: str | Path, write) -> Path:
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


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented strict JSON, atomically (NaN / inf rejected)."""
    check_record(obj, Path(path).name)
    write_text_atomic(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save(state)`` atomically: a crash leaves the previous checkpoint intact."""
    import torch  # only checkpoints need torch; logs and results stay importable without it

    write_atomic(path, lambda fh: torch.save(state, fh))


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (tensors and plain containers only)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {str(p)!r} does not exist")
    import torch

    return torch.load(p, map_location=map_location, weights_only=True)
