"""Seeds until decided: a group-sequential design with alpha spending.

Adding seeds until a comparison "becomes significant" and testing at the
nominal level after every new batch inflates the false-positive rate (four
looks at 5 % each reject a true null about 12 % of the time).  This module
spends the error rate over planned looks instead, so that the guarantee holds
whatever the stopping rule.

Choice of design
----------------
Lan-DeMets alpha spending with the O'Brien-Fleming-type function on each side,

    alpha_1(t) = 2 (1 - Phi(z_{1 - alpha/4} / sqrt(t))),     t = n / n_max,

(``alpha_1(1) = alpha / 2`` per side, two-sided total ``2 alpha_1(t)``; the
form of gsDesign's ``sfLDOF`` and of the ``ldbounds`` package) over K planned
looks (by default at n = 4, 8, 12, 16 seeds).  The z boundary ``c_k`` of look
``k`` solves

    P_0(|Z_1| < c_1, ..., |Z_{k-1}| < c_{k-1}, |Z_k| >= c_k) = alpha(t_k) - alpha(t_{k-1})

for the Brownian-motion joint law of the standardised statistics
(``corr(Z_i, Z_j) = sqrt(t_i / t_j)``), computed by the numerical integration
of Armitage, McPherson and Rowe (:func:`boundaries`; 4.333, 2.963, 2.359,
2.014 for four equal looks at alpha = 0.05).

It was preferred to anytime-valid confidence sequences because the seeds
come in a handful of planned batches (a confidence sequence pays for validity
at *every* n, looks that never happen here), because the variance of the
per-seed differences is unknown and estimated from few seeds (confidence
sequences for an unknown variance are wide at n <= 16), and because the
O'Brien-Fleming shape spends almost nothing early (1.5e-5 of 0.05 at n = 4)
and keeps the last look close to the fixed-sample level, so a design that
runs to the end loses little.

With an estimated variance the boundaries must be carried to Student t
(:func:`t_boundaries`), in one of two ways (:data:`Conversion`):

``"union"`` (the default)
    each look's critical value makes its *marginal* two-sided t tail equal to
    the alpha it spends, ``c_k^t = t_{df_k}^{-1}(1 - (alpha(t_k) -
    alpha(t_{k-1})) / 2)``; by the union bound the probability of a false
    rejection at some look is at most ``sum_k`` of the increments ``= alpha``,
    exactly, for normal per-seed differences and whatever the stopping rule.
    It ignores the correlation between looks, so it is conservative: a
    simulated rate of 0.039 at alpha = 0.05 (looks 4, 8, 12, 16, sampling until
    significant), last-look critical value 2.39 instead of 2.20.
``"nominal"``
    the z boundary's nominal level carried to t, ``t_{df}^{-1}(Phi(c_k))``
    (Jennison & Turnbull, *Group sequential methods*, section 3.8): narrower,
    but only approximately valid; in the same simulation it rejects 5.24 % of
    the time (4e5 replicates, standard error 0.03 %), a systematic excess.

Each look then gives a *repeated confidence interval* ``diff +- c_k^t se``;
the K intervals cover the true difference simultaneously with probability at
least ``1 - alpha``, so every verdict read from them
(:func:`paper_figs.verdicts.decide`) keeps its error rate under optional
stopping: a directional verdict at two-sided level alpha, and "negligible" as
a two-one-sided-tests decision at level ``alpha / 2`` per side (the ``1 -
alpha`` repeated interval is the ``1 - 2 (alpha / 2)`` TOST interval).

* :func:`spending` - alpha spent by information fraction ``t``.
* :func:`boundaries` - z boundaries of given looks at level alpha.
* :func:`t_boundaries` - the same on the t scale for given degrees of freedom.
* :func:`planned_looks` - n = 4, 8, ... up to ``max_seeds``.
* :func:`sequential_decisions` / :func:`sequential_decision` - verdicts of
  paired-difference samples (one per row) read at the looks in order,
  stopping at the first decided look.
* :class:`SequentialDesign` - looks and level, as the claims use them.
"""

from __future__ import annotations

import functools
import itertools
import math
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import optimize
from scipy import stats as sps

from .verdicts import ALPHA, MARGIN, Kind, decide_array

