"""The dataset registry (:mod:`pyro_bfn.zoo`): keyword-only, validated dataset specs, and BFNs
whose network layout comes from the backbone registry."""

import dataclasses

import pytest
import torch

from pyro_bfn.models import MLP, Transformer, UNet
from pyro_bfn.zoo import MODALITIES, DatasetSpec, build_bfn, get_dataset, list_datasets

TINY = {
    "mlp_small": dict(hidden=8, depth=1, time_embedding_dim=8),
    "unet_small": dict(base_width=8, num_groups=4, width_multipliers=(1,)),
    "transformer_small": dict(width=16, depth=1, heads=2),
}


def _spec(**changes):
    fields = dict(name="x", data_shape=(4,), modality="text", make_data_type=None, load=None, prepare=None)
    fields.update(changes)
    return DatasetSpec(**fields)


def test_spec_takes_keywords_only_and_is_read_only():
    with pytest.raises(TypeError):
        DatasetSpec("x", (4,), "text", None, None, None)
    spec = _spec(data_shape=[4])
    assert spec.data_shape == (4,) and spec.num_dims == 4 and spec.default_backbone == "mlp_small"
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.modality = "image"


def test_spec_validation_names_the_problem():
    with pytest.raises(ValueError, match="modality must be one of 'image', 'text', 'array', got 'audio'"):
        _spec(modality="audio")
    with pytest.raises(ValueError, match=r"image examples have shape \(C, H, W\), got data_shape \(28, 28\)"):
        _spec(modality="image", data_shape=(28, 28))
    with pytest.raises(ValueError, match=r"text examples have shape \(L,\)"):
        _spec(data_shape=(2, 3))
    with pytest.raises(ValueError, match="data_shape entry must be a positive integer, got 0"):
        _spec(data_shape=(0,))


def test_every_registered_dataset_is_consistent():
    for name in list_datasets():
        spec = get_dataset(name)
        assert spec.name == name and spec.modality in ("image", "text")
        assert len(spec.data_shape) == len(MODALITIES[spec.modality])


@pytest.mark.parametrize("dataset, backbone, layout, network", [
    ("toy_binary", "mlp_small", "flat", MLP),
    ("toy_text", "mlp_small", "flat", MLP),
    ("toy_binary", "unet_small", "image", UNet),
    ("toy_text", "transformer_small", "sequence", Transformer),
])
def test_the_backbone_decides_the_layout(dataset, backbone, layout, network):
    torch.manual_seed(0)
    options = dict(TINY[backbone], **({"max_length": 32} if backbone == "transformer_small" else {}))
    bfn = build_bfn(dataset, backbone, backbone_options=options)
    assert bfn.network.layout == layout and isinstance(bfn.network.backbone, network)
    spec = get_dataset(dataset)
    x = spec.prepare(spec.load("test")[:3], torch.Generator().manual_seed(0))
    assert torch.isfinite(bfn.loss(x).total).all()


def test_a_backbone_whose_layout_does_not_fit_is_refused():
    with pytest.raises(ValueError, match=r"backbone 'unet_small' reads the 'image' layout.*\(C, H, W\), got \(32,\)"):
        build_bfn("toy_text", "unet_small")
    with pytest.raises(ValueError, match=r"backbone 'transformer_small' reads the 'sequence' layout"):
        build_bfn("toy_binary", "transformer_small")


def test_register_dataset(monkeypatch):
    from pyro_bfn import zoo

    monkeypatch.setattr(zoo, "_REGISTRY", dict(zoo._REGISTRY))
    spec = _spec(name="squares_test", data_shape=(1, 2, 2), modality="image",
                 make_data_type=lambda beta_1=3.0: zoo.DiscreteData(2, beta_1),
                 load=lambda split: torch.zeros(8, 1, 2, 2, dtype=torch.long), prepare=lambda raw, generator=None: raw)
    assert zoo.register_dataset(spec) is spec and get_dataset("squares_test") is spec
    assert "squares_test" in list_datasets()
    assert build_bfn("squares_test", backbone_options={"hidden": 8, "depth": 1}).data_shape == (1, 2, 2)
    with pytest.raises(ValueError, match="already registered; pass overwrite=True"):
        zoo.register_dataset(spec)
    zoo.register_dataset(spec, overwrite=True)
    with pytest.raises(ValueError, match="reads as a file, an entry point or in_memory"):
        zoo.register_dataset(dataclasses.replace(spec, name="squares.npz"))
    with pytest.raises(ValueError, match="takes a DatasetSpec, got dict"):
        zoo.register_dataset({"name": "x"})
    with pytest.raises(ValueError, match="exactly one of num_labels, context_dim"):
        dataclasses.replace(spec, conditional=True)
