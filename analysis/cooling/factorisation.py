r"""Test of the factorisation claim ``s_I(t) = A_I f(t)`` of section 2.1.

If the late decay is common to all layers, every layer ratio ``s_I/s_J`` is constant
in the late window.  For each layer ``I`` other than a reference layer ``R`` the slope
of ``ln(s_I/s_R)`` against the epoch is estimated by AR(1) feasible GLS with a
prewhitened Newey-West interval (:func:`analysis.cooling.timeseries.trend_test`:
the ratios are strongly autocorrelated, and correlated with each other through the
shared reference), and the joint Wald test of "all slopes are 0" decides: common
decay is *not rejected* when its p value is at least ``1 - level``.  The test is run
for the signal and, separately, for its noise (``signal_std``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anisotropy.validation import check_probability

from .io import CoolingData
from .timeseries import TrendTest, trend_test

__all__ = ["Factorisation", "factorisation_test"]


@dataclass
class Factorisation:
    """Slopes of the late log layer ratios, per channel, and the verdicts."""

    reference: str
    window: tuple
    level: float
    tests: dict  # channel -> TrendTest or None (channel not usable)
    notes: dict  # channel -> str

    def common(self, channel: str = "signal") -> bool | None:
        """True when common decay is not rejected for ``channel`` (None: not tested)."""
        t = self.tests.get(channel)
        return None if t is None else bool(t.p_value >= 1 - self.level)

    def to_dict(self) -> dict:
        return {
            "reference": self.reference,
            "window": list(self.window),
            "level": self.level,
            **{
                ch: (
                    {**t.to_dict(), "common_decay": self.common(ch)}
                    if t is not None
                    else {"common_decay": None, "note": self.notes[ch]}
                )
                for ch, t in self.tests.items()
            },
        }

    def report(self) -> str:
        lines = [
            f"factorisation test (ln s_I/s_{self.reference} constant in "
            f"[{self.window[0]:g}, {self.window[1]:g}]):"
        ]
        for ch, t in self.tests.items():
            if t is None:
                lines.append(f"  {ch}: not tested ({self.notes[ch]})")
                continue
            verdict = "common decay not rejected" if self.common(ch) else "common decay REJECTED"
            lines.append(
                f"  {ch}: joint Wald chi2({t.df}) = {t.wald:.2f}, p = {t.p_value:.3g} -> {verdict}"
            )
            for n, b, c in zip(t.names, t.slope, t.ci, strict=True):
                lines.append(
                    f"    d ln({n})/dt = {b:+.3e} [{c[0]:+.3e}, {c[1]:+.3e}]"
                    f"  (change over window {b * t.span:+.3f})"
                )
        return "\n".join(lines)


def factorisation_test(
    data: CoolingData, window: tuple, *, level: float = 0.95, reference: str | None = None
) -> Factorisation:
    """Run the factorisation test on ``window = (t_lo, t_hi)`` for signal and noise.

    ``reference`` defaults to the first layer.  With a single layer nothing is tested.
    """
    check_probability("level", level)
    ref = data.layers[0] if reference is None else reference
    if ref not in data.layers:
        raise ValueError(f"unknown reference layer {ref!r}; valid: {', '.join(data.layers)}")
    t_lo, t_hi = window
    win = (data.epochs >= t_lo) & (data.epochs <= t_hi)
    t = data.epochs[win]
    tests: dict[str, TrendTest | None] = {}
    notes: dict[str, str] = {}
    r = data.layers.index(ref)
    others = [i for i in range(data.n_layers) if i != r]
    for ch in ("signal", "signal_std"):
        if not others:
            tests[ch], notes[ch] = None, "a single layer has no ratios"
            continue
        ok = data.valid(ch)[:, win]
        with np.errstate(divide="ignore", invalid="ignore"):
            ly = np.where(ok, np.log(np.where(ok, getattr(data, ch)[:, win], 1.0)), np.nan)
        Y = ly[others] - ly[r]
        try:
            tests[ch] = trend_test(
                t, Y, names=[f"{data.layers[i]}/{ref}" for i in others], level=level, step=data.step
            )
            notes[ch] = ""
        except ValueError as exc:
            tests[ch], notes[ch] = None, str(exc)
    return Factorisation(ref, (float(t_lo), float(t_hi)), level, tests, notes)
