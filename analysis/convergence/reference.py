r"""The analytic reference of the convergence studies: a coupled quadratic with exact moments.

:math:`L(W) = \tfrac12 (W-c)^T A (W-c)`,
:math:`A = D^{1/2}\,[(1-\rho) I + \rho\,\mathbf 1\mathbf 1^T]\,D^{1/2}`,
``D = diag(lam)``, coupling ``rho`` in ``(-1/(N-1), 1)`` (positive definite).
With ``rho = 0`` it is the separable quadratic of the closed-form references.  Every
quantity the studies compare with is exact (:mod:`analysis.free_entropy.references`):

* ``F(R, inf; W)`` - the box free entropy (erf closed form for ``rho = 0``; a
  normal box probability by nested quadrature, relative accuracy ~1e-10, for
  ``rho != 0``, which therefore needs ``N <= 3``);
* the moments of the weights :math:`X = e^{-\beta L(W+\Delta W)}`,
  :math:`\log E X^m = -F_{m\beta} - N\log 2R` (the delta method, ``m = 1..3``);
* the antithetic pair moment: :math:`L(W+u) + L(W-u) = 2L(W) + u^TAu`;
* the control variate's moments.  Its secant surrogate (see
  :func:`analysis.free_entropy.local_free_entropy`) reproduces a quadratic's
  gradient ``g = A(W-c)`` and diagonal ``diag A`` exactly, so
  :math:`Q(u) = L(W) + g\cdot u + \tfrac12\sum_i A_{ii}u_i^2` and
  :math:`G = e^{-\beta Q}`; the optimal-coefficient control variate has
  relative variance :math:`v_X - \operatorname{Cov}(X,G)^2/(\mu_X^2\operatorname{Var}G)`.
  For ``rho = 0``, ``Q = L`` and the control variate is exact (zero variance),
  which is why the studies use a coupled reference.

The k-study needs ``F(R, k)`` at finite ``k``, whose exact reference exists for
separable losses only: it uses the separable part (``A -> diag(lam)``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from analysis.convergence.theory import DeltaMethod, delta_method_from_moments

__all__ = ["QuadraticReference", "quadratic_box_log_average"]


def quadratic_box_log_average(B: np.ndarray, b: np.ndarray, *, R: float) -> float:
    r""":math:`\log E_u\, e^{-(\frac12 u^T B u + b\cdot u)}`, ``u`` uniform on ``[-R, R]^N``.

    Completing the square, :math:`\tfrac12 u^TBu + b\cdot u = \tfrac12(u-m)^TB(u-m) -
    \tfrac12 m^TBm` with :math:`m = -B^{-1}b`, so the average is
    :math:`\tfrac12 m^TBm - F(0; B, c=m) - N\log 2R`, ``F`` the box free entropy of
    the quadratic (:func:`analysis.free_entropy.references.quadratic_box_free_entropy` when
    ``B`` is diagonal, :func:`~analysis.free_entropy.references.quadratic_full_box_free_entropy`
    otherwise).

    Parameters
    ----------
    B : ndarray, shape (N, N)
        Symmetric positive definite.
    b : ndarray, shape (N,)
    R : float
    """
    from analysis.free_entropy import references as ref

    B = np.asarray(B, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n = b.shape[0]
    m = -np.linalg.solve(B, b)
    zero = np.zeros(n)
    if np.count_nonzero(B - np.diag(np.diag(B))) == 0:
        f = ref.quadratic_box_free_entropy(zero, lam=np.diag(B), c=m, R=R)
    else:
        f = ref.quadratic_full_box_free_entropy(zero, A=B, c=m, R=R)
    return float(0.5 * m @ B @ m - f - n * math.log(2 * R))


@dataclasses.dataclass(frozen=True)
class QuadraticReference:
    """Coupled quadratic reference (module docstring); a thin adapter over
    :mod:`analysis.free_entropy.references`.

    Attributes
    ----------
    lam : tuple of float
        Diagonal curvatures (``> 0``), length ``N``.
    c, w : tuple of float
        Minimum of the loss and centre ``W`` at which ``F`` is estimated.
    R : float
        Box half side.
    coupling : float
        ``rho``; ``0`` is the separable quadratic.
    beta : float
    """

    lam: tuple[float, ...]
    c: tuple[float, ...]
    w: tuple[float, ...]
    R: float
    coupling: float = 0.0
    beta: float = 1.0

    def __post_init__(self):
        n = len(self.lam)
        if n == 0 or len(self.c) != n or len(self.w) != n:
            raise ValueError(
                f"lam, c and w must have the same length >= 1, got {len(self.lam)}, "
                f"{len(self.c)}, {len(self.w)}"
            )
        if not all(v > 0 and math.isfinite(v) for v in self.lam):
            raise ValueError(
                f"lam must be finite and > 0 in every coordinate, got {list(self.lam)}"
            )
        if not all(math.isfinite(v) for v in (*self.c, *self.w)):
            raise ValueError("c and w must be finite")
        lo = -1.0 / (n - 1) if n > 1 else -math.inf
        if not lo < self.coupling < 1.0:
            raise ValueError(
                f"coupling must lie in ({lo:g}, 1) for a positive definite A with "
                f"N = {n}, got {self.coupling!r}"
            )
        if self.coupling != 0 and n > 3:
            # N > 3 would fall back on Genz's randomised CDF (absolute error ~1e-8): too
            # coarse for biases of 1e-5 at the largest y.
            raise ValueError(f"coupling != 0 needs N <= 3 (exact nested quadrature), got N = {n}")
        for name in ("R", "beta"):
            v = getattr(self, name)
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"{name} must lie in (0, inf), got {v!r}")

    @property
    def n(self) -> int:
        return len(self.lam)

    @property
    def A(self) -> np.ndarray:
        """The curvature matrix, shape (N, N)."""
        s = np.sqrt(np.asarray(self.lam, dtype=np.float64))
        corr = (1 - self.coupling) * np.eye(self.n) + self.coupling
        return s[:, None] * corr * s[None, :]

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.w, dtype=np.float64), np.asarray(self.c, dtype=np.float64)

    def loss(self):
        """Vectorised loss, ``(..., N) -> (...)``."""
        from analysis.free_entropy.references import full_quadratic_loss, quadratic_loss

        _, c = self._arrays()
        if self.coupling == 0:
            return quadratic_loss(np.asarray(self.lam), c)
        return full_quadratic_loss(self.A, c)

    def exact(self, beta_multiple: float = 1.0) -> float:
        """Box free entropy ``F(R, inf; W)`` at inverse temperature ``beta_multiple * beta``."""
        from analysis.free_entropy import references as ref

        w, c = self._arrays()
        b = beta_multiple * self.beta
        if self.coupling == 0:
            return float(
                ref.quadratic_box_free_entropy(w, lam=np.asarray(self.lam), c=c, R=self.R, beta=b)
            )
        return float(ref.quadratic_full_box_free_entropy(w, A=self.A, c=c, R=self.R, beta=b))

    def separable_exact(self, k: float = math.inf) -> float:
        """``F(R, k; W)`` of the separable part ``A -> diag(lam)`` (quadrature at finite ``k``)."""
        from analysis.free_entropy import references as ref

        w, c = self._arrays()
        lam = np.asarray(self.lam)
        if math.isinf(k):
            return float(ref.quadratic_box_free_entropy(w, lam=lam, c=c, R=self.R, beta=self.beta))
        return float(
            ref.quadratic_finite_k_free_entropy(w, lam=lam, c=c, R=self.R, k=k, beta=self.beta)
        )

    def finite_k_coefficient(self) -> float:
        """Exact :math:`C_2` of the separable part: ``F(R,k) - F(R,inf) ~ C_2/k^2``."""
        from analysis.convergence.theory import finite_k_coefficient

        w, c = self._arrays()
        return finite_k_coefficient(w, lam=np.asarray(self.lam), c=c, R=self.R, beta=self.beta)

    def log_weight_moments(self) -> dict[int, float]:
        r""":math:`\log E[X^m]`, ``m = 1, 2, 3``, :math:`X = e^{-\beta L(W + \Delta W)}` (box)."""
        log_z = self.n * math.log(2 * self.R)
        return {m: -self.exact(float(m)) - log_z for m in (1, 2, 3)}

    def delta_method(
        self, method: str, log_moments: dict[int, float] | None = None
    ) -> DeltaMethod | None:
        """Delta-method constants of ``method``; ``None`` for ``sobol`` (no closed form).

        ``mc``: ``v = Var X / mu^2`` and the skewness (second-order terms);
        ``antithetic``: ``v + Cov(X, X')/mu^2``; ``control_variate``:
        ``v - Cov(X, G)^2/(mu^2 Var G)`` (first order only: the estimated
        coefficient adds an ``O(1/y)`` bias the delta method of the mean does not
        cover, so only its std is predicted).
        """
        if method == "sobol":
            return None
        logm = log_moments or self.log_weight_moments()
        dm = delta_method_from_moments(logm)
        if method == "mc":
            return dm
        w, c = self._arrays()
        A = self.A
        d = w - c
        bl0 = self.beta * 0.5 * float(d @ A @ d)  # beta L(W)
        if method == "antithetic":
            pair = -2 * bl0 + quadratic_box_log_average(
                2 * self.beta * A, np.zeros(self.n), R=self.R
            )
            return DeltaMethod(relvar=dm.relvar + math.expm1(pair - 2 * logm[1]))
        if method == "control_variate":
            g = self.beta * (A @ d)
            D = self.beta * np.diag(np.diag(A))
            log_g1 = -bl0 + quadratic_box_log_average(D, g, R=self.R)
            log_g2 = -2 * bl0 + quadratic_box_log_average(2 * D, 2 * g, R=self.R)
            log_xg = -2 * bl0 + quadratic_box_log_average(self.beta * A + D, 2 * g, R=self.R)
            v_g = math.expm1(log_g2 - 2 * log_g1)
            cov = math.expm1(log_xg - logm[1] - log_g1)  # Cov(X, G)/(mu_X mu_G)
            relvar = max(dm.relvar - cov**2 / v_g, 0.0) if v_g > 0 else 0.0
            return DeltaMethod(relvar=relvar, predicts_bias=False)
        raise ValueError(
            f"unknown method {method!r}; valid: 'mc', 'sobol', 'antithetic', 'control_variate'"
        )

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["A"] = self.A.tolist()
        return d
