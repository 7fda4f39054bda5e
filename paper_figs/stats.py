"""Statistics across seeds: means, 95 % t-intervals, Welch tests, results tables.

The paper shows single runs without error bars; every number drawn or tabled
here is a mean over seeds with a Student-t confidence interval, and every
comparison behind a claim verdict is a Welch (unequal-variance) t-test.

* :func:`t_interval` - mean and ``mean +- t_{(1+c)/2, n-1} s / sqrt(n)``.
* :func:`welch` - difference of two means, its Welch-Satterthwaite interval and
  two-sided p-value.
* :func:`paired` - mean of per-seed differences of two arms that ran the same
  seeds, its t interval (``n - 1`` degrees of freedom) and two-sided p-value.
* :func:`group_summary` - rows grouped by settings -> mean, interval, n per group.
* :func:`write_table` - such a summary as CSV and as a markdown table.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from anisotropy.io import write_text_atomic

__all__ = [
    "CONFIDENCE",
    "Interval",
    "Comparison",
    "t_interval",
    "welch",
    "paired",
    "group_summary",
    "matches",
    "select",
    "values",
    "markdown_table",
    "write_table",
    "write_csv_table",
    "write_markdown_table",
    "write_text_atomic",
]

#: confidence level of every interval and test (two-sided 5 % level)
CONFIDENCE = 0.95
#: a standard error below this (accuracies are in [0, 1]; 1e-12 is far below one
#: test image in a million) counts as zero spread: identical seeds
_ZERO_SE = 1e-12


@dataclass(frozen=True)
class Interval:
    """Mean of ``n`` values with its ``confidence`` t-interval ``[lo, hi]`` and std
    (``lo = hi = nan`` when ``n < 2``)."""

    mean: float
    lo: float
    hi: float
    n: int
    std: float
    confidence: float = CONFIDENCE

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2

    def report(self) -> str:
        return (
            f"{self.mean:.4f} [{self.lo:.4f}, {self.hi:.4f}] "
            f"({self.confidence:.0%} t-interval, n={self.n})"
        )


@dataclass(frozen=True)
class Comparison:
    """Comparison of two groups: ``diff = mean(a) - mean(b)``, its interval, t
    statistic, degrees of freedom, two-sided p-value, standard error ``se`` of
    ``diff``; ``kind`` is "Welch" (independent groups) or "paired" (per-seed
    differences, ``n_a = n_b = n``)."""

    diff: float
    lo: float
    hi: float
    t: float
    df: float
    p: float
    n_a: int
    n_b: int
    confidence: float = CONFIDENCE
    se: float = math.nan
    kind: str = "Welch"

    def significant(self, alpha: float | None = None) -> bool:
        """True when ``p < alpha`` (default ``1 - confidence``)."""
        alpha = 1 - self.confidence if alpha is None else alpha
        return bool(np.isfinite(self.p) and self.p < alpha)

    def report(self) -> str:
        n = f"n={self.n_a}" if self.kind == "paired" else f"n={self.n_a} vs {self.n_b}"
        return (
            f"{self.kind} diff {self.diff:+.4f} [{self.lo:+.4f}, {self.hi:+.4f}], "
            f"t={self.t:.2f}, df={self.df:.1f}, p={self.p:.3g} ({n})"
        )


def _clean(name: str, x: Iterable[float]) -> np.ndarray:
    a = np.asarray(list(x), dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of numbers")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf; it must be finite")
    return a


def _check_confidence(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    return float(confidence)


def t_interval(x: Iterable[float], *, confidence: float = CONFIDENCE) -> Interval:
    """Mean and Student-t interval ``mean +- t_{(1+c)/2, n-1} s / sqrt(n)`` of ``x``.

    Parameters
    ----------
    x : sequence of float, shape (n,)
        One value per seed; ``n >= 1`` (the interval needs ``n >= 2``).
    confidence : float in (0, 1)
    """
    a = _clean("x", x)
    c = _check_confidence(confidence)
    if a.size == 0:
        raise ValueError("x must hold at least one value")
    m = float(a.mean())
    if a.size < 2:
        return Interval(m, math.nan, math.nan, 1, math.nan, c)
    s = float(a.std(ddof=1))
    h = float(sps.t.ppf((1 + c) / 2, a.size - 1)) * s / math.sqrt(a.size)
    return Interval(m, m - h, m + h, int(a.size), s, c)


def welch(a: Iterable[float], b: Iterable[float], *, confidence: float = CONFIDENCE) -> Comparison:
    """Welch's unequal-variance t-test of ``mean(a) - mean(b)``.

    ``se^2 = s_a^2/n_a + s_b^2/n_b``, ``df = se^4 / sum_g (s_g^2/n_g)^2/(n_g-1)``
    (Welch-Satterthwaite), interval ``diff +- t_{(1+c)/2, df} se``, two-sided p.
    Both groups need ``n >= 2``.  With zero spread in both groups the
    difference is exact: ``p = 0`` if it is non-zero, ``1`` otherwise.
    """
    xa, xb = _clean("a", a), _clean("b", b)
    c = _check_confidence(confidence)
    if xa.size < 2 or xb.size < 2:
        raise ValueError(f"welch needs >= 2 values per group, got {xa.size} and {xb.size}")
    d = float(xa.mean() - xb.mean())
    va, vb = xa.var(ddof=1) / xa.size, xb.var(ddof=1) / xb.size
    se = math.sqrt(va + vb)
    if se < _ZERO_SE:
        p = 0.0 if abs(d) > _ZERO_SE else 1.0
        return Comparison(
            d,
            d,
            d,
            math.copysign(math.inf, d) if p == 0 else 0.0,
            math.inf,
            p,
            int(xa.size),
            int(xb.size),
            c,
            0.0,
        )
    df = (va + vb) ** 2 / (va**2 / (xa.size - 1) + vb**2 / (xb.size - 1))
    t = d / se
    h = float(sps.t.ppf((1 + c) / 2, df)) * se
    p = float(2 * sps.t.sf(abs(t), df))
    return Comparison(d, d - h, d + h, float(t), float(df), p, int(xa.size), int(xb.size), c, se)


def paired(a: Iterable[float], b: Iterable[float], *, confidence: float = CONFIDENCE) -> Comparison:
    """Paired t-test of ``mean(a - b)``: ``a[i]`` and ``b[i]`` ran the same seed.

    ``d_i = a_i - b_i``, ``se = s_d / sqrt(n)``, interval ``mean(d) +- t_{(1+c)/2, n-1}
    se``, two-sided p.  Needs ``n >= 2`` pairs.  With zero spread of the
    differences (the seed effect cancels exactly) the difference is exact:
    ``p = 0`` if it is non-zero, ``1`` otherwise.
    """
    xa, xb = _clean("a", a), _clean("b", b)
    c = _check_confidence(confidence)
    if xa.size != xb.size:
        raise ValueError(f"paired needs a and b of equal length, got {xa.size} and {xb.size}")
    if xa.size < 2:
        raise ValueError(f"paired needs >= 2 pairs, got {xa.size}")
    dd = xa - xb
    n = int(dd.size)
    d = float(dd.mean())
    se = float(dd.std(ddof=1)) / math.sqrt(n)
    if se < _ZERO_SE:
        p = 0.0 if abs(d) > _ZERO_SE else 1.0
        return Comparison(
            d,
            d,
            d,
            math.copysign(math.inf, d) if p == 0 else 0.0,
            math.inf,
            p,
            n,
            n,
            c,
            0.0,
            "paired",
        )
    t = d / se
    h = float(sps.t.ppf((1 + c) / 2, n - 1)) * se
    p = float(2 * sps.t.sf(abs(t), n - 1))
    return Comparison(d, d - h, d + h, float(t), float(n - 1), p, n, n, c, se, "paired")


def select(rows: Iterable[Mapping[str, Any]], **where: Any) -> list[Mapping[str, Any]]:
    """Rows whose columns equal every ``where`` value (column names with dots
    are passed as ``**{"smoothing.R": 0.01}``); only complete runs."""
    return [r for r in rows if r.get("status") == "complete" and matches(r, where)]


def matches(row: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    """True when ``row`` equals every value of ``where`` (numbers to 1e-9 relative)."""
    return all(_eq(row.get(k), v) for k, v in where.items())


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return a == b


def values(rows: Iterable[Mapping[str, Any]], column: str) -> np.ndarray:
    """Column as a float array (missing values raise)."""
    out = []
    for r in rows:
        v = r.get(column)
        if v is None:
            raise ValueError(f"run {r.get('run')} has no value for {column!r}")
        out.append(float(v))
    return np.asarray(out, dtype=np.float64)


def group_summary(
    rows: Iterable[Mapping[str, Any]],
    by: Sequence[str],
    value: str,
    *,
    confidence: float = CONFIDENCE,
) -> list[dict[str, Any]]:
    """Group complete runs by the columns ``by``; mean, interval and n of ``value`` per group.

    Returns
    -------
    list of dict
        ``{**group keys, "mean", "ci_lo", "ci_hi", "half_width", "std", "n"}`` in
        the order the groups first appear.
    """
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        if r.get("status") != "complete" or r.get(value) is None:
            continue
        groups.setdefault(tuple(r.get(k) for k in by), []).append(float(r[value]))
    out = []
    for key, vals in groups.items():
        iv = t_interval(vals, confidence=confidence)
        out.append(
            {
                **dict(zip(by, key, strict=True)),
                "mean": iv.mean,
                "ci_lo": iv.lo,
                "ci_hi": iv.hi,
                "half_width": iv.half_width,
                "std": iv.std,
                "n": iv.n,
            }
        )
    return out


def _fmt(v: Any, fmt: str | Callable[[Any], str] | None) -> str:
    if v is None:
        return ""
    if callable(fmt):
        return fmt(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return format(v, fmt or ".4g")
    return str(v)


def markdown_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    headers: Sequence[str] | None = None,
    formats: Mapping[str, str | Callable[[Any], str]] | None = None,
) -> str:
    """A GitHub markdown table of ``rows`` restricted to ``columns``."""
    headers = list(headers or columns)
    formats = dict(formats or {})
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c), formats.get(c)) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_csv_table(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], path: str | Path
) -> Path:
    """Write ``rows`` restricted to ``columns`` as CSV (floats at full precision)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(
            [
                "" if r.get(c) is None else (repr(r[c]) if isinstance(r[c], float) else r[c])
                for c in columns
            ]
        )
    return write_text_atomic(path, buf.getvalue())


def write_markdown_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    path: str | Path,
    *,
    title: str = "",
    headers: Sequence[str] | None = None,
    formats: Mapping[str, str | Callable[[Any], str]] | None = None,
) -> Path:
    """Write ``rows`` as a markdown table (with an optional title line)."""
    md = (f"{title}\n\n" if title else "") + markdown_table(
        rows, columns, headers=headers, formats=formats
    )
    return write_text_atomic(path, md)


def write_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    stem: str | Path,
    *,
    title: str = "",
    headers: Sequence[str] | None = None,
    formats: Mapping[str, str | Callable[[Any], str]] | None = None,
) -> tuple[Path, Path]:
    """Write ``rows`` as ``<stem>.csv`` (full precision) and ``<stem>.md`` (formatted)."""
    stem = Path(stem)
    return (
        write_csv_table(rows, columns, stem.with_suffix(".csv")),
        write_markdown_table(
            rows, columns, stem.with_suffix(".md"), title=title, headers=headers, formats=formats
        ),
    )
