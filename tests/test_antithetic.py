r"""Antithetic pairs ``(dW, -dW)`` in the partial losses (eqs 22-23): law, paths, variance.

The variance predictions, for a loss that is a sum over coordinates of
:math:`\phi(w) = a w^2/2 + c w^3/6` and displacements of variance
:math:`\sigma^2` and :math:`V_4 = \mathrm{Var}(d^2)` per coordinate, ``S = y + 1``
configurations (centre included):

* independent draws: the PLA gradient of a coordinate is
  :math:`\phi'(w) + \frac1S\sum_a [(a + c w) d_a + \frac c2 d_a^2]`, so its variance is
  :math:`\frac{y}{S^2}[(a + c w)^2\sigma^2 + c^2 V_4/4]` (odd and even terms are
  uncorrelated for a symmetric law);
* antithetic pairs: :math:`\phi'(w + d) + \phi'(w - d) = 2\phi'(w) + c d^2`, the odd
  terms cancel and the gradient is :math:`\phi'(w) + \frac1S\sum_{pairs} c\,d_p^2`,
  of variance :math:`\frac{y/2}{S^2} c^2 V_4`; the mean
  :math:`\phi'(w) + \frac{y}{S}\frac c2\sigma^2` is the same (PLA stays unbiased).

With ``c = 0`` (a quadratic loss) the antithetic gradient is exact:
:math:`A w` for :math:`L = \frac12 w^T A w`, whatever the draws.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from anisotropy.kernels import BoxKernel, Kernel
from anisotropy.smoothing.losses import PartialLocalEntropy
from anisotropy.smoothing.sampling import sample_perturbations
from anisotropy.smoothing.stacked import children_for, stacked_outputs
from perturbed_copies import per_draw

ALPHA = 1e-3  # KS: a correct sampler fails one seeded test in a thousand
# float64 agreement of two evaluations of the same sums: far below an O(R) error
TIGHT = 1e-10
# Seeded variance checks: |estimate - prediction| within this many standard errors
# of the estimate (a correct prediction fails with probability ~ 6e-7).
N_SE = 5.0
REPEATS = 300  # seeded gradient evaluations per variance estimate


def box_cdf(z, R, k):
    """CDF of Uniform(-R, R) + Logistic(0, 1/(2k)) (the normalised kernel of eqs 5-6)."""
    sp = np.logaddexp
    return (sp(0.0, 2 * k * (z + R)) - sp(0.0, 2 * k * (z - R))) / (4 * k * R)


# ------------------------------------------------------------------------------ law
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_draws_are_exact_pairs_with_the_kernel_law(dtype):
    R, k, y = 0.3, 2.0, 4
    d = sample_perturbations(
        [("w", torch.zeros(5_000, dtype=dtype))],
        y,
        generator=torch.Generator().manual_seed(3),
        kernel=BoxKernel(R, k),
        antithetic=True,
    )["w"]
    assert d.shape == (y, 5_000) and d.dtype == dtype
    assert torch.equal(d[y // 2 :], -d[: y // 2])  # bitwise opposite
    assert not torch.equal(d[0], d[1])  # the pairs are independent draws
    for row in (d[: y // 2], d[y // 2 :]):  # each half, hence every row, has the law
        z = row.double().reshape(-1).numpy()
        assert stats.kstest(z, lambda v: box_cdf(v, R, k)).pvalue > ALPHA


def test_bad_antithetic_arguments():
    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="y must be even"):
        PartialLocalEntropy(model, layers="0", y=3, antithetic=True)
    with pytest.raises(TypeError, match="antithetic must be a bool"):
        PartialLocalEntropy(model, layers="0", y=2, antithetic="yes")

    class Skewed(Kernel):  # not symmetric: -dW would not follow the kernel
        def log_kernel(self, x):
            return x

        def log_normaliser(self):
            return 0.0

        def sample(self, shape, *, generator, dtype=None, device=None):
            return torch.rand(shape, generator=generator, dtype=dtype)

    with pytest.raises(NotImplementedError, match="symmetric"):
        PartialLocalEntropy(model, layers="0", y=2, kernel=Skewed(), antithetic=True)
    # y = 0 has no pair and is the plain loss
    assert PartialLocalEntropy(model, layers="0", y=0, antithetic=True).antithetic


# ---------------------------------------------------------------------------- paths
def small_mlp():
    torch.manual_seed(4)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()


@pytest.mark.parametrize("reduction", ["pla", "plea"])
@pytest.mark.parametrize("cut", ["auto", "off"])
@pytest.mark.parametrize("layers", [("0",), ("2",), ("0", "2")])
def test_antithetic_matches_naive_loop(layers, cut, reduction):
    # the half GEMM of the shared-input Linear (cut="auto", first smoothed layer "0")
    # against S deep copies with the weights shifted by the drawn pairs
    model = small_mlp()
    g = torch.Generator().manual_seed(11)
    x = torch.randn(6, 5, generator=g, dtype=torch.float64)
    t = torch.randint(0, 3, (6,), generator=g)
    ple = PartialLocalEntropy(
        model, layers=layers, R=0.3, y=4, reduction=reduction, cut=cut, antithetic=True
    )
    out = ple(x, t, generator=torch.Generator().manual_seed(5))
    model.zero_grad()
    out.loss.backward()
    assert ple.include_centre  # the reference's first draw is the centre
    L, grads = per_draw(model, ple, x, t, ple.sample(torch.Generator().manual_seed(5)))
    w = torch.softmax(-L, 0) if reduction == "plea" else torch.full_like(L, 1 / L.numel())
    torch.testing.assert_close(out.per_sample, L, rtol=0, atol=TIGHT)
    for n, p in model.named_parameters():
        ref = sum(wi * gi[n] for wi, gi in zip(w, grads, strict=True))
        torch.testing.assert_close(p.grad, ref, rtol=0, atol=TIGHT, msg=n)


def test_stacked_outputs_antithetic_flag_uses_the_pairs():
    # a mapping of pairs with antithetic=True gives the outputs of the full GEMM
    model = small_mlp()
    x = torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    half = torch.randn(2, 7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    deltas = {"0.weight": torch.cat([half, -half])}
    pieces = children_for(model, ("0.weight",), cut=True)
    full = stacked_outputs(pieces, x, deltas, centre=True)
    pairs = stacked_outputs(pieces, x, deltas, centre=True, antithetic=True)
    torch.testing.assert_close(pairs, full, rtol=0, atol=TIGHT)
    with pytest.raises(ValueError, match="even"):
        stacked_outputs(pieces, x, {"0.weight": half[:1]}, centre=True, antithetic=True)


# ------------------------------------------------------------------------- variance
class Polynomial(nn.Module):
    """``sum_ij phi(W_ij)``, ``phi(w) = a w^2/2 + c w^3/6``, as a loss of the output."""

    def __init__(self, a, c):
        super().__init__()
        self.a, self.c = a, c

    def forward(self, out, targets):
        return (self.a * out**2 / 2 + self.c * out**3 / 6).sum()


def polynomial_gradients(a, c, R, y, antithetic, n=6, repeats=REPEATS):
    """``repeats`` seeded PLA gradients of ``sum phi(W_ij)`` (the identity input gives
    out = W^T, so the loss sums phi over the coordinates); and the centre ``W``."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(n, n, bias=False)).double()
    ple = PartialLocalEntropy(model, Polynomial(a, c), layers="0", R=R, y=y, antithetic=antithetic)
    eye = torch.eye(n, dtype=torch.float64)
    g = torch.Generator().manual_seed(17)
    grads = []
    for _ in range(repeats):
        model.zero_grad()
        ple(eye, eye, generator=g).loss.backward()
        grads.append(model[0].weight.grad.clone())
    return torch.stack(grads).numpy(), model[0].weight.detach().numpy()


