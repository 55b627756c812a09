"""Official checkpoints: the state dicts of the paper's reference implementation
(nnaisense/bayesian-flow-networks; Graves et al. 2023, arXiv 2308.07037) as pyro-bfn models.

The published binarized-MNIST checkpoint (``mnist_ema.pt`` of the Hugging Face Hub repository
``rupspace/pretrained-BFNs``) is the ``state_dict()`` of the official ``BFN`` module: 219
tensors, every key starting with ``net.`` (its U-Net ``UNetModel`` with a
``FourierImageInputAdapter`` and an ``OutputAdapter``), 24,808,961 parameters and one fixed
position table. :func:`convert_official` maps it onto the ``unet_mnist_paper`` backbone of the
``binarized_mnist`` dataset (:func:`pyro_bfn.zoo.build_bfn`, :math:`K = 2`,
:math:`\\beta(1) = 9`: the official ``max_sqrt_beta = 3`` squared, paper Sec. 6.2);
:func:`export_official` writes the result as a pretrained directory
(:func:`pyro_bfn.pretrained.save_pretrained`).

>>> bfn = convert_official("pretrained-BFNs/mnist_ema.pt")                 # doctest: +SKIP
>>> export_official("pretrained-BFNs/mnist_ema.pt", "pretrained/mnist_official")  # doctest: +SKIP

The key table (:func:`official_key_table`) is built by walking the pyro-bfn U-Net: each of its
parameters gets one official key and one rule. The rules, where the two networks' conventions
differ:

========================== ==========================================================================
rule                       official tensor -> pyro-bfn tensor
========================== ==========================================================================
``copy``                   the same shape and meaning (convolutions, GroupNorms, the time MLP)
``linear_to_conv1x1``      ``(O, I)`` -> ``(O, I, 1, 1)``: the official per-pixel ``nn.Linear``
                           reads channels-last features ``(B, H*W, I)``, ours is a 1x1
                           convolution of ``(B, I, H, W)`` (the output adapter)
``value_input_projection`` as ``linear_to_conv1x1``, and column 0 negated: for :math:`K = 2` the
                           official network reads :math:`2\\theta_0 - 1` (the probability of
                           class 0; its ``params_to_net_inputs`` keeps ``[..., :1]``), pyro-bfn
                           reads :math:`2\\theta_1 - 1 = -(2\\theta_0 - 1)`
                           (:class:`~pyro_bfn.data_types.DiscreteData`); column 1, the time
                           feature :math:`2t - 1`, is copied
``conv1d_to_conv2d``       ``(O, I, 1)`` -> ``(O, I, 1, 1)``: attention output projection (the
                           official attention runs on ``(B, C, H*W)``)
``attention_qkv``          as ``conv1d_to_conv2d``, and the ``3C`` output rows reordered from the
                           official ``(heads, [q, k, v], C / heads)`` to pyro-bfn's
                           ``([q, k, v], heads, C / heads)``; the bias likewise
========================== ==========================================================================

The other differences need no tensor change: the official network takes its input
channels-last (``(B, 28, 28, 1)``, flattened to ``(B, 784, 2)`` with the time channel) and one
time per pixel (the time channel reads each pixel's time, the sinusoidal embedding of
``4000 t`` the first pixel's), pyro-bfn takes ``(B, 1, 28, 28)`` and one time per example
(times are constant over an example in training and sampling); both concatenate
``[projected input, U-Net output]`` before the final per-pixel layer and ``[up-path features,
down-path skip]`` in the up path. The official output is the logit of class 1
(``Bernoulli(logits)``), as pyro-bfn's (:math:`\\mathrm{softmax}(0, \\ell)`). The official
position table ``net.input_adapter.pos_feats`` is read but unused: the MNIST input adapter is
built with ``add_pos_feats=False`` (:data:`UNUSED_OFFICIAL_KEYS`). The number of attention
heads is not visible in the shapes; the backbone's (4, as the official configuration) is used.

Every check is strict: every official key consumed, every pyro-bfn parameter and buffer
filled, every shape equal; one :class:`OfficialCheckpointError` names all offending keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from . import zoo
from .bfn import BFN
from .data_types import DiscreteData
from .models import UNet
from .pretrained import save_pretrained
from .training.checkpoint import CHECKPOINT_FORMAT, CheckpointError, _load_failure

__all__ = [
    "OFFICIAL_PREFIX",
    "OfficialCheckpointError",
    "KeyMapping",
    "RULES",
    "UNUSED_OFFICIAL_KEYS",
    "convert_official",
    "export_official",
    "load_official_state_dict",
    "official_key_table",
]

#: the prefix of every key of the official ``BFN`` module's state dict (its network ``net``)
OFFICIAL_PREFIX = "net."
#: our keys of the network inside a :class:`~pyro_bfn.bfn.BFN` built by the zoo
_OURS = "network.backbone."
#: official keys that are read (present, shape checked) but have nothing to fill: key -> why
UNUSED_OFFICIAL_KEYS = {
    "net.input_adapter.pos_feats": "the Fourier position table of FourierImageInputAdapter, a fixed buffer "
    "that the MNIST network does not read (add_pos_feats=False)",
}
#: the official adapter's default number of Fourier bands: its table has ``4 * 64 + 2`` columns
_OFFICIAL_FREQ_BANDS = 64
#: the official U-Net normalises with GroupNorm(32, C) everywhere and embeds ``4000 t``
_OFFICIAL_GROUPS = 32
_OFFICIAL_TIME_SCALE = 4000.0
_LIST_AT_MOST = 8


class OfficialCheckpointError(CheckpointError):
    """An official checkpoint that is absent, unreadable, not an official state dict, or whose
    keys or shapes do not match the pyro-bfn model it is converted into."""


class KeyMapping(NamedTuple):
    """One row of the key table: a pyro-bfn state-dict key, the official key it is read from,
    the rule (:data:`RULES`) and the attention heads (for ``attention_qkv``)."""

    ours: str
    official: str
    rule: str
    heads: int = 1


def _qkv_to_ours(tensor: torch.Tensor, heads: int) -> torch.Tensor:
    rows = tensor.shape[0]
    width = rows // (3 * heads)
    tail = tensor.shape[1:]
    reordered = tensor.reshape(heads, 3, width, *tail).transpose(0, 1).reshape(rows, *tail)
    return reordered[..., None] if tensor.dim() == 3 else reordered


def _value_projection_to_ours(tensor: torch.Tensor, heads: int) -> torch.Tensor:
    weight = tensor.clone()
    weight[:, 0] = -weight[:, 0]
    return weight[:, :, None, None]


#: rule -> (official shape from ours, conversion ``f(official_tensor, heads) -> ours``)
RULES = {
    "copy": (lambda shape: shape, lambda tensor, heads: tensor),
    "linear_to_conv1x1": (lambda shape: shape[:2], lambda tensor, heads: tensor[:, :, None, None]),
    "value_input_projection": (lambda shape: shape[:2], _value_projection_to_ours),
    "conv1d_to_conv2d": (lambda shape: shape[:3], lambda tensor, heads: tensor[..., None]),
    "attention_qkv": (lambda shape: shape[:3] if len(shape) == 4 else shape, _qkv_to_ours),
}


# ---------------------------------------------------------------------------- the key table
def _paper_unet(bfn: BFN) -> UNet:
    """The backbone of ``bfn`` if it has the official MNIST network's form, else one error saying what differs."""
    backbone = getattr(bfn.network, "backbone", None)
    problems = []
    if not isinstance(bfn.data_type, DiscreteData) or bfn.data_type.num_classes != 2:
        problems.append(f"the data type is {bfn.data_type!r}, not binary discrete data")
    if not isinstance(backbone, UNet):
        problems.append(f"the backbone is {type(backbone).__name__}, not a UNet")
    else:
        if backbone.input_projection is None or backbone.final is None or not backbone.time_channel:
            problems.append("the UNet lacks input_projection, input_skip or time_channel")
        if backbone.fourier is not None or backbone.context_embedding is not None:
            problems.append("the UNet has Fourier features or a context embedding")
        embedding = backbone.time_embedding
        if embedding.scale != _OFFICIAL_TIME_SCALE or embedding.offset != 0.0:
            problems.append(f"its time embedding reads {embedding.scale} (t + {embedding.offset}), not 4000 t")
        groups = {m.num_groups for m in backbone.modules() if isinstance(m, nn.GroupNorm)}
        if groups != {_OFFICIAL_GROUPS}:
            problems.append(f"its GroupNorms have {sorted(groups)} groups, the official ones 32")
    if problems:
        raise OfficialCheckpointError("the official MNIST U-Net converts into a binary-data UNet of its form "
                                      "(unet_mnist_paper): " + "; ".join(problems))
    return backbone


