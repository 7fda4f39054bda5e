"""Experiment definitions: one TOML file per figure of the paper, two scales each.

File layout (``experiments/fig3.toml``)::

    figure = "3"
    title = "best and final test accuracy vs R ..."
    [common.base]          # training settings shared by both scales (nested
    epochs = 120           # exactly like a ``anisotropy train`` configuration)
    [common.base.model]
    name = "mlp"
    [paper]                # the paper's settings
    seeds = [0, 1, 2]
    note = "..."
    [paper.base.data]
    name = "fashion_mnist"
    [[paper.grid]]         # one group: the product of its axes
    "smoothing.layers" = [["fc1"], ["fc2"], ["fc1", "fc2"]]
    "smoothing.R" = [0.001, 0.01]
    [[paper.grid]]         # another group: the unsmoothed baseline
    "smoothing.layers" = [[]]
    [quick]                # CPU scale: same structure
    ...
    [medium.tuning]        # optional: a tuning stage (experiments.tuning)
    seeds = [100, 101]

A scale's base is ``common.base`` updated by ``<scale>.base``; its points are
:func:`experiments.grid.expand_grid` of ``<scale>.grid`` times ``<scale>.seeds``.
With ``<scale>.tuning`` each grid group is one method: every cell is trained at the
tuning seeds first, and only each group's best cell at ``<scale>.seeds``
(:mod:`experiments.tuning`).

``<scale>.note`` says how the scale departs from the paper (stand-in data,
fewer epochs, ...) and is printed by the sweep and written next to the results.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from .grid import Point, expand_grid, flatten, run_name, set_dotted

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "Scale",
    "TuningMetric",
    "TUNING_METRICS",
    "Tuning",
    "SCALES",
    "Experiment",
    "available_experiments",
    "load_experiment",
    "parse_experiment",
    "normalise_config",
]

Scale = Literal["quick", "medium", "paper"]
#: the scales, derived from :data:`Scale` (one vocabulary)
SCALES: tuple[str, ...] = typing.get_args(Scale)
_TOP_KEYS = {"figure", "title", "common", *SCALES}
_SCALE_KEYS = {"base", "grid", "seeds", "note", "tuning"}
_TUNING_KEYS = {"seeds", "metric", "base"}

TuningMetric = Literal["best_test_acc", "final_test_acc", "best_test_loss", "final_test_loss"]
#: the summary metrics a tuning stage may rank cells by, each with whether lower is
#: better (derived from :data:`TuningMetric`: one vocabulary)
TUNING_METRICS: dict[str, bool] = {m: m.endswith("_loss") for m in typing.get_args(TuningMetric)}


@dataclass(frozen=True)
class Tuning:
    """A scale's tuning stage (:mod:`experiments.tuning`).

    Attributes
    ----------
    seeds : list of int
        Tuning seeds; disjoint from the evaluation seeds.
    metric : str
        Summary metric the cells are ranked by (mean over the tuning seeds).
    base : dict
        Flat dotted settings of the tuning runs only (e.g. no end-of-run flatness).
    """

    seeds: list = field(default_factory=list)
    metric: TuningMetric = "best_test_acc"
    base: dict = field(default_factory=dict)

    @property
    def lower(self) -> bool:
        """Whether a lower ``metric`` is better (a loss)."""
        return TUNING_METRICS[self.metric]


def _parse_tuning(sec: Any, *, where: str, seeds: list) -> Tuning:
    if not isinstance(sec, Mapping):
        raise ValueError(f"{where} must be a table with keys {sorted(_TUNING_KEYS)}")
    unknown = set(sec) - _TUNING_KEYS
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {sorted(unknown)}; valid: {sorted(_TUNING_KEYS)}"
        )
    t_seeds = sec.get("seeds")
    if not isinstance(t_seeds, list) or not t_seeds:
        raise ValueError(
            f"{where}.seeds must be a non-empty list of integers >= 0, got {t_seeds!r}"
        )
    if set(t_seeds) & set(seeds):
        raise ValueError(
            f"{where}.seeds must be disjoint from the evaluation seeds (tuning on the seeds "
            f"that measure a cell biases its result upwards); shared: "
            f"{sorted(set(t_seeds) & set(seeds))}"
        )
    metric = sec.get("metric", "best_test_acc")
    if metric not in TUNING_METRICS:
        raise ValueError(
            f"{where}.metric must be one of {', '.join(TUNING_METRICS)}, got {metric!r}"
        )
    base = sec.get("base", {})
    if not isinstance(base, Mapping):
        raise ValueError(f"{where}.base must be a table of settings")
    return Tuning(seeds=list(t_seeds), metric=metric, base=flatten(base))


def normalise_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a nested configuration with :mod:`anisotropy.training.config` and return it
    with every default filled in (so equal runs hash equally)."""
    from anisotropy.training.config import config_from_dict, config_to_dict

    return config_to_dict(config_from_dict(dict(config)))


