"""BFNs inside Pyro programs (pyro_bfn.infer): the BFN loss as an ELBO, BFNLikelihood,
conditional BFNs, and the input distributions under Pyro's conjugate machinery.

Statistical checks compare means with a CLT tolerance of ``Z`` standard errors computed from
the samples themselves; every random draw is seeded, so the checks are deterministic."""

import math

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
from pyro.poutine.util import site_is_subsample
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO, TraceMeanField_ELBO, config_enumerate
from pyro.infer.reparam import ConjugateReparam
from torch.distributions import kl_divergence

from pyro_bfn.bfn import BFN
from pyro_bfn.data_types import ContinuousData, DiscreteData, DiscretisedData
from pyro_bfn.distributions import CategoricalInput, DiscreteSender, NormalInput, NormalSender
from pyro_bfn.infer import BFNLikelihood, bfn_guide, bfn_model, step_site_names
from pyro_bfn.models import MLP, Transformer, UNet
from pyro_bfn.models.adapters import BackboneAdapter

SHAPE = (1, 2, 2)
#: standard errors allowed between two Monte Carlo means (two-sided p ~ 7e-6 per check)
Z = 4.5


def tiny_bfn(data_type, shape=SHAPE, seed=0, dtype=torch.float64, **mlp_options):
    """A BFN whose network is a small MLP over all variables (so the variables are coupled)."""
    torch.manual_seed(seed)
    size = math.prod(shape)
    options = dict(hidden=16, depth=2, time_embedding_dim=8)
    options.update(mlp_options)
    mlp = MLP(size * data_type.num_input_features, size * data_type.num_output_features, **options)
    adapter = BackboneAdapter(mlp, "flat", shape, data_type.num_input_features, data_type.num_output_features)
    return BFN(data_type, adapter.to(dtype), shape)


def example(data_type, batch=1, seed=1):
    generator = torch.Generator().manual_seed(seed)
    if isinstance(data_type, DiscreteData):
        return torch.randint(0, data_type.num_classes, (batch,) + SHAPE, generator=generator)
    if isinstance(data_type, DiscretisedData):
        levels = torch.randint(0, data_type.num_bins, (batch,) + SHAPE, generator=generator)
        return data_type.from_integers(levels, dtype=torch.float64)
    return torch.rand((batch,) + SHAPE, generator=generator, dtype=torch.float64) * 1.6 - 0.8


DATA_TYPES = {
    "continuous": lambda: ContinuousData(sigma_1=0.1),
    "discretised": lambda: DiscretisedData(16),
    "discrete_K2": lambda: DiscreteData(2, beta_1=3.0),
    "discrete_K4": lambda: DiscreteData(4, beta_1=2.0, kl_samples=8),
}


def _traces(bfn, x, n_steps):
    guide_trace = poutine.trace(bfn_guide).get_trace(bfn, x, n_steps)
    model_trace = poutine.trace(poutine.replay(bfn_model, trace=guide_trace)).get_trace(bfn, x, n_steps)
    return model_trace, guide_trace


# ----------------------------------------------------------------------------- model and guide
@pytest.mark.parametrize("name", sorted(DATA_TYPES))
def test_model_and_guide_sites_and_shapes(name):
    data_type = DATA_TYPES[name]()
    bfn = tiny_bfn(data_type)
    x = example(data_type, batch=3)
    n = 3
    model_trace, guide_trace = _traces(bfn, x, n)
    sites = step_site_names(n)
    for trace in (model_trace, guide_trace):
        latent = [s for s in trace.stochastic_nodes if not site_is_subsample(trace.nodes[s])]
        assert latent == sites
    assert model_trace.observation_nodes == ["bfn_x"]
    event = SHAPE + ((data_type.num_classes,) if isinstance(data_type, DiscreteData) else ())
    for site in sites:
        for trace in (model_trace, guide_trace):
            fn = trace.nodes[site]["fn"]
            assert fn.batch_shape == (3,) and fn.event_shape == event
            assert trace.nodes[site]["value"].shape == (3,) + event
    assert model_trace.nodes["bfn_x"]["fn"].batch_shape == (3,)
    # every sender is reparameterised; the model alone is a sampler of the BFN's process
    assert all(guide_trace.nodes[s]["fn"].has_rsample for s in sites)
    unconditioned = poutine.trace(bfn_model).get_trace(bfn, x, n)
    assert unconditioned.nodes[sites[-1]]["value"].shape == (3,) + event


