"""Two-stage sweeps: tune every cell on separate seeds, evaluate only the chosen cells.

A scale of a definition may carry a tuning stage::

    [medium.tuning]
    seeds = [100, 101]            # tuning seeds, disjoint from the evaluation seeds
    metric = "best_test_acc"      # a summary metric; the highest mean wins
    [medium.tuning.base]          # settings of the tuning runs only
    "logging.flatness" = false

Each ``[[medium.grid]]`` group is then one *method* with its own small grid (its
cells).  The sweep first trains every cell of every group at the tuning seeds (the
experiment :func:`tuning_experiment`, named ``<name>_tuning``, with its own
``results.csv``), then keeps one cell per group, the one with the highest mean
``metric`` over the tuning seeds (:func:`select_cells`), and trains only those cells
at the evaluation seeds (:func:`evaluation_experiment`, named ``<name>``).

Why: choosing each method's best cell on the same runs that then measure it biases
the winner upwards (the maximum of noisy means; a method with more cells gains
more), and training every cell at every evaluation seed costs (cells x seeds) runs.
Tuning on seeds the evaluation never sees removes the seed-to-seed part of the bias
(``data.eval_split = "validation"`` in the tuning base removes the part that comes from
the test images, :mod:`anisotropy.data.datasets`), and the cost becomes
cells x tuning seeds + groups x evaluation seeds.

A cell is eligible when all its tuning runs are complete (a run the trainer stopped,
e.g. on a non-finite loss, rules its cell out); the selection is *ready* when every
tuning point is complete or stopped and each group has an eligible cell.  Ties go to
the first cell in grid order.

A chosen cell whose value of a numeric setting is the smallest or the largest of
three or more tried (the other settings equal) lies on the **edge of its grid**
(:func:`grid_edges`): the method's optimum may lie beyond, so its tuned score is a
lower bound on what a wider grid would find.  The report and ``selection.json`` say so.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .definitions import TUNING_METRICS, Experiment, Tuning, normalise_config
from .grid import format_value
from .results import is_complete, is_stopped, read_summary

__all__ = [
    "TUNING_SUFFIX",
    "CellScore",
    "GridEdge",
    "grid_edges",
    "describe_edges",
    "GroupSelection",
    "Selection",
    "tuning_experiment",
    "select_cells",
    "evaluation_experiment",
]

#: the tuning stage's experiment name is the definition's name with this suffix (its
#: results go to ``<out>/<scale>/<name>_tuning/``)
TUNING_SUFFIX = "_tuning"


@dataclass(frozen=True)
class CellScore:
    """One tuning cell: its settings (no seed), the metric of each complete tuning
    run, and how many tuning runs it has in all."""

    settings: dict
    values: tuple[float, ...]
    n_points: int

    @property
    def eligible(self) -> bool:
        """Every tuning run of the cell is complete with a finite metric."""
        return len(self.values) == self.n_points and all(math.isfinite(v) for v in self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values) if self.values else math.nan


#: fewest values of a setting (the others equal) for its edge to mean anything: with two,
#: every choice is an edge and no interior optimum could have been found
MIN_VALUES_FOR_EDGE = 3


@dataclass(frozen=True)
class GridEdge:
    """A chosen cell's setting at the end of the values tried."""

    key: str
    value: float
    side: Literal["smallest", "largest"]
    tried: tuple[float, ...]

    def describe(self) -> str:
        tried = ", ".join(format_value(v) for v in self.tried)
        return (
            f"{self.key.rsplit('.', 1)[-1]} = {format_value(self.value)} is the {self.side} "
            f"tried ({tried})"
        )


