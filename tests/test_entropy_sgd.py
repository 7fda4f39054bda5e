"""Entropy-SGD: exact inner dynamics on a quadratic, Moreau-envelope limit with a
geometric tolerance, noise law, determinism, partial selection, the authors' update rule
written out, bitwise resume, errors."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from anisotropy.optim.entropy_sgd import EntropySGD, gamma_scoping

torch.set_num_threads(1)


class Quadratic(nn.Module):
    """L(w, v) = 1/2 (w - c)^T A (w - c) + 1/2 ||v - d||^2 (+ kappa w.v), float64."""

    def __init__(self, A, c, w0, d, v0, kappa=0.0):
        super().__init__()
        self.A, self.c, self.d, self.kappa = A, c, d, kappa
        self.w = nn.Parameter(w0.clone())
        self.v = nn.Parameter(v0.clone())
        self.seen_v = []

    def closure(self):
        self.seen_v.append(self.v.detach().clone())
        e = self.w - self.c
        loss = (
            0.5 * e @ self.A @ e
            + 0.5 * ((self.v - self.d) ** 2).sum()
            + self.kappa * (self.w @ self.v)
        )
        loss.backward()
        return loss.detach()


def _problem(seed=0, n=3, kappa=0.0):
    g = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))[0]
    lam = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)[:n]
    A = q @ torch.diag(lam) @ q.T
    c, w0 = (
        torch.randn(n, generator=g, dtype=torch.float64),
        torch.randn(n, generator=g, dtype=torch.float64),
    )
    d, v0 = (
        torch.randn(n, generator=g, dtype=torch.float64),
        torch.randn(n, generator=g, dtype=torch.float64),
    )
    return Quadratic(A, c, w0, d, v0, kappa)


def _prox(A, c, w, gamma):
    """argmin_x 1/2 (x-c)^T A (x-c) + gamma/2 ||x - w||^2 = (A + gamma I)^{-1} (A c + gamma w)."""
    n = A.shape[0]
    return torch.linalg.solve(A + gamma * torch.eye(n, dtype=A.dtype), A @ c + gamma * w)


def _mean_after(A, c, w, gamma, lr, alpha, L):
    """Noiseless closed form: e_l = M^l e_0 with M = I - lr (A + gamma I), e = W' - prox;
    mu_L - prox = (1-alpha)^L e_0 + alpha sum_{l=1}^L (1-alpha)^{L-l} M^l e_0."""
    n = A.shape[0]
    p = _prox(A, c, w, gamma)
    M = torch.eye(n, dtype=A.dtype) - lr * (A + gamma * torch.eye(n, dtype=A.dtype))
    e0 = w - p
    acc = (1 - alpha) ** L * e0
    for ell in range(1, L + 1):
        acc = acc + alpha * (1 - alpha) ** (L - ell) * torch.linalg.matrix_power(M, ell) @ e0
    return p + acc


@pytest.mark.parametrize("alpha", [0.75, 1.0])
def test_exact_inner_dynamics_noiseless(alpha):
    m = _problem()
    gamma, lr, L = 0.7, 0.2, 5
    w0 = m.w.detach().clone()
    opt = EntropySGD(
        m,
        torch.optim.SGD(m.parameters(), lr=0.1),
        layers="w",
        gamma=gamma,
        inner_steps=L,
        inner_lr=lr,
        noise=0.0,
        alpha=alpha,
    )
    loss = opt.step(m.closure)
    mu = _mean_after(m.A, m.c, w0, gamma, lr, alpha, L)
    torch.testing.assert_close(m.w.grad, gamma * (w0 - mu), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(m.w.detach(), w0 - 0.1 * gamma * (w0 - mu), rtol=1e-12, atol=1e-14)
    e, v0 = w0 - m.c, m.seen_v[0]
    assert float(loss) == pytest.approx(
        float(0.5 * e @ m.A @ e + 0.5 * ((v0 - m.d) ** 2).sum()), rel=1e-14
    )  # the returned loss is L(W)
    assert len(m.seen_v) == L


@pytest.mark.parametrize("L", [10, 40, 160])
def test_outer_gradient_tends_to_moreau_gradient(L):
    """|| gamma (W - mu_L) - gamma (W - prox W) || <= gamma b(L) ||W - prox W|| with
    b(L) = (1-alpha)^L + alpha sum_l (1-alpha)^{L-l} rho^l, rho = max |1 - lr (lambda_i + gamma)|
    (geometric contraction of the noiseless inner loop)."""
    m = _problem(1)
    gamma, lr, alpha = 0.5, 0.3, 0.75
    w0 = m.w.detach().clone()
    opt = EntropySGD(
        m,
        torch.optim.SGD(m.parameters(), lr=1e-3),
        layers="w",
        gamma=gamma,
        inner_steps=L,
        inner_lr=lr,
        noise=0.0,
        alpha=alpha,
    )
    opt.step(m.closure)
    p = _prox(m.A, m.c, w0, gamma)
    moreau = gamma * (w0 - p)
    # the Moreau gradient is the gradient of L at the proximal point
    torch.testing.assert_close(moreau, m.A @ (p - m.c), rtol=1e-12, atol=1e-14)
    lam = torch.linalg.eigvalsh(m.A)
    rho = float((1 - lr * (lam + gamma)).abs().max())
    bound = (1 - alpha) ** L + alpha * sum(
        (1 - alpha) ** (L - ell) * rho**ell for ell in range(1, L + 1)
    )
    err = float((m.w.grad - moreau).norm())
    # measured err / bound ~ 0.36 at L = 10, 40; the 1e-15 absolute slack is float64 rounding
    # of the O(1) iterates (it matters only at L = 160, where b(L) ~ 1e-25 underflows it)
    assert err <= gamma * bound * float((w0 - p).norm()) * (1 + 1e-9) + 1e-15
    if L >= 40:  # rho = 0.7, b(40) ~ 7e-7: the outer gradient is the Moreau one to < 1e-4
        assert bound < 1e-4
        assert err < 1e-4 * float(moreau.norm())


def test_noise_is_zero_mean_with_predicted_variance():
    """Linear inner dynamics: with noise, mu_L = noiseless mu_L + sd * sum_k B_k xi_k with
    B_k = sum_{l>=k} alpha (1-alpha)^{L-l} M^{l-k}; so E[grad] is the noiseless gradient and
    Cov[grad] = gamma^2 sd^2 sum_k B_k B_k^T.  R = 400 replicates: the mean is checked at
    4 standard errors, the total variance (trace) within 4 sqrt(2/R) relative (its sampling
    sd is at most sqrt(2/(R-1)) relative for Gaussian draws)."""
    gamma, lr, alpha, L, eps, R = 0.5, 0.3, 0.75, 6, 0.2, 400
    ref = _problem(2)
    w0 = ref.w.detach().clone()
    n = w0.numel()
    eye = torch.eye(n, dtype=torch.float64)
    M = eye - lr * (ref.A + gamma * eye)
    B = [
        sum(
            alpha * (1 - alpha) ** (L - ell) * torch.linalg.matrix_power(M, ell - k)
            for ell in range(k, L + 1)
        )
        for k in range(1, L + 1)
    ]
    sd = math.sqrt(lr) * eps
    cov = gamma**2 * sd**2 * sum(b @ b.T for b in B)
    mean = gamma * (w0 - _mean_after(ref.A, ref.c, w0, gamma, lr, alpha, L))
    gen = torch.Generator().manual_seed(11)
    grads = []
    for _ in range(R):
        m = _problem(2)
        opt = EntropySGD(
            m,
            torch.optim.SGD(m.parameters(), lr=0.0),
            layers="w",
            gamma=gamma,
            inner_steps=L,
            inner_lr=lr,
            noise=eps,
            alpha=alpha,
            generator=gen,
        )
        opt.step(m.closure)
        grads.append(m.w.grad.clone())
    G = torch.stack(grads).numpy()
    se = np.sqrt(np.diag(cov.numpy()) / R)
    assert np.all(np.abs(G.mean(0) - mean.numpy()) < 4 * se)
    tr = np.trace(np.cov(G.T))
    assert tr == pytest.approx(float(torch.trace(cov)), rel=4 * math.sqrt(2 / R))


def test_deterministic_given_generator():
    def run(seed):
        m = _problem(3)
        opt = EntropySGD(
            m,
            torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9),
            gamma=0.5,
            inner_steps=4,
            inner_lr=0.1,
            noise=0.1,
            generator=torch.Generator().manual_seed(seed),
        )
        for _ in range(3):
            opt.step(m.closure)
        return torch.cat([m.w.detach(), m.v.detach()])

    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_parameters_outside_selection_follow_plain_sgd():
    """v is not selected: it stays at v0 during the inner loop and the base SGD moves it by
    -lr dL/dv(W) (the gradient includes the coupling kappa w0), exactly."""
    m = _problem(4, kappa=0.3)
    w0, v0 = m.w.detach().clone(), m.v.detach().clone()
    lr = 0.05
    opt = EntropySGD(
        m,
        torch.optim.SGD(m.parameters(), lr=lr),
        layers="w",
        gamma=0.5,
        inner_steps=7,
        inner_lr=0.2,
        noise=0.3,
        generator=torch.Generator().manual_seed(0),
    )
    assert opt.entropic_names == ("w",)
    opt.step(m.closure)
    assert len(m.seen_v) == 7 and all(torch.equal(v, v0) for v in m.seen_v)
    torch.testing.assert_close(m.v.detach(), v0 - lr * ((v0 - m.d) + 0.3 * w0), rtol=0, atol=1e-15)
    assert not torch.equal(m.w.detach(), w0)


def test_all_parameters_by_default_and_scoping_and_state():
    m = _problem(5)
    sched = gamma_scoping(0.1, 0.5)
    opt = EntropySGD(
        m, torch.optim.SGD(m.parameters(), lr=0.1), gamma=sched, inner_steps=2, noise=0.0
    )
    assert opt.entropic_names == ("w", "v")
    assert opt.gamma_at() == pytest.approx(0.1)
    opt.step(m.closure)
    opt.step(m.closure)
    assert opt.gamma_at() == pytest.approx(0.1 * 1.5**2, rel=1e-12)
    st = opt.state_dict()
    m2 = _problem(5)
    opt2 = EntropySGD(
        m2, torch.optim.SGD(m2.parameters(), lr=0.1), gamma=sched, inner_steps=2, noise=0.0
    )
    opt2.load_state_dict(st)
    assert opt2.outer_steps == 2
    assert opt2.param_groups is opt2.base_optimizer.param_groups  # still shared after loading


def test_bad_input():
    m = _problem()
    base = torch.optim.SGD(m.parameters(), lr=0.1)
    for kw, word in [
        (dict(gamma=0.0), "gamma"),
        (dict(inner_steps=0), "inner_steps"),
        (dict(inner_lr=-1.0), "inner_lr"),
        (dict(alpha=0.0), "alpha"),
        (dict(alpha=1.5), "alpha"),
        (dict(noise=-0.1), "noise"),
        (dict(noise=0.1), "generator"),
        (dict(layers="nope", noise=0.0), "matches no"),
        (dict(noise=0.0, layers="w", generator=None, gamma=math.inf), "gamma"),
    ]:
        with pytest.raises(ValueError, match=word):
            EntropySGD(m, base, **kw)
    with pytest.raises(ValueError, match="base_optimizer"):
        EntropySGD(m, "sgd", noise=0.0)
    only_v = torch.optim.SGD([m.v], lr=0.1)
    with pytest.raises(ValueError, match="does not hold"):
        EntropySGD(m, only_v, layers="w", noise=0.0)
    opt = EntropySGD(m, base, noise=0.0)
    with pytest.raises(ValueError, match="closure"):
        opt.step()
    bad = EntropySGD(m, base, noise=0.0, gamma=lambda t: -1.0)
    with pytest.raises(ValueError, match="gamma"):
        bad.step(m.closure)
    with pytest.raises(ValueError, match="gamma1"):
        gamma_scoping(0.1, -0.5)


def _authors_reference(m, *, steps, lr, L, eps, g0, mom, wd, eta_in, beta1, seed):
    """The authors' update rule written out from its description, on the parameters
    (w, v) of ``m`` (a fresh copy), with the noise drawn from a generator of the same seed
    in the same order (per inner step, w then v):

    inner:  d = grad f(x') + g0 (x' - x) + eps sqrt(2/eta') xi + wd x'
            b = mom b + d (b = 0 at each outer step);  d = d + mom b  (Nesterov)
            x' = x' - eta' d;  mu = beta1 mu + (1 - beta1) x'
    outer:  G = (x - mu) + wd x;  B = G at the first step, else mom B + G;
            x = x - lr (G + mom B)   (no gamma)
    """
    gen = torch.Generator().manual_seed(seed)
    x = [m.w.detach().clone(), m.v.detach().clone()]
    outer_b = None

    def grad_at(xp):
        w, v = (t.clone().requires_grad_(True) for t in xp)
        e = w - m.c
        f = 0.5 * e @ m.A @ e + 0.5 * ((v - m.d) ** 2).sum() + m.kappa * (w @ v)
        return torch.autograd.grad(f, (w, v))

    for _ in range(steps):
        xp = [t.clone() for t in x]
        mu = [t.clone() for t in x]
        b = [torch.zeros_like(t) for t in x]
        for _ in range(L):
            grads = grad_at(xp)
            for i in range(2):
                xi = torch.randn(xp[i].shape, generator=gen, dtype=torch.float64)
                d = grads[i] + g0 * (xp[i] - x[i]) + eps * math.sqrt(2 / eta_in) * xi
                d = d + wd * xp[i]
                b[i] = mom * b[i] + d
                d = d + mom * b[i]
                xp[i] = xp[i] - eta_in * d
                mu[i] = beta1 * mu[i] + (1 - beta1) * xp[i]
        G = [(x[i] - mu[i]) + wd * x[i] for i in range(2)]
        outer_b = G if outer_b is None else [mom * outer_b[i] + G[i] for i in range(2)]
        x = [x[i] - lr * (G[i] + mom * outer_b[i]) for i in range(2)]
    return x


def test_from_authors_reproduces_their_update_rule():
    kw = dict(lr=0.05, L=4, eps=0.05, g0=0.3, weight_decay=1e-2)
    m = _problem(6, kappa=0.2)
    want = _authors_reference(
        _problem(6, kappa=0.2),
        steps=3,
        mom=0.9,
        wd=kw["weight_decay"],
        eta_in=0.1,
        beta1=0.75,
        seed=13,
        **{k: kw[k] for k in ("lr", "L", "eps", "g0")},
    )
    opt = EntropySGD.from_authors(m, g1=0.5, generator=torch.Generator().manual_seed(13), **kw)
    assert opt.defaults["alpha"] == 0.25 and opt.defaults["inner_lr"] == 0.1
    assert opt.gamma_at(7) == 0.3  # the code's step counter never moves: g1 has no effect
    for _ in range(3):
        opt.step(m.closure)
    got = [m.w.detach(), m.v.detach()]
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-14)
    # the same rule from a list of parameters, and with the paper's scoping
    m2 = _problem(6, kappa=0.2)
    opt2 = EntropySGD.from_authors([m2.w, m2.v], generator=torch.Generator().manual_seed(13), **kw)
    for _ in range(3):
        opt2.step(m2.closure)
    assert torch.equal(m2.w.detach(), got[0]) and torch.equal(m2.v.detach(), got[1])
    scoped = EntropySGD.from_authors(m2, lr=0.1, L=1, g0=0.3, g1=0.5, eps=0.0, scoping=True)
    assert scoped.gamma_at(2) == pytest.approx(0.3 * 1.5**2, rel=1e-12)


def test_bitwise_resume_with_momentum_and_noise():
    def make(m, gen):
        return EntropySGD.from_authors(m, lr=0.05, L=3, eps=0.05, g0=0.3, generator=gen)

    m = _problem(7)
    gen = torch.Generator().manual_seed(5)
    opt = make(m, gen)
    for _ in range(4):
        opt.step(m.closure)
    straight = torch.cat([m.w.detach(), m.v.detach()])
    m = _problem(7)
    gen = torch.Generator().manual_seed(5)
    opt = make(m, gen)
    for _ in range(2):
        opt.step(m.closure)
    st, gs = opt.state_dict(), gen.get_state()
    params = {k: v.clone() for k, v in m.state_dict().items()}
    m2 = _problem(7)  # same loss (A, c, d are not in the state dict), weights from the checkpoint
    m2.load_state_dict(params)
    gen2 = torch.Generator()
    gen2.set_state(gs)
    opt2 = make(m2, gen2)
    opt2.load_state_dict(st)
    for _ in range(2):
        opt2.step(m2.closure)
    assert torch.equal(torch.cat([m2.w.detach(), m2.v.detach()]), straight)


def test_from_authors_bad_input():
    m = _problem()
    for kw, word in [
        (dict(L=0), "L must"),
        (dict(beta1=1.0), "beta1"),
        (dict(eps=0.1), "generator"),
        (dict(g0=0.0), "g0"),
        (dict(momentum=-0.1), "momentum"),
    ]:
        with pytest.raises(ValueError, match=word):
            EntropySGD.from_authors(m, **{"lr": 0.1, "L": 2, "eps": 0.0, **kw})
    with pytest.raises(ValueError, match="layers needs the model"):
        EntropySGD.from_authors([m.w], lr=0.1, L=2, eps=0.0, layers="w")
    base = torch.optim.SGD(m.parameters(), lr=0.1)
    for kw, word in [
        (dict(noise_mode="minus"), "noise_mode"),
        (dict(outer_gradient="x"), "outer_gradient"),
        (dict(inner_momentum=1.0), "inner_momentum"),
        (dict(inner_nesterov=True), "inner_nesterov"),
        (dict(inner_weight_decay=-1.0), "inner_weight_decay"),
    ]:
        with pytest.raises(ValueError, match=word):
            EntropySGD(m, base, noise=0.0, **kw)


def test_gamma_scoping_overflow_is_a_clear_error():
    from anisotropy.optim.entropy_sgd import gamma_scoping

    g = gamma_scoping(0.03, 1e-3)
    assert g(1000) == pytest.approx(0.03 * 1.001**1000, rel=1e-12)
    with pytest.raises(ValueError, match="overflows at step"):
        g(800_000)
