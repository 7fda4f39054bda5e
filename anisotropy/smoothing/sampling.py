"""Choosing the smoothed parameters and drawing their perturbations.

The partial losses of the paper (eqs 13-23) smooth the loss along a subset
``U`` of the coordinates of weight space.  Here ``U`` is a set of whole
parameter tensors picked by name (section 3 of the paper): in the paper whole
layers' weight matrices, never biases (footnote 15).

* :func:`select_parameters` turns layer names, parameter names or glob
  patterns into the tuple of smoothed parameter names.
* :func:`sample_perturbations` draws the ``y`` displacements
  :math:`\\Delta W^a` of every smoothed tensor from the normalised kernel, any
  :class:`anisotropy.kernels.Kernel` (the box kernel of eqs 5-8, the heat kernel
  of eq 1, or a user's subclass); with ``antithetic=True`` as pairs
  :math:`(\\Delta W, -\\Delta W)` sharing one draw.
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

from anisotropy.kernels import KERNEL_NAMES, Kernel, KernelName, as_kernel
from anisotropy.validation import check_int

__all__ = [
    "Kernel",
    "KernelName",
    "KERNELS",
    "DEFAULT_R",
    "BLOCK",
    "is_bias",
    "select_parameters",
    "PendingDraws",
    "resolve_kernel",
    "check_antithetic",
    "start_perturbations",
    "sample_perturbations",
]

KERNELS: tuple[str, ...] = KERNEL_NAMES  # the names are defined once, in anisotropy.kernels
#: ``R`` of the keyword form ``kernel="box"`` when none is given (the smallest
#: radius of the paper's experiments)
DEFAULT_R = 0.01


def is_bias(name: str) -> bool:
    """True for a parameter whose own (last) name is ``bias``."""
    return name.rsplit(".", 1)[-1] == "bias"


def _valid_names(params: dict[str, nn.Parameter], modules: dict[str, nn.Module]) -> str:
    return (
        "parameters: "
        + ", ".join(params)
        + "; modules: "
        + ", ".join(n for n, m in modules.items() if any(True for _ in m.parameters()))
    )


def select_parameters(
    model: nn.Module, layers: str | Iterable[str], *, include_biases: bool = False
) -> tuple[str, ...]:
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
                raise ValueError(
                    f"layers entry {entry!r} is a bias; biases are smoothed only "
                    "with include_biases=True (the paper never smooths them)"
                )
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
            raise ValueError(
                f"layers entry {entry!r} matches no parameter or module; valid "
                f"{_valid_names(params, modules)}"
            )
        kept = [n for n in hits if include_biases or not is_bias(n)]
        if not kept:
            raise ValueError(
                f"layers entry {entry!r} only matches biases ({', '.join(hits)}); "
                "pass include_biases=True to smooth them"
            )
        chosen.update(kept)
    return tuple(n for n in params if n in chosen)


# Draws are made in blocks of this many coordinates, each from its own numpy
# SFC64 stream keyed by 124 bits taken from the torch generator: the block size
# only depends on the tensor sizes (never on the thread count), so the draws are
# the same however many threads fill them.  2**18 floats (1 MiB) is large
# enough that seeding a stream (~20 us) is negligible and small enough that a
# 784x784 layer splits across a handful of threads.  SFC64 (a small chaotic
# generator with a counter, seeded from the key through SeedSequence) gives its raw
# words ~10 % faster than PCG64 and several times faster than Philox here.
BLOCK = 1 << 18
_SEED_HIGH = 1 << 62  # seed words in [0, 2**62): two per block, 124 bits

_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _pool() -> ThreadPoolExecutor:
    """A process-wide thread pool, rebuilt after a fork (threads do not survive one)."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (
            os.getpid(),
            ThreadPoolExecutor(
                max_workers=os.cpu_count() or 1, thread_name_prefix="anisotropy-rng"
            ),
        )
    return _POOL[1]


def _fill_block(out: np.ndarray, seed: list[int], kernel: Kernel) -> None:
    """Fill ``out`` (1-D, float32/64) with draws from the normalised kernel."""
    kernel.sample_into(out, np.random.SFC64(np.random.SeedSequence(seed)))