@pytest.mark.parametrize("name", ["continuous", "discretised", "discrete_K2"])
def test_elbo_terms_equal_the_bfn_losses_on_the_same_path(name):
    """Given one draw of the senders (the theta path), every per-step KL of the ELBO is the
    BFN's per-step loss at that path, and the ELBO loss is their sum plus L^r at theta_n: the
    same numbers up to float64 rounding (the KLs are closed form or deterministic quadrature)."""
    data_type = DATA_TYPES[name]()
    bfn = tiny_bfn(data_type)
    x = example(data_type, batch=4)
    n = 5
    pyro.set_rng_seed(3)
    elbo_loss = TraceMeanField_ELBO().loss(bfn_model, bfn_guide, bfn, x, n)
    pyro.set_rng_seed(3)
    model_trace, guide_trace = _traces(bfn, x, n)
    theta = data_type.prior((4,) + SHAPE, dtype=torch.float64)
    expected_total = torch.zeros(4, dtype=torch.float64)
    for step, site in enumerate(step_site_names(n), start=1):
        elbo_kl = kl_divergence(guide_trace.nodes[site]["fn"], model_trace.nodes[site]["fn"])
        i = torch.full((4,), step)
        bfn_step = bfn.discrete_time_loss(x, n, i, input_distribution=theta).detach()
        torch.testing.assert_close(n * elbo_kl.detach(), bfn_step, rtol=1e-13, atol=1e-13)
        expected_total += bfn_step / n
        accuracy = data_type.step_accuracy(i, n, x, torch.float64)
        theta = theta.update(guide_trace.nodes[site]["value"], accuracy)
    reconstruction = bfn.reconstruction_loss(x, input_distribution=theta).detach()
    torch.testing.assert_close(-model_trace.nodes["bfn_x"]["fn"].log_prob(x).detach(), reconstruction, rtol=1e-13, atol=1e-13)
    expected_total += reconstruction
    assert elbo_loss == pytest.approx(expected_total.sum().item(), rel=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(DATA_TYPES))
def test_elbo_loss_equals_bfn_loss_in_expectation(name):
    """TraceMeanField_ELBO (all n steps, every sender drawn) and BFN.loss (n times one random
    step) are unbiased estimates of the same L^n + L^r: their means agree within Z standard
    errors (each from its own sample standard deviation)."""
    data_type = DATA_TYPES[name]()
    bfn = tiny_bfn(data_type)
    x = example(data_type, batch=1)
    n, copies, chunks = 4, 100, 30
    pyro.set_rng_seed(0)
    elbo = TraceMeanField_ELBO()
    repeated = x.expand((copies,) + SHAPE).contiguous()
    with torch.no_grad():
        chunk_means = torch.tensor([elbo.loss(bfn_model, bfn_guide, bfn, repeated, n) / copies for _ in range(chunks)])
        totals = torch.cat([bfn.loss(repeated, n).total for _ in range(chunks)])
    elbo_mean, elbo_se = chunk_means.mean().item(), chunk_means.std().item() / math.sqrt(chunks)
    bfn_mean, bfn_se = totals.mean().item(), totals.std().item() / math.sqrt(totals.numel())
    tolerance = Z * math.hypot(elbo_se, bfn_se)
    assert abs(elbo_mean - bfn_mean) < tolerance, (elbo_mean, bfn_mean, tolerance)
    # the ELBO sums every step: it has the smaller variance of the two estimates
    assert elbo_se < bfn_se


