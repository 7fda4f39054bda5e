"""Benchmark: the cost of one training step of every method of figure 9a, per pass.

Figure 9a (``experiments/rel_compare.toml``) gives every method the same budget of
forward/backward passes (``max_passes``); its table reports each run's wall time, which
also holds the end-of-epoch evaluations on the test set (one per epoch: plain SGD runs
200 epochs in the budget, PLA with y = 4 runs 40) and the machine's load at the time.
This script separates the two, measured in one run:

* the **training step** of each cost-distinct cell of the experiment's grid (cells that
  differ only in a strength -- R, lr, rho, gamma, beta -- or the seed cost the same),
  built by the trainer itself (:class:`anisotropy.training.run.Run`,
  :func:`anisotropy.training.step.train_step`) on the experiment's data, model and batch
  size: milliseconds per step, passes per step (the trainer's own count), milliseconds per
  pass and their ratio to plain SGD's;
* one **evaluation** of the test set (:func:`anisotropy.training.loop.evaluate_test`), the
  cost of an epoch's log line;
* the **budget**: the run's steps (to ``max_passes``, or its epochs if they end it
  first) x time per step (training), and its evaluations (one per
  ``logging.log_every`` epochs) x evaluation time: each method's run time on an
  unloaded core.

The cells run round-robin inside each repeat, so a change of the machine's load hits
them alike; the medians over repeats are reported with the load average at the start
and the end.  Never run by the tests.

Run (Fashion-MNIST from ``apt-get install dataset-fashion-mnist``; ``--scale quick`` reads
3,000 images)::

    OMP_NUM_THREADS=1 python benchmarks/bench_methods.py --threads 1 --scale medium
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from anisotropy.io import write_csv_atomic
from anisotropy.training.config import config_from_dict
from anisotropy.training.loop import epoch_batches, evaluate_test
from anisotropy.training.run import Run, RunPaths
from anisotropy.training.step import train_step
from experiments.definitions import load_experiment
from experiments.tuning import tuning_experiment

#: settings that change a run's numbers but not the work of its step
STRENGTHS = ("smoothing.R", "optim.lr", "optim.rho", "optim.gamma", "optim.beta", "seed")


@dataclass
class Cell:
    """One cost-distinct cell: its label, group (method) and built run."""

    group: int
    label: str
    run: Run
    batches: list[tuple[torch.Tensor, ...]]
    position: int = 0

    def steps(self, n: int) -> tuple[float, int]:
        """Seconds and passes of ``n`` training steps (fresh minibatches each)."""
        run = self.run
        period = run.new_period()
        before = run.passes + run.forward_passes
        start = time.perf_counter()
        for _ in range(n):
            if self.position == len(self.batches):
                self.batches, self.position = epoch_batches(run), 0
            train_step(run, self.batches[self.position], period)
            self.position += 1
        return time.perf_counter() - start, run.passes + run.forward_passes - before


def _label(settings: Mapping[str, Any]) -> str:
    """The method and what sets its cost: ``PLA on fc2``, ``replicated (replicas=3,
    layers=fc2)``, ``sgd``."""
    keep = {k: v for k, v in settings.items() if k not in STRENGTHS and k != "epochs"}
    layers = keep.pop("smoothing.layers", None)
    reduction = keep.pop("smoothing.reduction", None)
    name = str(keep.pop("optim.name", "sgd"))
    if reduction is not None:
        name = f"{str(reduction).upper()} on {'+'.join(layers or [])}"
    shown = {k: ("+".join(v) or "all") if isinstance(v, list) else v for k, v in keep.items()}
    rest = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in shown.items())
    return f"{name} ({rest})" if rest else name


def cost_cells(scale: str) -> list[tuple[int, str, dict]]:
    """(group, label, config) of each cost-distinct cell of rel_compare's tuning grid at
    ``scale`` (or of its grid when the scale has no tuning stage), first seed."""
    exp = load_experiment("rel_compare", scale)
    exp = tuning_experiment(exp) if exp.tuning is not None else exp
    seen: dict[str, tuple[int, str, dict]] = {}
    for group_index, group in enumerate(exp.grid):
        one = dataclasses.replace(exp, grid=[group], seeds=exp.seeds[:1])
        for point in one.points():
            label = _label(point.settings)
            key = f"{group_index}:{label}"
            if key not in seen:
                seen[key] = (group_index, label, point.config)
    return list(seen.values())


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scale", choices=("quick", "medium", "paper"), default="medium")
    parser.add_argument("--steps", type=int, default=10, help="steps per cell per repeat")
    parser.add_argument("--repeats", type=int, default=5, help="round-robin repeats")
    parser.add_argument("--out", type=Path, default=None, help="write bench_methods.csv here")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.repeats < 1:
        parser.error("--steps and --repeats must be >= 1")
    torch.set_num_threads(args.threads)
    load0 = _load()
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory() as tmp:
        for group, label, config in cost_cells(args.scale):
            cfg = config_from_dict(config)
            run = Run(cfg, RunPaths(Path(tmp)), progress=False)
            cells.append(Cell(group, label, run, epoch_batches(run)))
        for c in cells:  # warm-up: first-call allocations and lazy initialisation
            c.steps(1)
        times: dict[int, list[float]] = {i: [] for i in range(len(cells))}
        passes: dict[int, float] = {}
        evals: list[float] = []
        ref = cells[0].run
        for _ in range(args.repeats):
            for i, c in enumerate(cells):
                seconds, n = c.steps(args.steps)
                times[i].append(seconds / args.steps)
                passes[i] = n / args.steps
            start = time.perf_counter()
            evaluate_test(ref)
            evals.append(time.perf_counter() - start)
    load1 = _load()
    eval_s = statistics.median(evals)
    rows: list[dict[str, Any]] = []
    sgd_per_pass = None
    for i, c in enumerate(cells):
        step_s = statistics.median(times[i])
        per_pass = step_s / passes[i]
        if sgd_per_pass is None and c.run.cfg.optim.name == "sgd" and c.run.ple is None:
            sgd_per_pass = per_pass
        cfg = c.run.cfg
        # the run ends at the budget or after its epochs, whichever comes first; one
        # evaluation every logging.log_every epochs (and at the last)
        cap = cfg.epochs * c.run.steps_per_epoch
        steps = min(math.ceil(cfg.max_passes / passes[i]), cap) if cfg.max_passes else cap
        epochs_run = math.ceil(steps / c.run.steps_per_epoch)
        evaluations = math.ceil(epochs_run / cfg.logging.log_every)
        train_s = steps * step_s
        rows.append(
            {
                "group": c.group,
                "cell": c.label,
                "ms_per_step": round(1e3 * step_s, 3),
                "passes_per_step": round(passes[i], 3),
                "ms_per_pass": round(1e3 * per_pass, 3),
                "epochs": epochs_run,
                "train_s": round(train_s, 1),
                "eval_s": round(evaluations * eval_s, 1),
            }
        )
    for r in rows:
        r["per_pass_vs_sgd"] = (
            round(r["ms_per_pass"] / (1e3 * sgd_per_pass), 3) if sgd_per_pass else ""
        )
        r["run_s"] = round(r["train_s"] + r["eval_s"], 1)
    print(
        f"rel_compare ({args.scale}): {len(cells)} cost-distinct cells, {args.steps} steps x "
        f"{args.repeats} repeats each, round-robin, {args.threads} thread(s); one test-set "
        f"evaluation {1e3 * eval_s:.0f} ms; load {load0} at start, {load1} at end"
    )
    cols = list(rows[0])
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[k]) for k in cols))
    if args.out is not None:
        path = write_csv_atomic(Path(args.out) / "bench_methods.csv", rows, cols)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
