r"""End-of-run flatness of the final model: local energy and Monte Carlo local free entropy.

With ``logging.flatness = true`` the trainer measures, once the run is complete
(all epochs, or the budget ``max_passes`` spent), on a fixed training subset of
``logging.flatness_n_train`` samples (drawn from the run's ``seed``, normalised,
never augmented), for every layer weight (each ``nn.Linear`` / ``nn.Conv2d``
weight, :func:`anisotropy.training.signals.weight_layers`) and for the whole model
(all of those weights at once; biases never):

* the local energy :math:`\delta E(\sigma) = E_z[L(W + \sigma z \odot |W|)] - L(W)`
  with multiplicative Gaussian noise at every ``sigma`` of ``logging.flatness_sigmas``
  (:func:`anisotropy.related.local_energy.local_energy_curve`; the same draws for every
  sigma), mean and standard error over ``logging.flatness_samples`` draws;
* the Monte Carlo local free entropy (eq. 18 of the paper) with the box kernel of
  half-side ``R`` for every ``R`` of ``logging.flatness_R``
  (:func:`anisotropy.related.local_free_entropy.mc_local_free_entropy`), estimate and
  delta-method standard error over ``logging.flatness_samples`` draws;

where ``L`` is the run's training loss at the centre (its objective,
:mod:`anisotropy.training.objective`: cross-entropy, or a reconstruction's mean squared
error), and writes them into ``summary.json`` under ``"flatness"`` (:func:`measure_flatness`
gives the layout).  The noise comes from one generator seeded from the run's seed,
used in a fixed order (layers in model order, then the whole model; for each, the
local energy curve and then each radius), so the numbers are reproducible: a direct
call of :func:`measure_flatness` with :func:`flatness_seeds` reproduces them.

``anisotropy flatness RUN_DIR [--set logging.flatness_samples=64]
[--write]`` measures an existing run from its final ``checkpoint.pt``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anisotropy.data.datasets import Dataset
from anisotropy.kernels import BoxKernel
from anisotropy.related.local_energy import local_energy_curve
from anisotropy.related.local_free_entropy import mc_local_free_entropy
from anisotropy.training.config import TrainConfig
from anisotropy.training.objective import get_objective
from anisotropy.training.signals import weight_layers
from anisotropy.validation import check_int

__all__ = [
    "CONFIGS_PER_PASS",
    "FLATNESS_KEYS",
    "flatness_seeds",
    "flatness_subset",
    "measure_flatness",
    "run_flatness",
    "main",
]

#: perturbed configurations evaluated per batched forward pass (both measures): 16
#: copies of the largest activation of the table-25 CNN on 1024 samples are 354 MB
CONFIGS_PER_PASS = 16
#: tag of the flatness stream: its seeds are SeedSequence([seed, tag]), independent of
#: the run's three training streams (anisotropy.training.run.derive_seeds)
_FLATNESS_STREAM = 0x666C6174
#: the configuration keys of the measurement (the only ones the command line may set,
#: with device and threads)
FLATNESS_KEYS = (
    "logging.flatness_n_train",
    "logging.flatness_sigmas",
    "logging.flatness_R",
    "logging.flatness_samples",
)


def flatness_seeds(seed: int) -> tuple[int, int]:
    """(subset seed, noise seed) of the flatness measurement of a run with ``seed``."""
    a, b = np.random.SeedSequence([seed, _FLATNESS_STREAM]).generate_state(2, dtype=np.uint64)
    return int(a), int(b)


def flatness_subset(
    data: Dataset, n: int, *, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``min(n, n_train)`` training samples drawn without replacement by ``generator``
    (a CPU generator), normalised (no augmentation), on the data's device."""
    n = check_int("n", n, minimum=1)
    idx = torch.randperm(len(data.x_train), generator=generator)[:n]
    idx = idx.to(data.x_train.device)
    return data.normalise(data.x_train[idx]), data.y_train[idx]


