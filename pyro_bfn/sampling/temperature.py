"""Sampling temperature: every draw a sampler makes from the model, tempered.

With temperature :math:`T`, each distribution :math:`p` that a sampler draws from is replaced by
its tempered version :math:`p_T \\propto p^{1/T}` (the Boltzmann convention); ``T = 1`` is the
model itself (bit for bit the untempered code path), ``T < 1`` sharpens every draw and
:math:`T \\to 0` replaces every draw by its mode, which makes the sampler deterministic (at
``T = 0`` the first of tied modes; as :math:`T \\to 0` a uniform draw among them, as at ``t = 0``
for discretised data, whose output there is the symmetric prior guess). The draws
are the same for every data type and sampler:

* **from the output distribution** :math:`k \\sim p_O(\\cdot \\mid \\theta;\\, t)` (inside the
  receiver draw of every step, paper Sec. 2.5, and the final draw at ``t = 1``): for discrete data
  (Sec. 5.3) the categorical :math:`\\mathrm{softmax}(\\Psi)` becomes
  :math:`\\mathrm{softmax}(\\Psi/T)`; for discretised data (Sec. 4) the bin masses :math:`p_O(k)`
  become :math:`p_O(k)^{1/T}/Z` (logits :math:`\\ln p_O(k)/T`); for continuous data (Sec. 3) the
  output is the point mass :math:`\\delta(x - \\hat x)`, which tempering leaves as it is;
* **from the sender** :math:`y \\sim p_S(\\cdot \\mid k;\\, \\alpha) = N(m, V)` (continuous and
  discretised data :math:`m = k`, :math:`V = 1/\\alpha`, Sec. 3.1; discrete data :math:`m =
  \\alpha(K e_k - 1)`, :math:`V = \\alpha K I`, Sec. 5.1): :math:`N(m, V)^{1/T} \\propto N(m, T V)`,
  drawn as :math:`m + \\sqrt T\\,(y - m)`;
* **the Gaussian noise of the SDE solver** (``"sde2"``, :mod:`pyro_bfn.sampling.solvers`):
  :math:`\\epsilon \\sim N(0, I)` becomes :math:`\\sqrt T\\,\\epsilon`.

So ``"ancestral"`` is tempered at every step and in its final draw; ``"ode1"`` and ``"ode2"``
only in their first (ancestral) step and their final draw (their ODE steps draw nothing);
``"sde2"`` there and in the noise of every step; SMC inpainting in its receiver draws and final
draw. What conditions on data is not a draw from the model and is not tempered: the draws of the
known part's Bayesian flow (inpainting by replacement) and the known part's sender draws and
resampling of SMC. ``final="mode"`` is the :math:`T \\to 0` limit of the final draw alone.
"""

from __future__ import annotations

import math

import torch

from ..distributions import CategoricalOutput, DiscretisedOutput, PointMassOutput

__all__ = ["check_temperature", "tempered_noise", "tempered_output_draw", "tempered_sender_draw"]


def check_temperature(temperature) -> float:
    """``float(temperature)`` if it is a finite number ``>= 0`` (not a ``bool``), else a
    :class:`ValueError` naming it."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature) \
            or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (1: the model's own draws), got {temperature!r}")
    return float(temperature)


def tempered_output_draw(output, temperature: float = 1.0) -> torch.Tensor:
    """A draw from the tempered output distribution :math:`p_O^{1/T}/Z` (module docstring):
    ``output.sample()`` at ``T = 1``, ``output.mode`` at ``T = 0``.

    :param output: a :class:`~pyro_bfn.distributions.CategoricalOutput` (class indices),
        :class:`~pyro_bfn.distributions.DiscretisedOutput` (bin centres) or
        :class:`~pyro_bfn.distributions.PointMassOutput`, batch shape ``(B, *data_shape)``.
    :returns: a draw of shape ``(B, *data_shape)``.
    """
    if temperature == 1:
        return output.sample()
    if temperature == 0 or isinstance(output, PointMassOutput):
        return output.mode
    if isinstance(output, (CategoricalOutput, DiscretisedOutput)):
        if temperature < torch.finfo(output.logits.dtype).tiny:  # 1/T overflows: the limit, the mode
            return output.mode
        # the largest logit at 0 first, so that a tiny T cannot make every logit -inf
        logits = output.logits - output.logits.amax(-1, keepdim=True)
        index = torch.distributions.Categorical(logits=logits / temperature).sample()
        return output.centres[index] if isinstance(output, DiscretisedOutput) else index
    raise ValueError(f"temperature does not know the output distribution {type(output).__name__}")


def tempered_sender_draw(sender, temperature: float = 1.0) -> torch.Tensor:
    """A draw from the tempered Gaussian sender :math:`N(m, T V)`: :math:`m + \\sqrt T (y - m)`
    for :math:`y \\sim p_S` (``sender.sample()`` itself at ``T = 1``, the mean at ``T = 0``)."""
    if temperature == 1:
        return sender.sample()
    mean = sender.mean
    if temperature == 0:
        return mean
    return mean + math.sqrt(temperature) * (sender.sample() - mean)


def tempered_noise(like: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Standard normal noise of the shape of ``like``, times :math:`\\sqrt T`."""
    noise = torch.randn_like(like)
    return noise if temperature == 1 else math.sqrt(temperature) * noise
