"""The trainer's optimisers (``optim.name``): training, zero-strength limits, bitwise
resume, the pass count, and clear errors for bad configurations."""

from __future__ import annotations

import pytest
import torch

from anisotropy.io import load_checkpoint, read_jsonl, save_checkpoint
from anisotropy.training.config import (
    TrainConfig,
    apply_overrides,
    config_to_dict,
)
from anisotropy.training.hooks import Callback
from anisotropy.training.trainer import train
from tiny_runs import tiny_config


def small(**over) -> TrainConfig:
    """A run of a fraction of a second: 16-8-8-3 MLP on a 240-sample Gaussian mixture,
    6 steps per epoch (the tiny run), with ``--set``-style overrides."""
    return tiny_config(**over)


#: one configuration per optimiser, partial where the optimiser allows it, with its
#: randomness switched on (SAM on a smoothed loss: shared perturbations of both passes)
CASES = {
    "sam": {
        "optim.name": "sam",
        "optim.rho": 0.05,
        "optim.layers": '["fc2"]',
        "smoothing.layers": '["fc2"]',
        "smoothing.R": 0.05,
        "smoothing.y": 2,
    },
    "replicated": {
        "optim.name": "replicated",
        "optim.replicas": 3,
        "optim.gamma": 0.05,
        "optim.gamma_schedule": "cosine",
        "optim.gamma_max": 1.0,
        "optim.init_noise": 0.01,
        "optim.layers": '["fc2", "fc3"]',
    },
    "entropy_sgd": {
        "optim.name": "entropy_sgd",
        "optim.gamma": 0.03,
        "optim.gamma_schedule": "exp",
        "optim.gamma_rate": 0.01,
        "optim.inner_steps": 3,
        "optim.noise": 1e-3,
        "optim.lr": 1.0,
    },
    "moment_matching": {
        "optim.name": "moment_matching",
        "optim.gamma": 300.0,
        "optim.samples": 64,
        "optim.lr": 1.0,
        "optim.layers": '["fc2", "fc3"]',
    },
    "heat": {
        "optim.name": "heat",
        "optim.gamma": 30.0,
        "optim.samples": 8,
        "optim.inner_steps": 2,
        "optim.lr": 0.05,
    },
}


def same_state(a, b) -> bool:
    """Bitwise equality of nested checkpoint content (tensors compared exactly)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return (
            isinstance(b, dict) and a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
        )
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def strip(lines, *keys):
    return [{k: v for k, v in rec.items() if k not in keys} for rec in lines]


class DieAfterFirstEpoch(Callback):
    def on_epoch(self, state, record):
        if state.epoch == 1:  # the epoch-1 checkpoint is written before this call
            raise KeyboardInterrupt


@pytest.mark.parametrize("name", list(CASES))
def test_each_optimiser_trains_and_resumes_bitwise(tmp_path, name):
    cfg = small(**CASES[name])
    summary = train(cfg, tmp_path / "straight", progress=False)
    lines = read_jsonl(tmp_path / "straight" / "log.jsonl")
    assert summary["status"] == "complete" and len(lines) == 2
    assert lines[1]["train_loss"] < lines[0]["train_loss"], [r["train_loss"] for r in lines]
    assert summary["passes"] == lines[-1]["passes"] > 0 or name == "moment_matching"

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "resumed", progress=False, callbacks=[DieAfterFirstEpoch()])
    train(cfg, tmp_path / "resumed", resume=True, progress=False)
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    for key in ("model", "optimizer", "data_generator", "perturb_generator", "passes", "step"):
        assert same_state(a[key], b[key]), key
    resumed = read_jsonl(tmp_path / "resumed" / "log.jsonl")
    assert strip(lines, "wall_time") == strip(resumed, "wall_time")


def test_sam_with_rho_0_and_one_uncoupled_replica_are_sgd_bitwise(tmp_path):
    """rho = 0: SAM's second pass is at the weights, its gradient the first one; one
    replica with gamma = 0: the replica is the model, its permutation the data order.
    Only the pass count differs (SAM evaluates twice)."""
    train(small(), tmp_path / "sgd", progress=False)
    train(small(**{"optim.name": "sam", "optim.rho": 0.0}), tmp_path / "sam", progress=False)
    one = {"optim.name": "replicated", "optim.replicas": 1, "optim.gamma": 0.0}
    train(small(**one), tmp_path / "rep", progress=False)
    ref = load_checkpoint(tmp_path / "sgd" / "checkpoint.pt")
    ref_log = read_jsonl(tmp_path / "sgd" / "log.jsonl")
    for other, per_step in (("sam", 2), ("rep", 1)):
        ck = load_checkpoint(tmp_path / other / "checkpoint.pt")
        assert same_state(ref["model"], ck["model"]), other
        log = read_jsonl(tmp_path / other / "log.jsonl")
        assert strip(ref_log, "wall_time", "passes", "optim") == strip(
            log, "wall_time", "passes", "optim"
        )
        assert [r["passes"] for r in log] == [per_step * r["passes"] for r in ref_log]


def test_passes_count_every_minibatch_evaluation(tmp_path):
    """sgd on PLA with y = 3 and the centre: 4 passes per step; without the centre 3
    and one forward pass (the logged centre loss); the variational schemes' counts."""
    steps = 12  # 2 epochs of 6 minibatches
    smooth = {"smoothing.layers": '["fc2"]', "smoothing.y": 3}
    cases = [
        (smooth, 4 * steps, 0),
        ({**smooth, "smoothing.include_centre": "false"}, 3 * steps, steps),
        ({**CASES["moment_matching"], "optim.samples": 5}, 0, 6 * steps),
        ({**CASES["heat"], "optim.samples": 4}, 2 * 4 * steps, steps),
        ({**CASES["entropy_sgd"], "epochs": 1}, 3 * steps // 2, 0),
    ]
    for i, (over, passes, forward) in enumerate(cases):
        s = train(small(**over), tmp_path / str(i), progress=False)
        assert (s["passes"], s["forward_passes"]) == (passes, forward), over


def test_gradient_free_runs_log_no_signals_and_report_their_ess(tmp_path):
    train(small(**CASES["moment_matching"]), tmp_path, progress=False)
    for rec in read_jsonl(tmp_path / "log.jsonl"):
        assert rec["layers"] == {} and 0 < rec["optim"]["ess_fraction"] <= 1


def test_checkpoint_from_before_the_optimisers_resumes_with_its_passes(tmp_path):
    """A checkpoint without the optimiser keys and without the pass count (written by
    the sgd trainer) resumes, and its passes are recounted exactly."""
    cfg = small(**{"smoothing.layers": '["fc2"]', "smoothing.y": 2})
    train(cfg, tmp_path / "straight", progress=False)
    train(apply_overrides(cfg, ["epochs=1"]), tmp_path / "old", progress=False)
    ck = load_checkpoint(tmp_path / "old" / "checkpoint.pt")
    added = set(config_to_dict(TrainConfig())["optim"]) - {
        "lr", "momentum", "nesterov", "weight_decay", "batch_size", "eval_batch_size", "accumulate"
    }  # fmt: skip
    for key in added:
        del ck["config"]["optim"][key]
    del ck["passes"], ck["forward_passes"]
    save_checkpoint(tmp_path / "old" / "checkpoint.pt", ck)
    summary = train(cfg, tmp_path / "old", resume=True, progress=False)
    assert summary["passes"] == 3 * 12
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "old" / "checkpoint.pt")["model"]
    assert same_state(a, b)


