"""The catalogue of facts the package relies on, and checking them all."""

from __future__ import annotations

from collections.abc import Sequence

from anisotropy.validation import check_choice

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

__all__ = ["default_facts", "verify_all"]


def default_facts() -> list[Fact]:
    """All facts the package relies on, in the order of the paper's equations (5-23)."""
    return [
        fact_hard_limit(),
        fact_centre_value(),
        fact_stable_distance(),
        fact_sigmoid_identity(),
        fact_normaliser(),
        fact_convolution(),
        fact_kernel_cdf(),
        fact_kernel_variance(),
        fact_heat_normaliser(),
        fact_masked_distance(),
        fact_m_at_y0(),
        fact_plea_to_pla(),
        fact_plea_gradient(),
        fact_box_quadratic(),
        fact_heat_quadratic(),
    ]


def verify_all(names: Sequence[str] | None = None) -> list[FactResult]:
    """Verify the facts of :func:`default_facts` (or only those named in ``names``)."""
    facts = default_facts()
    if names:
        valid = [f.name for f in facts]
        for n in names:
            check_choice("fact", n, valid)
        facts = [f for f in facts if f.name in names]
    return [verify(f) for f in facts]
