"""Classifier-free guidance at sampling time (Ho & Salimans 2022), for BFNs trained with
``context_dropout`` (classifier-free training, :class:`~pyro_bfn.bfn.BFN`).

With guidance scale :math:`w`, every network evaluation runs the network twice, with the
context :math:`c` and with the null context :math:`\\varnothing`, and combines the two outputs
linearly in the network's output space,

.. math:: \\Psi_w = \\Psi(\\theta, t, \\varnothing) + w\\,\\big(\\Psi(\\theta, t, c) - \\Psi(\\theta, t, \\varnothing)\\big),

``w = 1`` being the conditional model, ``w = 0`` the unconditional one and ``w > 1`` the
guided one. The combination is taken where each data type's output is linear in the network
output: the logits of discrete data (the log-probabilities, up to a constant per variable that
the softmax removes), the data prediction :math:`\\hat x` of continuous data (linear in the
noise prediction :math:`\\hat\\epsilon`; clipped again after combining), and the mean and log scale
of discretised data (linear in :math:`\\mu_\\epsilon` and :math:`\\ln\\sigma_\\epsilon`).
"""

from __future__ import annotations

import torch

from ..distributions import CategoricalOutput, DiscretisedOutput, PointMassOutput

__all__ = ["ClassifierFreeGuidance", "combine_outputs"]


def combine_outputs(null, conditional, scale: float, clip=None):
    """The guided output distribution of the unconditional output ``null`` and the conditional
    output ``conditional`` (the same type and batch shape ``(B, *data_shape)``), at guidance
    ``scale`` (module docstring); ``clip = (x_min, x_max)`` for continuous data, or ``None``."""

    def mix(u, c):
        return u + scale * (c - u)

    if isinstance(null, CategoricalOutput):
        return CategoricalOutput.from_log_probs(torch.log_softmax(mix(null.logits, conditional.logits), -1))
    if isinstance(null, PointMassOutput):
        x_hat = mix(null.x_hat, conditional.x_hat)
        return PointMassOutput(x_hat if clip is None else x_hat.clamp(*clip))
    if isinstance(null, DiscretisedOutput):
        scale_ = mix(null.scale.log(), conditional.scale.log()).exp()
        return DiscretisedOutput(mix(null.loc, conditional.loc), scale_, null.num_bins)
    raise ValueError(f"classifier-free guidance does not know the output distribution {type(null).__name__}")


class ClassifierFreeGuidance:
    """A :class:`~pyro_bfn.bfn.BFN` seen by a sampler with classifier-free guidance: its
    :meth:`output_distribution` is the guided one (two network calls per evaluation,
    :attr:`calls_per_evaluation`); everything else is the BFN's.

    :param bfn: the conditional :class:`~pyro_bfn.bfn.BFN`.
    :param float scale: the guidance scale :math:`w`.
    """

    calls_per_evaluation = 2

    def __init__(self, bfn, scale: float):
        self.bfn, self.scale = bfn, float(scale)

    def __getattr__(self, name):
        return getattr(self.bfn, name)

    def output_distribution(self, input_distribution, t, context=None):
        """The guided :math:`p_O(\\cdot \\mid \\theta;\\, t)` given the context ``context`` (leading
        dimension ``B``)."""
        conditional = self.bfn.output_distribution(input_distribution, t, context)
        null = self.bfn.output_distribution(input_distribution, t, None)
        return combine_outputs(null, conditional, self.scale, getattr(self.bfn.data_type, "clip", None))
