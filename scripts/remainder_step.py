"""The cost of an epoch's short last minibatch, measured: test accuracy of the medium
2-layer MLP just before and just after the step on the ``n_train % batch_size``
remainder (16 of 10,000 Fashion-MNIST images at batch 256), every epoch.

    OMP_NUM_THREADS=1 PYTHONPATH=. python scripts/remainder_step.py --method sgd --lr 0.03
    OMP_NUM_THREADS=1 PYTHONPATH=. python scripts/remainder_step.py --method heat --lr 0.1 \
        --epochs 6

``sgd``: torch SGD with momentum 0.9 (figure 9a's SGD arm at lr 0.03); ``heat``:
:class:`anisotropy.optim.HeatRegularisation` at figure 9a's chosen cell (gamma 3000,
16 samples, no momentum).  Prints one line per epoch and the mean change (after minus
before) in percentage points; ``optim.drop_last = true`` removes the step.
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from anisotropy.data.datasets import load_dataset, minibatches
from anisotropy.models import mlp
from anisotropy.optim import HeatRegularisation
from anisotropy.training.config.sections import DataConfig


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", choices=("sgd", "heat"), default="sgd")
    ap.add_argument("--lr", type=float, default=0.03)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    d = load_dataset(DataConfig(name="fashion_mnist", n_train=10000))
    torch.manual_seed(a.seed)
    model = mlp(depth=2, width=784, activation="relu").eval()
    if a.method == "heat":
        gen = torch.Generator().manual_seed(a.seed + 1)
        opt: torch.optim.Optimizer = HeatRegularisation(
            model.parameters(), model=model, gamma=3000.0, lr=a.lr, samples=16, generator=gen
        )
    else:
        opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9)
    order = torch.Generator().manual_seed(a.seed + 2)

    def accuracy() -> float:
        with torch.no_grad():
            return (model(d.x_test).argmax(1) == d.y_test).float().mean().item()

    changes = []
    for epoch in range(1, a.epochs + 1):
        batches = list(minibatches(len(d.x_train), 256, generator=order))
        before = float("nan")
        for k, idx in enumerate(batches):
            x, t = d.x_train[idx], d.y_train[idx]
            if a.method == "heat":
                opt.step(lambda x=x, t=t: F.cross_entropy(model(x), t))
            else:
                opt.zero_grad()
                F.cross_entropy(model(x), t).backward()
                opt.step()
            if k == len(batches) - 2:
                before = accuracy()
        after = accuracy()
        changes.append(100 * (after - before))
        print(
            f"epoch {epoch}: last minibatch {len(batches[-1])} images; test accuracy "
            f"before it {before:.4f}, after it {after:.4f}",
            flush=True,
        )
    half = changes[len(changes) // 2 :]
    print(
        f"{a.method} lr {a.lr:g}: after - before {statistics.mean(changes):+.2f} pp mean over "
        f"{len(changes)} epochs (sd {statistics.stdev(changes):.2f}); second half "
        f"{statistics.mean(half):+.2f} pp"
    )


if __name__ == "__main__":
    main()
