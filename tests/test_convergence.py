"""Convergence studies: rate fits, delta-method and finite-k predictions, the study and its CLI.

Statistical tests are seeded.  Their tolerances are ``Z_TOL`` standard errors
(computed from the repetition counts, see analysis.convergence.rates) plus, where a rate is
fitted at finite ``y`` or ``k``, the systematic deviation that the next order of
the expansion predicts (analysis.convergence.theory), so that a correct
implementation passes for any seed with probability ~1 - 6e-5 per check.
"""

import csv
import json
import math

import numpy as np
import pytest

from analysis.convergence.fits import fit_k_study
from analysis.convergence.rates import log_std_se, repetition_stats, weighted_linear_fit
from analysis.convergence.reference import QuadraticReference, quadratic_box_log_average
from analysis.convergence.study import (
    CSV_COLUMNS,
    METHODS,
    ConvergeOptions,
    main,
    replicate,
    resolve_options,
    run_convergence,
)
from analysis.convergence.theory import (
    delta_method_from_moments,
    finite_k_coefficient,
    finite_k_coefficient_fd,
)
from analysis.free_entropy import references as refs

#: |normal deviate| > 4 has probability 6e-5: a fixed seed that fails is a real error.
Z_TOL = 4.0

LAM = np.array([1.0, 2.0, 4.0, 8.0])
C = np.array([0.2, -0.1, 0.3, 0.0])
W = np.zeros(4)
R = 1.0


# -------------------------------------------------------------------- analysis.convergence.rates
def test_weighted_fit_is_unbiased_with_honest_standard_errors(rng):
    # 400 data sets from a known line with heteroscedastic known errors: the slopes
    # scatter with the reported slope_se (std of 400 slopes has relative se 3.5%).
    x = np.log(2.0 ** np.arange(1, 11))
    se = 0.05 * (1 + np.arange(10) % 3)
    fits = [
        weighted_linear_fit(x, 0.3 - 0.5 * x + se * rng.standard_normal(10), se) for _ in range(400)
    ]
    slopes = np.array([f.slope for f in fits])
    se_slope = fits[0].slope_se
    assert abs(slopes.mean() + 0.5) < Z_TOL * se_slope / math.sqrt(400)
    assert abs(slopes.std(ddof=1) / se_slope - 1) < Z_TOL / math.sqrt(2 * 399)
    # chi2/dof averages 1 for a correct model (Var chi2 = 2 dof over 400 sets)
    chi2 = np.mean([f.chi2 / f.dof for f in fits])
    assert abs(chi2 - 1) < Z_TOL * math.sqrt(2 / 8 / 400)


def test_weighted_fit_exact_line_and_errors():
    fit = weighted_linear_fit([1, 2, 4], [3, 5, 9], [1, 1, 1])
    assert fit.slope == pytest.approx(2, abs=1e-12) and fit.intercept == pytest.approx(1, abs=1e-12)
    assert fit.chi2 == pytest.approx(0, abs=1e-20)
    for bad, match in [
        (([1, 2], [1], [1, 1]), "same length"),
        (([1], [1], [1]), "number of points"),
        (([1, 1], [1, 2], [1, 1]), "distinct"),
        (([1, 2], [1, 2], [1, 0]), "se"),
        (([1, 2], [1, np.nan], [1, 1]), "NaN"),
    ]:
        with pytest.raises(ValueError, match=match):
            weighted_linear_fit(*bad)


def test_log_std_se_matches_simulation(rng):
    # normal samples of size 30: the spread of log s over 4000 data sets is log_std_se(30)
    # (relative se of a std from 4000 values: 1/sqrt(2*3999) = 1.1%).
    log_s = np.log(rng.standard_normal((4000, 30)).std(axis=1, ddof=1))
    assert abs(log_s.std(ddof=1) / log_std_se(30) - 1) < 0.05  # 0.05: delta-method O(1/n) + 4 se
    # heavy tails widen it: exponential draws (excess kurtosis 6)
    log_e = np.log(rng.exponential(size=(4000, 200)).std(axis=1, ddof=1))
    assert (
        abs(log_e.std(ddof=1) / log_std_se(200, 6.0) - 1) < 0.1
    )  # 0.1: O(1/n) terms of kurtosis 6
    with pytest.raises(ValueError, match="n"):
        log_std_se(1)


