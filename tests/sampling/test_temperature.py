"""The sampling temperature (pyro_bfn.sampling.temperature): every draw from the model from the
tempered distribution p^(1/T); T = 1 the untempered draws bit for bit, T -> 0 every draw its mode,
bad T one error."""

import math

import pytest
import torch
from torch import nn

from pyro_bfn.bfn import BFN
from pyro_bfn.data_types import ContinuousData, DiscreteData, DiscretisedData
from pyro_bfn.distributions import CategoricalOutput, DiscretisedOutput, PointMassOutput
from pyro_bfn.sampling import TimeGrid, get_sampler, tempered_output_draw, tempered_sender_draw

SHAPE = (2, 3)
DATA_TYPES = [ContinuousData(0.02), DiscretisedData(16), DiscreteData(2, 3.0), DiscreteData(5, 0.7)]
IDS = ["continuous", "discretised", "binary", "categorical"]
SAMPLERS = ["ancestral", "ode1", "ode2", "sde2"]


class Linear(nn.Module):
    """A per-variable affine map of the input features and t (weights fixed by a seed; the bias keeps
    the outputs at the prior's symmetric input away from exact ties between classes or bins)."""

    def __init__(self, f_in, f_out):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(f_in + 1, f_out, generator=generator) * 0.7)
        self.bias = nn.Parameter(torch.randn(f_out, generator=generator) * 0.3)

    def forward(self, features, t, context=None):
        t = t.reshape(t.shape + (1,) * (features.dim() - 1)).expand(features.shape[:-1] + (1,))
        return torch.cat([features, t.to(features.dtype)], -1) @ self.weight + self.bias


def _bfn(data_type):
    return BFN(data_type, Linear(data_type.num_input_features, data_type.num_output_features), SHAPE)


def _draw(bfn, sampler, seed, **options):
    return bfn.sample(6, 5, sampler=sampler, generator=torch.Generator().manual_seed(seed), **options)


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("data_type", DATA_TYPES, ids=IDS)
def test_temperature_one_is_the_untempered_sampler_bit_for_bit(data_type, sampler):
    bfn = _bfn(data_type)
    plain = _draw(bfn, sampler, 3)
    assert torch.equal(_draw(bfn, sampler, 3, temperature=1.0), plain)
    assert torch.equal(_draw(bfn, sampler, 3, temperature=1), plain)
    # the sampler itself, with the tempered draws at T = 1 (the path BFN.sample skips)
    with torch.inference_mode():
        torch.manual_seed(3)
        explicit = get_sampler(sampler)(bfn, 6, TimeGrid(5), temperature=1.0).samples
        torch.manual_seed(3)
        default = get_sampler(sampler)(bfn, 6, TimeGrid(5)).samples
    assert torch.equal(explicit, default)


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("data_type", DATA_TYPES, ids=IDS)
def test_temperature_zero_is_deterministic_and_the_limit_of_small_temperatures(data_type, sampler):
    bfn = _bfn(data_type)
    zero = _draw(bfn, sampler, 1, temperature=0.0)
    assert torch.equal(_draw(bfn, sampler, 2, temperature=0.0), zero)  # no randomness left
    # T -> 0: the draws converge to the modes: the categorical draws become the argmax (barring
    # exact ties), the Gaussian ones come within sqrt(T) of their means (here below float32's
    # resolution: a trajectory whose final outputs nearly tie would amplify any larger difference)
    small = _draw(bfn, sampler, 4, temperature=1e-36)
    if isinstance(data_type, ContinuousData):
        torch.testing.assert_close(small, zero, atol=1e-4, rtol=0)
    elif isinstance(data_type, DiscreteData):
        assert torch.equal(small, zero)
    # (discretised data: the output at t = 0 is the symmetric prior guess, whose tied bins T = 0
    # resolves to the first and T -> 0 uniformly; test_a_tiny_temperature_draws_the_mode checks it)
    # and a tempered sampler is random at T > 0
    assert not torch.equal(_draw(bfn, sampler, 1, temperature=0.5), _draw(bfn, sampler, 2, temperature=0.5))


