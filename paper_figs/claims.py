"""The paper's qualitative claims, each with a verdict computed from the sweep results.

Every verdict follows from the numbers by a stated rule; nothing is written by hand.

Directional claims ("A beats B") use a two-sided Welch t-test of the mean
difference of the per-run metric between the two groups of seeds:

* **holds** - ``p < alpha`` and the difference has the claimed sign;
* **does not hold** - ``p < alpha`` and the difference has the opposite sign;
* **inconclusive** - otherwise (the 95 % interval of the difference covers 0).

When a group is *selected* as the best of several cells (the best R, the best
layer subset), ``alpha = 0.05 / m`` with ``m`` the number of cells the selection
scanned (Bonferroni), so picking a maximum does not manufacture significance.

"No better" claims (y = 8 vs y = 4, weight decay vs nothing) are equivalence
statements: **holds** when the upper end of the 95 % interval of the
difference lies below the margin :data:`MARGIN`, **does not hold** when the
lower end lies above 0 (significantly better), **inconclusive** otherwise.

A claim whose sweep has not run is reported as **not run**.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from scipy import stats as sps

from .stats import CONFIDENCE, Comparison, markdown_table, select, values, welch, write_text_atomic

__all__ = ["ALPHA", "MARGIN", "VERDICTS", "ClaimResult", "evaluate_claims", "write_claims",
           "directional", "equivalence", "RULES"]

#: two-sided level of every test
ALPHA = 1 - CONFIDENCE
#: equivalence margin of the "no better" claims: half a percentage point of test
#: accuracy, about the seed-to-seed spread of a quick-scale run's best accuracy,
#: i.e. the smallest difference these sweeps could call real
MARGIN = 0.005
VERDICTS = ("holds", "does not hold", "inconclusive", "not run")
RULES = {
    "directional": "two-sided Welch t-test of the per-run metric, alpha = 0.05/m (Bonferroni "
                   "over the m cells a best-of selection scanned): holds if significant with the "
                   "claimed sign, does not hold if significant with the other sign, else inconclusive",
    "equivalence": f"95% Welch interval of the difference: holds if its upper end < {MARGIN} "
                   "(margin), does not hold if its lower end > 0, else inconclusive",
}


@dataclass
class ClaimResult:
    """One claim checked on one experiment."""

    id: str
    section: str
    claim: str
    experiment: str
    metric: str
    rule: str
    verdict: str
    evidence: str = ""
    numbers: dict = field(default_factory=dict)

    def report(self) -> str:
        return (f"[{self.verdict}] {self.id} (section {self.section}, {self.experiment}): "
                f"{self.claim}\n    {self.evidence}")


# ----------------------------------------------------------------------------- rules


def directional(a: np.ndarray, b: np.ndarray, *, m: int = 1) -> tuple[str, Comparison, float]:
    """Verdict of the claim ``mean(a) > mean(b)`` (see module docstring)."""
    alpha = ALPHA / max(int(m), 1)
    c = welch(a, b)
    if not c.significant(alpha):
        return "inconclusive", c, alpha
    return ("holds" if c.diff > 0 else "does not hold"), c, alpha


def equivalence(diff: float, lo: float, hi: float) -> str:
    """Verdict of "the difference is no better than 0" from its interval ``[lo, hi]``."""
    if hi < MARGIN:
        return "holds"
    if lo > 0:
        return "does not hold"
    return "inconclusive"


def _cells(rows: Sequence[Mapping[str, Any]], subsets: Sequence[str], metric: str,
           **extra: Any) -> dict[tuple[str, float], np.ndarray]:
    out = {}
    for s in subsets:
        for r in sorted({x["smoothing.R"] for x in select(rows, **{"smoothing.layers": s},
                                                          **extra)}):
            v = values(select(rows, **{"smoothing.layers": s, "smoothing.R": r}, **extra), metric)
            if v.size >= 2:
                out[(s, r)] = v
    return out


def _best(cells: Mapping[Any, np.ndarray]) -> Any:
    return max(cells, key=lambda k: float(np.mean(cells[k])))


def _subsets(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return sorted({str(r["smoothing.layers"]) for r in rows if r.get("status") == "complete"
                   and r.get("smoothing.layers") not in (None, "none")},
                  key=lambda s: (s.count("+"), s))


def _base(rows: Sequence[Mapping[str, Any]], metric: str, **extra: Any) -> np.ndarray:
    return values(select(rows, **{"smoothing.layers": "none"}, **extra), metric)


def _pct(x: float) -> str:
    return f"{100 * x:+.2f} pp"


def _evidence(label_a: str, label_b: str, c: Comparison, alpha: float) -> str:
    return (f"{label_a} - {label_b} = {_pct(c.diff)} [{_pct(c.lo)}, {_pct(c.hi)}] (95% Welch), "
            f"p = {c.p:.3g} vs alpha = {alpha:.3g}, n = {c.n_a} vs {c.n_b}")


def _numbers(c: Comparison, alpha: float, **kw: Any) -> dict:
    return {"diff": c.diff, "lo": c.lo, "hi": c.hi, "p": c.p, "df": c.df, "alpha": alpha,
            "n_a": c.n_a, "n_b": c.n_b, **kw}


# ----------------------------------------------------------------------------- claims

Rows = Sequence[Mapping[str, Any]]


def _improves(rows: Rows) -> tuple[str, str, dict]:
    cells = _cells(rows, _subsets(rows), "best_test_acc")
    base = _base(rows, "best_test_acc")
    if not cells or base.size < 2:
        raise _NotRun("needs smoothed cells and >= 2 unsmoothed runs")
    k = _best(cells)
    v, c, alpha = directional(cells[k], base, m=len(cells))
    return v, _evidence(f"best cell ({k[0]}, R={k[1]:g})", "no smoothing", c, alpha), \
        _numbers(c, alpha, cell=list(k))


def _maximum(rows: Rows, subset: str | None = None) -> tuple[str, str, dict]:
    cells = _cells(rows, _subsets(rows) if subset is None else [subset], "best_test_acc")
    if not cells:
        raise _NotRun("needs smoothed cells")
    s, r_star = _best(cells)
    rs = sorted(r for (ss, r) in cells if ss == s)
    if len(rs) < 2:
        raise _NotRun("needs >= 2 values of R")
    r_max = rs[-1]
    if r_star == r_max:  # still rising at the edge of the grid: is the edge really better?
        other = max((r for r in rs if r != r_max), key=lambda r: float(np.mean(cells[(s, r)])))
        v, c, alpha = directional(cells[(s, r_max)], cells[(s, other)], m=len(rs))
        verdict = {"holds": "does not hold", "does not hold": "inconclusive"}.get(v, v)
        return verdict, (f"{s}: maximum at the largest R = {r_max:g}; " +
                         _evidence(f"R={r_max:g}", f"R={other:g}", c, alpha)), \
            _numbers(c, alpha, subset=s, r_star=r_star, r_max=r_max)
    v, c, alpha = directional(cells[(s, r_star)], cells[(s, r_max)], m=len(rs))
    return v, (f"{s}: maximum at R = {r_star:g}; " +
               _evidence(f"R={r_star:g}", f"R={r_max:g} (largest)", c, alpha)), \
        _numbers(c, alpha, subset=s, r_star=r_star, r_max=r_max)


def _isotropic_degrades(rows: Rows) -> tuple[str, str, dict]:
    full = max(_subsets(rows), key=lambda s: s.count("+"), default=None)
    if full is None or "+" not in full:
        raise _NotRun("needs an all-layer subset")
    return _maximum(rows, full)


def _single_beats_isotropic(rows: Rows) -> tuple[str, str, dict]:
    subsets = _subsets(rows)
    singles = [s for s in subsets if "+" not in s]
    full = max(subsets, key=lambda s: s.count("+"), default=None)
    if not singles or full is None or "+" not in full:
        raise _NotRun("needs single-layer and all-layer subsets")
    cs, cf = _cells(rows, singles, "best_test_acc"), _cells(rows, [full], "best_test_acc")
    if not cs or not cf:
        raise _NotRun("needs >= 2 seeds per cell")
    ks, kf = _best(cs), _best(cf)
    v, c, alpha = directional(cs[ks], cf[kf], m=len(cs) + len(cf))
    return v, _evidence(f"best single layer ({ks[0]}, R={ks[1]:g})",
                        f"best isotropic ({kf[0]}, R={kf[1]:g})", c, alpha), \
        _numbers(c, alpha, single=list(ks), isotropic=list(kf))


def _deeper(rows: Rows) -> tuple[str, str, dict]:
    singles = [s for s in _subsets(rows) if "+" not in s]
    if len(singles) < 2:
        raise _NotRun("needs >= 2 single-layer subsets")
    first, deep = singles[0], singles[-1]
    c1, cd = _cells(rows, [first], "best_test_acc"), _cells(rows, [deep], "best_test_acc")
    if not c1 or not cd:
        raise _NotRun("needs >= 2 seeds per cell")
    k1, kd = _best(c1), _best(cd)
    v, c, alpha = directional(cd[kd], c1[k1], m=len(c1) + len(cd))
    return v, _evidence(f"deepest ({kd[0]}, R={kd[1]:g})", f"first ({k1[0]}, R={k1[1]:g})",
                        c, alpha), _numbers(c, alpha, deep=list(kd), first=list(k1))


def _y8_no_better(rows: Rows) -> tuple[str, str, dict]:
    subsets = _subsets(rows)
    c4 = _cells(rows, subsets, "best_test_acc", **{"smoothing.y": 4})
    c8 = _cells(rows, subsets, "best_test_acc", **{"smoothing.y": 8})
    keys = sorted(set(c4) & set(c8))
    if not keys:
        raise _NotRun("needs cells with both y = 4 and y = 8")
    # mean over cells of the per-cell difference of means; its variance is the
    # sum of the per-group variances of the means over m^2 (independent runs),
    # with Welch-Satterthwaite degrees of freedom over all 2m groups
    parts = [(c8[k].var(ddof=1) / c8[k].size, c8[k].size) for k in keys] + \
            [(c4[k].var(ddof=1) / c4[k].size, c4[k].size) for k in keys]
    m = len(keys)
    d = float(np.mean([c8[k].mean() - c4[k].mean() for k in keys]))
    var = sum(p for p, _ in parts) / m ** 2
    se = math.sqrt(var)
    df = (sum(p for p, _ in parts) ** 2 / sum(p ** 2 / (n - 1) for p, n in parts)
          if var > 0 else math.inf)
    h = float(sps.t.ppf((1 + CONFIDENCE) / 2, df)) * se if var > 0 else 0.0
    v = equivalence(d, d - h, d + h)
    return v, (f"mean over {m} (subset, R) cells of y8 - y4 = {_pct(d)} [{_pct(d - h)}, "
               f"{_pct(d + h)}] (95%), margin {_pct(MARGIN)}"), \
        {"diff": d, "lo": d - h, "hi": d + h, "df": df, "cells": m, "margin": MARGIN}


def _head_pick(rows: Rows, metric: str = "best_test_acc") -> tuple[str, np.ndarray]:
    heads = {s: values(select(rows, **{"smoothing.layers": s, "optim.weight_decay": 0.0}), metric)
             for s in ("fc1", "fc2")}
    heads = {s: v for s, v in heads.items() if v.size >= 2}
    if not heads:
        raise _NotRun("needs PLA runs on fc1 or fc2")
    s = max(heads, key=lambda k: float(np.mean(heads[k])))
    return s, heads[s]


def _head_helps(rows: Rows) -> tuple[str, str, dict]:
    s, a = _head_pick(rows)
    base = _base(rows, "best_test_acc", **{"optim.weight_decay": 0.0})
    if base.size < 2:
        raise _NotRun("needs >= 2 unsmoothed runs")
    v, c, alpha = directional(a, base, m=2)
    return v, _evidence(f"PLA on {s} (better head layer)", "no smoothing", c, alpha), \
        _numbers(c, alpha, layer=s)


def _early_stopping(rows: Rows) -> tuple[str, str, dict]:
    s, _ = _head_pick(rows)
    sel = select(rows, **{"smoothing.layers": s, "optim.weight_decay": 0.0})
    base = select(rows, **{"smoothing.layers": "none", "optim.weight_decay": 0.0})
    if len(base) < 2:
        raise _NotRun("needs >= 2 unsmoothed runs")
    gap = values(sel, "best_test_acc") - values(sel, "final_test_acc")
    gap0 = values(base, "best_test_acc") - values(base, "final_test_acc")
    v, c, alpha = directional(gap, gap0, m=1)
    return v, ("gain in best acc minus gain in final acc = " +
               _evidence(f"(best - final) PLA on {s}", "(best - final) no smoothing", c, alpha)), \
        _numbers(c, alpha, layer=s)


def _conv_hurts(rows: Rows) -> tuple[str, str, dict]:
    convs = [s for s in _subsets(rows) if s.startswith("conv")]
    if not convs:
        raise _NotRun("needs a run smoothing a convolution")
    base = _base(rows, "best_test_acc")
    results = []
    for s in convs:
        a = values(select(rows, **{"smoothing.layers": s}), "best_test_acc")
        if a.size >= 2 and base.size >= 2:
            results.append((s, *directional(base, a, m=len(convs))))
    if not results:
        raise _NotRun("needs >= 2 seeds")
    s, v, c, alpha = results[0]
    return v, _evidence("no smoothing", f"PLA on {s}", c, alpha), _numbers(c, alpha, layer=s)


def _wd_no_help(rows: Rows) -> tuple[str, str, dict]:
    base = _base(rows, "best_test_acc", **{"optim.weight_decay": 0.0})
    wds = sorted({r["optim.weight_decay"] for r in select(rows, **{"smoothing.layers": "none"})
                  if r["optim.weight_decay"]})
    if not wds or base.size < 2:
        raise _NotRun("needs weight-decay and unregularised runs")
    verdicts, parts, nums = [], [], {}
    for wd in wds:
        c = welch(values(select(rows, **{"smoothing.layers": "none", "optim.weight_decay": wd}),
                         "best_test_acc"), base)
        verdicts.append(equivalence(c.diff, c.lo, c.hi))
        parts.append(f"wd {wd:g}: {_pct(c.diff)} [{_pct(c.lo)}, {_pct(c.hi)}]")
        nums[f"{wd:g}"] = {"diff": c.diff, "lo": c.lo, "hi": c.hi, "p": c.p}
    if "does not hold" in verdicts:
        v = "does not hold"
    elif all(x == "holds" for x in verdicts):
        v = "holds"
    else:
        v = "inconclusive"
    return v, ("weight decay - none (95% Welch): " + "; ".join(parts) +
               f"; margin {_pct(MARGIN)}"), {**nums, "margin": MARGIN}


def _pla_beats_wd(rows: Rows) -> tuple[str, str, dict]:
    s, a = _head_pick(rows)
    wds = {r["optim.weight_decay"] for r in select(rows, **{"smoothing.layers": "none"})
           if r["optim.weight_decay"]}
    cells = {wd: values(select(rows, **{"smoothing.layers": "none", "optim.weight_decay": wd}),
                        "best_test_acc") for wd in wds}
    cells = {k: v for k, v in cells.items() if v.size >= 2}
    if not cells:
        raise _NotRun("needs weight-decay runs")
    wd = _best(cells)
    v, c, alpha = directional(a, cells[wd], m=2 + len(cells))
    return v, _evidence(f"PLA on {s}", f"best weight decay ({wd:g})", c, alpha), \
        _numbers(c, alpha, layer=s, weight_decay=wd)


class _NotRun(Exception):
    pass


#: (id, paper section, claim, experiments, rule kind, function, metric)
CLAIMS: tuple[tuple[str, str, str, tuple[str, ...], str, Callable, str], ...] = (
    ("smoothing-improves", "4.1", "partial smoothing improves the test accuracy (best layer "
     "subset and R vs no smoothing)", ("fig3", "fig4_left", "fig4_right"), "directional",
     _improves, "best_test_acc"),
    ("interior-maximum", "4.1", "accuracy improves with R up to a maximum, beyond which it "
     "degrades (best subset: its best R vs the largest R)", ("fig3", "fig4_left", "fig4_right"),
     "directional", _maximum, "best_test_acc"),
    ("isotropic-degrades", "4.2, 4.3", "isotropic smoothing (all layers) degrades as R grows "
     "(its best R vs the largest R)", ("fig3", "fig4_left", "fig4_right"), "directional",
     _isotropic_degrades, "best_test_acc"),
    ("single-beats-isotropic", "4.1, 4.2", "smoothing a single layer beats smoothing all layers "
     "(isotropic), each at its best R", ("fig3", "fig4_left", "fig4_right"), "directional",
     _single_beats_isotropic, "best_test_acc"),
    ("deeper-benefits-more", "4.1", "smoothing a deeper layer helps more than smoothing the "
     "first (deepest vs first single layer, each at its best R)",
     ("fig3", "fig4_left", "fig4_right"), "directional", _deeper, "best_test_acc"),
    ("y8-no-better", "4.4", "y = 8 samples per step is no better than y = 4", ("fig5",),
     "equivalence", _y8_no_better, "best_test_acc"),
    ("head-smoothing-helps", "5.1, 5.2, 5.3", "PLA on a fully connected layer of the CNN head "
     "improves the best test accuracy", ("fig6", "fig8"), "directional", _head_helps,
     "best_test_acc"),
    ("mostly-early-stopping", "5.1, 5.2, 5.3", "the gain of head smoothing is mostly an "
     "early-stopping gain (larger in best than in final test accuracy)", ("fig6", "fig8"),
     "directional", _early_stopping, "best_test_acc - final_test_acc"),
    ("conv-smoothing-hurts", "5.1", "smoothing a convolutional layer lowers the accuracy",
     ("fig6",), "directional", _conv_hurts, "best_test_acc"),
    ("weight-decay-no-help", "5.2.1", "weight decay (1e-2, 1e-3, 1e-4) does not improve the "
     "best test accuracy", ("fig7",), "equivalence", _wd_no_help, "best_test_acc"),
    ("pla-beats-weight-decay", "5.2.1", "PLA on the head beats the best weight decay",
     ("fig7",), "directional", _pla_beats_wd, "best_test_acc"),
)


def evaluate_claims(rows_of: Callable[[str], Rows | None]) -> list[ClaimResult]:
    """Check every claim on every experiment it applies to.

    Parameters
    ----------
    rows_of : callable
        Experiment name -> its results rows, or ``None`` if its sweep has not run.
    """
    out = []
    for cid, section, text, exps, kind, fn, metric in CLAIMS:
        for exp in exps:
            rows = rows_of(exp)
            if rows is None:
                out.append(ClaimResult(cid, section, text, exp, metric, RULES[kind], "not run",
                                       "sweep not run"))
                continue
            try:
                verdict, evidence, numbers = fn(rows)
            except _NotRun as exc:
                verdict, evidence, numbers = "not run", str(exc), {}
            out.append(ClaimResult(cid, section, text, exp, metric, RULES[kind], verdict,
                                   evidence, numbers))
    return out


def write_claims(results: Sequence[ClaimResult], out: str | Path, *, scale: str) -> list[Path]:
    """Write ``claims.json`` and ``claims.md`` (verdict table, rules) into ``out``."""
    out = Path(out)
    data = {"scale": scale, "alpha": ALPHA, "margin": MARGIN, "rules": RULES,
            "claims": [asdict(r) for r in results]}
    j = write_text_atomic(out / "claims.json", json.dumps(data, indent=2, allow_nan=True) + "\n")
    rows = [{"claim": f"{r.claim} (§{r.section})", "experiment": r.experiment,
             "verdict": f"**{r.verdict}**", "evidence": r.evidence} for r in results]
    counts = {v: sum(r.verdict == v for r in results) for v in VERDICTS}
    md = (f"# The paper's claims at {scale} scale\n\n"
          f"Verdicts computed from the sweep results (not written by hand). "
          f"{', '.join(f'{n} {v}' for v, n in counts.items() if n)}.\n\n"
          f"* directional claims: {RULES['directional']}\n"
          f"* \"no better\" claims: {RULES['equivalence']}\n\n"
          + markdown_table(rows, ["claim", "experiment", "verdict", "evidence"]))
    m = write_text_atomic(out / "claims.md", md)
    return [j, m]
