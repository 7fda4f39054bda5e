"""The paper's qualitative claims, each with a verdict computed from the sweep results.

Every verdict follows from the numbers by a stated rule; nothing is written by hand.
The vocabulary (holds / does not hold / negligible / inconclusive), the margin
:data:`MARGIN` and the rules are those of :mod:`paper_figs.verdicts`:

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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from anisotropy.io import nonfinite_to_null, write_json_atomic

from .sequential import SequentialDesign
from .stats import Comparison, markdown_table, paired, select, write_text_atomic
from .verdicts import (
    ALPHA,
    MARGIN,
    OUTCOMES,
    VERDICTS,
    Arm,
    Critical,
    Evidence,
    Kind,
    Outcome,
    Verdict,
    arm,
    compare,
    decide,
    evidence_from,
    fixed_critical,
)

__all__ = [
    "ALPHA",
    "MARGIN",
    "VERDICTS",
    "OUTCOMES",
    "ClaimResult",
    "claim_result",
    "evidence_text",
    "format_interval",
    "format_value_unit",
    "evaluate_claims",
    "write_claims",
    "directional",
    "equivalence",
    "rules",
    "CLAIMS",
    "CLAIM_EXPERIMENTS",
]


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
        "directional": f"{interval}: negligible if inside +-{_abs_pct(MARGIN)} (TOST at alpha/2 "
        "per side), else holds if above 0, does not hold if below 0, "
        "else inconclusive",
        "no better": f"{interval}: holds if below +{_abs_pct(MARGIN)}, does not hold if above "
        f"+{_abs_pct(MARGIN)}, else inconclusive",
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
        The claim's row of :data:`CLAIMS` or of
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


# ----------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class _Look:
    """How intervals are read: fixed-sample, or one look of a sequential design."""

    critical: Critical = fixed_critical
    design: str = "fixed"


_FIXED = _Look()


def directional(
    a: Arm | np.ndarray, b: Arm | np.ndarray, *, m: int = 1, look: _Look = _FIXED
) -> tuple[Verdict, Evidence, float]:
    """Verdict of the claim ``mean(a) > mean(b)`` (see module docstring); returns
    (verdict, evidence, alpha)."""
    alpha = ALPHA / max(int(m), 1)
    e = compare(a, b, alpha=alpha, critical=look.critical, design=look.design)
    return decide(e.lo, e.hi, kind="directional"), e, alpha


def equivalence(diff: float, lo: float, hi: float) -> Verdict:
    """Verdict of "the difference is no better than 0" from its interval ``[lo, hi]``."""
    return decide(lo, hi, kind="no better")


class _Scan:
    """Rows of one experiment; remembers every selection a claim made (its arms)."""

    def __init__(self, rows: Sequence[Mapping[str, Any]]):
        self.rows = rows
        self.arms: list[dict[str, Any]] = []

    def select(self, **where: Any) -> list[Mapping[str, Any]]:
        if where not in self.arms:
            self.arms.append(dict(where))
        return select(self.rows, **where)


def _cells(
    rows: _Scan, subsets: Sequence[str], metric: str, **extra: Any
) -> dict[tuple[str, float], Arm]:
    out = {}
    for s in subsets:
        for r in sorted(
            {x["smoothing.R"] for x in select(rows.rows, **{"smoothing.layers": s}, **extra)}
        ):
            v = arm(rows.select(**{"smoothing.layers": s, "smoothing.R": r}, **extra), metric)
            if v.n >= 2:
                out[(s, r)] = v
    return out


def _best(cells: Mapping[Any, Arm]) -> Any:
    return max(cells, key=lambda k: float(np.mean(cells[k].values)))


def _subsets(rows: _Scan) -> list[str]:
    return sorted(
        {
            str(r["smoothing.layers"])
            for r in rows.rows
            if r.get("status") == "complete" and r.get("smoothing.layers") not in (None, "none")
        },
        key=lambda s: (s.count("+"), s),
    )


def _base(rows: _Scan, metric: str, **extra: Any) -> Arm:
    return arm(rows.select(**{"smoothing.layers": "none"}, **extra), metric)


def format_value_unit(x: float, unit: str) -> str:
    """A signed difference in its unit: ``"pp"`` (an accuracy difference, in percentage
    points), ``"epochs"``, or any other (a rank correlation, three decimals)."""
    if unit == "pp":
        return f"{100 * x:+.2f} pp"
    if unit == "epochs":
        return f"{x:+.2f} epochs"
    return f"{x:+.3f}"


def format_interval(lo: float, hi: float, unit: str) -> str:
    """An interval of differences in its unit (as :func:`format_value_unit`)."""
    if unit == "pp":
        return f"[{100 * lo:+.2f}, {100 * hi:+.2f}] pp"
    return f"[{lo:+.2f}, {hi:+.2f}]" + (" epochs" if unit == "epochs" else "")


def _pct(x: float) -> str:
    return format_value_unit(x, "pp")


def _abs_pct(x: float) -> str:
    return f"{100 * x:.2f} pp"


def _ci(lo: float, hi: float) -> str:
    return format_interval(lo, hi, "pp")


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


def _numbers(e: Evidence, alpha: float, **kw: Any) -> dict:
    return {**e.numbers(), "alpha": alpha, **kw}


# ----------------------------------------------------------------------------- claims

Finding = tuple[Verdict, str, dict]


def _improves(rows: _Scan, look: _Look) -> Finding:
    cells = _cells(rows, _subsets(rows), "best_test_acc")
    base = _base(rows, "best_test_acc")
    if not cells or base.n < 2:
        raise _NotRun("needs smoothed cells and >= 2 unsmoothed runs")
    k = _best(cells)
    v, e, alpha = directional(cells[k], base, m=len(cells), look=look)
    return (
        v,
        evidence_text(f"best cell ({k[0]}, R={k[1]:g})", "no smoothing", e, alpha),
        _numbers(e, alpha, cell=list(k)),
    )


def _maximum(rows: _Scan, look: _Look, subset: str | None = None) -> Finding:
    cells = _cells(rows, _subsets(rows) if subset is None else [subset], "best_test_acc")
    if not cells:
        raise _NotRun("needs smoothed cells")
    s, r_star = _best(cells)
    rs = sorted(r for (ss, r) in cells if ss == s)
    if len(rs) < 2:
        raise _NotRun("needs >= 2 values of R")
    r_max = rs[-1]
    if r_star == r_max:  # still rising at the edge of the grid: is the edge really better?
        other = max(
            (r for r in rs if r != r_max), key=lambda r: float(np.mean(cells[(s, r)].values))
        )
        v, e, alpha = directional(cells[(s, r_max)], cells[(s, other)], m=len(rs), look=look)
        # the edge better: no interior maximum; the edge worse cannot be (it has the
        # best mean) unless by noise; a negligible step: no degradation either way
        verdict: Verdict = {"holds": "does not hold", "does not hold": "inconclusive"}.get(v, v)  # type: ignore[assignment]
        return (
            verdict,
            (
                f"{s}: maximum at the largest R = {r_max:g}; "
                + evidence_text(f"R={r_max:g}", f"R={other:g}", e, alpha)
            ),
            _numbers(e, alpha, subset=s, r_star=r_star, r_max=r_max, orientation="reversed"),
        )
    v, e, alpha = directional(cells[(s, r_star)], cells[(s, r_max)], m=len(rs), look=look)
    return (
        v,
        (
            f"{s}: maximum at R = {r_star:g}; "
            + evidence_text(f"R={r_star:g}", f"R={r_max:g} (largest)", e, alpha)
        ),
        _numbers(e, alpha, subset=s, r_star=r_star, r_max=r_max),
    )


def _isotropic_degrades(rows: _Scan, look: _Look) -> Finding:
    full = max(_subsets(rows), key=lambda s: s.count("+"), default=None)
    if full is None or "+" not in full:
        raise _NotRun("needs an all-layer subset")
    return _maximum(rows, look, full)


def _single_beats_isotropic(rows: _Scan, look: _Look) -> Finding:
    subsets = _subsets(rows)
    singles = [s for s in subsets if "+" not in s]
    full = max(subsets, key=lambda s: s.count("+"), default=None)
    if not singles or full is None or "+" not in full:
        raise _NotRun("needs single-layer and all-layer subsets")
    cs, cf = _cells(rows, singles, "best_test_acc"), _cells(rows, [full], "best_test_acc")
    if not cs or not cf:
        raise _NotRun("needs >= 2 seeds per cell")
    ks, kf = _best(cs), _best(cf)
    v, e, alpha = directional(cs[ks], cf[kf], m=len(cs) + len(cf), look=look)
    return (
        v,
        evidence_text(
            f"best single layer ({ks[0]}, R={ks[1]:g})",
            f"best isotropic ({kf[0]}, R={kf[1]:g})",
            e,
            alpha,
        ),
        _numbers(e, alpha, single=list(ks), isotropic=list(kf)),
    )


def _deeper(rows: _Scan, look: _Look) -> Finding:
    singles = [s for s in _subsets(rows) if "+" not in s]
    if len(singles) < 2:
        raise _NotRun("needs >= 2 single-layer subsets")
    first, deep = singles[0], singles[-1]
    c1, cd = _cells(rows, [first], "best_test_acc"), _cells(rows, [deep], "best_test_acc")
    if not c1 or not cd:
        raise _NotRun("needs >= 2 seeds per cell")
    k1, kd = _best(c1), _best(cd)
    v, e, alpha = directional(cd[kd], c1[k1], m=len(c1) + len(cd), look=look)
    return (
        v,
        evidence_text(f"deepest ({kd[0]}, R={kd[1]:g})", f"first ({k1[0]}, R={k1[1]:g})", e, alpha),
        _numbers(e, alpha, deep=list(kd), first=list(k1)),
    )


def _mean_of_cell_diffs_welch(c8: Sequence[Arm], c4: Sequence[Arm]) -> Comparison:
    """Mean over m cells of the per-cell difference of means of independent runs:
    variance = sum of the per-group variances of the means / m^2, Welch-Satterthwaite
    degrees of freedom over all 2m groups."""
    parts = [(a.values.var(ddof=1) / a.n, a.n) for a in (*c8, *c4)]
    m = len(c8)
    d = float(np.mean([a.values.mean() - b.values.mean() for a, b in zip(c8, c4, strict=True)]))
    var = sum(p for p, _ in parts) / m**2
    se = math.sqrt(var)
    if var <= 0:
        return Comparison(
            d,
            d,
            d,
            math.copysign(math.inf, d) if d else 0.0,
            math.inf,
            0.0 if d else 1.0,
            sum(a.n for a in c8),
            sum(b.n for b in c4),
            se=0.0,
        )
    df = sum(p for p, _ in parts) ** 2 / sum(p**2 / (n - 1) for p, n in parts)
    h = float(sps.t.isf(ALPHA / 2, df)) * se
    return Comparison(
        d,
        d - h,
        d + h,
        d / se,
        df,
        float(2 * sps.t.sf(abs(d / se), df)),
        sum(a.n for a in c8),
        sum(b.n for b in c4),
        se=se,
    )


def _y8_no_better(rows: _Scan, look: _Look) -> Finding:
    subsets = _subsets(rows)
    c4 = _cells(rows, subsets, "best_test_acc", **{"smoothing.y": 4})
    c8 = _cells(rows, subsets, "best_test_acc", **{"smoothing.y": 8})
    keys = sorted(set(c4) & set(c8))
    if not keys:
        raise _NotRun("needs cells with both y = 4 and y = 8")
    a8, a4 = [c8[k] for k in keys], [c4[k] for k in keys]
    w = _mean_of_cell_diffs_welch(a8, a4)
    # paired when every cell ran the same seeds at y = 4 and y = 8: the per-seed
    # mean over cells of y8 - y4 is one difference per seed
    seeds = {a.seeds for a in (*a8, *a4)}
    p = None
    if len(seeds) == 1 and None not in seeds and a8[0].n >= 2:
        order = sorted(a8[0].by_seed())
        p = paired(
            [float(np.mean([a.by_seed()[s] for a in a8])) for s in order],
            [float(np.mean([a.by_seed()[s] for a in a4])) for s in order],
        )
    e = evidence_from(
        p or w, welch_c=w, paired_c=p, alpha=ALPHA, critical=look.critical, design=look.design
    )
    v = equivalence(e.diff, e.lo, e.hi)
    return (
        v,
        (
            f"mean over {len(keys)} (subset, R) cells of "
            + evidence_text("y8", "y4", e, ALPHA)
            + f"; margin {_abs_pct(MARGIN)}"
        ),
        _numbers(e, ALPHA, cells=len(keys), margin=MARGIN),
    )


def _head_pick(rows: _Scan, metric: str = "best_test_acc") -> tuple[str, Arm]:
    heads = {
        s: arm(rows.select(**{"smoothing.layers": s, "optim.weight_decay": 0.0}), metric)
        for s in ("fc1", "fc2")
    }
    heads = {s: v for s, v in heads.items() if v.n >= 2}
    if not heads:
        raise _NotRun("needs PLA runs on fc1 or fc2")
    s = max(heads, key=lambda k: float(np.mean(heads[k].values)))
    return s, heads[s]


def _head_helps(rows: _Scan, look: _Look) -> Finding:
    s, a = _head_pick(rows)
    base = _base(rows, "best_test_acc", **{"optim.weight_decay": 0.0})
    if base.n < 2:
        raise _NotRun("needs >= 2 unsmoothed runs")
    v, e, alpha = directional(a, base, m=2, look=look)
    return (
        v,
        evidence_text(f"PLA on {s} (better head layer)", "no smoothing", e, alpha),
        _numbers(e, alpha, layer=s),
    )


def _gap(r: Mapping[str, Any]) -> float:
    return float(r["best_test_acc"]) - float(r["final_test_acc"])


def _early_stopping(rows: _Scan, look: _Look) -> Finding:
    s, _ = _head_pick(rows)
    sel = rows.select(**{"smoothing.layers": s, "optim.weight_decay": 0.0})
    base = rows.select(**{"smoothing.layers": "none", "optim.weight_decay": 0.0})
    if len(base) < 2:
        raise _NotRun("needs >= 2 unsmoothed runs")
    v, e, alpha = directional(arm(sel, _gap), arm(base, _gap), m=1, look=look)
    return (
        v,
        (
            "gain in best acc minus gain in final acc = "
            + evidence_text(f"(best - final) PLA on {s}", "(best - final) no smoothing", e, alpha)
        ),
        _numbers(e, alpha, layer=s),
    )


def _conv_hurts(rows: _Scan, look: _Look) -> Finding:
    convs = [s for s in _subsets(rows) if s.startswith("conv")]
    if not convs:
        raise _NotRun("needs a run smoothing a convolution")
    base = _base(rows, "best_test_acc")
    results = []
    for s in convs:
        a = arm(rows.select(**{"smoothing.layers": s}), "best_test_acc")
        if a.n >= 2 and base.n >= 2:
            results.append((s, *directional(base, a, m=len(convs), look=look)))
    if not results:
        raise _NotRun("needs >= 2 seeds")
    s, v, e, alpha = results[0]
    return v, evidence_text("no smoothing", f"PLA on {s}", e, alpha), _numbers(e, alpha, layer=s)


def _wd_no_help(rows: _Scan, look: _Look) -> Finding:
    base = _base(rows, "best_test_acc", **{"optim.weight_decay": 0.0})
    wds = sorted(
        {
            r["optim.weight_decay"]
            for r in select(rows.rows, **{"smoothing.layers": "none"})
            if r["optim.weight_decay"]
        }
    )
    if not wds or base.n < 2:
        raise _NotRun("needs weight-decay and unregularised runs")
    verdicts, parts, nums, evs = [], [], {}, []
    for wd in wds:
        a = arm(
            rows.select(**{"smoothing.layers": "none", "optim.weight_decay": wd}), "best_test_acc"
        )
        e = compare(a, base, alpha=ALPHA, critical=look.critical, design=look.design)
        verdicts.append(equivalence(e.diff, e.lo, e.hi))
        evs.append(e)
        parts.append(f"wd {wd:g}: " + evidence_text("wd", "none", e, ALPHA))
        nums[f"{wd:g}"] = e.numbers()
    v: Verdict
    if "does not hold" in verdicts:
        v = "does not hold"
    elif all(x == "holds" for x in verdicts):
        v = "holds"
    else:
        v = "inconclusive"
    # the deciding comparison: the one whose interval reaches highest
    worst = max(range(len(evs)), key=lambda i: evs[i].hi)
    return (
        v,
        ("weight decay - none: " + " | ".join(parts) + f"; margin {_abs_pct(MARGIN)}"),
        {
            **_numbers(evs[worst], ALPHA, weight_decay=wds[worst]),
            "per_weight_decay": nums,
            "margin": MARGIN,
        },
    )


def _pla_beats_wd(rows: _Scan, look: _Look) -> Finding:
    s, a = _head_pick(rows)
    wds = {
        r["optim.weight_decay"]
        for r in select(rows.rows, **{"smoothing.layers": "none"})
        if r["optim.weight_decay"]
    }
    cells = {
        wd: arm(
            rows.select(**{"smoothing.layers": "none", "optim.weight_decay": wd}), "best_test_acc"
        )
        for wd in wds
    }
    cells = {k: v for k, v in cells.items() if v.n >= 2}
    if not cells:
        raise _NotRun("needs weight-decay runs")
    wd = _best(cells)
    v, e, alpha = directional(a, cells[wd], m=2 + len(cells), look=look)
    return (
        v,
        evidence_text(f"PLA on {s}", f"best weight decay ({wd:g})", e, alpha),
        _numbers(e, alpha, layer=s, weight_decay=wd),
    )


class _NotRun(Exception):
    pass


#: (id, paper section, claim, experiments, rule kind, function, metric)
CLAIMS: tuple[
    tuple[str, str, str, tuple[str, ...], Kind, Callable[[_Scan, _Look], Finding], str], ...
] = (
    (
        "smoothing-improves",
        "4.1",
        "partial smoothing improves the test accuracy (best layer subset and R vs no smoothing)",
        ("fig3", "fig4_left", "fig4_right"),
        "directional",
        _improves,
        "best_test_acc",
    ),
    (
        "interior-maximum",
        "4.1",
        "accuracy improves with R up to a maximum, beyond which it "
        "degrades (best subset: its best R vs the largest R)",
        ("fig3", "fig4_left", "fig4_right"),
        "directional",
        _maximum,
        "best_test_acc",
    ),
    (
        "isotropic-degrades",
        "4.2, 4.3",
        "isotropic smoothing (all layers) degrades as R grows (its best R vs the largest R)",
        ("fig3", "fig4_left", "fig4_right"),
        "directional",
        _isotropic_degrades,
        "best_test_acc",
    ),
    (
        "single-beats-isotropic",
        "4.1, 4.2",
        "smoothing a single layer beats smoothing all layers (isotropic), each at its best R",
        ("fig3", "fig4_left", "fig4_right"),
        "directional",
        _single_beats_isotropic,
        "best_test_acc",
    ),
    (
        "deeper-benefits-more",
        "4.1",
        "smoothing a deeper layer helps more than smoothing the "
        "first (deepest vs first single layer, each at its best R)",
        ("fig3", "fig4_left", "fig4_right"),
        "directional",
        _deeper,
        "best_test_acc",
    ),
    (
        "y8-no-better",
        "4.4",
        "y = 8 samples per step is no better than y = 4",
        ("fig5",),
        "no better",
        _y8_no_better,
        "best_test_acc",
    ),
    (
        "head-smoothing-helps",
        "5.1, 5.2, 5.3",
        "PLA on a fully connected layer of the CNN head improves the best test accuracy",
        ("fig6", "fig8"),
        "directional",
        _head_helps,
        "best_test_acc",
    ),
    (
        "mostly-early-stopping",
        "5.1, 5.2, 5.3",
        "the gain of head smoothing is mostly an "
        "early-stopping gain (larger in best than in final test accuracy)",
        ("fig6", "fig8"),
        "directional",
        _early_stopping,
        "best_test_acc - final_test_acc",
    ),
    (
        "conv-smoothing-hurts",
        "5.1",
        "smoothing a convolutional layer lowers the accuracy",
        ("fig6",),
        "directional",
        _conv_hurts,
        "best_test_acc",
    ),
    (
        "weight-decay-no-help",
        "5.2.1",
        "weight decay (1e-2, 1e-3, 1e-4) does not improve the best test accuracy",
        ("fig7",),
        "no better",
        _wd_no_help,
        "best_test_acc",
    ),
    (
        "pla-beats-weight-decay",
        "5.2.1",
        "PLA on the head beats the best weight decay",
        ("fig7",),
        "directional",
        _pla_beats_wd,
        "best_test_acc",
    ),
)


#: the experiments the claims read, in the order of :data:`CLAIMS`
CLAIM_EXPERIMENTS: tuple[str, ...] = tuple(dict.fromkeys(e for c in CLAIMS for e in c[3]))


def _seeds(rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Seeds of the complete runs, in the order they were added (ascending)."""
    return sorted(
        {
            int(r["seed"])
            for r in rows
            if r.get("status") == "complete" and isinstance(r.get("seed"), (int, np.integer))
        }
    )


