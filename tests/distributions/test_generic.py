"""Properties every BFN distribution has, run over every row of the fixture table
(:mod:`distribution_fixtures`; ``conftest.py`` parametrizes ``row``): shapes, ``expand``,
``infer_shapes``, ``support``, argument and value validation, ``log_prob`` against scipy, sample
moments against ``mean``/``variance``, ``has_rsample``, ``pyro.sample`` under ``pyro.plate``,
and, for the enumerable classes, Pyro's exact posteriors (``compute_marginals``,
``infer_discrete``, ``sample_posterior``) against scipy.

The family files (``test_continuous.py``, ``test_discretised.py``, ``test_discrete.py``) keep
only what is specific to a family. Statistical checks use a fixed seed and ``K_SIGMA = 5``
standard errors derived from the sample size (two-sided Normal tail 6e-7 per check): a sample
mean within ``K_SIGMA * sqrt(var / n)``, a sample variance within
``K_SIGMA * sqrt((m4 - var^2) / n)`` (``m4`` the sample's fourth central moment).
"""

from __future__ import annotations

import contextlib
import inspect
import math
import re

import numpy as np
import pyro
import pytest
import torch
from distribution_fixtures import FIXTURES, RandomParameters
import scipy.stats
from hypothesis import given
from hypothesis import strategies as st
from pyro import poutine
from pyro.infer import TraceEnum_ELBO, infer_discrete
from scipy import special

import pyro_bfn.distributions
from strategies import batch_shapes, broadcastable_shapes, num_bins, sample_shapes

K_SIGMA = 5.0
N_MOMENTS = 20_000
seeds = st.integers(0, 2**16)


def _random(row, data, shape, k, seed):
    """An instance of batch shape ``shape`` whose parameters broadcast (a drawn ``tail``)."""
    return row.random(RandomParameters(shape, data.draw(broadcastable_shapes(shape)), k, seed))


def _moments(d):
    """``(mean, variance)`` where the class defines them (a categorical's mean is NaN, the
    softmax-normal's is not implemented), else ``None``."""
    try:
        mean, variance = d.mean, d.variance
    except NotImplementedError:
        return None
    return None if torch.isnan(mean).any() else (mean, variance)


def _expect_value_error(build, pattern, what):
    try:
        build()
    except ValueError as error:
        assert re.search(pattern, str(error), re.IGNORECASE), f"{what}: the error does not match {pattern!r}: {error}"
    else:
        pytest.fail(f"{what} did not raise ValueError")


# ---------------------------------------------------------------------------------------------
# the table itself


def test_the_table_has_one_row_per_public_class_with_the_examples_it_needs():
    exported = (getattr(pyro_bfn.distributions, name) for name in pyro_bfn.distributions.__all__)
    public = {obj for obj in exported if inspect.isclass(obj) and issubclass(obj, torch.distributions.Distribution)}
    assert len(FIXTURES) == len(public) and {row.cls for row in FIXTURES} == public
    for row in FIXTURES:
        shapes = [d.batch_shape for d in row.distributions()]
        assert shapes[0] == (), row.name
        assert any(len(s) >= 1 and s[-1] >= 2 for s in shapes), row.name
        # every constrained parameter of the constructor has invalid values, exercised by some example
        taken = set(inspect.signature(row.cls.__init__).parameters)
        assert set(row.invalid_parameters) == set(row.cls.arg_constraints) & taken, row.name
        assert set(row.invalid_parameters) <= {name for example in row.examples for name in example}, row.name


# ---------------------------------------------------------------------------------------------
# shapes and expand (random parameters of any batch shape, broadcasting)


