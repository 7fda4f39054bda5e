"""Training loop: log format, exact limits (y = 0, R -> 0), Jensen, resume, NaN stop, errors."""

from __future__ import annotations

import functools
import itertools
import json
import math

import pytest
import torch
import torch.nn.functional as F

from anisotropy.cli.train import main
from anisotropy.data.datasets import load_dataset
from anisotropy.io import load_checkpoint, read_jsonl
from anisotropy.smoothing.losses import PartialLocalEntropy, reduce_losses
from anisotropy.smoothing.schedules import radius_schedule
from anisotropy.training.config import TrainConfig, apply_overrides, config_from_dict, load_config
from anisotropy.training.hooks import Callback
from anisotropy.training.signals import weight_layers
from anisotropy.training.trainer import build_model, derive_seeds, train
from tiny_runs import tiny_config

LOG_KEYS = {
    "epoch",
    "step",
    "train_loss",
    "smoothed_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "best_test_acc",
    "wall_time",
    "lr",
    "R",
    "layers",
    "passes",
    "forward_passes",
}
LAYER_KEYS = {"signal", "signal_std", "grad_mean_norm", "grad_std_norm", "weight_norm", "numel"}


def small(**over) -> TrainConfig:
    """The tiny run (a second or less), smoothed on fc2, with ``--set``-style overrides."""
    return tiny_config({"smoothing": {"layers": ["fc2"], "R": 0.05, "y": 3}}, **over)


def weights(run_dir):
    return load_checkpoint(run_dir / "checkpoint.pt")["model"]


def strip(lines, *keys):
    return [{k: v for k, v in rec.items() if k not in keys} for rec in lines]


def test_log_summary_and_run_directory(tmp_path):
    cfg = small(epochs=3)
    summary = train(cfg, tmp_path, progress=False)
    lines = read_jsonl(tmp_path / "log.jsonl")
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    assert [r["step"] for r in lines] == [6, 12, 18]  # 192 training samples / 32
    for r in lines:
        assert set(r) == LOG_KEYS
        assert set(r["layers"]) == {"fc1", "fc2", "fc3"}
        assert all(set(v) == LAYER_KEYS for v in r["layers"].values())
        assert r["lr"] == 0.05 and r["R"] == 0.05
        assert 0 <= r["train_acc"] <= 1 and 0 <= r["test_acc"] <= 1
    assert [r["best_test_acc"] for r in lines] == [
        max(x["test_acc"] for x in lines[: i + 1]) for i in range(3)
    ]
    assert all(a["wall_time"] < b["wall_time"] for a, b in itertools.pairwise(lines))
    assert summary["status"] == "complete" and summary["epochs"] == 3 and summary["steps"] == 18
    assert summary["final_test_acc"] == lines[-1]["test_acc"]
    assert summary["best_test_acc"] == max(r["test_acc"] for r in lines)
    assert summary["final_train_loss"] == lines[-1]["train_loss"]
    assert summary["smoothed_parameters"] == ["fc2.weight"]
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert config_from_dict(summary["config"]) == cfg
    assert load_config(tmp_path / "config.toml") == cfg
    ck = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ck["epoch"] == 3 and ck["log_position"] == (tmp_path / "log.jsonl").stat().st_size
    # the training learned the mixture (Bayes error a few percent): far above chance 1/3
    assert lines[-1]["test_acc"] > 0.6


def test_y0_and_plain_cross_entropy_give_identical_runs(tmp_path):
    plain = train(small(**{"smoothing.layers": "[]"}), tmp_path / "plain", progress=False)
    y0 = train(small(**{"smoothing.y": 0}), tmp_path / "y0", progress=False)
    a, b = weights(tmp_path / "plain"), weights(tmp_path / "y0")
    assert all(torch.equal(a[k], b[k]) for k in a)
    la, lb = read_jsonl(tmp_path / "plain" / "log.jsonl"), read_jsonl(tmp_path / "y0" / "log.jsonl")
    assert strip(la, "wall_time", "R") == strip(lb, "wall_time", "R")
    assert all(r["R"] is None for r in la) and all(
        r["smoothed_loss"] == r["train_loss"] for r in lb
    )
    assert plain["smoothed_parameters"] == [] and y0["smoothed_parameters"] == ["fc2.weight"]


