r"""Symbolic proofs (sympy) and numeric checks of the analytic facts the package relies on.

Each fact about eqs 5-23 of *Partial local entropy and anisotropy in deep weight spaces*
is a :class:`Fact`: a statement, a sympy
*proof* (a function returning ``True`` only when sympy establishes the identity
or limit) and a *numeric check* (a function returning the largest error at a few
points, computed with the package's own :mod:`anisotropy.kernels` and
:func:`anisotropy.smoothing.losses.reduce_losses` wherever they apply, so that the check
also tests the implementation).  :func:`verify`
turns a fact into a :class:`FactResult`; :func:`verify_all` checks all of them;
``anisotropy limits [--json]`` prints them and exits non-zero if any fails.

Symbols: :math:`s(u) = 1/(1+e^{-u})`, :math:`K_{R,k}(x) = s(2k(R-x))\,s(2k(R+x))`
(eq 6), :math:`Z_1 = \int K\,dx`, ``R, k, gamma, lambda, beta > 0``.

The fact builders that take a ``claim`` (e.g. :func:`fact_normaliser`) state
"the quantity equals ``claim``"; passing a wrong claim gives a fact that fails,
which is how the tests show that the checking machinery can fail.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import mpmath
import numpy as np
import sympy as sp
from scipy import integrate, special, stats
from sympy import stats as sps

from anisotropy import kernels
from anisotropy.cli.args import add_dataclass_arguments, from_namespace
from anisotropy.validation import check_choice

__all__ = [
    "Fact",
    "FactResult",
    "LimitsOptions",
    "verify",
    "verify_all",
    "default_facts",
    "fact_normaliser",
    "fact_heat_normaliser",
    "fact_kernel_variance",
    "main",
]

# --- tolerances of the numeric checks (float64 throughout) -------------------------------
#: exact identities evaluated in float64 on O(1) quantities: a few hundred ulps of 1.
ROUNDOFF_TOL = 1e-12
#: quadrature-based checks: scipy.integrate.quad is asked for relative 1e-12 and reaches
#: ~1e-14 on these smooth integrands; 1e-9 leaves room without hiding an O(1e-3) mistake.
QUAD_TOL = 1e-9
#: requested relative accuracy of scipy.integrate.quad.
QUAD_EPSREL = 1e-12
#: kernel tails are integrated out to R + TAIL_SCALES/(2k): beyond, K < e^-TAIL_SCALES.
TAIL_SCALES = 60.0
#: the edge layer of K is resolved over R +- EDGE_SCALES/(2k) (there 1 - K or K is e^-20).
EDGE_SCALES = 20.0
#: finite-difference step for the gradient check (central differences: error ~ h^2 f''').
FD_STEP = 1e-5
#: FD truncation (h^2 ~ 1e-10 times O(1) third derivatives) plus roundoff (1e-16/h).
FD_TOL = 1e-8
#: beta used to check PLEA -> PLA numerically; the neglected O(beta^2) term is
#: beta^2 * kappa_3 / 6 <= 1e-6 * 2 for the losses used below (all in [0, 3]).
SMALL_BETA = 1e-3
SERIES_TOL = 2e-6

# --- shared symbols and expressions --------------------------------------------------------
x, z, t, u, v, w = sp.symbols("x z t u v w", real=True)
R, k, gamma, lam, beta = sp.symbols("R k gamma lambda beta", positive=True)


def sig(q: sp.Expr) -> sp.Expr:
    """The logistic sigmoid :math:`s(q) = 1/(1+e^{-q})`."""
    return 1 / (1 + sp.exp(-q))


def softplus(q: sp.Expr) -> sp.Expr:
    """:math:`\\log(1+e^q)`."""
    return sp.log(1 + sp.exp(q))


def kernel_expr(y: sp.Expr) -> sp.Expr:
    """Eq 6: :math:`K_{R,k}(y) = s(2k(R-y))\\,s(2k(R+y))`."""
    return sig(2 * k * (R - y)) * sig(2 * k * (R + y))


Z1 = 2 * R / (1 - sp.exp(-4 * k * R))


def _zero(expr: sp.Expr) -> bool:
    """True only if sympy simplifies ``expr`` to exactly 0 (False means "not proved")."""
    return sp.simplify(expr) == 0


# --- result types ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Fact:
    """One analytic fact: ``prove()`` -> bool (sympy), ``check()`` -> max numeric error."""

    name: str
    statement: str
    prove: Callable[[], bool]
    check: Callable[[], float]
    tol: float


@dataclass(frozen=True)
class FactResult:
    """Outcome of :func:`verify` for one :class:`Fact`."""

    name: str
    statement: str
    symbolic: bool
    numeric_error: float
    numeric_tol: float
    note: str = ""

    @property
    def numeric_pass(self) -> bool:
        return math.isfinite(self.numeric_error) and self.numeric_error <= self.numeric_tol

    @property
    def passed(self) -> bool:
        return self.symbolic and self.numeric_pass

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(numeric_pass=self.numeric_pass, passed=self.passed)
        if not math.isfinite(self.numeric_error):
            d["numeric_error"] = str(self.numeric_error)  # JSON has no nan/inf
        return d

    def report(self) -> str:
        flag = "PASS" if self.passed else "FAIL"
        sym = "proved" if self.symbolic else "NOT proved"
        num = "ok" if self.numeric_pass else "FAILED"
        line = (
            f"[{flag}] {self.name}: {self.statement} | symbolic: {sym} | numeric: "
            f"max err {self.numeric_error:.2e} (tol {self.numeric_tol:.0e}) {num}"
        )
        return line + (f" | {self.note}" if self.note else "")


def verify(fact: Fact) -> FactResult:
    """Run a fact's proof and numeric check; an exception in either is a failure (noted)."""
    notes = []
    try:
        symbolic = bool(fact.prove() is True)
    except Exception as exc:  # a proof that crashes proves nothing; report why
        symbolic = False
        notes.append(f"proof raised {exc!r}")
    try:
        with warnings.catch_warnings():
            # an inaccurate quadrature must fail the check, not pass with a warning
            warnings.simplefilter("error", integrate.IntegrationWarning)
            err = float(fact.check())
    except Exception as exc:
        err = math.nan
        notes.append(f"check raised {exc!r}")
    return FactResult(fact.name, fact.statement, symbolic, err, fact.tol, "; ".join(notes))