def test_repetition_stats_definitions(rng):
    x = rng.normal(1.0, 2.0, size=500)
    st = repetition_stats(x, exact=0.5)
    assert st.bias == pytest.approx(x.mean() - 0.5)
    assert st.std == pytest.approx(x.std(ddof=1))
    assert st.bias_se == pytest.approx(x.std(ddof=1) / math.sqrt(500))
    assert st.rmse == pytest.approx(math.sqrt(np.mean((x - 0.5) ** 2)))
    with pytest.raises(ValueError, match="NaN"):
        repetition_stats([1.0, np.nan, 2.0, 3.0], 0.0)
    with pytest.raises(ValueError, match="number of estimates"):
        repetition_stats([1.0, 2.0], 0.0)


# --------------------------------------------------------- analysis.convergence.theory
def test_delta_method_from_known_moments():
    # X ~ Exponential(1): E X^m = m!, so v = 1, kappa_3 = 2, b_2 = 3/4 - 2/3, s_2 = 5/2 - 2.
    dm = delta_method_from_moments({m: math.lgamma(m + 1) for m in (1, 2, 3)})
    assert dm.relvar == pytest.approx(1.0, rel=1e-13)
    assert dm.skew3 == pytest.approx(2.0, rel=1e-13)
    assert dm.bias_second_order == pytest.approx(0.75 - 2 / 3, rel=1e-12)
    assert dm.var_second_order == pytest.approx(0.5, rel=1e-12)
    assert dm.bias(10.0) == pytest.approx(0.05) and dm.std(4.0) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="negative variance"):
        delta_method_from_moments({1: 0.0, 2: -0.1})
    with pytest.raises(ValueError, match="m = 1 and 2"):
        delta_method_from_moments({1: 0.0})


def test_second_order_terms_against_the_gamma_closed_form():
    # For X ~ Exponential(1) the mean of y draws is Gamma(y, 1/y), so F_hat = -log mean has
    # E = log y - digamma(y) = 1/(2y) + 1/(12 y^2) - 1/(120 y^4) + ... and
    # Var = trigamma(y) = 1/y + 1/(2 y^2) + 1/(6 y^3) + ...: the delta method's v/(2y) + b_2/y^2
    # and v/y + s_2/y^2 must match up to those next terms.
    from scipy.special import digamma, polygamma

    dm = delta_method_from_moments({m: math.lgamma(m + 1) for m in (1, 2, 3)})
    for y in (4.0, 8.0, 32.0):
        bias = math.log(y) - digamma(y)
        assert abs(bias - float(dm.bias(y)) - dm.bias_second_order / y**2) < 1.01 / (120 * y**4)
        var = float(polygamma(1, y))
        assert abs(var - dm.relvar / y - dm.var_second_order / y**2) < 1.01 / (6 * y**3)


def test_finite_k_coefficient_matches_finite_differences_of_the_reference():
    def f_inf(w):
        return refs.quadratic_box_free_entropy(w, lam=LAM, c=C, R=R)

    for w in (W, np.array([0.5, -0.3, 0.1, 0.9])):
        exact = finite_k_coefficient(w, lam=LAM, c=C, R=R)
        # central differences: O(h^2) truncation + O(eps/h^2) rounding ~ 1e-8 each
        assert finite_k_coefficient_fd(f_inf, w) == pytest.approx(exact, abs=1e-6)


def test_finite_k_rate_against_quadrature():
    # F(k) - F(inf) = C2/k^2 + N log(1 - e^{-4kR}) + O(k^-4): the residual e(k) = k^2 dF - C2
    # (the normaliser term is < 1e-27 here) falls by 4 per doubling of k, up to its own
    # relative O(k^-2) correction; kR >= 16 keeps that below 10%.
    c2 = finite_k_coefficient(W, lam=LAM, c=C, R=R)
    f_inf = refs.quadratic_box_free_entropy(W, lam=LAM, c=C, R=R)
    ks = 2.0 ** np.arange(4, 9)
    rows = [
        dict(k=k, bias=refs.quadratic_finite_k_free_entropy(W, lam=LAM, c=C, R=R, k=k) - f_inf)
        for k in ks
    ]
    fit = fit_k_study(rows, c2, R=R, k_fit_min=16.0)
    assert all(3.6 < r < 4.4 for r in fit["doubling_ratios"]), fit["doubling_ratios"]
    # the local slope is -2 - 2 eps(k)/(1 + eps), eps = e(k)/C2: the fit is within 2 max|eps|
    eps = np.abs(np.array(fit["k2_delta"]) / c2 - 1)
    assert abs(fit["slope"] + 2) < 2 * eps.max()
    assert eps[-1] < 1e-3


