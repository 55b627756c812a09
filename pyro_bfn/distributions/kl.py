"""KL divergences from the sender to the receiver, registered with
:func:`torch.distributions.kl.register_kl` on exact class pairs, and their continuous-time
limits.

The per-step loss of an n-step BFN is :math:`D_{KL}(p_S(\\cdot \\mid x;\\alpha)\\,\\|\\,
p_R(\\cdot \\mid \\theta; t, \\alpha))` (paper Sec. 2.5). What each registered KL computes:

==========================================  ======================================================
pair                                        computation
==========================================  ======================================================
NormalSender, NormalReceiver                closed form :math:`\\frac{\\alpha}{2}(x - \\hat x)^2`
NormalSender, DiscretisedReceiver           Gauss-Hermite quadrature of a 1-D integral (exact up to
                                            quadrature error; ``GAUSS_HERMITE_NODES`` nodes)
DiscreteSender, DiscreteReceiver, K = 2     Gauss-Hermite quadrature of a 1-D integral
DiscreteSender, DiscreteReceiver, K > 2     unbiased Monte Carlo estimate with
                                            ``receiver.kl_samples`` draws from the sender
==========================================  ======================================================

Both 1-D integrals have the form :math:`-E_{\\epsilon \\sim N(0,1)}[\\operatorname{logsumexp}_m
(a_m + b_m \\epsilon)]` (:func:`expected_neg_logsumexp_affine`). With two components (``K = 2``
discrete data, or two bins) the integrand has a kink of slope jump :math:`|b_1 - b_0|`, which
Gauss-Hermite cannot resolve when it is large and sits in the bulk of the Gaussian (a confident,
wrong output at a moderate accuracy: errors up to 1e-4 relative with 64 nodes); there the
expectation is split into the maximum (closed form) and a bounded remainder integrated on
Gauss-Legendre panels split at the kink (:func:`expected_logaddexp_normal`), exact to ~1e-12.

The continuous-time loss uses :math:`\\lim_{\\alpha \\to 0} D_{KL}/\\alpha`
(:func:`continuous_time_kl_rate`).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from pyro.distributions.util import broadcast_shape
from torch.distributions.kl import register_kl

from .continuous import NormalReceiver, NormalSender, PointMassOutput
from .discrete import CategoricalOutput, DiscreteReceiver, DiscreteSender
from .discretised import DiscretisedOutput, DiscretisedReceiver

__all__ = [
    "GAUSS_HERMITE_NODES",
    "continuous_time_kl_rate",
    "expected_logaddexp_normal",
    "expected_neg_logsumexp_affine",
    "kl_discrete_monte_carlo",
]

#: Default number of Gauss-Hermite nodes of the quadrature KLs.
GAUSS_HERMITE_NODES = 64


@functools.lru_cache(maxsize=32)
def _gauss_hermite(num_nodes: int):
    """Nodes and weights for :math:`E_{\\epsilon \\sim N(0,1)}[f(\\epsilon)] \\approx \\sum_i w_i f(z_i)`."""
    nodes, weights = np.polynomial.hermite.hermgauss(num_nodes)
    return nodes * math.sqrt(2.0), weights / math.sqrt(math.pi)


#: Gauss-Legendre panels per side of the kink, and nodes per panel, of :func:`expected_logaddexp_normal`.
_REMAINDER_PANELS, _REMAINDER_NODES = 16, 8
#: The remainder ``log1p(exp(-|u|))`` is below ``exp(-40)`` beyond ``|u| = 40``.
_REMAINDER_CUTOFF = 40.0


@functools.lru_cache(maxsize=8)
def _gauss_legendre(num_nodes: int):
    """Nodes in [0, 1] and weights (summing to 1) of the ``num_nodes``-point Gauss-Legendre rule."""
    nodes, weights = np.polynomial.legendre.leggauss(num_nodes)
    return (nodes + 1) / 2, weights / 2


def expected_logaddexp_normal(loc, scale):
    """:math:`E[\\ln(1 + e^u)]` for :math:`u \\sim N(\\mu, \\sigma^2)`, accurate for any :math:`\\sigma > 0`.

    :math:`\\ln(1 + e^u) = \\max(u, 0) + \\ln(1 + e^{-|u|})`: the maximum has the closed-form
    expectation :math:`\\mu\\Phi(\\mu/\\sigma) + \\sigma\\varphi(\\mu/\\sigma)`; the remainder is
    bounded by :math:`\\ln 2`, smooth on each side of its kink at 0, and is integrated against the
    Normal density on ``16`` Gauss-Legendre panels of ``8`` nodes per side of the kink, over
    :math:`[\\mu - 10\\sigma, \\mu + 10\\sigma] \\cap [-40, 40]`. Vectorised; differentiable.

    :param torch.Tensor loc: :math:`\\mu`, any shape.
    :param torch.Tensor scale: :math:`\\sigma > 0`, broadcastable with ``loc``.
    :returns: the broadcast shape.
    """
    loc, scale = torch.broadcast_tensors(loc, scale)
    z = loc / scale
    maximum = loc * torch.special.ndtr(z) + scale * torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    lower = torch.clamp(loc - 10 * scale, min=-_REMAINDER_CUTOFF, max=_REMAINDER_CUTOFF)
    upper = torch.clamp(loc + 10 * scale, min=-_REMAINDER_CUTOFF, max=_REMAINDER_CUTOFF)
    kink = torch.minimum(torch.maximum(torch.zeros_like(loc), lower), upper)
    nodes, weights = _gauss_legendre(_REMAINDER_NODES)
    nodes = torch.as_tensor(nodes, dtype=loc.dtype, device=loc.device)
    weights = torch.as_tensor(weights, dtype=loc.dtype, device=loc.device)
    # panel-local positions in [0, 1] of every node of every panel: (panels * nodes,)
    panel = torch.arange(_REMAINDER_PANELS, dtype=loc.dtype, device=loc.device)[:, None]
    position = ((panel + nodes) / _REMAINDER_PANELS).reshape(-1)
    weight = (weights / _REMAINDER_PANELS).expand(_REMAINDER_PANELS, -1).reshape(-1)
    remainder = torch.zeros_like(loc)
    for start, stop in ((lower, kink), (kink, upper)):
        width = (stop - start)[..., None]
        u = start[..., None] + width * position
        density = torch.exp(-0.5 * ((u - loc[..., None]) / scale[..., None]) ** 2) / (math.sqrt(2 * math.pi) * scale[..., None])
        remainder = remainder + (width * weight * density * torch.log1p(torch.exp(-u.abs()))).sum(-1)
    return maximum + remainder


def expected_neg_logsumexp_affine(a, b, num_nodes: int = GAUSS_HERMITE_NODES):
    """:math:`-E_{\\epsilon \\sim N(0, 1)}[\\operatorname{logsumexp}_m (a_m + b_m \\epsilon)]`.

    With two components (``M = 2``) it is exact up to ~1e-12 at any slopes
    (:func:`expected_logaddexp_normal` of :math:`u = a_1 - a_0 + (b_1 - b_0)\\epsilon`);
    otherwise Gauss-Hermite quadrature with ``num_nodes`` nodes (see the module docstring for
    its accuracy).

    :param torch.Tensor a: intercepts, shape ``(..., M)``.
    :param torch.Tensor b: slopes, broadcastable with ``a``.
    :returns: shape ``(...)``.
    """
    a, b = torch.broadcast_tensors(a, b)
    if a.shape[-1] == 2:
        # logsumexp(a0 + b0 e, a1 + b1 e) = a0 + b0 e + log(1 + exp(u)); E[e] = 0; the law of u is
        # symmetric in the sign of b1 - b0
        slope = (b[..., 1] - b[..., 0]).abs()
        if bool((slope > 0).all()):
            return -(a[..., 0] + expected_logaddexp_normal(a[..., 1] - a[..., 0], slope))
    nodes, weights = _gauss_hermite(num_nodes)
    nodes = torch.as_tensor(nodes, dtype=a.dtype, device=a.device)
    weights = torch.as_tensor(weights, dtype=a.dtype, device=a.device)
    values = torch.logsumexp(a[..., None] + b[..., None] * nodes, dim=-2)  # (..., num_nodes)
    return -(values * weights).sum(-1)


@register_kl(NormalSender, NormalReceiver)
def _kl_normal_sender_normal_receiver(sender, receiver):
    """:math:`\\frac{\\alpha}{2}(x - \\hat x)^2` (paper Sec. 3.10); both must share the accuracy."""
    _check_same_accuracy(sender.accuracy, receiver.accuracy)
    return 0.5 * sender.accuracy * (sender.x - receiver.x_hat).pow(2)


@register_kl(NormalSender, DiscretisedReceiver)
def _kl_normal_sender_discretised_receiver(sender, receiver):
    """With :math:`y = x + \\epsilon/\\sqrt{\\alpha}`, every term but one cancels:

    .. math:: D_{KL} = -E_\\epsilon\\Big[\\operatorname{logsumexp}_k\\big(\\ln p_O(k)
              - \\tfrac{\\alpha}{2}(x - k_c)^2 - \\sqrt{\\alpha}(x - k_c)\\,\\epsilon\\big)\\Big].
    """
    _check_same_accuracy(sender.accuracy, receiver.accuracy)
    x = sender.x[..., None]
    accuracy = sender.accuracy[..., None]
    difference = x - receiver.centres
    a = receiver.probs.log() - 0.5 * accuracy * difference.pow(2)
    b = -accuracy.sqrt() * difference
    return expected_neg_logsumexp_affine(a, b)


@register_kl(DiscreteSender, DiscreteReceiver)
def _kl_discrete_sender_discrete_receiver(sender, receiver):
    """:math:`\\ln p_S(y) - \\ln p_R(y) = y_x - \\operatorname{logsumexp}_k(\\ln p_O(k) + y_k)`
    (the shared terms of :class:`DiscreteReceiver` cancel). For ``K = 2`` this depends on
    :math:`d = y_{x'} - y_x \\sim N(-2\\alpha, 4\\alpha)` only and is integrated by quadrature;
    for ``K > 2`` see :func:`kl_discrete_monte_carlo`."""
    _check_same_accuracy(sender.accuracy, receiver.accuracy)
    if sender.num_classes != receiver.num_classes:
        raise ValueError(f"sender has K = {sender.num_classes} classes, receiver K = {receiver.num_classes}")
    if sender.num_classes > 2:
        return kl_discrete_monte_carlo(sender, receiver, receiver.kl_samples)
    batch_shape = broadcast_shape(sender.batch_shape, receiver.batch_shape)
    logits = receiver.logits.expand(batch_shape + (2,))
    x = sender.x.expand(batch_shape)[..., None]
    own = logits.gather(-1, x)[..., 0]
    other = logits.gather(-1, 1 - x)[..., 0]
    accuracy = sender.accuracy.expand(batch_shape)
    a = torch.stack([own, other - 2 * accuracy], dim=-1)
    b = torch.stack([torch.zeros_like(accuracy), 2 * accuracy.sqrt()], dim=-1)
    return expected_neg_logsumexp_affine(a, b)


def kl_discrete_monte_carlo(sender: DiscreteSender, receiver: DiscreteReceiver, num_samples: int):
    """Unbiased Monte Carlo estimate of :math:`D_{KL}(p_S \\| p_R)` for discrete data,

    .. math:: \\frac{1}{S}\\sum_{s=1}^S \\big[y^{(s)}_x - \\operatorname{logsumexp}_k(\\ln p_O(k) + y^{(s)}_k)\\big],
              \\qquad y^{(s)} \\sim p_S(\\cdot \\mid x;\\, \\alpha),

    exact in expectation for any ``K`` (the joint receiver, never a per-dimension product);
    its standard error falls as :math:`S^{-1/2}`. Gradients flow to the receiver's logits.
    """
    y = sender.rsample((num_samples,))
    own = y.gather(-1, sender.x.expand(y.shape[:-1])[..., None])[..., 0]
    return (own - torch.logsumexp(receiver.logits + y, dim=-1)).mean(0)


def continuous_time_kl_rate(output, x):
    """:math:`\\lim_{\\alpha \\to 0} D_{KL}(p_S(\\cdot \\mid x;\\alpha) \\| p_R(\\cdot \\mid \\theta;\\alpha))/\\alpha`,
    the integrand of the continuous-time loss :math:`L^\\infty = E_t[\\alpha(t)\\, \\cdot]`
    (paper Secs. 3.11, 4.6, 5.6):

    * :class:`PointMassOutput`: :math:`\\frac12 (x - \\hat x)^2`;
    * :class:`DiscretisedOutput`: :math:`\\frac12 (x - \\hat k)^2`, :math:`\\hat k = \\sum_k p_O(k) k_c`
      (a second-order cumulant expansion of the mixture shows the limit is exact);
    * :class:`CategoricalOutput`: :math:`\\frac{K}{2} \\lVert e_x - p_O \\rVert^2`, summed over the
      ``K`` classes.

    :param output: an output distribution.
    :param torch.Tensor x: data of the output's batch shape (class indices for discrete data).
    :returns: shape ``output.batch_shape`` (broadcast with ``x``).
    """
    if isinstance(output, PointMassOutput):
        return 0.5 * (x - output.x_hat).pow(2)
    if isinstance(output, DiscretisedOutput):
        return 0.5 * (x - output.mean).pow(2)
    if isinstance(output, CategoricalOutput):
        num_classes = output.probs.shape[-1]
        one_hot = torch.nn.functional.one_hot(x, num_classes).to(output.probs.dtype)
        return 0.5 * num_classes * (one_hot - output.probs).pow(2).sum(-1)
    raise TypeError(f"no continuous-time KL rate for {type(output).__name__}")


def _check_same_accuracy(sender_accuracy, receiver_accuracy):
    """The KL is defined between a sender and a receiver of the same accuracy."""
    if sender_accuracy is not receiver_accuracy and not torch.allclose(
        sender_accuracy, receiver_accuracy, rtol=1e-5, atol=0.0
    ):
        raise ValueError("the sender and the receiver must have the same accuracy")