def test_svi_trains_a_tiny_bfn():
    """pyro.infer.SVI with the BFN model, guide and TraceMeanField_ELBO trains the network."""
    pyro.clear_param_store()
    data_type = DiscreteData(2, beta_1=3.0)
    bfn = tiny_bfn(data_type, dtype=torch.float32, hidden=32)
    generator = torch.Generator().manual_seed(0)
    # two modes: all zeros or all ones (a correlation only the network can learn)
    modes = torch.randint(0, 2, (64, 1, 1, 1), generator=generator)
    data = modes.expand((64,) + SHAPE).contiguous()
    pyro.set_rng_seed(0)
    svi = SVI(bfn_model, bfn_guide, pyro.optim.Adam({"lr": 1e-2}), TraceMeanField_ELBO())
    losses = [svi.step(bfn, data, 4) / 64 for _ in range(150)]
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < first - 0.5, (first, last)
    # the network really is what SVI optimised
    assert set(pyro.get_param_store().keys()) == {f"bfn$$${k}" for k, _ in bfn.named_parameters()}
    pyro.clear_param_store()


def test_model_and_guide_validate_their_arguments():
    bfn = tiny_bfn(ContinuousData(0.1))
    x = example(bfn.data_type, batch=2)
    with pytest.raises(ValueError, match="n_steps"):
        poutine.trace(bfn_model).get_trace(bfn, x, 0)
    with pytest.raises(ValueError, match="shape"):
        poutine.trace(bfn_guide).get_trace(bfn, x[:, 0], 2)
    with pytest.raises(ValueError, match="leading dimension"):
        poutine.trace(bfn_model).get_trace(bfn, x, 2, context=torch.zeros(3, dtype=torch.long))


# ----------------------------------------------------------------------------- BFNLikelihood
@pytest.mark.parametrize("name", ["continuous", "discretised", "discrete_K2", "discrete_K4"])
@pytest.mark.parametrize("n_steps", [None, 5])
def test_likelihood_log_prob_is_the_negative_bfn_loss(name, n_steps):
    """Same seed, same draws: log_prob(x) == -BFN.loss(x, n_steps).total."""
    if name == "discrete_K4" and n_steps is not None:
        pytest.skip("the Monte Carlo KL of K > 2 draws in a different order; covered in expectation below")
    data_type = DATA_TYPES[name]()
    bfn = tiny_bfn(data_type)
    x = example(data_type, batch=5)
    likelihood = BFNLikelihood(bfn, n_steps=n_steps)
    torch.manual_seed(7)
    log_prob = likelihood.log_prob(x)
    torch.manual_seed(7)
    expected = -bfn.loss(x, n_steps).total
    assert log_prob.shape == (5,)
    torch.testing.assert_close(log_prob, expected, rtol=1e-12, atol=1e-12)


def test_likelihood_repeats_average_independent_draws():
    """R repeats are R independent draws averaged: stacked into one network call by default
    (equal to one draw of the R-times repeated batch), one call each with max_batch = N
    (equal to R single draws in turn)."""
    bfn = tiny_bfn(DiscreteData(4, beta_1=2.0))
    x = example(bfn.data_type, batch=3)
    single = BFNLikelihood(bfn, n_steps=4)
    torch.manual_seed(2)
    stacked = BFNLikelihood(bfn, n_steps=4, num_repeats=3, stratified=False).log_prob(x)
    torch.manual_seed(2)
    draws = single.log_prob(x.repeat(3, *([1] * len(SHAPE)))).reshape(3, 3)
    torch.testing.assert_close(stacked, draws.mean(0), rtol=1e-12, atol=1e-12)
    torch.manual_seed(2)
    one_by_one = BFNLikelihood(bfn, n_steps=4, num_repeats=3, stratified=False, max_batch=3).log_prob(x)
    torch.manual_seed(2)
    draws = torch.stack([single.log_prob(x) for _ in range(3)])
    torch.testing.assert_close(one_by_one, draws.mean(0), rtol=1e-12, atol=1e-12)


