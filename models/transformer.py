"""A non-causal (bidirectional) pre-LayerNorm Transformer backbone for sequences."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .layers import check_no_context, check_time, make_context_embedding, sinusoidal_positions

__all__ = ["Transformer", "TransformerBlock"]


class TransformerBlock(nn.Module):
    """Pre-LN block: ``x + attn(LN(x))`` then ``x + mlp(LN(x))`` with a GELU MLP.

    :param width: model width ``D`` (divisible by ``heads``).
    :param heads: attention heads.
    :param dropout: dropout on the attention weights and the residual branches.
    :param mlp_ratio: hidden width of the MLP is ``mlp_ratio * D``.
    """

    def __init__(self, width: int, heads: int, dropout: float = 0.0, mlp_ratio: int = 4):
        super().__init__()
        if width % heads:
            raise ValueError(f"Transformer: width ({width}) must be divisible by heads ({heads})")
        self.heads = heads
        self.dropout = float(dropout)
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.attn_out = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.fc = nn.Linear(width, mlp_ratio * width)
        self.fc_out = nn.Linear(mlp_ratio * width, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """:param x: shape ``(B, L, D)``.

        :return: shape ``(B, L, D)``.
        """
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=False
        )
        x = x + self.drop(self.attn_out(a.transpose(1, 2).reshape(b, n, d)))
        x = x + self.drop(self.fc_out(F.gelu(self.fc(self.ln2(x)))))
        return x


class Transformer(nn.Module):
    """Non-causal pre-LN Transformer (GPT-2 style blocks, bidirectional attention).

    Input embedding: ``Linear(h) + P[:L] + Linear(2t - 1)`` with ``P`` fixed sinusoidal
    positions. After ``depth`` blocks and a final LayerNorm, the result is (with
    ``input_skip``) concatenated with the input embedding before the output layer
    (``2 * width -> out_features``), as in the paper's text8 network. Weights are initialised
    GPT-2 style (normal, std 0.02; residual output projections scaled by
    ``1 / sqrt(2 * depth)``).

    :param in_features: features ``F_in`` per position.
    :param out_features: features ``F_out`` per position.
    :param width: model width ``D``.
    :param depth: number of blocks.
    :param heads: attention heads.
    :param max_length: the longest sequence accepted (size of the position table).
    :param dropout: dropout on the attention weights and residual branches.
    :param input_skip: concatenate the input embedding with the final LayerNorm output.
    :param mlp_ratio: MLP hidden width is ``mlp_ratio * width``.
    :param num_classes: condition on a class label (``context`` of shape ``(B,)``): a learned
        label embedding is added, like the time embedding, at every position
        (:class:`~pyro_bfn.models.layers.ContextEmbedding`).
    :param context_dim: condition on a float vector (``context`` of shape ``(B, context_dim)``)
        instead, through a linear embedding.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        width: int = 256,
        depth: int = 4,
        heads: int = 4,
        max_length: int = 256,
        dropout: float = 0.0,
        input_skip: bool = True,
        mlp_ratio: int = 4,
        num_classes: int | None = None,
        context_dim: int | None = None,
    ):
        super().__init__()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.max_length = int(max_length)
        self.input_skip = bool(input_skip)
        self.input_embedding = nn.Linear(in_features, width)
        self.time_embedding = nn.Linear(1, width)
        self.context_embedding = make_context_embedding(width, num_classes, context_dim)
        self.register_buffer("positions", sinusoidal_positions(max_length, width), persistent=False)
        self.blocks = nn.ModuleList(TransformerBlock(width, heads, dropout, mlp_ratio) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width)
        self.output = nn.Linear(2 * width if input_skip else width, out_features)
        self._init_weights(depth)
        if self.context_embedding is not None and self.context_embedding.num_classes is not None:
            nn.init.normal_(self.context_embedding.table.weight, mean=0.0, std=0.02)

    @torch.no_grad()
    def _init_weights(self, depth: int) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)
                nn.init.zeros_(m.bias)
        for blk in self.blocks:
            for lin in (blk.attn_out, blk.fc_out):
                nn.init.normal_(lin.weight, mean=0.0, std=0.02 / math.sqrt(2 * max(depth, 1)))

    def forward(self, h: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the network.

        :param h: network input, shape ``(B, L, F_in)`` with ``L <= max_length``.
        :param t: times in [0, 1], shape ``(B,)``.
        :param context: labels ``(B,)`` or vectors ``(B, context_dim)`` for a conditional
            Transformer (``None``: the null context); must be ``None`` for an unconditional one.
        :return: output, shape ``(B, L, F_out)``.
        """
        if h.dim() != 3 or h.shape[2] != self.in_features:
            raise ValueError(
                f"Transformer: expected input of shape (B, L, {self.in_features}), got {tuple(h.shape)}"
            )
        b, n, _ = h.shape
        if n > self.max_length:
            raise ValueError(f"Transformer: sequence length {n} exceeds max_length {self.max_length}")
        t = check_time(t, b, "Transformer")
        x_in = (
            self.input_embedding(h)
            + self.positions[:n].to(h.dtype)
            + self.time_embedding((2 * t - 1).to(h.dtype)[:, None])[:, None, :]
        )
        if self.context_embedding is None:
            check_no_context(context, "Transformer")
        else:
            x_in = x_in + self.context_embedding(context, b).to(x_in.dtype)[:, None, :]
        x = x_in
        for blk in self.blocks:
            x = blk(x)
        x = self.ln_f(x)
        if self.input_skip:
            x = torch.cat([x, x_in.to(x.dtype)], dim=-1)
        return self.output(x)
