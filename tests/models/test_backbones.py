"""Tests of the neural backbones in ``pyro_bfn.models`` (tiny widths, fast on CPU)."""

import pytest
import torch

from pyro_bfn.models import MLP, Transformer, UNet, backbone_config, build_backbone, list_backbones
from pyro_bfn.models.layers import num_groups_for


def tiny_unet(**kw):
    args = dict(
        base_width=8,
        width_multipliers=(1, 2, 2),
        num_res_blocks=1,
        num_heads=2,
        num_groups=4,
        input_projection=True,
        input_skip=True,
        time_channel=True,
        time_embedding_scale=4000.0,
    )
    args.update(kw)
    return UNet(args.pop("in_channels", 1), args.pop("out_channels", 1), **args)


def tiny_transformer(**kw):
    args = dict(width=16, depth=2, heads=2, max_length=32)
    args.update(kw)
    return Transformer(args.pop("in_features", 5), args.pop("out_features", 5), **args)


def tiny_mlp(**kw):
    args = dict(hidden=16, depth=2, time_embedding_dim=8)
    args.update(kw)
    return MLP(args.pop("in_features", 6), args.pop("out_features", 4), **args)


def _inputs(net, batch=3):
    """An example input for a tiny backbone."""
    if isinstance(net, UNet):
        return torch.randn(batch, net.in_channels, 8, 8)
    if isinstance(net, Transformer):
        return torch.randn(batch, 7, net.in_features)
    return torch.randn(batch, net.in_features)


TINY = {
    "mlp": tiny_mlp,
    "unet": tiny_unet,
    "unet_attention_levels": lambda: tiny_unet(attention_levels=(0, 2), num_res_blocks=2, scale_shift_norm=True),
    "unet_plain": lambda: tiny_unet(input_projection=False, input_skip=False, time_channel=False),
    "unet_vdm": lambda: tiny_unet(
        in_channels=3, out_channels=6, width_multipliers=(1,), num_res_blocks=3, input_projection=False,
        time_channel=False, fourier_exponents=(5.0, 6.0), time_embedding_scale=1000.0, time_embedding_offset=1e-3,
    ),
    "transformer": tiny_transformer,
    "transformer_noskip": lambda: tiny_transformer(input_skip=False),
}


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("batch", [1, 4])
def test_mlp_shapes(batch):
    net = tiny_mlp(in_features=6, out_features=4)
    assert net(torch.randn(batch, 6), torch.rand(batch)).shape == (batch, 4)


@pytest.mark.parametrize(
    "in_ch,out_ch,size,kw",
    [
        (1, 1, (28, 28), {}),
        (3, 6, (32, 32), {}),
        (2, 3, (8, 12), {}),
        (1, 2, (16, 16), dict(width_multipliers=(1, 2, 2, 2))),
        (3, 6, (6, 10), dict(width_multipliers=(1,), input_projection=False, fourier_exponents=(5.0, 6.0))),
        (1, 1, (28, 28), dict(input_projection=False, input_skip=False, time_channel=False)),
    ],
)
def test_unet_shapes(in_ch, out_ch, size, kw):
    net = tiny_unet(in_channels=in_ch, out_channels=out_ch, **kw)
    y = net(torch.randn(2, in_ch, *size), torch.rand(2))
    assert y.shape == (2, out_ch, *size)


@pytest.mark.parametrize("length", [1, 5, 32])
def test_transformer_shapes(length):
    net = tiny_transformer(in_features=5, out_features=3)
    assert net(torch.randn(2, length, 5), torch.rand(2)).shape == (2, length, 3)


def test_scalar_time_is_broadcast():
    net = tiny_mlp()
    h = torch.randn(3, 6)
    torch.testing.assert_close(net(h, torch.tensor(0.3)), net(h, torch.full((3,), 0.3)))


# ---------------------------------------------------------------- time, gradients


@pytest.mark.parametrize("name", list(TINY))
def test_time_affects_output(name):
    torch.manual_seed(0)
    net = TINY[name]().eval()
    h = _inputs(net)
    y1 = net(h, torch.full((h.shape[0],), 0.2))
    y2 = net(h, torch.full((h.shape[0],), 0.7))
    assert (y1 - y2).abs().max() > 1e-4 * y1.abs().max()


@pytest.mark.parametrize("name", list(TINY))
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    net = TINY[name]()
    h = _inputs(net)
    net(h, torch.rand(h.shape[0])).square().sum().backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert p.grad.abs().sum() > 0, f"{pname} got a zero gradient"


def test_zero_init_output_is_optional():
    torch.manual_seed(0)
    h, t = torch.randn(2, 1, 8, 8), torch.rand(2)
    assert tiny_unet()(h, t).abs().max() > 0
    assert tiny_unet(zero_init_output=True)(h, t).abs().max() == 0
    assert tiny_unet(zero_init_output=True, input_skip=False)(h, t).abs().max() == 0


# ---------------------------------------------------------------- transformer structure


def test_transformer_is_non_causal():
    torch.manual_seed(0)
    net = tiny_transformer().eval()
    h = torch.randn(1, 10, 5)
    h2 = h.clone()
    h2[:, -1] += 1.0
    t = torch.rand(1)
    y, y2 = net(h, t), net(h2, t)
    assert (y[:, 0] - y2[:, 0]).abs().max() > 1e-6


