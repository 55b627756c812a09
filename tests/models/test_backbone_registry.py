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


@pytest.fixture
def private_registry(monkeypatch):
    """The backbone registry's dicts replaced by copies, so that registrations do not leak."""
    from pyro_bfn.models import registry

    for name in ("CONFIGS", "BACKBONES", "INPUT_LAYOUTS"):
        monkeypatch.setattr(registry, name, dict(getattr(registry, name)))
    return registry


class _Linear(torch.nn.Module):
    """A flat backbone of the interface ``(h, t) -> out``."""

    def __init__(self, in_features, out_features, scale=1.0):
        super().__init__()
        self.linear = torch.nn.Linear(in_features + 1, out_features)
        self.scale = scale

    def forward(self, h, t):
        return self.scale * self.linear(torch.cat([h, t[:, None]], dim=1))


def test_register_backbone(private_registry):
    from pyro_bfn.models import MLP, register_backbone

    register_backbone("linear_test", _Linear, layout="flat", scale=0.5)
    assert "linear_test" in private_registry.list_backbones()
    assert private_registry.backbone_layout("linear_test") == "flat"
    assert private_registry.backbone_class("linear_test") is _Linear
    adapter = private_registry.build_backbone_adapter("linear_test", (2, 3), 2, 2)
    assert adapter.backbone.scale == 0.5 and adapter(torch.zeros(4, 2, 3, 2), torch.rand(4)).shape == (4, 2, 3, 2)

    class WideMLP(MLP):
        pass

    register_backbone("wide_mlp_test", WideMLP, hidden=16, depth=1)  # a subclass reads its base's layout
    assert private_registry.backbone_layout("wide_mlp_test") == "flat"
    with pytest.raises(ValueError, match="already registered; pass overwrite=True"):
        register_backbone("linear_test", _Linear, layout="flat")
    with pytest.raises(ValueError, match="layout of backbone 'other_test' must be one of flat, image, sequence"):
        register_backbone("other_test", torch.nn.Identity)
    with pytest.raises(ValueError, match="must be a torch.nn.Module subclass"):
        register_backbone("other_test", object, layout="flat")
    with pytest.raises(ValueError, match="registered with layout 'flat', not 'image'"):
        register_backbone("other_test", _Linear, layout="image")
