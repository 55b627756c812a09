"""Gradient guidance (pyro_bfn.sampling.gradient_guidance) against its defining properties."""

import pytest
import torch
from torch import nn

from pyro_bfn.bfn import BFN
from pyro_bfn.data_types import ContinuousData, DiscreteData, DiscretisedData
from pyro_bfn.distributions import CategoricalInput, NormalInput
from pyro_bfn.sampling import GradientGuidance

SHAPE = (2, 3)


class ZeroNoise(nn.Module):
    """Continuous data: noise prediction 0, so :math:`\\hat x = \\mu/\\gamma_t` (for t >= t_min)."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, features, t):
        return torch.zeros_like(features[..., :1])


def _linear_bfn(data_type):
    torch.manual_seed(0)
    network = nn.Linear(data_type.num_input_features, data_type.num_output_features).double()
    return BFN(data_type, TimeScaledLinear(network), SHAPE)


class TimeScaledLinear(nn.Module):
    """A stand-in network: a linear map of the features scaled by ``1 + t``."""

    def __init__(self, linear):
        super().__init__()
        self.linear = linear

    def forward(self, features, t):
        return self.linear(features * (1 + t.reshape(t.shape + (1,) * (features.dim() - 1))))


def _score(output, t):
    if hasattr(output, "logits"):
        return output.logits.log_softmax(-1)[..., 0].flatten(1).sum(-1)
    return (0.7 * output.mean).flatten(1).sum(-1)


@pytest.mark.parametrize("data_type", [ContinuousData(0.1), DiscretisedData(16), DiscreteData(3, 1.0)], ids=str)
def test_guided_output_is_the_shift_by_the_finite_difference_gradient(data_type):
    torch.set_default_dtype(torch.float64)
    try:
        bfn = _linear_bfn(data_type)
        t = torch.full((4,), 0.6)
        torch.manual_seed(1)
        if isinstance(data_type, DiscreteData):
            z = torch.randn(4, *SHAPE, 3)
            make = lambda z: CategoricalInput.from_log_probs(torch.log_softmax(z, -1))  # noqa: E731
            precision = None
        else:
            z = 0.3 * torch.randn(4, *SHAPE)
            precision = torch.full_like(z, 7.0)
            make = lambda z: NormalInput(z, precision)  # noqa: E731
        guided = GradientGuidance(bfn, _score, 0.5).output_distribution(make(z), t)
        # the gradient of the log-score in the state z, by central differences
        gradient = torch.zeros_like(z)
        flat = gradient.view(-1)
        for j in range(z.numel()):
            step = torch.zeros_like(z).view(-1)
            step[j] = 1e-6
            up = _score(bfn.output_distribution(make(z + step.view_as(z)), t), t).sum()
            down = _score(bfn.output_distribution(make(z - step.view_as(z)), t), t).sum()
            flat[j] = (up - down) / 2e-6
        unguided = bfn.output_distribution(make(z), t)
        if isinstance(data_type, DiscreteData):
            expected = torch.log_softmax(unguided.logits + 0.5 * gradient, -1)
            torch.testing.assert_close(guided.logits.log_softmax(-1), expected, atol=1e-6, rtol=1e-6)
        elif isinstance(data_type, DiscretisedData):
            torch.testing.assert_close(guided.loc, unguided.loc + 0.5 * gradient / precision, atol=1e-6, rtol=1e-6)
            torch.testing.assert_close(guided.scale, unguided.scale)
        else:
            expected = (unguided.x_hat + 0.5 * gradient / precision).clamp(*data_type.clip)
            torch.testing.assert_close(guided.x_hat, expected, atol=1e-6, rtol=1e-6)
    finally:
        torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("sampler", ["ancestral", "ode1", "sde2"])
@pytest.mark.parametrize("data_type", [ContinuousData(0.1), DiscreteData(3, 1.0)], ids=str)
def test_scale_zero_is_unguided_bit_for_bit(data_type, sampler):
    bfn = _linear_bfn(data_type).float()
    generator = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    plain = bfn.sample(16, 6, sampler=sampler, generator=generator())
    zero = bfn.sample(16, 6, sampler=sampler, generator=generator(), log_score=_score, log_score_scale=0)
    assert torch.equal(plain, zero)


def test_continuous_one_step_shift_is_exact():
    """One ancestral step with noise prediction 0: the final :math:`\\hat x = \\mu_1/\\gamma_1` moves
    by :math:`s\\, g/\\rho_1` with :math:`g = a/\\gamma_1`, the same draw for draw."""
    data_type = ContinuousData(0.1)
    bfn = BFN(data_type, ZeroNoise(), SHAPE)
    a, scale = 0.3, 2.0

    def score(output, t):
        return (a * output.mean).flatten(1).sum(-1)

    plain = bfn.sample(4000, 1, mode=True, generator=torch.Generator().manual_seed(5))
    guided = bfn.sample(4000, 1, mode=True, generator=torch.Generator().manual_seed(5), log_score=score, log_score_scale=scale)
    gamma_1 = 1 - 0.1**2  # gamma(1) = 1 - sigma_1^2 and rho(1) = 1/sigma_1^2 (paper Eqs. 72, 77)
    shift = scale * (a / gamma_1) * 0.1**2
    assert float(guided.mean() - plain.mean()) == pytest.approx(shift, rel=1e-4)
    torch.testing.assert_close(guided - plain, torch.full_like(plain, shift), atol=1e-5, rtol=0)


def test_discrete_guidance_favours_the_scored_class():
    data_type = DiscreteData(3, 1.0)
    bfn = _linear_bfn(data_type).float()
    plain = bfn.sample(2000, 10, generator=torch.Generator().manual_seed(7))
    guided = bfn.sample(2000, 10, generator=torch.Generator().manual_seed(7), log_score=_score, log_score_scale=3.0)
    p_plain, p_guided = (plain == 0).double().mean(), (guided == 0).double().mean()
    standard_error = (p_plain * (1 - p_plain) / plain.numel()).sqrt()
    assert p_guided > p_plain + 5 * standard_error


def test_bad_log_score_is_one_clear_error():
    bfn = _linear_bfn(ContinuousData(0.1)).float()
    with pytest.raises(ValueError, match="log_score must be a callable"):
        bfn.sample(2, 2, log_score=3.0)
    with pytest.raises(ValueError, match="log_score_scale must be a finite number"):
        bfn.sample(2, 2, log_score=_score, log_score_scale=float("nan"))
    with pytest.raises(ValueError, match="log_score must return shape"):
        bfn.sample(2, 2, log_score=lambda output, t: output.mean.sum())
