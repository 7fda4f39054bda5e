r"""Local energy: the expected loss increase under weight noise.

*Entropic gradient descent algorithms and wide flat minima* (Pittorino et al., ICLR 2021)
compare two flatness measures of a minimum ``W``:
the local entropy (here :func:`analysis.free_entropy.local_free_entropy`) and
the *local energy*

.. math::

    \delta E(\sigma) = \mathbb{E}_{z \sim N(0, I)}\big[L(W + \sigma\, z \odot |W|)\big] - L(W)

(multiplicative noise: each weight is perturbed in proportion to its size, so
the measure does not change when a layer is rescaled), or with additive noise
:math:`L(W + \sigma z)`.  As ``z`` is symmetric, ``z ⊙ |W|`` and ``z ⊙ W`` have
the same law.  Here the noise is restricted to chosen parameters ``U`` (layers
picked by name as for the partial losses, :func:`anisotropy.smoothing.sampling.select_parameters`),
which gives a *partial* local energy in the sense of the paper's eq 13.

For a loss that is exactly quadratic in the perturbed weights, with Hessian
``H``, the expectation is exact at second order:
``δE = σ²/2 Σ_i H_ii W_i²`` (multiplicative) and ``σ²/2 tr H`` (additive).

Estimation is plain Monte Carlo over ``n`` draws of ``z`` (standard normal by
default; any unit-scale :class:`anisotropy.kernels.Kernel` may replace it, and
then ``σ²`` above becomes ``σ² Var z``), drawn by
:func:`anisotropy.smoothing.sampling.sample_perturbations` from the
``torch.Generator`` passed in), evaluated out of place and ``batch_size``
configurations at a time by :func:`anisotropy.smoothing.stacked.stacked_outputs` under
:func:`torch.no_grad`.  Every batch also evaluates the centre ``L(W)`` with
the same arithmetic, so ``σ = 0`` gives exactly 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from anisotropy.kernels import Kernel, KernelName, as_kernel
from anisotropy.smoothing.sampling import is_bias, sample_perturbations, select_parameters
from anisotropy.smoothing.stacked import children_for, stacked_outputs
from anisotropy.validation import check_choice, check_int

__all__ = ["Noise", "NOISES", "FlatnessResult", "local_energy", "local_energy_curve"]

Noise = Literal["multiplicative", "additive"]
NOISES: tuple[str, ...] = ("multiplicative", "additive")


@dataclass(frozen=True)
class FlatnessResult:
    r"""Monte Carlo estimate of the local energy :math:`\delta E(\sigma)`.

    Attributes
    ----------
    mean : float
        :math:`\frac1n\sum_a (L(W + \Delta^a) - L(W))`.
    stderr : float
        Sample standard deviation (ddof 1) of the ``n`` differences over ``sqrt(n)``.
    n : int
        Number of noise draws.
    sigma : float
        Noise scale.
    noise : str
        ``"multiplicative"`` or ``"additive"``.
    centre_loss : float
        :math:`L(W)`.
    n_perturbed : int
        Number of perturbed coordinates ``|U|``.
    names : tuple of str
        The perturbed parameters.
    """

    mean: float
    stderr: float
    n: int
    sigma: float
    noise: str
    centre_loss: float
    n_perturbed: int
    names: tuple[str, ...]

    def report(self) -> str:
        """One-paragraph summary."""
        return (
            f"local energy ({self.noise} noise, sigma={self.sigma:g}, |U|={self.n_perturbed} "
            f"in {', '.join(self.names)})\n"
            f"  delta_E = {self.mean:.6g} +- {self.stderr:.3g}  (n={self.n}, "
            f"L(W) = {self.centre_loss:.6g})"
        )


def _check_sigma(sigma: float) -> float:
    try:
        s = float(sigma)
    except (TypeError, ValueError):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}") from None
    if isinstance(sigma, bool) or not math.isfinite(s) or s < 0:
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    return s


def local_energy_curve(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    sigmas: Sequence[float],
    generator: torch.Generator,
    layers: str | Iterable[str] | None = None,
    noise: Noise = "multiplicative",
    n: int = 100,
    batch_size: int = 16,
    include_biases: bool = False,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    kernel: Kernel | KernelName = "gaussian",
) -> tuple[FlatnessResult, ...]:
    r"""Local energy :math:`\delta E(\sigma)` at several ``sigma`` with common random numbers.

    The same ``n`` draws of ``z`` are scaled by every ``sigma``, so the curve is
    smooth in ``sigma`` and differences between its points have a small variance.

    Parameters
    ----------
    model : torch.nn.Module
        Evaluated as it is and never modified; a model with dropout or batch
        norm in training mode is refused (call ``model.eval()`` first: batch
        norm would update its running statistics and dropout would add noise).
    inputs : torch.Tensor, shape (B, ...)
    targets : torch.Tensor, shape (B, ...)
        The fixed data set on which ``L`` is evaluated.
    sigmas : sequence of float
        Noise scales, each ``>= 0``.
    generator : torch.Generator, keyword-only
        The only source of randomness (it advances).
    layers : str or iterable of str, optional
        Perturbed parameters (names, module names or globs; see
        :func:`anisotropy.smoothing.sampling.select_parameters`); ``None``: every
        parameter that is not a bias (all of them with ``include_biases``).
    noise : {"multiplicative", "additive"}
        Perturbation ``σ z ⊙ |W|`` or ``σ z``.
    n : int
        Number of noise draws (``>= 2``, for the standard error).
    batch_size : int
        Configurations evaluated per stacked forward pass (``>= 1``; memory is
        ``batch_size`` copies of the activations after the first perturbed layer).
    include_biases : bool
        Also perturb the biases of the selected modules.
    loss_fn : callable(output, targets) -> scalar tensor
        Mean loss (default cross-entropy).
    kernel : Kernel or {"gaussian", "box"}
        Law of each coordinate of ``z``: an instance as it is, a name at unit
        scale (``"gaussian"``: ``N(0, 1)``, the default; ``"box"``: ``Uniform(-1, 1)``).

    Returns
    -------
    tuple of FlatnessResult, one per entry of ``sigmas``.

    Raises
    ------
    ValueError
        On a bad argument, an unknown layer, or a non-finite loss.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    stateful = [
        nm
        for nm, m in model.named_modules()
        if m.training
        and isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd))
    ]
    if stateful:
        raise ValueError(
            "model is in training mode with dropout/batch norm "
            f"({', '.join(stateful)}); call model.eval() first"
        )
    if isinstance(sigmas, (str, bytes)) or not isinstance(sigmas, Sequence) or not sigmas:
        raise ValueError(f"sigmas must be a non-empty sequence of numbers >= 0, got {sigmas!r}")
    sig = [_check_sigma(s) for s in sigmas]
    check_choice("noise", noise, NOISES)
    law = as_kernel(kernel, scale=1.0)
    n = check_int("n", n, minimum=2)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    if not callable(loss_fn):
        raise ValueError("loss_fn must be callable(output, targets) -> scalar tensor")
    if inputs.shape[0] != targets.shape[0]:
        raise ValueError(
            f"inputs and targets must have the same batch size, got "
            f"{inputs.shape[0]} and {targets.shape[0]}"
        )
    params = dict(model.named_parameters())
    if layers is None:
        names = tuple(nm for nm in params if include_biases or not is_bias(nm))
        if not names:
            raise ValueError("model has no parameter to perturb")
    else:
        names = select_parameters(model, layers, include_biases=include_biases)
    pieces = children_for(model, names, cut=True)
    scale = {nm: params[nm].detach().abs() if noise == "multiplicative" else None for nm in names}

    def loss_of(out: torch.Tensor) -> float:
        v = loss_fn(out, targets)
        if not isinstance(v, torch.Tensor) or v.dim() != 0:
            raise ValueError("loss_fn must return a scalar tensor (use a mean reduction)")
        return float(v)

    diffs = torch.empty(len(sig), n, dtype=torch.float64)
    centre = math.nan
    with torch.no_grad():
        done = 0
        while done < n:
            m = min(batch_size, n - done)
            z = sample_perturbations(
                [(nm, params[nm]) for nm in names], m, generator=generator, kernel=law
            )
            for i, s in enumerate(sig):
                deltas = {
                    nm: s * (z[nm] if (c := scale[nm]) is None else z[nm] * c) for nm in names
                }
                outs = stacked_outputs(pieces, inputs, deltas, centre=True)
                losses = torch.tensor([loss_of(o) for o in outs.unbind(0)], dtype=torch.float64)
                if not torch.isfinite(losses).all():
                    raise ValueError(
                        f"loss is NaN or inf at sigma={s:g} (centre loss "
                        f"{float(losses[0]):g}); check the model, data and sigma"
                    )
                centre = float(losses[0])
                diffs[i, done : done + m] = losses[1:] - losses[0]
            done += m
    n_pert = sum(params[nm].numel() for nm in names)
    root = math.sqrt(n)
    return tuple(
        FlatnessResult(
            mean=float(d.mean()),
            stderr=float(d.std(correction=1)) / root,
            n=n,
            sigma=s,
            noise=noise,
            centre_loss=centre,
            n_perturbed=n_pert,
            names=names,
        )
        for s, d in zip(sig, diffs, strict=True)
    )


def local_energy(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    sigma: float,
    generator: torch.Generator,
    layers: str | Iterable[str] | None = None,
    noise: Noise = "multiplicative",
    n: int = 100,
    batch_size: int = 16,
    include_biases: bool = False,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    kernel: Kernel | KernelName = "gaussian",
) -> FlatnessResult:
    r"""Local energy :math:`\delta E(\sigma) = E_z[L(W + \sigma z \odot |W|)] - L(W)`.

    See :func:`local_energy_curve` for the parameters; ``sigma`` is one noise
    scale ``>= 0``.

    Returns
    -------
    FlatnessResult

    Examples
    --------
    >>> res = local_energy(model.eval(), x, t, sigma=0.1, layers="fc2",
    ...                    generator=torch.Generator().manual_seed(0))   # doctest: +SKIP
    >>> print(res.report())                                              # doctest: +SKIP
    """
    return local_energy_curve(
        model,
        inputs,
        targets,
        sigmas=(sigma,),
        generator=generator,
        layers=layers,
        noise=noise,
        n=n,
        batch_size=batch_size,
        include_biases=include_biases,
        loss_fn=loss_fn,
        kernel=kernel,
    )[0]