def _sequential(
    fn: Callable[[_Scan, _Look], Finding],
    rows: Sequence[Mapping[str, Any]],
    design: SequentialDesign,
) -> tuple[Verdict, str, dict, list]:
    """Read the claim at every planned look the seeds reach (each look on the runs
    of the first ``n_k`` seeds), stopping at the first decided look."""
    seeds = _seeds(rows)
    looks = [(k, n) for k, n in enumerate(design.looks) if n <= len(seeds)]
    if not looks:  # before the first look: describe, decide nothing
        scan = _Scan(rows)
        _, text, nums = fn(
            scan,
            _Look(
                lambda a, df: math.inf,
                f"{len(seeds)} seeds, before the first look (n = {design.looks[0]})",
            ),
        )
        return "inconclusive", text, {**nums, "look": None}, scan.arms
    for k, n in looks:
        keep = set(seeds[:n])
        scan = _Scan([r for r in rows if r.get("seed") in keep])

        def critical(a: float, df: float, k: int = k) -> float:
            return design.critical(k, alpha=a, df=df)

        look = _Look(
            critical,
            f"look {k + 1} of {len(design.looks)} (n = {n})",
        )
        v, text, nums = fn(scan, look)
        if v != "inconclusive":
            break
    return v, text, {**nums, "look": n}, scan.arms


