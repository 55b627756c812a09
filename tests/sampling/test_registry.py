"""The registry of samplers and the paper's ancestral sampler (pyro_bfn.sampling)."""

import pytest
import torch
from torch import nn

from pyro_bfn.bfn import BFN
from pyro_bfn.data_types import ContinuousData, DiscreteData, DiscretisedData
from pyro_bfn.sampling import SampleResult, TimeGrid, ancestral, get_sampler, list_samplers, register_sampler
from pyro_bfn.sampling import registry

SHAPE = (1, 2, 3)


class CountingLinear(nn.Module):
    """A fixed per-variable linear network that counts its calls and records their times."""

    def __init__(self, f_in, f_out):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(f_in + 1, f_out, generator=generator) * 0.7)
        self.calls, self.times = 0, []

    def forward(self, features, t):
        self.calls += 1
        self.times.append(t.clone())
        t = t.reshape(t.shape + (1,) * (features.dim() - 1)).expand(features.shape[:-1] + (1,))
        return torch.cat([features, t.to(features.dtype)], -1) @ self.weight.to(features.dtype)


def _bfn(data_type):
    return BFN(data_type, CountingLinear(data_type.num_input_features, data_type.num_output_features), SHAPE)


DATA_TYPES = [ContinuousData(0.02), DiscretisedData(16), DiscreteData(2, 3.0), DiscreteData(5, 0.7)]
IDS = ["continuous", "discretised", "binary", "categorical"]


def test_the_paper_sampler_is_registered_as_ancestral():
    assert "ancestral" in list_samplers()
    assert list_samplers() == sorted(list_samplers())
    assert get_sampler("ancestral") is ancestral


def test_an_unknown_sampler_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown sampler 'ddim'.*known samplers: .*ancestral"):
        get_sampler("ddim")
    with pytest.raises(ValueError, match="unknown sampler"):
        _bfn(DiscreteData(2, 3.0)).sample(2, 3, sampler="nope")


def test_register_sampler_rejects_a_taken_or_bad_name(monkeypatch):
    monkeypatch.setattr(registry, "_SAMPLERS", dict(registry._SAMPLERS))
    with pytest.raises(ValueError, match="already registered"):
        register_sampler("ancestral")(lambda *args, **kwargs: None)
    with pytest.raises(ValueError, match="non-empty string"):
        register_sampler("")

    @register_sampler("constant")
    def constant(bfn, num_samples, grid, *, context=None, mode=False, progress=None, device=None):
        return SampleResult(torch.zeros((num_samples,) + bfn.data_shape), 0)

    assert get_sampler("constant") is constant and "constant" in list_samplers()
    bfn = _bfn(ContinuousData(0.02))
    assert torch.equal(bfn.sample(3, 4, sampler="constant"), torch.zeros((3,) + SHAPE))
    assert bfn.network.calls == 0


@pytest.mark.parametrize("data_type", DATA_TYPES, ids=IDS)
@pytest.mark.parametrize("n", [1, 6])
def test_ancestral_counts_n_plus_one_network_calls(data_type, n):
    bfn = _bfn(data_type)
    steps = []
    with torch.no_grad():
        result = ancestral(bfn, 4, TimeGrid(n), progress=lambda i, total: steps.append((i, total)))
    assert isinstance(result, SampleResult)
    assert result.network_calls == n + 1 == bfn.network.calls
    assert steps == [(i, n) for i in range(1, n + 1)]
    times = torch.stack(bfn.network.times)  # (n + 1, B): t_0 .. t_{n-1}, then 1
    expected = torch.cat([TimeGrid(n).times(dtype=torch.float32)[:-1], torch.ones(1)])
    assert torch.equal(times, expected[:, None].expand(n + 1, 4))
    assert result.samples.shape == (4,) + SHAPE


@pytest.mark.parametrize("data_type", DATA_TYPES, ids=IDS)
@pytest.mark.parametrize("mode", [False, True])
def test_bfn_sample_is_the_ancestral_sampler_bit_for_bit(data_type, mode):
    bfn = _bfn(data_type)
    torch.manual_seed(11)
    through_bfn = bfn.sample(5, 8, mode=mode)
    torch.manual_seed(11)
    with torch.inference_mode():
        direct = get_sampler("ancestral")(bfn, 5, TimeGrid(8), mode=mode).samples
    assert torch.equal(through_bfn, direct)
    torch.manual_seed(11)
    assert torch.equal(bfn.sample(5, 8, mode=mode, sampler="ancestral"), through_bfn)


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_ancestral_names_a_bad_number_of_samples(bad):
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        ancestral(_bfn(DiscreteData(2, 3.0)), bad, TimeGrid(3))