def test_stratified_repeats_cover_every_stratum_and_stay_unbiased(monkeypatch):
    """With R stratified repeats, repeat r draws its time in [r/R, (r+1)/R) (with n = R steps:
    exactly step r + 1); the mean is unchanged and the variance is smaller."""
    bfn = tiny_bfn(DiscreteData(2, beta_1=3.0))
    x = example(bfn.data_type, batch=1).expand((400,) + SHAPE)
    steps, times = [], []
    original_discrete, original_continuous = bfn.discrete_time_loss, bfn.continuous_time_loss

    def record_discrete(x, n_steps, i, *args):
        steps.append(i)
        return original_discrete(x, n_steps, i, *args)

    def record_continuous(x, t, *args):
        times.append(t)
        return original_continuous(x, t, *args)

    monkeypatch.setattr(bfn, "discrete_time_loss", record_discrete)
    monkeypatch.setattr(bfn, "continuous_time_loss", record_continuous)
    BFNLikelihood(bfn, n_steps=4, num_repeats=4).log_prob(x[:10])  # the 4 repeats in one call, repeat-major
    assert [row.unique().tolist() for row in torch.cat(steps).reshape(4, 10)] == [[1], [2], [3], [4]]
    BFNLikelihood(bfn, num_repeats=5, max_batch=10).log_prob(x[:10])  # one call per repeat
    assert len(times) == 5
    for r, t in enumerate(times):
        assert ((t >= r / 5) & (t < (r + 1) / 5)).all()
    torch.manual_seed(0)
    with torch.no_grad():
        stratified = BFNLikelihood(bfn, num_repeats=4).log_prob(x)
        independent = BFNLikelihood(bfn, num_repeats=4, stratified=False).log_prob(x)
    tolerance = Z * math.hypot(stratified.std().item(), independent.std().item()) / math.sqrt(400)
    assert abs(stratified.mean().item() - independent.mean().item()) < tolerance
    assert stratified.std() < 0.5 * independent.std()


def test_likelihood_is_a_lower_bound_in_expectation_for_k_greater_than_two():
    """For K > 2 and n steps (Monte Carlo KL): E[log_prob] == -E[BFN.loss total]."""
    bfn = tiny_bfn(DiscreteData(4, beta_1=2.0))
    x = example(bfn.data_type, batch=1).expand((2000,) + SHAPE)
    torch.manual_seed(0)
    with torch.no_grad():
        ours = BFNLikelihood(bfn, n_steps=4).log_prob(x)
        theirs = -bfn.loss(x, 4).total
    tolerance = Z * math.hypot(ours.std().item(), theirs.std().item()) / math.sqrt(2000)
    assert abs(ours.mean().item() - theirs.mean().item()) < tolerance


def test_likelihood_shapes_and_sampling():
    data_type = DiscreteData(3, beta_1=2.0)
    bfn = tiny_bfn(data_type, num_classes=4)
    labels = torch.tensor([[0, 1, 2], [3, 0, 1]])
    likelihood = BFNLikelihood(bfn, context=labels, n_steps=3)
    assert likelihood.batch_shape == (2, 3) and likelihood.event_shape == SHAPE
    draws = likelihood.sample((5,))
    assert draws.shape == (5, 2, 3) + SHAPE and draws.dtype == torch.long
    assert likelihood.support.check(draws).all()
    assert likelihood.log_prob(draws).shape == (5, 2, 3)
    # a value without batch dimensions broadcasts against the context batch
    assert likelihood.log_prob(draws[0, 0, 0]).shape == (2, 3)
    expanded = likelihood.expand((4, 2, 3))
    assert expanded.batch_shape == (4, 2, 3) and expanded.sample().shape == (4, 2, 3) + SHAPE
    unconditional = BFNLikelihood(tiny_bfn(data_type))
    assert unconditional.batch_shape == () and unconditional.sample().shape == SHAPE
    assert unconditional.expand((7,)).log_prob(draws[0, 0, 0]).shape == (7,)
    float_context = BFNLikelihood(tiny_bfn(data_type, context_dim=2), context=torch.randn(6, 2, dtype=torch.float64))
    assert float_context.batch_shape == (6,) and float_context.sample().shape == (6,) + SHAPE
    with pytest.raises(ValueError, match="data shape"):
        likelihood.log_prob(torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="broadcast"):
        likelihood.log_prob(torch.zeros((4,) + SHAPE, dtype=torch.long))
    with pytest.raises(ValueError, match="class indices"):
        likelihood.log_prob(torch.full(SHAPE, 3))
    with pytest.raises(ValueError, match="num_repeats"):
        BFNLikelihood(bfn, num_repeats=0)


