"""The official-checkpoint converter (:mod:`pyro_bfn.convert`): a state dict of random tensors
with exactly the official MNIST layout converts (every key consumed, every parameter filled,
shapes equal) and round-trips through a pretrained directory; missing, extra and misshapen keys
and foreign files are one clear error each; ``pyro-bfn convert-official`` end to end; and the
mapping preserves the function of an official-convention network built here.

The official network is not vendored. :class:`_OfficialUNet` below re-implements the
conventions of nnaisense/bayesian-flow-networks (``networks/unet_improved.py``,
``networks/adapters.py``, ``model.py``; read, written anew): module names (so its state dict
has the official keys), channels-last input and a per-pixel time, the ``2 theta_0 - 1`` input of
binary data, the per-head ``[q, k, v]`` layout of attention, the skip concatenations. At the
paper's size its layout equals the published one (``test_reimplementation_has_the_official_layout``).
"""

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from pyro_bfn import from_pretrained, save_pretrained
from pyro_bfn.convert import (
    RULES,
    UNUSED_OFFICIAL_KEYS,
    OfficialCheckpointError,
    convert_official,
    official_key_table,
)
from pyro_bfn.distributions import CategoricalInput

from test_cli import assert_one_line_error, run_cli  # tests/ is on sys.path (rootdir-relative, no __init__)

LAYOUT = Path(__file__).resolve().parents[2] / "shared" / "reference_checkpoints" / "official_mnist_layout.json"
PAPER_PARAMETERS = 24_808_961
#: a small official network (attention at the middle level too) and the same in our option names
SMALL_OFFICIAL = dict(width=32, blocks=1, attention=(2,))
SMALL = {"base_width": 32, "num_res_blocks": 1, "attention_levels": [1]}


