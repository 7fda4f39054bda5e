"""The result of a cooling analysis: text report and ``cooling.json``.

``cooling.json`` (schema ``anisotropy.cooling/1``) holds, top level:

``time_axis``
    ``"epoch"`` (``log.jsonl``) or ``"step"`` (``steps.jsonl``): the unit of every time in
    the file (the keys stay named ``epoch``/``epochs``);
``selected``, ``criterion``
    the law chosen for the signal and the criterion that chose it;
``laws``
    ``{name: {"params", "stderr", "ci", "level", "aic", "bic", "loglik", "n_obs", "n_params",
    "window", "log_amplitudes" (per layer), "rho", "sigma" (per layer), "noise_model",
    "uncertainty", "at_bound", "gof"}}`` for the signal; ``exponential`` has ``tau``,
    ``stretched_exponential`` ``tau`` and ``beta``, ``power_law`` ``p``,
    ``stretched_then_exponential`` ``tau``, ``beta``, ``t_c`` (and the derived ``tau_late``);
    a user's :class:`~analysis.cooling.laws.Law` its own parameters and derived quantities;
``comparison``
    criteria table with differences and weights, the nested likelihood-ratio test and the
    Vuong tests;
``noise``
    the same three entries (``selected``, ``laws``, ``comparison``) for ``signal_std``;
``regimes``
    ``signal_max`` (per layer), ``snr_crossing`` (per layer: ``epoch`` or null and a note),
    ``snr_source``, ``late_onset`` (``epoch``, ``ci``, ``stderr``, ``method``, ...) and
    ``late_window``;
``per_layer``
    per layer: the selected law and ``{law: {params, stderr, ci, bic}}``;
``stability``
    refits of the selected law on later window starts;
``factorisation``
    slopes of the late log layer ratios for ``signal`` and ``signal_std`` with the joint test;
``floor``
    the noise-floor analysis and its verdict;
``data``
    source, layers, epoch range, ``issues`` (every missing / NaN / inf / zero / negative
    value with its epochs) and the ``policy`` applied;
``config``, ``timings_s``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anisotropy.io import nonfinite_to_null, write_json_atomic

from .laws import law_name

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from .factorisation import Factorisation
    from .floor import FloorAnalysis
    from .io import CoolingData
    from .regimes import Onset

__all__ = ["SCHEMA", "CoolingResult", "load_result"]

SCHEMA = "anisotropy.cooling/1"


def _fmt_law(name: str, fit) -> str:
    parts = []
    for k in fit.stderr:
        lo, hi = fit.ci[k]
        parts.append(f"{k} = {fit.params[k]:.4g} [{lo:.4g}, {hi:.4g}]")
    return f"{name}: " + ", ".join(parts)


@dataclass
class CoolingResult:
    """Everything :func:`analysis.cooling.analyse` found; ``report()`` and ``to_dict()``."""

    # a CoolingConfig: not imported, not even for type checking, since
    # analysis.cooling.pipeline imports this module (no import cycle in the package)
    config: Any
    data: CoolingData
    window: tuple
    signal_max: dict
    snr: dict
    snr_source: str
    onset: Onset | None
    channels: dict
    per_layer: dict
    stability: dict | None
    factorisation: Factorisation
    floor: FloorAnalysis
    timings: dict

    @property
    def selected(self) -> str:
        return self.channels["signal"]["comparison"].selected

    def fit(self, law: str | None = None, channel: str = "signal"):
        """The :class:`~analysis.cooling.fit.LawFit` of ``law`` (default: the selected one)."""
        ch = self.channels[channel]
        return ch["fits"][law or ch["comparison"].selected]

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        d = self.data
        sig, noi = self.channels["signal"], self.channels["signal_std"]
        per_layer = {
            layer: {
                "selected": v["comparison"].selected,
                **{
                    law: {
                        "params": f.params,
                        "stderr": f.stderr,
                        "ci": {k: list(c) for k, c in f.ci.items()},
                        "bic": f.bic,
                    }
                    for law, f in v["fits"].items()
                },
            }
            for layer, v in self.per_layer.items()
        }
        out = {
            "schema": SCHEMA,
            "time_axis": getattr(d, "time_axis", "epoch"),
            "selected": sig["comparison"].selected,
            "criterion": sig["comparison"].criterion,
            "laws": {k: f.to_dict() for k, f in sig["fits"].items()},
            "comparison": sig["comparison"].to_dict(),
            "noise": {
                "selected": noi["comparison"].selected,
                "laws": {k: f.to_dict() for k, f in noi["fits"].items()},
                "comparison": noi["comparison"].to_dict(),
            },
            "regimes": {
                "signal_max": self.signal_max,
                "snr_crossing": self.snr,
                "snr_source": self.snr_source,
                "late_onset": self.onset.to_dict() if self.onset is not None else None,
                "late_window": list(self.window),
            },
            "per_layer": per_layer,
            "stability": self.stability,
            "factorisation": self.factorisation.to_dict(),
            "floor": self.floor.to_dict(),
            "data": {
                "source": d.source,
                "layers": list(d.layers),
                "epochs": {
                    "first": float(d.epochs[0]),
                    "last": float(d.epochs[-1]),
                    "count": int(d.epochs.size),
                    "step": d.step,
                },
                "issues": [i.to_dict() for i in d.issues],
                "policy": self.config.on_invalid,
                "batches_per_epoch": d.batches_per_epoch,
                "time_axis": getattr(d, "time_axis", "epoch"),
            },
            "config": {
                **dataclasses.asdict(self.config),
                "laws": [law_name(law) for law in self.config.laws],
            },
            "timings_s": self.timings,
        }
        return nonfinite_to_null(out)

    def save(self, path) -> Path:
        """Write ``cooling.json`` atomically (``path`` may be a directory)."""
        p = Path(path)
        if p.is_dir() or p.suffix != ".json":
            p.mkdir(parents=True, exist_ok=True)
            p = p / "cooling.json"
        return write_json_atomic(p, self.to_dict(), indent=1)

    # ------------------------------------------------------------------ text
    def report(self) -> str:
        d, cfg = self.data, self.config
        unit = getattr(d, "time_axis", "epoch")
        L = []
        L.append(
            f"cooling analysis of {d.source}: {d.n_layers} layers, {unit}s "
            f"{d.epochs[0]:g}..{d.epochs[-1]:g} ({d.epochs.size} logged)"
        )
        if d.issues:
            L.append(
                f"data issues (policy '{cfg.on_invalid}': flagged points are left out of the "
                "fits of their channel):"
            )
            L += ["  " + i.describe() for i in d.issues]
        else:
            L.append("data: no missing, NaN, inf, zero or negative values")
        L.append("regimes:")
        L.append(
            f"  signal maximum at {unit}: "
            + ", ".join(
                f"{k} {v:g}" if v is not None else f"{k} -" for k, v in self.signal_max.items()
            )
        )
        L.append(
            f"  SNR crossing ({self.snr_source}): "
            + ", ".join(
                f"{k} {v['epoch']:.1f}" if v["epoch"] is not None else f"{k} none ({v['note']})"
                for k, v in self.snr.items()
            )
        )
        if self.onset is not None:
            o = self.onset
            L.append(
                f"  late-regime onset: {unit} {o.epoch:g}, {o.level:.0%} interval "
                f"[{o.ci[0]:g}, {o.ci[1]:g}] ({o.method})"
            )
        L.append(
            f"late window: [{self.window[0]:g}, {self.window[1]:g}]"
            + (" (given)" if cfg.late_start is not None else " (from the onset)")
        )
        for ch, title in (("signal", "signal"), ("signal_std", "noise (signal_std)")):
            c = self.channels[ch]
            comp = c["comparison"]
            L.append(
                f"{title}: joint fits on {c['n_points']} points, uncertainty "
                f"'{cfg.uncertainty}', noise model '{cfg.noise_model}'"
            )
            for name, f in c["fits"].items():
                t = comp.table[name]
                flag = " <- selected" if name == comp.selected else ""
                bound = f" (at bound: {', '.join(f.at_bound)})" if f.at_bound else ""
                L.append(
                    f"  {_fmt_law(name, f)}; AIC {t['aic']:.1f}, BIC {t['bic']:.1f} "
                    f"(dBIC {t['delta_bic']:.1f}){bound}{flag}"
                )
            for r in comp.lrt:
                L.append(
                    f"  LRT {r['null']} in {r['alternative']}: 2dlnL = {r['statistic']:.2f}, "
                    f"p = {r['p_value']:.3g} (two-sided), {r['p_value_one_sided']:.3g} "
                    f"({r['param']} {'<' if r['side'] == 'below' else '>'} "
                    f"{r['null_value']:g}, boundary mixture)"
                )
            for r in comp.vuong:
                L.append(
                    f"  Vuong {r['a']} vs {r['b']}: Z = {r['statistic']:+.2f}, "
                    f"p = {r['p_value']:.3g} (favours {r['favours']})"
                )
            sel = c["fits"][comp.selected]
            L.append(
                "  AR(1) rho per layer: "
                + ", ".join(f"{k} {v:.2f}" for k, v in sel.rho.items())
                + "; Ljung-Box p: "
                + ", ".join(
                    f"{k} {v:.2g}" if v is not None else f"{k} -"
                    for k, v in sel.gof["ljung_box_p"].items()
                )
            )
        if self.per_layer:
            L.append("per-layer fits (selected law per layer, then the joint law's parameters):")
            for layer, v in self.per_layer.items():
                f = v["fits"][self.selected]
                L.append(
                    f"  {layer}: selects {v['comparison'].selected}; {_fmt_law(self.selected, f)}"
                )
        if self.stability:
            s = self.stability
            L.append(
                f"stability of {s['law']} as the window start moves: max shift "
                f"{s['max_shift_in_stderr']:.2f} stderr -> "
                + ("stable" if s["stable"] else f"NOT stable (threshold {s['threshold']})")
            )
        L.append(self.factorisation.report())
        L.append(self.floor.report())
        return "\n".join(L)


def load_result(path) -> dict:
    """Read a ``cooling.json`` (a file or the directory holding it) as a dict."""
    p = Path(path)
    if p.is_dir():
        p = p / "cooling.json"
    with open(p, encoding="utf-8") as fh:
        res = json.load(fh)
    if res.get("schema") != SCHEMA:
        raise ValueError(
            f"{p} is not a cooling.json of schema {SCHEMA!r} (got {res.get('schema')!r})"
        )
    return res