@given(data=st.data(), shape=batch_shapes(), k=num_bins(), seed=seeds, sample_shape=sample_shapes())
def test_batch_event_and_sample_shapes(row, data, shape, k, seed, sample_shape):
    d = _random(row, data, shape, k, seed)
    assert type(d) is row.cls
    assert d.batch_shape == shape and d.event_shape == row.event_shape(k)
    x = d.sample(sample_shape)
    assert x.shape == sample_shape + shape + d.event_shape and x.dtype == row.value_dtype
    log_prob = d.log_prob(x)
    assert log_prob.shape == sample_shape + shape and log_prob.dtype == torch.float64
    if d.has_rsample:
        assert d.rsample(sample_shape).shape == x.shape
    for moment in _moments(d) or ():
        assert moment.shape == shape + d.event_shape
    if len(shape):
        independent = d.to_event(len(shape))
        assert independent.batch_shape == () and independent.event_shape == shape + d.event_shape
        assert independent.log_prob(x).shape == sample_shape
        torch.testing.assert_close(independent.log_prob(x), log_prob.sum(tuple(range(-len(shape), 0))))


@given(data=st.data(), shape=batch_shapes(), k=num_bins(), seed=seeds, sample_shape=sample_shapes(), extra=batch_shapes(0, 3))
def test_expand_gives_the_broadcast_distribution(row, data, shape, k, seed, sample_shape, extra):
    d = _random(row, data, shape, k, seed)
    # new leading dimensions, and sides of 1 widened
    widened = torch.Size(3 if side == 1 and data.draw(st.booleans()) else side for side in shape)
    for big in (extra + shape, extra + widened):
        e = d.expand(big)
        assert type(e) is type(d) and e.batch_shape == big and e.event_shape == d.event_shape
        for name in row.static:
            assert getattr(e, name) == getattr(d, name), name
        assert e.sample(sample_shape).shape == sample_shape + big + d.event_shape
        x = d.sample()
        torch.testing.assert_close(e.log_prob(x), d.log_prob(x).expand(big))


@given(data=st.data())
def test_infer_shapes_agrees_with_the_instance(row, data):
    """``cls.infer_shapes(**shapes)`` (static arguments such as ``num_classes`` passed as
    themselves) is the instance's ``(batch_shape, event_shape)`` for every example with random
    leading dimensions added to each tensor argument, and raises ValueError exactly when the
    constructor does (arguments that do not broadcast)."""
    example = row.examples[data.draw(st.integers(0, len(row.examples) - 1))]
    parameters, shapes = {}, {}
    for name, value in row.parameters(example).items():
        if name in row.static:
            parameters[name] = shapes[name] = value
            continue
        value = torch.as_tensor(value)
        value = value.expand(data.draw(batch_shapes(0, 2, 3), label=name) + value.shape)
        parameters[name], shapes[name] = value, tuple(value.shape)
    try:
        d = row.cls(**parameters)
    except ValueError:
        with pytest.raises(ValueError):
            row.cls.infer_shapes(**shapes)
        return
    assert row.cls.infer_shapes(**shapes) == (d.batch_shape, d.event_shape)


# ---------------------------------------------------------------------------------------------
# support, validation, log_prob against scipy (the table's examples)


def test_support_contains_samples(row):
    torch.manual_seed(0)
    for d in row.distributions():
        assert d.support.event_dim == len(d.event_shape)
        assert d.support.check(d.sample((200,))).all()
        if d.has_enumerate_support:
            assert d.support.is_discrete


def test_enumerate_support_is_normalised(row):
    if not row.cls.has_enumerate_support:
        pytest.skip("no enumerate_support")
    for d in row.distributions():
        values = d.enumerate_support()
        assert values.shape[1:] == d.batch_shape + d.event_shape
        assert d.enumerate_support(expand=False).shape == values.shape[:1] + (1,) * len(d.batch_shape)
        assert d.support.check(values).all()
        torch.testing.assert_close(d.log_prob(values).logsumexp(0), torch.zeros(d.batch_shape, dtype=torch.float64))


