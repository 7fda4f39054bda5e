"""`anisotropy cooling LOG`: cooling.json schema, figure, CSV input, errors, replotting."""

import json

import numpy as np
import pytest

from analysis.cooling import load, load_result, main, plot_cooling, write_csv, write_run
from analysis.cooling.synthetic import SyntheticSpec, generate
from anisotropy.cli import main as anisotropy_main

SPEC = SyntheticSpec(n_epochs=160, onset=30.0, noise=0.05, rho=0.3)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    write_run(generate(SPEC, 4)[0], d)
    assert anisotropy_main(["cooling", str(d), "--n-boot", "40", "--n-stability", "3"]) == 0
    return d


def test_cooling_json_schema(run):
    res = json.loads((run / "cooling.json").read_text())
    assert res["selected"] in res["laws"]
    assert set(res["laws"]) == {
        "exponential",
        "stretched_exponential",
        "power_law",
        "stretched_then_exponential",
    }
    assert set(res["laws"]["stretched_exponential"]["params"]) >= {"tau", "beta"}
    assert set(res["laws"]["power_law"]["params"]) == {"p"}
    for law in res["laws"].values():
        assert {"params", "stderr", "ci", "aic", "bic", "log_amplitudes"} <= set(law)
        assert all(np.isfinite(law[k]) for k in ("aic", "bic"))
    reg = res["regimes"]
    assert set(reg["signal_max"]) == {"fc1", "fc2", "fc3", "fc4"}
    assert reg["late_onset"]["ci"][0] <= reg["late_onset"]["epoch"] <= reg["late_onset"]["ci"][1]
    assert reg["late_window"][0] == reg["late_onset"]["epoch"]
    assert {"signal", "signal_std"} <= set(res["factorisation"])
    assert reg["snr_source"] == "gradient"  # auto: the log has gradient norms
    assert res["noise"]["selected"] in res["noise"]["laws"]
    assert res["selected"] == "stretched_exponential"  # the generating law
    assert (run / "cooling.png").stat().st_size > 10_000


def test_replot_from_json_without_refit(run, tmp_path):
    res, data = load_result(run), load(run)
    fig = plot_cooling(res, data, path=tmp_path / "again.png")
    assert (tmp_path / "again.png").exists() and len(fig.axes) == 1
    other = generate(
        SyntheticSpec(
            amplitudes=(1.0, 0.5), transient=(0, 0), late_drift=(0, 0), numel=(10, 10), n_epochs=50
        ),
        0,
    )[0]
    with pytest.raises(ValueError, match="do not match"):
        plot_cooling(res, other)


def test_csv_input_and_out_dir(tmp_path, capsys):
    data = generate(SPEC, 5)[0]
    write_csv(data, tmp_path / "log.csv")
    out = tmp_path / "out"
    assert (
        main(
            [
                str(tmp_path / "log.csv"),
                "--out",
                str(out),
                "--laws",
                "power_law",
                "stretched_exponential",
                "--late-start",
                "40",
                "--no-per-layer",
            ]
        )
        == 0
    )
    res = load_result(out)
    assert set(res["laws"]) == {"power_law", "stretched_exponential"}
    assert res["regimes"]["late_window"][0] == 40.0
    assert "late window: [40, 160] (given)" in capsys.readouterr().out


def test_errors_exit_with_status_2(tmp_path, capsys):
    assert main([str(tmp_path / "missing.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--laws", "gompertz"])
