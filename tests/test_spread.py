"""Gradient noise inside one minibatch (anisotropy.training.spread): the estimator against
an independent two-pass computation, its expectations under sampling without replacement
from a finite population (exact formulas), no side effect on training, and the trainer's
step log."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from anisotropy.training.config import config_from_dict
from anisotropy.training.spread import within_batch_spread
from anisotropy.training.trainer import train
from tiny_runs import tiny_run


def _net(seed: int = 0, *, bn: bool = False, dropout: float = 0.0) -> nn.Sequential:
    torch.manual_seed(seed)
    mods: list[nn.Module] = [nn.Linear(5, 7)]
    if bn:
        mods.append(nn.BatchNorm1d(7))
    mods += [nn.Tanh(), nn.Dropout(dropout), nn.Linear(7, 3)]
    return nn.Sequential(*mods).double()


def _layers(net: nn.Sequential) -> dict[str, nn.Parameter]:
    lin = [m for m in net if isinstance(m, nn.Linear)]
    return {"fc1": lin[0].weight, "fc2": lin[1].weight}


def _part_gradients(net, x, t, parts):
    """Reference: each part's gradient by an ordinary backward() into .grad (numpy)."""
    m = len(x) // parts
    out = {"fc1": [], "fc2": []}
    for j in range(parts):
        net.zero_grad()
        F.cross_entropy(net(x[j * m : (j + 1) * m]), t[j * m : (j + 1) * m]).backward()
        for name, p in _layers(net).items():
            out[name].append(p.grad.detach().numpy().ravel().copy())
    return {k: np.array(v) for k, v in out.items()}


def test_matches_a_two_pass_computation_from_separate_backwards():
    """||mean||, sqrt(sum_w s_w^2 / K) (s^2 with divisor K - 1) and the SNR of the module
    docstring, against a two-pass numpy computation on gradients from backward(); float64,
    so 1e-12 covers the summation order."""
    net = _net(1)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(67, 5, dtype=torch.float64, generator=gen)  # 67 = 8 x 8 + 3 left out
    t = torch.randint(0, 3, (67,), generator=gen)
    got = within_batch_spread(net, x, t, _layers(net), parts=8)
    ref = _part_gradients(net, x, t, 8)
    for name, g in ref.items():
        mean = g.mean(axis=0)
        noise_sq = ((g - mean) ** 2).sum() / (8 * 7)
        signal_sq = max(float(mean @ mean) - noise_sq, 0.0)
        r = got[name]
        assert r["within_mean_norm"] == pytest.approx(np.linalg.norm(mean), rel=1e-12)
        assert r["within_noise_norm"] == pytest.approx(np.sqrt(noise_sq), rel=1e-12)
        assert r["within_snr"] == pytest.approx(np.sqrt(signal_sq / noise_sq), rel=1e-10)


def test_expectations_under_sampling_without_replacement():
    """Minibatches of B drawn without replacement from N samples, cut into K parts: the
    per-sample gradients of the population give S^2 (divisor N - 1) and the full gradient
    G exactly, and E[sigma_hat^2] = S^2 / B, E[||g_bar||^2 - sigma_hat^2] = ||G||^2 - S^2 / N
    (random partition of a random subset: E of the between-part mean square is s^2 / m and
    E s^2 = S^2).  Tolerance: 4 Monte Carlo standard errors over 600 seeded minibatches."""
    net = _net(3)
    gen = torch.Generator().manual_seed(4)
    n_pop, b, k = 96, 24, 6
    x = torch.randn(n_pop, 5, dtype=torch.float64, generator=gen)
    t = torch.randint(0, 3, (n_pop,), generator=gen)
    per_sample = _part_gradients(net, x, t, n_pop)  # parts of one sample each
    rng = np.random.default_rng(5)
    for name, g in per_sample.items():
        big_g = g.mean(axis=0)
        s2 = ((g - big_g) ** 2).sum() / (n_pop - 1)
        noise, signal = [], []
        for _ in range(600):
            idx = torch.as_tensor(rng.permutation(n_pop)[:b])
            r = within_batch_spread(net, x[idx], t[idx], {name: _layers(net)[name]}, parts=k)[name]
            noise.append(r["within_noise_norm"] ** 2)
            signal.append(r["within_mean_norm"] ** 2 - r["within_noise_norm"] ** 2)
        for vals, want in ((noise, s2 / b), (signal, float(big_g @ big_g) - s2 / n_pop)):
            v = np.array(vals)
            assert abs(v.mean() - want) <= 4 * v.std(ddof=1) / np.sqrt(v.size), (name, want)