def test_vanishing_radius_reproduces_plain_training(tmp_path):
    """R = 1e-30 moves no float32 weight (ulp ~ 1e-9), so PLA averages y + 1 copies of the
    plain loss; its gradient differs from the plain one only by the rounding of that
    average (~1e-7 relative per step), amplified over 12 steps: tolerance 1e-5."""
    train(small(**{"smoothing.layers": "[]"}), tmp_path / "plain", progress=False)
    train(
        small(**{"smoothing.R": 1e-30, "smoothing.layers": '["fc1", "fc2", "fc3"]'}),
        tmp_path / "tiny",
        progress=False,
    )
    a, b = weights(tmp_path / "plain"), weights(tmp_path / "tiny")
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-6), k
    la, lb = (
        read_jsonl(tmp_path / "plain" / "log.jsonl"),
        read_jsonl(tmp_path / "tiny" / "log.jsonl"),
    )
    for ra, rb in zip(la, lb, strict=True):
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-5)
        assert rb["smoothed_loss"] == pytest.approx(ra["train_loss"], rel=1e-5)
        assert rb["test_acc"] == ra["test_acc"]


def test_plea_is_below_pla_at_every_step(tmp_path, monkeypatch):
    """Jensen: -log mean exp(-L_a) <= mean L_a on the same perturbed losses, at every
    training step; and the logged PLEA epoch mean is below the PLA mean of the same steps."""
    seen = []
    call = PartialLocalEntropy.__call__

    def recording(self, *args, **kwargs):
        out = call(self, *args, **kwargs)
        pla = float(reduce_losses(out.per_sample, reduction="pla"))
        plea = float(reduce_losses(out.per_sample, reduction="plea"))
        seen.append((plea, pla, float(out.loss.detach())))
        return out

    monkeypatch.setattr(PartialLocalEntropy, "__call__", recording)
    train(
        small(
            **{
                "smoothing.reduction": "plea",
                "smoothing.R": 0.5,
                "smoothing.layers": '["fc1", "fc2"]',
            }
        ),
        tmp_path,
        progress=False,
    )
    assert len(seen) == 12
    assert all(plea <= pla for plea, pla, _ in seen)
    assert any(plea < pla - 1e-6 for plea, pla, _ in seen)  # the perturbations matter at R = 0.5
    assert all(loss == pytest.approx(plea, rel=1e-6) for plea, _, loss in seen)
    lines = read_jsonl(tmp_path / "log.jsonl")
    for e, rec in enumerate(lines):
        epoch = seen[6 * e : 6 * (e + 1)]
        assert rec["smoothed_loss"] == pytest.approx(sum(s[0] for s in epoch) / 6, rel=1e-6)
        assert rec["smoothed_loss"] <= sum(s[1] for s in epoch) / 6


def test_logged_signal_is_eq2_of_the_optimised_loss(tmp_path):
    """One step per epoch: the logged s_I equals mean |grad| of the smoothed loss at the
    initial weights, recomputed here with the same seeds and perturbations."""
    cfg = small(epochs=1, **{"optim.batch_size": 1000, "smoothing.R": 0.3})
    train(cfg, tmp_path, progress=False)
    rec = read_jsonl(tmp_path / "log.jsonl")[0]
    data = load_dataset(cfg.data)
    init, data_seed, pert_seed = derive_seeds(cfg.seed)
    model = build_model(cfg, data.input_shape, data.classes, seed=init)
    idx = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(data_seed))
    ple = PartialLocalEntropy(model, F.cross_entropy, layers=["fc2"], R=0.3, y=3)
    out = ple(
        data.normalise(data.x_train[idx]),
        data.y_train[idx],
        generator=torch.Generator().manual_seed(pert_seed),
        step=0,
    )
    out.loss.backward()
    for name, p in weight_layers(model).items():
        got = rec["layers"][name]
        assert got["signal"] == pytest.approx(float(p.grad.abs().double().mean()), rel=1e-6)
        assert got["grad_mean_norm"] == pytest.approx(float(p.grad.double().norm()), rel=1e-6)
        assert got["signal_std"] == 0.0 and got["grad_std_norm"] == 0.0
    assert rec["smoothed_loss"] == pytest.approx(float(out.loss.detach()), rel=1e-6)
    assert rec["train_loss"] == pytest.approx(float(out.per_sample[0]), rel=1e-6)


