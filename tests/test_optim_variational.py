"""Two-step variational schemes (moment matching, heat regularisation): closed-form
contraction on a quadratic within the Monte Carlo standard error, exact monotonicity by
quadrature on a non-convex 1-D loss, the sampled step against the quadrature step, zero
strength, partial groups, ESS warning, batched evaluation, resume, errors."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from anisotropy.optim.variational import (
    ESS_WARN_FRACTION,
    EffectiveSampleSizeWarning,
    HeatRegularisation,
    MomentMatching,
    importance_weights,
    local_entropy_estimate,
)

torch.set_num_threads(1)
Z = 4.0  # tolerance in standard errors (two-sided normal tail 6e-5 per coordinate)


class Params(nn.Module):
    """Free float64 parameters ``a`` and ``b`` (no forward: closures use them directly)."""

    def __init__(self, a, b=None):
        super().__init__()
        self.a = nn.Parameter(torch.as_tensor(a, dtype=torch.float64).clone())
        self.b = nn.Parameter(torch.as_tensor([0.0] if b is None else b, dtype=torch.float64))


def quad_closure(m, lam, c, count=None):
    def closure():
        if count is not None:
            count.append(1)
        return 0.5 * lam * ((m.a - c) ** 2).sum() + 0.5 * (m.b**2).sum()

    return closure


X0 = [0.6, -0.8, 0.4]
C = torch.tensor([0.3, 0.1, -0.4], dtype=torch.float64)


def _snis_se(x, c, lam, tau, n):
    """Delta-method standard error of the SNIS mean, closed form for the Gaussian weights
    w = exp(-lam/2 |y-c|^2), y ~ N(x, tau I): Var_j = r E_{q2}[(y_j - mu_j)^2] / n with
    r = E[w^2]/E[w]^2 and q2 ~ q w^2 Gaussian.  Also returns the limit of ESS / n = 1/r."""
    d = x - c
    a = lam
    log_r = (-0.5 * np.log1p(2 * a * tau) - a * d**2 / (1 + 2 * a * tau)).sum() - 2 * (
        -0.5 * np.log1p(a * tau) - a * d**2 / (2 * (1 + a * tau))
    ).sum()
    r = math.exp(log_r)
    mu = (x / tau + a * c) / (1 / tau + a)
    m2 = (x / tau + 2 * a * c) / (1 / tau + 2 * a)
    s2 = 1 / (1 / tau + 2 * a)
    return np.sqrt(r * (s2 + (m2 - mu) ** 2) / n), 1 / r


@pytest.mark.parametrize("gamma", [4.0, 40.0])
def test_moment_matching_contracts_by_gamma_over_gamma_plus_lambda(gamma):
    lam, n = 2.0, 4000
    m = Params(X0)
    x0 = m.a.detach().clone()
    opt = MomentMatching(
        [m.a], model=m, gamma=gamma, samples=n, generator=torch.Generator().manual_seed(1)
    )
    opt.step(quad_closure(m, lam, C))
    want = C + (x0 - C) * gamma / (gamma + lam)  # x_{k+1} - c = (x_k - c) / (1 + lam tau)
    se, ess_frac = _snis_se(x0.numpy(), C.numpy(), lam, 1 / gamma, n)
    z = (m.a.detach() - want).numpy() / se
    assert np.all(np.abs(z) < Z), z
    # ESS / n -> E[w]^2 / E[w^2]: gamma=4 -> 0.502, gamma=40 -> 0.872; the ratio estimate
    # has a relative sd of a few percent at n = 4000 here, checked to 10%
    assert opt.last_info.ess_fraction == pytest.approx(ess_frac, rel=0.1)
    assert torch.equal(m.b.detach(), torch.zeros(1, dtype=torch.float64))  # not held


def test_heat_proximal_step_contracts_within_monte_carlo_error():
    """One inner step of size 1/(lam + gamma) from x_k is the exact prox of the sampled
    quadratic: x1 - c = gamma/(gamma+lam) (x_k - c) - lam/(lam+gamma) mean(delta), whose
    noise has sd lam/(lam+gamma) sqrt(tau/n).  With K steps of size 0.5/(lam+gamma) the
    deterministic error shrinks by 0.5^K and the noise is at most its stationary sd
    lr lam sqrt(tau/n) / sqrt(1 - 0.25)."""
    lam, gamma, n = 2.0, 4.0, 500
    tau = 1 / gamma
    want = C + (torch.tensor(X0, dtype=torch.float64) - C) * gamma / (gamma + lam)
    for inner, lr, sd in [
        (1, 1 / (lam + gamma), lam / (lam + gamma) * math.sqrt(tau / n)),
        (40, 0.5 / (lam + gamma), 0.5 / (lam + gamma) * lam * math.sqrt(tau / n / 0.75)),
    ]:
        m = Params(X0)
        opt = HeatRegularisation(
            [m.a],
            model=m,
            gamma=gamma,
            lr=lr,
            samples=n,
            inner_steps=inner,
            generator=torch.Generator().manual_seed(2),
        )
        opt.step(quad_closure(m, lam, C))
        z = (m.a.detach() - want).numpy() / sd
        assert np.all(np.abs(z) < Z), (inner, z)


def _f(y):
    """Non-convex 1-D loss: two wells and ripples, growing quadratically."""
    return 0.25 * y**2 + 1.5 * torch.sin(3 * y) + 0.5 * torch.cos(7 * y)


# Gauss-Hermite rule: E g(x + sqrt(tau) Z) = sum_i w_i g(x + sqrt(2 tau) t_i) / sqrt(pi); with
# 200 nodes it is exact to ~1e-14 for these entire functions at tau <= 0.5
_T, _W = (torch.from_numpy(a) for a in np.polynomial.hermite.hermgauss(200))
_W = _W / math.sqrt(math.pi)


def _nodes(x, tau):
    """Nodes y_i (shape (..., 200)) of N(x, tau) for a tensor of centres x."""
    return torch.as_tensor(x, dtype=torch.float64)[..., None] + math.sqrt(2 * tau) * _T


def _F(x, tau):
    return -torch.log((torch.exp(-_f(_nodes(x, tau))) * _W).sum(-1))


def _H(x, tau):
    return (_f(_nodes(x, tau)) * _W).sum(-1)


def _mm_exact(x, tau):
    y = _nodes(x, tau)
    w = torch.exp(-_f(y)) * _W
    return float((y * w).sum() / w.sum())


def _prox_exact(x, tau):
    """Global argmin of H(z) + (z - x)^2 / (2 tau) over a fine grid that contains x."""
    zs = torch.cat([torch.linspace(-6, 6, 6001, dtype=torch.float64), torch.tensor([x])])
    return float(zs[int(torch.argmin(_H(zs, tau) + (zs - x) ** 2 / (2 * tau)))])


@pytest.mark.parametrize("tau", [0.05, 0.5])
def test_exact_schemes_are_monotone_on_a_nonconvex_loss(tau):
    """F(x_{k+1}) <= F(x_k) (moment matching) and H(x_{k+1}) <= H(x_k) (proximal step),
    expectations by Gauss-Hermite quadrature (error far below the 1e-12 slack)."""
    x = 4.0
    fs = [float(_F(x, tau))]
    for _ in range(25):
        x = _mm_exact(x, tau)
        fs.append(float(_F(x, tau)))
    assert all(b <= a + 1e-12 for a, b in zip(fs, fs[1:], strict=False))
    assert fs[-1] < fs[0] - 0.5
    x = 4.0
    hs = [float(_H(x, tau))]
    for _ in range(6):
        x = _prox_exact(x, tau)
        hs.append(float(_H(x, tau)))
    assert all(b <= a + 1e-12 for a, b in zip(hs, hs[1:], strict=False))
    assert hs[-1] < hs[0] - 0.5


def test_sampled_steps_match_quadrature_on_the_nonconvex_loss():
    """The optimisers' Monte Carlo steps against the quadrature ones: moment matching
    within Z delta-method SE (computed by quadrature); the heat gradient (one inner step,
    lr = 1) against H'(x) = E f'(y) within Z SE = sd(f'(y)) / sqrt(n)."""
    tau, x0, n = 0.5, 1.2, 4000
    m = Params([x0])
    opt = MomentMatching(
        [m.a], model=m, gamma=1 / tau, samples=n, generator=torch.Generator().manual_seed(3)
    )
    opt.step(lambda: _f(m.a).sum())
    y = _nodes(x0, tau)
    w = torch.exp(-_f(y))
    ew, ew2 = float((w * _W).sum()), float((w * w * _W).sum())
    mu = _mm_exact(x0, tau)
    se = math.sqrt(float((w * w * (y - mu) ** 2 * _W).sum()) / ew**2 / n)
    assert abs(float(m.a.detach()) - mu) < Z * se
    assert opt.last_info.ess_fraction == pytest.approx(ew**2 / ew2, rel=0.1)
    yv = y.clone().requires_grad_(True)
    fp = torch.autograd.grad(_f(yv).sum(), yv)[0]
    h1 = float((fp * _W).sum())
    sd = math.sqrt(float((fp**2 * _W).sum()) - h1**2)
    m = Params([x0])
    opt = HeatRegularisation(
        [m.a], model=m, gamma=1 / tau, lr=1.0, samples=n, generator=torch.Generator().manual_seed(4)
    )
    opt.step(lambda: _f(m.a).sum())
    assert abs((x0 - float(m.a.detach())) - h1) < Z * sd / math.sqrt(n)


def test_zero_strength_is_the_identity_or_sgd():
    for kw in (dict(samples=0), dict(gamma=math.inf, samples=8)):
        m = Params(X0, [1.0])
        before = [p.detach().clone() for p in m.parameters()]
        calls = []
        opt = MomentMatching(
            m.parameters(),
            model=m,
            **{"gamma": 4.0, **kw},
            generator=torch.Generator().manual_seed(0),
        )
        loss = opt.step(quad_closure(m, 2.0, C, calls))
        assert all(torch.equal(p, b) for p, b in zip(m.parameters(), before, strict=True))
        assert len(calls) == 1 and float(loss) > 0
        opt = HeatRegularisation(
            m.parameters(),
            model=m,
            **{"gamma": math.inf, "samples": 8},
            lr=0.1,
            inner_steps=3,
            generator=torch.Generator(),
        )
        opt.step(quad_closure(m, 2.0, C))
        assert all(torch.equal(p, b) for p, b in zip(m.parameters(), before, strict=True))
    # heat, no samples, one inner step: SGD with the same learning rate, bit for bit
    m, ref = Params(X0, [1.0]), Params(X0, [1.0])
    heat = HeatRegularisation(m.parameters(), model=m, gamma=4.0, lr=0.1, samples=0)
    sgd = torch.optim.SGD(ref.parameters(), lr=0.1)

    def sgd_closure():
        sgd.zero_grad()
        loss = quad_closure(ref, 2.0, C)()
        loss.backward()
        return loss

    for _ in range(3):
        heat.step(quad_closure(m, 2.0, C))
        sgd.step(sgd_closure)
    assert all(torch.equal(p, q) for p, q in zip(m.parameters(), ref.parameters(), strict=True))


def test_groups_are_anisotropic_and_layers_partial():
    """Two groups with their own gamma on a separable quadratic: each contracts by its own
    gamma_g / (gamma_g + lam) (the Gaussian is N(x, diag(1/gamma_g))); an unselected
    tensor does not move."""
    lam, n = 2.0, 4000
    m = Params(X0, [0.5, -0.5, 1.0])
    x0, b0 = m.a.detach().clone(), m.b.detach().clone()
    opt = MomentMatching(
        [{"params": [m.a], "gamma": 8.0}, {"params": [m.b], "gamma": 20.0}],
        model=m,
        gamma=1.0,
        samples=n,
        generator=torch.Generator().manual_seed(5),
    )

    def closure():
        return 0.5 * lam * (((m.a - C) ** 2).sum() + (m.b**2).sum())

    opt.step(closure)
    # the weights are products over both tensors: r and hence the SE involve both
    d = np.concatenate([(x0 - C).numpy(), b0.numpy()])
    tau = np.array([1 / 8.0] * 3 + [1 / 20.0] * 3)
    r = np.exp(
        (-0.5 * np.log1p(2 * lam * tau) - lam * d**2 / (1 + 2 * lam * tau)).sum()
        - 2 * (-0.5 * np.log1p(lam * tau) - lam * d**2 / (2 * (1 + lam * tau))).sum()
    )
    mu = d / (1 + lam * tau)
    m2 = d / (1 + 2 * lam * tau)
    se = np.sqrt(r * (tau / (1 + 2 * lam * tau) + (m2 - mu) ** 2) / n)
    got = np.concatenate([(m.a.detach() - C).numpy(), m.b.detach().numpy()])
    assert np.all(np.abs(got - mu) < Z * se)
    m = Params(X0, [1.0])
    b0 = m.b.detach().clone()
    opt = MomentMatching(
        m.parameters(),
        model=m,
        gamma=4.0,
        samples=64,
        layers="a",
        generator=torch.Generator().manual_seed(0),
    )
    opt.step(quad_closure(m, lam, C))
    assert torch.equal(m.b.detach(), b0) and not torch.equal(m.a.detach(), x0)


def test_ess_collapse_warns_and_is_reported():
    w, ess = importance_weights(torch.tensor([0.0, 0.0, math.inf, 0.0]))
    assert ess == pytest.approx(3.0) and float(w[2]) == 0.0
    m = Params(X0)
    opt = MomentMatching(
        [m.a], model=m, gamma=0.01, samples=200, generator=torch.Generator().manual_seed(0)
    )
    with pytest.warns(EffectiveSampleSizeWarning, match="effective sample size"):
        opt.step(quad_closure(m, 50.0, C))
    assert opt.last_info.ess_fraction < ESS_WARN_FRACTION


def test_samples_are_evaluated_in_batches_on_a_network():
    """vmap: one closure call at x_k plus one per chunk, never one per sample."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    x, t = torch.randn(32, 4), torch.randint(0, 3, (32,))
    calls = []

    def closure():
        calls.append(1)
        return nn.functional.cross_entropy(net(x), t)

    w0 = net[0].weight.detach().clone()
    opt = MomentMatching(
        net.parameters(),
        model=net,
        gamma=400.0,
        samples=100,
        layers="2",
        chunk_size=40,
        generator=torch.Generator().manual_seed(0),
    )
    opt.step(closure)
    assert len(calls) == 1 + 3  # centre + ceil(100 / 40) chunks
    assert torch.equal(net[0].weight.detach(), w0)
    calls.clear()
    heat = HeatRegularisation(
        net.parameters(),
        model=net,
        gamma=400.0,
        lr=1e-3,
        samples=50,
        inner_steps=2,
        generator=torch.Generator().manual_seed(0),
    )
    heat.step(closure)
    assert len(calls) == 1 + 2
    assert all(p.grad is None for p in net.parameters())


@pytest.mark.parametrize("cls", [MomentMatching, HeatRegularisation])
def test_state_dict_round_trip_and_bitwise_resume(cls):
    def make(m, gen):
        kw = dict(lr=0.05, inner_steps=2) if cls is HeatRegularisation else dict(lr=0.7)
        return cls(m.parameters(), model=m, gamma=5.0, samples=32, generator=gen, **kw)

    m = Params(X0, [1.0])
    gen = torch.Generator().manual_seed(9)
    opt = make(m, gen)
    for _ in range(4):
        opt.step(quad_closure(m, 2.0, C))
    straight = [p.detach().clone() for p in m.parameters()]
    m = Params(X0, [1.0])
    gen = torch.Generator().manual_seed(9)
    opt = make(m, gen)
    for _ in range(2):
        opt.step(quad_closure(m, 2.0, C))
    saved = (opt.state_dict(), gen.get_state(), {k: v.clone() for k, v in m.state_dict().items()})
    m2 = Params([0.0, 0.0, 0.0], [0.0])
    m2.load_state_dict(saved[2])
    gen2 = torch.Generator()
    gen2.set_state(saved[1])
    opt2 = make(m2, gen2)
    opt2.load_state_dict(saved[0])
    assert opt2.state_dict() == saved[0]
    for _ in range(2):
        opt2.step(quad_closure(m2, 2.0, C))
    assert all(torch.equal(p, q) for p, q in zip(m2.parameters(), straight, strict=True))


def test_bad_input():
    m = Params(X0)
    g = torch.Generator()
    for cls, kw, word in [
        (MomentMatching, dict(gamma=0.0), "gamma"),
        (MomentMatching, dict(gamma=1.0, lr=1.5), "lr"),
        (MomentMatching, dict(gamma=1.0, samples=-1), "samples"),
        (MomentMatching, dict(gamma=1.0, beta=0.0), "beta"),
        (MomentMatching, dict(gamma=1.0, ess_warn=2.0), "ess_warn"),
        (MomentMatching, dict(gamma=1.0, chunk_size=0), "chunk_size"),
        (MomentMatching, dict(gamma=1.0, layers="nope"), "matches no"),
        (HeatRegularisation, dict(gamma=10.0, lr=0.3, inner_steps=2), "2/gamma"),
        (HeatRegularisation, dict(gamma=1.0, lr=0.1, inner_steps=0), "inner_steps"),
    ]:
        with pytest.raises(ValueError, match=word):
            cls(m.parameters(), model=m, generator=g, **kw)
    with pytest.raises(ValueError, match="generator"):
        MomentMatching(m.parameters(), model=m, gamma=1.0)
    with pytest.raises(ValueError, match="model"):
        MomentMatching(m.parameters(), model=None, gamma=1.0, generator=g)
    opt = MomentMatching(m.parameters(), model=m, gamma=1.0, generator=g)
    with pytest.raises(ValueError, match="closure"):
        opt.step()
    with pytest.raises(ValueError, match="one-element tensor"):
        opt.step(lambda: 1.0)
    with pytest.raises(ValueError, match="NaN"):
        importance_weights(torch.tensor([0.0, math.nan]))


@pytest.mark.slow
def test_local_entropy_decreases_on_a_network_within_sampling_error():
    """A 4-16-3 tanh MLP on 128 points, beta = 128 (e^{-beta f} with f the mean loss is
    e^{-summed loss}), gamma = 2000: F(x_k) estimated with independent draws (n = 4000,
    delta-method SE = sd(w) / (mean(w) sqrt(n)), ~0.03 nats) never rises by more than Z
    combined SE between iterates; measured: ~1-2 nats of decrease per step."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3)).double()
    x = torch.randn(128, 4, dtype=torch.float64)
    t = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    beta, gamma = 128.0, 2000.0

    def closure():
        return nn.functional.cross_entropy(net(x), t)

    opt = MomentMatching(
        net.parameters(),
        model=net,
        gamma=gamma,
        samples=512,
        beta=beta,
        ess_warn=0.05,
        generator=torch.Generator().manual_seed(1),
    )
    probe = MomentMatching(  # only its batched evaluation is used, never stepped
        net.parameters(),
        model=net,
        gamma=gamma,
        samples=4000,
        beta=beta,
        generator=torch.Generator().manual_seed(2),
    )

    def f_hat():
        active = probe._active()
        with torch.no_grad():
            losses = probe._losses(
                closure,
                [n for n, _, _ in active],
                [p.detach() for _, p, _ in active],
                probe._draw(active),
            )
        lw = -beta * losses
        w = torch.exp(lw - lw.max())
        return local_entropy_estimate(losses, beta=beta), float(w.std() / w.mean()) / math.sqrt(
            4000
        )

    est = [f_hat()]
    for _ in range(10):
        opt.step(closure)
        est.append(f_hat())
    for (a, sa), (b, sb) in zip(est, est[1:], strict=False):
        assert b < a + Z * math.hypot(sa, sb)
    assert est[-1][0] < est[0][0] - 5.0
