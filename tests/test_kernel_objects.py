"""Kernels as objects: a user's kernel defined here works everywhere; names and instances agree.

The triangular kernel ``K(x) = max(0, 1 - |x|/a)`` below is written as a user
would, outside the package, with only the three required methods.  Its
normaliser is ``a``, its normalised law that of ``a (U1 - U2)`` for independent
uniforms, its variance ``a^2/6``.

Statistical tests are seeded; a Monte Carlo mean must lie within ``Z_TOL``
standard errors of its exact value (two-sided Gaussian tail 6e-5 at 4).
"""

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from torch import nn

from analysis.free_entropy import METHODS, local_free_entropy
from analysis.free_entropy import references as ref
from anisotropy import (
    KERNEL_NAMES,
    BoxKernel,
    GaussianKernel,
    Kernel,
    PartialLocalEntropy,
    SmoothingConfig,
    as_kernel,
    local_energy,
)
from anisotropy.smoothing.sampling import sample_perturbations

torch.set_num_threads(1)

Z_TOL = 4.0
# scipy.integrate.quad is asked for this relative accuracy; far below every
# Monte Carlo tolerance used here.
QUAD_RTOL = 1e-10


class Triangle(Kernel):
    """``K(x) = max(0, 1 - |x|/a)``: only the three required methods."""

    def __init__(self, a: float) -> None:
        self.a = float(a)

    def log_kernel(self, x):
        lib = torch if torch.is_tensor(x) else np
        t = abs(x) / self.a
        inside = t < 1
        return lib.where(inside, lib.log1p(-lib.where(inside, t, 0.0)), -math.inf)

    def log_normaliser(self):
        return math.log(self.a)

    def sample(self, shape, *, generator, dtype=None, device=None):
        if isinstance(generator, np.random.Generator):
            u = generator.random((2, *shape))
            return (self.a * (u[0] - u[1])).astype(dtype or np.float64, copy=False)
        u = torch.rand((2, *shape), generator=generator, dtype=dtype, device=device)
        return self.a * (u[0] - u[1])


class SymmetricTriangle(Triangle):
    """The same kernel, declared symmetric (antithetic pairs allowed)."""

    symmetric = True


def triangle_density(x, a):
    return max(0.0, 1.0 - abs(x) / a) / a


# ------------------------------------------------------------------ conformance
KERNELS = [BoxKernel(0.7), BoxKernel(0.4, 3.0), GaussianKernel(5.0), Triangle(0.8)]


def _support(kern):
    """Integration window holding all but ~e^-40 of the kernel's mass, and breakpoints."""
    if isinstance(kern, Triangle):
        return -kern.a, kern.a, [0.0]
    if isinstance(kern, GaussianKernel):
        s = 12.0 / math.sqrt(kern.gamma)
        return -s, s, [0.0]
    span = kern.R + (0.0 if math.isinf(kern.k) else 40.0 / (2.0 * kern.k))
    return -span, span, [-kern.R, kern.R]


def _quad(f, kern):
    lo, hi, pts = _support(kern)
    return integrate.quad(f, lo, hi, points=pts, epsabs=0, epsrel=QUAD_RTOL, limit=200)[0]


