"""Building blocks shared by the backbones: time and position embeddings, normalisation, checks.

Everything here is device-agnostic (constants are registered as non-persistent buffers, so
``module.to(device)`` moves them) and safe under :func:`torch.autocast`: embeddings are
computed in float32 whatever the autocast state, and the layers that consume them decide
their own compute dtype.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

__all__ = [
    "NULL_LABEL",
    "ContextEmbedding",
    "FourierFeatures",
    "SinusoidalTimeEmbedding",
    "check_no_context",
    "check_time",
    "group_norm",
    "make_context_embedding",
    "num_groups_for",
    "sinusoidal_embedding",
    "sinusoidal_positions",
]


def sinusoidal_embedding(x: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal ("transformer") embedding of real scalars, computed in float32.

    Frequencies are ``max_period ** (-i / (dim // 2))`` for ``i = 0 .. dim // 2 - 1``; the
    output is ``[cos(x f), sin(x f)]``, zero-padded by one column when ``dim`` is odd.

    :param x: values to embed, shape ``(B,)`` (any real values, e.g. ``4000 * t``).
    :param dim: embedding size ``D``.
    :param max_period: the longest period of the sinusoids.
    :return: the embedding, shape ``(B, D)``, float32.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=x.device) / max(half, 1)
    )
    args = x.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class SinusoidalTimeEmbedding(nn.Module):
    """Sinusoidal embedding of the time ``t`` in [0, 1], evaluated at ``scale * (t + offset)``.

    The paper's binarized-MNIST U-Net uses ``scale=4000, offset=0``; its CIFAR-10 U-Net uses
    ``scale=1000, offset=0.001``.

    :param dim: embedding size ``D``.
    :param scale: multiplier applied to ``t + offset`` before the sinusoids.
    :param offset: added to ``t`` first.
    :param max_period: the longest period of the sinusoids.
    """

    def __init__(self, dim: int, scale: float = 1000.0, offset: float = 0.0, max_period: float = 10000.0):
        super().__init__()
        if dim < 1:
            raise ValueError(f"time embedding dim must be positive, got {dim}")
        self.dim = int(dim)
        self.scale = float(scale)
        self.offset = float(offset)
        half = self.dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / max(half, 1))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """:param t: times, shape ``(B,)``.

        :return: the embedding, shape ``(B, D)``, float32.
        """
        args = (self.scale * (t.float() + self.offset))[:, None] * self.freqs.float()[None, :]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if self.dim % 2:
            emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
        return emb

    def extra_repr(self) -> str:
        return f"dim={self.dim}, scale={self.scale}, offset={self.offset}"


def sinusoidal_positions(length: int, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Fixed sinusoidal position codes (Vaswani et al.), interleaved ``sin`` / ``cos``.

    :param length: number of positions ``L``.
    :param dim: code size ``D``.
    :param max_period: the longest period of the sinusoids.
    :return: the codes, shape ``(L, D)``, float32.
    """
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(max_period) / dim))
    pe = torch.zeros(length, dim, dtype=torch.float32)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : dim // 2]
    return pe


class FourierFeatures(nn.Module):
    """Per-pixel Fourier features of the input, as in VDM (Kingma et al. 2021).

    For every exponent ``n`` and input channel ``c``: ``sin(2 pi 2^n x_c)`` and
    ``cos(2 pi 2^n x_c)``.

    :param exponents: the exponents ``n``; VDM uses ``(5, 6)``.
    """

    def __init__(self, exponents: Sequence[float] = (5.0, 6.0)):
        super().__init__()
        exps = torch.as_tensor(list(exponents), dtype=torch.float32)
        self.register_buffer("freqs", 2.0 * math.pi * 2.0**exps, persistent=False)

    @property
    def num_multiples(self) -> int:
        """Number of output channels per input channel."""
        return 2 * self.freqs.numel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """:param x: input, shape ``(B, C, H, W)``.

        :return: the features, shape ``(B, 2 * len(exponents) * C, H, W)``, float32.
        """
        f = self.freqs.float().view(1, -1, 1, 1, 1) * x.float().unsqueeze(1)  # (B, F, C, H, W)
        f = f.flatten(1, 2)
        return torch.cat([f.sin(), f.cos()], dim=1)


def num_groups_for(channels: int, num_groups: int) -> int:
    """The number of GroupNorm groups to use for ``channels`` channels.

    ``num_groups`` if it divides ``channels``; otherwise (small or odd widths) the largest
    divisor of ``channels`` not above ``num_groups``.

    :param channels: number of channels.
    :param num_groups: the requested number of groups.
    """
    if num_groups < 1:
        raise ValueError(f"num_groups must be positive, got {num_groups}")
    g = min(num_groups, channels)
    while channels % g:
        g -= 1
    return g


def group_norm(channels: int, num_groups: int = 32, eps: float = 1e-5) -> nn.GroupNorm:
    """A :class:`torch.nn.GroupNorm` over ``channels`` channels with a valid group count.

    :param channels: number of channels.
    :param num_groups: the requested number of groups (see :func:`num_groups_for`).
    :param eps: the GroupNorm epsilon.
    """
    return nn.GroupNorm(num_groups_for(channels, num_groups), channels, eps=eps)


