"""Replicated-SGD: one replica is plain SGD, the closed-form linear recurrence on
quadratics (full and partial coupling), collapse under strong coupling, the coupling
schedules, bitwise resume through state_dict, clear errors."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from anisotropy.optim.replicated import ReplicatedSGD, coupling_schedule

# float64 recurrences agree to rounding: a few ulps of the O(1) weights per step
F64_RTOL = 1e-12


def spd(n: int, rng: np.random.Generator) -> np.ndarray:
    m = rng.normal(size=(n, n))
    return m @ m.T / n + 0.5 * np.eye(n)


class Vec(nn.Module):
    """Parameters ``u`` (and ``v``) of a quadratic, float64."""

    def __init__(self, du: int, dv: int = 0) -> None:
        super().__init__()
        self.u = nn.Parameter(torch.zeros(du, dtype=torch.float64))
        if dv:
            self.v = nn.Parameter(torch.linspace(-1, 1, dv, dtype=torch.float64))


def quadratics(y: int, d: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Replica ``a``'s own loss L_a(x) = 0.5 x^T A_a x - b_a^T x (its 'minibatch')."""
    rng = np.random.default_rng(seed)
    return [spd(d, rng) for _ in range(y)], [rng.normal(size=d) for _ in range(y)]


def quadratic_closure(model: Vec, As: list[np.ndarray], bs: list[np.ndarray]):
    """closure(a) writes the exact gradient A_a x - b_a of replica a's loss."""
    At, bt = [torch.tensor(A) for A in As], [torch.tensor(b) for b in bs]
    du = model.u.numel()

    def closure(a: int) -> float:
        parts = [model.u.detach()] + ([model.v.detach()] if hasattr(model, "v") else [])
        x = torch.cat(parts)
        g = At[a] @ x - bt[a]
        model.u.grad = g[:du].clone()
        if hasattr(model, "v"):
            model.v.grad = g[du:].clone()
        return 0.5 * float(x @ (At[a] @ x)) - float(bt[a] @ x)

    return closure


def test_centre_follows_the_closed_form_linear_recurrence():
    """W_T = W* + M^T (W_0 - W*), M = I - lr (A_hat + gamma P), W* = (A_hat + gamma P)^-1 b_hat."""
    y, d, lr, gamma, T = 3, 4, 0.1, 0.8, 25
    As, bs = quadratics(y, d, 0)
    model = Vec(d)
    gen = torch.Generator().manual_seed(0)
    opt = ReplicatedSGD(model, y=y, gamma=gamma, lr=lr, init_noise=1.0, generator=gen)
    W0 = opt.replicas["u"].numpy().reshape(-1).copy()
    np.testing.assert_array_equal(model.u.detach().numpy(), W0.reshape(y, d).mean(0))
    closure = quadratic_closure(model, As, bs)
    for _ in range(T):
        opt.step(closure)
    A_hat = np.zeros((y * d, y * d))
    for a in range(y):
        A_hat[a * d : (a + 1) * d, a * d : (a + 1) * d] = As[a]
    P = np.kron(np.eye(y) - np.ones((y, y)) / y, np.eye(d))
    K = A_hat + gamma * P
    W_star = np.linalg.solve(K, np.concatenate(bs))
    M = np.eye(y * d) - lr * K
    W_T = W_star + np.linalg.matrix_power(M, T) @ (W0 - W_star)
    got = opt.replicas["u"].numpy()
    np.testing.assert_allclose(got.reshape(-1), W_T, rtol=F64_RTOL, atol=1e-14)
    np.testing.assert_allclose(
        model.u.detach().numpy(), W_T.reshape(y, d).mean(0), rtol=F64_RTOL, atol=1e-14
    )


def test_partial_coupling_shares_the_rest_with_the_mean_gradient():
    """Only u is replicated: u_a' = u_a - lr (d_u L_a(u_a, v) + gamma (u_a - u_c)),
    v' = v - lr (1/y) sum_a d_v L_a(u_a, v)."""
    y, du, dv, lr, gamma = 3, 2, 3, 0.1, 0.5
    As, bs = quadratics(y, du + dv, 1)
    model = Vec(du, dv)
    gen = torch.Generator().manual_seed(1)
    opt = ReplicatedSGD(model, y=y, gamma=gamma, layers=["u"], lr=lr, init_noise=0.5, generator=gen)
    assert opt.coupled_names == ("u",) and set(opt.replicas) == {"u"}
    U = opt.replicas["u"].numpy().copy()
    v = model.v.detach().numpy().copy()
    closure = quadratic_closure(model, As, bs)
    for _ in range(6):
        grads = [As[a] @ np.concatenate([U[a], v]) - bs[a] for a in range(y)]
        c = U.mean(0)
        U = np.stack([U[a] - lr * (grads[a][:du] + gamma * (U[a] - c)) for a in range(y)])
        v = v - lr * np.mean([g[du:] for g in grads], axis=0)
        opt.step(closure)
        np.testing.assert_allclose(opt.replicas["u"].numpy(), U, rtol=F64_RTOL, atol=1e-14)
        np.testing.assert_allclose(model.v.detach().numpy(), v, rtol=F64_RTOL, atol=1e-14)
        np.testing.assert_allclose(model.u.detach().numpy(), U.mean(0), rtol=F64_RTOL, atol=1e-14)


