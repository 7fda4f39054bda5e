r"""Two-step variational schemes for local entropy and heat regularisation
(*Variational Characterizations of Local Entropy and Heat Regularization in Deep
Learning*, García Trillos et al., Entropy 2019).

Write :math:`\tau = 1/\gamma`, :math:`N(x, \tau)` the Gaussian of mean ``x`` and
covariance :math:`\tau I`, ``f`` the loss returned by the closure and
:math:`\beta` an inverse temperature (1 in that paper).  Local entropy (eq 1 of the
paper up to a constant) and the heat-regularised loss are

.. math::

    F(x) = -\log \int e^{-\beta f(y)}\, N(y; x, \tau)\, dy, \qquad
    H(x) = E_{y \sim N(x, \tau)}[f(y)] .

Both are minimised by alternating a shift of a density,
:math:`\rho_k(y) \propto e^{-\beta f(y)} N(y; x_k, \tau)`, with a best Gaussian
approximation of :math:`\rho_k` in Kullback-Leibler divergence:

* **Local entropy: moment matching** (:class:`MomentMatching`).  The Gaussian in the
  *second* argument, :math:`x_{k+1} = \arg\min_x KL(\rho_k \| N(x, \tau)) =
  E_{\rho_k}[y]`.  By the Gibbs variational principle
  :math:`F(x_{k+1}) \le F(x_k)`.  The expectation needs loss values only: with
  :math:`y_i = x_k + \delta_i`, :math:`\delta_i \sim N(0, \tau)`, the self-normalised
  importance-sampling estimate is
  :math:`x_{k+1} = x_k + \sum_i \bar w_i \delta_i`,
  :math:`\bar w_i \propto e^{-\beta f(y_i)}` (gradient-free, parallel over samples),
  whose effective sample size is :math:`1 / \sum_i \bar w_i^2`.
* **Heat regularisation: a proximal step** (:class:`HeatRegularisation`).  The
  Gaussian in the *first* argument:
  :math:`KL(N(x, \tau) \| \rho_k) = \beta H(x) + \|x - x_k\|^2 / (2\tau) + \text{const}`,
  so :math:`x_{k+1} = \arg\min_x \beta H(x) + \frac{\gamma}{2}\|x - x_k\|^2` and
  :math:`H(x_{k+1}) \le H(x_k)`.  The argmin is approached by ``inner_steps``
  gradient steps with the reparameterised gradient
  :math:`\beta\, \frac1n \sum_i \nabla f(x + \delta_i) + \gamma (x - x_k)`.

On :math:`f(y) = \frac\lambda2 \|y - c\|^2` both exact steps give
:math:`x_{k+1} - c = (x_k - c) / (1 + \beta\lambda\tau)`.

**Evaluation.**  The ``n`` losses of a step are computed in one batched call:
the closure is run under :func:`torch.vmap` with the selected parameters replaced
by the stacked :math:`x + \delta_i` (:func:`torch.func.functional_call`), so the
closure must be a pure function of the parameters: it computes the loss of
``model`` on a fixed minibatch and returns it, **without** calling ``backward()``
(no ``.item()``, no in-place update of parameters or buffers: BatchNorm in
training mode and dropout are not supported; use ``model.eval()``).  One step
calls it once at :math:`x_k` plus once per chunk of samples (``chunk_size``), and
every call must evaluate the same loss (the same minibatch).

**Partial schemes.**  With ``layers`` only the selected tensors are perturbed
and moved; the others stay at :math:`x_k` (the limit :math:`\tau \to 0` on their
coordinates).  ``gamma`` is set per parameter group, so the Gaussian may be
anisotropic across groups.  ``gamma = inf`` (no smoothing) leaves a group where
it is; ``samples = 0`` is the identity for moment matching and the unsmoothed
proximal gradient step for heat regularisation (plain SGD with ``inner_steps = 1``).

Memory: the ``n`` displacements of the selected tensors, ``n * |selected|`` floats.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.func import functional_call

from anisotropy.kernels.gaussian import GaussianKernel
from anisotropy.optim._partial import partial_ids
from anisotropy.smoothing.sampling import sample_perturbations
from anisotropy.validation import check_int, check_positive

__all__ = [
    "ESS_WARN_FRACTION",
    "EffectiveSampleSizeWarning",
    "VariationalStepInfo",
    "importance_weights",
    "local_entropy_estimate",
    "MomentMatching",
    "HeatRegularisation",
]

#: Default threshold of ESS / n below which :class:`MomentMatching` warns: the
#: standard error of a self-normalised estimate grows like 1/sqrt(ESS), and when
#: fewer than a tenth of the samples carry the weight the step is driven by a
#: handful of draws (Kong's rule of thumb; lower it for deliberately sharp rho).
ESS_WARN_FRACTION = 0.1


class EffectiveSampleSizeWarning(RuntimeWarning):
    """The importance weights of a moment-matching step collapsed (ESS / n below the threshold)."""


@dataclass(frozen=True)
class VariationalStepInfo:
    """What one step measured (``optimizer.last_info``).

    Attributes
    ----------
    loss : float
        ``f(x_k)``, the closure at the weights before the step.
    samples : int
        Number ``n`` of Gaussian samples per evaluation.
    objective : float
        Monte Carlo estimate at :math:`x_k` of the smoothed objective:
        :math:`\\hat F = -\\log \\frac1n \\sum_i e^{-\\beta f(y_i)}` (moment matching)
        or :math:`\\hat H = \\frac1n \\sum_i f(y_i)` at the first inner step (heat);
        ``f(x_k)`` when nothing is sampled.
    ess : float
        Effective sample size :math:`1/\\sum_i \\bar w_i^2` of the importance
        weights (moment matching), ``n`` for the unweighted heat samples.
    """

    loss: float
    samples: int
    objective: float
    ess: float

    @property
    def ess_fraction(self) -> float:
        """``ess / samples`` (1 when nothing is sampled)."""
        return self.ess / self.samples if self.samples else 1.0


def importance_weights(losses: torch.Tensor, *, beta: float = 1.0) -> tuple[torch.Tensor, float]:
    r"""Self-normalised weights :math:`\bar w_i \propto e^{-\beta f_i}` and their ESS.

    Parameters
    ----------
    losses : torch.Tensor, shape (n,)
        Loss values; ``+inf`` gets weight 0, NaN is rejected.
    beta : float, keyword-only
        Inverse temperature ``> 0``.

    Returns
    -------
    (weights, ess) : normalised weights (shape (n,)) and :math:`1/\sum_i \bar w_i^2`.
    """
    beta = check_positive("beta", beta)
    if losses.dim() != 1 or losses.numel() == 0:
        raise ValueError(f"losses must have shape (n,) with n >= 1, got {tuple(losses.shape)}")
    if bool(torch.isnan(losses).any()) or not bool((losses < math.inf).any()):
        raise ValueError("losses must not be NaN and at least one must be finite")
    w = torch.softmax(-beta * losses, dim=0)
    return w, float(1.0 / (w * w).sum())


def local_entropy_estimate(losses: torch.Tensor, *, beta: float = 1.0) -> float:
    r""":math:`\hat F = -\log \frac1n \sum_i e^{-\beta f_i}` (losses at Gaussian samples)."""
    beta = check_positive("beta", beta)
    n = losses.numel()
    return float(-(torch.logsumexp(-beta * losses, dim=0) - math.log(n)))


class _Closure(nn.Module):
    """Wraps ``closure`` so that :func:`functional_call` swaps ``model``'s parameters."""

    def __init__(self, model: nn.Module, closure: Callable[[], Any]) -> None:
        super().__init__()
        self.model = model
        self._closure = closure

    def forward(self) -> torch.Tensor:
        out = self._closure()
        if not isinstance(out, torch.Tensor) or out.numel() != 1:
            raise ValueError("the closure must return the loss as a one-element tensor")
        return out.reshape(())


