"""The findings behind the related work's claims: each a pure function of enriched rows
(:func:`paper_figs.related_data.enrich`) returning ``(verdict, evidence, numbers)``.

Accuracy comparisons use the paired or Welch t interval of the paper's claims read with
:func:`paper_figs.verdicts.decide`; epoch counts the same rule with :data:`EPOCH_MARGIN`;
rank correlations a seed-bootstrap percentile interval with :data:`TAU_MARGIN`.  The
claims that use them, and their files, are in :mod:`paper_figs.related_claims`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .claim_rules import (
    FIXED_LOOK,
    Look,
    NotRun,
    compare_at,
    directional,
    evidence_text,
    format_interval,
)
from .rank_correlation import (
    BootstrapTau,
    bootstrap_tau,
    bootstrap_tau_difference,
    kendall_tau_b,
)
from .related_data import (
    SCOPE_MODEL,
    best_cell,
    cell_of,
    cells,
    describe_cell,
    flat_column,
    flatness_keys,
)
from .verdicts import ALPHA, MARGIN, Evidence, Verdict, arm, decide

__all__ = [
    "EPOCH_MARGIN",
    "TAU_MARGIN",
    "TARGET_SLACK",
    "BOOTSTRAP_SEED",
    "Finding",
    "Rows",
    "epochs_to",
    "GUIDANCE_WEIGHTS",
    "guidance_weight",
    "guidance_target",
    "converges_faster",
    "improves_final",
    "LOSS_TARGET_SLACK",
    "LOSS_MARGIN",
    "epochs_to_loss",
    "guidance_loss_target",
    "converges_faster_loss",
    "lowers_final_loss",
    "layer_predicts_better",
    "poor_is_worse",
    "scoping_helps",
    "scoping_replaces",
    "tau_claim",
    "versus",
]

#: margin of "negligible" for epochs to a target accuracy: one epoch, the resolution of
#: the measurement (test accuracy is logged once per epoch)
EPOCH_MARGIN = 1.0
#: margin of "negligible" for Kendall's tau: |tau| < 0.1 is a negligible association
#: (tau = 0.1 corresponds to a Pearson correlation of sin(pi tau / 2) = 0.16 under
#: normality, a variance share below 3 %)
TAU_MARGIN = 0.1
#: target of "epochs to target": the unguided runs' mean best test accuracy less 1 pp,
#: so that the target is reached by the unguided runs themselves (not only by their
#: luckiest seeds) and a faster approach to it is what the count measures
TARGET_SLACK = 0.01
#: target of "epochs to target loss" (a reconstruction, which has no accuracy): the
#: unguided runs' mean best test loss times ``1 + LOSS_TARGET_SLACK``, the analogue of
#: :data:`TARGET_SLACK` (a level the unguided runs reach themselves; relative, since the
#: loss has no fixed scale)
LOSS_TARGET_SLACK = 0.05
#: margin of "negligible" for a test loss, relative: a difference of log losses (100 x
#: the log ratio, about the percentage difference) inside +-1 %; the seed-to-seed spread
#: of the autoencoder's final test loss is a few per cent
LOSS_MARGIN = 0.01
#: seed of the bootstrap resampling of the flatness claims (their verdicts are
#: reproducible; any seed gives the same verdicts up to the bootstrap's Monte Carlo error)
BOOTSTRAP_SEED = 20_240_213
Finding = tuple[Verdict, str, dict]
Rows = Sequence[Mapping[str, Any]]


# ----------------------------------------------------------------------------- evidence


def _numbers(e: Evidence, alpha: float, unit: str, **kw: Any) -> dict:
    return {**e.numbers(), "alpha": alpha, "unit": unit, **kw}


# ----------------------------------------------------------------------------- comparison


def _is(key: str, value: Any) -> Callable[[Mapping[str, Any]], bool]:
    return lambda r: r.get(key) == value


def _family(rows: Rows, family: str, metric: str) -> tuple[dict, Any, int]:
    """The family's cells keyed by ``(method, cell)`` (PLA and PLEA at the same layers and
    R are two arms, never one), the chosen key and the number of cells the choice scanned
    on these rows (for the Bonferroni correction).  When every cell carries a
    ``tuning_score`` (a tuning stage chose it on separate seeds, :mod:`experiments.tuning`)
    the cell with the best tuning score is taken and nothing is scanned here (0);
    otherwise the best cell by ``metric`` on these rows, scanning all of them."""
    groups: dict[tuple[str, Any], list[Mapping[str, Any]]] = {}
    for r in rows:
        if r.get("status") == "complete" and r.get("family") == family:
            groups.setdefault((str(r["method"]), cell_of(r)), []).append(r)
    ok = {k: v for k, v in groups.items() if len(v) >= 2}
    if ok and all(r.get("tuning_score") is not None for v in ok.values() for r in v):
        return groups, max(ok, key=lambda k: float(ok[k][0]["tuning_score"])), 0
    return groups, best_cell(groups, metric), len(groups)


def versus(family: str, metric: str = "best_test_acc") -> Callable[[Rows], Finding]:
    """Claim: partial smoothing at its best cell beats ``family`` at its best cell."""

    def claim(rows: Rows, *, look: Look = FIXED_LOOK) -> Finding:
        p, kp, scanned_p = _family(rows, "partial", metric)
        o, ko, scanned_o = _family(rows, family, metric)
        if kp is None or ko is None:
            raise NotRun(f"needs >= 2 seeds of single-layer PLA / PLEA and of {family}")
        # Bonferroni over the cells scanned on these seeds (none when a tuning stage chose
        # both arms on separate seeds)
        m = max(1, scanned_p + scanned_o)
        v, e, alpha = directional(arm(p[kp], metric), arm(o[ko], metric), m=m, look=look)
        (mp, cp), (mo, co) = kp, ko
        dp, do = describe_cell(cp), describe_cell(co)
        return (
            v,
            evidence_text(f"{mp} ({dp})", f"{mo} ({do})" if do else mo, e, alpha, "pp"),
            _numbers(e, alpha, "pp", partial=dp, other=do, partial_method=mp, other_method=mo),
        )

    return claim


# ----------------------------------------------------------------------------- scoping


_POOR, _GOOD = "torch_default", "kaiming"


def _unsmoothed(rows: Rows, init: str) -> list[Mapping[str, Any]]:
    return [
        r
        for r in rows
        if r.get("status") == "complete"
        and r.get("model.init") == init
        and str(r.get("smoothing.layers")) == "none"
    ]


def _scoping_arms(rows: Rows, metric: str) -> tuple[list, list, dict, Any]:
    """(Kaiming unsmoothed, poor unsmoothed, poor scoped cells, best scoped cell)."""
    good, poor = _unsmoothed(rows, _GOOD), _unsmoothed(rows, _POOR)
    scoped = cells(
        rows,
        lambda r: r.get("model.init") == _POOR and str(r.get("smoothing.layers")) != "none",
        ("smoothing.layers", "smoothing.R"),
    )
    return good, poor, scoped, best_cell(scoped, metric)


def poor_is_worse(rows: Rows, metric: str = "best_test_acc", *, look: Look = FIXED_LOOK) -> Finding:
    good, poor, _, _ = _scoping_arms(rows, metric)
    if len(good) < 2 or len(poor) < 2:
        raise NotRun("needs >= 2 unsmoothed runs from each initialisation")
    v, e, alpha = directional(arm(good, metric), arm(poor, metric), m=1, look=look)
    return (
        v,
        evidence_text("Kaiming", "PyTorch default (no smoothing)", e, alpha, "pp"),
        _numbers(e, alpha, "pp"),
    )


def scoping_helps(rows: Rows, metric: str = "best_test_acc", *, look: Look = FIXED_LOOK) -> Finding:
    _, poor, scoped, k = _scoping_arms(rows, metric)
    if k is None or len(poor) < 2:
        raise NotRun("needs >= 2 seeds of scoped and unsmoothed runs from the poor initialisation")
    v, e, alpha = directional(arm(scoped[k], metric), arm(poor, metric), m=len(scoped), look=look)
    return (
        v,
        evidence_text(
            f"PyTorch default + scoping ({describe_cell(k)})", "PyTorch default", e, alpha, "pp"
        ),
        _numbers(e, alpha, "pp", cell=describe_cell(k)),
    )


def scoping_replaces(
    rows: Rows, metric: str = "best_test_acc", *, look: Look = FIXED_LOOK
) -> Finding:
    good, _, scoped, k = _scoping_arms(rows, metric)
    if k is None or len(good) < 2:
        raise NotRun("needs >= 2 seeds of Kaiming runs and of scoped poor-initialisation runs")
    alpha = ALPHA / max(len(scoped), 1)
    e = compare_at(arm(good, metric), arm(scoped[k], metric), alpha=alpha, look=look)
    v = decide(e.lo, e.hi, kind="no better")
    return (
        v,
        evidence_text(
            "Kaiming (no smoothing)",
            f"PyTorch default + scoping ({describe_cell(k)})",
            e,
            alpha,
            "pp",
        )
        + f"; margin {100 * MARGIN:.2f} pp",
        _numbers(e, alpha, "pp", cell=describe_cell(k), margin=MARGIN),
    )


# ----------------------------------------------------------------------------- guidance

#: the guidance weights (results columns; an absent column is 0): a run is guided when
#: either term is on (L_dense on the classifier and the autoencoder, L_conv on the CNN)
GUIDANCE_WEIGHTS: tuple[str, ...] = ("guidance.dense_weight", "guidance.conv_weight")


def guidance_weight(r: Mapping[str, Any]) -> float:
    """The total guidance weight of a row, ``dense_weight + conv_weight`` (0: unguided)."""
    return sum(float(r.get(k) or 0.0) for k in GUIDANCE_WEIGHTS)


def guidance_target(rows: Rows) -> float:
    """The target accuracy: the unguided runs' mean best test accuracy less
    :data:`TARGET_SLACK`."""
    base = [float(r["best_test_acc"]) for r in rows if _unguided(r)]
    if len(base) < 2:
        raise NotRun("needs >= 2 unguided runs (guidance weights 0)")
    return float(np.mean(base)) - TARGET_SLACK


def _first_epoch(row: Mapping[str, Any], curve_key: str, reached: Callable[[float], bool]) -> float:
    """First epoch of the row's ``curve_key`` curve (``{epoch: value}``) whose value is
    ``reached``; ``epochs_done + 1`` when none is (a censored run counts against its arm)."""
    curve = row.get(curve_key) or {}
    hit = [int(ep) for ep, v in curve.items() if reached(float(v))]
    if hit:
        return float(min(hit))
    done = row.get("epochs_done") or (max((int(e) for e in curve), default=0))
    return float(int(done) + 1)


def epochs_to(row: Mapping[str, Any], target: float) -> float:
    """First epoch whose test accuracy reaches ``target``; ``epochs_done + 1`` when no
    epoch does (a censored run counts against its arm)."""
    return _first_epoch(row, "test_acc_by_epoch", lambda acc: acc >= target)


def _unguided(r: Mapping[str, Any]) -> bool:
    return r.get("status") == "complete" and guidance_weight(r) == 0.0


def _guided(rows: Rows) -> dict:
    return cells(rows, lambda r: guidance_weight(r) > 0, (*GUIDANCE_WEIGHTS, "guidance.target"))


def _converges(
    rows: Rows,
    target: float,
    time_of: Callable[[Mapping[str, Any], float], float],
    what: str,
    look: Look,
) -> Finding:
    """Claim: the guided cell with the fewest mean epochs to ``target`` (``time_of``)
    needs fewer than the unguided runs (:data:`EPOCH_MARGIN`, Bonferroni over the
    guided cells); ``what`` names the target in the evidence."""
    guided = _guided(rows)
    timed = {k: [{**r, "epochs_to": time_of(r, target)} for r in v] for k, v in guided.items()}
    k = best_cell(timed, "epochs_to", lower=True)
    base = [{**r, "epochs_to": time_of(r, target)} for r in rows if _unguided(r)]
    if k is None:
        raise NotRun("needs >= 2 seeds of a guided cell (a guidance weight > 0)")
    alpha = ALPHA / max(len(timed), 1)
    e = compare_at(arm(base, "epochs_to"), arm(timed[k], "epochs_to"), alpha=alpha, look=look)
    v = decide(e.lo, e.hi, kind="directional", margin=EPOCH_MARGIN)
    return (
        v,
        f"{what}; "
        + evidence_text(
            "epochs without guidance", f"with ({describe_cell(k)})", e, alpha, "epochs"
        ),
        _numbers(e, alpha, "epochs", target=target, cell=describe_cell(k)),
    )


def converges_faster(rows: Rows, *, look: Look = FIXED_LOOK) -> Finding:
    """Claim: guidance reaches the target test accuracy (:func:`guidance_target`) in
    fewer epochs (the guided cell with the fewest, Bonferroni over the guided cells)."""
    target = guidance_target(rows)
    return _converges(rows, target, epochs_to, f"target test accuracy {100 * target:.2f} %", look)


def improves_final(
    rows: Rows, metric: str = "final_test_acc", *, look: Look = FIXED_LOOK
) -> Finding:
    guided = _guided(rows)
    k = best_cell(guided, metric)
    base = [r for r in rows if _unguided(r)]
    if k is None or len(base) < 2:
        raise NotRun("needs >= 2 seeds of a guided cell and of the unguided runs")
    v, e, alpha = directional(arm(guided[k], metric), arm(base, metric), m=len(guided), look=look)
    return (
        v,
        evidence_text(f"guided ({describe_cell(k)})", "unguided", e, alpha, "pp"),
        _numbers(e, alpha, "pp", cell=describe_cell(k)),
    )


# ----------------------------------------------------------------------------- guidance, loss


def guidance_loss_target(rows: Rows) -> float:
    """The target test loss of a reconstruction: the unguided runs' mean best test loss
    times ``1 + LOSS_TARGET_SLACK``."""
    base = [float(r["best_test_loss"]) for r in rows if _unguided(r) and r.get("best_test_loss")]
    if len(base) < 2:
        raise NotRun(
            "needs >= 2 unguided runs (guidance weights 0) with a test loss "
            "(best_test_loss: a reconstruction)"
        )
    return float(np.mean(base)) * (1.0 + LOSS_TARGET_SLACK)


def epochs_to_loss(row: Mapping[str, Any], target: float) -> float:
    """First epoch whose test loss is at most ``target``; ``epochs_done + 1`` when no
    epoch's is (a censored run counts against its arm)."""
    return _first_epoch(row, "test_loss_by_epoch", lambda loss: loss <= target)