def test_invalid_parameters_raise_value_error_naming_them(row):
    for example in row.examples:
        for name, invalid in row.invalid_parameters.items():
            if name not in example:
                continue
            for bad in invalid:
                parameters = row.parameters(example)
                value = parameters[name]
                if callable(bad):
                    value = bad(value)
                else:
                    value.view(-1)[0] = bad
                parameters[name] = value
                _expect_value_error(lambda: row.cls(**parameters), rf"\b{name}\b", f"{row.name}({name} = {bad!r})")


def _shapes_that_do_not_broadcast(shape):
    """Two value shapes that do not broadcast with ``shape`` (batch + event): the last side
    changed, and one more trailing dimension (none when ``shape`` is empty: anything
    broadcasts with a scalar)."""
    if not shape:
        return []
    side = shape[-1] + 1
    return [shape[:-1] + (side,), shape + (side,)]


def test_log_prob_rejects_values_outside_the_support_or_of_a_wrong_shape(row):
    torch.manual_seed(0)
    for d in row.distributions():
        x = d.sample()
        nan = x.to(torch.float64).clone()
        nan.view(-1)[0] = math.nan
        values = [nan] + [torch.zeros(s, dtype=x.dtype) for s in _shapes_that_do_not_broadcast(d.batch_shape + d.event_shape)]
        values += [value for outside in row.outside_support for value in outside(d)]
        for value in values:
            _expect_value_error(lambda: d.log_prob(value), r"\bvalue\b", f"{row.name}.log_prob({value!r})")


def test_log_prob_matches_scipy(row):
    torch.manual_seed(1)
    for example in row.examples:
        d = row.make(example)
        x = d.sample((3,))
        expected = row.reference_log_prob(row.numpy_parameters(example), x.numpy())
        np.testing.assert_allclose(d.log_prob(x).numpy(), np.broadcast_to(expected, (3,) + d.batch_shape), rtol=row.rtol, atol=row.atol)


# ---------------------------------------------------------------------------------------------
# sampling: moments, rsample


def _fourth_central_moment(d, x, mean):
    """:math:`E[(X - EX)^4]`: exact over the support where it can be enumerated (a sample misses
    bins of mass ~1/n, and with them most of the fourth moment), else from the sample ``x``."""
    if d.has_enumerate_support:
        values = d.enumerate_support()
        return (d.log_prob(values).exp() * (values - mean).pow(4)).sum(0)
    return (x - x.mean(0)).pow(4).mean(0)


def test_sample_moments_match_mean_and_variance(row):
    if _moments(row.distributions()[0]) is None:
        pytest.skip("no mean and variance")
    torch.manual_seed(2)
    for d in row.distributions():
        mean, variance = _moments(d)
        x = d.sample((N_MOMENTS,)).to(torch.float64)
        sample_mean, sample_variance = x.mean(0), x.var(0)
        tiny = 1e-12 * (1 + mean.abs())  # for point masses (a zero variance, exactly)
        assert ((sample_mean - mean).abs() <= K_SIGMA * (variance / N_MOMENTS).sqrt() + tiny).all()
        variance_error = ((_fourth_central_moment(d, x, mean) - variance**2).clamp(min=0) / N_MOMENTS).sqrt()
        assert ((sample_variance - variance).abs() <= K_SIGMA * variance_error + tiny).all()


