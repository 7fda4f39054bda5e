"""Layer signals s_I (eq. 2): direct and finite-difference checks, running statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from anisotropy import models
from anisotropy.training.signals import (
    BLOCK,
    FLUSH_EVERY,
    SignalAccumulator,
    layer_signal,
    weight_layers,
)


def _model():
    torch.manual_seed(0)
    return models.mlp(depth=2, width=7, in_features=5, classes=3).double()


def test_weight_layers_are_the_weight_matrices_by_layer_name():
    assert list(weight_layers(_model())) == ["fc1", "fc2", "fc3"]
    cnn = models.cnn_table25(in_channels=1, input_size=12, padding=1)
    assert list(weight_layers(cnn)) == [
        "conv1",
        "conv2",
        "conv3",
        "conv4",
        "conv5",
        "fc1",
        "fc2",
        "fc3",
    ]
    assert all(p.ndim >= 2 for p in weight_layers(cnn).values())


def test_signal_matches_finite_differences_of_the_loss():
    """Eq. 2 on one batch against central differences of the float64 loss.

    Step 1e-6 on a smooth (ReLU away from its kink at these inputs) loss gives
    derivative errors of order h^2 * L''' ~ 1e-12, far below the 1e-7 tolerance.
    """
    model = _model()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 5, generator=g, dtype=torch.float64)
    t = torch.randint(0, 3, (6,), generator=g)
    loss = F.cross_entropy(model(x), t)
    loss.backward()
    h = 1e-6
    for name, p in weight_layers(model).items():
        fd = torch.zeros_like(p)
        with torch.no_grad():
            for i in range(p.numel()):
                old = p.view(-1)[i].item()
                p.view(-1)[i] = old + h
                up = F.cross_entropy(model(x), t).item()
                p.view(-1)[i] = old - h
                down = F.cross_entropy(model(x), t).item()
                p.view(-1)[i] = old
                fd.view(-1)[i] = (up - down) / (2 * h)
        direct = fd.abs().sum().item() / p.numel()  # (1/N_I) sum_w |dL/dw|
        assert float(layer_signal(p.grad)) == pytest.approx(direct, rel=1e-7, abs=1e-12), name


def test_running_statistics_match_a_direct_computation_over_batches():
    model = _model()
    layers = weight_layers(model)
    acc = SignalAccumulator(layers)
    g = torch.Generator().manual_seed(2)
    per_batch = {k: [] for k in layers}
    for _ in range(7):
        x = torch.randn(9, 5, generator=g, dtype=torch.float64)
        t = torch.randint(0, 3, (9,), generator=g)
        model.zero_grad()
        F.cross_entropy(model(x), t).backward()
        acc.update()
        for k, p in layers.items():
            per_batch[k].append(p.grad.detach().numpy().ravel().copy())
    assert acc.n == 7
    summ = acc.summary()
    for k, gs in per_batch.items():
        G = np.stack(gs)  # (batches, N_I)
        s = np.abs(G).mean(axis=1)
        assert summ[k]["signal"] == pytest.approx(s.mean(), rel=1e-12)
        assert summ[k]["signal_std"] == pytest.approx(s.std(), rel=1e-9)
        assert summ[k]["grad_mean_norm"] == pytest.approx(np.linalg.norm(G.mean(0)), rel=1e-12)
        assert summ[k]["grad_std_norm"] == pytest.approx(np.sqrt(G.var(0).sum()), rel=1e-9)
        assert summ[k]["weight_norm"] == pytest.approx(
            np.linalg.norm(layers[k].detach().numpy()), rel=1e-12
        )
        assert summ[k]["numel"] == G.shape[1]
    acc.reset()
    assert acc.n == 0


def test_variance_of_gradients_with_a_large_offset_keeps_its_precision():
    """A sum of squares E||g||^2 - ||E g||^2 in float64 would lose a variance of 1e-6
    under an offset of 1e8 (cancellation error ~ 1e16 * 2e-16 ~ 1).  Welford deviations
    from the running mean of a group avoid the cancellation: that mean, a float64 sum of
    up to 31 values ~1e8, is rounded by <= 3e-8 * 31 ~ 1e-6 absolute (1e-3 of the spread
    of 1e-3) and enters M2 to first order only, averaged over 300 deviations of random
    sign to ~1e-6 relative (measured 2e-7 to 9e-7 over group sizes 16 and 32):
    tolerance 1e-5."""
    p = nn.Parameter(torch.zeros(3, 2, dtype=torch.float64))
    acc = SignalAccumulator({"w": p})
    rng = np.random.default_rng(3)
    G = 1e8 + 1e-3 * rng.standard_normal((50, 6))
    for row in G:
        p.grad = torch.from_numpy(row.reshape(3, 2).copy())
        acc.update()
    s = acc.summary()["w"]
    assert s["grad_std_norm"] == pytest.approx(np.sqrt(G.var(0).sum()), rel=1e-5)
    # each batch's s_I is itself a float64 mean of six ~1e8 numbers, rounded to ~2e-8
    # absolute (both here and in numpy), i.e. ~5e-5 of its std of ~4e-4: tolerance 1e-4
    assert s["signal_std"] == pytest.approx(np.abs(G).mean(1).std(), rel=1e-4)


def test_errors():
    with pytest.raises(ValueError, match="at least one weight layer"):
        SignalAccumulator({})
    acc = SignalAccumulator(weight_layers(_model()))
    with pytest.raises(ValueError, match="no minibatch accumulated"):
        acc.summary()
    with pytest.raises(ValueError, match="has no gradient"):
        acc.update()
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="block must be an integer >= 1 or None"):
            SignalAccumulator(weight_layers(_model()), block=bad)
    p = nn.Parameter(torch.zeros(4, 3))
    acc = SignalAccumulator({"w": p})
    p.grad = torch.ones(4, 3)
    acc.update()
    p.data, p.grad = torch.zeros(5, 3), torch.ones(5, 3)  # the layer was resized
    with pytest.raises(ValueError, match="changed its gradient's shape, dtype or device"):
        acc.update()


@pytest.mark.parametrize("block", [97, None])
def test_float32_gradients_match_a_float64_computation_over_many_batches(block):
    """Float32 training: per-step sums, deviations and group sums (merged every
    FLUSH_EVERY batches) run in float32, totals in float64. Against numpy float64 on the
    same float32 gradients the error is float32 rounding: a group sum of <= 32 terms
    carries <= 32 * 2^-24 ~ 2e-6 relative, torch's cascaded sums and BLAS dots ~1e-7;
    the variance differences add a factor of a few, so the tolerance is 1e-5 relative.
    A block of 97 elements (not a divisor of the layer's 1200) runs the blocked path
    with a ragged last block; ``None`` the whole-layer path of other devices."""
    p = nn.Parameter(torch.zeros(40, 30))
    acc = SignalAccumulator({"w": p}, block=block)
    rng = np.random.default_rng(4)
    n = 3 * FLUSH_EVERY + 5  # several merges and an open group at summary()
    G = (0.3 + rng.standard_normal((n, 1200))).astype(np.float32)
    for row in G:
        p.grad = torch.from_numpy(row.reshape(40, 30).copy())
        acc.update()
    s = acc.summary()["w"]
    G64 = G.astype(np.float64)
    assert s["signal"] == pytest.approx(np.abs(G64).mean(1).mean(), rel=1e-5)
    assert s["signal_std"] == pytest.approx(np.abs(G64).mean(1).std(), rel=1e-4)
    assert s["grad_mean_norm"] == pytest.approx(np.linalg.norm(G64.mean(0)), rel=1e-5)
    assert s["grad_std_norm"] == pytest.approx(np.sqrt(G64.var(0).sum()), rel=1e-5)


def _feed(acc: SignalAccumulator, p: nn.Parameter, grads: np.ndarray) -> dict[str, float]:
    for row in grads:
        p.grad = torch.from_numpy(row.reshape(p.shape).copy())
        acc.update()
    return acc.summary()["w"]


def _direct(grads: np.ndarray) -> dict[str, float]:
    """The logged statistics from all per-batch gradients at once, in float64."""
    G = grads.astype(np.float64)
    s = np.abs(G).mean(1)
    return {
        "signal": s.mean(),
        "signal_std": s.std(),
        "grad_mean_norm": np.linalg.norm(G.mean(0)),
        "grad_std_norm": np.sqrt(G.var(0).sum()),
    }


def test_a_layer_larger_than_a_block_matches_a_float64_computation():
    """The default CPU path on a 300 x 300 float32 layer (two blocks of BLOCK, the
    second ragged) over two merged groups and an open one.  s_I of a batch is a float32
    sum rounded to ~3e-8 relative, and s_I varies between batches by only ~2e-3 of its
    mean here, so its spread is known to ~1e-5 (tolerance 1e-4); the gradient's
    statistics are sums of squared deviations (BLAS dots, ~3e-8) and a float32 group
    sum (<= 32 * 2^-24 ~ 2e-6 per coordinate, entering to first order): tolerance 1e-6."""
    assert BLOCK < 300 * 300
    p = nn.Parameter(torch.zeros(300, 300))
    grads = 0.3 + np.random.default_rng(5).standard_normal((2 * FLUSH_EVERY + 5, 90000))
    s = _feed(SignalAccumulator({"w": p}), p, grads.astype(np.float32))
    ref = _direct(grads.astype(np.float32))
    assert s["signal"] == pytest.approx(ref["signal"], rel=1e-7)
    assert s["signal_std"] == pytest.approx(ref["signal_std"], rel=1e-4)
    assert s["grad_mean_norm"] == pytest.approx(ref["grad_mean_norm"], rel=1e-6)
    assert s["grad_std_norm"] == pytest.approx(ref["grad_std_norm"], rel=1e-6)


@pytest.mark.parametrize("n", [1, 2, FLUSH_EVERY, FLUSH_EVERY + 1, 2 * FLUSH_EVERY + 3])
def test_periods_of_any_length_and_reused_buffers_give_the_direct_statistics(n):
    """Group boundaries (a period of one batch, exactly one group, a group opened by a
    single batch) and a second period in the same accumulator, whose buffers are
    overwritten, not cleared: float64 gradients, so agreement is to rounding (1e-10)."""
    p = nn.Parameter(torch.zeros(5, 4, dtype=torch.float64))
    acc = SignalAccumulator({"w": p}, block=3)
    rng = np.random.default_rng(6)
    _feed(acc, p, 2.0 + rng.standard_normal((FLUSH_EVERY + 7, 20)))  # a longer first period
    acc.reset()
    grads = rng.standard_normal((n, 20)) - 0.5
    s, ref = _feed(acc, p, grads), _direct(grads)
    assert acc.n == n
    for key, value in ref.items():
        assert s[key] == pytest.approx(value, rel=1e-10, abs=1e-14), key