def converges_faster_loss(rows: Rows, *, look: Look = FIXED_LOOK) -> Finding:
    """Claim: guidance reaches the target test loss (:func:`guidance_loss_target`) in
    fewer epochs (the rule of :func:`converges_faster`)."""
    target = guidance_loss_target(rows)
    return _converges(rows, target, epochs_to_loss, f"target test loss {target:.4g}", look)


def _log_loss(metric: str) -> Callable[[Mapping[str, Any]], float]:
    """Minus 100 x the log of the row's ``metric``: larger is better, and a difference
    of two is 100 x the log ratio of the losses (about the difference in per cent)."""

    def value(r: Mapping[str, Any]) -> float:
        v = r.get(metric)
        if v is None or not float(v) > 0:
            raise NotRun(f"run {r.get('run')} has no positive {metric}")
        return -100.0 * math.log(float(v))

    return value


def lowers_final_loss(
    rows: Rows, metric: str = "final_test_loss", *, look: Look = FIXED_LOOK
) -> Finding:
    """Claim: the guided cell with the lowest mean ``metric`` has a lower ``metric`` than
    the unguided runs.  Read on ``100 log(loss)``: the difference unguided minus guided is
    100 x the log ratio (the relative reduction in per cent), decided with the margin
    ``100 LOSS_MARGIN`` (Bonferroni over the guided cells)."""
    guided = _guided(rows)
    k = best_cell(guided, metric, lower=True)
    base = [r for r in rows if _unguided(r)]
    if k is None or len(base) < 2:
        raise NotRun("needs >= 2 seeds of a guided cell and of the unguided runs")
    alpha = ALPHA / max(len(guided), 1)
    value = _log_loss(metric)
    e = compare_at(arm(guided[k], value), arm(base, value), alpha=alpha, look=look)
    v = decide(e.lo, e.hi, kind="directional", margin=100.0 * LOSS_MARGIN)
    return (
        v,
        f"{metric.replace('_', ' ')}, 100 x log(unguided / guided) (% lower with guidance); "
        + evidence_text(f"guided ({describe_cell(k)})", "unguided", e, alpha, "% (log)"),
        _numbers(e, alpha, "% (log)", cell=describe_cell(k), margin=100.0 * LOSS_MARGIN),
    )


