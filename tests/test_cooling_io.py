"""Inputs of the cooling analysis: log / CSV / arrays, round trips and every bad input."""

import json

import numpy as np
import pytest

from analysis.cooling import (
    CoolingConfig,
    CoolingData,
    analyse,
    from_arrays,
    load,
    load_csv,
    write_csv,
    write_run,
)
from analysis.cooling.fit import MIN_POINTS_PER_LAYER, build_panel
from analysis.cooling.synthetic import SyntheticSpec, generate

SPEC = SyntheticSpec(n_epochs=120, onset=30.0, noise=0.05)


@pytest.fixture
def data():
    return generate(SPEC, 11)[0]


def _same(a, b):
    np.testing.assert_array_equal(a.epochs, b.epochs)
    assert a.layers == b.layers
    for c in ("signal", "signal_std", "grad_mean_norm", "grad_std_norm", "weight_norm"):
        np.testing.assert_array_equal(getattr(a, c), getattr(b, c))
    np.testing.assert_array_equal(a.numel, b.numel)


def test_log_round_trip(data, tmp_path):
    write_run(data, tmp_path)
    back = load(tmp_path)
    _same(data, back)
    assert back.batches_per_epoch == SPEC.batches_per_epoch
    assert load(tmp_path / "log.jsonl").layers == data.layers


def test_csv_round_trip_keeps_nan_and_missing(data, tmp_path):
    data.signal[0, 5] = np.nan
    data.absent["signal"][1, 7] = True
    data.signal[1, 7] = np.nan
    write_csv(data, tmp_path / "s.csv")
    back = load_csv(tmp_path / "s.csv")
    np.testing.assert_array_equal(np.isnan(back.signal), np.isnan(data.signal))
    kinds = {(i.kind, i.layer, i.epochs) for i in back.issues if i.channel == "signal"}
    assert ("nan", "fc1", (6.0,)) in kinds and ("missing", "fc2", (8.0,)) in kinds


def test_steps_give_batches_per_epoch(data, tmp_path):
    write_run(data, tmp_path, summary={})
    lines = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    with open(tmp_path / "log.jsonl", "w") as fh:
        for k, rec in enumerate(lines):
            rec["step"] = 17 * (k + 1)
            fh.write(json.dumps(rec) + "\n")
    assert load(tmp_path).batches_per_epoch == 17


def test_every_bad_value_is_reported(data):
    sig = data.signal.copy()
    sig[0, 3], sig[1, 4], sig[2, 5], sig[3, 6] = np.nan, 0.0, -1.0, np.inf
    d = from_arrays(data.epochs, sig, data.signal_std, layers=data.layers)
    found = {(i.kind, i.layer, i.epochs) for i in d.issues}
    assert found == {
        ("nan", "fc1", (4.0,)),
        ("zero", "fc2", (5.0,)),
        ("negative", "fc3", (6.0,)),
        ("inf", "fc4", (7.0,)),
    }
    assert not d.valid("signal")[[0, 1, 2, 3], [3, 4, 5, 6]].any()


def test_missing_epochs_and_records_are_reported(data, tmp_path):
    write_run(data, tmp_path)
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    rec = json.loads(lines[20])
    del rec["layers"]["fc3"]  # one layer missing at epoch 21
    lines[20] = json.dumps(rec)
    del lines[40]  # epoch 41 missing for all layers
    (tmp_path / "log.jsonl").write_text("\n".join(lines) + "\n")
    d = load(tmp_path)
    miss = {(i.layer, i.epochs) for i in d.issues if i.kind == "missing" and i.channel == "signal"}
    assert ("fc3", (21.0, 41.0)) in miss and ("fc1", (41.0,)) in miss
    assert d.missing_epochs() == [41.0]


def test_policy_mask_excludes_and_raise_refuses(data):
    data.signal[2, 60] = np.nan
    data.signal[0, 70] = 0.0
    cfg = dict(late_start=30.0, n_stability=0, per_layer=False, laws=["power_law"])
    res = analyse(data, CoolingConfig(**cfg))
    n_window = 4 * int(np.sum(data.epochs >= 30))
    assert res.channels["signal"]["n_points"] == n_window - 2
    assert "nan at epoch(s) 61" in res.report() and "zero at epoch(s) 71" in res.report()
    assert len(res.to_dict()["data"]["issues"]) == 2
    with pytest.raises(ValueError, match="nan at epoch"):
        analyse(data, CoolingConfig(**cfg, on_invalid="raise"))


