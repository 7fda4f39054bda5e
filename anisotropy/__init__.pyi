"""Static view of the public API of :mod:`anisotropy` (read by type checkers and,
through ``lazy_loader.attach_stub``, by the package itself: one list of names)."""

from . import kernels as kernels
from .data.datasets import (
    DATASETS as DATASETS,
)
from .data.datasets import (
    load_dataset as load_dataset,
)
from .io import (
    read_jsonl as read_jsonl,
)

# smoothing kernels (eqs 1, 5-8), numpy or torch: objects (the extension point) ...
from .kernels.base import (
    Kernel as Kernel,
)
from .kernels.box import (
    BoxKernel as BoxKernel,
)
from .kernels.closed_form import (
    check_mask as check_mask,
)

# ... and the closed forms behind them
from .kernels.closed_form import (
    distance as distance,
)
from .kernels.closed_form import (
    heat_distance as heat_distance,
)
from .kernels.closed_form import (
    heat_log_kernel as heat_log_kernel,
)
from .kernels.closed_form import (
    heat_log_normaliser as heat_log_normaliser,
)
from .kernels.closed_form import (
    kernel as kernel,
)
from .kernels.closed_form import (
    log_kernel as log_kernel,
)
from .kernels.closed_form import (
    log_normaliser as log_normaliser,
)
from .kernels.closed_form import (
    masked_distance as masked_distance,
)
from .kernels.closed_form import (
    masked_log_kernel as masked_log_kernel,
)
from .kernels.closed_form import (
    sample_heat as sample_heat,
)
from .kernels.closed_form import (
    sample_kernel as sample_kernel,
)
from .kernels.gaussian import (
    GaussianKernel as GaussianKernel,
)
from .kernels.registry import (
    KERNEL_NAMES as KERNEL_NAMES,
)
from .kernels.registry import (
    KernelName as KernelName,
)
from .kernels.registry import (
    as_kernel as as_kernel,
)
from .models import (
    autoencoder as autoencoder,
)
from .models import (
    cnn_table24 as cnn_table24,
)
from .models import (
    cnn_table25 as cnn_table25,
)
from .models import (
    conv_net as conv_net,
)

# models of sections 4-5
from .models import (
    mlp as mlp,
)

# optimisers (anisotropy.optim): SAM, Replicated-SGD, the variational schemes
from .optim.diagnostics import (
    MomentMatchingDiagnosis as MomentMatchingDiagnosis,
)
from .optim.diagnostics import (
    diagnose_moment_matching as diagnose_moment_matching,
)
from .optim.entropy_sgd import (
    EntropySGD as EntropySGD,
)
from .optim.entropy_sgd import (
    gamma_scoping as gamma_scoping,
)
from .optim.replicated import (
    ReplicatedSGD as ReplicatedSGD,
)
from .optim.replicated import (
    coupling_schedule as coupling_schedule,
)
from .optim.sam import (
    SAM as SAM,
)
from .optim.variational import (
    HeatRegularisation as HeatRegularisation,
)
from .optim.variational import (
    MomentMatching as MomentMatching,
)
from .related.entropy_flow import (
    EntropyFlowResult as EntropyFlowResult,
)
from .related.entropy_flow import (
    conv_entropy_loss as conv_entropy_loss,
)
from .related.entropy_flow import (
    dense_entropy_loss as dense_entropy_loss,
)
from .related.local_energy import (
    local_energy as local_energy,
)
from .related.local_energy import (
    local_energy_curve as local_energy_curve,
)

# related methods: local energy, entropy flow
from .related.local_free_entropy import (
    mc_local_free_entropy as mc_local_free_entropy,
)
from .smoothing.accumulation import (
    accumulate_smoothed as accumulate_smoothed,
)
from .smoothing.losses import (
    REDUCTIONS as REDUCTIONS,
)

# smoothed losses (eqs 19-23)
from .smoothing.losses import (
    PartialLocalEntropy as PartialLocalEntropy,
)
from .smoothing.losses import (
    SmoothedLoss as SmoothedLoss,
)
from .smoothing.losses import (
    reduce_losses as reduce_losses,
)

# reductions of the per-configuration losses (eqs 22-23): objects (the extension point)
from .smoothing.reductions import (
    PLA as PLA,
)
from .smoothing.reductions import (
    PLEA as PLEA,
)
from .smoothing.reductions import (
    BetaReduction as BetaReduction,
)
from .smoothing.reductions import (
    LossReduction as LossReduction,
)
from .smoothing.reductions import (
    as_reduction as as_reduction,
)
from .smoothing.sampling import (
    sample_perturbations as sample_perturbations,
)
from .smoothing.sampling import (
    select_parameters as select_parameters,
)
from .smoothing.schedules import (
    radius_schedule as radius_schedule,
)
from .training.config import (
    DataConfig as DataConfig,
)
from .training.config import (
    LoggingConfig as LoggingConfig,
)
from .training.config import (
    ModelConfig as ModelConfig,
)
from .training.config import (
    OptimConfig as OptimConfig,
)
from .training.config import (
    SmoothingConfig as SmoothingConfig,
)

# configuration, data, training, logs
from .training.config import (
    TrainConfig as TrainConfig,
)
from .training.config import (
    apply_overrides as apply_overrides,
)
from .training.config import (
    config_from_dict as config_from_dict,
)
from .training.config import (
    config_to_dict as config_to_dict,
)
from .training.config import (
    load_config as load_config,
)
from .training.flatness import (
    measure_flatness as measure_flatness,
)
from .training.hooks import (
    Callback as Callback,
)
from .training.hooks import (
    TrainState as TrainState,
)
from .training.objective import (
    Objective as Objective,
)
from .training.objective import (
    get_objective as get_objective,
)
from .training.signals import (
    SignalAccumulator as SignalAccumulator,
)
from .training.signals import (
    layer_signal as layer_signal,
)
from .training.spread import (
    within_batch_spread as within_batch_spread,
)
from .training.trainer import (
    train as train,
)

__version__: str
