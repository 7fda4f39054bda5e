"""The console-script dispatcher and the dataclass -> argparse derivation."""

import argparse
import dataclasses
from typing import Literal

import pytest

from anisotropy import cli
from anisotropy.cli.args import add_dataclass_arguments, from_namespace


@dataclasses.dataclass
class Inner:
    lr: float = 0.1
    method: Literal["mc", "sobol"] = "mc"


@dataclasses.dataclass
class Outer:
    out: str = "runs"
    quick: bool = False
    reps: int = 3
    layers: list[str] = dataclasses.field(default_factory=lambda: ["fc1"])
    inner: Inner = dataclasses.field(default_factory=Inner)


def _parse(argv):
    p = argparse.ArgumentParser()
    add_dataclass_arguments(p, Outer)
    return from_namespace(Outer, p.parse_args(argv))


def test_defaults_round_trip():
    assert _parse([]) == Outer()


def test_every_field_settable():
    got = _parse(
        [
            "--out",
            "x",
            "--quick",
            "--reps",
            "7",
            "--layers",
            "fc1",
            "fc2",
            "--inner.lr",
            "0.5",
            "--inner.method",
            "sobol",
        ]
    )
    assert got == Outer(
        out="x", quick=True, reps=7, layers=["fc1", "fc2"], inner=Inner(lr=0.5, method="sobol")
    )


def test_literal_choices_enforced(capsys):
    with pytest.raises(SystemExit):
        _parse(["--inner.method", "nope"])
    assert "sobol" in capsys.readouterr().err


def test_unknown_command_lists_valid(capsys):
    assert cli.main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "frobnicate" in err and "train" in err and "limits" in err


def test_help_lists_every_command(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


@dataclasses.dataclass
class Percent:
    level: float = dataclasses.field(default=0.95, metadata={"help": "coverage in % (95% CI)"})


def test_percent_in_help_does_not_crash(capsys):
    p = argparse.ArgumentParser()
    add_dataclass_arguments(p, Percent)
    with pytest.raises(SystemExit):
        p.parse_args(["--help"])
    assert "95% CI" in capsys.readouterr().out


@dataclasses.dataclass
class WithOverrides:
    set: list[str] = dataclasses.field(default_factory=list, metadata={"override": True})


def test_override_option_is_repeatable_and_shared():
    """One grammar: ``--set KEY=VALUE`` repeated, on dataclass-derived commands and on train."""
    p = argparse.ArgumentParser()
    add_dataclass_arguments(p, WithOverrides)
    got = from_namespace(WithOverrides, p.parse_args(["--set", "a.b=1", "--set", 'c=["x"]']))
    assert got == WithOverrides(set=["a.b=1", 'c=["x"]'])
    assert from_namespace(WithOverrides, p.parse_args([])) == WithOverrides()
    from experiments.sweep import _parser as sweep_parser

    ns = sweep_parser().parse_args(["fig1", "--set", "epochs=1", "--set", "seed=2"])
    assert ns.set == ["epochs=1", "seed=2"]


def test_train_command_lives_in_the_cli_package():
    assert cli.COMMANDS["train"][0] == "anisotropy.cli.train:main"