__all__ = [
    "LOOK_STEP",
    "MAX_SEEDS",
    "Conversion",
    "CONVERSIONS",
    "spending",
    "boundaries",
    "t_boundaries",
    "planned_looks",
    "SequentialDesign",
    "SequentialResult",
    "sequential_decisions",
    "sequential_decision",
]

#: seeds added between two looks: the first look then has 3 degrees of freedom
#: for the variance of the per-seed differences (fewer make any t interval
#: useless), and four rounds reach the 16 seeds of the default last look
LOOK_STEP = 4
#: default largest number of seeds (the last planned look)
MAX_SEEDS = 16
#: grid points per look of the numerical integration: the boundaries agree with
#: published tables to 1e-3 from 400 points on; 2001 keeps the error < 1e-5
_GRID = 2001
#: the root search for a boundary stays in |z| <= 40 (alpha below 1e-300 beyond)
_Z_MAX = 40.0
#: how z boundaries become t boundaries (see the module docstring)
Conversion = Literal["union", "nominal"]
CONVERSIONS: tuple[str, ...] = typing.get_args(Conversion)


def _check_alpha(alpha: float) -> float:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    return float(alpha)


def spending(t: float | np.ndarray, *, alpha: float = ALPHA) -> np.ndarray:
    """Two-sided alpha spent by information fraction ``t`` (O'Brien-Fleming type,
    Lan-DeMets, ``alpha / 2`` per side): ``4 (1 - Phi(z_{1-alpha/4} / sqrt(t)))``;
    0 at t = 0, alpha at t = 1."""
    a = _check_alpha(alpha)
    tt = np.asarray(t, dtype=np.float64)
    if np.any((tt < 0) | (tt > 1)) or not np.all(np.isfinite(tt)):
        raise ValueError("t must lie in [0, 1]")
    z = sps.norm.isf(a / 4)
    return np.where(tt > 0, 4 * sps.norm.sf(z / np.sqrt(np.where(tt > 0, tt, 1.0))), 0.0)


def _check_looks(looks: Sequence[int]) -> tuple[int, ...]:
    lk = tuple(int(n) for n in looks)
    if not lk or any(n < 2 for n in lk) or any(b <= a for a, b in itertools.pairwise(lk)):
        raise ValueError(f"looks must be increasing sample sizes >= 2, got {tuple(looks)!r}")
    return lk


@functools.lru_cache(maxsize=256)
def _boundaries(looks: tuple[int, ...], alpha: float) -> tuple[float, ...]:
    t = np.asarray(looks, dtype=np.float64) / looks[-1]
    spent = spending(t, alpha=alpha)
    inc = np.diff(np.concatenate([[0.0], spent]))
    c = [float(sps.norm.isf(inc[0] / 2))]
    # sub-density of the score S_1 = Z_1 sqrt(t_1) on the continuation region
    b = c[0] * math.sqrt(t[0])
    u = np.linspace(-b, b, _GRID)
    w = np.full(_GRID, u[1] - u[0])
    w[[0, -1]] /= 2  # trapezoid weights
    f = sps.norm.pdf(u, scale=math.sqrt(t[0]))
    for k in range(1, len(t)):
        sd = math.sqrt(t[k] - t[k - 1])
        wf = w * f

        def exit_prob(
            ck: float, k: int = k, sd: float = sd, wf: np.ndarray = wf, u: np.ndarray = u
        ) -> float:
            bk = ck * math.sqrt(t[k])
            return float(wf @ (sps.norm.cdf((-bk - u) / sd) + sps.norm.sf((bk - u) / sd)))

        if inc[k] <= 0 or exit_prob(_Z_MAX) >= inc[k]:
            ck = math.inf
        else:
            ck = float(
                optimize.brentq(lambda x, k=k: exit_prob(x) - inc[k], 0.0, _Z_MAX, xtol=1e-10)
            )
        c.append(ck)
        bk = min(ck, _Z_MAX) * math.sqrt(t[k])
        s = np.linspace(-bk, bk, _GRID)
        f = sps.norm.pdf((s[:, None] - u[None, :]) / sd) @ wf / sd
        u = s
        w = np.full(_GRID, u[1] - u[0])
        w[[0, -1]] /= 2
    return tuple(c)


