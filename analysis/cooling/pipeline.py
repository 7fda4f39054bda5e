"""The whole cooling analysis of one run: configuration and :func:`analyse`.

Steps (section 2.1 of the paper):

1. data checks (policy ``on_invalid``): every missing / NaN / inf / zero / negative value is
   listed; ``"mask"`` leaves those points out of the fits of their channel, ``"raise"``
   refuses the data;
2. regimes: per-layer signal maximum, signal-to-noise crossing, onset of the late
   common-decay regime with its bootstrap interval (:mod:`analysis.cooling.regimes`);
3. on the late window ``[onset, end]`` (or ``late_start``/``late_end``): joint fits of
   every law with shared shape and per-layer amplitudes, for the signal and for its
   noise (``signal_std``), model comparison, per-layer fits of every law, and the
   stability of the selected law as the window start moves (a law is a registered name
   or a :class:`~analysis.cooling.laws.Law` object);
4. the factorisation test and the noise-floor analysis on the same window.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from anisotropy.validation import check_choice, check_int

from .factorisation import factorisation_test
from .fit import NoiseModel, Uncertainty, Weights, build_panel, fit_law
from .floor import noise_floor
from .io import CHANNELS, CoolingData
from .laws import LAW_NAMES, LawLike, LawName, get_law
from .regimes import late_onset, signal_maximum, snr_crossing
from .report import CoolingResult
from .selection import Criterion, compare

__all__ = ["CoolingConfig", "analyse", "window_stability", "STABLE_SHIFT"]

#: the selected law is called stable when the fits on later window starts agree with the base
#: fit within this many of their own standard errors (a 2-sigma band; the later fits share
#: most of their data with the base fit, so larger shifts are not noise).
STABLE_SHIFT = 2.0

if TYPE_CHECKING:
    _ConfigLaw = LawLike
else:
    # the command line derives its choices from the run-time annotation of CoolingConfig.laws
    # (registered names); Law objects are accepted as well when the config is built in code
    _ConfigLaw = LawName


@dataclass
class CoolingConfig:
    """Options of the cooling analysis (also the options of ``anisotropy cooling``)."""

    laws: list[_ConfigLaw] = field(
        default_factory=lambda: list(LAW_NAMES), metadata={"help": "decay laws to fit"}
    )
    criterion: Criterion = field(default="bic", metadata={"help": "model-selection criterion"})
    late_start: float | None = field(
        default=None, metadata={"help": "start of the late window (default: the estimated onset)"}
    )
    late_end: float | None = field(
        default=None, metadata={"help": "end of the late window (default: last epoch)"}
    )
    uncertainty: Uncertainty = field(
        default="sandwich",
        metadata={
            "help": "parameter uncertainty: prewhitened HAC sandwich, "
            "block bootstrap (percentile-t), or plain Jacobian"
        },
    )
    noise_model: NoiseModel = field(
        default="ar1", metadata={"help": "residual model of the log values"}
    )
    weights: Weights = field(
        default="logged",
        metadata={"help": "weights of the signal fit: logged signal_std/signal, or uniform"},
    )
    n_boot: int = field(default=200, metadata={"help": "bootstrap resamples (law fits and onset)"})
    level: float = field(default=0.95, metadata={"help": "confidence level"})
    seed: int = field(default=0, metadata={"help": "seed of the bootstraps"})
    on_invalid: Literal["mask", "raise"] = field(
        default="mask",
        metadata={
            "help": "bad values (missing/NaN/inf/zero/negative): "
            "leave out of the fits and report, or refuse"
        },
    )
    smooth: int = field(
        default=5, metadata={"help": "running-mean window (epochs) for maxima and SNR"}
    )
    snr_source: Literal["auto", "signal", "gradient"] = field(
        default="auto",
        metadata={
            "help": "SNR = grad_mean_norm/grad_std_norm (gradient), signal/signal_std (signal), "
            "or gradient when logged (auto)"
        },
    )
    min_late: int = field(
        default=20, metadata={"help": "minimum number of epochs in the late window"}
    )
    onset_gls: bool = field(default=False, metadata={"help": "fit the onset hinge by AR(1) GLS"})
    n_stability: int = field(default=6, metadata={"help": "window starts of the stability check"})
    per_layer: bool = field(
        default=True, metadata={"help": "also fit every law to each layer alone"}
    )
    reference: str | None = field(
        default=None,
        metadata={"help": "reference layer of the factorisation test (default: the first)"},
    )

    def __post_init__(self) -> None:
        self.laws = list(self.laws)
        if not self.laws:
            raise ValueError(f"laws must name at least one law; valid: {', '.join(LAW_NAMES)}")
        names = [get_law(law).name for law in self.laws]
        if len(set(names)) < len(names):
            raise ValueError(f"laws must have distinct names, got {names}")
        check_choice("criterion", self.criterion, ("bic", "aic"))
        check_choice("uncertainty", self.uncertainty, ("sandwich", "bootstrap", "jacobian"))
        check_choice("noise_model", self.noise_model, ("ar1", "white"))
        check_choice("weights", self.weights, ("logged", "uniform"))
        check_choice("on_invalid", self.on_invalid, ("mask", "raise"))
        check_choice("snr_source", self.snr_source, ("auto", "signal", "gradient"))
        check_int("n_boot", self.n_boot, minimum=10)
        check_int("smooth", self.smooth, minimum=1)
        check_int("min_late", self.min_late, minimum=8)
        check_int("n_stability", self.n_stability, minimum=0)
        check_int("seed", self.seed, minimum=0)
        if not 0 < float(self.level) < 1:
            raise ValueError(f"level must lie in (0, 1), got {self.level!r}")


def _fit_channel(data, channel, window, cfg, seeds):
    panel = build_panel(
        data, channel, *window, weights=cfg.weights if channel == "signal" else "uniform"
    )
    fits = {
        get_law(law).name: fit_law(
            panel,
            law,
            noise_model=cfg.noise_model,
            uncertainty=cfg.uncertainty,
            level=cfg.level,
            n_boot=cfg.n_boot,
            rng=seeds.pop(),
        )
        for law in cfg.laws
    }
    return panel, fits, compare(fits, criterion=cfg.criterion)


def window_stability(
    data: CoolingData,
    law: LawLike,
    window: tuple,
    *,
    n_starts: int = 6,
    weights: Weights = "logged",
    noise_model: NoiseModel = "ar1",
    level: float = 0.95,
    min_late: int = 20,
) -> dict:
    """Refit ``law`` (sandwich errors) on ``[s, end]`` for starts ``s`` from the window start to
    its midpoint; report each fit and the largest shift from the first in its own standard errors.
    """
    lw = get_law(law)
    t_lo, t_hi = window
    ep = data.epochs[(data.epochs >= t_lo) & (data.epochs <= t_hi)]
    last_ok = ep[max(0, ep.size - min_late)]
    mid = min(t_lo + 0.5 * (t_hi - t_lo), last_ok)
    starts = np.unique([ep[np.argmin(np.abs(ep - s))] for s in np.linspace(t_lo, mid, n_starts)])
    rows: list[dict[str, Any]] = []
    base = None
    for s in starts:
        try:
            f = fit_law(
                build_panel(data, "signal", float(s), t_hi, weights=weights),
                lw,
                noise_model=noise_model,
                uncertainty="sandwich",
                level=level,
            )
        except ValueError as exc:
            rows.append({"start": float(s), "error": str(exc)})
            continue
        base = base or f
        shift = {
            k: float(abs(f.params[k] - base.params[k]) / f.stderr[k]) if f.stderr[k] > 0 else 0.0
            for k in f.stderr
        }
        rows.append(
            {
                "start": float(s),
                "params": {k: f.params[k] for k in f.stderr},
                "stderr": f.stderr,
                "ci": {k: list(v) for k, v in f.ci.items()},
                "shift_in_stderr": shift,
            }
        )
    worst = max(
        (max(r["shift_in_stderr"].values()) for r in rows if "shift_in_stderr" in r), default=0.0
    )
    return {
        "law": lw.name,
        "fits": rows,
        "max_shift_in_stderr": worst,
        "stable": bool(worst < STABLE_SHIFT),
        "threshold": STABLE_SHIFT,
    }


def analyse(data: CoolingData, config: CoolingConfig | None = None) -> CoolingResult:
    """Run the cooling analysis on ``data`` (see the module docstring)."""
    cfg = config or CoolingConfig()
    t0 = time.perf_counter()
    timings = {}
    bad = [i for i in data.issues if i.channel in CHANNELS]
    if bad and cfg.on_invalid == "raise":
        raise ValueError(
            "bad values in the log (on_invalid='raise'):\n" + "\n".join(i.describe() for i in bad)
        )
    seeds = [
        np.random.default_rng(s)
        for s in np.random.SeedSequence(cfg.seed).spawn(4 * len(cfg.laws) + 2)
    ]
    maxima = signal_maximum(data, smooth=cfg.smooth)
    snr_source = cfg.snr_source
    if snr_source == "auto":
        snr_source = (
            "gradient"
            if data.grad_mean_norm is not None and data.grad_std_norm is not None
            else "signal"
        )
    snr = snr_crossing(data, source=snr_source, smooth=cfg.smooth)
    onset = None
    if data.n_layers >= 2:
        onset = late_onset(
            data,
            min_late=cfg.min_late,
            level=cfg.level,
            n_boot=cfg.n_boot,
            smooth=cfg.smooth,
            gls=cfg.onset_gls,
            rng=seeds.pop(),
        )
    elif cfg.late_start is None:
        raise ValueError(
            "a single layer has no layer ratios to locate the late onset; give late_start"
        )
    if cfg.late_start is not None:
        t_lo = float(cfg.late_start)
    elif onset is not None:
        t_lo = onset.epoch
    else:  # unreachable: without late_start a single layer raised above
        raise ValueError("late_start is required when the late onset is not located")
    t_hi = float(cfg.late_end) if cfg.late_end is not None else float(data.epochs.max())
    if not t_hi > t_lo:
        raise ValueError(f"late_end must exceed late_start, got [{t_lo:g}, {t_hi:g}]")
    window = (t_lo, t_hi)
    n_win = int(np.sum((data.epochs >= t_lo) & (data.epochs <= t_hi)))
    if n_win < cfg.min_late:
        raise ValueError(
            f"too short a late window: {n_win} epochs in [{t_lo:g}, {t_hi:g}], "
            f"min_late = {cfg.min_late}"
        )
    timings["regimes"] = time.perf_counter() - t0
    channels = {}
    for ch in CHANNELS:
        t1 = time.perf_counter()
        panel, fits, comp = _fit_channel(data, ch, window, cfg, seeds)
        channels[ch] = {"fits": fits, "comparison": comp, "n_points": int(panel.y.size)}
        timings[f"fit_{ch}"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    per_layer = {}
    if cfg.per_layer and data.n_layers > 1:
        panel = build_panel(data, "signal", *window, weights=cfg.weights)
        for i, layer in enumerate(data.layers):
            sub = panel.subset(i)
            fl = {
                get_law(law).name: fit_law(
                    sub, law, noise_model=cfg.noise_model, uncertainty="sandwich", level=cfg.level
                )
                for law in cfg.laws
            }
            per_layer[layer] = {"fits": fl, "comparison": compare(fl, criterion=cfg.criterion)}
    timings["per_layer"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    selected = channels["signal"]["fits"][channels["signal"]["comparison"].selected].law_model
    stability = (
        window_stability(
            data,
            selected,
            window,
            n_starts=cfg.n_stability,
            weights=cfg.weights,
            noise_model=cfg.noise_model,
            level=cfg.level,
            min_late=cfg.min_late,
        )
        if cfg.n_stability > 0
        else None
    )
    timings["stability"] = time.perf_counter() - t1
    fac = factorisation_test(data, window, level=cfg.level, reference=cfg.reference)
    flo = noise_floor(data, window, level=cfg.level)
    timings["total"] = time.perf_counter() - t0
    return CoolingResult(
        cfg,
        data,
        window,
        maxima,
        snr,
        snr_source,
        onset,
        channels,
        per_layer,
        stability,
        fac,
        flo,
        timings,
    )
