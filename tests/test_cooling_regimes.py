"""Regimes of section 2.1: signal maximum, SNR crossing, late onset (hinge changepoint)."""

import numpy as np
import pytest

from analysis.cooling import from_arrays
from analysis.cooling.regimes import hinge_profile, late_onset, signal_maximum, snr_crossing
from analysis.cooling.synthetic import SyntheticSpec, generate


def test_hinge_profile_matches_least_squares(rng):
    """Closed-form profile (cumulative sums) = explicit (GLS) least squares at every break."""
    x = np.log(np.arange(5.0, 65.0))
    R = rng.standard_normal((3, x.size))
    cand = np.arange(3, 50)
    for rho in (0.0, 0.6):
        rss = hinge_profile(x, R, cand, rho)
        for j, c in enumerate(cand[::7]):
            h = np.minimum(0.0, x - x[c])
            X = np.column_stack([np.ones_like(x), h])
            Xt, tot = X[1:] - rho * X[:-1], 0.0
            for r in R:
                yt = r[1:] - rho * r[:-1]
                beta = np.linalg.lstsq(Xt, yt, rcond=None)[0]
                tot += np.sum((yt - Xt @ beta) ** 2)
            assert rss[7 * j] == pytest.approx(tot, rel=1e-9)


def test_onset_within_six_epochs():
    """White 10% noise, true onset 40: every seed within 6 epochs (15% of the onset; measured
    90% quantile of the error 3 epochs over 40 seeds), and the 95% bootstrap interval covers
    the truth in at least 8 of 10 seeds."""
    errs, covered = [], 0
    for seed in range(10):
        d, truth = generate(SyntheticSpec(noise=0.1, n_epochs=300), 50 + seed)
        o = late_onset(d, n_boot=100, rng=seed)
        errs.append(o.epoch - truth["onset"])
        covered += o.ci[0] <= truth["onset"] <= o.ci[1]
    assert np.max(np.abs(errs)) <= 6, errs
    assert covered >= 8


def test_signal_maximum_and_snr_crossing():
    d, truth = generate(SyntheticSpec(noise=0.02, noise_std=0.02, n_epochs=200), 3)
    found = signal_maximum(d, smooth=3)
    for layer, t_max in truth["signal_max"].items():
        # the running mean of 3 epochs and integer epochs: within 2 epochs of the true maximum
        assert abs(found[layer] - t_max) <= 2.0
    for source in ("signal", "gradient"):
        for v in snr_crossing(d, source=source, smooth=3).values():
            assert v["epoch"] == pytest.approx(truth["snr_crossing"], abs=1.0)
    # a ratio that never falls below 1 has no crossing, and says why
    flat = from_arrays(d.epochs, d.signal, d.signal * 0.5, layers=d.layers)
    assert all(
        v["epoch"] is None and "throughout" in v["note"] for v in snr_crossing(flat).values()
    )


def test_onset_needs_two_layers_and_enough_epochs():
    d, _ = generate(SyntheticSpec(n_epochs=100), 1)
    one = from_arrays(d.epochs, d.signal[:1], d.signal_std[:1])
    with pytest.raises(ValueError, match="at least 2 layers"):
        late_onset(one)
    with pytest.raises(ValueError, match="too short"):
        late_onset(d, t_from=90.0)
    with pytest.raises(ValueError, match="gradient"):
        snr_crossing(from_arrays(d.epochs, d.signal, d.signal_std), source="gradient")
