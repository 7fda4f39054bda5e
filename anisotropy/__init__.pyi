"""Static view of the public API of :mod:`anisotropy` (read by type checkers and,
through ``lazy_loader.attach_stub``, by the package itself: one list of names)."""

from . import kernels as kernels

# smoothing kernels (eqs 1, 5-8), numpy or torch: objects (the extension point) ...
from .kernels.base import (
    Kernel as Kernel,
)
from .kernels.box import (
    BoxKernel as BoxKernel,
)
from .kernels.gaussian import (
    GaussianKernel as GaussianKernel,
)
from .kernels.registry import (
    KernelName as KernelName,
    KERNEL_NAMES as KERNEL_NAMES,
    as_kernel as as_kernel,
)
# ... and the closed forms behind them
from .kernels.closed_form import (
    distance as distance,
    log_kernel as log_kernel,
    kernel as kernel,
    masked_distance as masked_distance,
    masked_log_kernel as masked_log_kernel,
    heat_distance as heat_distance,
    heat_log_kernel as heat_log_kernel,
    log_normaliser as log_normaliser,
    heat_log_normaliser as heat_log_normaliser,
    sample_kernel as sample_kernel,
    sample_heat as sample_heat,
    check_mask as check_mask,
)
# smoothed losses (eqs 19-23)
from .smoothing.losses import (
    PartialLocalEntropy as PartialLocalEntropy,
    SmoothedLoss as SmoothedLoss,
    reduce_losses as reduce_losses,
    REDUCTIONS as REDUCTIONS,
)
from .smoothing.sampling import (
    select_parameters as select_parameters,
    sample_perturbations as sample_perturbations,
)
from .smoothing.schedules import (
    radius_schedule as radius_schedule,
)
# models of sections 4-5
from .models import (
    mlp as mlp,
    cnn_table24 as cnn_table24,
    cnn_table25 as cnn_table25,
    conv_net as conv_net,
)
# configuration, data, training, logs
from .training.config import (
    TrainConfig as TrainConfig,
    ModelConfig as ModelConfig,
    DataConfig as DataConfig,
    OptimConfig as OptimConfig,
    SmoothingConfig as SmoothingConfig,
    LoggingConfig as LoggingConfig,
    load_config as load_config,
    config_from_dict as config_from_dict,
    config_to_dict as config_to_dict,
    apply_overrides as apply_overrides,
)
from .data.datasets import (
    load_dataset as load_dataset,
    DATASETS as DATASETS,
)
from .training.trainer import (
    train as train,
)
from .training.hooks import (
    TrainState as TrainState,
    Callback as Callback,
)
from .training.signals import (
    layer_signal as layer_signal,
    SignalAccumulator as SignalAccumulator,
)
from .io import (
    read_jsonl as read_jsonl,
)
# related methods: local energy, Entropy-SGD, entropy flow
from .related.local_energy import (
    local_energy as local_energy,
    local_energy_curve as local_energy_curve,
)
from .related.entropy_sgd import (
    EntropySGD as EntropySGD,
    gamma_scoping as gamma_scoping,
)
from .related.entropy_flow import (
    dense_entropy_loss as dense_entropy_loss,
    conv_entropy_loss as conv_entropy_loss,
    EntropyFlowResult as EntropyFlowResult,
)

__version__: str
