"""Tests of the partial local entropy losses (eqs 22-23 and the beta family)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from anisotropy.models import conv_net, mlp
from anisotropy.smoothing.losses import PartialLocalEntropy, SmoothedLoss, reduce_losses
from anisotropy.smoothing.sampling import BLOCK, sample_perturbations, select_parameters
from perturbed_copies import per_draw

# float64 agreement of two implementations of the same sums: a few hundred ulps
# of O(1) quantities, far below any real discrepancy (which is O(R) or larger).
TIGHT = 1e-10


def small_mlp(seed=0, activation="tanh"):
    torch.manual_seed(seed)
    return mlp(depth=2, width=7, in_features=5, classes=3, activation=activation).double()


def small_cnn(seed=0):
    torch.manual_seed(seed)
    # 8x8 input, padding 1 -> 3 channels x 2 x 2 = 12 features in the FC head
    model = conv_net((1, 2, 3), in_channels=1, input_size=8, padding=1, classes=3).double()
    # Non-zero biases: with zero biases an all-zero receptive field puts a ReLU
    # exactly on its kink, where finite differences and autograd disagree.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("bias"):
                p.uniform_(-0.5, 0.5)
    return model


def batch(kind, seed=1, n=6):
    g = torch.Generator().manual_seed(seed)
    shape = (n, 5) if kind == "mlp" else (n, 1, 8, 8)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    t = torch.randint(0, 3, (n,), generator=g)
    return x, t


class Wrapped(nn.Module):
    """A non-Sequential model: forces the generic (no-cut) path."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(5, 7), nn.Linear(7, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


def naive(model, ple, x, t, seed, step=0):
    """Independent reference: S deep copies, weights shifted in place, S backward passes."""
    deltas = ple.sample(torch.Generator().manual_seed(seed), step)
    s = ple.y + int(ple.include_centre)
    L, grads = per_draw(model, ple, x, t, deltas)
    if ple.reduction == "pla":
        w, total = torch.full((s,), 1.0 / s, dtype=L.dtype), L.mean()
    else:
        b = 1.0 if ple.reduction == "plea" else ple.beta
        w = torch.softmax(-b * L, 0)
        total = -torch.log(torch.exp(-b * L).mean()) / b
    return total, L, {n: sum(w[i] * grads[i][n] for i in range(s)) for n in grads[0]}


def smoothed_grads(model, ple, x, t, seed, step=0):
    model.zero_grad()
    out = ple(x, t, generator=torch.Generator().manual_seed(seed), step=step)
    out.loss.backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters()}


def assert_matches_naive(model, ple, x, t, seed=7):
    out, g = smoothed_grads(model, ple, x, t, seed)
    total, L, gref = naive(model, ple, x, t, seed)
    torch.testing.assert_close(out.per_sample, L, rtol=0, atol=TIGHT)
    torch.testing.assert_close(out.loss.detach(), total, rtol=0, atol=TIGHT)
    for n in g:
        torch.testing.assert_close(g[n], gref[n], rtol=0, atol=TIGHT, msg=n)
    return out


# --------------------------------------------------------------------- gradients
@pytest.mark.parametrize("reduction", ["pla", "plea", "beta"])
@pytest.mark.parametrize("cut", ["auto", "off"])
@pytest.mark.parametrize(
    "kind,layers",
    [
        ("mlp", ("fc2",)),
        ("mlp", ("fc1",)),
        ("mlp", ("fc1", "fc2")),
        ("cnn", ("fc1",)),
        ("cnn", ("fc2",)),
        ("cnn", ("conv3", "fc2")),
    ],
)
def test_matches_naive_loop(kind, layers, cut, reduction):
    model = small_mlp() if kind == "mlp" else small_cnn()
    x, t = batch(kind)
    ple = PartialLocalEntropy(
        model, layers=layers, reduction=reduction, beta=2.5, R=0.3, y=3, cut=cut
    )
    assert ple.uses_cut == (cut == "auto")
    assert_matches_naive(model, ple, x, t)


@pytest.mark.parametrize(
    "kernel,kw",
    [
        ("box", dict(k=math.inf)),
        ("box", dict(k=4.0)),
        ("gaussian", dict(gamma=30.0)),
        ("gaussian", dict()),
    ],
)
@pytest.mark.parametrize("cut", ["auto", "off"])
def test_matches_naive_each_kernel(kernel, kw, cut):
    model = small_mlp(seed=3)
    x, t = batch("mlp", seed=4)
    ple = PartialLocalEntropy(
        model, layers=("fc2",), kernel=kernel, R=0.2, y=4, cut=cut, reduction="plea", **kw
    )
    assert_matches_naive(model, ple, x, t)


