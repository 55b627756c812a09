"""A time-conditioned U-Net in the style of "improved diffusion" (Nichol & Dhariwal 2021).

Structure (``L = len(width_multipliers)`` levels, ``w_l = base_width * width_multipliers[l]``):

* optional input features: Fourier features of ``h`` (VDM style) and a channel holding
  ``2t - 1`` are appended to ``h``; optionally a per-pixel linear projection to
  ``base_width`` features (``input_projection``);
* a 3x3 convolution to ``base_width``;
* down path: at each level ``num_res_blocks`` residual blocks (+ self-attention at the levels
  in ``attention_levels``), then a stride-2 convolution except at the last level;
* middle: residual block, self-attention, residual block (at the lowest resolution);
* up path: at each level ``num_res_blocks + 1`` residual blocks, each taking the
  concatenation with the matching down-path activation (+ attention as on the way down), then
  nearest-neighbour upsampling and a 3x3 convolution except at level 0;
* GroupNorm, SiLU, 3x3 convolution; with ``input_skip`` the (projected) input is concatenated
  with this and a per-pixel linear layer gives the output.

Residual blocks take the time embedding (sinusoid -> linear -> SiLU -> linear) through a
per-channel shift (or a scale-shift of the second GroupNorm with ``scale_shift_norm``). With a
single level (``width_multipliers=(1,)``) nothing is down-sampled: that is the VDM U-Net of the
paper's CIFAR-10 experiments.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import (
    FourierFeatures,
    SinusoidalTimeEmbedding,
    check_no_context,
    check_time,
    group_norm,
    make_context_embedding,
)

__all__ = ["UNet", "ResidualBlock", "SpatialSelfAttention"]


class ResidualBlock(nn.Module):
    """Residual block with time-embedding injection.

    :param in_channels: input channels ``C_in``.
    :param out_channels: output channels ``C_out`` (a 1x1 convolution maps the skip path when
        they differ).
    :param emb_dim: size ``E`` of the time embedding.
    :param dropout: dropout probability before the second convolution.
    :param num_groups: requested GroupNorm groups.
    :param scale_shift_norm: inject the time as ``norm(x) * (1 + scale) + shift`` instead of a
        shift before the second normalisation.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_dim: int,
        dropout: float = 0.0,
        num_groups: int = 32,
        scale_shift_norm: bool = False,
    ):
        super().__init__()
        self.scale_shift_norm = scale_shift_norm
        self.norm1 = group_norm(in_channels, num_groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, 2 * out_channels if scale_shift_norm else out_channels)
        self.norm2 = group_norm(out_channels, num_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """:param x: features, shape ``(B, C_in, H, W)``.

        :param emb: time embedding, shape ``(B, E)``.
        :return: features, shape ``(B, C_out, H, W)``.
        """
        h = self.conv1(F.silu(self.norm1(x)))
        e = self.emb_proj(F.silu(emb))[:, :, None, None]
        if self.scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class SpatialSelfAttention(nn.Module):
    """Multi-head self-attention over the pixels of a feature map, with a residual connection.

    :param channels: channels ``C`` (divisible by ``num_heads``).
    :param num_heads: number of heads.
    :param num_groups: requested GroupNorm groups.
    """

    def __init__(self, channels: int, num_heads: int = 1, num_groups: int = 32):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"attention: channels ({channels}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.norm = group_norm(channels, num_groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """:param x: features, shape ``(B, C, H, W)``.

        :return: features, shape ``(B, C, H, W)``.
        """
        b, c, hh, ww = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.num_heads, c // self.num_heads, hh * ww)
        q, k, v = (qkv[:, i].transpose(-1, -2) for i in range(3))  # (B, heads, HW, C/heads)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(-1, -2).reshape(b, c, hh, ww)
        return x + self.proj(out)


class _Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Stage(nn.Module):
    """A residual block optionally followed by attention and/or a resampling layer."""

    def __init__(self, res: ResidualBlock, attn: Optional[nn.Module] = None, resample: Optional[nn.Module] = None):
        super().__init__()
        self.res = res
        self.attn = attn
        self.resample = resample

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = self.res(x, emb)
        if self.attn is not None:
            x = self.attn(x)
        if self.resample is not None:
            x = self.resample(x)
        return x


class UNet(nn.Module):
    """Time-conditioned U-Net for image-shaped inputs (see the module docstring).

    :param in_channels: channels ``C_in`` of the network input ``h`` (not counting the time
        channel or Fourier features, which are added internally).
    :param out_channels: channels ``C_out`` of the output.
    :param base_width: channels at level 0 (and of the input projection).
    :param width_multipliers: channel multiplier per level; ``len(width_multipliers) - 1``
        down-samplings, so ``H`` and ``W`` must be divisible by ``2 ** (levels - 1)``.
    :param num_res_blocks: residual blocks per level on the down path (``+ 1`` on the up path).
    :param attention_levels: level indices (0 = full resolution) whose residual blocks are
        followed by self-attention. The middle block always has self-attention.
    :param dropout: dropout probability in the residual blocks.
    :param num_heads: attention heads.
    :param num_groups: requested GroupNorm groups; for widths it does not divide, the largest
        divisor not above it is used.
    :param time_embedding_scale: the sinusoids are evaluated at
        ``time_embedding_scale * (t + time_embedding_offset)`` (paper MNIST: 4000, 0).
    :param time_embedding_offset: see ``time_embedding_scale`` (paper CIFAR-10: 1000, 0.001).
    :param time_embedding_dim: width of the time-embedding MLP (default ``4 * base_width``);
        the sinusoid itself has ``base_width`` features.
    :param input_projection: per-pixel linear projection of the (augmented) input to
        ``base_width`` features before the first convolution (paper MNIST).
    :param input_skip: concatenate the (projected, if ``input_projection``; raw ``h``
        otherwise) input with the U-Net output before the final per-pixel linear layer.
    :param time_channel: append a channel holding ``2t - 1`` to the input (paper MNIST).
    :param fourier_exponents: if non-empty, append VDM Fourier features
        ``sin/cos(2 pi 2^n h)`` for each exponent ``n`` (paper CIFAR-10: ``(5, 6)``).
    :param output_width: channels of the U-Net output before the final per-pixel linear layer
        when ``input_skip`` (default ``base_width``).
    :param scale_shift_norm: inject the time by scale-shift of the GroupNorm (BigGAN style)
        instead of a shift.
    :param zero_init_output: initialise the last layer to zero (off by default).
    :param num_classes: condition on a class label (``context`` of shape ``(B,)``): a learned
        label embedding is added to the time embedding after its MLP, so every residual block
        sees it (:class:`~pyro_bfn.models.layers.ContextEmbedding`).
    :param context_dim: condition on a float vector (``context`` of shape ``(B, context_dim)``)
        instead, through a linear embedding.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        base_width: int = 32,
        width_multipliers: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 1,
        attention_levels: Sequence[int] = (),
        dropout: float = 0.0,
        num_heads: int = 4,
        num_groups: int = 32,
        time_embedding_scale: float = 1000.0,
        time_embedding_offset: float = 0.0,
        time_embedding_dim: Optional[int] = None,
        input_projection: bool = False,
        input_skip: bool = False,
        time_channel: bool = False,
        fourier_exponents: Sequence[float] = (),
        output_width: Optional[int] = None,
        scale_shift_norm: bool = False,
        zero_init_output: bool = False,
        num_classes: Optional[int] = None,
        context_dim: Optional[int] = None,
    ):
        super().__init__()
        mults = tuple(int(m) for m in width_multipliers)
        if not mults or min(mults) < 1:
            raise ValueError(f"width_multipliers must be a non-empty sequence of positive ints, got {width_multipliers}")
        if num_res_blocks < 1:
            raise ValueError(f"num_res_blocks must be >= 1, got {num_res_blocks}")
        bad = [lvl for lvl in attention_levels if not 0 <= lvl < len(mults)]
        if bad:
            raise ValueError(f"attention_levels {bad} out of range for {len(mults)} levels")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.num_levels = len(mults)
        self.time_channel = bool(time_channel)
        self.input_skip = bool(input_skip)
        emb_dim = int(time_embedding_dim or 4 * base_width)

        # input features
        self.fourier = FourierFeatures(fourier_exponents) if len(fourier_exponents) else None
        ch_in = in_channels
        if self.fourier is not None:
            ch_in += self.fourier.num_multiples * in_channels
        if self.time_channel:
            ch_in += 1
        self.input_projection = nn.Conv2d(ch_in, base_width, 1) if input_projection else None
        if self.input_projection is not None:
            ch_in = base_width
        skip_channels = base_width if input_projection else in_channels

        # time embedding
        self.time_embedding = SinusoidalTimeEmbedding(
            base_width, scale=time_embedding_scale, offset=time_embedding_offset
        )
        self.time_mlp = nn.Sequential(nn.Linear(base_width, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.context_embedding = make_context_embedding(emb_dim, num_classes, context_dim)

        def res(cin: int, cout: int) -> ResidualBlock:
            return ResidualBlock(cin, cout, emb_dim, dropout, num_groups, scale_shift_norm)

        def attn(c: int) -> SpatialSelfAttention:
            return SpatialSelfAttention(c, num_heads, num_groups)

        # down path
        self.conv_in = nn.Conv2d(ch_in, base_width, 3, padding=1)
        ch = base_width
        skips = [ch]
        self.down = nn.ModuleList()
        for level, mult in enumerate(mults):
            for i in range(num_res_blocks):
                last = i == num_res_blocks - 1 and level < self.num_levels - 1
                width = base_width * mult
                self.down.append(
                    _Stage(
                        res(ch, width),
                        attn(width) if level in attention_levels else None,
                        None,
                    )
                )
                ch = width
                skips.append(ch)
                if last:
                    self.down.append(_DownStage(ch))
                    skips.append(ch)

        # middle
        self.mid1 = res(ch, ch)
        self.mid_attn = attn(ch)
        self.mid2 = res(ch, ch)

        # up path
        self.up = nn.ModuleList()
        for level in reversed(range(self.num_levels)):
            width = base_width * mults[level]
            for i in range(num_res_blocks + 1):
                self.up.append(
                    _Stage(
                        res(ch + skips.pop(), width),
                        attn(width) if level in attention_levels else None,
                        _Upsample(width) if (level > 0 and i == num_res_blocks) else None,
                    )
                )
                ch = width
        assert not skips

        # output
        self.out_norm = group_norm(ch, num_groups)
        if self.input_skip:
            out_w = int(output_width or base_width)
            self.out_conv = nn.Conv2d(ch, out_w, 3, padding=1)
            self.final = nn.Conv2d(out_w + skip_channels, out_channels, 1)
        else:
            self.out_conv = nn.Conv2d(ch, out_channels, 3, padding=1)
            self.final = None
        if zero_init_output:
            last_layer = self.final if self.final is not None else self.out_conv
            nn.init.zeros_(last_layer.weight)
            nn.init.zeros_(last_layer.bias)

    @property
    def size_multiple(self) -> int:
        """``H`` and ``W`` must be multiples of this."""
        return 2 ** (self.num_levels - 1)

    def forward(self, h: torch.Tensor, t: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Apply the network.

        :param h: network input, shape ``(B, C_in, H, W)`` with ``H`` and ``W`` divisible by
            ``2 ** (levels - 1)``.
        :param t: times in [0, 1], shape ``(B,)``.
        :param context: labels ``(B,)`` or vectors ``(B, context_dim)`` for a conditional U-Net
            (``None``: the null context); must be ``None`` for an unconditional one.
        :return: output, shape ``(B, C_out, H, W)``.
        """
        if h.dim() != 4:
            raise ValueError(f"UNet: expected input of shape (B, C, H, W), got {tuple(h.shape)}")
        b, c, hh, ww = h.shape
        if c != self.in_channels:
            raise ValueError(f"UNet: expected {self.in_channels} input channels, got {c} (input shape {tuple(h.shape)})")
        m = self.size_multiple
        if hh % m or ww % m:
            raise ValueError(
                f"UNet: height and width must be divisible by 2**(levels-1) = {m} for "
                f"{self.num_levels} levels, got {hh}x{ww}"
            )
        t = check_time(t, b, "UNet")

        feats = [h]
        if self.fourier is not None:
            feats.append(self.fourier(h).to(h.dtype))
        if self.time_channel:
            feats.append((2 * t - 1).to(h.dtype)[:, None, None, None].expand(b, 1, hh, ww))
        x = torch.cat(feats, dim=1) if len(feats) > 1 else h
        if self.input_projection is not None:
            x = self.input_projection(x)
        skip_in = x if self.input_projection is not None else h

        emb = self.time_mlp(self.time_embedding(t).to(self.time_mlp[0].weight.dtype))
        if self.context_embedding is None:
            check_no_context(context, "UNet")
        else:
            emb = emb + self.context_embedding(context, b).to(emb.dtype)

        y = self.conv_in(x)
        hs = [y]
        for stage in self.down:
            y = stage(y, emb)
            hs.append(y)
        y = self.mid2(self.mid_attn(self.mid1(y, emb)), emb)
        for stage in self.up:
            skip = hs.pop()
            y = stage(torch.cat([y, skip.to(y.dtype)], dim=1), emb)
        y = self.out_conv(F.silu(self.out_norm(y)))
        if self.final is not None:
            y = self.final(torch.cat([skip_in.to(y.dtype), y], dim=1))
        return y


class _DownStage(nn.Module):
    """Down-sampling step of the down path (takes and ignores the time embedding)."""

    def __init__(self, channels: int):
        super().__init__()
        self.down = _Downsample(channels)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.down(x)
