"""Choosing the smoothed parameters and drawing their perturbations.

The partial losses of the paper (eqs 13-23) smooth the loss along a subset
``U`` of the coordinates of weight space.  Here ``U`` is a set of whole
parameter tensors picked by name (PAPER-NOTES section 2): in the paper whole
layers' weight matrices, never biases (footnote 15).

* :func:`select_parameters` turns layer names, parameter names or glob
  patterns into the tuple of smoothed parameter names.
* :func:`sample_perturbations` draws the ``y`` displacements
  :math:`\\Delta W^a` of every smoothed tensor from the normalised kernel
  (:func:`anisotropy.kernels.sample_kernel` for the box kernel of eqs 5-8,
  :func:`anisotropy.kernels.sample_heat` for the heat kernel of eq 1).
"""
from __future__ import annotations

import fnmatch
import math
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import nn

from anisotropy.validation import check_choice, check_int, check_positive, check_sharpness
from anisotropy.kernels import KERNEL_NAMES, KernelName, sample_heat, sample_kernel

__all__ = ["Kernel", "KERNELS", "BLOCK", "is_bias", "select_parameters", "PendingDraws",
           "start_perturbations", "sample_perturbations"]

Kernel = KernelName                  # the kernel names are defined once, in anisotropy.kernels
KERNELS: tuple[str, ...] = KERNEL_NAMES


def is_bias(name: str) -> bool:
    """True for a parameter whose own (last) name is ``bias``."""
    return name.rsplit(".", 1)[-1] == "bias"


def _valid_names(params: dict[str, nn.Parameter], modules: dict[str, nn.Module]) -> str:
    return ("parameters: " + ", ".join(params) + "; modules: "
            + ", ".join(n for n, m in modules.items() if any(True for _ in m.parameters())))


def select_parameters(model: nn.Module, layers: str | Iterable[str], *,
                      include_biases: bool = False) -> tuple[str, ...]:
    """Names of the parameters smoothed by a partial loss (the support of ``U``, eq 13).

    Each entry of ``layers`` is, in this order of precedence,

    1. an exact parameter name (``"fc2.weight"``);
    2. a module name (``"fc2"``), meaning all the parameters of that module
       (and its submodules) except the biases unless ``include_biases``;
    3. an :func:`fnmatch.fnmatchcase` pattern (``"fc*"``, ``"conv?.weight"``)
       matched against parameter names and module names (biases dropped unless
       ``include_biases``).

    Parameters
    ----------
    model : torch.nn.Module
    layers : str or iterable of str
    include_biases : bool, keyword-only
        Smooth the biases of the selected modules too (the paper never does,
        footnote 15).  Naming a bias parameter exactly requires it.

    Returns
    -------
    tuple of str
        Canonical names (as in ``model.named_parameters()``), in model order,
        without duplicates.

    Raises
    ------
    ValueError
        If an entry matches nothing (the message lists the valid names), names
        a bias while ``include_biases`` is false, or only matches biases.
    """
    if isinstance(layers, str):
        layers = (layers,)
    layers = tuple(layers)
    if not layers:
        raise ValueError("layers must name at least one parameter, module or pattern, got ()")
    params = dict(model.named_parameters())
    canonical = {id(p): n for n, p in params.items()}
    modules = {n: m for n, m in model.named_modules() if n}
    chosen: set[str] = set()
    for entry in layers:
        if not isinstance(entry, str):
            raise ValueError(f"layers entries must be strings, got {entry!r}")
        if entry in params:
            if is_bias(entry) and not include_biases:
                raise ValueError(f"layers entry {entry!r} is a bias; biases are smoothed only "
                                 "with include_biases=True (the paper never smooths them)")
            chosen.add(entry)
            continue
        if entry in modules:
            hits = [canonical[id(p)] for p in modules[entry].parameters()]
        else:
            hits = [n for n in params if fnmatch.fnmatchcase(n, entry)]
            for mname, mod in modules.items():
                if fnmatch.fnmatchcase(mname, entry):
                    hits += [canonical[id(p)] for p in mod.parameters()]
        if not hits:
            raise ValueError(f"layers entry {entry!r} matches no parameter or module; valid "
                             f"{_valid_names(params, modules)}")
        kept = [n for n in hits if include_biases or not is_bias(n)]
        if not kept:
            raise ValueError(f"layers entry {entry!r} only matches biases ({', '.join(hits)}); "
                             "pass include_biases=True to smooth them")
        chosen.update(kept)
    return tuple(n for n in params if n in chosen)