def test_no_side_effect_on_buffers_global_rng_or_grads():
    """BatchNorm running statistics, torch's global generator (dropout) and .grad are as
    before the measurement."""
    net = _net(6, bn=True, dropout=0.3)
    net.train()
    x = torch.randn(32, 5, dtype=torch.float64)
    t = torch.randint(0, 3, (32,))
    F.cross_entropy(net(x), t).backward()
    grads = [p.grad.clone() for p in net.parameters()]
    buffers = {k: v.clone() for k, v in net.named_buffers()}
    state = torch.get_rng_state()
    within_batch_spread(net, x, t, _layers(net), parts=4)
    assert torch.equal(torch.get_rng_state(), state)
    for k, v in net.named_buffers():
        assert torch.equal(v, buffers[k]), k
    for p, g in zip(net.parameters(), grads, strict=True):
        assert torch.equal(p.grad, g)


def test_bad_arguments():
    net = _net(0)
    x, t = torch.randn(8, 5, dtype=torch.float64), torch.zeros(8, dtype=torch.long)
    for parts in (1, 0, 2.0, True):
        with pytest.raises(ValueError, match="parts must be an integer >= 2"):
            within_batch_spread(net, x, t, _layers(net), parts=parts)
    with pytest.raises(ValueError, match="at most the minibatch size 8"):
        within_batch_spread(net, x, t, _layers(net), parts=9)
    with pytest.raises(ValueError, match="same number of samples"):
        within_batch_spread(net, x, t[:7], _layers(net), parts=2)
    with pytest.raises(ValueError, match="layers must name"):
        within_batch_spread(net, x, t, {}, parts=2)


@pytest.mark.parametrize(
    ("logging", "match"),
    [
        ({"steps": True, "steps_split": 1}, "logging.steps_split"),
        ({"steps": False, "steps_split": 4}, "logging.steps = true"),
        ({"steps": True, "steps_split": 33}, "at most optim.batch_size = 32"),
    ],
)
def test_config_refuses_a_bad_split(logging, match):
    with pytest.raises(ValueError, match=match):
        config_from_dict(tiny_run(logging=logging))


def test_trainer_logs_the_split_without_changing_the_run(tmp_path):
    """Every step record holds within_* per layer; the training (epoch log, step log's own
    statistics, final weights) is bitwise that of the same run without the split."""
    base = {"epochs": 2, "logging": {"steps": True, "steps_dense": 4, "steps_per_decade": 5}}
    split = tiny_run(base, **{"logging.steps_split": 4})
    train(config_from_dict(tiny_run(base)), tmp_path / "a", progress=False)
    train(config_from_dict(split), tmp_path / "b", progress=False)

    def lines(run, name):
        return [json.loads(s) for s in (tmp_path / run / name).read_text().splitlines()]

    strip = ("wall_time",)
    for a, b in zip(lines("a", "log.jsonl"), lines("b", "log.jsonl"), strict=True):
        assert {k: v for k, v in a.items() if k not in strip} == {
            k: v for k, v in b.items() if k not in strip
        }
    for a, b in zip(lines("a", "steps.jsonl"), lines("b", "steps.jsonl"), strict=True):
        assert b["within_parts"] == 4 and "within_parts" not in a
        for layer, stats in b["layers"].items():
            assert stats["within_noise_norm"] > 0 and stats["within_mean_norm"] > 0
            assert stats["within_snr"] is None or stats["within_snr"] >= 0
            assert {k: v for k, v in stats.items() if not k.startswith("within_")} == a["layers"][
                layer
            ]
