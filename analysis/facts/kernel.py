"""Facts about the kernel :math:`K_{R,k}` of eq 6: its hard-box limit, centre value,
sigmoid-difference form, normaliser (eq 7), the uniform-plus-logistic convolution, CDF
and variance."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import sympy as sp
from scipy import special, stats
from sympy import stats as sps

from anisotropy import kernels

from .core import (
    QUAD_TOL,
    RK_POINTS,
    ROUNDOFF_TOL,
    TAIL_SCALES,
    Z1,
    Fact,
    R,
    k,
    kernel_expr,
    kernel_value,
    proves_zero,
    quad,
    quad_kernel,
    rel_error,
    sig,
    softplus,
    t,
    u,
    v,
    x,
    z,
)

__all__ = [
    "fact_hard_limit",
    "fact_centre_value",
    "fact_sigmoid_identity",
    "fact_normaliser",
    "fact_convolution",
    "fact_kernel_cdf",
    "fact_kernel_variance",
]


def fact_hard_limit() -> Fact:
    # a = R - x, b = R + x, a + b = 2R > 0: every x is one of these five cases.
    a, b, c = sp.symbols("a b c", positive=True)
    cases = [
        (sig(2 * k * a) * sig(2 * k * b), 1),  # |x| < R
        (sig(-2 * k * c) * sig(2 * k * b), 0),  # x > R
        (sig(2 * k * b) * sig(-2 * k * c), 0),  # x < -R
        (sig(0) * sig(2 * k * b), sp.Rational(1, 2)),  # x = R
        (sig(2 * k * b) * sig(0), sp.Rational(1, 2)),
    ]  # x = -R

    def prove():
        return all(sp.limit(e, k, sp.oo) == lim for e, lim in cases)

    def check():
        R_ = 1.0
        xs = np.array([-3.0, -1.01, -R_, -0.99, 0.0, 0.5, 0.99, R_, 1.01, 2.0])
        ind = np.where(np.abs(xs) < R_, 1.0, 0.0)
        ind[np.abs(xs) == R_] = 0.5
        err = np.abs(kernels.kernel(xs, R=R_, k=math.inf) - ind).max()
        # finite k = 1e4: |K - limit| <= 2 exp(-2k dist) = 2e-87 at distance 0.01 from the edge
        err = max(err, np.abs(kernels.kernel(xs, R=R_, k=1e4) - ind).max())
        return err

    return Fact(
        "hard_limit",
        "lim_{k->inf} K_{R,k}(x) = 1 if |x|<R, 1/2 if |x|=R, 0 if |x|>R (eqs 7-8)",
        prove,
        check,
        ROUNDOFF_TOL,
    )


def fact_centre_value() -> Fact:
    def prove():
        k0 = kernel_expr(sp.Integer(0))
        gap = sp.factor(sp.together(1 - sig(2 * k * R) ** 2))  # = 1 - K(0)
        d0 = -sp.log(k0)
        return (
            proves_zero(k0 - sig(2 * k * R) ** 2)
            and gap.is_positive is True
            and proves_zero(sp.expand_log(d0, force=True) - 2 * softplus(-2 * k * R))
        )

    def check():
        # 2kR <= 100 keeps d(0) = 2 softplus(-2kR) >= 2e-44 representable (> 0); K(0) < 1 is
        # seen through d(0) > 0, since 1 - K(0) ~ 2e^{-2kR} rounds to 0 in float64 for 2kR > 37.
        err = 0.0
        for R_, k_ in ((1.0, 1.0), (0.3, 5.0), (1e-3, 1.0), (0.5, 100.0)):
            d0 = float(kernels.distance(0.0, R=R_, k=k_))
            err = max(
                err,
                rel_error(float(kernels.kernel(0.0, R=R_, k=k_)), special.expit(2 * k_ * R_) ** 2),
                rel_error(d0, 2 * math.log1p(math.exp(-2 * k_ * R_))),
            )
            if not d0 > 0.0:
                return math.inf
        return err

    return Fact(
        "centre_value",
        "K(0) = s(2kR)^2 < 1 and d(0) = 2 softplus(-2kR) > 0 for finite k",
        prove,
        check,
        ROUNDOFF_TOL,
    )


def fact_sigmoid_identity() -> Fact:
    def prove():
        return proves_zero(sig(u) * sig(v) - (sig(u) + sig(v) - 1) / (1 - sp.exp(-(u + v))))

    def check():
        err = 0.0
        for R_, k_ in ((1.0, 1.0), (0.3, 5.0), (2.0, 0.05)):  # 4kR >= 0.4: no cancellation
            xs = np.linspace(-3 * R_, 3 * R_, 13)
            uu, vv = 2 * k_ * (R_ - xs), 2 * k_ * (R_ + xs)
            rhs = (special.expit(uu) + special.expit(vv) - 1) / -math.expm1(-4 * k_ * R_)
            err = max(err, np.abs(kernels.kernel(xs, R=R_, k=k_) - rhs).max())
        return err

    return Fact(
        "sigmoid_identity",
        "s(u) s(v) = (s(u) + s(v) - 1) / (1 - e^-(u+v))  (u+v != 0)",
        prove,
        check,
        ROUNDOFF_TOL,
    )


def fact_normaliser(claim: Callable[[sp.Expr, sp.Expr], sp.Expr] | None = None) -> Fact:
    """``Z_1 = int K dx`` equals ``claim(R, k)`` (default the true ``2R/(1-e^{-4kR})``)."""
    claimed = (claim or (lambda R_, k_: 2 * R_ / (1 - sp.exp(-4 * k_ * R_))))(R, k)
    claimed_num = sp.lambdify((R, k), claimed, "math")

    def prove():
        # (1-e^{-4kR}) K = s(2k(x+R)) - s(2k(x-R))   (sigmoid identity, u + v = 4kR)
        numer = sig(2 * k * (x + R)) - sig(2 * k * (x - R))
        # ... = G'(x) with G = [softplus(2k(x+R)) - softplus(2k(x-R))]/(2k), G(-oo)=0, G(oo)=2R
        G = (softplus(2 * k * (x + R)) - softplus(2 * k * (x - R))) / (2 * k)
        steps = proves_zero(kernel_expr(x) * (1 - sp.exp(-4 * k * R)) - numer) and proves_zero(
            sp.diff(G, x) - numer
        )
        integral = (sp.limit(G, x, sp.oo) - sp.limit(G, x, -sp.oo)) / (1 - sp.exp(-4 * k * R))
        return steps and proves_zero(integral - claimed)

    def check():
        err = 0.0
        for R_, k_ in RK_POINTS:
            q = quad_kernel(functools.partial(kernel_value, R_=R_, k_=k_), R_, k_)
            err = max(
                err,
                rel_error(claimed_num(R_, k_), q),
                rel_error(math.exp(kernels.log_normaliser(R_, k_)), q),
            )
        return err

    return Fact(
        "normaliser", f"Z_1 = int K_(R,k)(x) dx = {sp.sstr(claimed)}", prove, check, QUAD_TOL
    )


def fact_convolution() -> Fact:
    U = sps.Uniform("U", -R, R)
    L = sps.Logistic("L", 0, 1 / (2 * k))

    def prove():
        conv = sp.integrate(sps.density(U)(t) * sps.density(L)(z - t), (t, -sp.oo, sp.oo))
        return proves_zero(conv - kernel_expr(z) / Z1)

    def density(tv, zv, R_, k_):  # the integrand: Uniform(-R, R) density x logistic at zv - tv
        return stats.logistic.pdf(zv - tv, scale=1 / (2 * k_)) / (2 * R_)

    def check():
        err = 0.0
        for R_, k_ in RK_POINTS[:4]:
            zs = np.linspace(-2 * R_ - 3 / k_, 2 * R_ + 3 / k_, 7)
            dens = kernels.kernel(zs, R=R_, k=k_) / math.exp(kernels.log_normaliser(R_, k_))
            for zv, dv in zip(zs, dens, strict=True):
                conv = quad(functools.partial(density, zv=zv, R_=R_, k_=k_), -R_, R_, points=(zv,))
                err = max(err, abs(conv - dv) / dens.max())
        return err

    return Fact(
        "convolution",
        "K/Z_1 = density of U + L, U ~ Uniform(-R,R), L ~ "
        "Logistic(0, 1/(2k)) (convolution of the two densities)",
        prove,
        check,
        QUAD_TOL,
    )


def fact_kernel_cdf() -> Fact:
    cdf = (softplus(2 * k * (z + R)) - softplus(2 * k * (z - R))) / (4 * k * R)

    def prove():
        return (
            proves_zero(sp.diff(cdf, z) - kernel_expr(z) / Z1)
            and sp.limit(cdf, z, -sp.oo) == 0
            and sp.limit(cdf, z, sp.oo) == 1
        )

    def check():
        err = 0.0
        for R_, k_ in RK_POINTS[:4]:
            c = math.exp(-kernels.log_normaliser(R_, k_))
            lo = -R_ - TAIL_SCALES / (2 * k_)
            for zv in np.linspace(-2 * R_ - 2 / k_, 2 * R_ + 2 / k_, 5):
                q = c * quad(
                    functools.partial(kernel_value, R_=R_, k_=k_), lo, zv, points=(-R_, 0.0, R_)
                )
                closed = (
                    np.logaddexp(0, 2 * k_ * (zv + R_)) - np.logaddexp(0, 2 * k_ * (zv - R_))
                ) / (4 * k_ * R_)
                err = max(err, abs(q - closed))
        return err

    return Fact(
        "kernel_cdf",
        "P(U+L <= z) = [softplus(2k(z+R)) - softplus(2k(z-R))]/(4kR)",
        prove,
        check,
        QUAD_TOL,
    )


def fact_kernel_variance(claim: Callable[[sp.Expr, sp.Expr], sp.Expr] | None = None) -> Fact:
    """Variance of the normalised kernel equals ``claim(R, k)`` (default R^2/3 + pi^2/(12k^2))."""
    claimed = (claim or (lambda R_, k_: R_**2 / 3 + sp.pi**2 / (12 * k_**2)))(R, k)
    claimed_num = sp.lambdify((R, k), claimed, "math")

    def prove():  # independent U and L: variances add
        var = sps.variance(sps.Uniform("U", -R, R)) + sps.variance(
            sps.Logistic("L", 0, 1 / (2 * k))
        )
        return proves_zero(var - claimed)

    def second_moment(xv, R_, k_):
        return xv * xv * kernel_value(xv, R_, k_)

    def check():
        err = 0.0
        for R_, k_ in RK_POINTS:
            m2 = quad_kernel(functools.partial(second_moment, R_=R_, k_=k_), R_, k_)
            err = max(
                err, rel_error(claimed_num(R_, k_), m2 / math.exp(kernels.log_normaliser(R_, k_)))
            )
        return err

    return Fact(
        "kernel_variance", f"Var[K/Z_1] = {sp.sstr(claimed)} (mean 0)", prove, check, QUAD_TOL
    )
