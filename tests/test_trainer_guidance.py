"""Entropy guidance in training (``[guidance]``): weight 0 is the plain run bit for bit;
a weight > 0 adds lambda (h - t)^2 to the loss, whose gradient is checked against its
closed form 2 lambda (h - t) W^{-T} / n."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from anisotropy.data.datasets import load_dataset
from anisotropy.io import load_checkpoint, read_jsonl
from anisotropy.training.config import TrainConfig, config_from_dict
from anisotropy.training.hooks import Callback
from anisotropy.training.trainer import build_model, derive_seeds, train
from tiny_runs import tiny_config


def small(**over) -> TrainConfig:
    """16-8-8-3 MLP on a 240-sample Gaussian mixture (192 training samples): fc2 (8 x 8)
    is its one square layer; fc1 and fc3 are wide.  The tiny run, seed 2, with
    ``--set``-style overrides."""
    return tiny_config({"seed": 2}, **over)


def weights(run_dir):
    return load_checkpoint(run_dir / "checkpoint.pt")["model"]


def strip(lines, *keys):
    return [{k: v for k, v in rec.items() if k not in keys} for rec in lines]


@pytest.mark.parametrize("smoothed", [False, True])
def test_zero_weight_is_the_plain_run_bitwise(tmp_path, smoothed):
    over = {"smoothing.layers": '["fc2"]', "smoothing.y": 2} if smoothed else {}
    train(small(**over), tmp_path / "plain", progress=False)
    zero = {"guidance.layers": '["fc2"]', "guidance.target": "{fc2 = 0.5}"}
    train(small(**over, **zero), tmp_path / "zero", progress=False)
    a, b = weights(tmp_path / "plain"), weights(tmp_path / "zero")
    assert all(torch.equal(a[k], b[k]) for k in a)
    la = read_jsonl(tmp_path / "plain" / "log.jsonl")
    lb = read_jsonl(tmp_path / "zero" / "log.jsonl")
    assert strip(la, "wall_time") == strip(lb, "wall_time")
    assert all("guidance_loss" not in r for r in lb)


@pytest.mark.parametrize("target", [0.0, 0.3])
def test_one_step_gradient_includes_the_guidance_term(tmp_path, target):
    """One minibatch of all 192 samples, one SGD step: the new weights are
    w - lr (grad CE + lambda grad (h - t)^2), h = log|det W_fc2| / 8, with the guidance
    gradient written out by hand, 2 lambda (h - t) W^{-T} / 8 (float32 rounding of two
    routes to the same numbers: 1e-5)."""
    lam, lr = 0.7, 0.05
    cfg = small(
        epochs=1,
        **{
            "optim.batch_size": 192,
            "optim.momentum": 0.0,
            "guidance.dense_weight": lam,
            "guidance.target": f"{{fc2 = {target!r}}}",
        },
    )
    train(cfg, tmp_path, progress=False)
    data = load_dataset(cfg.data)
    model = build_model(cfg, data.input_shape, data.classes, seed=derive_seeds(cfg.seed)[0])
    loss = F.cross_entropy(model(data.normalise(data.x_train)), data.y_train)
    loss.backward()
    w = model.fc2.weight.detach()
    h = float(torch.linalg.slogdet(w.double())[1]) / 8
    by_hand = 2 * lam * (h - target) * torch.linalg.inv(w.double()).T / 8
    expected = {n: (p - lr * p.grad).detach() for n, p in model.named_parameters()}
    expected["fc2.weight"] = (w.double() - lr * (model.fc2.weight.grad.double() + by_hand)).float()
    got = weights(tmp_path)
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(got["fc2.weight"], (w - lr * model.fc2.weight.grad))
    (rec,) = read_jsonl(tmp_path / "log.jsonl")
    # h in float32 against float64: 1e-6 absolute (its square inherits that error)
    assert rec["guidance_loss"] == pytest.approx(lam * (h - target) ** 2, abs=1e-6)
    assert rec["guidance"]["dense"] == pytest.approx((h - target) ** 2, abs=1e-6)
    assert rec["guidance"]["conv"] is None and set(rec["guidance"]["h"]) == {"fc2"}
    assert rec["smoothed_loss"] == rec["train_loss"]  # the cross-entropy alone


def test_singular_layer_stops_the_run_cleanly(tmp_path):
    class Collapse(Callback):
        def on_step(self, state):
            if state.step == 2:
                with torch.no_grad():
                    state.model.fc2.weight[0].zero_()

    summary = train(
        small(**{"guidance.dense_weight": 0.1}),
        tmp_path,
        progress=False,
        callbacks=[Collapse()],
    )
    assert summary["status"].startswith("stopped: non-finite guidance loss")
    assert "step 2" in summary["status"] and summary["stopped_by"] is None


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"model.depth": 1, "guidance.dense_weight": 0.1}, r"guidance.dense_weight = 0.1 > 0"),
        ({"guidance.conv_weight": 0.1}, r"no square valid nn.Conv2d"),
        (
            {"guidance.dense_weight": 0.1, "guidance.target": "{fc1 = 0.0}"},
            r"guidance.target names layers that are not guided: \['fc1'\]",
        ),
        ({"guidance.dense_weight": 0.1, "guidance.layers": '["fc1"]'}, r"layer 'fc1' is wide"),
        ({"guidance.dense_weight": -1.0}, r"guidance.dense_weight must be a finite number"),
    ],
)
def test_bad_guidance_is_named_before_anything_is_written(tmp_path, over, match):
    with pytest.raises(ValueError, match=match):
        train(small(**over), tmp_path, progress=False)
    assert not (tmp_path / "log.jsonl").exists()


def test_guidance_with_a_gradient_free_optimiser_is_refused():
    with pytest.raises(ValueError, match=r"guidance.dense_weight and guidance.conv_weight"):
        small(
            **{
                "optim.name": "moment_matching",
                "optim.gamma": 100.0,
                "optim.lr": 1.0,
                "guidance.dense_weight": 0.1,
            }
        )


def test_both_terms_on_the_table25_cnn_by_hand():
    """Every eligible layer of the table-25 CNN: the square convolutions conv2, conv4,
    conv5 (h = log|det K[:, :, 0, 0]| / C) and the square linear fc1, fc2 (h =
    log|det W| / n); the total is the weighted sum of (h - t)^2, t from the table."""
    from anisotropy.models import cnn_table25
    from anisotropy.training.config import GuidanceConfig
    from anisotropy.training.guidance import EntropyGuidance

    torch.manual_seed(0)
    model = cnn_table25(in_channels=1, input_size=28, padding=0, classes=10)
    target = {"conv2": 0.1, "fc1": -0.1}
    guide = EntropyGuidance(GuidanceConfig(dense_weight=0.2, conv_weight=0.5, target=target), model)
    assert guide.layers == {"dense": ["fc1", "fc2"], "conv": ["conv2", "conv4", "conv5"]}
    h = {}
    for name in ("fc1", "fc2"):
        w = model.get_submodule(name).weight.detach().double()
        h[name] = float(torch.linalg.slogdet(w)[1]) / w.shape[1]
    for name in ("conv2", "conv4", "conv5"):
        k = model.get_submodule(name).weight.detach().double()[:, :, 0, 0]
        h[name] = float(torch.linalg.slogdet(k)[1]) / k.shape[0]
    sq = {n: (v - target.get(n, 0.0)) ** 2 for n, v in h.items()}
    total, parts = guide.terms()
    total, parts = total.detach(), {k: v.detach() for k, v in parts.items()}
    dense, conv = sq["fc1"] + sq["fc2"], sq["conv2"] + sq["conv4"] + sq["conv5"]
    # float32 log-determinants against float64: 1e-5 relative
    assert float(parts["dense"]) == pytest.approx(dense, rel=1e-5)
    assert float(parts["conv"]) == pytest.approx(conv, rel=1e-5)
    assert float(total) == pytest.approx(0.2 * dense + 0.5 * conv, rel=1e-5)
    guide.add(total, parts)
    rec = guide.record()
    assert rec["guidance"]["h"] == pytest.approx(h, rel=1e-5)
    assert rec["guidance_loss"] == pytest.approx(float(total))


def test_accumulation_adds_the_guidance_once_per_step(tmp_path):
    """Two micro-batches per step (the pieces path of several ranks too) give the weights
    of one whole minibatch: the guidance gradient enters once per step, not per piece
    (float32 sums in another order over 12 steps: 1e-5)."""
    over = {"guidance.dense_weight": 0.7, "guidance.target": 0.3}
    train(small(**over), tmp_path / "one", progress=False)
    train(small(**over, **{"optim.accumulate": 2}), tmp_path / "two", progress=False)
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    la = read_jsonl(tmp_path / "one" / "log.jsonl")
    lb = read_jsonl(tmp_path / "two" / "log.jsonl")
    assert [r["guidance_loss"] for r in la] == pytest.approx([r["guidance_loss"] for r in lb])


def _rank(rank: int, world: int, port: int, root: str, d: dict) -> None:
    """One of ``world`` gloo ranks training the run ``d`` into ``root``."""
    import os

    import torch.distributed as dist

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        train(config_from_dict(d), root, progress=False)
    finally:
        dist.destroy_process_group()


def test_two_ranks_add_the_guidance_once_and_stop_at_the_same_budget(tmp_path):
    """2 gloo ranks at B/2 = one process at B with guidance (rank 0 alone back-propagates
    the term, so the summed gradient holds it once) and a pass budget (every rank counts
    the same passes and stops at the same step); float32 sums in another order: 1e-5."""
    import socket

    import torch.multiprocessing as mp

    from anisotropy.training.config import config_to_dict

    cfg = small(
        epochs=3,
        max_passes=15,
        **{"guidance.dense_weight": 0.7, "guidance.target": 0.3},
    )
    one = train(cfg, tmp_path / "one", progress=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    d = config_to_dict(cfg)
    mp.start_processes(
        _rank, args=(2, port, str(tmp_path / "two"), d), nprocs=2, start_method="fork"
    )
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6)
    two = read_jsonl(tmp_path / "two" / "log.jsonl")
    assert [r["step"] for r in two] == [6, 12, 15] and two[-1]["partial"] is True
    assert one["steps"] == 15 and one["stopped_by"] == "max_passes"
    ref = read_jsonl(tmp_path / "one" / "log.jsonl")
    assert [r["guidance_loss"] for r in two] == pytest.approx([r["guidance_loss"] for r in ref])