def test_resume_follows_the_uninterrupted_trajectory_bitwise(tmp_path):
    """4 epochs straight vs. a run killed in epoch 4 (after the epoch-3 log line, past the
    epoch-2 checkpoint) and resumed: same weights, same log lines except wall_time.
    Heavy augmentation and PLA exercise both generators."""
    cfg = config_from_dict(
        {
            "seed": 3,
            "epochs": 4,
            "threads": 1,
            "model": {"depth": 1, "width": 16},
            "data": {"name": "digits", "n_train": 96, "n_test": 64, "augment": "heavy"},
            "optim": {"lr": 0.02, "batch_size": 32},
            "smoothing": {"layers": ["fc1"], "R": 0.02, "y": 2},
            "logging": {"checkpoint_every": 2},
        }
    )
    train(cfg, tmp_path / "straight", progress=False)

    class Dying(Callback):
        def on_step(self, state):
            if state.step == 10:  # epoch 4 has steps 9..11: killed before step 10
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "resumed", progress=False, callbacks=[Dying()])
    assert len(read_jsonl(tmp_path / "resumed" / "log.jsonl")) == 3
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["epoch"] == 2
    summary = train(cfg, tmp_path / "resumed", resume=True, progress=False)
    assert summary["status"] == "complete" and summary["epochs"] == 4
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    la = read_jsonl(tmp_path / "straight" / "log.jsonl")
    lb = read_jsonl(tmp_path / "resumed" / "log.jsonl")
    assert len(lb) == 4 and strip(la, "wall_time") == strip(lb, "wall_time")


def test_resume_errors_and_fresh_start(tmp_path):
    cfg = small(epochs=1)
    train(cfg, tmp_path / "r", progress=False)
    with pytest.raises(FileExistsError, match="already holds a run; pass resume=True"):
        train(cfg, tmp_path / "r", progress=False)
    with pytest.raises(ValueError, match=r"differs from the checkpoint's in optim.lr"):
        train(apply_overrides(cfg, ["optim.lr=0.1"]), tmp_path / "r", resume=True, progress=False)
    # more epochs may be asked for on resume
    more = train(apply_overrides(cfg, ["epochs=2"]), tmp_path / "r", resume=True, progress=False)
    assert more["epochs"] == 2 and len(read_jsonl(tmp_path / "r" / "log.jsonl")) == 2
    # resume without a checkpoint starts afresh
    fresh = train(cfg, tmp_path / "new", resume=True, progress=False)
    assert fresh["status"] == "complete" and fresh["epochs"] == 1


def test_checkpoint_from_before_precision_and_accumulate_resumes(tmp_path):
    """A checkpoint whose configuration predates ``precision`` and ``optim.accumulate``
    resumes (the absent keys mean their defaults); a different precision is refused,
    while ``optim.accumulate`` may change (it only reorders the sums of a step)."""
    from anisotropy.io import save_checkpoint

    cfg = small(epochs=1)
    train(cfg, tmp_path / "r", progress=False)
    ck = load_checkpoint(tmp_path / "r" / "checkpoint.pt")
    del ck["config"]["precision"], ck["config"]["optim"]["accumulate"]
    save_checkpoint(tmp_path / "r" / "checkpoint.pt", ck)
    with pytest.raises(ValueError, match=r"differs from the checkpoint's in precision"):
        train(
            apply_overrides(cfg, ["epochs=2", "precision=bfloat16"]),
            tmp_path / "r",
            resume=True,
            progress=False,
        )
    more = apply_overrides(cfg, ["epochs=2", "optim.accumulate=2"])
    summary = train(more, tmp_path / "r", resume=True, progress=False)
    assert summary["epochs"] == 2 and summary["world_size"] == 1


