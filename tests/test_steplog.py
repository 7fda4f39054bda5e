"""Geometric step schedule of the step log (figure 1's early regimes)."""

import itertools

import pytest

from anisotropy.training.steplog import geometric_steps


def test_dense_start_then_fixed_number_per_decade():
    steps = geometric_steps(100_000, dense=100, per_decade=20)
    assert steps[:100] == list(range(1, 101))
    assert steps[-1] == 100_000
    assert all(b > a for a, b in itertools.pairwise(steps))
    # beyond the dense start, consecutive ratios are 10^(1/20) up to rounding to integers
    ratios = [b / a for a, b in itertools.pairwise(steps[100:])]
    assert max(ratios) <= 10 ** (1 / 20) * (1 + 1 / 100) and min(ratios) >= 10 ** (1 / 20) / 1.01
    # 3 decades after step 100 at 20 per decade: 60 steps (the last one is `last` itself)
    assert len(steps) == 100 + 60


def test_short_runs_and_bad_input():
    assert geometric_steps(7, dense=100) == list(range(1, 8))
    assert geometric_steps(1) == [1]
    assert geometric_steps(150, dense=100, per_decade=1) == [*range(1, 101), 150]
    for kw in ({"last": 0}, {"last": 10, "dense": 0}, {"last": 10, "per_decade": 0}, {"last": 2.5}):
        with pytest.raises(ValueError, match=next(iter(kw)) if len(kw) == 1 else "must be"):
            geometric_steps(**kw)
    # a 10^9-step run: 100 dense steps + 7 decades x 20 = 240 records
    assert len(geometric_steps(10**9)) == 240


def _steps_config(tmp_path, **logging):
    from anisotropy.training.config import config_from_dict

    return config_from_dict(
        {
            "seed": 0,
            "epochs": 2,
            "threads": 1,
            "model": {"name": "mlp", "depth": 2, "width": 8},
            "data": {"name": "synthetic", "synthetic_size": 160, "synthetic_features": 6},
            "optim": {"lr": 0.05, "batch_size": 16},
            "logging": {"steps": True, "steps_dense": 3, "steps_per_decade": 4, **logging},
        }
    )


def test_trainer_writes_step_records_whose_windows_tile_the_run(tmp_path):
    """Step records at geometric steps; their minibatch counts add up to all steps, and
    each window's mean s_I, weighted by its batches, reproduces the epoch means."""
    import json

    from anisotropy.training.trainer import train

    cfg = _steps_config(tmp_path)
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["status"] == "complete"
    recs = [
        json.loads(line) for line in (tmp_path / "run" / "steps.jsonl").read_text().splitlines()
    ]
    epochs = [
        json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    ]
    total = epochs[-1]["step"]
    # synthetic: 80 % of 160 samples train -> 128 / 16 = 8 steps per epoch, 16 in all
    assert total == 16
    assert [r["step"] for r in recs] == geometric_steps(total, dense=3, per_decade=4)
    assert sum(r["batches"] for r in recs) == total
    first = recs[0]["layers"]["fc1"]
    assert first["signal_std"] is None and first["grad_std_norm"] is None  # one-batch window
    # the windows tile the 16 steps and the two epochs have 8 each, so the
    # batch-weighted mean of the window signals is the mean of the epoch signals
    mean = sum(r["layers"]["fc2"]["signal"] * r["batches"] for r in recs) / total
    epoch_mean = (epochs[0]["layers"]["fc2"]["signal"] + epochs[1]["layers"]["fc2"]["signal"]) / 2
    assert mean == pytest.approx(epoch_mean, rel=1e-12)


def test_step_log_survives_a_resume(tmp_path):
    """Killed right after epoch 1's checkpoint, then resumed: the step records are
    those of an uninterrupted run, logged once each; only the window in progress at
    the checkpoint restarts (documented), so its record counts fewer batches."""
    import json

    from anisotropy.training.hooks import Callback
    from anisotropy.training.trainer import train

    class Kill(Callback):
        def on_epoch(self, state, record):
            raise KeyboardInterrupt  # propagates like a kill (hooks module)

    cfg = _steps_config(tmp_path)
    train(cfg, tmp_path / "full", progress=False)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "cut", progress=False, callbacks=[Kill()])
    train(cfg, tmp_path / "cut", resume=True, progress=False)

    def read(d):
        return [json.loads(x) for x in (tmp_path / d / "steps.jsonl").read_text().splitlines()]

    full, cut = read("full"), read("cut")
    assert [r["step"] for r in cut] == [r["step"] for r in full] == [1, 2, 3, 5, 9, 16]
    assert [r["batches"] for r in full] == [1, 1, 1, 2, 4, 7]
    assert [r["batches"] for r in cut] == [1, 1, 1, 2, 1, 7]  # window (5, 9] restarted at 8
    assert cut[-1] == full[-1]  # same trajectory after the resume: bitwise equal statistics
