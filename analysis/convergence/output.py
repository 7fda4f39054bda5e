"""Files written by ``anisotropy converge``: ``convergence.csv``, ``summary.json`` and
``convergence.png``, each written atomically (temporary file + ``os.replace``)."""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from anisotropy.io import nonfinite_to_null, write_json_atomic, write_text_atomic

if TYPE_CHECKING:  # pragma: no cover
    from analysis.convergence.study import ConvergenceStudy

__all__ = ["CSV_COLUMNS", "write_study"]

#: Columns of ``convergence.csv``: one row per study / method / grid point.
CSV_COLUMNS = (
    "study",
    "method",
    "y",
    "k",
    "n_rep",
    "mean",
    "exact",
    "bias",
    "bias_se",
    "std",
    "std_se",
    "rmse",
    "predicted_bias",
    "predicted_std",
    "n_unreliable",
)


def _csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        # empty field = not applicable (y of the k-study, std of an exact value); inf kept
        writer.writerow(
            {
                c: (
                    ""
                    if isinstance(r[c], float) and math.isnan(r[c])
                    else repr(float(r[c]))
                    if isinstance(r[c], float)
                    else r[c]
                )
                for c in CSV_COLUMNS
            }
        )
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
    write_json_atomic(paths["summary.json"], nonfinite_to_null(study.summary()), indent=1)
    plot_study(study, paths["convergence.png"])
    return paths