def test_strong_coupling_collapses_the_replicas_onto_the_centre():
    """At the fixed point (gamma + A_a) d_a = -(grad L_a(c) - mean_b grad L_b(c)) + O(d / gamma)
    for d_a = W_a - c: the replicas' spread is dev / gamma to O(lambda_max / gamma)."""
    y, d, lr = 3, 3, 0.08  # lr (lambda_max + 15) = 1.55 < 2: stable at the largest gamma
    As, bs = quadratics(y, d, 2)
    spread = {}
    for gamma in (0.0, 5.0, 15.0):
        model = Vec(d)
        gen = torch.Generator().manual_seed(2)
        opt = ReplicatedSGD(model, y=y, gamma=gamma, lr=lr, init_noise=1.0, generator=gen)
        start = opt.distances().sqrt().max().item()
        closure = quadratic_closure(model, As, bs)
        for _ in range(300):  # slowest mode contracts by (1 - lr * 0.5)^300 < 1e-5
            opt.step(closure)
        spread[gamma] = opt.distances().sqrt().max().item()
        c = model.u.detach().numpy()
        g = np.stack([As[a] @ c - bs[a] for a in range(y)])
        dev = np.linalg.norm(g - g.mean(0), axis=1).max()
        if gamma > 0:
            # the O(lambda_max / gamma) correction, lambda_max < 4.5, is within this band
            assert 0.5 * dev / gamma <= spread[gamma] <= 1.5 * dev / gamma
    assert spread[15.0] < 0.15 * start
    assert spread[15.0] < 0.05 * spread[0.0]
    # the centre tends to the minimiser c* of the mean loss: at the fixed point the
    # coupling forces cancel, sum_a A_a (c + d_a) = sum_a b_a, so c - c* = -(sum A_a)^-1 sum A_a d_a
    c_star = np.linalg.solve(sum(As), sum(bs))
    D = opt.replicas["u"].numpy() - model.u.detach().numpy()
    shift = -np.linalg.solve(sum(As), sum(A @ da for A, da in zip(As, D, strict=True)))
    np.testing.assert_allclose(model.u.detach().numpy() - c_star, shift, rtol=0, atol=1e-6)


def mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


def batches(n: int, y: int) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    g = torch.Generator().manual_seed(7)
    return [
        [
            (torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g))
            for _ in range(y)
        ]
        for _ in range(n)
    ]


def replica_closure(model: nn.Module, step_batches):
    def closure(a: int):
        x, t = step_batches[a]
        loss = F.cross_entropy(model(x), t)
        loss.backward()
        return loss

    return closure


