"""End-of-run flatness (``logging.flatness``): the summary's numbers are those of a direct,
seeded measurement of the final model, and the measures have their exact limits."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from anisotropy.data.datasets import load_dataset
from anisotropy.io import load_checkpoint, read_jsonl
from anisotropy.models import mlp
from anisotropy.training.config import TrainConfig
from anisotropy.training.flatness import (
    flatness_seeds,
    flatness_subset,
    main,
    measure_flatness,
)
from anisotropy.training.trainer import build_model, derive_seeds, train
from tiny_runs import tiny_config

#: noise draws of the tests' measurements (the default is 256)
SAMPLES = 8


def small(**over) -> TrainConfig:
    """The tiny run (a fraction of a second), seed 4, measuring its end-of-run flatness,
    with ``--set``-style overrides."""
    flatness = {
        "flatness": True,
        "flatness_samples": SAMPLES,
        "flatness_n_train": 100,
        "flatness_R": [0.01, 0.05],
    }
    return tiny_config({"seed": 4, "logging": flatness}, **over)


def final_model(cfg, run_dir):
    data = load_dataset(cfg.data)
    model = build_model(cfg, data.input_shape, data.classes, seed=derive_seeds(cfg.seed)[0])
    model.load_state_dict(load_checkpoint(run_dir / "checkpoint.pt")["model"])
    return model.eval(), data


def test_summary_flatness_is_the_seeded_measurement_of_the_final_model(tmp_path):
    cfg = small(max_passes=9)  # stopped by the budget in epoch 2: measured too
    summary = train(cfg, tmp_path, progress=False)
    assert summary["stopped_by"] == "max_passes"
    flat = summary["flatness"]
    model, data = final_model(cfg, tmp_path)
    subset_seed, noise_seed = flatness_seeds(cfg.seed)
    x, t = flatness_subset(data, 100, generator=torch.Generator().manual_seed(subset_seed))
    direct = measure_flatness(
        model,
        x,
        t,
        sigmas=[0.1, 0.2, 0.4],
        radii=[0.01, 0.05],
        samples=SAMPLES,
        generator=torch.Generator().manual_seed(noise_seed),
    )
    assert {k: flat[k] for k in direct} == direct  # the same numbers, bit for bit
    assert flat["n_train"] == 100 and flat["samples"] == SAMPLES and flat["wall_time"] > 0
    assert list(flat["layers"]) == ["fc1", "fc2", "fc3"]
    assert flat["model"]["numel"] == sum(u["numel"] for u in flat["layers"].values()) == 216
    with torch.no_grad():
        centre = float(F.cross_entropy(model(x), t))
    assert flat["centre_loss"] == pytest.approx(centre, rel=1e-6)
    for unit in [*flat["layers"].values(), flat["model"]]:
        assert [e["sigma"] for e in unit["local_energy"]] == [0.1, 0.2, 0.4]
        assert [e["R"] for e in unit["free_entropy"]] == [0.01, 0.05]
        assert all(e["stderr"] > 0 for e in unit["local_energy"] + unit["free_entropy"])
    # the log is untouched by the measurement
    assert "flatness" not in read_jsonl(tmp_path / "log.jsonl")[-1]


def test_plain_runs_have_no_flatness(tmp_path):
    summary = train(small(**{"logging.flatness": "false"}), tmp_path, progress=False)
    assert "flatness" not in summary


def test_small_noise_limits():
    """sigma = 0: the local energy is exactly 0.  Small sigma: delta E = O(sigma^2), while
    the Monte Carlo error of its estimate is first order, sigma |grad L . (z |W|)| /
    sqrt(n) (the same draws at every sigma), so the estimate lies within 4 standard
    errors of 0 and its standard error shrinks in proportion to sigma (to 2 % in
    float64 between 1e-3 and 1e-4).  R -> 0: the free entropy is L(W) - |U| log 2R
    (every weight equals e^{-L(W)})."""
    torch.manual_seed(0)
    model = mlp(depth=2, width=12, in_features=6, classes=3).double().eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(50, 6, generator=g, dtype=torch.float64)
    t = torch.randint(0, 3, (50,), generator=g)
    tiny_R = 1e-9
    res = measure_flatness(
        model,
        x,
        t,
        sigmas=[0.0, 1e-3, 1e-4],
        radii=[tiny_R],
        samples=64,
        generator=torch.Generator().manual_seed(2),
    )
    for unit in [*res["layers"].values(), res["model"]]:
        zero, a, b = unit["local_energy"]
        assert zero["mean"] == 0.0 and zero["stderr"] == 0.0
        assert abs(a["mean"]) <= 4 * a["stderr"] and abs(b["mean"]) <= 4 * b["stderr"]
        assert b["stderr"] * 10 == pytest.approx(a["stderr"], rel=0.02)
        (fe,) = unit["free_entropy"]
        expected = res["centre_loss"] - unit["numel"] * math.log(2 * tiny_R)
        assert fe["estimate"] == pytest.approx(expected, rel=1e-9)
        assert fe["log_normaliser"] == pytest.approx(unit["numel"] * math.log(2 * tiny_R))


def test_command_line_measures_an_existing_run(tmp_path, capsys):
    cfg = small()
    measured = train(cfg, tmp_path / "on", progress=False)["flatness"]
    train(small(**{"logging.flatness": "false"}), tmp_path / "off", progress=False)
    assert main([str(tmp_path / "off"), "--write"]) == 0
    capsys.readouterr()
    later = load_summary(tmp_path / "off")["flatness"]
    strip = lambda f: {k: v for k, v in f.items() if k != "wall_time"}
    assert strip(later) == strip(measured)
    # resuming the complete run with the measurement switched on gives the same numbers
    resumed = train(small(), tmp_path / "off", resume=True, progress=False)["flatness"]
    assert strip(resumed) == strip(measured)
    # fewer samples on the command line
    assert main([str(tmp_path / "off"), "--set", "logging.flatness_samples=4"]) == 0
    assert '"samples": 4' in capsys.readouterr().out
    # errors: one line, status 2
    assert main([str(tmp_path / "off"), "--set", "optim.lr=1"]) == 2
    assert "only logging.flatness_n_train" in capsys.readouterr().err
    assert main([str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def load_summary(run_dir):
    import json

    return json.loads((run_dir / "summary.json").read_text())
