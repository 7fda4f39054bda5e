"""Has the unsmoothed baseline peaked before the end of its runs?  The check of a
scale's length, read from the logs of the experiments the paper's claims use.

A scale is long enough when more epochs would not change the baseline's accuracy by a
margin that matters: the claims compare best and final test accuracies, and on a curve
that still rises those numbers depend on where the run stopped.  For each baseline cell
(no smoothing, no weight decay) of each experiment, with ``acc[s, e]`` the test accuracy
of seed ``s`` after epoch ``e`` and ``W`` the window length,

.. math::

    \\Delta_s = \\frac1W \\sum_{e=E-W+1}^{E} acc[s, e] - \\frac1W \\sum_{e=E-2W+1}^{E-W} acc[s, e],

the rise of the last window over the one before it, and its paired 95 % t interval
over the seeds (:func:`paper_figs.stats.paired`).  The outcome, with the claims' margin
:data:`~paper_figs.verdicts.MARGIN` (0.5 pp):

* **peaked**: the interval's upper end is below ``+MARGIN``: the last window gained less
  than the smallest effect the verdicts resolve (a falling curve, past its peak, is
  peaked too);
* **still rising**: not peaked and the lower end is above 0;
* **inconclusive**: neither (the interval holds 0 and reaches ``+MARGIN``);
* **too few seeds**: fewer than 2 complete runs, or runs shorter than ``2 W`` epochs.

``W = max(WINDOW_MIN, round(E * WINDOW_FRACTION))``: 5 epochs of 40, 10 of 80.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from anisotropy.io import nonfinite_to_null, write_json_atomic, write_text_atomic
from experiments.results import SETTING_COLUMNS

from .stats import markdown_table, paired, select
from .verdicts import MARGIN

__all__ = [
    "PlateauOutcome",
    "PLATEAU_OUTCOMES",
    "WINDOW_FRACTION",
    "WINDOW_MIN",
    "LengthCheck",
    "window_length",
    "rise",
    "plateau_outcome",
    "check_baselines",
    "write_length_checks",
]

PlateauOutcome = Literal["peaked", "still rising", "inconclusive", "too few seeds"]
#: the outcomes, derived from :data:`PlateauOutcome`
PLATEAU_OUTCOMES: tuple[str, ...] = get_args(PlateauOutcome)
#: window length as a fraction of the run: an eighth (5 of 40 epochs) is long enough to
#: average the ±1 pp epoch-to-epoch jumps of an augmented CNN and short enough to read
#: the end of the curve, not its middle
WINDOW_FRACTION = 1 / 8
#: shortest window: two epochs, so that one noisy epoch is not the whole window
WINDOW_MIN = 2
#: the settings that make a cell (every setting column of the results but the seed)
_CELL_KEYS: tuple[str, ...] = tuple(k for k in SETTING_COLUMNS if k != "seed")
#: the unsmoothed baseline arm (no smoothing, no weight decay), as the claims select it
_BASELINE: dict[str, Any] = {"smoothing.layers": "none", "optim.weight_decay": 0.0}


@dataclass(frozen=True)
class LengthCheck:
    """The length check of one baseline cell (module docstring).

    ``rise``, ``lo`` and ``hi`` are accuracies (fractions); ``best_epochs`` is each seed's
    epoch of best test accuracy; ``last_mean`` the mean accuracy over the last window."""

    experiment: str
    cell: str
    epochs: int
    window: int
    n: int
    rise: float
    lo: float
    hi: float
    last_mean: float
    best_epochs: tuple[int, ...]
    outcome: PlateauOutcome

    def report(self) -> str:
        if self.outcome == "too few seeds":
            return f"{self.experiment} {self.cell}: length check needs >= 2 runs of >= 2 windows"
        return (
            f"{self.experiment} {self.cell}: {self.outcome} (last {self.window} of {self.epochs} "
            f"epochs vs the {self.window} before: {100 * self.rise:+.2f} pp "
            f"[{100 * self.lo:+.2f}, {100 * self.hi:+.2f}], n={self.n}; best epochs "
            f"{min(self.best_epochs)}-{max(self.best_epochs)})"
        )


def window_length(epochs: int) -> int:
    """``W = max(WINDOW_MIN, round(epochs * WINDOW_FRACTION))``."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    return max(WINDOW_MIN, round(epochs * WINDOW_FRACTION))


def rise(acc: np.ndarray, *, window: int) -> tuple[float, float, float]:
    """Mean rise of the last ``window`` epochs over the ``window`` before, and its paired
    95 % t interval over seeds (module docstring).

    Parameters
    ----------
    acc : ndarray, shape (seeds, epochs)
        Test accuracy per seed and epoch; ``seeds >= 2``, ``epochs >= 2 window``.
    window : int
        ``W >= 1``.

    Returns
    -------
    (rise, lo, hi) : tuple of float
    """
    a = np.asarray(acc, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"acc must have shape (seeds, epochs), got shape {a.shape}")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if a.shape[1] < 2 * window:
        raise ValueError(f"acc needs >= 2 * window = {2 * window} epochs, got {a.shape[1]}")
    if not np.isfinite(a).all():
        raise ValueError("acc holds NaN or inf")
    last = a[:, -window:].mean(axis=1)
    before = a[:, -2 * window : -window].mean(axis=1)
    c = paired(last, before)
    return c.diff, c.lo, c.hi


