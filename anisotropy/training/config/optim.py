"""The ``[optim]`` configuration section: the optimiser and its parameters."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from anisotropy.training.config.checks import _require
from anisotropy.training.optimisers import OPTIMISERS, GammaSchedule, OptimName, check_optimiser

__all__ = ["OptimConfig"]


@dataclass
class OptimConfig:
    """torch SGD with momentum (paper: lr 1e-4, momentum 0.9, no Nesterov, batch 256), or
    another optimiser of :mod:`anisotropy.optim` (``name``) with its parameters."""

    lr: float = field(default=1e-4, metadata={"help": "learning rate"})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum in [0, 1)"})
    nesterov: bool = field(default=False, metadata={"help": "Nesterov momentum"})
    weight_decay: float = field(default=0.0, metadata={"help": "L2 weight decay (figure 7)"})
    batch_size: int = field(default=256, metadata={"help": "minibatch size"})
    drop_last: bool = field(
        default=False,
        metadata={
            "help": "leave out the last minibatch of an epoch when it is short "
            "(data.n_train % batch_size samples): its step is noisier and lands just "
            "before the epoch's evaluation"
        },
    )
    eval_batch_size: int = field(default=1024, metadata={"help": "batch size of the evaluation"})
    accumulate: int = field(
        default=1,
        metadata={
            "help": "micro-batches per step (gradient accumulation; the step's perturbations "
            "are shared, the update is that of the whole minibatch)"
        },
    )
    # --- the optimiser (anisotropy.training.optimisers; docs/trainer.md "Optimisers").
    # Each parameter below is used by the optimisers named in its help; giving one a
    # value other than its default while another optimiser is chosen is an error.
    name: OptimName = field(
        default="sgd",
        metadata={
            "help": f"{' | '.join(OPTIMISERS)}: torch SGD (default), SAM, Replicated-SGD, "
            "Entropy-SGD, variational moment matching, heat regularisation (anisotropy.optim)"
        },
    )
    layers: list[str] = field(
        default_factory=list,
        metadata={"help": "not sgd: act on these layers only (names or globs; empty: all)"},
    )
    include_biases: bool = field(
        default=False, metadata={"help": "not sgd: with layers, also the selected biases"}
    )
    rho: float = field(default=0.05, metadata={"help": "sam: radius of the ascent step"})
    replicas: int = field(default=3, metadata={"help": "replicated: number of replicas y"})
    gamma: float | None = field(
        default=None,
        metadata={
            "help": "replicated, entropy_sgd: coupling to the centre (at step 0); "
            "moment_matching, heat: precision 1/tau of the Gaussian (required by all four)"
        },
    )
    gamma_schedule: GammaSchedule = field(
        default="constant",
        metadata={
            "help": "replicated, entropy_sgd: scoping of gamma, constant | exp | linear | cosine"
        },
    )
    gamma_rate: float = field(
        default=0.0,
        metadata={"help": "replicated, entropy_sgd: growth of gamma per step (exp, linear)"},
    )
    gamma_max: float = field(
        default=math.inf,
        metadata={
            "help": "replicated, entropy_sgd: cap of gamma (exp, linear), final value (cosine)"
        },
    )
    init_noise: float = field(
        default=0.0,
        metadata={"help": "replicated: std of the noise added to each replica at the start"},
    )
    inner_steps: int | None = field(
        default=None,
        metadata={
            "help": "entropy_sgd: Langevin steps L (default 20); heat: gradient steps per "
            "proximal step (default 1)"
        },
    )
    inner_lr: float = field(default=0.1, metadata={"help": "entropy_sgd: Langevin step size"})
    noise: float = field(default=1e-4, metadata={"help": "entropy_sgd: Langevin noise epsilon"})
    alpha: float = field(
        default=0.75, metadata={"help": "entropy_sgd: weight of the newest replica in its mean"}
    )
    samples: int | None = field(
        default=None,
        metadata={
            "help": "moment_matching (default 64), heat (default 16): Gaussian samples per step"
        },
    )
    beta: float = field(
        default=1.0, metadata={"help": "moment_matching, heat: inverse temperature of exp(-beta L)"}
    )
    chunk_size: int | None = field(
        default=None,
        metadata={"help": "moment_matching, heat: samples evaluated at once (default: all)"},
    )

    def __post_init__(self) -> None:
        _require(math.isfinite(self.lr) and self.lr > 0, "optim.lr", self.lr, "a number > 0")
        _require(0.0 <= self.momentum < 1.0, "optim.momentum", self.momentum, "a number in [0, 1)")
        _require(
            not self.nesterov or self.momentum > 0,
            "optim.nesterov",
            self.nesterov,
            "false when momentum = 0 (Nesterov needs momentum)",
        )
        _require(
            math.isfinite(self.weight_decay) and self.weight_decay >= 0,
            "optim.weight_decay",
            self.weight_decay,
            "a number >= 0",
        )
        _require(self.batch_size >= 1, "optim.batch_size", self.batch_size, "an integer >= 1")
        _require(
            self.eval_batch_size >= 1,
            "optim.eval_batch_size",
            self.eval_batch_size,
            "an integer >= 1",
        )
        _require(self.accumulate >= 1, "optim.accumulate", self.accumulate, "an integer >= 1")
        _require(
            self.batch_size % self.accumulate == 0,
            "optim.accumulate",
            self.accumulate,
            f"a divisor of optim.batch_size = {self.batch_size} (equal micro-batches)",
        )
        check_optimiser(self)
