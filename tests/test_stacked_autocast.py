"""The stacked evaluation of the partial losses (eqs 22-23) under ``torch.autocast``."""

from __future__ import annotations

import torch
from torch import nn

from anisotropy.smoothing.losses import PartialLocalEntropy

# bfloat16 keeps 8 significant bits (relative rounding 2^-9 per operation); a few
# GEMMs of width <= 16 and a tanh leave the gradients within a few per cent, far
# below a real error (a gradient of the wrong configuration is O(1) off).
BF16_RTOL = 0.05


def test_stacked_linear_backward_under_bfloat16_autocast():
    # the second smoothed Linear sees the stacked input (_StackedLinear): under autocast
    # its forward GEMMs run in bfloat16 while the stacked weights stay float32; the
    # backward used to mix the two (RuntimeError: expected Float but found BFloat16)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
                          nn.Linear(16, 3))  # fmt: skip
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 6, generator=g)
    t = torch.randint(0, 3, (32,), generator=g)
    ple = PartialLocalEntropy(model, layers=("0", "2"), R=0.05, y=4)
    grads = {}
    for amp in (False, True):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            out = ple(x, t, generator=torch.Generator().manual_seed(2))
        out.loss.backward()
        grads[amp] = {n: p.grad.clone() for n, p in model.named_parameters()}
    for n, ref in grads[False].items():
        got = grads[True][n]
        assert got.dtype == torch.float32
        assert (got - ref).norm() <= BF16_RTOL * ref.norm(), n
