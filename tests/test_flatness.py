"""Local energy (seed 003): closed forms on quadratic losses, limits, selection, errors."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from anisotropy.related.local_energy import FlatnessResult, local_energy, local_energy_curve

torch.set_num_threads(1)

# The Monte Carlo mean of n iid differences is within Z_TOL standard errors of
# its expectation with probability > 1 - 6e-5 (normal approximation, n >= 400),
# so a seeded test at Z_TOL = 4 fails only if the estimator is biased.
Z_TOL = 4.0


def _two_linear(seed=0):
    """x (B, 4) -> Linear(4, 3) -> Linear(3, 2), float64; MSE is quadratic in either weight."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2)).double()
    x = torch.randn(20, 4, dtype=torch.float64)
    t = torch.randn(20, 2, dtype=torch.float64)
    return model, x, t


def _hessian_diag(model, x, layer):
    """diag of d^2 L / dW^2 for L = mean over (B, out) of squared error (exact, analytic)."""
    w1, b1 = model[0].weight.detach(), model[0].bias.detach()
    w2 = model[1].weight.detach()
    B, out = x.shape[0], w2.shape[0]
    if layer == "1":  # L = 1/(B out) sum ||W2 h + b2 - t||^2, h = W1 x + b1
        h = x @ w1.T + b1
        return (2.0 / (B * out)) * (h**2).sum(0).expand(out, -1)  # H[(o,j),(o,j)]
    # layer "0": d output_o / d W1_jk = W2_oj x_k
    return (2.0 / (B * out)) * torch.outer((w2**2).sum(0), (x**2).sum(0))


@pytest.mark.parametrize("fitted", [False, True])
@pytest.mark.parametrize("layer", ["0", "1"])
@pytest.mark.parametrize("noise", ["multiplicative", "additive"])
def test_closed_form_on_quadratic_loss(layer, noise, fitted):
    """Random targets: the linear term g.D dominates the variance; targets = model output
    (a minimum, g = 0): only the quadratic term remains and the check is ~10x tighter."""
    model, x, t = _two_linear()
    if fitted:
        t = model(x).detach()
    sigma = 0.3
    hd = _hessian_diag(model, x, layer)
    w = model[int(layer)].weight.detach()
    exact = 0.5 * sigma**2 * float((hd * w**2).sum() if noise == "multiplicative" else hd.sum())
    res = local_energy(
        model,
        x,
        t,
        sigma=sigma,
        layers=layer,
        noise=noise,
        n=400,
        batch_size=64,
        loss_fn=F.mse_loss,
        generator=torch.Generator().manual_seed(7),
    )
    assert isinstance(res, FlatnessResult)
    assert res.n == 400 and res.n_perturbed == w.numel() and res.names == (f"{layer}.weight",)
    assert res.stderr > 0
    assert abs(res.mean - exact) < Z_TOL * res.stderr, (res.mean, exact, res.stderr)
    assert res.centre_loss == pytest.approx(float(F.mse_loss(model(x), t).detach()), rel=1e-12)
    assert "delta_E" in res.report()


def test_scales_as_sigma_squared_with_common_draws():
    """Quadratic loss: L(W + s D) - L(W) = s g.D + s^2 D.H.D/2, so with the same draws
    dE(2s) - 4 dE(s) = -2 s mean(g.D): the curve is exactly that polynomial in s."""
    model, x, t = _two_linear(1)
    r1, r2, r3 = local_energy_curve(
        model,
        x,
        t,
        sigmas=(0.1, 0.2, 0.3),
        layers="1",
        n=8,
        loss_fn=F.mse_loss,
        generator=torch.Generator().manual_seed(3),
    )
    # a s + b s^2 through three points: second divided difference is b, constant in s
    a1 = (r2.mean - 4 * r1.mean) / (-2 * 0.1)  # a = linear coefficient
    b = (r1.mean - a1 * 0.1) / 0.01
    assert r3.mean == pytest.approx(a1 * 0.3 + b * 0.09, rel=1e-9, abs=1e-14)


def test_sigma_zero_gives_exactly_zero():
    model, x, t = _two_linear()
    for layer in ("0", "1"):
        res = local_energy(
            model,
            x,
            t,
            sigma=0.0,
            layers=layer,
            n=5,
            batch_size=2,
            loss_fn=F.mse_loss,
            generator=torch.Generator().manual_seed(0),
        )
        assert res.mean == 0.0 and res.stderr == 0.0


def test_deterministic_and_model_untouched():
    model, x, t = _two_linear()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kw = dict(sigma=0.2, n=6, batch_size=4, loss_fn=F.mse_loss)
    a = local_energy(model, x, t, generator=torch.Generator().manual_seed(5), **kw)
    b = local_energy(model, x, t, generator=torch.Generator().manual_seed(5), **kw)
    c = local_energy(model, x, t, generator=torch.Generator().manual_seed(6), **kw)
    assert a == b and a.mean != c.mean
    assert a.names == ("0.weight", "1.weight")  # layers=None: all weights, no biases
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_batch_size_does_not_change_the_draws_law():
    """Two batch sizes give estimates of the same expectation (independent draws)."""
    model, x, t = _two_linear(2)
    kw = dict(sigma=0.2, layers="1", n=400, loss_fn=F.mse_loss)
    a = local_energy(model, x, t, batch_size=400, generator=torch.Generator().manual_seed(1), **kw)
    b = local_energy(model, x, t, batch_size=7, generator=torch.Generator().manual_seed(2), **kw)
    assert abs(a.mean - b.mean) < Z_TOL * math.hypot(a.stderr, b.stderr)


def test_bad_input():
    model, x, t = _two_linear()
    g = torch.Generator().manual_seed(0)
    kw = dict(loss_fn=F.mse_loss, generator=g)
    with pytest.raises(ValueError, match="sigma"):
        local_energy(model, x, t, sigma=-0.1, **kw)
    with pytest.raises(ValueError, match="sigma"):
        local_energy(model, x, t, sigma=math.nan, **kw)
    with pytest.raises(ValueError, match="noise"):
        local_energy(model, x, t, sigma=0.1, noise="uniform", **kw)
    with pytest.raises(ValueError, match="n must"):
        local_energy(model, x, t, sigma=0.1, n=1, **kw)
    with pytest.raises(ValueError, match="batch_size"):
        local_energy(model, x, t, sigma=0.1, batch_size=0, **kw)
    with pytest.raises(ValueError, match="matches no parameter"):
        local_energy(model, x, t, sigma=0.1, layers="fc9", **kw)
    with pytest.raises(ValueError, match="generator"):
        local_energy(model, x, t, sigma=0.1, loss_fn=F.mse_loss, generator=0)
    with pytest.raises(ValueError, match="same batch size"):
        local_energy(model, x, t[:3], sigma=0.1, **kw)
    with pytest.raises(ValueError, match="sigmas"):
        local_energy_curve(model, x, t, sigmas=(), **kw)
    bn = nn.Sequential(nn.Linear(4, 2), nn.BatchNorm1d(2)).double()
    with pytest.raises(ValueError, match="model.eval"):
        local_energy(bn, x, t, sigma=0.1, **kw)
    local_energy(bn.eval(), x, t, sigma=0.1, n=2, **kw)  # fine in eval mode
    with pytest.raises(ValueError, match="NaN or inf"):
        local_energy(model, x, t * math.inf, sigma=0.1, n=2, **kw)
