"""The smoothed losses under ``torch.autocast`` (bfloat16 on CPU): per-configuration
losses and the reductions of eqs 22-23 in float32, gradients within bfloat16's precision
of the float32 ones."""

from __future__ import annotations

import pytest
import torch

from anisotropy.models import mlp
from anisotropy.smoothing.accumulation import accumulate_smoothed
from anisotropy.smoothing.losses import PartialLocalEntropy
from anisotropy.smoothing.reductions import PLA, PLEA, BetaReduction, widen_losses

# bfloat16 keeps 8 significant bits: each operation autocast runs in it (a Linear's GEMM:
# inputs and weights cast, output rounded) is off by at most ~U = 2^-8 relative, and to
# first order these errors add along the longest path.  The loss passes K_LOSS = 3 such
# GEMMs (the three Linear layers of the MLP); a weight gradient K_GRAD = 9 (those 3 forward,
# then per layer one GEMM for the input gradient and one for the weight gradient).  The
# bound is on the relative error of the loss and on the relative Euclidean norm of the
# error of the whole gradient vector.  Measured on these models: loss ~0.1 U, gradient
# 2-5 U, so the bounds hold with a margin of ~2x on the gradient.
U = 2.0**-8
K_LOSS, K_GRAD = 3, 9
BF16 = torch.bfloat16

# the stacked path: a second smoothed Linear after the cut (_StackedLinear.backward runs
# its GEMMs in the dtype autocast gave the forward)
STACKED = pytest.param(("fc1", "fc2"), id="fc1+fc2")


def setup(seed):
    torch.manual_seed(seed)
    model = mlp(depth=2, width=64, in_features=32, classes=10)  # float32 parameters
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 32, generator=g)
    t = torch.randint(0, 10, (64,), generator=g)
    return model, x, t


def loss_and_grad(ple, x, t, autocast):
    ple.model.zero_grad()
    with torch.autocast("cpu", dtype=BF16, enabled=autocast):
        out = ple(x, t, generator=torch.Generator().manual_seed(1))
    out.loss.backward()
    return out, torch.cat([p.grad.flatten() for p in ple.model.parameters()])


@pytest.mark.parametrize("reduction", ["pla", "plea"])
@pytest.mark.parametrize("layers", [pytest.param(("fc2",), id="fc2"), STACKED])
@pytest.mark.parametrize("seed", [0, 1])
def test_bfloat16_autocast_matches_float32(seed, layers, reduction):
    model, x, t = setup(seed)
    ple = PartialLocalEntropy(model, layers=layers, reduction=reduction, R=0.05, y=4)
    ref, g32 = loss_and_grad(ple, x, t, autocast=False)
    out, g16 = loss_and_grad(ple, x, t, autocast=True)
    # the output of the network is bfloat16, what is reduced and returned float32
    assert out.centre_output is not None and out.centre_output.dtype == BF16
    assert out.loss.dtype == out.per_sample.dtype == torch.float32
    # the reduction ran in float32 on the float32 per-configuration losses
    assert torch.equal(out.loss.detach(), ple.loss_reduction(out.per_sample))
    assert abs(out.loss.item() - ref.loss.item()) <= K_LOSS * U * ref.loss.item()
    assert ((g16 - g32).norm() / g32.norm()).item() <= K_GRAD * U
    assert g16.dtype == torch.float32


@pytest.mark.parametrize("reduction", [PLA(), PLEA(), BetaReduction(20.0)])
def test_reductions_widen_16_bit_losses_and_leave_autocast(reduction):
    L = torch.tensor([2.3125, 2.328125, 2.34375, 2.359375], dtype=BF16)  # exact in bf16
    want = reduction(L.float())
    for autocast in (False, True):
        with torch.autocast("cpu", dtype=BF16, enabled=autocast):
            got = reduction(L)
            assert got.dtype == torch.float32 and torch.equal(got, want)
            wide = torch.tensor([0.1, 0.7], dtype=torch.float64)
            assert reduction(wide).dtype == torch.float64  # wider dtypes are kept
    # the float32 log-mean-exp resolves the Jensen gap PLA - PLEA = Var/2 + O(L^3) of these
    # losses (~1.5e-4), which is below bfloat16's spacing at 2.3 (2^-6 = 0.016)
    if isinstance(reduction, PLEA):
        gap = (PLA()(L) - got).item()
        var = L.float().var(unbiased=False).item()
        assert gap == pytest.approx(var / 2, rel=1e-2)
    assert widen_losses(torch.zeros(2, dtype=torch.float16)).dtype == torch.float32


def test_plain_loss_under_autocast_is_float32():
    """y = 0 and a base loss that returns bfloat16 (MSE is not on autocast's float32 list)."""
    model, x, t = setup(0)

    def mse(out, t):
        return ((out - torch.nn.functional.one_hot(t, 10).to(out.dtype)) ** 2).mean()

    ple = PartialLocalEntropy(model, mse, layers="fc2", y=0)
    with torch.autocast("cpu", dtype=BF16):
        out = ple(x, t)
    assert out.loss.dtype == out.per_sample.dtype == torch.float32


def test_accumulation_under_autocast_is_the_batch_under_autocast():
    """accumulate_smoothed inside autocast: the micro-batches' bfloat16 evaluation gives the
    gradient of the whole batch's bfloat16 evaluation within the same K_GRAD U."""
    model, x, t = setup(0)
    ple = PartialLocalEntropy(model, layers="fc2", reduction="plea", R=0.05, y=4)
    _, want = loss_and_grad(ple, x, t, autocast=True)
    model.zero_grad()
    with torch.autocast("cpu", dtype=BF16):
        out = accumulate_smoothed(
            ple,
            list(zip(x.split(32), t.split(32), strict=True)),
            generator=torch.Generator().manual_seed(1),
        )
    got = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert out.loss.dtype == torch.float32
    assert ((got - want).norm() / want.norm()).item() <= K_GRAD * U
