"""A time-conditioned multi-layer perceptron backbone for flat (vector) inputs."""

from __future__ import annotations

import torch
from torch import nn

from .layers import SinusoidalTimeEmbedding, check_no_context, check_time, make_context_embedding

__all__ = ["MLP"]


class MLP(nn.Module):
    """Multi-layer perceptron on ``[h, sinusoid(t)]``.

    The time enters through a sinusoidal embedding of ``time_embedding_scale * t``, which is
    concatenated with the input before the first layer. ``depth`` hidden layers of width
    ``hidden`` with SiLU activations (and optional dropout) are followed by a linear output
    layer; with ``input_skip`` that layer also reads the input ``h`` (``hidden + F_in -> F_out``),
    so a per-variable identity-like map does not have to pass through the hidden bottleneck.

    :param in_features: size ``F_in`` of the input vector.
    :param out_features: size ``F_out`` of the output vector.
    :param hidden: width of the hidden layers.
    :param depth: number of hidden layers (>= 1).
    :param time_embedding_dim: size of the sinusoidal time embedding.
    :param dropout: dropout probability after each hidden activation.
    :param time_embedding_scale: the sinusoids are evaluated at ``time_embedding_scale * t``.
    :param input_skip: concatenate the input with the last hidden layer before the output layer.
    :param num_classes: condition on a class label (``context`` of shape ``(B,)``): a learned
        label embedding is added to the time embedding
        (:class:`~pyro_bfn.models.layers.ContextEmbedding`).
    :param context_dim: condition on a float vector (``context`` of shape ``(B, context_dim)``)
        instead, through a linear embedding added to the time embedding.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: int = 512,
        depth: int = 3,
        time_embedding_dim: int = 64,
        dropout: float = 0.0,
        time_embedding_scale: float = 1000.0,
        num_classes: int | None = None,
        context_dim: int | None = None,
        input_skip: bool = False,
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"MLP depth must be >= 1, got {depth}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.time_embedding = SinusoidalTimeEmbedding(time_embedding_dim, scale=time_embedding_scale)
        self.context_embedding = make_context_embedding(time_embedding_dim, num_classes, context_dim)
        layers: list[nn.Module] = []
        width = in_features + time_embedding_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        self.body = nn.Sequential(*layers)
        self.input_skip = bool(input_skip)
        self.output = nn.Linear(hidden + (in_features if self.input_skip else 0), out_features)

    def forward(self, h: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the network.

        :param h: network input, shape ``(B, F_in)``.
        :param t: times in [0, 1], shape ``(B,)``.
        :param context: labels ``(B,)`` or vectors ``(B, context_dim)`` for a conditional MLP
            (``None``: the null context); must be ``None`` for an unconditional one.
        :return: output, shape ``(B, F_out)``.
        """
        if h.dim() != 2 or h.shape[1] != self.in_features:
            raise ValueError(
                f"MLP: expected input of shape (B, {self.in_features}), got {tuple(h.shape)}"
            )
        t = check_time(t, h.shape[0], "MLP")
        emb = self.time_embedding(t)
        if self.context_embedding is None:
            check_no_context(context, "MLP")
        else:
            emb = emb + self.context_embedding(context, h.shape[0]).float()
        emb = emb.to(h.dtype)
        hidden = self.body(torch.cat([h, emb], dim=-1))
        if self.input_skip:
            hidden = torch.cat([hidden, h.to(hidden.dtype)], dim=-1)
        return self.output(hidden)
