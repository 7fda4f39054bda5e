"""The training objective (anisotropy.training.objective): the reconstruction loss against
a hand computation, classification as before, the autoencoder, its configuration errors,
its gradient through the smoothed loss, and a tiny end-to-end reconstruction run."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from anisotropy.cli.train import _report
from anisotropy.data.datasets import load_dataset
from anisotropy.io import load_checkpoint, read_jsonl
from anisotropy.models import MODEL_NAMES, autoencoder
from anisotropy.related.entropy_flow import dense_entropy_change
from anisotropy.smoothing.losses import PartialLocalEntropy
from anisotropy.training.config import config_from_dict
from anisotropy.training.loop import evaluate
from anisotropy.training.objective import (
    CLASSIFICATION,
    OBJECTIVES,
    RECONSTRUCTION,
    get_objective,
    objective_of,
)
from anisotropy.training.trainer import build_model, train
from experiments.grid import Point
from experiments.results import result_row
from tiny_runs import tiny_config, tiny_run

AE = {"model": {"name": "autoencoder", "width": 8, "bottleneck": 4}}


# ----------------------------------------------------------------------------- the objectives


def test_reconstruction_loss_is_the_hand_computed_mean_squared_error():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 1, 3, 4, generator=g, dtype=torch.float64)
    out = torch.randn(5, 12, generator=g, dtype=torch.float64)
    u = RECONSTRUCTION.targets(x, torch.zeros(5, dtype=torch.int64))
    assert u.shape == (5, 12) and torch.equal(u, x.reshape(5, 12))
    per_sample = [sum((out[i, j] - u[i, j]) ** 2 for j in range(12)) / 12 for i in range(5)]
    mean, total = sum(per_sample) / 5, sum(per_sample)
    assert float(RECONSTRUCTION.loss(out, u)) == pytest.approx(float(mean), rel=1e-14)
    assert float(RECONSTRUCTION.loss(out, u, reduction="sum")) == pytest.approx(
        float(total), rel=1e-14
    )
    assert float(RECONSTRUCTION(out, u)) == pytest.approx(float(mean), rel=1e-14)
    assert int(RECONSTRUCTION.correct(out, u)) == 0 and not RECONSTRUCTION.has_accuracy


def test_classification_is_cross_entropy_and_accuracy_bitwise():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(7, 3, generator=g)
    y = torch.randint(0, 3, (7,), generator=g)
    assert CLASSIFICATION.targets(torch.zeros(7, 2), y) is y
    assert torch.equal(CLASSIFICATION.loss(logits, y), F.cross_entropy(logits, y))
    assert torch.equal(
        CLASSIFICATION.loss(logits, y, reduction="sum"),
        F.cross_entropy(logits, y, reduction="sum"),
    )
    assert int(CLASSIFICATION.correct(logits, y)) == int((logits.argmax(1) == y).sum())


def test_objective_vocabulary_and_errors():
    assert OBJECTIVES == ("classification", "reconstruction")
    assert objective_of("autoencoder") == "reconstruction"
    assert {objective_of(m) for m in MODEL_NAMES if m != "autoencoder"} == {"classification"}
    assert get_objective("reconstruction") is RECONSTRUCTION
    with pytest.raises(ValueError, match="objective must be one of"):
        get_objective("regression")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reduction must be one of"):
        RECONSTRUCTION.loss(torch.zeros(2, 3), torch.zeros(2, 3), reduction="none")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"output shape \(2, 3\) must equal the target"):
        RECONSTRUCTION.loss(torch.zeros(2, 3), torch.zeros(2, 4))


# ----------------------------------------------------------------------------- the autoencoder


def test_autoencoder_shapes_names_and_eligible_layers():
    torch.manual_seed(0)
    net = autoencoder(in_features=784, width=256, bottleneck=32, activation="tanh")
    shapes = {n: tuple(m.weight.shape) for n, m in net.named_modules() if hasattr(m, "weight")}
    assert shapes == {"fc1": (256, 784), "fc2": (32, 256), "fc3": (256, 32), "fc4": (784, 256)}
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 784)
    with torch.no_grad():
        assert all(not m.bias.any() for n, m in net.named_modules() if n.startswith("fc"))
    # the decoder expansions are tall: an entropy change (tanh-gain Kaiming: 1.5, 0.98)
    with torch.no_grad():
        h3 = float(dense_entropy_change(net.fc3.weight)) / 32
    assert h3 == pytest.approx(1.5, abs=0.1)
    with pytest.raises(ValueError, match="dense_entropy_change|wide"):
        dense_entropy_change(net.fc1.weight)


def test_autoencoder_argument_and_configuration_errors():
    with pytest.raises(ValueError, match=r"bottleneck must be an integer in \[1, 8\]"):
        autoencoder(in_features=16, width=8, bottleneck=9)
    with pytest.raises(ValueError, match="activation"):
        autoencoder(activation="sigmoid")  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"model.bottleneck must be an integer in \[1, model.width"
    ):
        config_from_dict({"model": {"name": "autoencoder", "width": 8, "bottleneck": 16}})
    with pytest.raises(ValueError, match="model.bottleneck must be an integer >= 1"):
        config_from_dict({"model": {"bottleneck": 0}})
    # a classifier ignores the bottleneck (its width may be smaller than the default code)
    assert config_from_dict({"model": {"width": 8}}).objective == "classification"
    cfg = config_from_dict(tiny_run(AE))
    assert cfg.objective == "reconstruction"
    model = build_model(cfg, (16,), 3, seed=0)
    assert model(torch.zeros(2, 16)).shape == (2, 16)


def test_reconstruction_gradient_through_the_smoothed_loss_float64():
    """The smoothed reconstruction loss with y = 0 (the centre alone) is the plain loss;
    with perturbations, its gradient matches central finite differences."""
    torch.manual_seed(0)
    net = autoencoder(in_features=6, width=5, bottleneck=2, activation="tanh").double()
    x = torch.randn(4, 6, dtype=torch.float64)
    u = RECONSTRUCTION.targets(x, torch.zeros(4, dtype=torch.int64))
    ple = PartialLocalEntropy(net, base_loss=RECONSTRUCTION, layers=("fc3",), R=0.05, y=3)
    g = torch.Generator().manual_seed(3)
    draws = ple.sample(g, 0)
    loss = ple(x, u, generator=g, step=0, draws=draws).loss
    grads = torch.autograd.grad(loss, [net.fc3.weight, net.fc4.weight])
    eps = 1e-6
    for w, grad in zip((net.fc3.weight, net.fc4.weight), grads, strict=True):
        for i, j in ((0, 0), (3, 1), (4, 0)):
            with torch.no_grad():
                w[i, j] += eps
                up = float(ple(x, u, generator=g, step=0, draws=draws).loss)
                w[i, j] -= 2 * eps
                down = float(ple(x, u, generator=g, step=0, draws=draws).loss)
                w[i, j] += eps
            fd = (up - down) / (2 * eps)
            assert float(grad[i, j]) == pytest.approx(fd, rel=1e-6, abs=1e-10)
    plain = PartialLocalEntropy(net, base_loss=RECONSTRUCTION, layers=("fc3",), R=0.05, y=0)
    with torch.no_grad():
        centre = float(plain(x, u, generator=g, step=0).loss)
        assert centre == pytest.approx(float(F.mse_loss(net(x), u)), rel=1e-14)


# ----------------------------------------------------------------------------- training


def test_tiny_reconstruction_run_logs_losses_and_no_accuracy(tmp_path):
    cfg = tiny_config({**AE, "guidance": {"dense_weight": 0.1}}, epochs=3)
    summary = train(cfg, tmp_path, progress=False)
    lines = read_jsonl(tmp_path / "log.jsonl")
    assert summary["status"] == "complete" and len(lines) == 3
    for rec in lines:
        assert rec["test_acc"] is None and rec["train_acc"] is None
        assert rec["best_test_acc"] is None and rec["test_loss"] > 0
        assert set(rec["guidance"]["h"]) == {"fc3", "fc4"}  # 8 -> 4 -> 8 -> 16: tall decoder
    losses = [r["test_loss"] for r in lines]
    assert [r["best_test_loss"] for r in lines] == [min(losses[: i + 1]) for i in range(3)]
    assert summary["best_test_acc"] is None and summary["final_test_acc"] is None
    assert summary["final_train_acc"] is None
    assert summary["best_test_loss"] == min(losses)
    assert summary["best_epoch"] == 1 + losses.index(min(losses))
    assert summary["final_test_loss"] == losses[-1]
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    # the command line's report and the sweep's results row name the losses
    assert "test loss: final" in _report(summary, tmp_path)
    point = Point(settings={}, config=summary["config"], name="ae")
    row = result_row(point, tmp_path, experiment="x", scale="quick")
    assert row["best_test_acc"] == "" and row["final_test_acc"] == ""
    assert row["best_test_loss"] == repr(min(losses)) and row["final_test_loss"] == repr(losses[-1])
    # the logged test loss is the evaluation's mean squared error of the final model
    data = load_dataset(cfg.data)
    model = build_model(cfg, data.input_shape, data.classes, seed=0)
    model.load_state_dict(load_checkpoint(tmp_path / "checkpoint.pt")["model"])
    loss, acc = evaluate(
        model, data, data.x_test, data.y_test, batch_size=7, objective=RECONSTRUCTION
    )
    assert acc is None and loss == pytest.approx(losses[-1], rel=1e-6)
    with torch.no_grad():
        x = data.normalise(data.x_test)
        assert loss == pytest.approx(float(((model(x) - x) ** 2).mean()), rel=1e-6)


def test_summary_records_the_final_entropy_profile_guided_or_not(tmp_path):
    """summary.json's "entropy" is h_k = log det(W^T W) / (2 n) of the final weights
    (checked against a float64 numpy computation), for named layers even unguided, and
    equals the last log line's h of a guided run (the same weights)."""
    import numpy as np

    def h_numpy(w: torch.Tensor) -> float:
        a = w.detach().double().numpy()
        sign, logdet = np.linalg.slogdet(a.T @ a)
        assert sign > 0
        return 0.5 * logdet / a.shape[1]

    named = {**AE, "guidance": {"layers": ["fc4", "fc3"]}}
    summary = train(tiny_config(named, epochs=2), tmp_path / "u", progress=False)
    final = load_checkpoint(tmp_path / "u" / "checkpoint.pt")["model"]
    assert list(summary["entropy"]) == ["fc3", "fc4"]
    for layer in ("fc3", "fc4"):
        assert summary["entropy"][layer] == pytest.approx(
            h_numpy(final[f"{layer}.weight"]), rel=1e-5
        )
    assert "guidance" not in read_jsonl(tmp_path / "u" / "log.jsonl")[-1]  # unguided
    guided = {**AE, "guidance": {"dense_weight": 0.1}}  # layers empty: the guided ones
    summary = train(tiny_config(guided, epochs=2), tmp_path / "g", progress=False)
    last = read_jsonl(tmp_path / "g" / "log.jsonl")[-1]
    assert summary["entropy"] == pytest.approx(last["guidance"]["h"], rel=1e-12)
    plain = train(tiny_config(AE, epochs=1), tmp_path / "p", progress=False)
    assert "entropy" not in plain  # nothing named, nothing guided
    # refused before training: a bias, a wide layer (no entropy change), guided or not
    for bad, weight in (("fc1.bias", 0.0), ("fc1", 0.0), ("fc1", 0.1), ("fc*", 0.0)):
        cfg = tiny_config({**AE, "guidance": {"layers": [bad], "dense_weight": weight}}, epochs=1)
        with pytest.raises(ValueError, match=r"guidance(\.layers)?: .*(fc1|wide)|entropy change"):
            train(cfg, tmp_path / "b", progress=False)
        assert not (tmp_path / "b" / "log.jsonl").exists()


