"""Benchmark: one training step with a partial local entropy loss vs a plain step.

For each (model, smoothed layers) the script times one SGD step
(forward + backward + ``optimizer.step()``) of

* ``plain``  - plain cross-entropy;
* ``ple``    - :class:`anisotropy.smoothing.losses.PartialLocalEntropy` (cut + batched suffix);
* ``naive``  - y+1 full forward/backward passes with the weights shifted in place
  (the textbook loop; gradients accumulate, scaled by 1/(y+1));
* ``off``    - ``PartialLocalEntropy(cut="off")``: one ``functional_call`` of the
  whole model per configuration (the generic fallback);
* ``vmap``   - the alternative batching: prefix once, then ``torch.func.vmap``
  over ``functional_call`` of the suffix with stacked weights.

and prints the median times and the ratios ``ple/plain`` and ``ple/naive``.  The
variants run round-robin inside each repeat so that a change of machine load
hits all of them alike; the median over repeats is reported.

Run::

    OMP_NUM_THREADS=2 python benchmarks/bench_losses.py --threads 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

from anisotropy.cli.args import add_dataclass_arguments, from_namespace
from anisotropy.models import cnn_table25, mlp
from anisotropy.smoothing.losses import PartialLocalEntropy

VARIANTS = ("plain", "ple", "naive", "off", "vmap")


@dataclass
class BenchConfig:
    batch: int = field(default=256, metadata={"help": "minibatch size"})
    y: int = field(default=4, metadata={"help": "perturbations per step"})
    threads: int = field(default=os.cpu_count() or 1, metadata={"help": "torch intra-op threads"})
    warmup: int = field(default=3, metadata={"help": "untimed steps per variant"})
    repeats: int = field(default=15, metadata={"help": "timed steps per variant (median kept)"})
    device: str = field(default="cpu", metadata={"help": "torch device"})
    skip: list[str] = field(
        default_factory=list, metadata={"help": "variants to skip (off, vmap, naive)"}
    )
    clock: Literal["wall", "process"] = field(
        default="wall",
        metadata={
            "help": "wall time, or CPU time of the process (less "
            "sensitive to other jobs on a loaded machine)"
        },
    )


def _naive_step(model, ple, x, t, g):
    deltas = ple.sample(g)
    params = dict(model.named_parameters())
    s = ple.y + 1
    for a in range(-1, ple.y):
        with torch.no_grad():
            if a >= 0:
                for n, d in deltas.items():
                    params[n].add_(d[a])
        (F.cross_entropy(model(x), t) / s).backward()
        with torch.no_grad():
            if a >= 0:
                for n, d in deltas.items():
                    params[n].sub_(d[a])


def _vmap_loss(model, ple, x, t, g):
    deltas = ple.sample(g)
    kids = list(model.named_children())
    first = min(i for i, (c, _) in enumerate(kids) if any(n.startswith(c + ".") for n in deltas))
    h = x
    for _, m in kids[:first]:
        h = m(h)
    suffix = nn.Sequential(OrderedDict(kids[first:]))
    shared, stacked = {}, {}
    for c, m in kids[first:]:
        for n, p in m.named_parameters():
            full = f"{c}.{n}"
            if full in deltas:
                stacked[full] = torch.cat([p.unsqueeze(0), p.unsqueeze(0) + deltas[full]])
            else:
                shared[full] = p

    def run(sp, hh):
        return functional_call(suffix, {**shared, **sp}, (hh,))

    outs = vmap(run, in_dims=(0, None))(stacked, h)
    return torch.stack([F.cross_entropy(o, t) for o in outs.unbind(0)]).mean()


def make_steps(model, layers, cfg) -> dict[str, Callable[[torch.Tensor, torch.Tensor], None]]:
    ple = PartialLocalEntropy(model, layers=layers, y=cfg.y, R=0.01)
    off = PartialLocalEntropy(model, layers=layers, y=cfg.y, R=0.01, cut="off")
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    g = torch.Generator(device=cfg.device).manual_seed(0)

    def wrap(fn):
        def step(x, t):
            opt.zero_grad(set_to_none=True)
            fn(x, t)
            opt.step()

        return step

    return {
        "plain": wrap(lambda x, t: F.cross_entropy(model(x), t).backward()),
        "ple": wrap(lambda x, t: ple(x, t, generator=g).loss.backward()),
        "naive": wrap(lambda x, t: _naive_step(model, ple, x, t, g)),
        "off": wrap(lambda x, t: off(x, t, generator=g).loss.backward()),
        "vmap": wrap(lambda x, t: _vmap_loss(model, ple, x, t, g).backward()),
    }


def time_steps(steps, x, t, cfg) -> dict[str, float]:
    sync = torch.cuda.synchronize if cfg.device.startswith("cuda") else (lambda: None)
    clock = time.perf_counter if cfg.clock == "wall" else time.process_time
    names = [v for v in VARIANTS if v not in cfg.skip]
    for _ in range(cfg.warmup):
        for v in names:
            steps[v](x, t)
    times: dict[str, list[float]] = {v: [] for v in names}
    for _ in range(cfg.repeats):
        for v in names:  # round-robin: load changes hit every variant alike
            sync()
            t0 = clock()
            steps[v](x, t)
            sync()
            times[v].append(clock() - t0)
    return {v: statistics.median(ts) for v, ts in times.items()}


CASES = [
    ("MLP 784-784-784-10", lambda: mlp(depth=2), ("fc1",)),
    ("MLP 784-784-784-10", lambda: mlp(depth=2), ("fc2",)),
    ("MLP 784-784-784-10", lambda: mlp(depth=2), ("fc1", "fc2")),
    ("CNN table 25 @28x28", lambda: cnn_table25(in_channels=1, input_size=28, padding=1), ("fc1",)),
    ("CNN table 25 @28x28", lambda: cnn_table25(in_channels=1, input_size=28, padding=1), ("fc2",)),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_dataclass_arguments(parser, BenchConfig)
    cfg = from_namespace(BenchConfig, parser.parse_args(argv))
    torch.set_num_threads(cfg.threads)
    load0 = os.getloadavg()
    print(
        f"# torch {torch.__version__}, device {cfg.device}, threads {torch.get_num_threads()}, "
        f"cpus {os.cpu_count()}, batch {cfg.batch}, y {cfg.y}, float32, "
        f"{cfg.clock} clock, median of {cfg.repeats} (warm-up {cfg.warmup}); "
        f"load avg at start {load0[0]:.2f}"
    )
    cols = [v for v in VARIANTS if v not in cfg.skip]
    head = ["model", "smoothed"] + [f"{v} ms" for v in cols] + ["ple/plain", "ple/naive"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(cfg.batch, 1, 28, 28, generator=gen).to(cfg.device)
    t = torch.randint(0, 10, (cfg.batch,), generator=gen).to(cfg.device)
    for label, make, layers in CASES:
        torch.manual_seed(0)
        model = make().to(cfg.device)
        med = time_steps(make_steps(model, layers, cfg), x, t, cfg)
        naive = f"{med['ple'] / med['naive']:.2f}" if "naive" in med else "-"
        row = [label, "+".join(layers)] + [f"{1e3 * med[v]:.1f}" for v in cols]
        row += [f"{med['ple'] / med['plain']:.2f}", naive]
        print("| " + " | ".join(row) + " |", flush=True)
    print(f"# load avg at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