class _Sampling(NamedTuple):
    """The keyword arguments both schemes share (checked by :class:`_TwoStep`)."""

    model: nn.Module
    samples: int
    beta: float
    layers: str | Iterable[str] | None
    include_biases: bool
    generator: torch.Generator | None
    chunk_size: int | None


class _TwoStep(torch.optim.Optimizer):
    """Shared machinery: argument checks, groups with ``gamma`` and ``lr``, sampling,
    batched losses.

    A subclass sets what its :meth:`_check_group` reads before calling ``__init__``,
    which checks every group once.  :meth:`_active`, :meth:`_draw` and :meth:`_losses`
    are also the internal API of
    :func:`~anisotropy.optim.diagnostics.diagnose_moment_matching`.
    """

    _lr_max: float = math.inf

    def __init__(
        self, params: Iterable[Any], *, gamma: float, lr: float, sampling: _Sampling
    ) -> None:
        model, samples, beta, layers, include_biases, generator, chunk_size = sampling
        if not isinstance(model, nn.Module):
            raise ValueError(
                "model must be the torch.nn.Module the closure evaluates (its parameters "
                f"are swapped for the samples), got {type(model).__name__}"
            )
        super().__init__(params, dict(gamma=gamma, lr=lr))
        for group in self.param_groups:
            self._check_group(group)
        self.samples = check_int("samples", samples, minimum=0)
        self.beta = check_positive("beta", beta)
        if chunk_size is not None:
            chunk_size = check_int("chunk_size", chunk_size, minimum=1)
        self.chunk_size = chunk_size
        if self.samples > 0 and not isinstance(generator, torch.Generator):
            raise ValueError(
                "generator must be a torch.Generator when samples > 0, got "
                f"{type(generator).__name__}"
            )
        self.generator = generator
        held = [p for g in self.param_groups for p in g["params"]]
        chosen = partial_ids(held, model=model, layers=layers, include_biases=include_biases)
        names = {id(p): n for n, p in model.named_parameters()}
        stray = [i for i, p in enumerate(held) if id(p) in chosen and id(p) not in names]
        if stray:
            raise ValueError(f"params {stray} are not parameters of model")
        self.model = model
        self._chosen = chosen
        self._names = names
        self.last_info: VariationalStepInfo | None = None

    def _check_group(self, group: dict[str, Any]) -> None:
        check_positive("gamma", group["gamma"], allow_inf=True)
        lr = check_positive("lr", group["lr"])
        if lr > self._lr_max:
            raise ValueError(f"lr must lie in (0, {self._lr_max:g}], got {lr!r}")

    def _active(self) -> list[tuple[str, torch.Tensor, float]]:
        """(name, tensor, gamma) of the perturbed tensors (finite gamma, selected).

        Internal API shared with :func:`~anisotropy.optim.diagnostics.diagnose_moment_matching`.
        """
        out = []
        for group in self.param_groups:
            self._check_group(group)
            gamma = float(group["gamma"])
            if math.isinf(gamma):
                continue
            out += [
                (self._names[id(p)], p, gamma) for p in group["params"] if id(p) in self._chosen
            ]
        return out

    def _draw(self, active: Sequence[tuple[str, torch.Tensor, float]]) -> list[torch.Tensor]:
        """``n`` displacements :math:`N(0, 1/\\gamma)` of each active tensor, shape (n, *p).

        Internal API shared with :func:`~anisotropy.optim.diagnostics.diagnose_moment_matching`.
        """
        if self.generator is None:  # excluded by __init__ (samples > 0 needs one)
            raise ValueError("generator must be a torch.Generator when samples > 0")
        deltas = []
        for name, p, gamma in active:
            d = sample_perturbations(
                [(name, p)], self.samples, generator=self.generator, kernel=GaussianKernel(gamma)
            )
            deltas.append(d[name])
        return deltas

    def _losses(
        self,
        closure: Callable[[], Any],
        names: Sequence[str],
        centres: Sequence[torch.Tensor],
        deltas: Sequence[torch.Tensor],
    ) -> torch.Tensor:
        """Losses at ``centre + delta_i`` for all ``i`` (one vmapped evaluation), shape (n,).

        Internal API shared with :func:`~anisotropy.optim.diagnostics.diagnose_moment_matching`.
        """
        wrapper = _Closure(self.model, closure)
        keys = [f"model.{n}" for n in names]

        def one(*ds: torch.Tensor) -> torch.Tensor:
            swapped = {k: c + d for k, c, d in zip(keys, centres, ds, strict=True)}
            return functional_call(wrapper, swapped, ())

        return torch.vmap(one, chunk_size=self.chunk_size)(*deltas)

    @staticmethod
    def _centre_loss(closure: Callable[[], Any] | None) -> tuple[Callable[[], Any], torch.Tensor]:
        """The checked closure and its loss at the current weights."""
        if closure is None or not callable(closure):
            raise ValueError(
                "step needs a closure that computes the loss at the current parameters "
                "and returns it (without calling backward())"
            )
        with torch.no_grad():
            loss = closure()
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError("the closure must return the loss as a one-element tensor")
        return closure, loss.detach().reshape(())

    def _count(self, active: Sequence[tuple[str, torch.Tensor, float]]) -> None:
        for _, p, _ in active:
            st = self.state[p]
            st["step"] = st.get("step", 0) + 1


