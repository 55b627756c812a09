"""The ODE and SDE solvers (pyro_bfn.sampling.solvers), each against its defining property."""

import math

import pytest
import torch
from torch import nn

from pyro_bfn.bfn import BFN
from pyro_bfn.data_types import ContinuousData, DiscreteData, DiscretisedData
from pyro_bfn.sampling import GaussianView, TimeGrid, get_sampler, list_samplers, solve

SHAPE = (2, 3)
SOLVERS = ["ode1", "ode2", "sde2"]
SAMPLERS = ["ancestral"] + SOLVERS


def _gamma(data_type, t, like):
    t = t.reshape(t.shape + (1,) * (like.dim() - 1)).to(torch.float64)
    return data_type.schedule.gamma(t)


class PerfectNoise(nn.Module):
    """For continuous and discretised data: the exact noise of the data ``x``,
    :math:`\\epsilon = (\\mu - \\gamma x)/\\sqrt{\\gamma(1-\\gamma)}` (and a vanishing output scale for
    discretised data), so that the network's data prediction is ``x`` at every input."""

    def __init__(self, data_type, x):
        super().__init__()
        self.data_type, self.x = data_type, x
        self.dummy = nn.Parameter(torch.zeros(()))
        self.calls = 0

    def forward(self, features, t):
        self.calls += 1
        mu = features[..., 0].to(torch.float64)
        gamma = _gamma(self.data_type, t, mu)
        eps = (mu - gamma * self.x) / (gamma * (1 - gamma)).clamp(min=1e-30).sqrt()
        out = [eps.to(features.dtype)[..., None]]
        if self.data_type.num_output_features == 2:
            out.append(torch.full_like(out[0], -12.0))
        return torch.cat(out, -1)


class PerfectLogits(nn.Module):
    """For discrete data: logits that put all mass on the data ``x``."""

    def __init__(self, num_classes, x):
        super().__init__()
        self.num_classes, self.x = num_classes, x
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, features, t):
        logits = 40.0 * nn.functional.one_hot(self.x, self.num_classes).to(features.dtype)
        logits = logits.expand(features.shape[:-1] + (self.num_classes,))
        return logits[..., 1:] - logits[..., :1] if self.num_classes == 2 else logits


def _data(data_type, generator):
    if isinstance(data_type, DiscreteData):
        return torch.randint(0, data_type.num_classes, SHAPE, generator=generator)
    if isinstance(data_type, DiscretisedData):
        return data_type.from_integers(torch.randint(0, data_type.num_bins, SHAPE, generator=generator), torch.float64)
    return (torch.rand(SHAPE, generator=generator, dtype=torch.float64) * 1.6 - 0.8)


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize(
    "data_type", [ContinuousData(0.02), DiscretisedData(16), DiscreteData(2, 3.0), DiscreteData(5, 0.7)],
    ids=["continuous", "discretised", "binary", "categorical"],
)
@pytest.mark.parametrize("n", [1, 2, 10])
def test_a_perfect_predictor_gives_the_data_back(sampler, data_type, n):
    x = _data(data_type, torch.Generator().manual_seed(3))
    if isinstance(data_type, DiscreteData):
        network = PerfectLogits(data_type.num_classes, x)
    else:
        network = PerfectNoise(data_type, x)
    bfn = BFN(data_type, network, SHAPE)
    for final in ("sample", "mode"):
        samples = bfn.sample(4, n, sampler=sampler, final=final)
        expected = x.to(samples.dtype).expand_as(samples)
        torch.testing.assert_close(samples, expected, atol=1e-4, rtol=0)


class CountingLinear(nn.Module):
    def __init__(self, f_in, f_out):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(f_in + 1, f_out, generator=generator) * 0.7)
        self.times = []

    def forward(self, features, t):
        self.times.append(t.clone())
        t = t.reshape(t.shape + (1,) * (features.dim() - 1)).expand(features.shape[:-1] + (1,))
        return torch.cat([features, t.to(features.dtype)], -1) @ self.weight.to(features.dtype)


@pytest.mark.parametrize("sampler", SOLVERS)
@pytest.mark.parametrize(
    "data_type", [ContinuousData(0.02), DiscretisedData(16), DiscreteData(2, 3.0), DiscreteData(5, 0.7)],
    ids=["continuous", "discretised", "binary", "categorical"],
)
@pytest.mark.parametrize("n", [1, 2, 7])
def test_solvers_count_n_plus_one_calls_on_the_grid(sampler, data_type, n):
    bfn = BFN(data_type, CountingLinear(data_type.num_input_features, data_type.num_output_features), SHAPE)
    steps, infos = [], []
    with torch.no_grad():
        result = get_sampler(sampler)(bfn, 3, TimeGrid(n), progress=lambda i, total: steps.append((i, total)),
                                      callback=infos.append)
    assert result.network_calls == n + 1 == len(bfn.network.times)
    assert steps == [(i, n) for i in range(1, n + 1)]
    assert [info["step"] for info in infos] == list(range(1, n + 1))
    assert [info["t"] for info in infos] == pytest.approx([i / n for i in range(1, n + 1)])
    times = torch.stack(bfn.network.times)
    expected = torch.cat([TimeGrid(n).times(dtype=torch.float32)[:-1], torch.ones(1)])
    torch.testing.assert_close(times, expected[:, None].expand(n + 1, 3))
    assert result.samples.shape == (3,) + SHAPE
    if isinstance(data_type, DiscreteData):
        assert result.samples.dtype == torch.long
    else:
        assert torch.isfinite(result.samples).all()


