"""KL divergences from the sender to the receiver, registered with
:func:`torch.distributions.kl.register_kl` on exact class pairs, and their continuous-time
limits.

The per-step loss of an n-step BFN is :math:`D_{KL}(p_S(\\cdot \\mid x;\\alpha)\\,\\|\\,
p_R(\\cdot \\mid \\theta; t, \\alpha))` (paper Sec. 2.5). What each registered KL computes:

==========================================  ======================================================
pair                                        computation
==========================================  ======================================================
NormalSender, NormalReceiver                closed form :math:`\\frac{\\alpha}{2}(x - \\hat x)^2`
NormalSender, DiscretisedReceiver           a 1-D integral over the receiver's log bin masses:
                                            exact expectations of the bends of the integrand
                                            plus Gauss-Legendre quadrature of its smooth rest
                                            (``QUADRATURE_NODES`` nodes, refined at sharp kinks)
DiscreteSender, DiscreteReceiver, K = 2     the same 1-D computation (one bend, no smooth rest):
                                            closed form plus an accelerated alternating series
DiscreteSender, DiscreteReceiver, K > 2     unbiased Monte Carlo estimate with
                                            ``receiver.kl_samples`` draws from the sender
==========================================  ======================================================

Both 1-D integrals have the form :math:`-E_{\\epsilon \\sim N(0,1)}[\\operatorname{logsumexp}_m
(a_m + b_m \\epsilon)]` (:func:`~pyro_bfn.distributions.normal_expectations.expected_neg_logsumexp_affine`,
which with :func:`~pyro_bfn.distributions.normal_expectations.expected_logaddexp_normal` and
``QUADRATURE_NODES`` lives in :mod:`pyro_bfn.distributions.normal_expectations` and is re-exported
here). For discretised data the intercepts hold :math:`\\ln p_O(k)`, taken as log-masses from
:attr:`DiscretisedReceiver.log_probs` (:attr:`DiscretisedOutput.log_probs`), so that bins whose
mass is below the smallest float still count. Measured against mpmath and
``scipy.integrate.quad``: ``benchmarks/results/kl_accuracy.md``.

The continuous-time loss uses :math:`\\lim_{\\alpha \\to 0} D_{KL}/\\alpha`
(:func:`continuous_time_kl_rate`).
"""

from __future__ import annotations

import torch
from pyro.distributions.util import broadcast_shape
from torch.distributions.kl import register_kl

from ..checks import check_integer
from .continuous import NormalReceiver, NormalSender, PointMassOutput
from .discrete import CategoricalOutput, DiscreteReceiver, DiscreteSender
from .discretised import DiscretisedOutput, DiscretisedReceiver
from .normal_expectations import (  # noqa: F401  (re-exported: the functions' former home)
    QUADRATURE_NODES,
    expected_logaddexp_normal,
    expected_neg_logsumexp_affine,
)
from .util import check_class_index, one_hot

__all__ = [
    "QUADRATURE_NODES",
    "continuous_time_kl_rate",
    "expected_logaddexp_normal",
    "expected_neg_logsumexp_affine",
    "kl_discrete_monte_carlo",
]

@register_kl(NormalSender, NormalReceiver)
def _kl_normal_sender_normal_receiver(sender, receiver):
    """:math:`\\frac{\\alpha}{2}(x - \\hat x)^2` (paper Sec. 3.10); both must share the accuracy."""
    _broadcast_batch_shapes(sender, receiver)
    _check_same_accuracy(sender.accuracy, receiver.accuracy)
    return 0.5 * sender.accuracy * (sender.x - receiver.x_hat).pow(2)


@register_kl(NormalSender, DiscretisedReceiver)
def _kl_normal_sender_discretised_receiver(sender, receiver):
    """With :math:`y = x + \\epsilon/\\sqrt{\\alpha}`, every term but one cancels:

    .. math:: D_{KL} = -E_\\epsilon\\Big[\\operatorname{logsumexp}_k\\big(\\ln p_O(k)
              - \\tfrac{\\alpha}{2}(x - k_c)^2 - \\sqrt{\\alpha}(x - k_c)\\,\\epsilon\\big)\\Big].
    """
    _broadcast_batch_shapes(sender, receiver)
    _check_same_accuracy(sender.accuracy, receiver.accuracy)
    x = sender.x[..., None]
    accuracy = sender.accuracy[..., None]
    difference = x - receiver.centres
    # the log bin masses (-inf for an empty bin), which stay right where the masses underflow
    a = receiver.log_probs - 0.5 * accuracy * difference.pow(2)
    b = -accuracy.sqrt() * difference
    return expected_neg_logsumexp_affine(a, b)