def test_checkpoint_without_a_later_field_resumes_with_its_default(tmp_path):
    """Any field the checkpoint's configuration lacks counts as its default (here the
    step log's ``steps_split``, added after checkpoints of long runs were written); a
    non-default value of it is a difference."""
    from anisotropy.io import save_checkpoint

    cfg = small(epochs=1)
    train(cfg, tmp_path / "r", progress=False)
    ck = load_checkpoint(tmp_path / "r" / "checkpoint.pt")
    del ck["config"]["logging"]["steps_split"]
    save_checkpoint(tmp_path / "r" / "checkpoint.pt", ck)
    split = ["epochs=2", "logging.steps=true", "logging.steps_split=2"]
    with pytest.raises(ValueError, match=r"differs from the checkpoint's in logging.steps,"):
        train(apply_overrides(cfg, split), tmp_path / "r", resume=True, progress=False)
    summary = train(apply_overrides(cfg, ["epochs=2"]), tmp_path / "r", resume=True, progress=False)
    assert summary["status"] == "complete" and summary["epochs"] == 2


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    class Poison(Callback):
        def on_step(self, state):
            if state.step == 14:  # before step 14 of epoch 3 (steps 12..17)
                with torch.no_grad():
                    state.model.fc1.weight[0, 0] = math.nan

    summary = train(small(epochs=4), tmp_path / "a", progress=False, callbacks=[Poison()])
    assert summary["status"].startswith(
        "stopped: non-finite training loss (nan) at epoch 3, step 14"
    )
    assert summary["epochs"] == 2 and summary["steps"] == 12
    assert len(read_jsonl(tmp_path / "a" / "log.jsonl")) == 2
    ck = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    assert ck["epoch"] == 2 and all(bool(torch.isfinite(v).all()) for v in ck["model"].values())
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["status"] == summary["status"]
    # the command line reports it and exits with status 3 (the public train(), with the
    # poisoning callback added, stands in for the one the command calls)
    import anisotropy.training.trainer as trainer_mod

    monkeypatch.setattr(trainer_mod, "train", functools.partial(train, callbacks=[Poison()]))
    cfg_file = tmp_path / "c.toml"
    from anisotropy.training.config import config_to_toml

    cfg_file.write_text(config_to_toml(small(epochs=4)))
    assert main([str(cfg_file), "--out", str(tmp_path / "b"), "--no-progress"]) == 3
    err = capsys.readouterr().err
    assert "non-finite training loss" in err and "kept the last good checkpoint" in err


def test_callbacks_see_every_step_and_every_log_line(tmp_path):
    """on_step once per optimiser step (6 per epoch: 192 samples / 32), on_epoch once per
    log line with that line; the state's loss is the smoothed loss optimised (its epoch
    mean is the logged smoothed_loss, to float32 rounding: rel 1e-6)."""
    steps, losses, records = [], [], []

    class Spy(Callback):
        def on_step(self, state):
            steps.append((state.epoch, state.step))
            losses.append(float(state.loss))

        def on_epoch(self, state, record):
            assert state.record is record and state.step == record["step"]
            records.append(record)

    train(small(epochs=2), tmp_path, progress=False, callbacks=[Spy()])
    assert steps == [(e, s) for e in (0, 1) for s in range(6 * e + 1, 6 * e + 7)]
    assert records == read_jsonl(tmp_path / "log.jsonl")
    for e, rec in enumerate(records):
        assert rec["smoothed_loss"] == pytest.approx(sum(losses[6 * e : 6 * e + 6]) / 6, rel=1e-6)


def test_a_raising_callback_stops_the_run_cleanly(tmp_path):
    """The run stops with a status naming the callback; summary, log and checkpoint are
    kept, and resuming completes the run."""

    class Stop(Callback):
        def on_epoch(self, state, record):
            if state.epoch == 2:
                raise RuntimeError("enough")

    summary = train(small(epochs=3), tmp_path, progress=False, callbacks=[Stop()])
    assert summary["status"] == "stopped: callback on_epoch raised RuntimeError: enough"
    assert summary["epochs"] == 2
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == summary["status"]
    assert len(read_jsonl(tmp_path / "log.jsonl")) == 2
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 2
    done = train(small(epochs=3), tmp_path, resume=True, progress=False)
    assert done["status"] == "complete" and done["epochs"] == 3
    with pytest.raises(TypeError, match="neither on_step"):
        train(small(epochs=1), tmp_path / "bad", progress=False, callbacks=[object()])


