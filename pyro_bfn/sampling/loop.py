"""The n-step generative loop of a BFN, written once (paper Sec. 2.5 and the sample-generation
pseudocode of Secs. 3-5):

* :math:`\\theta_0` is the prior input distribution;
* for :math:`i = 1, \\dots, n`: :math:`y_i \\sim p_R(\\cdot \\mid \\theta_{i-1};\\, t_{i-1}, \\alpha_i)`,
  then the Bayesian update :math:`\\theta_i = h(\\theta_{i-1}, y_i, \\alpha_i)`;
* finally the output distribution :math:`p_O(\\cdot \\mid \\theta_n;\\, 1)`.

How :math:`y_i` is drawn is the caller's: the sampler draws :math:`k \\sim p_O` and then
:math:`y \\sim p_S(\\cdot \\mid k;\\, \\alpha_i)` (:func:`pyro_bfn.sampling.samplers.ancestral`); the Pyro model
:func:`pyro_bfn.infer.bfn_model` records a ``pyro.sample`` site of the receiver. The loop runs the
network, applies every one of the ``n`` Bayesian updates, and counts its network calls.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch

from .grid import TimeGrid
from .temperature import tempered_output_draw, tempered_sender_draw

__all__ = ["StepsResult", "receiver_draw", "report_step", "run_steps"]


def receiver_draw(data_type, output, accuracy, temperature: float = 1.0):
    """A draw of :math:`y \\sim p_R(\\cdot \\mid \\theta;\\, t, \\alpha)`: :math:`k \\sim p_O`, then
    :math:`y \\sim p_S(\\cdot \\mid k;\\, \\alpha)` (paper Sec. 2.5), shape of the sender's samples;
    both draws tempered at ``temperature`` :math:`\\ne 1` (:mod:`pyro_bfn.sampling.temperature`).

    :param data_type: the BFN's data type (its sender).
    :param output: the output distribution :math:`p_O(\\cdot \\mid \\theta;\\, t)`.
    :param accuracy: :math:`\\alpha`, broadcastable to the data.
    :param float temperature: :math:`T \\ge 0`.
    """
    # at T = 1 the tempered draws are output.sample() and sender.sample() themselves
    sender = data_type.sender(tempered_output_draw(output, temperature), accuracy, validate_args=False)
    return tempered_sender_draw(sender, temperature)


class StepsResult(NamedTuple):
    """What :func:`run_steps` ends with.

    :ivar input_distribution: :math:`\\theta_n`, batch shape ``(B, *data_shape)``.
    :ivar output: :math:`p_O(\\cdot \\mid \\theta_n;\\, 1)`, batch shape ``(B, *data_shape)``.
    :ivar int network_calls: the network evaluations made: ``n + 1``.
    """

    input_distribution: object
    output: object
    network_calls: int


def report_step(step: int, n_steps: int, t, input_distribution, output, progress=None, callback=None) -> None:
    """After update ``step`` of ``n_steps``: call ``progress(step, n_steps)`` and
    ``callback(info)`` (either may be ``None``), ``info`` a dict with keys ``"step"``,
    ``"n_steps"``, ``"t"`` (the time :math:`t_i` reached, a float), ``"input_distribution"``
    (:math:`\\theta_i`, batch shape ``(B, *data_shape)``) and ``"output"`` (the output
    distribution the step used, :math:`p_O(\\cdot \\mid \\theta_{i-1};\\, t_{i-1})`), in the
    spirit of k-diffusion's sampler callbacks."""
    if progress is not None:
        progress(step, n_steps)
    if callback is not None:
        callback({"step": step, "n_steps": n_steps, "t": t, "input_distribution": input_distribution, "output": output})


def run_steps(
    bfn,
    grid: TimeGrid,
    batch: int,
    draw: Callable,
    *,
    device=None,
    context=None,
    progress: Callable | None = None,
    callback: Callable | None = None,
    condition: Callable | None = None,
) -> StepsResult:
    """Run the ``grid.n_steps`` updates of ``batch`` examples from the prior, in ``bfn.dtype``.

    At step ``i`` (a tensor of shape ``(B,)``) the loop evaluates the output distribution
    :math:`p_O(\\cdot \\mid \\theta_{i-1};\\, t_{i-1})` and the accuracy :math:`\\alpha_i` (shape
    ``(B, 1, ..., 1)``), calls ``y = draw(step, output, accuracy)`` (``step`` the int ``i``; ``y``
    of the sender's shape), applies :math:`\\theta_i = h(\\theta_{i-1}, y, \\alpha_i)` and calls
    :func:`report_step`; after the last update it evaluates the output at ``t = 1``.

    :param bfn: the :class:`~pyro_bfn.bfn.BFN` (its data type, data shape, dtype and
        :meth:`~pyro_bfn.bfn.BFN.output_distribution`).
    :param TimeGrid grid: the times and steps.
    :param int batch: ``B``.
    :param callable draw: ``draw(step, output, accuracy) -> y``.
    :param device: where the input distributions live.
    :param context: conditioning of leading dimension ``B``, or ``None``.
    :param callable progress: optional ``progress(step, n_steps)``, called after each update.
    :param callable callback: optional ``callback(info)``, called after each update
        (:func:`report_step`).
    :param callable condition: optional ``condition(input_distribution, t_i) ->
        input_distribution``, applied after each update (e.g.
        :class:`~pyro_bfn.sampling.conditioning.Replacement`).
    """
    data_type, dtype = bfn.data_type, bfn.dtype
    shape = (batch,) + tuple(bfn.data_shape)
    input_distribution = data_type.prior(shape, dtype=dtype, device=device)
    network_calls = 0
    for step in grid.steps():
        i = torch.full((batch,), step, device=device)
        output = bfn.output_distribution(input_distribution, grid.start_time(i, dtype), context)
        network_calls += 1
        accuracy = grid.accuracy(data_type, i, shape, dtype)
        input_distribution = input_distribution.update(draw(step, output, accuracy), accuracy)
        if condition is not None:
            input_distribution = condition(input_distribution, step / grid.n_steps)
        report_step(step, grid.n_steps, step / grid.n_steps, input_distribution, output, progress, callback)
    output = bfn.output_distribution(input_distribution, torch.ones(batch, device=device, dtype=dtype), context)
    return StepsResult(input_distribution, output, (network_calls + 1) * getattr(bfn, "calls_per_evaluation", 1))
