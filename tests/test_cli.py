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
    got = _parse(["--out", "x", "--quick", "--reps", "7", "--layers", "fc1", "fc2",
                  "--inner.lr", "0.5", "--inner.method", "sobol"])
    assert got == Outer(out="x", quick=True, reps=7, layers=["fc1", "fc2"],
                        inner=Inner(lr=0.5, method="sobol"))


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
