"""Factorisation test and noise floor (sections 2.1 and PAPER-NOTES 5)."""

import numpy as np
import pytest

from analysis.cooling import factorisation_test, from_arrays, noise_floor
from analysis.cooling.floor import FLOOR_DOMINATED, floor_series
from analysis.cooling.synthetic import SyntheticSpec, generate

WINDOW = (40.0, 400.0)


def test_factorisation_accepts_common_decay_and_rejects_a_deviant_layer():
    """AR(1) rho = 0.5 noise correlated across layers.  Common decay: the 5%-level joint test
    accepts in >= 17 of 20 seeds (P(X <= 16 | 20, 0.95) = 0.016).  One layer with an extra
    t^0.3 factor (log ratio changes by 0.3 ln 10 = 0.69 over the window): rejected in all."""
    acc = {"signal": 0, "signal_std": 0}
    for seed in range(20):
        base = dict(noise=0.1, noise_std=0.1, rho=0.5, layer_correlation=0.5, n_epochs=400)
        f = factorisation_test(generate(SyntheticSpec(**base), seed)[0], WINDOW)
        for ch in acc:
            acc[ch] += f.common(ch)
        bad = factorisation_test(
            generate(SyntheticSpec(**base, late_drift=(0, 0, 0, 0.3)), seed)[0], WINDOW
        )
        assert not bad.common("signal") and not bad.common("signal_std")
        assert bad.tests["signal"].p_value < 1e-3
    assert acc["signal"] >= 17 and acc["signal_std"] >= 17


def test_factorisation_single_layer_and_reference():
    d, _ = generate(SyntheticSpec(n_epochs=100, onset=20.0), 1)
    one = from_arrays(d.epochs, d.signal[:1], d.signal_std[:1])
    assert factorisation_test(one, (20.0, 100.0)).common() is None
    f = factorisation_test(d, (20.0, 100.0), reference="fc3")
    assert f.tests["signal"].names == ["fc1/fc3", "fc2/fc3", "fc4/fc3"]
    with pytest.raises(ValueError, match="fc9"):
        factorisation_test(d, (20.0, 100.0), reference="fc9")


def test_half_normal_floor_bounds_the_mean_absolute_gradient():
    """Minibatch gradients with zero mean: the mean |g| over the layer equals
    sqrt(2/pi) mean_w sd_w, at most the floor sqrt(2/pi) grad_std_norm/sqrt(N) (equality
    for equal sd_w).  Monte Carlo with 4000 minibatches: relative error ~ 1/sqrt(4000 N)."""
    rng = np.random.default_rng(0)
    n_w, n_b = 500, 4000
    for sd in (np.full(n_w, 0.3), rng.uniform(0.1, 1.0, n_w)):
        g = rng.standard_normal((n_b, n_w)) * sd  # minibatch gradients
        s = np.abs(g).mean(axis=1)  # eq. 2 per minibatch
        gstd = np.sqrt(np.sum(g.var(axis=0)))
        d = from_arrays(
            [1.0, 2.0], [[s.mean()] * 2], [[s.std()] * 2], grad_std_norm=[[gstd] * 2], numel=[n_w]
        )
        floor, corrected, _ = floor_series(d)
        assert s.mean() == pytest.approx(np.sqrt(2 / np.pi) * sd.mean(), rel=0.01)
        assert floor[0, 0] >= s.mean() * (1 - 0.01)
        if np.ptp(sd) == 0:
            assert floor[0, 0] == pytest.approx(s.mean(), rel=0.01)


def test_floor_fraction_and_verdicts():
    base = dict(noise=0.05, n_epochs=400)
    d, _ = generate(SyntheticSpec(**base, floor_fraction=0.2), 1)
    fa = noise_floor(d, WINDOW)
    # by construction grad_std_norm = sqrt(pi/2) sqrt(N) 0.2 signal: the floor is 0.2 signal
    assert all(v == pytest.approx(0.2, rel=1e-12) for v in fa.floor_fraction.values())
    np.testing.assert_allclose(fa.corrected, d.signal * np.sqrt(1 - 0.04), rtol=1e-12)
    # grad_mean_norm = grad_std_norm * signal/noise ratio 0.3 in the late regime: the noise
    # fraction of the squared minibatch gradient norm is 1 / (1 + 0.3^2)
    assert all(
        v == pytest.approx(1 / (1 + 0.3**2), rel=1e-9) for v in fa.minibatch_noise_fraction.values()
    )
    assert "indistinguishable from the decay of its own noise" in fa.verdict
    at = noise_floor(generate(SyntheticSpec(**base, floor_fraction=0.97), 1)[0], WINDOW)
    assert all(v > FLOOR_DOMINATED for v in at.floor_fraction.values())
    assert "sits at the noise floor" in at.verdict and "noise floor" in at.report()
    # noise decaying faster than the signal (late ratio drifting): distinguishable
    d2, _ = generate(SyntheticSpec(**base), 2)
    d2.signal_std[:] = d2.signal_std * (d2.epochs / 40.0) ** -0.5
    assert "decay differently" in noise_floor(d2, WINDOW).verdict


def test_floor_unavailable_without_weight_counts():
    d, _ = generate(SyntheticSpec(n_epochs=100, onset=20.0), 1)
    bare = from_arrays(d.epochs, d.signal, d.signal_std, layers=d.layers)
    fa = noise_floor(bare, (20.0, 100.0))
    assert not fa.available and "grad_std_norm and numel" in fa.reason
    assert fa.tracks_noise is not None
