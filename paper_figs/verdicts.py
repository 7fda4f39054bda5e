"""Verdicts of the paper's claims: the vocabulary, the margin, the decision rules,
and the paired-or-Welch comparison of two arms of a sweep.

Every verdict is read from one interval of the difference ``diff = mean(a) -
mean(b)`` (oriented so that the claim says ``diff > 0`` for a directional claim,
``diff < margin`` for a "no better" claim):

directional
    **negligible** when the interval lies inside ``(-MARGIN, +MARGIN)`` (the
    effect is decided to be absent, even if the interval excludes 0: a
    difference below the margin is no effect for this paper); else **holds**
    when it lies above 0, **does not hold** when below 0, else **inconclusive**.
no better
    **holds** when the interval lies below ``+MARGIN``; **does not hold** when it
    lies above ``+MARGIN``; else **inconclusive**.

The interval is the two-sided ``1 - alpha`` t interval of the test used
(``alpha = 0.05 / m`` after Bonferroni over the ``m`` cells a best-of selection
scanned), or, under a sequential design, the repeated confidence interval of
the current look (:mod:`paper_figs.sequential`).  Reading "negligible" from a
two-sided ``1 - alpha`` interval is the two-one-sided-tests (TOST) rule at level
``alpha / 2`` per side: the 95 % interval is the ``1 - 2 (0.025)`` TOST interval.

The test is **paired** (per-seed differences, t with ``n - 1`` degrees of
freedom) when the two arms ran the same set of seeds: arms with one seed share
the initialisation and the data order, so the seed-to-seed variation cancels
in the difference.  Otherwise it is **Welch**'s unequal-variance test.  Both
are always reported when both can be computed.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats as sps

from .stats import CONFIDENCE, Comparison, paired, welch

__all__ = [
    "ALPHA",
    "MARGIN",
    "Verdict",
    "VERDICTS",
    "Outcome",
    "OUTCOMES",
    "Kind",
    "KINDS",
    "Critical",
    "fixed_critical",
    "decide",
    "decide_array",
    "Arm",
    "arm",
    "pairable",
    "Evidence",
    "compare",
    "evidence_from",
]

#: two-sided level of every verdict (before Bonferroni)
ALPHA = 1 - CONFIDENCE
#: margin of "negligible" and of the "no better" claims, in accuracy (0.5 pp):
#: the binomial standard error of an accuracy near 0.85 measured on the 10,000
#: test images is sqrt(0.85 * 0.15 / 10^4) = 0.36 pp, and that of a difference
#: of two such accuracies up to sqrt(2) times more, 0.5 pp; a smaller effect is
#: within the noise of the test sample itself, and below the seed-to-seed
#: spread a practitioner would act on
MARGIN = 0.005

Verdict = Literal["holds", "does not hold", "negligible", "inconclusive"]
#: the verdicts, derived from :data:`Verdict`
VERDICTS: tuple[str, ...] = typing.get_args(Verdict)
#: a verdict, or "not run" when the claim's sweep has no usable results
Outcome = Literal[Verdict, "not run"]
OUTCOMES: tuple[str, ...] = typing.get_args(Outcome)
#: kinds of claims: "A beats B" or "A is no better than B"
Kind = Literal["directional", "no better"]
KINDS: tuple[str, ...] = typing.get_args(Kind)
#: (two-sided level, degrees of freedom) -> critical t value of the decision interval
Critical = Callable[[float, float], float]
_UNDECIDED: Verdict = "inconclusive"


def fixed_critical(alpha: float, df: float) -> float:
    """Fixed-sample critical value ``t_{1 - alpha/2, df}`` (normal for ``df = inf``)."""
    return float(sps.norm.isf(alpha / 2) if math.isinf(df) else sps.t.isf(alpha / 2, df))


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def decide(lo: float, hi: float, *, kind: Kind = "directional", margin: float = MARGIN) -> Verdict:
    """Verdict read from the decision interval ``[lo, hi]`` (see the module docstring)."""
    return typing.cast(
        Verdict, str(decide_array(np.asarray([lo]), np.asarray([hi]), kind=kind, margin=margin)[0])
    )


def decide_array(
    lo: np.ndarray, hi: np.ndarray, *, kind: Kind = "directional", margin: float = MARGIN
) -> np.ndarray:
    """:func:`decide` elementwise (object array of verdicts)."""
    _check_kind(kind)
    if not margin > 0:
        raise ValueError(f"margin must be > 0, got {margin!r}")
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    out = np.full(lo.shape, _UNDECIDED, dtype=object)
    if kind == "directional":
        out[hi < 0] = "does not hold"
        out[lo > 0] = "holds"
        out[(lo > -margin) & (hi < margin)] = "negligible"
    else:
        out[lo > margin] = "does not hold"
        out[hi < margin] = "holds"
    return out


# ----------------------------------------------------------------------------- arms


@dataclass(frozen=True)
class Arm:
    """Per-run values of one arm of a sweep, with the seed of each run (``None``
    when a run has no seed or a seed repeats: such an arm cannot be paired)."""

    values: np.ndarray
    seeds: tuple[int, ...] | None = None

    @property
    def n(self) -> int:
        return int(self.values.size)

    def by_seed(self) -> dict[int, float]:
        if self.seeds is None:
            raise ValueError("this arm has no seeds")
        return dict(zip(self.seeds, self.values.tolist(), strict=True))


def arm(
    rows: Iterable[Mapping[str, Any]], column: str | Callable[[Mapping[str, Any]], float]
) -> Arm:
    """The arm of ``rows`` (complete runs): values of ``column`` (or of a function of
    the row) and the rows' ``seed``."""
    rows = list(rows)
    get = column if callable(column) else (lambda r: r.get(column))
    vals = []
    for r in rows:
        v = get(r)
        if v is None:
            raise ValueError(f"run {r.get('run')} has no value for {column!r}")
        vals.append(float(v))
    seeds = [r.get("seed") for r in rows]
    ok = all(isinstance(s, (int, np.integer)) for s in seeds) and len(set(seeds)) == len(seeds)
    return Arm(np.asarray(vals, dtype=np.float64), tuple(int(s) for s in seeds) if ok else None)  # type: ignore[arg-type]


