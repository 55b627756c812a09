"""Inpainting by replacement and by sequential Monte Carlo (pyro_bfn.sampling.conditioning)."""

import pytest
import torch
from torch import nn

from pyro_bfn.bfn import BFN
from pyro_bfn.data_types import ContinuousData, DiscreteData, DiscretisedData
from pyro_bfn.sampling.conditioning import smc_inpaint

SHAPE = (2, 3)
DATA_TYPES = [ContinuousData(0.02), DiscretisedData(16), DiscreteData(2, 3.0), DiscreteData(5, 0.7)]
IDS = ["continuous", "discretised", "binary", "categorical"]


class Mixing(nn.Module):
    """Every variable's output is a linear function of its own features and of the mean of all."""

    def __init__(self, f_in, f_out, weight=0.7):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.own = nn.Parameter(torch.randn(f_in + 1, f_out, generator=generator) * weight)
        self.shared = nn.Parameter(torch.randn(f_in, f_out, generator=generator) * weight)

    def forward(self, features, t):
        batch = features.shape[0]
        t = t.reshape(t.shape + (1,) * (features.dim() - 1)).expand(features.shape[:-1] + (1,))
        mean = features.reshape(batch, -1, features.shape[-1]).mean(1)
        mean = mean.reshape((batch,) + (1,) * (features.dim() - 2) + mean.shape[-1:])
        return torch.cat([features, t], -1) @ self.own + mean @ self.shared


def _bfn(data_type):
    return BFN(data_type, Mixing(data_type.num_input_features, data_type.num_output_features), SHAPE)


def _known(bfn):
    torch.manual_seed(0)
    known = bfn.sample(4, 3)
    mask = torch.zeros((4,) + SHAPE, dtype=torch.bool)
    mask[:, 0] = True
    return known, mask


@pytest.mark.parametrize("sampler", ["ancestral", "ode1", "ode2", "sde2"])
@pytest.mark.parametrize("data_type", DATA_TYPES, ids=IDS)
def test_replacement_returns_the_known_values_and_fills_the_rest(sampler, data_type):
    bfn = _bfn(data_type)
    known, mask = _known(bfn)
    samples = bfn.sample(4, 5, sampler=sampler, known=known, mask=mask)
    assert samples.shape == known.shape
    assert torch.equal(samples[mask], known[mask].to(samples.dtype))
    one = bfn.sample(4, 5, sampler=sampler, known=known[0], mask=mask[0])  # one pattern for all
    assert torch.equal(one[:, 0], known[0, 0].to(one.dtype).expand_as(one[:, 0]))


class Copy(nn.Module):
    """Binary data whose variables are all equal: every logit is 20 (2 theta_1 - 1) of the mean."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, features, t):
        mean = features.reshape(features.shape[0], -1).mean(-1)
        return (20.0 * mean).reshape((-1,) + (1,) * (features.dim() - 1)).expand_as(features)


@pytest.mark.parametrize("num_particles", [None, 8])
@pytest.mark.parametrize("value", [0, 1])
def test_the_completion_follows_the_known_part(value, num_particles):
    """On data whose variables are all equal, knowing half of them decides the other half."""
    bfn = BFN(DiscreteData(2, 3.0), Copy(), (6,))
    known = torch.full((6,), value)
    mask = torch.tensor([True, True, True, False, False, False])
    torch.manual_seed(1)
    samples = bfn.sample(64, 20, known=known, mask=mask, num_particles=num_particles)
    assert (samples[:, 3:] == value).float().mean() > 0.8


@pytest.mark.parametrize("data_type", DATA_TYPES, ids=IDS)
def test_smc_reports_the_effective_sample_size_and_keeps_the_known_values(data_type):
    bfn = _bfn(data_type)
    known, mask = _known(bfn)
    with torch.no_grad():
        result = smc_inpaint(bfn, known, mask, 6, num_particles=8)
    assert result.network_calls == 7
    assert result.effective_sample_size.shape == (6, 4)
    assert (result.effective_sample_size >= 1 - 1e-6).all() and (result.effective_sample_size <= 8 + 1e-6).all()
    assert torch.equal(result.samples[mask], known[mask].to(result.samples.dtype))


def test_smc_weights_particles_apart():
    bfn = BFN(DiscreteData(2, 3.0), Copy(), (6,))
    known = torch.ones(4, 6, dtype=torch.long)
    mask = torch.zeros(4, 6, dtype=torch.bool)
    mask[:, :3] = True
    torch.manual_seed(0)
    result = smc_inpaint(bfn, known, mask, 10, num_particles=16)
    assert (result.effective_sample_size < 16 - 1e-3).any()


def test_a_mask_of_the_wrong_shape_is_named():
    bfn = _bfn(DiscreteData(2, 3.0))
    known, mask = _known(bfn)
    with pytest.raises(ValueError, match=r"mask must have shape \(4, 2, 3\) or \(2, 3\)"):
        bfn.sample(4, 3, known=known, mask=mask[:, :1])
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        bfn.sample(4, 3, known=known, mask=mask.long())
    with pytest.raises(ValueError, match="needs both known and mask"):
        bfn.sample(4, 3, known=known)
    with pytest.raises(ValueError, match="runs ancestral steps"):
        bfn.sample(4, 3, known=known, mask=mask, num_particles=4, sampler="ode2")
    with pytest.raises(ValueError, match="give known and mask too"):
        bfn.sample(4, 3, num_particles=4)
    with pytest.raises(ValueError, match="discrete data must hold class indices"):
        bfn.sample(4, 3, known=known + 5, mask=mask)
