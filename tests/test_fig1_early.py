"""Figure 1's early regimes from the within-minibatch noise (paper_figs.fig1_early): the
rules on planted step records (the figure end to end: tests/test_figures.py)."""

import math

import pytest

from paper_figs.fig1_early import (
    CROSSING_HOLD,
    EarlyRun,
    activation_verdicts,
    early_verdict,
)
from planted_fig1 import LAYERS, planted_records


def test_planted_signal_dominated_start_and_crossing():
    v = early_verdict(EarlyRun(planted_records(4.0, cross=30.0)))
    assert v["regime1"] and v["regime2"]
    # noise 1, |G|^2 = SNR^2: the pooled estimate at step 1 is the rms of the planted SNR
    # over records 1..3 (the centred window of POOL = 5, cut at the start); the median
    # over the layers' factors 1 + (k - 1.5) / 20 is 1
    planted = [4.0 * t ** (-math.log(4.0) / math.log(30.0)) for t in (1, 2, 3)]
    assert v["snr_first"] == pytest.approx(math.sqrt(sum(x * x for x in planted) / 3))
    # the planted SNR crosses 1 at step 30; the centred rms lags it by at most ~2 steps
    assert 30 <= v["crossing"] <= 33
    assert v["signal_max"] == 5.0
    assert v["crossing_from_max_decades"] == pytest.approx(math.log10(v["crossing"] / 5.0))


def test_noise_dominated_from_the_start():
    v = early_verdict(EarlyRun(planted_records(0.3)))
    assert not v["regime1"] and v["crossing"] == 1.0  # at or below 1 from step 1
    # a single record below 1 does not end the regime
    recs = planted_records(4.0, cross=60.0)
    for name in LAYERS:
        recs[9]["layers"][name]["within_snr"] = 0.5
    v = early_verdict(EarlyRun(recs))
    assert v["crossing"] > 10 + CROSSING_HOLD


def test_majority_over_seeds_and_sentences():
    runs = [planted_records(4.0), planted_records(3.0), planted_records(0.5)]
    out = activation_verdicts([early_verdict(EarlyRun(r)) for r in runs])
    assert out["regime1_present"] and out["regime2_present"] and out["runs"] == 3
    assert out["regime1"].startswith("present (2 of 3 seeds)")
    assert "crosses 1 downwards" in out["regime2"]
    out = activation_verdicts([early_verdict(EarlyRun(planted_records(0.5)))] * 3)
    assert not out["regime1_present"] and out["regime1"].startswith("absent (3 of 3 seeds)")
    with pytest.raises(ValueError, match="at least one run"):
        activation_verdicts([])


def test_records_without_the_split_are_refused():
    recs = planted_records(2.0)
    for r in recs:
        del r["within_parts"]
    with pytest.raises(ValueError, match="steps_split was off"):
        EarlyRun(recs)


def test_pooling_one_record_is_the_record_estimate():
    """pool = 1 gives each record's own sqrt(max(|g|^2 - sigma^2, 0)) / sigma, i.e. the
    trainer's within_snr (planted consistently: mean^2 = 1 + SNR^2, noise 1)."""
    run = EarlyRun(planted_records(2.0, n=40))
    assert run.pooled_snr(pool=1) == pytest.approx(run.snr, rel=1e-12)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="pool must be an integer >= 1"):
            run.pooled_snr(pool=bad)
