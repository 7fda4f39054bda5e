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


def test_bad_epochs_and_a_torn_last_line(tmp_path, capsys):
    # epochs -3, 0 and 2.5 are refused (one line naming file:line, exit 2, nothing written);
    # a last line cut off by a crash is dropped as the trainer's JSONL reader drops it
    data = generate(SPEC, 6)[0]
    write_run(data, tmp_path)
    log = tmp_path / "log.jsonl"
    lines = log.read_text().splitlines()
    for lineno, bad in ((3, -3), (5, 0), (7, 2.5)):
        rec = json.loads(lines[lineno - 1])
        rec["epoch"] = bad
        log.write_text("\n".join([*lines[: lineno - 1], json.dumps(rec), *lines[lineno:]]) + "\n")
        assert main([str(tmp_path)]) == 2
        err = capsys.readouterr().err.splitlines()
        assert err == [
            f"anisotropy cooling: error: {log}:{lineno}: epoch must be an integer >= 1, got {bad!r}"
        ]
        assert not (tmp_path / "cooling.json").exists()
    log.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:25])  # torn by a crash
    assert main([str(tmp_path), "--n-boot", "20", "--n-stability", "2", "--no-per-layer"]) == 0
    last = json.loads((tmp_path / "cooling.json").read_text())["data"]["epochs"]["last"]
    assert last == data.epochs[-2]


def test_out_that_is_a_file_is_refused_before_the_analysis(run, tmp_path, capsys, monkeypatch):
    import analysis.cooling.cli as cli

    def no_work(*a, **k):  # the analysis must not start
        raise AssertionError("analyse ran before --out was checked")

    monkeypatch.setattr(cli, "analyse", no_work)
    (tmp_path / "f").write_text("mine")
    for out in (tmp_path / "f", tmp_path / "f" / "sub"):
        assert main([str(run), "--out", str(out)]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith(f"anisotropy cooling: error: --out '{out}'")
        assert "takes a directory" in err[0]
    assert (tmp_path / "f").read_text() == "mine"


# ----------------------------------------------------------------- --time step
STEP_SPEC = SyntheticSpec(
    params={"tau": 2000.0, "beta": 0.5},
    rise_time=20.0,
    onset=3000.0,
    snr_crossing=400.0,
    snr_width=100.0,
    noise=0.05,
    noise_std=0.05,
)


@pytest.fixture(scope="module")
def step_run(tmp_path_factory):
    from analysis.cooling.synthetic_steps import generate_steps, write_steps
    from anisotropy.training.steplog import geometric_steps

    d = tmp_path_factory.mktemp("steprun")
    data, truth = generate_steps(STEP_SPEC, geometric_steps(200_000), 6)
    write_steps(data, d)
    args = ["cooling", str(d), "--time", "step", "--n-boot", "100", "--n-stability", "3"]
    assert anisotropy_main(args) == 0
    return d, truth


def test_time_step_recovers_the_planted_regimes_and_law(step_run):
    d, truth = step_run
    assert not (d / "cooling.json").exists()  # the epoch analysis' files are not touched
    res = load_result(d / "cooling_steps.json")
    assert res["time_axis"] == "step" and res["data"]["time_axis"] == "step"
    assert (d / "cooling_steps.png").stat().st_size > 10_000
    reg = res["regimes"]
    # signal maxima: within a quarter decade of the true ones (the smoothing spans 5 records,
    # i.e. 5 steps at first and a factor 10^(4/20) = 1.6 on the geometric part)
    for layer, t_true in truth["signal_max"].items():
        assert abs(np.log10(reg["signal_max"][layer] / t_true)) < 0.25
    # SNR crossing (planted at step 400, logistic width 100 steps): within 10%
    for c in reg["snr_crossing"].values():
        assert abs(c["epoch"] / truth["snr_crossing"] - 1) < 0.1
    on = reg["late_onset"]  # planted at step 3000; records are 12% apart there
    assert on["ci"][0] <= on["epoch"] <= on["ci"][1]
    assert abs(np.log10(on["epoch"] / truth["onset"])) < 0.1
    assert res["selected"] == truth["law"]
    ci = res["laws"][truth["law"]]["ci"]
    for k, v in truth["params"].items():  # sandwich 95% intervals (seeded run)
        assert ci[k][0] <= v <= ci[k][1]
    assert res["factorisation"]["signal"]["p_value"] > 0.01  # no planted drift


def test_time_step_without_a_step_log_names_the_file_and_option(run, capsys):
    assert main([str(run), "--time", "step"]) == 2
    err = capsys.readouterr().err
    assert "steps.jsonl" in err and "logging.steps = true" in err
    assert load_result(run)["time_axis"] == "epoch"  # the default stays the epoch axis
