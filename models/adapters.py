"""Adapters between a BFN's per-variable features and a backbone's native layout.

A :class:`~pyro_bfn.bfn.BFN` hands its network features of shape
``(B, *data_shape, F_in)`` and times ``(B,)``, and expects ``(B, *data_shape, F_out)`` back.
Backbones take their own layouts:

* ``"flat"`` (:class:`~pyro_bfn.models.mlp.MLP`): ``(B, prod(data_shape) * F)``;
* ``"image"`` (:class:`~pyro_bfn.models.unet.UNet`): data ``(C, H, W)``, backbone
  ``(B, C * F, H, W)``, the ``F`` features of each channel adjacent;
* ``"sequence"`` (:class:`~pyro_bfn.models.transformer.Transformer`): data ``(L,)``,
  backbone ``(B, L, F)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["BackboneAdapter", "LAYOUTS"]

LAYOUTS = ("flat", "image", "sequence")


def backbone_channels(layout: str, data_shape, features: int) -> int:
    """Number of input (or output) channels/features the backbone must have."""
    if layout == "flat":
        return math.prod(data_shape) * features
    if layout == "image":
        return data_shape[0] * features
    if layout == "sequence":
        return features
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


class BackboneAdapter(nn.Module):
    """Wraps a backbone so that it reads and writes per-variable features.

    :param nn.Module backbone: called as ``backbone(h, t)`` in its native layout.
    :param str layout: ``"flat"``, ``"image"`` or ``"sequence"``.
    :param tuple data_shape: shape of one example: any for ``"flat"``, ``(C, H, W)`` for
        ``"image"``, ``(L,)`` for ``"sequence"``.
    :param int in_features: features per variable read (the data type's
        ``num_input_features``).
    :param int out_features: features per variable written (``num_output_features``).
    """

    def __init__(self, backbone: nn.Module, layout: str, data_shape, in_features: int, out_features: int):
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        data_shape = tuple(int(d) for d in data_shape)
        if layout == "image" and len(data_shape) != 3:
            raise ValueError(f"the image layout needs data_shape (C, H, W), got {data_shape}")
        if layout == "sequence" and len(data_shape) != 1:
            raise ValueError(f"the sequence layout needs data_shape (L,), got {data_shape}")
        self.backbone = backbone
        self.layout = layout
        self.data_shape = data_shape
        self.in_features = in_features
        self.out_features = out_features

    def forward(self, features: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """:param features: ``(B, *data_shape, in_features)``; :param t: ``(B,)``;
        :param context: passed on to the backbone when not ``None`` (labels ``(B,)`` or vectors
            ``(B, context_dim)`` for a backbone built with ``num_classes`` / ``context_dim``);
        :returns: ``(B, *data_shape, out_features)``."""
        batch = features.shape[0]
        extra = () if context is None else (context,)
        if self.layout == "flat":
            out = self.backbone(features.reshape(batch, -1), t, *extra)
            return out.reshape((batch,) + self.data_shape + (self.out_features,))
        if self.layout == "image":
            channels, height, width = self.data_shape
            # (B, C, H, W, F) -> (B, C, F, H, W) -> (B, C*F, H, W)
            h = features.permute(0, 1, 4, 2, 3).reshape(batch, channels * self.in_features, height, width)
            out = self.backbone(h, t, *extra)
            out = out.reshape(batch, channels, self.out_features, height, width)
            return out.permute(0, 1, 3, 4, 2)
        return self.backbone(features, t, *extra)
