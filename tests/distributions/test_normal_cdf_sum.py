"""``NormalCdfSum`` (the sum of the K - 1 normal CDFs behind ``DiscretisedOutput.mean``, by a
window of edges, Euler-Maclaurin or a Taylor series, whichever applies) against the full
evaluation, and against exact oracles.

Oracles: the full sum over all K - 1 edges in the same dtype (what the library computed before:
``full_sums``), and the same sum in float64 from the same (rounded) inputs and edges, summed
with ``math.fsum`` (``exact_sums``, exact to a few float64 eps); at extreme arguments mpmath at
30 digits. The scheme must be as close to the exact sum as the full evaluation is, up to a few
``eps * K`` (the rounding of a sum of K terms of order 1) plus ``eps`` times the sum itself.
"""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest
import scipy.special
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from pyro_bfn.distributions import DiscretisedOutput
from pyro_bfn.distributions import binned_normal
from pyro_bfn.distributions.binned_normal import _CDF_SUM_SCHEMES, NormalCdfSum
from strategies import log_uniform, num_bins

DTYPES = (torch.float64, torch.float32)


@pytest.fixture(params=["as shipped", "schemes at every K"])
def plain_edges(request, monkeypatch):
    """The library sums all edges up to K = 64 (as cheap there); the second variant runs the
    window / Euler-Maclaurin / Taylor schemes at every K, so that they are tested for small K too."""
    if request.param != "as shipped":
        monkeypatch.setattr(binned_normal, "_PLAIN_EDGES", 0)
    return request.param


def edges_as(dtype, K):
    """The interior edges 2j/K - 1 rounded as the library rounds them (float64 values)."""
    return (2 * torch.arange(1, K, dtype=dtype) / K - 1).double().numpy()


def full_sums(loc, scale, K):
    """The plain evaluation over all K - 1 edges, in the dtype of loc: (sum Phi, sum phi, sum z phi)."""
    z = (2 * torch.arange(1, K, dtype=loc.dtype) / K - 1 - loc[..., None]) / scale[..., None]
    density = torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return torch.special.ndtr(z).sum(-1), density.sum(-1), (z * density).sum(-1)


def exact_sums(loc, scale, K):
    """The three sums in float64 from the same inputs and edges, summed exactly (fsum)."""
    edges = edges_as(loc.dtype, K)
    out = []
    for mu, sigma in zip(loc.double().reshape(-1).tolist(), scale.double().reshape(-1).tolist()):
        z = (edges - mu) / sigma
        density = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        out.append([math.fsum(scipy.special.ndtr(z)), math.fsum(density), math.fsum(z * density)])
    return torch.tensor(out, dtype=torch.float64).reshape(loc.shape + (3,)).unbind(-1)


def scheme_sums(loc, scale, K):
    """NormalCdfSum's value and its gradient, as the three sums (sum phi = -sigma dS/dmu)."""
    loc, scale = loc.clone().requires_grad_(), scale.clone().requires_grad_()
    value = NormalCdfSum.apply(loc, scale, K)
    value.sum().backward()
    return value.detach(), -(loc.grad * scale).detach(), -(scale.grad * scale).detach()


def assert_as_close_as_full(loc, scale, K):
    eps = torch.finfo(loc.dtype).eps
    exact = exact_sums(loc, scale, K)
    for name, new, old, truth in zip(("sum Phi", "sum phi", "sum z phi"), scheme_sums(loc, scale, K),
                                     full_sums(loc, scale, K), exact):
        assert new.dtype == loc.dtype and torch.isfinite(new).all(), name
        error_new, error_old = (new.double() - truth).abs(), (old.double() - truth).abs()
        tolerance = error_old + 4 * eps * (K + truth.abs())
        worst = (error_new - tolerance).argmax()
        assert (error_new <= tolerance).all(), (
            f"{name}: K = {K}, mu = {loc.reshape(-1)[worst].item()!r}, sigma = {scale.reshape(-1)[worst].item()!r}: "
            f"error {error_new.reshape(-1)[worst].item():.3g} (full evaluation {error_old.reshape(-1)[worst].item():.3g})"
        )


def regime_edges(K, dtype):
    """Scales just below and above the two switches (window / Euler-Maclaurin / Taylor)."""
    scheme = _CDF_SUM_SCHEMES[dtype]
    switches = [(2 / K) / scheme["spacing"], scheme["taylor"]]
    return [s * f for s in switches for f in (1 - 1e-7, 1.0, 1 + 1e-7)]


@given(
    K=num_bins(),
    dtype=st.sampled_from(DTYPES),
    loc=st.lists(st.one_of(st.floats(-3, 3), st.sampled_from([-1.0, 0.0, 1.0, -1e6, 1e6, 1 / 3])), min_size=1, max_size=6),
    scale=st.lists(log_uniform(1e-6, 1e6), min_size=1, max_size=6),
)
# the worst cases of a 20,000-point random check while the scheme was built
@example(K=3, dtype=torch.float32, loc=[0.333], scale=[7.04e-4])
@example(K=256, dtype=torch.float64, loc=[-0.384], scale=[2.33])
@example(K=7, dtype=torch.float32, loc=[0.143], scale=[7.57e-4])
def test_matches_the_full_evaluation(K, dtype, loc, scale):
    loc = torch.tensor(loc, dtype=dtype)[:, None]
    scale = torch.tensor(scale, dtype=dtype)[None, :]
    loc, scale = torch.broadcast_tensors(loc, scale)
    assert_as_close_as_full(loc.contiguous(), scale.contiguous(), K)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("K", [2, 3, 16, 64, 65, 100, 255, 256])
