r"""Exponentially growing couplings (scoping), computed without overflow.

The scoping schedules of :class:`~anisotropy.optim.entropy_sgd.EntropySGD`
(:func:`~anisotropy.optim.entropy_sgd.gamma_scoping`) and of
:class:`~anisotropy.optim.replicated.ReplicatedSGD`
(:func:`~anisotropy.optim.replicated.coupling_schedule`, ``"exp"``) grow the coupling
as :math:`\gamma_t = \gamma_0 (1 + r)^t`; :math:`(1 + r)^t` overflows a float long
before a cap, so both work in log space here.
"""

from __future__ import annotations

import math
import sys

__all__ = ["LOG_FLOAT_MAX", "geometric_growth"]

#: log of the largest float64: exp() of more overflows
LOG_FLOAT_MAX = math.log(sys.float_info.max)


def geometric_growth(start: float, rate: float, step: int, *, cap: float = math.inf) -> float:
    r""":math:`\min(s\,(1 + r)^t, \mathrm{cap})`, or ``inf`` when it overflows a float64.

    Parameters
    ----------
    start : float
        :math:`s > 0`, the value at step 0.
    rate : float
        :math:`r \ge 0`, the growth per step.
    step : int
        :math:`t \ge 0`.
    cap : float, keyword-only
        Upper bound :math:`\ge s` (default none); returned as soon as the log of the
        product reaches its log, before any overflow.

    Returns
    -------
    float
        The direct product :math:`s \cdot e^{t \log(1 + r)}` where its factor is finite
        (bit-identical to the plain formula), :math:`e^{\log s + t \log(1 + r)}` where
        only the product is, ``inf`` where neither is (the callers raise, naming their
        schedule).  The arguments are checked by the callers.
    """
    growth = step * math.log1p(rate)
    log_value = math.log(start) + growth
    if log_value >= math.log(cap):
        return cap
    if log_value > LOG_FLOAT_MAX:
        return math.inf
    return start * math.exp(growth) if growth <= LOG_FLOAT_MAX else math.exp(log_value)