@dataclass
class Experiment:
    """One experiment at one scale.

    Attributes
    ----------
    name : str
        File stem (``fig3``); results go to ``<out>/<scale>/<name>/``.
    scale : {"quick", "medium", "paper"}
    figure, title, note : str
    base : dict
        Flat dotted settings applied to every point.
    grid : list of dict
        Groups of axes (dotted key -> list of values).
    seeds : list of int
    tuning : Tuning or None
        The scale's tuning stage, if any (:mod:`experiments.tuning`).
    """

    name: str
    scale: str
    figure: str = ""
    title: str = ""
    note: str = ""
    base: dict = field(default_factory=dict)
    grid: list = field(default_factory=list)
    seeds: list = field(default_factory=lambda: [0])
    tuning: Tuning | None = None

    def swept_keys(self) -> list[str]:
        """Dotted keys that vary in the grid, in first-seen order, then ``seed``."""
        keys: list[str] = []
        for group in self.grid:
            keys += [k for k in group if k not in keys]
        return keys + ["seed"]

    def points(
        self, normalise: Callable[[Mapping[str, Any]], dict] = normalise_config
    ) -> list[Point]:
        """Every grid point with its full, validated configuration and run name.

        ``normalise`` turns a nested dict of settings into the full configuration
        (default: :func:`normalise_config`; tests may inject another).
        """
        out = []
        for settings in expand_grid(self.grid, self.seeds):
            nested: dict[str, Any] = {}
            for k, v in {**self.base, **settings}.items():
                set_dotted(nested, k, v)
            try:
                config = normalise(nested)
            except ValueError as exc:
                raise ValueError(
                    f"experiment {self.name!r} ({self.scale}), point {settings}: {exc}"
                ) from None
            out.append(Point(settings=settings, config=config, name=run_name(config)))
        return out

    def with_overrides(self, items: Sequence[str]) -> Experiment:
        """A copy whose base also sets ``["data.root=/data/cifar10", ...]`` (TOML
        literals, as ``anisotropy train --set``); e.g. the data directory of the
        paper scale on the user's machine."""
        from anisotropy.training.config import parse_override

        base = dict(self.base)
        overridden = set()
        for item in items:
            path, value = parse_override(item)
            base[".".join(path)] = value
            overridden.add(".".join(path))
        tuning = self.tuning
        if tuning is not None:  # the user's setting wins over the tuning stage's too
            kept = {k: v for k, v in tuning.base.items() if k not in overridden}
            tuning = dataclasses.replace(tuning, base=kept)
        return dataclasses.replace(self, base=base, tuning=tuning)

    def report(self) -> str:
        n = len(expand_grid(self.grid, self.seeds))
        lines = [
            f"experiment {self.name} (figure {self.figure}, scale {self.scale}): {self.title}",
            f"  {n} runs = grid over {', '.join(self.swept_keys())}",
        ]
        if self.tuning is not None:
            n_tune = len(expand_grid(self.grid, self.tuning.seeds))
            n_eval = max(len(self.grid), 1) * len(self.seeds)
            lines[1] = (
                f"  two stages: {n_tune} tuning runs (every cell of {len(self.grid)} groups at "
                f"seeds {', '.join(map(str, self.tuning.seeds))}), then {n_eval} evaluation runs "
                f"(each group's best cell by mean {self.tuning.metric} at {len(self.seeds)} seeds)"
            )
        if self.note:
            lines.append(f"  note: {self.note}")
        return "\n".join(lines)