def plateau_outcome(lo: float, hi: float, *, margin: float = MARGIN) -> PlateauOutcome:
    """``peaked`` if ``hi < margin``, ``still rising`` if ``lo > 0``, else ``inconclusive``."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "too few seeds"
    if hi < margin:
        return "peaked"
    return "still rising" if lo > 0 else "inconclusive"


def _cells(rows: Sequence[Mapping[str, Any]]) -> dict[tuple, list[Mapping[str, Any]]]:
    out: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        out.setdefault(tuple(str(r.get(k)) for k in _CELL_KEYS), []).append(r)
    return out


def _label(key: tuple, others: Sequence[tuple]) -> str:
    varying = [i for i in range(len(_CELL_KEYS)) if len({o[i] for o in others}) > 1]
    return ", ".join(f"{_CELL_KEYS[i]} {key[i]}" for i in varying) or "baseline"


def check_baselines(
    rows_of: Callable[[str], Sequence[Mapping[str, Any]] | None],
    log_of: Callable[[str, Mapping[str, Any]], list[dict[str, Any]]],
    experiments: Sequence[str],
) -> list[LengthCheck]:
    """The length check of every baseline cell of ``experiments`` that has results.

    Parameters
    ----------
    rows_of : callable
        ``experiment -> results rows`` (``None`` when the experiment has no results).
    log_of : callable
        ``(experiment, row) -> log records`` (each with ``epoch`` and ``test_acc``).
    experiments : sequence of str
    """
    checks: list[LengthCheck] = []
    for exp in experiments:
        rows = rows_of(exp)
        if not rows:
            continue
        base = select(rows, **_BASELINE)
        cells = _cells(base)
        for key, members in cells.items():
            curves = []
            for r in sorted(members, key=lambda r: int(r["seed"])):
                recs = [x for x in log_of(exp, r) if x.get("test_acc") is not None]
                curves.append(
                    [float(x["test_acc"]) for x in sorted(recs, key=lambda x: x["epoch"])]
                )
            epochs = min(len(c) for c in curves)
            w = window_length(max(epochs, 1))
            acc = np.array([c[:epochs] for c in curves])
            best = tuple(int(np.argmax(c)) + 1 for c in acc) if epochs else ()
            if len(curves) < 2 or epochs < 2 * w:
                d = lo = hi = last = math.nan
            else:
                d, lo, hi = rise(acc, window=w)
                last = float(acc[:, -w:].mean())
            checks.append(
                LengthCheck(
                    exp,
                    _label(key, list(cells)),
                    epochs,
                    w,
                    len(curves),
                    d,
                    lo,
                    hi,
                    last,
                    best,
                    plateau_outcome(lo, hi),
                )
            )
    return checks


def _finite(c: LengthCheck) -> bool:
    return all(math.isfinite(v) for v in (c.rise, c.lo, c.hi, c.last_mean))


def write_length_checks(checks: Sequence[LengthCheck], out: str | Path, *, scale: str) -> Path:
    """Write ``length_check.md`` (table) and ``length_check.json`` into ``out``."""
    out = Path(out)
    rows = [
        {
            "experiment": c.experiment,
            "cell": c.cell,
            "epochs": c.epochs,
            "window": c.window,
            "n": c.n,
            "last window acc (%)": f"{100 * c.last_mean:.2f}" if _finite(c) else "n/a",
            "rise (pp) [95%]": (
                f"{100 * c.rise:+.2f} [{100 * c.lo:+.2f}, {100 * c.hi:+.2f}]"
                if _finite(c)
                else "n/a"
            ),
            "best epochs": f"{min(c.best_epochs)}-{max(c.best_epochs)}" if c.best_epochs else "",
            "outcome": c.outcome,
        }
        for c in checks
    ]
    title = (
        f"# Length check ({scale} scale): has the unsmoothed baseline peaked?\n\n"
        f"Rise of the mean test accuracy over the last window (an eighth of the run, at "
        f"least {WINDOW_MIN} epochs) over the window before it, paired 95 % t interval over "
        f"seeds. Peaked: the upper end is below +{100 * MARGIN:g} pp (the claims' margin); "
        f"still rising: the lower end is above 0.\n"
    )
    md = out / "length_check.md"
    write_text_atomic(md, title + "\n" + markdown_table(rows, list(rows[0]) if rows else []))
    write_json_atomic(
        out / "length_check.json",
        nonfinite_to_null({"scale": scale, "checks": [asdict(c) for c in checks]}),
    )
    return md
