r"""Predicted rates and constants of the free-entropy estimators (eqs 3 and 10 of
*Partial local entropy and anisotropy in deep weight spaces*).

**Sample size y -> inf (delta method).**  The normalised estimator is
:math:`\hat F_y = -\log Z_K - \log \bar X`, with :math:`\bar X` the mean of
``y`` draws of :math:`X = e^{-\beta L(W+\Delta W)}`, :math:`\mu = E X`.  Write
:math:`\bar X/\mu = 1 + \varepsilon` and the normalised central moments
:math:`v = \operatorname{Var}X/\mu^2` (the *relative variance*),
:math:`\kappa_3 = E(X-\mu)^3/\mu^3`.  For i.i.d. draws
:math:`E\varepsilon^2 = v/y`, :math:`E\varepsilon^3 = \kappa_3/y^2`,
:math:`E\varepsilon^4 = 3v^2/y^2 + O(y^{-3})`, and expanding
:math:`-\log(1+\varepsilon)
= -\varepsilon + \varepsilon^2/2 - \varepsilon^3/3 + \varepsilon^4/4 - \dots`,

.. math::

    E\hat F_y - F = \frac{v}{2y} + \frac{b_2}{y^2} + O(y^{-3}),\quad
    b_2 = \frac{3v^2}{4} - \frac{\kappa_3}{3},

    \operatorname{Var}\hat F_y = \frac{v}{y} + \frac{s_2}{y^2} + O(y^{-3}),\quad
    s_2 = \frac{5v^2}{2} - \kappa_3 .

So ``std * sqrt(y) -> sqrt(v)`` and ``bias * y -> v/2`` (bias positive: F is
minus the log of a mean, and log is concave).  Antithetic pairs
:math:`(\Delta W, -\Delta W)` replace ``v`` by
:math:`v + \operatorname{Cov}(X, X')/\mu^2` (``y/2`` pairs of two).

**Sharpness k -> inf.**  The normalised kernel is the law of ``U + L`` with
``U`` uniform on the box and ``L`` i.i.d. Logistic(0, 1/(2k)) per coordinate
(the normalised kernel of eq 6; :mod:`analysis.facts`), so
:math:`E_k[e^{-\beta L}] = E_L[h(L)]` where
:math:`h(x) = E_U[e^{-\beta L(W + x + U)}] \propto e^{-F_\infty(W + x)}`.
``L`` is symmetric, so the first-order term vanishes, and with
:math:`\operatorname{Var} L_i = \pi^2/(12 k^2)`,
:math:`E_L h(L) = h(0)\,[1 + \tfrac{\pi^2}{24k^2}\,\Delta h/h + O(k^{-4})]`,
:math:`\Delta h / h = |\nabla F_\infty|^2 - \Delta F_\infty`.  The normaliser
adds :math:`N\log(1 - e^{-4kR})`, exponentially small.  Hence

.. math::

    F(R,k) - F(R,\infty) = \frac{\pi^2}{24 k^2}\,\bigl(\Delta F_\infty - |\nabla F_\infty|^2\bigr)
    + O(k^{-4}) + O(N e^{-4kR}),

a rate of exactly ``k^-2`` (slope -2 on log-log axes) with a computable constant.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
from scipy.special import erf

from anisotropy.validation import check_finite, check_positive

__all__ = [
    "DeltaMethod",
    "delta_method_from_moments",
    "finite_k_coefficient",
    "finite_k_coefficient_fd",
    "quadratic_box_antithetic_moment",
]


@dataclasses.dataclass(frozen=True)
class DeltaMethod:
    r"""Delta-method constants of the log-mean-exp estimator (module docstring).

    Attributes
    ----------
    relvar : float
        :math:`v = \operatorname{Var}X / \mu^2`.
    skew3 : float
        :math:`\kappa_3 = E(X-\mu)^3/\mu^3` (``nan`` when not supplied).
    predicts_bias : bool
        ``False`` when only the standard deviation is predicted (the bias
        methods then return ``nan``).
    """

    relvar: float
    skew3: float = math.nan
    predicts_bias: bool = True

    @property
    def std_constant(self) -> float:
        """``lim std * sqrt(y) = sqrt(v)``."""
        return math.sqrt(self.relvar)

    @property
    def bias_constant(self) -> float:
        """``lim bias * y = v / 2``."""
        return 0.5 * self.relvar if self.predicts_bias else math.nan

    @property
    def bias_second_order(self) -> float:
        """``b_2 = 3 v^2/4 - kappa_3/3``: the ``1/y^2`` bias coefficient."""
        return 0.75 * self.relvar**2 - self.skew3 / 3.0

    @property
    def var_second_order(self) -> float:
        """``s_2 = 5 v^2/2 - kappa_3``: the ``1/y^2`` variance coefficient."""
        return 2.5 * self.relvar**2 - self.skew3

    def std(self, y: np.ndarray | float) -> np.ndarray:
        """First-order predicted standard deviation ``sqrt(v / y)``; shape of ``y``."""
        return np.sqrt(self.relvar / np.asarray(y, dtype=np.float64))

    def bias(self, y: np.ndarray | float) -> np.ndarray:
        """First-order predicted bias ``v / (2 y)``; shape of ``y``."""
        return self.bias_constant / np.asarray(y, dtype=np.float64)


def delta_method_from_moments(log_moments: dict[int, float]) -> DeltaMethod:
    r"""Relative variance and skewness from raw moments of :math:`X = e^{-\beta L}`.

    Parameters
    ----------
    log_moments : dict int -> float
        :math:`\log E[X^m]` for ``m = 1, 2`` and optionally ``3`` (logs keep
        high-dimensional products from underflowing).

    Returns
    -------
    DeltaMethod
        With ``r_m = E X^m / mu^m``: ``v = r_2 - 1``, ``kappa_3 = r_3 - 3 r_2 + 2``.

    Raises
    ------
    ValueError
        If ``m = 1`` or ``2`` is missing, a value is not finite, or the implied
        variance is negative beyond rounding (moments that cannot come from one law).
    """
    for m in (1, 2):
        if m not in log_moments:
            raise ValueError(
                f"log_moments must contain m = 1 and 2, got keys {sorted(log_moments)}"
            )
    vals = {
        m: float(check_finite(f"log_moments[{m}]", np.float64(v))) for m, v in log_moments.items()
    }
    r = {m: math.exp(lv - m * vals[1]) for m, lv in vals.items()}
    relvar = r[2] - 1.0
    # Jensen: E X^2 >= (E X)^2; allow a relative rounding of 1e-12 (a few float64 ulps
    # accumulated over a product of N one-dimensional closed forms).
    if relvar < -1e-12 * r[2]:
        raise ValueError(f"moments imply a negative variance (relative variance {relvar:.3g})")
    skew3 = r[3] - 3.0 * r[2] + 2.0 if 3 in r else math.nan
    return DeltaMethod(relvar=max(relvar, 0.0), skew3=skew3)


def _separable_inputs(w, lam, c, R, beta):
    """Validated float64 ``(w, lam, c, R, beta*lam)`` of a separable quadratic reference."""
    R = check_positive("R", R)
    beta = check_positive("beta", beta)
    w, lam, c = (np.asarray(a, dtype=np.float64) for a in (w, lam, c))
    if np.any(lam <= 0):
        raise ValueError("lam must be > 0 in every coordinate")
    return w, lam, c, R, beta * lam


def quadratic_box_antithetic_moment(
    w: np.ndarray, *, lam: np.ndarray, c: np.ndarray, R: float, beta: float = 1.0
) -> float:
    r""":math:`\log E[e^{-\beta L(W+U) - \beta L(W-U)}]`, U uniform on the box, separable quadratic.

    For :math:`L = \tfrac12\sum_i\lambda_i(W_i - c_i)^2`,
    :math:`(d+u)^2 + (d-u)^2 = 2d^2 + 2u^2` with :math:`d = W_i - c_i`, so each
    coordinate gives
    :math:`e^{-\beta\lambda d^2}\,\sqrt{\pi/(\beta\lambda)}\,
    \operatorname{erf}(R\sqrt{\beta\lambda})/(2R)`.

    Parameters
    ----------
    w, lam, c : array_like, shape (N,)
        Centre, curvatures (``> 0``) and minimum of the loss.
    R, beta : float
        Box half side and inverse temperature (``> 0``).
    """
    w, lam, c, R, bl = _separable_inputs(w, lam, c, R, beta)
    d = w - c
    log_1d = -bl * d**2 + 0.5 * np.log(np.pi / bl) + np.log(erf(R * np.sqrt(bl))) - math.log(2 * R)
    return float(np.sum(log_1d))


def finite_k_coefficient(
    w: np.ndarray, *, lam: np.ndarray, c: np.ndarray, R: float, beta: float = 1.0
) -> float:
    r"""Exact :math:`C_2` in :math:`F(R,k) - F(R,\infty) = C_2/k^2 + O(k^{-4})`.

    For the separable quadratic loss,
    :math:`C_2 = \tfrac{\pi^2}{24}(\Delta F_\infty - |\nabla F_\infty|^2)`
    (module docstring).  For :math:`g_i(t) = e^{-\beta\lambda_i(t-c_i)^2/2}` and
    :math:`I_i = \int_{W_i-R}^{W_i+R} g_i`, this equals
    :math:`-\tfrac{\pi^2}{24}\sum_i [g_i'(W_i+R) - g_i'(W_i-R)]/I_i` with
    :math:`g'(t) = -\beta\lambda (t-c) g(t)`.

    Parameters
    ----------
    w, lam, c : array_like, shape (N,)
    R, beta : float
    """
    w, lam, c, R, bl = _separable_inputs(w, lam, c, R, beta)
    a = np.sqrt(bl / 2)
    tp, tm = w + R - c, w - R - c
    integral = np.sqrt(np.pi / (2 * bl)) * (erf(a * tp) - erf(a * tm))

    def dg(t):
        return -bl * t * np.exp(-0.5 * bl * t**2)

    return float(-(math.pi**2 / 24.0) * np.sum((dg(tp) - dg(tm)) / integral))


#: Central-difference step for :func:`finite_k_coefficient_fd`: the truncation error
#: is O(h^2) ~ 1e-8 and the rounding error O(eps F / h^2) ~ 1e-8 for F of order 1.
FD_STEP = 1e-4


def finite_k_coefficient_fd(
    free_entropy: Callable[[np.ndarray], float], w: np.ndarray, *, h: float = FD_STEP
) -> float:
    r""":math:`C_2 = \tfrac{\pi^2}{24}(\Delta F - |\nabla F|^2)` by central differences.

    Works for any closed-form box free entropy ``free_entropy(w) -> float``
    (e.g. a non-separable quadratic); the separable case has the exact
    :func:`finite_k_coefficient`.

    Parameters
    ----------
    free_entropy : callable, (N,) -> float
        :math:`F(R, \infty; W)`.
    w : array_like, shape (N,)
    h : float
        Difference step (see :data:`FD_STEP`).
    """
    h = check_positive("h", h)
    w = np.asarray(w, dtype=np.float64)
    f0 = float(free_entropy(w))
    lap = grad2 = 0.0
    for i in range(w.size):
        e = np.zeros_like(w)
        e[i] = h
        fp, fm = float(free_entropy(w + e)), float(free_entropy(w - e))
        lap += (fp - 2 * f0 + fm) / h**2
        grad2 += ((fp - fm) / (2 * h)) ** 2
    return (math.pi**2 / 24.0) * (lap - grad2)
