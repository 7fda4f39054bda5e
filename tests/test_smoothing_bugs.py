"""Regression tests of the smoothed losses: shared modules on the cut path, buffers,
the float32 finite-k sampler, a radius schedule reaching 0, and dropout."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn
from torch.nn import functional as F

from anisotropy.kernels import BoxKernel
from anisotropy.kernels.box import logistic_from_bits
from anisotropy.related.local_energy import local_energy
from anisotropy.smoothing.losses import PartialLocalEntropy
from anisotropy.smoothing.sampling import sample_perturbations
from anisotropy.smoothing.schedules import radius_schedule

# float64 agreement of two evaluations of the same sums in a different order: a few
# hundred ulps of O(1) quantities, far below a real discrepancy (O(R) or larger).
TIGHT = 1e-10
#: KS tests: reject at this significance (seeded: one fixed draw per test)
ALPHA = 1e-3


def batch(n=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (n,), generator=g
    )


def loss_and_grads(model, ple, x, t, seed):
    model.zero_grad()
    out = ple(x, t, generator=torch.Generator().manual_seed(seed))
    out.loss.backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters()}


def assert_cut_matches_off(model, layers, x, t, *, R=0.3, y=3, reduction="pla"):
    """The prefix-once path equals the path that runs the whole model per configuration."""
    res = []
    for cut in ("auto", "off"):
        ple = PartialLocalEntropy(model, layers=layers, R=R, y=y, reduction=reduction, cut=cut)
        res.append((ple.uses_cut, *loss_and_grads(model, ple, x, t, seed=5)))
    (used_cut, a, ga), (_, b, gb) = res
    torch.testing.assert_close(a.per_sample, b.per_sample, rtol=0, atol=TIGHT)
    torch.testing.assert_close(a.loss, b.loss, rtol=0, atol=TIGHT)
    for n in ga:
        torch.testing.assert_close(ga[n], gb[n], rtol=0, atol=TIGHT, msg=n)
    return used_cut, a


# ------------------------------------------------------ 9: a module used twice
def shared_tanh_model():
    torch.manual_seed(0)
    act = nn.Tanh()
    return nn.Sequential(nn.Linear(5, 6), act, nn.Linear(6, 6), act, nn.Linear(6, 3)).double()


@pytest.mark.parametrize("layers", ["0", "2", "4"])
def test_shared_activation_on_cut_path(layers):
    model = shared_tanh_model()
    x, t = batch()
    used_cut, _ = assert_cut_matches_off(model, layers, x, t)
    assert used_cut
    # a tiny radius gives the plain loss (the repeated Tanh was dropped before)
    ple = PartialLocalEntropy(model, layers=layers, R=1e-12, y=3)
    got = ple(x, t, generator=torch.Generator().manual_seed(0)).loss
    assert got.item() == pytest.approx(F.cross_entropy(model(x), t).item(), abs=1e-9)


def tied_instance_model():
    torch.manual_seed(1)
    mid = nn.Linear(6, 6)
    return nn.Sequential(
        nn.Linear(5, 6), nn.Tanh(), mid, nn.Tanh(), mid, nn.Tanh(), nn.Linear(6, 3)
    ).double()


def tied_parameter_model():
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Linear(5, 6),
        nn.Tanh(),
        nn.Linear(6, 6),
        nn.Tanh(),
        nn.Linear(6, 6),
        nn.Tanh(),
        nn.Linear(6, 3),
    ).double()
    model[4].weight = model[2].weight  # tied weights, distinct modules and biases
    return model


def naive_losses(model, ple, x, t, seed):
    """Independent reference: a deep copy per configuration (ties kept), weights shifted
    in place."""
    deltas = ple.sample(torch.Generator().manual_seed(seed))
    losses = []
    for a in range(-1, ple.y):
        m = copy.deepcopy(model)
        with torch.no_grad():
            for n, p in m.named_parameters():
                if n in deltas and a >= 0:
                    p.add_(deltas[n][a])
            losses.append(F.cross_entropy(m(x), t))
    return torch.stack(losses)


@pytest.mark.parametrize("make", [tied_instance_model, tied_parameter_model])
@pytest.mark.parametrize("layers,cut", [("0", True), ("6", True), ("2", False)])
def test_tied_layers_on_cut_path(make, layers, cut):
    model = make()
    x, t = batch()
    leaves = dict(model.named_parameters())
    used_cut, out = assert_cut_matches_off(model, layers, x, t, reduction="plea")
    # smoothing the tied tensor itself falls back to the whole model
    assert used_cut == cut
    ple = PartialLocalEntropy(model, layers=layers, R=0.3, y=3, reduction="plea")
    torch.testing.assert_close(
        out.per_sample, naive_losses(model, ple, x, t, seed=5), rtol=0, atol=TIGHT
    )
    # the model still holds its own parameters (functional_call once left a repeated
    # module with the perturbed tensor)
    for n, p in model.named_parameters():
        assert p is leaves[n] and p.is_leaf, n


def test_local_energy_centre_with_shared_module():
    model = shared_tanh_model().eval()
    x, t = batch()
    res = local_energy(
        model, x, t, sigma=0.1, layers="2", n=4, generator=torch.Generator().manual_seed(0)
    )
    assert res.centre_loss == pytest.approx(F.cross_entropy(model(x), t).item(), abs=1e-12)


# ----------------------------------------------------- 10: BatchNorm statistics
def bn_model():
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Linear(5, 7),
        nn.BatchNorm1d(7),
        nn.Tanh(),  # before the cut
        nn.Linear(7, 6),
        nn.BatchNorm1d(6),
        nn.Tanh(),  # smoothed, then BN after the cut
        nn.Linear(6, 3),
    ).double()


def bn_state(model):
    return {n: b.clone() for n, b in model.named_buffers()}


@pytest.mark.parametrize("include_centre", [True, False])
def test_batchnorm_statistics_same_on_every_path(include_centre):
    base = bn_model()
    models = {key: copy.deepcopy(base) for key in ("auto", "off", "plain")}
    ples = {
        cut: PartialLocalEntropy(
            models[cut], layers="3", R=0.3, y=3, include_centre=include_centre, cut=cut
        )
        for cut in ("auto", "off")
    }
    assert ples["auto"].uses_cut and not ples["off"].uses_cut
    for step in range(3):
        x, t = batch(seed=10 + step)
        for ple in ples.values():
            ple(x, t, generator=torch.Generator().manual_seed(step)).loss.backward()
        models["plain"](x)
    ref = bn_state(models["plain"])
    assert int(ref["1.num_batches_tracked"]) == 3
    for cut in ("auto", "off"):
        got = bn_state(models[cut])
        for n in ref:
            torch.testing.assert_close(got[n], ref[n], rtol=0, atol=1e-12, msg=f"{cut} {n}")


# --------------------------------------------------- 11: float32 finite-k sampler
class Words:
    """A stand-in bit generator returning the given raw 64-bit words in order."""

    def __init__(self, *chunks):
        self.chunks = list(chunks)

    def random_raw(self, n):
        w = self.chunks.pop(0)
        assert w.size == n
        return w.copy()


def float32_words(values24):
    """Raw words whose float32 draws see the 24-bit integers ``values24`` in order."""
    return (np.asarray(values24, dtype=np.uint32) << np.uint32(8)).view(np.uint64)


def test_logistic_from_bits_exactly_symmetric_float32():
    # Flipping the low bit of a 24-bit word is a bijection of equally likely words; it
    # negates the draw bitwise, so the float32 law is exactly symmetric.
    rng = np.random.default_rng(0)
    words = np.concatenate(
        [[0, 1, 2, 3, (1 << 24) - 2, (1 << 24) - 1], rng.integers(0, 1 << 24, 1 << 16)]
    )
    out, flipped = np.empty(words.size, np.float32), np.empty(words.size, np.float32)
    logistic_from_bits(Words(float32_words(words)), out)
    logistic_from_bits(Words(float32_words(words ^ 1)), flipped)
    np.testing.assert_array_equal(flipped, -out)
    assert (out != 0).all()
    # V on the midpoints (j + 1/2) 2^-24: the extremes are +-log(2^25 - 1), at words 0 and 1
    big = math.log(2.0**25 - 1)
    assert out[0] == pytest.approx(-big, rel=1e-6) and out[1] == pytest.approx(big, rel=1e-6)
    assert np.abs(out).max() == np.abs(out[:2]).max()


def test_logistic_from_bits_float64_extremes():
    out = np.empty(2)
    logistic_from_bits(Words(np.array([0, 1 << 11], dtype=np.uint64)), out)
    big = math.log(2.0**54 - 1)
    np.testing.assert_allclose(out, [-big, big], rtol=1e-15)


def test_box_sampler_float32_tails_symmetric():
    # the uniform part at -R exactly (zero words); the logistic part sees the extreme
    # words 0, 1, 2^24 - 2, 2^24 - 1: before, 0 was clamped to tiny (-87.3 / (2k))
    # while the top was cut at +16.6 / (2k)
    R, k = 0.25, 3.0
    extreme = [0, 1, 2, 3, (1 << 24) - 2, (1 << 24) - 1, 1 << 23, (1 << 23) + 1]
    out = np.empty(len(extreme), np.float32)
    BoxKernel(R, k).sample_into(out, Words(np.zeros(4, np.uint64), float32_words(extreme)))
    logistic = (out.astype(np.float64) + R) * 2 * k
    big = math.log(2.0**25 - 1)
    # float32 rounding of -R + L/(2k): a few ulps of R relative to L/(2k) ~ 2.9
    assert logistic.min() == pytest.approx(-big, rel=1e-6)
    assert logistic.max() == pytest.approx(big, rel=1e-6)


def box_cdf(z, R, k):
    """CDF of Uniform(-R, R) + Logistic(0, 1/(2k)) (the normalised kernel of eqs 5-6)."""
    sp = np.logaddexp
    return (sp(0.0, 2 * k * (z + R)) - sp(0.0, 2 * k * (z - R))) / (4 * k * R)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_box_sampler_finite_k_ks(dtype):
    R, k = 0.3, 2.0
    d = sample_perturbations(
        [("w", torch.zeros(10_000, dtype=dtype))],
        2,
        generator=torch.Generator().manual_seed(9),
        kernel="box",
        R=R,
        k=k,
    )["w"]
    assert d.dtype == dtype
    assert stats.kstest(d.double().reshape(-1).numpy(), lambda z: box_cdf(z, R, k)).pvalue > ALPHA


# ------------------------------------------------ 12: a schedule that reaches 0
def small_mlp():
    torch.manual_seed(4)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()


@pytest.mark.parametrize("include_centre", [True, False])
def test_schedule_reaching_zero_is_the_plain_loss(include_centre):
    sched = radius_schedule("linear", R=0.1, total_steps=10)
    assert sched(10) == 0.0 and sched(5) > 0
    model = small_mlp()
    x, t = batch()
    ple = PartialLocalEntropy(model, layers="2", R=sched, y=3, include_centre=include_centre)
    assert ple.radius(10) == 0.0
    model.zero_grad()
    plain = F.cross_entropy(model(x), t)
    plain.backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    for step in (10, 11):
        model.zero_grad()
        out = ple(x, t, generator=torch.Generator().manual_seed(0), step=step)
        out.loss.backward()
        assert torch.equal(out.loss, plain)
        assert torch.equal(out.per_sample, plain.detach().repeat(3 + include_centre))
        for n, p in model.named_parameters():
            assert torch.equal(p.grad, ref[n]), n
    g = torch.Generator().manual_seed(0)
    zeros = ple.sample(g, 10)
    assert zeros["2.weight"].shape == (3, 3, 7) and not zeros["2.weight"].any()
    with pytest.raises(ValueError, match="no smoothing"):
        ple.kernel_at(10)
    # before the end the loss is smoothed
    smoothed = ple(x, t, generator=torch.Generator().manual_seed(0), step=5).loss
    assert abs(smoothed.item() - plain.item()) > 1e-6


@pytest.mark.parametrize("kernel", ["box", "gaussian"])
def test_schedule_fading_below_the_negligible_radius_is_the_plain_loss(kernel):
    # a fading schedule's last steps (here 1e-200) must not overflow the heat kernel's
    # precision 1/R^2: below R_NEGLIGIBLE the step is the plain loss, as at R = 0
    from anisotropy.smoothing.losses import R_NEGLIGIBLE

    model = small_mlp()
    x, t = batch()
    ple = PartialLocalEntropy(
        model, layers="2", kernel=kernel, R=lambda step: 1e-200 if step else 0.1, y=3
    )
    assert ple.radius(1) == 1e-200 < R_NEGLIGIBLE
    plain = F.cross_entropy(model(x), t)
    out = ple(x, t, generator=torch.Generator().manual_seed(0), step=1)
    assert torch.equal(out.loss, plain)
    assert ple(x, t, generator=torch.Generator().manual_seed(0), step=0).loss != plain


def test_schedule_negative_radius_still_refused():
    ple = PartialLocalEntropy(small_mlp(), layers="2", R=lambda s: -0.1, y=2)
    x, t = batch()
    with pytest.raises(ValueError, match="R must be a finite number >= 0"):
        ple(x, t, generator=torch.Generator())


# ------------------------------------------------------------------ 13: dropout
def dropout_model():
    torch.manual_seed(6)
    return nn.Sequential(
        nn.Linear(5, 7),
        nn.Tanh(),
        nn.Dropout(0.5),  # before the cut
        nn.Linear(7, 6),
        nn.Tanh(),
        nn.Dropout(0.5),  # smoothed, dropout after the cut
        nn.Linear(6, 3),
    ).double()


@pytest.mark.parametrize("cut", ["auto", "off"])
@pytest.mark.parametrize("kw", [dict(R=0.3, y=3), dict(R=0.3, y=0)])
def test_dropout_deterministic_given_generator(cut, kw):
    model = dropout_model()
    x, t = batch()
    ple = PartialLocalEntropy(model, layers="3", cut=cut, **kw)
    runs = []
    for global_seed in (100, 200):
        torch.manual_seed(global_seed)
        state = torch.get_rng_state()
        runs.append(loss_and_grads(model, ple, x, t, seed=3))
        assert torch.equal(torch.get_rng_state(), state)  # global state left alone
    (a, ga), (b, gb) = runs
    assert torch.equal(a.per_sample, b.per_sample)
    for n in ga:
        assert torch.equal(ga[n], gb[n]), n
    # the masks do come from the generator: another seed, another loss
    c, _ = loss_and_grads(model, ple, x, t, seed=4)
    assert not torch.equal(a.per_sample, c.per_sample)


def test_generator_use_unchanged_without_dropout():
    # a model without random modules draws nothing more than the perturbations
    model = small_mlp()
    x, t = batch()
    ple = PartialLocalEntropy(model, layers="2", R=0.1, y=3)
    g1, g2 = torch.Generator().manual_seed(8), torch.Generator().manual_seed(8)
    ple(x, t, generator=g1)
    ple.sample(g2)
    assert torch.equal(g1.get_state(), g2.get_state())
