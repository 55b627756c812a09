"""The registry of BFN samplers.

A sampler is a function with the signature

.. code-block:: python

    sampler(bfn, num_samples, grid, *, context=None, mode=False, progress=None, device=None,
            callback=None, condition=None, temperature=1.0) -> SampleResult

that draws ``num_samples`` examples of shape ``bfn.data_shape`` from a
:class:`~pyro_bfn.bfn.BFN` on the :class:`~pyro_bfn.sampling.grid.TimeGrid` ``grid``. ``context`` is
``None`` or conditioning of leading dimension ``num_samples`` (see
:meth:`pyro_bfn.bfn.BFN.check_context`), ``mode`` returns the mode of the last output
distribution instead of a draw, ``progress(step, n_steps)`` is called after each update, and
``device`` defaults to that of the BFN's parameters, ``callback(info)`` is called after each
update (:func:`~pyro_bfn.sampling.loop.report_step`) and ``condition(input_distribution, t)``
is applied after each update (inpainting, :mod:`pyro_bfn.sampling.conditioning`) and
``temperature`` tempers every draw from the model (:mod:`pyro_bfn.sampling.temperature`;
:meth:`BFN.sample <pyro_bfn.bfn.BFN.sample>` passes it only when it is not 1, so a sampler
without tempered draws may leave it out). ``bfn`` may
be a view with ``calls_per_evaluation = 2`` (classifier-free guidance), which the count of
network calls includes. A sampler runs under the caller's autograd
mode (:meth:`BFN.sample <pyro_bfn.bfn.BFN.sample>` runs it under ``torch.inference_mode``).
Each registered sampler cites the algorithm it implements.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch

__all__ = ["SampleResult", "get_sampler", "list_samplers", "register_sampler"]

_SAMPLERS: dict = {}


class SampleResult(NamedTuple):
    """What a sampler returns.

    :ivar torch.Tensor samples: shape ``(num_samples, *data_shape)``: floats for continuous
        data, bin centres for discretised data, class indices for discrete data.
    :ivar int network_calls: the network evaluations the sampler made (each over the whole
        batch).
    """

    samples: torch.Tensor
    network_calls: int


def register_sampler(name: str) -> Callable:
    """Decorator that registers a sampler under ``name`` (a name may be registered once)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a sampler's name must be a non-empty string, got {name!r}")

    def register(sampler: Callable) -> Callable:
        if name in _SAMPLERS:
            raise ValueError(f"a sampler named {name!r} is already registered")
        _SAMPLERS[name] = sampler
        return sampler

    return register


def get_sampler(name: str) -> Callable:
    """The sampler registered under ``name``; a :class:`ValueError` listing the known names
    for any other."""
    try:
        return _SAMPLERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown sampler {name!r}; known samplers: {', '.join(list_samplers())}") from None


def list_samplers() -> list:
    """The names of the registered samplers, sorted."""
    return sorted(_SAMPLERS)