def test_likelihood_shares_flow_draws_across_contexts():
    """A value scored under several contexts gets the same time and flow draws for each:
    with a network that ignores the context, the scores are identical across contexts."""
    data_type = DiscreteData(2, beta_1=3.0)
    bfn = tiny_bfn(data_type, num_classes=3)
    with torch.no_grad():
        bfn.network.backbone.context_embedding.table.weight.zero_()
    x = example(data_type, batch=4)
    scores = BFNLikelihood(bfn, context=torch.arange(3)[:, None]).log_prob(x)
    assert scores.shape == (3, 4)
    assert torch.equal(scores[0], scores[1]) and torch.equal(scores[0], scores[2])
    # and different examples still get different draws
    same = x[:1].expand(4, *SHAPE)
    assert BFNLikelihood(bfn).log_prob(same).unique().numel() == 4


def test_likelihood_in_a_plate_with_gradients_through_pyro_module():
    pyro.clear_param_store()
    data_type = DiscretisedData(16)
    bfn = tiny_bfn(data_type)
    x = example(data_type, batch=6)

    def model(data):
        pyro.module("bfn", bfn)
        with pyro.plate("examples", data.shape[0]):
            pyro.sample("x", BFNLikelihood(bfn, num_repeats=2), obs=data)

    trace = poutine.trace(model).get_trace(x)
    trace.compute_log_prob()
    assert trace.nodes["x"]["fn"].batch_shape == (6,)
    assert trace.nodes["x"]["log_prob"].shape == (6,)
    loss = Trace_ELBO().differentiable_loss(model, lambda data: None, x)
    loss.backward()
    gradients = [p.grad for p in bfn.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in gradients)
    assert sum(g.abs().sum() for g in gradients) > 0
    assert len(pyro.get_param_store()) == len(list(bfn.parameters()))
    pyro.clear_param_store()


def test_enumerated_label_posterior_is_bayes_rule_on_the_bound():
    """TraceEnum_ELBO over a label with BFNLikelihood: the marginal of the label is
    softmax(log prior + log_prob under each label), with the draws shared across labels."""
    data_type = DiscreteData(2, beta_1=3.0)
    bfn = tiny_bfn(data_type, num_classes=3, seed=4)
    x = example(data_type, batch=5)
    prior = torch.tensor([0.2, 0.3, 0.5])

    @config_enumerate
    def model(data):
        with pyro.plate("examples", data.shape[0]):
            label = pyro.sample("label", dist.Categorical(prior))
            pyro.sample("x", BFNLikelihood(bfn, context=label), obs=data)

    torch.manual_seed(9)
    marginal = TraceEnum_ELBO(max_plate_nesting=1).compute_marginals(model, lambda data: None, x)["label"]
    torch.manual_seed(9)
    scores = BFNLikelihood(bfn, context=torch.arange(3)[:, None]).log_prob(x)  # (3, 5)
    expected = torch.softmax(prior.log()[:, None].double() + scores, 0).T
    torch.testing.assert_close(marginal.probs.double(), expected, rtol=1e-6, atol=1e-9)


