r"""Symbolic proofs (sympy) and numeric checks of the analytic facts the package relies on.

Each fact about eqs 5-23 of *Partial local entropy and anisotropy in deep weight spaces*
is a :class:`Fact`: a statement, a sympy
*proof* (a function returning ``True`` only when sympy establishes the identity
or limit) and a *numeric check* (a function returning the largest error at a few
points, computed with the package's own :mod:`anisotropy.kernels` and
:func:`anisotropy.smoothing.losses.reduce_losses` wherever they apply, so that the check
also tests the implementation).  :func:`verify`
turns a fact into a :class:`FactResult`; :func:`verify_all` checks all of them;
``anisotropy facts [--json]`` (:mod:`analysis.facts.cli`) prints them and exits non-zero
if any fails.

Symbols: :math:`s(u) = 1/(1+e^{-u})`, :math:`K_{R,k}(x) = s(2k(R-x))\,s(2k(R+x))`
(eq 6), :math:`Z_1 = \int K\,dx`, ``R, k, gamma, lambda, beta > 0``.

The fact builders that take a ``claim`` (e.g. :func:`fact_normaliser`) state
"the quantity equals ``claim``"; passing a wrong claim gives a fact that fails,
which is how the tests show that the checking machinery can fail.

The machinery is in :mod:`analysis.facts.core`; the facts, by subject, in
:mod:`~analysis.facts.kernel` (eqs 6-9), :mod:`~analysis.facts.distance` (eqs 5, 10),
:mod:`~analysis.facts.reductions` (eqs 11-16) and :mod:`~analysis.facts.gaussian` (heat
kernel, quadratic free energies); :mod:`~analysis.facts.catalogue` lists them.
"""

from .catalogue import default_facts, verify_all
from .cli import LimitsOptions, main
from .core import Fact, FactResult, verify
from .distance import fact_masked_distance, fact_stable_distance
from .gaussian import fact_box_quadratic, fact_heat_normaliser, fact_heat_quadratic
from .kernel import (
    fact_centre_value,
    fact_convolution,
    fact_hard_limit,
    fact_kernel_cdf,
    fact_kernel_variance,
    fact_normaliser,
    fact_sigmoid_identity,
)
from .reductions import fact_m_at_y0, fact_plea_gradient, fact_plea_to_pla

__all__ = [
    "Fact",
    "FactResult",
    "LimitsOptions",
    "verify",
    "verify_all",
    "default_facts",
    "fact_hard_limit",
    "fact_centre_value",
    "fact_stable_distance",
    "fact_sigmoid_identity",
    "fact_normaliser",
    "fact_convolution",
    "fact_kernel_cdf",
    "fact_kernel_variance",
    "fact_heat_normaliser",
    "fact_masked_distance",
    "fact_m_at_y0",
    "fact_plea_to_pla",
    "fact_plea_gradient",
    "fact_box_quadratic",
    "fact_heat_quadratic",
    "main",
]
