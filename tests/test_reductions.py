"""Tests of the reductions as objects (eqs 22-23, the beta family, and reductions of
a user's own passed to the smoothed loss)."""

from __future__ import annotations

import math

import pytest
import torch

from anisotropy.models import mlp
from anisotropy.smoothing.losses import PartialLocalEntropy, reduce_losses
from anisotropy.smoothing.reductions import (
    PLA,
    PLEA,
    REDUCTION_CLASSES,
    REDUCTIONS,
    BetaReduction,
    LossReduction,
    as_reduction,
    beta_mean,
)
from anisotropy.training.config import SmoothingConfig
from perturbed_copies import per_draw

# float64 agreement of two implementations of the same sums: a few hundred ulps of O(1)
# quantities, far below any real discrepancy
TIGHT = 1e-10
# central differences with h = 1e-6 in float64: truncation ~h^2 |f'''| ~ 1e-12, rounding
# ~1e-16/h = 1e-10; 1e-7 leaves a wide margin
FD_STEP, FD_TOL = 1e-6, 1e-7


def previous_reduce_losses(losses, *, reduction="pla", beta=1.0):
    """The name-branching implementation the objects replaced, kept verbatim: the
    built-in names must reproduce it bit for bit."""
    if losses.numel() == 1:
        return losses[0]
    if reduction == "pla":
        return losses.mean()
    b = 1.0 if reduction == "plea" else beta
    c = losses.detach().min()
    return c - torch.log1p(torch.expm1(-b * (losses - c)).mean()) / b


class CVaR(LossReduction):
    """Conditional value at risk: the mean of the ceil(q S) largest losses (a user's own)."""

    def __init__(self, q):
        if not 0.0 < q <= 1.0:
            raise ValueError(f"q must lie in (0, 1], got {q!r}")
        self.q = q

    def reduce(self, losses):
        k = math.ceil(self.q * losses.shape[0])
        return losses.topk(k, dim=0).values.mean(0)


class Worst(LossReduction):
    """The largest loss (a user's own, the q -> 0 limit of CVaR)."""

    def reduce(self, losses):
        return losses.amax(0)


# ----------------------------------------------------------------- the built-in names
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name,beta", [("pla", 1.0), ("plea", 1.0), ("beta", 0.37), ("beta", 9.0)])
def test_builtin_names_are_bit_identical_to_the_branching_code(name, beta, dtype):
    g = torch.Generator().manual_seed(4)
    for s in (1, 2, 5, 17, 1000):
        L0 = (3.0 * torch.rand(s, generator=g, dtype=torch.float64)).to(dtype)
        new_in, old_in = L0.clone().requires_grad_(), L0.clone().requires_grad_()
        new = reduce_losses(new_in, reduction=name, beta=beta)
        old = previous_reduce_losses(old_in, reduction=name, beta=beta)
        assert torch.equal(new, old), (s, new, old)
        if s > 1:
            new.backward()
            old.backward()
            assert torch.equal(new_in.grad, old_in.grad), s


def test_registry_maps_every_name_to_its_class():
    assert tuple(REDUCTION_CLASSES) == REDUCTIONS == ("pla", "plea", "beta")
    assert as_reduction("pla") == PLA() and as_reduction("plea") == PLEA()
    assert as_reduction("beta") == BetaReduction(1.0)
    assert as_reduction("beta", beta=2.5) == BetaReduction(2.5)
    assert as_reduction("pla", beta=2.5) == PLA()  # a configuration always carries beta
    assert [as_reduction(n).name for n in REDUCTIONS] == list(REDUCTIONS)
    mine = CVaR(0.5)
    assert as_reduction(mine) is mine and as_reduction(mine, beta=None) is mine
    with pytest.raises(ValueError, match="beta must be left unset"):
        as_reduction(mine, beta=2.0)
    with pytest.raises(ValueError, match="unknown reduction 'max'; valid: 'pla', 'plea', 'beta'"):
        as_reduction("max")
    with pytest.raises(TypeError, match="LossReduction instance or one of the names"):
        as_reduction(torch.mean)
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match=r"beta must lie in \(0, inf\)"):
            BetaReduction(bad)


