"""The fast exact samplers: float32 draws built straight from raw bits, SFC64 blocks,
and the midpoint uniforms of the torch (non-CPU generator) path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from anisotropy.kernels import BoxKernel, GaussianKernel
from anisotropy.kernels import closed_form as cf
from anisotropy.kernels.box import top_bits, uniform_from_bits
from anisotropy.smoothing.sampling import _SEED_HIGH, BLOCK, sample_perturbations

ALPHA = 1e-3  # KS: a correct sampler fails one seeded test in a thousand
# float32 logistic extreme of the midpoint construction: log(2^25 - 1)
LOGISTIC_MAX_F32 = math.log(2.0**25 - 1)


class Words:
    """A stand-in bit generator returning the given raw 64-bit words."""

    def __init__(self, words):
        self.words = words

    def random_raw(self, n):
        if self.words.size != n:
            raise ValueError(f"asked for {n} words, holds {self.words.size}")
        return self.words.copy()


def words24(values):
    """Raw words whose float32 draws see the 24-bit integers ``values`` in order."""
    return (np.asarray(values, dtype=np.uint32) << np.uint32(8)).view(np.uint64)


def box_cdf(z, R, k):
    sp = np.logaddexp
    if math.isinf(k):
        return np.clip((z + R) / (2 * R), 0.0, 1.0)
    return (sp(0.0, 2 * k * (z + R)) - sp(0.0, 2 * k * (z - R))) / (4 * k * R)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "kernel", [BoxKernel(0.2), BoxKernel(0.2, 4.0), GaussianKernel(9.0)], ids=str
)
def test_cpu_block_sampler_ks(kernel, dtype):
    # the threaded CPU path (SFC64 blocks, sample_into) against the kernel law
    d = sample_perturbations(
        [("w", torch.zeros(6_000, dtype=dtype))], 2, generator=torch.Generator().manual_seed(1),
        kernel=kernel,
    )["w"]  # fmt: skip
    assert d.dtype == dtype
    z = d.double().reshape(-1).numpy()
    if isinstance(kernel, GaussianKernel):
        cdf = stats.norm(scale=kernel.scale).cdf
    else:
        cdf = lambda v: box_cdf(v, kernel.R, kernel.k)
    assert stats.kstest(z, cdf).pvalue > ALPHA
    # the same test rejects the law of 1.2 times the draws
    assert stats.kstest(z, lambda v: cdf(v / 1.2)).pvalue < 1e-6


def test_uniform_from_bits_float32_exact_symmetric_one_rounding():
    # the extreme and central grid points and 2^18 random ones: j and 2^24 - 1 - j give
    # opposite draws, none is 0 or +-R, and each is the float32 rounding of the exact
    # midpoint (one rounding, no float64 detour)
    R = 0.3
    edges = [0, 1, 2, (1 << 23) - 1, 1 << 23, (1 << 24) - 2, (1 << 24) - 1, 3]  # even count
    rng = np.random.default_rng(0)
    j = np.concatenate([edges, rng.integers(0, 1 << 24, 1 << 18)]).astype(np.uint32)
    out = np.empty(j.size, np.float32)
    flipped = np.empty(j.size, np.float32)
    uniform_from_bits(Words(words24(j)), out, -R, 2 * R)
    uniform_from_bits(Words(words24((1 << 24) - 1 - j)), flipped, -R, 2 * R)
    np.testing.assert_array_equal(flipped, -out)
    assert (out != 0).all() and np.abs(out).max() < np.float32(R)
    half = j.astype(np.float64) - (2.0**23 - 0.5)  # (j + 1/2) - 2^23, exact
    exact = half * np.float64(np.float32(2 * R * 2.0**-24))  # exact in float64 (48 bits)
    np.testing.assert_array_equal(out, exact.astype(np.float32))
    # the lowest midpoint, R 2^-24 from -R (a float32 ulp of R is 2^-25 R to 2^-24 R),
    # and the two central ones, +-R 2^-24
    assert -R < out[0] <= -R * (1 - 2.0**-23)
    assert out[4] == -out[3] and out[4] == pytest.approx(R * 2.0**-24, rel=1e-6)


def test_uniform_from_bits_off_centre_and_float64():
    # [lo, lo + width): the lowest and highest midpoints; float64 uses 53-bit words
    out = np.empty(2, np.float32)
    uniform_from_bits(Words(words24([0, (1 << 24) - 1])), out, 1.0, 2.0)
    np.testing.assert_allclose(out, [1.0 + 2.0**-24, 3.0 - 2.0**-24], rtol=0, atol=2e-7)
    out64 = np.empty(2)
    words = np.array([0, (1 << 64) - 1], dtype=np.uint64)
    uniform_from_bits(Words(words), out64, -1.0, 2.0)
    np.testing.assert_array_equal(out64, [-1.0 + 2.0**-53, 1.0 - 2.0**-53])
    assert top_bits(Words(words), 2, 53).tolist() == [0, (1 << 53) - 1]


def test_cpu_draws_are_the_documented_sfc64_blocks():
    # the draws of a tensor of two blocks are BoxKernel.sample_into on SFC64 streams keyed
    # by the generator's 124-bit keys: the same seed gives the same draws, bit for bit
    kernel = BoxKernel(0.1)
    n = BLOCK + 100
    d = sample_perturbations(
        [("w", torch.zeros(n))], 1, generator=torch.Generator().manual_seed(8), kernel=kernel
    )["w"].reshape(-1)
    keys = torch.randint(0, _SEED_HIGH, (2, 2), generator=torch.Generator().manual_seed(8))
    ref = np.empty(n, np.float32)
    for i, key in enumerate(keys.tolist()):
        bits = np.random.SFC64(np.random.SeedSequence(key))
        kernel.sample_into(ref[i * BLOCK : (i + 1) * BLOCK], bits)
    np.testing.assert_array_equal(d.numpy(), ref)
    again = sample_perturbations(
        [("w", torch.zeros(n))], 1, generator=torch.Generator().manual_seed(8), kernel=kernel
    )["w"].reshape(-1)
    assert torch.equal(d, again)
    other = sample_perturbations(
        [("w", torch.zeros(n))], 1, generator=torch.Generator().manual_seed(9), kernel=kernel
    )["w"].reshape(-1)
    assert not torch.equal(d, other)


def constant_randint(values):
    """A stand-in for ``torch.randint`` whose successive calls are filled with ``values``."""
    queue = iter(values)

    def randint(low, high, shape, **kw):
        return torch.full(shape, next(queue), dtype=kw.get("dtype") or torch.int64)

    return randint


def test_torch_sampler_has_no_clamped_endpoint(monkeypatch):
    # the extreme random integers: uniform j = 0 and logistic word 0 (lower tail, w at the
    # first midpoint), then uniform 2^24 - 1 and logistic word 1 (upper tail): the draws
    # sit at the extreme cell midpoints, exactly opposite.  Before, torch.rand's 0 was
    # clamped to the smallest normal float, a logistic draw of log(tiny) = -87.3
    # against +16.6 at the top
    R, k, m = 0.25, 3.0, 24
    for words, sign in (((0, 0), -1.0), (((1 << m) - 1, 1), 1.0)):
        monkeypatch.setattr(torch, "randint", constant_randint(words))
        monkeypatch.setattr(torch, "rand", lambda shape, **kw: torch.zeros(shape))
        d = cf.sample_kernel((3,), R=R, k=k, rng=torch.Generator(), dtype=torch.float32)
        expected = sign * (R * (1 - 2.0**-m) + LOGISTIC_MAX_F32 / (2 * k))
        np.testing.assert_allclose(d.numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_sampler_ks_and_symmetry(dtype):
    R, k = 0.5, 3.0
    g = torch.Generator().manual_seed(4)
    d = cf.sample_kernel((20_000,), R=R, k=k, rng=g, dtype=dtype)
    assert d.dtype == dtype
    assert stats.kstest(d.double().numpy(), lambda v: box_cdf(v, R, k)).pvalue > ALPHA
    u = cf._torch_uniform((20_000,), torch.Generator().manual_seed(5), dtype, "cpu", R)
    assert u.abs().max() < R and (u != 0).all()
    assert stats.kstest(u.double().numpy(), lambda v: box_cdf(v, R, math.inf)).pvalue > ALPHA
