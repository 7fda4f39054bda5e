"""The findings behind the paper's claims: each a function of the rows of one
experiment (a :class:`Scan`, which records the arms it selects) and of how intervals
are read (a :class:`paper_figs.claim_rules.Look`), returning ``(verdict, evidence,
numbers)`` by the rules of :mod:`paper_figs.claim_rules`.  The table of claims that
uses them, and their files, are in :mod:`paper_figs.claims`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as sps

from .claim_rules import (
    Look,
    NotRun,
    compare_at,
    directional,
    equivalence,
    evidence_numbers,
    evidence_text,
    format_pp,
)
from .stats import Comparison, paired, select
from .verdicts import ALPHA, MARGIN, Arm, Verdict, arm, evidence_from

__all__ = [
    "Finding",
    "Scan",
    "improves",
    "interior_maximum",
    "isotropic_degrades",
    "single_beats_isotropic",
    "deeper_benefits_more",
    "y8_no_better",
    "head_helps",
    "early_stopping",
    "conv_hurts",
    "wd_no_help",
    "pla_beats_wd",
]


class Scan:
    """Rows of one experiment; remembers every selection a claim made (its arms)."""

    def __init__(self, rows: Sequence[Mapping[str, Any]]):
        self.rows = rows
        self.arms: list[dict[str, Any]] = []

    def select(self, **where: Any) -> list[Mapping[str, Any]]:
        if where not in self.arms:
            self.arms.append(dict(where))
        return select(self.rows, **where)


def _cells(
    rows: Scan, subsets: Sequence[str], metric: str, **extra: Any
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


def _subsets(rows: Scan) -> list[str]:
    return sorted(
        {
            str(r["smoothing.layers"])
            for r in rows.rows
            if r.get("status") == "complete" and r.get("smoothing.layers") not in (None, "none")
        },
        key=lambda s: (s.count("+"), s),
    )


def _base(rows: Scan, metric: str, **extra: Any) -> Arm:
    return arm(rows.select(**{"smoothing.layers": "none"}, **extra), metric)


# ----------------------------------------------------------------------------- claims

Finding = tuple[Verdict, str, dict]


def improves(rows: Scan, look: Look) -> Finding:
    cells = _cells(rows, _subsets(rows), "best_test_acc")
    base = _base(rows, "best_test_acc")
    if not cells or base.n < 2:
        raise NotRun("needs smoothed cells and >= 2 unsmoothed runs")
    k = _best(cells)
    v, e, alpha = directional(cells[k], base, m=len(cells), look=look)
    return (
        v,
        evidence_text(f"best cell ({k[0]}, R={k[1]:g})", "no smoothing", e, alpha),
        evidence_numbers(e, alpha, cell=list(k)),
    )


def interior_maximum(rows: Scan, look: Look, subset: str | None = None) -> Finding:
    cells = _cells(rows, _subsets(rows) if subset is None else [subset], "best_test_acc")
    if not cells:
        raise NotRun("needs smoothed cells")
    s, r_star = _best(cells)
    rs = sorted(r for (ss, r) in cells if ss == s)
    if len(rs) < 2:
        raise NotRun("needs >= 2 values of R")
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
            evidence_numbers(
                e, alpha, subset=s, r_star=r_star, r_max=r_max, orientation="reversed"
            ),
        )
    v, e, alpha = directional(cells[(s, r_star)], cells[(s, r_max)], m=len(rs), look=look)
    return (
        v,
        (
            f"{s}: maximum at R = {r_star:g}; "
            + evidence_text(f"R={r_star:g}", f"R={r_max:g} (largest)", e, alpha)
        ),
        evidence_numbers(e, alpha, subset=s, r_star=r_star, r_max=r_max),
    )


def isotropic_degrades(rows: Scan, look: Look) -> Finding:
    full = max(_subsets(rows), key=lambda s: s.count("+"), default=None)
    if full is None or "+" not in full:
        raise NotRun("needs an all-layer subset")
    return interior_maximum(rows, look, full)


def single_beats_isotropic(rows: Scan, look: Look) -> Finding:
    subsets = _subsets(rows)
    singles = [s for s in subsets if "+" not in s]
    full = max(subsets, key=lambda s: s.count("+"), default=None)
    if not singles or full is None or "+" not in full:
        raise NotRun("needs single-layer and all-layer subsets")
    cs, cf = _cells(rows, singles, "best_test_acc"), _cells(rows, [full], "best_test_acc")
    if not cs or not cf:
        raise NotRun("needs >= 2 seeds per cell")
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
        evidence_numbers(e, alpha, single=list(ks), isotropic=list(kf)),
    )


def deeper_benefits_more(rows: Scan, look: Look) -> Finding:
    singles = [s for s in _subsets(rows) if "+" not in s]
    if len(singles) < 2:
        raise NotRun("needs >= 2 single-layer subsets")
    first, deep = singles[0], singles[-1]
    c1, cd = _cells(rows, [first], "best_test_acc"), _cells(rows, [deep], "best_test_acc")
    if not c1 or not cd:
        raise NotRun("needs >= 2 seeds per cell")
    k1, kd = _best(c1), _best(cd)
    v, e, alpha = directional(cd[kd], c1[k1], m=len(c1) + len(cd), look=look)
    return (
        v,
        evidence_text(f"deepest ({kd[0]}, R={kd[1]:g})", f"first ({k1[0]}, R={k1[1]:g})", e, alpha),
        evidence_numbers(e, alpha, deep=list(kd), first=list(k1)),
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


def y8_no_better(rows: Scan, look: Look) -> Finding:
    subsets = _subsets(rows)
    c4 = _cells(rows, subsets, "best_test_acc", **{"smoothing.y": 4})
    c8 = _cells(rows, subsets, "best_test_acc", **{"smoothing.y": 8})
    keys = sorted(set(c4) & set(c8))
    if not keys:
        raise NotRun("needs cells with both y = 4 and y = 8")
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
            + f"; margin {format_pp(MARGIN)}"
        ),
        evidence_numbers(e, ALPHA, cells=len(keys), margin=MARGIN),
    )


def _head_pick(rows: Scan, metric: str = "best_test_acc") -> tuple[str, Arm]:
    heads = {
        s: arm(rows.select(**{"smoothing.layers": s, "optim.weight_decay": 0.0}), metric)
        for s in ("fc1", "fc2")
    }
    heads = {s: v for s, v in heads.items() if v.n >= 2}
    if not heads:
        raise NotRun("needs PLA runs on fc1 or fc2")
    s = max(heads, key=lambda k: float(np.mean(heads[k].values)))
    return s, heads[s]


def head_helps(rows: Scan, look: Look) -> Finding:
    s, a = _head_pick(rows)
    base = _base(rows, "best_test_acc", **{"optim.weight_decay": 0.0})
    if base.n < 2:
        raise NotRun("needs >= 2 unsmoothed runs")
    v, e, alpha = directional(a, base, m=2, look=look)
    return (
        v,
        evidence_text(f"PLA on {s} (better head layer)", "no smoothing", e, alpha),
        evidence_numbers(e, alpha, layer=s),
    )


def _gap(r: Mapping[str, Any]) -> float:
    return float(r["best_test_acc"]) - float(r["final_test_acc"])


def early_stopping(rows: Scan, look: Look) -> Finding:
    s, _ = _head_pick(rows)
    sel = rows.select(**{"smoothing.layers": s, "optim.weight_decay": 0.0})
    base = rows.select(**{"smoothing.layers": "none", "optim.weight_decay": 0.0})
    if len(base) < 2:
        raise NotRun("needs >= 2 unsmoothed runs")
    v, e, alpha = directional(arm(sel, _gap), arm(base, _gap), m=1, look=look)
    return (
        v,
        (
            "gain in best acc minus gain in final acc = "
            + evidence_text(f"(best - final) PLA on {s}", "(best - final) no smoothing", e, alpha)
        ),
        evidence_numbers(e, alpha, layer=s),
    )


def conv_hurts(rows: Scan, look: Look) -> Finding:
    convs = [s for s in _subsets(rows) if s.startswith("conv")]
    if not convs:
        raise NotRun("needs a run smoothing a convolution")
    base = _base(rows, "best_test_acc")
    results = []
    for s in convs:
        a = arm(rows.select(**{"smoothing.layers": s}), "best_test_acc")
        if a.n >= 2 and base.n >= 2:
            results.append((s, *directional(base, a, m=len(convs), look=look)))
    if not results:
        raise NotRun("needs >= 2 seeds")
    s, v, e, alpha = results[0]
    return (
        v,
        evidence_text("no smoothing", f"PLA on {s}", e, alpha),
        evidence_numbers(e, alpha, layer=s),
    )


def wd_no_help(rows: Scan, look: Look) -> Finding:
    base = _base(rows, "best_test_acc", **{"optim.weight_decay": 0.0})
    wds = sorted(
        {
            r["optim.weight_decay"]
            for r in select(rows.rows, **{"smoothing.layers": "none"})
            if r["optim.weight_decay"]
        }
    )
    if not wds or base.n < 2:
        raise NotRun("needs weight-decay and unregularised runs")
    verdicts, parts, nums, evs = [], [], {}, []
    for wd in wds:
        a = arm(
            rows.select(**{"smoothing.layers": "none", "optim.weight_decay": wd}), "best_test_acc"
        )
        e = compare_at(a, base, alpha=ALPHA, look=look)
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
        ("weight decay - none: " + " | ".join(parts) + f"; margin {format_pp(MARGIN)}"),
        {
            **evidence_numbers(evs[worst], ALPHA, weight_decay=wds[worst]),
            "per_weight_decay": nums,
            "margin": MARGIN,
        },
    )


def pla_beats_wd(rows: Scan, look: Look) -> Finding:
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
        raise NotRun("needs weight-decay runs")
    wd = _best(cells)
    v, e, alpha = directional(a, cells[wd], m=2 + len(cells), look=look)
    return (
        v,
        evidence_text(f"PLA on {s}", f"best weight decay ({wd:g})", e, alpha),
        evidence_numbers(e, alpha, layer=s, weight_decay=wd),
    )
