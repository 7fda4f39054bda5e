"""How a claim's verdict is read and reported: the rules in words, the record of one
claim checked on one experiment (:class:`ClaimResult`), the directional and "no better"
readings of a comparison, and the formatting of differences and intervals.

Shared by the paper's claims (:mod:`paper_figs.claims`, their findings in
:mod:`paper_figs.paper_findings`) and the related work's claims
(:mod:`paper_figs.related_claims`).  The vocabulary (holds / does not hold / negligible /
inconclusive), the margin :data:`MARGIN` and the decision of an interval are those of
:mod:`paper_figs.verdicts`:

* each claim compares two arms of a sweep, ``diff = mean(a) - mean(b)``, with a
  **paired** t-test when the arms ran the same seeds (same initialisation and
  data order), **Welch**'s test otherwise; both are reported;
* the verdict is read from one interval of the difference: the ``1 - alpha``
  t interval of the test used, ``alpha = 0.05 / m`` with ``m`` the number of
  cells a best-of selection scanned (Bonferroni, so picking a maximum does not
  manufacture significance), or, under a sequential design
  (:mod:`paper_figs.sequential`, ``anisotropy figures --until-decided``), the
  repeated confidence interval of the first look at which the claim is decided;
* directional claims ("A beats B"): **negligible** inside ``+-MARGIN``, else
  **holds** above 0, **does not hold** below 0, else **inconclusive**;
* "no better" claims (y = 8 vs y = 4, weight decay vs nothing): **holds** below
  ``+MARGIN``, **does not hold** above ``+MARGIN``, else **inconclusive**.

A claim whose sweep has not run is reported as **not run**.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .sequential import SequentialDesign
from .verdicts import (
    ALPHA,
    MARGIN,
    OUTCOMES,
    VERDICTS,
    Arm,
    Critical,
    Evidence,
    Verdict,
    compare,
    decide,
    fixed_critical,
)

__all__ = [
    "ALPHA",
    "MARGIN",
    "VERDICTS",
    "OUTCOMES",
    "RULES",
    "ClaimResult",
    "FIXED_LOOK",
    "Look",
    "NotRun",
    "claim_result",
    "directional",
    "equivalence",
    "evidence_numbers",
    "evidence_text",
    "format_interval",
    "format_pp",
    "finite_number",
    "format_value_unit",
    "rules",
    "complete_seeds",
    "read_at_looks",
    "compare_at",
    "describe_design",
]


class NotRun(Exception):
    """The rows lack what a claim compares (the message says what): the claim is
    reported as **not run**."""


def rules(design: SequentialDesign | None = None) -> dict[str, str]:
    """The decision rules in words (for ``claims.md`` and ``claims.json``)."""
    interval = (
        "the 1 - alpha t interval of the test"
        if design is None
        else "the repeated confidence interval of the first decided look of the design "
        f"({design.describe()})"
    )
    return {
        "test": "paired t-test of the per-seed differences when the two arms ran the same "
        "seeds, Welch's unequal-variance t-test otherwise; alpha = 0.05/m "
        "(Bonferroni over the m cells a best-of selection scanned)",
        "directional": f"{interval}: negligible if inside +-{format_pp(MARGIN)} (TOST at alpha/2 "
        "per side), else holds if above 0, does not hold if below 0, "
        "else inconclusive",
        "no better": f"{interval}: holds if below +{format_pp(MARGIN)}, does not hold if above "
        f"+{format_pp(MARGIN)}, else inconclusive",
    }


@dataclass
class ClaimResult:
    """One claim checked on one experiment.

    ``arms`` lists the selections (column -> value) whose runs the verdict read:
    the arms that more seeds would have to extend.
    """

    id: str
    section: str
    claim: str
    experiment: str
    metric: str
    rule: str
    verdict: str
    evidence: str = ""
    numbers: dict = field(default_factory=dict)
    arms: list = field(default_factory=list)

    @property
    def decided(self) -> bool:
        return self.verdict in VERDICTS and self.verdict != "inconclusive"

    def report(self) -> str:
        return (
            f"[{self.verdict}] {self.id} (section {self.section}, {self.experiment}): "
            f"{self.claim}\n    {self.evidence}"
        )


def claim_result(
    entry: Sequence[Any],
    experiment: str,
    rule: Mapping[str, str],
    verdict: str,
    evidence: str = "",
    numbers: Mapping[str, Any] | None = None,
    arms: list | None = None,
) -> ClaimResult:
    """The :class:`ClaimResult` of one claim on one experiment.

    Parameters
    ----------
    entry : sequence
        The claim's row of :data:`paper_figs.claims.CLAIMS` or of
        :data:`paper_figs.related_claims.RELATED_CLAIMS`: (id, section, claim,
        experiments, rule kind, function, metric).
    experiment : str
        The experiment it was checked on.
    rule : mapping
        Rule kind -> the rule in words (:func:`rules`); the claim's kind picks its rule.
    verdict, evidence :
        As in :class:`ClaimResult`.
    numbers : mapping, optional
        The finding's numbers; the rule kind is added under ``"kind"``.  ``None``: no
        numbers at all (not even the kind).
    arms : list, optional
        The selections the verdict read (default none).
    """
    cid, section, text, _, kind, _, metric = entry
    return ClaimResult(
        cid,
        section,
        text,
        experiment,
        metric,
        rule[kind],
        verdict,
        evidence,
        {} if numbers is None else {**numbers, "kind": kind},
        [] if arms is None else arms,
    )


@dataclass(frozen=True)
class Look:
    """How intervals are read: fixed-sample, or one look of a sequential design."""

    critical: Critical = fixed_critical
    design: str = "fixed"


FIXED_LOOK = Look()


def complete_seeds(rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Seeds of the complete runs, ascending (the order ``--until-decided`` adds them)."""
    return sorted(
        {
            int(r["seed"])
            for r in rows
            if r.get("status") == "complete" and isinstance(r.get("seed"), (int, np.integer))
        }
    )


