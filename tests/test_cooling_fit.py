"""Joint law fits: likelihood, recovery, model selection, interval coverage, bootstrap."""

import numpy as np
import pytest
from scipy import optimize, stats

from analysis.cooling.bootstrap import ReducedProblem
from analysis.cooling.fit import build_panel, fit_law
from analysis.cooling.laws import LAW_NAMES, get_law
from analysis.cooling.problem import WhitenedProblem
from analysis.cooling.selection import compare, lrt_nested, vuong
from analysis.cooling.synthetic import SyntheticSpec, generate

TRUE = {
    "exponential": {"tau": 60.0},
    "stretched_exponential": {"tau": 30.0, "beta": 0.5},
    "power_law": {"p": 1.2},
}
TRUE["stretched_then_exponential"] = STE = {"tau": 20.0, "beta": 0.35, "t_c": 120.0}
ONSET = 40.0


def _late_spec(law, **kw):
    """Late regime only from the window start (no transient inside the window)."""
    base = dict(law=law, params=TRUE[law], n_epochs=400, onset=ONSET)
    base.update(kw)
    return SyntheticSpec(**base)


def test_loglik_is_the_exact_gaussian_ar1_likelihood():
    """Joint log-likelihood = sum over layers of AR(1) multivariate normal log-densities."""
    d, _ = generate(_late_spec("stretched_exponential", n_epochs=80, rho=0.6), 5)
    d.signal[1, 50] = np.nan  # a gap in one layer
    p = build_panel(d, "signal", ONSET)
    f = fit_law(p, "stretched_exponential")
    g = get_law("stretched_exponential").log_f(p.epochs, f.z)[0]
    ll = 0.0
    for i, layer in enumerate(p.layers):
        m = p.layer == i
        t = p.epochs[p.col[m]]
        sd = f.sigma[layer] * p.r[m]
        cov = f.rho[layer] ** np.abs(t[:, None] - t[None, :]) * np.outer(sd, sd)
        mean = f.log_amplitudes[layer] + g[p.col[m]]
        ll += stats.multivariate_normal(mean, cov).logpdf(p.y[m])
    assert f.loglik == pytest.approx(ll, rel=1e-9)


@pytest.mark.parametrize(
    "law", ["stretched_exponential", "stretched_then_exponential", "power_law"]
)
def test_reduced_problem_equals_full_problem(law):
    """The epoch-grid sufficient statistics give the same objective, optimum and Hessian."""
    data_law = (
        "stretched_then_exponential"
        if law == "stretched_then_exponential"
        else "stretched_exponential"
    )
    d, _ = generate(_late_spec(data_law, rho=0.5, params=STE), 2)
    d.signal[2, 100:103] = np.nan
    d.signal[0, 200] = -1.0
    p = build_panel(d, "signal", ONSET)
    f = fit_law(p, law)
    lw = get_law(law)
    prob = WhitenedProblem(p, lw, np.array(list(f.rho.values())), np.array(list(f.sigma.values())))
    red = ReducedProblem(prob)
    stats_ = red.stats(prob.zy)
    z = f.z + 0.01
    assert red.objective(z, *stats_)[0] == pytest.approx(np.sum(prob.fun(z) ** 2), rel=1e-10)
    lo, hi = lw.bounds(p.epochs.min(), p.epochs.max())
    zr, F, H, a, ok = red.solve(f.z + 0.02, *stats_, lo, hi)
    ref = optimize.least_squares(
        prob.fun, f.z, jac=prob.jac, bounds=(lo, hi), xtol=1e-14, ftol=1e-14, gtol=1e-14
    )
    assert ok
    np.testing.assert_allclose(zr, ref.x, rtol=1e-6, atol=1e-8)
    J = prob.jac(zr)
    np.testing.assert_allclose(H, J.T @ J, rtol=1e-7, atol=1e-9 * np.abs(H).max())


def _predicted_se(law, panel, sigma):
    """Cramer-Rao standard errors (internal parameters) at the truth for white noise sigma."""
    lw = get_law(law)
    z = lw.to_internal(TRUE[law])
    prob = WhitenedProblem(panel, lw, np.zeros(panel.n_layers), np.full(panel.n_layers, sigma))
    J = prob.jac(z)
    return z, np.sqrt(np.diag(np.linalg.inv(J.T @ J)))


@pytest.mark.parametrize("law", ["exponential", "stretched_exponential", "power_law"])
def test_parameters_recovered_at_the_cramer_rao_precision(law):
    """Errors of (ln tau, beta, p) are within 4 predicted standard errors in every seed
    (P(|Z| > 4) = 6e-5), and their RMS over 10 seeds is within the 99.8% band of a
    chi distribution with 10 degrees of freedom: sqrt(chi2_10/10) in [0.38, 1.72]."""
    errs = []
    for seed in range(10):
        d, _ = generate(_late_spec(law, noise=0.1), 100 + seed)
        p = build_panel(d, "signal", ONSET, weights="uniform")
        f = fit_law(p, law, noise_model="white")
        z, se = _predicted_se(law, p, 0.1)
        errs.append((f.z - z) / se)
    errs = np.array(errs)
    assert np.all(np.abs(errs) < 4)
    rms = np.sqrt(np.mean(errs**2, axis=0))
    assert np.all((rms > 0.38) & (rms < 1.72)), rms