# ----------------------------------------------------------------------------- fixed noise (MCMC)
@pytest.mark.parametrize("name, n_steps", [("continuous", None), ("discrete_K4", 4)])
def test_fixed_noise_log_prob_is_a_deterministic_function(name, n_steps):
    """fixed_noise=True: the same scores at every call (also after expand, as under pyro.plate),
    the global random state untouched, other seeds other draws; seed only with fixed_noise."""
    data_type = DATA_TYPES[name]()
    bfn = tiny_bfn(data_type)
    x = example(data_type, batch=3)
    likelihood = BFNLikelihood(bfn, n_steps=n_steps, num_repeats=2, fixed_noise=True)
    state = torch.get_rng_state()
    first = likelihood.log_prob(x)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(likelihood.log_prob(x), first)
    assert torch.equal(likelihood.expand((3,)).log_prob(x), first)
    assert torch.equal(BFNLikelihood(bfn, n_steps=n_steps, num_repeats=2, fixed_noise=True, seed=0).log_prob(x), first)
    other = BFNLikelihood(bfn, n_steps=n_steps, num_repeats=2, fixed_noise=True, seed=1).log_prob(x)
    assert (other != first).all()
    random = BFNLikelihood(bfn, n_steps=n_steps, num_repeats=2)
    assert not torch.equal(random.log_prob(x), random.log_prob(x))
    with pytest.raises(ValueError, match="fixed_noise"):
        BFNLikelihood(bfn, seed=3)
    with pytest.raises(ValueError, match="seed"):
        BFNLikelihood(bfn, fixed_noise=True, seed=-1)


def test_fixed_noise_is_unbiased_over_seeds():
    """One seed's score is one draw of the bound: the mean over S seeds matches the mean of S
    independent random draws within Z standard errors (S = 200, both from seeded draws)."""
    data_type = DATA_TYPES["continuous"]()
    bfn = tiny_bfn(data_type)
    x = example(data_type, batch=1)
    seeds = 200
    with torch.no_grad():
        fixed = torch.cat([BFNLikelihood(bfn, fixed_noise=True, seed=s).log_prob(x) for s in range(seeds)])
        torch.manual_seed(11)
        random = BFNLikelihood(bfn).log_prob(x.expand((seeds,) + SHAPE))
    tolerance = Z * math.hypot(fixed.std().item(), random.std().item()) / math.sqrt(seeds)
    assert abs(fixed.mean().item() - random.mean().item()) < tolerance
    assert fixed.unique().numel() == seeds  # every seed its own draw