def read_at_looks(
    read: Callable[[list[Mapping[str, Any]], Look], tuple[Verdict, str, dict]],
    rows: Sequence[Mapping[str, Any]],
    design: SequentialDesign,
) -> tuple[Verdict, str, dict]:
    """Read a claim at every planned look of ``design`` its seeds reach, each look on
    the runs of the first ``n_k`` seeds (:func:`complete_seeds`), stopping at the first
    decided look; the numbers gain ``"look"`` (the ``n_k`` read, ``None`` before the
    first look).

    ``read(rows, look)`` is the claim's finding: (verdict, evidence, numbers).  Before
    the first look nothing is decided: the finding is read on every run for its
    description (infinite critical value) and the verdict is ``"inconclusive"``.  A look
    whose runs cannot be read (the finding raises :class:`NotRun`, e.g. an arm with
    fewer than 2 complete runs among the first ``n_k`` seeds) is passed over, which
    only forgoes that look's share of alpha; the claim is not run when no look can be
    read.
    """
    seeds = complete_seeds(rows)
    looks = [(k, n) for k, n in enumerate(design.looks) if n <= len(seeds)]
    if not looks:
        _, text, nums = read(
            list(rows),
            Look(
                lambda a, df: math.inf,
                f"{len(seeds)} seeds, before the first look (n = {design.looks[0]})",
            ),
        )
        return "inconclusive", text, {**nums, "look": None}
    reading: tuple[Verdict, str, dict] | None = None
    missing: NotRun | None = None
    for k, n in looks:
        keep = set(seeds[:n])

        def critical(a: float, df: float, k: int = k) -> float:
            return design.critical(k, alpha=a, df=df)

        try:
            v, text, nums = read(
                [r for r in rows if r.get("seed") in keep],
                Look(critical, f"look {k + 1} of {len(design.looks)} (n = {n})"),
            )
        except NotRun as exc:  # e.g. an arm short of complete runs among the first n seeds
            missing = exc
            continue
        reading = (v, text, {**nums, "look": n})
        if v != "inconclusive":
            break
    if reading is None:
        raise missing if missing is not None else NotRun("no look could be read")
    return reading


