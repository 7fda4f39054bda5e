r"""The paper's estimator ``M`` (eqs 3, 14, 22) and its relation to ``F``.

``M^{[U]}(R, k, y; W) = -log{ (1/(y+1)) [ e^{-beta L(W)}
+ sum_a e^{-beta L(W + dW_a) - d^{[U]}_{R,k}(dW_a)} ] }``
with ``dW_a`` uniform in the box of half side ``R`` on the smoothed coordinates
(``beta = 1`` in the paper).  Since ``E[e^{-beta L(W+dW) - d(dW)}] =
(2R)^{-n} int_{[-R,R]^n} e^{-beta L(W+x)} K_{R,k}(x) dx`` (``n = |U|``),

    M_y -> M_inf = F + n log(2R) - log q_box,
    q_box = int_box e^{-beta L} K / int e^{-beta L} K  in (0, 1],

with ``F`` the local free entropy of eqs 10/16 (:func:`analysis.free_entropy.local_free_entropy`).
For ``k = inf``, ``q_box = 1`` and ``M_inf = F + log Z_K``.  At finite ``y`` the
centre point adds the ``O(1/y)`` shift of :func:`paper_m_noiseless`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special

from analysis.free_entropy.estimators import (
    as_generator,
    batch_rows,
    check_centre,
    evaluate_loss,
    smoothed_indices,
)
from anisotropy.kernels import masked_distance, sample_kernel
from anisotropy.validation import check_int, check_positive, check_sharpness

__all__ = ["PaperMResult", "paper_m_estimator", "paper_m_noiseless"]


@dataclass(frozen=True)
class PaperMResult:
    r"""Result of :func:`paper_m_estimator` (the paper's ``M``, eqs 3, 14, 22).

    Attributes
    ----------
    estimate : float
        ``M_y = -log{(e^{-beta L(W)} + sum_a e^{-beta L(W+dW_a) - d(dW_a)})/(y+1)}``.
    stderr : float
        Delta-method standard error from the ``y`` random terms (0 for ``y = 0``).
    y : int
    centre_log_weight : float
        ``-beta L(W)``.
    log_mean_sample_weight : float
        ``log`` of the mean of the ``y`` random terms (``-inf`` for ``y = 0``);
        ``-log_mean_sample_weight`` estimates ``M_inf`` without the centre bias.
    log_box_volume : float
        ``|U| log(2R)``: ``M_inf = F + log_box_volume`` for ``k = inf``.
    n_smoothed : int
    R, k, beta : float
    """

    estimate: float
    stderr: float
    y: int
    centre_log_weight: float
    log_mean_sample_weight: float
    log_box_volume: float
    n_smoothed: int
    R: float
    k: float
    beta: float

    def report(self) -> str:
        """Human-readable summary."""
        return (
            f"paper M (eq 14; R={self.R:g}, k={self.k:g}, y={self.y}, |U|={self.n_smoothed}, "
            f"beta={self.beta:g})\n"
            f"  M = {self.estimate:.10g} +- {self.stderr:.3g}\n"
            f"  centre -beta L(W) = {self.centre_log_weight:.10g}; "
            f"-log mean of the y terms = {-self.log_mean_sample_weight:.10g}\n"
            f"  |U| log 2R = {self.log_box_volume:.10g} (M_inf = F + this for k = inf)"
        )


def paper_m_estimator(
    loss: Callable[[np.ndarray], np.ndarray],
    w: Any,
    *,
    R: float,
    k: float = math.inf,
    mask: Any = None,
    y: int,
    seed: Any,
    beta: float = 1.0,
    batch_size: int | None = None,
) -> PaperMResult:
    r"""The paper's ``M^{[U]}(R, k, y; W)`` exactly as eqs 3/14 (eq 22 at ``k = inf``).

    ``M = -log{ (1/(y+1)) [ e^{-beta L(W)}
    + sum_{a=1}^{y} e^{-beta L(W + dW_a) - d^{[U]}_{R,k}(dW_a)} ] }``
    with ``dW_a`` *uniform* in the box of half side ``R`` on the smoothed
    coordinates (eq 3: "shifted by a uniformly distributed random vector") and no
    normaliser; ``beta = 1`` is the paper.  ``y = 0`` gives ``beta L(W)`` (eq 4).

    Limit (module docstring): ``M_y -> M_inf = F + |U| log(2R) - log q_box``
    (``q_box = 1`` at ``k = inf``, so ``M_inf = F + log Z_K``); finite-``y`` centre
    term: :func:`paper_m_noiseless`.
    """
    R = check_positive("R", R)
    k = check_sharpness(k)
    w = check_centre(w)
    idx = smoothed_indices(mask, w.shape[0])
    n = idx.size
    y = check_int("y", y, minimum=0)
    beta = check_positive("beta", beta)
    batch = batch_rows(batch_size, w.shape[0])
    rng = as_generator(seed)
    lc = -beta * float(evaluate_loss(loss, w, idx, np.zeros((1, n)))[0])
    terms = np.empty(y)
    for s in range(0, y, batch):
        b = min(batch, y - s)
        dw = sample_kernel((b, n), R=R, k=math.inf, rng=rng)
        terms[s : s + b] = -beta * evaluate_loss(loss, w, idx, dw) - masked_distance(dw, R=R, k=k)
    log_m = float(special.logsumexp(terms) - math.log(y)) if y else -math.inf
    total = np.logaddexp(lc, special.logsumexp(terms) if y else -math.inf)
    estimate = float(math.log(y + 1) - total)
    if y >= 2:
        # dM = -dS / (e^{-beta L(W)} + S) with S the sum of the y terms, Var S = y Var(term).
        se = float(math.sqrt(y) * np.exp(terms - total).std(ddof=1))
    else:
        se = 0.0 if y == 0 else math.inf
    return PaperMResult(
        estimate=estimate,
        stderr=se,
        y=y,
        centre_log_weight=lc,
        log_mean_sample_weight=float(log_m),
        log_box_volume=n * math.log(2 * R),
        n_smoothed=int(n),
        R=R,
        k=k,
        beta=beta,
    )


def paper_m_noiseless(m_limit: float, centre_loss: float, y: int, *, beta: float = 1.0) -> float:
    r"""``-log((e^{-beta L(W)} + y e^{-M_inf})/(y+1))``: ``M_y`` without sampling noise.

    The centre point enters eq 3 with weight ``1/(y+1)``, so even with exact
    averages ``M_y`` differs from ``M_inf`` by this ``O(1/y)`` term.
    """
    y = check_int("y", y, minimum=0)
    beta = check_positive("beta", beta)
    lc = -beta * float(centre_loss)
    total = np.logaddexp(lc, math.log(y) - m_limit) if y else lc
    return float(math.log(y + 1) - total)
