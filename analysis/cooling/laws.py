r"""Candidate cooling laws :math:`f(t)` of the late common-decay regime.

Section 2.1 of the paper (PAPER-NOTES section 5) describes a late regime in
which the signal of every layer decays as :math:`s_I(t) = A_I f(t)`.  This
module holds the candidate decay laws, written as :math:`g(t) = \ln f(t)` with
their analytic Jacobians with respect to *internal* parameters chosen so that
the fit is well conditioned (logarithms of time scales):

=============================== ===================================================== ======================
name                            :math:`g(t) = \ln f(t)`                                internal parameters
=============================== ===================================================== ======================
``exponential``                 :math:`-t/\tau`                                        :math:`\ln\tau`
``stretched_exponential``       :math:`-(t/\tau)^\beta`                                :math:`\ln\tau, \beta`
``power_law``                   :math:`-p \ln t`                                       :math:`p`
``stretched_then_exponential``  :math:`-(t/\tau)^\beta` for :math:`t \le t_c`, then   :math:`\ln\tau,\beta,\ln t_c`
                                continued exponentially with matching value and
                                slope: :math:`-q_c[1 + \beta(t/t_c - 1)]`,
                                :math:`q_c = (t_c/\tau)^\beta`
=============================== ===================================================== ======================

The last law is the "sub-exponential cooling possibly turning exponential at
asymptotically late times" of section 2.1; it is :math:`C^1` in ``t`` and in its
parameters, its late exponential time scale is
:math:`\tau_{late} = t_c / (\beta q_c)`, and it reduces to the stretched
exponential when :math:`t_c` reaches the end of the window.

Amplitudes are not part of a law: :math:`\ln A_I` is fitted per layer and
profiled out by :mod:`analysis.cooling.fit`.  Time ``t`` is the epoch counted
from the start of training (the laws are not invariant under a shift of ``t``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

from anisotropy.validation import check_choice

__all__ = ["LAW_NAMES", "LawName", "Law", "get_law", "log_f", "evaluate", "initial_guess"]

LawName = Literal["exponential", "stretched_exponential", "power_law", "stretched_then_exponential"]
LAW_NAMES: tuple[str, ...] = ("exponential", "stretched_exponential", "power_law",
                              "stretched_then_exponential")

#: bounds of the stretching exponent beta: below 0.01 the stretched exponential is
#: numerically a power law (-(t/tau)^beta ~ -1 - beta ln(t/tau)) and tau runs off to
#: exp(-1/beta)-sized values; above 4 it is a compressed exponential no cooling curve shows.
BETA_BOUNDS = (0.01, 4.0)
#: ln(tau) may range from ln(t_max) - 40 (then (t/tau)^beta <= e^(4*40+...) stays far from
#: overflow) to ln(t_max) + 20 (a time scale e^20 times the run: no decay at all).
LOG_TAU_BELOW, LOG_TAU_ABOVE = 40.0, 20.0


@dataclass(frozen=True)
class Law:
    """One decay law: names of its natural and internal parameters and maps between them.

    Attributes
    ----------
    name : str
    params : tuple of str
        Natural parameter names as written to ``cooling.json`` (``tau``, ``beta``, ``p``, ``t_c``).
    internal : tuple of str
        Internal parameter names (``log_tau``, ``beta``, ``p``, ``log_t_c``).
    log_params : tuple of bool
        Whether natural = exp(internal) for each parameter.
    """

    name: str
    params: tuple[str, ...]
    internal: tuple[str, ...]
    log_params: tuple[bool, ...]
    _fn: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

    @property
    def n_params(self) -> int:
        return len(self.params)

    def log_f(self, t: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``g(t) = ln f(t)`` (shape ``(n,)``) and ``dg/dz`` (shape ``(n, p)``)."""
        t = np.asarray(t, dtype=np.float64)
        return self._fn(t, np.log(t), np.asarray(z, dtype=np.float64))

    def to_natural(self, z: np.ndarray) -> dict[str, float]:
        """Internal parameter vector -> ``{natural name: value}``."""
        return {n: float(np.exp(v) if lg else v) for n, v, lg in zip(self.params, z, self.log_params)}

    def to_internal(self, params: dict[str, float]) -> np.ndarray:
        """``{natural name: value}`` -> internal parameter vector (ValueError on missing names)."""
        missing = [n for n in self.params if n not in params]
        if missing:
            raise ValueError(f"params of law {self.name!r} must contain {list(self.params)}; "
                             f"missing {missing}")
        vals = [float(params[n]) for n in self.params]
        for n, v, lg in zip(self.params, vals, self.log_params):
            if lg and not v > 0:
                raise ValueError(f"{n} of law {self.name!r} must lie in (0, inf), got {v!r}")
        return np.array([np.log(v) if lg else v for v, lg in zip(vals, self.log_params)])

    def bounds(self, t_lo: float, t_hi: float) -> tuple[np.ndarray, np.ndarray]:
        """Box bounds of the internal parameters for a window ``[t_lo, t_hi]``."""
        lt = np.log(t_hi)
        box = {"log_tau": (lt - LOG_TAU_BELOW, lt + LOG_TAU_ABOVE), "beta": BETA_BOUNDS,
               "p": (-np.inf, np.inf), "log_t_c": (np.log(t_lo), lt)}
        lo, hi = zip(*(box[n] for n in self.internal))
        return np.array(lo, dtype=float), np.array(hi, dtype=float)


