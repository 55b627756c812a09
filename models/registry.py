"""Named backbone configurations, and the input layout each backbone reads.

``build_backbone(name, in_, out_, **overrides)`` builds one; ``in_`` / ``out_`` are the
features (MLP, Transformer) or channels (U-Nets) of the network input and output, i.e. of the
*data* representation. Extra input channels a configuration adds internally (the ``2t - 1``
time channel, Fourier features) are not counted in ``in_``: the paper's binarized-MNIST
network is ``build_backbone("unet_mnist_paper", 1, 1)``.

Parameter counts (trainable parameters only; buffers such as the fixed position table are
not counted), with the ``in`` / ``out`` shown:

============================ ======== ===============================
name                         in, out  parameters
============================ ======== ===============================
``mlp_small``                784, 784 550,416
``unet_small``               1, 1     2,426,449
``unet_mnist_small_variant`` 1, 1     1,080,545
``unet_mnist_paper``         1, 1     24,808,961 (paper: about 24.8M)
``unet_cifar_paper``         3, 6     30,731,160 (paper: about 30.7M)
``transformer_small``        27, 27   3,181,083
``transformer_text8_paper``  27, 27   170,175,003 (paper: about 170M)
============================ ======== ===============================

For the MNIST U-Nets, ``in = 1`` data channel; the ``2t - 1`` channel is appended inside, so
the per-pixel input projection maps 2 channels to ``base_width``.

To count the parameters of a large configuration without allocating memory::

    with torch.device("meta"):
        net = build_backbone("transformer_text8_paper", 27, 27)
    sum(p.numel() for p in net.parameters())

Each backbone class reads one layout (:data:`INPUT_LAYOUTS`, :func:`backbone_layout`): the
MLP a flat vector, the U-Net an image, the Transformer a sequence.
:func:`build_backbone_adapter` builds a named backbone for data of a given shape and wraps it
in the :class:`~pyro_bfn.models.adapters.BackboneAdapter` of its layout, the network a
:class:`~pyro_bfn.bfn.BFN` takes. Training throughput of the configurations is measured by
``benchmarks/backbone_speed.py`` and ``benchmarks/speed.py`` (results in ``benchmarks/results/``).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List

from torch import nn

from .adapters import BackboneAdapter, backbone_channels
from .mlp import MLP
from .transformer import Transformer
from .unet import UNet

__all__ = [
    "BACKBONES",
    "CONFIGS",
    "INPUT_LAYOUTS",
    "backbone_class",
    "backbone_config",
    "backbone_layout",
    "build_backbone",
    "build_backbone_adapter",
    "list_backbones",
    "register_backbone",
]

#: backbone class -> the layout (:data:`~pyro_bfn.models.adapters.LAYOUTS`) of its input
INPUT_LAYOUTS: Dict[type, str] = {MLP: "flat", UNet: "image", Transformer: "sequence"}

#: what the binarized-MNIST U-Nets share (the paper's network, PAPER_CONFIGS): levels at 28, 14
#: and 7 pixels, no attention outside the middle block, a per-pixel input projection
#: concatenated with the output, the time as an extra channel and a sinusoid of 4000 t
_MNIST_UNET = dict(
    width_multipliers=(1, 2, 2),
    attention_levels=(),
    num_heads=4,
    time_embedding_scale=4000.0,
    input_projection=True,
    input_skip=True,
    time_channel=True,
)

# name -> (class, default keyword arguments)
CONFIGS: Dict[str, tuple] = {
    "mlp_small": (MLP, dict(hidden=256, depth=3, time_embedding_dim=64, dropout=0.0)),
    # CPU default for binarized MNIST (28x28): paper-style input handling, small widths.
    "unet_small": (UNet, dict(_MNIST_UNET, base_width=48, num_res_blocks=1, dropout=0.0, num_groups=16)),
    # Width 32, one residual block per level, about 1.1M parameters.
    "unet_mnist_small_variant": (UNet, dict(_MNIST_UNET, base_width=32, num_res_blocks=1, dropout=0.0, num_groups=32)),
    # The paper's binarized-MNIST network (about 24.8M parameters).
    "unet_mnist_paper": (UNet, dict(_MNIST_UNET, base_width=128, num_res_blocks=2, dropout=0.5, num_groups=32)),
    # The paper's CIFAR-10 network: VDM U-Net without down-sampling (about 30.7M parameters).
    "unet_cifar_paper": (
        UNet,
        dict(
            base_width=128,
            width_multipliers=(1,),
            num_res_blocks=32,
            attention_levels=(),
            dropout=0.1,
            num_heads=1,
            num_groups=32,
            time_embedding_scale=1000.0,
            time_embedding_offset=0.001,
            fourier_exponents=(5.0, 6.0),
            input_projection=False,
            input_skip=True,
            time_channel=False,
        ),
    ),
    # CPU default for text (e.g. text8 with sequence length 256).
    "transformer_small": (
        Transformer,
        dict(width=256, depth=4, heads=4, max_length=256, dropout=0.0, input_skip=True),
    ),
    # The paper's text8 network (about 170M parameters).
    "transformer_text8_paper": (
        Transformer,
        dict(width=768, depth=24, heads=12, max_length=256, dropout=0.0, input_skip=True),
    ),
}


def _factory(name: str) -> Callable[..., nn.Module]:
    cls, defaults = CONFIGS[name]

    def build(in_features_or_channels: int, out_features_or_channels: int, **overrides: Any) -> nn.Module:
        kwargs = dict(defaults)
        kwargs.update(overrides)
        return cls(in_features_or_channels, out_features_or_channels, **kwargs)

    build.__name__ = f"build_{name}"
    build.__doc__ = f"Build the ``{name}`` backbone: ``{cls.__name__}`` with defaults {defaults!r}."
    return build


#: name -> factory ``f(in_features_or_channels, out_features_or_channels, **overrides)``
BACKBONES: Dict[str, Callable[..., nn.Module]] = {name: _factory(name) for name in CONFIGS}


def register_backbone(name: str, cls: type, layout: str | None = None, overwrite: bool = False,
                      **defaults: Any) -> None:
    """Add a named backbone configuration, so that a training configuration
    (``backbone: <name>``, ``backbone_options``) and :func:`build_backbone_adapter` build it.

    The class is called as ``cls(in_features_or_channels, out_features_or_channels,
    **defaults, **overrides)`` and its instances as ``backbone(h, t)`` (and ``(h, t,
    context)`` when built with ``num_classes`` or ``context_dim``, for conditional training),
    ``h`` in its layout.

    :param str name: the new name.
    :param type cls: an :class:`torch.nn.Module` subclass.
    :param str layout: the layout it reads, ``"flat"`` ``(B, F)``, ``"image"``
        ``(B, C, H, W)`` or ``"sequence"`` ``(B, L, F)``; the registered class's own for a
        subclass of :class:`MLP`, :class:`UNet` or :class:`Transformer`.
    :param bool overwrite: replace a configuration of the same name (otherwise an error).
    :param defaults: the configuration's keyword arguments.
    :raises ValueError: a taken name, a class that is not a module, or an unknown layout.
    """
    from .adapters import LAYOUTS

    if name in CONFIGS and not overwrite:
        raise ValueError(f"backbone {name!r} is already registered; pass overwrite=True to replace it")
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"a backbone class must be a torch.nn.Module subclass, got {cls!r}")
    if layout is None:
        layout = next((known for base, known in INPUT_LAYOUTS.items() if issubclass(cls, base)), None)
    if layout not in LAYOUTS:
        raise ValueError(f"layout of backbone {name!r} must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    INPUT_LAYOUTS.setdefault(cls, layout)
    if INPUT_LAYOUTS[cls] != layout:
        raise ValueError(f"class {cls.__name__} is registered with layout {INPUT_LAYOUTS[cls]!r}, not {layout!r}")
    CONFIGS[name] = (cls, dict(defaults))
    BACKBONES[name] = _factory(name)


def backbone_class(name: str) -> type:
    """The class of a named configuration.

    :param name: a name from :func:`list_backbones`.
    """
    if name not in CONFIGS:
        raise KeyError(f"unknown backbone {name!r}; known: {', '.join(list_backbones())}")
    return CONFIGS[name][0]


def list_backbones() -> List[str]:
    """The names of the registered configurations, sorted."""
    return sorted(BACKBONES)


def backbone_config(name: str) -> Dict[str, Any]:
    """The class name and default keyword arguments of a named configuration.

    :param name: a name from :func:`list_backbones`.
    """
    if name not in CONFIGS:
        raise KeyError(f"unknown backbone {name!r}; known: {', '.join(list_backbones())}")
    cls, defaults = CONFIGS[name]
    return {"class": cls.__name__, **defaults}


def backbone_layout(name: str) -> str:
    """The layout a named backbone reads: ``"flat"``, ``"image"`` or ``"sequence"``.

    :param name: a name from :func:`list_backbones`.
    """
    if name not in CONFIGS:
        raise KeyError(f"unknown backbone {name!r}; known: {', '.join(list_backbones())}")
    return INPUT_LAYOUTS[CONFIGS[name][0]]


def build_backbone(
    name: str, in_features_or_channels: int, out_features_or_channels: int, **overrides: Any
) -> nn.Module:
    """Build a named backbone.

    :param name: a name from :func:`list_backbones`.
    :param in_features_or_channels: input features (MLP, Transformer) or channels (U-Net) of
        the data representation, not counting internally added channels.
    :param out_features_or_channels: output features or channels.
    :param overrides: keyword arguments replacing the configuration's defaults.
    :return: the backbone module.
    """
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; known: {', '.join(list_backbones())}")
    return BACKBONES[name](in_features_or_channels, out_features_or_channels, **overrides)


def build_backbone_adapter(
    name: str, data_shape, in_features: int, out_features: int, **overrides: Any
) -> BackboneAdapter:
    """Build a named backbone for data of shape ``data_shape``, wrapped in the adapter of its
    layout (:func:`backbone_layout`).

    The adapter reads per-variable features ``(B, *data_shape, in_features)`` and times
    ``(B,)`` and writes ``(B, *data_shape, out_features)``; the backbone is built with the
    channels its layout needs (:func:`~pyro_bfn.models.adapters.backbone_channels`).

    :param name: a name from :func:`list_backbones`.
    :param tuple data_shape: shape of one example: any for a ``"flat"`` backbone, ``(C, H, W)``
        for an ``"image"`` one, ``(L,)`` for a ``"sequence"`` one.
    :param int in_features: features per variable read (a data type's ``num_input_features``).
    :param int out_features: features per variable written (``num_output_features``).
    :param overrides: keyword arguments replacing the configuration's defaults.
    :raises KeyError: unknown backbone.
    :raises ValueError: ``data_shape`` does not fit the backbone's layout (checked before the
        network is built).
    """
    layout = backbone_layout(name)
    try:  # the adapter's shape check, on a stand-in network so that nothing large is built first
        BackboneAdapter(nn.Identity(), layout, data_shape, in_features, out_features)
    except ValueError as error:
        raise ValueError(f"backbone {name!r} reads the {layout!r} layout: {error}") from None
    network = build_backbone(
        name,
        backbone_channels(layout, data_shape, in_features),
        backbone_channels(layout, data_shape, out_features),
        **overrides,
    )
    return BackboneAdapter(network, layout, data_shape, in_features, out_features)
