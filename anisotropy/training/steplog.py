"""Layer statistics at geometrically spaced training steps (the early regimes of figure 1).

The per-epoch record of ``log.jsonl`` cannot see what happens inside the first
epoch, yet the signal maximum and the signal-dominated regime of figure 1 of
*Partial local entropy and anisotropy in deep weight spaces* lie there (the
signal s_I of eq. 2 falls by a factor 4-5 within the first ~50 steps of a
4-layer MLP).  The trainer therefore also writes ``steps.jsonl``: one record per
*logged step* ``t_j`` from :func:`geometric_steps` (every step at first, then a
fixed number per decade), each summarising the minibatches of the window
``(t_{j-1}, t_j]`` with the same per-layer statistics as the epoch record
(:class:`~anisotropy.training.signals.SignalAccumulator`).

Record schema (one JSON object per line)::

    {"step": 37, "epoch": 1, "batches": 1, "train_loss": 1.92, "smoothed_loss": 1.92,
     "train_acc": 0.41,
     "layers": {"fc1": {"signal": ..., "signal_std": null, "grad_mean_norm": ...,
                        "grad_std_norm": null, "weight_norm": ..., "numel": ...}}}

``batches`` is the window's number of minibatches; the spreads ``signal_std`` and
``grad_std_norm`` are ``null`` for a one-minibatch window (a spread over one
batch is not defined), which readers treat as missing.

With ``logging.steps_split = K`` every record also holds ``"within_parts": K`` and, per
layer, the gradient noise inside the minibatch of the logged step, measured at the
weights before its update (:func:`anisotropy.training.spread.within_batch_spread`)::

    "fc1": {..., "within_mean_norm": ..., "within_noise_norm": ..., "within_snr": ...}

so that the signal-to-noise ratio is defined at every logged step, one-minibatch
windows included.
"""

from __future__ import annotations

__all__ = ["geometric_steps", "DEFAULT_DENSE_STEPS", "DEFAULT_PER_DECADE"]

#: log every step up to this one: the fall of s_I in the first ~50 steps and the
#: start of its plateau (about step 100) are resolved step by step
DEFAULT_DENSE_STEPS = 100
#: logged steps per decade after the dense start: 20 gives a ratio of 10^(1/20) =
#: 1.12 between consecutive steps, finer than any feature of a cooling law on a
#: log time axis, while a 10^5-step run writes only ~160 step records
DEFAULT_PER_DECADE = 20


def geometric_steps(
    last: int, *, dense: int = DEFAULT_DENSE_STEPS, per_decade: int = DEFAULT_PER_DECADE
) -> list[int]:
    """Steps at which the step log is written: ``1..dense``, then geometric up to ``last``.

    Parameters
    ----------
    last : int
        Last training step of the run (>= 1); it is always included.
    dense : int, keyword-only
        Every step ``1..min(dense, last)`` is logged (>= 1).
    per_decade : int, keyword-only
        Logged steps per factor 10 beyond ``dense`` (>= 1): step ``round(dense *
        10^(j / per_decade))`` for j = 1, 2, ..., duplicates removed.

    Returns
    -------
    list of int
        Strictly increasing steps in ``[1, last]``.
    """
    for name, value in (("last", last), ("dense", dense), ("per_decade", per_decade)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    steps = list(range(1, min(dense, last) + 1))
    j = 1
    while steps[-1] < last:
        t = min(last, int(round(dense * 10.0 ** (j / per_decade))))
        if t > steps[-1]:
            steps.append(t)
        j += 1
    return steps