def measure_flatness(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    sigmas: Sequence[float],
    radii: Sequence[float],
    samples: int,
    generator: torch.Generator,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
) -> dict[str, Any]:
    r"""Per-layer and whole-model local energy and MC local free entropy of ``model``.

    Parameters
    ----------
    model : torch.nn.Module
        Evaluated as it is (``eval()`` it first if it has dropout or batch norm).
    inputs, targets : torch.Tensor
        The fixed data set of the loss ``L`` (``loss_fn``).
    sigmas : sequence of float, keyword-only
        Multiplicative noise scales of the local energy.
    radii : sequence of float, keyword-only
        Box half-sides ``R`` of the local free entropy (eq. 18, ``beta = 1``).
    samples : int, keyword-only
        Noise draws per local energy curve and per free entropy (``>= 2``).
    generator : torch.Generator, keyword-only
        The only randomness, on the model's device; used in the order of the result.
    loss_fn : callable(output, targets) -> scalar, keyword-only
        The mean loss ``L`` (default: cross-entropy; the trainer passes the run's
        objective, :mod:`anisotropy.training.objective`).

    Returns
    -------
    dict
        ``{"centre_loss": L(W), "layers": {layer: M, ...}, "model": M}``, one ``M`` per
        layer weight (model order) and one for all of them at once, with
        ``M = {"numel": |U|, "local_energy": [{"sigma", "mean", "stderr"}, ...],
        "free_entropy": [{"R", "estimate", "stderr", "log_normaliser", "ess"}, ...]}``
        (lists in the order of ``sigmas`` and ``radii``; plain numbers).
    """
    samples = check_int("samples", samples, minimum=2)
    weights = weight_layers(model)
    if not weights:
        raise ValueError("model has no layer weight (nn.Linear / nn.Conv2d) to measure")
    units: list[tuple[str | None, list[str]]] = [(n, [f"{n}.weight"]) for n in weights]
    units.append((None, [f"{n}.weight" for n in weights]))
    out: dict[str, Any] = {"centre_loss": None, "layers": {}, "model": None}
    for layer, names in units:
        curve = local_energy_curve(
            model,
            inputs,
            targets,
            sigmas=list(sigmas),
            generator=generator,
            layers=names,
            noise="multiplicative",
            n=samples,
            batch_size=CONFIGS_PER_PASS,
            loss_fn=loss_fn,
        )
        entropies = [
            mc_local_free_entropy(
                model,
                names,
                inputs,
                targets,
                kernel=BoxKernel(float(R)),
                y=samples,
                generator=generator,
                chunk=CONFIGS_PER_PASS,
                loss_fn=loss_fn,
            )
            for R in radii
        ]
        out["centre_loss"] = curve[0].centre_loss
        unit = {
            "numel": curve[0].n_perturbed,
            "local_energy": [{"sigma": r.sigma, "mean": r.mean, "stderr": r.stderr} for r in curve],
            "free_entropy": [
                {
                    "R": float(R),
                    "estimate": e.estimate,
                    "stderr": e.stderr,
                    "log_normaliser": e.log_normaliser,
                    "ess": e.ess,
                }
                for R, e in zip(radii, entropies, strict=True)
            ],
        }
        if layer is None:
            out["model"] = unit
        else:
            out["layers"][layer] = unit
    return out