def test_reconstruction_resumes_bitwise_and_measures_flatness(tmp_path):
    changes = {
        **AE,
        "smoothing": {"layers": ["fc3"], "R": 0.05, "y": 2},
        "logging": {"flatness": True, "flatness_n_train": 32, "flatness_samples": 4},
    }
    whole = train(tiny_config(changes, epochs=2), tmp_path / "a", progress=False)
    train(tiny_config(changes, epochs=1), tmp_path / "b", progress=False)
    resumed = train(tiny_config(changes, epochs=2), tmp_path / "b", resume=True, progress=False)
    a, b = read_jsonl(tmp_path / "a" / "log.jsonl"), read_jsonl(tmp_path / "b" / "log.jsonl")

    def strip(lines):
        return [{k: v for k, v in r.items() if k != "wall_time"} for r in lines]

    assert strip(a) == strip(b)
    assert (resumed["best_test_loss"], resumed["best_epoch"]) == (
        whole["best_test_loss"],
        whole["best_epoch"],
    )
    # the end-of-run flatness of the reconstruction loss: every layer, centre = L(W) > 0
    flat = whole["flatness"]
    assert set(flat["layers"]) == {"fc1", "fc2", "fc3", "fc4"} and flat["centre_loss"] > 0
    assert all(e["mean"] == e["mean"] for e in flat["model"]["local_energy"])  # not NaN


