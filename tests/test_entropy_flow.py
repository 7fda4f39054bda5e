"""Entropy propagation: Gaussian identities (square and tall dense layers), the triangular
convolution map, finite-difference gradients of the loss terms, errors."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from anisotropy.related.entropy_flow import (
    conv_block_matrix,
    conv_entropy_change,
    conv_entropy_loss,
    conv_output_shape,
    dense_entropy_change,
    dense_entropy_loss,
    entropy_flow,
    gaussian_entropy,
)

torch.set_num_threads(1)
D = torch.float64


def _spd(n, g):
    a = torch.randn(n, n, generator=g, dtype=D)
    return a @ a.T + 0.5 * torch.eye(n, dtype=D)


def test_gaussian_entropy_closed_form_against_sum_of_marginals():
    """Diagonal covariance: H = sum_i 1/2 log(2 pi e s_i^2)."""
    s2 = torch.tensor([0.3, 2.0, 5.0], dtype=D)
    expect = sum(0.5 * math.log(2 * math.pi * math.e * v) for v in s2.tolist())
    assert float(gaussian_entropy(torch.diag(s2))) == pytest.approx(expect, rel=1e-14)


@pytest.mark.parametrize("n", [1, 4, 7])
def test_dense_identity_for_gaussian_inputs(n):
    """X ~ N(m, S): WX ~ N(Wm, W S W^T), so H(WX) - H(X) = log|det W| exactly."""
    g = torch.Generator().manual_seed(n)
    S = _spd(n, g)
    W = torch.randn(n, n, generator=g, dtype=D)
    lhs = gaussian_entropy(W @ S @ W.T) - gaussian_entropy(S)
    torch.testing.assert_close(lhs, dense_entropy_change(W), rtol=1e-11, atol=1e-11)
    # batch of layers, and the sign of det does not matter
    Ws = torch.stack([W, -W, 2 * W])
    torch.testing.assert_close(
        dense_entropy_change(Ws),
        dense_entropy_change(W) + torch.tensor([0, 0, n * math.log(2)], dtype=D),
        rtol=1e-12,
        atol=1e-12,
    )


def test_dense_singular_and_wide():
    assert dense_entropy_change(torch.zeros(3, 3, dtype=D)) == -math.inf
    assert dense_entropy_change(torch.zeros(5, 3, dtype=D)) == -math.inf
    with pytest.raises(ValueError, match=r"wide \(m = 3 < n = 4\)"):
        dense_entropy_change(torch.ones(3, 4))
    with pytest.raises(ValueError, match="square or tall"):
        dense_entropy_change(torch.ones(3))
    with pytest.raises(ValueError, match="positive definite"):
        gaussian_entropy(-torch.eye(2))


def test_tall_layer_closed_forms():
    """W = Q (orthonormal columns, 7 x 3): 0; W = s Q: 3 log s; a general tall W = Q R:
    the coordinates of WX in the basis Q are RX, so H = H(X) + log|det R| (Gaussian X);
    the gradient of 1/2 log det(W^T W) is the transposed pseudo-inverse."""
    g = torch.Generator().manual_seed(0)
    Q = torch.linalg.qr(torch.randn(7, 3, generator=g, dtype=D))[0]
    assert abs(float(dense_entropy_change(Q))) < 1e-14
    for s in (0.5, 3.0):
        assert float(dense_entropy_change(s * Q)) == pytest.approx(3 * math.log(s), rel=1e-13)
    W = torch.randn(7, 3, generator=g, dtype=D)
    Qw, R = torch.linalg.qr(W)
    S = _spd(3, g)
    lhs = gaussian_entropy(R @ S @ R.T) - gaussian_entropy(S)
    torch.testing.assert_close(lhs, dense_entropy_change(W), rtol=1e-11, atol=1e-11)
    Wg = W.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(dense_entropy_change(Wg), Wg)
    torch.testing.assert_close(grad, torch.linalg.pinv(W).T, rtol=1e-10, atol=1e-12)
    # square as the special case: 1/2 log det(W^T W) = log |det W|
    A = torch.randn(4, 4, generator=g, dtype=D)
    torch.testing.assert_close(
        dense_entropy_change(A), 0.5 * torch.linalg.slogdet(A.T @ A)[1], rtol=1e-11, atol=1e-11
    )


def test_tall_layers_in_the_loss_and_the_flow():
    torch.manual_seed(1)
    m = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    with torch.no_grad():
        m[0].weight.copy_(2.0 * torch.linalg.qr(torch.randn(5, 3, dtype=D))[0])
    L = dense_entropy_loss(m, target=0.1)  # only "0" is eligible ("2" is wide)
    assert float(L.detach()) == pytest.approx((math.log(2.0) - 0.1) ** 2, rel=1e-12)
    _fd_check(lambda mm: dense_entropy_loss(mm, layers="0", target=0.1), m)
    res = entropy_flow(m, (3,))
    assert res.delta_h[0] == pytest.approx(3 * math.log(2.0), rel=1e-12)
    assert res.layers == ("0", "2") and "tall" in res.notes[0]
    assert math.isnan(res.delta_h[1]) and "wide" in res.notes[1]
    with pytest.raises(ValueError, match=r"layer '2' is wide, weight \(2, 5\)"):
        dense_entropy_loss(m, layers="2")


def _jacobian_on_block(kernel4, shape, stride, dilation, groups):
    """dY/dX_B by autograd, rows (i, j, c), columns (i', j', c') with X_B = X[:, s i', s j']."""
    c = kernel4.shape[0]
    x = torch.randn(c, *shape, dtype=D)

    def f(x):
        return F.conv2d(x[None], kernel4, stride=stride, dilation=dilation, groups=groups)[0]

    J = torch.autograd.functional.jacobian(f, x)  # (c, ho, wo, c, l, w)
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    Jb = J[:, :, :, :, ::sh, ::sw]
    ho, wo = J.shape[1:3]
    Jb = Jb[..., :ho, :wo]  # (c, ho, wo, c, ho, wo)
    n = c * ho * wo
    return Jb.permute(1, 2, 0, 4, 5, 3).reshape(n, n)


@pytest.mark.parametrize(
    "case",
    [
        dict(c=1, shape=(6, 5), ks=(3, 2), stride=1, dilation=1, groups=1),  # the seed's case
        dict(c=2, shape=(5, 6), ks=(2, 3), stride=1, dilation=1, groups=1),
        dict(c=4, shape=(6, 6), ks=(2, 2), stride=1, dilation=1, groups=2),
        dict(c=2, shape=(7, 7), ks=(3, 3), stride=2, dilation=1, groups=1),
        dict(c=1, shape=(7, 8), ks=(2, 3), stride=1, dilation=2, groups=1),
    ],
)
def test_conv_formula_against_explicit_triangular_matrix(case):
    g = torch.Generator().manual_seed(sum(case["shape"]) + case["c"])
    c, groups = case["c"], case["groups"]
    k = torch.randn(c, c // groups, *case["ks"], generator=g, dtype=D)
    kw = dict(stride=case["stride"], dilation=case["dilation"], groups=groups)
    T = conv_block_matrix(k, case["shape"], **kw)
    # T is the convolution restricted to the block (autograd Jacobian) ...
    torch.testing.assert_close(T, _jacobian_on_block(k, case["shape"], **kw), rtol=0, atol=0)
    # ... block upper triangular with diagonal blocks K[:, :, 0, 0]
    ho, wo = conv_output_shape(
        case["shape"], case["ks"], stride=case["stride"], dilation=case["dilation"]
    )
    Tb = T.reshape(ho * wo, c, ho * wo, c)
    for r in range(ho * wo):
        assert torch.count_nonzero(Tb[r, :, :r, :]) == 0
    sign, logdet = torch.linalg.slogdet(T)
    torch.testing.assert_close(
        conv_entropy_change(k, case["shape"], **kw), logdet, rtol=1e-10, atol=1e-10
    )
    if c == 1 and case["stride"] == case["dilation"] == 1:  # the seed's formula verbatim
        (ell, w), (p, q) = case["shape"], case["ks"]
        assert float(logdet) == pytest.approx(
            (ell - p + 1) * (w - q + 1) * math.log(abs(float(k[0, 0, 0, 0]))), rel=1e-10
        )
        torch.testing.assert_close(
            conv_entropy_change(k[0, 0], case["shape"]), logdet, rtol=1e-10, atol=1e-10
        )


def test_conv_gaussian_conditional_entropy():
    """X ~ N(0, S) on all l*w pixels: given X_R, X_B ~ N(., S_BB - S_BR S_RR^-1 S_RB) and
    Y = T X_B + const, so H(Y | X_R) - H(X_B | X_R) is the formula."""
    g = torch.Generator().manual_seed(3)
    ell, w, p, q = 5, 4, 2, 2
    k = torch.randn(p, q, generator=g, dtype=D)
    S = _spd(ell * w, g)
    idx = torch.arange(ell * w).reshape(ell, w)
    B = idx[: ell - p + 1, : w - q + 1].reshape(-1)
    R = torch.tensor(sorted(set(range(ell * w)) - set(B.tolist())))
    cond = S[B][:, B] - S[B][:, R] @ torch.linalg.solve(S[R][:, R], S[R][:, B])
    T = conv_block_matrix(k, (ell, w))
    lhs = gaussian_entropy(T @ cond @ T.T) - gaussian_entropy(cond)
    torch.testing.assert_close(lhs, conv_entropy_change(k, (ell, w)), rtol=1e-9, atol=1e-9)


def _fd_check(loss_fn, model, h=1e-6):
    """Central finite differences of loss_fn(model) vs autograd, every weight entry."""
    loss = loss_fn(model)
    params = [p for n, p in model.named_parameters() if n.endswith("weight")]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    for p, gr in zip(params, grads, strict=True):
        gr = torch.zeros_like(p) if gr is None else gr
        fd = torch.empty_like(p)
        with torch.no_grad():
            for i in range(p.numel()):
                v = p.view(-1)[i].item()
                p.view(-1)[i] = v + h
                up = float(loss_fn(model))
                p.view(-1)[i] = v - h
                down = float(loss_fn(model))
                p.view(-1)[i] = v
                fd.view(-1)[i] = (up - down) / (2 * h)
        # central differences: error ~ h^2 f''' + eps/h ~ 1e-10 at h = 1e-6 in float64
        torch.testing.assert_close(gr, fd, rtol=1e-6, atol=1e-7)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 2, 2),
        nn.ReLU(),
        nn.Conv2d(2, 2, 2, groups=2),
        nn.Flatten(),
        nn.Linear(8, 4),
        nn.Tanh(),
        nn.Linear(4, 4),
        nn.Linear(4, 4),
    ).double()


