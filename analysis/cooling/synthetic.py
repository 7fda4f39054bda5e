r"""Seeded synthetic layer signals with known regimes and a known cooling law.

Ground truth for the tests, the benchmark and the recovery study.  For layer
``I`` and epoch ``t = first_epoch, ..., first_epoch + n_epochs - 1`` the clean signal is

.. math::

    \ln \bar s_I(t) = \ln A_I + \ln(1 - e^{-t/t_r}) + g(t;\theta)
        + \kappa_I \min(0, \ln(t/t_{on})) + \delta_I \max(0, \ln(t/t_{on})),

i.e. a fast rise (time ``rise_time``), the common law ``g = ln f`` of
:mod:`analysis.cooling.laws`, a layer-specific power-law transient (exponent
``transient[I]``) that ends at the onset ``t_on`` of the late common regime, and an
optional late drift ``late_drift[I]`` that breaks the factorisation (zero by default).
The logged values are

* ``signal = s̄ exp(noise * eps)`` with ``eps`` a unit-variance stationary AR(1)
  (coefficient ``rho``) per layer, correlated across layers (``layer_correlation``);
* ``signal_std = signal * q(t) * exp(noise_std * eps')``, where the noise-to-signal
  ratio ``q`` moves logistically (in ``t``, width ``snr_width``) from
  ``noise_ratio_early`` to ``noise_ratio_late``: the signal-to-noise crossing
  ``q = 1`` happens at ``snr_crossing`` when ``noise_ratio_early * noise_ratio_late = 1``;
* ``grad_std_norm = sqrt(pi/2) sqrt(numel) floor_fraction * signal`` (so that the noise
  floor of :mod:`analysis.cooling.floor` is ``floor_fraction`` times the signal) and
  ``grad_mean_norm = grad_std_norm / q(t)``.

All randomness comes from the ``rng`` argument.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from anisotropy.io import nonfinite_to_null, write_json_atomic, write_jsonl_atomic
from anisotropy.validation import check_int, check_positive

from .io import CoolingData
from .laws import LawLike, get_law, log_f

__all__ = ["SyntheticSpec", "generate", "ar1_noise", "write_run", "true_signal_max"]


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of a synthetic run (see the module docstring for the model)."""

    law: LawLike = "stretched_exponential"  # a registered name or a Law object
    params: dict = field(default_factory=lambda: {"tau": 30.0, "beta": 0.5})
    amplitudes: tuple = (1.0, 0.6, 0.35, 0.2)
    n_epochs: int = 400
    first_epoch: int = 1
    rise_time: float = 3.0
    onset: float = 40.0
    transient: tuple = (0.2, -0.3, 0.1, -0.4)
    late_drift: tuple = (0.0, 0.0, 0.0, 0.0)
    snr_crossing: float = 8.0
    snr_width: float = 1.5
    noise_ratio_early: float = 0.3
    noise_ratio_late: float = 1 / 0.3
    noise: float = 0.1
    noise_std: float = 0.1
    rho: float = 0.0
    layer_correlation: float = 0.0
    numel: tuple = (784 * 784, 784 * 784, 784 * 784, 784 * 10)
    floor_fraction: float = 0.2
    batches_per_epoch: int = 235

    @property
    def n_layers(self) -> int:
        return len(self.amplitudes)

    @property
    def epochs(self) -> np.ndarray:
        return np.arange(self.first_epoch, self.first_epoch + self.n_epochs, dtype=float)


def ar1_noise(
    shape: tuple, rho: float, rng: np.random.Generator, *, correlation: float = 0.0
) -> np.ndarray:
    """Unit-variance stationary AR(1) noise of shape ``(L, n)``, correlated across rows.

    Each row is ``sqrt(c) x_common + sqrt(1-c) x_row`` with independent stationary AR(1)
    series ``x`` of coefficient ``rho``; rows then have correlation ``c`` at equal times.
    """
    if not -1 < rho < 1:
        raise ValueError(f"rho must lie in (-1, 1), got {rho!r}")
    if not 0 <= correlation <= 1:
        raise ValueError(f"correlation must lie in [0, 1], got {correlation!r}")
    L, n = shape
    eta = rng.standard_normal((L + 1, n))
    x = np.empty_like(eta)
    x[:, 0] = eta[:, 0]
    s = np.sqrt(1 - rho**2)
    for k in range(1, n):
        x[:, k] = rho * x[:, k - 1] + s * eta[:, k]
    return np.sqrt(correlation) * x[L] + np.sqrt(1 - correlation) * x[:L]


def _clean_log_signal(spec: SyntheticSpec, t: np.ndarray) -> np.ndarray:
    """``ln s̄_I(t)``, shape ``(L, len(t))``."""
    L = spec.n_layers
    for name in ("transient", "late_drift", "numel"):
        if len(getattr(spec, name)) != L:
            raise ValueError(
                f"{name} must have one entry per layer ({L}), got {getattr(spec, name)!r}"
            )
    rise = np.log1p(-np.exp(-t / spec.rise_time)) if spec.rise_time > 0 else 0.0
    lt = np.log(t / spec.onset)
    out = (
        np.log(np.asarray(spec.amplitudes, float))[:, None]
        + rise
        + log_f(spec.law, t, spec.params)
        + np.asarray(spec.transient, float)[:, None] * np.minimum(lt, 0.0)
        + np.asarray(spec.late_drift, float)[:, None] * np.maximum(lt, 0.0)
    )
    return out