def _as_arm(x: Arm | Sequence[float] | np.ndarray) -> Arm:
    return x if isinstance(x, Arm) else Arm(np.asarray(x, dtype=np.float64))


def pairable(a: Arm, b: Arm) -> bool:
    """True when both arms ran the same set of seeds (each seed once), n >= 2."""
    return a.seeds is not None and b.seeds is not None and set(a.seeds) == set(b.seeds) and a.n >= 2


# ----------------------------------------------------------------------------- evidence


@dataclass(frozen=True)
class Evidence:
    """Comparison of two arms behind a verdict.

    Attributes
    ----------
    welch, paired : Comparison or None
        Both 95 % fixed-sample comparisons (``paired`` is ``None`` for unpaired arms).
    alpha : float
        Two-sided level of the decision (after Bonferroni).
    critical : float
        Critical t value of the decision interval ``[lo, hi]`` (fixed-sample or
        the sequential look's).
    design : str
        "fixed" or the sequential look it was read at.
    """

    welch: Comparison | None
    paired: Comparison | None
    alpha: float
    critical: float
    lo: float
    hi: float
    design: str = "fixed"

    def __post_init__(self) -> None:
        if self.welch is None and self.paired is None:
            raise ValueError("Evidence needs a Welch or a paired comparison")

    @property
    def test(self) -> Comparison:
        """The comparison the verdict used: paired when the arms are paired."""
        return self.paired if self.paired is not None else typing.cast(Comparison, self.welch)

    @property
    def kind(self) -> str:
        return "paired" if self.paired is not None else "Welch"

    @property
    def diff(self) -> float:
        return self.test.diff

    @property
    def p(self) -> float:
        return self.test.p

    @property
    def n(self) -> str:
        c = self.test
        return f"{c.n_a}" if self.paired is not None else f"{c.n_a} vs {c.n_b}"

    def numbers(self) -> dict[str, Any]:
        """Flat numbers for ``claims.json``."""
        out: dict[str, Any] = {
            "diff": self.diff,
            "lo": self.lo,
            "hi": self.hi,
            "p": self.p,
            "test": self.kind,
            "alpha": self.alpha,
            "critical": self.critical,
            "design": self.design,
            "n_a": self.test.n_a,
            "n_b": self.test.n_b,
        }
        for name, c in (("welch", self.welch), ("paired", self.paired)):
            if c is not None:
                out[name] = {
                    "diff": c.diff,
                    "lo": c.lo,
                    "hi": c.hi,
                    "p": c.p,
                    "df": c.df,
                    "n_a": c.n_a,
                    "n_b": c.n_b,
                }
        return out


def evidence_from(
    test: Comparison,
    *,
    welch_c: Comparison | None,
    paired_c: Comparison | None,
    alpha: float,
    critical: Critical = fixed_critical,
    design: str = "fixed",
) -> Evidence:
    """Decision interval ``test.diff +- critical(alpha, test.df) test.se``."""
    crit = critical(alpha, test.df)
    h = crit * test.se if test.se > 0 else 0.0
    return Evidence(welch_c, paired_c, alpha, crit, test.diff - h, test.diff + h, design)


def compare(
    a: Arm | Sequence[float] | np.ndarray,
    b: Arm | Sequence[float] | np.ndarray,
    *,
    alpha: float = ALPHA,
    critical: Critical = fixed_critical,
    design: str = "fixed",
) -> Evidence:
    """Paired test of ``a - b`` when the arms ran the same seeds, Welch otherwise;
    Welch is computed as well whenever both arms have >= 2 runs.

    Raises
    ------
    ValueError
        If an arm has fewer than 2 runs.
    """
    A, B = _as_arm(a), _as_arm(b)
    w = welch(A.values, B.values)
    p = None
    if pairable(A, B):
        order = sorted(A.by_seed())
        ka, kb = A.by_seed(), B.by_seed()
        p = paired([ka[s] for s in order], [kb[s] for s in order])
    return evidence_from(
        p or w, welch_c=w, paired_c=p, alpha=alpha, critical=critical, design=design
    )