def evaluate_claims(
    rows_of: Callable[[str], Sequence[Mapping[str, Any]] | None],
    *,
    design: SequentialDesign | None = None,
) -> list[ClaimResult]:
    """Check every claim on every experiment it applies to.

    Parameters
    ----------
    rows_of : callable
        Experiment name -> its results rows, or ``None`` if its sweep has not run.
    design : SequentialDesign, optional
        Read the verdicts at the looks of this group-sequential design (valid under
        optional stopping); default: one fixed-sample test on all seeds.
    """
    out = []
    rule = rules(design)
    for entry in CLAIMS:
        _, _, _, exps, _, fn, _ = entry
        for exp in exps:
            rows = rows_of(exp)
            if rows is None:
                out.append(claim_result(entry, exp, rule, "not run", "sweep not run"))
                continue
            arms: list = []
            verdict: Outcome
            try:
                if design is None:
                    scan = _Scan(rows)
                    verdict, evidence, numbers = fn(scan, _FIXED)
                    arms = scan.arms
                else:
                    verdict, evidence, numbers, arms = _sequential(fn, rows, design)
            except _NotRun as exc:
                verdict, evidence, numbers = "not run", str(exc), {}
            out.append(claim_result(entry, exp, rule, verdict, evidence, numbers, arms))
    return out


