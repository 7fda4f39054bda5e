"""Data-parallel training (torch.distributed, gloo on loopback), gradient accumulation and
mixed precision: the same update as one process on the whole minibatch.

Exactness is checked in float64: N ranks at B/N samples and k micro-batches of B/k
samples compute the same gradient as one batch of B, the sums merely taken in another
order, so after a few steps the weights agree to ~1e-15 relative (float64 eps 2.2e-16
times a few steps' worth of rounding); ``EXACT`` leaves a margin of ~100x.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from anisotropy.data.datasets import load_dataset
from anisotropy.io import load_checkpoint, read_jsonl
from anisotropy.smoothing.losses import PartialLocalEntropy
from anisotropy.training import run as run_mod
from anisotropy.training.config import config_from_dict, config_to_toml
from anisotropy.training.distributed import shard_bounds
from anisotropy.training.run import check_shards
from anisotropy.training.step import pieces
from anisotropy.training.trainer import train
from tiny_runs import tiny_run

#: float64 agreement of two summation orders over a few SGD steps (see the module's notes)
EXACT = 1e-12
#: bfloat16 keeps 8 significant bits, float16 11 (relative rounding 2^-8 ~ 0.4 % and
#: 2^-11 per operation); the logged losses of 3 epochs agreed with float32 to <= 0.4 %
#: (bfloat16) and <= 1.2 % (float16, test loss of the last epoch) when measured, so 3 %
#: leaves a margin while a run that does not follow float32 (its loss falls by ~30 % per
#: epoch here) fails
MIXED_REL = 3e-2


def tiny(reduction: str = "pla", **over) -> dict:
    """A run of a fraction of a second: 16-8-8-3 MLP, 187 training samples, so the last
    minibatch of 32 holds 27 (it splits unequally over 2 ranks / 4 micro-batches)."""
    changes = {
        "seed": 3,
        "epochs": 1,
        "data": {"n_train": 187},
        "smoothing": {"layers": ["fc1", "fc2"], "R": 0.5, "y": 3, "reduction": reduction},
        "logging": {"signals": True},
    }
    return tiny_run(changes, **over)


def _load_float64(cfg):
    """``load_dataset`` with float64 samples and statistics (the run is then float64)."""
    data = load_dataset(cfg)
    for key in ("x_train", "x_test", "mean", "std"):
        setattr(data, key, getattr(data, key).to(torch.float64))
    return data


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoint.pt")["model"]


def assert_same_run(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    for name in wa:
        assert wa[name].dtype == torch.float64
        torch.testing.assert_close(wb[name], wa[name], rtol=EXACT, atol=EXACT)
    for ra, rb in zip(read_jsonl(a / "log.jsonl"), read_jsonl(b / "log.jsonl"), strict=True):
        for key in ("train_loss", "smoothed_loss", "train_acc", "test_loss", "test_acc"):
            assert rb[key] == pytest.approx(ra[key], rel=EXACT, abs=EXACT)


# ----------------------------------------------------------------------------- 2 ranks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank(rank: int, world: int, port: int, root: str, cases: list) -> None:
    """One rank: float64, its own process group, the cases trained in turn (the trainer
    uses the open group); the checksum of every step's draws is written per rank."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_default_dtype(torch.float64)
    run_mod.load_dataset = _load_float64  # type: ignore[assignment]
    sums: list[float] = []
    sample = PartialLocalEntropy.sample

    def recording(self, generator, step=0):
        draws = sample(self, generator, step)
        sums.append(float(sum(d.sum() for d in draws.values())))
        return draws

    PartialLocalEntropy.sample = recording  # type: ignore[method-assign]
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for name, d, resume in cases:
            train(config_from_dict(d), Path(root) / name, resume=resume, progress=False)
        Path(root, f"draws{rank}.json").write_text(json.dumps(sums))
    finally:
        dist.destroy_process_group()


