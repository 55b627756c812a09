"""Discretised-data BFN distributions (paper Sec. 4) with scipy as the oracle: what is specific to
the family; the properties every class has are in test_generic.py.

The oracle for the bin masses is written in log space with scipy's ``norm.logcdf`` /
``norm.logsf`` (lower tail below the mean, mirrored upper tail above it), so it stays
accurate far into the tails where ``cdf(b) - cdf(a)`` cancels or underflows to 0.
"""

import math

import numpy as np
import pyro
import pytest
import scipy.stats
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

from pyro_bfn.distributions import DiscretisedOutput, DiscretisedReceiver, NormalSender, bin_centres, bin_index
from strategies import accuracies, batch_shapes, broadcastable_shapes, num_bins, reals, sample_shapes, tensors

EPS64 = float(np.finfo(np.float64).eps)
EPS32 = float(np.finfo(np.float32).eps)
K_SIGMA = 5.0
scales = accuracies(1e-4, 1e4)  # sigma_x over eight orders of magnitude


def scipy_log_bin_masses(loc, scale, K):
    """log p_O(k) for every bin, shape (..., K): edges (2k)/K - 1, outer bins take the tails."""
    loc = np.asarray(loc, dtype=np.float64)[..., None]
    scale = np.asarray(scale, dtype=np.float64)[..., None]
    edges = np.arange(K + 1) / K * 2 - 1
    lower = np.concatenate([[-np.inf], edges[1:-1]])
    upper = np.concatenate([edges[1:-1], [np.inf]])
    a, b = (lower - loc) / scale, (upper - loc) / scale
    with np.errstate(divide="ignore", invalid="ignore"):
        # below the mean: log(Phi(b) - Phi(a)); above: log(Q(a) - Q(b)) with Q = 1 - Phi
        low = scipy.stats.norm.logcdf(b) + np.log1p(-np.exp(scipy.stats.norm.logcdf(a) - scipy.stats.norm.logcdf(b)))
        high = scipy.stats.norm.logsf(a) + np.log1p(-np.exp(scipy.stats.norm.logsf(b) - scipy.stats.norm.logsf(a)))
    return np.where(a > 0, high, low)


@st.composite
def outputs(draw, dtype=torch.float64, loc_bound=1.5):
    shape = draw(batch_shapes())
    loc = draw(tensors(draw(broadcastable_shapes(shape)), reals(loc_bound), dtype))
    scale = draw(tensors(draw(broadcastable_shapes(shape)), scales, dtype))
    return DiscretisedOutput(loc, scale, draw(num_bins()))


@given(d=outputs())
@example(d=DiscretisedOutput(torch.tensor(0.9, dtype=torch.float64), torch.tensor(1e-3, dtype=torch.float64), 256))
@example(d=DiscretisedOutput(torch.tensor(-0.99, dtype=torch.float64), torch.tensor(1e-4, dtype=torch.float64), 2))
def test_probs_and_log_prob_match_scipy(d):
    K = d.num_bins
    expected_log = scipy_log_bin_masses(d.loc.numpy(), d.scale.numpy(), K)
    probs = d.probs
    assert probs.shape == d.batch_shape + (K,)
    # probs are differences of two CDF values <= 1: absolute error a few eps
    np.testing.assert_allclose(probs.numpy(), np.exp(expected_log), rtol=1e-9, atol=8 * EPS64)
    np.testing.assert_allclose(probs.sum(-1).numpy(), 1.0, rtol=0, atol=4 * K * EPS64)
    # log_prob of every centre, enumerated: (K,) + batch_shape
    support = d.enumerate_support()
    lp = d.log_prob(support)
    assert lp.shape == (K,) + d.batch_shape and torch.isfinite(lp).all()
    np.testing.assert_allclose(lp.numpy(), np.moveaxis(expected_log, -1, 0), rtol=1e-9, atol=1e-12)