def test_a_run_guided_towards_a_target_table_resumes_bitwise(tmp_path):
    """A per-layer target table (guidance.target = {fc3 = ..., fc4 = ...}) is one setting
    of the checkpoint's configuration: the same table resumes bitwise, another value in
    it is refused by name.  (The check used to open the table into keys of its own and
    then miss the scalar default's key, refusing every resume of such a run.)"""
    guided = {
        **AE,
        "guidance": {"layers": ["fc3", "fc4"], "dense_weight": 1.0, "target": {"fc3": 0.5}},
    }
    train(tiny_config(guided, epochs=2), tmp_path / "a", progress=False)
    train(tiny_config(guided, epochs=1), tmp_path / "b", progress=False)
    train(tiny_config(guided, epochs=2), tmp_path / "b", resume=True, progress=False)
    a, b = read_jsonl(tmp_path / "a" / "log.jsonl"), read_jsonl(tmp_path / "b" / "log.jsonl")
    assert [{k: v for k, v in r.items() if k != "wall_time"} for r in a] == [
        {k: v for k, v in r.items() if k != "wall_time"} for r in b
    ]
    other = {**guided, "guidance": {**guided["guidance"], "target": {"fc3": 0.6}}}
    train(tiny_config(other, epochs=1), tmp_path / "c", progress=False)
    with pytest.raises(ValueError, match=r"cannot resume: .*guidance\.target"):
        train(tiny_config(guided, epochs=2), tmp_path / "c", resume=True, progress=False)
