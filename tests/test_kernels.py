"""Tests of :mod:`anisotropy.kernels` against the mathematics of PAPER-NOTES section 1-2.

Facts used here (d = distance, K = kernel, s = sigmoid) are proved in
:mod:`analysis.facts`: eq 5 = softplus form, the k -> inf indicator with 1/2 on
the boundary, Z_1 = 2R/(1 - e^{-4kR}), K/Z_1 = law of U + L with CDF
[softplus(2k(z+R)) - softplus(2k(z-R))]/(4kR), variance R^2/3 + pi^2/(12k^2).
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch
from scipy import integrate, stats

from anisotropy import kernels as K

BACKENDS = ("numpy", "torch")
DTYPES = ("float32", "float64")
#: KS tests: reject at significance ALPHA (seeded, so each test is one fixed draw; a
#: correct sampler fails a given seed with probability ALPHA).
ALPHA = 1e-3
#: moment tests: |estimate - truth| <= N_SE standard errors (two-sided normal tail 6e-7).
N_SE = 5.0
#: float64 accuracy of d against the 50-digit evaluation of eq 5: a few ulps of d.
RTOL64 = 1e-13
#: quadrature checks of the normalisers (quad reaches ~1e-14; the brief asks 1e-8).
QUAD_RTOL = 1e-8


def arr(values, backend, dtype="float64"):
    a = np.asarray(values, dtype=dtype)
    return torch.from_numpy(a.copy()) if backend == "torch" else a


def to_np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def d_eq5(x: float, R: float, k: float) -> float:
    """Eq 5 of the paper, literally, in mpmath with enough digits to resolve ``1 - s(z)``."""
    z1 = 2 * k * (x - R)
    # 1 - s(z1) ~ e^{-z1} cancels z1/ln(10) digits; 40 more leave the result exact in float64
    with mpmath.workdps(40 + int(max(z1, 0.0) / math.log(10))):
        x, R, k = mpmath.mpf(x), mpmath.mpf(R), mpmath.mpf(k)
        s = lambda q: 1 / (1 + mpmath.exp(-q))
        return float(-mpmath.log((1 - s(2 * k * (x - R))) * s(2 * k * (x + R))))


def kernel_cdf(z, R, k):
    """Closed-form CDF of U + L (fact ``kernel_cdf`` of analysis.facts)."""
    z = np.asarray(z, dtype=np.float64)
    if math.isinf(k):
        return np.clip((z + R) / (2 * R), 0.0, 1.0)
    return (np.logaddexp(0, 2 * k * (z + R)) - np.logaddexp(0, 2 * k * (z - R))) / (4 * k * R)


def make_rng(backend, seed):
    if backend == "torch":
        return torch.Generator().manual_seed(seed)
    return np.random.default_rng(seed)


# --- range, signs, overflow ----------------------------------------------------------------
EXTREME_X = np.concatenate(
    [np.linspace(-1e3, 1e3, 201), [-1e-8, 0.0, 1e-8, 1e-3, 0.999, 1.0, 1.001]]
)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("R", [1e-8, 1e-3, 1.0, 1e3])
@pytest.mark.parametrize("k", [1e-3, 1.0, 1e3, 1e6])
def test_extremes_finite_nonnegative_no_negative_zero(backend, dtype, R, k):
    x = arr(np.concatenate([EXTREME_X, [R, -R]]), backend, dtype)
    d, lk, kk = (K.distance(x, R=R, k=k), K.log_kernel(x, R=R, k=k), K.kernel(x, R=R, k=k))
    for out in (d, lk, kk):
        assert type(out) is type(x) and out.dtype == x.dtype and out.shape == x.shape
    d, lk, kk = to_np(d), to_np(lk), to_np(kk)
    assert np.isfinite(d).all() and np.isfinite(lk).all() and not np.isnan(kk).any()
    assert (d >= 0).all() and not np.signbit(d).any()
    assert (lk <= 0).all() and not np.signbit(lk[lk == 0]).any()
    assert ((kk >= 0) & (kk <= 1)).all() and not np.signbit(kk).any()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "R,k", [(1.0, 1.0), (0.3, 5.0), (1e-3, 1.0), (2.0, 0.05), (1.0, 15.0), (1e-8, 1e6), (1.0, 1e6)]
)
def test_distance_equals_eq5(backend, R, k):
    # points with 2k|x -+ R| from 0 to ~1e3 (incl. 20..40, where softplus shortcuts bite)
    xs = R + np.array(
        [-3.0, -1.0, -0.3, 0.0, 0.3, 1.0, 3.0, 10.0, 17.0, 21.0, 25.0, 30.0, 400.0]
    ) / (2 * k)
    xs = np.concatenate([xs, -xs, [0.0]])
    got = to_np(K.distance(arr(xs, backend), R=R, k=k))
    want = np.array([d_eq5(v, R, k) for v in xs])
    np.testing.assert_allclose(got, want, rtol=RTOL64, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_k_inf_is_indicator_with_half_on_boundary(backend, dtype):
    R = 0.5  # exactly representable: x = +-R is on the boundary in both dtypes
    x = arr([-2.0, -0.5, -0.49, 0.0, 0.49, 0.5, 0.51, 1e3], backend, dtype)
    want = np.array([0.0, 0.5, 1.0, 1.0, 1.0, 0.5, 0.0, 0.0])
    np.testing.assert_array_equal(to_np(K.kernel(x, R=R, k=math.inf)), want)
    d = to_np(K.distance(x, R=R, k=math.inf))
    np.testing.assert_array_equal(
        d,
        np.where(
            want == 1,
            0.0,
            np.where(
                want == 0.5, np.float32(math.log(2)) if dtype == "float32" else math.log(2), np.inf
            ),
        ),
    )
    assert not np.signbit(d).any()
    # large finite k converges to it: |K - limit| <= 2 exp(-2k dist) = 2e-8686 here
    kk = to_np(K.kernel(x, R=R, k=1e6))
    np.testing.assert_allclose(kk, want, rtol=0, atol=np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("R,k", [(1.0, 1.0), (1e-3, 10.0), (0.3, 1e3), (1.0, math.inf)])
def test_numpy_and_torch_agree(dtype, R, k, rng):
    x = rng.normal(scale=2 * R + 1 / k, size=300).astype(dtype)
    if math.isinf(k):
        x = np.concatenate([x, [R, -R]]).astype(dtype)
    rtol = 1e-14 if dtype == "float64" else 1e-5  # a few ulps, backends' libm differ
    for f in (K.distance, K.log_kernel, K.kernel):
        np.testing.assert_allclose(
            to_np(f(torch.from_numpy(x), R=R, k=k)),
            f(x, R=R, k=k),
            rtol=rtol,
            atol=np.finfo(dtype).tiny,
        )
    np.testing.assert_allclose(
        to_np(K.heat_log_kernel(torch.from_numpy(x), gamma=3.0)),
        K.heat_log_kernel(x, gamma=3.0),
        rtol=rtol,
    )


# --- masked (partial) distance -------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("R,k", [(1.0, 1.0), (0.2, 30.0), (1.0, math.inf)])
def test_masked_distance_sums_over_mask_only(backend, R, k, rng):
    dw = rng.uniform(-0.9 * R, 0.9 * R, size=(4, 3, 10))
    mask = np.zeros(10, bool)
    mask[[0, 3, 4, 8]] = True
    m = torch.from_numpy(mask) if backend == "torch" else mask
    got = to_np(K.masked_distance(arr(dw, backend), m, R=R, k=k))
    assert got.shape == (4, 3)
    np.testing.assert_allclose(got, K.distance(dw[..., mask], R=R, k=k).sum(-1), rtol=1e-14)
    # masked-out coordinates add nothing, even far outside the box at k = inf
    dw2 = dw.copy()
    dw2[..., ~mask] = rng.uniform(-50, 50, size=dw2[..., ~mask].shape)
    np.testing.assert_array_equal(to_np(K.masked_distance(arr(dw2, backend), m, R=R, k=k)), got)
    # literal eq 13 (distance of dW*U) adds d(0) per masked-out coordinate
    lit = K.distance(dw * mask, R=R, k=k).sum(-1) - (~mask).sum() * K.distance(0.0, R=R, k=k)
    np.testing.assert_allclose(got, lit, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(to_np(K.masked_log_kernel(arr(dw, backend), m, R=R, k=k)), -got)
    # all-True mask = no mask = full sum; all-False = 0
    ones = torch.ones(10, dtype=torch.bool) if backend == "torch" else np.ones(10, bool)
    full = K.distance(dw, R=R, k=k).sum(-1)
    np.testing.assert_allclose(
        to_np(K.masked_distance(arr(dw, backend), ones, R=R, k=k)), full, rtol=1e-14
    )
    np.testing.assert_allclose(
        to_np(K.masked_distance(arr(dw, backend), None, R=R, k=k)), full, rtol=1e-14
    )
    zero = to_np(K.masked_distance(arr(dw, backend), ~ones, R=R, k=k))
    assert (zero == 0).all() and not np.signbit(zero).any()


def test_masked_distance_accepts_list_mask():
    dw = np.array([[0.3, 5.0, -0.2]])
    np.testing.assert_allclose(
        K.masked_distance(dw, [True, False, True], R=1.0, k=2.0),
        K.distance(dw[:, [0, 2]], R=1.0, k=2.0).sum(-1),
    )


# --- normalisers ---------------------------------------------------------------------------
def quad_kernel(f, R, k):
    edge = R + 60.0 / (2 * k)  # K < e^-60 beyond
    w = min(R, 20.0 / (2 * k))  # the edges' transition: quad must see it, not jump over it
    points = sorted({-R - w, -R, -R + w, 0.0, R - w, R, R + w})
    return integrate.quad(f, -edge, edge, points=points, limit=500, epsabs=0, epsrel=1e-12)[0]


@pytest.mark.parametrize(
    "R,k",
    [(1.0, 1.0), (1e-6, 1.0), (1e-3, 0.5), (2.0, 0.05), (1.0, 1e4), (0.05, 40.0), (1e3, 1e-2)],
)
def test_log_normaliser_matches_quadrature(R, k):
    q = quad_kernel(lambda v: float(K.kernel(v, R=R, k=k)), R, k)
    assert math.exp(K.log_normaliser(R, k)) == pytest.approx(q, rel=QUAD_RTOL)
    assert K.log_normaliser(R, k, 7) == pytest.approx(7 * math.log(q), rel=QUAD_RTOL, abs=1e-12)
    assert K.log_normaliser(R, k, 0) == 0.0


def test_log_normaliser_limits():
    assert K.log_normaliser(0.7, math.inf, 3) == pytest.approx(3 * math.log(1.4), rel=1e-15)
    # 4kR -> 0: Z_1 = 1/(2k) + R + O(kR^2), accurate even at 4kR = 4e-200
    assert K.log_normaliser(1e-200, 2.0) == pytest.approx(math.log(0.25), rel=1e-14)
    # 4kR -> inf: Z_1 -> 2R
    assert K.log_normaliser(3.0, 1e6) == pytest.approx(math.log(6.0), rel=1e-15)


@pytest.mark.parametrize("gamma", [1e-4, 1.0, 30.0, 1e4])
def test_heat_log_normaliser_matches_quadrature(gamma):
    edge = 40.0 / math.sqrt(gamma)
    q = integrate.quad(
        lambda v: math.exp(float(K.heat_log_kernel(v, gamma=gamma))),
        -edge,
        edge,
        points=[0.0],
        limit=200,
        epsabs=0,
        epsrel=1e-12,
    )[0]
    assert math.exp(K.heat_log_normaliser(gamma)) == pytest.approx(q, rel=QUAD_RTOL)
    assert K.heat_log_normaliser(gamma, 5) == pytest.approx(
        5 * math.log(q), rel=QUAD_RTOL, abs=1e-12
    )
    np.testing.assert_allclose(K.heat_distance(np.array([2.0]), gamma=gamma), [2.0 * gamma])


# --- sampler -------------------------------------------------------------------------------
SAMPLER_PARAMS = [(1.0, 1.0), (0.1, 50.0), (1e-3, 1.0), (1.0, math.inf)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("R,k", SAMPLER_PARAMS)
def test_sample_kernel_ks(backend, R, k):
    n = 20_000
    draws = K.sample_kernel(
        (n,),
        R=R,
        k=k,
        rng=make_rng(backend, 11),
        dtype=(torch.float64 if backend == "torch" else np.float64),
    )
    assert type(draws) is (torch.Tensor if backend == "torch" else np.ndarray)
    assert tuple(draws.shape) == (n,)
    p = stats.kstest(to_np(draws), lambda z: kernel_cdf(z, R, k)).pvalue
    assert p > ALPHA


@pytest.mark.parametrize("backend", BACKENDS)
def test_sample_kernel_ks_has_power(backend):
    # the same KS machinery rejects a wrong law (the box alone, and k halved) decisively
    draws = to_np(K.sample_kernel((20_000,), R=1.0, k=1.0, rng=make_rng(backend, 11)))
    assert stats.kstest(draws, lambda z: kernel_cdf(z, 1.0, math.inf)).pvalue < 1e-6
    assert stats.kstest(draws, lambda z: kernel_cdf(z, 1.0, 0.5)).pvalue < 1e-6


def test_sample_kernel_float32_torch_ks():
    draws = K.sample_kernel((20_000,), R=0.5, k=3.0, rng=make_rng("torch", 5), dtype=torch.float32)
    assert draws.dtype == torch.float32 and torch.isfinite(draws).all()
    assert stats.kstest(draws.double().numpy(), lambda z: kernel_cdf(z, 0.5, 3.0)).pvalue > ALPHA


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("R,k", [(1.0, 2.0), (0.5, math.inf), (1e-2, 1.0)])
def test_sample_kernel_moments(backend, R, k):
    n = 200_000
    x = to_np(
        K.sample_kernel(
            (n,),
            R=R,
            k=k,
            rng=make_rng(backend, 3),
            dtype=(torch.float64 if backend == "torch" else np.float64),
        )
    )
    var_true = R**2 / 3 + (0.0 if math.isinf(k) else math.pi**2 / (12 * k**2))
    var_hat = x.var()
    m4_hat = ((x - x.mean()) ** 4).mean()
    assert abs(x.mean()) <= N_SE * math.sqrt(var_true / n)
    assert abs(var_hat - var_true) <= N_SE * math.sqrt((m4_hat - var_hat**2) / n)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sample_kernel_deterministic_given_seed(backend):
    a = to_np(K.sample_kernel((3, 50), R=0.4, k=7.0, rng=make_rng(backend, 123)))
    b = to_np(K.sample_kernel((3, 50), R=0.4, k=7.0, rng=make_rng(backend, 123)))
    c = to_np(K.sample_kernel((3, 50), R=0.4, k=7.0, rng=make_rng(backend, 124)))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    h1 = to_np(K.sample_heat((40,), gamma=2.0, rng=make_rng(backend, 9)))
    np.testing.assert_array_equal(
        h1, to_np(K.sample_heat((40,), gamma=2.0, rng=make_rng(backend, 9)))
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_sample_heat_ks(backend):
    gamma = 4.0
    draws = to_np(K.sample_heat((20_000,), gamma=gamma, rng=make_rng(backend, 21)))
    assert stats.kstest(draws, stats.norm(scale=1 / math.sqrt(gamma)).cdf).pvalue > ALPHA
    assert stats.kstest(draws, stats.norm(scale=1 / math.sqrt(2 * gamma)).cdf).pvalue < 1e-6


# --- bad input -----------------------------------------------------------------------------
NAN = float("nan")
BAD_RK = [
    (0.0, 1.0, "R"),
    (-1.0, 1.0, "R"),
    (NAN, 1.0, "R"),
    (math.inf, 1.0, "R"),
    (1.0, 0.0, "k"),
    (1.0, -2.0, "k"),
    (1.0, NAN, "k"),
]


@pytest.mark.parametrize("R,k,name", BAD_RK)
def test_bad_R_k_raise_naming_argument(R, k, name):
    calls = [
        lambda: K.distance(np.zeros(3), R=R, k=k),
        lambda: K.kernel(torch.zeros(3), R=R, k=k),
        lambda: K.masked_distance(np.zeros((2, 3)), np.ones(3, bool), R=R, k=k),
        lambda: K.log_normaliser(R, k),
        lambda: K.sample_kernel((3,), R=R, k=k, rng=np.random.default_rng(0)),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=rf"^{name} "):
            call()


@pytest.mark.parametrize("bad", [0.0, -1.0, NAN, math.inf])
def test_bad_gamma_raises(bad):
    for call in (
        lambda: K.heat_distance(np.zeros(2), gamma=bad),
        lambda: K.heat_log_normaliser(bad),
        lambda: K.sample_heat((2,), gamma=bad, rng=np.random.default_rng(0)),
    ):
        with pytest.raises(ValueError, match="^gamma "):
            call()


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_in_data_raises(backend):
    x = arr([0.0, NAN, 1.0], backend)
    for call in (
        lambda: K.distance(x, R=1.0, k=2.0),
        lambda: K.kernel(x, R=1.0),
        lambda: K.heat_log_kernel(x, gamma=1.0),
    ):
        with pytest.raises(ValueError, match="^x "):
            call()
    with pytest.raises(ValueError, match="^dw "):
        K.masked_distance(arr([[0.0, math.inf, 1.0]], backend), None, R=1.0, k=2.0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "mask",
    [
        np.array([1, 0, 1]),
        np.array([1.0, 0.0, 1.0]),
        np.ones(4, bool),
        np.ones((1, 3), bool),
        [1, 0, 1],
    ],
)
def test_bad_mask_raises(backend, mask):
    if backend == "torch" and isinstance(mask, np.ndarray):
        mask = torch.from_numpy(mask)
    with pytest.raises(ValueError, match="^mask "):
        K.masked_distance(arr(np.zeros((2, 3)), backend), mask, R=1.0, k=2.0)


@pytest.mark.parametrize("n", [-1, 1.5, True])
def test_bad_n_raises(n):
    for call in (lambda: K.log_normaliser(1.0, 1.0, n), lambda: K.heat_log_normaliser(1.0, n)):
        with pytest.raises(ValueError, match="^n "):
            call()


@pytest.mark.parametrize("rng", [42, None, np.random.RandomState(0), "seed"])
def test_bad_rng_raises(rng):
    with pytest.raises(ValueError, match="^rng "):
        K.sample_kernel((3,), R=1.0, k=2.0, rng=rng)
    with pytest.raises(ValueError, match="^rng "):
        K.sample_heat((3,), gamma=1.0, rng=rng)