def test_configuration_builds_the_reduction_by_name():
    assert SmoothingConfig(layers=["fc2"], reduction="beta", beta=3.0).make_reduction() == (
        BetaReduction(3.0)
    )
    assert SmoothingConfig(layers=["fc2"], reduction="plea", beta=3.0).make_reduction() == PLEA()
    with pytest.raises(ValueError, match="smoothing.reduction"):
        SmoothingConfig(layers=["fc2"], reduction="max")  # type: ignore[arg-type]


# --------------------------------------------------------------- closed forms, shapes
def test_closed_forms_and_limits():
    L = torch.tensor([0.3, 1.2, 0.7, 2.0], dtype=torch.float64)
    assert PLA()(L).item() == pytest.approx(1.05, rel=1e-15)
    plea = -math.log(sum(math.exp(-v) for v in L.tolist()) / 4)
    assert PLEA()(L).item() == pytest.approx(plea, rel=1e-14)
    assert BetaReduction(1.0)(L).item() == PLEA()(L).item()
    # the same number as the textbook logsumexp form
    for b in (0.1, 1.0, 30.0):
        lse = -(torch.logsumexp(-b * L, 0) - math.log(4)) / b
        assert BetaReduction(b)(L).item() == pytest.approx(lse.item(), rel=1e-13)
    # beta -> 0: mean L - (beta/2) Var L; beta -> inf: min L + log(S)/beta at most
    var = L.var(unbiased=False).item()
    assert BetaReduction(1e-6)(L).item() - 1.05 == pytest.approx(-0.5e-6 * var, rel=1e-4)
    assert 0.3 <= BetaReduction(1e4)(L).item() <= 0.3 + math.log(4) / 1e4
    # the gradient is softmax(-beta L)
    w = L.clone().requires_grad_()
    beta_mean(w, 2.0).backward()
    torch.testing.assert_close(w.grad, torch.softmax(-2.0 * L, 0), rtol=0, atol=1e-15)


@pytest.mark.parametrize("reduction", [PLA(), PLEA(), BetaReduction(3.0), CVaR(0.3), Worst()])
def test_trailing_axes_are_reduced_independently(reduction):
    L = torch.rand(6, 3, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = reduction(L)
    assert out.shape == (3, 2)
    for i in range(3):
        for j in range(2):
            # the summation order may differ between axes: agree to rounding
            torch.testing.assert_close(
                out[i, j], reduction(L[:, i, j].contiguous()), rtol=0, atol=TIGHT
            )


@pytest.mark.parametrize("reduction", [PLA(), PLEA(), BetaReduction(0.37), CVaR(0.1), Worst()])
def test_single_loss_is_returned_unchanged_and_bad_shapes_raise(reduction):
    L = torch.tensor([0.123456789], dtype=torch.float64)
    assert torch.equal(reduction(L), L[0])
    for bad in (torch.tensor(1.0), torch.zeros(0), torch.zeros(0, 3)):
        with pytest.raises(ValueError, match=r"losses must have shape \(S, \.\.\.\) with S >= 1"):
            reduction(bad)
    with pytest.raises(TypeError, match="losses must be a torch.Tensor"):
        reduction([0.1, 0.2])


@pytest.mark.parametrize(
    "reduction,linear",
    [(PLA(), True), (PLEA(), False), (BetaReduction(0.5), False), (CVaR(0.5), False)],
)
def test_linear_flag_says_whether_the_reduction_is_a_fixed_weighted_sum(reduction, linear):
    """``linear`` (one-pass gradient accumulation) is claimed exactly when M is additive:
    M(L + L') = M(L) + M(L') for all L, L' (checked on random losses)."""
    g = torch.Generator().manual_seed(3)
    L, L2 = torch.rand(2, 5, generator=g, dtype=torch.float64)
    additive = abs((reduction(L + L2) - reduction(L) - reduction(L2)).item()) < TIGHT
    assert reduction.linear is linear is additive
    assert LossReduction.linear is False  # the safe default of a user's subclass


# ------------------------------------------------------- a user's reduction in training
def small_mlp(seed=0):
    torch.manual_seed(seed)
    return mlp(depth=2, width=7, in_features=5, classes=3, activation="tanh").double()


def batch(seed=1, n=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, 5), generator=g, dtype=torch.float64), torch.randint(
        0, 3, (n,), generator=g
    )