# ---------------------------------------------------------------------------- the official conventions
def _sinusoid(x, dim):
    """``[cos, sin]`` of ``x`` times ``10000^(-i / half)``, in float32 as the official code computes it."""
    freqs = torch.exp(-math.log(10000.0) * torch.arange(dim // 2, dtype=torch.float32) / (dim // 2))
    args = x.float()[:, None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(x.dtype)


class _Sequence(nn.Sequential):
    """Passes the time embedding to its residual blocks (the official TimestepEmbedSequential)."""

    def forward(self, x, emb):
        for layer in self:
            x = layer(x, emb) if isinstance(layer, _ResBlock) else layer(x)
        return x


class _ResBlock(nn.Module):
    def __init__(self, cin, cout, emb):
        super().__init__()
        self.in_layers = nn.Sequential(nn.GroupNorm(32, cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb, cout))
        self.out_layers = nn.Sequential(nn.GroupNorm(32, cout), nn.SiLU(), nn.Dropout(0.5), nn.Conv2d(cout, cout, 3, padding=1))
        self.skip_connection = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x, emb):
        return self.skip_connection(x) + self.out_layers(self.in_layers(x) + self.emb_layers(emb)[:, :, None, None])


class _Attention(nn.Module):
    """Pixels as a sequence ``(B, C, HW)``; output channels of ``qkv`` grouped by head, then q, k, v."""

    def __init__(self, channels, heads):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(32, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x):
        b, c, height, width = x.shape
        flat = x.reshape(b, c, -1)
        q, k, v = self.qkv(self.norm(flat)).reshape(b * self.heads, 3 * c // self.heads, -1).chunk(3, dim=1)
        weights = torch.softmax(torch.einsum("bct,bcs->bts", q, k) / math.sqrt(c // self.heads), dim=-1)
        out = torch.einsum("bts,bcs->bct", weights, v).reshape(b, c, -1)
        return (flat + self.proj_out(out)).reshape(b, c, height, width)


class _Down(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.op(x)


class _Up(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))


class _InputAdapter(nn.Module):
    """Per pixel ``[value, 2t - 1]``, channels-last; the position table is kept but not read."""

    def __init__(self, pixels):
        super().__init__()
        self.register_buffer("pos_feats", torch.zeros(pixels, 258))

    def forward(self, data, t):
        b = data.shape[0]
        return torch.cat([data.reshape(b, -1, 1), 2 * t.reshape(b, -1, 1) - 1], dim=-1)


class _OutputAdapter(nn.Module):
    def __init__(self, features):
        super().__init__()
        self.output_projection = nn.Linear(features, 1)


class _OfficialUNet(nn.Module):
    """The official MNIST network's conventions (defaults: the paper's size)."""

    def __init__(self, width=128, mults=(1, 2, 2), blocks=2, attention=(8, 16), heads=4, size=28):
        super().__init__()
        emb = 4 * width
        self.size, self.width = size, width
        self.input_adapter = _InputAdapter(size * size)
        self.output_adapter = _OutputAdapter(2 * width)
        self.input_projection = nn.Linear(2, width)
        self.time_embed = nn.Sequential(nn.Linear(width, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.input_blocks = nn.ModuleList([_Sequence(nn.Conv2d(width, width, 3, padding=1))])
        channels, ch, rate = [width], width, 1
        for level, mult in enumerate(mults):
            for _ in range(blocks):
                layers = [_ResBlock(ch, mult * width, emb)]
                ch = mult * width
                layers += [_Attention(ch, heads)] if rate in attention else []
                self.input_blocks.append(_Sequence(*layers))
                channels.append(ch)
            if level < len(mults) - 1:
                self.input_blocks.append(_Sequence(_Down(ch)))
                channels.append(ch)
                rate *= 2
        self.middle_block = _Sequence(_ResBlock(ch, ch, emb), _Attention(ch, heads), _ResBlock(ch, ch, emb))
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(mults))):
            for i in range(blocks + 1):
                layers = [_ResBlock(ch + channels.pop(), mult * width, emb)]
                ch = mult * width
                layers += [_Attention(ch, heads)] if rate in attention else []
                if level and i == blocks:
                    layers.append(_Up(ch))
                    rate //= 2
                self.output_blocks.append(_Sequence(*layers))
        self.out = nn.Sequential(nn.GroupNorm(32, ch), nn.SiLU(), nn.Conv2d(width, width, 3, padding=1))

    def forward(self, data, t):
        """:param data: ``2 theta_0 - 1``, channels-last ``(B, H, W, 1)``; :param t: per pixel,
        ``(B, H, W, 1)``; :returns: class-1 logits ``(B, H*W, 1, 1)``."""
        b, pixels = data.shape[0], self.size * self.size
        x = self.input_projection(self.input_adapter(data, t).reshape(b, self.size, self.size, 2))
        emb = self.time_embed(_sinusoid(4000 * t.reshape(b, -1)[:, 0].float(), self.width).to(x.dtype))
        h, skips = x.permute(0, 3, 1, 2), []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        out = self.out(h).permute(0, 2, 3, 1).reshape(b, pixels, -1)
        out = torch.cat([x.reshape(b, pixels, -1), out], dim=-1)
        return self.output_adapter.output_projection(out).reshape(b, pixels, 1, 1)


def _official_state(network):
    return {f"net.{key}": value for key, value in network.state_dict().items()}


def _small_official(seed=0):
    torch.manual_seed(seed)
    network = _OfficialUNet(**SMALL_OFFICIAL).eval()
    for module in network.modules():  # GroupNorms away from (1, 0), so that a swapped one shows
        if isinstance(module, nn.GroupNorm):
            nn.init.normal_(module.weight, 1.0, 0.2)
            nn.init.normal_(module.bias, 0.0, 0.2)
    return network


def _layout():
    """key -> shape of the official MNIST state dict: the published layout when this checkout has
    it beside it, else the re-implementation's (equal where both exist)."""
    if LAYOUT.is_file():
        return {key: tuple(shape) for key, shape in json.loads(LAYOUT.read_text())["mnist_discrete"]["state_dict"].items()}
    return {key: tuple(value.shape) for key, value in _official_state(_OfficialUNet()).items()}


@pytest.fixture(scope="module")
def random_official():
    """Random tensors with exactly the official layout, and their conversion."""
    generator = torch.Generator().manual_seed(0)
    state = {key: 0.05 * torch.randn(shape, generator=generator) for key, shape in _layout().items()}
    return state, convert_official(state)


# ---------------------------------------------------------------------------- the layout
def test_reimplementation_has_the_official_layout():
    if not LAYOUT.is_file():
        pytest.skip(f"the published layout {LAYOUT} is not beside this checkout")
    published = json.loads(LAYOUT.read_text())["mnist_discrete"]
    network = _OfficialUNet()
    assert {key: tuple(value.shape) for key, value in _official_state(network).items()} == _layout()
    assert sum(p.numel() for p in network.parameters()) == published["num_parameters"] == PAPER_PARAMETERS


def test_every_key_consumed_every_parameter_filled(random_official):
    state, bfn = random_official
    ours = bfn.state_dict()
    table = official_key_table(bfn)
    assert len({row.ours for row in table}) == len({row.official for row in table}) == len(table)
    assert {row.ours for row in table} == set(ours)
    assert {row.official for row in table} | set(UNUSED_OFFICIAL_KEYS) == set(state)
    assert sum(p.numel() for p in bfn.parameters()) == PAPER_PARAMETERS
    for row in table:
        official, mine = state[row.official], ours[row.ours]
        assert RULES[row.rule][0](tuple(mine.shape)) == tuple(official.shape), row
        if row.rule == "copy":
            assert torch.equal(mine, official), row
        elif row.rule in ("linear_to_conv1x1", "conv1d_to_conv2d"):
            assert torch.equal(mine.reshape(official.shape), official), row
        elif row.rule == "value_input_projection":  # the value column negated, the time column copied
            assert torch.equal(mine[:, 0, 0, 0], -official[:, 0]) and torch.equal(mine[:, 1, 0, 0], official[:, 1])
        else:  # attention_qkv: our row (part, head, c) is the official row (head, part, c)
            heads, width = row.heads, official.shape[0] // (3 * row.heads)
            for part in range(3):
                for head in range(heads):
                    theirs = official[(head * 3 + part) * width:(head * 3 + part + 1) * width]
                    assert torch.equal(mine[(part * heads + head) * width:(part * heads + head + 1) * width].reshape(theirs.shape), theirs)
    assert {row.rule for row in table} == set(RULES)


def test_saved_directory_reloads_with_the_same_outputs(random_official, tmp_path):
    """(:func:`export_official` itself is run by the command-line test, on a small network.)"""
    _, bfn = random_official
    directory = save_pretrained(bfn, tmp_path / "official")
    loaded = from_pretrained(directory)
    config = json.loads((directory / "config.json").read_text())
    assert config["dataset"] == "binarized_mnist" and config["backbone"] == "unet_mnist_paper"
    assert config["data_type_options"] == {"beta_1": 9.0}
    for name, tensor in bfn.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    generator = torch.Generator().manual_seed(1)
    features, t = 2 * torch.rand(2, 1, 28, 28, 1, generator=generator) - 1, torch.tensor([0.2, 0.9])
    with torch.no_grad():
        expected, found = bfn.network(features, t), loaded.network(features, t)
    assert torch.isfinite(expected).all() and torch.equal(expected, found)


# ---------------------------------------------------------------------------- errors
@pytest.mark.parametrize("change, fragment", [
    ("missing", "missing keys: net.middle_block.1.qkv.weight"),
    ("extra", "unexpected keys: net.extra.weight"),
    ("shape", "shape mismatches: net.input_blocks.0.0.weight (32, 32, 1, 1) (expected (32, 32, 3, 3))"),
])
def test_a_mismatched_key_is_one_error_naming_it(change, fragment):
    state = _official_state(_small_official())
    if change == "missing":
        del state["net.middle_block.1.qkv.weight"]
    elif change == "extra":
        state["net.extra.weight"] = torch.zeros(3)
    else:
        state["net.input_blocks.0.0.weight"] = torch.zeros(32, 32, 1, 1)
    with pytest.raises(OfficialCheckpointError) as error:
        convert_official(state, backbone_options=SMALL)
    message = str(error.value)
    assert fragment in message
    assert sum(kind in message for kind in ("missing keys", "unexpected keys", "shape mismatches")) == 1


class _NotPlainData:
    pass


@pytest.mark.parametrize("content, fragment", [
    (None, "does not exist"),
    (b"not a torch file", "corrupt, truncated or not a torch file"),
    (torch.zeros(3), "holds a Tensor, not a state dict"),
    ({"net.a": _NotPlainData()}, "objects other than tensors and plain data"),
    ({"format": "pyro-bfn-checkpoint", "model": {}}, "pyro-bfn training checkpoint"),
    ({"model.weight": torch.zeros(2)}, "no key starts with 'net.'"),
    ({"net.a": torch.zeros(2), "net.b": 3}, "net.b not tensors"),
])
def test_a_foreign_file_is_one_clear_error(tmp_path, content, fragment):
    path = tmp_path / "official.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(OfficialCheckpointError, match="official checkpoint") as error:
        convert_official(path)
    assert fragment in str(error.value)


def test_another_backbone_is_refused():
    with pytest.raises(OfficialCheckpointError, match="not a UNet"):
        convert_official(_official_state(_small_official()), backbone="mlp_small")


def test_cli_convert_official_and_its_errors(tmp_path, capsys):
    state = _official_state(_small_official())
    path, out = tmp_path / "small.pt", tmp_path / "converted"
    torch.save(state, path)
    options = json.dumps(SMALL)
    status, stdout, _ = run_cli(["convert-official", path, "--out", out, "--backbone-options", options], capsys)
    assert status == 0 and str(out) in stdout
    assert "small.pt` of the official implementation" in (out / "README.md").read_text()
    expected, loaded = convert_official(state, backbone_options=SMALL), from_pretrained(out)
    for name, tensor in expected.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name

    status, _, err = run_cli(["convert-official", tmp_path / "missing.pt", "--out", out], capsys)
    assert_one_line_error(status, err, "missing.pt does not exist")
    del state["net.out.2.bias"]
    torch.save(state, path)
    status, _, err = run_cli(["convert-official", path, "--out", out, "--backbone-options", options], capsys)
    assert_one_line_error(status, err, "missing keys: net.out.2.bias")
    status, _, err = run_cli(["convert-official", path, "--out", out, "--backbone-options", "{base_width"], capsys)
    assert_one_line_error(status, err, "--backbone-options is not JSON")


# ---------------------------------------------------------------------------- function preservation
def test_the_mapping_preserves_the_function():
    """The official-convention network and its conversion give the same class-1 probabilities
    (float64, to rounding), from the same input probabilities and times; undoing either
    non-trivial rule (the value sign, the attention head layout) breaks the agreement."""
    official = _small_official()
    bfn = convert_official(_official_state(official), backbone_options=SMALL).double()
    official = official.double()
    generator = torch.Generator().manual_seed(2)
    theta_1 = 0.02 + 0.96 * torch.rand(3, 1, 28, 28, generator=generator, dtype=torch.float64)
    t = torch.tensor([0.0, 0.37, 1.0], dtype=torch.float64)
    with torch.no_grad():
        theirs = official((1 - theta_1).permute(0, 2, 3, 1) * 2 - 1, t[:, None, None, None].expand(3, 28, 28, 1))
        theirs = theirs.reshape(3, 1, 28, 28)
        log_probs = torch.stack([1 - theta_1, theta_1], dim=-1).log()
        output = bfn.output_distribution(CategoricalInput.from_log_probs(log_probs), t)
        ours = bfn.network(bfn.data_type.network_features(CategoricalInput.from_log_probs(log_probs)), t)[..., 0]
    assert theirs.abs().max() > 0.1  # not a trivially small output
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-9)
    torch.testing.assert_close(output.probs[..., 1], torch.sigmoid(theirs), rtol=0, atol=1e-9)

    features = bfn.data_type.network_features(CategoricalInput.from_log_probs(log_probs))
    state = bfn.state_dict()
    for undo in ("value", "heads"):
        broken = {name: tensor.clone() for name, tensor in state.items()}
        if undo == "value":
            broken["network.backbone.input_projection.weight"][:, 0] *= -1
        else:
            qkv = official.state_dict()["middle_block.1.qkv.weight"]
            broken["network.backbone.mid_attn.qkv.weight"] = qkv[..., None].clone()
        bfn.load_state_dict(broken)
        with torch.no_grad():
            assert (bfn.network(features, t)[..., 0] - theirs).abs().max() > 1e-3, undo
