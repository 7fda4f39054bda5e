"""``anisotropy figures --until-decided``: add seeds in rounds until every claim is decided.

Round after round (a group-sequential design, :mod:`paper_figs.sequential`):

1. read every claim at the planned looks its seeds reach: the paper's
   (:func:`paper_figs.claims.evaluate_claims`) and the related work's
   (:func:`paper_figs.related_claims.evaluate_related_claims`), with the design;
2. for each experiment with a claim still **inconclusive**, extend its seed list
   to the next planned look (the experiment's seeds, then ``max + 1, max + 2,
   ...``) and sweep the new seeds only, only for the arms those claims read
   (the recorded selections of :class:`paper_figs.claim_rules.ClaimResult`; a
   claim that records none, as the related claims, reads every cell of its
   experiment): a restricted copy of the experiment (``dataclasses.replace`` of
   its grid and seeds) run by :func:`experiments.sweep.run_sweep`, which trains
   each new run in the shared store under the name the full sweep would give it;
3. rewrite the experiment's ``results.csv`` over the full grid and every seed
   (complete runs of the added seeds only);

and stop when every claim is decided or every undecided experiment has reached
the last planned look.  The decisions are those of the repeated confidence
intervals of the design, valid under this optional stopping.

An experiment with a tuning stage (:mod:`experiments.tuning`) grows its evaluation
stage only: the cells its finished tuning chose (``selection.json``), never the
tuning grid.  Rank claims (Kendall's tau with a seed-bootstrap interval, figure 9d)
have no sequential reading: they are read fixed-sample and never add seeds.

A plain ``anisotropy figures`` run after this one sweeps the definition's own
seeds again and rewrites ``results.csv`` with those; ``--until-decided`` (whose
trained runs are reused from the store) restores the added seeds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anisotropy.io import write_csv_atomic, write_json_atomic
from experiments.definitions import Experiment, normalise_config
from experiments.grid import get_dotted
from experiments.results import read_results, result_columns, row_value
from experiments.sweep import DEFAULT_RUNNER, run_sweep, sweep_paths
from experiments.tuning import evaluation_experiment, select_cells

from .claim_rules import ClaimResult
from .claims import evaluate_claims
from .common import FigureContext
from .related_claims import evaluate_related
from .sequential import SequentialDesign
from .stats import matches

__all__ = [
    "RoundsResult",
    "extend_seeds",
    "restrict",
    "write_full_results",
    "run_until_decided",
    "evaluation_stages",
    "undecided_claims",
    "next_round",
    "evaluate_all",
    "one_scale",
    "rows_of",
]


@dataclass
class RoundsResult:
    """What the rounds did: per round the seeds each experiment reached and the runs
    trained; the final claims; why it stopped."""

    rounds: list = field(default_factory=list)
    seeds: dict = field(default_factory=dict)
    trained: int = 0
    failed: int = 0
    claims: list = field(default_factory=list, repr=False)
    stopped: str = ""


def extend_seeds(seeds: Sequence[int], n: int) -> list[int]:
    """The first ``n`` seeds of ``seeds`` followed by ``max(seeds) + 1, + 2, ...``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    out = list(dict.fromkeys(int(s) for s in seeds))[:n]
    nxt = max(out, default=-1) + 1
    while len(out) < n:
        out.append(nxt)
        nxt += 1
    return out


def restrict(
    experiment: Experiment,
    arms: Sequence[Mapping[str, Any]] | None,
    seeds: Sequence[int],
    *,
    normalise: Callable[[Mapping[str, Any]], dict] = normalise_config,
) -> Experiment | None:
    """The experiment reduced to the grid points matching one of ``arms`` (column ->
    value, as results rows hold them; ``None``: every grid point), with ``seeds``;
    ``None`` if no point matches."""
    keys = {k for a in arms or () for k in a}
    groups: list[dict[str, list]] = []
    for p in dataclasses.replace(experiment, seeds=list(seeds)).points(normalise):
        view = {k: row_value(p.settings.get(k, get_dotted(p.config, k))) for k in keys}
        if arms is None or any(matches(view, a) for a in arms):
            g = {k: [v] for k, v in p.settings.items() if k != "seed"}
            if g not in groups:
                groups.append(g)
    # the restricted arms are run as they are: no tuning stage (experiments.tuning)
    return (
        dataclasses.replace(experiment, grid=groups, seeds=list(seeds), tuning=None)
        if groups
        else None
    )