def test_fixed_noise_bound_is_differentiable_in_the_value_and_the_context():
    """With fixed noise log_prob is a smooth deterministic function: its gradients in a
    continuous value and in a float context pass torch.autograd.gradcheck (central finite
    differences in float64; for the context with steps of 1e-2, as the MLP adds the context
    embedding in float32, whose rounding, ~1e-8 in the bound, would swamp smaller steps), and the
    network's gradients are finite and the same at every call."""
    data_type = DATA_TYPES["continuous"]()
    bfn = tiny_bfn(data_type, context_dim=2)
    x = example(data_type, batch=2).requires_grad_()
    context = torch.randn(2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_()

    def bound(value, vectors):
        return BFNLikelihood(bfn, context=vectors, num_repeats=2, fixed_noise=True).log_prob(value)

    assert torch.autograd.gradcheck(lambda value: bound(value, context.detach()), (x,), eps=1e-6, atol=1e-5, rtol=1e-4)
    assert torch.autograd.gradcheck(lambda vectors: bound(x.detach(), vectors), (context,), eps=1e-2, atol=2e-5, rtol=1e-3)
    gradients = []
    for _ in range(2):
        bfn.zero_grad()
        bound(x.detach(), context.detach()).sum().backward()
        gradients.append(torch.cat([p.grad.reshape(-1) for p in bfn.parameters()]))
    assert torch.isfinite(gradients[0]).all() and gradients[0].abs().sum() > 0
    assert torch.equal(gradients[0], gradients[1])


# ----------------------------------------------------------------------------- conditional BFNs
@pytest.mark.parametrize("kind", ["labels", "vectors"])
@pytest.mark.parametrize("backbone", ["mlp", "unet", "transformer"])
def test_backbones_take_a_context(backbone, kind):
    torch.manual_seed(0)
    option = {"num_classes": 5} if kind == "labels" else {"context_dim": 3}
    if backbone == "mlp":
        net, h = MLP(6, 4, hidden=16, depth=2, time_embedding_dim=8, **option), torch.randn(4, 6)
    elif backbone == "unet":
        net = UNet(1, 2, base_width=8, width_multipliers=(1, 2), num_groups=4, **option)
        h = torch.randn(4, 1, 8, 8)
    else:
        net, h = Transformer(3, 2, width=16, depth=1, heads=2, max_length=8, **option), torch.randn(4, 5, 3)
    t = torch.rand(4)
    context = torch.tensor([0, 1, 2, 4]) if kind == "labels" else torch.randn(4, 3)
    out = net(h, t, context)
    null = net(h, t)
    assert out.shape == null.shape
    # the context changes the output; context=None is the null token, as is the dropped context
    embedding = net.context_embedding
    with torch.no_grad():
        for parameter in embedding.parameters():
            parameter.normal_()
    out, null = net(h, t, context), net(h, t)
    assert not torch.allclose(out, null)
    dropped = torch.full_like(context, -1) if kind == "labels" else torch.full_like(context, math.nan)
    torch.testing.assert_close(net(h, t, dropped), null)
    out.sum().backward()
    assert all(p.grad is not None for p in embedding.parameters() if p is not getattr(embedding, "null", None))
    with pytest.raises(ValueError, match="context"):
        net(h, t, context[:2])
    unconditional = MLP(6, 4, hidden=8, depth=1)
    with pytest.raises(ValueError, match="without num_classes"):
        unconditional(torch.randn(4, 6), t, torch.zeros(4, dtype=torch.long))


def test_conditional_bfn_loss_sampling_and_context_dropout():
    data_type = DiscreteData(2, beta_1=3.0)
    bfn = tiny_bfn(data_type, num_classes=3)
    with torch.no_grad():
        bfn.network.backbone.context_embedding.table.weight.normal_()
    x = example(data_type, batch=6)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    torch.manual_seed(1)
    conditional = bfn.loss(x, 4, context=labels).total
    torch.manual_seed(1)
    null = bfn.loss(x, 4).total
    assert not torch.allclose(conditional, null)
    # classifier-free training: with dropout probability 1 every context is the null token
    bfn.context_dropout = 1.0
    bfn.train()
    torch.manual_seed(1)
    first = bfn.loss(x, 4, context=labels).total
    torch.manual_seed(1)
    torch.rand(6)  # the dropout draw
    torch.testing.assert_close(first, bfn.loss(x, 4).total)
    # in evaluation mode nothing is dropped
    bfn.eval()
    torch.manual_seed(1)
    torch.testing.assert_close(bfn.loss(x, 4, context=labels).total, conditional)
    bfn.context_dropout = 0.5
    bfn.train()
    torch.manual_seed(3)
    half = bfn.loss(x, 4, context=labels).total
    assert not torch.allclose(half, conditional) and not torch.allclose(half, null)
    with pytest.raises(ValueError, match="context_dropout"):
        BFN(data_type, bfn.network, SHAPE, context_dropout=1.5)
    # sampling: one label for all, or one per sample
    assert bfn.sample(3, 4, context=2).shape == (3,) + SHAPE
    assert bfn.sample(3, 4, context=torch.tensor([0, 1, 2])).shape == (3,) + SHAPE
    with pytest.raises(ValueError, match="leading dimension"):
        bfn.sample(3, 4, context=torch.tensor([0, 1]))


# ----------------------------------------------------------------------------- conjugacy in Pyro
def test_conjugate_reparam_with_the_normal_input_distribution():
    """The Bayesian update of continuous data is Pyro's conjugate update: with
    ConjugateReparam on x ~ NormalInput and observed sender draws y_j ~ N(x, 1/alpha_j), x is
    drawn from prior.update(y, alpha) and the model's log-density is the exact log marginal
    likelihood for every draw, so Trace_ELBO with an empty guide has zero variance."""
    prior = NormalInput(torch.tensor([0.3, -0.5], dtype=torch.float64), torch.tensor([2.0, 0.5], dtype=torch.float64))
    y = torch.tensor([[0.9, 0.1], [0.7, -0.3], [1.2, 0.0]], dtype=torch.float64)
    accuracy = torch.tensor([[1.5], [0.5], [4.0]], dtype=torch.float64)
    # the senders' joint likelihood of x is one Normal: precision sum(alpha), mean the weighted y
    total = accuracy.sum(0)
    pooled = (accuracy * y).sum(0) / total
    likelihood = NormalSender(pooled, total).likelihood(pooled)

    def model():
        with pyro.plate("dims", 2):
            x = pyro.sample("x", prior)
            for j in range(3):
                pyro.sample(f"y_{j}", NormalSender(x, accuracy[j]), obs=y[j])

    reparam_model = poutine.reparam(model, {"x": ConjugateReparam(likelihood)})
    # the exact log evidence: prod_j N(y_j; x, 1/alpha_j) integrated against the prior
    samples = dist.Normal(0.0, 1.0).sample((200000, 2)).double() * prior.scale + prior.loc
    evidence = sum(dist.Normal(samples, accuracy[j].rsqrt()).log_prob(y[j]) for j in range(3)).exp().mean(0).log().sum()
    losses = []
    draws = []
    for seed in range(50):
        pyro.set_rng_seed(seed)
        trace = poutine.trace(reparam_model).get_trace()
        losses.append(-trace.log_prob_sum().item())
        draws.append(trace.nodes["x"]["value"])
    assert max(losses) - min(losses) < 1e-10
    assert -losses[0] == pytest.approx(evidence.item(), abs=5e-3)
    posterior = prior.update(pooled, total)
    direct = prior
    for j in range(3):
        direct = direct.update(y[j], accuracy[j])
    torch.testing.assert_close(direct.loc, posterior.loc)
    torch.testing.assert_close(direct.precision, posterior.precision)
    draws = torch.stack(draws)
    assert ((draws.mean(0) - posterior.loc).abs() < Z * posterior.scale / math.sqrt(50)).all()


def test_categorical_input_posterior_by_enumeration():
    """The discrete Bayesian update is exact posterior inference: enumerate the class of
    k ~ CategoricalInput(theta) observed through a sender draw y ~ N(alpha(K e_k - 1), alpha K I);
    the posterior is prior.update(y) (ConjugateReparam itself needs a reparameterised
    posterior, which a categorical is not)."""
    theta = CategoricalInput(probs=torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64))
    alpha = torch.tensor(0.7, dtype=torch.float64)
    torch.manual_seed(0)
    y = DiscreteSender(torch.tensor(2), alpha, 4).sample()

    @config_enumerate
    def model():
        k = pyro.sample("k", theta)
        pyro.sample("y", DiscreteSender(k, alpha, 4), obs=y)

    marginal = TraceEnum_ELBO(max_plate_nesting=0).compute_marginals(model, lambda: None)["k"]
    torch.testing.assert_close(marginal.probs.double(), theta.update(y).probs, rtol=1e-6, atol=1e-9)
    with pytest.raises(NotImplementedError, match="reparameterized"):
        poutine.trace(poutine.reparam(model, {"k": ConjugateReparam(dist.Categorical(logits=y))})).get_trace()


def test_mlp_input_skip():
    torch.manual_seed(0)
    net = MLP(6, 6, hidden=4, depth=1, input_skip=True)
    assert net.output.in_features == 4 + 6
    with torch.no_grad():
        net.output.weight.zero_()
        net.output.bias.zero_()
        net.output.weight[:, 4:] = torch.eye(6)
    h = torch.randn(3, 6)
    torch.testing.assert_close(net(h, torch.rand(3)), h)
    assert MLP(6, 6, hidden=4, depth=1).output.in_features == 4
