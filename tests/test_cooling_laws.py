"""Decay laws of the cooling analysis: analytic Jacobians, limits, continuity, names."""

import numpy as np
import pytest

from analysis.cooling.laws import LAW_NAMES, evaluate, get_law, initial_guess, log_f

T = np.linspace(5.0, 900.0, 61)
PARAMS = {
    "exponential": {"tau": 120.0},
    "stretched_exponential": {"tau": 40.0, "beta": 0.45},
    "power_law": {"p": 1.3},
    "stretched_then_exponential": {"tau": 40.0, "beta": 0.45, "t_c": 300.0},
}


@pytest.mark.parametrize("name", LAW_NAMES)
def test_jacobian_matches_central_differences(name):
    law = get_law(name)
    z = law.to_internal(PARAMS[name])
    _, J = law.log_f(T, z)
    h = 1e-6
    for j in range(z.size):
        dz = np.zeros_like(z)
        dz[j] = h
        fd = (law.log_f(T, z + dz)[0] - law.log_f(T, z - dz)[0]) / (2 * h)
        # central differences are exact to O(h^2) ~ 1e-12 relative; float64 round-off of g
        # (|g| <= ~10) over 2h gives ~1e-9 absolute
        np.testing.assert_allclose(J[:, j], fd, rtol=1e-6, atol=1e-7)


def test_stretched_at_beta_one_is_exponential():
    np.testing.assert_allclose(
        log_f("stretched_exponential", T, {"tau": 70.0, "beta": 1.0}),
        log_f("exponential", T, {"tau": 70.0}),
        rtol=1e-14,
    )


def test_stretched_then_exponential_limits_and_continuity():
    p = PARAMS["stretched_then_exponential"]
    # t_c beyond the data: identical to the stretched exponential
    far = dict(p, t_c=T.max())
    np.testing.assert_allclose(
        log_f("stretched_then_exponential", T, far),
        log_f("stretched_exponential", T, {"tau": p["tau"], "beta": p["beta"]}),
        rtol=1e-14,
    )
    # C^1 at t_c: value and slope from both sides agree
    tc, eps = p["t_c"], 1e-4
    g = lambda t: log_f("stretched_then_exponential", np.array([t]), p)[0]
    left = (g(tc - eps) - g(tc - 2 * eps)) / eps
    right = (g(tc + 2 * eps) - g(tc + eps)) / eps
    jump = g(tc + eps) - g(tc - eps) - eps * (left + right)  # O(eps^2) without a jump
    assert abs(jump) < 1e-7
    assert abs(left - right) < 1e-5  # O(eps) without a kink
    # late slope is -1/tau_late with tau_late = t_c / (beta (t_c/tau)^beta)
    qc = (tc / p["tau"]) ** p["beta"]
    tau_late = tc / (p["beta"] * qc)
    assert (g(800.0) - g(700.0)) / 100.0 == pytest.approx(-1 / tau_late, rel=1e-10)


def test_evaluate_adds_log_amplitude():
    np.testing.assert_allclose(evaluate("power_law", T, {"p": 2.0}, 0.7), 0.7 - 2.0 * np.log(T))


def test_unknown_law_lists_valid_names():
    with pytest.raises(ValueError) as exc:
        get_law("gompertz")
    for name in LAW_NAMES:
        assert name in str(exc.value)


def test_bad_parameters_and_times():
    with pytest.raises(ValueError, match="beta"):
        log_f("stretched_exponential", T, {"tau": 3.0})
    with pytest.raises(ValueError, match="tau"):
        log_f("exponential", T, {"tau": -1.0})
    with pytest.raises(ValueError, match="t must be > 0"):
        log_f("power_law", np.array([0.0, 1.0]), {"p": 1.0})


@pytest.mark.parametrize("name", ["exponential", "stretched_exponential", "power_law"])
def test_initial_guess_inverts_noiseless_law(name):
    """On noiseless data the closed-form start already recovers the law (grid beta exact)."""
    y = log_f(name, T, PARAMS[name]) + 3.0
    z0 = initial_guess(name, T, y)[0]
    law = get_law(name)
    if name == "stretched_exponential":
        # beta on the grid nearest 0.45 is 0.5; the start must be that grid point
        assert z0[1] == pytest.approx(0.5)
    else:
        np.testing.assert_allclose(z0, law.to_internal(PARAMS[name]), rtol=1e-8)
