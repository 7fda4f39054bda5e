r"""Repetition statistics and weighted least-squares rate fits.

A convergence study repeats a randomised estimator :math:`\hat F_y` ``n``
times at each sample size ``y`` and summarises the repetitions by their bias
and standard deviation (:func:`repetition_stats`).  Rates are then fitted on
log-log axes by weighted least squares (:func:`weighted_linear_fit`), each
point weighted by the inverse variance implied by the repetition count:

* ``se(log std)``: the sample variance of ``n`` draws with excess kurtosis
  :math:`\kappa` has :math:`\operatorname{Var}[s^2] \approx \sigma^4 (2/(n-1) +
  \kappa/n)`, so by the delta method :math:`\operatorname{se}(\log s) =
  \tfrac12\sqrt{2/(n-1) + \kappa/n}`; for normal repetitions
  (:math:`\kappa = 0`) this is :math:`1/\sqrt{2(n-1)}`.
* ``se(bias) = s / sqrt(n)`` and ``se(log|bias|) = se(bias)/|bias|`` (delta
  method, meaningful only where ``|bias|`` is several ``se(bias)`` away from 0,
  which is why bias rates are fitted on *significant* points only).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from anisotropy.validation import check_finite, check_int

__all__ = [
    "RepetitionStats",
    "LinearFit",
    "repetition_stats",
    "weighted_linear_fit",
    "log_std_se",
]


def log_std_se(n: int, excess_kurtosis: float = 0.0) -> float:
    r"""Standard error of :math:`\log s` for ``n`` draws of given excess kurtosis.

    :math:`\tfrac12\sqrt{2/(n-1) + \kappa/n}` (delta method on the variance of
    the sample variance); :math:`1/\sqrt{2(n-1)}` for normal draws.  The
    kurtosis is clipped at -2 (its lower bound for any law), which keeps the root positive:
    ``2/(n-1) - 2/n > 0``.
    """
    n = check_int("n", n, minimum=2)
    kappa = max(float(excess_kurtosis), -2.0)
    return 0.5 * math.sqrt(2.0 / (n - 1) + kappa / n)


@dataclasses.dataclass(frozen=True)
class RepetitionStats:
    """Summary of ``n`` repetitions of an estimator against the exact value.

    Attributes
    ----------
    n : int
        Number of repetitions.
    mean, exact, bias, bias_se : float
        Mean estimate, exact value, ``mean - exact`` and its standard error ``std/sqrt(n)``.
    std, std_se : float
        Sample standard deviation (``ddof=1``) and its standard error
        ``std * se(log std)``.
    log_std_se : float
        Standard error of ``log std`` (see :func:`log_std_se`).
    rmse : float
        Root mean square error ``sqrt(bias^2 + std^2 (n-1)/n)``.
    """

    n: int
    mean: float
    exact: float
    bias: float
    bias_se: float
    std: float
    std_se: float
    log_std_se: float
    rmse: float

    def significant_bias(self, z: float) -> bool:
        """True when ``|bias| > z * bias_se`` (the bias is resolved at ``z`` standard errors)."""
        return abs(self.bias) > z * self.bias_se


def repetition_stats(estimates: np.ndarray, exact: float) -> RepetitionStats:
    """Bias, standard deviation and their standard errors over repetitions.

    Parameters
    ----------
    estimates : array_like, shape (n,)
        Independent repetitions of the estimator, ``n >= 4`` (the kurtosis used
        in ``std_se`` needs a few points).
    exact : float
        The exact value being estimated.

    Raises
    ------
    ValueError
        If ``estimates`` holds NaN/inf or fewer than 4 values.
    """
    x = np.asarray(estimates, dtype=np.float64).ravel()
    check_finite("estimates", x)
    n = check_int("number of estimates", x.size, minimum=4)
    exact = float(exact)
    mean = float(x.mean())
    dev = x - mean
    var = float(dev @ dev) / (n - 1)
    std = math.sqrt(var)
    if var > 0:
        m2 = float(np.mean(dev**2))
        excess = float(np.mean(dev**4)) / m2**2 - 3.0
    else:
        excess = 0.0
    lse = log_std_se(n, excess)
    bias = mean - exact
    return RepetitionStats(
        n=n,
        mean=mean,
        exact=exact,
        bias=bias,
        bias_se=std / math.sqrt(n),
        std=std,
        std_se=std * lse,
        log_std_se=lse,
        rmse=math.sqrt(bias**2 + var * (n - 1) / n),
    )


@dataclasses.dataclass(frozen=True)
class LinearFit:
    """Weighted least-squares line ``v = intercept + slope * x``.

    Attributes
    ----------
    intercept, slope : float
    intercept_se, slope_se : float
        Standard errors from the known point uncertainties, ``(X^T W X)^{-1}``.
    cov : tuple of tuple of float
        2x2 covariance of ``(intercept, slope)``.
    chi2 : float
        Weighted residual sum of squares.
    dof : int
        ``points - 2``.
    n_points : int
    """

    intercept: float
    slope: float
    intercept_se: float
    slope_se: float
    cov: tuple[tuple[float, float], tuple[float, float]]
    chi2: float
    dof: int
    n_points: int

    @property
    def birge_ratio(self) -> float:
        """``sqrt(chi2/dof)``: about 1 when the scatter matches the stated uncertainties."""
        return math.sqrt(self.chi2 / self.dof) if self.dof > 0 else math.nan

    @property
    def slope_se_scaled(self) -> float:
        """``slope_se`` inflated by the Birge ratio when it exceeds 1 (model misfit)."""
        b = self.birge_ratio
        return self.slope_se * (b if b > 1 else 1.0)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["cov"] = [list(r) for r in self.cov]
        d["birge_ratio"] = self.birge_ratio
        d["slope_se_scaled"] = self.slope_se_scaled
        return d


def weighted_linear_fit(x: np.ndarray, v: np.ndarray, se: np.ndarray) -> LinearFit:
    r"""Weighted least squares of ``v`` on ``x`` with known standard errors ``se``.

    Minimises :math:`\sum_i (v_i - a - b x_i)^2 / se_i^2`; the covariance of
    ``(a, b)`` is :math:`(X^T W X)^{-1}` with :math:`W = \mathrm{diag}(se^{-2})`.

    Parameters
    ----------
    x, v, se : array_like, shape (m,)
        Abscissae, values and their standard errors (``se > 0``); ``m >= 2`` and
        at least two distinct ``x``.

    Raises
    ------
    ValueError
        On mismatched shapes, fewer than 2 points, non-positive or non-finite
        ``se``, NaN/inf values, or all ``x`` equal.
    """
    x, v, se = (np.asarray(a, dtype=np.float64).ravel() for a in (x, v, se))
    if not (x.shape == v.shape == se.shape):
        raise ValueError(
            f"x, v and se must have the same length, got {x.size}, {v.size}, {se.size}"
        )
    check_int("number of points", x.size, minimum=2)
    for name, a in (("x", x), ("v", v), ("se", se)):
        check_finite(name, a)
    if np.any(se <= 0):
        raise ValueError("se must be > 0 for every point")
    if np.ptp(x) == 0:
        raise ValueError("x must take at least two distinct values to fit a slope")
    wts = se**-2
    X = np.stack([np.ones_like(x), x], axis=1)
    A = X.T @ (X * wts[:, None])
    cov = np.linalg.inv(A)
    coef = cov @ (X.T @ (wts * v))
    resid = v - X @ coef
    chi2 = float(np.sum(wts * resid**2))
    return LinearFit(
        intercept=float(coef[0]),
        slope=float(coef[1]),
        intercept_se=math.sqrt(cov[0, 0]),
        slope_se=math.sqrt(cov[1, 1]),
        cov=((float(cov[0, 0]), float(cov[0, 1])), (float(cov[1, 0]), float(cov[1, 1]))),
        chi2=chi2,
        dof=x.size - 2,
        n_points=int(x.size),
    )