def run_flatness(cfg: TrainConfig, model: nn.Module, data: Dataset) -> dict[str, Any]:
    """The ``"flatness"`` entry of a run's ``summary.json``: :func:`measure_flatness` on the
    subset and with the noise seeded by :func:`flatness_seeds` (``cfg.seed``), plus the
    settings and the measurement's ``wall_time`` (seconds).  The model is measured in
    ``eval()`` mode and put back in its mode."""
    lg = cfg.logging
    start = time.perf_counter()
    subset_seed, noise_seed = flatness_seeds(cfg.seed)
    x, t = flatness_subset(
        data, lg.flatness_n_train, generator=torch.Generator().manual_seed(subset_seed)
    )
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(noise_seed)
    objective = get_objective(cfg.objective)
    was_training = model.training
    model.eval()
    try:
        measured = measure_flatness(
            model,
            x,
            objective.targets(x, t),
            sigmas=lg.flatness_sigmas,
            radii=lg.flatness_R,
            samples=lg.flatness_samples,
            generator=generator,
            loss_fn=objective,
        )
    finally:
        model.train(was_training)
    return {
        "n_train": len(t),
        "samples": lg.flatness_samples,
        "sigmas": list(lg.flatness_sigmas),
        "R": list(lg.flatness_R),
        "noise": "multiplicative",
        "kernel": "box",
        **measured,
        "wall_time": time.perf_counter() - start,
    }


# ----------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    """``anisotropy flatness RUN_DIR [--set KEY=VALUE ...] [--write]``:
    measure a complete run's final model (its ``checkpoint.pt``), print the
    ``"flatness"`` JSON, and with ``--write`` store it in the run's ``summary.json``.
    Exit status 0, or 2 with a one-line message on bad input."""
    parser = argparse.ArgumentParser(
        prog="anisotropy flatness",
        description="End-of-run flatness of a complete run, from its final checkpoint.",
    )
    parser.add_argument("run_dir", help="the run directory (config.toml, checkpoint.pt)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"one of {', '.join(FLATNESS_KEYS)}, device, threads",
    )
    parser.add_argument("--write", action="store_true", help="store it in summary.json")
    args = parser.parse_args(argv)
    try:
        flat = _measure_run_dir(Path(args.run_dir), args.overrides, write=args.write)
    except (ValueError, FileNotFoundError) as exc:
        print(f"anisotropy flatness: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(flat, indent=1))
    return 0


def _measure_run_dir(root: Path, overrides: list[str], *, write: bool) -> dict[str, Any]:
    from anisotropy.data.datasets import load_dataset
    from anisotropy.io import load_checkpoint, write_json_atomic
    from anisotropy.threads import torch_threads
    from anisotropy.training.config import load_config, parse_override
    from anisotropy.training.lock import RunLock
    from anisotropy.training.run import RunPaths, build_model, derive_seeds

    paths = RunPaths(root)
    for item in overrides:
        key = ".".join(parse_override(item)[0])
        if key not in (*FLATNESS_KEYS, "device", "threads"):
            raise ValueError(
                f"--set {item!r}: only {', '.join(FLATNESS_KEYS)}, device and threads may be set"
            )
    for p in (paths.config, paths.checkpoint, paths.summary):
        if not p.is_file():
            raise FileNotFoundError(f"{str(p)!r} does not exist: not a complete run directory")
    cfg = load_config(paths.config, overrides)
    with RunLock(root), torch_threads(cfg.threads):
        summary = json.loads(paths.summary.read_text(encoding="utf-8"))
        ck = load_checkpoint(paths.checkpoint, map_location="cpu")
        if summary.get("status") != "complete" or ck.get("step") != summary.get("steps"):
            raise ValueError(
                f"{str(root)!r}: the checkpoint (step {ck.get('step')}) is not the final model "
                f"of a complete run (status {summary.get('status')!r}, step "
                f"{summary.get('steps')}); finish the run first (--resume)"
            )
        data = load_dataset(cfg.data)
        model = build_model(cfg, data.input_shape, data.classes, seed=derive_seeds(cfg.seed)[0])
        model.load_state_dict(ck["model"])
        device = torch.device(cfg.device)
        model.to(device)
        for key in ("x_train", "y_train"):
            setattr(data, key, getattr(data, key).to(device))
        flat = run_flatness(cfg, model, data)
        if write:
            write_json_atomic(paths.summary, {**summary, "flatness": flat})
    return flat


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
