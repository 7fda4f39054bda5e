r"""Candidate cooling laws :math:`f(t)` of the late common-decay regime, as objects.

Section 2.1 of the paper describes a late regime in which the signal of every layer
decays as :math:`s_I(t) = A_I f(t)`.  Each candidate is a subclass of :class:`Law` that
owns everything the analysis needs to know about it: its name, its parameters, their
box bounds, a closed-form starting point from the data, :math:`g(t) = \ln f(t)` with its
analytic Jacobian with respect to *internal* parameters chosen so that the fit is well
conditioned (logarithms of time scales), derived quantities, and the laws it nests
(used by the likelihood-ratio tests of :mod:`analysis.cooling.selection`).

============================== ============================================== ======================
name                           :math:`g(t) = \ln f(t)`                        internal parameters
============================== ============================================== ======================
``exponential``                :math:`-t/\tau`                                :math:`\ln\tau`
``stretched_exponential``      :math:`-(t/\tau)^\beta`                        :math:`\ln\tau, \beta`
``power_law``                  :math:`-p \ln t`                               :math:`p`
``stretched_then_exponential`` :math:`-(t/\tau)^\beta` if :math:`t \le t_c`,  :math:`\ln\tau,\beta,`
                               then continued exponentially with matching     :math:`\ln t_c`
                               value and slope:
                               :math:`-q_c[1 + \beta(t/t_c - 1)]`,
                               :math:`q_c = (t_c/\tau)^\beta`
============================== ============================================== ======================

The last law is the "sub-exponential cooling possibly turning exponential at
asymptotically late times" of section 2.1; it is :math:`C^1` in ``t`` and in its
parameters, its late exponential time scale is
:math:`\tau_{late} = t_c / (\beta q_c)` (reported as the derived ``tau_late``), and it
reduces to the stretched exponential when :math:`t_c` reaches the end of the window.

Adding a law: write one subclass of :class:`Law`.  A law used only by its author is
passed as an object wherever a law name is accepted (``fit_law``, ``compare``,
``CoolingConfig.laws``, ``SyntheticSpec.law``); a built-in law is also decorated with
``@_builtin`` and named in :data:`LawName` (checked when this module is imported).

Amplitudes are not part of a law: :math:`\ln A_I` is fitted per layer and
profiled out by :mod:`analysis.cooling.fit`.  Time ``t`` is the epoch counted
from the start of training (the laws are not invariant under a shift of ``t``).
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal, get_args

import numpy as np

from anisotropy.validation import check_choice

__all__ = [
    "LAW_NAMES",
    "LawName",
    "LawLike",
    "Law",
    "Nesting",
    "Side",
    "get_law",
    "law_name",
    "nests",
    "log_f",
    "evaluate",
    "initial_guess",
    "Exponential",
    "StretchedExponential",
    "PowerLaw",
    "StretchedThenExponential",
]

LawName = Literal["exponential", "stretched_exponential", "power_law", "stretched_then_exponential"]
LAW_NAMES: tuple[LawName, ...] = get_args(LawName)
Side = Literal["below", "above"]

#: bounds of the stretching exponent beta: below 0.01 the stretched exponential is
#: numerically a power law (-(t/tau)^beta ~ -1 - beta ln(t/tau)) and tau runs off to
#: exp(-1/beta)-sized values; above 4 it is a compressed exponential no cooling curve shows.
BETA_BOUNDS = (0.01, 4.0)
#: ln(tau) may range from ln(t_max) - 40 (then (t/tau)^beta <= e^(4*40+...) stays far from
#: overflow) to ln(t_max) + 20 (a time scale e^20 times the run: no decay at all).
LOG_TAU_BELOW, LOG_TAU_ABOVE = 40.0, 20.0
#: starting points are moved this far inside their box: the trust-region solver needs an
#: interior start, and 1e-9 is far below any parameter's resolution.
START_PAD = 1e-9
#: stretching exponents tried for the starting point of the stretched laws
_BETA_GRID = np.array([0.1, 0.2, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0])
#: starting crossover times t_c of the stretched-then-exponential law, as fractions of the
#: window's span in ln t (its objective is multimodal in t_c)
_TC_FRACTIONS = (0.25, 0.5, 0.75)


@dataclass(frozen=True)
class Nesting:
    """The law called ``law`` is the nesting law with natural parameter ``param`` at ``value``.

    Attributes
    ----------
    law : str
        Name of the nested (null) law.
    param : str
        Natural parameter of the nesting law that is fixed under the null.
    value : float
        Its null value (``inf`` for a limit, e.g. ``t_c`` beyond the end of the window).
    regular : bool
        Whether the likelihood ratio has a chi-square reference.  False when another
        parameter is not identified under the null (Davies 1977): the pair is then
        compared by the information criteria only.
    side : {"below", "above"}
        The one-sided alternative of interest (``param < value`` or ``param > value``),
        for the boundary-mixture p value of :func:`analysis.cooling.selection.lrt_nested`.
    """

    law: str
    param: str
    value: float
    regular: bool = True
    side: Side = "below"


class Law(ABC):
    """A cooling law ``f(t)`` with shape parameters (subclass it to add a law).

    Class attributes to set: ``name``; ``params`` (natural parameter names, as written to
    ``cooling.json``); ``log_params`` (per parameter, whether the fit works with its
    logarithm: natural = exp(internal), for positive time scales); optionally ``nests``
    (the :class:`Nesting` of each law this one contains).  Methods to write:
    :meth:`bounds`, :meth:`log_f`, :meth:`initial_guess`; optionally :meth:`derived`.
    """

    name: ClassVar[str]
    params: ClassVar[tuple[str, ...]]
    log_params: ClassVar[tuple[bool, ...]]
    nests: ClassVar[tuple[Nesting, ...]] = ()

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if inspect.isabstract(cls):
            return
        for attr in ("name", "params", "log_params"):
            if not hasattr(cls, attr):
                raise TypeError(f"law class {cls.__name__} must set the class attribute {attr!r}")
        if not isinstance(cls.name, str) or not cls.name:
            raise TypeError(f"{cls.__name__}.name must be a non-empty str, got {cls.name!r}")
        if len(cls.log_params) != len(cls.params):
            raise TypeError(
                f"{cls.__name__}.log_params must have one entry per parameter "
                f"{cls.params}, got {cls.log_params!r}"
            )
        for n in cls.nests:
            if n.param not in cls.params:
                raise TypeError(
                    f"{cls.__name__}.nests names parameter {n.param!r}; valid: {cls.params}"
                )

    @property
    def n_params(self) -> int:
        return len(self.params)

    @property
    def internal(self) -> tuple[str, ...]:
        """Internal parameter names (``log_tau``, ``beta``, ``p``, ``log_t_c``)."""
        return tuple(
            f"log_{n}" if lg else n for n, lg in zip(self.params, self.log_params, strict=True)
        )

    @abstractmethod
    def bounds(self, t_lo: float, t_hi: float) -> tuple[np.ndarray, np.ndarray]:
        """Box bounds ``(lo, hi)`` of the internal parameters for a window ``[t_lo, t_hi]``."""

    @abstractmethod
    def log_f(self, t: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``g(t) = ln f(t)`` (shape ``(n,)``) and ``dg/dz`` (shape ``(n, p)``).

        ``t`` is a float array of epochs (> 0), ``z`` the float vector of internal parameters.
        """

    @abstractmethod
    def initial_guess(self, t: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
        """Starting points (internal parameters, inside :meth:`bounds` of ``[t.min(), t.max()]``).

        ``t`` and ``y`` (shape ``(n,)``) are epochs and a layer-averaged log signal with zero
        mean (per-layer means removed); the law's amplitude is a free constant.
        """

    def derived(self, params: dict[str, float]) -> dict[str, float]:
        """Quantities a reader wants computed from the natural ``params`` (default: none)."""
        return {}

    def to_natural(self, z: np.ndarray) -> dict[str, float]:
        """Internal parameter vector -> ``{natural name: value}``."""
        return {
            n: float(np.exp(v) if lg else v)
            for n, v, lg in zip(self.params, z, self.log_params, strict=True)
        }

    def to_internal(self, params: dict[str, float]) -> np.ndarray:
        """``{natural name: value}`` -> internal parameter vector (ValueError on missing names)."""
        missing = [n for n in self.params if n not in params]
        if missing:
            raise ValueError(
                f"params of law {self.name!r} must contain {list(self.params)}; missing {missing}"
            )
        vals = [float(params[n]) for n in self.params]
        for n, v, lg in zip(self.params, vals, self.log_params, strict=True):
            if lg and not v > 0:
                raise ValueError(f"{n} of law {self.name!r} must lie in (0, inf), got {v!r}")
        return np.array(
            [np.log(v) if lg else v for v, lg in zip(vals, self.log_params, strict=True)]
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, params={self.params!r})"


LawLike = LawName | Law

_REGISTRY: dict[str, Law] = {}


def _builtin(cls: type[Law]) -> type[Law]:
    """Register one instance of a built-in law under its name."""
    _REGISTRY[cls.name] = cls()
    return cls


# ------------------------------------------------------------------ helpers of the built-ins
def _log_tau_range(t_hi: float) -> tuple[float, float]:
    lt = np.log(t_hi)
    return lt - LOG_TAU_BELOW, lt + LOG_TAU_ABOVE


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of centred ``y`` on ``x``."""
    xc = x - x.mean()
    return float(xc @ y / max(xc @ xc, np.finfo(float).tiny))


def _stretched_start(t: np.ndarray, y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``(ln tau, beta)`` of ``y ~ -c t^beta + const``: the best beta of the grid with ``c > 0``
    (linear least squares in closed form at each beta)."""
    best, z = np.inf, np.array([np.log(t.max()), 1.0])
    for b in _BETA_GRID:
        x = t**b
        c = -_slope(x, y)
        if c <= 0:
            continue
        xc = x - x.mean()
        rss = float(np.sum((y + c * xc) ** 2))
        if rss < best:
            best, z = rss, np.array([-np.log(c) / b, b])
    return np.clip(z, lo + START_PAD, hi - START_PAD)


# ------------------------------------------------------------------ the built-in laws
@_builtin
class Exponential(Law):
    r""":math:`g = -t/\tau`; the stretched exponential at :math:`\beta = 1`."""

    name = "exponential"
    params = ("tau",)
    log_params = (True,)

    def bounds(self, t_lo, t_hi):
        lo, hi = _log_tau_range(t_hi)
        return np.array([lo]), np.array([hi])

    def log_f(self, t, z):
        g = -t * np.exp(-z[0])
        return g, (-g)[:, None]

    def initial_guess(self, t, y):
        lo, hi = self.bounds(t.min(), t.max())
        rate = -_slope(t, y)  # ln f is linear in 1/tau
        z = np.log(1.0 / rate) if rate > 0 else hi[0] - 1.0
        return [np.clip(np.array([z]), lo + START_PAD, hi - START_PAD)]


@_builtin
class StretchedExponential(Law):
    r""":math:`g = -(t/\tau)^\beta`; nests the exponential at :math:`\beta = 1` (interior)."""

    name = "stretched_exponential"
    params = ("tau", "beta")
    log_params = (True, False)
    nests = (Nesting("exponential", "beta", 1.0, regular=True, side="below"),)

    def bounds(self, t_lo, t_hi):
        lo, hi = _log_tau_range(t_hi)
        return np.array([lo, BETA_BOUNDS[0]]), np.array([hi, BETA_BOUNDS[1]])

    def log_f(self, t, z):
        x = np.log(t) - z[0]  # ln(t/tau)
        q = np.exp(z[1] * x)  # (t/tau)^beta
        jac = np.empty((t.size, 2))
        jac[:, 0] = z[1] * q
        jac[:, 1] = -q * x
        return -q, jac

    def initial_guess(self, t, y):
        lo, hi = self.bounds(t.min(), t.max())
        return [_stretched_start(t, y, lo, hi)]


@_builtin
class PowerLaw(Law):
    r""":math:`g = -p \ln t`."""

    name = "power_law"
    params = ("p",)
    log_params = (False,)

    def bounds(self, t_lo, t_hi):
        return np.array([-np.inf]), np.array([np.inf])

    def log_f(self, t, z):
        lt = np.log(t)
        return -z[0] * lt, (-lt)[:, None]

    def initial_guess(self, t, y):
        return [np.array([-_slope(np.log(t), y)])]


@_builtin
class StretchedThenExponential(Law):
    r"""Stretched exponential up to :math:`t_c`, continued exponentially (:math:`C^1`).

    Nests the stretched exponential as :math:`t_c` reaches the end of the window, where
    :math:`t_c` is not identified: no chi-square reference (Davies 1977).
    """

    name = "stretched_then_exponential"
    params = ("tau", "beta", "t_c")
    log_params = (True, False, True)
    nests = (Nesting("stretched_exponential", "t_c", math.inf, regular=False, side="above"),)

    def bounds(self, t_lo, t_hi):
        lo, hi = _log_tau_range(t_hi)
        return (
            np.array([lo, BETA_BOUNDS[0], np.log(t_lo)]),
            np.array([hi, BETA_BOUNDS[1], np.log(t_hi)]),
        )

    def log_f(self, t, z):
        lt = np.log(t)
        log_tau, beta, log_tc = z
        x = lt - log_tau
        q = np.exp(beta * x)
        g = -q
        jac = np.zeros((t.size, 3))
        jac[:, 0] = beta * q
        jac[:, 1] = -q * x
        late = lt > log_tc
        if np.any(late):
            xc = log_tc - log_tau
            qc = np.exp(beta * xc)
            r = t[late] * np.exp(-log_tc)  # t / t_c  (> 1)
            lin = 1.0 + beta * (r - 1.0)
            g[late] = -qc * lin
            jac[late, 0] = beta * qc * lin
            jac[late, 1] = -qc * xc * lin - qc * (r - 1.0)
            jac[late, 2] = -qc * beta * (1.0 - beta) * (1.0 - r)
        return g, jac

    def initial_guess(self, t, y):
        lo, hi = self.bounds(t.min(), t.max())
        z = _stretched_start(t, y, lo[:2], hi[:2])
        span = np.log(t.max()) - np.log(t.min())
        return [
            np.clip(
                np.array([z[0], z[1], np.log(t.min()) + f * span]), lo + START_PAD, hi - START_PAD
            )
            for f in _TC_FRACTIONS
        ]

    def derived(self, params):
        qc = (params["t_c"] / params["tau"]) ** params["beta"]
        return {"tau_late": float(params["t_c"] / (params["beta"] * qc))}


if set(_REGISTRY) != set(LAW_NAMES):  # the two lists of this module must agree
    raise RuntimeError(f"LawName {LAW_NAMES} and the @_builtin laws {tuple(_REGISTRY)} differ")
_REGISTRY = {n: _REGISTRY[n] for n in LAW_NAMES}


# ------------------------------------------------------------------ lookup and evaluation
def get_law(law: LawLike | str) -> Law:
    """The :class:`Law` named ``law`` (ValueError listing the valid names), or ``law`` itself."""
    if isinstance(law, Law):
        return law
    if isinstance(law, type) and issubclass(law, Law):
        raise TypeError(
            f"law must be a Law instance, got the class {law.__name__}; pass {law.__name__}()"
        )
    if not isinstance(law, str):
        raise TypeError(
            f"law must be a law name ({', '.join(map(repr, LAW_NAMES))}) or a Law "
            f"instance, got {type(law).__name__}"
        )
    check_choice("law", law, LAW_NAMES)
    return _REGISTRY[law]


def law_name(law: LawLike) -> str:
    """The name of ``law`` (a name or a :class:`Law`)."""
    return get_law(law).name


def nests(outer: LawLike, inner: str) -> bool:
    """Whether law ``outer`` contains the law named ``inner``, directly or through registered
    intermediate laws (nesting is transitive)."""
    todo, seen = [get_law(outer)], set()
    while todo:
        law = todo.pop()
        for n in law.nests:
            if n.law == inner:
                return True
            if n.law in _REGISTRY and n.law not in seen:
                seen.add(n.law)
                todo.append(_REGISTRY[n.law])
    return False


def log_f(law: LawLike, t: np.ndarray, params: dict[str, float]) -> np.ndarray:
    """``ln f(t)`` of ``law`` at natural ``params`` (shape of ``t``), e.g. for plotting."""
    lw = get_law(law)
    t = np.asarray(t, dtype=np.float64)
    if np.any(~(t > 0)):
        raise ValueError("t must be > 0 (epochs counted from the start of training)")
    return lw.log_f(t.ravel(), lw.to_internal(params))[0].reshape(t.shape)


def evaluate(
    law: LawLike, t: np.ndarray, params: dict[str, float], log_amplitude: float = 0.0
) -> np.ndarray:
    """``ln s(t) = ln A + ln f(t)``: the fitted curve of one layer on a natural-log axis."""
    return float(log_amplitude) + log_f(law, t, params)


def initial_guess(law: LawLike, t: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """Starting points (internal parameters) of ``law`` for epochs ``t`` and log signal ``y``.

    ``y`` is centred here, then :meth:`Law.initial_guess` fits ``g`` in closed form (``ln f``
    is linear in ``1/tau``, in ``tau^-beta`` at fixed ``beta``, or in ``p``); several starts
    are returned for the three-parameter law, whose objective is multimodal in ``t_c``.
    """
    lw = get_law(law)
    t = np.asarray(t, float)
    y = np.asarray(y, float) - np.mean(y)
    return lw.initial_guess(t, y)
