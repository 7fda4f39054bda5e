"""``optim.drop_last``: an epoch leaves out its short last minibatch (``n_train %
batch_size`` samples), so every step sees a full batch; the default keeps it and keeps
every existing run's identity."""

from __future__ import annotations

import pytest
import torch

from anisotropy.io import load_checkpoint, read_jsonl
from anisotropy.training.config import config_to_dict
from anisotropy.training.trainer import train
from tiny_runs import STEPS_PER_EPOCH, tiny_config

#: the tiny run's 192 training samples in minibatches of 40: 4 full ones and one of 32
BATCH = 40
FULL_BATCHES = 192 // BATCH


def test_drop_last_takes_only_full_minibatches(tmp_path):
    kept = train(tiny_config(**{"optim.batch_size": BATCH}), tmp_path / "kept", progress=False)
    dropped = train(
        tiny_config(**{"optim.batch_size": BATCH, "optim.drop_last": "true"}),
        tmp_path / "dropped",
        progress=False,
    )
    epochs = kept["epochs"]
    assert kept["steps"] == epochs * (FULL_BATCHES + 1)
    assert dropped["steps"] == epochs * FULL_BATCHES
    # one pass per plain SGD step, over a full minibatch each
    assert dropped["passes"] == dropped["steps"]
    log = read_jsonl(tmp_path / "dropped" / "log.jsonl")
    assert [r["step"] for r in log] == [FULL_BATCHES * (e + 1) for e in range(epochs)]


def test_drop_last_changes_nothing_when_the_batch_size_divides_the_data(tmp_path):
    """192 samples in batches of 32: no short batch, so the same trajectory bit for bit."""
    a = train(tiny_config(), tmp_path / "a", progress=False)
    b = train(tiny_config(**{"optim.drop_last": "true"}), tmp_path / "b", progress=False)
    assert a["steps"] == b["steps"] == 2 * STEPS_PER_EPOCH
    wa = load_checkpoint(tmp_path / "a" / "checkpoint.pt")["model"]
    wb = load_checkpoint(tmp_path / "b" / "checkpoint.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_drop_last_default_keeps_run_identity():
    from experiments.grid import config_hash

    d = config_to_dict(tiny_config())
    old = {**d, "optim": {k: v for k, v in d["optim"].items() if k != "drop_last"}}
    assert config_hash(d) == config_hash(old)
    on = config_to_dict(tiny_config(**{"optim.drop_last": "true"}))
    assert config_hash(on) != config_hash(d)


def test_drop_last_needs_one_full_minibatch(tmp_path):
    cfg = tiny_config(**{"optim.batch_size": 256, "optim.drop_last": "true"})
    with pytest.raises(ValueError, match=r"optim.drop_last = true needs data.n_train >= "):
        train(cfg, tmp_path, progress=False)