def test_radius_schedules():
    for kind in ("constant", "linear", "cosine", "exponential"):
        f = radius_schedule(kind, R=0.1, R_final=0.001, total_steps=10)
        assert f(0) == pytest.approx(0.1)
        end = 0.1 if kind == "constant" else 0.001
        assert f(10) == pytest.approx(end) and f(25) == pytest.approx(end)
        vals = [f(i) for i in range(11)]
        assert all(a >= b for a, b in itertools.pairwise(vals))
    assert radius_schedule("linear", R=0.1, R_final=0.0, total_steps=4)(2) == pytest.approx(0.05)
    assert radius_schedule("exponential", R=0.1, R_final=0.001, total_steps=4)(2) == pytest.approx(
        0.01
    )
    assert radius_schedule("cosine", R=0.1, R_final=0.0, total_steps=4)(2) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="R_final must lie in"):
        radius_schedule("exponential", R=0.1, R_final=0.0)
    with pytest.raises(ValueError, match="valid: 'constant'"):
        radius_schedule("step", R=0.1)
    with pytest.raises(ValueError, match="step must be an integer >= 0"):
        radius_schedule("linear", R=0.1)(-1)


def test_fading_radius_is_logged_and_ends_in_plain_steps(tmp_path):
    cfg = small(
        epochs=3,
        **{
            "smoothing.schedule": "linear",
            "smoothing.R_final": 0.0,
            "smoothing.schedule_epochs": 2,
        },
    )
    train(cfg, tmp_path, progress=False)
    lines = read_jsonl(tmp_path / "log.jsonl")
    f = radius_schedule("linear", R=0.05, R_final=0.0, total_steps=12)
    assert [r["R"] for r in lines] == pytest.approx([f(5), f(11), 0.0])
    assert lines[2]["smoothed_loss"] == lines[2]["train_loss"]  # R = 0: plain steps
    assert lines[0]["smoothed_loss"] != lines[0]["train_loss"]


def test_command_line_smoke_run_and_errors(tmp_path, monkeypatch, capsys):
    out = tmp_path / "smoke"
    argv = [
        "experiments/smoke.toml",
        "--out",
        str(out),
        "--no-progress",
        "--set",
        "epochs=1",
        "--set",
        "data.n_train=128",
        "--set",
        "model.width=32",
    ]
    monkeypatch.chdir(tmp_path)  # the shipped configuration is found without the repository
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "complete after 1 epoch(s)" in text and "test accuracy: final" in text
    assert " passes, " in text  # the cost in forward+backward passes
    assert (out / "summary.json").is_file() and len(read_jsonl(out / "log.jsonl")) == 1

    def error_of(args):
        assert main(args) == 2
        return capsys.readouterr().err

    assert "KEY=VALUE" in error_of(["experiments/smoke.toml", "--set", "epochs"])
    assert "unknown key 'optim.rate'" in error_of(
        ["experiments/smoke.toml", "--set", "optim.rate=1"]
    )
    assert "does not exist" in error_of(["no/such/config.toml"])
    assert "already holds a run" in error_of(argv)
    msg = error_of(
        [
            "experiments/smoke.toml",
            "--out",
            str(tmp_path / "x"),
            "--set",
            "data.name=fashion_mnist",
            "--set",
            f"data.root={tmp_path / 'none'}",
        ]
    )
    assert "apt-get install dataset-fashion-mnist" in msg
    msg = error_of(
        [
            "experiments/smoke.toml",
            "--out",
            str(tmp_path / "y"),
            "--set",
            'smoothing.layers=["fc9"]',
        ]
    )
    assert "fc9" in msg and "fc1" in msg


