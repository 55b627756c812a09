"""Neural backbones for pyro-bfn, installed as ``pyro_bfn.models``.

A backbone maps the network input ``h`` and the time ``t`` (shape ``(B,)``, in [0, 1]) to a
tensor; it knows nothing about BFNs except shapes:

* :class:`MLP`: ``(B, F_in), (B,) -> (B, F_out)``;
* :class:`UNet`: ``(B, C_in, H, W), (B,) -> (B, C_out, H, W)``;
* :class:`Transformer`: ``(B, L, F_in), (B,) -> (B, L, F_out)``.

Named configurations (including the paper's networks) are built with :func:`build_backbone`.

Every backbone also takes an optional ``context`` (``forward(h, t, context)``) when built with
``num_classes`` (class labels, shape ``(B,)``) or ``context_dim`` (float vectors, shape
``(B, context_dim)``): a :class:`~pyro_bfn.models.layers.ContextEmbedding` added to the time
embedding, with a learned null token for ``context=None`` (classifier-free training).
"""

from .layers import (
    NULL_LABEL,
    ContextEmbedding,
    FourierFeatures,
    SinusoidalTimeEmbedding,
    sinusoidal_embedding,
    sinusoidal_positions,
)
from .mlp import MLP
from .registry import (
    BACKBONES,
    INPUT_LAYOUTS,
    backbone_class,
    backbone_config,
    backbone_layout,
    build_backbone,
    build_backbone_adapter,
    list_backbones,
    register_backbone,
)
from .transformer import Transformer
from .unet import UNet

__all__ = [
    "BACKBONES",
    "INPUT_LAYOUTS",
    "ContextEmbedding",
    "NULL_LABEL",
    "FourierFeatures",
    "MLP",
    "SinusoidalTimeEmbedding",
    "Transformer",
    "UNet",
    "backbone_class",
    "backbone_config",
    "backbone_layout",
    "build_backbone",
    "build_backbone_adapter",
    "list_backbones",
    "register_backbone",
    "sinusoidal_embedding",
    "sinusoidal_positions",
]