def _table_row(r: ClaimResult) -> dict[str, str]:
    nb = r.numbers
    p, w = nb.get("paired"), nb.get("welch")
    return {
        "claim": f"{r.claim} (§{r.section})",
        "experiment": r.experiment,
        "verdict": f"**{r.verdict}**",
        "difference": _pct(nb["diff"]) if "diff" in nb else "",
        "paired": _ci(p["lo"], p["hi"]) if p else "-",
        "welch": _ci(w["lo"], w["hi"]) if w else "-",
        "decision": (
            f"{nb.get('test', '')} {_ci(nb['lo'], nb['hi'])}"
            if "lo" in nb and math.isfinite(nb["lo"])
            else "-"
        ),
        "n": (f"{nb['n_a']}" if nb.get("test") == "paired" else f"{nb['n_a']} vs {nb['n_b']}")
        if "n_a" in nb
        else "",
        "evidence": r.evidence,
    }


def write_claims(
    results: Sequence[ClaimResult],
    out: str | Path,
    *,
    scale: str,
    design: SequentialDesign | None = None,
) -> list[Path]:
    """Write ``claims.json`` and ``claims.md`` (verdict table, rules) into ``out``."""
    out = Path(out)
    rule = rules(design)
    data = {
        "scale": scale,
        "alpha": ALPHA,
        "margin": MARGIN,
        "rules": rule,
        "design": "fixed sample" if design is None else design.describe(),
        "looks": None if design is None else list(design.looks),
        "claims": [asdict(r) for r in results],
    }
    # strict JSON: an interval that cannot exist yet (before the first look) is null
    j = write_json_atomic(out / "claims.json", nonfinite_to_null(data))
    counts = {v: sum(r.verdict == v for r in results) for v in OUTCOMES}
    md = (
        f"# The paper's claims at {scale} scale\n\n"
        f"Verdicts computed from the sweep results (not written by hand). "
        f"{', '.join(f'{n} {v}' for v, n in counts.items() if n)}.\n\n"
        f"* design: {data['design']}\n"
        f"* comparison: {rule['test']}\n"
        f"* directional claims: {rule['directional']}\n"
        f'* "no better" claims: {rule["no better"]}\n'
        f"* margin {_abs_pct(MARGIN)}: the binomial noise of a difference of two "
        f"accuracies on the 10,000 test images (sqrt(2) x 0.36 pp)\n\n"
        f"Intervals in the table are 95 % (paired, Welch); the decision interval is the "
        f"one the verdict read (Bonferroni- and look-adjusted). The forest plot "
        f"`claims_forest.png` draws every decision interval against the margin.\n\n"
        + markdown_table(
            [_table_row(r) for r in results],
            [
                "claim",
                "experiment",
                "verdict",
                "difference",
                "paired",
                "welch",
                "decision",
                "n",
                "evidence",
            ],
            headers=[
                "claim",
                "experiment",
                "verdict",
                "difference",
                "paired 95% CI",
                "Welch 95% CI",
                "decision interval",
                "n",
                "evidence",
            ],
        )
    )
    m = write_text_atomic(out / "claims.md", md)
    return [j, m]
