"""Two-stage sweeps (experiments.tuning): parsing of ``[<scale>.tuning]``, the choice of
each group's cell on the tuning seeds, and the evaluation of only the chosen cells.

A stand-in runner writes summaries whose metric is a known function of the settings,
so every choice can be checked exactly (no training).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments import sweep, tuning
from experiments.definitions import Experiment, Tuning, parse_experiment
from experiments.results import read_results


def passthrough(config):
    return dict(config)


#: the stand-in's planted accuracy of each cell: R = 0.2 is the best PLA cell, gamma = 1
#: the best of the other group; the seed adds at most 0.009 (below every gap between cells)
def _acc(config) -> float:
    R = config.get("smoothing", {}).get("R", 0.0)
    gamma = config.get("optim", {}).get("gamma", 0.0)
    return 0.5 + R + 0.01 * gamma + 0.001 * (config["seed"] % 10)


def runner(config, run_dir):
    acc = _acc(config)
    status = (
        "stopped: non-finite loss" if config.get("smoothing", {}).get("R") == 0.3 else "complete"
    )
    summary = {
        "status": status,
        "best_test_acc": acc,
        "final_test_acc": acc - 0.01,
        "final_train_loss": 1.0 - acc,
        "best_test_loss": 1.0 - acc,
        "epochs": 1,
        "wall_time": 0.0,
        "config": config,
    }
    Path(run_dir, "log.jsonl").write_text(json.dumps({"epoch": 1, "test_acc": acc}) + "\n")
    Path(run_dir, "summary.json").write_text(json.dumps(summary))
    return summary


def two_stage(**kw) -> Experiment:
    return Experiment(
        name="tuned",
        scale="quick",
        base={"epochs": 1},
        grid=kw.pop(
            "grid",
            [
                {"smoothing.layers": [["fc1"]], "smoothing.R": [0.1, 0.2, 0.05]},
                {"optim.name": ["sam"], "optim.gamma": [0.5, 1.0]},
            ],
        ),
        seeds=kw.pop("seeds", [0, 1, 2]),
        tuning=kw.pop("tuning", Tuning(seeds=[100, 101], base={"logging.flatness": False})),
        **kw,
    )


def _sweep(exp, out, **kw):
    lines: list[str] = []
    res = sweep.run_sweep(
        exp,
        out=out,
        runner=kw.pop("runner", runner),
        threads=None,
        normalise=passthrough,
        log=lines.append,
        lock_wait=0.0,
        **kw,
    )
    return res, "\n".join(lines)


# ----------------------------------------------------------------------------- parsing


def _definition(tuning_table):
    return {
        "quick": {"seeds": [0, 1], "grid": [{"smoothing.R": [0.1]}], "tuning": tuning_table},
    }


def test_tuning_section_is_parsed_with_its_base_flattened():
    exp = parse_experiment(
        _definition(
            {"seeds": [7, 8], "metric": "final_test_loss", "base": {"logging": {"flatness": False}}}
        ),
        name="x",
        scale="quick",
    )
    assert exp.tuning == Tuning(
        seeds=[7, 8], metric="final_test_loss", base={"logging.flatness": False}
    )
    assert exp.tuning.lower and not Tuning(seeds=[7]).lower
    assert "two stages: 2 tuning runs" in exp.report() and "then 2 evaluation runs" in exp.report()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"seeds": [1, 5]}, "disjoint from the evaluation seeds"),
        ({"seeds": []}, "seeds must be a non-empty list"),
        ({"seeds": [5], "metric": "accuracy"}, "metric must be one of best_test_acc"),
        ({"seeds": [5], "folds": 3}, "unknown key(s) ['folds']"),
        ({"seeds": [5], "base": 3}, "base must be a table"),
        ([5], "must be a table"),
    ],
)
def test_bad_tuning_sections_are_refused_with_the_key_named(table, message):
    with pytest.raises(ValueError, match="quick.tuning") as info:
        parse_experiment(_definition(table), name="x", scale="quick")
    assert message in str(info.value)


# ----------------------------------------------------------------------------- stages


def test_tuning_stage_is_every_cell_at_the_tuning_seeds_with_its_base():
    exp = two_stage()
    tune = tuning.tuning_experiment(exp)
    assert tune.name == "tuned" + tuning.TUNING_SUFFIX and tune.tuning is None
    pts = tune.points(passthrough)
    assert len(pts) == (3 + 2) * 2 and {p.settings["seed"] for p in pts} == {100, 101}
    assert all(p.config["logging"]["flatness"] is False for p in pts)
    with pytest.raises(ValueError, match="has no tuning stage"):
        tuning.tuning_experiment(tune)


def test_two_stage_sweep_evaluates_only_each_groups_best_cell(tmp_path):
    res, text = _sweep(two_stage(), tmp_path)
    assert res.ok and res.experiment == "tuned"
    tuned = read_results(tmp_path / "quick" / "tuned_tuning" / "results.csv")
    assert len(tuned) == 10 and {r["seed"] for r in tuned} == {100, 101}
    rows = read_results(tmp_path / "quick" / "tuned" / "results.csv")
    # the chosen cells (R = 0.2, gamma = 1) at the three evaluation seeds, nothing else
    assert sorted(
        (str(r["smoothing.R"]), str(r["optim.gamma"]), r["seed"]) for r in rows
    ) == sorted([("0.2", "None", s) for s in (0, 1, 2)] + [("None", "1.0", s) for s in (0, 1, 2)])
    sel = json.loads((tmp_path / "quick" / "tuned" / "selection.json").read_text())
    assert sel["ready"] and sel["tuning_seeds"] == [100, 101]
    g0 = sel["groups"][0]
    assert g0["chosen"] == 1 and g0["cells"][1]["settings"] == {
        "smoothing.layers": ["fc1"],
        "smoothing.R": 0.2,
    }
    assert g0["cells"][1]["mean"] == pytest.approx(0.5 + 0.2 + 0.0005)  # mean over seeds 100, 101
    assert "group 0: smoothing.layers=fc1 smoothing.R=0.2" in text
    # R = 0.2 is the largest of three tried: the choice is on its grid's edge; the SAM
    # group tried two values of gamma, which have no interior
    assert g0["edges"] == ["R = 0.2 is the largest tried (0.05, 0.1, 0.2)"]
    assert sel["groups"][1]["edges"] == []
    assert "at the grid's edge: R = 0.2 is the largest tried" in text
    # a rerun trains nothing
    assert res.n_points == res.n_run == 10 + 6  # both stages counted
    again, _ = _sweep(two_stage(), tmp_path)
    assert again.ok and again.n_run == 0 and again.n_skipped == 16


def test_a_stopped_tuning_run_rules_its_cell_out(tmp_path):
    grid = [{"smoothing.layers": [["fc1"]], "smoothing.R": [0.1, 0.3]}]
    res, _ = _sweep(two_stage(grid=grid), tmp_path)
    sel = tuning.select_cells(two_stage(grid=grid), tmp_path / "quick" / "store", passthrough)
    # R = 0.3 would score highest, but its runs stopped: the cell is not eligible
    assert sel.ready and sel.groups[0].choice.settings["smoothing.R"] == 0.1
    assert not sel.groups[0].cells[1].eligible
    assert {r["smoothing.R"] for r in read_results(res.results_path)} == {0.1}
    # the stopped tuning runs are the sweep's too: not ok (exit status 1), as in one stage
    assert not res.ok and res.n_stopped == 2 and res.experiment == "tuned"


def test_a_group_without_an_eligible_cell_is_reported_and_not_ok(tmp_path):
    grid = [
        {"smoothing.layers": [["fc1"]], "smoothing.R": [0.3]},
        {"optim.name": ["sam"], "optim.gamma": [1.0]},
    ]
    res, text = _sweep(two_stage(grid=grid), tmp_path)
    assert not res.ok and res.experiment == "tuned_tuning"
    assert "no evaluation: a group of tuned has no cell whose tuning runs all completed" in text
    assert not (tmp_path / "quick" / "tuned" / "results.csv").exists()


def test_evaluation_waits_until_every_tuning_point_is_finished(tmp_path):
    def flaky(config, run_dir):
        if config["seed"] == 101 and config.get("smoothing", {}).get("R") == 0.05:
            raise RuntimeError("worker lost")
        return runner(config, run_dir)

    res, text = _sweep(two_stage(), tmp_path, runner=flaky)
    assert not res.ok and res.experiment == "tuned_tuning" and res.n_failed == 1
    assert "starts once every tuning point is finished" in text
    assert not (tmp_path / "quick" / "tuned").exists()
    sel = tuning.select_cells(two_stage(), tmp_path / "quick" / "store", passthrough)
    assert not sel.ready and sel.n_finished == 9 and len(sel.waiting) == 1
    with pytest.raises(ValueError, match="not finished: 9 of 10"):
        tuning.evaluation_experiment(two_stage(), sel)
    res, _ = _sweep(two_stage(), tmp_path)  # the rerun trains the missing point, then evaluates
    assert res.ok and res.experiment == "tuned" and res.n_run == 1 + 6 and res.n_skipped == 9


def test_a_loss_metric_chooses_the_lowest_and_ties_go_to_the_first_cell(tmp_path):
    exp = two_stage(tuning=Tuning(seeds=[100, 101], metric="best_test_loss"))
    _sweep(exp, tmp_path)
    sel = tuning.select_cells(exp, tmp_path / "quick" / "store", passthrough)
    assert sel.groups[0].choice.settings["smoothing.R"] == 0.2  # lowest loss = highest acc
    grid = [{"smoothing.layers": [["fc1"], ["fc2"]], "smoothing.R": [0.1]}]  # equal scores
    _sweep(two_stage(grid=grid), tmp_path / "tie")
    sel = tuning.select_cells(
        two_stage(grid=grid), tmp_path / "tie" / "quick" / "store", passthrough
    )
    assert sel.groups[0].chosen == 0


def test_dry_run_lists_the_tuning_points_and_trains_nothing(tmp_path):
    res, text = _sweep(two_stage(), tmp_path, dry_run=True)
    assert res.n_run == 0 and text.count("pending") == 10
    assert "0 of 10 tuning points finished" in text
    assert not (tmp_path / "quick").exists()


def test_the_tuning_stage_is_checked_before_work_starts_and_set_wins(tmp_path):
    toml = tmp_path / "t.toml"
    toml.write_text(
        "[quick]\nseeds = [0, 1]\n[quick.base]\nepochs = 1\n[[quick.grid]]\n"
        '"smoothing.R" = [0.1]\n[quick.tuning]\nseeds = [9]\n[quick.tuning.base]\n'
        '"optim.nonsense" = 3\n'
    )
    with pytest.raises(ValueError, match="nonsense"):
        sweep.check_options(str(toml), sweep.SweepOptions(workers=1))
    exp = two_stage().with_overrides(["logging.flatness=true", "epochs=2"])
    assert exp.tuning.base == {}  # --set logging.flatness wins over the tuning base
    pts = tuning.tuning_experiment(exp).points(passthrough)
    assert all(p.config["logging"]["flatness"] is True and p.config["epochs"] == 2 for p in pts)


def test_grid_edges_flag_a_choice_at_the_end_of_the_values_tried():
    # PLA on two layers x three R (a list value, the layers, is never an edge)
    cells = [
        {"smoothing.layers": [layer], "smoothing.R": R}
        for layer in ("fc1", "fc2")
        for R in (0.01, 0.03, 0.1)
    ]
    (edge,) = tuning.grid_edges(cells, 5)  # fc2, R = 0.1
    assert (edge.key, edge.value, edge.side) == ("smoothing.R", 0.1, "largest")
    assert edge.tried == (0.01, 0.03, 0.1)
    assert tuning.grid_edges(cells, 3)[0].side == "smallest"  # fc2, R = 0.01
    assert tuning.grid_edges(cells, 4) == []  # fc2, R = 0.03: interior
    # two values have no interior; booleans and non-finite values are not settings to tune
    assert tuning.grid_edges([{"optim.rho": 0.01}, {"optim.rho": 0.05}], 1) == []
    flags = [{"x": True, "lr": v} for v in (1.0, 2.0, 3.0)]
    assert [e.key for e in tuning.grid_edges(flags, 0)] == ["lr"]
    assert tuning.grid_edges([{"lr": float("nan")}, {"lr": 1.0}, {"lr": 2.0}], 0) == []
    # a second numeric setting: only cells equal on it count (gamma at 1 tried 3 lr)
    grid = [{"lr": lr, "gamma": g} for lr in (0.1, 0.2, 0.3) for g in (1.0, 2.0)]
    assert [(e.key, e.side) for e in tuning.grid_edges(grid, 0)] == [("lr", "smallest")]
    for bad in (-1, 6, True, 1.0):
        with pytest.raises(ValueError, match="chosen must be an index into cells"):
            tuning.grid_edges(grid, bad)
