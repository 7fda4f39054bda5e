"""Benchmark: the cost of logging the layer signals s_I (eq. 2) in a training epoch.

Times one plain training step (no smoothing) of the 2-hidden-layer 784-unit MLP of
figure 3 at batch 256, measured per step inside whole epochs:

* ``hand``      - a hand-written loop: minibatch, forward, cross-entropy,
  ``zero_grad``, ``backward``, ``optimizer.step()``;
* ``hand+welford`` - the same loop plus a per-layer Welford update of s_I and of the
  gradient vector (the accumulator this package used before; kept here as the
  reference point);
* ``hand+signals`` - the same loop plus :class:`SignalAccumulator.update` (per
  layer, in cache-sized blocks: ``|g|`` and its sum, the deviation from the running
  mean of the group of minibatches and its squared norm, the group sum);
* ``trainer``   - :func:`anisotropy.training.trainer.train` with signals on (everything
  the trainer does per step: loss sums, accuracy, NaN checks, the signals);
* ``trainer-nosignals`` - the trainer with ``logging.signals = false``.

Step times come from the intervals between consecutive steps inside an epoch
(the trainer's through an ``on_step`` callback), so the end-of-epoch evaluation is
not counted.  The variants run round-robin, one epoch each per repeat, so a change
of machine load hits all of them alike; medians over repeats and their ratios to
``hand`` are printed, for wall time and for the CPU time of the (single) training
thread, which does not count the time other processes take the core from it and
so varies less on a shared machine (with ``--threads 1``, where all the work runs on
that thread).  Target: ``trainer`` within 1.15x ``hand``.

Run::

    OMP_NUM_THREADS=1 python benchmarks/bench_signals.py --threads 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from anisotropy.cli.args import add_dataclass_arguments, from_namespace
from anisotropy.models import mlp
from anisotropy.training.config import config_from_dict
from anisotropy.training.hooks import Callback
from anisotropy.training.signals import SignalAccumulator, weight_layers
from anisotropy.training.trainer import train


@dataclass
class BenchConfig:
    steps: int = field(default=40, metadata={"help": "steps per epoch (batch 256 each)"})
    repeats: int = field(default=5, metadata={"help": "epochs per variant (median kept)"})
    threads: int = field(default=1, metadata={"help": "torch intra-op threads"})


class _Welford:
    """The former accumulator: Welford mean and M2 of s_I and of the gradient."""

    def __init__(self, layers: dict[str, torch.nn.Parameter]) -> None:
        self.layers = layers
        self.n = 0
        self.mean: dict[str, list[torch.Tensor]] = {}
        self.m2: dict[str, list[torch.Tensor]] = {}

    def update(self) -> None:
        self.n += 1
        for name, p in self.layers.items():
            if p.grad is None:
                raise ValueError(f"layer {name!r} has no gradient: call backward() first")
            g = p.grad.detach().to(torch.float64)
            for i, x in enumerate((g.abs().mean(), g)):
                if self.n == 1:
                    self.mean.setdefault(name, [None, None])[i] = x.clone()  # type: ignore[list-item]
                    self.m2.setdefault(name, [None, None])[i] = torch.zeros_like(x)  # type: ignore[list-item]
                    continue
                mean, m2 = self.mean[name][i], self.m2[name][i]
                delta = x - mean
                mean += delta / self.n
                m2 += delta * (x - mean)


def _stamp() -> tuple[float, float]:
    """(wall time, CPU time of this thread) in seconds."""
    return time.perf_counter(), time.thread_time()


def _hand_epoch(model, opt, x, t, batch, accumulator) -> list[tuple[float, float]]:
    stamps = []
    perm = torch.randperm(len(x))
    for i in range(0, len(x), batch):
        idx = perm[i : i + batch]
        loss = F.cross_entropy(model(x[idx]), t[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if accumulator is not None:
            accumulator.update()
        opt.step()
        stamps.append(_stamp())
    return stamps


class _Stamps(Callback):
    def __init__(self) -> None:
        self.stamps: list[tuple[float, float]] = []

    def on_step(self, state) -> None:
        self.stamps.append(_stamp())


def _per_step(stamps: list[tuple[float, float]]) -> tuple[float, float]:
    """Mean (wall, CPU) seconds per step between the first and the last stamp."""
    (w0, c0), (w1, c1) = stamps[0], stamps[-1]
    return (w1 - w0) / (len(stamps) - 1), (c1 - c0) / (len(stamps) - 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_dataclass_arguments(p, BenchConfig)
    cfg: BenchConfig = from_namespace(BenchConfig, p.parse_args(argv))
    torch.set_num_threads(cfg.threads)
    batch = 256
    n = cfg.steps * batch
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 784, generator=g)
    t = torch.randint(0, 10, (n,), generator=g)
    times: dict[str, list[tuple[float, float]]] = {
        k: [] for k in ("hand", "hand+welford", "hand+signals", "trainer", "trainer-nosignals")
    }
    train_cfg = {  # synthetic data of the same shape: 80 % of n train, as many steps
        "seed": 0,
        "epochs": 1,
        "threads": cfg.threads,
        "model": {"name": "mlp", "depth": 2, "width": 784},
        "data": {
            "name": "synthetic",
            "synthetic_features": 784,
            "synthetic_classes": 10,
            "synthetic_size": int(n / 0.8),
        },
        "optim": {"lr": 1e-3, "batch_size": batch},
        "logging": {"checkpoint_every": 0},
    }
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(cfg.repeats + 1):  # repeat 0 warms up and is dropped
            for name in times:
                torch.manual_seed(r)
                if name.startswith("hand"):
                    model = mlp(depth=2, width=784)
                    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
                    acc = {
                        "hand": None,
                        "hand+welford": _Welford(weight_layers(model)),
                        "hand+signals": SignalAccumulator(weight_layers(model)),
                    }[name]
                    stamps = _hand_epoch(model, opt, x, t, batch, acc)
                else:
                    d = dict(
                        train_cfg, logging={"checkpoint_every": 0, "signals": name == "trainer"}
                    )
                    cb = _Stamps()
                    train(config_from_dict(d), f"{tmp}/{name}-{r}", progress=False, callbacks=[cb])
                    stamps = cb.stamps
                if r:
                    times[name].append(_per_step(stamps))
    med = {k: [statistics.median(col) for col in zip(*ts, strict=True)] for k, ts in times.items()}
    (wall0, cpu0), load_end = med["hand"], os.getloadavg()
    print(
        f"plain MLP 784-784-784-10 step, batch {batch}, {cfg.threads} thread(s), "
        f"{cfg.steps} steps/epoch, median of {cfg.repeats} epochs "
        f"(load average {load[0]:.2f} at start, {load_end[0]:.2f} at end)"
    )
    print(f"{'variant':<20} {'wall ms/step':>12} {'/hand':>7} {'cpu ms/step':>12} {'/hand':>7}")
    for name, (wall, cpu) in med.items():
        print(
            f"{name:<20} {1e3 * wall:12.2f} {wall / wall0:7.3f} {1e3 * cpu:12.2f} {cpu / cpu0:7.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
