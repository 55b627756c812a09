"""BFN distributions inside Pyro inference: enumeration, SVI with Trace_ELBO /
TraceMeanField_ELBO / TraceEnum_ELBO, Pyro's conjugate-update contract,
``pyro.infer.reparam.ConjugateReparam`` and ``LocScaleReparam``, and the alternative
parametrisations Pyro's machinery builds (``NormalInput(scale=...)``,
``DiscretisedOutput(logits=...)``). Every class under ``pyro.sample`` and ``pyro.plate``,
with ``expand``, ``to_event`` and sample shapes, is in ``test_generic.py``.

Oracles: scipy.stats for evidences and posteriors written from the paper's update formulas;
statistical checks use fixed seeds and ``Z = 5`` standard errors (sample means) or
``Z * var * sqrt(2 / (n - 1))`` (sample variances).
"""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import scipy.stats
import torch
from hypothesis import given
from hypothesis import strategies as st
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO, TraceMeanField_ELBO, config_enumerate
from pyro.infer.reparam import ConjugateReparam, LocScaleReparam
from pyro.optim import Adam
from scipy import special

from distribution_fixtures import FIXTURE_BY_NAME, RandomParameters
from pyro_bfn.distributions import (
    CategoricalInput,
    DiscreteFlow,
    DiscreteReceiver,
    DiscreteSender,
    DiscreteUpdate,
    DiscretisedOutput,
    NormalInput,
    NormalSender,
    SoftmaxNormal,
    bayesian_update,
)
from strategies import accuracies, batch_shapes, reals, tensors

Z = 5.0
f64 = torch.float64
K = 4  # classes / bins of the discrete and discretised instances


# ---------------------------------------------------------------------------------------------
# enumeration (every class under pyro.plate, expand, to_event, sample shapes: test_generic.py)


@pytest.mark.parametrize("kind", ["CategoricalOutput", "DiscretisedOutput", "CategoricalInput"])
def test_enumerated_output_marginal_likelihood_matches_scipy(kind):
    """z ~ output (enumerated in parallel under a plate of 3), obs ~ N(value(z), 0.5^2):
    TraceEnum_ELBO with an empty guide is exactly -sum_i log sum_z p(z) N(obs_i; value(z), 0.25)."""
    d = FIXTURE_BY_NAME[kind].random(RandomParameters((3,), num_classes=K, seed=8))
    obs = torch.tensor([0.3, -1.2, 2.0], dtype=f64)
    values = d.enumerate_support(expand=False).reshape(-1)  # (K,)
    numeric = values.to(f64) if kind == "DiscretisedOutput" else values.to(f64) - 1.5

    @config_enumerate
    def model():
        with pyro.plate("data", 3, dim=-1):
            z = pyro.sample("z", d)
            centre = z if kind == "DiscretisedOutput" else z.to(f64) - 1.5
            pyro.sample("obs", dist.Normal(centre, 0.5), obs=obs)

    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model, lambda: None)
    log_p = d.log_prob(d.enumerate_support()).T.numpy()  # (3, K)
    expected = special.logsumexp(
        log_p + scipy.stats.norm.logpdf(obs.numpy()[:, None], numeric.numpy()[None, :], 0.5), axis=1
    ).sum()
    assert loss == pytest.approx(-expected, rel=1e-10)


# ---------------------------------------------------------------------------------------------
# SVI: Trace_ELBO and TraceMeanField_ELBO on toy models; parameters move, losses stay finite


def _normal_model(y, alpha):
    def model():
        with pyro.plate("data", len(y), dim=-1):
            x = pyro.sample("x", NormalInput(torch.zeros(len(y), dtype=f64), torch.ones(len(y), dtype=f64)))
            pyro.sample("y", NormalSender(x, alpha), obs=y)

    return model


