r"""Block bootstrap of a joint law fit, with refits on the epoch grid.

Resampling (:func:`bootstrap_fits`): the whitened, standardised residuals of the fit
are resampled in moving blocks of *epochs* (all layers of an epoch travel together,
which keeps the correlation between layers; block length from their leftover lag-one
autocorrelation), re-coloured with the fitted AR(1) of each layer and added to the
fitted curves.  Each resample is refitted from the estimate at the fitted
``(rho, sigma)``; with the AR(1) noise model ``rho`` and ``sigma`` are then re-estimated
from the resample and the fit is continued at the new whitening, so that the resamples
carry the uncertainty of ``rho`` (near ``rho = 1`` it dominates the small-sample error
of the intervals).  Each resample also returns its model-based standard errors for
the symmetric percentile-t intervals of :func:`percentile_t_intervals`.

Refits (:class:`ReducedProblem`): the profiled objective of :mod:`analysis.cooling.problem`,

.. math::

    F(\theta) = \min_a \lVert W(y - a - g(\theta)) \rVert^2
              = \lVert Wy\rVert^2 - 2 m^\top g + g^\top Q g
                - \sum_I (c_I - V_I^\top g)^2 / h_I,

depends on the data only through ``m = S^T W y`` (one value per epoch) and ``c_I``,
where ``S`` maps the shared curve ``g`` on the epoch grid to the whitened points and
``Q = S^T S`` is banded (bands at the gaps between consecutive epochs of a layer).
Gauss-Newton iterations therefore cost ``O(n_epochs)`` instead of
``O(n_layers * n_epochs)``, with no per-iteration overhead of a general-purpose solver;
this is the same least-squares problem that :func:`scipy.optimize.least_squares` solves
for the point estimate, minimised from a start that is already close to the optimum.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from .panel import Panel
from .problem import WhitenedProblem
from .timeseries import ar1_coefficients, block_indices, block_length, estimate_rho, recolor

__all__ = ["ReducedProblem", "bootstrap_fits", "percentile_t_intervals"]

#: Gauss-Newton stops when every step is below this relative size (far below any standard error)
GN_TOL = 1e-9
#: ... or after this many iterations (warm starts converge in 2-4)
GN_MAX_ITER = 30
#: halvings of a step that increases the objective before giving up
GN_MAX_HALVINGS = 20


class ReducedProblem:
    """Sufficient statistics of the whitened, amplitude-profiled problem on the epoch grid.

    Built from a :class:`~analysis.cooling.problem.WhitenedProblem` (its whitening
    coefficients ``A``, ``B``); :meth:`stats` turns a data vector into ``(m, c, yy)``,
    :meth:`solve` runs Gauss-Newton for those data.
    """

    def __init__(self, prob: WhitenedProblem):
        p = prob.p
        self.law, self.epochs = prob.law, p.epochs
        n_e, L = p.epochs.size, p.n_layers
        self.col, self.lay, self.L, self.n_e = p.col, p.layer, L, n_e
        A, B = prob.A, prob.B
        self.A, self.B = A, B
        self.hp = np.flatnonzero(B != 0)
        self.prev = np.r_[0, p.col[:-1]][self.hp]
        self.diag = np.bincount(p.col, A * A, n_e) + np.bincount(self.prev, B[self.hp] ** 2, n_e)
        d = p.col[self.hp] - self.prev
        ab = -(A * B)[self.hp]
        if np.all(d == 1):  # no missing epochs: one band
            self.offs = {1: np.bincount(p.col[self.hp], ab, n_e)}
        else:
            self.offs = {
                int(dd): np.bincount(p.col[self.hp][d == dd], ab[d == dd], n_e)
                for dd in np.unique(d)
            }
        self.w1 = prob.w1
        self.hw = prob.hw
        # V_I = S^T (w1 on the points of layer I): two bincounts over (layer, epoch) cells
        lh = p.layer[self.hp]
        self.V = (
            np.bincount(p.layer * n_e + p.col, A * self.w1, L * n_e)
            - np.bincount(lh * n_e + self.prev, (B * self.w1)[self.hp], L * n_e)
        ).reshape(L, n_e)

    def St(self, x: np.ndarray) -> np.ndarray:
        """``S^T x`` for a vector over the points (shape ``(n_e,)``)."""
        return np.bincount(self.col, self.A * x, self.n_e) - np.bincount(
            self.prev, (self.B * x)[self.hp], self.n_e
        )

    def Q(self, G: np.ndarray) -> np.ndarray:
        """``Q G`` for ``G`` of shape ``(n_e,)`` or ``(n_e, p)``."""
        out = (self.diag * G.T).T
        for dd, o in self.offs.items():
            od = o[dd:] if G.ndim == 1 else o[dd:, None]
            out[dd:] += od * G[:-dd]
            out[:-dd] += od * G[dd:]
        return out

    def stats(self, zy: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """``(m, c, yy)`` of whitened data ``zy`` (points)."""
        return self.St(zy), np.bincount(self.lay, self.w1 * zy, self.L), float(zy @ zy)

    def objective(self, z, m, c, yy):
        g, G = self.law.log_f(self.epochs, z)
        vg = self.V @ g
        F = yy - 2 * m @ g + g @ self.Q(g) - np.sum((c - vg) ** 2 / self.hw)
        return F, g, G, vg

    def solve(self, z0, m, c, yy, lo, hi):
        """Gauss-Newton with step halving inside the box; returns ``(z, F, H, amplitudes, ok)``."""
        z = np.clip(z0, lo, hi)
        F, g, G, vg = self.objective(z, m, c, yy)
        ok = False
        for _ in range(GN_MAX_ITER):
            a = (c - vg) / self.hw
            b = G.T @ (m - self.Q(g) - self.V.T @ a)
            VG = self.V @ G
            H = G.T @ self.Q(G) - VG.T @ (VG / self.hw[:, None])
            step = np.linalg.lstsq(H, b, rcond=None)[0]
            for _ in range(GN_MAX_HALVINGS):
                zn = np.clip(z + step, lo, hi)
                Fn, gn, Gn, vgn = self.objective(zn, m, c, yy)
                if Fn <= F * (1 + 1e-12) + 1e-300:
                    break
                step = step / 2
            else:
                break
            small = np.all(np.abs(zn - z) <= GN_TOL * (1 + np.abs(z)))
            z, F, g, G, vg = zn, Fn, gn, Gn, vgn
            if small:
                ok = True
                break
        VG = self.V @ G
        H = G.T @ self.Q(G) - VG.T @ (VG / self.hw[:, None])
        return z, F, H, (c - vg) / self.hw, ok


def _resamples(prob: WhitenedProblem, panel: Panel, z, rho, sigma, e, n_boot, rng) -> np.ndarray:
    """Bootstrap data sets ``(B, N)``: fitted curves plus re-coloured block-resampled residuals."""
    L, n_e, lay = panel.n_layers, panel.epochs.size, panel.layer
    E = np.full((L, n_e), np.nan)
    E[lay, panel.col] = e
    x0, x1 = E[:, :-1], E[:, 1:]
    ok = np.isfinite(x0) & np.isfinite(x1)
    rho_e = float(np.sum(np.where(ok, x0 * x1, 0)) / max(np.sum(np.where(ok, x0 * x0, 0)), 1e-300))
    idx = block_indices(n_e, block_length(rho_e, n_e), n_boot, rng)
    Estar = np.nan_to_num(E[:, idx], nan=0.0)  # (L, B, n_e); invalid sources -> 0
    prob.set_y(panel.y)
    fitted = prob.amplitudes(z)[lay] + prob.curve(z)[0]
    ystar = np.empty((n_boot, panel.y.size))
    for i in range(L):
        m = lay == i
        es = Estar[i][:, panel.col[m]] * sigma[i]  # (B, n_i) innovations on the u scale
        if np.all(panel.gap[m][1:] == 1):
            s = np.sqrt(1 - rho[i] ** 2)
            u = signal.lfilter([s], [1.0, -rho[i]], es, axis=-1, zi=es[:, :1] * (1.0 - s))[0]
        else:
            c1, c2, _ = ar1_coefficients(np.full(m.sum(), rho[i]), panel.gap[m])
            u = recolor(es, c1, c2)
        ystar[:, m] = fitted[m] + panel.r[m] * u
    return ystar


def bootstrap_fits(
    prob: WhitenedProblem,
    panel: Panel,
    z,
    rho,
    sigma,
    e,
    lo,
    hi,
    n_boot: int,
    rng: np.random.Generator,
    noise_model: str,
    k: int,
):
    """Refit ``n_boot`` block-bootstrap resamples (see the module docstring).

    Returns ``(estimates (B, p), model-based standard errors (B, p), number not converged)``.
    """
    ystar = _resamples(prob, panel, z, rho, sigma, e, n_boot, rng)
    red = ReducedProblem(prob)
    L, lay = panel.n_layers, panel.layer
    n_obs = panel.y.size
    dof = max(n_obs - k, 1)
    out, se = np.empty((n_boot, z.size)), np.empty((n_boot, z.size))
    failed = 0
    for b in range(n_boot):
        yb = ystar[b]
        zb, F, H, a, ok = red.solve(z, *red.stats(prob.W(yb)), lo, hi)
        if noise_model == "ar1":
            bp = panel.with_y(yb)
            g = red.law.log_f(panel.epochs, zb)[0][panel.col]
            u = (yb - a[lay] - g) / panel.r
            rb = estimate_rho(u, panel.gap, lay, L)
            c1, c2, _ = ar1_coefficients(rb[lay], panel.gap)
            eb = c1 * u
            eb[1:] -= c2[1:] * u[:-1]
            sb = np.sqrt(np.bincount(lay, eb * eb, L) / np.bincount(lay, minlength=L))
            pb = WhitenedProblem(bp, prob.law, rb, sb)
            rb_red = ReducedProblem(pb)
            zb, F, H, a, ok = rb_red.solve(zb, *rb_red.stats(pb.zy), lo, hi)
        failed += int(not ok)
        out[b] = zb
        se[b] = np.sqrt(np.clip(np.diag(np.linalg.pinv(H)), 0, None) * F / dof)
    prob.set_y(panel.y)
    return out, se, failed


def percentile_t_intervals(
    z: np.ndarray, boot: np.ndarray, boot_se: np.ndarray, se0: np.ndarray, level: float
) -> np.ndarray:
    """Symmetric percentile-t intervals ``(p, 2)`` on the internal scale.

    The ``level``-quantile of ``|z* - z| / se*`` over the resamples times the model-based
    standard error ``se0`` of the estimate; a parameter at a bound in some resample
    (``se* = 0``) or without a model-based error falls back to the percentile interval.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        tstat = np.abs(boot - z) / boot_se
    studentised = np.all(boot_se > 0, axis=0) & (se0 > 0)
    crit = np.where(studentised, np.quantile(np.where(boot_se > 0, tstat, 0.0), level, axis=0), 0.0)
    pct = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2], axis=0).T
    return np.where(studentised[:, None], np.column_stack([z - crit * se0, z + crit * se0]), pct)