# A smooth toy problem with a known optimum: data x ~ N(M, V) in every dimension, whose exact
# posterior mean given mu_t ~ N(gamma x, gamma (1 - gamma)) is M + a V (mu - a M) / (a^2 V + s^2).
M, V = 0.3, 0.2
CONTINUOUS = ContinuousData(0.02, clip=None)
VIEW = GaussianView(CONTINUOUS)


def _coefficients(t):
    return VIEW.coefficients(torch.as_tensor(t, dtype=torch.float64))


def _posterior_mean(mu, t):
    a, s, _ = _coefficients(t)
    return M + a * V / (a * a * V + s * s) * (mu - a * M)


def _flow_variance(t):
    a, s, _ = _coefficients(t)
    return a * a * V + s * s


def _exact_ode(mu, t_from, t_to):
    """The probability-flow ODE of Gaussian data is affine: it maps the marginal's standard score."""
    a0, _, _ = _coefficients(t_from)
    a1, _, _ = _coefficients(t_to)
    return a1 * M + (_flow_variance(t_to) / _flow_variance(t_from)).sqrt() * (mu - a0 * M)


@pytest.mark.parametrize("order, ratio", [(1, 2.0), (2, 4.0)])
def test_halving_the_step_shows_the_order_of_the_ode_solver(order, ratio):
    mu = torch.linspace(-1, 1, 11, dtype=torch.float64)
    errors = []
    for n in (8, 16, 32, 64):
        times = torch.linspace(0.2, 1.0, n + 1, dtype=torch.float64).tolist()
        end, calls = solve(VIEW, mu, times, lambda z, t: (_posterior_mean(z, t), None), order=order)
        assert calls == n
        errors.append((end - _exact_ode(mu, 0.2, 1.0)).abs().max().item())
    ratios = [errors[i] / errors[i + 1] for i in range(len(errors) - 1)]
    assert ratios == pytest.approx([ratio] * len(ratios), rel=0.08), ratios


class GaussianOptimum(nn.Module):
    """The optimal network for the data N(M, V): the noise of the exact posterior mean."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, features, t):
        mu = features[..., 0]
        t = t.reshape(t.shape + (1,) * (mu.dim() - 1))
        a, s, _ = _coefficients(t.clamp(min=1e-6))
        return ((mu - a * _posterior_mean(mu, t.clamp(min=1e-6))) / s)[..., None]


def _sample_moments(sampler, n, num, steps):
    """Mean and variance of mu over ``num`` samples after each of ``steps`` (step -> (mean, var))."""
    torch.manual_seed(0)
    bfn = BFN(CONTINUOUS, GaussianOptimum(), (1,))
    moments = {}

    def record(info):
        if info["step"] in steps:
            loc = info["input_distribution"].loc
            moments[info["step"]] = (loc.mean().item(), loc.var().item())

    bfn.sample(num, n, sampler=sampler, callback=record)
    return moments


def _assert_moments(moments, expected, num):
    """Within four standard errors of ``num`` samples: ``expected`` maps step -> (mean, var)."""
    for step, (mean, variance) in moments.items():
        expected_mean, expected_variance = expected[step]
        assert abs(mean - expected_mean) < 4 * math.sqrt(expected_variance / num), (step, mean, expected_mean)
        assert abs(variance / expected_variance - 1) < 4 * math.sqrt(2 / num), (step, variance, expected_variance)


@pytest.mark.parametrize("sampler, n", [("ode1", 200), ("ode2", 40)])
def test_ode_marginals_are_the_bayesian_flow_transported_from_the_first_step(sampler, n):
    """The ODE moves the marginal of mu at t_1 as the Bayesian flow's probability-flow ODE does.
    That marginal is the ancestral first step's from the point mu_0 = 0 with the prior guess
    x_hat = 0, N(0, s_1^2); the flow's affine map takes it to mean a_t M - r a_1 M and variance
    r^2 s_1^2 at t, with r^2 = (a_t^2 V + s_t^2) / (a_1^2 V + s_1^2)."""
    num, steps = 20000, (1, n // 4, n // 2, n)
    t_1 = 1.0 / n
    a_1, s_1, _ = _coefficients(t_1)
    expected = {}
    for step in steps:
        a, _, _ = _coefficients(step / n)
        ratio = (_flow_variance(step / n) / _flow_variance(t_1)).item()
        expected[step] = ((a * M - ratio**0.5 * a_1 * M).item(), ratio * s_1.item() ** 2)
    _assert_moments(_sample_moments(sampler, n, num, steps), expected, num)


def test_sde_marginals_match_the_bayesian_flow():
    """The SDE forgets the first step's mismatch: its marginals are the Bayesian flow's,
    mu_t ~ N(a_t M, a_t^2 V + s_t^2) (the flow of x ~ N(M, V))."""
    num, n, steps = 20000, 400, (100, 200, 400)
    expected = {step: ((_coefficients(step / n)[0] * M).item(), _flow_variance(step / n).item()) for step in steps}
    _assert_moments(_sample_moments("sde2", n, num, steps), expected, num)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_fewer_than_one_step_is_named(sampler):
    bfn = BFN(DiscreteData(2, 3.0), CountingLinear(1, 1), SHAPE)
    with pytest.raises(ValueError, match="n_steps must be a positive integer"):
        bfn.sample(2, 0, sampler=sampler)


def test_the_solvers_are_registered():
    assert set(SOLVERS) <= set(list_samplers())
