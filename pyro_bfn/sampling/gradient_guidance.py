"""Gradient (classifier) guidance at sampling time (Dhariwal & Nichol 2021, Sec. 4, carried over
to the Bayesian flow).

A differentiable log-score :math:`\\ln r(\\theta, t)` of the output distribution, e.g. a
classifier's :math:`\\ln p(c \\mid E_{p_O}[x])`, steers every network evaluation by its gradient
:math:`g = \\nabla_z \\ln r` with respect to the state :math:`z` of the input distribution
:math:`\\theta` (the means :math:`\\mu` of continuous and discretised data, the logits of
discrete data), taken through the network, at guidance scale :math:`s`:

* continuous and discretised data: the flow is :math:`\\mu \\sim N(\\gamma_t x,\\,
  \\gamma_t(1-\\gamma_t))` (paper Sec. 3.3), so by Tweedie's formula the data prediction is
  :math:`\\hat x = (\\mu + \\gamma_t(1-\\gamma_t)\\nabla_\\mu \\ln p(\\mu))/\\gamma_t`. Adding
  :math:`s\\, g` to the score, as classifier guidance does, moves it to

  .. math:: \\hat x_s = \\hat x + s\\,(1-\\gamma_t)\\, g = \\hat x + \\frac{s}{\\rho}\\, g,

  :math:`\\rho = 1 + \\beta(t)` the input precision (paper Eq. 77, so :math:`1-\\gamma_t = 1/\\rho`).
  The point-mass prediction of continuous data is shifted (then clipped again); the discretised
  output's mean :math:`\\mu_\\epsilon`-location is shifted, its scale kept.
* discrete data: the output probabilities are tilted by the first-order expansion of
  :math:`r^s` around :math:`\\theta` (classifier guidance for discrete states, Nisonoff et al.
  2024), a shift of the logits,

  .. math:: \\ln p_{O,s}(k \\mid \\theta;\\, t) = \\ln p_O(k \\mid \\theta;\\, t) + s\\, g_k
      + \\text{const},

  :math:`g` the gradient with respect to the logits of :math:`\\theta`, shape
  ``(B, *data_shape, K)``.

Scale ``0`` leaves every output as it is, bit for bit (and computes no gradient). Each
evaluation runs the network once, with autograd on; :attr:`calls_per_evaluation` stays 1.
"""

from __future__ import annotations

import torch

from ..checks import check_finite_number
from ..distributions import CategoricalInput, CategoricalOutput, DiscretisedOutput, NormalInput, PointMassOutput

__all__ = ["GradientGuidance", "check_log_score", "shift_output"]


def check_log_score(log_score, scale):
    """One clear :class:`ValueError` for a bad ``log_score`` / ``scale`` pair."""
    if not callable(log_score):
        raise ValueError(f"log_score must be a callable log_score(output, t) -> (B,), got {type(log_score).__name__}")
    check_finite_number("log_score_scale", scale)


def _state_and_rebuild(input_distribution):
    """The differentiable state :math:`z` of ``input_distribution`` (a leaf tensor) and the
    input distribution rebuilt from it."""
    if isinstance(input_distribution, NormalInput):
        z = input_distribution.loc.detach().clone().requires_grad_()
        return z, NormalInput(z, input_distribution.precision.detach().clone(), validate_args=False)
    if isinstance(input_distribution, CategoricalInput):
        z = input_distribution.logits.detach().clone().requires_grad_()
        return z, CategoricalInput.from_log_probs(torch.log_softmax(z, -1), validate_args=False)
    raise ValueError(f"gradient guidance does not know the input distribution {type(input_distribution).__name__}")


def shift_output(output, gradient, precision, scale: float, clip=None):
    """The guided output of ``output`` given the log-score gradient ``gradient`` (the shape of
    the state: ``(B, *data_shape)``, or ``(B, *data_shape, K)`` for discrete data) and the input
    precision :math:`\\rho` (``(B, *data_shape)``, unused for discrete data); module docstring."""
    if isinstance(output, CategoricalOutput):
        return CategoricalOutput.from_log_probs(torch.log_softmax(output.logits + scale * gradient, -1))
    if isinstance(output, PointMassOutput):
        x_hat = output.x_hat + scale * gradient / precision
        return PointMassOutput(x_hat if clip is None else x_hat.clamp(*clip))
    if isinstance(output, DiscretisedOutput):
        return DiscretisedOutput(output.loc + scale * gradient / precision, output.scale, output.num_bins)
    raise ValueError(f"gradient guidance does not know the output distribution {type(output).__name__}")


class GradientGuidance:
    """A :class:`~pyro_bfn.bfn.BFN` seen by a sampler with gradient guidance: its
    :meth:`output_distribution` is the guided one (module docstring); everything else is the
    BFN's.

    :param bfn: the :class:`~pyro_bfn.bfn.BFN` (or another guided view of it).
    :param callable log_score: ``log_score(output, t) -> (B,)``, differentiable in the output
        distribution's parameters (``output`` of batch shape ``(B, *data_shape)``, ``t`` of
        shape ``(B,)``), e.g. ``lambda out, t: classifier(out.mean).log_softmax(-1)[:, c]``.
    :param float scale: the guidance scale :math:`s`.
    """

    calls_per_evaluation = 1

    def __init__(self, bfn, log_score, scale: float):
        check_log_score(log_score, scale)
        self.bfn, self.log_score, self.scale = bfn, log_score, float(scale)
        self.calls_per_evaluation = getattr(bfn, "calls_per_evaluation", 1)

    def __getattr__(self, name):
        return getattr(self.bfn, name)

    def gradient(self, input_distribution, t, context=None):
        """``(g, output)``: :math:`g = \\nabla_z \\ln r` at ``input_distribution`` (batch shape
        ``(B, *data_shape)``) and times ``t`` ``(B,)``, taken through the network (autograd on
        even inside ``torch.inference_mode``), and the unguided output it was taken at."""
        with torch.inference_mode(False), torch.enable_grad():
            z, theta = _state_and_rebuild(input_distribution)
            output = self.bfn.output_distribution(theta, t.clone(), None if context is None else context.clone())
            score = self.log_score(output, t.clone())
            if score.shape != (z.shape[0],):
                raise ValueError(f"log_score must return shape ({z.shape[0]},), got {tuple(score.shape)}")
            (gradient,) = torch.autograd.grad(score.sum(), z)
        return gradient, output

    def output_distribution(self, input_distribution, t, context=None):
        """The guided :math:`p_O(\\cdot \\mid \\theta;\\, t)` (leading dimension ``B``)."""
        if self.scale == 0:
            return self.bfn.output_distribution(input_distribution, t, context)
        gradient, output = self.gradient(input_distribution, t, context)
        precision = getattr(input_distribution, "precision", None)
        return shift_output(output, gradient, precision, self.scale, getattr(self.bfn.data_type, "clip", None))
