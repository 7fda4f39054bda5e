"""Figure 2: the distance d_{R,k} (eq. 5) and the kernel K_{R,k} = exp(-d) (eq. 6)
in one dimension for R = 1 and k = 4, 8, 16, 32 (darker to lighter).

No training: the curves come from :mod:`anisotropy.kernels`.  The table lists,
per k, K(0) = s(2kR)^2 (< 1 for finite k), d(0) = -log K(0), and the 1-D
normaliser Z_1 = 2R / (1 - exp(-4kR)) of the kernel of eq 6 (-> 2R as k -> inf;
:mod:`analysis.facts`).
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

from anisotropy import kernels

from .common import FigureContext, FigureOutput, save_figure
from .stats import write_table

__all__ = ["EXPERIMENTS", "R", "K_VALUES", "draw"]

EXPERIMENTS: tuple[str, ...] = ()
#: the paper's figure 2 settings
R = 1.0
K_VALUES = (4.0, 8.0, 16.0, 32.0)


def draw(ctx: FigureContext) -> FigureOutput:
    """Draw figure 2 and its table into ``ctx.out``."""
    x = np.linspace(-2.0, 2.0, 2001)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    shades = plt.cm.Blues(np.linspace(0.95, 0.45, len(K_VALUES)))
    rows = []
    for k, c in zip(K_VALUES, shades, strict=True):
        a.plot(x, kernels.distance(x, R=R, k=k), color=c, label=f"k = {k:g}")
        b.plot(x, kernels.kernel(x, R=R, k=k), color=c, label=f"k = {k:g}")
        d0 = float(kernels.distance(np.array([0.0]), R=R, k=k)[0])
        rows.append(
            {
                "k": k,
                "K(0)": math.exp(-d0),
                "d(0)": d0,
                "Z_1": math.exp(kernels.log_normaliser(R, k, 1)),
            }
        )
    b.plot(x, kernels.kernel(x, R=R, k=math.inf), color="k", ls=":", lw=1, label="k = inf (box)")
    a.set_ylim(-0.5, 12)
    a.set_title(r"distance $d_{R,k}(x)$ (eq. 5), R = 1")
    b.set_title(r"kernel $K_{R,k}(x) = e^{-d}$ (eq. 6), R = 1")
    for ax in (a, b):
        ax.set_xlabel("x")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    images = save_figure(fig, ctx.out, "fig2")
    tables = list(
        write_table(
            rows,
            ["k", "K(0)", "d(0)", "Z_1"],
            ctx.out / "fig2_table",
            title="Figure 2: kernel facts at R = 1 (Z_1 = 2R/(1-exp(-4kR)))",
            formats={"K(0)": ".9f", "d(0)": ".3e", "Z_1": ".9f"},
        )
    )
    return FigureOutput("2", images, tables, "d and K for R = 1, k = 4, 8, 16, 32")
