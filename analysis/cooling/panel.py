r"""The data of one joint fit: valid log values of the layers inside a window.

A :class:`Panel` holds, for the model of :mod:`analysis.cooling.fit` (section 2.1 of the
paper), the log values :math:`y_{It} = \ln s_I(t)` of every layer ``I`` at the valid epochs
``t`` of a window, concatenated layer by layer, with the known relative noise scale
:math:`r_{It}` and the gap to the previous point of the layer (for the AR(1) whitening).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from anisotropy.validation import check_choice

from .io import CoolingData
from .timeseries import running_mean

__all__ = ["Weights", "Panel", "build_panel", "MIN_POINTS_PER_LAYER", "WEIGHT_SMOOTH"]

Weights = Literal["logged", "uniform"]

#: a layer needs this many valid epochs in a window: with 3 shape parameters, an amplitude,
#: a scale and an AR(1) coefficient, fewer points leave no degrees of freedom worth the name.
MIN_POINTS_PER_LAYER = 8
#: the logged relative noise signal_std/signal is smoothed by a centred running mean of its log
#: over this many epochs before it weights the fit: the sampling jitter of a standard deviation
#: over M minibatches (1/sqrt(2(M-1)), about 5% for M = 235) is averaged down by sqrt(11) ~ 3.3,
#: while the noise level itself changes over tens of epochs.  Unsmoothed weights with 10% jitter
#: made 95% intervals cover only 92% (AR(1) rho = 0.9, 2000 epochs; docs/cooling.md).
WEIGHT_SMOOTH = 11


@dataclass
class Panel:
    """Valid points of ``L`` layers inside a window, concatenated layer by layer.

    Attributes
    ----------
    epochs : ndarray (n_e,)
        Epoch grid of the window (law evaluated here once, then gathered).
    col : ndarray (N,) int
        Index of each point into ``epochs``.
    layer : ndarray (N,) int
    y, r, gap : ndarray (N,)
        Log values, relative noise scale, gap (in steps) to the previous point of the layer.
    layers : tuple of str
    """

    epochs: np.ndarray
    col: np.ndarray
    layer: np.ndarray
    y: np.ndarray
    r: np.ndarray
    gap: np.ndarray
    layers: tuple
    channel: str = "signal"

    @property
    def t(self) -> np.ndarray:
        return self.epochs[self.col]

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def subset(self, i: int) -> Panel:
        """The panel of layer ``i`` alone."""
        m = self.layer == i
        return Panel(
            self.epochs,
            self.col[m],
            np.zeros(int(m.sum()), int),
            self.y[m],
            self.r[m],
            self.gap[m],
            (self.layers[i],),
            self.channel,
        )

    def with_y(self, y: np.ndarray) -> Panel:
        return Panel(
            self.epochs, self.col, self.layer, y, self.r, self.gap, self.layers, self.channel
        )


def build_panel(
    data: CoolingData,
    channel: Literal["signal", "signal_std"],
    t_lo: float,
    t_hi: float | None = None,
    *,
    weights: Weights = "logged",
) -> Panel:
    """Collect the valid points of ``channel`` with ``t_lo <= epoch <= t_hi`` (and epoch > 0).

    ``weights="logged"`` uses ``r = signal_std/signal`` (smoothed over :data:`WEIGHT_SMOOTH`
    epochs) for the signal channel (points whose
    ``signal_std`` is unusable are then left out; they are listed in ``data.issues``).  The
    noise channel always has ``r = 1``: the relative error of a standard deviation over ``M``
    minibatches, ``1/sqrt(2(M-1))``, does not depend on the epoch.

    Raises ValueError when a layer keeps fewer than :data:`MIN_POINTS_PER_LAYER` points.
    """
    check_choice("channel", channel, ("signal", "signal_std"))
    check_choice("weights", weights, ("logged", "uniform"))
    t_hi = data.epochs.max() if t_hi is None else t_hi
    win = (data.epochs >= t_lo) & (data.epochs <= t_hi) & (data.epochs > 0)
    ok = data.valid(channel) & win
    vals = getattr(data, channel)
    if channel == "signal" and weights == "logged":
        ok &= data.valid("signal_std")
    counts = ok.sum(axis=1)
    if np.any(counts < MIN_POINTS_PER_LAYER):
        bad = {data.layers[i]: int(c) for i, c in enumerate(counts) if c < MIN_POINTS_PER_LAYER}
        raise ValueError(
            f"too few valid epochs of {channel} in the window [{t_lo:g}, {t_hi:g}]: "
            f"{bad}; each layer needs at least {MIN_POINTS_PER_LAYER}"
        )
    cols = np.flatnonzero(win)
    sub = ok[:, cols]
    li, ci = np.nonzero(sub)
    epochs = data.epochs[cols]
    y = np.log(vals[:, cols][li, ci])
    if channel == "signal" and weights == "logged":
        # smoothed log relative noise: the epoch-to-epoch jitter of a logged std would otherwise
        # enter the residuals as extra white noise and bias the AR(1) coefficient towards 0
        sub_ok = ok[:, cols]
        with np.errstate(divide="ignore", invalid="ignore"):
            lr = np.where(sub_ok, np.log(data.signal_std[:, cols] / data.signal[:, cols]), np.nan)
        lr = running_mean(lr, WEIGHT_SMOOTH)[li, ci]
        # the scale of r is absorbed by sigma_I; centre per layer for conditioning
        lr -= (np.bincount(li, lr, data.n_layers) / np.bincount(li, minlength=data.n_layers))[li]
        r = np.exp(lr)
    else:
        r = np.ones(li.size)
    gap = np.zeros(li.size)
    same = np.r_[False, li[1:] == li[:-1]]
    gap[same] = np.rint(np.diff(epochs[ci])[same[1:]] / data.step)
    return Panel(epochs, ci, li, y, r, gap, data.layers, channel)
