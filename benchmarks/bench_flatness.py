"""Benchmark: the end-of-run flatness measurement, prefix once per layer vs once per chunk.

:func:`anisotropy.training.flatness.measure_flatness` on the 784-784-784-10 MLP
(:func:`anisotropy.models.mlp`, depth 2, width 784, float32, ``eval()``) and a fixed batch
of random inputs, with the trainer's defaults (sigmas 0.1, 0.2, 0.4; R = 0.01; 256
draws; chunks of ``CONFIGS_PER_PASS``), run with ``prefix_once=False`` (the children
before the first measured one evaluated for every chunk) and ``prefix_once=True``
(once per layer), alternating inside each repeat.  The script prints, per scope (each
layer, then the whole model) and per measure (local energy, free entropy; "prefix" is
the once-per-layer evaluation of the new path), the seconds of each path and their
ratio, the ratio of the total wall times, and whether the two results are equal (they
must be, bit for bit).  Never run by the tests.

Run::

    OMP_NUM_THREADS=1 python benchmarks/bench_flatness.py --threads 1
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import torch

import anisotropy.training.flatness as flatness
from anisotropy.models import mlp

SIGMAS = (0.1, 0.2, 0.4)
RADII = (0.01,)


def _scope(names: Sequence[str] | str) -> str:
    names = [names] if isinstance(names, str) else list(names)
    return "model" if len(names) > 1 else names[0].rsplit(".", 1)[0]


def _timed(
    fn: Callable[..., Any], what: str, names_of: Callable[..., Any], seconds: dict
) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        seconds[(_scope(names_of(*args, **kwargs)), what)] += time.perf_counter() - start
        return out

    return wrapper


def _measure(
    model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, samples: int, prefix_once: bool
) -> tuple[dict, dict, float]:
    """(result, seconds per (scope, measure), total seconds) of one measurement."""
    seconds: dict = defaultdict(float)
    originals = (flatness.local_energy_curve, flatness.mc_local_free_entropy, flatness._noisy_part)
    flatness.local_energy_curve = _timed(
        originals[0], "local_energy", lambda *a, **k: k["layers"], seconds
    )
    flatness.mc_local_free_entropy = _timed(
        originals[1], "free_entropy", lambda *a, **k: a[1], seconds
    )
    flatness._noisy_part = _timed(originals[2], "prefix", lambda *a, **k: a[1], seconds)
    try:
        start = time.perf_counter()
        out = flatness.measure_flatness(
            model,
            x,
            t,
            sigmas=SIGMAS,
            radii=RADII,
            samples=samples,
            generator=torch.Generator().manual_seed(2),
            prefix_once=prefix_once,
        )
        total = time.perf_counter() - start
    finally:
        (
            flatness.local_energy_curve,
            flatness.mc_local_free_entropy,
            flatness._noisy_part,
        ) = originals
    return out, seconds, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--samples", type=int, default=256, help="noise draws (default 256)")
    parser.add_argument("--n-train", type=int, default=1024, help="inputs (default 1024)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = mlp(depth=2, width=784).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.n_train, 784, generator=g)
    t = torch.randint(0, 10, (args.n_train,), generator=g)
    old: dict = defaultdict(float)
    new: dict = defaultdict(float)
    totals = {False: 0.0, True: 0.0}
    results = {}
    for rep in range(args.repeats):
        for prefix_once in (False, True) if rep % 2 == 0 else (True, False):
            res, seconds, total = _measure(model, x, t, args.samples, prefix_once)
            results[prefix_once] = res
            totals[prefix_once] += total
            for key, s in seconds.items():
                (new if prefix_once else old)[key] += s
    print(
        f"measure_flatness: mlp 784-784-784-10, {args.n_train} inputs, {args.samples} draws, "
        f"{args.threads} thread(s), {args.repeats} repeat(s); seconds summed over repeats"
    )
    print(f"{'scope':<6} {'measure':<13} {'per chunk':>10} {'once':>9} {'ratio':>7}")
    scopes = [*results[True]["layers"], "model"]
    for scope in scopes:
        row_old = row_new = 0.0
        for what in ("prefix", "local_energy", "free_entropy"):
            a, b = old.get((scope, what), 0.0), new.get((scope, what), 0.0)
            row_old, row_new = row_old + a, row_new + b
            ratio = f"{a / b:7.2f}" if b > 0 and a > 0 else "      -"
            print(f"{scope:<6} {what:<13} {a:10.2f} {b:9.2f} {ratio}")
        print(f"{scope:<6} {'all':<13} {row_old:10.2f} {row_new:9.2f} {row_old / row_new:7.2f}")
    print(
        f"total  {'wall':<13} {totals[False]:10.2f} {totals[True]:9.2f} "
        f"{totals[False] / totals[True]:7.2f}"
    )
    print(f"results equal bit for bit: {results[False] == results[True]}")


if __name__ == "__main__":
    main()
