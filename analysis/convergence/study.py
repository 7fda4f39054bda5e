r"""Convergence studies of the free-entropy estimators on analytic references.

``anisotropy converge [--quick] [--out DIR]`` measures, against closed forms
(eqs 9-10 and 16 of the paper, :mod:`analysis.free_entropy.references`):

(a) **y -> inf.**  For ``y`` on a grid of powers of two, many seeded
    repetitions of each estimator of :func:`analysis.free_entropy.local_free_entropy`
    (``mc``, ``sobol``, ``antithetic``, ``control_variate``) on a coupled
    quadratic loss (:mod:`analysis.convergence.reference`) with the hard box
    kernel (``k = inf``): bias and standard deviation against the exact ``F``,
    their log-log slopes by weighted least squares (:mod:`analysis.convergence.rates`,
    :mod:`analysis.convergence.fits`), and the delta-method predictions
    ``std ~ sqrt(v/y)``, ``bias ~ v/(2y)`` with ``v = Var[e^-L]/E[e^-L]^2``
    computed exactly (:mod:`analysis.convergence.theory`), and their analogues
    for antithetic pairs and the control variate.
(b) **k -> inf.**  ``F(R, k) - F(R, inf)`` of the reference's separable part
    from the finite-k quadrature reference against the predicted ``C_2/k^2``
    (slope -2, exact constant).

The repetition count at each ``y`` is ``clip(budget // y, n_rep, max_rep)``:
the bias ``v/(2y)`` is resolved only where ``std/sqrt(n) = sqrt(v/(y n))`` is
well below it, i.e. ``n >> 4y/v``; a fixed evaluation budget per grid point buys
that at small and moderate ``y`` and costs no more than ``n_rep`` repetitions at
large ``y``.  Bias slopes are fitted only on points where the bias is
resolvable (its delta-method size ``std^2/2`` exceeds ``bias_z * bias_se``; see
:func:`fit_method`).

Outputs in ``--out`` (written atomically): ``convergence.csv`` (columns
:data:`CSV_COLUMNS`), ``summary.json`` (slopes with standard errors, predicted
vs measured constants, wall time, settings) and ``convergence.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
import warnings
from typing import Any

import numpy as np

from analysis.convergence.fits import fit_k_study, fit_method
from analysis.convergence.output import CSV_COLUMNS, write_study
from analysis.convergence.rates import RepetitionStats, repetition_stats
from analysis.convergence.reference import QuadraticReference
from analysis.free_entropy import METHODS, Method
from anisotropy.cli.args import add_dataclass_arguments, from_namespace
from anisotropy.io import check_output_dir
from anisotropy.validation import check_choice, check_int, check_positive

__all__ = [
    "Method",
    "METHODS",
    "CSV_COLUMNS",
    "ConvergeOptions",
    "QuadraticReference",
    "ConvergenceStudy",
    "resolve_options",
    "reference_from_options",
    "replicate",
    "run_convergence",
    "write_study",
    "main",
]

#: Full-study and --quick defaults of the options left as ``None``.
FULL_DEFAULTS: dict[str, Any] = dict(y_max_log2=17, n_rep=200, budget=2**24, k_max_log2=10)
QUICK_DEFAULTS: dict[str, Any] = dict(y_max_log2=12, n_rep=50, budget=2**21, k_max_log2=8)

#: Largest number of kernel draws (rows of N coordinates) held in memory at once by
#: the vectorised repetitions: 2^20 x N float64 is 32 MiB for N = 4.
CHUNK_DRAWS = 2**20


def _help(text: str) -> dict:
    return {"help": text}


@dataclasses.dataclass
class ConvergeOptions:
    """Settings of ``anisotropy converge`` (``None``: full or ``--quick`` default)."""

    quick: bool = dataclasses.field(
        default=False,
        metadata=_help("reduced grids and repetition counts (well under a minute on 2 cores)"),
    )
    out: str = dataclasses.field(default="runs/converge", metadata=_help("output directory"))
    seed: int = dataclasses.field(default=20261122, metadata=_help("master seed"))
    methods: list[Method] = dataclasses.field(
        default_factory=lambda: list(METHODS), metadata=_help("estimators to study")
    )
    y_min_log2: int = dataclasses.field(default=1, metadata=_help("smallest y = 2^this (>= 1)"))
    y_max_log2: int | None = dataclasses.field(
        default=None, metadata=_help("largest y = 2^this (full 17, quick 12)")
    )
    n_rep: int | None = dataclasses.field(
        default=None, metadata=_help("minimum repetitions per y (full 200, quick 50)")
    )
    budget: int | None = dataclasses.field(
        default=None,
        metadata=_help(
            "loss evaluations per grid point for mc/antithetic: "
            "n = clip(budget // y, n_rep, max_rep) (full 2^24, quick 2^21)"
        ),
    )
    max_rep: int = dataclasses.field(default=2**17, metadata=_help("most repetitions per y"))
    k_min_log2: int = dataclasses.field(default=1, metadata=_help("smallest k = 2^this"))
    k_max_log2: int | None = dataclasses.field(
        default=None, metadata=_help("largest k = 2^this (full 10, quick 8)")
    )
    lam: list[float] = dataclasses.field(
        default_factory=lambda: [1.0, 3.0, 9.0],
        metadata=_help("diagonal curvatures of the quadratic reference"),
    )
    coupling: float = dataclasses.field(
        default=0.5,
        metadata=_help(
            "rho of A = D^1/2 ((1-rho) I + rho 11^T) D^1/2 (0: separable; != 0 needs N <= 3)"
        ),
    )
    c: list[float] = dataclasses.field(
        default_factory=lambda: [0.2, -0.1, 0.3],
        metadata=_help("minimum of the quadratic reference"),
    )
    w: list[float] = dataclasses.field(
        default_factory=lambda: [0.0, 0.0, 0.0], metadata=_help("centre W at which F is estimated")
    )
    R: float = dataclasses.field(default=1.25, metadata=_help("box half side"))
    beta: float = dataclasses.field(default=1.0, metadata=_help("inverse temperature"))
    sobol_scramblings: int = dataclasses.field(
        default=2,
        metadata=_help(
            "sobol: y points = this many scrambled sequences of y/this points (a power of two >= 2)"
        ),
    )
    bias_z: float = dataclasses.field(
        default=3.0,
        metadata=_help(
            "a point enters the bias fit only if its expected bias std^2/2 > bias_z * bias_se"
        ),
    )
    std_fit_y_min: int = dataclasses.field(
        default=64, metadata=_help("std slopes and constants are fitted on y >= this")
    )
    bias_fit_y_min: int = dataclasses.field(
        default=16, metadata=_help("bias slopes and constants are fitted on y >= this")
    )
    k_fit_min: float = dataclasses.field(
        default=16.0,
        metadata=_help(
            "the k-slope is fitted on k * R >= this (for the default reference the O(k^-4) term is "
            "about 1 percent of the O(k^-2) one there, and the normaliser term e^{-4kR} < 1e-27)"
        ),
    )
    progress: bool = dataclasses.field(
        default=True, metadata=_help("a line per grid point on stderr")
    )


def resolve_options(options: ConvergeOptions) -> ConvergeOptions:
    """Fill the ``None`` fields from the full or quick defaults and validate everything.

    Raises
    ------
    ValueError
        Naming the offending option and its accepted range.
    """
    defaults = QUICK_DEFAULTS if options.quick else FULL_DEFAULTS
    o = dataclasses.replace(
        options, **{k: v for k, v in defaults.items() if getattr(options, k) is None}
    )
    if not o.methods:
        raise ValueError(f"methods must name at least one of {', '.join(METHODS)}")
    for m in o.methods:
        check_choice("method", m, METHODS)
    check_int("y_min_log2", o.y_min_log2, minimum=1, maximum=24)
    check_int("y_max_log2", o.y_max_log2, minimum=o.y_min_log2 + 1, maximum=24)
    n_rep = check_int("n_rep", o.n_rep, minimum=8)
    check_int("max_rep", o.max_rep, minimum=n_rep)
    check_int("budget", o.budget, minimum=1)
    check_int("k_min_log2", o.k_min_log2, minimum=-10, maximum=20)
    check_int("k_max_log2", o.k_max_log2, minimum=o.k_min_log2 + 1, maximum=20)
    check_int("std_fit_y_min", o.std_fit_y_min, minimum=1)
    check_int("bias_fit_y_min", o.bias_fit_y_min, minimum=1)
    for name in ("R", "beta", "bias_z", "k_fit_min"):
        check_positive(name, getattr(o, name))
    scr = check_int("sobol_scramblings", o.sobol_scramblings, minimum=2)
    if scr & (scr - 1):
        raise ValueError(f"sobol_scramblings must be a power of two >= 2, got {scr}")
    reference_from_options(o)  # validates lam, c, w, R, coupling, beta
    return o


def reference_from_options(o: ConvergeOptions) -> QuadraticReference:
    """The :class:`~analysis.convergence.reference.QuadraticReference` the options describe."""
    return QuadraticReference(
        lam=tuple(map(float, o.lam)),
        c=tuple(map(float, o.c)),
        w=tuple(map(float, o.w)),
        R=float(o.R),
        coupling=float(o.coupling),
        beta=float(o.beta),
    )


def _vectorised(
    method: str, ref: QuadraticReference, y: int, n_rep: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    r"""All repetitions of ``mc`` / ``antithetic`` at once, in chunks of :data:`CHUNK_DRAWS`.

    The normalised estimator of the free entropy (eq 10, normalised kernel),
    :math:`\hat F = -\log Z_K - \log \tfrac1y\sum_a e^{-\beta L(W + \Delta W_a)}`, with
    :math:`\Delta W_a` uniform in the box (``mc``) or ``y/2`` uniform draws and
    their mirror images :math:`-\Delta W_a` (``antithetic``).  Reliability as in
    ``local_free_entropy``: the weights' sample relative variance is at most
    :data:`analysis.free_entropy.RELVAR_LIMIT`.
    """
    from scipy.special import logsumexp

    from analysis.free_entropy import RELVAR_LIMIT
    from anisotropy.kernels import log_normaliser, sample_kernel

    loss = ref.loss()
    w = np.asarray(ref.w, dtype=np.float64)
    log_z = log_normaliser(ref.R, math.inf, ref.n)
    out = np.empty(n_rep)
    reliable = np.empty(n_rep, dtype=bool)
    per_chunk = max(1, CHUNK_DRAWS // y)
    for start in range(0, n_rep, per_chunk):
        m = min(per_chunk, n_rep - start)
        if method == "antithetic":
            half = sample_kernel((m, y // 2, ref.n), R=ref.R, rng=rng)
            dw = np.concatenate([half, -half], axis=1)
        else:
            dw = sample_kernel((m, y, ref.n), R=ref.R, rng=rng)
        log_x = -ref.beta * loss(w + dw)
        out[start : start + m] = -log_z - (logsumexp(log_x, axis=1) - math.log(y))
        u = np.exp(log_x - log_x.max(axis=1, keepdims=True))
        reliable[start : start + m] = u.var(axis=1, ddof=1) <= RELVAR_LIMIT * u.mean(axis=1) ** 2
    return out, reliable


def min_y(method: str, sobol_scramblings: int = 2) -> int:
    """Smallest ``y`` (a power of two) at which ``method`` runs.

    ``local_free_entropy`` needs ``y >= 3`` for the control variate (a
    coefficient and a mean from the same sample) and ``y >= 2`` points per
    scrambled Sobol sequence.
    """
    return {"sobol": 2 * sobol_scramblings, "control_variate": 4}.get(method, 2)


def replicate(
    method: str,
    ref: QuadraticReference,
    y: int,
    n_rep: int,
    seed: np.random.SeedSequence,
    *,
    vectorised: bool = True,
    sobol_scramblings: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """``n_rep`` independent estimates of ``F(R, inf; W)``, each from ``y`` loss evaluations.

    ``mc`` and ``antithetic`` are drawn all at once (``vectorised=True``: the
    estimator's definition on a batch of repetitions; the tests check that it
    agrees in law with :func:`analysis.free_entropy.local_free_entropy`).  The
    other methods, and all of them with ``vectorised=False``, call
    ``local_free_entropy`` once per repetition with its own seed from ``seed``:
    ``sobol`` as ``sobol_scramblings`` scrambled sequences of
    ``y / sobol_scramblings`` points (``y`` evaluations in all), and
    ``control_variate`` with ``y`` sample evaluations (plus ``2N + 1`` for its
    surrogate, not counted in ``y``).

    Parameters
    ----------
    method : {"mc", "sobol", "antithetic", "control_variate"}
    ref : QuadraticReference
    y : int
        Loss evaluations per estimate: a power of two ``>= min_y(method)``.
    n_rep : int
    seed : numpy.random.SeedSequence

    Returns
    -------
    estimates : ndarray, shape (n_rep,)
    reliable : ndarray of bool, shape (n_rep,)
        ``FreeEntropyResult.reliable`` of each repetition (weights' relative
        variance within ``RELVAR_LIMIT`` and no control-variate fallback); the
        :class:`~analysis.free_entropy.UnreliableEstimateWarning` of each
        unreliable repetition is silenced here and counted instead.
    """
    method_ = check_choice("method", method, METHODS)
    check_int("y", y, minimum=min_y(method, sobol_scramblings))
    check_int("n_rep", n_rep, minimum=1)
    if y & (y - 1):
        raise ValueError(f"y must be a power of two, got {y}")
    if vectorised and method in ("mc", "antithetic"):
        return _vectorised(method, ref, y, n_rep, np.random.default_rng(seed))
    from analysis.free_entropy import UnreliableEstimateWarning, local_free_entropy

    loss = ref.loss()
    w = np.asarray(ref.w, dtype=np.float64)
    kwargs: dict[str, Any] = dict(y=y)
    if method == "sobol":
        kwargs = dict(y=y // sobol_scramblings, n_scramblings=sobol_scramblings)
    out = np.empty(n_rep)
    reliable = np.empty(n_rep, dtype=bool)
    for i, s in enumerate(seed.generate_state(n_rep, dtype=np.uint64)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnreliableEstimateWarning)
            res = local_free_entropy(
                loss, w, R=ref.R, method=method_, beta=ref.beta, seed=int(s), **kwargs
            )
        out[i] = res.estimate
        reliable[i] = res.reliable
    return out, reliable


def _resolved(o: ConvergeOptions, name: str) -> int:
    """The option ``name`` of ``o``, which :func:`resolve_options` has filled in."""
    v = getattr(o, name)
    if v is None:
        raise ValueError(f"option {name} is unset: pass the options through resolve_options")
    return int(v)


def y_grid(o: ConvergeOptions) -> np.ndarray:
    """``2^y_min_log2, ..., 2^y_max_log2`` (int64)."""
    return 2 ** np.arange(o.y_min_log2, _resolved(o, "y_max_log2") + 1, dtype=np.int64)


def k_grid(o: ConvergeOptions) -> np.ndarray:
    """``2^k_min_log2, ..., 2^k_max_log2`` (float64)."""
    return 2.0 ** np.arange(o.k_min_log2, _resolved(o, "k_max_log2") + 1)


def repetitions_for(method: str, y: int, o: ConvergeOptions) -> int:
    """``clip(budget // y, n_rep, max_rep)`` for the vectorised methods, ``n_rep`` otherwise."""
    n_rep = _resolved(o, "n_rep")
    if method in ("mc", "antithetic"):
        return int(min(max(_resolved(o, "budget") // y, n_rep), o.max_rep))
    return n_rep


def _row(
    study: str,
    method: str,
    y: float,
    k: float,
    st: RepetitionStats | None,
    *,
    mean: float,
    exact: float,
    predicted_bias: float,
    predicted_std: float,
) -> dict:
    row = dict(
        study=study,
        method=method,
        y=y,
        k=k,
        n_rep=st.n if st else 0,
        mean=mean,
        exact=exact,
        bias=mean - exact,
        bias_se=st.bias_se if st else math.nan,
        std=st.std if st else math.nan,
        std_se=st.std_se if st else math.nan,
        rmse=st.rmse if st else abs(mean - exact),
        predicted_bias=predicted_bias,
        predicted_std=predicted_std,
        n_unreliable=0,
    )
    return row


@dataclasses.dataclass
class ConvergenceStudy:
    """Result of :func:`run_convergence`.

    Attributes
    ----------
    options : ConvergeOptions
        The resolved settings.
    reference : QuadraticReference
    exact : float
        ``F(R, inf; W)`` of the reference.
    rows : list of dict
        One per study / method / grid point, keys :data:`CSV_COLUMNS`.
    y_fits : dict
        Per method, the output of :func:`fit_method` plus RMSE ratios against ``mc``.
    k_fit : dict
        Output of :func:`fit_k_study`.
    wall_time_s : float
    """

    options: ConvergeOptions
    reference: QuadraticReference
    exact: float
    rows: list[dict]
    y_fits: dict[str, dict]
    k_fit: dict
    wall_time_s: float

    def summary(self) -> dict:
        """JSON-ready summary (what ``summary.json`` holds)."""
        return dict(
            settings=dataclasses.asdict(self.options),
            reference=self.reference.to_dict(),
            exact_free_entropy=self.exact,
            y_study=self.y_fits,
            k_study=self.k_fit,
            wall_time_s=self.wall_time_s,
            notes=self.notes(),
        )

    def notes(self) -> list[str]:
        """How the slopes and constants were obtained (also in ``summary.json``)."""
        o = self.options
        return [
            f"std slopes: WLS of log std on log y for y >= {o.std_fit_y_min}, "
            "se(log std) = sqrt(2/(n-1) + excess_kurtosis/n)/2",
            f"bias slopes: WLS of log bias on log y for y >= {o.bias_fit_y_min}, only on points "
            f"where the bias is resolvable: its delta-method size std^2/2 exceeds {o.bias_z:g} "
            "bias_se (a rule that does not look at the measured bias, so no selection bias); "
            "at larger y the bias is below the repetition noise and is not fitted",
            "constants: intercepts of std*sqrt(y) and bias*y against 1/y on the same points "
            "(the 1/y slope is the second-order delta-method coefficient, also predicted)",
            "expected_*_slope_finite_y: the slope the second-order prediction gives on the same "
            "points and weights",
            f"repetitions: mc/antithetic clip(budget // y, n_rep, max_rep) = clip({o.budget} // y, "
            f"{o.n_rep}, {o.max_rep}); sobol/control_variate {o.n_rep} local_free_entropy calls",
            f"sobol: {o.sobol_scramblings} scrambled sequences of y/{o.sobol_scramblings} points; "
            f"control_variate: y points plus 2N+1 surrogate evaluations",
            "k-study: separable part A -> diag(lam) (the finite-k reference is separable-only); "
            f"slope fitted on k R >= {o.k_fit_min:g}",
        ]

    def report(self) -> str:
        """Human-readable digest of slopes and constants."""

        def pm(fit, key="slope"):
            return "n/a" if not fit else f"{fit[key]:+.4f} +- {fit[key + '_se']:.4f}"

        ref = self.reference
        lines = [
            f"reference: N={ref.n} lam={list(ref.lam)} coupling={ref.coupling} R={ref.R}"
            f" beta={ref.beta}; exact F = {self.exact:.10g}"
        ]
        for m, f in self.y_fits.items():
            line = (
                f"{m:>15}: std slope {pm(f['std_slope'])} (y>={self.options.std_fit_y_min}), "
                f"bias slope {pm(f['bias_slope'])} on {len(f['bias_fit_y'])} resolvable points"
            )
            for name in ("std_constant", "bias_constant"):
                cst = f.get(name)
                if cst:
                    line += (
                        f"; {name.split('_')[0]}*y^p -> {cst['measured']:.4f} +- {cst['se']:.4f}"
                        f" (predicted {cst['predicted']:.4f}, ratio {cst['ratio']:.3f})"
                    )
            if "rmse_ratio_vs_mc" in f:
                line += (
                    f"; RMSE/RMSE_mc (y>={self.options.std_fit_y_min}) {f['rmse_ratio_vs_mc']:.3g}"
                )
            lines.append(line)
        k = self.k_fit
        slope = "n/a" if k["slope"] is None else f"{k['slope']:+.4f} +- {k['slope_se']:.4f}"
        lines.append(
            f"k-study: slope {slope} (expected -2); k^2 dF at k={k['fit_k'][-1]:g}: "
            f"{k['c2_measured_at_kmax']:.6f} vs C2 = {k['c2_predicted']:.6f}"
        )
        lines.append(
            f"bias slopes use only points with resolvable bias (std^2/2 > {self.options.bias_z:g}"
            f" bias_se, y >= {self.options.bias_fit_y_min}); see summary.json notes"
        )
        lines.append(f"wall time {self.wall_time_s:.1f} s")
        return "\n".join(lines)


def _log(enabled: bool, msg: str) -> None:
    if enabled:
        print(f"[converge] {msg}", file=sys.stderr, flush=True)


def run_convergence(options: ConvergeOptions) -> ConvergenceStudy:
    """Run the y- and k-studies of the module docstring (nothing is written to disk).

    Raises
    ------
    ValueError
        On invalid options (see :func:`resolve_options`).
    """
    t0 = time.perf_counter()
    o = resolve_options(options)
    ref = reference_from_options(o)
    exact = ref.exact()
    log_moments = ref.log_weight_moments()
    rows: list[dict] = []
    y_fits: dict[str, dict] = {}
    for method in o.methods:
        dm = ref.delta_method(method, log_moments)
        mrows = []
        for y in y_grid(o):
            y = int(y)
            if y < min_y(method, o.sobol_scramblings):
                continue
            t = time.perf_counter()
            n = repetitions_for(method, y, o)
            seq = np.random.SeedSequence([o.seed, METHODS.index(method), y])
            est, ok = replicate(method, ref, y, n, seq, sobol_scramblings=o.sobol_scramblings)
            st = repetition_stats(est, exact)
            row = _row(
                "y",
                method,
                y,
                math.inf,
                st,
                mean=st.mean,
                exact=exact,
                predicted_bias=float(dm.bias(y)) if dm else math.nan,
                predicted_std=float(dm.std(y)) if dm else math.nan,
            )
            row["n_unreliable"] = int(np.sum(~ok))
            mrows.append(row)
            _log(
                o.progress,
                f"y-study {method:<15} y={y:<7d} n={n:<7d} "
                f"bias={st.bias:+.3e}+-{st.bias_se:.1e} std={st.std:.3e} "
                f"unreliable={row['n_unreliable']} ({time.perf_counter() - t:.2f} s)",
            )
        rows += mrows
        y_fits[method] = fit_method(
            mrows,
            dm,
            std_fit_y_min=o.std_fit_y_min,
            bias_fit_y_min=o.bias_fit_y_min,
            bias_z=o.bias_z,
        )
    if "mc" in y_fits:
        rmse_mc = {r["y"]: r["rmse"] for r in rows if r["method"] == "mc"}
        for name in y_fits:
            ratios = [
                r["rmse"] / rmse_mc[r["y"]]
                for r in rows
                if r["method"] == name and r["y"] in rmse_mc and r["y"] >= o.std_fit_y_min
            ]
            if ratios:  # geometric mean over the large-y points
                y_fits[name]["rmse_ratio_vs_mc"] = float(np.exp(np.mean(np.log(ratios))))
    # k-study on the separable part A -> diag(lam): the finite-k reference is separable-only
    c2 = ref.finite_k_coefficient()
    f_inf = ref.separable_exact()
    krows = []
    for k in k_grid(o):
        t = time.perf_counter()
        fk = ref.separable_exact(float(k))
        pred = c2 / k**2 + ref.n * math.log1p(-math.exp(-4 * k * ref.R))
        krows.append(
            _row(
                "k",
                "quadrature",
                math.nan,
                float(k),
                None,
                mean=fk,
                exact=f_inf,
                predicted_bias=pred,
                predicted_std=math.nan,
            )
        )
        _log(
            o.progress,
            f"k-study k={k:<8g} F(k)-F(inf)={fk - f_inf:.6e} predicted {pred:.6e} "
            f"({time.perf_counter() - t:.2f} s)",
        )
    rows += krows
    k_fit = fit_k_study(krows, c2, R=o.R, k_fit_min=o.k_fit_min)
    return ConvergenceStudy(
        options=o,
        reference=ref,
        exact=exact,
        rows=rows,
        y_fits=y_fits,
        k_fit=k_fit,
        wall_time_s=time.perf_counter() - t0,
    )


def main(argv: list[str] | None = None) -> int:
    """``anisotropy converge [--quick] [--out DIR] ...``: run the studies and write the files."""
    parser = argparse.ArgumentParser(prog="anisotropy converge", description=__doc__.split("\n")[0])
    add_dataclass_arguments(parser, ConvergeOptions)
    opts = from_namespace(ConvergeOptions, parser.parse_args(argv))
    try:
        # checked before the studies run (minutes): a file given as --out is refused at once
        check_output_dir(opts.out)
    except ValueError as exc:
        print(f"anisotropy converge: error: {exc}", file=sys.stderr)
        return 2
    try:
        opts = resolve_options(opts)
    except ValueError as exc:  # bad option values: usage error, exit status 2
        parser.error(str(exc))
    study = run_convergence(opts)
    paths = write_study(study, opts.out)
    print(study.report())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