class PendingDraws:
    """Displacements being drawn, possibly in background threads.

    Attributes
    ----------
    names : tuple of str
        The parameters they perturb, in order.
    y : int
        Number of displacements per parameter.
    antithetic : bool
        Rows ``a`` and ``a + y/2`` of every tensor are opposite, ``(dW, -dW)``.
    """

    def __init__(
        self,
        names: tuple[str, ...],
        y: int,
        finish: Callable[[], dict[str, torch.Tensor]],
        *,
        antithetic: bool = False,
    ) -> None:
        self.names, self.y, self.antithetic = names, y, antithetic
        self._finish = finish
        self._value: dict[str, torch.Tensor] | None = None

    def result(self) -> dict[str, torch.Tensor]:
        """Wait for the draws: dict name -> tensor (y, *param.shape)."""
        if self._value is None:
            self._value = self._finish()
        return self._value


def _fill_jobs(jobs: list[tuple]) -> None:
    for j in jobs:
        _fill_block(*j)


def resolve_kernel(
    kernel: Kernel | KernelName, R: float | None, k: float | None, gamma: float | None
) -> Kernel:
    """The kernel of the keyword forms ``kernel=instance`` or ``kernel=name, R=..., k=...``.

    (``gamma=...`` too for the heat kernel.)

    For a name, ``R`` (default :data:`DEFAULT_R`) is the scale used when the
    kernel's own parameters leave it open: the box's half side, the heat
    kernel's standard deviation when ``gamma`` is ``None``
    (:func:`anisotropy.kernels.as_kernel`).  An instance carries its own
    parameters: ``R``, ``k`` and ``gamma`` must then be left unset.
    """
    if isinstance(kernel, Kernel):
        return as_kernel(kernel, R=R, k=k, gamma=gamma)
    return as_kernel(kernel, scale=DEFAULT_R if R is None else R, k=k, gamma=gamma)