def official_key_table(bfn: BFN) -> list[KeyMapping]:
    """The key table from ``bfn``'s U-Net to the official ``UNetModel``: one row per parameter.

    Official names: ``input_blocks.0.0`` (first convolution), ``input_blocks.k`` (a ``ResBlock``
    at ``.0``, its attention at ``.1``; or a ``Downsample`` at ``.0.op``), ``middle_block.0-2``,
    ``output_blocks.k`` (``ResBlock``, then attention, then ``Upsample`` ``.conv``), ``out.0`` /
    ``out.2`` (GroupNorm, convolution), ``time_embed.0`` / ``.2``, ``input_projection`` and
    ``output_adapter.output_projection``; in a ``ResBlock`` ``in_layers.0`` / ``.2``,
    ``emb_layers.1``, ``out_layers.0`` / ``.3``, ``skip_connection``.

    :param BFN bfn: a binarized-MNIST BFN with a ``unet_mnist_paper``-style backbone (any
        widths, levels, residual blocks and attention levels); may live on the ``meta`` device.
    :raises OfficialCheckpointError: a backbone of another form.
    """
    unet = _paper_unet(bfn)
    table: list[KeyMapping] = []

    def add(ours: str, official: str, weight: str = "copy", bias: str = "copy", heads: int = 1) -> None:
        table.append(KeyMapping(f"{_OURS}{ours}.weight", f"{OFFICIAL_PREFIX}{official}.weight", weight, heads))
        table.append(KeyMapping(f"{_OURS}{ours}.bias", f"{OFFICIAL_PREFIX}{official}.bias", bias, heads))

    def residual(ours: str, official: str, block) -> None:
        for mine, theirs in (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("emb_proj", "emb_layers.1"),
                             ("norm2", "out_layers.0"), ("conv2", "out_layers.3")):
            add(f"{ours}.{mine}", f"{official}.{theirs}")
        if not isinstance(block.skip, nn.Identity):
            add(f"{ours}.skip", f"{official}.skip_connection")

    def attention(ours: str, official: str, block) -> None:
        add(f"{ours}.norm", f"{official}.norm")
        add(f"{ours}.qkv", f"{official}.qkv", "attention_qkv", "attention_qkv", heads=block.num_heads)
        add(f"{ours}.proj", f"{official}.proj_out", "conv1d_to_conv2d")

    def stage(ours: str, official: str, module) -> None:
        residual(f"{ours}.res", f"{official}.0", module.res)
        position = 1
        if module.attn is not None:
            attention(f"{ours}.attn", f"{official}.{position}", module.attn)
            position += 1
        if module.resample is not None:
            add(f"{ours}.resample.conv", f"{official}.{position}.conv")

    add("input_projection", "input_projection", "value_input_projection")
    add("time_mlp.0", "time_embed.0")
    add("time_mlp.2", "time_embed.2")
    add("conv_in", "input_blocks.0.0")
    for index, module in enumerate(unet.down):
        if hasattr(module, "res"):
            stage(f"down.{index}", f"input_blocks.{index + 1}", module)
        else:  # a down-sampling step
            add(f"down.{index}.down.conv", f"input_blocks.{index + 1}.0.op")
    residual("mid1", "middle_block.0", unet.mid1)
    attention("mid_attn", "middle_block.1", unet.mid_attn)
    residual("mid2", "middle_block.2", unet.mid2)
    for index, module in enumerate(unet.up):
        stage(f"up.{index}", f"output_blocks.{index}", module)
    add("out_norm", "out.0")
    add("out_conv", "out.2")
    add("final", "output_adapter.output_projection", "linear_to_conv1x1")
    return table


