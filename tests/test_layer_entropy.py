"""Streamed layer free entropy (analysis.free_entropy.layer_entropy) against the reference path.

The streamed estimator evaluates the same Monte Carlo sum as
``local_free_entropy(layer_loss_function(...), method="mc")`` but through the
training path (prefix once, batched suffix, the training sampler).  With the
draws reproduced from the same generator state, the per-sample losses must agree
to float64 rounding (tolerance 1e-12: the two paths add the same numbers in a
different order), hence so must the estimate and its standard error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from analysis.free_entropy.layer_entropy import layer_free_entropy
from analysis.free_entropy.layer_loss import layer_loss_function, layer_weight_vector
from anisotropy.kernels import BoxKernel, GaussianKernel
from anisotropy.models import mlp
from anisotropy.smoothing.losses import PartialLocalEntropy

#: float64 agreement of two evaluation orders of the same sums
RTOL = 1e-12


@pytest.fixture
def model_batch():
    torch.manual_seed(0)
    model = mlp(depth=2, width=12, in_features=6, classes=3).double().eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20, 6, generator=g, dtype=torch.float64)
    t = torch.randint(0, 3, (20,), generator=g)
    return model, x, t


@pytest.mark.parametrize("layer", ["fc1", "fc2", "fc3"])
@pytest.mark.parametrize("kernel", [BoxKernel(0.05), GaussianKernel(400.0)])
def test_streamed_estimate_equals_reference_path_on_the_same_draws(model_batch, layer, kernel):
    model, x, t = model_batch
    y, chunk, beta = 11, 4, 2.0
    res = layer_free_entropy(
        model,
        layer,
        x,
        t,
        kernel=kernel,
        y=y,
        chunk=chunk,
        beta=beta,
        generator=torch.Generator().manual_seed(5),
    )
    # the same draws: chunks of 4, 4, 3 from a generator in the same state
    g = torch.Generator().manual_seed(5)
    draws = []
    for b in (4, 4, 3):
        ple = PartialLocalEntropy(
            model, layers=[f"{layer}.weight"], kernel=kernel, y=b, include_centre=False
        )
        draws.append(ple.sample(g)[f"{layer}.weight"].reshape(b, -1).numpy())
    w = layer_weight_vector(model, layer)
    losses = layer_loss_function(model, layer, x, t)(w + np.concatenate(draws))
    log_w = -beta * losses
    u = np.exp(log_w - log_w.max())
    log_z = w.size * kernel.log_normaliser()
    expected = -log_z - log_w.max() - math.log(u.mean())
    assert res.estimate == pytest.approx(expected, rel=RTOL)
    assert res.stderr == pytest.approx(u.std(ddof=1) / math.sqrt(y) / u.mean(), rel=1e-9)
    assert res.n_smoothed == w.size and res.n_evaluations == y and res.method == "mc"


def test_small_radius_limit_is_centre_loss_plus_normaliser(model_batch):
    # R -> 0: F -> beta L(W) - log Z_K exactly (the weights are all e^{-beta L(W)})
    model, x, t = model_batch
    R = 1e-9
    res = layer_free_entropy(
        model, "fc2", x, t, kernel=BoxKernel(R), y=8, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        centre = torch.nn.functional.cross_entropy(model(x), t).item()
    n = model.fc2.weight.numel()
    assert res.estimate == pytest.approx(centre - n * math.log(2 * R), rel=1e-9)
    assert res.stderr < 1e-8


def test_bad_input_is_named(model_batch):
    model, x, t = model_batch
    g = torch.Generator()
    with pytest.raises(ValueError, match="layer_name"):
        layer_free_entropy(model, "fc9", x, t, kernel=BoxKernel(0.1), y=4, generator=g)
    with pytest.raises(ValueError, match="y"):
        layer_free_entropy(model, "fc1", x, t, kernel=BoxKernel(0.1), y=1, generator=g)
    with pytest.raises(ValueError, match="chunk"):
        layer_free_entropy(model, "fc1", x, t, kernel=BoxKernel(0.1), y=4, chunk=0, generator=g)
    with pytest.raises(ValueError, match="batch size"):
        layer_free_entropy(model, "fc1", x, t[:3], kernel=BoxKernel(0.1), y=4, generator=g)