def test_far_tail_log_prob_where_naive_difference_cancels():
    loc, scale, K = torch.tensor(0.9, dtype=torch.float64), torch.tensor(1e-3, dtype=torch.float64), 256
    d = DiscretisedOutput(loc, scale, K)
    centres = bin_centres(K, dtype=torch.float64)
    edges_b = (centres[:-1] + 1 / K - 0.9) / 1e-3
    naive = scipy.stats.norm.cdf(edges_b[1:]) - scipy.stats.norm.cdf(edges_b[:-1])
    assert (naive == 0).sum() > 100  # the naive differences underflow or cancel to 0
    lp = d.log_prob(centres)
    assert torch.isfinite(lp).all()
    expected = scipy_log_bin_masses(0.9, 1e-3, K)
    np.testing.assert_allclose(lp.numpy(), expected, rtol=1e-9)
    assert lp[0].item() < -1e5  # about -(1.9 / 1e-3)^2 / 2


@given(d=outputs(dtype=torch.float32))
# bin edges computed as centre -+ 1/K did not coincide: probs summed to 0.99982
@example(d=DiscretisedOutput(torch.tensor(0.0), torch.tensor(1e-4), 149))
@example(d=DiscretisedOutput(torch.tensor(0.0), torch.tensor(1e-4), 7))
# torch's simplex check (|sum - 1| < 1e-6) rejected exact-to-rounding float32 probs
@example(d=DiscretisedOutput(torch.tensor(0.5), torch.tensor(1.0), 149))
@example(d=DiscretisedOutput(torch.tensor(0.5), torch.tensor(1.0), 256))
def test_float32_probs_sum_to_one_and_feed_a_valid_receiver(d):
    probs = d.probs
    assert probs.dtype == torch.float32 and (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(-1).numpy(), 1.0, rtol=0, atol=4 * d.num_bins * EPS32)
    # the receiver validates probs as a simplex (|sum - 1| < 1e-6): it must accept the output's probs
    r = d.receiver(torch.tensor(2.0))
    assert r.batch_shape == d.batch_shape


@given(d=outputs(), sample_shape=sample_shapes())
def test_enumerate_support_sample_mean_variance(d, sample_shape):
    K, batch = d.num_bins, d.batch_shape
    centres = (2 * np.arange(1, K + 1) - 1) / K - 1  # paper Sec. 4.1, bin k = 1..K
    np.testing.assert_allclose(bin_centres(K, dtype=torch.float64).numpy(), centres, rtol=0, atol=2 * EPS64)
    s = d.enumerate_support()
    assert s.shape == (K,) + batch
    np.testing.assert_allclose(s.reshape(K, -1).numpy(), np.broadcast_to(centres[:, None], (K, max(1, batch.numel()))))
    assert d.enumerate_support(expand=False).shape == (K,) + (1,) * len(batch)
    x = d.sample(sample_shape)
    assert x.shape == sample_shape + batch
    assert d.support.check(x).all()
    assert np.isin(x.numpy(), centres.astype(np.float64)).all() or np.allclose(
        x.numpy(), centres[bin_index(x, K).numpy()], rtol=0, atol=4 * EPS64
    )
    p = d.probs.numpy()
    mean = (p * centres).sum(-1)
    np.testing.assert_allclose(d.mean.numpy(), mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d.variance.numpy(), (p * (centres - mean[..., None]) ** 2).sum(-1), rtol=1e-9, atol=1e-12)


