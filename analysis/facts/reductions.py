"""Facts about the reductions of the sampled losses (PLA and PLEA, eqs 11-16): M at y = 0,
PLEA -> PLA as beta -> 0 and the PLEA gradient as a softmax-weighted average."""

from __future__ import annotations

import math

import numpy as np
import sympy as sp
from scipy import special

from anisotropy.validation import check_choice

from .core import FD_STEP, FD_TOL, ROUNDOFF_TOL, SERIES_TOL, SMALL_BETA, Fact, beta, proves_zero, w

__all__ = ["fact_m_at_y0", "fact_plea_to_pla", "fact_plea_gradient"]


def _plea(losses: np.ndarray, b: float = 1.0) -> float:
    """Reference ``-(1/b) log mean exp(-b L_a)`` (eq 22 at b = 1), by logsumexp."""
    return -(special.logsumexp(-b * losses) - math.log(losses.size)) / b


def _reduce(losses: np.ndarray, reduction: str, b: float = 1.0) -> float:
    """The package's :func:`anisotropy.smoothing.losses.reduce_losses` in float64.

    Imports torch.
    """
    import torch

    from anisotropy.smoothing.losses import REDUCTIONS, reduce_losses

    return float(
        reduce_losses(
            torch.as_tensor(losses, dtype=torch.float64),
            reduction=check_choice("reduction", reduction, REDUCTIONS),
            beta=b,
        )
    )


def fact_m_at_y0() -> Fact:
    y = sp.Symbol("y", integer=True, nonnegative=True)
    a = sp.Symbol("a", integer=True, positive=True)
    Lc = sp.Symbol("L", real=True)
    La, da = sp.Function("L_a"), sp.Function("d_a")
    M = -sp.log((sp.exp(-Lc) + sp.Sum(sp.exp(-La(a) - da(a)), (a, 1, y))) / (y + 1))

    def prove():
        return proves_zero(M.subs(y, 0).doit() - Lc)

    def check():  # y = 0: one configuration (S = 1), the centre; 800: naive exp(-L) underflows
        err = 0.0
        for lv in (0.1, 2.3, 50.0, 800.0):
            one = np.array([lv])
            err = max(
                err,
                abs(_plea(one) - lv) / lv,
                *(abs(_reduce(one, r, 0.5) - lv) / lv for r in ("pla", "plea", "beta")),
            )
        return err

    return Fact("m_at_y0", "M(R,k,y=0;W) = L(W) (eq 4)", prove, check, ROUNDOFF_TOL)


def fact_plea_to_pla() -> Fact:
    Ls = sp.symbols("L1:4", real=True)
    n = len(Ls)
    F = -sp.log(sum(sp.exp(-beta * li) for li in Ls) / n) / beta
    mean = sum(Ls) / n
    var = sum((li - mean) ** 2 for li in Ls) / n

    def prove():
        return proves_zero(sp.limit(F, beta, 0) - mean) and proves_zero(
            sp.series(F, beta, 0, 2).removeO() - (mean - beta * var / 2)
        )

    def check():  # the reference and anisotropy.smoothing.losses.reduce_losses
        rng = np.random.default_rng(4)
        err = 0.0
        for _ in range(5):
            ls = rng.uniform(0.0, 3.0, size=5)
            series = ls.mean() - SMALL_BETA * ls.var() / 2
            err = max(
                err,
                abs(_plea(ls, SMALL_BETA) - series),
                abs(_reduce(ls, "beta", SMALL_BETA) - series),
                abs(_reduce(ls, "pla") - ls.mean()),
                abs(_reduce(ls, "plea") - _plea(ls)),
            )
        return err

    return Fact(
        "plea_to_pla",
        "-(1/beta) log mean_a exp(-beta L_a) = mean L - (beta/2) Var L + "
        "O(beta^2) -> PLA (eq 23) as beta -> 0; = PLEA (eq 22) at beta = 1",
        prove,
        check,
        SERIES_TOL,
    )


def fact_plea_gradient() -> Fact:
    fs = [sp.Function(f"L{i}")(w) for i in range(1, 4)]
    F = -sp.log(sum(sp.exp(-beta * f) for f in fs) / len(fs)) / beta
    Zs = sum(sp.exp(-beta * f) for f in fs)
    claim = sum(sp.exp(-beta * f) / Zs * sp.diff(f, w) for f in fs)

    def prove():
        return proves_zero(sp.diff(F, w) - claim)

    def check():
        # central differences of the reference, and autograd of
        # anisotropy.smoothing.losses.reduce_losses
        import torch

        from anisotropy.smoothing.losses import reduce_losses

        curv, centre = np.array([1.0, 3.0, 0.5, 2.0]), np.array([0.0, 0.4, -1.0, 2.0])
        losses = lambda wv: 0.5 * curv * (wv - centre) ** 2
        err = 0.0
        for b in (1.0, 0.3, 4.0):
            for wv in (-0.7, 0.2, 1.5):
                want = special.softmax(-b * losses(wv)) @ (curv * (wv - centre))
                fd = (_plea(losses(wv + FD_STEP), b) - _plea(losses(wv - FD_STEP), b)) / (
                    2 * FD_STEP
                )
                wt = torch.tensor(wv, dtype=torch.float64, requires_grad=True)
                lt = 0.5 * torch.from_numpy(curv) * (wt - torch.from_numpy(centre)) ** 2
                (grad,) = torch.autograd.grad(reduce_losses(lt, reduction="beta", beta=b), wt)
                err = max(err, abs(fd - want), abs(float(grad) - want))
        return err

    return Fact(
        "plea_gradient",
        "d/dw [-(1/beta) log mean_a e^{-beta L_a(w)}] = sum_a softmax(-beta L)_a dL_a/dw",
        prove,
        check,
        FD_TOL,
    )