def boundaries(looks: Sequence[int], *, alpha: float = ALPHA) -> np.ndarray:
    """Two-sided z boundaries ``c_k`` of the looks (sample sizes ``looks``, the last
    one the maximum) under O'Brien-Fleming-type Lan-DeMets spending of ``alpha``.

    Parameters
    ----------
    looks : increasing sequence of int >= 2
        Number of observations at each look; ``t_k = looks[k] / looks[-1]``.
    alpha : float in (0, 1)
        Two-sided level spent over all looks.

    Returns
    -------
    ndarray, shape (K,)
        Reject at look ``k`` when ``|Z_k| >= c_k``; the probability under the null
        of a rejection at some look is ``alpha``.
    """
    return np.asarray(_boundaries(_check_looks(looks), _check_alpha(alpha)))


def t_boundaries(
    looks: Sequence[int],
    df: float | Sequence[float] | np.ndarray,
    *,
    alpha: float = ALPHA,
    conversion: Conversion = "union",
) -> np.ndarray:
    """Two-sided critical t values of the looks for ``df`` degrees of freedom (one per
    look, or one for all; ``inf`` gives the normal).

    ``conversion="union"``: the marginal tail of look ``k`` equals the alpha it
    spends (exactly valid by the union bound); ``"nominal"``: the nominal level
    of the z boundary (approximately valid).  See the module docstring.
    """
    if conversion not in CONVERSIONS:
        raise ValueError(f"conversion must be one of {CONVERSIONS}, got {conversion!r}")
    lk = _check_looks(looks)
    d = np.broadcast_to(np.asarray(df, dtype=np.float64), (len(lk),))
    if np.any(~(d > 0)):
        raise ValueError(f"df must be > 0, got {df!r}")
    if conversion == "nominal":
        p = sps.norm.sf(boundaries(lk, alpha=alpha))  # one-sided nominal level
    else:
        t = np.asarray(lk, dtype=np.float64) / lk[-1]
        p = np.diff(np.concatenate([[0.0], spending(t, alpha=_check_alpha(alpha))])) / 2
    finite = np.isfinite(d)
    return np.where(finite, sps.t.isf(p, np.where(finite, d, 1.0)), sps.norm.isf(p))


def planned_looks(max_seeds: int = MAX_SEEDS, *, step: int = LOOK_STEP) -> tuple[int, ...]:
    """Looks at ``step, 2 step, ...`` seeds up to ``max_seeds`` (which is always the
    last look)."""
    if isinstance(max_seeds, bool) or not isinstance(max_seeds, int) or max_seeds < 2:
        raise ValueError(f"max_seeds must be an integer >= 2, got {max_seeds!r}")
    if isinstance(step, bool) or not isinstance(step, int) or step < 2:
        raise ValueError(f"step must be an integer >= 2, got {step!r}")
    looks = list(range(step, max_seeds, step))
    return tuple(looks + [max_seeds])


@dataclass(frozen=True)
class SequentialDesign:
    """Planned looks and the total two-sided level of the sequential verdicts."""

    looks: tuple[int, ...] = planned_looks()
    alpha: float = ALPHA
    conversion: Conversion = "union"

    def __post_init__(self) -> None:
        object.__setattr__(self, "looks", _check_looks(self.looks))
        _check_alpha(self.alpha)
        if self.conversion not in CONVERSIONS:
            raise ValueError(f"conversion must be one of {CONVERSIONS}, got {self.conversion!r}")

    def critical(self, look: int, *, alpha: float, df: float) -> float:
        """Critical t value at look index ``look`` for a test whose total level over
        the looks is ``alpha`` (e.g. a Bonferroni share of :attr:`alpha`)."""
        return float(t_boundaries(self.looks, df, alpha=alpha, conversion=self.conversion)[look])

    def next_look(self, n: int) -> int | None:
        """Smallest planned look above ``n`` seeds (``None`` past the last)."""
        return next((k for k in self.looks if k > n), None)

    def describe(self) -> str:
        return (
            f"group-sequential, O'Brien-Fleming-type Lan-DeMets spending of alpha = "
            f"{self.alpha:g} over looks at n = {', '.join(map(str, self.looks))} seeds, "
            f"{self.conversion} t boundaries (repeated confidence intervals)"
        )


@dataclass(frozen=True)
class SequentialResult:
    """Verdict of one sample and the look it was reached at."""

    verdict: str
    n: int
    diff: float
    lo: float
    hi: float
    critical: float


