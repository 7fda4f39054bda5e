"""Gaussian integrals behind heat regularisation and the quadratic-loss references: the
heat kernel's normaliser, the box and heat free energies of a quadratic loss."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import mpmath
import sympy as sp

from anisotropy import kernels

from .core import QUAD_TOL, Fact, R, gamma, kernel_value, lam, proves_zero, quad, rel_error, w, x

__all__ = ["fact_heat_normaliser", "fact_box_quadratic", "fact_heat_quadratic"]


def fact_heat_normaliser(claim: Callable[[sp.Expr], sp.Expr] | None = None) -> Fact:
    """``int exp(-(gamma/2) x^2) dx`` equals ``claim(gamma)`` (default sqrt(2 pi/gamma))."""
    claimed = (claim or (lambda g: sp.sqrt(2 * sp.pi / g)))(gamma)
    claimed_num = sp.lambdify(gamma, claimed, "math")

    def prove():
        return proves_zero(sp.integrate(sp.exp(-gamma / 2 * x**2), (x, -sp.oo, sp.oo)) - claimed)

    def heat(xv, g):
        return math.exp(float(kernels.heat_log_kernel(xv, gamma=g)))

    def check():
        err = 0.0
        for g in (1e-2, 1.0, 30.0, 1e4):
            edge = 40.0 / math.sqrt(g)  # e^{-800} beyond
            q = quad(functools.partial(heat, g=g), -edge, edge, points=(0.0,))
            err = max(
                err,
                rel_error(claimed_num(g), q),
                rel_error(math.exp(kernels.heat_log_normaliser(g)), q),
            )
        return err

    return Fact(
        "heat_normaliser",
        f"int exp(-(gamma/2) x^2) dx = {sp.sstr(claimed)} (eq 1 convention)",
        prove,
        check,
        QUAD_TOL,
    )


def fact_box_quadratic() -> Fact:
    W, c = sp.symbols("W c", real=True)
    aa = sp.sqrt(lam / 2)
    claim = sp.sqrt(sp.pi / (2 * lam)) * (sp.erf(aa * (W + R - c)) - sp.erf(aa * (W - R - c)))

    def prove():
        return proves_zero(sp.integrate(sp.exp(-lam / 2 * (w - c) ** 2), (w, W - R, W + R)) - claim)

    def integrand(xv, lv, Wv, cv, Rv):
        return math.exp(-lv / 2 * (Wv + xv - cv) ** 2) * kernel_value(xv, Rv, math.inf)

    def check():
        # the erf difference cancels when both arguments are large and of one sign (relative
        # error ~1e-16/difference), so the closed form is evaluated with 30-digit mpmath here
        f = sp.lambdify((lam, W, c, R), claim, "mpmath")
        err = 0.0
        for lv, Wv, cv, Rv in ((1.0, 0.0, 0.3, 1.0), (20.0, 1.0, -0.5, 0.1), (0.1, 2.0, 0.0, 3.0)):
            q = quad(functools.partial(integrand, lv=lv, Wv=Wv, cv=cv, Rv=Rv), -Rv, Rv)
            with mpmath.workdps(30):
                err = max(err, rel_error(float(f(lv, Wv, cv, Rv)), q))
        return err

    return Fact(
        "box_quadratic",
        "int_{|x|<R} exp(-(lam/2)(W+x-c)^2) dx = sqrt(pi/(2 lam)) "
        "[erf(a(W+R-c)) - erf(a(W-R-c))], a = sqrt(lam/2)",
        prove,
        check,
        QUAD_TOL,
    )


def fact_heat_quadratic() -> Fact:
    D = sp.Symbol("D", real=True)  # D = W - c
    claim = sp.sqrt(2 * sp.pi / (lam + gamma)) * sp.exp(-lam * gamma / (2 * (lam + gamma)) * D**2)

    def prove():
        integral = sp.integrate(
            sp.exp(-lam / 2 * (x + D) ** 2 - gamma / 2 * x**2), (x, -sp.oo, sp.oo)
        )
        return proves_zero(integral / claim - 1)

    def integrand(xv, lv, gv, Dv):
        return math.exp(-lv / 2 * (xv + Dv) ** 2 + float(kernels.heat_log_kernel(xv, gamma=gv)))

    def check():
        f = sp.lambdify((lam, gamma, D), claim, "math")
        err = 0.0
        for lv, gv, Dv in ((1.0, 1.0, 0.5), (20.0, 0.5, -1.0), (0.1, 30.0, 2.0)):
            edge = 40.0 / math.sqrt(gv)
            q = quad(
                functools.partial(integrand, lv=lv, gv=gv, Dv=Dv),
                -edge,
                edge,
                points=(0.0, -Dv),
            )
            err = max(err, rel_error(f(lv, gv, Dv), q))
        return err

    return Fact(
        "heat_quadratic",
        "int exp(-(lam/2)(x+D)^2 - (gamma/2)x^2) dx = sqrt(2pi/(lam+gamma)) "
        "exp(-lam gamma D^2 / (2(lam+gamma)))",
        prove,
        check,
        QUAD_TOL,
    )