# --- numeric helpers ---------------------------------------------------------------------------
#: (R, k) points: 4kR from 4e-3 (logistic-dominated) to 4e4 (box-dominated)
RK_POINTS = ((1.0, 1.0), (0.3, 5.0), (1e-3, 1.0), (2.0, 0.05), (1.0, 1e4), (0.05, 40.0))


def _quad(f: Callable[[float], float], lo: float, hi: float, points: Sequence[float] = ()) -> float:
    pts = [p for p in points if lo < p < hi] or None
    val, _ = integrate.quad(f, lo, hi, points=pts, limit=500, epsabs=0.0, epsrel=QUAD_EPSREL)
    return val


def _quad_kernel(f: Callable[[float], float], R_: float, k_: float) -> float:
    """Integral over the real line of ``f``, which decays like the kernel K_{R,k}."""
    edge = R_ + TAIL_SCALES / (2.0 * k_)
    # break points around each edge's transition layer (width ~1/k): with only +-R, quad's
    # nodes can all miss a layer much thinner than R and converge to a wrong value
    w = min(R_, EDGE_SCALES / (2.0 * k_))
    return _quad(f, -edge, edge, points=sorted({-R_ - w, -R_, -R_ + w, 0.0, R_ - w, R_, R_ + w}))


def _K(xv, R_, k_):
    return float(kernels.kernel(xv, R=R_, k=k_))


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


