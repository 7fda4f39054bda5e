r"""The whitened, amplitude-profiled least-squares problem of a joint law fit.

At fixed AR(1) coefficients :math:`\rho_I` and scales :math:`\sigma_I` the likelihood of the
model of :mod:`analysis.cooling.fit` is a weighted least-squares problem in the whitened
residuals :math:`e = W(y - a_I - g(t;\theta))`, with
:math:`W v = A v - B\,\mathrm{shift}(v)`, :math:`A = c_1/(r\sigma)`,
:math:`B = c_2/(r_{prev}\sigma)` (:func:`~analysis.cooling.timeseries.ar1_coefficients`).
The per-layer amplitudes :math:`a_I` enter linearly and are profiled out in closed form
(variable projection), so the optimiser only sees the shape parameters of the law.

This module is the level below both the point estimate (:mod:`analysis.cooling.fit`) and
the bootstrap refits (:mod:`analysis.cooling.bootstrap`); it imports neither.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from .laws import Law
from .panel import Panel
from .timeseries import ar1_coefficients

__all__ = ["WhitenedProblem", "solve", "innovations"]

#: a starting point is moved this far (relative to the size of the bound) inside the box:
#: the trust-region reflective solver needs a strictly interior start.
INTERIOR_PAD = 1e-9


class WhitenedProblem:
    """Whitened, profiled least-squares problem at fixed (rho, sigma).

    Residual ``e = W (y - a[layer] - g)`` with ``W v = A v - B shift(v)``,
    ``A = c1/(r sigma)``, ``B = c2/(r_prev sigma)``; ``a`` profiled out in closed form.
    Jacobian columns are kept as rows of a ``(p, N)`` array (contiguous 1-D operations).
    """

    def __init__(self, panel: Panel, law: Law, rho: np.ndarray, sigma: np.ndarray):
        self.p, self.law = panel, law
        L = panel.n_layers
        c1, c2, self.logdet = ar1_coefficients(rho[panel.layer], panel.gap)
        s = sigma[panel.layer]
        self.A = c1 / (panel.r * s)
        self.B = np.zeros_like(c2)
        self.B[1:] = c2[1:] / (panel.r[:-1] * s[1:])
        self.w1 = self.W(np.ones_like(panel.y))
        self.hw = np.bincount(panel.layer, self.w1 * self.w1, L)
        self.set_y(panel.y)

    def W(self, v: np.ndarray) -> np.ndarray:
        """Whiten along the last axis (``v`` of shape ``(N,)`` or ``(p, N)``)."""
        out = self.A * v
        out[..., 1:] -= self.B[1:] * v[..., :-1]
        return out

    def _project(self, v: np.ndarray) -> np.ndarray:
        """Remove the per-layer amplitude direction ``w1`` from a whitened vector."""
        lay = self.p.layer
        return v - self.w1 * np.take(np.bincount(lay, self.w1 * v, self.p.n_layers) / self.hw, lay)

    def set_y(self, y: np.ndarray) -> None:
        """Use data ``y`` (points) instead of the panel's (bootstrap resamples)."""
        self.zy = self.W(y)
        self._key: bytes | None = None

    def curve(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``g`` at the points (shape ``(N,)``) and its Jacobian as ``(p, N)``.

        Cached per ``z``.
        """
        key = z.tobytes()
        if key != self._key:
            g, G = self.law.log_f(self.p.epochs, z)
            col = self.p.col
            self._g = np.take(g, col)
            self._Gt = np.take(np.ascontiguousarray(G.T), col, axis=1)
            self._Wg = self.W(self._g)
            self._key = key
        return self._g, self._Gt

    def amplitudes(self, z: np.ndarray) -> np.ndarray:
        """Profiled log amplitudes per layer at ``z``."""
        self.curve(z)
        e0 = self.zy - self._Wg
        return np.bincount(self.p.layer, self.w1 * e0, self.p.n_layers) / self.hw

    def fun(self, z: np.ndarray) -> np.ndarray:
        """Whitened residuals with the amplitudes profiled out (shape ``(N,)``)."""
        self.curve(z)
        return self._project(self.zy - self._Wg)

    def jac_rows(self, z: np.ndarray) -> np.ndarray:
        """Jacobian of :meth:`fun` as ``(p, N)``."""
        _, Gt = self.curve(z)
        WG = self.W(Gt)
        for j in range(WG.shape[0]):
            WG[j] = -self._project(WG[j])
        return WG

    def jac(self, z: np.ndarray) -> np.ndarray:
        """Jacobian of :meth:`fun` as ``(N, p)``."""
        return self.jac_rows(z).T


def solve(
    prob: WhitenedProblem, z0: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> optimize.OptimizeResult:
    """``least_squares`` (trust-region reflective, bounded) from ``z0`` moved inside the box."""
    pad = INTERIOR_PAD * (
        1 + np.abs(np.where(np.isfinite(lo), lo, 0)) + np.abs(np.where(np.isfinite(hi), hi, 0))
    )
    z0 = np.clip(np.where(np.isfinite(z0), z0, 0.0), lo + pad, hi - pad)
    return optimize.least_squares(
        prob.fun, z0, jac=prob.jac, bounds=(lo, hi), method="trf", x_scale="jac"
    )


def innovations(
    prob: WhitenedProblem, panel: Panel, z: np.ndarray, rho: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardised residuals ``u = (y - a - g)/r``, their AR(1) innovations (unscaled) and the
    profiled amplitudes ``a``."""
    a = prob.amplitudes(z)
    g, _ = prob.curve(z)
    u = (panel.y - a[panel.layer] - g) / panel.r
    c1, c2, _ = ar1_coefficients(rho[panel.layer], panel.gap)
    e = c1 * u
    e[1:] -= c2[1:] * u[:-1]
    return u, e, a