@pytest.mark.parametrize("law", ["exponential", "stretched_exponential", "power_law"])
def test_true_law_wins_model_comparison(law):
    """Moderate noise (10%, AR(1) rho = 0.5, layers correlated 0.5): BIC picks the true law in
    at least 19 of 20 seeds (95%)."""
    wins = 0
    for seed in range(20):
        d, _ = generate(_late_spec(law, noise=0.1, rho=0.5, layer_correlation=0.5), 200 + seed)
        p = build_panel(d, "signal", ONSET)
        wins += compare({n: fit_law(p, n) for n in LAW_NAMES}).selected == law
    assert wins >= 19


def test_stretched_turning_exponential_is_selected_when_supported():
    spec = _late_spec("stretched_then_exponential", noise=0.05)
    wins = 0
    for seed in range(10):
        d, _ = generate(spec, 300 + seed)
        p = build_panel(d, "signal", ONSET)
        wins += (
            compare({n: fit_law(p, n) for n in LAW_NAMES}).selected == "stretched_then_exponential"
        )
    assert wins >= 9


def _coverage(n_rep, n_epochs, uncertainty, noise_model="ar1", n_boot=200):
    spec = _late_spec(
        "stretched_exponential", noise=0.1, rho=0.9, layer_correlation=0.5, n_epochs=n_epochs
    )
    hit = np.zeros(2)
    for seed in range(n_rep):
        d, _ = generate(spec, 1000 + seed)
        f = fit_law(
            build_panel(d, "signal", ONSET),
            "stretched_exponential",
            noise_model=noise_model,
            uncertainty=uncertainty,
            n_boot=n_boot,
            rng=seed,
        )
        hit += [f.ci["tau"][0] <= 30 <= f.ci["tau"][1], f.ci["beta"][0] <= 0.5 <= f.ci["beta"][1]]
    return hit / n_rep


def _band(n_rep, widen=2.0):
    se = np.sqrt(0.95 * 0.05 / n_rep)
    return 0.92 - widen * se, 0.98 + widen * se


def test_interval_coverage_with_ar1_residuals_fast():
    """95% sandwich intervals, AR(1) rho = 0.9 residuals correlated across layers, 2000 epochs:
    coverage in 92-98% widened by two binomial standard errors of 60 replicates (0.028);
    the plain Jacobian covariance of a white-noise fit covers far less (measured ~20%)."""
    lo, hi = _band(60)
    cov = _coverage(60, 2000, "sandwich")
    assert np.all((cov >= lo) & (cov <= hi)), cov
    plain = _coverage(30, 2000, "jacobian", noise_model="white")
    assert np.all(plain < 0.6), plain


@pytest.mark.slow
def test_interval_coverage_with_ar1_residuals_slow():
    """1000 replicates: 92% <= coverage <= 98% (binomial SE 0.007)."""
    cov = _coverage(1000, 2000, "sandwich")
    assert np.all((cov >= 0.92) & (cov <= 0.98)), cov


@pytest.mark.slow
def test_bootstrap_coverage_short_window_slow():
    """Percentile-t block bootstrap on a short window (360 epochs, rho = 0.9), 200 replicates:
    92-98% widened by two binomial standard errors (0.015)."""
    lo, hi = _band(200)
    cov = _coverage(200, 400, "bootstrap", n_boot=200)
    assert np.all((cov >= lo) & (cov <= hi)), cov


def test_bootstrap_is_seeded_and_consistent():
    d, _ = generate(_late_spec("stretched_exponential", rho=0.5, n_epochs=200), 9)
    p = build_panel(d, "signal", ONSET)
    a = fit_law(p, "stretched_exponential", uncertainty="bootstrap", n_boot=40, rng=4)
    b = fit_law(p, "stretched_exponential", uncertainty="bootstrap", n_boot=40, rng=4)
    s = fit_law(p, "stretched_exponential")
    assert a.ci == b.ci and a.boot.shape == (40, 2) and a.n_boot_failed == 0
    assert a.params == s.params  # same point estimate
    for k in ("tau", "beta"):
        assert a.ci[k][0] < a.params[k] < a.ci[k][1]
        # bootstrap and sandwich standard errors agree to within a factor 2
        assert 0.5 < a.stderr[k] / s.stderr[k] < 2.0


def test_lrt_boundary_and_vuong():
    d, _ = generate(_late_spec("stretched_exponential", noise=0.05), 1)
    p = build_panel(d, "signal", ONSET)
    fe, fs, fp = (fit_law(p, n) for n in ("exponential", "stretched_exponential", "power_law"))
    r = lrt_nested(fe, fs)
    assert fs.params["beta"] < 1 and r["p_value_one_sided"] == pytest.approx(r["p_value"] / 2)
    assert r["p_value"] < 1e-6
    v = vuong(fs, fp)
    assert v["favours"] == "stretched_exponential" and v["p_value"] < 1e-3
    assert vuong(fs, fs)["statistic"] == 0.0
    other = fit_law(build_panel(d, "signal", 60.0), "power_law")
    with pytest.raises(ValueError, match="different data"):
        compare({"stretched_exponential": fs, "power_law": other})
    with pytest.raises(ValueError, match="criterion"):
        compare({"power_law": fp}, criterion="hqc")


def test_fit_law_rejects_bad_options():
    d, _ = generate(_late_spec("power_law", n_epochs=100), 1)
    p = build_panel(d, "signal", ONSET)
    with pytest.raises(ValueError, match="'exponential'"):
        fit_law(p, "weibull")
    with pytest.raises(ValueError, match="uncertainty"):
        fit_law(p, "power_law", uncertainty="delta")
    with pytest.raises(ValueError, match="level"):
        fit_law(p, "power_law", level=1.0)