@pytest.mark.parametrize("elbo", [Trace_ELBO, TraceMeanField_ELBO])
def test_svi_on_input_and_sender_moves_towards_the_conjugate_posterior(elbo):
    pyro.clear_param_store()
    torch.manual_seed(0)
    y = torch.tensor([0.5, -1.0, 2.0], dtype=f64)
    alpha = torch.tensor(3.0, dtype=f64)
    model = _normal_model(y, alpha)

    def guide():
        loc = pyro.param("loc", torch.zeros(3, dtype=f64))
        precision = pyro.param("precision", torch.ones(3, dtype=f64), constraint=dist.constraints.positive)
        with pyro.plate("data", 3, dim=-1):
            pyro.sample("x", NormalInput(loc, precision))

    svi = SVI(model, guide, Adam({"lr": 0.05}), elbo(num_particles=8, vectorize_particles=True))
    losses = [svi.step() for _ in range(300)]
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-20:]) < np.mean(losses[:20])
    # the parameters moved from the prior towards the conjugate update (every coordinate's
    # distance to the exact posterior mean shrank; closeness itself is SVI noise, not tested)
    posterior = NormalInput.prior((3,), dtype=f64).update(y, alpha)
    loc = pyro.param("loc").detach()
    assert ((loc - posterior.loc).abs() < posterior.loc.abs()).all()
    assert (pyro.param("precision").detach() > 1).all()  # the posterior precision is 1 + alpha = 4


def test_elbo_with_the_exact_posterior_is_the_log_evidence():
    """With q = the conjugate posterior, log p(x, y) - log q(x) = log p(y) for every x: one
    Trace_ELBO particle gives the exact evidence N(y; 0, 1 + 1/alpha) (scipy). TraceMeanField_ELBO
    (analytic KL(q || prior), Monte Carlo likelihood term) is unbiased for it: within Z standard
    errors, the per-particle variance of sum_i alpha/2 (y_i - x_i)^2 being
    (alpha/2)^2 sum_i (2 s^4 + 4 d_i^2 s^2), d_i = y_i - E_q x_i, s^2 = 1/precision."""
    y = torch.tensor([0.5, -1.0, 2.0], dtype=f64)
    alpha = torch.tensor(3.0, dtype=f64)
    posterior = NormalInput.prior((3,), dtype=f64).update(y, alpha)

    def guide():
        with pyro.plate("data", 3, dim=-1):
            pyro.sample("x", posterior)

    expected = scipy.stats.norm.logpdf(y.numpy(), 0.0, math.sqrt(1 + 1 / 3.0)).sum()
    torch.manual_seed(1)
    for _ in range(3):
        assert Trace_ELBO().loss(_normal_model(y, alpha), guide) == pytest.approx(-expected, rel=1e-10)
    n = 4000
    loss = TraceMeanField_ELBO(num_particles=n, vectorize_particles=True).loss(_normal_model(y, alpha), guide)
    d, s2 = (y - posterior.loc).numpy(), 1 / posterior.precision.numpy()
    sd = alpha.item() / 2 * math.sqrt((2 * s2**2 + 4 * d**2 * s2).sum())
    assert abs(loss + expected) <= Z * sd / math.sqrt(n)


def test_svi_fits_output_and_receiver_parameters():
    """Maximum likelihood by SVI (empty guides) of a DiscretisedOutput's (loc, scale) from bin
    centres and of a DiscreteReceiver's logits from sender draws: finite losses that fall, and
    parameters that move towards the data."""
    pyro.clear_param_store()
    torch.manual_seed(2)
    k = 16
    data = DiscretisedOutput(torch.tensor(0.3, dtype=f64), torch.tensor(0.2, dtype=f64), k).sample((200,))
    alpha = torch.tensor(0.5, dtype=f64)
    y = DiscreteSender(torch.full((200,), 2), alpha, 5).sample()

    def model():
        loc = pyro.param("loc", torch.tensor(0.0, dtype=f64))
        scale = pyro.param("scale", torch.tensor(1.0, dtype=f64), constraint=dist.constraints.positive)
        logits = pyro.param("logits", torch.zeros(5, dtype=f64))
        with pyro.plate("data", 200, dim=-1):
            pyro.sample("x", DiscretisedOutput(loc, scale, k), obs=data)
            pyro.sample("y", DiscreteReceiver(logits, alpha), obs=y)

    svi = SVI(model, lambda: None, Adam({"lr": 0.05}), Trace_ELBO())
    losses = [svi.step() for _ in range(150)]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    assert abs(pyro.param("loc").item() - data.mean().item()) < 0.05
    assert pyro.param("logits").detach().argmax().item() == 2