@pytest.mark.parametrize("kern", KERNELS, ids=lambda k: repr(k))
def test_every_kernel_is_normalised_and_samples_its_law(kern):
    def K(x):
        return math.exp(float(kern.log_kernel(np.array([x]))[0]))

    assert math.exp(kern.log_normaliser()) == pytest.approx(_quad(K, kern), rel=1e-9)
    z = math.exp(kern.log_normaliser())
    m2 = _quad(lambda x: x * x * K(x) / z, kern)
    m4 = _quad(lambda x: x**4 * K(x) / z, kern)
    n = 40_000
    d = kern.sample((n,), generator=np.random.default_rng(3))
    assert isinstance(d, np.ndarray) and d.shape == (n,) and d.dtype == np.float64
    # mean 0 (symmetric kernels) within Z_TOL s.e.; variance within Z_TOL s.e. of a
    # sample variance, sqrt((m4 - m2^2)/n)
    assert abs(d.mean()) < Z_TOL * math.sqrt(m2 / n)
    assert abs(d.var() - m2) < Z_TOL * math.sqrt((m4 - m2 * m2) / n)
    if kern.provides("variance"):
        assert kern.variance() == pytest.approx(m2, rel=1e-8)
    # numpy in, numpy out; torch in, torch out; the same values
    x = np.linspace(-1.0, 1.0, 11)
    lk = kern.log_kernel(x)
    lt = kern.log_kernel(torch.from_numpy(x))
    assert isinstance(lk, np.ndarray) and torch.is_tensor(lt)
    np.testing.assert_allclose(lt.numpy(), lk, rtol=1e-12)
    t = kern.sample((5,), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.is_tensor(t) and t.shape == (5,) and t.dtype == torch.float64


def test_triangle_variance_is_a_squared_over_six():
    a = 0.8
    m2 = integrate.quad(
        lambda x: x * x * triangle_density(x, a), -a, a, points=[0.0], epsabs=0, epsrel=QUAD_RTOL
    )[0]
    assert m2 == pytest.approx(a * a / 6.0, rel=1e-9)


def test_kernel_needs_the_three_methods():
    class Incomplete(Kernel):
        def log_kernel(self, x):
            return 0.0 * x

    with pytest.raises(TypeError, match="log_normaliser"):
        Incomplete()


# ------------------------------------------------------ (a) free-entropy estimator
W = np.array([0.3, -0.2, 0.1])
LAM = np.array([2.0, 5.0, 1.0])
C = np.array([0.1, 0.4, 0.0])


def triangle_free_entropy(a, beta, mask):
    """Exact F = -log int exp(-beta L(W + x)) K(x) dx, per coordinate by quadrature."""
    F = 0.0
    for i in range(W.size):
        Li = lambda x, i=i: 0.5 * LAM[i] * (W[i] + x - C[i]) ** 2
        if not mask[i]:
            F += beta * Li(0.0)
            continue
        val = integrate.quad(
            lambda x, Li=Li: math.exp(-beta * Li(x)) * max(0.0, 1.0 - abs(x) / a),
            -a,
            a,
            points=[0.0, C[i] - W[i]] if abs(C[i] - W[i]) < a else [0.0],
            epsabs=0,
            epsrel=QUAD_RTOL,
        )[0]
        F -= math.log(val)
    return F


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("method", ["mc", "antithetic"])
def test_user_kernel_in_free_entropy_matches_quadrature(masked, method):
    a, beta = 0.8, 1.5
    mask = np.array([True, False, True]) if masked else np.ones(3, bool)
    kern = SymmetricTriangle(a) if method == "antithetic" else Triangle(a)
    r = local_free_entropy(
        ref.quadratic_loss(LAM, C),
        W,
        kernel=kern,
        mask=mask if masked else None,
        y=8192,
        method=method,
        beta=beta,
        seed=5,
    )
    exact = triangle_free_entropy(a, beta, mask)
    assert r.kernel == type(kern).__name__ and r.n_smoothed == mask.sum()
    assert r.log_normaliser == pytest.approx(mask.sum() * math.log(a), rel=1e-14)
    # within Z_TOL of the estimator's own standard error, plus relvar/y: twice the
    # delta-method bias relvar/(2y) of the log-mean-exp
    assert abs(r.estimate - exact) < Z_TOL * r.stderr + r.relative_variance / r.y, (
        r.estimate,
        exact,
        r.stderr,
    )


@pytest.mark.parametrize(
    "method, missing",
    [
        ("control_variate", "log_quadratic_average"),
        ("sobol", "from_uniforms"),
        ("antithetic", "symmetric"),
    ],
)
def test_missing_optional_method_is_named(method, missing):
    with pytest.raises(NotImplementedError, match=f"method='{method}'.*{missing}.*Triangle"):
        local_free_entropy(
            ref.quadratic_loss(LAM, C), W, kernel=Triangle(0.8), y=64, method=method, seed=0
        )


def test_optional_defaults_name_the_method_and_the_feature():
    with pytest.raises(NotImplementedError, match=r"Triangle\.scale .*radius schedules"):
        Triangle(1.0).scale  # noqa: B018
    with pytest.raises(NotImplementedError, match=r"Triangle\.log_quadratic_average .*control"):
        Triangle(1.0).log_quadratic_average([0.0], [0.0])
    with pytest.raises(NotImplementedError, match="with_scale"):
        PartialLocalEntropy(
            nn.Sequential(nn.Linear(2, 1)), layers="0", kernel=Triangle(1.0), R=lambda step: 0.1
        )


def test_instance_carries_its_own_parameters():
    with pytest.raises(ValueError, match="R must be left unset"):
        local_free_entropy(ref.quadratic_loss(LAM, C), W, kernel=BoxKernel(0.5), R=0.5, y=8, seed=0)
    with pytest.raises(ValueError, match="gamma must be left unset"):
        PartialLocalEntropy(
            nn.Sequential(nn.Linear(2, 1)), layers="0", kernel=Triangle(1.0), gamma=2.0
        )
    with pytest.raises(ValueError, match="R must be left unset"):
        PartialLocalEntropy(nn.Sequential(nn.Linear(2, 1)), layers="0", kernel=Triangle(1.0), R=0.1)


# ---------------------------------------------------------- (b) smoothed loss (PLA)
def test_user_kernel_in_smoothed_loss_shows_its_variance():
    r"""Linear layer, squared error at a fit (residuals 0): ``L(W + D) = D^T S D`` with
    ``S = mean_b x_b x_b^T``, so ``E L = Var * tr S`` with the kernel's variance a^2/6."""
    a, d, y, calls = 0.3, 6, 200, 20
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(d, 1, bias=False)).double()
    x = torch.randn(32, d, dtype=torch.float64)
    t = model(x).detach()
    ple = PartialLocalEntropy(
        model,
        lambda out, tt: ((out - tt) ** 2).mean(),
        layers="0",
        kernel=Triangle(a),
        y=y,
        include_centre=False,
        reduction="pla",
    )
    g = torch.Generator().manual_seed(11)
    per, losses = [], []
    for step in range(calls):
        out = ple(x, t, generator=g, step=step)
        per.append(out.per_sample)
        losses.append(out.loss.item())
    per = torch.cat(per)
    np.testing.assert_allclose(losses, [p.mean().item() for p in per.split(y)], rtol=1e-12)
    tr_s = float((x * x).sum(1).mean())
    expected = a * a / 6.0 * tr_s
    se = per.std().item() / math.sqrt(per.numel())
    assert abs(per.mean().item() - expected) < Z_TOL * se, (per.mean().item(), expected, se)
    # power: a uniform law on [-a, a] (variance a^2/3) would be far outside the band
    assert abs(per.mean().item() - a * a / 3.0 * tr_s) > 10 * Z_TOL * se


