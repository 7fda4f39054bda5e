"""The prepared GPU check (benchmarks/gpu_check.py) runs end to end on the CPU.

On a CPU-only machine the "device" path is the CPU path again, so the float64
comparison must be exact (0.0): the same perturbations (drawn from the CPU
generator) and the same arithmetic.  The timing numbers are printed, never asserted.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_correctness_rows_cover_every_layer_choice_and_reduction():
    rows = _load().correctness(torch.device("cpu"), width=8, batch=4)
    assert {(r["layers"], r["reduction"]) for r in rows} == {
        (lay, red) for lay in ("fc1", "fc2", "fc1+fc2") for red in ("pla", "plea")
    }
    assert all(r["max_rel_diff"] == 0.0 for r in rows)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_cuda_request_on_cpu_build_is_a_clear_error(capsys):
    assert _load().main(["--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_bad_counts_are_refused(capsys):
    assert _load().main(["--device", "cpu", "--epochs", "0"]) == 2
    assert "--epochs must be an integer >= 1" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_run_writes_the_report(tmp_path, capsys):
    mod = _load()
    rc = mod.main(
        ["--device", "cpu", "--quick", "--epochs", "1", "--repeats", "2", "--out", str(tmp_path)]
    )
    assert rc == 0
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["projection"]["points"] == 66  # 3 layer choices x 7 R x 3 seeds + 3 unsmoothed
    assert set(result["projection"]["by_smoothed_layers"]) == {"0", "1", "2"}
    assert "projected:" in capsys.readouterr().out
