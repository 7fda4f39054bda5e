"""Exact references of analysis.free_entropy.references against brute-force numerical integration.

All comparisons are float64.  Brute force is scipy.integrate.quad / dblquad on
the *defining* integral  F = -log int exp(-beta L(W + x)) K(x) dx  with the kernel
taken from anisotropy.kernels (independent of the closed forms under test); the
tolerances (1e-9 relative on the integral unless stated) are a few hundred
times quad's requested accuracy (epsrel 1e-12).
"""

import math

import mpmath
import numpy as np
import pytest
from scipy import integrate

from analysis.free_entropy import references as ref
from anisotropy.kernels import kernel, log_normaliser

EPSREL = 1e-12
TOL = 1e-9


def kernel_eq6(x, R, k):
    """K_{R,k}(x) straight from eq 6 (math module; x within a few hundred /k of the box)."""
    return 1.0 / ((1.0 + math.exp(-2 * k * (R - x))) * (1.0 + math.exp(-2 * k * (R + x))))


def brute_1d(f, lo, hi, points=None):
    val, _ = integrate.quad(f, lo, hi, epsabs=0.0, epsrel=EPSREL, limit=500, points=points)
    return val


def quad_box_F(w, lam, c, R, beta, mask):
    """F by 1-D quad per smoothed coordinate (the loss is separable)."""
    F = 0.0
    for i in range(len(w)):
        L = lambda x, i=i: 0.5 * lam[i] * (w[i] + x - c[i]) ** 2
        if mask is not None and not mask[i]:
            F += beta * L(0.0)
        else:
            F -= math.log(brute_1d(lambda x, L=L: math.exp(-beta * L(x)), -R, R))
    return F


W = np.array([0.3, -0.2, 1.1])
LAM = np.array([2.0, 5.0, 0.7])
C = np.array([0.1, 0.4, -0.5])


@pytest.mark.parametrize("beta", [1.0, 3.5])
@pytest.mark.parametrize("mask", [None, np.array([True, False, True])])
def test_quadratic_box_matches_quad(beta, mask):
    got = ref.quadratic_box_free_entropy(W, lam=LAM, c=C, R=0.6, beta=beta, mask=mask)
    assert got == pytest.approx(quad_box_F(W, LAM, C, 0.6, beta, mask), rel=TOL, abs=TOL)


def test_quadratic_box_two_dims_dblquad():
    # The full 2-D defining integral (not separated) against the product formula.
    w, lam, c, R = W[:2], LAM[:2], C[:2], 0.45
    f = lambda x2, x1: math.exp(
        -0.5 * (lam[0] * (w[0] + x1 - c[0]) ** 2 + lam[1] * (w[1] + x2 - c[1]) ** 2)
    )
    val, _ = integrate.dblquad(f, -R, R, -R, R, epsabs=0, epsrel=1e-11)
    assert ref.quadratic_box_free_entropy(w, lam=lam, c=c, R=R) == pytest.approx(
        -math.log(val), rel=1e-8
    )


def test_quadratic_box_extreme_curvature_and_flat():
    # a R up to 1e4 (sharp wells inside and far outside the box) and lam = 0 (flat).
    lam = np.array([1e8, 1e8, 0.0, 1e-12])
    w = np.array([0.2, 1.3, 0.4, 5.0])
    c = np.zeros(4)
    R = 1.0
    got = ref.quadratic_box_free_entropy(w, lam=lam, c=c, R=R)
    mp = mpmath.mp
    mp.dps = 50
    expect = 0
    for li, wi in zip(lam, w, strict=True):
        if li == 0:
            expect -= mpmath.log(2 * R)
            continue
        a = mpmath.sqrt(mpmath.mpf(li) / 2)
        # erfc difference: no cancellation in the far tail at 50 digits
        integral = mpmath.sqrt(mpmath.pi / (2 * mpmath.mpf(li))) * (
            mpmath.erfc(a * (wi - R)) - mpmath.erfc(a * (wi + R))
        )
        expect -= mpmath.log(integral)
    assert got == pytest.approx(float(expect), rel=1e-12)


