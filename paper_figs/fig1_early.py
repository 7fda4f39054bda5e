"""Figure 1's early regimes from the within-minibatch gradient noise (experiment ``fig1_early``).

The long figure-1 runs log the layer statistics at geometrically spaced steps, but a
record's spread is taken across the minibatches of its window: the windows of the first
~100 steps hold one minibatch (no spread), and later early windows mix the drift of the
mean gradient with its noise.  The ``fig1_early`` runs repeat the first epochs with
``logging.steps_split``: at every logged step the minibatch is cut into ``K`` parts and
the step's signal-to-noise ratio ``within_snr = |G| / sigma_B`` (the norm of the
full-data gradient over the norm of the standard deviation of a minibatch gradient,
:mod:`anisotropy.training.spread`) is estimated at frozen weights.

One record's estimate is noisy near SNR 1: its ``|G|^2`` estimate ``|g|^2 - sigma_B^2`` is a
difference of two numbers of the same size, often below 0 (SNR 0).  The analysis therefore
pools :data:`POOL` consecutive records per layer, ``SNR = sqrt(max(sum |G|^2_hat, 0) /
sum sigma_B^2_hat)`` over a centred window (the ratio of the pooled unbiased estimates),
and the rules, per run (one activation, one seed), read the median over layers of it:

* **regime 1** (early, signal-dominated) is present iff the SNR exceeds 1 at the first
  logged step, i.e. training starts signal-dominated;
* the **crossing** is the first logged step from which the SNR stays at or below 1 for
  :data:`CROSSING_HOLD` consecutive records (a single noisy record does not end the
  regime);
* **regime 2** (a short noise-dominated transition near the signal maximum) is present iff
  there is a crossing; its distance from the signal maximum (median over layers of the
  step at which the per-step ``signal`` s_I peaks) is given in decades of steps;
  "near" means within :data:`NEAR_DECADES`.

Across seeds a regime is present when it is in the majority of the runs of an activation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from anisotropy.io import iter_jsonl

from .common import FigureContext
from .fig1_regimes import SNR_SIGNAL_DOMINATED

__all__ = [
    "EXPERIMENT",
    "CROSSING_HOLD",
    "POOL",
    "NEAR_DECADES",
    "SNR_SIGNAL_DOMINATED",
    "EarlyRun",
    "read_early_run",
    "early_verdict",
    "activation_verdicts",
    "early_runs",
    "draw_early",
]

#: the experiment that holds the early probe
EXPERIMENT = "fig1_early"
#: records in a row at or below SNR 1 (pooled) that end the signal-dominated regime: one
#: excursion of the noisy estimate below 1 does not end it
CROSSING_HOLD = 5
#: records pooled per SNR estimate (centred; module docstring): five records divide the
#: variance of the |G|^2 estimate by five and span at most 10^(5/20) = 1.8 in steps (a
#: quarter decade: every step up to 100, then 20 records per decade), finer than a regime
POOL = 5
#: "near the signal maximum": within this many decades of steps (a factor 3)
NEAR_DECADES = 0.5


class EarlyRun:
    """The step records of one ``fig1_early`` run that carry the within-step SNR.

    Attributes
    ----------
    steps : ndarray (n,) of float
    layers : list of str
    snr : ndarray (L, n), one record's ``within_snr``, NaN where not logged
    signal : ndarray (L, n), the window mean of s_I (eq. 2)
    noise, mean : ndarray (L, n), ``within_noise_norm`` and ``within_mean_norm``
    """

    def __init__(self, records: Sequence[Mapping[str, Any]]) -> None:
        recs = [r for r in records if r.get("within_parts")]
        if not recs:
            raise ValueError("no step record holds within_parts (logging.steps_split was off)")
        self.layers = list(recs[0]["layers"])
        self.steps = np.array([float(r["step"]) for r in recs])

        def grid(key: str) -> np.ndarray:
            out = np.full((len(self.layers), len(recs)), np.nan)
            for j, r in enumerate(recs):
                for i, name in enumerate(self.layers):
                    v = r["layers"].get(name, {}).get(key)
                    if v is not None:
                        out[i, j] = float(v)
            return out

        self.snr, self.signal = grid("within_snr"), grid("signal")
        self.noise, self.mean = grid("within_noise_norm"), grid("within_mean_norm")

    def pooled_snr(self, pool: int = POOL) -> np.ndarray:
        """Per layer, ``sqrt(max(sum |G|^2_hat, 0) / sum sigma_B^2_hat)`` over the ``pool``
        records centred on each one (fewer at the ends; NaN where nothing is logged).

        Returns
        -------
        ndarray (L, n)
        """
        if isinstance(pool, bool) or not isinstance(pool, int) or pool < 1:
            raise ValueError(f"pool must be an integer >= 1, got {pool!r}")
        g2 = np.nan_to_num(self.mean**2 - self.noise**2)
        n2 = np.nan_to_num(self.noise**2)
        have = np.isfinite(self.noise).astype(float)
        kernel = np.ones(pool)

        def window_sum(a: np.ndarray) -> np.ndarray:
            return np.array([np.convolve(row, kernel, mode="same") for row in a])

        sg, sn, cnt = window_sum(g2), window_sum(n2), window_sum(have)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.sqrt(np.maximum(sg, 0.0) / sn)
        return np.where((cnt > 0) & (sn > 0), out, np.nan)

    def median_snr(self, pool: int = POOL) -> np.ndarray:
        """Median over layers of :meth:`pooled_snr` at each logged step (``pool = 1``: of
        each record's own estimate)."""
        snr = self.pooled_snr(pool)
        with np.errstate(all="ignore"):
            return np.where(np.isnan(snr).all(0), np.nan, np.nanmedian(snr, axis=0))


def read_early_run(run_dir: Path) -> EarlyRun:
    """The :class:`EarlyRun` of ``run_dir/steps.jsonl`` (a missing file raises)."""
    return EarlyRun([rec for _, rec in iter_jsonl(Path(run_dir) / "steps.jsonl")])


def _crossing(steps: np.ndarray, snr: np.ndarray) -> float | None:
    below = np.nan_to_num(snr, nan=np.inf) <= SNR_SIGNAL_DOMINATED
    for j in range(len(steps) - CROSSING_HOLD + 1):
        if below[j : j + CROSSING_HOLD].all():
            return float(steps[j])
    return None


def early_verdict(run: EarlyRun) -> dict[str, Any]:
    """Regime 1 and 2 numbers of one run (module docstring): ``snr_first``, ``snr_max``,
    ``t_snr_max``, ``crossing`` (step or None), ``signal_max`` (step, median over layers),
    ``regime1``, ``regime2`` (booleans) and ``crossing_from_max_decades``."""
    med = run.median_snr()
    ok = ~np.isnan(med)
    if not ok.any():
        raise ValueError("no logged within_snr")
    first = float(med[ok][0])
    k = int(np.nanargmax(med))
    cross = _crossing(run.steps, med)
    peaks = [
        float(run.steps[int(np.nanargmax(row))]) for row in run.signal if np.isfinite(row).any()
    ]
    smax = float(np.median(peaks)) if peaks else None
    dist = math.log10(cross / smax) if cross is not None and smax is not None and smax > 0 else None
    return {
        "snr_first": first,
        "t_first": float(run.steps[ok][0]),
        "snr_max": float(med[k]),
        "t_snr_max": float(run.steps[k]),
        "snr_last": float(med[ok][-1]),
        "t_last": float(run.steps[ok][-1]),
        "crossing": cross,
        "signal_max": smax,
        "crossing_from_max_decades": dist,
        "regime1": first > SNR_SIGNAL_DOMINATED,
        "regime2": cross is not None,
    }


def _fmt_steps(values: Sequence[float | None]) -> str:
    return ", ".join("-" if v is None else f"{v:g}" for v in values)


def activation_verdicts(verdicts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Majority verdicts over the seeds of one activation, with sentences."""
    n = len(verdicts)
    if n == 0:
        raise ValueError("verdicts must hold at least one run")
    r1 = sum(v["regime1"] for v in verdicts)
    r2 = sum(v["regime2"] for v in verdicts)
    first = [v["snr_first"] for v in verdicts]
    crosses = [v["crossing"] for v in verdicts]
    smax = [v["signal_max"] for v in verdicts]
    dists = [
        v["crossing_from_max_decades"]
        for v in verdicts
        if v["crossing_from_max_decades"] is not None
    ]
    present1, present2 = 2 * r1 > n, 2 * r2 > n
    snr_text = ", ".join(f"{x:.2f}" for x in first)
    if present1:
        s1 = (
            f"present ({r1} of {n} seeds): the step's SNR |G|/sigma_B (median over layers, "
            f"within-minibatch noise, {POOL} records pooled) starts at {snr_text} at step 1 "
            f"and stays above 1 until step {_fmt_steps(crosses)}"
        )
    else:
        s1 = (
            f"absent ({n - r1} of {n} seeds): the step's SNR |G|/sigma_B (median over layers, "
            f"within-minibatch noise, {POOL} records pooled) is already <= 1 at step 1 "
            f"({snr_text}): noise-dominated from the start"
        )
    if present2:
        near = [abs(d) <= NEAR_DECADES for d in dists]
        where = (
            f"; the signal s_I peaks at step {_fmt_steps(smax)}, so the crossing is "
            + ", ".join(f"{d:+.2f}" for d in dists)
            + f" decades from it (near it, within {NEAR_DECADES} decades, in {sum(near)} of "
            + f"{len(near)} seeds)"
        )
        s2 = (
            f"present ({r2} of {n} seeds): the SNR crosses 1 downwards at step "
            f"{_fmt_steps(crosses)} and stays below ({CROSSING_HOLD} records in a row){where}"
        )
    else:
        s2 = f"absent ({n - r2} of {n} seeds): no downward crossing of SNR = 1 in the probe"
    return {
        "regime1_present": present1,
        "regime2_present": present2,
        "regime1": s1,
        "regime2": s2,
        "runs": n,
    }


def early_runs(ctx: FigureContext) -> dict[str, list[tuple[int, EarlyRun]]]:
    """Complete ``fig1_early`` runs by activation, ``(seed, run)`` sorted by seed; ``{}``
    when the experiment has not run at this scale."""
    try:
        rows = ctx.rows(EXPERIMENT)
    except FileNotFoundError:
        return {}
    out: dict[str, list[tuple[int, EarlyRun]]] = {}
    for row in rows:
        if row.get("status") != "complete":
            continue
        path = ctx.run_path(EXPERIMENT, row) / "steps.jsonl"
        if not path.is_file():
            continue
        out.setdefault(str(row.get("model.activation")), []).append(
            (int(row.get("seed", 0)), read_early_run(path.parent))
        )
    return {k: sorted(v, key=lambda p: p[0]) for k, v in sorted(out.items())}


def draw_early(runs: Mapping[str, Sequence[tuple[int, EarlyRun]]]) -> plt.Figure:
    """One panel per activation: the pooled SNR per layer (seed 0 solid, other seeds thin),
    its median over layers (black), seed 0's one-record median (grey dots), SNR = 1 (grey)
    and each seed's crossing (dotted)."""
    fig, axes = plt.subplots(len(runs), 1, figsize=(9, 4.2 * len(runs)), squeeze=False)
    for ax, (act, seeded) in zip(axes[:, 0], runs.items(), strict=True):
        for n, (_, run) in enumerate(seeded):
            pooled = run.pooled_snr()
            if n == 0:
                raw = run.median_snr(pool=1)
                ax.plot(
                    run.steps,
                    np.where(raw > 0, raw, np.nan),
                    ".",
                    color="0.55",
                    ms=2.5,
                    label="median, one record (0 not shown)",
                )
            for i, layer in enumerate(run.layers):
                ax.plot(
                    run.steps,
                    pooled[i],
                    color=f"C{i % 10}",
                    lw=1.1 if n == 0 else 0.5,
                    alpha=1.0 if n == 0 else 0.45,
                    label=layer if n == 0 else None,
                )
            ax.plot(
                run.steps,
                run.median_snr(),
                color="k",
                lw=1.6 if n == 0 else 0.7,
                label=f"median over layers ({POOL} records pooled)" if n == 0 else None,
            )
            cross = early_verdict(run)["crossing"]
            if cross is not None:
                ax.axvline(
                    cross,
                    color="tab:purple",
                    ls=":",
                    lw=1,
                    label="crossing (per seed)" if n == 0 else None,
                )
        ax.axhline(SNR_SIGNAL_DOMINATED, color="0.5", lw=1, label="SNR = 1")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("step (log axis)")
        ax.set_ylabel("|G| / sigma_B  (within-minibatch noise)")
        seeds = ", ".join(str(s) for s, _ in seeded)
        ax.set_title(
            f"{act}: the step's signal-to-noise ratio per layer, seeds {seeds}", fontsize=9
        )
        ax.legend(fontsize=7, ncol=3, loc="lower left", framealpha=0.85)
    return fig
