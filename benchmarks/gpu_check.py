"""The prepared GPU check: correctness, step times and the paper-scale projection.

One call on a machine with CUDA (about 3-6 minutes on one modern GPU):

1. **Correctness** - a small MLP in float64, the same perturbations on both devices
   (they are drawn on the CPU from the run's ``torch.Generator``): PLA and PLEA
   losses and gradients on the CUDA device against the CPU path, for fc1, fc2 and
   both layers.  Fails (exit 1) when the relative difference exceeds
   :data:`FLOAT64_RTOL`.
2. **Step times** - plain and smoothed (PLA, y = 4) SGD steps of the benchmark
   models (the 2-layer 784-unit MLP, batch 256; the table-25 CNN on 28x28 grey
   images, batch 256), median over repeats, with the ratio smoothed / plain.
3. **Paper-scale projection** - the paper-scale Figure 3 configuration (full
   Fashion-MNIST, 120 epochs, batch 256, y = 4) trained for ``--epochs`` epochs
   for each kind of point (no smoothing, one layer, two layers); the measured
   epoch times times the sweep's point counts give the projected time of the whole
   sweep on one GPU with one process (and with ``--workers`` processes sharing it,
   assuming they share it perfectly, a lower bound).  Without the Fashion-MNIST
   files the projection trains on synthetic data of the same shape (784 inputs,
   10 classes, 60,000 training images), which costs the same per step.

Run::

    python benchmarks/gpu_check.py --device cuda --out gpu_check

On a CPU-only machine ``--device cpu --quick`` runs the same code on small sizes
(the test suite does this), so the script is known to work before a GPU is lent.
Results: ``<out>/gpu_check.json`` and the printed report.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from anisotropy.io import write_json_atomic
from anisotropy.models import cnn_table25, mlp
from anisotropy.smoothing.losses import PartialLocalEntropy

#: float64 agreement of the CUDA and CPU paths: the same arithmetic in a different
#: order (cuBLAS vs MKL/OpenBLAS reductions) differs by a few ulps per operation;
#: 1e-10 leaves six orders of magnitude of room above 1e-16 and still catches any
#: real difference (a wrong perturbation changes the loss at 1e-4 or more)
FLOAT64_RTOL = 1e-10
#: wall-time budget the script aims at (the issue: within 8 minutes on one GPU)
BUDGET_S = 8 * 60


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def correctness(device: torch.device, *, width: int = 64, batch: int = 32) -> list[dict[str, Any]]:
    """Loss and gradients of PLA / PLEA on ``device`` vs the CPU, in float64."""
    rows = []
    for layers in (["fc1"], ["fc2"], ["fc1", "fc2"]):
        for reduction in ("pla", "plea"):
            torch.manual_seed(0)  # only the model init; the draws use the generator below
            ref = mlp(depth=2, width=width, in_features=20, classes=5).double()
            dev = mlp(depth=2, width=width, in_features=20, classes=5).double()
            dev.load_state_dict(ref.state_dict())
            dev.to(device)
            g = torch.Generator().manual_seed(1)
            x = torch.randn(batch, 20, generator=g, dtype=torch.float64)
            t = torch.randint(0, 5, (batch,), generator=g)
            results = []
            for model, xx, tt in ((ref, x, t), (dev, x.to(device), t.to(device))):
                ple = PartialLocalEntropy(model, layers=layers, reduction=reduction, R=0.05, y=4)
                model.zero_grad()
                out = ple(xx, tt, generator=torch.Generator().manual_seed(7))
                out.loss.backward()
                grads = {
                    n: p.grad.detach().cpu()
                    for n, p in model.named_parameters()
                    if p.grad is not None
                }
                results.append((out.loss.detach().cpu(), grads))
            (l_ref, g_ref), (l_dev, g_dev) = results
            err = abs(float(l_dev - l_ref)) / max(abs(float(l_ref)), 1e-300)
            for n in g_ref:
                scale = float(g_ref[n].abs().max()) or 1.0
                err = max(err, float((g_dev[n] - g_ref[n]).abs().max()) / scale)
            rows.append({"layers": "+".join(layers), "reduction": reduction, "max_rel_diff": err})
    return rows


def _median_time(step: Callable[[], None], device: torch.device, repeats: int) -> float:
    for _ in range(3):  # warm-up: kernels, allocator, cuDNN autotuning
        step()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _time_pair(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    ple: PartialLocalEntropy,
    x: torch.Tensor,
    t: torch.Tensor,
    gen: torch.Generator,
    device: torch.device,
    repeats: int,
) -> tuple[float, float]:
    """Median seconds of one plain and one smoothed SGD step."""

    def plain() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), t).backward()
        opt.step()

    def smoothed() -> None:
        opt.zero_grad(set_to_none=True)
        ple(x, t, generator=gen).loss.backward()
        opt.step()

    return _median_time(plain, device, repeats), _median_time(smoothed, device, repeats)


def step_times(device: torch.device, *, quick: bool, repeats: int) -> list[dict[str, Any]]:
    """Median seconds of a plain and a smoothed SGD step for the benchmark models."""
    batch = 32 if quick else 256
    width = 64 if quick else 784
    cases: list[tuple[str, Callable[[], nn.Module], tuple[int, ...], list[str]]] = [
        ("mlp2", lambda: mlp(depth=2, width=width), (784,), ["fc2"]),
        ("mlp2", lambda: mlp(depth=2, width=width), (784,), ["fc1", "fc2"]),
        (
            "cnn_table25",
            lambda: cnn_table25(in_channels=1, input_size=28, padding=1),
            (1, 28, 28),
            ["fc1"],
        ),
    ]
    rows = []
    for name, make, shape, layers in cases:
        torch.manual_seed(0)
        model = make().to(device)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        x = torch.randn(batch, *shape, device=device)
        t = torch.randint(0, 10, (batch,), device=device)
        ple = PartialLocalEntropy(model, layers=layers, R=0.01, y=4)
        gen = torch.Generator().manual_seed(0)
        tp, ts = _time_pair(model, opt, ple, x, t, gen, device, repeats)
        rows.append(
            {
                "model": name,
                "layers": "+".join(layers),
                "batch": batch,
                "plain_ms": 1e3 * tp,
                "smoothed_ms": 1e3 * ts,
                "ratio": ts / tp,
            }
        )
    return rows


def projection(device: torch.device, *, quick: bool, epochs: int, workers: int) -> dict[str, Any]:
    """Train each kind of paper-scale Figure 3 point briefly; project the sweep's time."""
    from anisotropy.data.datasets import FASHION_MNIST_DIR
    from anisotropy.training.config import config_from_dict
    from anisotropy.training.trainer import train
    from experiments.definitions import load_experiment

    exp = load_experiment("fig3", scale="paper")
    points = exp.points()
    have_data = Path(FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz").exists()
    kinds: dict[int, list[Any]] = {}
    for p in points:
        kinds.setdefault(len(p.config["smoothing"]["layers"]), []).append(p)
    per_kind = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n_layers, pts in sorted(kinds.items()):
            cfg = json.loads(json.dumps(pts[0].config))
            cfg["epochs"] = epochs
            cfg["device"] = device.type
            if quick or not have_data:
                n_train = 2048 if quick else 60000
                cfg["data"] = {
                    "name": "synthetic",
                    "synthetic_features": 784,
                    "synthetic_classes": 10,
                    "synthetic_size": n_train + (512 if quick else 10000),
                    "test_fraction": (512 if quick else 10000)
                    / (n_train + (512 if quick else 10000)),
                }
            if quick:
                cfg["model"]["width"] = 64
            cfg.setdefault("logging", {})["checkpoint_every"] = 0
            t0 = time.perf_counter()
            summary = train(config_from_dict(cfg), Path(tmp, f"k{n_layers}"), progress=False)
            wall = time.perf_counter() - t0
            epoch_s = wall / max(int(summary.get("epochs_done", epochs)), 1)
            full_epochs = int(pts[0].config["epochs"])
            per_kind[str(n_layers)] = {
                "points": len(pts),
                "epoch_s": epoch_s,
                "projected_s": epoch_s * full_epochs * len(pts),
            }
    total = sum(v["projected_s"] for v in per_kind.values())
    return {
        "data": "fashion_mnist" if (have_data and not quick) else "synthetic (same shape)",
        "epochs_measured": epochs,
        "points": len(points),
        "by_smoothed_layers": per_kind,
        "projected_h_one_process": total / 3600,
        "workers": workers,
        "projected_h_workers_lower_bound": total / 3600 / workers,
    }


def report(result: dict[str, Any]) -> str:
    lines = [f"device: {result['device_name']}  torch {result['torch']}"]
    lines.append(f"1. float64 CUDA vs CPU (tolerance {FLOAT64_RTOL:g}):")
    for r in result["correctness"]:
        ok = "ok" if r["max_rel_diff"] <= FLOAT64_RTOL else "FAIL"
        lines.append(f"   {r['layers']:<8} {r['reduction']:<5} {r['max_rel_diff']:.2e} {ok}")
    lines.append("2. step times (median ms): model, layers, plain, smoothed y=4, ratio")
    for r in result["steps"]:
        lines.append(
            f"   {r['model']:<12} {r['layers']:<8} {r['plain_ms']:8.2f} "
            f"{r['smoothed_ms']:8.2f} {r['ratio']:6.2f}x"
        )
    p = result.get("projection")
    if p:
        lines.append(
            f"3. paper-scale figure 3 ({p['points']} runs, data {p['data']}, "
            f"{p['epochs_measured']} epochs measured per kind):"
        )
        for k, v in p["by_smoothed_layers"].items():
            lines.append(
                f"   {k} smoothed layers: {v['points']} runs, {v['epoch_s']:.2f} s/epoch, "
                f"{v['projected_s'] / 3600:.2f} h"
            )
        lines.append(
            f"   projected: {p['projected_h_one_process']:.1f} h with one process; "
            f">= {p['projected_h_workers_lower_bound']:.1f} h with {p['workers']} sharing the GPU"
        )
    lines.append(f"wall time of this check: {result['wall_s']:.0f} s (budget {BUDGET_S} s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="torch device to check (default cuda)")
    ap.add_argument("--quick", action="store_true", help="small sizes (a CPU smoke test)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs trained per kind of point")
    ap.add_argument("--workers", type=int, default=4, help="processes sharing the GPU")
    ap.add_argument("--repeats", type=int, default=20, help="timed steps per variant")
    ap.add_argument("--skip-projection", action="store_true")
    ap.add_argument("--out", default="gpu_check", help="directory for gpu_check.json")
    args = ap.parse_args(argv)
    for name in ("epochs", "workers", "repeats"):
        if getattr(args, name) < 1:
            print(f"gpu_check: --{name} must be an integer >= 1", file=sys.stderr)
            return 2
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "gpu_check: --device cuda, but this torch build sees no CUDA device "
            f"(torch {torch.__version__}); use --device cpu --quick for a smoke test",
            file=sys.stderr,
        )
        return 2
    device = torch.device(args.device)
    t0 = time.perf_counter()
    result: dict[str, Any] = {
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
    }
    result["correctness"] = correctness(device)
    result["steps"] = step_times(device, quick=args.quick, repeats=args.repeats)
    if not args.skip_projection:
        result["projection"] = projection(
            device, quick=args.quick, epochs=args.epochs, workers=args.workers
        )
    result["wall_s"] = time.perf_counter() - t0
    write_json_atomic(Path(args.out, "gpu_check.json"), result)
    print(report(result))
    bad = [r for r in result["correctness"] if not r["max_rel_diff"] <= FLOAT64_RTOL]
    return 1 if bad or not math.isfinite(result["wall_s"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
