"""The machinery of the analytic facts: a :class:`Fact` (statement, sympy proof, numeric
check), its :class:`FactResult`, :func:`verify`, the tolerances of the numeric checks, the
shared sympy symbols and expressions (eq 6) and the quadrature helpers."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sympy as sp
from scipy import integrate

from anisotropy import kernels

__all__ = [
    "Fact",
    "FactResult",
    "verify",
    "sig",
    "softplus",
    "kernel_expr",
    "proves_zero",
    "quad",
    "quad_kernel",
    "kernel_value",
    "rel_error",
    "x",
    "z",
    "t",
    "u",
    "v",
    "w",
    "R",
    "k",
    "gamma",
    "lam",
    "beta",
    "Z1",
    "RK_POINTS",
    "ROUNDOFF_TOL",
    "QUAD_TOL",
    "QUAD_EPSREL",
    "TAIL_SCALES",
    "EDGE_SCALES",
    "FD_STEP",
    "FD_TOL",
    "SMALL_BETA",
    "SERIES_TOL",
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


def proves_zero(expr: sp.Expr) -> bool:
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


def quad(f: Callable[[float], float], lo: float, hi: float, points: Sequence[float] = ()) -> float:
    pts = [p for p in points if lo < p < hi] or None
    val, _ = integrate.quad(f, lo, hi, points=pts, limit=500, epsabs=0.0, epsrel=QUAD_EPSREL)
    return val


def quad_kernel(f: Callable[[float], float], R_: float, k_: float) -> float:
    """Integral over the real line of ``f``, which decays like the kernel K_{R,k}."""
    edge = R_ + TAIL_SCALES / (2.0 * k_)
    # break points around each edge's transition layer (width ~1/k): with only +-R, quad's
    # nodes can all miss a layer much thinner than R and converge to a wrong value
    w = min(R_, EDGE_SCALES / (2.0 * k_))
    return quad(f, -edge, edge, points=sorted({-R_ - w, -R_, -R_ + w, 0.0, R_ - w, R_, R_ + w}))


def kernel_value(xv, R_, k_):
    return float(kernels.kernel(xv, R=R_, k=k_))


def rel_error(a: float, b: float) -> float:
    return abs(a - b) / abs(b)
