r"""Seeded synthetic *step logs* (``steps.jsonl``) with known regimes: ground truth for the
analysis on the step axis (``anisotropy cooling RUN_DIR --time step``).

The clean signal, its noise and the gradient norms follow the model of
:mod:`analysis.cooling.synthetic` (a fast rise, the common late law, layer-specific
transients ending at the onset, a logistic noise-to-signal ratio ``q(t)``), evaluated at
the logged *steps* ``t_j`` of a geometric grid instead of at epochs: every time parameter
of the :class:`~analysis.cooling.synthetic.SyntheticSpec` (``rise_time``, ``onset``,
``snr_crossing``, ``snr_width``, the law's ``tau``) is then in steps.  The AR(1) noise runs
over the record index.  As in the trainer's step log, the record at ``t_j`` summarises the
window ``(t_{j-1}, t_j]`` of ``t_j - t_{j-1}`` minibatches, and its spreads
(``signal_std``, ``grad_std_norm``) are absent (written ``null``) for a one-minibatch
window.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from anisotropy.io import nonfinite_to_null, write_jsonl_atomic

from .io import CoolingData
from .laws import get_law
from .synthetic import SyntheticSpec, _channels, _clean_log_signal

__all__ = ["generate_steps", "write_steps", "true_signal_max_steps"]

#: points per decade of the log grid on which the true signal maximum is located
#: (a relative resolution of 10^(1/2000) - 1 = 0.1%, far below the step log's 12%)
_MAX_GRID_PER_DECADE = 2000


def _check_steps(steps) -> np.ndarray:
    t = np.asarray(steps, dtype=np.float64).reshape(-1)
    if t.size < 4 or t[0] < 1 or np.any(np.diff(t) <= 0) or np.any(t != np.round(t)):
        raise ValueError(
            f"steps must be at least 4 strictly increasing integers >= 1, got {steps!r}"
        )
    return t


def true_signal_max_steps(spec: SyntheticSpec, last: float) -> np.ndarray:
    """Step of the maximum of each layer's clean signal on a fine log grid in ``[1, last]``."""
    n = int(math.ceil(_MAX_GRID_PER_DECADE * math.log10(max(last, 1.0)))) + 1
    t = np.geomspace(1.0, float(last), max(n, 2))
    return t[np.argmax(_clean_log_signal(spec, t), axis=1)]


def generate_steps(
    spec: SyntheticSpec, steps, rng: np.random.Generator | int
) -> tuple[CoolingData, dict]:
    """Draw one synthetic step log at the logged ``steps`` (time parameters of ``spec`` in steps).

    Returns
    -------
    data : CoolingData
        ``time_axis="step"``, ``batches`` the window sizes (the first window is ``steps[0]``
        minibatches); spreads absent where a window holds one minibatch.
    truth : dict
        ``law``, ``params``, ``onset``, ``signal_max`` (per layer), ``snr_crossing``.
    """
    get_law(spec.law)
    t = _check_steps(steps)
    L = spec.n_layers
    signal, signal_std, gmean, gstd, numel = _channels(spec, t, np.random.default_rng(rng))
    batches = np.diff(np.r_[0.0, t]).astype(np.int64)
    one = np.broadcast_to(batches == 1, (L, t.size))
    signal_std = np.where(one, np.nan, signal_std)
    data = CoolingData(
        t,
        tuple(f"fc{i + 1}" for i in range(L)),
        signal,
        signal_std,
        grad_mean_norm=gmean,
        grad_std_norm=np.where(one, np.nan, gstd),
        weight_norm=np.ones_like(signal),
        numel=numel,
        batches_per_epoch=spec.batches_per_epoch,
        absent={"signal_std": one.copy(), "grad_std_norm": one.copy()},
        source="synthetic steps",
        time_axis="step",
        batches=batches,
    )
    truth = {
        "law": get_law(spec.law).name,
        "params": dict(spec.params),
        "onset": spec.onset,
        "signal_max": dict(
            zip(data.layers, true_signal_max_steps(spec, t[-1]).tolist(), strict=True)
        ),
        "snr_crossing": spec.snr_crossing,
    }
    return data, truth


def write_steps(data: CoolingData, directory) -> Path:
    """Write step-axis ``data`` as the trainer's ``steps.jsonl`` in ``directory``.

    Each record has ``step``, ``epoch`` (``ceil(step / batches_per_epoch)`` when known),
    ``batches`` and the layer statistics; an absent value is written ``null`` (as the trainer
    writes the spreads of a one-minibatch window).
    """
    if data.time_axis != "step" or data.batches is None:
        raise ValueError("write_steps needs step-axis data with window sizes (batches)")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    channels = [
        c
        for c in ("signal", "signal_std", "grad_mean_norm", "grad_std_norm", "weight_norm")
        if getattr(data, c) is not None
    ]
    bpe = data.batches_per_epoch
    records = []
    for j, s in enumerate(data.epochs):
        layers = {}
        for i, name in enumerate(data.layers):
            rec = {
                c: None if data.absent[c][i, j] else float(getattr(data, c)[i, j]) for c in channels
            }
            if data.numel is not None:
                rec["numel"] = int(data.numel[i])
            layers[name] = rec
        records.append(
            nonfinite_to_null(
                {
                    "step": int(s),
                    "epoch": int(math.ceil(s / bpe)) if bpe else None,
                    "batches": int(data.batches[j]),
                    "train_loss": None,
                    "layers": layers,
                }
            )
        )
    return write_jsonl_atomic(d / "steps.jsonl", records)
