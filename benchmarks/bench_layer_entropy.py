"""Benchmark: Monte Carlo free entropy of a real 784 x 784 layer, streamed vs reference path.

* ``reference`` - :func:`analysis.free_entropy.local_free_entropy` (``method="mc"``)
  on :func:`analysis.free_entropy.layer_loss_function`: float64 weight vectors of
  length ``N`` per sample, the whole network under ``torch.vmap`` per sample;
* ``streamed`` - :func:`analysis.free_entropy.layer_entropy.layer_free_entropy`:
  the training path (prefix once, one batched product, the training sampler,
  float32 noise added to the weights).

Both run on the same model (the 2-layer 784-unit MLP, float32, layer ``fc2``) and
batch, alternating inside each repeat; the script prints samples per second, the
ratio, and the peak resident memory of a fresh process running the streamed
estimator at growing ``y`` (it must not grow with ``y``).

Run::

    OMP_NUM_THREADS=1 python benchmarks/bench_layer_entropy.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

from analysis.free_entropy import layer_loss_function, layer_weight_vector, local_free_entropy
from analysis.free_entropy.layer_entropy import layer_free_entropy
from anisotropy.kernels import BoxKernel
from anisotropy.models import mlp

LAYER = "fc2"
R = 0.01


def _setup(batch: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = mlp(depth=2, width=784).eval()
    g = torch.Generator().manual_seed(1)
    return model, torch.randn(batch, 784, generator=g), torch.randint(0, 10, (batch,), generator=g)


def _peak_rss_mb(y: int, batch: int, chunk: int) -> float:
    code = (
        "import resource, sys, torch\n"
        "sys.argv = ['x']\n"
        "from benchmarks.bench_layer_entropy import _setup, LAYER, R\n"
        "from analysis.free_entropy.layer_entropy import layer_free_entropy\n"
        "from anisotropy.kernels import BoxKernel\n"
        f"m, x, t = _setup({batch})\n"
        f"layer_free_entropy(m, LAYER, x, t, kernel=BoxKernel(R), y={y}, chunk={chunk},"
        " generator=torch.Generator().manual_seed(0))\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=256, help="fixed batch of inputs")
    ap.add_argument("--y", type=int, default=256, help="samples per timed estimate")
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--memory-y", type=int, nargs="*", default=[256, 2048], help="y for peak RSS")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, x, t = _setup(args.batch)
    w = layer_weight_vector(model, LAYER)
    ref_loss = layer_loss_function(model, LAYER, x, t, batch_size=args.chunk)
    times: dict[str, list[float]] = {"reference": [], "streamed": []}
    for r in range(args.repeats):
        t0 = time.perf_counter()
        local_free_entropy(ref_loss, w, kernel=BoxKernel(R), y=args.y, seed=r)
        times["reference"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        layer_free_entropy(
            model,
            LAYER,
            x,
            t,
            kernel=BoxKernel(R),
            y=args.y,
            chunk=args.chunk,
            generator=torch.Generator().manual_seed(r),
        )
        times["streamed"].append(time.perf_counter() - t0)
    rate = {k: args.y / statistics.median(v) for k, v in times.items()}
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[:3]
    print(
        f"layer {LAYER} (784 x 784), batch {args.batch}, y {args.y}, threads {args.threads}, "
        f"load {' '.join(load)}"
    )
    for k, v in rate.items():
        print(f"  {k:<10} {v:8.1f} samples/s")
    print(f"  streamed / reference: {rate['streamed'] / rate['reference']:.2f}x")
    peaks = {y: _peak_rss_mb(y, args.batch, args.chunk) for y in args.memory_y}
    for y, mb in peaks.items():
        print(f"  peak RSS, streamed, y = {y}: {mb:.0f} MB")
    print(json.dumps({"rate": rate, "peak_rss_mb": peaks, "load": load}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