def _exponential(t, lt, z):
    g = -t * np.exp(-z[0])
    return g, (-g)[:, None]


def _stretched(t, lt, z):
    x = lt - z[0]                      # ln(t/tau)
    q = np.exp(z[1] * x)               # (t/tau)^beta
    jac = np.empty((t.size, 2))
    jac[:, 0] = z[1] * q
    jac[:, 1] = -q * x
    return -q, jac


def _power(t, lt, z):
    return -z[0] * lt, (-lt)[:, None]


def _stretched_then_exp(t, lt, z):
    log_tau, beta, log_tc = z
    x = lt - log_tau
    q = np.exp(beta * x)
    g = -q
    jac = np.zeros((t.size, 3))
    jac[:, 0] = beta * q
    jac[:, 1] = -q * x
    late = lt > log_tc
    if np.any(late):
        xc = log_tc - log_tau
        qc = np.exp(beta * xc)
        r = t[late] * np.exp(-log_tc)          # t / t_c  (> 1)
        lin = 1.0 + beta * (r - 1.0)
        g[late] = -qc * lin
        jac[late, 0] = beta * qc * lin
        jac[late, 1] = -qc * xc * lin - qc * (r - 1.0)
        jac[late, 2] = -qc * beta * (1.0 - beta) * (1.0 - r)
    return g, jac


_LAWS = {
    "exponential": Law("exponential", ("tau",), ("log_tau",), (True,), _exponential),
    "stretched_exponential": Law("stretched_exponential", ("tau", "beta"), ("log_tau", "beta"),
                                 (True, False), _stretched),
    "power_law": Law("power_law", ("p",), ("p",), (False,), _power),
    "stretched_then_exponential": Law("stretched_then_exponential", ("tau", "beta", "t_c"),
                                      ("log_tau", "beta", "log_t_c"), (True, False, True),
                                      _stretched_then_exp),
}


def get_law(name: str) -> Law:
    """Return the :class:`Law` called ``name``; ValueError listing the valid names otherwise."""
    check_choice("law", name, LAW_NAMES)
    return _LAWS[name]


def log_f(name: str, t: np.ndarray, params: dict[str, float]) -> np.ndarray:
    """``ln f(t)`` of law ``name`` at natural ``params`` (shape of ``t``), e.g. for plotting."""
    law = get_law(name)
    t = np.asarray(t, dtype=np.float64)
    if np.any(~(t > 0)):
        raise ValueError("t must be > 0 (epochs counted from the start of training)")
    return law.log_f(t.ravel(), law.to_internal(params))[0].reshape(t.shape)


def evaluate(name: str, t: np.ndarray, params: dict[str, float], log_amplitude: float = 0.0
             ) -> np.ndarray:
    """``ln s(t) = ln A + ln f(t)``: the fitted curve of one layer on a natural-log axis."""
    return float(log_amplitude) + log_f(name, t, params)


#: stretching exponents tried for the starting point of the stretched laws
_BETA_GRID = np.array([0.1, 0.2, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0])


def initial_guess(name: str, t: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """Starting points (internal parameters) for law ``name``.

    ``t`` and ``y`` (shape ``(n,)``) are epochs and a layer-averaged log signal with
    per-layer means removed; ``g`` is then fitted by linear least squares in
    closed form for each candidate (``ln f`` is linear in ``1/tau``, ``tau^-beta`` at
    fixed ``beta``, or ``p``).  Several starts are returned for the three-parameter
    law, whose crossover time ``t_c`` makes the objective multimodal.
    """
    law = get_law(name)
    t = np.asarray(t, float)
    y = np.asarray(y, float) - np.mean(y)
    lo, hi = law.bounds(t.min(), t.max())

    def slope(x):
        xc = x - x.mean()
        return float(xc @ y / max(xc @ xc, np.finfo(float).tiny))

    if name == "power_law":
        return [np.array([-slope(np.log(t))])]
    if name == "exponential":
        rate = -slope(t)
        z = np.log(1.0 / rate) if rate > 0 else hi[0] - 1.0
        return [np.clip(np.array([z]), lo + 1e-9, hi - 1e-9)]
    # stretched: y ~ -c t^beta + const, best beta on the grid with c > 0
    best, z = np.inf, np.array([np.log(t.max()), 1.0])
    for b in _BETA_GRID:
        x = t ** b
        c = -slope(x)
        if c <= 0:
            continue
        xc = x - x.mean()
        rss = float(np.sum((y + c * xc) ** 2))
        if rss < best:
            best, z = rss, np.array([-np.log(c) / b, b])
    z = np.clip(z, lo[:2] + 1e-9, hi[:2] - 1e-9)
    if name == "stretched_exponential":
        return [z]
    span = np.log(t.max()) - np.log(t.min())
    return [np.clip(np.array([z[0], z[1], np.log(t.min()) + f * span]), lo + 1e-9, hi - 1e-9)
            for f in (0.25, 0.5, 0.75)]