# ----------------------------------------------------------------------------- flatness


def _flat_models(rows: Rows) -> tuple[list[Mapping[str, Any]], list[tuple[str, str, float]]]:
    done = [r for r in rows if r.get("status") == "complete"]
    keys = flatness_keys(done)
    if not keys:
        raise NotRun("no flatness in the runs' summary.json (logging.flatness = false?)")
    if len({r.get("seed") for r in done}) < 2:
        raise NotRun("needs final models of >= 2 seeds")
    return done, keys


def _flatness(r: Mapping[str, Any], key: tuple[str, str, float]) -> float:
    """Flatness of a model (larger = flatter): minus its sharpness measure."""
    return -float(r[flat_column(*key)])


def _describe_key(key: tuple[str, str, float]) -> str:
    measure, scope, param = key
    p = "sigma" if measure == "local_energy" else "R"
    where = "the whole model" if scope == SCOPE_MODEL else scope
    name = "local energy" if measure == "local_energy" else "local free energy above L(W)"
    return f"{name} of {where} ({p} = {param:g})"


def _tau_finding(
    b: BootstrapTau, alpha: float, evidence: str, unit: str = "tau", **kw: Any
) -> Finding:
    """The finding of a rank correlation (``unit`` ``"tau"``, or ``"tau difference"``
    for a difference of two): the directional verdict of its bootstrap interval against
    :data:`TAU_MARGIN`, and the numbers of an accuracy comparison (the bootstrap
    interval as the decision interval, models and seeds as ``n``)."""
    return (
        decide(b.lo, b.hi, kind="directional", margin=TAU_MARGIN),
        evidence,
        {
            "diff": b.tau,
            "lo": b.lo,
            "hi": b.hi,
            "alpha": alpha,
            "test": "bootstrap",
            "n_a": b.n,
            "n_b": b.n_seeds,
            "unit": unit,
            **kw,
        },
    )


