"""Sweep runner: grid expansion, run naming, resume, results.csv, executors.

Fast tests use an injected stand-in runner (writes a summary without training);
the integration tests train two one-epoch points on synthetic data with the real
trainer, on a Dask LocalCluster over loopback and in a subprocess that is killed
mid-sweep and rerun.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from anisotropy.io import write_csv_atomic
from experiments import grid, results, sweep
from experiments.definitions import Experiment, load_experiment, parse_experiment

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- helpers


def passthrough(config):
    """Stand-in normaliser: no defaults, no validation."""
    return dict(config)


def fake_runner(config, run_dir):
    """Stand-in trainer: accuracy is a known function of the settings, so the
    collected table can be checked exactly."""
    R = config.get("smoothing", {}).get("R", 0.0)
    if R < 0:
        raise RuntimeError("negative radius")
    acc = 0.5 + R + 0.001 * config["seed"]
    summary = {
        "status": "complete",
        "best_test_acc": acc,
        "final_test_acc": acc - 0.01,
        "final_train_loss": 1.0 - acc,
        "epochs": 1,
        "wall_time": 0.0,
        "config": config,
    }
    Path(run_dir, "log.jsonl").write_text(json.dumps({"epoch": 1, "test_acc": acc}) + "\n")
    Path(run_dir, "summary.json").write_text(json.dumps(summary))
    return summary


def tiny_experiment(**kw) -> Experiment:
    base = {"smoothing.layers": ["fc1"], "epochs": 1}
    return Experiment(
        name=kw.pop("name", "tiny"),
        scale="quick",
        base=base,
        grid=kw.pop("grid", [{"smoothing.R": [0.1, 0.2]}]),
        seeds=kw.pop("seeds", [0, 1]),
        **kw,
    )


# ----------------------------------------------------------------------------- grid


def test_expand_grid_is_product_of_axes_times_seeds_concatenated_over_groups():
    groups = [{"a": [1, 2, 3], "b": ["x", "y"]}, {"a": [0]}]
    pts = grid.expand_grid(groups, seeds=[0, 1])
    assert len(pts) == (3 * 2 + 1) * 2
    assert pts[0] == {"a": 1, "b": "x", "seed": 0} and pts[1] == {"a": 1, "b": "x", "seed": 1}
    assert {(p["a"], p.get("b"), p["seed"]) for p in pts} == (
        {(a, b, s) for a in (1, 2, 3) for b in "xy" for s in (0, 1)} | {(0, None, 0), (0, None, 1)}
    )


def test_expand_grid_drops_duplicates_and_rejects_bad_axes():
    assert len(grid.expand_grid([{"a": [1]}, {"a": [1, 2]}], seeds=[0])) == 2
    assert grid.expand_grid([], seeds=[3]) == [{"seed": 3}]
    with pytest.raises(ValueError, match="non-empty list"):
        grid.expand_grid([{"a": []}])
    with pytest.raises(ValueError, match="non-empty list"):
        grid.expand_grid([{"a": 0.1}])
    with pytest.raises(ValueError, match="seeds"):
        grid.expand_grid([{"a": [1]}], seeds=[])
    with pytest.raises(ValueError, match="seeds"):
        grid.expand_grid([{"a": [1]}], seeds=[-1])
    with pytest.raises(ValueError, match="seeds"):
        grid.expand_grid([{"seed": [1]}])


def test_flatten_unflatten_round_trip():
    d = {"seed": 1, "smoothing": {"layers": ["fc1"], "R": 0.1}, "model": {"name": "mlp"}}
    flat = grid.flatten(d)
    assert flat == {"seed": 1, "smoothing.layers": ["fc1"], "smoothing.R": 0.1, "model.name": "mlp"}
    assert grid.unflatten(flat) == d
    with pytest.raises(ValueError, match="not a section"):
        grid.set_dotted({"a": 1}, "a.b", 2)


def test_run_name_depends_on_the_configuration_only():
    a = {"seed": 1, "smoothing": {"layers": ["fc2"], "R": 0.01, "y": 4}, "model": {"name": "mlp"}}
    b = {"model": {"name": "mlp"}, "smoothing": {"y": 4, "R": 0.01, "layers": ["fc2"]}, "seed": 1}
    assert grid.run_name(a) == grid.run_name(b)  # key order is irrelevant
    assert grid.run_name({**a, "threads": 4}) == grid.run_name(a)  # execution detail
    c = {**a, "seed": 2}
    assert grid.run_name(c) != grid.run_name(a)
    d = {**a, "smoothing": {**a["smoothing"], "R": 0.02}}
    assert grid.run_name(d) != grid.run_name(a)
    assert "fc2" in grid.run_name(a) and "R0.01" in grid.run_name(a)
    plain = {**a, "smoothing": {**a["smoothing"], "layers": []}}
    assert "R0.01" not in grid.run_name(plain) and "none" in grid.run_name(plain)
    # the optimiser is named when it is not SGD (SGD runs keep their former names)
    sam = {**plain, "optim": {"name": "sam", "weight_decay": 0.0}}
    assert "-sam-wd0-s1-" in grid.run_name(sam)
    sgd = {**plain, "optim": {"name": "sgd", "weight_decay": 0.0}}
    assert "sgd" not in grid.run_name(sgd) and "-wd0-s1-" in grid.run_name(sgd)


# ----------------------------------------------------------------------------- definitions


def test_parse_experiment_merges_common_and_scale_base():
    data = {
        "figure": "3",
        "title": "t",
        "common": {"base": {"epochs": 5, "model": {"name": "mlp", "depth": 2}}},
        "quick": {
            "note": "stand-in",
            "seeds": [0, 1],
            "base": {"epochs": 2},
            "grid": [{"smoothing": {"R": [0.1, 0.2]}}, {"smoothing.layers": [[]]}],
        },
    }
    e = parse_experiment(data, name="x", scale="quick")
    assert e.base == {"epochs": 2, "model.name": "mlp", "model.depth": 2}
    assert e.grid == [{"smoothing.R": [0.1, 0.2]}, {"smoothing.layers": [[]]}]
    assert e.swept_keys() == ["smoothing.R", "smoothing.layers", "seed"]
    assert e.note == "stand-in" and e.figure == "3"
    with pytest.raises(ValueError, match="no \\[paper\\] section"):
        parse_experiment(data, name="x", scale="paper")
    with pytest.raises(ValueError, match="unknown scale"):
        parse_experiment(data, name="x", scale="huge")
    with pytest.raises(ValueError, match="unknown key"):
        parse_experiment({**data, "quik": {}}, name="x", scale="quick")
    with pytest.raises(ValueError, match="unknown key"):
        parse_experiment({"quick": {"sedes": [1]}}, name="x", scale="quick")


def test_load_experiment_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown experiment"):
        load_experiment("no_such_figure")
    with pytest.raises(FileNotFoundError):
        load_experiment("/nonexistent/x.toml")


def test_points_report_the_bad_point():
    e = tiny_experiment(grid=[{"smoothing.R": [0.1, -1.0]}])

    def strict(config):
        if config["smoothing"]["R"] <= 0:
            raise ValueError("smoothing.R must be > 0")
        return config

    with pytest.raises(ValueError, match="point .*-1.0"):
        e.points(strict)


# ----------------------------------------------------------------------------- runner


def test_sweep_collects_results_and_skips_complete_points(tmp_path):
    e = tiny_experiment()
    lines: list[str] = []
    res = sweep.run_sweep(
        e, out=tmp_path, runner=fake_runner, normalise=passthrough, threads=None, log=lines.append
    )
    assert (res.n_points, res.n_skipped, res.n_run, res.n_failed) == (4, 0, 4, 0)
    rows = results.read_results(res.results_path)
    assert len(rows) == 4 and all(r["status"] == "complete" for r in rows)
    for r in rows:  # the table holds exactly what the runner reported
        assert r["best_test_acc"] == pytest.approx(0.5 + r["smoothing.R"] + 0.001 * r["seed"])
        assert r["final_test_acc"] == pytest.approx(r["best_test_acc"] - 0.01)
        assert r["smoothing.layers"] == "fc1"
        run_dir = res.results_path.parent / r["run_dir"]
        assert results.is_complete(run_dir) and run_dir.name == r["run"]
    assert sum(line.startswith("[") for line in lines) == 4  # one progress line per point
    store = sweep.sweep_paths(tmp_path, "quick", "tiny")[0]
    mtimes = {p: p.stat().st_mtime_ns for p in store.rglob("*")}
    # rerun with one more R value: only the two new points run, old files untouched
    e2 = tiny_experiment(grid=[{"smoothing.R": [0.1, 0.2, 0.3]}])
    res2 = sweep.run_sweep(
        e2, out=tmp_path, runner=fake_runner, normalise=passthrough, threads=None, log=lines.append
    )
    assert (res2.n_points, res2.n_skipped, res2.n_run) == (6, 4, 2)
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())
    assert len(results.read_results(res2.results_path)) == 6


def test_shared_store_reuses_runs_across_experiments(tmp_path):
    calls = []

    def counting(config, run_dir):
        calls.append(run_dir)
        return fake_runner(config, run_dir)

    sweep.run_sweep(
        tiny_experiment(name="a"),
        out=tmp_path,
        runner=counting,
        normalise=passthrough,
        threads=None,
        log=lambda s: None,
    )
    res = sweep.run_sweep(
        tiny_experiment(name="b", grid=[{"smoothing.R": [0.2, 0.4]}]),
        out=tmp_path,
        runner=counting,
        normalise=passthrough,
        threads=None,
        log=lambda s: None,
    )
    assert len(calls) == 4 + 2 and res.n_skipped == 2
    assert len(results.read_results(res.results_path)) == 4


def test_failed_point_is_recorded_and_the_others_still_run(tmp_path):
    e = tiny_experiment(grid=[{"smoothing.R": [0.1, -0.5]}], seeds=[0])
    res = sweep.run_sweep(
        e, out=tmp_path, runner=fake_runner, normalise=passthrough, threads=None, log=lambda s: None
    )
    assert (res.n_run, res.n_failed) == (1, 1)
    rows = {r["smoothing.R"]: r for r in results.read_results(res.results_path)}
    assert rows[0.1]["status"] == "complete" and rows[-0.5]["status"] == "failed"
    err = res.results_path.parent / rows[-0.5]["run_dir"] / "error.txt"
    assert "negative radius" in err.read_text()
    # the failed point is retried on the next run
    res2 = sweep.run_sweep(
        e, out=tmp_path, runner=fake_runner, normalise=passthrough, threads=None, log=lambda s: None
    )
    assert (res2.n_skipped, res2.n_failed) == (1, 1)

    # once the point completes on a retry, error.txt no longer says its last attempt
    # failed: the earlier traceback is kept beside it
    def fixed(config, run_dir):
        config = {**config, "smoothing": {**config["smoothing"], "R": 0.5}}
        return fake_runner(config, run_dir)

    res3 = sweep.run_sweep(
        e, out=tmp_path, runner=fixed, normalise=passthrough, threads=None, log=lambda s: None
    )
    assert (res3.n_run, res3.n_failed) == (1, 0)
    assert not err.exists()
    assert "negative radius" in (err.parent / "error_before_retry.txt").read_text()


def test_sweep_runs_on_a_thread_pool_executor(tmp_path):
    with cf.ThreadPoolExecutor(2) as ex:
        res = sweep.run_sweep(
            tiny_experiment(),
            out=tmp_path,
            runner=fake_runner,
            normalise=passthrough,
            executor=ex,
            threads=None,
            log=lambda s: None,
        )
    assert res.n_run == 4
    assert sorted(r["run"] for r in results.read_results(res.results_path)) == sorted(
        p.name for p in tiny_experiment().points(passthrough)
    )


def test_dry_run_trains_nothing(tmp_path):
    lines: list[str] = []
    res = sweep.run_sweep(
        tiny_experiment(),
        out=tmp_path,
        runner=fake_runner,
        normalise=passthrough,
        threads=None,
        log=lines.append,
        dry_run=True,
    )
    assert res.n_run == 0 and not any(tmp_path.rglob("summary.json"))
    assert sum("pending" in line for line in lines) == 4


def test_results_reader_rejects_non_finite_metrics(tmp_path):
    cols = results.result_columns()
    path = write_csv_atomic(
        tmp_path / "r.csv",
        [{"run": "a", "status": "complete", "best_test_acc": "nan", "final_test_acc": 0.5}],
        cols,
    )
    with pytest.raises(ValueError, match="finite"):
        results.read_results(path)


def test_make_executor_rejects_bad_worker_counts():
    with pytest.raises(ValueError, match="workers"), sweep.make_executor(workers=-1):
        pass


# ----------------------------------------------------------------------------- real trainer

TINY_TOML = """
figure = "test"
title = "two one-layer nets on synthetic data"
[quick]
seeds = [0]
[quick.base]
"data.name" = "synthetic"
"data.synthetic_size" = 256
"model.name" = "mlp"
"model.depth" = 1
"model.width" = 16
"optim.lr" = 0.05
"optim.batch_size" = 64
"logging.checkpoint_every" = 1
[[quick.grid]]
epochs = {epochs}
"smoothing.layers" = {layers}
"""


def write_tiny(tmp_path: Path, epochs=(1,), layers='[["fc1"]]') -> Path:
    p = tmp_path / "tiny.toml"
    p.write_text(TINY_TOML.format(epochs=list(epochs), layers=layers))
    return p


def test_dask_local_cluster_runs_the_sweep_over_loopback(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    exp = load_experiment(write_tiny(tmp_path, layers='[["fc1"], []]'), "quick")
    with (
        _quiet_dask(),
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=False,
            host="127.0.0.1",
            protocol="tcp://",
            dashboard_address=None,
        ) as cluster,
    ):
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        with sweep.make_executor(scheduler=cluster.scheduler_address) as ex:
            res = sweep.run_sweep(
                exp, out=tmp_path / "out", executor=ex, threads=1, log=lambda s: None
            )
    assert (res.n_points, res.n_run, res.n_failed) == (2, 2, 0)
    rows = results.read_results(res.results_path)
    assert {r["smoothing.layers"] for r in rows} == {"fc1", "none"}
    for row in rows:
        assert row["status"] == "complete" and row["epochs_done"] == 1
        assert 0.0 <= row["best_test_acc"] <= 1.0


def _quiet_dask():
    """Dask may warn at cluster start/stop; pytest turns warnings into errors.
    With the dashboard disabled and ephemeral ports none is emitted here today;
    the one known harmless warning (a busy default port, when several test runs
    share the machine) is ignored, nothing else."""
    import contextlib
    import warnings

    @contextlib.contextmanager
    def cm():
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=r".*[Pp]ort \d+ is already in use.*", category=UserWarning
            )
            yield

    return cm()


def test_killed_sweep_resumes_only_the_missing_points(tmp_path):
    toml = write_tiny(tmp_path, epochs=(1, 60))
    out = tmp_path / "out"
    exp = load_experiment(toml, "quick")
    first, second = exp.points()
    store = sweep.sweep_paths(out, "quick", exp.name)[0]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments.sweep", str(toml), "--workers", "1", "--out", str(out)],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not results.is_complete(store / first.name):
            assert proc.poll() is None, "the sweep ended before the first point completed"
            assert time.monotonic() < deadline, "the first point did not complete in time"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its worker, mid second point
        proc.wait()
    assert not results.is_complete(store / second.name)
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (store / first.name).iterdir()}
    trained: list[str] = []

    def runner(config, run_dir):
        trained.append(Path(run_dir).name)
        return sweep.train_config_dict(config, run_dir)

    res = sweep.run_sweep(exp, out=out, runner=runner, threads=1, log=lambda s: None)
    assert trained == [second.name]
    assert (res.n_skipped, res.n_run, res.n_failed) == (1, 1, 0)
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (store / first.name).iterdir()}
    assert after == before  # the finished run directory is untouched
    rows = {r["run"]: r for r in results.read_results(res.results_path)}
    assert rows[second.name]["status"] == "complete" and rows[second.name]["epochs_done"] == 60


def test_overrides_reach_every_point():
    e = tiny_experiment().with_overrides(["data.root=/data/x", "optim.lr=0.5"])
    pts = e.points(passthrough)
    assert all(
        p.config["data"]["root"] == "/data/x" and p.config["optim"]["lr"] == 0.5 for p in pts
    )
    assert {p.name for p in pts}.isdisjoint(q.name for q in tiny_experiment().points(passthrough))
    with pytest.raises(ValueError, match="KEY=VALUE"):
        tiny_experiment().with_overrides(["nonsense"])


def _runner_with_checkpoint(config, run_dir):
    Path(run_dir, "checkpoint.pt").write_bytes(b"weights")
    if config["smoothing"]["R"] > 0.15:  # this point is interrupted: no summary
        return {"status": "running"}
    return fake_runner(config, run_dir)


@pytest.mark.parametrize("keep", [True, False])
def test_checkpoints_of_complete_runs_are_deleted_only_on_request(tmp_path, keep):
    e = tiny_experiment(grid=[{"smoothing.R": [0.1, 0.2]}], seeds=[0])
    sweep.run_sweep(
        e,
        out=tmp_path,
        runner=_runner_with_checkpoint,
        normalise=passthrough,
        log=lambda s: None,
        keep_checkpoints=keep,
    )
    store, _ = sweep.sweep_paths(tmp_path, "quick", e.name)
    by_r = {p.settings["smoothing.R"]: store / p.name for p in e.points(passthrough)}
    assert (by_r[0.1] / "checkpoint.pt").exists() == keep  # complete run
    assert (by_r[0.2] / "checkpoint.pt").exists()  # unfinished: kept to resume


def test_run_identity_ignores_settings_at_their_default():
    """A run's identity is its non-default settings: spelling out a default, or a
    configuration field added later with a default, leaves the run name unchanged."""
    from anisotropy.training.config import TrainConfig, config_to_dict

    full = config_to_dict(TrainConfig())
    sparse = {"seed": 0}
    assert grid.config_hash(full) == grid.config_hash(sparse | {"epochs": full["epochs"]})
    changed = {**full, "epochs": full["epochs"] + 1}
    assert grid.config_hash(changed) != grid.config_hash(full)