def test_svi_with_flow_and_softmax_normal_sites():
    """Trace_ELBO with reparameterised discrete flow / update sites in the guide: finite loss and
    gradients, parameters change."""
    pyro.clear_param_store()
    torch.manual_seed(3)
    obs = DiscreteFlow(torch.full((50,), 1), torch.tensor(2.0, dtype=f64), 3).sample()

    def model():
        with pyro.plate("data", 50, dim=-1):
            theta = pyro.sample("theta", SoftmaxNormal(torch.zeros(3, dtype=f64), torch.tensor(2.0, dtype=f64)))
            pyro.sample("obs", DiscreteUpdate(theta.log(), torch.tensor(1), torch.tensor(0.5, dtype=f64)), obs=obs)

    def guide():
        loc = pyro.param("guide_loc", torch.zeros(3, dtype=f64))
        with pyro.plate("data", 50, dim=-1):
            pyro.sample("theta", SoftmaxNormal(loc, torch.tensor(1.0, dtype=f64)))

    svi = SVI(model, guide, Adam({"lr": 0.05}), Trace_ELBO())
    losses = [svi.step() for _ in range(30)]
    assert all(math.isfinite(v) for v in losses)
    assert not torch.equal(pyro.param("guide_loc").detach(), torch.zeros(3, dtype=f64))


# ---------------------------------------------------------------------------------------------
# Pyro's conjugate-update contract, also through Pyro's Expanded/Masked/Independent wrappers


@given(shape=batch_shapes(1, 2), data=st.data())
def test_conjugate_update_identity_normal_input_through_pyro_wrappers(shape, data):
    mu = data.draw(tensors(shape))
    rho = data.draw(tensors(shape, accuracies(1e-3, 1e3)))
    y = data.draw(tensors(shape))
    alpha = data.draw(tensors(shape, accuracies(1e-3, 1e3)))
    z = data.draw(tensors(shape, reals(5)))
    f = NormalInput(mu, rho)
    g = NormalSender(torch.zeros((), dtype=f64), alpha).likelihood(y)
    # (pyro 1.9.2's Independent.conjugate_update misspells reinterpreted_batch_ndims, so
    # to_event cannot be used with ConjugateReparam there; Expanded and Masked work)
    for ff, gg in ((f, g), (f.expand(shape), g), (f.mask(torch.ones(shape, dtype=torch.bool)), g)):
        fg, log_normalizer = ff.conjugate_update(gg)
        lhs = f.log_prob(z) + g.log_prob(z)
        torch.testing.assert_close(fg.log_prob(z) + log_normalizer, lhs, rtol=1e-9, atol=1e-8)
    # and the updated distribution is the paper's Bayesian update
    fg, _ = f.conjugate_update(g)
    loc, precision = bayesian_update(mu, rho, y, alpha)
    torch.testing.assert_close(fg.loc, loc, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fg.precision, precision, rtol=1e-12, atol=0)