def test_two_ranks_give_the_update_of_one_process_on_the_whole_batch(tmp_path, monkeypatch):
    """2 gloo ranks at B/2 = one process at B, PLA and PLEA (the latter through the loss's
    ``sync=`` all-reduce), the last minibatch split 14/13; a 2-rank resume continues the
    trajectory; every rank drew the same perturbations."""
    monkeypatch.setattr(run_mod, "load_dataset", _load_float64)
    torch.set_default_dtype(torch.float64)
    try:  # first one process (which also makes the lazy imports before the fork)
        for name, d in (
            ("pla", tiny("pla")),
            ("plea", tiny("plea")),
            ("resumed", tiny("plea", epochs=2)),
        ):
            train(config_from_dict(d), tmp_path / f"one-{name}", progress=False)
    finally:
        torch.set_default_dtype(torch.float32)
    cases = [
        ("pla", tiny("pla"), False),
        ("plea", tiny("plea", **{"optim.accumulate": 2}), False),
        ("resumed", tiny("plea"), False),
        ("resumed", tiny("plea", epochs=2), True),
    ]
    # fork: the ranks start at once from this process (spawn would import torch anew in
    # each, seconds on a busy machine); torch runs one intra-op thread here (conftest)
    mp.start_processes(
        _rank, args=(2, _free_port(), str(tmp_path), cases), nprocs=2, start_method="fork"
    )
    draws = [json.loads((tmp_path / f"draws{r}.json").read_text()) for r in (0, 1)]
    assert len(draws[0]) == 6 * 4 and draws[0] == draws[1]  # 6 steps per epoch, 4 epochs
    for name in ("pla", "plea", "resumed"):
        assert_same_run(tmp_path / f"one-{name}", tmp_path / name)
    summary = json.loads((tmp_path / "pla" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["status"] == "complete"
    assert json.loads((tmp_path / "one-pla" / "summary.json").read_text())["world_size"] == 1


@pytest.mark.slow
def test_torchrun_command_line(tmp_path):
    """``torchrun --standalone --nproc_per_node 2 -m anisotropy train`` (float32) trains the
    run of one process: weights within float32 rounding; only rank 0 wrote."""
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(config_to_toml(config_from_dict(tiny("plea", epochs=2))))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    out = subprocess.run(
        [
            *cmd,
            "-m",
            "anisotropy",
            "train",
            str(cfg),
            "--out",
            str(tmp_path / "two"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    train(config_from_dict(tiny("plea", epochs=2)), tmp_path / "one", progress=False)
    wa, wb = weights(tmp_path / "one"), weights(tmp_path / "two")
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], rtol=1e-5, atol=1e-6)
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["world_size"] == 2
    assert len(read_jsonl(tmp_path / "two" / "log.jsonl")) == 2


# ----------------------------------------------------------------------------- one process


@pytest.mark.parametrize("reduction", ["pla", "plea"])
def test_accumulated_micro_batches_give_the_update_of_one_batch(tmp_path, monkeypatch, reduction):
    """optim.accumulate = 4 (pieces of 8, the last minibatch 7/7/7/6) = one batch of 32,
    in float64, with the step's perturbations shared by the micro-batches."""
    monkeypatch.setattr(run_mod, "load_dataset", _load_float64)
    torch.set_default_dtype(torch.float64)
    try:
        train(config_from_dict(tiny(reduction)), tmp_path / "one", progress=False)
        acc = tiny(reduction, **{"optim.accumulate": 4})
        train(config_from_dict(acc), tmp_path / "acc", progress=False)
    finally:
        torch.set_default_dtype(torch.float32)
    assert_same_run(tmp_path / "one", tmp_path / "acc")


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_trains_close_to_float32(tmp_path, precision):
    """precision = bfloat16 / float16 on CPU (torch.autocast; float16 with a gradient
    scaler) follows the float32 run: every logged loss within MIXED_REL over 3 epochs, the
    loss falls, the weights stay float32.  PLEA on fc2, the paper's layer.  A resumed
    float16 run continues bitwise (the scaler's state is checkpointed)."""
    base = tiny("plea", epochs=3, **{"optim.lr": 0.2, "smoothing.layers": ["fc2"]})
    mixed = {**base, "precision": precision}
    train(config_from_dict(base), tmp_path / "f32", progress=False)
    train(config_from_dict(mixed), tmp_path / "mixed", progress=False)
    la = read_jsonl(tmp_path / "f32" / "log.jsonl")
    lb = read_jsonl(tmp_path / "mixed" / "log.jsonl")
    for ra, rb in zip(la, lb, strict=True):
        for key in ("train_loss", "smoothed_loss", "test_loss"):
            assert rb[key] == pytest.approx(ra[key], rel=MIXED_REL)
    assert lb[-1]["train_loss"] < 0.7 * lb[0]["train_loss"]
    assert weights(tmp_path / "mixed")["fc1.weight"].dtype == torch.float32
    if precision == "float16":
        assert load_checkpoint(tmp_path / "mixed" / "checkpoint.pt")["scaler"]["scale"] > 0
        train(config_from_dict({**mixed, "epochs": 2}), tmp_path / "cut", progress=False)
        train(config_from_dict(mixed), tmp_path / "cut", resume=True, progress=False)
        a, b = weights(tmp_path / "mixed"), weights(tmp_path / "cut")
        assert all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- validation


def test_shards_are_contiguous_and_cover_the_batch():
    assert [shard_bounds(27, 2, r) for r in (0, 1)] == [(0, 14), (14, 27)]
    assert pieces(32, 2, 1, 2) == [(16, 24), (24, 32)]
    assert [b for r in range(2) for b in pieces(27, 2, r, 4)] == [
        (0, 4),
        (4, 8),
        (8, 12),
        (12, 15),
        (15, 18),
        (18, 21),
        (21, 24),
        (24, 27),
    ]
    with pytest.raises(ValueError, match="cannot be split into 8"):
        shard_bounds(7, 8, 0)


@pytest.mark.parametrize(
    "over, match",
    [
        ({"optim.accumulate": 3}, "optim.accumulate must be a divisor of optim.batch_size = 32"),
        ({"optim.accumulate": 0}, "optim.accumulate must be an integer >= 1"),
        ({"precision": "bfloat16", "device": "mps"}, "precision must be 'float32' on device"),
        ({"precision": "half"}, "precision"),
    ],
)
def test_bad_options_are_refused(over, match):
    with pytest.raises(ValueError, match=match):
        config_from_dict(tiny(**over))


def test_batch_not_divisible_by_the_ranks_is_refused():
    cfg = config_from_dict(tiny(**{"optim.batch_size": 30, "data.n_train": 180}))
    check_shards(cfg, 180, 2)
    with pytest.raises(
        ValueError, match=r"batch_size = 30 must be divisible by the number of ranks \(4\)"
    ):
        check_shards(cfg, 180, 4)
    with pytest.raises(ValueError, match="last minibatch of an epoch holds 1 samples"):
        check_shards(cfg, 181, 2)
