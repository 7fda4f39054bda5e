"""The length check (paper_figs.length_check): the rise of the last window of the baseline's
accuracy curve over the window before it, its interval and outcome, on planted curves."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from paper_figs.length_check import (
    WINDOW_MIN,
    check_baselines,
    plateau_outcome,
    rise,
    window_length,
    write_length_checks,
)
from paper_figs.verdicts import MARGIN


def test_window_length_rule():
    assert window_length(40) == 5
    assert window_length(80) == 10
    assert window_length(8) == WINDOW_MIN
    with pytest.raises(ValueError, match="epochs"):
        window_length(0)


def test_rise_of_a_linear_curve_is_exactly_window_times_slope():
    # acc = a_s + b t: the mean of the last W epochs minus that of the W before is
    # exactly W b for every seed, so the paired spread is 0 and the interval is the point
    a = np.array([0.70, 0.72, 0.71])[:, None]
    b, w = 1e-3, 5
    acc = a + b * np.arange(1, 41)[None, :]
    d, lo, hi = rise(acc, window=w)
    assert d == pytest.approx(w * b, abs=1e-12)
    assert lo == pytest.approx(d, abs=1e-12) and hi == pytest.approx(d, abs=1e-12)


def test_rise_interval_is_the_paired_t_interval():
    rng = np.random.default_rng(3)
    acc = 0.85 + 0.003 * rng.standard_normal((8, 40))
    d, lo, hi = rise(acc, window=5)
    diffs = acc[:, -5:].mean(1) - acc[:, -10:-5].mean(1)
    half = stats.t.ppf(0.975, 7) * diffs.std(ddof=1) / math.sqrt(8)
    assert d == pytest.approx(diffs.mean(), abs=1e-15)
    assert (lo, hi) == pytest.approx((diffs.mean() - half, diffs.mean() + half), abs=1e-12)


def test_outcomes():
    assert plateau_outcome(-0.002, MARGIN - 1e-9) == "peaked"
    assert plateau_outcome(-0.02, -0.01) == "peaked"  # past its peak and falling
    assert plateau_outcome(0.001, MARGIN) == "still rising"
    assert plateau_outcome(-0.001, MARGIN) == "inconclusive"
    assert plateau_outcome(math.nan, math.nan) == "too few seeds"


def test_rise_refuses_bad_input():
    with pytest.raises(ValueError, match="epochs"):
        rise(np.zeros((3, 9)), window=5)
    with pytest.raises(ValueError, match="NaN"):
        rise(np.full((3, 10), np.nan), window=5)
    with pytest.raises(ValueError, match="shape"):
        rise(np.zeros(10), window=5)


def _rows_and_logs(curves: dict[tuple[str, int], np.ndarray]):
    rows = []
    logs = {}
    for (layers, seed), acc in curves.items():
        run = f"{layers}-s{seed}"
        rows.append(
            {
                "status": "complete",
                "smoothing.layers": layers,
                "optim.weight_decay": 0.0,
                "seed": seed,
                "run": run,
                "model.depth": 2,
            }
        )
        logs[run] = [{"epoch": e + 1, "test_acc": float(v)} for e, v in enumerate(acc)]
    return rows, logs


def test_check_baselines_reads_only_the_unsmoothed_cell(tmp_path):
    t = np.arange(1, 41)
    curves = {}
    for s in range(4):
        curves[("none", s)] = 0.8 + 0.002 * t + 0.001 * s  # rises 1 pp per window
        curves[("fc2", s)] = np.full(40, 0.9)  # flat, must be ignored
    rows, logs = _rows_and_logs(curves)
    checks = check_baselines(
        lambda e: rows if e == "figX" else None, lambda e, r: logs[r["run"]], ["figX", "figY"]
    )
    assert len(checks) == 1
    c = checks[0]
    assert (c.experiment, c.n, c.epochs, c.window) == ("figX", 4, 40, 5)
    assert c.rise == pytest.approx(0.01, abs=1e-12)
    assert c.outcome == "still rising"
    assert c.best_epochs == (40, 40, 40, 40)
    md = write_length_checks(checks, tmp_path, scale="medium")
    assert "still rising" in md.read_text()
    data = json.loads((tmp_path / "length_check.json").read_text())
    assert data["checks"][0]["outcome"] == "still rising"


def test_check_baselines_with_one_seed_says_so(tmp_path):
    rows, logs = _rows_and_logs({("none", 0): np.linspace(0.5, 0.8, 40)})
    (c,) = check_baselines(lambda e: rows, lambda e, r: logs[r["run"]], ["figX"])
    assert c.outcome == "too few seeds"
    write_length_checks([c], tmp_path, scale="quick")
    assert "n/a" in (tmp_path / "length_check.md").read_text()
    assert json.loads((tmp_path / "length_check.json").read_text())["checks"][0]["rise"] is None