def test_default_optimiser_keys_leave_run_hashes_unchanged():
    from experiments.grid import config_hash

    full = config_to_dict(small())
    old = {**full, "optim": {k: full["optim"][k] for k in ("lr", "batch_size")}}
    assert config_hash(full) == config_hash(old)
    assert config_hash(config_to_dict(small(**{"optim.name": "sam"}))) != config_hash(full)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"optim.name": "adam"}, r"unknown optim.name 'adam'; valid: 'sgd', 'sam', 'replicated'"),
        ({"optim.rho": 0.1}, r"optim.rho = 0.1 is a parameter of sam, not of optim.name = 'sgd'"),
        ({"optim.name": "sam", "optim.gamma": 1.0}, r"optim.gamma = 1.0 is a parameter of"),
        ({"optim.layers": '["fc2"]'}, r"optim.layers = \['fc2'\] is a parameter of sam /"),
        ({"optim.name": "replicated"}, r"optim.gamma must be a finite number >= 0 .*required"),
        ({"optim.name": "sam", "optim.rho": -1}, r"optim.rho must be a finite number >= 0"),
        ({"optim.name": "replicated", "optim.gamma": 1, "optim.replicas": 0}, "optim.replicas"),
        (
            {"optim.name": "entropy_sgd", "optim.gamma": 1, "optim.gamma_rate": 0.1},
            r"optim.gamma_rate must be 0 with optim.gamma_schedule = 'constant'",
        ),
        (
            {"optim.name": "replicated", "optim.gamma": 1, "optim.gamma_schedule": "cosine"},
            r"optim.gamma_max must be a finite number \(the final coupling\)",
        ),
        (
            {"optim.name": "entropy_sgd", "optim.gamma": 0},
            r"optim.gamma must be a finite number > 0",
        ),
        (
            {"optim.name": "entropy_sgd", "optim.gamma": 1, "optim.alpha": 2},
            r"optim.alpha .*\(0, 1\]",
        ),
        (
            {"optim.name": "moment_matching", "optim.gamma": 1, "optim.lr": 2},
            r"optim.lr must be a damp",
        ),
        (
            {"optim.name": "moment_matching", "optim.gamma": 1, "optim.lr": 1, "optim.momentum": 0},
            r"optim.momentum = 0.0 is a parameter of sgd / sam / replicated / entropy_sgd",
        ),
        (
            {"optim.name": "heat", "optim.gamma": 100, "optim.inner_steps": 2, "optim.lr": 0.1},
            r"optim.lr must be below 2 / optim.gamma = 0.02",
        ),
        (
            {"optim.name": "replicated", "optim.gamma": 1, "smoothing.layers": '["fc2"]'},
            r"goes with optim.name = 'sgd' or 'sam' only, not 'replicated'",
        ),
        (
            {"optim.name": "sam", "precision": "float16"},
            r"precision = 'float16' needs the gradient scaler",
        ),
        (
            {"optim.name": "heat", "optim.gamma": 1, "logging.steps": "true"},
            r"logging.steps must be false with optim.name = 'heat'",
        ),
        ({"optim.name": "sam", "optim.include_biases": "true"}, r"optim.include_biases must be"),
    ],
)
def test_bad_optimiser_configurations_are_refused(over, message):
    with pytest.raises(ValueError, match=message):
        small(**over)


def test_unknown_optimiser_layer_is_refused_before_anything_is_written(tmp_path):
    cfg = small(**{"optim.name": "sam", "optim.layers": '["fc9"]'})
    with pytest.raises(ValueError, match=r"optim \(sam\): .*fc9"):
        train(cfg, tmp_path / "r", progress=False)
    assert not (tmp_path / "r" / "log.jsonl").exists()
