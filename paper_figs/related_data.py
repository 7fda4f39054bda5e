"""What the related-work figures (9a-9d) and their claims read from a sweep, beyond
``results.csv``: the method of a run, its cost in passes, its generalisation gap, its
accuracy curve, its end-of-run flatness; and the tuning cells of a method.

Everything here reads results rows and run directories (``summary.json``,
``log.jsonl``); nothing trains.  :func:`enrich` adds the derived columns to the rows
of an experiment, so that the claims (:mod:`paper_figs.related_claims`) are pure
functions of rows and can be checked on planted rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from experiments.results import read_summary, row_value
from experiments.tuning import describe_edges, grid_edges

from .common import FigureContext
from .stats import matches, t_interval

__all__ = [
    "METHOD_ORDER",
    "SCOPE_MODEL",
    "method_of",
    "family_of",
    "cell_of",
    "cells",
    "best_cell",
    "enrich",
    "flatness_columns",
    "flatness_keys",
    "flat_column",
    "curve_by",
]

#: the methods of the compute-matched comparison, in the order of the figure and table
METHOD_ORDER: tuple[str, ...] = (
    "SGD",
    "PLA (single layer)",
    "PLEA (single layer)",
    "PLA (isotropic)",
    "PLEA (isotropic)",
    "SAM",
    "Entropy-SGD",
    "Replicated-SGD (partial)",
    "Replicated-SGD (full)",
    "moment matching",
    "heat regularisation",
)
_OPTIMISER_LABELS = {
    "sam": "SAM",
    "entropy_sgd": "Entropy-SGD",
    "moment_matching": "moment matching",
    "heat": "heat regularisation",
}
#: the settings that tell the tuning cells of one method apart (the seed excluded)
CELL_KEYS: tuple[str, ...] = (
    "smoothing.layers",
    "smoothing.R",
    "optim.lr",
    "optim.rho",
    "optim.gamma",
    "optim.layers",
    "optim.samples",
    "optim.beta",
    "optim.inner_steps",
)
#: the scope name of the whole-model flatness (every layer weight at once)
SCOPE_MODEL = "model"
#: flatness measures of ``summary.json`` -> (list key, parameter key): the local energy
#: ``E[L(W + noise)] - L(W)`` per sigma, and the local free energy *above the centre loss*
#: per R, ``-log (1/y) sum_a exp(-L(W + dW_a)) - L(W)`` (eq. 18 at beta = 1: the entry's
#: ``estimate + log_normaliser``, minus the summary's ``centre_loss``).  Without the
#: subtraction the free energy at a small R is the training loss L(W) itself plus a small
#: excess (R = 0.01 on the 2-layer MLP: spread across models 0.075, nearly all of it L(W)),
#: so ranking models by it ranks their training loss, not their flatness.
_MEASURES: dict[str, tuple[str, str]] = {
    "local_energy": ("local_energy", "sigma"),
    "free_energy_excess": ("free_entropy", "R"),
}


def _measure_value(
    measure: str, entry: Mapping[str, Any], flatness: Mapping[str, Any]
) -> float | None:
    """One number of :data:`_MEASURES` from a ``summary.json`` flatness entry (None if a
    part is missing or not finite)."""
    if measure == "local_energy":
        raw = [entry.get("mean")]
    else:
        raw = [entry.get("estimate"), entry.get("log_normaliser"), flatness.get("centre_loss")]
    if any(v is None for v in raw):
        return None
    parts = [float(v) for v in raw if v is not None]
    if not all(math.isfinite(v) for v in parts):
        return None
    return parts[0] if measure == "local_energy" else parts[0] + parts[1] - parts[2]


def _text(v: Any) -> str:
    return "none" if v in (None, "") else str(v)


def _smoothed_layers(row: Mapping[str, Any]) -> list[str]:
    s = _text(row.get("smoothing.layers"))
    return [] if s == "none" else s.split("+")


def method_of(row: Mapping[str, Any], hidden: Sequence[str] = ("fc1", "fc2")) -> str:
    """The method of a comparison run (one of :data:`METHOD_ORDER`).

    A smoothed SGD run is PLA / PLEA on a single layer or isotropic (every hidden
    layer of ``hidden`` smoothed); Replicated-SGD is partial when ``optim.layers``
    names layers, full when it is empty (every parameter coupled).
    """
    name = _text(row.get("optim.name")) if row.get("optim.name") is not None else "sgd"
    if name == "sgd":
        layers = _smoothed_layers(row)
        if not layers:
            return "SGD"
        red = _text(row.get("smoothing.reduction")).upper()
        return f"{red} ({'isotropic' if set(layers) >= set(hidden) else 'single layer'})"
    if name == "replicated":
        full = _text(row.get("optim.layers")) == "none"
        return f"Replicated-SGD ({'full' if full else 'partial'})"
    return _OPTIMISER_LABELS.get(name, name)


def family_of(method: str) -> str:
    """``"partial"`` for single-layer PLA / PLEA, ``"isotropic"`` for all-layer PLA /
    PLEA, else the method itself."""
    if method.startswith(("PLA", "PLEA")):
        return "partial" if method.endswith("(single layer)") else "isotropic"
    return method


def _relevant(row: Mapping[str, Any], key: str) -> bool:
    """Whether ``key`` does anything in ``row``'s run: an ``optim.*`` key when the run's
    optimiser uses it (:data:`anisotropy.training.optimisers.USED_BY`), a ``smoothing.*``
    key when the run smooths; any other key always (the results table has a column for
    every key of the sweep, filled with the default where a run does not use it)."""
    from anisotropy.training.optimisers import USED_BY

    section, _, name = key.partition(".")
    if section == "optim" and name in USED_BY:
        opt = _text(row.get("optim.name")) if row.get("optim.name") is not None else "sgd"
        return opt in USED_BY[name]
    if section == "smoothing" and name != "layers":
        return bool(_smoothed_layers(row))
    return True


def cell_of(row: Mapping[str, Any], keys: Sequence[str] = CELL_KEYS) -> tuple[tuple[str, Any], ...]:
    """The tuning cell of a row: its values of ``keys`` that are present (not empty) and
    used by the run (a SAM run's cell has no ``smoothing.R``, a PLA run's no ``optim.rho``)."""
    return tuple((k, row[k]) for k in keys if row.get(k) not in (None, "") and _relevant(row, k))


def cells(
    rows: Sequence[Mapping[str, Any]],
    belongs: Callable[[Mapping[str, Any]], bool],
    keys: Sequence[str] = CELL_KEYS,
) -> dict[tuple[tuple[str, Any], ...], list[Mapping[str, Any]]]:
    """Complete rows for which ``belongs(row)``, grouped by tuning cell (first-seen order)."""
    out: dict[tuple[tuple[str, Any], ...], list[Mapping[str, Any]]] = {}
    for r in rows:
        if r.get("status") == "complete" and belongs(r):
            out.setdefault(cell_of(r, keys), []).append(r)
    return out


def best_cell(
    groups: Mapping[Any, Sequence[Mapping[str, Any]]],
    metric: str,
    *,
    lower: bool = False,
    min_runs: int = 2,
) -> Any:
    """The key of the group with the highest (``lower``: lowest) mean ``metric``, among
    groups with >= ``min_runs`` runs (``None`` if there is none; a claim needs 2 runs
    per arm, a figure may draw one)."""
    ok = {k: [float(r[metric]) for r in v] for k, v in groups.items() if len(v) >= min_runs}
    if not ok:
        return None
    sign = -1.0 if lower else 1.0
    return max(ok, key=lambda k: sign * float(np.mean(ok[k])))


def describe_cell(cell: Sequence[tuple[str, Any]]) -> str:
    """``R=0.03, layers=fc2`` for a tuning cell (values at their defaults left out)."""
    skip = {("smoothing.layers", "none"), ("optim.layers", "none")}
    return ", ".join(
        f"{k.rsplit('.', 1)[-1]}={v:g}" if isinstance(v, float) else f"{k.rsplit('.', 1)[-1]}={v}"
        for k, v in cell
        if (k, v) not in skip
    )


def flat_column(measure: str, scope: str, param: float) -> str:
    """Name of the enriched column of one flatness number (``flat:local_energy:fc1:0.1``)."""
    return f"flat:{measure}:{scope}:{param:g}"


def flatness_columns(flatness: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a summary's ``"flatness"`` entry as ``{flat_column: value}``: the
    local energy per sigma and the local free energy above the centre loss per R
    (:data:`_MEASURES`), for every layer and for the whole model (scope
    :data:`SCOPE_MODEL`).  Both are sharpness measures: larger means a higher loss
    around the minimum, relative to the minimum's own loss."""
    out: dict[str, float] = {}
    units = dict(flatness.get("layers") or {})
    if flatness.get("model") is not None:
        units[SCOPE_MODEL] = flatness["model"]
    for scope, unit in units.items():
        for measure, (lkey, pkey) in _MEASURES.items():
            for entry in unit.get(lkey) or []:
                v = _measure_value(measure, entry, flatness)
                if v is not None:
                    out[flat_column(measure, scope, float(entry[pkey]))] = v
    return out


