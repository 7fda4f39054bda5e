"""The cost of an epoch's short last minibatch, measured on a real run: test accuracy
just before and just after the step on the ``n_train % batch_size`` remainder (16 of
10,000 Fashion-MNIST images at batch 256), every epoch.

    OMP_NUM_THREADS=1 PYTHONPATH=. python scripts/remainder_step.py \
        docs/results/medium/store/<run>/config.toml --epochs 40

Retrains the run of ``config.toml`` (any arm of any sweep: same seed, initialisation,
data order and optimiser; the end-of-run flatness is switched off) through the trainer
with a callback that evaluates the test set after each epoch's second-last step.  That
evaluation draws no random numbers, so the trajectory is the run's own: the "after"
numbers are its logged ``test_acc``.  Prints one line per complete epoch and the mean
change (after minus before) in percentage points; ``optim.drop_last = true`` removes
the step.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from typing import Any

from anisotropy.data.datasets import batches_per_epoch, load_dataset
from anisotropy.training.config import TrainConfig, load_config
from anisotropy.training.hooks import Callback, TrainState
from anisotropy.training.loop import evaluate
from anisotropy.training.trainer import train


class BeforeRemainder(Callback):
    """Test accuracy before each epoch's remainder step, paired with the logged one after it."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.data = load_dataset(cfg.data)
        n, batch = len(self.data.x_train), cfg.optim.batch_size
        if cfg.optim.drop_last or n % batch == 0:
            raise ValueError(
                f"the run has no short last minibatch (n_train = {n}, optim.batch_size = "
                f"{batch}, optim.drop_last = {cfg.optim.drop_last})"
            )
        self.steps_per_epoch = batches_per_epoch(n, batch)
        self.eval_batch = cfg.optim.eval_batch_size
        self.before: dict[int, float] = {}
        self.pairs: list[tuple[int, float, float]] = []

    def on_step(self, state: TrainState) -> None:
        if state.step % self.steps_per_epoch == self.steps_per_epoch - 1:
            d = self.data
            acc = evaluate(state.model, d, d.x_test, d.y_test, batch_size=self.eval_batch)[1]
            self.before[state.epoch + 1] = float(acc or 0.0)

    def on_epoch(self, state: TrainState, record: dict[str, Any]) -> None:
        epoch = int(record["epoch"])
        if not record.get("partial") and epoch in self.before:
            self.pairs.append((epoch, self.before[epoch], float(record["test_acc"])))
            _, before, after = self.pairs[-1]
            print(
                f"epoch {epoch}: test accuracy before the remainder step {before:.4f}, "
                f"after it {after:.4f}",
                flush=True,
            )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="a run's config.toml")
    ap.add_argument("--epochs", type=int, help="train this many epochs (default: the run's)")
    a = ap.parse_args(argv)
    overrides = ["logging.flatness=false", "threads=1"]
    if a.epochs is not None:
        overrides.append(f"epochs={a.epochs}")
    cfg = load_config(a.config, overrides)
    probe = BeforeRemainder(cfg)
    with tempfile.TemporaryDirectory() as out:
        train(cfg, out, progress=False, callbacks=[probe])
    changes = [100 * (after - before) for _, before, after in probe.pairs]
    if len(changes) < 2:
        raise SystemExit(f"only {len(changes)} complete epoch(s): nothing to summarise")
    half = changes[len(changes) // 2 :]
    print(
        f"after - before: {statistics.mean(changes):+.2f} pp mean over {len(changes)} "
        f"epochs (sd {statistics.stdev(changes):.2f}, range {min(changes):+.2f} to "
        f"{max(changes):+.2f}); second half {statistics.mean(half):+.2f} pp"
    )


if __name__ == "__main__":
    main()
