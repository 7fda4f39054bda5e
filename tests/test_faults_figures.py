"""Faults of `anisotropy figures` and of the analyses' outputs (issue 10, items 3, 4, 7, 8).

Each test runs the real command on a tiny run store written here (a stand-in runner,
no training) and checks what a user sees: the exit status, the one line saying why,
and that files already on disk keep their bytes.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from experiments.definitions import load_experiment
from experiments.sweep import run_sweep
from paper_figs import common, make

#: the files figure 3 writes into OUT/SCALE
FIG3_FILES = ("fig3.png", "fig3.pdf", "fig3_table.csv", "fig3_table.md")


def failing_runner(config, run_dir):
    """Stand-in trainer whose every run fails (as a diverged or crashed run does)."""
    raise RuntimeError("planted failure")


def _old_files(d: Path, names) -> dict[str, bytes]:
    """Plant recognisable bytes as the files of an earlier, successful drawing."""
    d.mkdir(parents=True, exist_ok=True)
    old = {}
    for name in names:
        old[name] = f"earlier {name}".encode()
        (d / name).write_bytes(old[name])
    return old


def _figures(argv, capsys) -> tuple[int, list[str]]:
    rc = make.main(argv)
    return rc, [line for line in capsys.readouterr().err.splitlines() if line]


def test_figures_fail_and_keep_files_when_every_run_failed(tmp_path, capsys):
    runs, out = tmp_path / "runs", tmp_path / "results"
    # figure 3's quick sweep cut to two points (one smoothed, one baseline), both failing
    exp = dataclasses.replace(
        load_experiment("fig3", "quick"),
        seeds=[0],
        grid=[{"smoothing.layers": [["fc1"]], "smoothing.R": [0.01]}, {"smoothing.layers": [[]]}],
    )
    res = run_sweep(
        exp,
        out=runs,
        runner=failing_runner,
        threads=None,
        log=lambda s: None,
    )
    assert res.n_failed == res.n_points > 0
    old = _old_files(out / "quick", (*FIG3_FILES, "claims.json", "claims.md"))
    rc, err = _figures(["3", "--draw-only", "--runs", str(runs), "--out", str(out)], capsys)
    assert rc == 1
    assert len(err) == 1, err
    assert re.fullmatch(
        rf"anisotropy figures: figure 3 not drawn: fig3: every run failed \({res.n_points} runs "
        rf"in .*results\.csv: {res.n_points} failed; see error\.txt or summary\.json in each "
        r"run directory\)",
        err[0],
    ), err[0]
    # the earlier figure, its table and the claims keep their bytes (no empty redraw)
    assert {n: (out / "quick" / n).read_bytes() for n in old} == old


def test_figures_fail_when_results_csv_is_missing(tmp_path, capsys):
    runs, out = tmp_path / "runs", tmp_path / "results"
    runs.mkdir()
    old = _old_files(out / "quick", ("fig3.png", "fig3_table.csv", "claims.json"))
    rc, err = _figures(["3", "--draw-only", "--runs", str(runs), "--out", str(out)], capsys)
    assert rc == 1 and len(err) == 1
    assert err[0].startswith("anisotropy figures: figure 3 not drawn: fig3: results.csv missing")
    assert "run `anisotropy sweep fig3 --scale quick" in err[0]
    assert {n: (out / "quick" / n).read_bytes() for n in old} == old
    assert not (out / "quick" / "fig3.pdf").exists()


def test_a_figure_without_experiments_is_still_drawn_next_to_a_missing_one(tmp_path, capsys):
    # figure 2 needs no runs: it is drawn; figure 3 has no results: the status says so
    # (and the claims of an earlier run, with no results now, are kept: no forest redraw)
    old = _old_files(tmp_path / "quick", ("claims.json",))
    rc, err = _figures(
        ["2", "3", "--draw-only", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path)],
        capsys,
    )
    assert rc == 1 and [e.split(":")[1] for e in err] == [" figure 3 not drawn"]
    assert (tmp_path / "quick" / "fig2.png").stat().st_size > 10_000
    assert (tmp_path / "quick" / "claims.json").read_bytes() == old["claims.json"]


def test_empty_figure_or_table_never_replaces_an_existing_one(tmp_path):
    old = _old_files(tmp_path, ("f.png", "f.pdf", "t.csv", "t.md"))
    fig, ax = plt.subplots()
    ax.plot([], [], label="legend proxy")  # no data point
    ax.axvspan(0, 1)  # decoration, not data
    ax.set_title("empty")
    with pytest.raises(common.NoDataError, match="f: nothing to draw"):
        common.save_figure(fig, tmp_path, "f")
    with pytest.raises(common.NoDataError, match="t: no rows"):
        common.write_figure_table([], tmp_path, "t", keys=["k"], metrics=["m"], title="x")
    assert {n: (tmp_path / n).read_bytes() for n in old} == old
    # one finite point is data
    fig, ax = plt.subplots()
    ax.plot([1.0, float("nan")], [2.0, 3.0])
    assert common.has_data(fig)
    plt.close(fig)


def test_epoch_curves_with_no_matching_variant_write_nothing(tmp_path):
    # complete runs exist, but none of the variants asked for: draw_curves refuses
    ctx = common.FigureContext("quick", tmp_path / "runs", tmp_path / "out")
    ctx._cache["figX"] = [{"status": "complete", "smoothing.layers": "fc9"}]
    old = _old_files(ctx.out, ("figX.png", "figX_table.csv"))
    variant = common.Variant("fc1", "r", {"smoothing.layers": "fc1"})
    with pytest.raises(common.NoDataError, match="no complete run of any variant"):
        common.draw_curves(ctx, "figX", [variant], figure="X", title="t")
    assert {n: (ctx.out / n).read_bytes() for n in old} == old


def test_a_crash_while_saving_a_figure_keeps_the_old_file(tmp_path):
    old = _old_files(tmp_path, ("f.png",))
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])

    def torn_savefig(fh, **kw):
        fh.write(b"\x89PNG half a figure")
        raise OSError("disk full")

    fig.savefig = torn_savefig
    with pytest.raises(OSError, match="disk full"):
        common.save_figure(fig, tmp_path, "f")
    assert (tmp_path / "f.png").read_bytes() == old["f.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]  # no temporary left


#: writes that bypass the atomic writers of anisotropy.io (tmp + fsync + os.replace)
_DIRECT_WRITE = re.compile(
    r"\.savefig\(|\.write_text\(|\.write_bytes\(|open\([^)]*['\"][wax]b?\+?['\"]|\.to_csv\("
)


def test_analysis_and_figures_write_only_through_the_atomic_writers():
    root = Path(__file__).resolve().parents[1]
    offenders = [
        f"{path.relative_to(root)}:{i}: {line.strip()}"
        for folder in ("analysis", "paper_figs")
        for path in sorted((root / folder).rglob("*.py"))
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _DIRECT_WRITE.search(line) and not line.lstrip().startswith("#")
    ]
    assert offenders == []


def stopping_runner(config, run_dir):
    """Stand-in trainer whose every run diverges (the trainer's "stopped" status)."""
    summary = {"status": "stopped: non-finite training loss (nan) at epoch 1", "config": config}
    (Path(run_dir) / "summary.json").write_text(json.dumps(summary))
    return summary


def test_figures_count_stopped_points_as_not_complete(tmp_path):
    # a diverged point is not "failed" for the sweep (it is not retried), but a figure
    # that asked for it did not get it: the command must not report success
    opts = make.FiguresOptions(
        scale="quick", runs=str(tmp_path / "runs"), out=str(tmp_path / "out"), workers=0
    )
    out = make.make_figures(["7"], opts, log=lambda s: None, runner=stopping_runner)
    n_points = len(load_experiment("fig7", "quick").points())
    assert out["failed"] == n_points > 0