def flatness_keys(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, float]]:
    """``(measure, scope, param)`` of the flatness columns every complete row has, whole
    model first, then layers in name order."""
    sets = [
        {k for k in r if isinstance(k, str) and k.startswith("flat:")}
        for r in rows
        if r.get("status") == "complete"
    ]
    common = set.intersection(*sets) if sets else set()
    keys = []
    for k in common:
        _, measure, scope, param = k.split(":")
        keys.append((measure, scope, float(param)))
    return sorted(keys, key=lambda t: (t[1] != SCOPE_MODEL, t[1], t[0], t[2]))


def enrich(
    ctx: FigureContext, experiment: str, rows: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Copies of the rows with derived columns, for every complete run:

    * ``method`` (:func:`method_of`) and ``family`` (:func:`family_of`);
    * ``cost_passes``: ``passes + forward_passes`` of ``summary.json`` (None if absent);
    * ``final_train_acc`` (the last log line's training accuracy) and ``gap`` =
      ``final_train_acc - final_test_acc`` (the generalisation gap in accuracy);
    * ``test_acc_by_epoch``: ``{epoch: test_acc}`` of the log;
    * ``test_loss_by_epoch``: ``{epoch: test_loss}`` of the log, and ``best_test_loss`` /
      ``final_test_loss`` from ``summary.json`` when the row lacks them (a
      reconstruction's: :mod:`anisotropy.training.objective`);
    * the flatness columns of :func:`flatness_columns` when the run measured them;
    * ``tuning_score``: for a run of a cell a tuning stage chose (``selection.json``,
      :mod:`experiments.tuning`), the cell's mean tuning metric on the tuning seeds,
      negated when lower is better (so higher is always better), and ``tuning_edge``:
      the settings of that cell on the edge of its group's grid in words
      (:func:`experiments.tuning.grid_edges`; empty when none is).
    """
    out = []
    chosen = _chosen_cells(ctx, experiment)
    for r in rows:
        e = dict(r)
        if r.get("status") == "complete":
            summary = read_summary(ctx.run_path(experiment, r)) or {}
            log = ctx.log(experiment, r)
            last = log[-1] if log else {}
            e["method"] = method_of(r)
            e["family"] = family_of(e["method"])
            passes = summary.get("passes", last.get("passes"))
            fwd = summary.get("forward_passes", last.get("forward_passes", 0))
            e["cost_passes"] = None if passes is None else int(passes) + int(fwd or 0)
            train_acc = last.get("train_acc")
            e["final_train_acc"] = None if train_acc is None else float(train_acc)
            e["gap"] = (
                None
                if train_acc is None or r.get("final_test_acc") is None
                else float(train_acc) - float(r["final_test_acc"])
            )
            e["test_acc_by_epoch"] = {
                int(rec["epoch"]): float(rec["test_acc"])
                for rec in log
                if rec.get("test_acc") is not None
            }
            e["test_loss_by_epoch"] = {
                int(rec["epoch"]): float(rec["test_loss"])
                for rec in log
                if rec.get("test_loss") is not None
            }
            for key in ("best_test_loss", "final_test_loss"):
                if e.get(key) is None and summary.get(key) is not None:
                    e[key] = float(summary[key])
            if isinstance(summary.get("flatness"), Mapping):
                e.update(flatness_columns(summary["flatness"]))
            tuned = _tuning_of(chosen, e)
            if tuned is not None:
                e["tuning_score"], e["tuning_edge"] = tuned
        out.append(e)
    return out


def _chosen_cells(ctx: FigureContext, experiment: str) -> list[tuple[dict[str, Any], float, str]]:
    """(chosen settings in the results table's form, tuning score: the mean tuning metric,
    negated when lower is better, the settings on its grid's edge in words) of every
    group of the experiment's ``selection.json`` (written by a two-stage sweep,
    :mod:`experiments.tuning`; empty without one)."""
    path = ctx.results_dir(experiment) / "selection.json"
    if not path.is_file():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    sign = -1.0 if data.get("lower") else 1.0
    out = []
    for g in data.get("groups", []):
        if g.get("chosen") is None:
            continue
        cell = g["cells"][g["chosen"]]
        settings = {k: row_value(v) for k, v in cell["settings"].items()}
        edges = grid_edges([c["settings"] for c in g["cells"]], int(g["chosen"]))
        out.append((settings, sign * float(cell["mean"]), describe_edges(edges)))
    return out


def _tuning_of(
    chosen: Sequence[tuple[dict[str, Any], float, str]], row: Mapping[str, Any]
) -> tuple[float, str] | None:
    for settings, score, edge in chosen:
        if matches(row, settings):
            return score, edge
    return None


def curve_by(
    ctx: FigureContext,
    experiment: str,
    rows: Sequence[Mapping[str, Any]],
    x_of: Callable,
    *,
    metric: str = "test_acc",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Mean and 95 % t-interval across runs of ``metric`` (a log key: ``test_acc``, or
    ``test_loss``) against ``x_of(log line)`` (e.g. the cumulative passes), at the x values
    every run logged; ``(x, mean, lo, hi, n)``."""
    series = []
    for r in rows:
        series.append(
            {
                x_of(rec): float(rec[metric])
                for rec in ctx.log(experiment, r)
                if rec.get(metric) is not None and x_of(rec) is not None
            }
        )
    if not series:
        return (np.array([]),) * 4 + (0,)
    common = sorted(set.intersection(*(set(s) for s in series)))
    mean, lo, hi = (np.empty(len(common)) for _ in range(3))
    for i, x in enumerate(common):
        iv = t_interval([s[x] for s in series])
        mean[i], lo[i], hi[i] = iv.mean, iv.lo, iv.hi
    return np.asarray(common, dtype=float), mean, lo, hi, len(series)


#: how each summarised column is written in the tables: accuracies in percent, the gap
#: in percentage points, wall time in seconds, passes as integers
_UNITS: dict[str, Callable[[float], str]] = {
    "acc": lambda v: f"{100 * v:.2f}",
    "gap": lambda v: f"{100 * v:.2f}",
    "wall_time": lambda v: f"{v:.0f}",
    "cost_passes": lambda v: f"{v:.0f}",
}


def _unit(metric: str) -> Callable[[float], str]:
    for suffix, f in _UNITS.items():
        if metric.endswith(suffix):
            return f
    return lambda v: f"{v:.4g}"


def summarise(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> dict[str, Any]:
    """Mean, 95 % t-interval and ``mean ± half-width`` text of each metric over ``rows``
    (``{m}_mean``, ``{m}_lo``, ``{m}_hi``, ``{m}_fmt``) and ``n``; a metric no row has is
    left out."""
    out: dict[str, Any] = {"n": len(rows)}
    for m in metrics:
        vals = [float(r[m]) for r in rows if r.get(m) is not None]
        if not vals:
            continue
        iv = t_interval(vals)
        f = _unit(m)
        out[f"{m}_mean"], out[f"{m}_lo"], out[f"{m}_hi"] = iv.mean, iv.lo, iv.hi
        out[f"{m}_fmt"] = f(iv.mean) + (f" ± {f(iv.half_width)}" if iv.n >= 2 else "")
    return out


__all__ += ["CELL_KEYS", "describe_cell", "summarise"]
