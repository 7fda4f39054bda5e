"""Shared pieces of the figure scripts: where results are, how curves with
confidence intervals are drawn, how figures and tables are saved.

Every figure script reads ``<runs>/<scale>/<experiment>/results.csv`` and the
run directories it points to (``log.jsonl``); none of them trains.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from anisotropy.io import save_figure_atomic
from experiments.results import read_log, read_results
from experiments.sweep import sweep_paths

from .sequential import SequentialDesign
from .stats import (
    group_summary,
    select,
    t_interval,
    write_csv_table,
    write_markdown_table,
)

__all__ = [
    "FigureContext",
    "FigureOutput",
    "NoDataError",
    "complete_row",
    "has_data",
    "save_figure",
    "subset_color",
    "subset_key",
    "subsets_of",
    "plot_vs_R",
    "baseline_band",
    "vs_R_table",
    "epoch_curves",
    "plot_curve",
    "curves_table",
    "pct",
    "write_figure_table",
    "DPI",
]

#: resolution of the PNG files (the PDF is vector); 110 dpi keeps a 3-panel
#: figure below ~200 kB while staying readable
DPI = 110
#: statuses of runs that ended without a result: failed (error.txt), or stopped by the
#: trainer (non-finite loss, ...); any other status (pending, busy) may still complete
_FAILED_STATUSES = ("failed", "stopped", "diverged")
_RGB = {
    "fc1": np.array([0.85, 0.1, 0.1]),
    "fc2": np.array([0.1, 0.6, 0.1]),
    "fc3": np.array([0.1, 0.2, 0.85]),
}


class NoDataError(RuntimeError):
    """A figure has nothing to draw (no results, no runs, every run failed, empty axes).

    Raised before anything is written, so that an existing figure or table is never
    replaced by an empty one; ``anisotropy figures`` reports it and exits non-zero.
    """


def complete_row(ctx: FigureContext, experiment: str, row: Mapping[str, Any]) -> bool:
    """Default rule of what a figure can draw: a run whose status is ``complete``."""
    return row.get("status") == "complete"


#: ``usable(ctx, experiment, row)``: may the figure draw this results row?
UsableRow = Callable[["FigureContext", str, Mapping[str, Any]], bool]


@dataclass
class FigureOutput:
    """Files a figure script wrote and a caption saying what they show."""

    figure: str
    images: list = field(default_factory=list)
    tables: list = field(default_factory=list)
    caption: str = ""

    def report(self) -> str:
        files = ", ".join(str(p) for p in [*self.images, *self.tables])
        return f"figure {self.figure}: {files}"


@dataclass
class FigureContext:
    """Where a figure's inputs are and where its outputs go.

    Attributes
    ----------
    scale : {"quick", "paper"}
    runs : Path
        The sweep output root (``anisotropy sweep --out``).
    out : Path
        Directory for images, tables and claims.
    design : SequentialDesign, optional
        The group-sequential design the claims are read at (``anisotropy figures
        --until-decided``); ``None``: one fixed-sample test on every seed.
    """

    scale: str
    runs: Path
    out: Path
    design: SequentialDesign | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    def results_dir(self, experiment: str) -> Path:
        return sweep_paths(self.runs, self.scale, experiment)[1]

    def has(self, experiment: str) -> bool:
        return (self.results_dir(experiment) / "results.csv").is_file()

    def rows(self, experiment: str) -> list[dict[str, Any]]:
        """Rows of the experiment's ``results.csv`` (raises if the sweep never ran)."""
        if experiment not in self._cache:
            p = self.results_dir(experiment) / "results.csv"
            if not p.is_file():
                raise FileNotFoundError(
                    f"{p} is missing: run `anisotropy sweep {experiment} "
                    f"--scale {self.scale} --out {self.runs}` first"
                )
            self._cache[experiment] = read_results(p)
        return self._cache[experiment]

    def data_problem(self, experiment: str, usable: UsableRow | None = None) -> str | None:
        """Why ``experiment`` has nothing a figure could draw, or ``None`` if it has data.

        One of: its ``results.csv`` is missing; it lists no runs; no run is usable
        (``usable``, default :func:`complete_row`): every run failed, or none finished.
        """
        p = self.results_dir(experiment) / "results.csv"
        if not p.is_file():
            return (
                f"{experiment}: results.csv missing ({p}); run `anisotropy sweep {experiment} "
                f"--scale {self.scale} --out {self.runs}` first"
            )
        rows = self.rows(experiment)
        if not rows:
            return f"{experiment}: no runs ({p} lists none)"
        usable = usable or complete_row
        if any(usable(self, experiment, r) for r in rows):
            return None
        counts: dict[str, int] = {}
        for r in rows:
            st = str(r.get("status") or "missing")
            counts[st] = counts.get(st, 0) + 1
        listed = ", ".join(f"{n} {st}" for st, n in sorted(counts.items()))
        ended = all(st.startswith(_FAILED_STATUSES) for st in counts)
        what = "every run failed" if ended else "no complete run"
        return (
            f"{experiment}: {what} ({len(rows)} runs in {p}: {listed}; "
            "see error.txt or summary.json in each run directory)"
        )

    def note(self, experiment: str) -> str:
        p = self.results_dir(experiment) / "note.txt"
        return p.read_text(encoding="utf-8").strip() if p.is_file() else ""

    def run_path(self, experiment: str, row: Mapping[str, Any]) -> Path:
        return self.results_dir(experiment) / str(row["run_dir"])

    def log(self, experiment: str, row: Mapping[str, Any]) -> list[dict[str, Any]]:
        return read_log(self.run_path(experiment, row))


