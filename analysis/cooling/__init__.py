"""Cooling-law analysis of logged layer signals (eq 2 and section 2.1 of
*Partial local entropy and anisotropy in deep weight spaces*).

Typical use::

    from analysis.cooling import load, analyse, CoolingConfig, plot_cooling
    data = load("runs/fig1")                 # run directory, log.jsonl or CSV
    result = analyse(data, CoolingConfig())
    print(result.report()); result.save("runs/fig1"); plot_cooling(result, data, path="fig.png")

or ``anisotropy cooling runs/fig1``.  See docs/cooling.md for the methods and the schema of
``cooling.json``.
"""

from .cli import main
from .factorisation import Factorisation, factorisation_test
from .fit import LawFit, Panel, build_panel, fit_law
from .floor import FloorAnalysis, floor_series, noise_floor
from .io import (
    CSV_COLUMNS,
    CoolingData,
    DataIssue,
    from_arrays,
    load,
    load_csv,
    load_log,
    write_csv,
)
from .laws import LAW_NAMES, Law, Nesting, evaluate, get_law, log_f
from .pipeline import CoolingConfig, analyse, window_stability
from .plot import plot_cooling
from .regimes import Onset, late_onset, signal_maximum, snr_crossing
from .report import CoolingResult, load_result
from .selection import Comparison, compare, lrt_nested, vuong
from .synthetic import SyntheticSpec, generate, write_run
from .timeseries import TrendTest, trend_test

__all__ = [
    "main",
    "analyse",
    "CoolingConfig",
    "CoolingResult",
    "load_result",
    "plot_cooling",
    "CoolingData",
    "DataIssue",
    "CSV_COLUMNS",
    "load",
    "load_log",
    "load_csv",
    "from_arrays",
    "write_csv",
    "LAW_NAMES",
    "Law",
    "Nesting",
    "get_law",
    "log_f",
    "evaluate",
    "Panel",
    "LawFit",
    "build_panel",
    "fit_law",
    "Comparison",
    "compare",
    "lrt_nested",
    "vuong",
    "Onset",
    "signal_maximum",
    "snr_crossing",
    "late_onset",
    "Factorisation",
    "factorisation_test",
    "FloorAnalysis",
    "noise_floor",
    "floor_series",
    "TrendTest",
    "trend_test",
    "window_stability",
    "SyntheticSpec",
    "generate",
    "write_run",
]
