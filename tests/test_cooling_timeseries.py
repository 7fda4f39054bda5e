"""AR(1) whitening, bias-corrected rho, HAC and the trend test of analysis.cooling.timeseries."""

import numpy as np
import pytest
from scipy import stats

from analysis.cooling.synthetic import ar1_noise
from analysis.cooling.timeseries import (
    ar1_coefficients,
    block_indices,
    block_length,
    estimate_rho,
    hac_covariance,
    recolor,
    running_mean,
    trend_test,
    whiten,
)


def test_whiten_recolor_round_trip_with_gaps(rng):
    gap = np.array([0, 1, 1, 3, 1, 0, 1, 2, 1, 1], float)  # two series, with missing epochs
    rho = np.where(np.arange(10) < 5, 0.8, -0.3)
    c1, c2, _ = ar1_coefficients(rho, gap)
    v = rng.standard_normal(10)
    np.testing.assert_allclose(recolor(whiten(v, c1, c2), c1, c2), v, rtol=1e-12)


def test_whitening_gives_the_exact_gaussian_ar1_likelihood(rng):
    """sum(-log sigma - e^2/2 + log_det) equals the multivariate normal log-density."""
    rho, n = 0.7, 12
    t = np.array([0, 1, 2, 4, 5, 6, 9, 10, 11, 12, 13, 15], float)  # gaps of 2 and 3
    gap = np.r_[0, np.diff(t)]
    cov = rho ** np.abs(t[:, None] - t[None, :])  # unit stationary variance
    u = rng.multivariate_normal(np.zeros(n), cov)
    c1, c2, log_det = ar1_coefficients(np.full(n, rho), gap)
    e = whiten(u, c1, c2)
    ll = np.sum(-0.5 * np.log(2 * np.pi) - 0.5 * e**2 + log_det)
    assert ll == pytest.approx(stats.multivariate_normal(np.zeros(n), cov).logpdf(u), rel=1e-10)


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_estimate_rho_recovers_ar1_coefficient(rho):
    rng = np.random.default_rng(7)
    L, n = 4, 2000
    u = ar1_noise((L, n), rho, rng).ravel()
    gap = np.tile(np.r_[0, np.ones(n - 1)], L)
    group = np.repeat(np.arange(L), n)
    est = estimate_rho(u - np.repeat(u.reshape(L, n).mean(1), n), gap, group, L)
    # standard error of a lag-one autocorrelation: sqrt((1 - rho^2)/n); 4 SE per layer
    se = np.sqrt((1 - rho**2) / n)
    assert np.all(np.abs(est - rho) < 4 * se + 4.0 / n)


def test_hac_long_run_variance_of_ar1():
    """Bartlett HAC of an AR(1) series approaches sigma^2 (1+rho)/(1-rho) per observation."""
    rng = np.random.default_rng(3)
    rho, n = 0.6, 40000
    x = ar1_noise((1, n), rho, rng)[0]
    omega = hac_covariance((x - x.mean())[:, None])[0, 0] / n
    # Bartlett at the Andrews bandwidth has O(m^-1) bias and O(sqrt(m/n)) noise: ~5% here
    assert omega == pytest.approx((1 + rho) / (1 - rho), rel=0.12)
    white = rng.standard_normal((n, 2))
    np.testing.assert_allclose(hac_covariance(white) / n, np.eye(2), atol=0.05)


def test_block_length_and_indices(rng):
    assert block_length(0.0, 500) == 1
    assert block_length(0.9, 500) > block_length(0.5, 500) > 1
    idx = block_indices(100, 7, 5, rng)
    assert idx.shape == (5, 100) and idx.min() >= 0 and idx.max() < 100
    # consecutive indices inside a block
    assert np.all(np.diff(idx[:, :7], axis=1) == 1)


def test_running_mean_skips_nan():
    y = np.array([1.0, np.nan, 3.0, 5.0, np.nan])
    np.testing.assert_allclose(running_mean(y, 3), [1.0, 2.0, 4.0, 4.0, 5.0])
    with pytest.raises(ValueError, match="window"):
        running_mean(y, 0)


def test_trend_test_size_and_power():
    """Zero slopes are accepted at about the nominal rate, a real slope is rejected."""
    t = np.arange(1.0, 401.0)
    accepted, rejected = 0, 0
    for seed in range(30):
        rng = np.random.default_rng(seed)
        Y = 0.1 * ar1_noise((3, t.size), 0.5, rng, correlation=0.5)
        accepted += trend_test(t, Y).p_value >= 0.05
        Y[1] += 0.3 * np.log(t) / np.log(t).std()  # a drifting ratio
        rejected += trend_test(t, Y).p_value < 0.05
    # size 5%: P(accepted <= 24 | n=30, p=0.95) = 0.008
    assert accepted >= 25
    assert rejected == 30


def test_trend_test_needs_points():
    with pytest.raises(ValueError, match="at least 4"):
        trend_test(np.arange(3.0), np.ones((1, 3)))