def check_time(t: torch.Tensor, batch: int, name: str) -> torch.Tensor:
    """Check the time input of a backbone and broadcast a scalar to the batch.

    :param t: times, shape ``(B,)`` (a 0-d tensor or shape ``(B, 1)`` is accepted too).
    :param batch: the batch size ``B`` of the network input.
    :param name: the backbone's name, for error messages.
    :return: ``t`` with shape ``(B,)``.
    """
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name}: t must be a tensor of shape (B,), got {type(t).__name__}")
    if t.dim() == 0:
        t = t.expand(batch)
    elif t.dim() == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.shape != (batch,):
        raise ValueError(f"{name}: t must have shape (B,) = ({batch},), got {tuple(t.shape)}")
    return t


#: The label that stands for "no context" (the null token of classifier-free training).
NULL_LABEL = -1


class ContextEmbedding(nn.Module):
    """Embedding of a conditioning context, added to a backbone's time embedding.

    Two kinds of context, fixed at construction:

    * class labels (``num_classes``): an integer tensor of shape ``(B,)`` with values in
      ``0..num_classes-1``, embedded by a table of ``num_classes + 1`` rows, the last being
      the learned null token; the label :data:`NULL_LABEL` (``-1``) selects it;
    * float vectors (``context_dim``): shape ``(B, context_dim)``, embedded by a linear map; a
      row holding NaN selects a learned null vector instead.

    ``context=None`` selects the null token for the whole batch (an unconditional call), so a
    model trained with context dropout (classifier-free training) is also an unconditional
    model.

    :param dim: embedding size ``E`` (that of the time embedding it is added to).
    :param num_classes: number of class labels, or ``None``.
    :param context_dim: size of a float context vector, or ``None``. Exactly one of
        ``num_classes`` and ``context_dim`` is given.
    """

    def __init__(self, dim: int, num_classes: int | None = None, context_dim: int | None = None):
        super().__init__()
        if (num_classes is None) == (context_dim is None):
            raise ValueError("give exactly one of num_classes and context_dim")
        self.dim = int(dim)
        self.num_classes = None if num_classes is None else int(num_classes)
        self.context_dim = None if context_dim is None else int(context_dim)
        if self.num_classes is not None:
            if self.num_classes < 1:
                raise ValueError(f"num_classes must be positive, got {num_classes}")
            self.table = nn.Embedding(self.num_classes + 1, self.dim)
        else:
            if self.context_dim < 1:
                raise ValueError(f"context_dim must be positive, got {context_dim}")
            self.linear = nn.Linear(self.context_dim, self.dim)
            self.null = nn.Parameter(torch.zeros(self.dim))

    def forward(self, context: torch.Tensor | None, batch: int) -> torch.Tensor:
        """:param context: labels ``(B,)``, vectors ``(B, context_dim)``, or ``None``.

        :param batch: the batch size ``B``.
        :return: the embedding, shape ``(B, E)``.
        """
        if self.num_classes is not None:
            if context is None:
                labels = torch.full((batch,), self.num_classes, dtype=torch.long, device=self.table.weight.device)
            else:
                if not isinstance(context, torch.Tensor) or context.is_floating_point() or context.dtype == torch.bool:
                    raise ValueError("context: class labels must be an integer tensor of shape (B,)")
                if context.shape != (batch,):
                    raise ValueError(f"context: labels must have shape (B,) = ({batch},), got {tuple(context.shape)}")
                if ((context < NULL_LABEL) | (context >= self.num_classes)).any():
                    raise ValueError(f"context: labels must lie in 0..{self.num_classes - 1} (or {NULL_LABEL} for none)")
                labels = torch.where(context == NULL_LABEL, self.num_classes, context).long()
            return self.table(labels)
        if context is None:
            return self.null.expand(batch, self.dim)
        if not isinstance(context, torch.Tensor) or not context.is_floating_point():
            raise ValueError("context: a float context must be a floating-point tensor of shape (B, context_dim)")
        if context.shape != (batch, self.context_dim):
            raise ValueError(
                f"context: expected shape (B, context_dim) = ({batch}, {self.context_dim}), got {tuple(context.shape)}"
            )
        missing = torch.isnan(context).any(-1, keepdim=True)
        embedded = self.linear(torch.where(missing, torch.zeros_like(context), context).to(self.linear.weight.dtype))
        return torch.where(missing, self.null.to(embedded.dtype).expand_as(embedded), embedded)

    def extra_repr(self) -> str:
        kind = f"num_classes={self.num_classes}" if self.num_classes is not None else f"context_dim={self.context_dim}"
        return f"dim={self.dim}, {kind}"


def make_context_embedding(dim: int, num_classes=None, context_dim=None):
    """A :class:`ContextEmbedding`, or ``None`` when neither option is set (an unconditional backbone)."""
    if num_classes is None and context_dim is None:
        return None
    return ContextEmbedding(dim, num_classes, context_dim)


def check_no_context(context, name: str) -> None:
    """Raise ``ValueError`` when a context is given to an unconditional backbone."""
    if context is not None:
        raise ValueError(f"{name}: got a context, but the backbone was built without num_classes or context_dim")