@given(shape=batch_shapes(0, 2), k=st.integers(2, 8), seed=st.integers(0, 2**16), alpha=accuracies(1e-3, 1e2))
def test_conjugate_update_identity_categorical_input_with_the_sender_likelihood(shape, k, seed, alpha):
    rng = np.random.default_rng(seed)
    f = CategoricalInput(logits=torch.as_tensor(rng.normal(size=tuple(shape) + (k,))))
    x = torch.as_tensor(rng.integers(0, k, size=tuple(shape)))
    torch.manual_seed(seed)
    y = DiscreteSender(x, torch.tensor(alpha, dtype=f64), k).sample()
    g = DiscreteSender(x, torch.tensor(alpha, dtype=f64), k).likelihood(y)
    fg, log_normalizer = f.conjugate_update(g)
    z = torch.arange(k).reshape((k,) + (1,) * len(shape)).expand((k,) + tuple(shape))
    torch.testing.assert_close(fg.log_prob(z) + log_normalizer, f.log_prob(z) + g.log_prob(z), rtol=1e-10, atol=1e-9)
    # the update is softmax(ln theta + y) (scipy)
    expected = special.softmax(np.log(f.probs.numpy()) + y.numpy(), axis=-1)
    np.testing.assert_allclose(fg.probs.numpy(), expected, rtol=1e-9, atol=1e-15)


# ---------------------------------------------------------------------------------------------
# ConjugateReparam


def test_conjugate_reparam_normal_input_gives_the_analytic_posterior():
    """x ~ NormalInput(mu, rho), y ~ NormalSender(x, alpha) (plate of n): ConjugateReparam with the
    sender likelihood N(x; y, 1/alpha) as its guide samples x from the Bayesian update, and the
    reparameterised model with an empty guide has ELBO = log p(y) exactly."""
    n = 20_000
    mu = torch.linspace(-1, 1, n, dtype=f64)
    rho = torch.full((n,), 2.0, dtype=f64)
    alpha = torch.tensor(3.0, dtype=f64)
    y = torch.linspace(2, -2, n, dtype=f64)

    def model():
        with pyro.plate("data", n, dim=-1):
            x = pyro.sample("x", NormalInput(mu, rho))
            pyro.sample("y", NormalSender(x, alpha), obs=y)

    likelihood = NormalSender(torch.zeros((), dtype=f64), alpha).likelihood(y)
    reparam_model = poutine.reparam(model, {"x": ConjugateReparam(likelihood)})
    torch.manual_seed(4)
    trace = poutine.trace(reparam_model).get_trace()
    updated, _ = NormalInput(mu, rho).conjugate_update(likelihood)  # what the reparam samples from
    loc, precision = bayesian_update(mu, rho, y, alpha)
    assert isinstance(updated, NormalInput) and updated.has_rsample
    torch.testing.assert_close(updated.loc, loc, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(updated.precision, precision, rtol=1e-12, atol=0)
    # the sampled x are posterior draws: standardised residuals have mean 0 and variance 1
    residual = ((trace.nodes["x"]["value"] - loc) * precision.sqrt()).numpy()
    assert abs(residual.mean()) <= Z / math.sqrt(n)
    assert abs(residual.var(ddof=1) - 1) <= Z * math.sqrt(2 / (n - 1))
    # exact evidence: sum_i log N(y_i; mu_i, 1/rho_i + 1/alpha)
    loss = Trace_ELBO().loss(reparam_model, lambda: None)
    expected = scipy.stats.norm.logpdf(y.numpy(), mu.numpy(), np.sqrt(1 / 2.0 + 1 / 3.0)).sum()
    assert loss == pytest.approx(-expected, rel=1e-10)


def test_categorical_input_posterior_by_enumeration_is_the_conjugate_update():
    """Pyro's ConjugateReparam samples the updated distribution with rsample, which no
    categorical has (Pyro raises NotImplementedError); the discrete posterior comes from
    enumeration instead: TraceEnum_ELBO's marginal of x given sender observations equals
    CategoricalInput.update (softmax(ln theta + y)), and the evidence is the log normalizer."""
    k, alpha = 5, torch.tensor(0.7, dtype=f64)
    theta = CategoricalInput(logits=torch.tensor([[0.3, -1.0, 0.5, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0, 0.0]], dtype=f64))
    torch.manual_seed(5)
    y = DiscreteSender(torch.tensor([1, 3]), alpha, k).sample()

    @config_enumerate
    def model():
        with pyro.plate("data", 2, dim=-1):
            x = pyro.sample("x", theta)
            pyro.sample("y", DiscreteSender(x, alpha, k), obs=y)

    marginals = TraceEnum_ELBO(max_plate_nesting=1).compute_marginals(model, lambda: None)
    posterior = theta.update(y)
    torch.testing.assert_close(marginals["x"].probs, posterior.probs, rtol=1e-10, atol=1e-12)
    # evidence: log sum_x theta_x N(y; alpha(K e_x - 1), alpha K I) = log_normalizer + the
    # sender's x-independent factor (scipy)
    _, log_normalizer = theta.conjugate_update(DiscreteSender(torch.tensor(0), alpha, k).likelihood(y))
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model, lambda: None)
    means = alpha.item() * (k * np.eye(k) - 1)
    per_class = np.stack(
        [scipy.stats.multivariate_normal(means[j], alpha.item() * k * np.eye(k)).logpdf(y.numpy()) for j in range(k)], -1
    )
    expected = special.logsumexp(np.log(theta.probs.numpy()) + per_class, axis=-1)
    assert loss == pytest.approx(-expected.sum(), rel=1e-10)
    # ln N(y; m_j) = y_j + (a term free of j), and Categorical(logits=y) normalises its logits:
    # evidence = log_normalizer + logsumexp(y) + ln N(y; m_0) - y_0
    shared = per_class[:, 0] - y.numpy()[:, 0]
    np.testing.assert_allclose(log_normalizer.numpy() + special.logsumexp(y.numpy(), axis=-1) + shared, expected, rtol=1e-10)
    with pytest.raises(NotImplementedError):
        poutine.trace(poutine.reparam(model, {"x": ConjugateReparam(dist.Categorical(logits=y))})).get_trace()


