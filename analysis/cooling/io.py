"""Inputs of the cooling analysis: the trainer's log, a CSV, or arrays.

All become a :class:`CoolingData`: a common time grid (epochs, or training steps for the
step log), per-layer arrays of
shape ``(L, n)`` (NaN where a value is absent) and the list of every bad or
missing value found (:class:`DataIssue`).  Nothing is dropped silently: the
analysis excludes flagged points from the fits of the affected channel (policy
``on_invalid="mask"``, the default) or refuses the data (``"raise"``), and both
the report and ``cooling.json`` list every flagged point.

Accepted inputs
---------------
* a run directory holding ``log.jsonl`` (and optionally ``summary.json``), or a
  ``log.jsonl`` path.  One JSON object per epoch::

      {"epoch": 3, "train_loss": ..., "layers": {"fc1": {"signal": ..., "signal_std": ...,
       "grad_mean_norm": ..., "grad_std_norm": ..., "weight_norm": ..., "numel": ...}}}

  ``signal`` is the epoch mean over minibatches of eq. 2, ``signal_std`` its standard
  deviation across minibatches; the gradient norms and ``numel`` (number of weights of
  the layer) are optional and feed the noise-floor analysis.  The number of minibatches
  per epoch is read from a record key ``n_batches`` / ``batches_per_epoch`` /
  ``steps_per_epoch``, from the increments of the records' optimiser ``step`` count, or
  from ``summary.json`` (same keys, or ``data.n_train`` with ``data.batch_size``, also
  under its ``config``).
* a CSV in long format, one row per (epoch, layer), header required::

      epoch,layer,signal,signal_std[,grad_mean_norm,grad_std_norm,weight_norm,numel]

  An empty cell is a missing value.
* the step log ``steps.jsonl`` of a run (time axis ``"step"``: ``load(RUN_DIR,
  time_axis="step")``, ``anisotropy cooling RUN_DIR --time step``), written by the trainer
  with ``logging.steps = true`` (schema in :mod:`anisotropy.training.steplog`).  One record
  per logged step ``t_j``, geometrically spaced from step 1, summarising the minibatches of
  the window ``(t_{j-1}, t_j]``; its ``batches`` (window size) is kept in
  :attr:`CoolingData.batches`.  The spreads ``signal_std`` and ``grad_std_norm`` of a
  one-minibatch window are ``null`` (not defined): they are reported as ``missing`` and left
  out of the fits of their channel, while the record's signal is used.  The grid is
  irregular by design, so no record is reported missing for a gap between logged steps; gaps
  are measured in training steps (:attr:`CoolingData.step` is then 1), so the AR(1) whitening
  of the fits links only records one step apart and, on the geometric part of the grid, the
  Newey-West sandwich (over record index) carries the autocorrelation.
* arrays: :func:`from_arrays`.

Every file input obeys two rules.  An epoch (a step on the step log) is an integer >= 1,
as the trainer counts them (``3.0`` reads as ``3``); ``0``, ``-3``, ``2.5``, booleans and
non-numbers are refused with a ValueError naming ``file:line``.  The JSON-lines logs are
read with the package's one reader, :func:`anisotropy.io.iter_jsonl`: a last line cut off
by a crash (no terminating newline, not valid JSON) is ignored, any other bad line is
refused with ``file:line``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from anisotropy.io import iter_jsonl, write_text_atomic

__all__ = [
    "CHANNELS",
    "OPTIONAL_CHANNELS",
    "CSV_COLUMNS",
    "DataIssue",
    "CoolingData",
    "from_arrays",
    "load",
    "load_log",
    "load_csv",
    "load_steps",
    "write_csv",
    "TimeAxis",
    "TIME_AXES",
    "STEP_LOG",
]

CHANNELS = ("signal", "signal_std")
OPTIONAL_CHANNELS = ("grad_mean_norm", "grad_std_norm", "weight_norm")
CSV_COLUMNS = ("epoch", "layer", *CHANNELS, *OPTIONAL_CHANNELS, "numel")
_BATCH_KEYS = ("n_batches", "batches_per_epoch", "steps_per_epoch")
_NUMEL_KEYS = ("numel", "n_weights", "n_params")
#: at most this many epochs are spelled out per issue in reports (the JSON keeps them all)
_SHOW_EPOCHS = 8

IssueKind = Literal["missing", "nan", "inf", "zero", "negative"]
#: the time axis of the analysis: epochs of ``log.jsonl`` or training steps of ``steps.jsonl``
TimeAxis = Literal["epoch", "step"]
TIME_AXES: tuple[str, ...] = get_args(TimeAxis)
#: file name of the trainer's step log in a run directory
STEP_LOG = "steps.jsonl"


@dataclass(frozen=True)
class DataIssue:
    """Values of one channel of one layer that cannot enter a log-scale fit."""

    kind: IssueKind
    channel: str
    layer: str
    epochs: tuple
    time_axis: TimeAxis = "epoch"  # the unit of ``epochs`` (steps on the step log)

    def describe(self) -> str:
        ep = ", ".join(f"{e:g}" for e in self.epochs[:_SHOW_EPOCHS])
        more = f", ... ({len(self.epochs)} in all)" if len(self.epochs) > _SHOW_EPOCHS else ""
        where = f"{self.kind} at {self.time_axis}(s) {ep}{more}"
        return f"{self.channel} of layer {self.layer}: {where}"

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "channel": self.channel,
            "layer": self.layer,
            "epochs": [float(e) for e in self.epochs],
        }


@dataclass
class CoolingData:
    """Per-layer time series of the training signal (eq. 2) and its noise.

    Attributes
    ----------
    epochs : ndarray, shape (n,)
        Increasing, unique times (the union over layers): epochs, or training steps when
        ``time_axis == "step"`` (:attr:`times` is an alias).
    layers : tuple of str, length L
    signal, signal_std : ndarray, shape (L, n)
        NaN where absent.
    grad_mean_norm, grad_std_norm, weight_norm : ndarray (L, n) or None
    numel : ndarray (L,) or None
        Number of weights per layer (needed for the noise floor of ``signal``).
    batches_per_epoch : int or None
        Minibatches per epoch (needed for the floor of ``grad_mean_norm``).
    absent : dict {channel: ndarray (L, n) of bool}, optional
        Entries absent from the source or null there (reported as ``missing``, not ``nan``).
    source : str
    time_axis : {"epoch", "step"}
        Unit of :attr:`epochs`.  On ``"step"`` the grid is irregular by design (the
        geometric step log): :meth:`missing_epochs` is empty.
    batches : ndarray (n,) of int, optional
        Minibatches summarised by each record (the step log's window sizes).
    """

    epochs: np.ndarray
    layers: tuple
    signal: np.ndarray
    signal_std: np.ndarray
    grad_mean_norm: np.ndarray | None = None
    grad_std_norm: np.ndarray | None = None
    weight_norm: np.ndarray | None = None
    numel: np.ndarray | None = None
    batches_per_epoch: int | None = None
    absent: dict = field(default_factory=dict)
    source: str = "arrays"
    time_axis: TimeAxis = "epoch"
    batches: np.ndarray | None = None
    step: float = field(init=False)

    def __post_init__(self) -> None:
        self.epochs = np.asarray(self.epochs, dtype=np.float64)
        if self.epochs.ndim != 1 or self.epochs.size < 2:
            raise ValueError(
                f"epochs must be a 1-D array of at least 2 epochs, got shape {self.epochs.shape}"
            )
        if not np.all(np.isfinite(self.epochs)):
            raise ValueError("epochs contains NaN or inf; it must be finite")
        d = np.diff(self.epochs)
        if np.any(d <= 0):
            bad = self.epochs[1:][d <= 0]
            raise ValueError(
                f"epochs must be strictly increasing (no duplicates); violated at "
                f"epoch(s) {bad[:_SHOW_EPOCHS].tolist()}"
            )
        self.layers = tuple(str(x) for x in self.layers)
        L, n = len(self.layers), self.epochs.size
        if L < 1 or len(set(self.layers)) != L:
            raise ValueError(f"layers must be at least one unique name, got {self.layers!r}")
        for name in (*CHANNELS, *OPTIONAL_CHANNELS):
            arr = getattr(self, name)
            if arr is None:
                continue
            arr = np.array(arr, dtype=np.float64, ndmin=2)
            if arr.shape != (L, n):
                raise ValueError(
                    f"{name} must have shape (layers, epochs) = ({L}, {n}) matching "
                    f"layers and epochs, got {arr.shape}"
                )
            setattr(self, name, arr)
        if self.numel is not None:
            self.numel = np.asarray(self.numel, dtype=np.float64).reshape(-1)
            if self.numel.shape != (L,) or np.any(~(self.numel >= 1)):
                raise ValueError(f"numel must hold {L} weight counts >= 1, got {self.numel!r}")
        if self.batches_per_epoch is not None and int(self.batches_per_epoch) < 1:
            raise ValueError(
                f"batches_per_epoch must be an integer >= 1, got {self.batches_per_epoch!r}"
            )
        if self.time_axis not in TIME_AXES:
            raise ValueError(f"time_axis must be one of {TIME_AXES}, got {self.time_axis!r}")
        if self.batches is not None:
            b = np.asarray(self.batches, dtype=np.float64).reshape(-1)
            if b.shape != (n,) or np.any(~(b >= 1)) or np.any(b != np.round(b)):
                raise ValueError(
                    f"batches must hold {n} integer window sizes >= 1 (one per time), "
                    f"got {self.batches!r}"
                )
            self.batches = b.astype(np.int64)
        absent = self.absent or {}
        self.absent = {
            c: np.asarray(absent[c], bool).reshape(L, n) if c in absent else np.zeros((L, n), bool)
            for c in (*CHANNELS, *OPTIONAL_CHANNELS)
        }
        # epoch spacing: the most common difference (logging every k epochs is allowed)
        vals, counts = np.unique(np.round(d, 9), return_counts=True)
        # on the step axis gaps are counted in training steps (the grid is geometric)
        self.step = 1.0 if self.time_axis == "step" else float(vals[np.argmax(counts)])

    @property
    def times(self) -> np.ndarray:
        """The time grid (alias of :attr:`epochs`; steps when ``time_axis == "step"``)."""
        return self.epochs

    @property
    def issues(self) -> list:
        """Every missing / NaN / inf / zero / negative value (recomputed from the arrays)."""
        return self._find_issues()

    # ------------------------------------------------------------------ issues
    def _find_issues(self) -> list:
        issues = []
        grid_missing = self.missing_epochs()
        for name in (*CHANNELS, *OPTIONAL_CHANNELS):
            arr = getattr(self, name)
            if arr is None:
                continue
            for i, layer in enumerate(self.layers):
                x, ab = arr[i], self.absent[name][i]
                masks: dict[IssueKind, np.ndarray] = {
                    "missing": ab,
                    "nan": np.isnan(x) & ~ab,
                    "inf": np.isinf(x),
                    "zero": x == 0,
                    "negative": x < 0,
                }
                for kind, m in masks.items():
                    ep = self.epochs[m].tolist()
                    if kind == "missing":
                        ep = sorted(ep + grid_missing)
                    if ep:
                        issues.append(DataIssue(kind, name, layer, tuple(ep), self.time_axis))
        return issues

    def missing_epochs(self) -> list:
        """Epochs absent from the regular grid of spacing :attr:`step` (absent for all layers).

        Empty on the step axis, whose geometric grid is irregular by design.
        """
        if self.time_axis == "step":
            return []
        gaps = np.rint(np.diff(self.epochs) / self.step).astype(int)
        out = []
        for e, k in zip(self.epochs[:-1], gaps, strict=True):
            out += [float(e + j * self.step) for j in range(1, k)]
        return out

    def valid(self, channel: str) -> np.ndarray:
        """Mask ``(L, n)`` of values of ``channel`` usable on a log scale (finite and > 0)."""
        arr = getattr(self, channel)
        if arr is None:
            raise ValueError(f"channel {channel!r} is not in the data")
        with np.errstate(invalid="ignore"):
            return np.isfinite(arr) & (arr > 0)

    def issues_report(self) -> str:
        if not self.issues:
            return "no missing, NaN, inf, zero or negative values"
        return "\n".join(i.describe() for i in self.issues)

    @property
    def n_layers(self) -> int:
        return len(self.layers)


def from_arrays(
    epochs,
    signal,
    signal_std,
    *,
    layers=None,
    grad_mean_norm=None,
    grad_std_norm=None,
    weight_norm=None,
    numel=None,
    batches_per_epoch=None,
) -> CoolingData:
    """Build :class:`CoolingData` from arrays of shape ``(L, n)`` (or ``(n,)`` for one layer).

    ``layers`` defaults to ``layer0, layer1, ...``.  NaN entries are reported as ``nan``.
    """
    sig = np.array(signal, dtype=np.float64, ndmin=2)
    if layers is None:
        layers = tuple(f"layer{i}" for i in range(sig.shape[0]))
    return CoolingData(
        np.asarray(epochs, float),
        tuple(layers),
        sig,
        signal_std,
        grad_mean_norm,
        grad_std_norm,
        weight_norm,
        numel,
        batches_per_epoch,
    )


# ---------------------------------------------------------------------- files
def _time(v, path, lineno: int, what: str = "epoch", *, cell: bool = False) -> float:
    """The epoch (or step) of a record: an integer >= 1, else ValueError naming ``path:line``.

    The trainer counts epochs and optimiser steps from 1; ``3`` and ``3.0`` are the same
    epoch, while ``2.5``, ``0``, ``-3``, ``true``, a JSON string or a missing value are not
    epochs: accepting them would put records between or before the trainer's epochs and
    let the analysis report a maximum at an epoch that holds no data.  ``cell``: ``v`` is
    the text of a CSV cell.
    """
    ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    if cell and isinstance(v, str) and v.strip():
        try:
            v, ok = float(v), True
        except ValueError:
            ok = False
    if not ok or not math.isfinite(v) or v != math.floor(v) or v < 1:
        raise ValueError(f"{path}:{lineno}: {what} must be an integer >= 1, got {v!r}")
    return float(v)


def _num(v) -> float | None:
    if v is None or v == "":
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number, got {v!r}") from None


def _assemble(
    rows: dict,
    layers: list,
    numel: dict,
    batches,
    source: str,
    *,
    time_axis: TimeAxis = "epoch",
    windows: dict | None = None,
) -> CoolingData:
    """rows: {(time, layer): {channel: value}} -> CoolingData (``windows``: {time: batches})."""
    if not rows:
        raise ValueError(f"{source}: no per-layer signal records found")
    epochs = np.array(sorted({e for e, _ in rows}), float)
    col = {e: j for j, e in enumerate(epochs)}
    L, n = len(layers), epochs.size
    present = {c: False for c in OPTIONAL_CHANNELS}
    arrs = {c: np.full((L, n), np.nan) for c in (*CHANNELS, *OPTIONAL_CHANNELS)}
    absent = {c: np.ones((L, n), bool) for c in arrs}
    for (e, layer), vals in rows.items():
        i, j = layers.index(layer), col[e]
        for c in arrs:
            if vals.get(c) is not None:  # None: key absent or JSON null / empty CSV cell
                arrs[c][i, j] = vals[c]
                absent[c][i, j] = False
                present[c] = True
    ne = None
    if numel and all(layer in numel for layer in layers):
        ne = np.array([numel[layer] for layer in layers], float)
    opt = {c: (arrs[c] if present[c] else None) for c in OPTIONAL_CHANNELS}
    return CoolingData(
        epochs,
        tuple(layers),
        arrs["signal"],
        arrs["signal_std"],
        **opt,
        numel=ne,
        batches_per_epoch=batches,
        absent=absent,
        source=source,
        time_axis=time_axis,
        batches=None if windows is None else np.array([windows[e] for e in epochs]),
    )


def _batches_from_summary(summary: dict):
    if isinstance(summary.get("config"), dict):  # the trainer nests its configuration
        summary = {**summary["config"], **{k: v for k, v in summary.items() if k != "config"}}
    for scope in (summary, summary.get("data", {}) or {}, summary.get("train", {}) or {}):
        for k in _BATCH_KEYS:
            if isinstance(scope, dict) and scope.get(k) is not None:
                return int(scope[k])
    data = summary.get("data", {}) or {}
    n_train = next((data[k] for k in ("n_train", "train_size", "n_samples") if data.get(k)), None)
    if n_train and data.get("batch_size"):
        return int(math.ceil(float(n_train) / float(data["batch_size"])))
    return None


def load_log(path, summary_path=None) -> CoolingData:
    """Read the trainer's ``log.jsonl`` (and ``summary.json`` when given or next to it)."""
    path = Path(path)
    rows, layers, numel, batches, steps = {}, [], {}, None, []
    for lineno, rec in iter_jsonl(path):  # the package's one JSONL reader (torn-line rule)
        if "layers" not in rec:
            continue  # other record types (e.g. a final evaluation) carry no layer signals
        if "epoch" not in rec:
            raise ValueError(f"{path}:{lineno}: record with 'layers' but no 'epoch'")
        e = _time(rec["epoch"], path, lineno)
        for k in _BATCH_KEYS:
            if rec.get(k) is not None:
                batches = int(rec[k])
        if isinstance(rec.get("step"), (int, float)):
            steps.append(float(rec["step"]))
        for layer, vals in rec["layers"].items():
            if layer not in layers:
                layers.append(layer)
            if (e, layer) in rows:
                raise ValueError(
                    f"{path}:{lineno}: duplicate record for epoch {e:g}, layer {layer}"
                )
            rows[(e, layer)] = {
                c: _num(vals[c]) for c in (*CHANNELS, *OPTIONAL_CHANNELS) if c in vals
            }
            for k in _NUMEL_KEYS:
                if vals.get(k) is not None:
                    numel[layer] = float(vals[k])
    if batches is None and len(steps) >= 2:
        # the trainer logs the optimiser step count: its increments are the minibatches per period
        d = np.diff(np.asarray(steps))
        if np.all(d > 0):
            batches = int(np.median(d))
    summary_path = Path(summary_path) if summary_path else path.with_name("summary.json")
    if summary_path.exists():
        with open(summary_path, encoding="utf-8") as fh:
            summary = json.load(fh)
        batches = batches or _batches_from_summary(summary)
        for layer, info in (summary.get("layers", {}) or {}).items():
            if isinstance(info, dict):
                for k in _NUMEL_KEYS:
                    if info.get(k) is not None:
                        numel.setdefault(layer, float(info[k]))
    return _assemble(rows, layers, numel, batches, str(path))


def load_steps(path, summary_path=None) -> CoolingData:
    """Read the trainer's step log ``steps.jsonl`` (time axis: training step).

    Each record needs ``step`` and ``layers``; ``batches`` (the window's minibatches,
    default 1) goes to :attr:`CoolingData.batches`.  Null spreads (one-minibatch windows)
    become missing values; the record's signal is kept.  ``batches_per_epoch`` comes from
    ``summary.json`` next to the log when it has it (None otherwise).
    """
    path = Path(path)
    rows, layers, numel, windows = {}, [], {}, {}
    for lineno, rec in iter_jsonl(path):
        if "layers" not in rec:
            continue
        t = _time(rec.get("step"), path, lineno, "a step-log record's step")
        b = rec.get("batches", 1)
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ValueError(f"{path}:{lineno}: batches must be an integer >= 1, got {b!r}")
        if t in windows:
            raise ValueError(f"{path}:{lineno}: duplicate record for step {t:g}")
        windows[t] = b
        for layer, vals in rec["layers"].items():
            if layer not in layers:
                layers.append(layer)
            rows[(t, layer)] = {
                c: _num(vals[c]) for c in (*CHANNELS, *OPTIONAL_CHANNELS) if c in vals
            }
            for k in _NUMEL_KEYS:
                if vals.get(k) is not None:
                    numel[layer] = float(vals[k])
    batches = None
    summary_path = Path(summary_path) if summary_path else path.with_name("summary.json")
    if summary_path.exists():
        with open(summary_path, encoding="utf-8") as fh:
            batches = _batches_from_summary(json.load(fh))
    return _assemble(rows, layers, numel, batches, str(path), time_axis="step", windows=windows)


def _no_step_log(where: Path) -> ValueError:
    return ValueError(
        f"{where} has no {STEP_LOG}: --time step reads the step log, which the trainer "
        f"writes only when the run's configuration sets logging.steps = true "
        f"(e.g. --set logging.steps=true); use --time epoch for log.jsonl"
    )


def load_csv(path) -> CoolingData:
    """Read a long-format CSV with the columns of :data:`CSV_COLUMNS` (header required)."""
    path = Path(path)
    rows, layers, numel = {}, [], {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        need = {"epoch", "layer", *CHANNELS}
        if reader.fieldnames is None or not need <= set(reader.fieldnames):
            raise ValueError(
                f"{path}: CSV header must contain {sorted(need)}; got {reader.fieldnames}"
            )
        for lineno, rec in enumerate(reader, 2):
            e = _time(rec["epoch"], path, lineno, cell=True)
            try:
                layer = rec["layer"]
                vals = {
                    c: _num(rec[c])
                    for c in (*CHANNELS, *OPTIONAL_CHANNELS)
                    if c in rec and rec[c] is not None
                }
                if rec.get("numel"):
                    numel[layer] = _num(rec["numel"])
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno}: {exc}") from None
            if layer not in layers:
                layers.append(layer)
            if (e, layer) in rows:
                raise ValueError(f"{path}:{lineno}: duplicate row for epoch {e:g}, layer {layer}")
            rows[(e, layer)] = vals
    return _assemble(rows, layers, numel, None, str(path))


def load(path, *, time_axis: TimeAxis = "epoch") -> CoolingData:
    """Load a run directory, a ``.jsonl`` log or a ``.csv`` file.

    With ``time_axis="epoch"`` a run directory means its ``log.jsonl``; with ``"step"`` its
    ``steps.jsonl`` (:func:`load_steps`), and a ``.jsonl`` path is read as a step log.
    """
    if time_axis not in TIME_AXES:
        raise ValueError(f"time_axis must be one of {TIME_AXES}, got {time_axis!r}")
    p = Path(path)
    if p.is_dir():
        if time_axis == "step":
            if not (p / STEP_LOG).exists():
                raise _no_step_log(p)
            return load_steps(p / STEP_LOG)
        if not (p / "log.jsonl").exists():
            raise ValueError(f"run directory {p} has no log.jsonl")
        return load_log(p / "log.jsonl")
    if not p.exists():
        if time_axis == "step" and p.name == STEP_LOG:
            raise _no_step_log(p.parent)
        raise ValueError(
            f"LOG must be a run directory, a .jsonl log or a .csv file; {p} does not exist"
        )
    if p.suffix == ".jsonl":
        return load_steps(p) if time_axis == "step" else load_log(p)
    if p.suffix == ".csv":
        if time_axis == "step":
            raise ValueError(
                f"a CSV log has an epoch column only; --time step needs a run directory or "
                f"its {STEP_LOG}, got {p}"
            )
        return load_csv(p)
    raise ValueError(f"LOG must be a run directory, a .jsonl log or a .csv file; got {p}")


def write_csv(data: CoolingData, path) -> None:
    """Write ``data`` in the long CSV format of :func:`load_csv` (atomically)."""
    cols = ["epoch", "layer", *CHANNELS] + [
        c for c in OPTIONAL_CHANNELS if getattr(data, c) is not None
    ]
    if data.numel is not None:
        cols.append("numel")
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(cols)
    for j, e in enumerate(data.epochs):
        for i, layer in enumerate(data.layers):
            if all(data.absent[c][i, j] for c in CHANNELS):
                continue
            row = [f"{e:g}", layer]
            for c in cols[2:]:
                if c == "numel" and data.numel is not None:  # a column only when present
                    row.append(repr(float(data.numel[i])))
                else:  # absent -> empty cell (read back as missing); NaN stays 'nan'
                    row.append("" if data.absent[c][i, j] else repr(float(getattr(data, c)[i, j])))
            w.writerow(row)
    write_text_atomic(path, buf.getvalue())