class MomentMatching(_TwoStep):
    r"""Local entropy by moment matching, :math:`x_{k+1} = E_{\rho_k}[y]` (module docstring).

    Parameters
    ----------
    params : iterable of torch.Tensor or of dict
        Parameters or parameter groups of ``model``; a group may set ``gamma``, ``lr``.
    model : torch.nn.Module, keyword-only
        The module the closure evaluates; its parameter names resolve ``layers``.
    gamma : float, keyword-only
        Precision :math:`\gamma = 1/\tau` of the Gaussian, in ``(0, inf]``
        (``inf``: no smoothing, the group does not move).
    samples : int, keyword-only
        Number ``n >= 0`` of Gaussian samples per step (0: the identity).
    lr : float, keyword-only
        Damping in ``(0, 1]``: :math:`x_{k+1} = x_k + lr\,(E_{\rho_k}[y] - x_k)`; 1 is
        the exact two-step scheme (the only value with the monotonicity guarantee).
    beta : float, keyword-only
        Inverse temperature ``> 0`` of :math:`e^{-\beta f}` (1 in the paper).
    layers, include_biases : keyword-only
        Act on these tensors only (names, module names or globs as for
        :class:`~anisotropy.smoothing.losses.PartialLocalEntropy`).
    generator : torch.Generator, keyword-only
        The only randomness (required when ``samples > 0``).
    chunk_size : int, optional, keyword-only
        Evaluate the samples in chunks of this size (memory); ``None``: all at once.
    ess_warn : float, keyword-only
        Warn (:class:`EffectiveSampleSizeWarning`) when ESS / n falls below this,
        in ``[0, 1]`` (default :data:`ESS_WARN_FRACTION`; 0 never warns).

    Notes
    -----
    ``step(closure)`` returns ``f(x_k)``; ``last_info`` holds the
    :class:`VariationalStepInfo` (ESS, :math:`\hat F(x_k)`).  Gradient-free: no
    ``.grad`` is read or written.

    Examples
    --------
    >>> opt = MomentMatching(model.parameters(), model=model, gamma=1e4, samples=256,
    ...                      layers="fc2", generator=torch.Generator().manual_seed(0))
    >>> opt.step(lambda: F.cross_entropy(model(x), t)); opt.last_info.ess
    """

    _lr_max = 1.0

    def __init__(
        self,
        params: Iterable[Any],
        *,
        model: nn.Module,
        gamma: float,
        samples: int = 64,
        lr: float = 1.0,
        beta: float = 1.0,
        layers: str | Iterable[str] | None = None,
        include_biases: bool = False,
        generator: torch.Generator | None = None,
        chunk_size: int | None = None,
        ess_warn: float = ESS_WARN_FRACTION,
    ) -> None:
        sampling = _Sampling(model, samples, beta, layers, include_biases, generator, chunk_size)
        super().__init__(params, gamma=gamma, lr=lr, sampling=sampling)
        if isinstance(ess_warn, bool) or not 0.0 <= float(ess_warn) <= 1.0:
            raise ValueError(f"ess_warn must lie in [0, 1], got {ess_warn!r}")
        self.ess_warn = float(ess_warn)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One moment-matching step; returns the loss at the weights before it."""
        closure, loss = self._centre_loss(closure)
        active = self._active() if self.samples > 0 else []
        if not active:
            self.last_info = VariationalStepInfo(float(loss), 0, float(loss), 0.0)
            return loss
        deltas = self._draw(active)
        losses = self._losses(
            closure,
            [n for n, _, _ in active],
            [p.detach() for _, p, _ in active],
            deltas,
        )
        w, ess = importance_weights(losses.detach(), beta=self.beta)
        lrs = {id(p): g["lr"] for g in self.param_groups for p in g["params"]}
        for (_, p, _), d in zip(active, deltas, strict=True):
            shift = torch.tensordot(w.to(d.dtype), d, dims=1)  # sum_i w_i delta_i
            p.add_(shift, alpha=lrs[id(p)])
        self._count(active)
        self.last_info = VariationalStepInfo(
            float(loss), self.samples, local_entropy_estimate(losses, beta=self.beta), ess
        )
        if ess < self.ess_warn * self.samples:
            warnings.warn(
                f"effective sample size {ess:.3g} of {self.samples} samples "
                f"(fraction {ess / self.samples:.3g} < ess_warn={self.ess_warn:g}): the "
                "importance weights collapsed; raise gamma, lower beta or draw more samples",
                EffectiveSampleSizeWarning,
                stacklevel=2,
            )
        return loss


class HeatRegularisation(_TwoStep):
    r"""Heat regularisation by proximal steps on the Gaussian-smoothed loss (module docstring).

    Parameters
    ----------
    params, model, gamma, beta, layers, include_biases, generator, chunk_size :
        As for :class:`MomentMatching` (``gamma = inf``: the group does not move).
    samples : int, keyword-only
        Number ``n >= 0`` of reparameterised samples per inner gradient; 0 uses the
        unsmoothed gradient :math:`\nabla f(x)`.
    lr : float, keyword-only
        Step ``> 0`` of the inner gradient descent on
        :math:`\beta H(x) + \frac\gamma2\|x - x_k\|^2`; it converges (without noise)
        for ``lr < 2 / (beta * L_f + gamma)``, ``L_f`` the curvature of ``f``.
    inner_steps : int, keyword-only
        Gradient steps ``>= 1`` per proximal step.  The first starts at
        :math:`x_k`, where the proximal term vanishes: with ``samples = 0`` and
        ``inner_steps = 1`` the step is plain SGD with learning rate ``lr * beta``.

    Notes
    -----
    ``step(closure)`` returns ``f(x_k)``; ``last_info`` holds :math:`\hat H(x_k)`.  The
    gradient is taken by autograd through the batched evaluation (the closure must not
    call ``backward()``); ``.grad`` is neither read nor written.

    Examples
    --------
    >>> opt = HeatRegularisation(model.parameters(), model=model, gamma=1e3, samples=16,
    ...                          lr=1e-3, inner_steps=5, generator=torch.Generator().manual_seed(0))
    >>> opt.step(lambda: F.cross_entropy(model(x), t))
    """

    def __init__(
        self,
        params: Iterable[Any],
        *,
        model: nn.Module,
        gamma: float,
        lr: float,
        samples: int = 16,
        inner_steps: int = 1,
        beta: float = 1.0,
        layers: str | Iterable[str] | None = None,
        include_biases: bool = False,
        generator: torch.Generator | None = None,
        chunk_size: int | None = None,
    ) -> None:
        # before the base checks the groups: _check_group reads it
        self.inner_steps = check_int("inner_steps", inner_steps, minimum=1)
        sampling = _Sampling(model, samples, beta, layers, include_biases, generator, chunk_size)
        super().__init__(params, gamma=gamma, lr=lr, sampling=sampling)

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        # the proximal term alone makes the inner loop diverge unless lr * gamma < 2
        # (it is inactive with one inner step, which starts where it vanishes)
        gamma, lr = float(group["gamma"]), float(group["lr"])
        if getattr(self, "inner_steps", 1) > 1 and math.isfinite(gamma) and not lr * gamma < 2.0:
            raise ValueError(
                f"lr must lie in (0, 2/gamma) = (0, {2.0 / gamma:g}) with inner_steps > 1 "
                f"(the proximal inner loop diverges otherwise), got lr={lr!r}"
            )

    def _gradient(
        self, closure: Callable[[], Any], active: Sequence[tuple[str, torch.Tensor, float]]
    ) -> tuple[list[torch.Tensor], float]:
        """Reparameterised gradient of :math:`\\hat H` at the current weights, and its value."""
        names = [n for n, _, _ in active]
        xs = [p.detach().requires_grad_(True) for _, p, _ in active]
        with torch.enable_grad():
            if self.samples == 0:
                wrapper = _Closure(self.model, closure)
                swapped = {f"model.{n}": x for n, x in zip(names, xs, strict=True)}
                value = functional_call(wrapper, swapped, ())
            else:
                value = self._losses(closure, names, xs, self._draw(active)).mean()
            grads = torch.autograd.grad(value, xs, allow_unused=True)
        out = [torch.zeros_like(x) if g is None else g for x, g in zip(xs, grads, strict=True)]
        return out, float(value.detach())

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One proximal step (``inner_steps`` gradient steps); returns the loss before it."""
        closure, loss = self._centre_loss(closure)
        active = self._active()
        if not active:
            self.last_info = VariationalStepInfo(float(loss), 0, float(loss), float(self.samples))
            return loss
        lrs = {id(p): g["lr"] for g in self.param_groups for p in g["params"]}
        anchors = [p.detach().clone() for _, p, _ in active]
        objective = float(loss)
        for j in range(self.inner_steps):
            grads, value = self._gradient(closure, active)
            if j == 0:
                objective = value
            for (_, p, gamma), g, a in zip(active, grads, anchors, strict=True):
                d = g.mul_(self.beta) if self.beta != 1.0 else g
                d.add_(torch.sub(p, a).mul_(gamma))  # proximal term, 0 at the first step
                p.add_(d, alpha=-lrs[id(p)])
        self._count(active)
        self.last_info = VariationalStepInfo(
            float(loss), self.samples, objective, float(self.samples)
        )
        return loss
