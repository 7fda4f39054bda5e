"""The pass budget ``max_passes``: the run stops at the first step whose cumulative
``passes + forward_passes`` reaches it, logs the partial epoch, and resumes bitwise."""

from __future__ import annotations

import math

import pytest
import torch

from anisotropy.io import load_checkpoint, read_jsonl, save_checkpoint
from anisotropy.training.config import TrainConfig, apply_overrides
from anisotropy.training.config import config_to_dict as to_dict
from anisotropy.training.hooks import Callback
from anisotropy.training.trainer import train
from tiny_runs import tiny_config


def small(**over) -> TrainConfig:
    """The tiny run (a fraction of a second) for 5 epochs, with ``--set``-style overrides."""
    return tiny_config({"epochs": 5}, **over)


def weights(run_dir):
    return load_checkpoint(run_dir / "checkpoint.pt")["model"]


def strip(lines, *keys):
    return [{k: v for k, v in rec.items() if k not in keys} for rec in lines]


#: optimiser settings -> (passes, forward_passes) of one step (docs/trainer.md)
COSTS = {
    "sgd_pla": (
        {"smoothing.layers": '["fc2"]', "smoothing.R": 0.05, "smoothing.y": 3},
        (4, 0),
    ),
    "entropy_sgd": (
        {"optim.name": "entropy_sgd", "optim.gamma": 0.03, "optim.inner_steps": 3},
        (3, 0),
    ),
    "moment_matching": (
        {
            "optim.name": "moment_matching",
            "optim.gamma": 300.0,
            "optim.samples": 8,
            "optim.lr": 1.0,
            "optim.layers": '["fc3"]',
        },
        (0, 9),
    ),
}


@pytest.mark.parametrize("case", list(COSTS))
def test_budget_stops_at_the_first_step_that_reaches_it(tmp_path, case):
    over, (per_pass, per_forward) = COSTS[case]
    per_step = per_pass + per_forward
    budget = 13 * per_step - 1  # reached by step 13: one step into epoch 3
    summary = train(small(max_passes=budget, **over), tmp_path, progress=False)
    steps = math.ceil(budget / per_step)
    assert steps == 13
    lines = read_jsonl(tmp_path / "log.jsonl")
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    assert [r["step"] for r in lines] == [6, 12, 13]
    assert [r.get("partial") for r in lines] == [None, None, True]
    last = lines[-1]
    assert (last["passes"], last["forward_passes"]) == (steps * per_pass, steps * per_forward)
    assert summary["status"] == "complete" and summary["stopped_by"] == "max_passes"
    assert summary["steps"] == steps and summary["epochs"] == 3
    assert summary["passes"] + summary["forward_passes"] == steps * per_step >= budget
    assert summary["final_test_acc"] == last["test_acc"]
    ck = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ck["step"] == steps and ck["epoch"] == 3 and summary["checkpoint_epoch"] == 3


def test_budget_at_an_epoch_end_and_epochs_as_the_upper_limit(tmp_path):
    # 1 pass per step: a budget of 12 ends exactly with epoch 2 (not partial)
    at_end = train(small(max_passes=12), tmp_path / "end", progress=False)
    lines = read_jsonl(tmp_path / "end" / "log.jsonl")
    assert [r["step"] for r in lines] == [6, 12] and "partial" not in lines[-1]
    assert at_end["stopped_by"] == "max_passes" and at_end["passes"] == 12
    # a budget the epochs never reach: epochs end the run, as without a budget
    capped = train(small(epochs=2, max_passes=10**6), tmp_path / "cap", progress=False)
    plain = train(small(epochs=2), tmp_path / "plain", progress=False)
    assert capped["stopped_by"] == plain["stopped_by"] == "epochs"
    a, b = weights(tmp_path / "cap"), weights(tmp_path / "plain")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert strip(read_jsonl(tmp_path / "cap" / "log.jsonl"), "wall_time") == strip(
        read_jsonl(tmp_path / "plain" / "log.jsonl"), "wall_time"
    )


def test_resume_across_the_budget_boundary_is_bitwise(tmp_path):
    """A PLA run with the budget in epoch 4 (step 21), killed in epoch 4 before the
    budget step (checkpoint at epoch 3) and resumed: the same stop, weights and log."""
    cfg = small(
        max_passes=84,
        **{"smoothing.layers": '["fc2"]', "smoothing.R": 0.05, "smoothing.y": 3},
    )
    straight = train(cfg, tmp_path / "straight", progress=False)
    assert straight["steps"] == 21

    class Dying(Callback):
        def on_step(self, state):
            if state.step == 20:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "resumed", progress=False, callbacks=[Dying()])
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["epoch"] == 3
    resumed = train(cfg, tmp_path / "resumed", resume=True, progress=False)
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    la = read_jsonl(tmp_path / "straight" / "log.jsonl")
    lb = read_jsonl(tmp_path / "resumed" / "log.jsonl")
    assert strip(la, "wall_time") == strip(lb, "wall_time") and lb[-1]["partial"] is True
    assert strip([straight], "wall_time") == strip([resumed], "wall_time")
    # a finished budget run resumed (even with more epochs) trains no further
    again = train(
        apply_overrides(cfg, ["epochs=9"]), tmp_path / "resumed", resume=True, progress=False
    )
    assert again["steps"] == 21 and again["stopped_by"] == "max_passes"
    assert read_jsonl(tmp_path / "resumed" / "log.jsonl") == lb
    # the budget is part of the trajectory: it may not change on resume
    with pytest.raises(ValueError, match="differs from the checkpoint's in max_passes"):
        train(apply_overrides(cfg, ["max_passes=200"]), tmp_path / "resumed", resume=True)


def test_budget_key_default_keeps_hashes_and_old_checkpoints(tmp_path):
    from experiments.grid import config_hash

    d = to_dict(small(epochs=1))
    old = {k: v for k, v in d.items() if k not in ("max_passes", "guidance")}
    old["logging"] = {k: v for k, v in d["logging"].items() if not k.startswith("flatness")}
    assert config_hash(d) == config_hash(old)
    # a checkpoint written before the budget, the guidance and the flatness keys resumes
    train(small(epochs=1), tmp_path, progress=False)
    ck = load_checkpoint(tmp_path / "checkpoint.pt")
    ck["config"] = {k: v for k, v in ck["config"].items() if k not in ("max_passes", "guidance")}
    save_checkpoint(tmp_path / "checkpoint.pt", ck)
    more = train(small(epochs=2), tmp_path, resume=True, progress=False)
    assert more["epochs"] == 2 and more["stopped_by"] == "epochs"


def test_bad_budget_is_named():
    with pytest.raises(ValueError, match=r"max_passes must be an integer >= 1"):
        small(max_passes=0)
    with pytest.raises(ValueError, match=r"max_passes must be an integer"):
        small(max_passes=1.5)


def test_the_command_says_the_budget_stopped_the_run(tmp_path, capsys):
    from anisotropy.cli.train import main
    from anisotropy.training.config import config_to_toml

    config = tmp_path / "run.toml"
    config.write_text(config_to_toml(small(max_passes=8)))
    assert main([str(config), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "complete (stopped by max_passes) after 2 epoch(s), 8 steps, 8 passes" in text