def has_data(fig: plt.Figure) -> bool:
    """True if an axes of ``fig`` holds a line with a finite point, a filled band or error
    bars with a vertex, or an image (titles, legends, spans and text do not count)."""
    for ax in fig.axes:
        if ax.images:
            return True
        for line in ax.lines:
            xy = np.asarray(line.get_xydata(), dtype=float)
            if xy.size and np.isfinite(xy).all(axis=-1).any():
                return True
        for coll in ax.collections:
            if any(np.asarray(path.vertices).size for path in coll.get_paths()):
                return True
    return False


def save_figure(fig: plt.Figure, out: Path, stem: str) -> list[Path]:
    """Save ``fig`` as ``<out>/<stem>.png`` and ``.pdf`` (each atomically) and close it.

    Raises
    ------
    NoDataError
        If no axes of ``fig`` holds data (:func:`has_data`); nothing is written, so
        existing files of that name are left as they are.
    """
    if not has_data(fig):
        plt.close(fig)
        raise NoDataError(f"{stem}: nothing to draw (every axes is empty)")
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    save_figure_atomic(fig, paths[0], dpi=DPI, bbox_inches="tight")
    save_figure_atomic(fig, paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


def pct(v: float) -> str:
    """Accuracy in percent with two decimals (``-`` for NaN)."""
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.2f}"


def subset_key(label: str) -> tuple:
    """Sort key of a layer subset label (``"fc1+fc3"``): size, then names."""
    parts = [] if label == "none" else str(label).split("+")
    return (len(parts), parts)


