"""Continuous-data BFN distributions (paper Sec. 3) with scipy as the oracle: what is specific to
the family (update, flow, conjugacy, accuracy additivity, extremes); the properties every class
has (shapes, expand, support, validation, log_prob, moments, pyro.plate) are in test_generic.py.

Statistical checks use a fixed seed (deterministic) and tolerances derived from the sample
size: a sample mean is within ``K_SIGMA * sd / sqrt(n)`` of its expectation, a sample variance
within ``K_SIGMA * var * sqrt(2 / (n - 1))`` of its expectation (Normal data), with
``K_SIGMA = 5`` (two-sided Normal tail probability 6e-7 per check).
"""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import scipy.stats
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyro_bfn.distributions import (
    NormalFlow,
    NormalInput,
    NormalReceiver,
    NormalSender,
    NormalUpdate,
    PointMassOutput,
    bayesian_update,
)
from pyro_bfn.schedules import ContinuousSchedule
from strategies import accuracies, batch_shapes, broadcastable_shapes, reals, sigma_1s, tensors, times

K_SIGMA = 5.0
RTOL = 1e-9  # float64 log-densities: a handful of ulps relative, far above eps
acc = accuracies()
small_acc = accuracies(1e-3, 1e3)  # accuracies for which Monte Carlo moments are well conditioned


def _logpdf_check(distribution, value, loc, scale):
    """log_prob against scipy.stats.norm.logpdf with (loc, scale) computed in numpy."""
    expected = scipy.stats.norm.logpdf(value.numpy(), loc=loc, scale=scale)
    actual = distribution.log_prob(value)
    assert actual.dtype == torch.float64
    np.testing.assert_allclose(actual.numpy(), expected, rtol=RTOL, atol=1e-9)


@st.composite
def _shape_and_params(draw, n_params, elements):
    """A batch shape and ``n_params`` float64 tensors, each of a shape broadcastable to it."""
    shape = draw(batch_shapes())
    params = [draw(tensors(draw(broadcastable_shapes(shape)), el)) for el in elements[:n_params]]
    return shape, params


# ---------------------------------------------------------------------------------------------
# log_prob against scipy


@given(data=st.data(), kind=st.sampled_from(["input", "sender", "receiver"]))
def test_normal_log_prob_matches_scipy(data, kind):
    shape, (centre, accuracy) = data.draw(_shape_and_params(2, [reals(), acc]))
    value = data.draw(tensors(shape))
    cls = {"input": NormalInput, "sender": NormalSender, "receiver": NormalReceiver}[kind]
    d = cls(centre, accuracy)
    assert d.batch_shape == torch.broadcast_shapes(centre.shape, accuracy.shape)
    _logpdf_check(d, value, centre.numpy(), 1 / np.sqrt(accuracy.numpy()))
    if kind == "receiver":  # the receiver of the point-mass output is the same distribution
        r = PointMassOutput(centre).receiver(accuracy)
        np.testing.assert_allclose(r.log_prob(value).numpy(), d.log_prob(value).numpy(), rtol=0, atol=0)


@given(data=st.data())
def test_update_log_prob_matches_scipy(data):
    shape, (mu, rho, x, alpha) = data.draw(_shape_and_params(4, [reals(), acc, reals(), acc]))
    d = NormalUpdate(mu, rho, x, alpha)
    m, r, xx, a = (p.numpy() for p in (mu, rho, x, alpha))
    loc = (r * m + a * xx) / (r + a)
    scale = np.sqrt(a) / (r + a)
    value = d.mean + data.draw(tensors(shape, reals(3))) * d.stddev
    _logpdf_check(d, value, loc, scale)
    np.testing.assert_allclose(d.updated_precision.numpy(), np.broadcast_to(r + a, d.batch_shape), rtol=4e-16)


