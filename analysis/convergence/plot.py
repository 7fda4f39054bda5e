"""The figure of ``anisotropy converge``: log-log panels of bias, std and RMSE vs y, and of
``F(R,k) - F(R,inf)`` vs k, with the predicted lines (a bare Figure with the Agg canvas:
no pyplot state, no display)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from anisotropy.io import save_figure_atomic

if TYPE_CHECKING:  # pragma: no cover
    from analysis.convergence.study import ConvergenceStudy

__all__ = ["plot_study"]


def _column(rows, key):
    return np.array([r[key] for r in rows], dtype=np.float64)


def plot_study(study: ConvergenceStudy, path) -> None:
    """Draw the study into the PNG file ``path`` (written atomically).

    One panel per method with ``|bias|`` (error bars ``bias_se``; hollow markers
    where the bias is not resolvable, see :func:`analysis.convergence.study.fit_method`),
    ``std``, and the first-order delta-method lines where they exist; one panel of the
    RMSE of every method; one panel of ``F(R,k) - F(R,inf)`` with ``C_2/k^2``.
    """
    import matplotlib
    from matplotlib.figure import Figure

    o = study.options
    methods = list(study.y_fits)
    n_panels = len(methods) + 2
    ncols = 3
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.4 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, method in zip(axes, methods, strict=False):
        rows = [r for r in study.rows if r["study"] == "y" and r["method"] == method]
        y, bias, bse, std, n = (_column(rows, k) for k in ("y", "bias", "bias_se", "std", "n_rep"))
        sig = (std * np.sqrt(n) > 2 * o.bias_z) & (bias > 0) & (y >= o.bias_fit_y_min)
        ax.errorbar(
            y[sig],
            np.abs(bias[sig]),
            yerr=bse[sig],
            fmt="o",
            ms=4,
            color=colours[0],
            label=f"bias (resolvable at {o.bias_z:g} se)",
        )
        ax.plot(
            y[~sig],
            np.abs(bias[~sig]),
            "o",
            ms=4,
            mfc="none",
            color=colours[0],
            alpha=0.5,
            label="|bias| (not resolvable)",
        )
        ax.plot(y, std, "s", ms=4, color=colours[1], label="std")
        pb, ps = _column(rows, "predicted_bias"), _column(rows, "predicted_std")
        if np.all(np.isfinite(pb)):
            ax.plot(y, pb, "-", color=colours[0], lw=1, label="v/(2y) (delta method)")
        if np.all(np.isfinite(ps)):
            ax.plot(y, ps, "-", color=colours[1], lw=1, label="sqrt(v/y) (delta method)")
        f = study.y_fits[method]
        slope = f"{f['std_slope']['slope']:+.3f}" if f["std_slope"] else "n/a"
        bslope = f"{f['bias_slope']['slope']:+.3f}" if f["bias_slope"] else "n/a"
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="y (loss evaluations per estimate)",
            title=f"{method}: std slope {slope}, bias slope {bslope}",
        )
        ax.title.set_fontsize(9)
        ax.legend(fontsize=6)
    ax = axes[len(methods)]
    for i, method in enumerate(methods):
        rows = [r for r in study.rows if r["study"] == "y" and r["method"] == method]
        ax.plot(
            _column(rows, "y"),
            _column(rows, "rmse"),
            "o-",
            ms=3,
            lw=1,
            color=colours[i % len(colours)],
            label=method,
        )
    ax.set(xscale="log", yscale="log", xlabel="y", ylabel="RMSE", title="RMSE of each method")
    ax.legend(fontsize=7)
    ax = axes[len(methods) + 1]
    krows = [r for r in study.rows if r["study"] == "k"]
    k, d, pred = (_column(krows, c) for c in ("k", "bias", "predicted_bias"))
    ax.plot(k, np.abs(d), "o", ms=4, label="|F(R,k) - F(R,inf)| (quadrature)")
    ax.plot(
        k,
        np.abs(pred),
        "-",
        lw=1,
        label=f"C2/k^2 + N log(1-e^-4kR), C2={study.k_fit['c2_predicted']:.4f}",
    )
    ks = study.k_fit
    title = "k-study" if ks["slope"] is None else f"k-study: slope {ks['slope']:+.3f} (expected -2)"
    ax.set(xscale="log", yscale="log", xlabel="k", title=title)
    ax.legend(fontsize=7)
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    ref = study.reference
    fig.suptitle(
        f"convergence on the quadratic reference (N={ref.n}, lam={list(ref.lam)}, "
        f"coupling={ref.coupling}, R={ref.R}, exact F={study.exact:.6f}); "
        f"k-study on its separable part",
        fontsize=10,
    )
    save_figure_atomic(fig, path, format="png", dpi=110)