@given(d=outputs())
@example(d=DiscretisedOutput(torch.tensor([0.3, -0.999], dtype=torch.float64), torch.tensor(1e-3, dtype=torch.float64), 256))
def test_mean_gradient_matches_scipy(d):
    """The analytic gradient of the mean against the derivative of sum_k k_c p_O(k) written with
    scipy's normal density: d/dmu = (2/K) sum_j phi(z_j)/sigma, d/dsigma = (2/K) sum_j z_j phi(z_j)/sigma
    over the interior edges e_j (z_j = (e_j - mu)/sigma), broadcast shapes summed back."""
    K = d.num_bins
    loc = d.loc.detach().clone().requires_grad_()
    scale = d.scale.detach().clone().requires_grad_()
    DiscretisedOutput(loc, scale, K).mean.sum().backward()
    mu, sigma = np.broadcast_arrays(d.loc.numpy(), d.scale.numpy())
    edges = (np.arange(1, K) / K * 2 - 1)
    z = (edges - mu[..., None]) / sigma[..., None]
    pdf = scipy.stats.norm.pdf(z)
    d_loc = (2 / K) * pdf.sum(-1) / sigma
    d_scale = (2 / K) * (z * pdf).sum(-1) / sigma

    def summed_to(values, shape):
        values = np.asarray(values)
        while values.ndim > len(shape):
            values = values.sum(0)
        return values.sum(axis=tuple(i for i, n in enumerate(shape) if n == 1 and values.shape[i] != 1), keepdims=True)

    # each term is bounded by (2/K) phi/sigma <= 0.8 (2/K) / sigma: relative to that scale
    tol = 64 * EPS64 * (1 + 1 / sigma.min()) * K
    np.testing.assert_allclose(loc.grad.numpy(), summed_to(d_loc, loc.shape).reshape(loc.shape), rtol=1e-9, atol=tol)
    np.testing.assert_allclose(scale.grad.numpy(), summed_to(d_scale, scale.shape).reshape(scale.shape), rtol=1e-9, atol=tol)


@settings(max_examples=10)
@given(loc=reals(1.2), scale=accuracies(1e-2, 10), K=num_bins(2, 32))
def test_sample_frequencies_match_probs(loc, scale, K):
    """Bin counts of n samples: each within K_SIGMA sqrt(n p (1 - p)) + 1 of n p (CLT)."""
    torch.manual_seed(4)
    n = 20_000
    d = DiscretisedOutput(torch.tensor(loc, dtype=torch.float64), torch.tensor(scale, dtype=torch.float64), K)
    counts = np.bincount(bin_index(d.sample((n,)), K).numpy(), minlength=K)
    p = np.exp(scipy_log_bin_masses(loc, scale, K))
    assert np.all(np.abs(counts - n * p) <= K_SIGMA * np.sqrt(n * p * (1 - p)) + 1)


@given(K=num_bins(), x=st.lists(reals(1.5), min_size=1, max_size=20))
def test_bin_index_is_nearest_centre(K, x):
    centres = bin_centres(K, dtype=torch.float64)
    assert (bin_index(centres, K) == torch.arange(K)).all()
    xs = torch.tensor(x, dtype=torch.float64)
    distance = (xs[:, None] - centres[None, :]).abs()
    nearest = bin_index(xs, K)
    # nearest centre (ties at an edge may go either way)
    chosen = distance.gather(1, nearest[:, None])[:, 0]
    assert (chosen <= distance.min(1).values + 1e-12).all()


@given(K=num_bins(), k=st.integers(0, 255), offset=st.sampled_from([0.25, 0.5, -0.3, 0.49]))
def test_log_prob_of_non_centre_raises(K, k, offset):
    d = DiscretisedOutput(torch.zeros(2), torch.ones(2), K)
    value = bin_centres(K)[k % K] + offset * 2 / K
    with pytest.raises(ValueError, match="(?i)value"):
        d.log_prob(value)


