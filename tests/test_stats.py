"""Paired tests, verdict rules and the group-sequential design (seeded simulations)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from paper_figs import sequential as sq
from paper_figs import stats, verdicts
from paper_figs.verdicts import MARGIN, Arm

ALPHA = verdicts.ALPHA
#: realistic spread of a per-seed paired difference of test accuracy (0.25 pp)
SIGMA = 0.0025
#: a stopping margin far below any noise: only significance stops a sample, the
#: worst case for the false-positive rate ("sample until significant")
NO_MARGIN = 1e-12


def _tol(p: float, r: int) -> float:
    """Monte Carlo tolerance of a rate near ``p`` over ``r`` replicates: 3 binomial sd."""
    return 3 * math.sqrt(p * (1 - p) / r)


# ----------------------------------------------------------------------------- paired


def test_paired_matches_scipy_and_cancels_the_seed_effect(rng):
    seed_effect = rng.normal(0, 0.02, 8)  # shared by both arms: cancels in the difference
    a = 0.85 + seed_effect + 0.004 + rng.normal(0, 0.001, 8)
    b = 0.85 + seed_effect + rng.normal(0, 0.001, 8)
    c = stats.paired(a, b)
    ref = sps.ttest_rel(a, b)
    assert c.t == pytest.approx(ref.statistic) and c.p == pytest.approx(ref.pvalue)
    assert c.df == 7 and c.kind == "paired" and c.n_a == c.n_b == 8
    h = sps.t.ppf(0.975, 7) * np.std(a - b, ddof=1) / math.sqrt(8)
    assert (c.lo, c.hi) == pytest.approx((np.mean(a - b) - h, np.mean(a - b) + h))
    assert c.se == pytest.approx(h / sps.t.ppf(0.975, 7))
    w = stats.welch(a, b)  # the seed effect swamps Welch, not the paired test
    assert c.p < 1e-3 < 0.05 < w.p and c.hi - c.lo < (w.hi - w.lo) / 5


def test_paired_zero_spread_and_bad_input():
    c = stats.paired([0.5, 0.6, 0.7], [0.4, 0.5, 0.6])
    assert c.p == 0.0 and c.lo == c.hi == pytest.approx(0.1) and c.se == 0.0
    assert stats.paired([0.5, 0.6], [0.5, 0.6]).p == 1.0
    with pytest.raises(ValueError, match="equal length"):
        stats.paired([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=">= 2 pairs"):
        stats.paired([1.0], [1.0])


def test_compare_pairs_only_arms_with_the_same_seeds(rng):
    a = Arm(np.array([0.80, 0.82, 0.84]), (0, 1, 2))
    b = Arm(np.array([0.79, 0.81, 0.83]), (0, 1, 2))
    e = verdicts.compare(a, b)
    assert e.kind == "paired" and e.paired is not None and e.welch is not None
    assert e.diff == pytest.approx(0.01) and e.lo == e.hi == pytest.approx(0.01)
    # seeds listed in another order are aligned by seed, not by position
    b2 = Arm(np.array([0.83, 0.79, 0.81]), (2, 0, 1))
    assert verdicts.compare(a, b2).paired.se == 0.0
    # a different set of seeds (a failed run, an extra seed): Welch
    e = verdicts.compare(a, Arm(np.array([0.79, 0.81]), (0, 1)))
    assert e.kind == "Welch" and e.paired is None and e.p == e.welch.p
    assert verdicts.compare(a.values, b.values).kind == "Welch"  # no seeds at all
    # decision interval at alpha: the fixed t interval of the test used
    e = verdicts.compare(rng.normal(size=5), rng.normal(size=6), alpha=0.01)
    w = e.welch
    h = sps.t.isf(0.005, w.df) * w.se
    assert (e.lo, e.hi) == pytest.approx((w.diff - h, w.diff + h))
    assert e.critical == pytest.approx(sps.t.isf(0.005, w.df))


# ----------------------------------------------------------------------------- verdicts


def test_verdict_vocabulary_and_rules():
    assert verdicts.VERDICTS == ("holds", "does not hold", "negligible", "inconclusive")
    assert (*verdicts.VERDICTS, "not run") == verdicts.OUTCOMES
    d = verdicts.decide
    m = MARGIN
    assert d(0.001, 0.02) == "holds"
    assert d(-0.02, -0.001) == "does not hold"
    assert d(-0.02, 0.02) == "inconclusive"
    assert d(-m / 2, m / 2) == "negligible"
    # inside the margin but away from 0: the effect is decided to be negligible
    assert d(0.1 * m, 0.9 * m) == "negligible"
    assert d(-0.9 * m, -0.1 * m) == "negligible"
    assert d(0.1 * m, 1.1 * m) == "holds"
    nb = "no better"
    assert d(-0.02, 0.9 * m, kind=nb) == "holds"
    assert d(1.1 * m, 0.02, kind=nb) == "does not hold"
    assert d(0.5 * m, 2 * m, kind=nb) == "inconclusive"  # better, but by more than the margin?
    with pytest.raises(ValueError, match="kind"):
        d(0.0, 1.0, kind="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="margin"):
        d(0.0, 1.0, margin=0.0)


# ----------------------------------------------------------------------------- design


def test_spending_and_boundaries_match_published_values():
    assert sq.spending(0.0) == 0.0 and sq.spending(1.0) == pytest.approx(ALPHA)
    t = np.linspace(0.05, 1, 20)
    assert np.all(np.diff(sq.spending(t)) > 0)
    # Lan-DeMets O'Brien-Fleming, 4 equally spaced looks, two-sided 0.05 (gsDesign
    # sfLDOF / ldbounds): 4.3326, 2.9631, 2.3590, 2.0141, tabled to 1e-4
    assert sq.boundaries((4, 8, 12, 16)) == pytest.approx(
        [4.3326, 2.9631, 2.3590, 2.0141], abs=2e-4
    )
    assert sq.boundaries((16,)) == pytest.approx([sps.norm.isf(0.025)])
    # the first boundary in closed form: the alpha spent by t_1 alone
    assert sq.boundaries((3, 10))[0] == pytest.approx(sps.norm.isf(sq.spending(0.3) / 2))
    assert sq.planned_looks() == (4, 8, 12, 16) and sq.planned_looks(10) == (4, 8, 10)
    for bad in ((), (4, 4), (1, 4)):
        with pytest.raises(ValueError, match="looks"):
            sq.boundaries(bad)
    with pytest.raises(ValueError, match="alpha"):
        sq.boundaries((4, 8), alpha=1.5)
    with pytest.raises(ValueError, match="max_seeds"):
        sq.planned_looks(1)


def test_boundaries_spend_alpha_on_brownian_motion(rng):
    # Monte Carlo: the standardised sums of N(0, 1) at the looks cross c_k at look k
    # with probability alpha(t_k) - alpha(t_{k-1}); 200,000 seeded paths, 3 binomial sd
    looks, r = (4, 8, 12, 16), 200_000
    s = rng.normal(size=(r, 4, 4)).sum(axis=2).cumsum(axis=1)
    z = np.abs(s) / np.sqrt(np.array(looks))
    c = sq.boundaries(looks)
    alive = np.ones(r, dtype=bool)
    spent = np.diff(np.concatenate([[0.0], sq.spending(np.array(looks) / 16)]))
    for k in range(4):
        cross = alive & (z[:, k] >= c[k])
        assert np.mean(cross) == pytest.approx(spent[k], abs=_tol(spent[k], r) + 1e-6)
        alive &= ~cross


def test_t_boundaries():
    looks, df = (4, 8, 12, 16), np.array([3, 7, 11, 15])
    u = sq.t_boundaries(looks, df)
    n = sq.t_boundaries(looks, df, conversion="nominal")
    z = sq.boundaries(looks)
    spent = np.diff(np.concatenate([[0.0], sq.spending(np.array(looks) / 16)]))
    assert 2 * sps.t.sf(u, df) == pytest.approx(spent)  # marginal tail = spent alpha
    assert sps.t.sf(n, df) == pytest.approx(sps.norm.sf(z))  # same nominal level
    assert np.all(u >= n - 1e-9) and np.all(n > z)
    assert sq.t_boundaries(looks, math.inf, conversion="nominal") == pytest.approx(z)
    with pytest.raises(ValueError, match="conversion"):
        sq.t_boundaries(looks, df, conversion="exact")  # type: ignore[arg-type]


def _rates(v: np.ndarray) -> dict[str, float]:
    return {k: float(np.mean(v == k)) for k in verdicts.VERDICTS}


def _null_rates(rng: np.random.Generator, r: int) -> None:
    d = rng.normal(0.0, SIGMA, size=(r, 16))
    # realistic margin: false "holds" at most alpha (in fact alpha / 2 per direction)
    real = _rates(sq.sequential_decisions(d)["verdict"])
    assert real["holds"] <= ALPHA / 2 + _tol(ALPHA / 2, r)
    assert real["holds"] + real["does not hold"] <= ALPHA + _tol(ALPHA, r)
    # worst case, sampling until significant: still at most alpha with spending
    worst = _rates(sq.sequential_decisions(d, margin=NO_MARGIN)["verdict"])
    false_any = worst["holds"] + worst["does not hold"]
    assert worst["holds"] <= ALPHA / 2 + _tol(ALPHA / 2, r)
    assert false_any <= ALPHA + _tol(ALPHA, r)
    # naive repeated testing at the nominal 5 % at every look, no spending:
    # the same samples reject far more often than alpha (about 13 %)
    naive = _rates(
        sq.sequential_decisions(d, margin=NO_MARGIN, z_boundaries=[sps.norm.isf(ALPHA / 2)] * 4)[
            "verdict"
        ]
    )
    assert naive["holds"] + naive["does not hold"] > ALPHA + _tol(ALPHA, r)
    assert naive["holds"] > ALPHA / 2 + _tol(ALPHA / 2, r)


def test_sequential_false_positive_rate_under_optional_stopping(rng):
    # 400,000 replicates (about 2 s): tolerance 3 sd = 0.001 around alpha; the
    # "nominal" conversion's systematic 5.24 % would fail here, the union bound's
    # ~3.9 % cannot
    _null_rates(rng, 400_000)


def test_sequential_power_negligible_and_margin_validity(rng):
    r = 20_000
    # a real 1 pp effect, sigma 0.25 pp: "holds" by 16 seeds in (essentially) every
    # replicate; the bound 0.99 leaves 3 binomial sd of room at a true power >= 0.995
    out = sq.sequential_decisions(rng.normal(0.01, SIGMA, size=(r, 16)))
    assert np.mean(out["verdict"] == "holds") >= 0.99 and out["n"].max() <= 16
    # a true zero effect with small sigma (0.1 pp) is decided negligible
    out = sq.sequential_decisions(rng.normal(0.0, 0.001, size=(r, 16)))
    assert np.mean(out["verdict"] == "negligible") >= 0.99
    assert np.all(np.abs(out["lo"][out["verdict"] == "negligible"]) < MARGIN)
    # an effect exactly at the margin is called negligible at most alpha / 2 of the
    # time (TOST at alpha / 2 per side through the repeated intervals)
    out = sq.sequential_decisions(rng.normal(MARGIN, 2 * SIGMA, size=(r, 16)))
    assert np.mean(out["verdict"] == "negligible") <= ALPHA / 2 + _tol(ALPHA / 2, r)


def test_sequential_decision_of_one_sample():
    # exact differences (zero spread): decided at the first look
    res = sq.sequential_decision([0.01] * 16)
    assert res.verdict == "holds" and res.n == 4 and res.lo == res.hi == pytest.approx(0.01)
    d = 3 * np.array([0.004, -0.003, 0.002, -0.001, 0.003, -0.004, 0.001, -0.002])
    res = sq.sequential_decision(d)
    assert res.n == 8 and res.verdict == "inconclusive"  # the look at n = 4 cannot decide
    h = sq.t_boundaries((4, 8, 12, 16), [3, 7, 11, 15])[1] * d.std(ddof=1) / math.sqrt(8)
    assert (res.lo, res.hi) == pytest.approx((d.mean() - h, d.mean() + h))
    assert sq.sequential_decision([0.0001, -0.0001] * 6).verdict == "negligible"
    with pytest.raises(ValueError, match="first look"):
        sq.sequential_decision([0.01, 0.02, 0.03])
    design = sq.SequentialDesign()
    assert design.next_look(3) == 4 and design.next_look(8) == 12 and design.next_look(16) is None
    assert design.critical(3, alpha=ALPHA, df=15) == pytest.approx(
        sq.t_boundaries(design.looks, 15)[3]
    )