def tau_claim(y_of: Callable[[Mapping[str, Any]], float], what: str) -> Callable[[Rows], Finding]:
    def claim(rows: Rows) -> Finding:
        done, keys = _flat_models(rows)
        whole = [k for k in keys if k[1] == SCOPE_MODEL]
        if not whole:
            raise NotRun("no whole-model flatness in the summaries")
        y = [y_of(r) for r in done]
        seeds = [int(r["seed"]) for r in done]
        taus = {k: _tau_point([_flatness(r, k) for r in done], y) for k in whole}
        k = max(whole, key=lambda q: taus[q])
        alpha = ALPHA / len(whole)
        b = bootstrap_tau(
            [_flatness(r, k) for r in done],
            y,
            seeds,
            alpha=alpha,
            rng=np.random.default_rng(BOOTSTRAP_SEED),
        )
        return _tau_finding(
            b,
            alpha,
            f"Kendall tau(flatness, {what}) with flatness = minus the {_describe_key(k)}: "
            f"{b.tau:+.3f}, bootstrap {format_interval(b.lo, b.hi, 'tau')} at alpha = {alpha:.3g} "
            f"({b.n} models, {b.n_seeds} seeds, {b.n_boot} resamples; best of {len(whole)} "
            "whole-model measures)",
            measure=list(k),
        )

    return claim