def test_dense_loss_value_and_gradient():
    m = _model()
    target = {"6": -0.2, "7": 0.1}
    L = dense_entropy_loss(m, target=target)
    expect = sum(
        (float(dense_entropy_change(m[i].weight.detach())) / 4 - t) ** 2
        for i, t in ((6, -0.2), (7, 0.1))
    )
    assert float(L.detach()) == pytest.approx(expect, rel=1e-12)
    _fd_check(lambda mm: dense_entropy_loss(mm, target=target), m)
    _fd_check(lambda mm: dense_entropy_loss(mm, layers="7", target=0.3), m)


def test_conv_loss_value_and_gradient():
    m = _model()
    L = conv_entropy_loss(m, target=0.05)
    k0, k2 = m[0].weight.detach(), m[2].weight.detach()
    expect = (float(torch.linalg.slogdet(k0[:, :, 0, 0])[1]) / 2 - 0.05) ** 2 + (
        (math.log(abs(float(k2[0, 0, 0, 0]))) + math.log(abs(float(k2[1, 0, 0, 0])))) / 2 - 0.05
    ) ** 2
    assert float(L.detach()) == pytest.approx(expect, rel=1e-12)
    _fd_check(lambda mm: conv_entropy_loss(mm, target=0.05), m)


def test_entropy_flow_profile():
    m = _model()
    res = entropy_flow(m, (2, 4, 4))
    assert res.layers == ("0", "2", "4", "6", "7")
    assert res.coordinates == (18, 8, 4, 4, 4)
    assert res.delta_h[0] == pytest.approx(float(conv_entropy_change(m[0].weight.detach(), (4, 4))))
    assert res.delta_h[1] == pytest.approx(
        float(conv_entropy_change(m[2].weight.detach(), (3, 3), groups=2))
    )
    assert math.isnan(res.delta_h[2])
    assert res.delta_h[4] == pytest.approx(float(dense_entropy_change(m[7].weight.detach())))
    assert "delta_H" in res.report()


def test_bad_input():
    m = _model()
    with pytest.raises(ValueError, match="is wide"):
        dense_entropy_loss(m, layers="4")
    with pytest.raises(ValueError, match="not an nn.Linear"):
        dense_entropy_loss(m, layers="0")
    with pytest.raises(ValueError, match="unknown layers"):
        dense_entropy_loss(m, target={"9": 0.0})
    with pytest.raises(ValueError, match="no square or tall"):
        dense_entropy_loss(nn.Sequential(nn.Linear(3, 2)))
    with pytest.raises(ValueError, match="padding"):
        conv_entropy_loss(nn.Conv2d(2, 2, 3, padding=1), layers="weight")
    with pytest.raises(ValueError, match="square in channels"):
        conv_entropy_change(torch.ones(3, 2, 2, 2), (4, 4))
    with pytest.raises(ValueError, match="does not fit"):
        conv_entropy_change(torch.ones(3, 3), (2, 5))
    with pytest.raises(ValueError, match="kernel must have shape"):
        conv_entropy_change(torch.ones(3), (4, 4))
    with torch.no_grad():
        m[7].weight.zero_()
    with pytest.raises(ValueError, match="singular"):
        dense_entropy_loss(m)