# ------------------------------------------------------------------- the reference
#: 2-D coupled quadratic for the study tests (its exact F is a 1-D quadrature, fast);
#: relative variance of the weights ~1.2, so biases are resolvable.
REF2 = dict(lam=[3.0, 12.0], c=[0.2, -0.1], w=[0.0, 0.0], R=1.0, coupling=0.5)


def test_box_log_average_against_brute_force(rng):
    # log E exp(-(u^T B u/2 + b.u)) for u uniform in the box against 2^20 plain draws,
    # within Z_TOL of the draws' own relative standard error.
    B = np.array([[2.0, 0.7], [0.7, 1.0]])
    b = np.array([0.3, -0.5])
    u = rng.uniform(-1.5, 1.5, size=(2**20, 2))
    x = np.exp(-(0.5 * np.einsum("ni,ij,nj->n", u, B, u) + u @ b))
    se = x.std() / math.sqrt(x.size) / x.mean()
    assert abs(quadratic_box_log_average(B, b, R=1.5) - math.log(x.mean())) < Z_TOL * se
    # a diagonal B takes the separable path; it agrees with the general one to quadrature accuracy
    D = np.diag([2.0, 1.0])
    from analysis.free_entropy.references import quadratic_full_box_free_entropy

    m = -b / np.diag(D)
    full = (
        0.5 * m @ D @ m
        - quadratic_full_box_free_entropy(np.zeros(2), A=D, c=m, R=1.5)
        - 2 * math.log(3)
    )
    assert quadratic_box_log_average(D, b, R=1.5) == pytest.approx(full, rel=1e-9)


def test_reference_validation():
    with pytest.raises(ValueError, match="coupling"):
        QuadraticReference((1.0, 2.0, 3.0), (0, 0, 0), (0, 0, 0), 1.0, coupling=-0.6)
    with pytest.raises(ValueError, match="N <= 3"):
        QuadraticReference((1.0,) * 4, (0,) * 4, (0,) * 4, 1.0, coupling=0.1)
    with pytest.raises(ValueError, match="same length"):
        QuadraticReference((1.0, 2.0), (0,), (0, 0), 1.0)
    with pytest.raises(ValueError, match="R"):
        QuadraticReference((1.0,), (0,), (0,), 0.0)


def test_control_variate_is_exact_on_a_separable_quadratic():
    # the secant surrogate reproduces a separable quadratic: zero predicted and measured spread
    ref = QuadraticReference((1.0, 4.0), (0.2, -0.1), (0.0, 0.0), 1.0)
    assert ref.delta_method("control_variate").relvar == pytest.approx(0, abs=1e-12)
    est, ok = replicate("control_variate", ref, 16, 8, np.random.SeedSequence(1))
    assert np.all(ok)
    np.testing.assert_allclose(est, ref.exact(), atol=1e-12)


def test_vectorised_replicates_agree_with_local_free_entropy():
    # Same law: means differ by < Z_TOL combined se, stds by < Z_TOL se of a std ratio.
    ref = QuadraticReference(**{k: tuple(v) if isinstance(v, list) else v for k, v in REF2.items()})
    for method in ("mc", "antithetic"):
        a, _ = replicate(method, ref, 16, 400, np.random.SeedSequence(5))
        b, _ = replicate(method, ref, 16, 400, np.random.SeedSequence(6), vectorised=False)
        sa, sb = repetition_stats(a, 0.0), repetition_stats(b, 0.0)
        assert abs(sa.mean - sb.mean) < Z_TOL * math.hypot(sa.bias_se, sb.bias_se)
        assert abs(math.log(sa.std / sb.std)) < Z_TOL * math.hypot(sa.log_std_se, sb.log_std_se)


