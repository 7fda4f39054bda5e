"""Benchmark of the cooling fits: 4 layers x 10,000 epochs, 200 bootstrap resamples.

Run:  OMP_NUM_THREADS=1 python benchmarks/bench_cooling.py \\
          [--epochs 10000] [--boot 200] [--png PATH]

Prints wall times (best of ``--repeat``) of

* the joint stretched-exponential fit with the sandwich intervals,
* the same fit with ``n_boot`` block-bootstrap resamples (the target: < 5 s on 2 cores),
* every law with bootstrap intervals, and the whole ``analyse`` with default options,

and writes the benchmark figure (figure-1 style) of the analysed run.  Not a test: timings
depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.cooling import CoolingConfig, analyse, build_panel, fit_law, plot_cooling
from analysis.cooling.laws import LAW_NAMES
from analysis.cooling.synthetic import SyntheticSpec, generate


def best_of(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10_000)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--png", default="benchmarks/bench_cooling.png")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    spec = SyntheticSpec(
        n_epochs=a.epochs,
        onset=60.0,
        params={"tau": 300.0, "beta": 0.5},
        noise=0.1,
        rho=0.9,
        layer_correlation=0.5,
    )
    data, truth = generate(spec, a.seed)
    print(
        f"synthetic run: {data.n_layers} layers x {a.epochs} epochs, stretched exponential "
        f"tau = 300, beta = 0.5, 10% AR(1) noise rho = 0.9; OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, {os.cpu_count()} CPUs visible"
    )
    panel = build_panel(data, "signal", truth["onset"])
    print(f"late window: {panel.y.size} points")
    t, f = best_of(lambda: fit_law(panel, "stretched_exponential"), a.repeat)
    print(
        f"joint fit, sandwich intervals:              {t:7.3f} s  beta = {f.params['beta']:.4f} "
        f"[{f.ci['beta'][0]:.4f}, {f.ci['beta'][1]:.4f}]"
    )
    t, f = best_of(
        lambda: fit_law(
            panel, "stretched_exponential", uncertainty="bootstrap", n_boot=a.boot, rng=0
        ),
        a.repeat,
    )
    print(
        f"joint fit, {a.boot} bootstrap resamples:       {t:7.3f} s  beta = {f.params['beta']:.4f} "
        f"[{f.ci['beta'][0]:.4f}, {f.ci['beta'][1]:.4f}]  (target < 5 s)"
    )
    for law in LAW_NAMES:
        t, _ = best_of(
            lambda law=law: fit_law(panel, law, uncertainty="bootstrap", n_boot=a.boot, rng=0), 1
        )
        print(f"  {law:<28} bootstrap fit {t:7.3f} s")
    t, res = best_of(lambda: analyse(data, CoolingConfig()), 1)
    print(
        f"whole analysis (defaults: sandwich, 4 laws x 2 channels, per-layer fits, onset "
        f"bootstrap {CoolingConfig().n_boot}): {t:.2f} s"
    )
    print("  " + ", ".join(f"{k} {v:.2f} s" for k, v in res.timings.items()))
    plot_cooling(
        res,
        data,
        path=a.png,
        title=f"benchmark run ({data.n_layers} x {a.epochs} epochs): {res.selected}",
    )
    print(f"figure: {a.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
