"""The samplers of the registry (:mod:`pyro_bfn.sampling.registry`); each cites its algorithm.

``"ancestral"`` (:func:`ancestral`): the paper's sampler, ancestral sampling of the n-step
generative process (Graves et al. 2023, Sec. 2.5 and the sample-generation algorithms of
Secs. 3-5). From the prior, for :math:`i = 1, \\dots, n`: run the network at :math:`t_{i-1}`, draw
:math:`k \\sim p_O(\\cdot \\mid \\theta_{i-1};\\, t_{i-1})`, draw
:math:`y \\sim p_S(\\cdot \\mid k;\\, \\alpha_i)` (together, a draw from the receiver
:math:`p_R(\\cdot \\mid \\theta_{i-1};\\, t_{i-1}, \\alpha_i)`) and apply the Bayesian update; after
all ``n`` updates, return a draw from :math:`p_O(\\cdot \\mid \\theta_n;\\, 1)`, or its mode.
"""

from __future__ import annotations

from ..checks import check_integer
from .grid import TimeGrid
from .loop import receiver_draw, run_steps
from .registry import SampleResult, register_sampler
from .temperature import tempered_output_draw

__all__ = ["ancestral"]


@register_sampler("ancestral")
def ancestral(
    bfn, num_samples: int, grid: TimeGrid, *, context=None, mode: bool = False, progress=None, device=None,
    callback=None, condition=None, temperature: float = 1.0,
) -> SampleResult:
    """Draw ``num_samples`` examples by ancestral sampling on ``grid`` (paper Sec. 2.5; see the
    module docstring): ``n + 1`` network calls for ``n = grid.n_steps``.

    :param bfn: the :class:`~pyro_bfn.bfn.BFN`.
    :param int num_samples: ``B``.
    :param TimeGrid grid: the ``n`` steps.
    :param context: ``None``, or conditioning of leading dimension ``B``.
    :param bool mode: return the mode of :math:`p_O(\\cdot \\mid \\theta_n;\\, 1)` instead of a draw.
    :param progress: optional ``progress(step, n_steps)``, called after each update.
    :param callback: optional ``callback(info)``, called after each update
        (:func:`~pyro_bfn.sampling.loop.report_step`).
    :param condition: optional ``condition(input_distribution, t)`` applied after each update
        (:func:`~pyro_bfn.sampling.loop.run_steps`; e.g. inpainting).
    :param float temperature: :math:`T \\ge 0`, tempers every draw from the receiver and the
        final draw (:mod:`pyro_bfn.sampling.temperature`); 1: the model's own.
    :param device: default: the device of ``bfn``'s parameters.
    :returns: :class:`~pyro_bfn.sampling.registry.SampleResult` with samples of shape
        ``(B, *bfn.data_shape)``.
    """
    check_integer("num_samples", num_samples)
    if device is None:
        device = next(bfn.parameters()).device
    data_type = bfn.data_type

    def draw(step, output, accuracy):
        return receiver_draw(data_type, output, accuracy, temperature)

    result = run_steps(bfn, grid, num_samples, draw, device=device, context=context, progress=progress, callback=callback,
        condition=condition,
    )
    samples = result.output.mode if mode else tempered_output_draw(result.output, temperature)
    return SampleResult(samples, result.network_calls)
