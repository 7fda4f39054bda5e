"""Facts about the distance :math:`d = -\\log K` (eq 5): its overflow-free softplus form and
the partial (masked) distance of eq 10."""

from __future__ import annotations

import math

import numpy as np
import sympy as sp
from scipy import special

from anisotropy import kernels

from .core import ROUNDOFF_TOL, Fact, R, k, kernel_expr, proves_zero, sig, softplus, x

__all__ = ["fact_stable_distance", "fact_masked_distance"]


def fact_stable_distance() -> Fact:
    eq5 = -sp.log((1 - sig(2 * k * (x - R))) * sig(2 * k * (x + R)))
    stable = softplus(2 * k * (x - R)) + softplus(-2 * k * (x + R))

    def prove():
        return (
            proves_zero(sp.expand_log(eq5, force=True) - stable)
            and proves_zero(sp.exp(-stable) - kernel_expr(x))
            and stable.is_nonnegative is True
            and proves_zero(stable.subs(x, -x) - stable)
        )

    def check():
        err = 0.0
        for R_, k_ in ((1.0, 1.0), (0.3, 5.0), (2.0, 0.05)):
            xs = np.linspace(-R_ - 3 / k_, R_ + 3 / k_, 11)  # |2k(x -+ R)| <= 6: eq 5 accurate
            direct = -np.log(
                (1 - special.expit(2 * k_ * (xs - R_))) * special.expit(2 * k_ * (xs + R_))
            )
            d = kernels.distance(xs, R=R_, k=k_)
            err = max(
                err, np.abs(d - direct).max(), np.abs(kernels.distance(-xs, R=R_, k=k_) - d).max()
            )
            if (d < 0).any() or np.signbit(d).any():
                return math.inf
        return err

    return Fact(
        "stable_distance",
        "eq 5 = softplus(2k(x-R)) + softplus(-2k(x+R)) = -log K, even, >= 0",
        prove,
        check,
        ROUNDOFF_TOL,
    )


def fact_masked_distance() -> Fact:
    dws = sp.symbols("dw1:5", real=True)
    mask = (1, 0, 1, 0)
    d = lambda q: softplus(2 * k * (q - R)) + softplus(-2 * k * (q + R))

    def prove():  # literal eq 13, d(dW*U), minus (N-|U|) d(0) is the sum over the support
        literal = sum(d(q * m) for q, m in zip(dws, mask, strict=True))
        partial = sum(d(q) for q, m in zip(dws, mask, strict=True) if m)
        return proves_zero(literal - (len(mask) - sum(mask)) * d(sp.Integer(0)) - partial)

    def check():
        rng = np.random.default_rng(13)
        dw = rng.normal(size=(6, 9))
        m = rng.random(9) < 0.5
        err = 0.0
        for R_, k_ in ((1.0, 1.0), (0.3, 5.0), (1.0, math.inf)):
            if math.isinf(k_):
                dw = np.clip(dw, -0.9, 0.9)  # keep the hard distance finite
            got = kernels.masked_distance(dw, m, R=R_, k=k_)
            lit = kernels.distance(dw * m, R=R_, k=k_).sum(-1) - (~m).sum() * kernels.distance(
                0.0, R=R_, k=k_
            )
            full = kernels.masked_distance(dw, np.ones(9, bool), R=R_, k=k_)
            err = max(
                err,
                np.abs(got - lit).max(),
                np.abs(got - kernels.distance(dw[:, m], R=R_, k=k_).sum(-1)).max(),
                np.abs(full - kernels.distance(dw, R=R_, k=k_).sum(-1)).max(),
            )
        return err

    return Fact(
        "masked_distance",
        "d^[U](dW) = sum_{i in U} d(dW_i) = d(dW*U) - (N-|U|) d(0): "
        "masked-out coordinates add nothing (eq 13 fix)",
        prove,
        check,
        ROUNDOFF_TOL,
    )