def compare_at(
    a: Arm | Sequence[float] | np.ndarray,
    b: Arm | Sequence[float] | np.ndarray,
    *,
    alpha: float,
    look: Look = FIXED_LOOK,
) -> Evidence:
    """:func:`paper_figs.verdicts.compare` with its interval read at ``look`` (its
    critical value and the design's description)."""
    return compare(a, b, alpha=alpha, critical=look.critical, design=look.design)


def describe_design(design: SequentialDesign | None) -> str:
    """The design verdicts are read at, in words, as the claims files record it."""
    return "fixed sample" if design is None else design.describe()


def directional(
    a: Arm | np.ndarray, b: Arm | np.ndarray, *, m: int = 1, look: Look = FIXED_LOOK
) -> tuple[Verdict, Evidence, float]:
    """Verdict of the claim ``mean(a) > mean(b)`` (see module docstring); returns
    (verdict, evidence, alpha)."""
    alpha = ALPHA / max(int(m), 1)
    e = compare_at(a, b, alpha=alpha, look=look)
    return decide(e.lo, e.hi, kind="directional"), e, alpha


def equivalence(diff: float, lo: float, hi: float) -> Verdict:
    """Verdict of "the difference is no better than 0" from its interval ``[lo, hi]``."""
    return decide(lo, hi, kind="no better")


def format_value_unit(x: float, unit: str) -> str:
    """A signed difference in its unit: ``"pp"`` (an accuracy difference, in percentage
    points), ``"epochs"``, ``"% (log)"`` (a relative change, ``100 log`` of a ratio, in
    per cent), ``"tau"`` / ``"tau difference"`` (a rank correlation or a difference of two,
    three decimals after the name), or any other (three decimals)."""
    if unit == "pp":
        return f"{100 * x:+.2f} pp"
    if unit == "epochs":
        return f"{x:+.2f} epochs"
    if unit == "% (log)":
        return f"{x:+.2f} %"
    if unit in ("tau", "tau difference"):
        return f"{unit} {x:+.3f}"
    return f"{x:+.3f}"


def format_interval(lo: float, hi: float, unit: str) -> str:
    """An interval of differences in its unit (as :func:`format_value_unit`; a rank
    correlation's without a name)."""
    if unit == "pp":
        return f"[{100 * lo:+.2f}, {100 * hi:+.2f}] pp"
    suffix = {"epochs": " epochs", "% (log)": " %"}.get(unit, "")
    return f"[{lo:+.2f}, {hi:+.2f}]{suffix}"


def finite_number(x: Any) -> bool:
    """A number that is finite (a claims file stores an interval that cannot exist yet,
    or a non-finite one, as ``null``)."""
    return isinstance(x, (int, float)) and math.isfinite(x)


def format_pp(x: float) -> str:
    """An unsigned accuracy difference (a margin) in percentage points."""
    return f"{100 * x:.2f} pp"


#: the fixed-sample rules in words
RULES = rules()


def evidence_text(label_a: str, label_b: str, e: Evidence, alpha: float, unit: str = "pp") -> str:
    """The evidence of a verdict in words: the difference ``label_a - label_b``, its
    paired and Welch 95 % intervals and the decision interval at ``alpha`` (with the
    sequential look it was read at, if any), in ``unit`` (:func:`format_value_unit`)."""
    parts = [f"{label_a} - {label_b} = {format_value_unit(e.diff, unit)}"]
    if e.paired is not None:
        c = e.paired
        parts.append(f"paired 95% {format_interval(c.lo, c.hi, unit)}, p = {c.p:.3g}, n = {c.n_a}")
    if e.welch is not None:
        c = e.welch
        parts.append(
            f"Welch 95% {format_interval(c.lo, c.hi, unit)}, p = {c.p:.3g}, n = {c.n_a} vs {c.n_b}"
        )
    where = "" if e.design == "fixed" else f", {e.design}"
    interval = format_interval(e.lo, e.hi, unit)
    parts.append(f"decision: {e.kind} {interval} at alpha = {alpha:.3g}{where}")
    return "; ".join(parts)


def evidence_numbers(e: Evidence, alpha: float, **kw: Any) -> dict:
    """The numbers of a finding: the evidence's (:meth:`Evidence.numbers`), the
    ``alpha`` it was read at and any extra entries."""
    return {**e.numbers(), "alpha": alpha, **kw}
