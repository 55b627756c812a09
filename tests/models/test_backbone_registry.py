"""The backbone registry (:mod:`pyro_bfn.models.registry`): the layout each backbone reads, and
building a backbone wrapped in the adapter of its layout."""

import pytest
import torch

from pyro_bfn.models.adapters import LAYOUTS, BackboneAdapter
from pyro_bfn.models.registry import CONFIGS, INPUT_LAYOUTS, backbone_layout, build_backbone, build_backbone_adapter, list_backbones


@pytest.mark.parametrize("name", list_backbones())
def test_every_backbone_declares_a_layout(name):
    assert backbone_layout(name) in LAYOUTS
    assert backbone_layout(name) == INPUT_LAYOUTS[CONFIGS[name][0]]


def test_layouts_by_family():
    assert backbone_layout("mlp_small") == "flat"
    assert {backbone_layout(n) for n in list_backbones() if n.startswith("unet")} == {"image"}
    assert {backbone_layout(n) for n in list_backbones() if n.startswith("transformer")} == {"sequence"}
    with pytest.raises(KeyError, match="unknown backbone 'resnet'"):
        backbone_layout("resnet")


def test_adapter_is_the_backbone_built_for_the_data_shape():
    torch.manual_seed(0)
    adapter = build_backbone_adapter("unet_small", (1, 8, 8), 1, 2, base_width=8, num_groups=4, width_multipliers=(1,))
    torch.manual_seed(0)
    expected = build_backbone("unet_small", 1, 2, base_width=8, num_groups=4, width_multipliers=(1,))
    assert isinstance(adapter, BackboneAdapter) and adapter.layout == "image"
    for got, want in zip(adapter.backbone.parameters(), expected.parameters()):  # same draws, same order
        assert torch.equal(got, want)
    assert adapter(torch.randn(3, 1, 8, 8, 1), torch.rand(3)).shape == (3, 1, 8, 8, 2)
    flat = build_backbone_adapter("mlp_small", (2, 3), 4, 5, hidden=8, depth=1)
    assert (flat.layout, flat.backbone.in_features, flat.backbone.out_features) == ("flat", 2 * 3 * 4, 2 * 3 * 5)
    assert flat(torch.randn(2, 2, 3, 4), torch.rand(2)).shape == (2, 2, 3, 5)


def test_a_shape_that_does_not_fit_the_layout_is_refused_before_building():
    with torch.device("meta"):
        with pytest.raises(ValueError, match=r"backbone 'transformer_text8_paper' reads the 'sequence' layout: .*got \(1, 28, 28\)"):
            build_backbone_adapter("transformer_text8_paper", (1, 28, 28), 1, 1)