@pytest.mark.parametrize("centre", [True, False])
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_matches_naive_biases_and_centre(kind, centre):
    model = small_mlp() if kind == "mlp" else small_cnn()
    x, t = batch(kind)
    ple = PartialLocalEntropy(
        model,
        layers=("fc1", "fc2"),
        include_biases=True,
        R=0.3,
        y=3,
        include_centre=centre,
        reduction="beta",
        beta=0.7,
    )
    assert_matches_naive(model, ple, x, t)


@pytest.mark.parametrize("cut", ["auto", "off"])
@pytest.mark.parametrize("layers", [("fc1", "fc2.bias"), ("fc2.bias",), ("fc1.bias", "fc2")])
def test_matches_naive_bias_only_layers(layers, cut):
    # bias-only smoothing of a layer, on shared (first smoothed) and stacked input
    model = small_mlp(seed=4)
    x, t = batch("mlp")
    ple = PartialLocalEntropy(model, layers=layers, include_biases=True, R=0.3, y=3, cut=cut)
    assert_matches_naive(model, ple, x, t)


def test_matches_naive_generic_module():
    torch.manual_seed(2)
    model = Wrapped().double()
    x, t = batch("mlp")
    ple = PartialLocalEntropy(model, layers=("fc1",), R=0.3, y=3, reduction="plea")
    assert not ple.uses_cut
    assert_matches_naive(model, ple, x, t)


@pytest.mark.parametrize("train", [True, False])
def test_matches_naive_batchnorm_after_cut(train):
    torch.manual_seed(5)
    model = (
        nn.Sequential(
            nn.Linear(5, 7),
            nn.Tanh(),
            nn.Linear(7, 6),
            nn.BatchNorm1d(6),
            nn.Tanh(),
            nn.Linear(6, 3),
        )
        .double()
        .train(train)
    )
    x, t = batch("mlp", n=8)
    ple = PartialLocalEntropy(model, layers=("2",), R=0.3, y=3, reduction="pla")
    assert ple.uses_cut
    assert_matches_naive(model, ple, x, t)


@pytest.mark.parametrize("reduction", ["pla", "plea", "beta"])
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_gradient_matches_finite_differences(kind, reduction):
    # Perturbations held fixed by re-seeding the generator for every evaluation.
    # Central differences with h = 1e-6 in float64: truncation ~h^2 |f'''| ~ 1e-12,
    # rounding ~1e-16/h = 1e-10, so 1e-7 leaves a wide margin.
    model = small_mlp(activation="tanh") if kind == "mlp" else small_cnn()
    x, t = batch(kind)
    ple = PartialLocalEntropy(
        model, layers=("fc1", "fc2"), reduction=reduction, beta=3.0, R=0.25, y=3
    )
    _, g = smoothed_grads(model, ple, x, t, seed=11)
    h, pick = 1e-6, torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, p in model.named_parameters():
            flat = p.view(-1)
            for j in torch.randperm(flat.numel(), generator=pick)[:4].tolist():
                vals = []
                for sign in (1.0, -1.0):
                    flat[j] += sign * h
                    vals.append(ple(x, t, generator=torch.Generator().manual_seed(11)).loss.item())
                    flat[j] -= sign * h
                fd = (vals[0] - vals[1]) / (2 * h)
                assert abs(fd - g[n].view(-1)[j].item()) < 1e-7, (n, j)


# ---------------------------------------------------------------- limits, identities
@pytest.mark.parametrize("reduction", ["pla", "plea", "beta"])
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_y0_is_plain_loss_exactly(kind, reduction):
    model = small_mlp() if kind == "mlp" else small_cnn()
    x, t = batch(kind)
    ple = PartialLocalEntropy(model, layers=("fc1",), reduction=reduction, beta=0.3, y=0)
    out, g = smoothed_grads(model, ple, x, t, seed=1)
    model.zero_grad()
    plain = F.cross_entropy(model(x), t)
    plain.backward()
    assert torch.equal(out.loss.detach(), plain.detach())
    for n, p in model.named_parameters():
        assert torch.equal(g[n], p.grad), n
    assert out.per_sample.shape == (1,)
    assert torch.equal(out.centre_output, model(x).detach())