@pytest.mark.parametrize(
    "over",
    [
        {"smoothing.reduction": "beta", "smoothing.beta": 4.0},
        {"smoothing.include_centre": False},
        {"smoothing.kernel": "gaussian", "smoothing.R": 0.02},
        {"smoothing.k": 50.0, "optim.weight_decay": 1e-3, "optim.nesterov": True},
    ],
)
def test_every_smoothing_option_reaches_the_loss(tmp_path, over):
    summary = train(small(epochs=1, **over), tmp_path, progress=False)
    rec = read_jsonl(tmp_path / "log.jsonl")[0]
    assert summary["status"] == "complete"
    # the smoothed loss of perturbed weights differs from the centre loss it is logged beside
    assert rec["smoothed_loss"] != rec["train_loss"]
    assert math.isfinite(rec["smoothed_loss"]) and math.isfinite(rec["train_loss"])


def _foreign_generator_checkpoint(tmp_path, layers):
    """A finished 1-epoch run whose checkpoint carries a perturbation-generator state
    of another device's layout (a CUDA generator's state has 16 bytes)."""
    from anisotropy.io import load_checkpoint, save_checkpoint
    from anisotropy.training.config import config_from_dict
    from anisotropy.training.trainer import train

    d = {
        "seed": 0,
        "epochs": 1,
        "threads": 1,
        "model": {"name": "mlp", "depth": 1, "width": 8},
        "data": {"name": "synthetic", "synthetic_size": 64, "synthetic_features": 4},
        "optim": {"lr": 0.05, "batch_size": 16},
        "smoothing": {"layers": layers},
    }
    train(config_from_dict(d), tmp_path / "run", progress=False)
    ck = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    ck["perturb_generator"] = torch.zeros(16, dtype=torch.uint8)
    save_checkpoint(tmp_path / "run" / "checkpoint.pt", ck)
    return config_from_dict({**d, "epochs": 2})


def test_unsmoothed_run_resumes_across_devices(tmp_path):
    """An unsmoothed run never draws perturbations, so a checkpoint from another
    device (foreign generator state) resumes and completes."""
    from anisotropy.training.trainer import train

    cfg = _foreign_generator_checkpoint(tmp_path, [])
    assert train(cfg, tmp_path / "run", resume=True, progress=False)["status"] == "complete"


def test_smoothed_run_refuses_to_change_device(tmp_path):
    from anisotropy.training.trainer import train

    cfg = _foreign_generator_checkpoint(tmp_path, ["fc1"])
    with pytest.raises(ValueError, match="device-specific"):
        train(cfg, tmp_path / "run", resume=True, progress=False)


def test_model_init_torch_default_is_uniform_in_one_over_sqrt_fan_in():
    """``model.init = "torch_default"``: PyTorch's reset_parameters, U(-1/sqrt(fan_in),
    1/sqrt(fan_in)) for weights and biases, variance 1/(3 fan_in) (614,656 weights of fc2:
    the sample variance is within 1 %, its standard error being 0.1 %); the default stays
    Kaiming-normal (variance 2/fan_in, zero biases) bit for bit, both seeded."""
    from anisotropy import models

    cfg = config_from_dict({"model": {"depth": 2, "width": 784}})
    poor = apply_overrides(cfg, ["model.init=torch_default"])
    a = build_model(poor, (784,), 10, seed=5)
    again = build_model(poor, (784,), 10, seed=5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), again.parameters(), strict=True))
    bound = 1 / math.sqrt(784)
    w, b = a.fc2.weight.detach().double(), a.fc2.bias.detach()
    assert w.abs().max() <= bound and b.abs().max() <= bound and b.abs().min() > 0
    assert float(w.var()) == pytest.approx(1 / (3 * 784), rel=0.01)
    good = build_model(cfg, (784,), 10, seed=5)
    torch.manual_seed(5)
    reference = models.mlp(depth=2, width=784, in_features=784, classes=10)
    pairs = zip(good.parameters(), reference.parameters(), strict=True)
    assert all(torch.equal(p, q) for p, q in pairs)
    assert float(good.fc2.weight.detach().double().var()) == pytest.approx(2 / 784, rel=0.01)
    with pytest.raises(ValueError, match="model.init"):
        apply_overrides(cfg, ["model.init=xavier"])
