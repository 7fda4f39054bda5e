"""Files written by ``anisotropy converge``: ``convergence.csv``, ``summary.json`` and
``convergence.png``, each written atomically (temporary file + ``os.replace``)."""
from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from anisotropy.io import write_atomic, write_text_atomic

if TYPE_CHECKING:  # pragma: no cover
    from analysis.convergence.study import ConvergenceStudy

__all__ = ["CSV_COLUMNS", "write_study"]

#: Columns of ``convergence.csv``: one row per study / method / grid point.
CSV_COLUMNS = ("study", "method", "y", "k", "n_rep", "mean", "exact", "bias", "bias_se",
               "std", "std_se", "rmse", "predicted_bias", "predicted_std", "n_unreliable")


def _jsonable(x):
    """Non-finite floats -> None (strict JSON), tuples -> lists, recursively."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def _csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        # empty field = not applicable (y of the k-study, std of an exact value); inf kept
        writer.writerow({c: ("" if isinstance(r[c], float) and math.isnan(r[c]) else
                             repr(float(r[c])) if isinstance(r[c], float) else r[c])
                         for c in CSV_COLUMNS})
    return buf.getvalue()


def write_study(study: ConvergenceStudy, out: str | os.PathLike) -> dict[str, Path]:
    """Write ``convergence.csv``, ``summary.json`` and ``convergence.png`` into ``out``.

    Each file is written atomically.  Returns ``{name: path}``.
    """
    from analysis.convergence.plot import plot_study

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("convergence.csv", "summary.json", "convergence.png")}
    write_text_atomic(paths["convergence.csv"], _csv_text(study.rows))
    write_text_atomic(paths["summary.json"],
                      json.dumps(_jsonable(study.summary()), indent=1, allow_nan=False) + "\n")
    write_atomic(paths["convergence.png"], lambda fh: plot_study(study, fh))
    return paths