def subsets_of(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Smoothed layer subsets present in ``rows`` (``"none"`` excluded), sorted."""
    return sorted(
        {
            str(r["smoothing.layers"])
            for r in rows
            if r.get("smoothing.layers") not in (None, "none")
        },
        key=subset_key,
    )


def subset_color(label: str) -> tuple:
    """Colour of a layer subset: the paper's RGB nomenclature (fc1 red, fc2 green,
    fc3 blue, unions mixed), grey for anything else, black for none."""
    if label == "none":
        return (0.0, 0.0, 0.0)
    parts = str(label).split("+")
    if all(p in _RGB for p in parts):
        c = sum(_RGB[p] for p in parts) / len(parts)
        return tuple(float(x) for x in np.clip(c * (1.0 if len(parts) == 1 else 1.25), 0, 0.9))
    return (0.5, 0.5, 0.5)


def baseline_band(
    ax: plt.Axes, rows: Sequence[Mapping[str, Any]], value: str, *, label: str = "no smoothing"
) -> None:
    """Mean (dashed line) and 95 % interval (band) of the unsmoothed runs."""
    vals = [float(r[value]) for r in rows if r.get(value) is not None]
    if not vals:
        return
    iv = t_interval(vals)
    ax.axhline(iv.mean, color="k", ls="--", lw=1, label=f"{label} (n={iv.n})")
    if iv.n >= 2:
        ax.axhspan(iv.lo, iv.hi, color="k", alpha=0.1, lw=0)


def plot_vs_R(
    ax: plt.Axes,
    rows: Sequence[Mapping[str, Any]],
    value: str,
    *,
    group: str = "smoothing.layers",
    label: Callable[[Any], str] = str,
    color: Callable[[Any], Any] = subset_color,
    style: Callable[[Any], Mapping[str, Any]] | None = None,
    offset: float = 0.0,
) -> None:
    """Mean +- 95 % t-interval of ``value`` vs R (log axis), one line per ``group`` value.

    ``offset`` shifts the points multiplicatively (``R * 10**offset``) so that
    error bars of several lines do not hide each other.
    """
    smoothed = [r for r in rows if r.get("smoothing.layers") not in (None, "none")]
    keys = sorted(
        {r[group] for r in smoothed},
        key=lambda k: subset_key(k) if isinstance(k, str) else (0, [k]),
    )
    for i, key in enumerate(keys):
        summ = group_summary([r for r in smoothed if r[group] == key], ["smoothing.R"], value)
        summ.sort(key=lambda s: s["smoothing.R"])
        R = np.array([s["smoothing.R"] for s in summ]) * 10 ** (offset * (i - (len(keys) - 1) / 2))
        m = np.array([s["mean"] for s in summ])
        err = np.array([[s["mean"] - s["ci_lo"], s["ci_hi"] - s["mean"]] for s in summ]).T
        n = min((s["n"] for s in summ), default=0)
        kw = dict(style(key)) if style else {}
        ax.errorbar(
            R,
            m,
            yerr=np.nan_to_num(err),
            color=color(key),
            marker="o",
            ms=4,
            capsize=3,
            lw=1.5,
            label=f"{label(key)} (n={n})",
            **kw,
        )
    ax.set_xscale("log")
    ax.set_xlabel("smoothing radius R")
    ax.grid(alpha=0.3, which="both")


def vs_R_table(
    rows: Sequence[Mapping[str, Any]],
    *,
    metrics: Sequence[str],
    by: Sequence[str] = ("smoothing.layers", "smoothing.R"),
) -> list[dict[str, Any]]:
    """One row per (subset, R) (baseline first, R empty) with mean, interval, n per metric."""
    out = _summary_rows(rows, by, metrics, lambda metric, s: _ci_text(s))
    for row in out:
        if row.get("smoothing.layers") == "none" and "smoothing.R" in row:
            row["smoothing.R"] = None
    return sorted(
        out,
        key=lambda r: (
            r.get("smoothing.layers") != "none",
            subset_key(str(r.get("smoothing.layers"))),
            *[r.get(k) or 0 for k in by[1:]],
        ),
    )


def _summary_rows(
    rows: Sequence[Mapping[str, Any]],
    by: Sequence[str],
    metrics: Sequence[str],
    fmt: Callable[[str, Mapping[str, Any]], str],
) -> list[dict[str, Any]]:
    """One row per group of ``by`` (in first-seen order): per metric its mean, interval,
    ``n`` and ``fmt(metric, summary)`` (columns ``<metric>_mean/_lo/_hi/_fmt``, ``n``)."""
    out: dict[tuple, dict[str, Any]] = {}
    for metric in metrics:
        for s in group_summary(rows, list(by), metric):
            key = tuple(s[k] for k in by)
            row = out.setdefault(key, {k: s[k] for k in by})
            row[f"{metric}_mean"] = s["mean"]
            row[f"{metric}_lo"] = s["ci_lo"]
            row[f"{metric}_hi"] = s["ci_hi"]
            row["n"] = s["n"]
            row[f"{metric}_fmt"] = fmt(metric, s)
    return list(out.values())


def _ci_text(s: Mapping[str, Any]) -> str:
    if s["n"] < 2:
        return f"{pct(s['mean'])}"
    return f"{pct(s['mean'])} ± {100 * s['half_width']:.2f}"


def epoch_curves(
    ctx: FigureContext, experiment: str, rows: Sequence[Mapping[str, Any]], key: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Per-epoch mean and 95 % t-interval across the runs ``rows`` of log field ``key``.

    Returns ``(epochs, mean, lo, hi, n)``; epochs that not every run reached are
    dropped (a run stopped early shortens the curve rather than biasing it).
    """
    series = []
    for r in rows:
        log = ctx.log(experiment, r)
        series.append(
            {int(rec["epoch"]): float(rec[key]) for rec in log if rec.get(key) is not None}
        )
    if not series:
        return (np.array([]),) * 4 + (0,)
    common = sorted(set.intersection(*(set(s) for s in series)))
    ep = np.array(common, dtype=float)
    mean, lo, hi = (np.empty(len(common)) for _ in range(3))
    for i, e in enumerate(common):
        iv = t_interval([s[e] for s in series])
        mean[i], lo[i], hi[i] = iv.mean, iv.lo, iv.hi
    return ep, mean, lo, hi, len(series)


