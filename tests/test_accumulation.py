"""Gradient accumulation and several processes: pre-drawn displacements (``draws=``), the
``sync=`` surrogate and :func:`accumulate_smoothed` give the gradient of the whole batch
(eqs 22-23 of the paper)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from anisotropy.models import mlp
from anisotropy.smoothing.accumulation import accumulate_smoothed
from anisotropy.smoothing.losses import PartialLocalEntropy
from anisotropy.smoothing.reductions import BetaReduction, LossReduction

# float64 agreement of two summation orders of the same O(1) sums over a dozen samples and
# a handful of configurations: a few ulps (2.2e-16 each); 1e-12 leaves a wide margin and is
# far below any real discrepancy (the per-micro-batch PLEA error below is ~1e-4)
EXACT = 1e-12
SIZES = (5, 4, 3)  # unequal micro-batches: the n_m / B weights matter
BATCH = sum(SIZES)


class CVaR(LossReduction):
    """A user's nonlinear reduction without a name: the mean of the ceil(q S) largest."""

    def __init__(self, q):
        self.q = q

    def reduce(self, losses):
        return losses.topk(math.ceil(self.q * losses.shape[0]), dim=0).values.mean(0)


def small_mlp(seed=0):
    torch.manual_seed(seed)
    return mlp(depth=2, width=7, in_features=5, classes=3, activation="tanh").double()


def data(n=BATCH, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, 5, generator=g, dtype=torch.float64),
        torch.randint(0, 3, (n,), generator=g),
    )


def split(x, t, sizes=SIZES):
    return list(zip(x.split(list(sizes)), t.split(list(sizes)), strict=True))


def grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def full_batch(ple, x, t, seed, step=0):
    """Loss, per-configuration losses and gradient of one call on the whole batch."""
    ple.model.zero_grad()
    out = ple(x, t, generator=torch.Generator().manual_seed(seed), step=step)
    out.loss.backward()
    return out.loss.detach(), out.per_sample, grads(ple.model)


def close(a, b, tol=EXACT):
    torch.testing.assert_close(a, b, rtol=0, atol=tol)


REDUCTIONS = [
    pytest.param("pla", id="pla"),
    pytest.param("plea", id="plea"),
    pytest.param(BetaReduction(3.0), id="beta3"),
    pytest.param(CVaR(0.4), id="cvar"),
]
LAYERS = [("fc2",), ("fc1", "fc2")]  # shared-input GEMM; stacked weights after the cut


# ------------------------------------------------------------------------- draws=
def test_draws_reproduce_the_call_bitwise_with_dropout():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 9), nn.Tanh(), nn.Dropout(0.3), nn.Linear(9, 3)).double()
    ple = PartialLocalEntropy(model, layers=("3",), R=0.1, y=3)
    x, t = data()
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    a = ple(x, t, generator=g1, step=2)
    b = ple(x, t, generator=g2, step=2, draws=ple.sample(g2, 2))
    assert torch.equal(a.loss, b.loss) and torch.equal(a.per_sample, b.per_sample)
    assert torch.equal(g1.get_state(), g2.get_state())
    # no generator: the draws alone (no dropout in this model)
    ple = PartialLocalEntropy(small_mlp(), layers="fc2", R=0.1, y=3)
    d = ple.sample(torch.Generator().manual_seed(3))
    c = ple(x, t, generator=torch.Generator().manual_seed(3))
    assert torch.equal(ple(x, t, draws=d).loss, c.loss)


@pytest.mark.parametrize("cut", ["auto", "off"])
@pytest.mark.parametrize("layers", LAYERS)
def test_pla_micro_batches_accumulate_to_the_batch_gradient(layers, cut):
    ple = PartialLocalEntropy(small_mlp(), layers=layers, reduction="pla", R=0.2, y=4, cut=cut)
    x, t = data()
    loss, per_sample, want = full_batch(ple, x, t, seed=5, step=1)
    draws = ple.sample(torch.Generator().manual_seed(5), 1)
    ple.model.zero_grad()
    total = 0.0
    for xm, tm in split(x, t):
        out = ple(xm, tm, step=1, draws=draws)
        (len(xm) / len(x) * out.loss).backward()
        total += len(xm) / len(x) * out.loss.item()
    close(grads(ple.model), want)
    assert total == pytest.approx(loss.item(), abs=EXACT)