@pytest.mark.parametrize(
    "a,b",
    [
        (-1e-9, 1e-9),
        (30.0, 31.0),
        (30.0, 30.0 + 1e-7),
        (-40.0, -39.0),
        (-3.0, 3.0),
        (5.0, 1e3),
        (-0.3, 0.2),
        (1e-3, 2e-3),
    ],
)
def test_log_normal_interval_mpmath(a, b):
    mpmath.mp.dps = 60
    if a + b < 0:  # reflect to the right tail, where erfc differences do not cancel
        a, b = -b, -a
    s2 = mpmath.sqrt(2)
    expect = mpmath.log((mpmath.erfc(mpmath.mpf(a) / s2) - mpmath.erfc(mpmath.mpf(b) / s2)) / 2)
    assert float(ref.log_normal_interval(a, b)) == pytest.approx(
        float(expect), rel=1e-13, abs=1e-13
    )


@pytest.mark.parametrize("x", [0.0, 1e-8, 1e-4, 1e-3, 0.7, 30.0, 800.0, -5.0])
def test_log_sinhc_mpmath(x):
    mpmath.mp.dps = 50
    expect = 0.0 if x == 0 else float(mpmath.log(mpmath.sinh(x) / x))
    assert float(ref.log_sinhc(x)) == pytest.approx(expect, rel=1e-14, abs=1e-300)


@pytest.mark.parametrize("mask", [None, np.array([False, True, True])])
def test_gaussian_matches_quad(mask):
    gamma, beta = 4.0, 1.7
    got = ref.quadratic_gaussian_free_entropy(W, lam=LAM, c=C, gamma=gamma, beta=beta, mask=mask)
    F = 0.0
    for i in range(3):
        L = lambda x, i=i: 0.5 * LAM[i] * (W[i] + x - C[i]) ** 2
        if mask is not None and not mask[i]:
            F += beta * L(0.0)
        else:
            F -= math.log(
                brute_1d(
                    lambda x, L=L: math.exp(-beta * L(x) - 0.5 * gamma * x * x), -np.inf, np.inf
                )
            )
    assert got == pytest.approx(F, rel=TOL)


@pytest.mark.parametrize("k", [0.5, 3.0, 40.0])
def test_finite_k_matches_brute_force(k):
    # Brute force integrates exp(-beta L) * anisotropy.kernels.kernel over a wide window
    # (the logistic tail beyond R + 60/k carries < e^-100 of the kernel mass).
    R, beta = 0.5, 1.3
    mask = np.array([True, False, True])
    got = ref.quadratic_finite_k_free_entropy(W, lam=LAM, c=C, R=R, k=k, beta=beta, mask=mask)
    F = beta * 0.5 * LAM[1] * (W[1] - C[1]) ** 2
    span = R + 60.0 / k
    for i in (0, 2):
        f = lambda x, i=i: (
            math.exp(-beta * 0.5 * LAM[i] * (W[i] + x - C[i]) ** 2)
            * float(kernel(np.float64(x), R=R, k=k))
        )
        F -= math.log(brute_1d(f, -span, span, points=[-R, R, C[i] - W[i]]))
    assert got == pytest.approx(F, rel=1e-8)


def test_finite_k_two_dims_dblquad():
    R, k = 0.4, 6.0
    w, lam, c = W[:2], LAM[:2], C[:2]
    span = R + 30.0 / k  # the kernel mass beyond carries < e^-60

    def f(x2, x1):
        return (
            math.exp(-0.5 * (lam[0] * (w[0] + x1 - c[0]) ** 2 + lam[1] * (w[1] + x2 - c[1]) ** 2))
            * kernel_eq6(x1, R, k)
            * kernel_eq6(x2, R, k)
        )

    val, _ = integrate.dblquad(f, -span, span, -span, span, epsabs=0, epsrel=1e-10)
    got = ref.quadratic_finite_k_free_entropy(w, lam=lam, c=c, R=R, k=k)
    assert got == pytest.approx(-math.log(val), rel=1e-7)


