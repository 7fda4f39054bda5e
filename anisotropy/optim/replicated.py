r"""Replicated-SGD, the robust ensemble (Baldassi et al., PNAS 2020; Pittorino et al., ICLR 2021).

``y`` replicas :math:`W_a` of the weights, each trained on its own minibatches,
are coupled elastically to their centre :math:`W_c = \frac1y \sum_a W_a`: replica
``a`` descends :math:`L_a(W_a) + \frac{\gamma_t}{2} \|W_a - W_c\|^2`, the centre
held fixed in the gradient.  The centre is the model that is evaluated.  With
plain SGD of learning rate :math:`\eta` (momentum and weight decay, when set, act
on each replica's gradient as in :class:`torch.optim.SGD`) one step is

.. math::

    W_c^t = \frac1y \sum_{b=1}^{y} W_b^t, \qquad
    W_a^{t+1} = W_a^t - \eta \big(\nabla L_a(W_a^t) + \gamma_t (W_a^t - W_c^t)\big),
    \quad a = 1, \dots, y.

The coupling terms sum to zero, so the centre moves with the mean of the replicas'
gradients.  On quadratics :math:`L_a(W) = \frac12 W^\top A_a W - b_a^\top W` with a
constant :math:`\gamma`, the stacked replicas :math:`\mathbf W = (W_1, \dots, W_y)`
follow the linear recurrence

.. math::

    \mathbf W^{t+1} = \big(I - \eta (\hat A + \gamma P)\big) \mathbf W^t + \eta \hat b,
    \qquad \hat A = \operatorname{diag}(A_1, \dots, A_y),\;
    P = (I_y - \tfrac1y \mathbf 1 \mathbf 1^\top) \otimes I,

whose fixed point is :math:`(\hat A + \gamma P)^{-1} \hat b`; as :math:`\gamma \to
\infty` the replicas collapse onto the centre (their spread is :math:`O(1/\gamma)`)
and the centre onto the minimiser of :math:`\frac1y \sum_a L_a`.

**Scoping.**  ``gamma`` may be a schedule of the step count, growing during
training (:func:`coupling_schedule`: exponential, linear or cosine, as in the
authors' code, where the rate is applied per epoch).

**Partial coupling.**  With ``layers`` only the selected tensors are replicated
and coupled; the others are shared, one copy stepped with the mean of the
replicas' gradients, :math:`\frac1y \sum_a \nabla L_a`.  Memory: ``y`` copies of
the coupled tensors (plus the base optimiser's state for them).  Buffers (batch
norm statistics) are shared.

Between steps the model holds the centre in its coupled tensors and the shared
tensors as they are: evaluate or save the model as usual.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, get_args

import torch
from torch import nn

from anisotropy.optim._growth import geometric_growth
from anisotropy.optim._partial import partial_ids
from anisotropy.validation import check_choice, check_int, check_nonnegative

__all__ = ["CouplingScheduleName", "COUPLING_SCHEDULES", "coupling_schedule", "ReplicatedSGD"]

CouplingScheduleName = Literal["constant", "exp", "linear", "cosine"]
COUPLING_SCHEDULES: tuple[CouplingScheduleName, ...] = get_args(CouplingScheduleName)


def coupling_schedule(
    kind: CouplingScheduleName,
    gamma0: float,
    *,
    rate: float = 0.0,
    gamma_max: float = math.inf,
    total_steps: int | None = None,
) -> Callable[[int], float]:
    r"""A coupling schedule :math:`t \mapsto \gamma_t` (scoping), ``t`` the step count.

    * ``"constant"``: :math:`\gamma_t = \gamma_0`;
    * ``"exp"``: :math:`\gamma_t = \min(\gamma_0 (1 + r)^t, \gamma_{\max})`;
    * ``"linear"``: :math:`\gamma_t = \min(\gamma_0 + r t, \gamma_{\max})`;
    * ``"cosine"``: :math:`\gamma_t = \gamma_0 + (\gamma_{\max} - \gamma_0)
      \frac{1 - \cos(\pi \min(t, T) / T)}{2}` with :math:`T` = ``total_steps``
      (the authors' code has :math:`\gamma_0 = 0`).

    Parameters
    ----------
    kind : {"constant", "exp", "linear", "cosine"}
    gamma0 : float
        :math:`\gamma_0 \ge 0`, the coupling at step 0.
    rate : float, keyword-only
        :math:`r \ge 0` per step (``exp``, ``linear``).
    gamma_max : float, keyword-only
        Cap (``exp``, ``linear``; default none) or final value (``cosine``,
        required, :math:`\ge \gamma_0`).
    total_steps : int, keyword-only
        :math:`T \ge 1`, the length of the cosine ramp (``cosine`` only).

    Returns
    -------
    callable(int) -> float
    """
    kind = check_choice("kind", kind, COUPLING_SCHEDULES)
    g0 = check_nonnegative("gamma0", gamma0)
    r = check_nonnegative("rate", rate)
    gmax = check_nonnegative("gamma_max", gamma_max, allow_inf=True)
    if gmax < g0:
        raise ValueError(f"gamma_max must be >= gamma0 = {g0}, got {gamma_max!r}")
    if kind == "cosine":
        if math.isinf(gmax):
            raise ValueError("the cosine schedule needs a finite gamma_max (its final value)")
        if total_steps is None:
            raise ValueError("the cosine schedule needs total_steps, an integer >= 1")
        T = check_int("total_steps", total_steps, minimum=1)
    elif total_steps is not None:
        raise ValueError(f"total_steps is used by the cosine schedule only, not by {kind!r}")

    def gamma(step: int) -> float:
        t = check_int("step", step, minimum=0)
        if kind == "exp":  # in log space: (1 + r)^t overflows a float long before a cap
            if g0 == 0.0:
                return 0.0
            value = geometric_growth(g0, r, t, cap=gmax)
            if math.isinf(value):  # only without a cap (a finite one is returned first)
                raise ValueError(
                    f"the exponential coupling overflows at step {t} (gamma0 = {g0:g}, "
                    f"rate = {r:g}); set gamma_max to cap it"
                )
            return value
        if kind == "linear":
            return min(g0 + r * t, gmax)
        if kind == "cosine":
            return g0 + (gmax - g0) * 0.5 * (1.0 - math.cos(math.pi * min(t, T) / T))
        return g0

    return gamma


class ReplicatedSGD(torch.optim.Optimizer):
    r"""Replicated-SGD on the chosen layers of ``model`` (see the module docstring).

    Parameters
    ----------
    model : torch.nn.Module
        The model; it holds the centre between steps.  Its trainable parameters
        are the optimiser's.
    base_optimizer : type of torch.optim.Optimizer
        Applies the update to the stacked replicas and the shared tensors
        (default :class:`torch.optim.SGD`, built with ``**kwargs``).  It must act
        elementwise (SGD, Adam, ...), so that each replica is updated on its own.
    y : int, keyword-only
        Number of replicas, ``>= 1``.
    gamma : float or callable(int) -> float, keyword-only
        Coupling :math:`\gamma \ge 0`, or a schedule of the step count
        (:func:`coupling_schedule`).
    layers : str or iterable of str, optional, keyword-only
        Replicate and couple only these tensors (names, module names or globs as
        for :class:`~anisotropy.smoothing.losses.PartialLocalEntropy`); ``None``:
        all (biases included).
    include_biases : bool, keyword-only
        With ``layers``, also replicate the biases of the selected modules.
    init_noise : float, keyword-only
        Standard deviation of the Gaussian noise added to each replica at
        construction (``>= 0``; 0: all replicas start at the model's weights and
        part through their minibatches).
    generator : torch.Generator, optional, keyword-only
        Source of ``init_noise`` (required when it is positive); the only randomness.
    **kwargs
        Passed to ``base_optimizer`` (``lr``, ``momentum``, ``weight_decay``, ...).

    Notes
    -----
    ``step(closure)`` calls ``closure(a)`` for ``a = 0, ..., y - 1`` with the
    coupled tensors of the model set to replica ``a``; ``closure(a)`` must draw
    replica ``a``'s own minibatch, compute the loss, call ``backward()`` and
    return the loss (the gradients are zeroed before each call).  ``step``
    returns the mean of the ``y`` losses.  Use :meth:`replica` to evaluate one
    replica.

    Examples
    --------
    >>> opt = ReplicatedSGD(model, y=3, gamma=coupling_schedule("exp", 1e-3, rate=1e-3),
    ...                     layers=["fc2"], lr=0.1, momentum=0.9)
    >>> def closure(a):  # replica a's own minibatch (x[a], t[a])
    ...     loss = F.cross_entropy(model(x[a]), t[a]); loss.backward(); return loss
    >>> opt.step(closure)
    """

    def __init__(
        self,
        model: nn.Module,
        base_optimizer: type[torch.optim.Optimizer] = torch.optim.SGD,
        *,
        y: int = 3,
        gamma: float | Callable[[int], float] = 0.0,
        layers: str | Iterable[str] | None = None,
        include_biases: bool = False,
        init_noise: float = 0.0,
        generator: torch.Generator | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not (
            isinstance(base_optimizer, type) and issubclass(base_optimizer, torch.optim.Optimizer)
        ):
            raise ValueError(
                "base_optimizer must be a torch.optim.Optimizer class (e.g. torch.optim.SGD), "
                f"got {base_optimizer!r}"
            )
        self.y = check_int("y", y, minimum=1)
        if not callable(gamma):
            gamma = check_nonnegative("gamma", gamma)
        self.gamma = gamma
        noise = check_nonnegative("init_noise", init_noise)
        if noise > 0 and not isinstance(generator, torch.Generator):
            raise ValueError(
                "generator must be a torch.Generator when init_noise > 0, got "
                f"{type(generator).__name__}"
            )
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("model has no trainable parameters")
        coupled = partial_ids(
            (p for _, p in named), model=model, layers=layers, include_biases=include_biases
        )
        self.model = model
        self.coupled_names = tuple(n for n, p in named if id(p) in coupled)
        self._coupled = [p for _, p in named if id(p) in coupled]
        self._shared = [p for _, p in named if id(p) not in coupled]
        with torch.no_grad():
            self._stacks = [
                p.detach().unsqueeze(0).repeat(self.y, *([1] * p.dim())) for p in self._coupled
            ]
            if noise > 0 and generator is not None:
                for s in self._stacks:
                    xi = torch.randn(
                        s.shape, generator=generator, dtype=s.dtype, device=generator.device
                    )
                    s.add_(xi.to(s.device), alpha=noise)
        self.steps = 0
        self.base_optimizer = base_optimizer([*self._stacks, *self._shared], **kwargs)
        super().__init__([*self._stacks, *self._shared], dict(self.base_optimizer.defaults))
        self.param_groups = self.base_optimizer.param_groups
        self._write_centre()

    @torch.no_grad()
    def _write_centre(self) -> None:
        for p, s in zip(self._coupled, self._stacks, strict=True):
            p.copy_(s.mean(0))

    def gamma_at(self, step: int | None = None) -> float:
        """Coupling at ``step`` (default: the next step), validated ``>= 0``."""
        step = self.steps if step is None else check_int("step", step, minimum=0)
        return check_nonnegative("gamma", self.gamma(step) if callable(self.gamma) else self.gamma)

    @property
    def replicas(self) -> dict[str, torch.Tensor]:
        """Name -> the replicas of that coupled tensor, shape ``(y, *shape)`` (do not modify)."""
        return dict(zip(self.coupled_names, self._stacks, strict=True))

    @torch.no_grad()
    def distances(self) -> torch.Tensor:
        r"""Squared distances :math:`\|W_a - W_c\|^2` to the centre, shape ``(y,)``."""
        out = torch.zeros(self.y, dtype=torch.float64)
        for s in self._stacks:
            d = (s - s.mean(0, keepdim=True)).reshape(self.y, -1)
            out += (d.double() ** 2).sum(1).cpu()
        return out

    @contextmanager
    def replica(self, a: int) -> Iterator[nn.Module]:
        """Context in which the model holds replica ``a``; the centre is restored on exit."""
        a = check_int("a", a, minimum=0, maximum=self.y - 1)
        with torch.no_grad():
            for p, s in zip(self._coupled, self._stacks, strict=True):
                p.copy_(s[a])
        try:
            yield self.model
        finally:
            self._write_centre()

    @torch.no_grad()
    def step(self, closure: Callable[[int], Any] | None = None) -> Any:  # type: ignore[override]
        r"""One step of every replica (``y`` closure calls) and of the shared tensors.

        Returns
        -------
        The mean of the ``y`` losses returned by ``closure(a)``.
        """
        if closure is None or not callable(closure):
            raise ValueError(
                "ReplicatedSGD.step needs a closure(a) that computes replica a's loss on "
                "its own minibatch, calls backward() and returns the loss"
            )
        gamma = self.gamma_at()
        grads: list[torch.Tensor | None] = [None] * len(self._stacks)
        shared: list[torch.Tensor | None] = [None] * len(self._shared)
        losses = []
        for a in range(self.y):
            for p, s in zip(self._coupled, self._stacks, strict=True):
                p.copy_(s[a])
            for p in self._coupled + self._shared:
                p.grad = None
            with torch.enable_grad():
                loss = closure(a)
            losses.append(loss.detach() if isinstance(loss, torch.Tensor) else loss)
            for i, (p, s) in enumerate(zip(self._coupled, self._stacks, strict=True)):
                if p.grad is not None:
                    g = grads[i]
                    if g is None:
                        g = grads[i] = torch.zeros_like(s)
                    g[a].copy_(p.grad)
            for i, p in enumerate(self._shared):
                if p.grad is not None:
                    acc = shared[i]
                    shared[i] = p.grad.detach().clone() if acc is None else acc.add_(p.grad)
        for s, g in zip(self._stacks, grads, strict=True):
            if gamma != 0:
                if g is None:
                    g = torch.zeros_like(s)
                g.add_(s - s.mean(0, keepdim=True), alpha=gamma)
            s.grad = g
        for p, acc in zip(self._shared, shared, strict=True):
            p.grad = None if acc is None else acc.div_(self.y)
        self.base_optimizer.step()
        for s in self._stacks:
            s.grad = None
        self._write_centre()
        self.steps += 1
        if any(loss is None for loss in losses):
            return None
        return sum(losses) / self.y

    def state_dict(self) -> dict[str, Any]:
        """The base optimiser's state, the replicas and the step count."""
        return {
            "base": self.base_optimizer.state_dict(),
            "replicas": [s.detach().clone() for s in self._stacks],
            "steps": self.steps,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved; the model gets the restored centre."""
        if not isinstance(state_dict, dict) or set(state_dict) != {"base", "replicas", "steps"}:
            got = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(
                f"state_dict must have the keys 'base', 'replicas' and 'steps', got {got}"
            )
        reps = list(state_dict["replicas"])
        shapes = [tuple(s.shape) for s in self._stacks]
        if [tuple(r.shape) for r in reps] != shapes:
            raise ValueError(
                f"state_dict['replicas'] must hold tensors of shapes {shapes} (y={self.y}), "
                f"got {[tuple(r.shape) for r in reps]}"
            )
        steps = check_int("steps", state_dict["steps"], minimum=0)
        self.base_optimizer.load_state_dict(state_dict["base"])
        self.param_groups = self.base_optimizer.param_groups  # loading rebinds them
        with torch.no_grad():
            for s, r in zip(self._stacks, reps, strict=True):
                s.copy_(r)
        self.steps = steps
        self._write_centre()