def plot_curve(
    ax: plt.Axes,
    ep: np.ndarray,
    mean: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    *,
    color: Any,
    label: str | None,
    lw: float = 1.5,
    alpha_band: float = 0.2,
    **kw: Any,
) -> None:
    """A mean curve with its 95 % band (no band where the interval is undefined)."""
    ax.plot(ep, mean, color=color, lw=lw, label=label, **kw)
    ok = np.isfinite(lo) & np.isfinite(hi)
    if ok.any():
        ax.fill_between(ep[ok], lo[ok], hi[ok], color=color, alpha=alpha_band, lw=0)


def curves_table(
    rows: Sequence[Mapping[str, Any]],
    by: Sequence[str],
    *,
    metrics: Sequence[str] = ("best_test_acc", "final_test_acc", "final_train_loss"),
) -> list[dict[str, Any]]:
    """One row per variant (``by`` columns): mean, interval, n of each metric."""

    def fmt(metric: str, s: Mapping[str, Any]) -> str:
        if metric.endswith("acc"):
            return _ci_text(s)
        return f"{s['mean']:.4f}" + (f" ± {s['half_width']:.4f}" if s["n"] >= 2 else "")

    return _summary_rows(rows, by, metrics, fmt)


def write_figure_table(
    rows: Sequence[Mapping[str, Any]],
    out: Path,
    stem: str,
    *,
    keys: Sequence[str],
    metrics: Sequence[str],
    title: str,
    headers: Mapping[str, str] | None = None,
) -> list[Path]:
    """CSV with full numbers (mean, lo, hi per metric) and a markdown table
    ``mean ± half-width`` (accuracies in percent).

    Raises
    ------
    NoDataError
        If ``rows`` is empty (nothing is written: an existing table is kept).
    """
    if not rows:
        raise NoDataError(f"{stem}: no rows to table")
    headers = dict(headers or {})
    cols = [*keys, *[f"{m}_{s}" for m in metrics for s in ("mean", "lo", "hi")], "n"]
    md_cols = [*keys, *[f"{m}_fmt" for m in metrics], "n"]
    md_headers = (
        [headers.get(c, c) for c in keys]
        + [headers.get(m, m) + (" (%)" if m.endswith("acc") else "") for m in metrics]
        + ["n"]
    )
    return [
        write_csv_table(rows, cols, out / f"{stem}.csv"),
        write_markdown_table(rows, md_cols, out / f"{stem}.md", title=title, headers=md_headers),
    ]


def footer(fig: plt.Figure, ctx: FigureContext, experiments: Sequence[str]) -> str:
    """Write the scale and the experiments' notes (stand-in data, ...) under the figure;
    returns the text."""
    notes = []
    for e in experiments:
        n = ctx.note(e)
        if n and n not in notes:
            notes.append(n)
    text = f"{ctx.scale} scale. " + " | ".join(notes)
    fig.text(0.01, -0.01, "\n".join(_wrap(text, 150)), fontsize=7, va="top", ha="left", color="0.3")
    return text


def finish_figure(
    fig: plt.Figure, ctx: FigureContext, experiments: Sequence[str], stem: str, *, title: str
) -> tuple[list[Path], str]:
    """Title ``fig``, write its :func:`footer`, lay it out and save it as ``stem``
    (:func:`save_figure`, which closes it): the last steps of every figure.

    Returns
    -------
    (images, caption) : the saved files and the footer's text.
    """
    fig.suptitle(title, fontsize=10)
    caption = footer(fig, ctx, experiments)
    fig.tight_layout()
    return save_figure(fig, ctx.out, stem), caption


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width)


