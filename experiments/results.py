"""Results of a sweep: one tidy row per run, written atomically to ``results.csv``.

A run directory (written by :func:`anisotropy.training.trainer.train`) holds
``summary.json`` (``status``, ``best_test_acc``, ``final_test_acc``,
``final_train_loss``, ``epochs``, ``wall_time``, ``config``; a reconstruction's run,
which has no accuracy, also ``best_test_loss`` and ``final_test_loss``) and ``log.jsonl``.
This module reads them; it never trains.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from anisotropy.io import read_jsonl

from .grid import Point, format_value, get_dotted

__all__ = [
    "SETTING_COLUMNS",
    "METRIC_COLUMNS",
    "read_summary",
    "is_complete",
    "is_stopped",
    "STATUS_STOPPED",
    "result_row",
    "result_columns",
    "row_value",
    "read_results",
    "read_log",
]

#: configuration settings every results row carries (dotted keys), whatever was swept
SETTING_COLUMNS: tuple[str, ...] = (
    "data.name",
    "data.n_train",
    "model.name",
    "model.depth",
    "model.activation",
    "smoothing.layers",
    "smoothing.reduction",
    "smoothing.R",
    "smoothing.y",
    "optim.lr",
    "optim.batch_size",
    "optim.weight_decay",
    "epochs",
    "seed",
)
#: numbers read from ``summary.json`` (the accuracies are empty for a reconstruction,
#: the test losses for a classification: :mod:`anisotropy.training.objective`;
#: ``best_epoch`` is the epoch of the best test accuracy, or of the lowest test loss)
METRIC_COLUMNS: tuple[str, ...] = (
    "best_test_acc",
    "best_epoch",
    "final_test_acc",
    "final_train_loss",
    "epochs_done",
    "wall_time",
    "best_test_loss",
    "final_test_loss",
)
_STATUS_COMPLETE = "complete"
#: row status of a run the trainer stopped (a non-finite value, a failing callback)
STATUS_STOPPED = "stopped"
#: how the trainer's ``summary.json`` status of such a run begins
#: (:func:`anisotropy.training.trainer.train`: ``"stopped: <reason>"``)
_STOPPED_PREFIXES: tuple[str, ...] = ("stopped", "diverged")


def read_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """``summary.json`` of a run directory, or ``None`` if absent or unreadable
    (a run killed while writing leaves no valid summary: it counts as not done)."""
    p = Path(run_dir) / "summary.json"
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_complete(run_dir: str | Path) -> bool:
    """True when the run directory holds a summary with ``status == "complete"``."""
    s = read_summary(run_dir)
    return isinstance(s, dict) and s.get("status") == _STATUS_COMPLETE


def is_stopped(run_dir: str | Path) -> bool:
    """True when the trainer stopped the run early (its summary's status begins with
    ``"stopped"`` or ``"diverged"``): rerunning it gives the same result, so a sweep
    does not retry it unless asked."""
    s = read_summary(run_dir)
    status = s.get("status") if isinstance(s, dict) else None
    return isinstance(status, str) and status.startswith(_STOPPED_PREFIXES)


def result_columns(swept: Sequence[str] = ()) -> list[str]:
    """Column order of ``results.csv``: identity, settings (swept ones included), metrics."""
    settings = list(SETTING_COLUMNS) + [k for k in swept if k not in SETTING_COLUMNS]
    return ["experiment", "scale", "run", "status", *settings, *METRIC_COLUMNS, "run_dir"]


def row_value(v: Any) -> Any:
    """A setting as :func:`read_results` gives it back: lists, tuples and booleans as
    their text (layer lists as ``fc1+fc2``, ``[]`` as ``none``), anything else as is."""
    return format_value(v) if isinstance(v, (list, tuple, bool)) else v


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return row_value(v)


def result_row(
    point: Point,
    run_dir: str | Path,
    *,
    experiment: str,
    scale: str,
    swept: Sequence[str] = (),
    status: str | None = None,
    relative_to: str | Path | None = None,
) -> dict[str, Any]:
    """One results row for ``point`` run in ``run_dir`` (metrics empty if not complete).

    ``status`` overrides the summary's (e.g. ``"failed"``); a stopped run's
    ``"stopped: <reason>"`` becomes ``"stopped"`` (the reason stays in its
    ``summary.json``); ``run_dir`` is stored
    relative to ``relative_to`` when given, so a results folder can be moved with
    its run store.
    """
    summary = read_summary(run_dir) or {}
    if status is None:
        status = STATUS_STOPPED if is_stopped(run_dir) else summary.get("status", "missing")
    row: dict[str, Any] = {
        "experiment": experiment,
        "scale": scale,
        "run": point.name,
        "status": status,
    }
    for key in result_columns(swept)[4 : -len(METRIC_COLUMNS) - 1]:
        row[key] = _cell(point.settings.get(key, get_dotted(point.config, key)))
    row["best_test_acc"] = _cell(summary.get("best_test_acc"))
    row["best_epoch"] = _cell(summary.get("best_epoch"))
    row["final_test_acc"] = _cell(summary.get("final_test_acc"))
    row["final_train_loss"] = _cell(summary.get("final_train_loss"))
    row["epochs_done"] = _cell(summary.get("epochs"))
    row["wall_time"] = _cell(summary.get("wall_time"))
    row["best_test_loss"] = _cell(summary.get("best_test_loss"))
    row["final_test_loss"] = _cell(summary.get("final_test_loss"))
    rd = Path(run_dir)
    if relative_to is not None:
        rd = Path(os.path.relpath(rd, relative_to))
    row["run_dir"] = str(rd)
    return row


def _parse(text: str) -> Any:
    if text == "":
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``results.csv`` with numbers parsed (``""`` -> ``None``).

    Raises
    ------
    ValueError
        If a metric of a complete run is NaN or infinite (a diverged run must be
        looked at, not averaged).
    """
    path = Path(path)
    with path.open(encoding="utf-8", newline="") as f:
        rows = [{k: _parse(v) for k, v in r.items()} for r in csv.DictReader(f)]
    for r in rows:
        if r.get("status") != _STATUS_COMPLETE:
            continue
        for m in (
            "best_test_acc",
            "final_test_acc",
            "final_train_loss",
            "best_test_loss",
            "final_test_loss",
        ):
            v = r.get(m)
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"{path}: run {r.get('run')} has {m} = {v}; it must be finite")
    return rows


def read_log(run_dir: str | Path) -> list[dict[str, Any]]:
    """Epoch records of a run's ``log.jsonl`` (a torn last line is ignored; see
    :func:`anisotropy.io.read_jsonl`)."""
    return read_jsonl(Path(run_dir) / "log.jsonl")
