r"""Signal and noise of one importance-sampled moment-matching step.

With :math:`\tau = 1/\gamma` and :math:`\rho(y) \propto e^{-\beta f(y)} N(y; x, \tau)`
(:mod:`anisotropy.optim.variational`), differentiating
:math:`F(x) = -\log \int e^{-\beta f(y)} N(y; x, \tau)\, dy` under the integral
(:math:`\nabla_x N = N\,(y - x)/\tau`) gives

.. math::

    E_\rho[y - x] = -\tau\, \nabla F(x), \qquad
    \nabla F(x) = \beta \nabla f(x) + O(\tau),

so the exact moment-matching step (``lr = 1``) is a gradient step of size
:math:`\tau` on the local entropy ``F`` (eq 1 of the paper with the heat kernel),
i.e. of size :math:`\beta\tau` on ``f`` for small :math:`\tau`.  The
self-normalised estimate :math:`\sum_i \bar w_i \delta_i`,
:math:`\delta_i \sim N(0, \tau I_d)` on the ``d`` perturbed coordinates, has noise of
norm about :math:`\sqrt{\tau d / \mathrm{ESS}}` (exactly
:math:`\sqrt{\tau d / n}` for uniform weights) against the signal
:math:`\beta\tau \|\nabla f\|`.  Their ratio

.. math::

    \mathrm{SNR} = \beta \sqrt{\tau}\, \|\nabla f\| \sqrt{\mathrm{ESS} / d}

is bounded: the log-weights :math:`-\beta f(x + \delta_i)` spread with standard
deviation :math:`s = \beta\sqrt\tau \|\nabla f\|` (to first order), and for lognormal
weights :math:`\mathrm{ESS} \approx n e^{-s^2}`, so
:math:`\mathrm{SNR} \approx s\, e^{-s^2/2} \sqrt{n/d} \le e^{-1/2}\sqrt{n/d}`
(at :math:`s = 1`), whatever :math:`\beta` and :math:`\gamma`.

On :math:`f(y) = \frac\lambda2 \|y - c\|^2` the expectation is exact:
:math:`E_\rho[y - x] = -(x - c)\, \beta\lambda\tau / (1 + \beta\lambda\tau)`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from anisotropy.optim.variational import MomentMatching, importance_weights
from anisotropy.validation import check_int, check_positive

__all__ = ["MomentMatchingDiagnosis", "diagnose_moment_matching"]


@dataclass(frozen=True)
class MomentMatchingDiagnosis:
    """One importance-sampled moment-matching step, measured without taking it.

    Attributes
    ----------
    samples, dim : int
        ``n`` and the number ``d`` of perturbed coordinates.
    ess : float
        Effective sample size :math:`1/\\sum_i \\bar w_i^2`.
    grad_norm : float
        :math:`\\|\\nabla f(x)\\|` on the perturbed coordinates (autograd).
    step_norm : float
        :math:`\\|\\sum_i \\bar w_i \\delta_i\\|`.
    useful : float
        Signed projection of the step on the unit vector along :math:`-\\nabla f`,
        :math:`\\langle \\sum_i \\bar w_i \\delta_i, -\\nabla f\\rangle / \\|\\nabla f\\|`
        (0 when the gradient vanishes).
    signal : float
        Its first-order expectation :math:`\\beta \\tau \\|\\nabla f\\|`.
    noise : float
        The predicted noise norm :math:`\\sqrt{\\tau d / \\mathrm{ESS}}`.
    """

    samples: int
    dim: int
    ess: float
    grad_norm: float
    step_norm: float
    useful: float
    signal: float
    noise: float

    @property
    def snr(self) -> float:
        """``signal / noise`` (module docstring)."""
        return self.signal / self.noise


def diagnose_moment_matching(
    model: nn.Module,
    closure: Callable[[], Any],
    *,
    gamma: float,
    samples: int,
    generator: torch.Generator,
    beta: float = 1.0,
    layers: str | Iterable[str] | None = None,
    include_biases: bool = False,
) -> MomentMatchingDiagnosis:
    """Measure one moment-matching step at the current weights (the model is not changed).

    Parameters
    ----------
    model, closure :
        As for :class:`~anisotropy.optim.variational.MomentMatching`: the closure returns
        the loss of ``model`` on a fixed minibatch without calling ``backward()``.
    gamma, samples, beta, layers, include_biases : keyword-only
        The step's settings (one finite ``gamma > 0``, ``samples >= 1``).
    generator : torch.Generator, keyword-only
        Source of the ``n`` Gaussian displacements.
    """
    gamma = check_positive("gamma", gamma)
    samples = check_int("samples", samples, minimum=1)
    opt = MomentMatching(
        model.parameters(),
        model=model,
        gamma=gamma,
        samples=samples,
        beta=beta,
        layers=layers,
        include_biases=include_biases,
        generator=generator,
        ess_warn=0.0,
    )
    # the internal API of the two-step schemes (_active, _draw, _losses: the draws and
    # batched losses of MomentMatching.step), so that the measured step is the one taken
    active = opt._active()
    params = [p for _, p, _ in active]
    with torch.enable_grad():
        grads = torch.autograd.grad(closure(), params, allow_unused=True)
    g = torch.cat(
        [
            (torch.zeros_like(p) if d is None else d).reshape(-1)
            for p, d in zip(params, grads, strict=True)
        ]
    )
    with torch.no_grad():
        deltas = opt._draw(active)
        losses = opt._losses(
            closure, [n for n, _, _ in active], [p.detach() for p in params], deltas
        )
        w, ess = importance_weights(losses, beta=opt.beta)
        step = torch.cat([torch.tensordot(w.to(d.dtype), d, dims=1).reshape(-1) for d in deltas])
    gn, tau, dim = float(g.norm()), 1.0 / gamma, step.numel()
    useful = float(-(step @ g.to(step.dtype)) / gn) if gn > 0 else 0.0
    return MomentMatchingDiagnosis(
        samples=samples,
        dim=dim,
        ess=ess,
        grad_norm=gn,
        step_norm=float(step.norm()),
        useful=useful,
        signal=opt.beta * tau * gn,
        noise=math.sqrt(tau * dim / ess),
    )
