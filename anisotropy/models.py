"""The networks of the paper as flat ``nn.Sequential`` models with named layers.

Flat sequential models with readable names (``fc1.weight``, ``conv3.weight``)
let the smoothed losses pick layers by name and split the network at a cut
(everything before the first smoothed layer is evaluated once).

* :func:`mlp` - the fully connected nets of section 4 (784 units per hidden
  layer by default; hidden layers ``fc1..fcD``, output ``fc{D+1}``).
* :func:`autoencoder` - a dense autoencoder ``in -> width -> bottleneck -> width -> in``
  (layers ``fc1..fc4``, linear output) for the reconstruction objective
  (:mod:`anisotropy.training.objective`).
* :func:`cnn_table24` / :func:`cnn_table25` - the CNNs of tables 24 and 25:
  five 3x3 convolutions (two max-pools) and a three-layer FC head whose width
  equals the flattened feature size.  With ``padding=0`` (the paper) a 32x32
  input gives 128*4*4 and a 96x96 input 16*20*20 features, as in the tables;
  the CPU stand-in of the CNN figures (``docs/experiments.md``) uses 28x28 grey images with
  ``padding=1``: 16*7*7 = 784 features.

All weights use Kaiming-normal initialisation (He et al., ref. [17]) with the
gain of the activation, biases start at zero.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal, TypeVar, get_args

from torch import nn

from anisotropy.validation import check_choice, check_int

__all__ = [
    "mlp",
    "autoencoder",
    "cnn_table24",
    "cnn_table25",
    "conv_net",
    "conv_feature_size",
    "ModelName",
    "MODEL_NAMES",
    "Activation",
    "ACTIVATIONS",
]

#: networks a configuration can name (``model.name``; the one definition)
ModelName = Literal["mlp", "cnn_table24", "cnn_table25", "autoencoder"]
MODEL_NAMES: tuple[str, ...] = get_args(ModelName)
#: hidden-layer activations of :func:`mlp` (the one definition)
Activation = Literal["relu", "tanh"]
ACTIVATIONS: tuple[str, ...] = get_args(Activation)
_ACTIVATION_LAYERS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}


_Net = TypeVar("_Net", bound=nn.Module)


def _init(model: _Net, activation: Activation) -> _Net:
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, nonlinearity=activation)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def mlp(
    *,
    depth: int = 2,
    width: int = 784,
    in_features: int = 784,
    classes: int = 10,
    activation: Activation = "relu",
) -> nn.Sequential:
    """Fully connected net ``in -> width x depth -> classes`` (section 4).

    Parameters
    ----------
    depth : int
        Number of hidden layers (``>= 1``); the paper uses 2, 3 and 4.
    width, in_features, classes : int
    activation : {"relu", "tanh"}
    """
    check_int("depth", depth, minimum=1)
    check_int("width", width, minimum=1)
    check_int("in_features", in_features, minimum=1)
    check_int("classes", classes, minimum=2)
    check_choice("activation", activation, ACTIVATIONS)
    layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
    fan_in = in_features
    for i in range(1, depth + 1):
        layers += [
            (f"fc{i}", nn.Linear(fan_in, width)),
            (f"act{i}", _ACTIVATION_LAYERS[activation]()),
        ]
        fan_in = width
    layers.append((f"fc{depth + 1}", nn.Linear(fan_in, classes)))
    return _init(nn.Sequential(OrderedDict(layers)), activation)


def autoencoder(
    *,
    in_features: int = 784,
    width: int = 256,
    bottleneck: int = 32,
    activation: Activation = "relu",
) -> nn.Sequential:
    r"""Dense autoencoder ``in -> width -> bottleneck -> width -> in``.

    .. math::

        \hat x = W_4\, \phi(W_3\, \phi(W_2\, \phi(W_1 x + b_1) + b_2) + b_3) + b_4,

    ``phi`` the activation after ``fc1``, ``fc2`` and ``fc3``, the output ``fc4`` linear (the
    targets are normalised pixels, of either sign).  Weight shapes (out x in):
    ``fc1`` width x in, ``fc2`` bottleneck x width (the code), ``fc3`` width x bottleneck,
    ``fc4`` in x width.  The input is flattened: shape ``(B, ...)`` with ``in_features``
    features per sample gives an output of shape ``(B, in_features)``.

    With ``bottleneck < width < in_features`` the encoder layers are wide and the decoder
    layers tall (more outputs than inputs): the decoder's are the layers with an entropy
    change (:mod:`anisotropy.related.entropy_flow`).

    Parameters
    ----------
    in_features : int
        Input (and output) features, ``>= 1``.
    width : int
        Units of the two hidden layers around the code, ``>= 1``.
    bottleneck : int
        Units of the code, ``1 <= bottleneck <= width``.
    activation : {"relu", "tanh"}
    """
    check_int("in_features", in_features, minimum=1)
    check_int("width", width, minimum=1)
    check_int("bottleneck", bottleneck, minimum=1, maximum=width)
    check_choice("activation", activation, ACTIVATIONS)
    act = _ACTIVATION_LAYERS[activation]
    layers: list[tuple[str, nn.Module]] = [
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(in_features, width)),
        ("act1", act()),
        ("fc2", nn.Linear(width, bottleneck)),
        ("act2", act()),
        ("fc3", nn.Linear(bottleneck, width)),
        ("act3", act()),
        ("fc4", nn.Linear(width, in_features)),
    ]
    return _init(nn.Sequential(OrderedDict(layers)), activation)


def conv_feature_size(input_size: int, padding: int) -> int:
    """Spatial side after conv, conv, pool, conv, conv, conv, pool (3x3 kernels)."""
    s = input_size
    for op in ("c", "c", "p", "c", "c", "c", "p"):
        s = s + 2 * padding - 2 if op == "c" else s // 2
        if s < 1:
            raise ValueError(f"input_size={input_size} is too small for this network")
    return s


def conv_net(
    channels: tuple[int, int, int],
    *,
    in_channels: int,
    input_size: int,
    padding: int = 0,
    classes: int = 10,
) -> nn.Sequential:
    """Five 3x3 convs (``c0->c1->c1``, pool, ``c1->c2->c2->c2``, pool) and a 3-layer FC head.

    ``channels = (in, c1, c2)`` is only used for ``c1, c2``; FC layers are
    ``fc1, fc2`` (width = flattened size) and ``fc3`` (classes).
    """
    check_int("in_channels", in_channels, minimum=1)
    check_int("input_size", input_size, minimum=1)
    check_int("padding", padding, minimum=0)
    _, c1, c2 = channels
    side = conv_feature_size(input_size, padding)
    feat = c2 * side * side
    spec = [(in_channels, c1), (c1, c1), None, (c1, c2), (c2, c2), (c2, c2), None]
    layers: list[tuple[str, nn.Module]] = []
    n_conv = n_pool = 0
    for s in spec:
        if s is None:
            n_pool += 1
            layers.append((f"pool{n_pool}", nn.MaxPool2d(2)))
        else:
            n_conv += 1
            layers += [
                (f"conv{n_conv}", nn.Conv2d(s[0], s[1], 3, padding=padding)),
                (f"relu{n_conv}", nn.ReLU()),
            ]
    layers += [
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(feat, feat)),
        ("act_fc1", nn.ReLU()),
        ("fc2", nn.Linear(feat, feat)),
        ("act_fc2", nn.ReLU()),
        ("fc3", nn.Linear(feat, classes)),
    ]
    return _init(nn.Sequential(OrderedDict(layers)), "relu")


def cnn_table24(
    *, in_channels: int = 3, input_size: int = 32, padding: int = 0, classes: int = 10
) -> nn.Sequential:
    """CNN of table 24 (CIFAR10): channels 64, 128; head 128*4*4 at 32x32, padding 0."""
    return conv_net(
        (in_channels, 64, 128),
        in_channels=in_channels,
        input_size=input_size,
        padding=padding,
        classes=classes,
    )


def cnn_table25(
    *, in_channels: int = 3, input_size: int = 96, padding: int = 0, classes: int = 10
) -> nn.Sequential:
    """CNN of table 25 (STL10): channels 8, 16; head 16*20*20 at 96x96, padding 0.

    The 28x28 stand-in of the CNN figures (``docs/experiments.md``): ``in_channels=1, input_size=28,
    padding=1`` gives a 784-784-10 head.
    """
    return conv_net(
        (in_channels, 8, 16),
        in_channels=in_channels,
        input_size=input_size,
        padding=padding,
        classes=classes,
    )