def _definitions_dir() -> Path:
    return Path(str(resources.files("experiments")))


def _is_definition(path: Path) -> bool:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return False
    return any(isinstance(data.get(s), dict) for s in SCALES)


def available_experiments() -> list[str]:
    """Names of the experiment definitions shipped in ``experiments/*.toml`` (files
    with a ``[quick]`` or ``[paper]`` section; the other TOML files there are
    single training configurations for ``anisotropy train``)."""
    return sorted(p.stem for p in _definitions_dir().glob("*.toml") if _is_definition(p))


def parse_experiment(data: Mapping[str, Any], *, name: str, scale: str) -> Experiment:
    """Build an :class:`Experiment` from a parsed definition (see the module docstring).

    Raises
    ------
    ValueError
        On an unknown scale, an unknown top-level or scale key, a missing scale
        section, or a malformed grid.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; valid: {', '.join(SCALES)}")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ValueError(
            f"experiment {name!r}: unknown key(s) {sorted(unknown)}; valid: {sorted(_TOP_KEYS)}"
        )
    if scale not in data:
        have = [s for s in SCALES if isinstance(data.get(s), dict)]
        raise ValueError(
            f"experiment {name!r} has no [{scale}] section; available scales: "
            f"{', '.join(have) or 'none'}"
        )
    sec = data[scale]
    unknown = set(sec) - _SCALE_KEYS
    if unknown:
        raise ValueError(
            f"experiment {name!r} [{scale}]: unknown key(s) {sorted(unknown)}; "
            f"valid: {sorted(_SCALE_KEYS)}"
        )
    common = data.get("common", {})
    if set(common) - {"base"}:
        raise ValueError(f"experiment {name!r} [common]: only 'base' is allowed")
    base = {**flatten(common.get("base", {})), **flatten(sec.get("base", {}))}
    grid = sec.get("grid", [])
    if not isinstance(grid, list):
        raise ValueError(
            f"experiment {name!r} [{scale}].grid must be an array of tables ([[{{scale}}.grid]])"
        )
    grid = [flatten(g) for g in grid]
    seeds = sec.get("seeds", [0])
    tuning = None
    if "tuning" in sec:
        tuning = _parse_tuning(
            sec["tuning"], where=f"experiment {name!r} [{scale}.tuning]", seeds=list(seeds)
        )
    return Experiment(
        name=name,
        scale=scale,
        figure=str(data.get("figure", "")),
        title=str(data.get("title", "")),
        note=str(sec.get("note", "")),
        base=base,
        grid=grid,
        seeds=list(seeds),
        tuning=tuning,
    )


def load_experiment(name_or_path: str | Path, scale: str = "quick") -> Experiment:
    """Load a shipped definition by name (``"fig3"``) or any definition file by path."""
    p = Path(name_or_path)
    if p.suffix != ".toml":
        p = _definitions_dir() / f"{name_or_path}.toml"
        if not p.is_file() or not _is_definition(p):
            raise ValueError(
                f"unknown experiment {str(name_or_path)!r}; valid: "
                f"{', '.join(available_experiments())} (or a path to a .toml file)"
            )
    elif not p.is_file():
        raise FileNotFoundError(f"experiment definition {str(p)!r} does not exist")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"experiment definition {str(p)!r} is not valid TOML: {exc}") from None
    return parse_experiment(data, name=p.stem, scale=scale)