# ---------------------------------------------------------------------------- reading
def load_official_state_dict(path) -> dict:
    """Read an official checkpoint (a :func:`torch.save` of the ``BFN`` module's state dict)
    with ``weights_only=True``: no object other than tensors and plain data is unpickled.

    :param path: e.g. ``mnist_ema.pt``.
    :raises OfficialCheckpointError: an absent, truncated, corrupt or foreign file, a pyro-bfn
        training checkpoint, or a dict that is not a state dict of ``net.*`` tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise OfficialCheckpointError(f"official checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        raise OfficialCheckpointError(
            f"official checkpoint {path} is corrupt, truncated or not a torch file ({_load_failure(error)})") from None
    return _check_state_dict(state, f"official checkpoint {path}")


def _check_state_dict(state, where: str) -> dict:
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
        raise OfficialCheckpointError(f"{where} is a pyro-bfn training checkpoint, not an official one "
                                      "(pyro-bfn export writes those as pretrained directories)")
    if not isinstance(state, dict):
        raise OfficialCheckpointError(f"{where} holds a {type(state).__name__}, not a state dict")
    not_tensors = sorted(str(key) for key, value in state.items() if not isinstance(value, torch.Tensor))
    if not_tensors:
        raise OfficialCheckpointError(f"{where} is not a state dict: {_names(not_tensors)} not tensors")
    if not any(str(key).startswith(OFFICIAL_PREFIX) for key in state):
        raise OfficialCheckpointError(f"{where} is not an official BFN state dict: no key starts with "
                                      f"{OFFICIAL_PREFIX!r} (found {_names(sorted(map(str, state)))})")
    return dict(state)


def _names(keys: list) -> str:
    shown = ", ".join(keys[:_LIST_AT_MOST])
    return shown + (f" and {len(keys) - _LIST_AT_MOST} more" if len(keys) > _LIST_AT_MOST else "")


# ---------------------------------------------------------------------------- converting
def _official_state(bfn: BFN, table: list[KeyMapping], official: dict, where: str) -> dict:
    """Our state dict from the official tensors, after every check (one error naming all keys)."""
    ours = bfn.state_dict()
    expected = {row.official: RULES[row.rule][0](tuple(ours[row.ours].shape)) for row in table}
    height, width = bfn.data_shape[1:]
    unused = {key: (height * width, 4 * _OFFICIAL_FREQ_BANDS + 2) for key in UNUSED_OFFICIAL_KEYS}
    problems = []
    missing = sorted(set(expected) - set(official))
    unexpected = sorted(set(official) - set(expected) - set(unused))
    if missing:
        problems.append("missing keys: " + _names(missing))
    if unexpected:
        problems.append("unexpected keys: " + _names(unexpected))
    shapes = {**expected, **unused}
    wrong = [f"{key} {tuple(official[key].shape)} (expected {shapes[key]})"
             for key in sorted(set(official) & set(shapes)) if tuple(official[key].shape) != shapes[key]]
    if wrong:
        problems.append("shape mismatches: " + _names(wrong))
    not_float = sorted(key for key in set(official) & set(expected) if not official[key].is_floating_point())
    if not_float:
        problems.append("not floating point: " + _names(not_float))
    if problems:
        raise OfficialCheckpointError(f"{where} does not match the official MNIST U-Net of this model: " + "; ".join(problems))
    converted = {}
    for row in table:
        tensor = RULES[row.rule][1](official[row.official].detach(), row.heads)
        converted[row.ours] = tensor.to(dtype=ours[row.ours].dtype, device="cpu").contiguous()
    unfilled = sorted(set(ours) - set(converted))
    if unfilled:  # a parameter or persistent buffer the table has no rule for
        raise OfficialCheckpointError(f"no official tensor fills {_names(unfilled)} of this model")
    return converted


def convert_official(
    state_dict_or_path,
    backbone: str = "unet_mnist_paper",
    backbone_options: dict | None = None,
    beta_1: float = 9.0,
) -> BFN:
    """The pyro-bfn BFN holding the weights of an official binarized-MNIST checkpoint, on the
    CPU in float32 and eval mode, with its recipe (``bfn.build_recipe``) for
    :func:`~pyro_bfn.pretrained.save_pretrained`.

    :param state_dict_or_path: the official state dict (keys ``net.*``, tensors as in the
        published ``mnist_ema.pt``) or the path of a file holding it.
    :param str backbone: the pyro-bfn backbone to fill (``unet_mnist_paper``).
    :param dict backbone_options: overrides of its configuration, for an official network built
        with other widths or depths (names of :class:`~pyro_bfn.models.UNet`: ``base_width``,
        ``num_res_blocks``, ``width_multipliers``, ``attention_levels``, ``num_heads``).
    :param float beta_1: the final accuracy :math:`\\beta(1)` (the official ``max_sqrt_beta``
        squared: 9).
    :raises OfficialCheckpointError: an unreadable or foreign file (:func:`load_official_state_dict`),
        or keys and shapes that do not match (every missing key, unexpected key, shape
        mismatch named).
    """
    where = "the official state dict"
    if isinstance(state_dict_or_path, (str, Path)):
        where = f"official checkpoint {state_dict_or_path}"
        official = load_official_state_dict(state_dict_or_path)
    else:
        official = _check_state_dict(state_dict_or_path, where)
    recipe = dict(dataset="binarized_mnist", backbone=backbone, data_type_options={"beta_1": float(beta_1)},
                  backbone_options=dict(backbone_options or {}))
    try:
        with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten; keep the caller's RNG
            bfn = zoo.build_bfn(**recipe)
    except (TypeError, ValueError, KeyError) as error:
        raise OfficialCheckpointError(f"cannot build backbone {backbone} with options {backbone_options or {}}: {error}") from None
    bfn.load_state_dict(_official_state(bfn, official_key_table(bfn), official, where))
    return bfn.eval()


def export_official(state_dict_or_path, directory, **options) -> Path:
    """Convert an official checkpoint (:func:`convert_official`, with its ``options``) and write
    it as a pretrained directory that :func:`~pyro_bfn.pretrained.from_pretrained` loads.

    :param state_dict_or_path: the official state dict or its file.
    :param directory: the output directory.
    :returns: the directory.
    """
    bfn = convert_official(state_dict_or_path, **options)
    source = (f"`{Path(state_dict_or_path).name}`" if isinstance(state_dict_or_path, (str, Path))
              else "an official state dict")
    card = {"weights": f"{source} of the official implementation (nnaisense/bayesian-flow-networks), "
                       "converted by `pyro-bfn convert-official`"}
    return save_pretrained(bfn, directory, card=card)