def independent_loop(model, ple, x, t, seed, weights):
    """S deep copies with the weights shifted in place and S backward passes; the
    gradient is sum_a w_a grad L_a with ``w = weights(L)``, the derivative of the
    reduction written out by hand."""
    deltas = ple.sample(torch.Generator().manual_seed(seed))
    s = ple.y + int(ple.include_centre)
    L, grads = per_draw(model, ple, x, t, deltas)
    w = weights(L)
    return L, {n: sum(w[i] * grads[i][n] for i in range(s)) for n in grads[0]}


def top_weights(k):
    """d CVaR / d L_a: 1/k on the k largest losses (no ties in these continuous draws)."""

    def weights(L):
        w = torch.zeros_like(L)
        w[L.topk(k).indices] = 1.0 / k
        return w

    return weights


@pytest.mark.parametrize(
    "reduction,weights,value",
    [
        (CVaR(0.4), top_weights(2), lambda L: L.topk(2).values.mean()),  # ceil(0.4 * 5) = 2
        (Worst(), top_weights(1), lambda L: L.max()),
        (CVaR(1.0), lambda L: torch.full_like(L, 1 / L.numel()), lambda L: L.mean()),
    ],
)
@pytest.mark.parametrize("cut", ["auto", "off"])
def test_users_reduction_matches_an_independent_loop(reduction, weights, value, cut):
    model = small_mlp()
    x, t = batch()
    ple = PartialLocalEntropy(
        model, layers=("fc1", "fc2"), reduction=reduction, R=0.3, y=4, cut=cut
    )
    assert ple.reduction is reduction and ple.loss_reduction is reduction
    model.zero_grad()
    out = ple(x, t, generator=torch.Generator().manual_seed(7))
    out.loss.backward()
    L, gref = independent_loop(model, ple, x, t, 7, weights)
    torch.testing.assert_close(out.per_sample, L, rtol=0, atol=TIGHT)
    torch.testing.assert_close(out.loss.detach(), value(L), rtol=0, atol=TIGHT)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, gref[n], rtol=0, atol=TIGHT, msg=n)


@pytest.mark.parametrize("reduction", [CVaR(0.4), Worst()])
def test_users_reduction_gradient_matches_finite_differences(reduction):
    # displacements held fixed by re-seeding the generator for every evaluation
    model = small_mlp()
    x, t = batch()
    ple = PartialLocalEntropy(model, layers=("fc1", "fc2"), reduction=reduction, R=0.25, y=4)
    model.zero_grad()
    ple(x, t, generator=torch.Generator().manual_seed(11)).loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    pick = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, p in model.named_parameters():
            flat = p.view(-1)
            for j in torch.randperm(flat.numel(), generator=pick)[:4].tolist():
                vals = []
                for sign in (1.0, -1.0):
                    flat[j] += sign * FD_STEP
                    vals.append(ple(x, t, generator=torch.Generator().manual_seed(11)).loss.item())
                    flat[j] -= sign * FD_STEP
                fd = (vals[0] - vals[1]) / (2 * FD_STEP)
                assert abs(fd - grads[n].view(-1)[j].item()) < FD_TOL, (n, j)


def test_instance_and_beta_are_exclusive_and_names_keep_working():
    model = small_mlp()
    with pytest.raises(ValueError, match="beta must be left unset when reduction is a CVaR"):
        PartialLocalEntropy(model, reduction=CVaR(0.5), beta=2.0)
    with pytest.raises(ValueError, match="unknown reduction 'cvar'"):
        PartialLocalEntropy(model, reduction="cvar")  # type: ignore[arg-type]
    ple = PartialLocalEntropy(model, reduction="beta", beta=2.0)
    assert ple.reduction == "beta" and ple.beta == 2.0
    assert ple.loss_reduction == BetaReduction(2.0)
    # an instance of a built-in is the same loss as its name
    x, t = batch()
    by_name = ple(x, t, generator=torch.Generator().manual_seed(3)).loss
    inst = PartialLocalEntropy(model, reduction=BetaReduction(2.0))
    assert torch.equal(inst(x, t, generator=torch.Generator().manual_seed(3)).loss, by_name)