def _tau_point(x: Sequence[float], y: Sequence[float]) -> float:
    """Tau-b, with an undefined tau (a constant measure) ranked last."""
    t = kendall_tau_b(x, y)
    return -math.inf if math.isnan(t) else t


def layer_predicts_better(rows: Rows) -> Finding:
    done, keys = _flat_models(rows)
    whole = [k for k in keys if k[1] == SCOPE_MODEL]
    layers = [k for k in keys if k[1] != SCOPE_MODEL]
    if not whole or not layers:
        raise NotRun("needs whole-model and per-layer flatness")
    y = [float(r["final_test_acc"]) for r in done]
    seeds = [int(r["seed"]) for r in done]
    taus = {k: _tau_point([_flatness(r, k) for r in done], y) for k in keys}
    kl, kw = max(layers, key=lambda q: taus[q]), max(whole, key=lambda q: taus[q])
    alpha = ALPHA / len(keys)
    b = bootstrap_tau_difference(
        [_flatness(r, kl) for r in done],
        [_flatness(r, kw) for r in done],
        y,
        seeds,
        alpha=alpha,
        rng=np.random.default_rng(BOOTSTRAP_SEED),
    )
    return _tau_finding(
        b,
        alpha,
        f"best layer: {_describe_key(kl)}, tau {taus[kl]:+.3f}; whole model: "
        f"{_describe_key(kw)}, tau {taus[kw]:+.3f}; difference {b.tau:+.3f}, bootstrap "
        f"{format_interval(b.lo, b.hi, 'tau')} at alpha = {alpha:.3g} "
        f"({b.n} models, {b.n_seeds} seeds; "
        f"best of {len(keys)} measures)",
        unit="tau difference",
        layer=kl[1],
        layer_measure=list(kl),
        model_measure=list(kw),
    )
