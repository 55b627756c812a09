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
* :mod:`pyro_bfn.sampling.solvers`: the ODE and SDE solvers of BFN-Solver, registered as
  ``"ode1"``, ``"ode2"`` and ``"sde2"``.
* :mod:`pyro_bfn.sampling.guidance`: classifier-free guidance,
  :class:`~pyro_bfn.sampling.guidance.ClassifierFreeGuidance`;
  :mod:`pyro_bfn.sampling.gradient_guidance`: gradient (classifier) guidance by a log-score,
  :class:`~pyro_bfn.sampling.gradient_guidance.GradientGuidance`.
* :mod:`pyro_bfn.sampling.temperature`: the sampling temperature, every draw from the model
  tempered (:func:`~pyro_bfn.sampling.temperature.tempered_output_draw`,
  :func:`~pyro_bfn.sampling.temperature.tempered_sender_draw`).
* :mod:`pyro_bfn.sampling.api`: :func:`~pyro_bfn.sampling.api.sample`, what
  :meth:`BFN.sample <pyro_bfn.bfn.BFN.sample>` does with its arguments.
* :mod:`pyro_bfn.sampling.conditioning`: inpainting by replacement
  (:class:`~pyro_bfn.sampling.conditioning.Replacement`) and by sequential Monte Carlo
  (:func:`~pyro_bfn.sampling.conditioning.smc_inpaint`).

Every name above is importable from ``pyro_bfn.sampling``.
"""

from .grid import TimeGrid, draw_times
from .loop import StepsResult, report_step, run_steps
from .registry import SampleResult, get_sampler, list_samplers, register_sampler
from .samplers import ancestral  # registers the paper's sampler
from .solvers import GaussianView, ode1, ode2, sde2, solve  # registers the solvers
from .conditioning import Replacement, SMCResult, smc_inpaint
from .guidance import ClassifierFreeGuidance
from .gradient_guidance import GradientGuidance
from .temperature import check_temperature, tempered_output_draw, tempered_sender_draw
from . import api

__all__ = [
    "ClassifierFreeGuidance",
    "GaussianView",
    "GradientGuidance",
    "Replacement",
    "SMCResult",
    "SampleResult",
    "StepsResult",
    "TimeGrid",
    "ancestral",
    "api",
    "check_temperature",
    "draw_times",
    "get_sampler",
    "list_samplers",
    "ode1",
    "ode2",
    "register_sampler",
    "report_step",
    "run_steps",
    "sde2",
    "smc_inpaint",
    "solve",
    "tempered_output_draw",
    "tempered_sender_draw",
]
