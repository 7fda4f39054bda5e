"""Diagnostics of one moment-matching step: on f(y) = lambda/2 |y - c|^2 the useful part
of the importance-sampled step matches the closed form E_rho[y - x] = -(x - c) a tau / (1 + a tau)
(a = beta lambda) within the delta-method standard error of the self-normalised estimate;
with flat weights the step is pure noise of norm sqrt(tau d / n) (chi-square tolerance)."""

import math

import pytest
import torch
from torch import nn

from anisotropy.optim.diagnostics import diagnose_moment_matching

torch.set_num_threads(1)
Z = 4.0  # tolerance in standard errors (two-sided normal tail 6e-5)


class Point(nn.Module):
    """One free float64 parameter ``a`` (closures use it directly)."""

    def __init__(self, a):
        super().__init__()
        self.a = nn.Parameter(torch.as_tensor(a, dtype=torch.float64).clone())


def _snis_projection_se(e, a, tau, n):
    """Delta-method standard error of the SNIS estimate of E_rho[u . delta], u = -e / |e|,
    for delta ~ N(0, tau I_d) and weights w = exp(-a/2 |delta + e|^2), e = x - c:
    Var = r E_{q2}[(u . delta - u . mu)^2] / n, r = E[w^2] / E[w]^2, q2 ~ q w^2 Gaussian
    (mean -2a tau e / (1 + 2a tau), variance tau / (1 + 2a tau) per coordinate),
    mu = -a tau e / (1 + a tau) the mean under rho.  Also returns the limit 1/r of ESS / n."""
    d, e2 = e.numel(), float((e * e).sum())

    def log_mean_w(k):  # log E_q[exp(-k/2 |delta + e|^2)]
        return -d / 2 * math.log1p(k * tau) - k * e2 / (2 * (1 + k * tau))

    r = math.exp(log_mean_w(2 * a) - 2 * log_mean_w(a))
    s2 = tau / (1 + 2 * a * tau)
    shift = math.sqrt(e2) * (2 * a * tau / (1 + 2 * a * tau) - a * tau / (1 + a * tau))
    return math.sqrt(r * (s2 + shift**2) / n), 1 / r


def test_useful_part_matches_the_closed_form_on_a_quadratic():
    lam, beta, gamma, n = 2.0, 1.5, 4.0, 4000
    tau, a = 1 / gamma, beta * lam
    c = torch.tensor([0.3, 0.1, -0.4], dtype=torch.float64)
    x0 = torch.tensor([0.6, -0.8, 0.4], dtype=torch.float64)
    m = Point(x0)
    r = diagnose_moment_matching(
        m,
        lambda: 0.5 * lam * ((m.a - c) ** 2).sum(),
        gamma=gamma,
        samples=n,
        beta=beta,
        generator=torch.Generator().manual_seed(1),
    )
    e = x0 - c
    want = float(e.norm()) * a * tau / (1 + a * tau)  # |E_rho[delta]|, along -grad f
    se, ess_frac = _snis_projection_se(e, a, tau, n)
    assert abs(r.useful - want) < Z * se, (r.useful, want, se)
    # ESS / n -> 1/r = 0.334 here; the ratio estimate has a relative sd of a few percent
    assert r.ess / n == pytest.approx(ess_frac, rel=0.1)
    assert r.grad_norm == pytest.approx(lam * float(e.norm()), rel=1e-12)
    assert r.signal == pytest.approx(beta * tau * lam * float(e.norm()), rel=1e-12)
    assert r.noise == pytest.approx(math.sqrt(tau * 3 / r.ess), rel=1e-12)
    assert r.dim == 3 and r.samples == n
    assert torch.equal(m.a.detach(), x0)  # measured, not taken


def test_flat_weights_give_pure_noise_of_the_predicted_norm():
    d, n, gamma = 2000, 16, 100.0
    tau = 1 / gamma
    m = Point(torch.linspace(-1, 1, d, dtype=torch.float64))
    r = diagnose_moment_matching(
        m,
        lambda: 0.5 * (m.a**2).sum(),
        gamma=gamma,
        samples=n,
        beta=1e-9,  # weights uniform to 1e-8: ESS = n
        generator=torch.Generator().manual_seed(4),
    )
    assert r.ess == pytest.approx(n, rel=1e-6)
    # |mean of n draws|^2 = (tau / n) chi^2_d: relative sd sqrt(2 / d)
    assert r.step_norm**2 / r.noise**2 == pytest.approx(1.0, abs=Z * math.sqrt(2 / d))
    assert abs(r.useful) < Z * math.sqrt(tau / n)  # its component along -grad f: N(0, tau/n)
    assert r.snr == pytest.approx(r.signal / r.noise)


@pytest.mark.parametrize(
    ("key", "value"), [("gamma", 0.0), ("gamma", math.inf), ("samples", 0), ("samples", 1.5)]
)
def test_bad_settings_are_refused(key, value):
    m = Point([1.0])
    kwargs = dict(gamma=1.0, samples=4, generator=torch.Generator())
    kwargs[key] = value
    with pytest.raises(ValueError, match=key):
        diagnose_moment_matching(m, lambda: (m.a**2).sum(), **kwargs)
