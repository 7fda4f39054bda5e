"""Optimisers related to local entropy, in one home and one convention.

Every optimiser here is a :class:`torch.optim.Optimizer` whose ``step`` takes a
closure re-evaluating the loss at the current parameter values, whose
``state_dict``/``load_state_dict`` round-trip for bitwise resume, whose only
randomness comes from a passed :class:`torch.Generator`, and which can act on
chosen layers only (``layers=`` and ``model=``, the names and globs of
:class:`anisotropy.smoothing.losses.PartialLocalEntropy`).

* :class:`SAM` - sharpness-aware minimisation (Foret et al.), the flat-minima baseline;
* :class:`ReplicatedSGD` - the robust ensemble of elastically coupled replicas
  (Baldassi et al.; Pittorino et al.), with :func:`coupling_schedule` for scoping;
* :class:`EntropySGD` - Entropy-SGD (Chaudhari et al.);
* :class:`MomentMatching`, :class:`HeatRegularisation` - the two-step variational
  schemes for local entropy and heat regularisation, and
  :func:`diagnose_moment_matching` (the signal-to-noise ratio of one importance-sampled
  moment-matching step).
"""

from .diagnostics import MomentMatchingDiagnosis, diagnose_moment_matching
from .entropy_sgd import EntropySGD
from .replicated import COUPLING_SCHEDULES, CouplingScheduleName, ReplicatedSGD, coupling_schedule
from .sam import SAM
from .variational import HeatRegularisation, MomentMatching

__all__ = [
    "SAM",
    "ReplicatedSGD",
    "coupling_schedule",
    "CouplingScheduleName",
    "COUPLING_SCHEDULES",
    "EntropySGD",
    "MomentMatching",
    "HeatRegularisation",
    "MomentMatchingDiagnosis",
    "diagnose_moment_matching",
]