# Draws are made in blocks of this many coordinates, each from its own numpy
# PCG64 stream keyed by 124 bits taken from the torch generator: the block size
# only depends on the tensor sizes (never on the thread count), so the draws are
# the same however many threads fill them.  2**18 floats (1 MiB) is large
# enough that seeding a stream (~20 us) is negligible and small enough that a
# 784x784 layer splits across a handful of threads.
BLOCK = 1 << 18
_SEED_HIGH = 1 << 62     # seed words in [0, 2**62): two per block, 124 bits

_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _pool() -> ThreadPoolExecutor:
    """A process-wide thread pool, rebuilt after a fork (threads do not survive one)."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=os.cpu_count() or 1,
                                                 thread_name_prefix="anisotropy-rng"))
    return _POOL[1]


# Mantissa widths of the uniform grids: U[0, 1) is (bits >> (width - m)) * 2**-m,
# the construction of numpy's Generator.random, with m = 24 (float32) or 53.
_MANTISSA = {np.dtype(np.float32): 24, np.dtype(np.float64): 53}


def _uniform(bits: np.random.BitGenerator, out: np.ndarray, lo: float, width: float) -> None:
    """Fill ``out`` with ``lo + width * U[0, 1)`` from raw 64-bit words.

    Converting raw words in place (two float32 per word) is about 1.5x faster
    than ``Generator.random(dtype=float32)``, which draws one buffered 32-bit
    word per call, and gives the same law.
    """
    m = _MANTISSA[out.dtype]
    if m == 24:
        u = bits.random_raw(-(-out.size // 2)).view(np.uint32)[:out.size]
        u >>= 32 - m
    else:
        u = bits.random_raw(out.size)
        u >>= 64 - m
    np.multiply(u, out.dtype.type(width * 2.0 ** -m), out=out, casting="unsafe")
    if lo:
        out += out.dtype.type(lo)


def _fill_block(out: np.ndarray, seed: list[int], kernel: str, R: float, k: float,
                sd: float) -> None:
    """Fill ``out`` (1-D, float32/64) with draws from the normalised kernel."""
    bits = np.random.PCG64(np.random.SeedSequence(seed))
    if kernel == "gaussian":
        np.random.Generator(bits).standard_normal(out=out, dtype=out.dtype)
        out *= sd
        return
    _uniform(bits, out, -R, 2.0 * R)                   # U(-R, R)
    if not math.isinf(k):                              # + Logistic(0, 1/(2k)): log v - log(1-v)
        v = np.empty_like(out)
        _uniform(bits, v, 0.0, 1.0)
        np.maximum(v, np.finfo(out.dtype).tiny, out=v)    # keep log(v) finite
        out += (np.log(v) - np.log1p(-v)) / (2.0 * k)


class PendingDraws:
    """Displacements being drawn, possibly in background threads.

    Attributes
    ----------
    names : tuple of str
        The parameters they perturb, in order.
    y : int
        Number of displacements per parameter.
    """

    def __init__(self, names: tuple[str, ...], y: int,
                 finish: Callable[[], dict[str, torch.Tensor]]) -> None:
        self.names, self.y = names, y
        self._finish, self._value = finish, None

    def result(self) -> dict[str, torch.Tensor]:
        """Wait for the draws: dict name -> tensor (y, *param.shape)."""
        if self._value is None:
            self._value = self._finish()
        return self._value


def _fill_jobs(jobs: list[tuple]) -> None:
    for j in jobs:
        _fill_block(*j)


def start_perturbations(params: Sequence[tuple[str, torch.Tensor]], y: int, *,
                        generator: torch.Generator, kernel: Kernel = "box", R: float = 0.01,
                        k: float = math.inf, gamma: float | None = None) -> PendingDraws:
    r"""Start drawing ``y`` displacements :math:`\Delta W^a` of each smoothed tensor.

    The generator is consumed now; on CPU with ``torch.get_num_threads() > 1``
    the blocks are filled by background threads while the caller goes on (the
    smoothed losses evaluate the network before the cut meanwhile), and
    :meth:`PendingDraws.result` waits for them.  Arguments and laws as in
    :func:`sample_perturbations`.
    """
    y = check_int("y", y, minimum=0)
    check_choice("kernel", kernel, KERNELS)
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if kernel == "box":
        R, k, sd = check_positive("R", R), check_sharpness(k), 0.0
    else:
        gamma = check_positive("gamma", gamma)
        sd = 1.0 / math.sqrt(gamma)
    names = tuple(n for n, _ in params)
    shapes = [(y, *p.shape) for _, p in params]
    if generator.device.type != "cpu":
        out = {}
        for (name, p), shape in zip(params, shapes):
            if kernel == "box":
                d = sample_kernel(shape, R=R, k=k, rng=generator, dtype=p.dtype,
                                  device=generator.device)
            else:
                d = sample_heat(shape, gamma=gamma, rng=generator, dtype=p.dtype,
                                device=generator.device)
            out[name] = d.to(p.device)
        return PendingDraws(names, y, lambda: out)
    counts = [-(-math.prod(sh) // BLOCK) for sh in shapes]
    seeds = torch.randint(0, _SEED_HIGH, (sum(counts), 2), generator=generator).tolist()
    flats, jobs = [], []
    for (_, p), shape in zip(params, shapes):
        flat = np.empty(math.prod(shape), dtype=np.float64 if p.dtype == torch.float64
                        else np.float32)
        flats.append(flat)
        for i in range(-(-flat.size // BLOCK)):
            jobs.append((flat[i * BLOCK:(i + 1) * BLOCK], seeds[len(jobs)], kernel, R, k, sd))
    workers = min(torch.get_num_threads(), len(jobs))
    futures = []
    if workers > 1:   # numpy releases the GIL while it fills; torch's thread budget
        futures = [_pool().submit(_fill_jobs, jobs[w::workers]) for w in range(workers)]
    else:
        _fill_jobs(jobs)

    def finish() -> dict[str, torch.Tensor]:
        for f in futures:
            f.result()
        return {name: torch.from_numpy(flat).reshape(shape).to(dtype=p.dtype, device=p.device)
                for (name, p), shape, flat in zip(params, shapes, flats)}

    return PendingDraws(names, y, finish)


def sample_perturbations(params: Sequence[tuple[str, torch.Tensor]], y: int, *,
                         generator: torch.Generator, kernel: Kernel = "box", R: float = 0.01,
                         k: float = math.inf, gamma: float | None = None
                         ) -> dict[str, torch.Tensor]:
    r"""Draw ``y`` displacements :math:`\Delta W^a` of each smoothed tensor.

    Parameters
    ----------
    params : sequence of (name, tensor)
        The smoothed parameters; the draws have their dtype and device.
    y : int
        Number of perturbations, ``>= 0``.
    generator : torch.Generator
        The only source of randomness: the result is a deterministic function
        of its state (which advances).
    kernel : {"box", "gaussian"}
        ``"box"``: the normalised kernel of eqs 5-6, i.e. ``Uniform(-R, R)``
        plus ``Logistic(0, 1/(2k))`` noise (only the uniform hypercube of eq 8
        at ``k = inf``), the exact sampler of PAPER-NOTES section 1.
        ``"gaussian"``: the heat kernel of eq 1, ``N(0, 1/gamma)`` per coordinate.
    R, k : float
        Box half side and sharpness.
    gamma : float
        Heat-kernel precision (required for ``"gaussian"``).

    Returns
    -------
    dict name -> tensor of shape ``(y, *p.shape)``

    Notes
    -----
    With a CUDA (or other non-CPU) generator the draws are
    :func:`anisotropy.kernels.sample_kernel` / :func:`~anisotropy.kernels.sample_heat`
    on that generator.  A CPU generator is slow (one Mersenne-Twister stream,
    ~4 ns per float here: a quarter of a smoothed MLP step), so on CPU the
    generator only supplies 124-bit keys of independent numpy PCG64 streams,
    one per block of :data:`BLOCK` coordinates, filled in parallel on
    ``torch.get_num_threads()`` threads with the same laws; the draws do not
    depend on the number of threads.
    """
    return start_perturbations(params, y, generator=generator, kernel=kernel, R=R, k=k,
                               gamma=gamma).result()
