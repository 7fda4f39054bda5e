r"""Model comparison of the fitted cooling laws.

* **Information criteria**: ``AIC = 2k - 2 ln L`` and ``BIC = k ln N - 2 ln L``, with ``N``
  the number of fitted points and ``k`` all estimated parameters (shape, amplitudes,
  scales, AR coefficients), the shape parameters counted by their composite-likelihood
  effective dimension ``sum_j max(1, eig_j(H^-1 Omega))`` (:class:`~analysis.cooling.fit.LawFit`):
  the likelihood treats the layers as independent, and correlated layers would otherwise
  inflate every likelihood ratio and favour the richer law.  The smallest criterion
  selects the law, and Akaike-type weights ``exp(-Delta/2)`` normalised over the laws are
  reported.
* **Likelihood-ratio test for nested laws**: every law declares the laws it nests
  (:class:`~analysis.cooling.laws.Nesting`); each regular pair of fitted laws is tested.
  The exponential is the stretched exponential at ``beta = 1``.  ``beta = 1`` is interior
  to the fitted range, so
  ``2 Delta ln L / lambda ~ chi^2_1`` (two-sided), where ``lambda >= 1`` is the
  sandwich-to-model variance ratio of ``beta`` (the composite-likelihood adjustment of
  Chandler and Bate 2007; ``lambda = 1`` when the noise model is right).  The
  physically interesting alternative is *sub*-exponential cooling, ``beta < 1``: under
  that one-sided alternative the null value sits on the boundary and the statistic
  follows the mixture ``(chi^2_0 + chi^2_1)/2`` (Chernoff 1954; Self and Liang 1987),
  i.e. the p value is halved when ``beta_hat < 1`` and is 1 otherwise (the nesting's
  ``side``).  The stretched exponential is the
  ``t_c -> end of window`` limit of the stretched-then-exponential law, where ``t_c``
  is not identified: no chi-square reference exists there (Davies 1977), so that pair
  is compared by the information criteria only.
* **Vuong test for non-nested laws** (each law that neither nests nor is nested in the
  power law, :data:`VUONG_REFERENCE`, against it): the
  Schwarz-corrected log-likelihood ratio over its standard deviation, with the variance
  of the per-epoch log-likelihood differences estimated by Newey-West (the differences
  of a time series are autocorrelated), ``Z ~ N(0, 1)`` when the laws fit equally well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from anisotropy.validation import check_choice

from .fit import LawFit
from .laws import LAW_NAMES, Side, nests
from .timeseries import hac_covariance

__all__ = ["Criterion", "Comparison", "compare", "lrt_nested", "vuong", "VUONG_REFERENCE"]

Criterion = Literal["bic", "aic"]

#: the law every non-nested law is compared with by Vuong's test: algebraic decay, the
#: alternative to the exponential-type cooling of section 2.1
VUONG_REFERENCE = "power_law"


@dataclass
class Comparison:
    """Outcome of :func:`compare`: the selected law, the criteria table and the tests."""

    criterion: str
    selected: str
    table: dict
    lrt: list
    vuong: list

    def to_dict(self) -> dict:
        return {
            "criterion": self.criterion,
            "selected": self.selected,
            "table": self.table,
            "lrt": self.lrt,
            "vuong": self.vuong,
        }


def _same_window(a: LawFit, b: LawFit) -> None:
    if a.window != b.window or a.n_obs != b.n_obs:
        raise ValueError(
            f"laws {a.law!r} and {b.law!r} were fitted to different data "
            f"({a.window}, {a.n_obs} points vs {b.window}, {b.n_obs}); refit on one window"
        )


def lrt_nested(
    null: LawFit, alt: LawFit, *, param: str = "beta", null_value: float = 1.0, side: Side = "below"
) -> dict:
    """Likelihood-ratio test of ``null`` (``param = null_value``) inside ``alt``.

    Returns the statistic, the two-sided chi^2_1 p value and the one-sided boundary p value
    for the alternative ``param < null_value`` (``side="below"``) or ``param > null_value``
    (``side="above"``).
    """
    check_choice("side", side, ("below", "above"))
    _same_window(null, alt)
    df = alt.n_params - null.n_params
    lr = max(2.0 * (alt.loglik - null.loglik), 0.0)  # FGLS is not exactly ML: clip at 0
    # composite likelihood: 2 dlnL ~ lambda chi^2_1 with lambda the sandwich/model variance
    # ratio of the tested parameter (Chandler and Bate 2007); rescale before the chi^2 reference
    lam = max(float(alt.inflation.get(param, 1.0)), 1.0) if df == 1 else 1.0
    lr = lr / lam
    p_two = float(stats.chi2.sf(lr, df))
    est = alt.params[param]
    toward = est < null_value if side == "below" else est > null_value
    p_one = 0.5 * p_two if toward else 1.0
    return {
        "null": null.law,
        "alternative": alt.law,
        "param": param,
        "null_value": null_value,
        "side": side,
        "statistic": lr,
        "scale": lam,
        "df": df,
        "p_value": p_two,
        "p_value_one_sided": p_one,
        "estimate": est,
    }


def vuong(a: LawFit, b: LawFit) -> dict:
    """Vuong's test of two non-nested laws fitted to the same points (Schwarz corrected).

    ``Z > 0`` favours ``a``.  The variance of the summed per-epoch log-likelihood
    differences is a Newey-West long-run variance.
    """
    _same_window(a, b)
    d = a.pointwise - b.pointwise
    lr = float(d.sum()) - 0.5 * (a.n_params - b.n_params) * np.log(a.n_obs)
    omega = float(hac_covariance((d - d.mean())[:, None])[0, 0])
    if omega <= 0:
        z, p = 0.0, 1.0
    else:
        z = lr / np.sqrt(omega)
        p = float(2 * stats.norm.sf(abs(z)))
    return {
        "a": a.law,
        "b": b.law,
        "statistic": float(z),
        "p_value": p,
        "favours": a.law if z > 0 else b.law,
    }


def _test_order(names: list) -> list:
    """Registered laws in the order of ``LAW_NAMES``, then the others as given."""
    return [n for n in LAW_NAMES if n in names] + [n for n in names if n not in LAW_NAMES]


def compare(fits: dict, *, criterion: Criterion = "bic") -> Comparison:
    """Compare fitted laws ``{name: LawFit}`` (all on the same window).

    The selected law minimises ``criterion``.  The likelihood-ratio test runs for every
    regular :class:`~analysis.cooling.laws.Nesting` of a fitted law whose nested law is also
    fitted; Vuong's test for every fitted law against :data:`VUONG_REFERENCE` when that is
    fitted and neither law nests the other.  The laws come from the fits (``LawFit.model``),
    so a user's :class:`~analysis.cooling.laws.Law` takes part like a built-in one.
    """
    check_choice("criterion", criterion, ("bic", "aic"))
    if not fits:
        raise ValueError("fits must hold at least one fitted law")
    names = list(fits)
    first = fits[names[0]]
    for n in names[1:]:
        _same_window(first, fits[n])
    table: dict[str, dict[str, float]] = {}
    for crit in ("aic", "bic"):
        vals = np.array([getattr(fits[n], crit) for n in names])
        delta = vals - vals.min()
        w = np.exp(-0.5 * delta)
        w /= w.sum()
        for n, v, dl, wt in zip(names, vals, delta, w, strict=True):
            table.setdefault(n, {})
            table[n].update(
                {crit: float(v), f"delta_{crit}": float(dl), f"weight_{crit}": float(wt)}
            )
    selected = min(names, key=lambda n: table[n][criterion])
    order = _test_order(names)
    lrt = [
        lrt_nested(fits[n.law], fits[alt], param=n.param, null_value=n.value, side=n.side)
        for alt in order
        for n in fits[alt].law_model.nests
        if n.regular and n.law in fits
    ]
    ref = VUONG_REFERENCE
    vu = [
        vuong(fits[a], fits[ref])
        for a in order
        if ref in fits
        and a != ref
        and not nests(fits[a].law_model, ref)
        and not nests(fits[ref].law_model, a)
    ]
    return Comparison(criterion=criterion, selected=selected, table=table, lrt=lrt, vuong=vu)
