"""Wall time of each experiment's runs in a run store, split by the device that trained them.

    python scripts/wall_times.py [--runs DIR] [--scale medium] [EXPERIMENT ...]

Reads ``DIR/<scale>/<experiment>/results.csv`` (each complete run's ``wall_time``) and
the ``device`` of each run's configuration in its ``summary.json``; prints a
markdown table (runs, CPU / GPU counts, sums of run wall times).  Runs shared by several
experiments count in each.  Default experiments: every results table under the scale.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from experiments.results import read_results, read_summary


def wall_times(runs: Path, scale: str, experiments: list[str]) -> list[dict[str, object]]:
    """One row per experiment: ``runs`` (complete), ``cpu`` / ``gpu`` counts and wall sums (s)."""
    rows = []
    for exp in experiments:
        table = runs / scale / exp / "results.csv"
        if not table.is_file():
            raise SystemExit(f"no results table {table}")
        count = {"cpu": 0, "gpu": 0}
        wall = {"cpu": 0.0, "gpu": 0.0}
        for r in read_results(table):
            if r["status"] != "complete":
                continue
            summary = read_summary(table.parent / r["run_dir"]) or {}
            device = (summary.get("config") or {}).get("device", "cpu")
            kind = "cpu" if str(device).startswith("cpu") else "gpu"
            count[kind] += 1
            wall[kind] += float(r["wall_time"])
        rows.append(
            {
                "experiment": exp,
                "runs": count["cpu"] + count["gpu"],
                **{f"{k}_runs": count[k] for k in count},
                **{f"{k}_wall_s": round(wall[k]) for k in wall},
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="docs/results", type=Path, help="run store root")
    ap.add_argument("--scale", default="medium")
    ap.add_argument("experiments", nargs="*")
    a = ap.parse_args()
    exps = a.experiments or sorted(p.parent.name for p in (a.runs / a.scale).glob("*/results.csv"))
    print("| experiment | complete runs | on CPU / GPU | sum of run wall times, CPU / GPU (s) |")
    print("|---|---|---|---|")
    for r in wall_times(a.runs, a.scale, exps):
        print(
            f"| {r['experiment']} | {r['runs']} | {r['cpu_runs']} / {r['gpu_runs']} | "
            f"{r['cpu_wall_s']} / {r['gpu_wall_s']} |"
        )


if __name__ == "__main__":
    main()