# ------------------------------------------------------------------------- the y-study
@pytest.fixture(scope="module")
def study():
    # All methods on y = 4 .. 4096; mc and antithetic (vectorised) with 2^22 evaluations per
    # point, which makes the bias constant's se (fitted on y >= 16, where the O(y^-3) terms
    # are < 1% of the bias) ~4.5%, so that 20% is > 4 se; 64 repetitions per point for sobol
    # and the control variate (one local_free_entropy call each).
    opts = ConvergeOptions(
        y_min_log2=2,
        y_max_log2=12,
        n_rep=64,
        budget=2**22,
        k_min_log2=2,
        k_max_log2=6,
        bias_fit_y_min=16,
        progress=False,
        seed=7,
        **REF2,
    )
    return run_convergence(opts)


def test_mc_std_rate_and_constant(study):
    f = study.y_fits["mc"]
    s = f["std_slope"]
    # tolerance: Z_TOL se plus the finite-y deviation that the second-order delta method
    # predicts for the same points and weights (|expected_finite_y + 1/2| ~ 0.004)
    systematic = abs(f["expected_std_slope_finite_y"] + 0.5)
    assert abs(s["slope"] + 0.5) < Z_TOL * s["slope_se"] + systematic
    assert abs(s["slope"] - f["expected_std_slope_finite_y"]) < Z_TOL * s["slope_se"]
    cst = f["std_constant"]
    assert 3 * cst["se"] / cst["predicted"] < 0.10  # the 10% tolerance is several se wide
    assert abs(cst["ratio"] - 1) < 0.10


def test_mc_bias_rate_and_constants(study):
    f = study.y_fits["mc"]
    b = f["bias_slope"]
    assert b is not None and b["n_points"] >= 4
    systematic = abs(f["expected_bias_slope_finite_y"] + 1.0)
    assert abs(b["slope"] + 1.0) < Z_TOL * b["slope_se"] + systematic
    assert abs(b["slope"] - f["expected_bias_slope_finite_y"]) < Z_TOL * b["slope_se"]
    cst = f["bias_constant"]
    assert 3 * cst["se"] / cst["predicted"] < 0.20
    assert abs(cst["ratio"] - 1) < 0.20
    # the 1/y coefficient of bias*y is the second-order b_2 = 3v^2/4 - kappa_3/3
    assert (
        abs(cst["inv_y_coefficient"] - cst["inv_y_coefficient_predicted"])
        < Z_TOL * cst["inv_y_coefficient_se"]
    )


def test_mc_estimates_match_exact_plus_predicted_bias(study):
    ref = study.reference
    dm = ref.delta_method("mc")
    for r in study.rows:
        if r["study"] == "y" and r["method"] == "mc" and r["y"] >= 16:
            pred = r["exact"] + float(dm.bias(r["y"])) + dm.bias_second_order / r["y"] ** 2
            # third-order remainder: ~ v^3/y^3 <= 2.5/4096 at y = 16, below one se there
            assert abs(r["mean"] - pred) < Z_TOL * r["bias_se"] + dm.relvar**3 / r["y"] ** 3, r


def test_antithetic_matches_its_pair_covariance_prediction(study):
    # (dW, -dW) pairs: v -> v + Cov(X, X')/mu^2.  Near the loss minimum e^{-L} is nearly even,
    # the pairs are positively correlated and antithetic sampling *increases* the variance.
    f, f_mc = study.y_fits["antithetic"], study.y_fits["mc"]
    assert f["relvar"] > f_mc["relvar"]
    assert abs(f["std_constant"]["ratio"] - 1) < 0.10
    assert abs(f["std_slope"]["slope"] - f_mc["std_slope"]["slope"]) < Z_TOL * math.hypot(
        f["std_slope"]["slope_se"], f_mc["std_slope"]["slope_se"]
    )


def _log_rmse_ratio_se(study, method, y_min):
    """se of the geometric-mean RMSE ratio vs mc over y >= y_min (RMSE ~ std there)."""
    rows = {(r["method"], r["y"]): r for r in study.rows if r["study"] == "y"}
    terms = [
        (rows[method, y]["std_se"] / rows[method, y]["std"]) ** 2
        + (rows["mc", y]["std_se"] / rows["mc", y]["std"]) ** 2
        for (m, y) in rows
        if m == method and y >= y_min
    ]
    return math.sqrt(np.mean(terms) / len(terms))


