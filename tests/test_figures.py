"""Statistics, claim verdicts and the figure pipeline (on stand-in results, no training)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from experiments import results as res_mod
from experiments.definitions import load_experiment
from experiments.grid import get_dotted
from experiments.sweep import run_sweep
from paper_figs import claim_rules, claims, forest, make, sequential, stats, until_decided

# ----------------------------------------------------------------------------- stats


def test_t_interval_closed_form_and_coverage(rng):
    x = np.array([1.0, 2.0, 4.0])
    iv = stats.t_interval(x)
    h = sps.t.ppf(0.975, 2) * x.std(ddof=1) / math.sqrt(3)
    assert iv.mean == pytest.approx(7 / 3) and iv.n == 3
    assert (iv.lo, iv.hi) == pytest.approx((7 / 3 - h, 7 / 3 + h))
    # coverage of the 95 % interval for n = 3 normal samples: 2000 seeded trials,
    # binomial sd sqrt(.95 * .05 / 2000) = 0.0049, tolerance 4 sd
    ivs = [stats.t_interval(t) for t in rng.normal(size=(2000, 3))]
    cover = np.mean([iv.lo <= 0 <= iv.hi for iv in ivs])
    assert abs(cover - 0.95) < 4 * math.sqrt(0.95 * 0.05 / 2000)
    one = stats.t_interval([0.5])
    assert one.mean == 0.5 and math.isnan(one.lo) and one.n == 1


def test_welch_matches_scipy_and_reduces_to_student(rng):
    a, b = rng.normal(0.0, 1.0, 5), rng.normal(0.5, 3.0, 7)
    c = stats.welch(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert c.t == pytest.approx(ref.statistic) and c.p == pytest.approx(ref.pvalue)
    assert c.diff == pytest.approx(a.mean() - b.mean())
    # equal sizes and equal sample variances: Welch-Satterthwaite df = 2 (n - 1)
    x = np.array([0.0, 1.0, 2.0])
    c2 = stats.welch(x, x + 5.0)
    assert c2.df == pytest.approx(4.0) and c2.diff == pytest.approx(-5.0)
    # the interval inverts the test: 0 is inside exactly when p >= 0.05
    assert (c.lo <= 0 <= c.hi) == (c.p >= 0.05)


def test_welch_null_rejection_rate(rng):
    # under H0 (equal means, unequal variances) the rejection rate at 5 % is about
    # 5 %: 2000 seeded trials, binomial sd 0.0049; Welch's approximation is within
    # ~1 % here (n = 4 vs 6), so the tolerance is 0.01 + 3 sd
    rej = np.mean(
        [stats.welch(rng.normal(0, 1, 4), rng.normal(0, 2, 6)).p < 0.05 for _ in range(2000)]
    )
    assert abs(rej - 0.05) < 0.01 + 3 * math.sqrt(0.05 * 0.95 / 2000)


def test_welch_zero_spread_and_bad_input():
    assert stats.welch([1.0, 1.0], [1.0, 1.0]).p == 1.0
    assert stats.welch([1.0, 1.0], [0.5, 0.5]).p == 0.0
    with pytest.raises(ValueError, match=">= 2 values"):
        stats.welch([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="NaN or inf"):
        stats.t_interval([1.0, float("nan")])
    with pytest.raises(ValueError, match="confidence"):
        stats.t_interval([1.0, 2.0], confidence=1.5)


def test_group_summary_and_tables(tmp_path):
    rows = [
        {"status": "complete", "g": g, "v": v}
        for g, v in [("a", 1.0), ("a", 3.0), ("b", 2.0), ("b", 2.0), ("b", 5.0)]
    ]
    rows.append({"status": "failed", "g": "a", "v": None})
    summ = {s["g"]: s for s in stats.group_summary(rows, ["g"], "v")}
    assert summ["a"]["mean"] == 2.0 and summ["a"]["n"] == 2 and summ["b"]["n"] == 3
    csv_path, md_path = stats.write_table(list(summ.values()), ["g", "mean", "n"], tmp_path / "t")
    assert csv_path.read_text().splitlines()[1] == "a,2.0,2"
    assert "| a | 2 | 2 |" in md_path.read_text()


# ----------------------------------------------------------------------------- claims


def test_directional_and_equivalence_rules():
    hi, lo = np.array([0.90, 0.91, 0.92]), np.array([0.80, 0.81, 0.82])
    assert claim_rules.directional(hi, lo)[0] == "holds"
    assert claim_rules.directional(lo, hi)[0] == "does not hold"
    assert claim_rules.directional(hi, hi[::-1] + 1e-3)[0] == "inconclusive"
    # Bonferroni: a difference significant at 5 % but not at 5 %/1000 is inconclusive
    a, b = np.array([0.50, 0.51, 0.52]), np.array([0.47, 0.48, 0.49])
    v, c, alpha = claim_rules.directional(a, b, m=1000)
    assert 0.05 / 1000 < c.p < 0.05 and v == "inconclusive" and alpha == pytest.approx(5e-5)
    assert claim_rules.equivalence(0.0, -0.001, 0.001) == "holds"
    assert claim_rules.equivalence(0.02, 0.01, 0.03) == "does not hold"
    assert claim_rules.equivalence(0.0, -0.02, 0.02) == "inconclusive"


def _vs_R_rows(effect):
    """Rows of a vs-R sweep: accuracy = 0.8 + effect(subset, R), +-0.001 seed noise."""
    rows = []
    for subset in ("none", "fc1", "fc2", "fc1+fc2"):
        for R in (0.01,) if subset == "none" else (0.01, 0.03, 0.1):
            for seed, noise in enumerate((-0.001, 0.0, 0.001)):
                acc = 0.8 + (0.0 if subset == "none" else effect(subset, R)) + noise
                rows.append(
                    {
                        "status": "complete",
                        "smoothing.layers": subset,
                        "smoothing.R": R,
                        "smoothing.y": 4,
                        "seed": seed,
                        "best_test_acc": acc,
                        "final_test_acc": acc - 0.01,
                        "optim.weight_decay": 0.0,
                    }
                )
    return rows


def test_vs_R_claims_on_planted_effects():
    # planted: fc2 peaks at R = 0.03 (+3 pp), fc1 +1 pp, isotropic degrades with R
    def paper_like(subset, R):
        return {"fc1": 0.01, "fc2": 0.03 if R == 0.03 else 0.015}.get(subset, -R)

    rows = _vs_R_rows(paper_like)
    out = {
        r.id: r
        for r in claims.evaluate_claims(lambda e: rows if e == "fig3" else None)
        if r.experiment == "fig3"
    }
    assert out["smoothing-improves"].verdict == "holds"
    assert out["interior-maximum"].verdict == "holds"
    assert out["interior-maximum"].numbers["r_star"] == 0.03
    assert out["single-beats-isotropic"].verdict == "holds"
    assert out["deeper-benefits-more"].verdict == "holds"
    assert out["isotropic-degrades"].verdict == "holds"
    assert out["isotropic-degrades"].numbers["subset"] == "fc1+fc2"
    # the opposite world: first layer best, isotropic best, smoothing hurts
    rows = _vs_R_rows(lambda s, R: {"fc1": -0.02, "fc2": -0.04}.get(s, -0.01))
    out = {
        r.id: r
        for r in claims.evaluate_claims(lambda e: rows if e == "fig3" else None)
        if r.experiment == "fig3"
    }
    assert out["smoothing-improves"].verdict == "does not hold"
    assert out["single-beats-isotropic"].verdict == "does not hold"
    assert out["deeper-benefits-more"].verdict == "does not hold"
    # accuracy still rising at the largest R: no interior maximum
    rows = _vs_R_rows(lambda s, R: R)
    out = {
        r.id: r
        for r in claims.evaluate_claims(lambda e: rows if e == "fig3" else None)
        if r.experiment == "fig3"
    }
    assert out["interior-maximum"].verdict == "does not hold"


def test_missing_sweeps_are_not_run_and_claims_are_written(tmp_path):
    results = claims.evaluate_claims(lambda e: None)
    assert results and all(r.verdict == "not run" for r in results)
    j, m = claims.write_claims(results, tmp_path, scale="quick")
    data = json.loads(j.read_text())
    assert len(data["claims"]) == len(results) and data["margin"] == claim_rules.MARGIN
    assert "not run" in m.read_text()


# ----------------------------------------------------------------------------- pipeline


def planted_runner(config, run_dir):
    """Stand-in trainer writing a plausible log: accuracy rises with the epoch,
    fc2 smoothing adds 2 pp, conv smoothing costs 3 pp, seeds add +-0.1 pp."""
    layers = get_dotted(config, "smoothing.layers", [])
    top = 0.8 + (0.02 if "fc2" in layers else 0.0) - (0.03 if "conv5" in layers else 0.0)
    top += 0.001 * (config["seed"] - 1)
    epochs = config["epochs"]
    lines, best = [], 0.0
    for e in range(1, epochs + 1):
        acc = top * (1 - 0.5**e)
        best = max(best, acc)
        lines.append(
            json.dumps(
                {
                    "epoch": e,
                    "train_loss": 1.0 / e,
                    "smoothed_loss": 1.0 / e,
                    "train_acc": min(acc + 0.05, 1.0),
                    "test_loss": 0.5,
                    "test_acc": acc,
                    "best_test_acc": best,
                    "wall_time": 0.1 * e,
                    "layers": {},
                }
            )
        )
    Path(run_dir, "log.jsonl").write_text("\n".join(lines) + "\n")
    summary = {
        "status": "complete",
        "best_test_acc": best,
        "best_epoch": epochs,
        "final_test_acc": acc,
        "final_train_loss": 1.0 / epochs,
        "epochs": epochs,
        "wall_time": 0.1 * epochs,
        "config": config,
    }
    Path(run_dir, "summary.json").write_text(json.dumps(summary))
    return summary


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    for name in ("fig3", "fig4_left", "fig4_right", "fig5", "fig6", "fig7", "fig8"):
        run_sweep(
            load_experiment(name, "quick"),
            out=runs,
            runner=planted_runner,
            threads=None,
            log=lambda s: None,
        )
    return runs


def _draw(quick_results, out_dir, figures):
    opts = make.FiguresOptions(
        scale="quick", runs=str(quick_results), out=str(out_dir), draw_only=True
    )
    out = make.make_figures(figures, opts, log=lambda s: None)
    d = out_dir / "quick"
    for fig in figures:
        assert (d / f"fig{fig}.png").stat().st_size > 10_000
        assert (d / f"fig{fig}.pdf").is_file()
        assert out["timings"][fig]["runs_trained"] == 0
    tables = {
        "3": ["fig3"],
        "4": ["fig4_left", "fig4_right"],
        "5": ["fig5"],
        "6": ["fig6"],
        "7": ["fig7"],
        "8": ["fig8"],
    }
    for fig in figures:
        for stem in tables.get(fig, []):
            assert (d / f"{stem}_table.csv").is_file() and (d / f"{stem}_table.md").is_file()
    return out, d


@pytest.mark.slow
def test_every_figure_is_drawn(quick_results, tmp_path):
    _draw(quick_results, tmp_path, ["2", "3", "4", "5", "6", "7", "8"])


def test_figures_are_drawn_from_results_without_training(quick_results, tmp_path):
    # one vs-R figure and one epoch-curve figure (all of them: the slow test above);
    # the claims are evaluated on every experiment's results either way
    out, d = _draw(quick_results, tmp_path, ["3", "6"])
    # a table cell is the mean over the three seeds of what the runs reported
    rows = {
        (r["smoothing.layers"], r["smoothing.R"]): r
        for r in res_mod.read_results(d / "fig3_table.csv")
    }
    cell = rows[("fc2", 0.01)]
    expected = np.mean([0.82 + 0.001 * (s - 1) for s in range(3)]) * (1 - 0.5**8)
    assert cell["best_test_acc_mean"] == pytest.approx(expected) and cell["n"] == 3
    verdicts = {(c.id, c.experiment): c.verdict for c in out["claims"]}
    # planted: fc2 +2 pp with 0.1 pp seed noise, conv5 -3 pp
    assert verdicts[("deeper-benefits-more", "fig3")] == "holds"
    assert verdicts[("head-smoothing-helps", "fig6")] == "holds"
    assert verdicts[("conv-smoothing-hurts", "fig6")] == "holds"
    assert verdicts[("y8-no-better", "fig5")] == "holds"  # y does not enter the planted runs
    assert json.loads((d / "claims.json").read_text())["claims"]
    index = (d / "figures.md").read_text()
    assert "![figure 3](fig3.png)" in index and "quick scale" in index.lower()


def test_figures_cli_rejects_unknown_figures(capsys):
    with pytest.raises(SystemExit):
        make.main(["9", "--draw-only"])
    err = capsys.readouterr().err
    valid = "1, 2, 3, 4, 5, 6, 7, 8, 9a, 9b, 9c, 9d"
    assert "unknown figure" in err and f"valid: {valid}" in err
    help_text = " ".join(make._parser().format_help().split())  # argparse wraps lines
    assert f"figures to make ({valid}; default: all)" in help_text


def test_figures_are_discovered_from_their_modules(tmp_path, monkeypatch):
    import importlib
    import sys

    # the shipped figures: fig1 ... fig8 and the related seeds' fig9a ... fig9d, not the
    # helper fig1_regimes; each has the interface
    expected = {str(i): f"paper_figs.fig{i}" for i in range(1, 9)}
    expected |= {f"9{c}": f"paper_figs.fig9{c}" for c in "abcd"}
    assert dict(make.FIGURES.items()) == expected
    for fig in make.FIGURES:
        mod = make._module(fig)
        assert isinstance(mod.EXPERIMENTS, tuple) and callable(mod.draw)
    # natural order: digits compare as numbers, a suffix after its number
    ids = ["10", "9b", "2", "9", "a", "1"]
    assert sorted(ids, key=make.figure_key) == ["1", "2", "9", "9b", "10", "a"]
    # any package: one module per figure is all it takes; helpers are skipped
    pkg = tmp_path / "figpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    body = "EXPERIMENTS = ()\n\ndef draw(ctx):\n    return None\n"
    for name in ("fig10", "fig2", "fig9b", "fig2_helper", "stats", "figure"):
        (pkg / f"{name}.py").write_text(body)
    (pkg / "fig3").mkdir()  # a package, not a figure module
    (pkg / "fig3" / "__init__.py").write_text("")
    (pkg / "fig4.py").write_text("X = 1\n")  # named as a figure, without the interface
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "figpkg", raising=False)
    found = make.discover_figures("figpkg")
    assert found == {
        "2": "figpkg.fig2",
        "4": "figpkg.fig4",
        "9b": "figpkg.fig9b",
        "10": "figpkg.fig10",
    }
    assert list(found) == ["2", "4", "9b", "10"]
    monkeypatch.setattr(make, "FIGURES", found)
    assert make._module("9b") is importlib.import_module("figpkg.fig9b")
    with pytest.raises(TypeError, match="figpkg.fig4 must define EXPERIMENTS"):
        make._module("4")
    with pytest.raises(ValueError, match="unknown figure '1'; valid: 2, 4, 9b, 10"):
        make._module("1")


def synthetic_cooling_runner(config, run_dir):
    """Stand-in for the long figure-1 run: a synthetic log with a known common late
    law (stretched exponential, onset at epoch 40) from analysis.cooling.synthetic."""
    from analysis.cooling.synthetic import SyntheticSpec, generate, write_run

    spec = SyntheticSpec(n_epochs=150, onset=40.0)
    data, _ = generate(spec, np.random.default_rng(config["seed"] + 7))
    summary = {
        "status": "complete",
        "best_test_acc": 0.9,
        "final_test_acc": 0.9,
        "final_train_loss": 0.01,
        "epochs": 150,
        "wall_time": 1.0,
    }
    write_run(data, run_dir, summary=summary)
    return summary


def sweep_planted(runs: Path, experiment: str, runner) -> None:
    """Sweep ``experiment`` at quick scale into ``runs`` with a planted ``runner``."""
    run_sweep(
        load_experiment(experiment, "quick"),
        out=runs,
        runner=runner,
        threads=None,
        log=lambda s: None,
    )


def sweep_early_probe(runs: Path) -> None:
    """Figure 1 also reads its early probe (experiment fig1_early): a planted one."""
    from planted_fig1 import planted_early_runner

    sweep_planted(runs, "fig1_early", planted_early_runner)


def test_figure1_runs_the_cooling_analysis_when_missing(tmp_path):
    runs = tmp_path / "runs"
    sweep_early_probe(runs)
    sweep_planted(runs, "fig1", synthetic_cooling_runner)
    opts = make.FiguresOptions(
        scale="quick", runs=str(runs), out=str(tmp_path / "out"), draw_only=True
    )
    make.make_figures(["1"], opts, log=lambda s: None)
    d = tmp_path / "out" / "quick"
    assert (d / "fig1.png").stat().st_size > 10_000
    assert (d / "fig1_gradients.png").stat().st_size > 10_000
    # one analysis per run, cached next to the figure; the run directories are only read
    assert len(list(d.glob("fig1_cooling_*_s0.json"))) == 2
    assert not list(runs.rglob("cooling*.json"))
    rows = res_mod.read_results(d / "fig1_table.csv")
    assert {r["activation"] for r in rows} == {"relu", "tanh"}
    # regimes 1-2 from the planted early probe (signal-dominated start, then a crossing)
    assert (d / "fig1_early.png").stat().st_size > 10_000
    for r in rows:
        assert str(r["regime1_present"]) == "True" and str(r["regime2_present"]) == "True"
        assert r["regime1"].startswith("present (3 of 3 seeds)")
        assert r["regime1"].endswith("[early probe fig1_early]")
    for r in rows:  # the planted onset (epoch 40) is inside the reported interval
        assert r["time_axis"] == "epoch"  # no step log: the epoch axis
        lo, hi = (float(x) for x in r["late_onset_ci"].strip("[]").split(","))
        assert lo <= 40 <= hi or abs(r["late_onset"] - 40) < 15


#: a synthetic step log with all three regimes planted (times in steps): signal maximum
#: near steps 30-300 (rise 20 steps), SNR = 1 at step 400, common stretched-exponential
#: decay from step 3000 to 200,000 (1.8 decades)
STEP_SPEC = dict(
    params={"tau": 2000.0, "beta": 0.5},
    rise_time=20.0,
    onset=3000.0,
    snr_crossing=400.0,
    snr_width=100.0,
    noise=0.05,
    noise_std=0.05,
)


def synthetic_step_runner(config, run_dir):
    """Stand-in for a figure-1 run with the step log: ``log.jsonl`` and ``steps.jsonl``."""
    from analysis.cooling.synthetic import SyntheticSpec
    from analysis.cooling.synthetic_steps import generate_steps, write_steps
    from anisotropy.training.steplog import geometric_steps

    summary = synthetic_cooling_runner(config, run_dir)
    data, _ = generate_steps(SyntheticSpec(**STEP_SPEC), geometric_steps(200_000), 6)
    write_steps(data, run_dir)
    return summary


def test_figure1_on_the_step_log_finds_the_planted_regimes(tmp_path):
    runs = tmp_path / "runs"
    sweep_early_probe(runs)
    sweep_planted(runs, "fig1", synthetic_step_runner)
    opts = make.FiguresOptions(
        scale="quick", runs=str(runs), out=str(tmp_path / "out"), draw_only=True
    )
    make.make_figures(["1"], opts, log=lambda s: None)
    d = tmp_path / "out" / "quick"
    rows = res_mod.read_results(d / "fig1_table.csv")
    assert len(rows) == 2
    for r in rows:
        assert r["time_axis"] == "step" and r["last_time"] == 200_000
        lo, hi = (float(x) for x in r["late_onset_ci"].strip("[]").split(","))
        assert lo <= r["late_onset"] <= hi and abs(np.log10(r["late_onset"] / 3000)) < 0.1
        assert abs(r["snr_crossing_median"] / 400 - 1) < 0.1
        assert r["signal_law"] == "stretched_exponential"
        for k in ("regime1", "regime2", "regime3"):  # 1-2 from the planted early probe
            assert str(r[f"{k}_present"]) == "True" and r[k].startswith("present")
        assert r["late_span_decades"] == pytest.approx(np.log10(200_000 / r["late_onset"]))
        assert str(r["common_law_holds"]) == "True"
    md = (d / "fig1_table.md").read_text()
    assert "regime 1: present" in md and "step axis" in md
    # the cached analyses are reused while the logs do not change, redone when they grow
    cache = sorted(d.glob("fig1_cooling_*.json"))
    stamp = [p.stat().st_mtime_ns for p in cache]
    make.make_figures(["1"], opts, log=lambda s: None)
    assert [p.stat().st_mtime_ns for p in cache] == stamp
    steps = next(p for p in runs.rglob("steps.jsonl") if "within_parts" not in p.read_text())
    lines = steps.read_text().splitlines()
    steps.write_text("\n".join(lines[:-1]) + "\n")  # a different (shorter) log
    make.make_figures(["1"], opts, log=lambda s: None)
    assert sum(p.stat().st_mtime_ns != s for p, s in zip(cache, stamp, strict=True)) == 1


def test_regime_verdicts_say_absent_and_why():
    from analysis.cooling.synthetic import SyntheticSpec
    from analysis.cooling.synthetic_steps import generate_steps
    from anisotropy.training.steplog import geometric_steps
    from paper_figs.fig1_regimes import regime_verdicts

    # noise-dominated from the first window, the signal falling from step 1, a late window
    # shorter than a decade (onset at step 30,000 of 200,000: 0.82 decades)
    spec = SyntheticSpec(
        **{**STEP_SPEC, "rise_time": 0.0, "onset": 30_000.0, "noise_ratio_early": 3.0}
    )
    data, _ = generate_steps(spec, geometric_steps(200_000), 1)
    res = {
        "time_axis": "step",
        "selected": "exponential",
        "laws": {"exponential": {"params": {"tau": 1.0}, "ci": {"tau": [0.5, 2.0]}}},
        "regimes": {
            "signal_max": {k: 1.0 for k in data.layers},
            "snr_crossing": {
                k: {"epoch": None, "note": "noise-dominated from the first epoch"}
                for k in data.layers
            },
            "late_onset": {"epoch": 30_000.0, "ci": [25_000.0, 35_000.0]},
            "late_window": [30_000.0, 200_000.0],
        },
        "factorisation": {"signal": {"p_value": 0.5}},
        "config": {"level": 0.95},
    }
    v = regime_verdicts(res, data)
    assert v["early_snr"]["n_above"] == 0 and v["early_snr"]["t_first"] == 112
    assert v["regime1"].startswith("absent: SNR < 1 in all") and "first logged step" in v["regime1"]
    assert "not resolved" in v["regime1"]  # the one-minibatch start has no spread
    assert v["regime2"].startswith("absent: no downward SNR crossing")
    assert "first step" in v["regime2"]
    assert v["late_span_decades"] == pytest.approx(np.log10(200_000 / 30_000))
    assert v["regime3"].startswith("absent: ") and "not sub-exponential" in v["regime3"]
    assert "needs last/onset >= 10" in v["regime3"]
    assert v["common_law"].startswith("holds") and v["common_law_holds"] is True
    assert not any(v[f"regime{i}_present"] for i in (1, 2, 3))


# ------------------------------------------------------- paired, negligible, sequential


def _claims_on(rows, experiment="fig3", **kw):
    return {
        r.id: r
        for r in claims.evaluate_claims(lambda e: rows if e == experiment else None, **kw)
        if r.experiment == experiment
    }


def test_claims_pair_arms_that_share_seeds_and_report_both_tests():
    rows = _vs_R_rows(lambda s, R: {"fc1": 0.01, "fc2": 0.02}.get(s, -R))
    out = _claims_on(rows)
    r = out["deeper-benefits-more"]
    # the planted seed noise is shared by every arm: the paired difference is exact
    assert r.numbers["test"] == "paired" and r.numbers["paired"]["lo"] == pytest.approx(0.01)
    assert r.numbers["welch"]["lo"] < 0.01 < r.numbers["welch"]["hi"]
    assert "paired 95%" in r.evidence and "Welch 95%" in r.evidence and r.verdict == "holds"
    assert {"smoothing.layers": "fc2", "smoothing.R": 0.03} in r.arms
    # one run missing from an arm: its seeds differ, Welch decides
    rows = [x for x in rows if not (x["smoothing.layers"] == "fc1" and x["seed"] == 2)]
    assert _claims_on(rows)["deeper-benefits-more"].numbers["test"] == "Welch"


def test_directional_claim_with_no_effect_is_negligible():
    # fc2 beats fc1 by 0.01 pp only: the exact paired difference lies inside the margin
    rows = _vs_R_rows(lambda s, R: {"fc1": 0.01, "fc2": 0.0101}.get(s, -R))
    r = _claims_on(rows)["deeper-benefits-more"]
    assert r.verdict == "negligible" and abs(r.numbers["hi"]) < claim_rules.MARGIN


def test_sequential_verdicts_read_the_planned_looks():
    design = sequential.SequentialDesign()
    rows = _vs_R_rows(lambda s, R: {"fc1": 0.01, "fc2": 0.02}.get(s, -R))
    # 3 seeds: before the first look (n = 4), nothing is decided
    out = _claims_on(rows, design=design)
    assert all(r.verdict == "inconclusive" for r in out.values())
    assert "before the first look" in out["deeper-benefits-more"].evidence
    # a fourth seed with the same planted effects: decided at look 1 (n = 4)
    rows4 = rows + [dict(x, seed=3) for x in rows if x["seed"] == 0]
    r = _claims_on(rows4, design=design)["deeper-benefits-more"]
    assert r.verdict == "holds" and r.numbers["look"] == 4 and "look 1 of 4" in r.evidence


def test_claims_table_and_forest_plot(tmp_path):
    rows = _vs_R_rows(lambda s, R: {"fc1": 0.01, "fc2": 0.02}.get(s, -R))
    results = claims.evaluate_claims(lambda e: rows if e == "fig3" else None)
    _, md = claims.write_claims(results, tmp_path, scale="quick")
    text = md.read_text()
    for col in ("difference", "paired 95% CI", "Welch 95% CI", "decision interval", "| n |"):
        assert col in text
    png, pdf = forest.draw_forest(results, tmp_path)
    assert png.stat().st_size > 10_000 and pdf.is_file()
    fr = forest.forest_rows(results)
    assert len(fr) == len(results) == 23
    assert [x["verdict"] for x in fr] == [r.verdict for r in results]
    # accuracy rising to the edge of the R grid: the claim's comparison is reversed
    # (edge - inner R) and drawn negated, so that positive points the claim's way
    rows = _vs_R_rows(lambda s, R: R)
    r = _claims_on(rows)["interior-maximum"]
    assert r.numbers["orientation"] == "reversed" and r.numbers["diff"] > 0
    (row,) = forest.forest_rows([r])
    assert row["diff"] == pytest.approx(-100 * r.numbers["diff"]) and row["hi"] < 0


def test_until_decided_helpers():
    assert until_decided.extend_seeds([0, 1, 2], 4) == [0, 1, 2, 3]
    assert until_decided.extend_seeds([5, 2], 4) == [5, 2, 6, 7]
    with pytest.raises(ValueError, match="n must be"):
        until_decided.extend_seeds([0], 0)
    exp = load_experiment("fig6", "quick")
    sub = until_decided.restrict(
        exp,
        [{"smoothing.layers": "conv5"}, {"smoothing.layers": "none", "optim.weight_decay": 0.0}],
        [3, 4],
    )
    assert sub is not None and sub.seeds == [3, 4] and sub.name == exp.name
    assert sub.grid == [{"smoothing.layers": [[]]}, {"smoothing.layers": [["conv5"]]}]
    assert until_decided.restrict(exp, [{"smoothing.layers": "fc9"}], [3]) is None


def test_figures_until_decided_adds_seeds_to_undecided_arms(tmp_path):
    # planted CNN runs (figure 6): 3 seeds are before the first look; one round adds
    # seed 3 to the four arms the claims read, and the exact planted effects are
    # then decided at the first look (n = 4)
    opts = make.FiguresOptions(
        scale="quick",
        runs=str(tmp_path / "runs"),
        out=str(tmp_path / "out"),
        workers=0,
        until_decided=True,
        max_seeds=8,
    )
    out = make.make_figures(["6"], opts, log=lambda s: None, runner=planted_runner)
    rounds = out["rounds"]
    assert len(rounds.rounds) == 1 and rounds.seeds["fig6"] == [0, 1, 2, 3]
    assert rounds.trained == 4 and rounds.stopped == "every claim decided"
    fig6 = {c.id: c for c in out["claims"] if c.experiment == "fig6"}
    assert fig6["head-smoothing-helps"].verdict == "holds"
    assert fig6["conv-smoothing-hurts"].verdict == "holds"
    assert fig6["mostly-early-stopping"].verdict == "negligible"  # planted: best = final
    assert all(c.numbers["look"] == 4 for c in fig6.values())
    rows = res_mod.read_results(tmp_path / "runs" / "quick" / "fig6" / "results.csv")
    assert sorted({r["seed"] for r in rows}) == [0, 1, 2, 3] and len(rows) == 16
    d = tmp_path / "out" / "quick"
    data = json.loads((d / "claims.json").read_text())
    assert data["looks"] == [4, 8] and "sequential" in data["design"]
    assert (d / "claims_forest.png").is_file()
    assert json.loads((d / "timings.json").read_text())["until_decided"]["runs_trained"] == 4
    with pytest.raises(ValueError, match="draw_only"):
        make.make_figures(["6"], make.FiguresOptions(draw_only=True, until_decided=True))