def sequential_decisions(
    diffs: np.ndarray,
    *,
    looks: Sequence[int] = planned_looks(),
    alpha: float = ALPHA,
    margin: float = MARGIN,
    kind: Kind = "directional",
    conversion: Conversion = "union",
    z_boundaries: Sequence[float] | None = None,
) -> dict[str, np.ndarray]:
    """Sequential verdicts of many paired-difference samples at once.

    Row ``r`` of ``diffs`` holds the per-seed differences in the order the seeds
    were added.  At each look ``n_k <= n`` (in order) the repeated interval
    ``mean(d[:n_k]) +- c_k^t s / sqrt(n_k)`` is read by
    :func:`paper_figs.verdicts.decide`; a row stops at its first decided look.

    Parameters
    ----------
    diffs : array, shape (R, n)
        Finite per-seed differences; ``n >= looks[0]``.
    looks, alpha, margin, kind, conversion
        The design, its two-sided level, the margin of "negligible", the rule and
        the t conversion (:func:`t_boundaries`).
    z_boundaries : sequence of float, optional
        Replace the spending boundaries by these z values carried to t at their
        nominal level (e.g. ``z_{1-alpha/2}`` at every look: naive repeated
        testing, whose error rate exceeds alpha).

    Returns
    -------
    dict of arrays, shape (R,)
        ``verdict`` (str), ``n`` (seeds at the deciding look, or the last look
        read), ``diff``, ``lo``, ``hi``, ``critical`` at that look.
    """
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim != 2 or not np.all(np.isfinite(d)):
        raise ValueError("diffs must be a finite 2-D array (samples x seeds)")
    lk = _check_looks(looks)
    dfs = np.asarray(lk, dtype=np.float64) - 1
    if z_boundaries is None:
        crits = t_boundaries(lk, dfs, alpha=alpha, conversion=conversion)
    else:
        z = np.asarray(z_boundaries, dtype=np.float64)
        if z.shape != (len(lk),):
            raise ValueError(f"z_boundaries must hold one value per look ({len(lk)})")
        crits = sps.t.isf(sps.norm.sf(z), dfs)
    used = [k for k, n in enumerate(lk) if n <= d.shape[1]]
    if not used:
        raise ValueError(f"diffs has {d.shape[1]} seeds, fewer than the first look ({lk[0]})")
    R = d.shape[0]
    out = {
        "verdict": np.full(R, "inconclusive", dtype=object),
        "n": np.zeros(R, dtype=int),
        "diff": np.full(R, np.nan),
        "lo": np.full(R, np.nan),
        "hi": np.full(R, np.nan),
        "critical": np.full(R, np.nan),
    }
    open_ = np.ones(R, dtype=bool)
    for k in used:
        n = lk[k]
        x = d[open_, :n]
        m = x.mean(axis=1)
        se = x.std(axis=1, ddof=1) / math.sqrt(n)
        crit = float(crits[k])
        lo, hi = m - crit * se, m + crit * se
        v = decide_array(lo, hi, kind=kind, margin=margin)
        idx = np.flatnonzero(open_)
        for key, val in (
            ("verdict", v),
            ("n", n),
            ("diff", m),
            ("lo", lo),
            ("hi", hi),
            ("critical", crit),
        ):
            out[key][idx] = val
        open_[idx[v != "inconclusive"]] = False
        if not open_.any():
            break
    return out


def sequential_decision(
    diffs: Sequence[float] | np.ndarray,
    *,
    looks: Sequence[int] = planned_looks(),
    alpha: float = ALPHA,
    margin: float = MARGIN,
    kind: Kind = "directional",
    conversion: Conversion = "union",
) -> SequentialResult:
    """Sequential verdict of one paired-difference sample (see
    :func:`sequential_decisions`)."""
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim != 1:
        raise ValueError("diffs must be a 1-D sequence of per-seed differences")
    r = sequential_decisions(
        d[None, :], looks=looks, alpha=alpha, margin=margin, kind=kind, conversion=conversion
    )
    return SequentialResult(
        str(r["verdict"][0]),
        int(r["n"][0]),
        float(r["diff"][0]),
        float(r["lo"][0]),
        float(r["hi"][0]),
        float(r["critical"][0]),
    )
