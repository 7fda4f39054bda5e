"""Benchmark: where the end-of-run flatness measurement spends its time.

:func:`anisotropy.training.flatness.measure_flatness` on the 784-784-784-10 MLP
(:func:`anisotropy.models.mlp`, depth 2, width 784, float32, ``eval()``) and a fixed batch
of random inputs, with the trainer's defaults (sigmas 0.1, 0.2, 0.4; R = 0.01; 256
draws; chunks of ``CONFIGS_PER_PASS``).  The script prints, per scope (each layer, then
the whole model) and per measure (local energy, free entropy), the seconds spent and
their share of the total wall time.  Never run by the tests.

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
    model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, samples: int
) -> tuple[dict, float]:
    """(seconds per (scope, measure), total seconds) of one measurement."""
    seconds: dict = defaultdict(float)
    originals = (flatness.local_energy_curve, flatness.mc_local_free_entropy)
    flatness.local_energy_curve = _timed(
        originals[0], "local_energy", lambda *a, **k: k["layers"], seconds
    )
    flatness.mc_local_free_entropy = _timed(
        originals[1], "free_entropy", lambda *a, **k: a[1], seconds
    )
    try:
        start = time.perf_counter()
        flatness.measure_flatness(
            model,
            x,
            t,
            sigmas=SIGMAS,
            radii=RADII,
            samples=samples,
            generator=torch.Generator().manual_seed(2),
        )
        total = time.perf_counter() - start
    finally:
        flatness.local_energy_curve, flatness.mc_local_free_entropy = originals
    return seconds, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--samples", type=int, default=256, help="noise draws (default 256)")
    parser.add_argument("--n-train", type=int, default=1024, help="inputs (default 1024)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = mlp(depth=2, width=784).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.n_train, 784, generator=g)
    t = torch.randint(0, 10, (args.n_train,), generator=g)
    seconds, total = _measure(model, x, t, args.samples)
    print(
        f"measure_flatness: mlp 784-784-784-10, {args.n_train} inputs, {args.samples} draws, "
        f"{args.threads} thread(s); total {total:.2f} s"
    )
    print(f"{'scope':<6} {'measure':<13} {'seconds':>9} {'share':>7}")
    for (scope, what), s in sorted(seconds.items(), key=lambda kv: -kv[1]):
        print(f"{scope:<6} {what:<13} {s:9.2f} {s / total:7.1%}")


if __name__ == "__main__":
    main()