@pytest.mark.parametrize("data_type", DATA_TYPES, ids=IDS)
def test_temperature_zero_with_a_mode_final_is_the_mode_path(data_type):
    bfn = _bfn(data_type)
    assert torch.equal(_draw(bfn, "ancestral", 1, temperature=0.0), _draw(bfn, "ancestral", 9, temperature=0.0, final="mode"))


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_tempered_categorical_draws_follow_softmax_of_logits_over_t(temperature):
    logits = torch.log_softmax(torch.tensor([0.3, -1.2, 1.0, 0.0]), -1)
    n = 40_000
    for output in (CategoricalOutput.from_log_probs(logits.expand(n, 4)),
                   DiscretisedOutput(torch.full((n,), 0.1), torch.full((n,), 0.4), 4)):
        torch.manual_seed(0)
        draws = tempered_output_draw(output, temperature)
        index = draws if isinstance(output, CategoricalOutput) else torch.bucketize(draws, output.centres)
        expected = torch.softmax(output.logits[0] / temperature, -1)
        frequencies = torch.bincount(index, minlength=4).double() / n
        tolerance = 5 * (expected * (1 - expected) / n).sqrt()  # 5 binomial standard errors
        assert ((frequencies - expected).abs() <= tolerance).all(), (frequencies, expected)


@pytest.mark.parametrize("temperature", [0.25, 3.0])
@pytest.mark.parametrize("data_type", DATA_TYPES, ids=IDS)
def test_tempered_sender_draws_have_the_mean_and_t_times_the_variance(data_type, temperature):
    n = 20_000
    x = torch.zeros(n, dtype=torch.long) if isinstance(data_type, DiscreteData) else torch.full((n,), 0.25)
    sender = data_type.sender(x, torch.tensor(0.8))
    torch.manual_seed(0)
    y = tempered_sender_draw(sender, temperature).double()
    mean, variance = sender.mean.double(), sender.variance.double()
    # sample mean within 5 standard errors; sample variance within 5 of its standard errors (sqrt(2/n))
    assert ((y.mean(0) - mean[0]).abs() <= 5 * (temperature * variance[0] / n).sqrt()).all()
    assert ((y.var(0) / (temperature * variance[0]) - 1).abs() <= 5 * math.sqrt(2 / n)).all()
    assert torch.equal(tempered_sender_draw(sender, 0.0), sender.mean)


def test_a_tiny_temperature_draws_the_mode():
    output = DiscretisedOutput(torch.tensor([0.5, 0.9, -0.3]), torch.tensor([0.4, 1.5, 0.02]), 16)
    assert torch.equal(tempered_output_draw(output, 1e-300), output.mode)
    categorical = CategoricalOutput.from_log_probs(torch.log_softmax(torch.tensor([[-900.0, -901.0, -950.0]]), -1))
    assert torch.equal(tempered_output_draw(categorical, 1e-300), categorical.mode)


def test_the_point_mass_output_is_its_own_tempered_version():
    output = PointMassOutput(torch.tensor([0.5, -0.25]))
    assert torch.equal(tempered_output_draw(output, 0.3), output.sample())
    assert torch.equal(tempered_output_draw(output, 0.0), output.mode)


def test_smc_inpainting_takes_a_temperature():
    bfn = _bfn(DiscreteData(5, 0.7))
    known = torch.zeros(SHAPE, dtype=torch.long)
    mask = torch.zeros(SHAPE, dtype=torch.bool)
    mask[0] = True
    out = bfn.sample(3, 4, known=known, mask=mask, num_particles=2, temperature=0.5,
                     generator=torch.Generator().manual_seed(0))
    assert out.shape == (3,) + SHAPE and torch.equal(out[:, 0], known[0].expand(3, -1))


@pytest.mark.parametrize("bad", [-0.5, math.nan, math.inf, True, "1", None])
def test_bad_temperature_is_one_error_naming_it(bad):
    bfn = _bfn(DiscretisedData(16))
    with pytest.raises(ValueError, match=r"temperature must be a finite number >= 0"):
        bfn.sample(2, 3, temperature=bad)