def test_reduce_losses_single_term_exact():
    L = torch.tensor([0.123456789], dtype=torch.float64)
    for red in ("pla", "plea", "beta"):
        assert torch.equal(reduce_losses(L, reduction=red, beta=0.37), L[0])


def test_tiny_radius_approaches_plain_loss():
    # First order: |L(W + dW) - L(W)| <= R ||grad_U L||_1 + O(R^2) for |dW_i| <= R.
    model = small_mlp()
    x, t = batch("mlp")
    model.zero_grad()
    plain = F.cross_entropy(model(x), t)
    plain.backward()
    l1 = model.fc2.weight.grad.abs().sum().item()
    for R in (1e-4, 1e-6):
        ple = PartialLocalEntropy(model, layers=("fc2",), R=R, y=5, reduction="plea")
        out = ple(x, t, generator=torch.Generator().manual_seed(3))
        dev = (out.per_sample - plain.detach()).abs().max().item()
        assert dev <= R * l1 * 1.01 + 1e-14
        assert out.per_sample[0].item() == pytest.approx(plain.item(), abs=1e-14)


def test_jensen_and_beta_limits():
    model = small_mlp()
    x, t = batch("mlp")
    vals = {}
    for red, beta in [("pla", 1.0), ("plea", 1.0), ("beta", 1e-6), ("beta", 0.5), ("beta", 4.0)]:
        ple = PartialLocalEntropy(
            model, layers=("fc1", "fc2"), R=0.5, y=6, reduction=red, beta=beta
        )
        out = ple(x, t, generator=torch.Generator().manual_seed(9))
        vals[red, beta] = out.loss.item()
        L = out.per_sample
    assert vals["plea", 1.0] <= vals["pla", 1.0]  # Jensen
    assert vals["beta", 4.0] <= vals["plea", 1.0] <= vals["beta", 0.5] <= vals["pla", 1.0]
    # beta -> 0: F_beta = mean L - (beta/2) Var L + O(beta^2) (cumulant expansion)
    var = L.var(unbiased=False).item()
    assert vals["beta", 1e-6] - vals["pla", 1.0] == pytest.approx(-0.5e-6 * var, rel=1e-3)
    # beta -> inf: F_beta -> min L (within log(S)/beta)
    ple = PartialLocalEntropy(model, layers=("fc1", "fc2"), R=0.5, y=6, reduction="beta", beta=1e4)
    big = ple(x, t, generator=torch.Generator().manual_seed(9)).loss.item()
    assert L.min().item() <= big <= L.min().item() + math.log(7) / 1e4


def test_include_centre_false_drops_centre():
    model = small_mlp()
    x, t = batch("mlp")
    kw = dict(layers=("fc2",), R=0.3, y=4)
    with_c = PartialLocalEntropy(model, include_centre=True, **kw)(
        x, t, generator=torch.Generator().manual_seed(2)
    )
    without = PartialLocalEntropy(model, include_centre=False, **kw)(
        x, t, generator=torch.Generator().manual_seed(2)
    )
    assert without.per_sample.shape == (4,) and with_c.per_sample.shape == (5,)
    assert without.centre_output is None
    torch.testing.assert_close(without.per_sample, with_c.per_sample[1:], rtol=0, atol=TIGHT)
    torch.testing.assert_close(without.loss, with_c.per_sample[1:].mean(), rtol=0, atol=TIGHT)
    torch.testing.assert_close(with_c.centre_output, model(x).detach(), rtol=0, atol=TIGHT)
    assert with_c.per_sample[0].item() == pytest.approx(
        F.cross_entropy(model(x), t).item(), abs=TIGHT
    )


@pytest.mark.parametrize("cut", ["auto", "off"])
def test_only_selected_parameters_are_perturbed(cut):
    model = small_mlp()
    x, t = batch("mlp")
    seen = {"fc1": [], "fc2": []}
    hooks = [
        getattr(model, n).register_forward_hook(lambda m, i, o, n=n: seen[n].append(o.detach()))
        for n in seen
    ]
    ple = PartialLocalEntropy(model, layers=("fc2",), R=0.3, y=3, cut=cut)
    ple(x, t, generator=torch.Generator().manual_seed(1))
    for h in hooks:
        h.remove()
    # fc1 (before the smoothed layer) always sees the centre weights
    assert all(torch.equal(o, seen["fc1"][0]) for o in seen["fc1"])
    deltas = ple.sample(torch.Generator().manual_seed(1))
    assert set(deltas) == {"fc2.weight"}
    # a hooked module is run once per configuration (hooks see every one); fc2 outputs differ
    assert len(seen["fc2"]) == 4
    assert not any(torch.equal(seen["fc2"][0], o) for o in seen["fc2"][1:])