@register_kl(DiscreteSender, DiscreteReceiver)
def _kl_discrete_sender_discrete_receiver(sender, receiver):
    """:math:`\\ln p_S(y) - \\ln p_R(y) = y_x - \\operatorname{logsumexp}_k(\\ln p_O(k) + y_k)`
    (the shared terms of :class:`DiscreteReceiver` cancel). For ``K = 2`` this depends on
    :math:`d = y_{x'} - y_x \\sim N(-2\\alpha, 4\\alpha)` only and is integrated by quadrature;
    for ``K > 2`` see :func:`kl_discrete_monte_carlo`."""
    if sender.num_classes != receiver.num_classes:
        raise ValueError(f"num_classes differ: the sender has {sender.num_classes}, the receiver {receiver.num_classes}")
    batch_shape = _broadcast_batch_shapes(sender, receiver)
    _check_same_accuracy(sender.accuracy, receiver.accuracy)
    if sender.num_classes > 2:
        return kl_discrete_monte_carlo(sender, receiver, receiver.kl_samples)
    logits = receiver.logits.expand(batch_shape + (2,))
    x = sender.x.expand(batch_shape)[..., None].long()  # gather takes int64 indices
    own = logits.gather(-1, x)[..., 0]
    other = logits.gather(-1, 1 - x)[..., 0]
    accuracy = sender.accuracy.expand(batch_shape)
    if bool(torch.isfinite(own).all()) and bool(torch.isfinite(other).all()):
        # two lines, one of slope 0: -E[logsumexp] = -own - E[ln(1 + e^u)], u ~ N(other - 2 alpha
        # - own, 4 alpha): one bend and no smooth rest (what expected_neg_logsumexp_affine does
        # for two lines, without its envelope and its zero smooth part)
        return -own - expected_logaddexp_normal(other - 2 * accuracy - own, 2 * accuracy.sqrt())
    # a class of probability 0 (a perfect output): the general routine handles -inf intercepts
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
    check_integer("num_samples", num_samples)
    _broadcast_batch_shapes(sender, receiver)
    y = sender.rsample((num_samples,))
    own = y.gather(-1, sender.x.expand(y.shape[:-1])[..., None].long())[..., 0]
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
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x)
    try:
        broadcast_shape(output.batch_shape, x.shape)
    except ValueError as error:
        raise ValueError(
            f"x (shape {tuple(x.shape)}) cannot be broadcast with the batch shape {tuple(output.batch_shape)}"
        ) from error
    if isinstance(output, PointMassOutput):
        return 0.5 * (x - output.x_hat).pow(2)
    if isinstance(output, DiscretisedOutput):
        return 0.5 * (x - output.mean).pow(2)
    if isinstance(output, CategoricalOutput):
        probs = output.probs
        num_classes = probs.shape[-1]
        check_class_index(x, num_classes, "x", check_range=output._validate_args)
        return 0.5 * num_classes * (one_hot(x, num_classes, probs.dtype) - probs).pow(2).sum(-1)
    raise TypeError(f"no continuous-time KL rate for {type(output).__name__}")


def _broadcast_batch_shapes(sender, receiver):
    """The broadcast batch shape of a sender and a receiver; ``ValueError`` if there is none."""
    try:
        return broadcast_shape(sender.batch_shape, receiver.batch_shape)
    except ValueError as error:
        raise ValueError(
            f"the sender's batch shape {tuple(sender.batch_shape)} and the receiver's batch shape "
            f"{tuple(receiver.batch_shape)} cannot be broadcast together"
        ) from error


def _check_same_accuracy(sender_accuracy, receiver_accuracy):
    """The KL is defined between a sender and a receiver of the same accuracy."""
    if sender_accuracy is not receiver_accuracy and not torch.allclose(
        sender_accuracy, receiver_accuracy, rtol=1e-5, atol=0.0
    ):
        raise ValueError("the sender and the receiver must have the same accuracy")