def _with_gradients(row, example):
    """An instance of ``example`` whose float parameters require gradients, and those parameters."""
    parameters = row.parameters(example)
    leaves = [v.requires_grad_() for v in parameters.values() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    return row.cls(**parameters), leaves


def test_sample_carries_no_gradient(row):
    for example in row.examples:
        d, _ = _with_gradients(row, example)
        assert not d.sample((2,)).requires_grad


def test_has_rsample_is_consistent(row):
    """rsample carries gradients to the float parameters where ``has_rsample``, raises
    NotImplementedError otherwise."""
    torch.manual_seed(3)
    for example in row.examples:
        d, leaves = _with_gradients(row, example)
        if not d.has_rsample:
            with pytest.raises(NotImplementedError):
                d.rsample()
            continue
        x = d.rsample((2,))
        assert x.requires_grad
        weights = torch.randn(x.shape, dtype=x.dtype)  # a simplex sample sums to one: weigh it
        grads = torch.autograd.grad((x * weights).sum(), leaves, allow_unused=True)
        assert any(g is not None and (g != 0).any() for g in grads)
        assert all(torch.isfinite(g).all() for g in grads if g is not None)


# ---------------------------------------------------------------------------------------------
# inside Pyro


@given(data=st.data(), shape=batch_shapes(), k=num_bins(), seed=seeds, outer=st.integers(1, 3), sample_shape=sample_shapes())
def test_pyro_sample_under_plates(row, data, shape, k, seed, outer, sample_shape):
    """pyro.sample under an outer plate and one plate per batch dimension: Pyro expands the
    distribution; the site's log-density is the distribution's own, broadcast; to_event gives
    one event; expand_by gives sample shapes."""
    d = _random(row, data, shape, k, seed)
    rank = len(shape)

    def model():
        with contextlib.ExitStack() as stack:
            stack.enter_context(pyro.plate("outer", outer, dim=-rank - 1))
            for i, size in enumerate(shape):
                stack.enter_context(pyro.plate(f"p{i}", size, dim=i - rank))
            return pyro.sample("x", d)

    torch.manual_seed(0)
    trace = poutine.trace(model).get_trace()
    trace.compute_log_prob()
    site = trace.nodes["x"]
    batch = torch.Size((outer,) + tuple(shape))
    assert site["fn"].batch_shape == batch  # pyro expanded the distribution with .expand
    assert site["value"].shape == batch + d.event_shape
    assert site["log_prob"].shape == batch
    assert torch.isfinite(site["log_prob"]).all()
    torch.testing.assert_close(site["log_prob"], d.log_prob(site["value"]).expand(batch))
    if rank:
        value = site["value"][0]
        observed = poutine.trace(lambda: pyro.sample("y", d.to_event(rank), obs=value)).get_trace()
        observed.compute_log_prob()
        assert observed.nodes["y"]["log_prob"].shape == ()
        torch.testing.assert_close(observed.nodes["y"]["log_prob"], d.log_prob(value).sum())
    by = d.expand_by(sample_shape)
    assert by.batch_shape == sample_shape + shape
    assert d.sample(sample_shape).shape == sample_shape + shape + d.event_shape
    value = by.sample()
    assert value.shape == sample_shape + shape + d.event_shape
    assert by.log_prob(value).shape == sample_shape + shape


def test_observed_under_nested_plates_matches_scipy(row):
    """Observations of the scalar-batch example under plates of 3 x 4: the site's log_prob and
    log_prob_sum are scipy's."""
    example = row.examples[0]
    d = row.make(example)
    torch.manual_seed(4)
    data = d.sample((3, 4))

    def model():
        with pyro.plate("outer", 3, dim=-2), pyro.plate("inner", 4, dim=-1):
            pyro.sample("x", d, obs=data)

    trace = poutine.trace(model).get_trace()
    trace.compute_log_prob()
    site = trace.nodes["x"]
    assert site["fn"].batch_shape == (3, 4)
    expected = row.reference_log_prob(row.numpy_parameters(example), data.numpy())
    np.testing.assert_allclose(site["log_prob"].numpy(), expected, rtol=row.rtol, atol=row.atol)
    np.testing.assert_allclose(site["log_prob_sum"].item(), expected.sum(), rtol=row.rtol, atol=row.atol)


# ---------------------------------------------------------------------------------------------
# exact posteriors by enumeration (the enumerable classes)

ENUMERATED_PARTICLES = 4000
OBSERVATION_SCALE = 0.5


def _enumerated_model(d, obs, particles=None):
    """``z ~ d`` enumerated in parallel under one plate per batch dimension (and an outer plate
    of ``particles`` draws), ``obs ~ N(value(z), 0.5^2)`` observed; the values are floats (bin
    centres) or class indices, taken as numbers."""
    shape = d.batch_shape
    rank = len(shape)

    def model():
        with contextlib.ExitStack() as stack:
            if particles:
                stack.enter_context(pyro.plate("particles", particles, dim=-rank - 1))
            for i, size in enumerate(shape):
                stack.enter_context(pyro.plate(f"p{i}", size, dim=i - rank))
            z = pyro.sample("z", d, infer={"enumerate": "parallel"})
            pyro.sample("obs", pyro.distributions.Normal(z.to(torch.float64), OBSERVATION_SCALE), obs=obs)
        return z

    return model


def test_enumeration_gives_the_exact_posterior(row):
    """For ``z ~ d``, ``obs ~ N(z, 0.5^2)``: TraceEnum_ELBO.compute_marginals returns a ``row.cls``
    (built by Pyro as ``cls(logits=...)``) whose masses are Bayes' rule with scipy's prior and
    likelihood; infer_discrete at temperature 0 picks the posterior mode; infer_discrete and
    sample_posterior draw with the posterior frequencies (``K_SIGMA`` binomial standard errors)."""
    if not row.cls.has_enumerate_support:
        pytest.skip("no enumerate_support")
    for index, example in enumerate(row.examples):
        d = row.make(example)
        shape, rank = d.batch_shape, len(d.batch_shape)
        values = d.enumerate_support()  # (K, *batch)
        obs = torch.linspace(-1.3, 2.1, max(1, math.prod(shape)), dtype=torch.float64).reshape(shape)
        log_joint = row.reference_log_prob(row.numpy_parameters(example), values.numpy()) + scipy.stats.norm.logpdf(
            obs.numpy(), values.numpy().astype(float), OBSERVATION_SCALE
        )
        posterior = special.softmax(log_joint, axis=0)  # (K, *batch)
        elbo = TraceEnum_ELBO(max_plate_nesting=rank + 1)
        marginal = elbo.compute_marginals(_enumerated_model(d, obs), lambda: None)["z"]
        assert type(marginal) is row.cls and marginal.batch_shape == shape
        # atol: torch's Categorical clamps a zero probability to the dtype's eps (2e-16), which
        # the likelihood ratio of this model (up to e^9) lifts to ~1e-12 in the posterior
        np.testing.assert_allclose(marginal.log_prob(values).exp().numpy(), posterior, rtol=1e-9, atol=1e-10)
        widened = marginal.expand((2,) + shape)
        torch.testing.assert_close(widened.log_prob(values[:, None]), marginal.log_prob(values)[:, None].expand(widened.log_prob(values[:, None]).shape))
        assert marginal.support.check(marginal.sample((5,))).all()
        mode = poutine.trace(infer_discrete(_enumerated_model(d, obs), first_available_dim=-rank - 1, temperature=0))
        expected_mode = np.take_along_axis(values.numpy(), posterior.argmax(0)[None], 0)[0]
        np.testing.assert_array_equal(mode.get_trace().nodes["z"]["value"].numpy(), expected_mode)
        n = ENUMERATED_PARTICLES
        pyro.set_rng_seed(index)
        model = _enumerated_model(d, obs, n)
        draws = {
            "infer_discrete": poutine.trace(infer_discrete(model, first_available_dim=-rank - 2)).get_trace().nodes["z"]["value"],
            "sample_posterior": TraceEnum_ELBO(max_plate_nesting=rank + 1).sample_posterior(model, lambda: None),
        }
        for method, z in draws.items():
            assert z.shape == (n,) + shape, method
            frequencies = (z[None] == values[:, None]).double().mean(1).numpy()  # (K, *batch)
            tolerance = K_SIGMA * np.sqrt(posterior * (1 - posterior) / n) + 1e-12
            assert (np.abs(frequencies - posterior) <= tolerance).all(), method