@pytest.mark.parametrize("method", ["sobol", "control_variate"])
def test_sobol_and_control_variate_beat_mc(study, method):
    ratio = study.y_fits[method]["rmse_ratio_vs_mc"]
    se = _log_rmse_ratio_se(study, method, study.options.std_fit_y_min)
    assert math.log(ratio) < -Z_TOL * se, (ratio, se)


def test_control_variate_std_matches_its_prediction(study):
    # v_cv = v - Cov(X, G)^2/(mu^2 Var G) from exact moments of the surrogate G
    f = study.y_fits["control_variate"]
    assert f["relvar"] < study.y_fits["mc"]["relvar"]
    assert f["bias_constant"] is None  # the coefficient's O(1/y) bias is not predicted
    assert all(
        math.isnan(r["predicted_bias"]) for r in study.rows if r["method"] == "control_variate"
    )
    cst = f["std_constant"]
    assert abs(cst["measured"] - cst["predicted"]) < Z_TOL * cst["se"]
    s = f["std_slope"]
    assert abs(s["slope"] + 0.5) < Z_TOL * s["slope_se"]


def test_sobol_converges_faster_than_mc(study):
    # randomised QMC on a smooth integrand: std ~ y^-1 (log y)^... or better; -1/2 is excluded
    s = study.y_fits["sobol"]["std_slope"]
    assert s["slope"] < -0.5 - Z_TOL * s["slope_se"]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_estimates_the_exact_value(study, method):
    # any log-mean-exp estimator with an unbiased inner mean has bias ~ Var/2 = std^2/2 >= 0;
    # at y >= 256 that is far below the se, and |bias - std^2/2| < std^2/2 + Z_TOL se
    for r in study.rows:
        if r["study"] == "y" and r["method"] == method and r["y"] >= 256:
            half_var = r["std"] ** 2 / 2
            assert abs(r["bias"] - half_var) < half_var + Z_TOL * r["bias_se"], r


def test_k_study_in_the_result(study):
    k = study.k_fit
    assert k["expected_slope"] == -2.0
    # as in test_finite_k_rate_against_quadrature: local slope -2 - 2 eps/(1 + eps)
    eps_all = np.abs(np.array(k["k2_delta"]) / k["c2_predicted"] - 1)
    eps = eps_all[-len(k["fit_k"]) :]
    assert abs(k["slope"] + 2) < 2 * eps.max()
    assert abs(k["c2_ratio_at_kmax"] - 1) < 2e-3  # eps ~ k^-2: ~0.2 at k = 4, < 1e-3 at k = 64
    # eps ~ k^-2 from k = 4 to 64 (256-fold; at least half of that)
    assert eps_all[-1] < 2 * eps_all[0] / 16**2


def test_report_mentions_every_method(study):
    text = study.report()
    assert all(m in text for m in METHODS) and "k-study" in text


def test_replicate_is_reproducible_and_rejects_bad_input():
    ref = QuadraticReference(tuple(LAM), tuple(C), tuple(W), R)
    for method in METHODS:
        a, _ = replicate(method, ref, 16, 4, np.random.SeedSequence(3))
        b, _ = replicate(method, ref, 16, 4, np.random.SeedSequence(3))
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="power of two"):
        replicate("mc", ref, 12, 10, np.random.SeedSequence(3))
    with pytest.raises(ValueError, match="unknown method"):
        replicate("qmc", ref, 16, 10, np.random.SeedSequence(3))
    with pytest.raises(ValueError, match="y"):
        replicate("mc", ref, 1, 10, np.random.SeedSequence(3))
    with pytest.raises(ValueError, match="y"):
        replicate("sobol", ref, 2, 10, np.random.SeedSequence(3))


