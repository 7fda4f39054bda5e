"""``anisotropy figures --until-decided --plan``: what the next round of seeds would train
and what it would cost, without training or drawing anything.

Reads the claims as :func:`paper_figs.until_decided.run_until_decided` would at its
first round (the paper's and the related work's, at the looks of the design), picks the
experiments it would grow and the arms it would extend
(:func:`~paper_figs.until_decided.next_round`), and counts the new runs.  Their cost is
estimated from the store: the mean ``wall_time`` of the experiment's complete runs of
the same arms in its ``results.csv`` (training and evaluation; an end-of-run flatness
measurement is not included).  Only the next round is planned: whether a later one is
needed depends on the runs this one adds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.definitions import Experiment, normalise_config

from .claim_rules import ClaimResult
from .sequential import SequentialDesign
from .stats import matches
from .until_decided import (
    evaluate_all,
    evaluation_stages,
    extend_seeds,
    next_round,
    one_scale,
    restrict,
    rows_of,
    undecided_claims,
)

__all__ = ["PlannedGrowth", "RoundPlan", "plan_next_round", "mean_run_time"]


@dataclass(frozen=True)
class PlannedGrowth:
    """One experiment's part of the next round."""

    experiment: str
    look: int
    new_seeds: tuple[int, ...]
    cells: int
    runs: int
    undecided: int
    seconds_per_run: float
    timed_runs: int

    @property
    def seconds(self) -> float:
        """Estimated run time of the new runs, summed (``nan`` without timed runs)."""
        return self.runs * self.seconds_per_run

    def describe(self) -> str:
        seeds = ", ".join(map(str, self.new_seeds))
        cost = (
            f"~{self.seconds:,.0f} s of run time (mean {self.seconds_per_run:,.0f} s per run "
            f"over {self.timed_runs} complete runs)"
            if self.timed_runs
            else "no complete run to time"
        )
        return (
            f"{self.experiment}: look n = {self.look}, seeds {seeds} for {self.cells} cell(s) "
            f"= {self.runs} runs ({self.undecided} undecided claim(s)); {cost}"
        )


@dataclass
class RoundPlan:
    """The next round of ``--until-decided``: its growth per experiment, the undecided
    claims, the experiments it could not grow, the design."""

    looks: tuple[int, ...]
    growth: list[PlannedGrowth] = field(default_factory=list)
    undecided: int = 0
    not_grown: list[str] = field(default_factory=list)
    claims: list[ClaimResult] = field(default_factory=list, repr=False)

    @property
    def runs(self) -> int:
        return sum(g.runs for g in self.growth)

    @property
    def seconds(self) -> float:
        """Estimated run time of the round summed over its runs (timed experiments only)."""
        return sum(g.seconds for g in self.growth if g.timed_runs)

    def report(self, *, workers: int = 1) -> str:
        """The plan in words; ``workers``: parallel runs, for the wall-time estimate."""
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
        looks = ", ".join(map(str, self.looks))
        lines = [f"until decided (plan): looks at n = {looks}; {self.undecided} claim(s) undecided"]
        lines += [f"  {g.describe()}" for g in self.growth]
        lines += [f"  {name}: not grown (tuning unfinished)" for name in self.not_grown]
        if not self.growth:
            lines.append("  next round: nothing to train (every claim decided or at the last look)")
        else:
            hours = self.seconds / 3600
            lines.append(
                f"  next round: {self.runs} runs, ~{hours:.1f} CPU-hours of run time; "
                f"~{hours / workers:.1f} h of wall time with {workers} worker(s)"
            )
        return "\n".join(lines)


def mean_run_time(
    rows: Sequence[Mapping[str, Any]], arms: Sequence[Mapping[str, Any]] | None
) -> tuple[float, int]:
    """Mean ``wall_time`` of the complete rows matching one of ``arms`` (``None``: every
    row) and how many were timed; ``(nan, 0)`` when none is."""
    times = [
        float(r["wall_time"])
        for r in rows
        if r.get("status") == "complete"
        and r.get("wall_time") is not None
        and math.isfinite(float(r["wall_time"]))
        and (arms is None or any(matches(r, a) for a in arms))
    ]
    return (sum(times) / len(times), len(times)) if times else (math.nan, 0)


def plan_next_round(
    experiments: Mapping[str, Experiment],
    *,
    runs: str | Path,
    design: SequentialDesign,
    normalise: Callable[[Mapping[str, Any]], dict] = normalise_config,
    log: Callable[[str], None] = print,
) -> RoundPlan:
    """The next round :func:`paper_figs.until_decided.run_until_decided` would train on
    ``experiments`` (name -> definition at one scale) from the store ``runs``."""
    scale = one_scale(experiments)
    plain = evaluation_stages(experiments, runs, normalise=normalise, log=log)
    claims = evaluate_all(runs, scale, design)
    undecided = undecided_claims(claims, plain)
    seeds = {name: list(e.seeds) for name, e in plain.items()}
    plan = RoundPlan(
        tuple(design.looks),
        undecided=len(undecided),
        not_grown=sorted(set(experiments) - set(plain)),
        claims=claims,
    )
    for name, (n, arms) in next_round(undecided, seeds, design).items():
        new = extend_seeds(seeds[name], n)[len(seeds[name]) :]
        sub = restrict(plain[name], arms, new, normalise=normalise)
        if sub is None:
            continue
        per_run, timed = mean_run_time(rows_of(runs, scale)(name) or [], arms)
        plan.growth.append(
            PlannedGrowth(
                name,
                n,
                tuple(new),
                len(sub.grid),
                len(sub.points(normalise)),
                sum(c.experiment == name for c in undecided),
                per_run,
                timed,
            )
        )
    return plan