# --- the facts ---------------------------------------------------------------------------------
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
            _zero(k0 - sig(2 * k * R) ** 2)
            and gap.is_positive is True
            and _zero(sp.expand_log(d0, force=True) - 2 * softplus(-2 * k * R))
        )

    def check():
        # 2kR <= 100 keeps d(0) = 2 softplus(-2kR) >= 2e-44 representable (> 0); K(0) < 1 is
        # seen through d(0) > 0, since 1 - K(0) ~ 2e^{-2kR} rounds to 0 in float64 for 2kR > 37.
        err = 0.0
        for R_, k_ in ((1.0, 1.0), (0.3, 5.0), (1e-3, 1.0), (0.5, 100.0)):
            d0 = float(kernels.distance(0.0, R=R_, k=k_))
            err = max(
                err,
                _rel(float(kernels.kernel(0.0, R=R_, k=k_)), special.expit(2 * k_ * R_) ** 2),
                _rel(d0, 2 * math.log1p(math.exp(-2 * k_ * R_))),
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
        return _zero(sig(u) * sig(v) - (sig(u) + sig(v) - 1) / (1 - sp.exp(-(u + v))))

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
        steps = _zero(kernel_expr(x) * (1 - sp.exp(-4 * k * R)) - numer) and _zero(
            sp.diff(G, x) - numer
        )
        integral = (sp.limit(G, x, sp.oo) - sp.limit(G, x, -sp.oo)) / (1 - sp.exp(-4 * k * R))
        return steps and _zero(integral - claimed)

    def check():
        err = 0.0
        for R_, k_ in RK_POINTS:
            q = _quad_kernel(functools.partial(_K, R_=R_, k_=k_), R_, k_)
            err = max(
                err, _rel(claimed_num(R_, k_), q), _rel(math.exp(kernels.log_normaliser(R_, k_)), q)
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
        return _zero(conv - kernel_expr(z) / Z1)

    def density(tv, zv, R_, k_):  # the integrand: Uniform(-R, R) density x logistic at zv - tv
        return stats.logistic.pdf(zv - tv, scale=1 / (2 * k_)) / (2 * R_)

    def check():
        err = 0.0
        for R_, k_ in RK_POINTS[:4]:
            zs = np.linspace(-2 * R_ - 3 / k_, 2 * R_ + 3 / k_, 7)
            dens = kernels.kernel(zs, R=R_, k=k_) / math.exp(kernels.log_normaliser(R_, k_))
            for zv, dv in zip(zs, dens, strict=True):
                conv = _quad(functools.partial(density, zv=zv, R_=R_, k_=k_), -R_, R_, points=(zv,))
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
            _zero(sp.diff(cdf, z) - kernel_expr(z) / Z1)
            and sp.limit(cdf, z, -sp.oo) == 0
            and sp.limit(cdf, z, sp.oo) == 1
        )

    def check():
        err = 0.0
        for R_, k_ in RK_POINTS[:4]:
            c = math.exp(-kernels.log_normaliser(R_, k_))
            lo = -R_ - TAIL_SCALES / (2 * k_)
            for zv in np.linspace(-2 * R_ - 2 / k_, 2 * R_ + 2 / k_, 5):
                q = c * _quad(functools.partial(_K, R_=R_, k_=k_), lo, zv, points=(-R_, 0.0, R_))
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
        return _zero(var - claimed)

    def second_moment(xv, R_, k_):
        return xv * xv * _K(xv, R_, k_)

    def check():
        err = 0.0
        for R_, k_ in RK_POINTS:
            m2 = _quad_kernel(functools.partial(second_moment, R_=R_, k_=k_), R_, k_)
            err = max(err, _rel(claimed_num(R_, k_), m2 / math.exp(kernels.log_normaliser(R_, k_))))
        return err

    return Fact(
        "kernel_variance", f"Var[K/Z_1] = {sp.sstr(claimed)} (mean 0)", prove, check, QUAD_TOL
    )


def fact_heat_normaliser(claim: Callable[[sp.Expr], sp.Expr] | None = None) -> Fact:
    """``int exp(-(gamma/2) x^2) dx`` equals ``claim(gamma)`` (default sqrt(2 pi/gamma))."""
    claimed = (claim or (lambda g: sp.sqrt(2 * sp.pi / g)))(gamma)
    claimed_num = sp.lambdify(gamma, claimed, "math")

    def prove():
        return _zero(sp.integrate(sp.exp(-gamma / 2 * x**2), (x, -sp.oo, sp.oo)) - claimed)

    def heat(xv, g):
        return math.exp(float(kernels.heat_log_kernel(xv, gamma=g)))

    def check():
        err = 0.0
        for g in (1e-2, 1.0, 30.0, 1e4):
            edge = 40.0 / math.sqrt(g)  # e^{-800} beyond
            q = _quad(functools.partial(heat, g=g), -edge, edge, points=(0.0,))
            err = max(
                err, _rel(claimed_num(g), q), _rel(math.exp(kernels.heat_log_normaliser(g)), q)
            )
        return err

    return Fact(
        "heat_normaliser",
        f"int exp(-(gamma/2) x^2) dx = {sp.sstr(claimed)} (eq 1 convention)",
        prove,
        check,
        QUAD_TOL,
    )


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
        return _zero(M.subs(y, 0).doit() - Lc)

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
        return _zero(sp.limit(F, beta, 0) - mean) and _zero(
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
        return _zero(sp.diff(F, w) - claim)

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


def fact_stable_distance() -> Fact:
    eq5 = -sp.log((1 - sig(2 * k * (x - R))) * sig(2 * k * (x + R)))
    stable = softplus(2 * k * (x - R)) + softplus(-2 * k * (x + R))

    def prove():
        return (
            _zero(sp.expand_log(eq5, force=True) - stable)
            and _zero(sp.exp(-stable) - kernel_expr(x))
            and stable.is_nonnegative is True
            and _zero(stable.subs(x, -x) - stable)
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
        return _zero(literal - (len(mask) - sum(mask)) * d(sp.Integer(0)) - partial)

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


def fact_box_quadratic() -> Fact:
    W, c = sp.symbols("W c", real=True)
    aa = sp.sqrt(lam / 2)
    claim = sp.sqrt(sp.pi / (2 * lam)) * (sp.erf(aa * (W + R - c)) - sp.erf(aa * (W - R - c)))

    def prove():
        return _zero(sp.integrate(sp.exp(-lam / 2 * (w - c) ** 2), (w, W - R, W + R)) - claim)

    def integrand(xv, lv, Wv, cv, Rv):
        return math.exp(-lv / 2 * (Wv + xv - cv) ** 2) * _K(xv, Rv, math.inf)

    def check():
        # the erf difference cancels when both arguments are large and of one sign (relative
        # error ~1e-16/difference), so the closed form is evaluated with 30-digit mpmath here
        f = sp.lambdify((lam, W, c, R), claim, "mpmath")
        err = 0.0
        for lv, Wv, cv, Rv in ((1.0, 0.0, 0.3, 1.0), (20.0, 1.0, -0.5, 0.1), (0.1, 2.0, 0.0, 3.0)):
            q = _quad(functools.partial(integrand, lv=lv, Wv=Wv, cv=cv, Rv=Rv), -Rv, Rv)
            with mpmath.workdps(30):
                err = max(err, _rel(float(f(lv, Wv, cv, Rv)), q))
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
        return _zero(integral / claim - 1)

    def integrand(xv, lv, gv, Dv):
        return math.exp(-lv / 2 * (xv + Dv) ** 2 + float(kernels.heat_log_kernel(xv, gamma=gv)))

    def check():
        f = sp.lambdify((lam, gamma, D), claim, "math")
        err = 0.0
        for lv, gv, Dv in ((1.0, 1.0, 0.5), (20.0, 0.5, -1.0), (0.1, 30.0, 2.0)):
            edge = 40.0 / math.sqrt(gv)
            q = _quad(
                functools.partial(integrand, lv=lv, gv=gv, Dv=Dv),
                -edge,
                edge,
                points=(0.0, -Dv),
            )
            err = max(err, _rel(f(lv, gv, Dv), q))
        return err

    return Fact(
        "heat_quadratic",
        "int exp(-(lam/2)(x+D)^2 - (gamma/2)x^2) dx = sqrt(2pi/(lam+gamma)) "
        "exp(-lam gamma D^2 / (2(lam+gamma)))",
        prove,
        check,
        QUAD_TOL,
    )


def default_facts() -> list[Fact]:
    """All facts the package relies on, in the order of the paper's equations (5-23)."""
    return [
        fact_hard_limit(),
        fact_centre_value(),
        fact_stable_distance(),
        fact_sigmoid_identity(),
        fact_normaliser(),
        fact_convolution(),
        fact_kernel_cdf(),
        fact_kernel_variance(),
        fact_heat_normaliser(),
        fact_masked_distance(),
        fact_m_at_y0(),
        fact_plea_to_pla(),
        fact_plea_gradient(),
        fact_box_quadratic(),
        fact_heat_quadratic(),
    ]


def verify_all(names: Sequence[str] | None = None) -> list[FactResult]:
    """Verify the facts of :func:`default_facts` (or only those named in ``names``)."""
    facts = default_facts()
    if names:
        valid = [f.name for f in facts]
        for n in names:
            check_choice("fact", n, valid)
        facts = [f for f in facts if f.name in names]
    return [verify(f) for f in facts]


# --- command line ------------------------------------------------------------------------------
@dataclass
class LimitsOptions:
    """Options of ``anisotropy limits``."""

    json: bool = field(default=False, metadata={"help": "print the results as a JSON list"})
    only: list[str] = field(
        default_factory=list, metadata={"help": "names of the facts to check (default: all)"}
    )


def main(argv: list[str] | None = None) -> int:
    """``anisotropy limits [--json] [--only NAME ...]``: exit status 1 if any fact fails."""
    parser = argparse.ArgumentParser(prog="anisotropy facts", description=__doc__.split("\n")[0])
    add_dataclass_arguments(parser, LimitsOptions)
    opts = from_namespace(LimitsOptions, parser.parse_args(argv))
    try:
        results = verify_all(opts.only or None)
    except ValueError as exc:  # an unknown fact name: usage error, exit status 2
        parser.error(str(exc))
    if opts.json:
        print(json.dumps([r.to_dict() for r in results], indent=1))
    else:
        for r in results:
            print(r.report())
        print(f"{sum(r.passed for r in results)}/{len(results)} facts verified")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