# ----------------------------------------------------------------------------- the CLI
def test_cli_writes_the_three_files(tmp_path, capsys):
    out = tmp_path / "conv"
    rc = main(
        [
            "--quick",
            "--out",
            str(out),
            "--methods",
            "mc",
            "antithetic",
            "--y-max-log2",
            "7",
            "--budget",
            "4096",
            "--n-rep",
            "16",
            "--k-max-log2",
            "4",
            "--no-progress",
            "--lam",
            "3",
            "12",
            "--c",
            "0.2",
            "-0.1",
            "--w",
            "0",
            "0",
            "--R",
            "1",
        ]
    )
    assert rc == 0
    assert "k-study" in capsys.readouterr().out
    with open(out / "convergence.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        rows = list(reader)
    ys = [r for r in rows if r["study"] == "y"]
    assert {r["method"] for r in ys} == {"mc", "antithetic"} and len(ys) == 2 * 7
    assert all(int(r["n_rep"]) >= 16 and float(r["std"]) > 0 for r in ys)
    assert len([r for r in rows if r["study"] == "k"]) == 4
    summary = json.loads((out / "summary.json").read_text())
    assert {
        "settings",
        "reference",
        "exact_free_entropy",
        "y_study",
        "k_study",
        "wall_time_s",
        "notes",
    } <= set(summary)
    assert any("resolvable" in n for n in summary["notes"])
    assert {"std_slope", "bias_slope", "std_constant", "bias_constant"} <= set(
        summary["y_study"]["mc"]
    )
    assert summary["settings"]["quick"] is True
    assert (out / "convergence.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*tmp"))  # atomic writes leave no temporaries


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--n-rep", "2"], "n_rep"),
        (["--y-min-log2", "5", "--y-max-log2", "4"], "y_max_log2"),
        (["--lam", "1", "2"], "same length"),
        (["--R", "-1"], "R"),
        (["--methods"], "methods"),
        (["--lam", "1", "-2", "3", "4"], "lam"),
    ],
)
def test_cli_bad_options_are_usage_errors(argv, match, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv + ["--no-progress"])
    assert exc.value.code == 2
    assert match in capsys.readouterr().err


def test_cli_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert all(flag in out for flag in ("--quick", "--out", "--methods", "--budget", "--coupling"))


def test_unknown_method_lists_the_valid_ones(capsys):
    with pytest.raises(SystemExit):
        main(["--methods", "qmc"])
    err = capsys.readouterr().err
    assert all(m in err for m in METHODS)
    with pytest.raises(ValueError, match="valid"):
        resolve_options(ConvergeOptions(methods=["qmc"]))


@pytest.mark.slow
def test_quick_defaults_on_the_three_dimensional_reference():
    # `anisotropy converge --quick` as documented (3-D coupled reference, all methods, ~15 s):
    # the same derived tolerances as the fast tests, on the default settings.
    st = run_convergence(ConvergeOptions(quick=True, progress=False))
    f = st.y_fits["mc"]
    s, b = f["std_slope"], f["bias_slope"]
    assert abs(s["slope"] - f["expected_std_slope_finite_y"]) < Z_TOL * s["slope_se"]
    assert abs(b["slope"] - f["expected_bias_slope_finite_y"]) < Z_TOL * b["slope_se"]
    assert abs(f["std_constant"]["ratio"] - 1) < 0.10
    assert (
        abs(f["bias_constant"]["measured"] - f["bias_constant"]["predicted"])
        < Z_TOL * f["bias_constant"]["se"]
    )
    for method in ("sobol", "control_variate"):
        assert math.log(st.y_fits[method]["rmse_ratio_vs_mc"]) < -Z_TOL * _log_rmse_ratio_se(
            st, method, st.options.std_fit_y_min
        )
    cv = st.y_fits["control_variate"]["std_constant"]
    assert abs(cv["measured"] - cv["predicted"]) < Z_TOL * cv["se"]
    eps = np.abs(np.array(st.k_fit["k2_delta"]) / st.k_fit["c2_predicted"] - 1)
    assert abs(st.k_fit["slope"] + 2) < 2 * eps[-len(st.k_fit["fit_k"]) :].max()


def test_cli_out_that_is_a_file_is_refused_before_the_studies(tmp_path, capsys, monkeypatch):
    import analysis.convergence.study as study_mod

    def no_work(*a, **k):  # the studies (minutes) must not start
        raise AssertionError("run_convergence ran before --out was checked")

    monkeypatch.setattr(study_mod, "run_convergence", no_work)
    (tmp_path / "f").write_text("mine")
    for out in (tmp_path / "f", tmp_path / "f" / "sub"):
        assert main(["--quick", "--no-progress", "--out", str(out)]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith(f"anisotropy converge: error: --out '{out}'")
    assert (tmp_path / "f").read_text() == "mine"