def test_finite_k_tends_to_box():
    # K_{R,k} -> box as k -> inf; the difference is O(1/k) (edge layers of width 1/(2k)).
    box = ref.quadratic_box_free_entropy(W, lam=LAM, c=C, R=0.5)
    assert ref.quadratic_finite_k_free_entropy(W, lam=LAM, c=C, R=0.5, k=math.inf) == pytest.approx(
        box, rel=1e-10
    )
    errs = [
        abs(ref.quadratic_finite_k_free_entropy(W, lam=LAM, c=C, R=0.5, k=k) - box)
        for k in (1e2, 1e3, 1e4)
    ]
    assert errs[1] < errs[0] / 5 and errs[2] < errs[1] / 5


def test_linear_box_matches_quad():
    g = np.array([0.5, -3.0, 1e-7])
    mask = np.array([True, True, False])
    R, beta = 0.8, 2.0
    got = ref.linear_box_free_entropy(W, g=g, R=R, beta=beta, mask=mask)
    F = beta * g[2] * W[2]
    for i in (0, 1):
        F -= math.log(brute_1d(lambda x, i=i: math.exp(-beta * g[i] * (W[i] + x)), -R, R))
    assert got == pytest.approx(F, rel=TOL)


def test_full_box_2d_and_masked_3d_against_dblquad():
    A = np.array([[2.0, 0.8, 0.3], [0.8, 1.5, -0.4], [0.3, -0.4, 3.0]])
    c = np.array([0.2, -0.1, 0.5])
    w = np.array([0.1, 0.3, -0.2])
    R, beta = 0.7, 1.4
    loss = ref.full_quadratic_loss(A, c)
    # 2-D (A restricted, unmasked)
    A2, c2, w2 = A[:2, :2], c[:2], w[:2]
    loss2 = ref.full_quadratic_loss(A2, c2)
    val, _ = integrate.dblquad(
        lambda x2, x1: math.exp(-beta * loss2(w2 + np.array([x1, x2]))),
        -R,
        R,
        -R,
        R,
        epsabs=0,
        epsrel=1e-11,
    )
    assert ref.quadratic_full_box_free_entropy(w2, A=A2, c=c2, R=R, beta=beta) == pytest.approx(
        -math.log(val), rel=1e-8
    )
    # 3-D with coordinate 1 masked out (stays at w): a 2-D integral over (x0, x2)
    mask = np.array([True, False, True])
    val, _ = integrate.dblquad(
        lambda x2, x0: math.exp(-beta * loss(w + np.array([x0, 0.0, x2]))),
        -R,
        R,
        -R,
        R,
        epsabs=0,
        epsrel=1e-11,
    )
    assert ref.quadratic_full_box_free_entropy(
        w, A=A, c=c, R=R, beta=beta, mask=mask
    ) == pytest.approx(-math.log(val), rel=1e-8)


def test_full_box_diagonal_equals_separable_any_dim():
    # Diagonal A must reproduce the separable closed form: nested quadrature for n <= 3,
    # Genz's algorithm (absolute error ~1e-8 on P, here P ~ 0.3) for n = 4.
    lam = np.array([2.0, 5.0, 0.7, 1.2])
    c = np.array([0.1, 0.4, -0.5, 0.0])
    w = np.array([0.3, -0.2, 0.1, 0.2])
    for n, rel in [(1, 1e-12), (2, 1e-10), (3, 1e-9), (4, 1e-5)]:
        sep = ref.quadratic_box_free_entropy(w[:n], lam=lam[:n], c=c[:n], R=0.6)
        full = ref.quadratic_full_box_free_entropy(w[:n], A=np.diag(lam[:n]), c=c[:n], R=0.6)
        assert full == pytest.approx(sep, rel=rel), n


