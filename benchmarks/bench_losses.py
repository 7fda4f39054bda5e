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
  over ``functional_call`` of the suffix with stacked weights;
* ``anti``   - ``PartialLocalEntropy(antithetic=True)``: ``y/2`` pairs ``(dW, -dW)``,
  half the draws and, on the first smoothed Linear, half the perturbation GEMM;
* ``amp``    - the ``ple`` step under ``torch.autocast`` (bfloat16 on the CPU,
  float16 on CUDA): mixed precision, the reduction in float32;
* ``draw``   - not a step: the draws one ``ple`` step makes (``ple.sample``), timed
  in the same round-robin; ``draw/ple`` is the sampling share of the smoothed step.

and prints the median times and the ratios ``ple/plain``, ``ple/naive``,
``draw/ple`` and ``anti/ple``.  The variants run round-robin inside each repeat so
that a change of machine load hits all of them alike; the median over repeats is
reported.  With ``--variance-repeats N`` a second table gives the variance of the
PLA and PLEA gradients over ``N`` draws (same weights, same batch), antithetic off
and on.

Run::

    OMP_NUM_THREADS=1 python benchmarks/bench_losses.py --threads 1
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
from anisotropy.smoothing.reductions import Reduction

VARIANTS = ("plain", "ple", "naive", "off", "vmap", "anti", "amp", "draw")
#: the timed entries that are not a training step
NOT_STEPS = ("draw",)


@dataclass
class BenchConfig:
    batch: int = field(default=256, metadata={"help": "minibatch size"})
    y: int = field(default=4, metadata={"help": "perturbations per step"})
    threads: int = field(default=os.cpu_count() or 1, metadata={"help": "torch intra-op threads"})
    warmup: int = field(default=3, metadata={"help": "untimed steps per variant"})
    repeats: int = field(default=15, metadata={"help": "timed steps per variant (median kept)"})
    device: str = field(default="cpu", metadata={"help": "torch device"})
    skip: list[str] = field(
        default_factory=list,
        metadata={"help": "variants to skip (off, vmap, naive, anti, amp, draw)"},
    )
    R: float = field(default=0.01, metadata={"help": "box half side of the smoothing"})
    variance_repeats: int = field(
        default=0,
        metadata={"help": "draws per gradient-variance estimate (0: no variance table)"},
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


def _autocast_dtype(device: str) -> torch.dtype:
    return torch.float16 if device.startswith("cuda") else torch.bfloat16


def make_steps(model, layers, cfg) -> dict[str, Callable[[torch.Tensor, torch.Tensor], None]]:
    ple = PartialLocalEntropy(model, layers=layers, y=cfg.y, R=cfg.R)
    off = PartialLocalEntropy(model, layers=layers, y=cfg.y, R=cfg.R, cut="off")
    anti = PartialLocalEntropy(model, layers=layers, y=cfg.y, R=cfg.R, antithetic=True)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    g = torch.Generator(device=cfg.device).manual_seed(0)
    device_type = torch.device(cfg.device).type

    def amp(x, t):
        with torch.autocast(device_type, dtype=_autocast_dtype(cfg.device)):
            out = ple(x, t, generator=g)
        out.loss.backward()

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
        "anti": wrap(lambda x, t: anti(x, t, generator=g).loss.backward()),
        "amp": wrap(amp),
        "draw": lambda x, t: ple.sample(g),
    }


def gradient_variance(
    model: nn.Module, layers, x, t, cfg, *, reduction: Reduction, antithetic: bool
) -> float:
    """Total variance (summed over the smoothed weights' coordinates) of the gradient of
    the smoothed loss over ``cfg.variance_repeats`` draws, weights and batch fixed."""
    ple = PartialLocalEntropy(
        model, layers=layers, y=cfg.y, R=cfg.R, reduction=reduction, antithetic=antithetic
    )
    params = dict(model.named_parameters())
    g = torch.Generator(device=cfg.device).manual_seed(1)
    n = cfg.variance_repeats
    total = {name: torch.zeros_like(params[name]) for name in ple.smoothed_names}
    squares = {name: torch.zeros_like(params[name]) for name in ple.smoothed_names}
    for _ in range(n):
        model.zero_grad(set_to_none=True)
        ple(x, t, generator=g).loss.backward()
        for name in total:
            grad = params[name].grad
            assert grad is not None  # a smoothed weight always gets a gradient
            total[name] += grad
            squares[name] += grad * grad
    return sum(
        float(((squares[m] - total[m] ** 2 / n) / (n - 1)).sum()) for m in ple.smoothed_names
    )


def print_variances(x, t, cfg) -> None:
    """The gradient-variance table: PLA and PLEA, antithetic off and on."""
    print(
        f"\n# gradient variance over {cfg.variance_repeats} draws (sum over the smoothed "
        f"weights), R {cfg.R}, y {cfg.y}"
    )
    print("| model | smoothed | PLA | PLA anti | ratio | PLEA | PLEA anti | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for label, make, layers in CASES[:3]:
        torch.manual_seed(0)
        model = make().to(cfg.device)
        row = [label, "+".join(layers)]
        reductions: tuple[Reduction, ...] = ("pla", "plea")
        for reduction in reductions:
            off, on = (
                gradient_variance(model, layers, x, t, cfg, reduction=reduction, antithetic=anti)
                for anti in (False, True)
            )
            row += [f"{off:.3g}", f"{on:.3g}", f"{on / off:.3f}"]
        print("| " + " | ".join(row) + " |", flush=True)


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
    ratios = [("ple", "plain"), ("ple", "naive"), ("draw", "ple"), ("anti", "ple")]
    head = ["model", "smoothed"] + [f"{v} ms" for v in cols] + [f"{a}/{b}" for a, b in ratios]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(cfg.batch, 1, 28, 28, generator=gen).to(cfg.device)
    t = torch.randint(0, 10, (cfg.batch,), generator=gen).to(cfg.device)
    for label, make, layers in CASES:
        torch.manual_seed(0)
        model = make().to(cfg.device)
        med = time_steps(make_steps(model, layers, cfg), x, t, cfg)
        row = [label, "+".join(layers)] + [f"{1e3 * med[v]:.1f}" for v in cols]
        row += [f"{med[a] / med[b]:.2f}" if a in med and b in med else "-" for a, b in ratios]
        print("| " + " | ".join(row) + " |", flush=True)
    print(f"# load avg at end {os.getloadavg()[0]:.2f}")
    if cfg.variance_repeats > 0:
        print_variances(x, t, cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