@given(data=st.data(), sigma_1=sigma_1s(), t=times(1e-6, 1.0))
def test_flow_log_prob_matches_scipy(data, sigma_1, t):
    shape = data.draw(batch_shapes())
    x = data.draw(tensors(shape, reals(1.0)))
    beta = ContinuousSchedule(sigma_1).beta(torch.tensor(t, dtype=torch.float64))
    d = NormalFlow(x, beta)
    # paper Sec. 3.5: N(gamma x, gamma (1 - gamma)); 1 - gamma = sigma_1^(2t) computed directly
    # (1 - gamma in floating point would cancel when gamma is near 1)
    gamma, one_minus_gamma = -math.expm1(2 * t * math.log(sigma_1)), sigma_1 ** (2 * t)
    np.testing.assert_allclose(d.gamma.numpy(), gamma, rtol=1e-12)
    loc, scale = gamma * x.numpy(), math.sqrt(gamma * one_minus_gamma)
    np.testing.assert_allclose(d.mean.numpy(), loc, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(d.stddev.numpy(), scale, rtol=1e-9)
    value = d.mean + data.draw(tensors(shape, reals(3))) * scale
    expected = scipy.stats.norm.logpdf(value.numpy(), loc=loc, scale=scale)
    # the scale carries the relative error of gamma (1 - gamma), ~1e-12 when gamma is tiny
    np.testing.assert_allclose(d.log_prob(value).numpy(), expected, rtol=1e-9, atol=1e-8)


@given(data=st.data())
def test_flow_is_update_from_prior_with_accuracy_beta(data):
    shape, (x, beta) = data.draw(_shape_and_params(2, [reals(), acc]))
    flow = NormalFlow(x, beta)
    update = NormalUpdate(torch.zeros(()), torch.ones(()), x, beta)
    torch.testing.assert_close(flow.mean, update.mean, rtol=1e-14, atol=0)
    torch.testing.assert_close(flow.stddev, update.stddev, rtol=1e-14, atol=0)
    torch.testing.assert_close(flow.precision, update.updated_precision, rtol=0, atol=0)
    torch.testing.assert_close(flow.gamma, beta / (1 + beta) * torch.ones_like(x), rtol=1e-14, atol=0)


# ---------------------------------------------------------------------------------------------
# conjugacy and accuracy additivity


@given(data=st.data())
def test_conjugate_update_identity(data):
    shape, (mu, rho, m2, s2) = data.draw(
        _shape_and_params(4, [reals(), accuracies(1e-4, 1e4), reals(), accuracies(1e-2, 1e2)])
    )
    f = NormalInput(mu, rho)
    g = dist.Normal(m2, s2)  # any Pyro Normal (scale parametrisation)
    fg, log_normalizer = f.conjugate_update(g)
    batch = torch.broadcast_shapes(f.batch_shape, g.batch_shape)
    assert isinstance(fg, NormalInput) and fg.batch_shape == batch and log_normalizer.shape == batch
    z = data.draw(tensors(shape, reals(5)))
    lhs = scipy.stats.norm.logpdf(z.numpy(), mu.numpy(), 1 / np.sqrt(rho.numpy())) + scipy.stats.norm.logpdf(
        z.numpy(), m2.numpy(), s2.numpy()
    )
    rhs = fg.log_prob(z) + log_normalizer
    np.testing.assert_allclose(rhs.numpy(), lhs, rtol=1e-9, atol=1e-8)
    torch.testing.assert_close(f.log_prob(z) + g.log_prob(z), rhs, rtol=1e-9, atol=1e-8)
    # the normalizer is the scipy density of mu under N(m2, 1/rho + s2^2)
    expected = scipy.stats.norm.logpdf(mu.numpy(), m2.numpy(), np.sqrt(1 / rho.numpy() + s2.numpy() ** 2))
    np.testing.assert_allclose(log_normalizer.numpy(), np.broadcast_to(expected, batch), rtol=1e-9, atol=1e-9)


@given(data=st.data())
def test_update_is_conjugate_update_with_sender_likelihood(data):
    shape, (mu, rho, y, alpha) = data.draw(_shape_and_params(4, [reals(), acc, reals(), acc]))
    prior = NormalInput(mu, rho)
    posterior = prior.update(y, alpha)
    likelihood = NormalSender(torch.zeros(()), alpha).likelihood(y)  # N(x; y, 1/alpha) in x
    conjugate, _ = prior.conjugate_update(likelihood)
    torch.testing.assert_close(posterior.loc, conjugate.loc, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(posterior.precision, conjugate.precision, rtol=1e-12, atol=0)
    m, r, yy, a = (p.numpy() for p in (mu, rho, y, alpha))
    np.testing.assert_allclose(posterior.precision.numpy(), np.broadcast_to(r + a, posterior.batch_shape), rtol=4e-16)
    np.testing.assert_allclose(posterior.loc.numpy(), (r * m + a * yy) / (r + a), rtol=1e-12, atol=1e-12)
    loc, precision = bayesian_update(mu, rho, y, alpha)
    torch.testing.assert_close(loc, posterior.loc, rtol=0, atol=0)


@given(mu=reals(), rho=acc, x=reals(), a=acc, b=acc)
def test_accuracy_additivity_exact_moments(mu, rho, x, a, b):
    """mu'' = ((rho + a) mu' + b y2) / (rho + a + b) is linear in mu' ~ p_U(a) and y2 ~ N(x, 1/b):
    its exact mean and variance equal those of one update with accuracy a + b."""
    t = lambda v: torch.tensor(v, dtype=torch.float64)
    first = NormalUpdate(t(mu), t(rho), t(x), t(a))
    r1 = first.updated_precision
    mean2 = (r1 * first.mean + b * x) / (r1 + b)
    var2 = (r1**2 * first.variance + b) / (r1 + b) ** 2
    once = NormalUpdate(t(mu), t(rho), t(x), t(a + b))
    torch.testing.assert_close(mean2, once.mean, rtol=1e-12, atol=1e-12 * (1 + abs(mu) + abs(x)))
    torch.testing.assert_close(var2, once.variance, rtol=1e-12, atol=0)
    torch.testing.assert_close(r1 + b, once.updated_precision, rtol=4e-16, atol=0)


# KS test: with a fixed seed the statistic is deterministic; the significance level 1e-6
# (critical distance sqrt(ln(2/1e-6)/(2n)) = 0.019 for n = 20,000) makes a false alarm a
# one-in-a-million event per parameter set even if the seed were changed, while a 5% error in
# the standard deviation or a 0.05-sd error in the mean gives a distance well above 0.019.
KS_LEVEL = 1e-6
N_MC = 20_000


@settings(max_examples=8)
@given(mu=reals(2), rho=small_acc, x=reals(1), a=small_acc, b=small_acc)
@example(mu=0.0, rho=1.0, x=0.5, a=0.3, b=2.0)
def test_accuracy_additivity_statistical(mu, rho, x, a, b):
    torch.manual_seed(0)
    t = lambda v: torch.full((N_MC,), v, dtype=torch.float64)
    prior = NormalInput(t(mu), t(rho))
    y1 = NormalSender(t(x), t(a)).sample()
    y2 = NormalSender(t(x), t(b)).sample()
    twice = prior.update(y1, a).update(y2, b)
    once = NormalUpdate(torch.tensor(mu), torch.tensor(rho), torch.tensor(x), torch.tensor(a + b))
    torch.testing.assert_close(twice.precision, torch.full((N_MC,), rho + a + b, dtype=torch.float64))
    loc, scale = once.mean.item(), once.stddev.item()
    result = scipy.stats.kstest(twice.loc.numpy(), scipy.stats.norm(loc, scale).cdf)
    assert result.pvalue > KS_LEVEL, result
    # and against samples of the one-step update itself (two-sample test, same level)
    result2 = scipy.stats.ks_2samp(twice.loc.numpy(), once.sample((N_MC,)).numpy())
    assert result2.pvalue > KS_LEVEL, result2
    sample = twice.loc.numpy()
    assert abs(sample.mean() - loc) <= K_SIGMA * scale / math.sqrt(N_MC)
    assert abs(sample.var(ddof=1) - scale**2) <= K_SIGMA * scale**2 * math.sqrt(2 / (N_MC - 1))


@settings(max_examples=6)
@given(sigma_1=sigma_1s(1e-2, 0.9), n=st.integers(1, 20), x=reals(1))
@example(sigma_1=0.02, n=10, x=0.7)
def test_flow_matches_simulated_sequential_updates(sigma_1, n, x):
    """n sequential updates from the prior with the schedule's alpha_i (y from the sender at x)
    give the flow at t = i/n after every step i (moments, CLT tolerance)."""
    torch.manual_seed(1)
    schedule = ContinuousSchedule(sigma_1)
    alphas = schedule.step_accuracies(n, dtype=torch.float64)
    data = torch.full((N_MC,), x, dtype=torch.float64)
    theta = NormalInput.prior((N_MC,), dtype=torch.float64)
    for i in range(1, n + 1):
        y = NormalSender(data, alphas[i - 1]).sample()
        theta = theta.update(y, alphas[i - 1])
        beta = schedule.beta(torch.tensor(i / n, dtype=torch.float64))
        flow = NormalFlow(torch.tensor(x, dtype=torch.float64), beta)
        torch.testing.assert_close(theta.precision, torch.full_like(data, 1 + beta.item()), rtol=1e-12, atol=0)
        mean, sd = flow.mean.item(), flow.stddev.item()
        sample = theta.loc.numpy()
        assert abs(sample.mean() - mean) <= K_SIGMA * sd / math.sqrt(N_MC)
        assert abs(sample.var(ddof=1) - sd**2) <= K_SIGMA * sd**2 * math.sqrt(2 / (N_MC - 1))
    result = scipy.stats.kstest(theta.loc.numpy(), scipy.stats.norm(flow.mean.item(), flow.stddev.item()).cdf)
    assert result.pvalue > KS_LEVEL, result


# ---------------------------------------------------------------------------------------------
# zero KL for a perfect output


@given(data=st.data())
def test_perfect_output_gives_zero_kl(data):
    shape, (x, alpha) = data.draw(_shape_and_params(2, [reals(), acc]))
    for dtype in (torch.float64, torch.float32):
        sender = NormalSender(x.to(dtype), alpha.to(dtype))
        receiver = PointMassOutput(x.to(dtype)).receiver(alpha.to(dtype))
        kl = torch.distributions.kl_divergence(sender, receiver)
        assert kl.shape == sender.batch_shape and kl.dtype == dtype
        assert (kl == 0).all()


# ---------------------------------------------------------------------------------------------
# Pyro inference (shapes, expand, to_event and pyro.plate: test_generic.py)


@pytest.mark.parametrize("kind", ["input", "flow"])
def test_elbo_with_delta_guide_equals_closed_form(kind):
    """model: x ~ prior(kind), obs ~ N(x, 1/alpha) (plate of 5); guide: Delta(x0).
    The ELBO is log p(x0) + sum log N(obs; x0, 1/alpha) (the Delta has zero entropy)."""
    pyro.clear_param_store()
    obs = torch.tensor([0.1, -0.3, 0.5, 0.2, 0.0], dtype=torch.float64)
    alpha = torch.tensor(4.0, dtype=torch.float64)
    prior = NormalInput(torch.tensor(0.2, dtype=torch.float64), torch.tensor(2.0, dtype=torch.float64))
    if kind == "flow":
        prior = NormalFlow(torch.tensor(0.6, dtype=torch.float64), torch.tensor(3.0, dtype=torch.float64))

    def model():
        x = pyro.sample("x", prior)
        with pyro.plate("data", 5, dim=-1):
            pyro.sample("y", NormalSender(x, alpha), obs=obs)

    x0 = 0.25

    def guide():
        pyro.sample("x", dist.Delta(torch.tensor(x0, dtype=torch.float64)))

    loss = Trace_ELBO().loss(model, guide)
    expected = scipy.stats.norm.logpdf(x0, prior.mean.item(), prior.stddev.item()) + scipy.stats.norm.logpdf(
        obs.numpy(), x0, 1 / math.sqrt(4.0)
    ).sum()
    assert loss == pytest.approx(-expected, rel=1e-10)


def test_svi_learns_flow_data_location():
    """SVI with Trace_ELBO learns the data x of a NormalFlow from flow samples; the loss falls."""
    pyro.clear_param_store()
    torch.manual_seed(3)
    beta = torch.tensor(4.0)
    true_x = 0.8
    obs = NormalFlow(torch.full((200,), true_x), beta).sample()

    def model():
        x = pyro.param("x", torch.tensor(0.0))
        with pyro.plate("data", 200, dim=-1):
            pyro.sample("mu", NormalFlow(x, beta), obs=obs)

    def guide():
        pass

    svi = SVI(model, guide, Adam({"lr": 0.05}), Trace_ELBO())
    losses = [svi.step() for _ in range(150)]
    assert losses[-1] < losses[0]
    # the maximum-likelihood x is mean(obs) / gamma; its sd is sqrt(gamma(1-gamma)/n)/gamma
    gamma = 0.8
    mle = obs.mean().item() / gamma
    assert abs(pyro.param("x").item() - mle) < 0.01
    assert abs(mle - true_x) <= K_SIGMA * math.sqrt(gamma * (1 - gamma) / 200) / gamma


# ---------------------------------------------------------------------------------------------
# bad input


NAN = float("nan")


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: NormalInput(torch.tensor([0, 1]), 1.0), "loc"),
        (lambda: NormalInput(0.0, torch.tensor([1, 2])), "precision"),
        (lambda: NormalSender(torch.tensor([1, 2]), 1.0), "x"),
        (lambda: NormalSender(0.0, torch.tensor([3])), "accuracy"),
        (lambda: NormalReceiver(torch.tensor([1]), 1.0), "x_hat"),
        (lambda: PointMassOutput(torch.tensor([1, 2])), "x_hat"),
        (lambda: NormalUpdate(0.0, 1.0, torch.tensor([1]), 1.0), "x"),
        (lambda: NormalFlow(0.0, torch.tensor([2])), "beta"),
        (lambda: NormalInput(torch.zeros(2), torch.ones(3)), "loc"),
        (lambda: NormalSender(torch.zeros(2, 1), torch.ones(2, 3)[None].expand(4, 2, 3).reshape(4, 6)), "x"),
        (lambda: NormalFlow(torch.zeros(5), torch.ones(2)), "beta"),
        (lambda: NormalUpdate(torch.zeros(5), 1.0, torch.zeros(3), 1.0), "input_loc"),
        (lambda: NormalInput.prior((2,)).update(torch.zeros(3), 1.0), "y"),  # used to be a RuntimeError
        (lambda: NormalInput.prior((2,)).update(torch.tensor([0.0, NAN]), 1.0), "y"),
        (lambda: NormalInput.prior((2,)).update(0.0, torch.tensor(0.0)), "accuracy"),
        (lambda: NormalInput.prior((2,)).update(torch.tensor([1, 2]), 1.0), "y"),
        (lambda: NormalInput.prior().conjugate_update(dist.Gamma(1.0, 1.0)), "Normal"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(make, name):
    """Wrong dtypes, shapes that do not broadcast, bad update arguments (values that break a
    constraint: test_generic.py)."""
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        make()


# ---------------------------------------------------------------------------------------------
# extremes in float32: values and gradients finite


@given(
    loc=reals(), precision=acc, value_z=reals(3), alpha=acc, kind=st.sampled_from(["input", "sender", "receiver", "update"])
)
@example(loc=10.0, precision=1e-8, value_z=3.0, alpha=1e8, kind="update")
@example(loc=-10.0, precision=1e8, value_z=-3.0, alpha=1e-8, kind="update")
def test_float32_extremes_finite_values_and_gradients(loc, precision, value_z, alpha, kind):
    p = [torch.tensor(v, dtype=torch.float32, requires_grad=True) for v in (loc, precision, alpha)]
    d = {
        "input": lambda: NormalInput(p[0], p[1]),
        "sender": lambda: NormalSender(p[0], p[2]),
        "receiver": lambda: NormalReceiver(p[0], p[2]),
        "update": lambda: NormalUpdate(p[0], p[1], -p[0] / 10, p[2]),
    }[kind]()
    with torch.no_grad():
        value = d.mean + value_z * d.stddev
    lp = d.log_prob(value)
    assert torch.isfinite(lp)
    assert torch.isfinite(d.rsample()) and torch.isfinite(d.entropy())
    grads = torch.autograd.grad(lp + d.rsample() + d.entropy(), p, allow_unused=True)
    assert all(g is None or torch.isfinite(g).all() for g in grads)


@given(sigma_1=sigma_1s(), t=times(1e-6, 1.0), x=reals(1), z=reals(3))
@example(sigma_1=1e-4, t=1.0, x=1.0, z=3.0)
@example(sigma_1=0.9, t=1e-6, x=-1.0, z=-3.0)
def test_float32_flow_extremes_finite_values_and_gradients(sigma_1, t, x, z):
    tt = torch.tensor(t, dtype=torch.float32, requires_grad=True)
    xx = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    schedule = ContinuousSchedule(sigma_1)
    flow = NormalFlow(xx, schedule.beta(tt))
    mu = flow.rsample()
    with torch.no_grad():
        value = flow.mean + z * flow.stddev
    lp = flow.log_prob(value)
    theta = flow.input_distribution(mu)
    out = lp + mu + theta.log_prob(torch.tensor(0.5)) + flow.entropy()
    assert torch.isfinite(out)
    grads = torch.autograd.grad(out, [tt, xx])
    assert all(torch.isfinite(g) for g in grads)
    # one update of the flow's input distribution stays finite too
    posterior = theta.update(torch.tensor(x), schedule.alpha(tt))
    assert torch.isfinite(posterior.loc) and torch.isfinite(posterior.precision)