def test_selection_rules():
    model = small_mlp()
    assert select_parameters(model, "fc2") == ("fc2.weight",)
    assert select_parameters(model, "fc2", include_biases=True) == ("fc2.weight", "fc2.bias")
    assert select_parameters(model, ("fc*",)) == ("fc1.weight", "fc2.weight", "fc3.weight")
    assert select_parameters(model, ("fc3.weight", "fc1")) == ("fc1.weight", "fc3.weight")
    assert select_parameters(model, "*.bias", include_biases=True) == (
        "fc1.bias",
        "fc2.bias",
        "fc3.bias",
    )
    ple = PartialLocalEntropy(model, layers=("fc1",), include_biases=True)
    assert ple.smoothed_names == ("fc1.weight", "fc1.bias")
    with pytest.raises(ValueError, match="include_biases"):
        select_parameters(model, "fc2.bias")
    with pytest.raises(ValueError, match="only matches biases"):
        select_parameters(model, "*.bias")


def test_unknown_layer_lists_valid_names():
    with pytest.raises(ValueError, match=r"'fc9'.*fc1\.weight.*fc2\.bias.*modules: fc1, fc2, fc3"):
        PartialLocalEntropy(small_mlp(), layers=("fc9",))
    with pytest.raises(ValueError, match="at least one"):
        select_parameters(small_mlp(), ())


def test_box_perturbations_within_box_and_schedule_called():
    calls = []

    def schedule(step):
        calls.append(step)
        return 0.01 * (step + 1)

    model = small_mlp()
    x, t = batch("mlp")
    ple = PartialLocalEntropy(model, layers=("fc1", "fc2"), R=schedule, y=50)
    assert ple.radius(3) == pytest.approx(0.04) and calls == [3]
    ple(x, t, generator=torch.Generator().manual_seed(0), step=7)
    assert calls[-1] == 7
    for step in (0, 7):
        for d in ple.sample(torch.Generator().manual_seed(0), step).values():
            R = 0.01 * (step + 1)
            assert d.abs().max().item() <= R
            # 50 * 49 > 2000 uniform draws: the extreme reaches > 0.99 R w.p. 1 - 1e-8
            assert d.abs().max().item() > 0.99 * R


