"""Planted figure-1 early probes for the tests: step records with a known within-minibatch
SNR and signal maximum, and a sweep runner that writes them (``from planted_fig1 import
...``, like ``tiny_runs``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

LAYERS = ("fc1", "fc2", "fc3", "fc4")


def planted_records(
    snr0: float, *, cross: float = 30.0, peak: float = 5.0, n: int = 200
) -> list[dict[str, Any]]:
    """Step records 1..n: the SNR a power law through (1, snr0) and (cross, 1) when
    snr0 > 1 (constant snr0 otherwise); the signal
    s_I = t exp(-t / peak) peaks at step ``peak``; layer k scales both by (1 + k / 10)."""
    recs = []
    for t in range(1, n + 1):
        if snr0 > 1:
            snr = snr0 * t ** (-math.log(snr0) / math.log(cross))
        else:
            snr = snr0
        layers = {
            name: {
                "signal": (1 + k / 10) * t * math.exp(-t / peak),
                "within_snr": snr * (1 + (k - 1.5) / 20),
                "within_noise_norm": 1.0,
                "within_mean_norm": math.sqrt(1 + (snr * (1 + (k - 1.5) / 20)) ** 2),
            }
            for k, name in enumerate(LAYERS)
        }
        recs.append({"step": t, "within_parts": 16, "layers": layers})
    return recs


def planted_early_runner(config, run_dir):
    """Stand-in for a fig1_early run: planted step records, signal-dominated start."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    recs = planted_records(3.0 + config["seed"], cross=40.0)
    (run_dir / "steps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (run_dir / "log.jsonl").write_text(json.dumps({"epoch": 1, "test_acc": 0.5}) + "\n")
    summary = {"status": "complete", "best_test_acc": 0.5, "final_test_acc": 0.5, "epochs": 1}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return summary