def write_full_results(
    experiment: Experiment,
    seeds: Sequence[int],
    runs: str | Path,
    *,
    normalise: Callable[[Mapping[str, Any]], dict] = normalise_config,
) -> Path:
    """Rewrite ``results.csv`` (and ``experiment.json``) of ``experiment`` over its full
    grid and ``seeds``: every point of its own seeds, complete runs of the others."""
    full = dataclasses.replace(experiment, seeds=list(seeds))
    res = run_sweep(full, out=runs, dry_run=True, normalise=normalise, log=lambda s: None)
    own = set(experiment.seeds)
    rows = [r for r in res.rows if r.get("status") == "complete" or r.get("seed") in own]
    write_csv_atomic(res.results_path, rows, result_columns(full.swept_keys()))
    write_json_atomic(
        res.results_path.parent / "experiment.json",
        {
            "name": full.name,
            "scale": full.scale,
            "figure": full.figure,
            "title": full.title,
            "note": full.note,
            "base": full.base,
            "grid": full.grid,
            "seeds": full.seeds,
            "seeds_added_until_decided": [s for s in full.seeds if s not in own],
        },
        sort_keys=True,
    )
    return res.results_path


def rows_of(runs: str | Path, scale: str) -> Callable[[str], list[dict[str, Any]] | None]:
    """Experiment name -> the rows of its ``results.csv`` under ``runs`` (``None`` when
    its sweep has not run)."""

    def rows(name: str) -> list[dict[str, Any]] | None:
        p = sweep_paths(runs, scale, name)[1] / "results.csv"
        return read_results(p) if p.is_file() else None

    return rows


def one_scale(experiments: Mapping[str, Experiment]) -> str:
    """The one scale of ``experiments`` (``"quick"`` when there are none)."""
    scales = {e.scale for e in experiments.values()}
    if len(scales) > 1:
        raise ValueError(f"experiments must share one scale, got {sorted(scales)}")
    return scales.pop() if scales else "quick"


def evaluation_stages(
    experiments: Mapping[str, Experiment],
    runs: str | Path,
    *,
    normalise: Callable[[Mapping[str, Any]], dict] = normalise_config,
    log: Callable[[str], None] = print,
) -> dict[str, Experiment]:
    """The experiments the rounds can grow, each as the experiment whose seeds they
    extend (:func:`_evaluation_stage`); one whose tuning is unfinished is left out (and
    said so)."""
    plain: dict[str, Experiment] = {}
    for name, e in experiments.items():
        stage = _evaluation_stage(e, runs, normalise)
        if stage is None:
            log(f"until decided: {name}: its tuning stage is unfinished; no seeds added")
        else:
            plain[name] = stage
    return plain


def undecided_claims(
    claims: Sequence[ClaimResult], grown: Mapping[str, Experiment]
) -> list[ClaimResult]:
    """The inconclusive claims on the experiments ``grown`` that more seeds can decide
    (every kind but the fixed-sample rank claims)."""
    return [
        c
        for c in claims
        if c.experiment in grown and c.verdict == "inconclusive" and c.numbers.get("kind") != "rank"
    ]


def next_round(
    undecided: Sequence[ClaimResult],
    seeds: Mapping[str, Sequence[int]],
    design: SequentialDesign,
) -> dict[str, tuple[int, list[dict] | None]]:
    """What the next round trains: experiment -> (its next planned look, the arms the
    undecided claims read, ``None`` for every cell: a claim that records no arms), for
    the experiments below the last look."""
    grow: dict[str, tuple[int, list[dict] | None]] = {}
    for c in undecided:
        nxt = design.next_look(len(seeds[c.experiment]))
        if nxt is None:
            continue
        _, arms = grow.setdefault(c.experiment, (nxt, []))
        if arms is None:
            continue
        if not c.arms:
            grow[c.experiment] = (nxt, None)
            continue
        arms.extend(a for a in c.arms if a not in arms)
    return grow


