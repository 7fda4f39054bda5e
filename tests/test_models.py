"""The paper's architectures: layer names, feature sizes of tables 24/25, initialisation."""

import math

import pytest
import torch

from anisotropy.models import cnn_table24, cnn_table25, conv_feature_size, mlp


def test_mlp_layer_names_and_shapes():
    net = mlp(depth=3, width=32, in_features=784, classes=10)
    names = [n for n, _ in net.named_parameters() if n.endswith("weight")]
    assert names == ["fc1.weight", "fc2.weight", "fc3.weight", "fc4.weight"]
    assert net(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


@pytest.mark.parametrize(
    "factory,size,padding,features",
    [
        (cnn_table24, 32, 0, 128 * 4 * 4),  # table 24 on CIFAR10
        (cnn_table25, 96, 0, 16 * 20 * 20),  # table 25 on STL10
        (cnn_table25, 28, 1, 16 * 7 * 7),  # PAPER-NOTES section 7 stand-in: 784-784-10 head
    ],
)
def test_cnn_head_width_matches_tables(factory, size, padding, features):
    in_ch = 1 if size == 28 else 3
    net = factory(in_channels=in_ch, input_size=size, padding=padding)
    assert net.fc1.in_features == net.fc1.out_features == features
    assert net.fc2.in_features == net.fc2.out_features == features
    assert net.fc3.out_features == 10
    assert net(torch.zeros(2, in_ch, size, size)).shape == (2, 10)


def test_feature_size_formula():
    assert conv_feature_size(32, 0) == 4
    assert conv_feature_size(96, 0) == 20
    assert conv_feature_size(28, 1) == 7
    with pytest.raises(ValueError, match="input_size"):
        conv_feature_size(6, 0)


def test_kaiming_normal_variance():
    # Kaiming normal (ReLU gain): Var w = 2 / fan_in.  With n = 784*784 weights the sample
    # variance has relative standard error sqrt(2/n) ~ 1.8e-3; 1% is > 5 standard errors.
    torch.manual_seed(0)
    net = mlp(depth=2, width=784)
    w = net.fc2.weight.detach().double()
    assert abs(w.var().item() / (2.0 / 784) - 1.0) < 0.01
    assert torch.count_nonzero(net.fc2.bias) == 0
    tanh_net = mlp(depth=1, width=784, activation="tanh")
    gain = 5.0 / 3.0  # torch's recommended gain for tanh
    var = tanh_net.fc1.weight.detach().double().var().item()
    assert abs(var / (gain**2 / 784) - 1.0) < 0.01
    assert math.isfinite(var)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"depth": 0}, "depth"),
        ({"width": 0}, "width"),
        ({"activation": "gelu"}, "activation"),
        ({"classes": 1}, "classes"),
        ({"depth": 1.5}, "depth"),
    ],
)
def test_mlp_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        mlp(**kwargs)
