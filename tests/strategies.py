"""Shared hypothesis strategies for the pyro-bfn tests.

Stable, general building blocks (other test modules import them):

* :func:`batch_shapes` -- ``torch.Size`` of rank 0-3 (dims 1-4 by default);
* :func:`sample_shapes` -- ``torch.Size`` of rank 0-2;
* :func:`accuracies` -- positive accuracies spread log-uniformly over many orders of
  magnitude (default 1e-8..1e8), the ends included;
* :func:`sigma_1s` -- the continuous schedule's ``sigma_1`` in [1e-4, 0.9];
* :func:`beta_1s` -- the discrete schedule's ``beta_1`` in [1e-3, 1e3];
* :func:`times` -- ``t`` in [0, 1] with the ends and values near them over-represented;
* :func:`num_bins` -- ``K`` in 2..256 (the ends and powers of two over-represented);
* :func:`reals` -- finite real data;
* :func:`tensors` -- a tensor of a given shape drawn elementwise from a float strategy.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import strategies as st

__all__ = [
    "accuracies",
    "batch_shapes",
    "beta_1s",
    "broadcastable_shapes",
    "num_bins",
    "reals",
    "sample_shapes",
    "sigma_1s",
    "tensors",
    "times",
]


def batch_shapes(min_rank: int = 0, max_rank: int = 3, max_side: int = 4):
    """``torch.Size`` of rank ``min_rank..max_rank`` with sides in ``1..max_side``."""
    return st.lists(st.integers(1, max_side), min_size=min_rank, max_size=max_rank).map(torch.Size)


def sample_shapes(max_rank: int = 2, max_side: int = 3):
    """``torch.Size`` of rank 0..``max_rank`` for ``sample(sample_shape)``."""
    return batch_shapes(0, max_rank, max_side)


@st.composite
def broadcastable_shapes(draw, shape: torch.Size):
    """A shape that broadcasts to ``shape``: a suffix of it with some sides set to 1."""
    rank = draw(st.integers(0, len(shape)))
    suffix = list(shape[len(shape) - rank :])
    return torch.Size([1 if draw(st.booleans()) else side for side in suffix])


def log_uniform(low: float, high: float):
    """Floats spread evenly in log space over [low, high], the ends included."""
    return st.one_of(
        st.sampled_from([low, high]),
        st.floats(math.log10(low), math.log10(high)).map(lambda e: min(max(10.0**e, low), high)),
    )


def accuracies(low: float = 1e-8, high: float = 1e8):
    """Accuracies (or precisions) alpha > 0 over many orders of magnitude."""
    return log_uniform(low, high)


def sigma_1s(low: float = 1e-4, high: float = 0.9):
    """The continuous schedule's sigma_1 in [low, high] (log-uniform, the ends and the paper's values)."""
    return st.one_of(st.sampled_from([low, high, 1e-3, math.sqrt(1e-3), 0.02]), log_uniform(low, high))


def beta_1s(low: float = 1e-3, high: float = 1e3):
    """The discrete schedule's beta_1 (the paper uses 9 and 0.5625)."""
    return st.one_of(st.sampled_from([low, high, 9.0, 0.5625]), log_uniform(low, high))


def times(low: float = 0.0, high: float = 1.0):
    """Times t in [low, high]; values near 0 and 1 over-represented."""
    near = st.floats(-12, -1).map(lambda e: 10.0**e)
    return st.one_of(
        st.sampled_from([low, high]),
        st.floats(low, high),
        near.map(lambda d: low + d * (high - low)),
        near.map(lambda d: high - d * (high - low)),
    ).filter(lambda t: low <= t <= high)


def num_bins(low: int = 2, high: int = 256):
    """Bin counts K in low..high (ends and powers of two over-represented)."""
    special = [k for k in (2, 3, 16, 255, 256) if low <= k <= high]
    return st.one_of(st.sampled_from(special + [low, high]), st.integers(low, high))


def reals(bound: float = 10.0):
    """Finite reals in [-bound, bound]."""
    return st.floats(-bound, bound, allow_nan=False, allow_infinity=False)


@st.composite
def tensors(draw, shape, elements=None, dtype=torch.float64):
    """A tensor of ``shape`` whose entries are drawn from ``elements`` (default :func:`reals`)."""
    elements = reals() if elements is None else elements
    size = int(np.prod(tuple(shape), dtype=np.int64))
    values = draw(st.lists(elements, min_size=size, max_size=size))
    return torch.tensor(values, dtype=dtype).reshape(tuple(shape))