# ------------------------------------------------ names and instances give the same numbers
def test_unknown_name_lists_the_valid_ones():
    valid = ", ".join(map(repr, KERNEL_NAMES))
    with pytest.raises(ValueError, match=f"unknown kernel 'tent'; valid: {valid}"):
        as_kernel("tent")
    with pytest.raises(ValueError, match=valid):
        PartialLocalEntropy(nn.Sequential(nn.Linear(2, 1)), layers="0", kernel="tent")
    with pytest.raises(ValueError, match=valid):
        local_free_entropy(ref.quadratic_loss(LAM, C), W, kernel="tent", R=1.0, y=8, seed=0)
    with pytest.raises(ValueError, match=valid):
        SmoothingConfig(kernel="tent")
    with pytest.raises(TypeError, match="Kernel instance or one of the names"):
        as_kernel(3.0)


def test_names_map_to_classes_and_parameters_are_checked():
    assert as_kernel("box", R=0.5) == BoxKernel(0.5)
    assert as_kernel("box", R=0.5, k=3.0) == BoxKernel(0.5, 3.0)
    assert as_kernel("gaussian", gamma=2.0) == GaussianKernel(2.0)
    assert as_kernel("gaussian", scale=0.5) == GaussianKernel(4.0)
    with pytest.raises(ValueError, match="R is required for kernel='box'"):
        as_kernel("box")
    with pytest.raises(ValueError, match="gamma applies only to kernel='gaussian'"):
        as_kernel("box", R=1.0, gamma=1.0)
    with pytest.raises(ValueError, match="R and k apply only to kernel='box'"):
        as_kernel("gaussian", gamma=1.0, k=2.0)
    with pytest.raises(ValueError, match="unknown parameter 'a'"):
        as_kernel("box", R=1.0, a=2.0)
    assert SmoothingConfig(kernel="gaussian", R=0.5).make_kernel() == GaussianKernel(4.0)
    assert SmoothingConfig(R=0.5, k=3.0).make_kernel() == BoxKernel(0.5, 3.0)
    with pytest.raises(ValueError, match="smoothing: gamma applies only"):
        SmoothingConfig(kernel="box", gamma=3.0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "name_form, instance",
    [
        (dict(R=0.6), BoxKernel(0.6)),
        (dict(R=0.6, k=4.0), BoxKernel(0.6, 4.0)),
        (dict(kernel="gaussian", gamma=8.0), GaussianKernel(8.0)),
    ],
)
def test_free_entropy_instance_equals_name(method, name_form, instance):
    loss = ref.quadratic_loss(LAM, C)
    a = local_free_entropy(loss, W, y=64, method=method, seed=3, **name_form)
    b = local_free_entropy(loss, W, y=64, method=method, seed=3, kernel=instance)
    assert a == b