def _evaluation_stage(
    experiment: Experiment,
    runs: str | Path,
    normalise: Callable[[Mapping[str, Any]], dict],
) -> Experiment | None:
    """The experiment whose seeds the rounds extend: itself, or for a definition with
    a tuning stage its evaluation stage (``None`` while the tuning is unfinished)."""
    if experiment.tuning is None:
        return experiment
    store = sweep_paths(runs, experiment.scale, experiment.name)[0]
    selection = select_cells(experiment, store, normalise)
    return evaluation_experiment(experiment, selection) if selection.ready else None


def _stop_reason(
    claims: Sequence[ClaimResult],
    undecided: Sequence[ClaimResult],
    grown: Mapping[str, Experiment],
    asked: set[str],
    design: SequentialDesign,
) -> str:
    """Why the rounds stop, in words: what is still undecided at the last look, the
    inconclusive rank claims (no round grows them) and the experiments no round could
    grow (their tuning stage is unfinished)."""
    notes = []
    rank = sum(
        c.experiment in grown and c.verdict == "inconclusive" and c.numbers.get("kind") == "rank"
        for c in claims
    )
    if rank:
        notes.append(f"{rank} rank claim(s) inconclusive (fixed sample: no seeds added)")
    waiting = sorted(asked - set(grown))
    if waiting:
        notes.append(f"{', '.join(waiting)} not grown (tuning unfinished)")
    if undecided:
        head = f"{len(undecided)} claim(s) undecided at the last look (n = {design.looks[-1]})"
    else:
        head = "every sequential claim decided" if notes else "every claim decided"
    return "; ".join([head, *notes])


def evaluate_all(runs: str | Path, scale: str, design: SequentialDesign) -> list[ClaimResult]:
    """The paper's and the related work's claims on the store as it is now, read at the
    looks of ``design`` (a fresh read each round: the rounds add rows)."""
    paper = evaluate_claims(rows_of(runs, scale), design=design)
    # the related claims read enriched rows through a figure context; nothing is written
    ctx = FigureContext(scale, Path(runs), Path(runs), design=design)
    return paper + evaluate_related(ctx)


def run_until_decided(
    experiments: Mapping[str, Experiment],
    *,
    runs: str | Path,
    design: SequentialDesign,
    executor: Any = None,
    runner: str | Callable = DEFAULT_RUNNER,
    threads: int | None = 1,
    keep_checkpoints: bool = True,
    normalise: Callable[[Mapping[str, Any]], dict] = normalise_config,
    log: Callable[[str], None] = print,
) -> RoundsResult:
    """Add seeds to ``experiments`` (name -> definition at one scale, all swept once
    already) in rounds until their claims are decided (see the module docstring).

    Returns
    -------
    RoundsResult
        With the claims of the last evaluation (all experiments under ``runs``).
    """
    scale = one_scale(experiments)
    plain = evaluation_stages(experiments, runs, normalise=normalise, log=log)
    seeds = {name: list(e.seeds) for name, e in plain.items()}
    out = RoundsResult(seeds=seeds)
    while True:
        claims = evaluate_all(runs, scale, design)
        out.claims = claims
        undecided = undecided_claims(claims, plain)
        grow = next_round(undecided, seeds, design)
        if not grow:
            out.stopped = _stop_reason(claims, undecided, plain, set(experiments), design)
            log(f"until decided: stop, {out.stopped}")
            return out
        record: dict[str, Any] = {"undecided": len(undecided), "experiments": {}}
        for name, (n, arms) in grow.items():
            new = extend_seeds(seeds[name], n)[len(seeds[name]) :]
            sub = restrict(plain[name], arms, new, normalise=normalise)
            trained = failed = 0
            if sub is not None:
                log(
                    f"until decided: {name}: seeds {new} for {len(sub.grid)} arm(s) of "
                    f"{sum(c.experiment == name for c in undecided)} undecided claim(s)"
                )
                res = run_sweep(
                    sub,
                    out=runs,
                    executor=executor,
                    runner=runner,
                    threads=threads,
                    log=log,
                    keep_checkpoints=keep_checkpoints,
                    normalise=normalise,
                )
                trained, failed = res.n_run, res.n_failed
            seeds[name] = seeds[name] + new
            write_full_results(plain[name], seeds[name], runs, normalise=normalise)
            out.trained += trained
            out.failed += failed
            record["experiments"][name] = {
                "n": n,
                "new_seeds": new,
                "trained": trained,
                "failed": failed,
            }
        out.rounds.append(record)
