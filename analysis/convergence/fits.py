r"""Slopes and constants of the convergence studies (see :mod:`analysis.convergence.study`).

Input rows are the per-grid-point repetition statistics (keys of
:data:`analysis.convergence.study.CSV_COLUMNS`); the fits use
:func:`analysis.convergence.rates.weighted_linear_fit` with the standard errors of
:mod:`analysis.convergence.rates`, and compare with the predictions of
:mod:`analysis.convergence.theory`.
"""

from __future__ import annotations

import math

import numpy as np

from analysis.convergence.rates import LinearFit, weighted_linear_fit
from analysis.convergence.theory import DeltaMethod

__all__ = ["fit_method", "fit_k_study"]


def _fit_or_none(x, v, se) -> LinearFit | None:
    x = np.asarray(x)
    if x.size < 2 or np.ptp(x) == 0:
        return None
    return weighted_linear_fit(x, v, se)


def _constant(fit: LinearFit | None, predicted: float, slope_predicted: float) -> dict | None:
    """Intercept of ``value * y^p`` vs ``1/y`` (the ``y -> inf`` constant) vs the prediction."""
    if fit is None or fit.n_points < 3:
        return None
    return dict(
        measured=fit.intercept,
        se=fit.intercept_se,
        predicted=predicted,
        ratio=fit.intercept / predicted,
        z=(fit.intercept - predicted) / fit.intercept_se,
        inv_y_coefficient=fit.slope,
        inv_y_coefficient_se=fit.slope_se,
        inv_y_coefficient_predicted=slope_predicted,
        n_points=fit.n_points,
    )


def fit_method(
    rows: list[dict],
    dm: DeltaMethod | None,
    *,
    std_fit_y_min: float,
    bias_fit_y_min: float,
    bias_z: float,
) -> dict:
    """Slopes and constants of one method's y-study rows (see the module docstring).

    * std slope: WLS of ``log std`` on ``log y`` for ``y >= std_fit_y_min``,
      weights ``1/se(log std)^2``;
    * bias slope: WLS of ``log|bias|`` on ``log y`` over the points with
      ``y >= bias_fit_y_min`` where the bias is *resolvable*,
      ``se(log|bias|) = bias_se/|bias|``.  Resolvable means that the
      delta-method bias ``Var[F_hat]/2 = std^2/2`` exceeds ``bias_z * bias_se =
      bias_z * std/sqrt(n)``, i.e. ``std sqrt(n) > 2 bias_z``.  The criterion
      uses the spread, not the measured bias: selecting on ``|bias| > z se``
      would keep only the upward fluctuations where the bias is marginal and
      flatten the fitted slope (selection bias).  Resolvable points whose
      measured bias is not positive are dropped (counted in ``bias_dropped``);
    * with a delta-method prediction: the ``y -> inf`` constants as intercepts
      of ``std*sqrt(y)`` and ``bias*y`` against ``1/y`` (absorbing the
      ``O(1/y)`` correction), and the slopes that the second-order prediction
      gives on the same points and weights (the finite-y expectation).
    """
    y = np.array([r["y"] for r in rows], dtype=np.float64)
    std = np.array([r["std"] for r in rows])
    std_se = np.array([r["std_se"] for r in rows])
    bias = np.array([r["bias"] for r in rows])
    bias_se = np.array([r["bias_se"] for r in rows])
    lse = std_se / std
    s_sel = y >= std_fit_y_min
    n = np.array([r["n_rep"] for r in rows], dtype=np.float64)
    resolvable = (y >= bias_fit_y_min) & (std * np.sqrt(n) > 2 * bias_z)
    b_sel = resolvable & (bias > 0)
    std_fit = _fit_or_none(np.log(y[s_sel]), np.log(std[s_sel]), lse[s_sel])
    bias_fit = _fit_or_none(
        np.log(y[b_sel]), np.log(np.abs(bias[b_sel])), bias_se[b_sel] / np.abs(bias[b_sel])
    )
    out = dict(
        std_slope=std_fit.to_dict() if std_fit else None,
        bias_slope=bias_fit.to_dict() if bias_fit else None,
        std_fit_y=y[s_sel].astype(int).tolist(),
        bias_fit_y=y[b_sel].astype(int).tolist(),
        bias_dropped=int(np.sum(resolvable & ~b_sel)),
        expected_std_slope=-0.5,
        expected_bias_slope=-1.0,
    )
    if dm is None:
        return out
    out["relvar"] = dm.relvar
    if std_fit and math.isfinite(dm.skew3):
        ys = y[s_sel]
        out["expected_std_slope_finite_y"] = weighted_linear_fit(
            np.log(ys), 0.5 * np.log(dm.relvar / ys + dm.var_second_order / ys**2), lse[s_sel]
        ).slope
    if bias_fit and math.isfinite(dm.skew3):
        yb = y[b_sel]
        out["expected_bias_slope_finite_y"] = weighted_linear_fit(
            np.log(yb),
            np.log(dm.bias(yb) + dm.bias_second_order / yb**2),
            bias_se[b_sel] / np.abs(bias[b_sel]),
        ).slope
    sq = np.sqrt(y[s_sel])
    out["std_constant"] = _constant(
        _fit_or_none(1 / y[s_sel], std[s_sel] * sq, std_se[s_sel] * sq),
        dm.std_constant,
        dm.var_second_order / (2 * dm.std_constant),
    )
    out["bias_constant"] = (
        None
        if not dm.predicts_bias
        else _constant(
            _fit_or_none(1 / y[b_sel], bias[b_sel] * y[b_sel], bias_se[b_sel] * y[b_sel]),
            dm.bias_constant,
            dm.bias_second_order,
        )
    )
    return out


def fit_k_study(rows: list[dict], c2: float, *, R: float, k_fit_min: float) -> dict:
    """Slope of ``log(F(k) - F(inf))`` vs ``log k`` (unweighted: the values are exact) for
    ``k R >= k_fit_min``, and ``k^2 (F(k) - F(inf))`` against :math:`C_2`.

    ``doubling_ratios`` are ``e(k)/e(2k)`` with ``e = k^2 dF - C_2``: the next
    term is ``O(k^-4)``, so they tend to 4.
    """
    k = np.array([r["k"] for r in rows])
    d = np.array([r["bias"] for r in rows])
    sel = (k * R >= k_fit_min) & (d > 0)
    fit = _fit_or_none(np.log(k[sel]), np.log(d[sel]), np.ones(int(sel.sum())))
    scaled = k**2 * d
    err = scaled - c2
    ratios = [float(a / b) for a, b in zip(err[sel][:-1], err[sel][1:], strict=True) if b != 0]
    return dict(
        slope=fit.slope if fit else None,
        # unit weights: the OLS standard error is slope_se times the residual scale
        slope_se=fit.slope_se * fit.birge_ratio if fit else None,
        expected_slope=-2.0,
        fit_k=k[sel].tolist(),
        c2_predicted=c2,
        c2_measured_at_kmax=float(scaled[-1]),
        c2_ratio_at_kmax=float(scaled[-1] / c2),
        k2_delta=scaled.tolist(),
        doubling_ratios=ratios,
        expected_doubling_ratio=4.0,
    )