def test_mismatched_lengths_and_shapes(data):
    with pytest.raises(ValueError, match="signal_std must have shape"):
        from_arrays(data.epochs, data.signal, data.signal_std[:, :-1])
    with pytest.raises(ValueError, match="signal must have shape"):
        from_arrays(data.epochs[:-1], data.signal, data.signal_std)
    with pytest.raises(ValueError, match="strictly increasing"):
        from_arrays(np.r_[1.0, 1.0, 2.0], np.ones((1, 3)), np.ones((1, 3)))
    with pytest.raises(ValueError, match="at least 2 epochs"):
        from_arrays([1.0], [[1.0]], [[1.0]])


def test_too_short_series(data):
    d = from_arrays(
        data.epochs[:12], data.signal[:, :12], data.signal_std[:, :12], layers=data.layers
    )
    with pytest.raises(ValueError, match="too short"):
        analyse(d)
    with pytest.raises(ValueError, match=f"at least {MIN_POINTS_PER_LAYER}"):
        build_panel(d, "signal", 8.0)


def test_bad_files(tmp_path):
    (tmp_path / "x.csv").write_text("epoch,layer,signal\n1,a,1.0\n")
    with pytest.raises(ValueError, match="header must contain"):
        load(tmp_path / "x.csv")
    (tmp_path / "log.jsonl").write_text('{"epoch": 1, "layers": {}}\n{not json\n')
    with pytest.raises(ValueError, match="log.jsonl:2"):
        load(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        load(tmp_path / "nope.csv")
    (tmp_path / "log.txt").write_text("")
    with pytest.raises(ValueError, match="run directory, a .jsonl log or a .csv"):
        load(tmp_path / "log.txt")


def test_config_rejects_unknown_names():
    with pytest.raises(ValueError, match="'exponential'.*'power_law'"):
        CoolingConfig(laws=["exponential", "logistic"])
    with pytest.raises(ValueError, match="uncertainty"):
        CoolingConfig(uncertainty="jackknife")


# ----------------------------------------------------------------------- step log
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
def step_grid():
    from anisotropy.training.steplog import geometric_steps

    return geometric_steps(200_000)  # the trainer's grid: steps 1..100, then 20 per decade


def test_step_log_round_trip_keeps_windows_and_null_spreads(step_grid, tmp_path):
    from analysis.cooling.synthetic_steps import generate_steps, write_steps

    data, _ = generate_steps(STEP_SPEC, step_grid, 2)
    write_steps(data, tmp_path)
    back = load(tmp_path, time_axis="step")
    assert back.time_axis == "step" and back.step == 1.0
    np.testing.assert_array_equal(back.epochs, step_grid)
    np.testing.assert_array_equal(back.batches, np.diff(np.r_[0, step_grid]))
    np.testing.assert_array_equal(back.signal, data.signal)  # every record's signal is kept
    one = back.batches == 1  # the dense start: one minibatch per record, no spread
    assert one.sum() == 100
    for c in ("signal_std", "grad_std_norm"):
        assert np.all(np.isnan(getattr(back, c)[:, one])) and back.absent[c][:, one].all()
        np.testing.assert_array_equal(getattr(back, c)[:, ~one], getattr(data, c)[:, ~one])
    # null spreads are "missing", nothing else is flagged, and the geometric grid has no holes
    kinds = {(i.kind, i.channel, len(i.epochs)) for i in back.issues}
    assert kinds == {("missing", "signal_std", 100), ("missing", "grad_std_norm", 100)}
    assert back.missing_epochs() == []
    assert "missing at step(s) 1, 2, 3" in back.issues_report()
    assert load(tmp_path / "steps.jsonl", time_axis="step").time_axis == "step"


def test_step_log_absent_or_unreadable(data, tmp_path):
    write_run(data, tmp_path)  # log.jsonl only: the run was trained without logging.steps
    with pytest.raises(ValueError, match=r"no steps.jsonl.*logging.steps = true"):
        load(tmp_path, time_axis="step")
    with pytest.raises(ValueError, match=r"no steps.jsonl.*logging.steps = true"):
        load(tmp_path / "steps.jsonl", time_axis="step")
    assert load(tmp_path).time_axis == "epoch"  # the default axis is unchanged
    write_csv(data, tmp_path / "s.csv")
    with pytest.raises(ValueError, match="epoch column only"):
        load(tmp_path / "s.csv", time_axis="step")
    with pytest.raises(ValueError, match="time_axis must be one of"):
        load(tmp_path, time_axis="minute")
    rec = {"step": 3, "batches": 0, "layers": {"fc1": {"signal": 1.0}}}
    (tmp_path / "steps.jsonl").write_text(json.dumps(rec) + "\n")
    with pytest.raises(ValueError, match="steps.jsonl:1: batches must be an integer >= 1"):
        load(tmp_path, time_axis="step")
    with pytest.raises(ValueError, match="batches must hold 3 integer window sizes"):
        sig, std = data.signal[:, :3], data.signal_std[:, :3]
        CoolingData(data.epochs[:3], data.layers, sig, std, batches=[1, 0, 2])


def _log_lines(data):
    """The records of ``data`` as the trainer's log lines (one JSON object per epoch)."""
    return [
        {
            "epoch": int(e),
            "layers": {
                layer: {
                    "signal": float(data.signal[i, j]),
                    "signal_std": float(data.signal_std[i, j]),
                }
                for i, layer in enumerate(data.layers)
            },
        }
        for j, e in enumerate(data.epochs)
    ]


@pytest.mark.parametrize("epoch", [-3, 0, 2.5, True, "7", None, 1e400])
def test_an_epoch_that_is_not_an_integer_from_1_is_refused_with_file_and_line(
    data, tmp_path, epoch
):
    # the trainer counts epochs 1, 2, ...: -3, 0 and 2.5 would put records between or before
    # them, and the signal maximum could be reported at an epoch with no data
    recs = _log_lines(data)[:20]
    recs[4]["epoch"] = epoch
    text = "\n".join(json.dumps(r) for r in recs) + "\n"
    (tmp_path / "log.jsonl").write_text(text.replace("Infinity", "1e400"))
    with pytest.raises(ValueError, match=r"log\.jsonl:5: epoch must be an integer >= 1, got"):
        load(tmp_path)
    # the same rule for a CSV (header on line 1) and for the steps of a step log
    bad = epoch if isinstance(epoch, (int, float)) and not isinstance(epoch, bool) else -3
    (tmp_path / "x.csv").write_text(f"epoch,layer,signal,signal_std\n1,a,1,1\n{bad},a,1,1\n")
    with pytest.raises(ValueError, match=r"x\.csv:3: epoch must be an integer >= 1"):
        load(tmp_path / "x.csv")
    lay = {"a": {"signal": 1.0, "signal_std": 0.1}}
    (tmp_path / "steps.jsonl").write_text(
        json.dumps({"step": 1, "layers": lay}) + "\n" + json.dumps({"step": 2.5, "layers": lay})
    )
    with pytest.raises(ValueError, match=r"steps\.jsonl:2: a step-log record's step must be"):
        load(tmp_path, time_axis="step")


def test_integral_floats_are_epochs(data, tmp_path):
    recs = _log_lines(data)
    for r in recs:
        r["epoch"] = float(r["epoch"])  # 3.0 is epoch 3
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    np.testing.assert_array_equal(load(tmp_path).epochs, data.epochs)


def test_a_torn_last_line_is_ignored_and_a_torn_middle_line_refused(data, tmp_path):
    # the trainer's JSONL rule (anisotropy.io.iter_jsonl): a crash while appending leaves
    # a last line without its newline; it is dropped, the records before it are analysed
    lines = [json.dumps(r) for r in _log_lines(data)]
    torn = lines[-1][: len(lines[-1]) // 2]
    (tmp_path / "log.jsonl").write_text("\n".join(lines[:-1]) + "\n" + torn)
    np.testing.assert_array_equal(load(tmp_path).epochs, data.epochs[:-1])
    # a bad epoch before the torn line is still refused, with its line
    bad = _log_lines(data)
    bad[2]["epoch"] = 0
    (tmp_path / "log.jsonl").write_text("\n".join(json.dumps(r) for r in bad[:-1]) + "\n" + torn)
    with pytest.raises(ValueError, match=r"log\.jsonl:3: epoch must be an integer >= 1, got 0"):
        load(tmp_path)
    # the same cut-off text followed by more lines is not a crash's trace: refused
    (tmp_path / "log.jsonl").write_text(torn + "\n" + "\n".join(lines[:-1]) + "\n")
    with pytest.raises(ValueError, match=r"log\.jsonl:1: not valid JSON"):
        load(tmp_path)