@pytest.mark.parametrize("which", ["box", "gaussian", "finite_k"])
def test_weight_moments_against_quad(which):
    beta, R, gamma, k = 1.5, 0.5, 6.0, 4.0
    w, lam, c = W[:1], LAM[:1], C[:1]
    L = lambda x: 0.5 * lam[0] * (w[0] + x - c[0]) ** 2
    if which == "box":
        mom = ref.quadratic_box_weight_moments(w, lam=lam, c=c, R=R, beta=beta)
        dens, lo, hi = (lambda x: 1.0 / (2 * R)), -R, R
    elif which == "gaussian":
        mom = ref.quadratic_gaussian_weight_moments(w, lam=lam, c=c, gamma=gamma, beta=beta)
        dens = lambda x: math.sqrt(gamma / (2 * math.pi)) * math.exp(-0.5 * gamma * x * x)
        lo, hi = -np.inf, np.inf
    else:
        mom = ref.quadratic_finite_k_weight_moments(w, lam=lam, c=c, R=R, k=k, beta=beta)
        z1 = math.exp(log_normaliser(R, k, 1))
        dens = lambda x: float(kernel(np.float64(x), R=R, k=k)) / z1
        lo, hi = -R - 60 / k, R + 60 / k
    m1 = brute_1d(lambda x: dens(x) * math.exp(-beta * L(x)), lo, hi)
    m2 = brute_1d(lambda x: dens(x) * math.exp(-2 * beta * L(x)), lo, hi)
    assert mom.log_mean == pytest.approx(math.log(m1), rel=1e-8)
    assert mom.log_second_moment == pytest.approx(math.log(m2), rel=1e-8)
    assert mom.relative_variance == pytest.approx(m2 / m1**2 - 1, rel=1e-6)


def test_paper_m_limit():
    # k = inf: M_inf = F + |U| log 2R exactly; finite k: the box-truncated integral by quad.
    R = 0.7
    F = ref.quadratic_box_free_entropy(W, lam=LAM, c=C, R=R)
    assert ref.quadratic_paper_m_limit(W, lam=LAM, c=C, R=R) == pytest.approx(
        F + 3 * math.log(2 * R), rel=1e-10
    )
    k = 2.0
    expect = 0.0
    for i in range(3):
        f = lambda x, i=i: (
            math.exp(-0.5 * LAM[i] * (W[i] + x - C[i]) ** 2)
            * float(kernel(np.float64(x), R=R, k=k))
            / (2 * R)
        )
        expect -= math.log(brute_1d(f, -R, R))
    assert ref.quadratic_paper_m_limit(W, lam=LAM, c=C, R=R, k=k) == pytest.approx(expect, rel=1e-9)


def test_losses_vectorised():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4, 5, 3))
    A = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.1], [0.0, 0.1, 3.0]])
    for loss in (ref.quadratic_loss(LAM, C), ref.linear_loss(LAM), ref.full_quadratic_loss(A, C)):
        out = loss(X)
        assert out.shape == (4, 5)
        assert np.allclose(out[2, 3], loss(X[2, 3]))
    assert np.allclose(ref.quadratic_loss(LAM, C)(X), ref.full_quadratic_loss(np.diag(LAM), C)(X))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: ref.quadratic_box_free_entropy(W, lam=LAM, c=C, R=0.0), "R must lie"),
        (lambda: ref.quadratic_box_free_entropy(W, lam=LAM, c=C, R=1.0, beta=-1), "beta must lie"),
        (lambda: ref.quadratic_box_free_entropy(W, lam=-LAM, c=C, R=1.0), "lam must be >= 0"),
        (lambda: ref.quadratic_box_free_entropy(W, lam=LAM[:2], c=C, R=1.0), "lam must have shape"),
        (
            lambda: ref.quadratic_box_free_entropy(W, lam=LAM, c=C, R=1.0, mask=np.ones(2, bool)),
            "mask",
        ),
        (lambda: ref.quadratic_box_free_entropy(W, lam=LAM, c=C, R=1.0, mask=np.ones(3)), "mask"),
        (lambda: ref.quadratic_finite_k_free_entropy(W, lam=LAM, c=C, R=1.0, k=0.0), "k must lie"),
        (lambda: ref.quadratic_gaussian_free_entropy(W, lam=LAM, c=C, gamma=0.0), "gamma must lie"),
        (
            lambda: ref.quadratic_box_free_entropy(np.array([np.nan, 0, 0]), lam=LAM, c=C, R=1.0),
            "NaN",
        ),
        (
            lambda: ref.quadratic_full_box_free_entropy(W, A=-np.eye(3), c=C, R=1.0),
            "positive definite",
        ),
        (
            lambda: ref.quadratic_full_box_free_entropy(W, A=np.triu(np.ones((3, 3))), c=C, R=1.0),
            "symmetric",
        ),
    ],
)
def test_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()
