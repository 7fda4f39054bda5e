r"""Entropy-SGD (Chaudhari et al.), optionally restricted to chosen layers (as studied
in *Entropic gradient descent algorithms and wide flat minima*, Pittorino et al., ICLR 2021).

Entropy-SGD descends the local entropy
:math:`F_\gamma(W) = -\log \int dW'\, e^{-L(W') - \frac{\gamma}{2}\|W' - W\|^2}`
(the heat-kernel local free entropy of the paper's eq 1 at ``beta = 1``).  Its
gradient is :math:`\gamma (W - \langle W' \rangle)`, the mean taken under the
Gibbs measure of the coupled replica :math:`W'`.  Each outer step

1. sets the replica and its running mean to the current weights, ``W' = mu = W``;
2. runs ``L = inner_steps`` SGLD steps on the replica, each with one call of
   the closure (a fresh minibatch gradient at ``W'``):

   .. math::

       W' \leftarrow W' - \eta' \big(\nabla L(W') + \gamma (W' - W)\big)
                  + \sqrt{\eta'}\, \varepsilon\, \xi,\qquad \xi \sim N(0, I),

       \mu \leftarrow (1 - \alpha)\, \mu + \alpha\, W';

3. puts the weights back to ``W``, sets their gradient to :math:`\gamma (W - \mu)`
   and calls the base optimizer.

``noise`` is Chaudhari's :math:`\varepsilon`: the SGLD update samples
:math:`e^{-\beta' (L + \frac\gamma2\|W'-W\|^2)}` with the thermal inverse
temperature :math:`\beta' = 2 / \varepsilon^2`.  With ``noise = 0`` and a full-batch
gradient, the replica contracts geometrically to the proximal point
:math:`\operatorname{prox}(W) = \arg\min_x L(x) + \frac\gamma2\|x - W\|^2`, and the
outer gradient tends to that of the Moreau envelope (the zero-temperature local
entropy), :math:`\gamma (W - \operatorname{prox}(W))`.

**Partial Entropy-SGD.**  With ``layers`` (names, module names or globs as for
the partial losses, :func:`anisotropy.smoothing.sampling.select_parameters`) only the
selected parameters get a replica; the others stay at ``W`` during the inner
loop and take the plain gradient of the first closure call (made at ``W``), so
the base optimizer moves them exactly as it would without the wrapper.

**Scoping.**  ``gamma`` may be a callable ``outer_step -> gamma``, e.g.
:func:`gamma_scoping`, Chaudhari's :math:`\gamma_t = \gamma_0 (1 + \gamma_1)^t`
(the coupling tightens, i.e. the smoothing fades, during training: the scoping of
*Entropic alternatives to initialization* (Musso)).

**The authors' code.**  The PyTorch code of Entropy-SGD (ucla-vision/entropy-sgd)
differs from Algorithm 1 in its conventions; the keywords ``inner_momentum``,
``inner_nesterov``, ``inner_weight_decay``, ``noise_mode="gradient"`` and
``outer_gradient="unscaled"`` reproduce its update rule, and
:meth:`EntropySGD.from_authors` takes its parameters (the mapping is in its
docstring).  With ``noise_mode="gradient"`` the inner direction is

.. math::

    d = \nabla L(W') + \gamma (W' - W) + \varepsilon \sqrt{2/\eta'}\, \xi
        + \lambda_{wd} W',

passed through (Nesterov) momentum with a buffer that starts at zero every outer
step, then :math:`W' \leftarrow W' - \eta' d`: the noise enters the step as
:math:`-\varepsilon\sqrt{2\eta'}\,\xi` (the Langevin scale for
:math:`\beta' = 1/\varepsilon^2`).  With ``outer_gradient="unscaled"`` the base
optimizer receives :math:`W - \mu` instead of :math:`\gamma (W - \mu)`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Literal, get_args

import torch
from torch import nn

from anisotropy.optim._growth import geometric_growth
from anisotropy.optim._partial import partial_ids
from anisotropy.validation import check_choice, check_int, check_nonnegative, check_positive

__all__ = [
    "EntropySGD",
    "gamma_scoping",
    "NoiseMode",
    "NOISE_MODES",
    "OuterGradient",
    "OUTER_GRADIENTS",
]

#: Where the inner noise enters: ``"algorithm"`` adds :math:`\sqrt{\eta'}\varepsilon\xi`
#: to the replica after the step (Algorithm 1); ``"gradient"`` adds
#: :math:`\varepsilon\sqrt{2/\eta'}\,\xi` to the inner gradient (the authors' code).
NoiseMode = Literal["algorithm", "gradient"]
NOISE_MODES: tuple[NoiseMode, ...] = get_args(NoiseMode)
#: The outer gradient: ``"gamma"``, :math:`\gamma (W - \mu)` (the gradient of the local
#: entropy); ``"unscaled"``, :math:`W - \mu` (the authors' code).
OuterGradient = Literal["gamma", "unscaled"]
OUTER_GRADIENTS: tuple[OuterGradient, ...] = get_args(OuterGradient)


def gamma_scoping(gamma0: float, gamma1: float) -> Callable[[int], float]:
    r"""Chaudhari's scoping schedule :math:`\gamma_t = \gamma_0 (1 + \gamma_1)^t`.

    Parameters
    ----------
    gamma0 : float
        Coupling at outer step 0 (``> 0``).
    gamma1 : float
        Growth rate per outer step (``>= 0``; 0 is a constant coupling).
    """
    g0 = check_positive("gamma0", gamma0)
    if isinstance(gamma1, bool) or not (math.isfinite(float(gamma1)) and float(gamma1) >= 0):
        raise ValueError(f"gamma1 must be a finite number >= 0, got {gamma1!r}")
    g1 = float(gamma1)

    def gamma(step: int) -> float:
        step = check_int("step", step, minimum=0)
        value = geometric_growth(g0, g1, step)
        if math.isinf(value):  # (1 + gamma1)^t outgrows a float64
            raise ValueError(
                f"the scoping coupling gamma0 (1 + gamma1)^t overflows at step {step} "
                f"(gamma0 = {g0:g}, gamma1 = {g1:g})"
            )
        return value

    return gamma


class EntropySGD(torch.optim.Optimizer):
    r"""Entropy-SGD wrapped around a base optimizer (see the module docstring).

    Parameters
    ----------
    model : torch.nn.Module
        The model; its named parameters resolve ``layers``.
    base_optimizer : torch.optim.Optimizer
        Already built on (some of) the model's parameters, e.g.
        ``torch.optim.SGD(model.parameters(), lr=1.0)``; it applies the outer
        update.  Its ``param_groups`` are shared, so learning-rate schedulers
        may be built on either object.
    gamma : float or callable(int) -> float, keyword-only
        Coupling :math:`\gamma > 0` of the replica to ``W`` (inverse variance of
        the heat kernel), or a schedule of the outer step (scoping).
    inner_steps : int
        Number ``L >= 1`` of SGLD steps (closure calls) per outer step.
    inner_lr : float
        SGLD step :math:`\eta' > 0`; with ``noise = 0`` the inner loop converges
        when :math:`\eta' < 2 / (\lambda_{\max}(\nabla^2 L) + \gamma)`.
    noise : float
        :math:`\varepsilon \ge 0`; the inner noise has standard deviation
        :math:`\sqrt{\eta'}\varepsilon` per coordinate (``noise_mode="algorithm"``)
        or :math:`\sqrt{2\eta'}\varepsilon` (``"gradient"``).  0 turns it off.
    alpha : float
        Weight in ``(0, 1]`` of the newest replica in the running mean
        (``1``: the mean is the last replica).
    layers : str or iterable of str, optional
        Restrict the replica to these parameters (partial Entropy-SGD); ``None``:
        every parameter of the base optimizer (biases included).
    include_biases : bool
        With ``layers``, also include the biases of the selected modules.
    generator : torch.Generator, optional
        Source of the SGLD noise (required when ``noise > 0``); the only
        randomness of the wrapper.
    inner_momentum : float
        Momentum in ``[0, 1)`` of the inner loop (0: none, Algorithm 1); its buffer
        starts at zero every outer step.
    inner_nesterov : bool
        Nesterov form of the inner momentum (needs ``inner_momentum > 0``).
    inner_weight_decay : float
        :math:`\lambda_{wd} \ge 0`, adds :math:`\lambda_{wd} W'` to the inner gradient.
    noise_mode : {"algorithm", "gradient"}
        Where the noise enters (:data:`NoiseMode`).
    outer_gradient : {"gamma", "unscaled"}
        The gradient handed to the base optimizer (:data:`OuterGradient`).

    Notes
    -----
    ``step(closure)`` calls ``closure()`` ``inner_steps`` times with gradients
    enabled and the selected weights at the replica's values; the closure must
    compute the loss, call ``backward()`` and return the loss (the wrapper
    zeroes the gradients before each call).  ``step`` returns the first loss,
    which is at the unperturbed weights ``W``.
    """

    def __init__(
        self,
        model: nn.Module,
        base_optimizer: torch.optim.Optimizer,
        *,
        gamma: float | Callable[[int], float] = 0.03,
        inner_steps: int = 20,
        inner_lr: float = 0.1,
        noise: float = 1e-4,
        alpha: float = 0.75,
        layers: str | Iterable[str] | None = None,
        include_biases: bool = False,
        generator: torch.Generator | None = None,
        inner_momentum: float = 0.0,
        inner_nesterov: bool = False,
        inner_weight_decay: float = 0.0,
        noise_mode: NoiseMode = "algorithm",
        outer_gradient: OuterGradient = "gamma",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(base_optimizer, torch.optim.Optimizer):
            raise ValueError(
                "base_optimizer must be a torch.optim.Optimizer, got "
                f"{type(base_optimizer).__name__}"
            )
        if not callable(gamma):
            gamma = check_positive("gamma", gamma)
        inner_steps = check_int("inner_steps", inner_steps, minimum=1)
        inner_lr = check_positive("inner_lr", inner_lr)
        noise = check_nonnegative("noise", noise)
        alpha = check_positive("alpha", alpha)
        if alpha > 1:
            raise ValueError(f"alpha must lie in (0, 1], got {alpha!r}")
        if noise > 0 and not isinstance(generator, torch.Generator):
            raise ValueError(
                "generator must be a torch.Generator when noise > 0, got "
                f"{type(generator).__name__}"
            )
        inner_momentum = check_nonnegative("inner_momentum", inner_momentum)
        if inner_momentum >= 1:
            raise ValueError(f"inner_momentum must lie in [0, 1), got {inner_momentum!r}")
        if not isinstance(inner_nesterov, bool):
            raise ValueError(f"inner_nesterov must be a bool, got {inner_nesterov!r}")
        if inner_nesterov and inner_momentum == 0:
            raise ValueError("inner_nesterov=True needs inner_momentum in (0, 1), got 0")
        inner_weight_decay = check_nonnegative("inner_weight_decay", inner_weight_decay)
        noise_mode = check_choice("noise_mode", noise_mode, NOISE_MODES)
        outer_gradient = check_choice("outer_gradient", outer_gradient, OUTER_GRADIENTS)
        base_params = [p for g in base_optimizer.param_groups for p in g["params"]]
        owned = {id(p): n for n, p in model.named_parameters()}
        entropic = partial_ids(
            base_params,
            model=model,
            layers=layers,
            include_biases=include_biases and layers is not None,
        )
        self.base_optimizer = base_optimizer
        self.model = model
        self.gamma = gamma
        self.generator = generator
        self.outer_steps = 0
        self.noise_mode = noise_mode
        self.outer_gradient = outer_gradient
        defaults = dict(
            inner_steps=inner_steps,
            inner_lr=inner_lr,
            noise=noise,
            alpha=alpha,
            inner_momentum=inner_momentum,
            inner_nesterov=inner_nesterov,
            inner_weight_decay=inner_weight_decay,
        )
        super().__init__(base_params, defaults)
        self.param_groups = base_optimizer.param_groups  # shared, as in SAM
        self._entropic = [p for p in base_params if id(p) in entropic]
        self._plain = [p for p in base_params if id(p) not in entropic]
        self.entropic_names = tuple(owned.get(id(p), "?") for p in self._entropic)

    @classmethod
    def from_authors(
        cls,
        params: nn.Module | Iterable[Any],
        *,
        lr: float,
        L: int,
        eps: float = 1e-4,
        g0: float = 1e-2,
        g1: float = 0.0,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        inner_lr: float = 0.1,
        beta1: float = 0.75,
        scoping: bool = False,
        layers: str | Iterable[str] | None = None,
        include_biases: bool = False,
        generator: torch.Generator | None = None,
    ) -> EntropySGD:
        r"""Entropy-SGD with the parameters of the authors' PyTorch code.

        The update is that code's rule, written from its conventions (module
        docstring); the outer step is :class:`torch.optim.SGD` with ``lr``,
        ``momentum``, ``nesterov``, ``weight_decay`` on the gradient :math:`W - \mu`.

        ==================  ====================================  ==============================
        authors' name       meaning                               here
        ==================  ====================================  ==============================
        ``lr``              outer step :math:`\eta`               ``SGD(lr=lr)``,
                                                                  ``outer_gradient="unscaled"``
        ``L``               Langevin steps per outer step         ``inner_steps=L``
        ``eps``             noise scale :math:`\varepsilon`       ``noise=eps``,
                                                                  ``noise_mode="gradient"``
        ``g0``              coupling :math:`\gamma_0`             ``gamma=g0``
        ``g1``              scoping rate :math:`\gamma_1`         ``gamma=gamma_scoping(g0, g1)``
                                                                  only with ``scoping=True``
        ``momentum``        momentum 0.9 (training script)        ``SGD(momentum=...)`` and
                                                                  ``inner_momentum``
        ``nesterov``        Nesterov momentum                     ``SGD(nesterov=...)`` and
                                                                  ``inner_nesterov``
        ``weight_decay``    weight decay (training script)        ``SGD(weight_decay=...)`` and
                                                                  ``inner_weight_decay``
        (fixed 0.1)         Langevin step :math:`\eta'`           ``inner_lr=inner_lr``
        (fixed 0.75)        weight of the *old* mean, ``beta1``   ``alpha = 1 - beta1``
        ==================  ====================================  ==============================

        Parameters
        ----------
        params : torch.nn.Module or iterable of nn.Parameter or of dict
            The model (needed with ``layers``) or its parameters / parameter groups.
        lr, L, eps, g0, g1, momentum, nesterov, weight_decay, inner_lr, beta1 :
            The authors' parameters (table); ``L >= 1`` (their ``L = 0`` is plain
            SGD: use :class:`torch.optim.SGD`), ``beta1`` in ``[0, 1)``.
        scoping : bool, keyword-only
            The code's counter of outer steps is never incremented, so its
            :math:`\gamma_0 (1 + \gamma_1)^t` stays :math:`\gamma_0`: ``False``
            (default) reproduces that, ``True`` applies the scoping of the paper.
        layers, include_biases, generator :
            As for :class:`EntropySGD` (``generator`` is required when ``eps > 0``).

        Notes
        -----
        Two differences remain.  The code also evaluates the closure once at
        :math:`W` before its Langevin loop (for reporting); here the first Langevin
        call plays that role, so a minibatch-drawing closure sees ``L`` batches per
        step, not ``L + 1``.  And its outer momentum buffer starts at the first
        minibatch gradient rather than at the first outer gradient (as
        :class:`torch.optim.SGD` does), which changes the first steps only.
        """
        if isinstance(params, nn.Module):
            model, groups = params, list(params.parameters())
        else:
            groups = list(params)
            flat = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
            if not all(isinstance(p, nn.Parameter) for p in flat):
                raise ValueError("params must be an nn.Module, nn.Parameters or parameter groups")
            model = nn.Module()
            for i, p in enumerate(flat):
                model.register_parameter(f"p{i}", p)
            if layers is not None:
                raise ValueError("layers needs the model: pass the nn.Module as params")
        L = check_int("L", L, minimum=1)
        beta1 = check_nonnegative("beta1", beta1)
        if beta1 >= 1:
            raise ValueError(f"beta1 must lie in [0, 1), got {beta1!r}")
        momentum = check_nonnegative("momentum", momentum)
        use_nesterov = bool(nesterov) and momentum > 0
        base = torch.optim.SGD(
            groups,
            lr=check_positive("lr", lr),
            momentum=momentum,
            nesterov=use_nesterov,
            weight_decay=check_nonnegative("weight_decay", weight_decay),
        )
        return cls(
            model,
            base,
            gamma=gamma_scoping(g0, g1) if scoping else check_positive("g0", g0),
            inner_steps=L,
            inner_lr=inner_lr,
            noise=check_nonnegative("eps", eps),
            alpha=1.0 - beta1,
            layers=layers,
            include_biases=include_biases,
            generator=generator,
            inner_momentum=momentum,
            inner_nesterov=use_nesterov,
            inner_weight_decay=weight_decay,
            noise_mode="gradient",
            outer_gradient="unscaled",
        )

    def gamma_at(self, step: int | None = None) -> float:
        """Coupling at outer ``step`` (default: the next step), validated ``> 0``."""
        step = self.outer_steps if step is None else check_int("step", step, minimum=0)
        return check_positive("gamma", self.gamma(step) if callable(self.gamma) else self.gamma)

    def _call(self, closure: Callable[[], Any]) -> Any:
        for p in self._entropic + self._plain:
            p.grad = None
        with torch.enable_grad():
            return closure()

    def _xi(self, p: torch.Tensor) -> torch.Tensor:
        if self.generator is None:  # excluded by __init__ (noise > 0 needs one)
            raise ValueError("generator must be a torch.Generator when noise > 0")
        xi = torch.randn(
            p.shape, generator=self.generator, dtype=p.dtype, device=self.generator.device
        )
        return xi.to(p.device)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One outer step: ``inner_steps`` SGLD steps, then the base optimizer's step.

        Returns
        -------
        The closure's return value at the unperturbed weights (first call).
        """
        if closure is None or not callable(closure):
            raise ValueError(
                "EntropySGD.step needs a closure that computes the loss, calls "
                "backward() and returns the loss"
            )
        d = self.defaults
        gamma, lr, alpha = self.gamma_at(), d["inner_lr"], d["alpha"]
        mom, wd = d["inner_momentum"], d["inner_weight_decay"]
        in_gradient = self.noise_mode == "gradient"
        # noise scale: after the step (Algorithm 1) or inside the gradient (authors' code)
        sd = d["noise"] * (math.sqrt(2.0 / lr) if in_gradient else math.sqrt(lr))
        centre = [p.detach().clone() for p in self._entropic]
        mean = [c.clone() for c in centre]
        bufs = [torch.zeros_like(c) for c in centre] if mom > 0 else []
        first = None
        plain_grads: list[torch.Tensor | None] = []
        for ell in range(d["inner_steps"]):
            loss = self._call(closure)
            if ell == 0:
                first = loss
                plain_grads = [
                    None if p.grad is None else p.grad.detach().clone() for p in self._plain
                ]
            for i, (p, w, m) in enumerate(zip(self._entropic, centre, mean, strict=True)):
                drift = torch.sub(p, w).mul_(gamma)
                if p.grad is not None:
                    drift.add_(p.grad)
                if in_gradient and sd > 0:
                    drift.add_(self._xi(p), alpha=sd)
                if wd > 0:
                    drift.add_(p, alpha=wd)
                if mom > 0:
                    bufs[i].mul_(mom).add_(drift)
                    drift = drift.add_(bufs[i], alpha=mom) if d["inner_nesterov"] else bufs[i]
                p.sub_(drift, alpha=lr)
                if not in_gradient and sd > 0:
                    p.add_(self._xi(p), alpha=sd)
                m.mul_(1.0 - alpha).add_(p, alpha=alpha)
        scale = gamma if self.outer_gradient == "gamma" else 1.0
        for p, w, m in zip(self._entropic, centre, mean, strict=True):
            p.copy_(w)
            p.grad = torch.sub(w, m).mul_(scale)
        for p, g in zip(self._plain, plain_grads, strict=True):
            p.grad = g
        self.base_optimizer.step()
        self.outer_steps += 1
        return first

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state and the outer step count."""
        return {"base": self.base_optimizer.state_dict(), "outer_steps": self.outer_steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        if set(state_dict) != {"base", "outer_steps"}:
            raise ValueError(
                f"state_dict must have the keys 'base' and 'outer_steps', got {sorted(state_dict)}"
            )
        self.base_optimizer.load_state_dict(state_dict["base"])
        self.param_groups = self.base_optimizer.param_groups  # loading rebinds them
        self.outer_steps = check_int("outer_steps", state_dict["outer_steps"], minimum=0)