@pytest.mark.parametrize("antithetic", [False, True])
def test_pla_gradient_variance_on_a_cubic_matches_prediction(antithetic):
    a, c, R, y = 1.0, 3.0, 0.4, 4
    s = y + 1
    grads, w = polynomial_gradients(a, c, R, y, antithetic)
    var_d = R**2 / 3  # the box at k = inf: Uniform(-R, R)
    var_d2 = R**4 / 5 - var_d**2  # Var(d^2) = E d^4 - (E d^2)^2 = 4 R^4 / 45
    mean = a * w + c * w**2 / 2 + (y / s) * (c / 2) * var_d  # the same for both
    if antithetic:
        var = np.full_like(w, (y / 2) / s**2 * c**2 * var_d2)
    else:
        var = y / s**2 * ((a + c * w) ** 2 * var_d + c**2 * var_d2 / 4)
    dev2 = ((grads - mean) ** 2).reshape(len(grads), -1).sum(1)  # per repeat
    se = dev2.std(ddof=1) / math.sqrt(len(grads))
    assert abs(dev2.mean() - var.sum()) <= N_SE * se
    # unbiased: the mean gradient per coordinate within N_SE standard errors
    z = (grads.mean(0) - mean) / np.sqrt(var / len(grads))
    assert np.abs(z).max() <= N_SE