def true_signal_max(spec: SyntheticSpec, resolution: float = 0.01) -> np.ndarray:
    """Epoch of the maximum of each layer's clean signal (grid of ``resolution`` epochs)."""
    t = np.arange(spec.first_epoch, spec.first_epoch + spec.n_epochs - 1 + resolution, resolution)
    return t[np.argmax(_clean_log_signal(spec, t), axis=1)]


def _channels(
    spec: SyntheticSpec, t: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Noisy channels at times ``t``: signal, signal_std, grad_mean_norm, grad_std_norm
    (each ``(n_layers, len(t))``) and the layers' weight counts; shared by the epoch
    and the step generators (same draws in the same order)."""
    L = spec.n_layers
    clean = _clean_log_signal(spec, t)
    eps = ar1_noise((L, t.size), spec.rho, rng, correlation=spec.layer_correlation)
    eps2 = ar1_noise((L, t.size), spec.rho, rng, correlation=spec.layer_correlation)
    signal = np.exp(clean + spec.noise * eps)
    lq = np.log(spec.noise_ratio_early) + (
        np.log(spec.noise_ratio_late) - np.log(spec.noise_ratio_early)
    ) / (1 + np.exp(-(t - spec.snr_crossing) / spec.snr_width))
    signal_std = signal * np.exp(lq + spec.noise_std * eps2)
    numel = np.asarray(spec.numel, float)
    gstd = np.sqrt(np.pi / 2) * np.sqrt(numel)[:, None] * spec.floor_fraction * signal
    return signal, signal_std, gstd * np.exp(-lq), gstd, numel


def generate(spec: SyntheticSpec, rng: np.random.Generator | int) -> tuple[CoolingData, dict]:
    """Draw one synthetic run.

    Returns
    -------
    data : CoolingData
    truth : dict
        ``law``, ``params``, ``log_amplitudes`` (per layer, late regime), ``onset``,
        ``signal_max`` (per layer), ``snr_crossing``.
    """
    get_law(spec.law)
    check_int("n_epochs", spec.n_epochs, minimum=4)
    if spec.first_epoch < 1:
        raise ValueError(
            f"first_epoch must be >= 1 (the laws need t > 0), got {spec.first_epoch!r}"
        )
    check_positive("onset", spec.onset)
    t = spec.epochs
    L = spec.n_layers
    signal, signal_std, gmean, gstd, numel = _channels(spec, t, np.random.default_rng(rng))
    data = CoolingData(
        t,
        tuple(f"fc{i + 1}" for i in range(L)),
        signal,
        signal_std,
        grad_mean_norm=gmean,
        grad_std_norm=gstd,
        weight_norm=np.ones_like(signal),
        numel=numel,
        batches_per_epoch=spec.batches_per_epoch,
        source="synthetic",
    )
    truth = {
        "law": get_law(spec.law).name,
        "params": dict(spec.params),
        "onset": spec.onset,
        "log_amplitudes": dict(
            zip(data.layers, np.log(np.asarray(spec.amplitudes, float)), strict=True)
        ),
        "signal_max": dict(zip(data.layers, true_signal_max(spec).tolist(), strict=True)),
        "snr_crossing": spec.snr_crossing,
    }
    return data, truth


def write_run(data: CoolingData, directory, *, summary: dict | None = None) -> Path:
    """Write ``data`` as a run directory in the trainer's format (``log.jsonl``, ``summary.json``).

    Absent values are left out of the records.  The files are strict JSON, as the
    trainer writes them (:mod:`anisotropy.io`): a NaN / inf value is written as
    ``null`` and reads back as missing; ``train_loss`` (not simulated) is ``null``.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    channels = [
        c
        for c in ("signal", "signal_std", "grad_mean_norm", "grad_std_norm", "weight_norm")
        if getattr(data, c) is not None
    ]
    records = []
    for j, e in enumerate(data.epochs):
        layers = {}
        for i, name in enumerate(data.layers):
            rec = {c: float(getattr(data, c)[i, j]) for c in channels if not data.absent[c][i, j]}
            if data.numel is not None:
                rec["numel"] = int(data.numel[i])
            if len(rec) > (data.numel is not None):
                layers[name] = rec
        records.append(
            nonfinite_to_null(
                {"epoch": float(e) if e % 1 else int(e), "train_loss": None, "layers": layers}
            )
        )
    write_jsonl_atomic(d / "log.jsonl", records)
    summ = (
        summary
        if summary is not None
        else {"data": {"batch_size": 256}, "n_batches": data.batches_per_epoch}
    )
    write_json_atomic(d / "summary.json", nonfinite_to_null(summ), indent=1)
    return d