def _real(v: Any) -> bool:
    """A finite real number (numpy scalars too; numpy booleans are not Real), not a bool."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def grid_edges(cells: Sequence[Mapping[str, Any]], chosen: int) -> list[GridEdge]:
    """The numeric settings of ``cells[chosen]`` at the edge of the values tried.

    For each setting of the chosen cell holding a finite real number, the values it
    takes over the cells that agree with the chosen one on every other setting; when
    there are at least :data:`MIN_VALUES_FOR_EDGE` of them and the chosen value is
    their minimum or maximum, the setting is on the grid's edge.

    Parameters
    ----------
    cells : sequence of mappings
        Each cell's settings (setting -> value; no seed), as a tuning group's cells.
    chosen : int
        Index of the chosen cell.
    """
    if isinstance(chosen, bool) or not isinstance(chosen, int) or not 0 <= chosen < len(cells):
        raise ValueError(
            f"chosen must be an index into cells (0..{len(cells) - 1}), got {chosen!r}"
        )
    mine = cells[chosen]
    out = []
    for key, value in mine.items():
        if not _real(value):
            continue
        rest = {k: v for k, v in mine.items() if k != key}
        tried = sorted(
            {
                float(c[key])
                for c in cells
                if _real(c.get(key)) and {k: v for k, v in c.items() if k != key} == rest
            }
        )
        if len(tried) < MIN_VALUES_FOR_EDGE or tried[0] < value < tried[-1]:
            continue
        side: Literal["smallest", "largest"] = "smallest" if value == tried[0] else "largest"
        out.append(GridEdge(key, float(value), side, tuple(tried)))
    return out


def describe_edges(edges: Sequence[GridEdge]) -> str:
    """The edges in words, ``"; "``-separated (empty when there are none)."""
    return "; ".join(e.describe() for e in edges)


@dataclass(frozen=True)
class GroupSelection:
    """The cells of one grid group and the index of the chosen one (``None``: none
    eligible)."""

    group: int
    cells: tuple[CellScore, ...]
    chosen: int | None

    @property
    def choice(self) -> CellScore | None:
        return None if self.chosen is None else self.cells[self.chosen]

    @property
    def edges(self) -> list[GridEdge]:
        """The chosen cell's settings on the edge of this group's grid (:func:`grid_edges`)."""
        if self.chosen is None:
            return []
        return grid_edges([c.settings for c in self.cells], self.chosen)


@dataclass(frozen=True)
class Selection:
    """The outcome of the tuning stage (see :func:`select_cells`)."""

    experiment: str
    metric: str
    seeds: tuple[int, ...]
    groups: tuple[GroupSelection, ...]
    n_points: int
    n_finished: int
    waiting: list = field(default_factory=list)

    @property
    def lower(self) -> bool:
        """Whether a lower ``metric`` is better (a loss)."""
        return TUNING_METRICS[self.metric]

    @property
    def ready(self) -> bool:
        """Every tuning point is finished (complete or stopped) and every group has a
        chosen cell: the evaluation stage may start."""
        return self.n_finished == self.n_points and all(g.chosen is not None for g in self.groups)

    def report(self) -> str:
        head = (
            f"tuning of {self.experiment}: {self.n_finished} of {self.n_points} tuning points "
            f"finished (seeds {', '.join(map(str, self.seeds))}); highest mean {self.metric}"
        )
        lines = [head]
        for g in self.groups:
            c = g.choice
            if c is None:
                lines.append(f"  group {g.group}: no eligible cell yet")
                continue
            lines.append(
                f"  group {g.group}: {_describe(c.settings)}  mean {c.mean:.4f} "
                f"(of {len(g.cells)} cells)"
                + "".join(f"; at the grid's edge: {e.describe()}" for e in g.edges)
            )
        if not self.ready:
            lines.append("  the evaluation stage starts once every tuning point is finished")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "metric": self.metric,
            "lower": self.lower,
            "tuning_seeds": list(self.seeds),
            "ready": self.ready,
            "groups": [
                {
                    "group": g.group,
                    "chosen": g.chosen,
                    "edges": [e.describe() for e in g.edges],
                    "cells": [
                        {
                            "settings": c.settings,
                            "values": list(c.values),
                            "n_points": c.n_points,
                            "mean": c.mean if c.values else None,
                            "eligible": c.eligible,
                        }
                        for c in g.cells
                    ],
                }
                for g in self.groups
            ],
        }


def _describe(settings: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={format_value(v)}" for k, v in settings.items()) or "(no settings)"


def _require_tuning(experiment: Experiment) -> Tuning:
    if experiment.tuning is None:
        raise ValueError(
            f"experiment {experiment.name!r} ({experiment.scale}) has no tuning stage "
            f"([{experiment.scale}.tuning])"
        )
    return experiment.tuning


def tuning_experiment(experiment: Experiment) -> Experiment:
    """The tuning stage of ``experiment``: every cell of its grid at the tuning seeds,
    with the tuning base settings on top of the base, named ``<name>_tuning``."""
    tuning = _require_tuning(experiment)
    return dataclasses.replace(
        experiment,
        name=experiment.name + TUNING_SUFFIX,
        base={**experiment.base, **tuning.base},
        seeds=list(tuning.seeds),
        note=f"tuning stage of {experiment.name}: every cell of its grid at seeds "
        f"{', '.join(map(str, tuning.seeds))}"
        + (f" with {_describe(tuning.base)}" if tuning.base else "")
        + f"; each group's cell with the best mean {tuning.metric} is then trained at the "
        f"evaluation seeds (the note of {experiment.name} gives the settings)",
        tuning=None,
    )


def select_cells(
    experiment: Experiment,
    store: str | Path,
    normalise: Callable[[Mapping[str, Any]], dict] = normalise_config,
) -> Selection:
    """Score every cell of every grid group from the tuning runs in ``store`` and choose,
    per group, the eligible cell with the highest mean ``tuning.metric``.

    Parameters
    ----------
    experiment : Experiment
        A definition at a scale with a tuning stage.
    store : path
        The run store (``<out>/<scale>/store``) the tuning runs were trained in.
    normalise : callable
        As :meth:`Experiment.points`.

    Raises
    ------
    ValueError
        If the experiment has no tuning stage.
    """
    tuning = _require_tuning(experiment)
    tune = tuning_experiment(experiment)
    store = Path(store)
    groups: list[GroupSelection] = []
    n_points = n_finished = 0
    waiting: list[str] = []
    for gi, group in enumerate(tune.grid):
        settings_of: dict[str, dict] = {}
        values: dict[str, list[float]] = {}
        counts: dict[str, int] = {}
        for p in dataclasses.replace(tune, grid=[group]).points(normalise):
            settings = {k: v for k, v in p.settings.items() if k != "seed"}
            key = json.dumps(settings, sort_keys=True)
            settings_of.setdefault(key, settings)
            values.setdefault(key, [])
            counts[key] = counts.get(key, 0) + 1
            n_points += 1
            run_dir = store / p.name
            if is_complete(run_dir):
                n_finished += 1
                value = (read_summary(run_dir) or {}).get(tuning.metric)
                values[key].append(float(value) if isinstance(value, (int, float)) else math.nan)
            elif is_stopped(run_dir):
                n_finished += 1
            else:
                waiting.append(p.name)
        cells = tuple(CellScore(settings_of[k], tuple(values[k]), counts[k]) for k in settings_of)
        ok = [i for i, c in enumerate(cells) if c.eligible]
        sign = -1.0 if tuning.lower else 1.0
        chosen = max(ok, key=lambda i: (sign * cells[i].mean, -i)) if ok else None
        groups.append(GroupSelection(gi, cells, chosen))
    return Selection(
        experiment.name,
        tuning.metric,
        tuple(tuning.seeds),
        tuple(groups),
        n_points,
        n_finished,
        waiting,
    )


def evaluation_experiment(experiment: Experiment, selection: Selection) -> Experiment:
    """The evaluation stage: one single-cell group per grid group (its chosen cell) at
    the definition's seeds, named as the definition (no tuning settings).

    Raises
    ------
    ValueError
        If the selection is not ready (tuning points unfinished or a group without an
        eligible cell).
    """
    _require_tuning(experiment)
    if not selection.ready:
        raise ValueError(
            f"the tuning of {experiment.name!r} is not finished: {selection.n_finished} of "
            f"{selection.n_points} points, or a group has no eligible cell"
        )
    grid = []
    for g in selection.groups:
        choice = g.choice
        if choice is None:  # pragma: no cover - excluded by ``ready``
            raise ValueError(f"group {g.group} has no chosen cell")
        grid.append({k: [v] for k, v in choice.settings.items()})
    return dataclasses.replace(experiment, grid=grid, tuning=None)