def test_quadratic_antithetic_pla_gradient_is_exact():
    # c = 0: L = 1/2 w^T A w per coordinate (A = a I here); the pair mean of the
    # gradients is A w exactly, so the antithetic variance is 0 (float64 rounding only)
    a = 1.7
    grads, w = polynomial_gradients(a, 0.0, 0.5, 6, True, repeats=5)
    np.testing.assert_allclose(grads, np.broadcast_to(a * w, grads.shape), rtol=0, atol=1e-14)


def test_quadratic_general_a_antithetic_exact_and_independent_variance():
    # L(W) = 1/2 sum_b |W x_b|^2 = 1/2 sum_i W_i^T A W_i with A = X^T X (not diagonal):
    # independent PLA: Var(G_ij) = (y sigma^2 / S^2) (A^2)_jj; antithetic: exactly W A
    n_out, n_in, y, R = 3, 5, 4, 0.2
    s = y + 1
    x = torch.randn(8, n_in, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    A = (x.T @ x).numpy()
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(n_in, n_out, bias=False)).double()
    w = model[0].weight.detach().numpy()

    def grads(antithetic, repeats):
        ple = PartialLocalEntropy(
            model, lambda o, t: (o**2).sum() / 2, layers="0", R=R, y=y, antithetic=antithetic
        )
        g = torch.Generator().manual_seed(23)
        out = []
        for _ in range(repeats):
            model.zero_grad()
            ple(x, x, generator=g).loss.backward()
            out.append(model[0].weight.grad.clone())
        return torch.stack(out).numpy()

    anti = grads(True, 5)
    np.testing.assert_allclose(anti, np.broadcast_to(w @ A, anti.shape), rtol=1e-13, atol=1e-13)
    ind = grads(False, REPEATS)
    var = np.broadcast_to(y * (R**2 / 3) / s**2 * np.diag(A @ A), w.shape)
    dev2 = ((ind - w @ A) ** 2).reshape(len(ind), -1).sum(1)
    se = dev2.std(ddof=1) / math.sqrt(len(ind))
    assert abs(dev2.mean() - var.sum()) <= N_SE * se


def test_plea_gradient_variance_drops_on_a_quadratic():
    # PLEA weights softmax(-L_a): to first order in d its gradient is the PLA one (the
    # centred weights multiply the common gradient), so antithetic pairs cancel the
    # O(R) term and leave O(R^2) terms (L_a - L) A d_a: the variance ratio is O(R^2)
    a, R, y, n = 1.0, 0.05, 4, 5
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(n, n, bias=False)).double()
    eye = torch.eye(n, dtype=torch.float64)
    variances = {}
    for antithetic in (False, True):
        ple = PartialLocalEntropy(
            model, Polynomial(a, 0.0), layers="0", R=R, y=y, reduction="plea",
            antithetic=antithetic,
        )  # fmt: skip
        g = torch.Generator().manual_seed(29)
        grads = []
        for _ in range(100):
            model.zero_grad()
            ple(eye, eye, generator=g).loss.backward()
            grads.append(model[0].weight.grad.clone())
        variances[antithetic] = torch.stack(grads).var(0).sum().item()
    # the independent PLEA variance is the PLA one, y sigma^2 a^2 / S^2 per coordinate,
    # up to O(R) relative corrections (|W| ~ 0.3, R = 0.05) and the sampling error of
    # 100 repeats (~ 15 % relative for 25 coordinates)
    predicted = n * n * y * (R**2 / 3) * a**2 / (y + 1) ** 2
    assert variances[False] == pytest.approx(predicted, rel=0.25)
    assert variances[True] < 0.05 * variances[False]