@given(data=st.data())
def test_receiver_log_prob_matches_scipy_mixture(data):
    d = data.draw(outputs())
    alpha = data.draw(tensors(data.draw(broadcastable_shapes(d.batch_shape)), accuracies(1e-4, 1e6)))
    r = d.receiver(alpha)
    assert isinstance(r, DiscretisedReceiver) and r.batch_shape == d.batch_shape
    y = data.draw(tensors(d.batch_shape, reals(2)))
    K = d.num_bins
    centres = (2 * np.arange(1, K + 1) - 1) / K - 1
    p = d.probs.numpy()
    a = np.broadcast_to(alpha.numpy(), d.batch_shape)[..., None]
    # the output's log bin masses from scipy (the receiver keeps masses below the smallest float)
    log_masses = scipy_log_bin_masses(d.loc.numpy(), d.scale.numpy(), K)
    terms = log_masses + scipy.stats.norm.logpdf(y.numpy()[..., None], centres, 1 / np.sqrt(a))
    expected = logsumexp(terms, axis=-1)
    np.testing.assert_allclose(r.log_prob(y).numpy(), expected, rtol=1e-9, atol=1e-9)
    mean = (p * centres).sum(-1)
    np.testing.assert_allclose(r.mean.numpy(), mean, rtol=1e-12, atol=1e-12)
    variance = (p * (centres - mean[..., None]) ** 2).sum(-1) + 1 / a[..., 0]
    np.testing.assert_allclose(r.variance.numpy(), variance, rtol=1e-9, atol=1e-12)


@given(data=st.data(), sample_shape=sample_shapes(), extra=batch_shapes(0, 2))
def test_shapes_expand_to_event(data, sample_shape, extra):
    d = data.draw(outputs())
    alpha = data.draw(tensors(data.draw(broadcastable_shapes(d.batch_shape)), accuracies(1e-2, 1e2)))
    r = d.receiver(alpha)
    shape = d.batch_shape
    big = extra + shape
    for dist_ in (d, r):
        x = dist_.sample(sample_shape)
        assert x.shape == sample_shape + shape
        assert dist_.log_prob(x).shape == sample_shape + shape
        e = dist_.expand(big)
        assert type(e) is type(dist_) and e.batch_shape == big
        assert e.sample(sample_shape).shape == sample_shape + big
        x0 = dist_.sample()
        torch.testing.assert_close(e.log_prob(x0), dist_.log_prob(x0).expand(big))
        if len(shape):
            ind = dist_.to_event(len(shape))
            assert ind.event_shape == shape and ind.log_prob(x).shape == sample_shape
            torch.testing.assert_close(ind.log_prob(x), dist_.log_prob(x).sum(tuple(range(-len(shape), 0))))
    assert d.expand(big).num_bins == d.num_bins
    torch.testing.assert_close(d.expand(big).probs, d.probs.expand(big + (d.num_bins,)))


