"""The time grid of an n-step BFN and the random times and steps of its losses.

An ``n``-step process runs step :math:`i = 1, \\dots, n` from :math:`t_{i-1}` to :math:`t_i`, with
:math:`t_i = i/n`: the network sees :math:`\\theta_{i-1}` at :math:`t_{i-1} = (i-1)/n` and the
sender reveals the accuracy :math:`\\alpha_i = \\beta(t_i) - \\beta(t_{i-1})` (paper Secs. 2.3-2.5,
3.4). :class:`TimeGrid` owns these times; the accuracies are the closed forms of the data type's
schedule (:meth:`pyro_bfn.schedules.AccuracySchedule.step_accuracy`).

The losses are expectations over a random time, estimated from one draw per example:
:math:`t \\sim U(0, 1)` for :math:`L^\\infty` (:func:`draw_times`) and :math:`i \\sim U\\{1..n\\}` for
:math:`L^n` (:meth:`TimeGrid.draw_steps`) (paper Secs. 2.5, 3.10-3.11). Both take an optional
stratum: with ``strata = R`` equal parts of [0, 1), the draw of stratum ``r`` is
:math:`u = (r + v)/R`, :math:`v \\sim U(0, 1)`, and the step :math:`i = \\lfloor n u \\rfloor + 1`;
averaging one draw of each stratum is an unbiased estimate with a smaller variance (used by
:class:`pyro_bfn.infer.BFNLikelihood`).
"""

from __future__ import annotations

import torch

from ..checks import check_integer

__all__ = ["TimeGrid", "draw_times"]


def _stratified_uniform(batch: int, stratum, strata: int, device) -> torch.Tensor:
    """:math:`u = (r + v)/R`, :math:`v \\sim U(0, 1)`, in float64, shape ``(batch,)``; ``stratum``
    is an int or a tensor of shape ``(batch,)``."""
    return (stratum + torch.rand(batch, device=device, dtype=torch.float64)) / strata


def draw_times(batch: int, *, device=None, dtype=None, stratum=0, strata: int = 1) -> torch.Tensor:
    """Times of the continuous-time loss :math:`L^\\infty`: :math:`t \\sim U(0, 1)`, shape
    ``(batch,)`` in ``dtype``; with ``strata > 1``, :math:`t \\sim U(r/R, (r+1)/R)` for
    ``r = stratum`` (an int, or a tensor of shape ``(batch,)``) and ``R = strata``."""
    if strata == 1:
        return torch.rand(batch, device=device, dtype=dtype)
    return _stratified_uniform(batch, stratum, strata, device).to(dtype)


class TimeGrid:
    """The uniform grid :math:`t_i = i/n`, :math:`i = 0, \\dots, n`, of an ``n``-step BFN.

    :param int n_steps: ``n``.
    """

    def __init__(self, n_steps: int):
        self.n_steps = check_integer("n_steps", n_steps)

    def __repr__(self):
        return f"TimeGrid(n_steps={self.n_steps})"

    def steps(self) -> range:
        """The step indices ``1..n``."""
        return range(1, self.n_steps + 1)

    def start_time(self, i: torch.Tensor, dtype=None) -> torch.Tensor:
        """:math:`t_{i-1} = (i-1)/n`, the time at which step ``i`` runs the network.

        :param torch.Tensor i: integer step indices in ``1..n``, any shape.
        :param dtype: floating dtype of the result (default ``torch.get_default_dtype()``).
        :returns: a tensor of the shape of ``i``.
        """
        return (i - 1).to(dtype or torch.get_default_dtype()) / self.n_steps

    def times(self, dtype=None, device=None) -> torch.Tensor:
        """All times :math:`(t_0, \\dots, t_n)`, shape ``(n + 1,)``."""
        return self.start_time(torch.arange(1, self.n_steps + 2, device=device), dtype)

    def accuracy(self, data_type, i: torch.Tensor, like, dtype) -> torch.Tensor:
        """:math:`\\alpha_i = \\beta(t_i) - \\beta(t_{i-1})` of ``data_type``'s schedule in ``dtype``,
        for step indices ``i`` of shape ``(B,)``, broadcasting over ``like`` (data or its shape,
        ``(B, *data_shape)``)."""
        return data_type.step_accuracy(i, self.n_steps, like, dtype)

    def draw_steps(self, batch: int, *, device=None, stratum=0, strata: int = 1) -> torch.Tensor:
        """Steps of the n-step loss :math:`L^n`: :math:`i \\sim U\\{1..n\\}`, shape ``(batch,)``
        (int64); with ``strata > 1``, :math:`i = \\lfloor n u \\rfloor + 1` for the stratified
        :math:`u \\sim U(r/R, (r+1)/R)` (see :func:`draw_times`)."""
        if strata == 1:
            return torch.randint(1, self.n_steps + 1, (batch,), device=device)
        u = _stratified_uniform(batch, stratum, strata, device)
        return (u * self.n_steps).floor().long().clamp(max=self.n_steps - 1) + 1