@dataclass
class Variant:
    """One line of an epoch-curve figure: which runs, label, colour."""

    label: str
    color: Any
    where: Mapping[str, Any]
    ls: str = "-"


def draw_curves(
    ctx: FigureContext, experiment: str, variants: Sequence[Variant], *, figure: str, title: str
) -> FigureOutput:
    """Training loss, test accuracy (train accuracy paler) and a zoom on the last
    third of the test accuracy vs epoch: mean and 95 % band across seeds per
    variant (figures 6-8); plus the table of best / final accuracy per variant."""
    rows = ctx.rows(experiment)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    table = []
    zoom_bars: list[int] = []
    zoom_vals: list[float] = []
    for v in variants:
        vr = select(rows, **v.where)
        if not vr:
            continue
        ep, m, lo, hi, n = epoch_curves(ctx, experiment, vr, "train_loss")
        plot_curve(axes[0], ep, m, lo, hi, color=v.color, label=f"{v.label} (n={n})", ls=v.ls)
        ep, m, lo, hi, n = epoch_curves(ctx, experiment, vr, "test_acc")
        plot_curve(axes[1], ep, m, lo, hi, color=v.color, label=f"{v.label} (n={n})", ls=v.ls)
        # zoom: mean curves, and the 95 % interval of the last epoch as an error bar
        # (bands of n = 3 seeds are too wide to read when zoomed)
        axes[2].plot(ep, m, color=v.color, lw=1.5, ls=v.ls)
        if len(ep):
            zoom_vals.extend(m[ep >= ep[-1] - (ep[-1] - ep[0]) / 3].tolist())
        if len(ep) and np.isfinite(lo[-1]):
            zoom_vals.extend([lo[-1], hi[-1]])
            k = len(zoom_bars)
            zoom_bars.append(k)
            axes[2].errorbar(
                [ep[-1] + 0.15 * k * max((ep[-1] - ep[0]) / 30, 0.1)],
                [m[-1]],
                yerr=[[m[-1] - lo[-1]], [hi[-1] - m[-1]]],
                color=v.color,
                capsize=3,
                marker="o",
                ms=3,
            )
        ep2, m2, lo2, hi2, _ = epoch_curves(ctx, experiment, vr, "train_acc")
        plot_curve(
            axes[1], ep2, m2, lo2, hi2, color=v.color, label=None, lw=1, alpha_band=0.05, ls=":"
        )
        if len(ep):
            start = ep[-1] - (ep[-1] - ep[0]) / 3
            axes[2].set_xlim(
                start, ep[-1] + 0.15 * (len(variants) + 1) * max((ep[-1] - ep[0]) / 30, 0.1)
            )
        for r in curves_table(
            vr,
            ["smoothing.layers"],
            metrics=("best_test_acc", "final_test_acc", "final_train_loss"),
        ):
            r["variant"] = v.label
            table.append(r)
    if not table:  # no variant has a complete run: write nothing (checked before writing)
        plt.close(fig)
        raise NoDataError(f"figure {figure}: no complete run of any variant in {experiment}")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("training loss (cross-entropy at W)")
    axes[1].set_ylabel("accuracy (test solid, train dotted)")
    axes[2].set_ylabel("test accuracy (last third; bar: 95% CI at the end)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    if zoom_vals:
        lo_y, hi_y = min(zoom_vals), max(zoom_vals)
        pad = 0.05 * (hi_y - lo_y) + 1e-4
        axes[2].set_ylim(lo_y - pad, hi_y + pad)
    axes[0].legend(fontsize=8)
    heading = f"Figure {figure}: {title} (mean and 95% t-band across seeds)"
    images, caption = finish_figure(fig, ctx, [experiment], f"fig{figure}", title=heading)
    tables = write_figure_table(
        table,
        ctx.out,
        f"fig{figure}_table",
        keys=["variant"],
        metrics=["best_test_acc", "final_test_acc", "final_train_loss"],
        title=f"Figure {figure} ({ctx.scale} scale): mean ± 95% t-interval half-width across seeds",
        headers={
            "best_test_acc": "best test acc",
            "final_test_acc": "final test acc",
            "final_train_loss": "final train loss",
        },
    )
    return FigureOutput(figure, images, tables, caption)


__all__ += ["footer", "finish_figure", "Variant", "draw_curves"]
