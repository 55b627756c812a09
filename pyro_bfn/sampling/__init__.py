"""Sampling: the time grid, the n-step update loop and the registry of samplers.

* :mod:`pyro_bfn.sampling.grid`: :class:`~pyro_bfn.sampling.grid.TimeGrid` owns the n-step times
  :math:`t_{i-1} = (i-1)/n` and the step accuracies :math:`\\alpha_i`;
  :func:`~pyro_bfn.sampling.grid.draw_times` and
  :meth:`~pyro_bfn.sampling.grid.TimeGrid.draw_steps` are the random times and steps of the
  losses.
* :mod:`pyro_bfn.sampling.loop`: :func:`~pyro_bfn.sampling.loop.run_steps` is the n-step
  generative loop, shared by the samplers and by the Pyro model :func:`pyro_bfn.infer.bfn_model`.
* :mod:`pyro_bfn.sampling.registry`: :func:`~pyro_bfn.sampling.registry.register_sampler`,
  :func:`~pyro_bfn.sampling.registry.get_sampler` and
  :func:`~pyro_bfn.sampling.registry.list_samplers`, the registry of samplers.
* :mod:`pyro_bfn.sampling.samplers`: the registered samplers; ``"ancestral"``
  (:func:`~pyro_bfn.sampling.samplers.ancestral`) is the paper's.

Every name above is importable from ``pyro_bfn.sampling``.
"""

from .grid import TimeGrid, draw_times
from .loop import StepsResult, run_steps
from .registry import SampleResult, get_sampler, list_samplers, register_sampler
from .samplers import ancestral  # registers the paper's sampler

__all__ = [
    "SampleResult",
    "StepsResult",
    "TimeGrid",
    "ancestral",
    "draw_times",
    "get_sampler",
    "list_samplers",
    "register_sampler",
    "run_steps",
]
