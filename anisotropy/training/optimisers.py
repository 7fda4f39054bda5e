r"""The trainer's optimisers: built from ``optim.name`` and stepped on minibatches.

The one place that knows each optimiser's calling convention
(:mod:`anisotropy.optim`; docs/trainer.md, section "Optimisers").  ``optim.name``:

* ``"sgd"`` - :class:`torch.optim.SGD` on the (smoothed) loss, the historical step;
* ``"sam"`` - :class:`~anisotropy.optim.SAM`: two gradient passes on the *same*
  minibatch (and, with a smoothed loss, the same perturbations): the gradient at
  ``w``, then at ``w + rho g / |g|``; SGD steps with the second;
* ``"replicated"`` - :class:`~anisotropy.optim.ReplicatedSGD`: each of the ``y``
  replicas takes its *own* minibatch per step.  Every epoch draws one permutation of
  the training set per replica (so an epoch has the usual ``ceil(n / B)`` steps and
  every replica sees each sample once: ``y`` passes over the data); the centre is the
  evaluated model;
* ``"entropy_sgd"`` - :class:`~anisotropy.optim.EntropySGD` (Algorithm 1 of Chaudhari
  et al.): its ``L`` Langevin steps take *fresh* minibatches, as in the authors' code.
  Every epoch draws one permutation per Langevin step ``l``, and outer step ``t``
  evaluates minibatch ``t`` of permutation ``l`` at its ``l``-th Langevin step (an
  epoch: ``ceil(n / B)`` outer steps, ``L`` passes over the data, the "effective
  epochs" of that paper);
* ``"moment_matching"``, ``"heat"`` - :class:`~anisotropy.optim.MomentMatching`,
  :class:`~anisotropy.optim.HeatRegularisation`: one *fixed* minibatch per step,
  evaluated at Gaussian samples of the weights under :func:`torch.vmap`, no
  ``backward()`` of the closure (moment matching is gradient-free).

The randomness of an optimiser (Langevin noise, Gaussian samples, the replicas'
initial noise) comes from the run's perturbation generator, checkpointed with the
optimiser's ``state_dict``.  A smoothed loss (``smoothing.layers``) is combined with
``sgd`` and ``sam`` only; the others smooth by their own construction, and
:func:`check_optimiser_combination` refuses the pair.

**Cost.**  Every step counts its passes over a minibatch of ``optim.batch_size``
samples (a shorter last minibatch of an epoch counts as a whole one; micro-batches
and data-parallel shards of one minibatch count once): ``passes`` with a backward
pass, ``forward_passes`` without.  A smoothed loss evaluates the network at ``y``
perturbed weights and the centre: ``y + 1`` passes (``y`` when the centre is
excluded, plus one forward for the logged centre loss).  Per step: sgd 1, sam 2,
replicated ``y``, entropy_sgd ``L`` (times the smoothed loss's count for sgd and
sam); moment_matching ``1 + n`` forward passes; heat ``L * max(n, 1)`` passes and 1
forward pass (``n`` = ``optim.samples``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args

import torch
from torch import nn

from anisotropy.optim import (
    SAM,
    EntropySGD,
    HeatRegularisation,
    MomentMatching,
    ReplicatedSGD,
    coupling_schedule,
)
from anisotropy.optim.replicated import CouplingScheduleName
from anisotropy.training.signals import weight_layers

if TYPE_CHECKING:
    from anisotropy.training.config import OptimConfig, TrainConfig
    from anisotropy.training.run import Run

__all__ = [
    "OptimName",
    "OPTIMISERS",
    "GammaSchedule",
    "USED_BY",
    "DEFAULT_INNER_STEPS",
    "DEFAULT_SAMPLES",
    "StepOps",
    "StepResult",
    "check_optimiser",
    "check_optimiser_combination",
    "streams",
    "gradient_free",
    "build_optimizer",
    "optimiser_step",
    "log_extras",
]

#: the optimisers of the trainer (``optim.name``)
OptimName = Literal["sgd", "sam", "replicated", "entropy_sgd", "moment_matching", "heat"]
OPTIMISERS: tuple[OptimName, ...] = get_args(OptimName)
#: scoping of the coupling gamma (:func:`anisotropy.optim.coupling_schedule`)
GammaSchedule = CouplingScheduleName

_GRADIENT: tuple[OptimName, ...] = ("sgd", "sam", "replicated", "entropy_sgd")
_VARIATIONAL: tuple[OptimName, ...] = ("moment_matching", "heat")
_COUPLED: tuple[OptimName, ...] = ("replicated", "entropy_sgd")
_PARTIAL: tuple[OptimName, ...] = OPTIMISERS[1:]

#: ``optim.<key>`` -> the optimisers that use it; a value other than the default for
#: another optimiser is refused (a sweep cannot vary a parameter that does nothing)
USED_BY: dict[str, tuple[OptimName, ...]] = {
    "momentum": _GRADIENT,
    "nesterov": _GRADIENT,
    "weight_decay": _GRADIENT,
    "accumulate": _GRADIENT,
    "layers": _PARTIAL,
    "include_biases": _PARTIAL,
    "rho": ("sam",),
    "replicas": ("replicated",),
    "init_noise": ("replicated",),
    "gamma": _COUPLED + _VARIATIONAL,
    "gamma_schedule": _COUPLED,
    "gamma_rate": _COUPLED,
    "gamma_max": _COUPLED,
    "inner_steps": ("entropy_sgd", "heat"),
    "inner_lr": ("entropy_sgd",),
    "noise": ("entropy_sgd",),
    "alpha": ("entropy_sgd",),
    "samples": _VARIATIONAL,
    "beta": _VARIATIONAL,
    "chunk_size": _VARIATIONAL,
}
#: ``optim.inner_steps`` when absent: Chaudhari et al.'s L = 20; one proximal step
DEFAULT_INNER_STEPS: dict[OptimName, int] = {"entropy_sgd": 20, "heat": 1}
#: ``optim.samples`` when absent (the defaults of the classes)
DEFAULT_SAMPLES: dict[OptimName, int] = {"moment_matching": 64, "heat": 16}


def _need(cond: bool, key: str, value: Any, accepted: str) -> None:
    if not cond:
        raise ValueError(f"{key} must be {accepted}, got {value!r}")


def _finite_nonneg(key: str, value: float) -> None:
    _need(math.isfinite(value) and value >= 0, key, value, "a finite number >= 0")


def _field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def check_optimiser(o: OptimConfig) -> None:
    """Check the optimiser's parameters of ``o`` (called by ``OptimConfig``).

    Raises
    ------
    ValueError
        For an unknown ``name`` (listing the valid ones), a parameter of another
        optimiser set to a non-default value, a required parameter left absent, or
        a value out of range; the message names the key and the accepted values.
    """
    if o.name not in OPTIMISERS:
        raise ValueError(
            f"unknown optim.name {o.name!r}; valid: {', '.join(map(repr, OPTIMISERS))}"
        )
    name = o.name
    defaults = {f.name: _field_default(f) for f in dataclasses.fields(o)}
    for key, users in USED_BY.items():
        value, default = getattr(o, key), defaults[key]
        if name not in users and value != default:
            raise ValueError(
                f"optim.{key} = {value!r} is a parameter of {' / '.join(users)}, not of "
                f"optim.name = {name!r}; leave it at its default ({default!r})"
            )
    _need(len(set(o.layers)) == len(o.layers), "optim.layers", o.layers, "distinct layer names")
    _need(
        not o.include_biases or bool(o.layers),
        "optim.include_biases",
        o.include_biases,
        "false when optim.layers is empty (every parameter is already included)",
    )
    if name == "sam":
        _finite_nonneg("optim.rho", o.rho)
    if name == "replicated":
        _need(o.replicas >= 1, "optim.replicas", o.replicas, "an integer >= 1")
        _finite_nonneg("optim.init_noise", o.init_noise)
    if name in _COUPLED + _VARIATIONAL:
        low = ">= 0" if name == "replicated" else "> 0"
        _need(
            o.gamma is not None
            and math.isfinite(o.gamma)
            and (o.gamma > 0 or (name == "replicated" and o.gamma == 0)),
            "optim.gamma",
            o.gamma,
            f"a finite number {low} with optim.name = {name!r} (required)",
        )
    if name in _COUPLED:
        _check_schedule(o)
    if name == "entropy_sgd":
        positive = math.isfinite(o.inner_lr) and o.inner_lr > 0
        _need(positive, "optim.inner_lr", o.inner_lr, "a number > 0")
        _finite_nonneg("optim.noise", o.noise)
        _need(0 < o.alpha <= 1, "optim.alpha", o.alpha, "a number in (0, 1]")
    if name in ("entropy_sgd", "heat"):
        _need(
            o.inner_steps is None or o.inner_steps >= 1,
            "optim.inner_steps",
            o.inner_steps,
            "an integer >= 1 (or absent)",
        )
    if name in _VARIATIONAL:
        _need(
            o.samples is None or o.samples >= 0,
            "optim.samples",
            o.samples,
            "an integer >= 0 (or absent)",
        )
        _need(math.isfinite(o.beta) and o.beta > 0, "optim.beta", o.beta, "a number > 0")
        _need(
            o.chunk_size is None or o.chunk_size >= 1,
            "optim.chunk_size",
            o.chunk_size,
            "an integer >= 1 (or absent)",
        )
    if name == "moment_matching":
        _need(o.lr <= 1, "optim.lr", o.lr, "a damping in (0, 1] with moment_matching (1: exact)")
    if name == "heat" and (o.inner_steps or 1) > 1 and o.gamma is not None:
        _need(
            o.lr * o.gamma < 2,
            "optim.lr",
            o.lr,
            f"below 2 / optim.gamma = {2 / o.gamma:g} with optim.inner_steps > 1 "
            "(the proximal inner loop diverges otherwise)",
        )


def _check_schedule(o: OptimConfig) -> None:
    """The scoping keys: each is used by some schedules only."""
    kind, gamma = o.gamma_schedule, float(o.gamma or 0.0)
    _finite_nonneg("optim.gamma_rate", o.gamma_rate)
    _need(
        o.gamma_rate == 0 or kind in ("exp", "linear"),
        "optim.gamma_rate",
        o.gamma_rate,
        f"0 with optim.gamma_schedule = {kind!r} (the rate is used by exp and linear)",
    )
    _need(
        o.gamma_max >= gamma,
        "optim.gamma_max",
        o.gamma_max,
        f"a number >= optim.gamma = {gamma:g}",
    )
    _need(
        math.isinf(o.gamma_max) or kind != "constant",
        "optim.gamma_max",
        o.gamma_max,
        "inf (absent) with the constant schedule",
    )
    _need(
        math.isfinite(o.gamma_max) or kind != "cosine",
        "optim.gamma_max",
        o.gamma_max,
        "a finite number (the final coupling) with the cosine schedule",
    )


def check_optimiser_combination(cfg: TrainConfig) -> None:
    """Refuse what the chosen optimiser cannot be combined with (called by ``TrainConfig``).

    A smoothed loss goes with ``sgd`` and ``sam`` only; the float16 gradient scaler
    with ``sgd`` only; the variational schemes need float32 and gradients of no
    layer (``logging.steps`` records them).
    """
    name = cfg.optim.name
    if cfg.smoothing.active and name not in ("sgd", "sam"):
        raise ValueError(
            f"smoothing.layers = {cfg.smoothing.layers!r} (a smoothed loss) goes with "
            f"optim.name = 'sgd' or 'sam' only, not {name!r}, which averages over "
            "perturbed weights by its own construction; set smoothing.layers = []"
        )
    if cfg.precision == "float16" and name != "sgd":
        raise ValueError(
            f"precision = 'float16' needs the gradient scaler, which only the sgd step "
            f"applies; use 'bfloat16' or 'float32' with optim.name = {name!r}"
        )
    if name in _VARIATIONAL and cfg.precision != "float32":
        raise ValueError(
            f"precision must be 'float32' with optim.name = {name!r} (its vmapped "
            f"evaluation runs without autocast), got {cfg.precision!r}"
        )
    if name in _VARIATIONAL and cfg.guidance.active:
        raise ValueError(
            f"guidance.dense_weight and guidance.conv_weight must be 0 with optim.name = "
            f"{name!r}: its vmapped evaluation takes the objective's loss only (the guidance "
            "terms enter the gradient of the other optimisers)"
        )
    if name in _VARIATIONAL and cfg.logging.steps:
        raise ValueError(
            f"logging.steps must be false with optim.name = {name!r}: the step log records "
            "layer gradients, which the variational schemes do not compute"
        )


def streams(o: OptimConfig) -> int:
    """Minibatches per step, each from its own permutation of the training set per
    epoch: ``y`` replicas, ``L`` Langevin steps, else 1."""
    if o.name == "replicated":
        return o.replicas
    if o.name == "entropy_sgd":
        return _inner_steps(o)
    return 1


def gradient_free(o: OptimConfig) -> bool:
    """Whether the optimiser leaves no loss gradient in ``.grad`` (no layer signals)."""
    return o.name in _VARIATIONAL


def _inner_steps(o: OptimConfig) -> int:
    return o.inner_steps if o.inner_steps is not None else DEFAULT_INNER_STEPS[o.name]


def _samples(o: OptimConfig) -> int:
    return o.samples if o.samples is not None else DEFAULT_SAMPLES[o.name]


def _gamma(o: OptimConfig, total_steps: int) -> float | Callable[[int], float]:
    gamma = float(o.gamma or 0.0)
    if o.gamma_schedule == "constant":
        return gamma
    return coupling_schedule(
        o.gamma_schedule,
        gamma,
        rate=o.gamma_rate,
        gamma_max=o.gamma_max,
        total_steps=max(1, total_steps) if o.gamma_schedule == "cosine" else None,
    )


def build_optimizer(
    cfg: TrainConfig,
    model: nn.Module,
    *,
    generator: torch.Generator,
    total_steps: int,
    world_size: int = 1,
    on_gradient: Callable[[], None] | None = None,
) -> torch.optim.Optimizer:
    """The optimiser of ``cfg.optim`` on ``model``.

    Parameters
    ----------
    cfg : TrainConfig
    model : torch.nn.Module
    generator : torch.Generator, keyword-only
        The run's perturbation generator: the optimiser's only randomness.
    total_steps : int, keyword-only
        Steps of the run (the length of a cosine coupling schedule).
    world_size : int, keyword-only
        Ranks of a data-parallel run (the variational schemes need one).
    on_gradient : callable, optional, keyword-only
        ``sam``, ``entropy_sgd``: called just before each update of the base SGD,
        with the gradient it uses in ``.grad`` (the layer signals).

    Raises
    ------
    ValueError
        If ``optim.layers`` names no parameter of ``model``, or the variational
        schemes are asked to run on several ranks.
    """
    o = cfg.optim
    sgd = dict(lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay)
    layers = list(o.layers) or None
    try:
        opt = _build(o, model, sgd, layers, generator, total_steps)
    except ValueError as err:  # e.g. a layer name the model does not have
        raise ValueError(f"optim ({o.name}): {err}") from None
    if o.name in _VARIATIONAL and world_size > 1:
        raise ValueError(
            f"optim.name = {o.name!r} evaluates one minibatch under torch.vmap and cannot "
            f"split it over {world_size} ranks; train it in one process"
        )
    if on_gradient is not None and isinstance(opt, (SAM, EntropySGD)):
        opt.base_optimizer.register_step_pre_hook(lambda *_: on_gradient())
    return opt


def _build(
    o: OptimConfig,
    model: nn.Module,
    sgd: dict[str, Any],
    layers: list[str] | None,
    generator: torch.Generator,
    total_steps: int,
) -> torch.optim.Optimizer:
    partial: dict[str, Any] = dict(layers=layers, include_biases=o.include_biases)
    if o.name == "sgd":
        return torch.optim.SGD(model.parameters(), **sgd)
    if o.name == "sam":
        return SAM(model.parameters(), torch.optim.SGD, rho=o.rho, model=model, **partial, **sgd)
    if o.name == "replicated":
        return ReplicatedSGD(
            model,
            torch.optim.SGD,
            y=o.replicas,
            gamma=_gamma(o, total_steps),
            init_noise=o.init_noise,
            generator=generator,
            **partial,
            **sgd,
        )
    if o.name == "entropy_sgd":
        return EntropySGD(
            model,
            torch.optim.SGD(model.parameters(), **sgd),
            gamma=_gamma(o, total_steps),
            inner_steps=_inner_steps(o),
            inner_lr=o.inner_lr,
            noise=o.noise,
            alpha=o.alpha,
            generator=generator,
            **partial,
        )
    variational: dict[str, Any] = dict(
        model=model,
        gamma=o.gamma,
        lr=o.lr,
        samples=_samples(o),
        beta=o.beta,
        generator=generator,
        chunk_size=o.chunk_size,
        **partial,
    )
    if o.name == "moment_matching":
        # the log reports the effective sample size of every step (log_extras), so no
        # warning per step
        return MomentMatching(model.parameters(), ess_warn=0.0, **variational)
    return HeatRegularisation(model.parameters(), inner_steps=_inner_steps(o), **variational)


# ----------------------------------------------------------------------------- the step

#: (centre loss, optimised loss, correct count) of one minibatch, detached
Measured = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
#: the minibatches ``(x, t)`` of one step, one per stream
Batches = Sequence[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class StepOps:
    """What :mod:`anisotropy.training.step` lends the optimisers' steps.

    Attributes
    ----------
    gradient : callable(run, x, t, *, draws=None) -> (centre loss, loss, correct)
        Zero the gradients, evaluate the (smoothed) loss of the minibatch ``(x, t)``
        at the current weights (accumulation, ranks and precision included), call
        ``backward()``, count the passes.
    update : callable(run)
        The sgd update: layer signals and ``optimizer.step()`` (with the scaler).
    signals : callable(run)
        Record the current ``.grad`` of the weight layers as the step's layer signals.
    """

    gradient: Callable[..., Measured]
    update: Callable[[Run], None]
    signals: Callable[[Run], None]


@dataclass(frozen=True)
class StepResult:
    """What one step measured: the logged centre loss, the loss the step optimised,
    the correct predictions among ``samples`` training samples."""

    centre: torch.Tensor
    loss: torch.Tensor
    correct: torch.Tensor
    samples: int


def optimiser_step(run: Run, batches: Batches, ops: StepOps) -> StepResult:
    """One step of ``run.optimizer`` on ``batches`` (:func:`streams` minibatches ``(x, t)``,
    normalised and augmented)."""
    name = run.cfg.optim.name
    if name == "sgd":
        return _sgd(run, batches, ops)
    if name == "sam":
        return _sam(run, batches, ops)
    if name == "replicated":
        return _replicated(run, batches, ops)
    if name == "entropy_sgd":
        return _entropy_sgd(run, batches, ops)
    return _variational(run, batches)


_Opt = TypeVar("_Opt", bound=torch.optim.Optimizer)


def _as(run: Run, cls: type[_Opt]) -> _Opt:
    """``run.optimizer``, checked to be the one ``optim.name`` builds."""
    opt = run.optimizer
    if not isinstance(opt, cls):  # pragma: no cover - build_optimizer builds it so
        raise TypeError(f"optim.name = {run.cfg.optim.name!r} but the optimiser is {opt!r}")
    return opt


def _sgd(run: Run, batches: Batches, ops: StepOps) -> StepResult:
    ((x, t),) = batches
    centre, loss, correct = ops.gradient(run, x, t)
    if bool(torch.isfinite(loss)):  # a non-finite loss stops the run before any update
        ops.update(run)
    return StepResult(centre, loss, correct, len(t))


def _sam(run: Run, batches: Batches, ops: StepOps) -> StepResult:
    """Both passes on the same minibatch; a smoothed loss uses the same perturbations."""
    ((x, t),) = batches
    ple = run.ple
    draws = (
        ple.sample(run.pert_gen, run.step)
        if ple is not None and run.smoothed(run.step) and ple.y > 0
        else None
    )
    seen: list[Measured] = []

    def closure() -> torch.Tensor:
        seen.append(ops.gradient(run, x, t, draws=draws))
        return seen[-1][1]

    _as(run, SAM).step(closure)
    (centre, _, correct), (_, ascended, _) = seen
    return StepResult(centre, ascended, correct, len(t))


def _replicated(run: Run, batches: Batches, ops: StepOps) -> StepResult:
    """Replica ``a`` on minibatch ``a``; the signals are those of the mean of the replicas'
    gradients (the direction in which the centre moves: the couplings sum to zero)."""
    wanted = run.signals is not None or run.step_signals is not None
    layers = weight_layers(run.model) if wanted else {}
    sums: dict[str, torch.Tensor] = {}
    seen: list[Measured] = []

    def closure(a: int) -> torch.Tensor:
        x, t = batches[a]
        seen.append(ops.gradient(run, x, t))
        for name, p in layers.items():
            if p.grad is None:  # a non-finite loss skipped its backward: no signals
                layers.clear()
                break
            sums[name] = p.grad.detach().clone() if a == 0 else sums[name].add_(p.grad)
        return seen[-1][1]

    _as(run, ReplicatedSGD).step(closure)
    y = len(batches)
    if layers:
        for name, p in layers.items():
            p.grad = sums[name].div_(y)
        ops.signals(run)
    centre = torch.stack([c.to(torch.float64) for c, _, _ in seen]).mean()
    loss = torch.stack([v.to(torch.float64) for _, v, _ in seen]).mean()
    correct = torch.stack([k for _, _, k in seen]).sum()
    return StepResult(centre, loss, correct, sum(len(t) for _, t in batches))


def _entropy_sgd(run: Run, batches: Batches, ops: StepOps) -> StepResult:
    """Langevin step ``l`` on minibatch ``l``; the first is at the weights (the centre)."""
    queue = list(batches)
    seen: list[Measured] = []

    def closure() -> torch.Tensor:
        x, t = queue[len(seen)]
        seen.append(ops.gradient(run, x, t))
        return seen[-1][1]

    _as(run, EntropySGD).step(closure)
    centre, _, correct = seen[0]
    loss = torch.stack([v.to(torch.float64) for _, v, _ in seen]).mean()
    return StepResult(centre, loss, correct, len(batches[0][1]))


def _variational(run: Run, batches: Batches) -> StepResult:
    """Moment matching / heat on one fixed minibatch; the closure returns its loss
    without ``backward()`` (it runs under ``torch.vmap``)."""
    ((x, t),) = batches
    model, opt = run.model, run.optimizer
    centre_logits: list[torch.Tensor] = []

    def closure() -> torch.Tensor:
        logits = model(x)
        if not centre_logits:  # the first call is at the weights, outside vmap
            centre_logits.append(logits.detach())
        return run.objective.loss(logits, t)

    if isinstance(opt, MomentMatching):
        loss: torch.Tensor = opt.step(closure)
        info = opt.last_info
        run.forward_passes += 1 + (info.samples if info is not None else 0)
        run.optim_log = {"ess_fraction": info.ess_fraction} if info is not None else {}
    else:
        heat = _as(run, HeatRegularisation)
        loss = heat.step(closure)
        info = heat.last_info
        run.forward_passes += 1
        run.passes += heat.inner_steps * max(heat.samples, 1)
    if info is None:  # pragma: no cover - every step sets it
        raise RuntimeError(f"{type(opt).__name__}.step left no last_info")
    objective = torch.tensor(info.objective, dtype=torch.float64, device=loss.device)
    correct = run.objective.correct(centre_logits[0], t)
    return StepResult(loss.to(torch.float64), objective, correct, len(t))


def log_extras(run: Run) -> dict[str, float]:
    """Per-optimiser values of the log line (``"optim"``; empty for sgd, sam and heat):
    the coupling of the last step (replicated, entropy_sgd), the replicas' mean squared
    distance to their centre (replicated), the effective sample size fraction of the
    last step (moment_matching)."""
    opt = run.optimizer
    if isinstance(opt, ReplicatedSGD):
        return {
            "gamma": opt.gamma_at(max(opt.steps - 1, 0)),
            "replica_distance": float(opt.distances().mean()),
        }
    if isinstance(opt, EntropySGD):
        return {"gamma": opt.gamma_at(max(opt.outer_steps - 1, 0))}
    return dict(run.optim_log)