@pytest.mark.parametrize(("gamma", "layers"), [(0.0, None), (0.7, ["2"]), (0.7, None)])
def test_one_replica_is_plain_sgd_bitwise(gamma, layers):
    kw = dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    a, b = mlp(0), mlp(0)
    rep = ReplicatedSGD(a, y=1, gamma=gamma, layers=layers, **kw)
    sgd = torch.optim.SGD(b.parameters(), **kw)
    for step_batches in batches(5, 1):
        la = rep.step(replica_closure(a, step_batches))
        sgd.zero_grad()
        lb = sgd.step(lambda sb=step_batches: replica_closure(b, sb)(0))
        assert torch.equal(la, lb)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_state_dict_round_trip_resumes_bitwise():
    y = 2
    data = batches(6, y)
    sched = coupling_schedule("exp", 0.1, rate=0.5)

    def build(seed: int, model_seed: int):
        model = mlp(model_seed)
        gen = torch.Generator().manual_seed(seed)
        opt = ReplicatedSGD(
            model, y=y, gamma=sched, layers=["0"], lr=0.1, momentum=0.9,
            init_noise=0.1, generator=gen,
        )  # fmt: skip
        return model, opt

    a, opt = build(0, 0)
    for step_batches in data[:3]:
        opt.step(replica_closure(a, step_batches))
    buf = io.BytesIO()
    torch.save({"model": a.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    ck = torch.load(buf, weights_only=True)
    b, opt_b = build(1, 1)
    b.load_state_dict(ck["model"])
    opt_b.load_state_dict(ck["opt"])
    assert opt_b.steps == 3 and opt_b.gamma_at() == sched(3)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    for step_batches in data[3:]:
        la = opt.step(replica_closure(a, step_batches))
        lb = opt_b.step(replica_closure(b, step_batches))
        assert torch.equal(la, lb)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    for n in opt.replicas:
        assert torch.equal(opt.replicas[n], opt_b.replicas[n])
    # the groups a scheduler edits after loading are the ones the base optimiser reads
    opt_b.param_groups[0]["lr"] = 0.0
    opt_b.param_groups[0]["momentum"] = 0.0
    before = [s.clone() for s in opt_b.replicas.values()]
    opt_b.step(replica_closure(b, data[0]))
    assert all(torch.equal(s, t) for s, t in zip(opt_b.replicas.values(), before, strict=True))


def test_replica_context_and_distances():
    model = mlp(3)
    opt = ReplicatedSGD(
        model, y=3, gamma=0.1, lr=0.1, init_noise=0.2, generator=torch.Generator().manual_seed(3)
    )
    w = opt.replicas["0.weight"]
    centre = model[0].weight.detach().clone()
    assert torch.equal(centre, w.mean(0))
    with opt.replica(2) as m:
        assert torch.equal(m[0].weight, w[2])
    assert torch.equal(model[0].weight, centre)
    expected = sum(
        ((s - s.mean(0)) ** 2).reshape(3, -1).sum(1).double() for s in opt.replicas.values()
    )
    torch.testing.assert_close(opt.distances(), expected, rtol=1e-6, atol=0)


def test_coupling_schedules():
    exp = coupling_schedule("exp", 0.01, rate=0.1)
    assert exp(0) == 0.01 and math.isclose(exp(10), 0.01 * 1.1**10, rel_tol=1e-14)
    assert coupling_schedule("exp", 0.01, rate=0.1, gamma_max=0.02)(100) == 0.02
    lin = coupling_schedule("linear", 0.5, rate=0.25, gamma_max=1.0)
    assert [lin(t) for t in (0, 1, 2, 10)] == [0.5, 0.75, 1.0, 1.0]
    cos = coupling_schedule("cosine", 0.0, gamma_max=2.0, total_steps=4)
    assert cos(0) == 0.0 and math.isclose(cos(2), 1.0) and cos(4) == 2.0 and cos(9) == 2.0
    assert coupling_schedule("constant", 0.3)(7) == 0.3
    for bad in (
        dict(kind="sqrt", gamma0=1.0),
        dict(kind="exp", gamma0=-1.0),
        dict(kind="exp", gamma0=1.0, rate=float("nan")),
        dict(kind="linear", gamma0=1.0, gamma_max=0.5),
        dict(kind="cosine", gamma0=0.0, total_steps=10),
        dict(kind="cosine", gamma0=0.0, gamma_max=1.0),
        dict(kind="cosine", gamma0=0.0, gamma_max=1.0, total_steps=0),
        dict(kind="exp", gamma0=1.0, total_steps=10),
    ):
        with pytest.raises(ValueError, match="kind|gamma0|rate|gamma_max|total_steps"):
            coupling_schedule(**bad)
    with pytest.raises(ValueError, match="step"):
        exp(-1)


def test_bad_input_is_refused():
    model = mlp(0)
    with pytest.raises(ValueError, match="y must be"):
        ReplicatedSGD(model, y=0, lr=0.1)
    with pytest.raises(ValueError, match="gamma"):
        ReplicatedSGD(model, gamma=-1.0, lr=0.1)
    with pytest.raises(ValueError, match="generator"):
        ReplicatedSGD(model, init_noise=0.1, lr=0.1)
    with pytest.raises(ValueError, match="matches no parameter"):
        ReplicatedSGD(model, layers=["fc9"], lr=0.1)
    with pytest.raises(ValueError, match="model"):
        ReplicatedSGD(list(model.parameters()), lr=0.1)  # type: ignore[arg-type]
    opt = ReplicatedSGD(model, y=2, gamma=lambda t: -1.0, lr=0.1)
    with pytest.raises(ValueError, match="gamma"):
        opt.step(replica_closure(model, batches(1, 2)[0]))
    with pytest.raises(ValueError, match="closure"):
        opt.step()
    with pytest.raises(ValueError, match="a must be"), opt.replica(2):
        pass
    with pytest.raises(ValueError, match="keys"):
        opt.load_state_dict({"base": {}})
    other = ReplicatedSGD(mlp(0), y=3, lr=0.1).state_dict()
    with pytest.raises(ValueError, match="shapes"):
        opt.load_state_dict(other)


def test_exponential_coupling_is_computed_in_log_space():
    # (1 + 1e-3)^t overflows a float64 near t = 710,000: the cap must still apply there,
    # and without a cap the overflow is a clear error, not an OverflowError
    from anisotropy.optim import coupling_schedule

    capped = coupling_schedule("exp", 1e-3, rate=1e-3, gamma_max=5.0)
    assert capped(800_000) == 5.0
    assert capped(0) == pytest.approx(1e-3, rel=1e-15)
    assert capped(1000) == pytest.approx(1e-3 * 1.001**1000, rel=1e-12)
    with pytest.raises(ValueError, match="gamma_max"):
        coupling_schedule("exp", 1e-3, rate=1e-3)(800_000)
    assert coupling_schedule("exp", 0.0, rate=1e-3)(800_000) == 0.0
