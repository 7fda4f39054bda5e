"""Kernel names of configurations and the command line, and the one conversion to objects.

:data:`KERNEL_CLASSES` maps each name of :data:`KernelName` to its
:class:`~anisotropy.kernels.Kernel` class; :func:`as_kernel` turns a name and its
parameters, or an instance, into a kernel.  Every API that takes a kernel goes
through :func:`as_kernel`, so a new named kernel is one class plus one entry here.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal, get_args

from anisotropy.kernels.base import Kernel
from anisotropy.kernels.box import BoxKernel
from anisotropy.kernels.gaussian import GaussianKernel
from anisotropy.validation import check_choice

__all__ = ["KernelName", "KERNEL_NAMES", "KERNEL_CLASSES", "as_kernel", "kernel_parameters"]

#: the kernel families by name: ``box`` is K_{R,k} of eqs 5-8 (``k = inf``: the
#: hard hypercube), ``gaussian`` the heat kernel of eq 1
KernelName = Literal["box", "gaussian"]
KERNEL_NAMES: tuple[str, ...] = get_args(KernelName)
KERNEL_CLASSES: dict[str, type[Kernel]] = {"box": BoxKernel, "gaussian": GaussianKernel}


def kernel_parameters(name: str) -> Mapping[str, Any]:
    """Constructor parameters of the kernel ``name``: ``{parameter: default}``
    (``inspect.Parameter.empty`` for a required one)."""
    return _parameters(check_choice("kernel", name, KERNEL_NAMES))


@functools.cache
def _parameters(name: str) -> Mapping[str, Any]:
    sig = inspect.signature(KERNEL_CLASSES[name])
    return MappingProxyType({p.name: p.default for p in sig.parameters.values()})


def _unset(param: str, value: Any) -> bool:
    """``None``, or the default value of ``param`` in the kernel that declares it."""
    if value is None:
        return True
    return any(
        param in ps and ps[param] is not inspect.Parameter.empty and ps[param] == value
        for ps in map(kernel_parameters, KERNEL_NAMES)
    )


def _misplaced(name: str, extra: list[str]) -> ValueError:
    for owner in KERNEL_NAMES:
        own = list(kernel_parameters(owner))
        if owner != name and extra[0] in own:
            one = len(own) == 1
            return ValueError(
                f"{' and '.join(own)} appl{'ies' if one else 'y'} only to "
                f"kernel={owner!r}; leave {'it' if one else 'them'} unset for {name!r}"
            )
    takes = ", ".join(kernel_parameters(name))
    return ValueError(f"unknown parameter {extra[0]!r} for kernel {name!r}; it takes {takes}")


def as_kernel(spec: Kernel | str, /, *, scale: float | None = None, **params: Any) -> Kernel:
    """A :class:`~anisotropy.kernels.Kernel` from an instance or a name and its parameters.

    Parameters
    ----------
    spec : Kernel or {"box", "gaussian"}
        An instance is returned as is (it carries its own parameters; every
        entry of ``params`` must then be unset).
    scale : float, optional
        Used only when the named kernel's required parameters are missing:
        ``cls.from_scale(scale, **params)`` (the ``R`` of the training
        configuration: the box's half side, the heat kernel's standard deviation).
    **params
        Constructor parameters (``R``, ``k`` for ``"box"``; ``gamma`` for
        ``"gaussian"``).  ``None``, or the declaring kernel's default (``k = inf``),
        counts as unset; a parameter of another kernel that is set is an error.

    Raises
    ------
    ValueError
        Unknown name (the message lists the valid ones), a missing required
        parameter, a parameter of another kernel, or an out-of-range value.
    TypeError
        ``spec`` is neither a :class:`Kernel` nor a string.
    """
    if isinstance(spec, Kernel):
        given = [p for p, v in params.items() if not _unset(p, v)]
        if given:
            raise ValueError(
                f"{', '.join(given)} must be left unset when kernel is a "
                f"{type(spec).__name__} instance (it carries its own parameters)"
            )
        return spec
    if not isinstance(spec, str):
        raise TypeError(
            f"kernel must be a Kernel instance or one of the names "
            f"{', '.join(map(repr, KERNEL_NAMES))}, got {type(spec).__name__}"
        )
    own = kernel_parameters(spec)
    extra = [p for p, v in params.items() if p not in own and not _unset(p, v)]
    if extra:
        raise _misplaced(spec, extra)
    kwargs = {p: v for p, v in params.items() if p in own and v is not None}
    missing = [p for p, d in own.items() if d is inspect.Parameter.empty and p not in kwargs]
    cls = KERNEL_CLASSES[spec]
    if not missing:
        return cls(**kwargs)
    if scale is None:
        raise ValueError(
            f"{missing[0]} is required for kernel={spec!r} (it takes {', '.join(own)})"
        )
    return cls.from_scale(scale, **kwargs)