@pytest.mark.parametrize(
    "kernel,kw", [("box", dict(R=0.1)), ("box", dict(R=0.1, k=5.0)), ("gaussian", dict(gamma=4.0))]
)
def test_draws_independent_of_thread_count(kernel, kw):
    # several blocks per tensor, filled by 1 or 3 threads: bitwise the same draws
    p = [("a", torch.zeros(3, BLOCK // 2 + 5)), ("b", torch.zeros(7, dtype=torch.float64))]
    old = torch.get_num_threads()
    draws = []
    try:
        for threads in (1, 3):
            torch.set_num_threads(threads)
            draws.append(
                sample_perturbations(
                    p, 2, generator=torch.Generator().manual_seed(4), kernel=kernel, **kw
                )
            )
    finally:
        torch.set_num_threads(old)
    for n, _ in p:
        assert torch.equal(draws[0][n], draws[1][n])
    assert draws[0]["a"].shape == (2, 3, BLOCK // 2 + 5) and draws[0]["a"].dtype == torch.float32
    assert draws[0]["b"].dtype == torch.float64
    # different blocks are different streams
    flat = draws[0]["a"].reshape(-1)
    assert not torch.equal(flat[:1000], flat[BLOCK : BLOCK + 1000])


def test_background_draws_match_naive():
    # with > 1 thread the draws fill in the background while the prefix runs
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        model = small_cnn(seed=6)
        x, t = batch("cnn")
        ple = PartialLocalEntropy(model, layers=("fc2",), R=0.3, y=3, reduction="plea")
        assert_matches_naive(model, ple, x, t)
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_box_draws_uniform_moments(dtype):
    # n = 6e5 draws of U(-R, R): s.e. of the mean R/sqrt(3n) ~ 7.5e-4 R, relative s.e. of
    # the variance sqrt(0.8/n) ~ 1.2e-3; the bounds are > 5 sigma.  A bin count test
    # (20 bins, expected 3e4 each, s.e. ~170) catches a non-uniform shape.
    R, n = 0.3, 600_000
    raw = sample_perturbations(
        [("w", torch.zeros(n // 2, dtype=dtype))],
        2,
        generator=torch.Generator().manual_seed(8),
        R=R,
    )["w"]
    assert raw.dtype == dtype and raw.abs().max() <= R
    d = raw.double()
    assert abs(d.mean().item()) < 5 * R / math.sqrt(3 * n)
    assert d.var().item() == pytest.approx(R**2 / 3, rel=6e-3)
    counts = torch.histc(d, bins=20, min=-R, max=R)
    assert (counts - n / 20).abs().max().item() < 6 * math.sqrt(n / 20)


@pytest.mark.slow
def test_kernel_sample_moments():
    # Var of Uniform(-R, R) + Logistic(0, s): R^2/3 + pi^2 s^2 / 3 with s = 1/(2k);
    # heat kernel: 1/gamma.  2e6 draws: relative s.e. of a variance ~ sqrt(2/n) (x kurtosis
    # factor < 2) ~ 2e-3, so 1e-2 is a > 4 sigma bound.
    p = [("w", torch.zeros(1000, dtype=torch.float64))]
    g = torch.Generator().manual_seed(0)
    R, k, gamma = 0.1, 7.0, 50.0
    d = sample_perturbations(p, 2000, generator=g, kernel="box", R=R, k=k)["w"]
    assert d.var().item() == pytest.approx(R**2 / 3 + math.pi**2 / (12 * k**2), rel=1e-2)
    d = sample_perturbations(p, 2000, generator=g, kernel="gaussian", gamma=gamma)["w"]
    assert d.var().item() == pytest.approx(1 / gamma, rel=1e-2)


def test_deterministic_bitwise_float32():
    torch.manual_seed(0)
    model = conv_net((1, 4, 4), in_channels=1, input_size=12, padding=1)
    x = torch.randn(16, 1, 12, 12)
    t = torch.randint(0, 10, (16,))
    res = []
    for _ in range(2):
        ple = PartialLocalEntropy(model, layers=("fc1", "fc2"), reduction="plea", y=4, R=0.05)
        out, g = smoothed_grads(model, ple, x, t, seed=123)
        res.append((out, g))
    assert torch.equal(res[0][0].loss, res[1][0].loss)
    assert torch.equal(res[0][0].per_sample, res[1][0].per_sample)
    for n in res[0][1]:
        assert torch.equal(res[0][1][n], res[1][1][n])
    assert isinstance(res[0][0], SmoothedLoss)
    assert res[0][0].centre_output.shape == (16, 10)


# -------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kw,msg",
    [
        (dict(reduction="mean"), "'pla', 'plea', 'beta'"),
        (dict(kernel="tent"), "'box', 'gaussian'"),
        (dict(cut="on"), "'auto', 'off'"),
        (dict(y=-1), "y must"),
        (dict(y=2.5), "y must"),
        (dict(y=True), "y must"),
        (dict(R=0.0), "R must"),
        (dict(R=-1.0), "R must"),
        (dict(R=math.nan), "R must"),
        (dict(k=0.0), "k must"),
        (dict(k=-2.0), "k must"),
        (dict(gamma=0.0), "gamma must"),
        (dict(gamma=math.inf), "gamma must"),
        (dict(beta=0.0), "beta must"),
        (dict(y=0, include_centre=False), "include_centre"),
    ],
)
def test_bad_arguments_raise(kw, msg):
    with pytest.raises(ValueError, match=msg):
        PartialLocalEntropy(small_mlp(), **kw)


def test_bad_call_arguments_raise():
    model = small_mlp()
    x, t = batch("mlp")
    with pytest.raises(ValueError, match="generator"):
        PartialLocalEntropy(model)(x, t)
    with pytest.raises(ValueError, match="R must"):
        PartialLocalEntropy(model, R=lambda s: -1.0)(x, t, generator=torch.Generator())
    with pytest.raises(ValueError, match="step must"):
        PartialLocalEntropy(model).radius(-1)
    with pytest.raises(ValueError, match="scalar"):
        PartialLocalEntropy(model, base_loss=lambda o, t: F.cross_entropy(o, t, reduction="none"))(
            x, t, generator=torch.Generator()
        )