def start_perturbations(
    params: Sequence[tuple[str, torch.Tensor]],
    y: int,
    *,
    generator: torch.Generator,
    kernel: Kernel | KernelName = "box",
    R: float | None = None,
    k: float | None = None,
    gamma: float | None = None,
    antithetic: bool = False,
) -> PendingDraws:
    r"""Start drawing ``y`` displacements :math:`\Delta W^a` of each smoothed tensor.

    The generator is consumed now; on CPU with ``torch.get_num_threads() > 1``
    the blocks are filled by background threads while the caller goes on (the
    smoothed losses evaluate the network before the cut meanwhile), and
    :meth:`PendingDraws.result` waits for them.  Arguments and laws as in
    :func:`sample_perturbations`.
    """
    y = check_int("y", y, minimum=0)
    kern = (
        kernel
        if isinstance(kernel, Kernel) and R is None and k is None and gamma is None
        else resolve_kernel(kernel, R, k, gamma)
    )
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    antithetic = check_antithetic(antithetic, y, kern)
    drawn = y // 2 if antithetic else y  # independent draws per parameter
    names = tuple(n for n, _ in params)
    shapes = [(y, *p.shape) for _, p in params]
    if generator.device.type != "cpu":
        out = {}
        for (name, p), shape in zip(params, shapes, strict=True):
            d = kern.sample(
                (drawn, *shape[1:]), generator=generator, dtype=p.dtype, device=generator.device
            )
            out[name] = (torch.cat([d, -d]) if antithetic else d).to(p.device)
        return PendingDraws(names, y, lambda: out, antithetic=antithetic)
    sizes = [drawn * math.prod(sh[1:]) for sh in shapes]
    counts = [-(-size // BLOCK) for size in sizes]
    seeds = torch.randint(0, _SEED_HIGH, (sum(counts), 2), generator=generator).tolist()
    flats: list[np.ndarray] = []
    jobs: list[tuple] = []
    for (_, p), shape, size in zip(params, shapes, sizes, strict=True):
        flat = np.empty(
            math.prod(shape), dtype=np.float64 if p.dtype == torch.float64 else np.float32
        )
        flats.append(flat)
        for i in range(-(-size // BLOCK)):
            jobs.append((flat[i * BLOCK : min((i + 1) * BLOCK, size)], seeds[len(jobs)], kern))
    workers = min(torch.get_num_threads(), len(jobs))
    futures = []
    if workers > 1:  # numpy releases the GIL while it fills; torch's thread budget
        futures = [_pool().submit(_fill_jobs, jobs[w::workers]) for w in range(workers)]
    else:
        _fill_jobs(jobs)

    def finish() -> dict[str, torch.Tensor]:
        for f in futures:
            f.result()
        if antithetic:  # the second half: the first one negated (exact in floating point)
            for flat, size in zip(flats, sizes, strict=True):
                np.negative(flat[:size], out=flat[size:])
        return {
            name: torch.from_numpy(flat).reshape(shape).to(dtype=p.dtype, device=p.device)
            for (name, p), shape, flat in zip(params, shapes, flats, strict=True)
        }

    return PendingDraws(names, y, finish, antithetic=antithetic)


def check_antithetic(antithetic: object, y: int, kernel: Kernel) -> bool:
    """Validate ``antithetic``: a bool; when true, ``y`` even and ``kernel`` symmetric.

    Raises
    ------
    TypeError
        If ``antithetic`` is not a bool.
    ValueError
        If ``antithetic`` and ``y`` is odd (the draws come in pairs).
    NotImplementedError
        If ``antithetic`` and the kernel does not declare ``symmetric = True`` (``-dW``
        must have the law of ``dW``).
    """
    if not isinstance(antithetic, (bool, np.bool_)):
        raise TypeError(f"antithetic must be a bool, got {type(antithetic).__name__}")
    if antithetic:
        if y % 2:
            raise ValueError(
                f"y must be even with antithetic=True (pairs dW, -dW share one draw), got {y}"
            )
        kernel.require("symmetric", needed_by="antithetic pairs (antithetic=True)")
    return bool(antithetic)


def sample_perturbations(
    params: Sequence[tuple[str, torch.Tensor]],
    y: int,
    *,
    generator: torch.Generator,
    kernel: Kernel | KernelName = "box",
    R: float | None = None,
    k: float | None = None,
    gamma: float | None = None,
    antithetic: bool = False,
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
    kernel : Kernel or {"box", "gaussian"}
        The law of each coordinate is the normalised kernel
        (:meth:`anisotropy.kernels.Kernel.sample`).  ``BoxKernel(R, k)``: the
        kernel of eqs 5-6, ``Uniform(-R, R)`` plus ``Logistic(0, 1/(2k))`` noise
        (only the uniform hypercube of eq 8 at ``k = inf``); ``GaussianKernel(gamma)``:
        the heat kernel of eq 1, ``N(0, 1/gamma)`` per coordinate.  A name is
        converted by :func:`resolve_kernel` with ``R``, ``k``, ``gamma``.
    R, k, gamma : float, optional
        Parameters of the name form only (``R`` defaults to :data:`DEFAULT_R`).
    antithetic : bool, keyword-only
        Draw ``y / 2`` displacements and append their negatives: rows ``a`` and
        ``a + y/2`` are the pair :math:`(\Delta W, -\Delta W)`.  Every row still has
        the kernel's law (the kernel must declare ``symmetric = True``), so the
        partial losses stay unbiased; ``y`` must be even.

    Returns
    -------
    dict name -> tensor of shape ``(y, *p.shape)``

    Notes
    -----
    With a CUDA (or other non-CPU) generator the draws are
    :meth:`~anisotropy.kernels.Kernel.sample` on that generator.  A CPU generator is
    slow (one Mersenne-Twister stream, ~4 ns per float here: a quarter of a smoothed
    MLP step), so on CPU the generator only supplies 124-bit keys of independent numpy
    SFC64 streams, one per block of :data:`BLOCK` coordinates, filled in parallel on
    ``torch.get_num_threads()`` threads with the same laws
    (:meth:`~anisotropy.kernels.Kernel.sample_into`, which builds float32 draws
    straight from the raw bits); the draws do not depend on the number of threads
    and are a deterministic function of the generator's state.
    """
    return start_perturbations(
        params,
        y,
        generator=generator,
        kernel=kernel,
        R=R,
        k=k,
        gamma=gamma,
        antithetic=antithetic,
    ).result()
