"""BFN.sample's keywords: final, generator, callback, classifier-free guidance and bad input."""

import pytest
import torch
from torch import nn

from pyro_bfn.bfn import BFN
from pyro_bfn.data_types import ContinuousData, DiscreteData, DiscretisedData
from pyro_bfn.sampling import TimeGrid, get_sampler
from pyro_bfn.sampling.guidance import ClassifierFreeGuidance

SHAPE = (2, 3)
DATA_TYPES = [ContinuousData(0.02), DiscretisedData(16), DiscreteData(2, 3.0), DiscreteData(5, 0.7)]
IDS = ["continuous", "discretised", "binary", "categorical"]
SAMPLERS = ["ancestral", "ode1", "ode2", "sde2"]


class LabelledLinear(nn.Module):
    """A per-variable linear network with a label embedding; label -1 (or no context) is null."""

    def __init__(self, f_in, f_out, num_classes=3, conditional=True):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(f_in + 1, f_out, generator=generator) * 0.7)
        self.embedding = nn.Parameter(torch.randn(num_classes + 1, f_out, generator=generator))
        self.conditional = conditional

    def forward(self, features, t, context=None):
        if context is not None and not self.conditional:
            raise ValueError("LabelledLinear: got a context, but the backbone was built without num_classes")
        t = t.reshape(t.shape + (1,) * (features.dim() - 1)).expand(features.shape[:-1] + (1,))
        out = torch.cat([features, t.to(features.dtype)], -1) @ self.weight
        label = torch.full(features.shape[:1], -1) if context is None else context
        bias = self.embedding[label + 1]
        return out + bias.reshape(bias.shape[:1] + (1,) * (out.dim() - 2) + bias.shape[1:])


def _bfn(data_type, conditional=True):
    return BFN(data_type, LabelledLinear(data_type.num_input_features, data_type.num_output_features,
                                         conditional=conditional), SHAPE)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_a_generator_makes_samples_reproducible_and_leaves_the_global_one_alone(sampler):
    bfn = _bfn(DiscretisedData(16))
    torch.manual_seed(5)
    before = torch.get_rng_state()
    first = bfn.sample(4, 5, sampler=sampler, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), before)
    generator = torch.Generator().manual_seed(1)
    assert torch.equal(bfn.sample(4, 5, sampler=sampler, generator=generator), first)
    assert not torch.equal(generator.get_state(), torch.Generator().manual_seed(1).get_state())
    torch.manual_seed(1)
    assert torch.equal(bfn.sample(4, 5, sampler=sampler), first)  # the same numbers as the global one


@pytest.mark.parametrize("data_type", DATA_TYPES, ids=IDS)
def test_final_mode_is_mode_true(data_type):
    bfn = _bfn(data_type)
    torch.manual_seed(2)
    a = bfn.sample(3, 4, final="mode")
    torch.manual_seed(2)
    assert torch.equal(a, bfn.sample(3, 4, mode=True))
    with pytest.raises(ValueError, match="final must be 'sample' or 'mode'"):
        bfn.sample(3, 4, final="mean")
    with pytest.raises(ValueError, match="contradicts"):
        bfn.sample(3, 4, mode=True, final="sample")


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("data_type", DATA_TYPES, ids=IDS)
def test_guidance_scale_one_is_the_conditional_model_and_zero_the_unconditional(sampler, data_type):
    bfn = _bfn(data_type)
    for scale, context in ((1.0, torch.tensor(2)), (0.0, None)):
        torch.manual_seed(3)
        guided = bfn.sample(4, 6, sampler=sampler, context=2, guidance_scale=scale, final="mode")
        torch.manual_seed(3)
        plain = bfn.sample(4, 6, sampler=sampler, context=context, final="mode")
        if isinstance(data_type, DiscreteData):
            assert (guided == plain).float().mean() > 0.9  # exact up to rounding of the combination
        else:
            torch.testing.assert_close(guided, plain, atol=2e-3, rtol=0)


@pytest.mark.parametrize("data_type", DATA_TYPES, ids=IDS)
def test_guidance_moves_the_output_away_from_the_unconditional_one(data_type):
    bfn = _bfn(data_type)
    prior = data_type.prior((4,) + SHAPE)
    t = torch.full((4,), 0.5)
    context = torch.full((4,), 1)
    null, conditional = bfn.output_distribution(prior, t, None), bfn.output_distribution(prior, t, context)
    guided = ClassifierFreeGuidance(bfn, 3.0).output_distribution(prior, t, context)
    if isinstance(data_type, DiscreteData):
        expected = null.logits + 3.0 * (conditional.logits - null.logits)
        torch.testing.assert_close(guided.logits, torch.log_softmax(expected, -1))
    elif isinstance(data_type, DiscretisedData):  # linear in the mean and log scale of the Normal
        torch.testing.assert_close(guided.loc - null.loc, 3.0 * (conditional.loc - null.loc))
        torch.testing.assert_close(guided.scale.log() - null.scale.log(), 3.0 * (conditional.scale.log() - null.scale.log()))
    else:
        torch.testing.assert_close(guided.mean - null.mean, 3.0 * (conditional.mean - null.mean))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_guidance_doubles_the_network_calls(sampler):
    bfn = _bfn(DiscreteData(5, 0.7))
    with torch.no_grad():
        result = get_sampler(sampler)(ClassifierFreeGuidance(bfn, 2.0), 3, TimeGrid(4), context=torch.zeros(3, dtype=torch.long))
    assert result.network_calls == 2 * (4 + 1)


def test_guidance_without_a_context_is_named():
    with pytest.raises(ValueError, match="guidance_scale needs a context"):
        _bfn(DiscreteData(2, 3.0)).sample(2, 3, guidance_scale=2.0)
    with pytest.raises(ValueError, match="guidance_scale must be a finite number"):
        _bfn(DiscreteData(2, 3.0)).sample(2, 3, context=1, guidance_scale=float("nan"))


def test_guidance_on_an_unconditional_model_is_named():
    with pytest.raises(ValueError, match="built without num_classes"):
        _bfn(DiscreteData(2, 3.0), conditional=False).sample(2, 3, context=1, guidance_scale=2.0)


def test_a_generator_on_another_device_type_is_named():
    with pytest.raises(ValueError, match="generator must be a torch.Generator"):
        _bfn(DiscreteData(2, 3.0)).sample(2, 3, generator=1)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_the_callback_sees_every_update(sampler):
    bfn = _bfn(DiscreteData(5, 0.7))
    infos = []
    samples = bfn.sample(3, 4, sampler=sampler, callback=infos.append)
    assert [info["step"] for info in infos] == [1, 2, 3, 4]
    assert [info["t"] for info in infos] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(info["n_steps"] == 4 for info in infos)
    assert all(info["input_distribution"].probs.shape == (3,) + SHAPE + (5,) for info in infos)
    assert samples.shape == (3,) + SHAPE