def test_receiver_of_an_output_under_nested_plates_log_prob_sum_matches_scipy():
    """The receiver that an output builds (from its log bin masses) observed under plates (the
    output itself, and a receiver built from probabilities: test_generic.py)."""
    K = 16
    d0 = DiscretisedOutput(torch.tensor(0.2, dtype=torch.float64), torch.tensor(0.3, dtype=torch.float64), K)
    fn = d0.receiver(torch.tensor(30.0, dtype=torch.float64))
    torch.manual_seed(5)
    data = fn.sample((3, 4))

    def model():
        with pyro.plate("outer", 3, dim=-2), pyro.plate("inner", 4, dim=-1):
            pyro.sample("x", fn, obs=data)

    trace = pyro.poutine.trace(model).get_trace()
    trace.compute_log_prob()
    site = trace.nodes["x"]
    assert site["fn"].batch_shape == (3, 4)
    log_masses = scipy_log_bin_masses(0.2, 0.3, K)
    centres = bin_centres(K, dtype=torch.float64).numpy()
    expected = logsumexp(log_masses + scipy.stats.norm.logpdf(data.numpy()[..., None], centres, 1 / math.sqrt(30)), -1)
    np.testing.assert_allclose(site["log_prob"].numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(site["log_prob_sum"].item(), expected.sum(), rtol=1e-10)


def test_enumeration_under_plate():
    """Parallel enumeration of the output under a plate: the marginal over the bins sums to 1."""
    from pyro.infer import TraceEnum_ELBO, config_enumerate

    d = DiscretisedOutput(torch.tensor(0.1, dtype=torch.float64), torch.tensor(0.4, dtype=torch.float64), 8)

    @config_enumerate
    def model():
        with pyro.plate("data", 5, dim=-1):
            pyro.sample("x", d)

    def guide():
        pass

    # log sum_x p(x) = 0 for each of the 5 plate members, so the ELBO is 0
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model, guide)
    assert abs(loss) < 1e-10


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: DiscretisedOutput(torch.tensor([0, 1]), 1.0, 4), "loc"),
        (lambda: DiscretisedOutput(0.0, torch.tensor([1]), 4), "scale"),
        (lambda: DiscretisedOutput(0.0, 1.0, 1), "num_bins"),
        (lambda: DiscretisedOutput(0.0, 1.0, 4.0), "num_bins"),
        (lambda: DiscretisedOutput(0.0, 1.0, True), "num_bins"),
        (lambda: DiscretisedOutput(torch.zeros(2), torch.ones(3), 4), "loc"),  # used to be a RuntimeError
        (lambda: DiscretisedReceiver(torch.tensor([1.0]), 1.0), "probs"),
        (lambda: DiscretisedReceiver(torch.tensor([1, 0]), 1.0), "probs"),
        (lambda: DiscretisedReceiver(torch.tensor([0.5, 0.5]), torch.tensor([2])), "accuracy"),
        (lambda: DiscretisedReceiver(torch.full((2, 4), 0.25), torch.ones(3)), "accuracy"),
        (lambda: bin_centres(1), "num_bins"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(make, name):
    """Wrong dtypes and shapes, bin counts (values that break a constraint: test_generic.py)."""
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        make()


@given(loc=reals(3), scale=accuracies(1e-4, 1e4), K=num_bins(), alpha=accuracies(1e-4, 1e6), y=reals(2))
# NaN gradients (inf * 0) from the outer edges being set to +-inf before standardising, and
# from log(0) in the receiver; found by this test before the fix
@example(loc=0.3, scale=0.01, K=16, alpha=3.0, y=0.2)
@example(loc=0.9, scale=1e-4, K=256, alpha=1e6, y=-1.0)
@example(loc=-3.0, scale=1e4, K=2, alpha=1e-4, y=2.0)
def test_float32_extremes_finite_values_and_gradients(loc, scale, K, alpha, y):
    loc_ = torch.tensor(loc, dtype=torch.float32, requires_grad=True)
    scale_ = torch.tensor(scale, dtype=torch.float32, requires_grad=True)
    alpha_ = torch.tensor(alpha, dtype=torch.float32, requires_grad=True)
    d = DiscretisedOutput(loc_, scale_, K)
    centres = bin_centres(K)
    lp = d.log_prob(centres)
    assert lp.dtype == torch.float32
    # log-masses below the float32 range are -inf only if the float64 value is below -3.4e38
    assert torch.isfinite(lp).all()
    out = lp.sum() + (d.probs * centres).sum() + d.mean + d.variance
    r = d.receiver(alpha_)
    out = out + r.log_prob(torch.tensor(y)) + r.mean + r.variance
    assert torch.isfinite(out)
    grads = torch.autograd.grad(out, [loc_, scale_, alpha_])
    assert all(torch.isfinite(g) for g in grads), grads
    assert d.support.check(d.sample((3,))).all()
    assert torch.isfinite(r.sample((3,))).all()


def test_kl_to_receiver_of_a_perfect_output_is_small():
    """A sender at a bin centre against the receiver of an output concentrated on that bin:
    the mixture is the sender itself up to the other bins' mass (not a KL accuracy test)."""
    K = 16
    centres = bin_centres(K, dtype=torch.float64)
    d = DiscretisedOutput(centres[5], torch.tensor(1e-4, dtype=torch.float64), K)
    assert d.probs[5].item() == 1.0
    kl = torch.distributions.kl_divergence(NormalSender(centres[5], torch.tensor(10.0, dtype=torch.float64)), d.receiver(10.0))
    assert abs(kl.item()) < 1e-6