def test_every_regime_and_its_switches(dtype, K, plain_edges):
    """A grid of mu over [-2, 2] and the edges, at scales on both sides of both switches and
    across eight orders of magnitude."""
    scales = regime_edges(K, dtype) + list(np.logspace(-5, 4, 28))
    locs = np.concatenate([np.linspace(-2.5, 2.5, 41), 2 * np.arange(K + 1) / K - 1])
    loc, scale = np.meshgrid(locs, scales, indexing="ij")
    assert_as_close_as_full(torch.tensor(loc, dtype=dtype), torch.tensor(scale, dtype=dtype), K)


def mpmath_sum(mu, sigma, K):
    """sum_j Phi(z_j) at 30 digits (Phi(z) is 0 or 1 to far more digits beyond |z| = 60, where
    mpmath's erfc overflows for astronomic z)."""
    mp.mp.dps = 30

    def cdf(z):
        return mp.mpf(z > 0) if abs(z) > 60 else mp.ncdf(z)

    return float(mp.fsum(cdf((mp.mpf(2 * j) / K - 1 - mp.mpf(mu)) / mp.mpf(sigma)) for j in range(1, K)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "mu, sigma, K",
    [(0.0, 1e-300, 256), (0.3, 1e-30, 2), (-1e30, 1e-3, 256), (1e30, 1e-3, 256), (0.5, 1e30, 256),
     (1e6, 1e6, 256), (-1e6, 1e6, 7), (-0.999, 1e-3, 256), (0.999, 0.0155, 256), (-0.2, 1.99, 256),
     (3.0, 0.5, 256), (-3.0, 0.5, 256), (0.0, 1e4, 2)],
)
def test_extreme_arguments_against_mpmath(mu, sigma, K, dtype, plain_edges):
    if dtype == torch.float32 and (abs(mu) > 1e38 or sigma < 1e-38 or sigma > 1e38):
        pytest.skip("not a float32")
    loc, scale = torch.tensor([mu], dtype=dtype), torch.tensor([sigma], dtype=dtype)
    exact = mpmath_sum(loc.item(), scale.item(), K)  # of the rounded inputs (edges: exact)
    eps = torch.finfo(dtype).eps
    value = NormalCdfSum.apply(loc, scale, K)
    # the edges' rounding moves the sum by up to eps/sigma sum phi: bounded by K eps / (sigma delta)
    edge_rounding = eps * float(full_sums(loc.double(), scale.double(), K)[1]) / sigma
    assert abs(value.item() - exact) <= 4 * eps * (K + abs(exact)) + edge_rounding


@pytest.mark.parametrize("K", [2, 7, 256])
def test_gradcheck_in_every_regime(K, plain_edges):
    schemes = _CDF_SUM_SCHEMES[torch.float64]
    narrow, taylor = (2 / K) / schemes["spacing"], schemes["taylor"]
    scale = torch.tensor([narrow / 3, narrow / 1.01, narrow * 1.01, (narrow * taylor) ** 0.5, taylor * 1.01, 30.0],
                         dtype=torch.float64)
    loc = torch.linspace(-1.3, 1.1, len(scale), dtype=torch.float64)
    inputs = (loc.requires_grad_(), scale.requires_grad_())
    assert torch.autograd.gradcheck(lambda mu, sigma: NormalCdfSum.apply(mu, sigma, K), inputs)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_is_computed_in_float32(dtype):
    loc = torch.linspace(-1.2, 1.2, 25, dtype=dtype)
    scale = torch.logspace(-4, 2, 25).to(dtype)
    value = NormalCdfSum.apply(loc, scale, 256)
    expected = NormalCdfSum.apply(loc.float(), scale.float(), 256)
    assert value.dtype == dtype
    torch.testing.assert_close(value, expected.to(dtype), rtol=0, atol=0)


def test_mean_under_autocast_is_unchanged():
    """The network runs under autocast, the loss in float32: the mean (and its gradient) must not
    change inside an autocast region."""
    torch.manual_seed(0)
    loc = (torch.rand(4, 50) * 2.4 - 1.2).requires_grad_()
    scale = torch.exp(torch.randn(4, 50) * 3).requires_grad_()
    mean = DiscretisedOutput(loc, scale, 256).mean
    grads = torch.autograd.grad(mean.sum(), (loc, scale))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast_mean = DiscretisedOutput(loc, scale, 256).mean
        autocast_grads = torch.autograd.grad(autocast_mean.sum(), (loc, scale))
    assert autocast_mean.dtype == torch.float32
    torch.testing.assert_close(autocast_mean, mean, rtol=0, atol=0)
    for got, want in zip(autocast_grads, grads):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_on_every_device(device):
    loc = torch.linspace(-1.2, 1.2, 30, dtype=torch.float64)
    scale = torch.logspace(-4, 2, 30, dtype=torch.float64)
    value = NormalCdfSum.apply(loc.to(device), scale.to(device), 256)
    assert value.device.type == device
    torch.testing.assert_close(value.cpu(), full_sums(loc, scale, 256)[0], rtol=0, atol=4 * 256 * 2.3e-16)
