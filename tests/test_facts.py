"""Tests of :mod:`analysis.facts`: every fact verifies, the CLI works, wrong facts fail."""

from __future__ import annotations

import contextlib
import io
import json
import math

import pytest
import sympy as sp

from analysis import facts
from analysis.facts import catalogue
from anisotropy import cli

NAMES = [f.name for f in facts.default_facts()]


@pytest.fixture(scope="module")
def json_run():
    """One full ``anisotropy limits --json`` run (about 10 s), shared by the tests below."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = facts.main(["--json"])
    return rc, buf.getvalue()


def test_main_json_returns_zero_and_parses(json_run):
    rc, out = json_run
    assert rc == 0
    rows = json.loads(out)
    assert [r["name"] for r in rows] == NAMES
    assert all(
        set(r) >= {"statement", "symbolic", "numeric_error", "numeric_tol", "passed"} for r in rows
    )


@pytest.mark.parametrize("name", NAMES)
def test_every_fact_verifies(json_run, name):
    row = {r["name"]: r for r in json.loads(json_run[1])}[name]
    assert row["symbolic"] is True, row
    assert row["numeric_pass"] is True and row["numeric_error"] <= row["numeric_tol"], row
    assert row["passed"] is True


def test_names_unique():
    assert len(set(NAMES)) == len(NAMES)


def test_text_output_and_cli_dispatch(capsys):
    assert cli.main(["limits", "--only", "sigmoid_identity", "m_at_y0"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[-1] == "2/2 facts verified"
    assert all(line.startswith("[PASS] ") for line in lines[:2])


def test_verify_all_subset_returns_results():
    (res,) = facts.verify_all(["centre_value"])
    assert isinstance(res, facts.FactResult) and res.passed
    assert res.report().startswith("[PASS] centre_value:")


def test_unknown_fact_name_rejected():
    with pytest.raises(ValueError, match="fact"):
        facts.verify_all(["no_such_fact"])
    with pytest.raises(SystemExit) as exc:
        facts.main(["--only", "no_such_fact"])
    assert exc.value.code == 2


# --- the same machinery rejects wrong statements ------------------------------------------
def _assert_fails_both_ways(fact):
    res = facts.verify(fact)
    assert res.symbolic is False
    assert not res.numeric_pass and res.numeric_error > 1e3 * res.numeric_tol
    assert not res.passed and res.report().startswith("[FAIL]")
    return res


def test_wrong_normaliser_fails():
    # 4kR replaced by 2kR: a plausible slip in the exponent
    _assert_fails_both_ways(facts.fact_normaliser(lambda R, k: 2 * R / (1 - sp.exp(-2 * k * R))))


def test_eq11_heat_normaliser_fails_under_eq1_convention():
    # sqrt(pi/gamma) is the normaliser of exp(-gamma x^2) (eq 11), not of exp(-(gamma/2) x^2)
    _assert_fails_both_ways(facts.fact_heat_normaliser(lambda g: sp.sqrt(sp.pi / g)))


def test_wrong_variance_fails():
    # the logistic variance with scale 1/k instead of 1/(2k)
    _assert_fails_both_ways(
        facts.fact_kernel_variance(lambda R, k: R**2 / 3 + sp.pi**2 / (3 * k**2))
    )


def test_crashing_proof_or_check_is_a_failure():
    def boom():
        raise RuntimeError("boom")

    res = facts.verify(facts.Fact("broken", "1 = 1", boom, boom, 1.0))
    assert not res.symbolic and math.isnan(res.numeric_error) and not res.passed
    assert "boom" in res.note
    assert json.loads(json.dumps(res.to_dict()))["numeric_error"] == "nan"


def test_main_exits_nonzero_when_a_fact_fails(monkeypatch, capsys):
    wrong = facts.fact_heat_normaliser(lambda g: sp.sqrt(sp.pi / g))
    # verify_all looks the catalogue up in its own module
    monkeypatch.setattr(catalogue, "default_facts", lambda: [wrong])
    assert facts.main([]) == 1
    assert "[FAIL] heat_normaliser" in capsys.readouterr().out