def test_plea_micro_batches_in_one_pass_are_not_the_batch_gradient():
    """Why PLEA needs the two passes: softmax(-L^m) of a micro-batch is not softmax(-L)."""
    ple = PartialLocalEntropy(small_mlp(), layers="fc2", reduction="plea", R=1.0, y=4)
    x, t = data()
    _, _, want = full_batch(ple, x, t, seed=5)
    draws = ple.sample(torch.Generator().manual_seed(5))
    ple.model.zero_grad()
    for xm, tm in split(x, t):
        (len(xm) / len(x) * ple(xm, tm, draws=draws).loss).backward()
    assert (grads(ple.model) - want).abs().max() > 1e3 * EXACT


@pytest.mark.parametrize("layers", LAYERS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_accumulate_smoothed_is_the_batch_gradient(reduction, layers):
    ple = PartialLocalEntropy(small_mlp(), layers=layers, reduction=reduction, R=1.0, y=4)
    x, t = data()
    loss, per_sample, want = full_batch(ple, x, t, seed=5, step=3)
    ple.model.zero_grad()
    g = torch.Generator().manual_seed(5)
    out = accumulate_smoothed(ple, split(x, t), generator=g, step=3)
    close(grads(ple.model), want)
    close(out.loss, loss)
    close(out.per_sample, per_sample)
    assert out.centre_output is not None and out.centre_output.shape == (len(x), 3)
    assert not out.loss.requires_grad
    # the generator is left as after one call on the whole batch
    ref = torch.Generator().manual_seed(5)
    ple(x, t, generator=ref, step=3)
    assert torch.equal(g.get_state(), ref.get_state())


def test_accumulate_smoothed_passes_share_the_dropout_masks():
    """One micro-batch with dropout: the two passes must see the same masks, then the
    result is the single call's (different masks would weight with softmax(-L') instead)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 9), nn.Tanh(), nn.Dropout(0.5), nn.Linear(9, 3)).double()
    ple = PartialLocalEntropy(model, layers=("3",), reduction="plea", R=1.0, y=4)
    x, t = data()
    loss, _, want = full_batch(ple, x, t, seed=9)
    model.zero_grad()
    out = accumulate_smoothed(ple, [(x, t)], generator=torch.Generator().manual_seed(9))
    close(grads(model), want)
    close(out.loss, loss)


def test_accumulate_smoothed_updates_batchnorm_once_per_micro_batch():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3))
    model = model.double()
    ple = PartialLocalEntropy(model, layers=("3",), reduction="plea", R=0.5, y=3)
    ref = copy.deepcopy(model)
    x, t = data()
    accumulate_smoothed(ple, split(x, t), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # what k plain forwards do: one update per micro-batch
        for xm, _ in split(x, t):
            ref(xm)
    assert int(model[1].num_batches_tracked) == len(SIZES)
    close(model[1].running_mean, ref[1].running_mean)
    close(model[1].running_var, ref[1].running_var)


def test_accumulate_smoothed_backward_hook_scales_like_a_grad_scaler():
    ple = PartialLocalEntropy(small_mlp(), layers="fc2", reduction="plea", R=1.0, y=3)
    x, t = data()
    _, _, want = full_batch(ple, x, t, seed=2)
    ple.model.zero_grad()
    accumulate_smoothed(
        ple,
        split(x, t),
        generator=torch.Generator().manual_seed(2),
        backward=lambda loss: (1024.0 * loss).backward(),  # a power of 2: exact
    )
    close(grads(ple.model) / 1024.0, want)


# ------------------------------------------------------------------- sync= (2 ranks)
@pytest.mark.parametrize("layers", LAYERS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_sync_mean_of_two_ranks_gradients_is_the_batch_gradient(reduction, layers):
    """Two ranks simulated in one process: each holds half the batch, sync returns the
    mean of both halves' per-configuration losses (computed beforehand, as all_reduce
    would), and the mean of the two gradients (as DDP's all_reduce) is the full one."""
    ple = PartialLocalEntropy(small_mlp(), layers=layers, reduction=reduction, R=1.0, y=4)
    x, t = data(n=12)
    loss, per_sample, want = full_batch(ple, x, t, seed=4)
    draws = ple.sample(torch.Generator().manual_seed(4))  # the same on every rank
    shards = split(x, t, (6, 6))
    with torch.no_grad():
        local = [ple(xr, tr, draws=draws).per_sample for xr, tr in shards]
    glob = (local[0] + local[1]) / 2
    calls = []

    def sync(losses):
        calls.append(losses.shape)
        losses.zero_()  # a copy: an in-place all_reduce must not touch the graph
        return glob

    rank_grads = []
    for xr, tr in shards:
        ple.model.zero_grad()
        out = ple(xr, tr, draws=draws, sync=sync)
        out.loss.backward()
        rank_grads.append(grads(ple.model))
        assert torch.equal(out.loss.detach(), ple.loss_reduction(glob))  # the value M(G)
        assert torch.equal(out.per_sample, glob)
    assert calls == [(5,), (5,)]
    close((rank_grads[0] + rank_grads[1]) / 2, want)
    close(ple.loss_reduction(glob), loss)
    close(glob, per_sample)


def test_two_ranks_with_micro_batches():
    """Processes and accumulation together: each rank accumulates its shard."""
    ple = PartialLocalEntropy(small_mlp(), layers="fc2", reduction="plea", R=1.0, y=3)
    x, t = data(n=12)
    _, _, want = full_batch(ple, x, t, seed=6)
    draws = ple.sample(torch.Generator().manual_seed(6))
    shards = split(x, t, (6, 6))
    with torch.no_grad():
        glob = sum(ple(xr, tr, draws=draws).per_sample for xr, tr in shards) / 2
    rank_grads = []
    for xr, tr in shards:
        ple.model.zero_grad()
        accumulate_smoothed(ple, split(xr, tr, (4, 2)), draws=draws, sync=lambda _: glob)
        rank_grads.append(grads(ple.model))
    close((rank_grads[0] + rank_grads[1]) / 2, want)


def test_sync_is_called_once_without_smoothing_too():
    """R(step) = 0 (and y = 0): the plain loss, sync still called once per call."""
    x, t = data()
    for ple in (
        PartialLocalEntropy(small_mlp(), layers="fc2", R=lambda s: 0.0, y=3),
        PartialLocalEntropy(small_mlp(), layers="fc2", y=0),
    ):
        calls = []
        out = ple(
            x,
            t,
            generator=torch.Generator().manual_seed(0),
            sync=lambda losses: calls.append(1) or losses + 1.0,  # noqa: B023
        )
        plain = nn.functional.cross_entropy(ple.model(x), t)
        assert calls == [1]
        close(out.loss, plain.detach() + 1.0)
        ple.model.zero_grad()
        out.loss.backward()
        got = grads(ple.model)
        ple.model.zero_grad()
        plain.backward()
        close(got, grads(ple.model))


# ------------------------------------------------------------------------ bad input
def test_bad_draws_sync_and_micro_batches_raise():
    ple = PartialLocalEntropy(small_mlp(), layers=("fc1", "fc2"), R=0.1, y=2)
    x, t = data()
    d = ple.sample(torch.Generator().manual_seed(0))
    with pytest.raises(TypeError, match="draws must be a mapping"):
        ple(x, t, draws=[d["fc1.weight"]])
    with pytest.raises(ValueError, match=r"missing \['fc2.weight'\], unexpected \[\]"):
        ple(x, t, draws={"fc1.weight": d["fc1.weight"]})
    with pytest.raises(ValueError, match=r"missing \[\], unexpected \['fc3.weight'\]"):
        ple(x, t, draws={**d, "fc3.weight": d["fc2.weight"]})
    with pytest.raises(ValueError, match=r"draws\['fc2.weight'\] must have shape \(2, 7, 7\)"):
        ple(x, t, draws={**d, "fc2.weight": d["fc2.weight"][:1]})
    with pytest.raises(ValueError, match=r"dtype torch.float64"):
        ple(x, t, draws={**d, "fc2.weight": d["fc2.weight"].float()})
    with pytest.raises(TypeError, match=r"draws\['fc2.weight'\] must be a torch.Tensor"):
        ple(x, t, draws={**d, "fc2.weight": 0.0})
    with pytest.raises(ValueError, match=r"generator .* \(or pass draws=\)"):
        ple(x, t)
    with pytest.raises(ValueError, match=r"sync must return a tensor of the shape \(3,\)"):
        ple(x, t, draws=d, sync=lambda losses: losses.sum())
    with pytest.raises(TypeError, match="sync must be callable"):
        ple(x, t, draws=d, sync=3)
    with pytest.raises(ValueError, match="at least one"):
        accumulate_smoothed(ple, [], draws=d)
    with pytest.raises(ValueError, match=r"micro_batches\[1\] must be a pair"):
        accumulate_smoothed(ple, [(x, t), (x[:0], t[:0])], draws=d)
    with pytest.raises(ValueError, match="generator must be a torch.Generator"):
        accumulate_smoothed(ple, [(x, t)])
    with pytest.raises(TypeError, match="ple must be a PartialLocalEntropy"):
        accumulate_smoothed(lambda x, t: x, [(x, t)])  # type: ignore[arg-type]
