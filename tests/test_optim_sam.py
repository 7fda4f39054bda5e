"""SAM: the closed-form step on a quadratic, rho = 0 is the base optimiser, partial SAM,
per-group rho, bitwise resume through state_dict, clear errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from anisotropy.optim.sam import SAM

# float64 closed forms agree to rounding: a few ulps of the O(1) weights per step
F64_RTOL = 1e-13


class Pair(nn.Module):
    """Two parameter tensors ``u`` and ``v`` of a quadratic 0.5 x^T A x, x = (u, v)."""

    def __init__(self, u: np.ndarray, v: np.ndarray) -> None:
        super().__init__()
        self.u = nn.Parameter(torch.tensor(u, dtype=torch.float64))
        self.v = nn.Parameter(torch.tensor(v, dtype=torch.float64))


def spd(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(n, n))
    return m @ m.T / n + 0.5 * np.eye(n)


def quadratic_closure(model: Pair, A: torch.Tensor):
    """Loss 0.5 x^T A x with the exact gradient A x written into the parameters."""
    nu = model.u.numel()

    def closure():
        x = torch.cat([model.u.detach(), model.v.detach()])
        g = A @ x
        model.u.grad, model.v.grad = g[:nu].clone(), g[nu:].clone()
        return 0.5 * float(x @ g)

    return closure


def test_quadratic_step_is_the_closed_form():
    """w' = w - lr A (w + rho A w / ||A w||), and with momentum v' = mu v + g(w + e)."""
    A = spd(5, 0)
    x0 = np.random.default_rng(1).normal(size=5)
    model = Pair(x0[:3], x0[3:])
    lr, rho, mu = 0.1, 0.05, 0.9
    opt = SAM(model.parameters(), torch.optim.SGD, rho=rho, lr=lr, momentum=mu)
    closure = quadratic_closure(model, torch.tensor(A))
    x, buf = x0.copy(), None
    for _ in range(4):
        g = A @ x
        g2 = A @ (x + rho * g / np.linalg.norm(g))
        buf = g2 if buf is None else mu * buf + g2
        x = x - lr * buf
        opt.step(closure)
        got = torch.cat([model.u, model.v]).detach().numpy()
        np.testing.assert_allclose(got, x, rtol=F64_RTOL, atol=0)
    # the first step, written with the same float operations, is bitwise equal
    model = Pair(x0[:3], x0[3:])
    opt = SAM(model.parameters(), torch.optim.SGD, rho=rho, lr=lr)
    opt.step(quadratic_closure(model, torch.tensor(A)))
    w, At = torch.tensor(x0), torch.tensor(A)
    g = At @ w
    expected = w.add(At @ (w + g * (rho / torch.linalg.vector_norm(g))), alpha=-lr)
    assert torch.equal(torch.cat([model.u, model.v]).detach(), expected)


def test_partial_sam_perturbs_only_the_chosen_layer():
    """layers=["u"]: e = rho g_u / ||g_u|| on u only; u and v both step with A (u + e, v)."""
    A = spd(5, 2)
    x0 = np.random.default_rng(3).normal(size=5)
    model = Pair(x0[:3], x0[3:])
    lr, rho = 0.2, 0.3
    opt = SAM(model.parameters(), rho=rho, lr=lr, layers=["u"], model=model)
    opt.step(quadratic_closure(model, torch.tensor(A)))
    g = A @ x0
    e = np.concatenate([rho * g[:3] / np.linalg.norm(g[:3]), np.zeros(2)])
    expected = x0 - lr * A @ (x0 + e)
    got = torch.cat([model.u, model.v]).detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=F64_RTOL, atol=0)


def test_rho_per_group_sets_each_groups_radius():
    A = spd(5, 4)
    x0 = np.random.default_rng(5).normal(size=5)
    model = Pair(x0[:3], x0[3:])
    groups = [{"params": [model.u], "rho": 0.1}, {"params": [model.v], "rho": 0.4}]
    opt = SAM(groups, lr=0.1)
    opt.step(quadratic_closure(model, torch.tensor(A)))
    g = A @ x0
    e = np.concatenate([0.1 * g[:3] / np.linalg.norm(g[:3]), 0.4 * g[3:] / np.linalg.norm(g[3:])])
    got = torch.cat([model.u, model.v]).detach().numpy()
    np.testing.assert_allclose(got, x0 - 0.1 * A @ (x0 + e), rtol=F64_RTOL, atol=0)


def mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


def batches(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(7)
    return [
        (torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(n)
    ]


def make_closure(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, t: torch.Tensor):
    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), t)
        loss.backward()
        return loss

    return closure


@pytest.mark.parametrize("layers", [None, ["2"]])
def test_rho_zero_is_the_base_optimizer_bitwise(layers):
    kw = dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    a, b = mlp(0), mlp(0)
    sam = SAM(a.parameters(), torch.optim.SGD, rho=0.0, layers=layers, model=a, **kw)
    sgd = torch.optim.SGD(b.parameters(), **kw)
    for x, t in batches(5):
        la = sam.step(make_closure(a, sam, x, t))
        lb = sgd.step(make_closure(b, sgd, x, t))
        assert torch.equal(la, lb)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_state_dict_round_trip_resumes_bitwise():
    data = batches(6)
    a = mlp(1)
    opt = SAM(a.parameters(), rho=0.05, lr=0.1, momentum=0.9)
    for x, t in data[:3]:
        opt.step(make_closure(a, opt, x, t))
    buf = io.BytesIO()
    torch.save({"model": a.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    ck = torch.load(buf, weights_only=True)
    b = mlp(2)
    b.load_state_dict(ck["model"])
    opt_b = SAM(b.parameters(), rho=0.7, lr=0.5, momentum=0.9)
    opt_b.load_state_dict(ck["opt"])
    assert opt_b.param_groups[0]["rho"] == 0.05 and opt_b.param_groups[0]["lr"] == 0.1
    for x, t in data[3:]:
        opt.step(make_closure(a, opt, x, t))
        opt_b.step(make_closure(b, opt_b, x, t))
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    # after loading, the groups a scheduler edits are still the ones the base optimiser reads
    opt_b.param_groups[0]["lr"] = 0.0
    opt_b.param_groups[0]["momentum"] = 0.0
    before = [p.detach().clone() for p in b.parameters()]
    opt_b.step(make_closure(b, opt_b, *data[0]))
    assert all(torch.equal(p, q) for p, q in zip(b.parameters(), before, strict=True))


def test_bad_input_is_refused():
    model = mlp(0)
    for rho in (-0.1, float("nan"), float("inf"), True, "x"):
        with pytest.raises(ValueError, match="rho"):
            SAM(model.parameters(), rho=rho, lr=0.1)
    with pytest.raises(ValueError, match="rho"):
        SAM([{"params": list(model.parameters()), "rho": -1.0}], lr=0.1)
    with pytest.raises(ValueError, match="base_optimizer"):
        SAM(model.parameters(), torch.optim.SGD(model.parameters(), lr=0.1), lr=0.1)
    with pytest.raises(ValueError, match="model"):
        SAM(model.parameters(), lr=0.1, layers=["2"])
    with pytest.raises(ValueError, match="matches no parameter"):
        SAM(model.parameters(), lr=0.1, layers=["fc9"], model=model)
    with pytest.raises(ValueError, match="does not hold"):
        SAM(model[0].parameters(), lr=0.1, layers=["2"], model=model)
    opt = SAM(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="closure"):
        opt.step()
    with pytest.raises(ValueError, match="rho"):
        opt.load_state_dict(torch.optim.SGD(model.parameters(), lr=0.1).state_dict())