# ---------------------------------------------------------------------------------------------
# LocScaleReparam, and the parametrisations Pyro's machinery builds


@pytest.mark.parametrize("centered", [0.0, 0.3, None])
def test_loc_scale_reparam_on_normal_input_keeps_the_distribution(centered):
    """LocScaleReparam(centered, shape_params=()) decenters x ~ NormalInput(mu, rho) into
    u ~ NormalInput(c mu, scale=sigma^c), x = mu + sigma^(1-c) (u - c mu): at the traced draw the
    reparameterised model's log density minus ln|dx/du| is the plain model's (scipy), and the
    draws of x have the law of the plain model (standardised residuals, Z standard errors)."""
    pyro.clear_param_store()
    n = 20_000
    mu = torch.linspace(-2, 2, n, dtype=f64)
    rho = torch.linspace(0.25, 16, n, dtype=f64)
    y = torch.linspace(1, -1, n, dtype=f64)

    def model():
        with pyro.plate("data", n, dim=-1):
            x = pyro.sample("x", NormalInput(mu, rho))
            pyro.sample("y", dist.Normal(x, 1.0), obs=y)

    reparam_model = poutine.reparam(model, {"x": LocScaleReparam(centered, shape_params=())})
    torch.manual_seed(6)
    trace = poutine.trace(reparam_model).get_trace()
    trace.compute_log_prob()
    decentered = trace.nodes["x_decentered"]
    c = 0.5 if centered is None else centered  # Pyro's learnable centering starts at 0.5
    assert type(decentered["fn"]) is NormalInput
    sigma = rho.rsqrt()
    torch.testing.assert_close(decentered["fn"].loc, c * mu, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(decentered["fn"].scale, sigma**c, rtol=1e-12, atol=0)
    x = trace.nodes["x"]["value"].detach()  # (a function of the learnable centering when centered=None)
    log_jacobian = ((1 - c) * sigma.log()).sum().item()  # dx/du = sigma^(1 - c)
    plain = poutine.trace(poutine.condition(model, {"x": x})).get_trace()
    expected = scipy.stats.norm.logpdf(x.numpy(), mu.numpy(), sigma.numpy()) + scipy.stats.norm.logpdf(y.numpy(), x.numpy(), 1.0)
    assert plain.log_prob_sum().item() == pytest.approx(expected.sum(), rel=1e-10)
    assert trace.log_prob_sum().item() - log_jacobian == pytest.approx(expected.sum(), rel=1e-10)
    residual = ((x - mu) / sigma).numpy()
    assert abs(residual.mean()) <= Z / math.sqrt(n)
    assert abs(residual.var(ddof=1) - 1) <= Z * math.sqrt(2 / (n - 1))
    pyro.clear_param_store()


def test_normal_input_scale_parametrisation_and_the_default_loc_scale_reparam():
    """NormalInput(loc, scale=s) is NormalInput(loc, s^-2); exactly one of precision and scale;
    Pyro's default LocScaleReparam() passes both and gets a ValueError naming the fix."""
    loc, scale = torch.tensor([0.3, -1.0], dtype=f64), torch.tensor([0.5, 2.0], dtype=f64)
    by_scale, by_precision = NormalInput(loc, scale=scale), NormalInput(loc, scale.pow(-2))
    value = torch.tensor([0.1, 0.7], dtype=f64)
    torch.testing.assert_close(by_scale.log_prob(value), by_precision.log_prob(value), rtol=1e-14, atol=0)
    torch.testing.assert_close(by_scale.precision, torch.tensor([4.0, 0.25], dtype=f64), rtol=1e-15, atol=0)
    assert by_scale.scale is scale  # kept as given, not recomputed from the precision
    assert NormalInput.infer_shapes(loc=(3, 1), scale=(2,)) == ((3, 2), ())
    for kwargs, pattern in (({}, "exactly one"), ({"precision": 1.0, "scale": 1.0}, "exactly one"), ({"scale": 0.0}, "scale")):
        with pytest.raises(ValueError, match=pattern):
            NormalInput(loc, **kwargs)

    def model():
        pyro.sample("x", NormalInput(loc, scale=scale).to_event(1))

    with pytest.raises(ValueError, match="shape_params"):
        poutine.trace(poutine.reparam(model, {"x": LocScaleReparam(0.0)})).get_trace()


def test_discretised_output_from_logits():
    """DiscretisedOutput(logits=...) is the categorical over the bin centres with those log-masses
    (what Pyro's enumeration builds); it takes loc and scale or logits, never both, and has no
    loc and scale of its own."""
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5], [0.0, 0.0, 0.0, 0.0]], dtype=f64)
    d = DiscretisedOutput(logits=logits)
    assert d.num_bins == 4 and d.batch_shape == (2,) and d.event_shape == ()
    np.testing.assert_allclose(d.probs.numpy(), special.softmax(logits.numpy(), -1), rtol=1e-14)
    centres = np.array([-0.75, -0.25, 0.25, 0.75])
    np.testing.assert_allclose(d.mean.numpy(), special.softmax(logits.numpy(), -1) @ centres, rtol=1e-14)
    torch.testing.assert_close(d.log_prob(d.enumerate_support()).T, torch.log_softmax(logits, -1), rtol=1e-14, atol=0)
    # from the bin masses of a (loc, scale) instance: the same distribution
    reference = DiscretisedOutput(torch.tensor(0.2, dtype=f64), torch.tensor(0.4, dtype=f64), 4)
    same = DiscretisedOutput(logits=reference.log_probs)
    torch.testing.assert_close(same.log_prob(reference.centres), reference.log_prob(reference.centres), rtol=1e-12, atol=0)
    assert same.mean.item() == pytest.approx(reference.mean.item(), rel=1e-12)
    assert not hasattr(d, "loc") and not hasattr(d, "scale")
    torch.testing.assert_close(reference.logits, reference.log_probs)
    with pytest.raises(ValueError, match="not both"):
        DiscretisedOutput(torch.tensor(0.0, dtype=f64), logits=logits)
    with pytest.raises(ValueError, match="num_bins"):
        DiscretisedOutput(logits=logits, num_bins=5)
    with pytest.raises(ValueError, match="loc, scale and num_bins, or logits"):
        DiscretisedOutput(num_bins=4)