def _schedule(step):
    return 0.01 * (step + 1)


@pytest.mark.parametrize(
    "name_form, instance_form",
    [
        (dict(R=0.2), dict(kernel=BoxKernel(0.2))),
        (dict(R=0.2, k=4.0), dict(kernel=BoxKernel(0.2, 4.0))),
        (dict(kernel="gaussian", gamma=30.0), dict(kernel=GaussianKernel(30.0))),
        (dict(kernel="gaussian", R=0.2), dict(kernel=GaussianKernel.from_scale(0.2))),
        (dict(R=_schedule), dict(kernel=BoxKernel(1.0), R=_schedule)),
        (dict(kernel="gaussian", R=_schedule), dict(kernel=GaussianKernel(1.0), R=_schedule)),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_smoothed_loss_instance_equals_name(name_form, instance_form, dtype):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).to(dtype)
    x = torch.randn(8, 6, dtype=dtype)
    t = torch.randint(0, 3, (8,))
    outs = []
    for form in (name_form, instance_form):
        ple = PartialLocalEntropy(model, layers="2", y=5, reduction="plea", **form)
        outs.append(ple(x, t, generator=torch.Generator().manual_seed(5), step=3))
    assert torch.equal(outs[0].per_sample, outs[1].per_sample)
    assert torch.equal(outs[0].loss, outs[1].loss)


def test_draws_and_local_energy_instance_equals_name():
    p = [("w", torch.zeros(4, 3))]
    for name_form, inst in [
        (dict(R=0.1, k=5.0), BoxKernel(0.1, 5.0)),
        (dict(kernel="gaussian", gamma=4.0), GaussianKernel(4.0)),
    ]:
        a = sample_perturbations(p, 3, generator=torch.Generator().manual_seed(2), **name_form)
        b = sample_perturbations(p, 3, generator=torch.Generator().manual_seed(2), kernel=inst)
        assert torch.equal(a["w"], b["w"])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2)).eval()
    x, t = torch.randn(10, 4), torch.randint(0, 2, (10,))
    runs = [
        local_energy(model, x, t, sigma=0.1, n=8, generator=torch.Generator().manual_seed(1), **kw)
        for kw in (dict(), dict(kernel="gaussian"), dict(kernel=GaussianKernel(1.0)))
    ]
    assert runs[0] == runs[1] == runs[2]