def test_transformer_permutation_equivariant_without_positions():
    torch.manual_seed(0)
    net = tiny_transformer().eval()
    h, t = torch.randn(2, 9, 5), torch.rand(2)
    perm = torch.randperm(9)
    # with its fixed positions the network is not permutation-equivariant ...
    assert (net(h[:, perm], t) - net(h, t)[:, perm]).abs().max() > 1e-5
    # ... and it is once the position table is zeroed
    net.positions.zero_()
    torch.testing.assert_close(net(h[:, perm], t), net(h, t)[:, perm], atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------- named configurations


PAPER_PARAMS = {
    ("unet_mnist_paper", 1, 1): 24.8e6,
    ("unet_cifar_paper", 3, 6): 30.7e6,
    ("transformer_text8_paper", 27, 27): 170e6,
    ("unet_mnist_small_variant", 1, 1): 1.1e6,
}


@pytest.mark.parametrize("key", list(PAPER_PARAMS))
def test_paper_parameter_counts(key):
    name, cin, cout = key
    with torch.device("meta"):
        net = build_backbone(name, cin, cout)
    n = sum(p.numel() for p in net.parameters())
    assert abs(n / PAPER_PARAMS[key] - 1) < 0.05, f"{name}: {n} parameters"


def test_paper_mnist_config_matches_description():
    cfg = backbone_config("unet_mnist_paper")
    assert cfg["class"] == "UNet"
    assert cfg["base_width"] == 128 and tuple(cfg["width_multipliers"]) == (1, 2, 2)
    assert cfg["num_res_blocks"] == 2 and cfg["num_heads"] == 4 and cfg["dropout"] == 0.5
    assert cfg["time_embedding_scale"] == 4000.0
    assert cfg["input_projection"] and cfg["input_skip"] and cfg["time_channel"]


@pytest.mark.parametrize("name", list_backbones())
def test_registry_builds_every_config(name):
    with torch.device("meta"):
        net = build_backbone(name, 3, 2)
    assert isinstance(net, torch.nn.Module)


def test_registry_overrides_and_unknown_names():
    net = build_backbone("unet_small", 1, 1, base_width=8, num_groups=4)
    assert net(torch.randn(2, 1, 28, 28), torch.rand(2)).shape == (2, 1, 28, 28)
    net = build_backbone("transformer_small", 27, 27, width=16, depth=1, heads=2)
    assert net(torch.randn(2, 256, 27), torch.rand(2)).shape == (2, 256, 27)
    assert build_backbone("mlp_small", 4, 3)(torch.randn(2, 4), torch.rand(2)).shape == (2, 3)
    with pytest.raises(KeyError, match="unknown backbone"):
        build_backbone("no_such_net", 1, 1)


def test_group_norm_fallback():
    assert num_groups_for(128, 32) == 32
    assert num_groups_for(48, 32) == 24
    assert num_groups_for(8, 32) == 8
    assert num_groups_for(6, 4) == 3


# ---------------------------------------------------------------- precision, devices


@pytest.mark.parametrize("name", ["mlp", "unet", "unet_vdm", "transformer"])
def test_bf16_autocast_close_to_float32(name):
    torch.manual_seed(0)
    net = TINY[name]().eval()
    h = _inputs(net)
    t = torch.rand(h.shape[0])
    y32 = net(h, t)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y16 = net(h, t)
    y16 = y16.float()
    assert torch.isfinite(y16).all()
    # bf16 keeps 8 significant bits: each layer adds ~0.2-0.4% relative error, and a
    # ~15-layer U-Net typically ends up 1-2% away from float32 (measured); allow 2.5% / 5%.
    assert (y16 - y32).norm() < 2.5e-2 * y32.norm()
    assert (y16 - y32).abs().max() < 5e-2 * y32.abs().max()


@pytest.mark.parametrize("name", ["mlp", "unet_vdm", "transformer"])
def test_float64_conversion_moves_buffers(name):
    net = TINY[name]().double()
    h = _inputs(net).double()
    assert net(h, torch.rand(h.shape[0], dtype=torch.float64)).dtype == torch.float64


# ---------------------------------------------------------------- invalid inputs


def test_invalid_unet_inputs():
    net = tiny_unet(width_multipliers=(1, 2, 2, 2))  # needs H, W divisible by 8
    with pytest.raises(ValueError, match="divisible by 2\\*\\*\\(levels-1\\) = 8"):
        net(torch.randn(2, 1, 28, 28), torch.rand(2))
    with pytest.raises(ValueError, match="expected 1 input channels, got 3"):
        net(torch.randn(2, 3, 32, 32), torch.rand(2))
    with pytest.raises(ValueError, match="\\(B, C, H, W\\)"):
        net(torch.randn(2, 32, 32), torch.rand(2))
    with pytest.raises(ValueError, match="t must have shape"):
        net(torch.randn(2, 1, 32, 32), torch.rand(3))
    with pytest.raises(ValueError, match="divisible by num_heads"):
        tiny_unet(base_width=6, num_heads=5)
    with pytest.raises(ValueError, match="attention_levels"):
        tiny_unet(attention_levels=(3,))


def test_invalid_transformer_and_mlp_inputs():
    net = tiny_transformer(in_features=5, max_length=8)
    with pytest.raises(ValueError, match="exceeds max_length 8"):
        net(torch.randn(1, 9, 5), torch.rand(1))
    with pytest.raises(ValueError, match=r"\(B, L, 5\)"):
        net(torch.randn(1, 4, 6), torch.rand(1))
    with pytest.raises(ValueError, match="divisible by heads"):
        tiny_transformer(width=10, heads=4)
    with pytest.raises(ValueError, match=r"\(B, 6\)"):
        tiny_mlp(in_features=6)(torch.randn(2, 5), torch.rand(2))
