"""Configuration: TOML -> dataclass -> dict round trips, overrides, and every bad input."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from anisotropy.training.config import (
    DataConfig,
    OptimConfig,
    SmoothingConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    config_to_toml,
    load_config,
    parse_override,
)

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"

TOML = """
seed = 7
epochs = 3
[model]
name = "cnn_table25"
padding = 1
[data]
name = "digits"
n_train = 100
[optim]
lr = 1e-3
weight_decay = 1e-4
[smoothing]
layers = ["fc1", "fc2"]
reduction = "plea"
R = 0.02
k = inf
schedule = "cosine"
R_final = 0.001
[logging]
log_every = 2
checkpoint_every = 4
"""


def test_defaults_are_the_papers_settings():
    c = TrainConfig()
    assert (c.optim.lr, c.optim.momentum, c.optim.nesterov, c.optim.batch_size) == (
        1e-4,
        0.9,
        False,
        256,
    )
    assert (c.optim.weight_decay, c.smoothing.y, c.smoothing.k, c.epochs) == (0.0, 4, math.inf, 120)
    assert c.smoothing.layers == [] and not c.smoothing.active
    assert (c.model.depth, c.model.width) == (2, 784)


def test_toml_dataclass_dict_round_trip(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text(TOML)
    cfg = load_config(p)
    assert cfg.seed == 7 and cfg.model.name == "cnn_table25" and cfg.model.padding == 1
    assert cfg.smoothing.layers == ["fc1", "fc2"] and math.isinf(cfg.smoothing.k)
    assert isinstance(cfg.optim.lr, float) and cfg.data.n_train == 100
    # dataclass -> dict -> dataclass
    assert config_from_dict(config_to_dict(cfg)) == cfg
    # dataclass -> TOML text -> dataclass (None fields are left out and come back as None)
    assert config_from_dict(tomllib.loads(config_to_toml(cfg))) == cfg
    # strict JSON: inf travels as the string "inf"
    d = config_to_dict(cfg, json_safe=True)
    assert d["smoothing"]["k"] == "inf"
    assert config_from_dict(json.loads(json.dumps(d, allow_nan=False))) == cfg
    # the file's keys are exactly reproduced in the dict
    raw = tomllib.loads(TOML)
    full = config_to_dict(cfg)
    for section, values in raw.items():
        if isinstance(values, dict):
            for k, v in values.items():
                assert full[section][k] == v
        else:
            assert full[section] == values


def test_int_accepted_for_float_but_not_bool_for_int():
    cfg = config_from_dict({"optim": {"lr": 1}})
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    with pytest.raises(ValueError, match="seed must be an integer"):
        config_from_dict({"seed": True})
    with pytest.raises(ValueError, match="epochs must be an integer"):
        config_from_dict({"epochs": 2.0})


def test_overrides_parse_toml_literals_and_leave_the_input_unchanged():
    base = TrainConfig()
    cfg = apply_overrides(
        base,
        [
            "smoothing.R=0.02",
            "optim.lr=1e-3",
            'smoothing.layers=["fc1"]',
            "data.name=digits",
            'model.name="cnn_table24"',
            "smoothing.k=8",
            "optim.nesterov=true",
            "seed=3",
            "data.n_train=50",
        ],
    )
    assert cfg.smoothing.R == 0.02 and cfg.optim.lr == 1e-3 and cfg.smoothing.layers == ["fc1"]
    assert cfg.data.name == "digits" and cfg.model.name == "cnn_table24"
    assert (
        cfg.smoothing.k == 8.0 and cfg.optim.nesterov and cfg.seed == 3 and cfg.data.n_train == 50
    )
    assert base == TrainConfig()
    # later overrides win
    assert apply_overrides(base, ["seed=1", "seed=2"]).seed == 2
    assert parse_override(" smoothing.k = inf ") == (["smoothing", "k"], math.inf)


@pytest.mark.parametrize(
    "item, message",
    [
        ("smoothing.R", "KEY=VALUE"),
        ("=3", "dotted key"),
        ("smoothing..R=1", "dotted key"),
        ("smoothing.R=", "empty value"),
        ("optim.lr=[1,", "not a TOML literal"),
        ("optim.lr=abc", "optim.lr must be a number"),
        ("optim.foo=1", r"unknown key 'optim.foo'; valid keys here: lr, momentum"),
        ("optimiser.lr=1", "not a configuration section; valid sections: model, data"),
        ("optim=1", "unknown key 'optim'"),
        ("smoothing.R.x=1", "not a configuration section"),
    ],
)
def test_bad_overrides_are_clear_errors(item, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(TrainConfig(), [item])


def test_overrides_must_be_a_list():
    with pytest.raises(ValueError, match="list of KEY=VALUE"):
        apply_overrides(TrainConfig(), "seed=1")


def test_unknown_keys_name_the_key_and_list_valid_ones():
    with pytest.raises(
        ValueError,
        match=r"unknown configuration key 'smoothing.radius'; valid "
        r"keys in smoothing: layers, reduction, beta",
    ):
        config_from_dict({"smoothing": {"radius": 0.1}})
    with pytest.raises(
        ValueError,
        match=r"unknown configuration key 'lr'; valid keys in the "
        r"configuration: seed, epochs",
    ):
        config_from_dict({"lr": 0.1})
    with pytest.raises(ValueError, match="optim must be a table"):
        config_from_dict({"optim": 3})


@pytest.mark.parametrize(
    "d, message",
    [
        ({"optim": {"lr": 0}}, "optim.lr must be a number > 0"),
        ({"optim": {"lr": math.inf}}, "optim.lr must be a number > 0"),
        ({"optim": {"momentum": 1.0}}, r"optim.momentum must be a number in \[0, 1\)"),
        ({"optim": {"momentum": 0.0, "nesterov": True}}, "Nesterov needs momentum"),
        ({"optim": {"weight_decay": -1e-4}}, "weight_decay must be a number >= 0"),
        ({"optim": {"batch_size": 0}}, "batch_size must be an integer >= 1"),
        ({"smoothing": {"R": 0.0}}, r"smoothing.R must be a number in \[1e-150, 1e\+150\]"),
        # gamma = 1/R^2 of the Gaussian kernel was 1/0 (ZeroDivisionError) at R = 1e-300
        ({"smoothing": {"R": 1e-300, "kernel": "gaussian"}}, r"smoothing.R must be .*1e-150"),
        ({"smoothing": {"R": 1e-300}}, r"smoothing.R must be .*gamma = 1/R\^2 must be finite"),
        ({"smoothing": {"R": 1e200}}, r"smoothing.R must be a number in \[1e-150"),
        ({"smoothing": {"R": math.inf}}, r"smoothing.R must be a number in \[1e-150"),
        (
            {"smoothing": {"kernel": "gaussian", "schedule": "linear", "R_final": 1e-300}},
            r"smoothing.R_final must be 0 or a number in \[1e-150",
        ),
        ({"smoothing": {"R_final": -1.0}}, r"smoothing.R_final must be 0 or a number in"),
        ({"smoothing": {"R": math.nan}}, "must not be NaN"),
        ({"smoothing": {"y": -1}}, "smoothing.y must be an integer >= 0"),
        ({"smoothing": {"y": 0, "include_centre": False}}, "true when y = 0"),
        ({"smoothing": {"k": -1.0}}, r"smoothing.k must be a number in \(0, inf\]"),
        ({"smoothing": {"reduction": "mean"}}, "valid: 'pla', 'plea', 'beta'"),
        ({"smoothing": {"kernel": "cauchy"}}, "valid: 'box', 'gaussian'"),
        ({"smoothing": {"schedule": "exponential"}}, "R_final must be a number > 0"),
        ({"smoothing": {"layers": ["fc1", "fc1"]}}, "distinct layer names"),
        ({"smoothing": {"layers": "fc1"}}, "smoothing.layers must be a list"),
        ({"smoothing": {"layers": [1]}}, r"smoothing.layers\[0\] must be a string"),
        ({"smoothing": {"gamma": 0}}, "gamma must be a number > 0"),
        ({"model": {"name": "resnet"}}, "valid: 'mlp', 'cnn_table24', 'cnn_table25'"),
        ({"model": {"activation": "gelu"}}, "valid: 'relu', 'tanh'"),
        ({"model": {"depth": 0}}, "model.depth must be an integer >= 1"),
        ({"data": {"name": "imagenet"}}, "valid: 'fashion_mnist'"),
        ({"data": {"augment": "mixup"}}, "valid: 'none', 'crop', 'heavy'"),
        ({"data": {"n_train": 0}}, "data.n_train must be an integer >= 1"),
        ({"data": {"test_fraction": 1.0}}, r"test_fraction must be a number in \(0, 1\)"),
        ({"logging": {"log_every": 2, "checkpoint_every": 3}}, "multiple of logging.log_every = 2"),
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"device": "gpu"}, "'cpu', 'cuda', 'cuda:N' or 'mps'"),
        ({"data": {"root": 3}}, "data.root must be a string"),
    ],
)
def test_bad_values_are_clear_errors(d, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict(d)


def test_load_config_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = = 1\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(bad)


#: the training configurations shipped with the trainer (other TOML files in
#: experiments/ are sweep definitions with their own format)
TRAIN_CONFIGS = ("smoke.toml", "fmnist_quick.toml", "cnn_fmnist_quick.toml")


def test_shipped_configs_load():
    for name in TRAIN_CONFIGS:
        f = EXPERIMENTS / name
        cfg = load_config(f)
        assert isinstance(cfg, TrainConfig)
        assert config_from_dict(tomllib.loads(config_to_toml(cfg))) == cfg


def test_sections_are_dataclasses_with_validation():
    with pytest.raises(ValueError, match="optim.lr"):
        OptimConfig(lr=-1.0)
    with pytest.raises(ValueError, match="smoothing.beta"):
        SmoothingConfig(beta=0.0)
    with pytest.raises(ValueError, match="data.split_seed"):
        DataConfig(split_seed=-1)
