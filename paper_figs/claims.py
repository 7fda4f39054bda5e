"""The paper's qualitative claims, each with a verdict computed from the sweep results.

Every verdict follows from the numbers by a stated rule
(:mod:`paper_figs.claim_rules`); nothing is written by hand.  :data:`CLAIMS` lists the
claims and the finding that decides each (:mod:`paper_figs.paper_findings`);
:func:`evaluate_claims` reads them at a fixed sample or at the looks of a sequential
design, :func:`write_claims` writes ``claims.json`` and ``claims.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from anisotropy.io import nonfinite_to_null, write_json_atomic

from . import paper_findings as pf
from .claim_rules import (
    ALPHA,
    FIXED_LOOK,
    MARGIN,
    OUTCOMES,
    ClaimResult,
    Look,
    NotRun,
    claim_result,
    describe_design,
    finite_number,
    format_interval,
    format_pp,
    format_value_unit,
    read_at_looks,
    rules,
)
from .paper_findings import Finding, Scan
from .sequential import SequentialDesign
from .stats import markdown_table, write_text_atomic
from .verdicts import Kind, Outcome, Verdict

__all__ = ["CLAIMS", "CLAIM_EXPERIMENTS", "evaluate_claims", "write_claims"]


#: (id, paper section, claim, experiments, rule kind, function, metric)
CLAIMS: tuple[
    tuple[str, str, str, tuple[str, ...], Kind, Callable[[Scan, Look], Finding], str], ...
] = (
    (
        "smoothing-improves",
        "4.1",
        "partial smoothing improves the test accuracy (best layer subset and R vs no smoothing)",
        ("fig3", "fig4_left", "fig4_right"),
        "directional",
        pf.improves,
        "best_test_acc",
    ),
    (
        "interior-maximum",
        "4.1",
        "accuracy improves with R up to a maximum, beyond which it "
        "degrades (best subset: its best R vs the largest R)",
        ("fig3", "fig4_left", "fig4_right"),
        "directional",
        pf.interior_maximum,
        "best_test_acc",
    ),
    (
        "isotropic-degrades",
        "4.2, 4.3",
        "isotropic smoothing (all layers) degrades as R grows (its best R vs the largest R)",
        ("fig3", "fig4_left", "fig4_right"),
        "directional",
        pf.isotropic_degrades,
        "best_test_acc",
    ),
    (
        "single-beats-isotropic",
        "4.1, 4.2",
        "smoothing a single layer beats smoothing all layers (isotropic), each at its best R",
        ("fig3", "fig4_left", "fig4_right"),
        "directional",
        pf.single_beats_isotropic,
        "best_test_acc",
    ),
    (
        "deeper-benefits-more",
        "4.1",
        "smoothing a deeper layer helps more than smoothing the "
        "first (deepest vs first single layer, each at its best R)",
        ("fig3", "fig4_left", "fig4_right"),
        "directional",
        pf.deeper_benefits_more,
        "best_test_acc",
    ),
    (
        "y8-no-better",
        "4.4",
        "y = 8 samples per step is no better than y = 4",
        ("fig5",),
        "no better",
        pf.y8_no_better,
        "best_test_acc",
    ),
    (
        "head-smoothing-helps",
        "5.1, 5.2, 5.3",
        "PLA on a fully connected layer of the CNN head improves the best test accuracy",
        ("fig6", "fig8"),
        "directional",
        pf.head_helps,
        "best_test_acc",
    ),
    (
        "mostly-early-stopping",
        "5.1, 5.2, 5.3",
        "the gain of head smoothing is mostly an "
        "early-stopping gain (larger in best than in final test accuracy)",
        ("fig6", "fig8"),
        "directional",
        pf.early_stopping,
        "best_test_acc - final_test_acc",
    ),
    (
        "conv-smoothing-hurts",
        "5.1",
        "smoothing a convolutional layer lowers the accuracy",
        ("fig6",),
        "directional",
        pf.conv_hurts,
        "best_test_acc",
    ),
    (
        "weight-decay-no-help",
        "5.2.1",
        "weight decay (1e-2, 1e-3, 1e-4) does not improve the best test accuracy",
        ("fig7",),
        "no better",
        pf.wd_no_help,
        "best_test_acc",
    ),
    (
        "pla-beats-weight-decay",
        "5.2.1",
        "PLA on the head beats the best weight decay",
        ("fig7",),
        "directional",
        pf.pla_beats_wd,
        "best_test_acc",
    ),
)


#: the experiments the claims read, in the order of :data:`CLAIMS`
CLAIM_EXPERIMENTS: tuple[str, ...] = tuple(dict.fromkeys(e for c in CLAIMS for e in c[3]))


def _sequential(
    fn: Callable[[Scan, Look], Finding],
    rows: Sequence[Mapping[str, Any]],
    design: SequentialDesign,
) -> tuple[Verdict, str, dict, list]:
    """Read the claim at the planned looks (:func:`paper_figs.claim_rules.read_at_looks`);
    also returns the arms the deciding look read."""
    scans: list[Scan] = []

    def read(sub: list[Mapping[str, Any]], look: Look) -> Finding:
        scan = Scan(sub)
        finding = fn(scan, look)
        scans.append(scan)  # the scan of the last look read (a look may raise NotRun)
        return finding

    v, text, nums = read_at_looks(read, rows, design)
    return v, text, nums, scans[-1].arms


def evaluate_claims(
    rows_of: Callable[[str], Sequence[Mapping[str, Any]] | None],
    *,
    design: SequentialDesign | None = None,
) -> list[ClaimResult]:
    """Check every claim on every experiment it applies to.

    Parameters
    ----------
    rows_of : callable
        Experiment name -> its results rows, or ``None`` if its sweep has not run.
    design : SequentialDesign, optional
        Read the verdicts at the looks of this group-sequential design (valid under
        optional stopping); default: one fixed-sample test on all seeds.
    """
    out = []
    rule = rules(design)
    for entry in CLAIMS:
        _, _, _, exps, _, fn, _ = entry
        for exp in exps:
            rows = rows_of(exp)
            if rows is None:
                out.append(claim_result(entry, exp, rule, "not run", "sweep not run"))
                continue
            arms: list = []
            verdict: Outcome
            try:
                if design is None:
                    scan = Scan(rows)
                    verdict, evidence, numbers = fn(scan, FIXED_LOOK)
                    arms = scan.arms
                else:
                    verdict, evidence, numbers, arms = _sequential(fn, rows, design)
            except NotRun as exc:
                verdict, evidence, numbers = "not run", str(exc), {}
            out.append(claim_result(entry, exp, rule, verdict, evidence, numbers, arms))
    return out


def _table_row(r: ClaimResult) -> dict[str, str]:
    nb = r.numbers
    p, w = nb.get("paired"), nb.get("welch")
    return {
        "claim": f"{r.claim} (§{r.section})",
        "experiment": r.experiment,
        "verdict": f"**{r.verdict}**",
        "difference": format_value_unit(nb["diff"], "pp") if "diff" in nb else "",
        "paired": format_interval(p["lo"], p["hi"], "pp") if p else "-",
        "welch": format_interval(w["lo"], w["hi"], "pp") if w else "-",
        "decision": (
            f"{nb.get('test', '')} {format_interval(nb['lo'], nb['hi'], 'pp')}"
            if finite_number(nb.get("lo"))
            else "-"
        ),
        "n": (f"{nb['n_a']}" if nb.get("test") == "paired" else f"{nb['n_a']} vs {nb['n_b']}")
        if "n_a" in nb
        else "",
        "evidence": r.evidence,
    }


def write_claims(
    results: Sequence[ClaimResult],
    out: str | Path,
    *,
    scale: str,
    design: SequentialDesign | None = None,
) -> list[Path]:
    """Write ``claims.json`` and ``claims.md`` (verdict table, rules) into ``out``."""
    out = Path(out)
    rule = rules(design)
    data = {
        "scale": scale,
        "alpha": ALPHA,
        "margin": MARGIN,
        "rules": rule,
        "design": describe_design(design),
        "looks": None if design is None else list(design.looks),
        "claims": [asdict(r) for r in results],
    }
    # strict JSON: an interval that cannot exist yet (before the first look) is null
    j = write_json_atomic(out / "claims.json", nonfinite_to_null(data))
    counts = {v: sum(r.verdict == v for r in results) for v in OUTCOMES}
    md = (
        f"# The paper's claims at {scale} scale\n\n"
        f"Verdicts computed from the sweep results (not written by hand). "
        f"{', '.join(f'{n} {v}' for v, n in counts.items() if n)}.\n\n"
        f"* design: {data['design']}\n"
        f"* comparison: {rule['test']}\n"
        f"* directional claims: {rule['directional']}\n"
        f'* "no better" claims: {rule["no better"]}\n'
        f"* margin {format_pp(MARGIN)}: the binomial noise of a difference of two "
        f"accuracies on the 10,000 test images (sqrt(2) x 0.36 pp)\n\n"
        f"Intervals in the table are 95 % (paired, Welch); the decision interval is the "
        f"one the verdict read (Bonferroni- and look-adjusted). The forest plot "
        f"`claims_forest.png` draws every decision interval against the margin.\n\n"
        + markdown_table(
            [_table_row(r) for r in results],
            [
                "claim",
                "experiment",
                "verdict",
                "difference",
                "paired",
                "welch",
                "decision",
                "n",
                "evidence",
            ],
            headers=[
                "claim",
                "experiment",
                "verdict",
                "difference",
                "paired 95% CI",
                "Welch 95% CI",
                "decision interval",
                "n",
                "evidence",
            ],
        )
    )
    m = write_text_atomic(out / "claims.md", md)
    return [j, m]
