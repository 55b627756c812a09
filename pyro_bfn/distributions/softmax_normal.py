"""The softmax-normal distributions of discrete data (paper Sec. 5): the law of
:math:`\\theta = \\mathrm{softmax}(z)` for an isotropic Gaussian :math:`z`, and the two paper
objects that have it:

========================  ====================================================================  =================
paper object              distribution                                                          class
========================  ====================================================================  =================
update p_U(theta' | ..)   :math:`\\mathrm{softmax}(\\ln\\theta + y),\\; y \\sim p_S`                 DiscreteUpdate
flow   p_F(theta | x; t)  :math:`\\mathrm{softmax}(y),\\; y \\sim N(\\beta(K e_x - 1), \\beta K I)`  DiscreteFlow
========================  ====================================================================  =================

The density on the simplex is derived on the docs page "The softmax-normal (Bayesian flow)
density on the simplex".
"""

from __future__ import annotations

import math

import torch
from torch.distributions import constraints

from .discrete import _broadcast_batch, _check_num_classes, sender_mean
from .util import (
    BFNDistribution,
    check_class_index,
    finite_nonnegative,
    finite_positive,
    finite_real_vector,
    infer_batch_shape,
    to_float_tensor,
    validation_enabled_for,
)

__all__ = ["DiscreteFlow", "DiscreteUpdate", "SoftmaxNormal"]


class SoftmaxNormal(BFNDistribution):
    """The softmax of an isotropic Gaussian, :math:`\\theta = \\mathrm{softmax}(z)`,
    :math:`z \\sim N(m, s^2 I_K)`: the law of the discrete update and flow distributions.

    Density (an additive logistic normal; derivation in the docs page "The softmax-normal
    (Bayesian flow) density on the simplex"): softmax
    forgets a shift of :math:`z` along :math:`\\mathbf{1}`, and in the log-ratio coordinates
    :math:`w_j = z_j - z_K` (:math:`j < K`) :math:`w \\sim N(m_{<K} - m_K,\\, s^2(I + \\mathbf{1}\\mathbf{1}^\\top))`;
    the map :math:`w \\mapsto (\\theta_1, \\dots, \\theta_{K-1})` has Jacobian determinant
    :math:`\\prod_{k=1}^K \\theta_k`, :math:`\\det(I + \\mathbf{1}\\mathbf{1}^\\top) = K` and
    :math:`(I + \\mathbf{1}\\mathbf{1}^\\top)^{-1} = I - \\mathbf{1}\\mathbf{1}^\\top / K`. With
    :math:`r = \\ln\\theta - m` and its mean :math:`\\bar r`,

    .. math::

        \\ln p(\\theta) = -\\frac{K-1}{2}\\ln(2\\pi s^2) - \\frac12 \\ln K
        - \\frac{1}{2 s^2}\\sum_{k=1}^K (r_k - \\bar r)^2 - \\sum_{k=1}^K \\ln \\theta_k,

    a density with respect to Lebesgue measure on :math:`(\\theta_1, \\dots, \\theta_{K-1})`, the
    convention of :class:`~pyro.distributions.Dirichlet`.

    :param torch.Tensor loc: :math:`m` (finite), shape ``batch_shape + (K,)``.
    :param torch.Tensor scale: :math:`s \\ge 0`, broadcastable with ``batch_shape``
        (:math:`s = 0` is a point mass: it samples, it has no density).
    """

    arg_constraints = {"loc": finite_real_vector, "scale": finite_nonnegative}
    _parameter_event_dims = {"loc": 1}
    support = constraints.simplex
    has_rsample = True

    def __init__(self, loc, scale, validate_args=None):
        self._init_softmax_normal(loc, scale, validate_args)

    @classmethod
    def infer_shapes(cls, loc, scale=()):
        """``(batch_shape, event_shape)`` from the shapes of ``loc`` (``batch + (K,)``) and
        ``scale``: the event shape is ``(K,)``."""
        return infer_batch_shape({"loc": 1}, loc=loc, scale=scale), torch.Size(loc)[-1:]

    def _init_softmax_normal(self, loc, scale, validate_args):
        loc = to_float_tensor(loc, "loc")
        if loc.dim() < 1 or loc.shape[-1] < 2:
            raise ValueError(f"loc must have a last dimension of at least 2 classes, got shape {tuple(loc.shape)}")
        scale = to_float_tensor(scale, "scale", loc)
        batch_shape = _broadcast_batch(loc[..., 0], scale, ("loc", "scale"))
        self.loc = loc.expand(batch_shape + loc.shape[-1:])
        self.scale = scale.expand(batch_shape)
        super().__init__(batch_shape, loc.shape[-1:], validate_args=validate_args)

    def rsample_normal(self, sample_shape=torch.Size()):
        """Reparameterised draw of the Gaussian :math:`z \\sim N(m, s^2 I_K)` itself, i.e. of
        :math:`\\ln\\theta` up to an additive constant per variable (what a
        :class:`~pyro_bfn.distributions.discrete.CategoricalInput` normalises once, from its logits)."""
        shape = self._extended_shape(sample_shape)
        noise = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        return self.loc + noise * self.scale[..., None]

    def rsample_logits(self, sample_shape=torch.Size()):
        """Reparameterised draw of :math:`\\ln\\theta = \\mathrm{log\\_softmax}(z)`; use it instead of
        ``log(rsample())`` when probabilities can underflow (large accuracies)."""
        return torch.log_softmax(self.rsample_normal(sample_shape), dim=-1)

    def rsample(self, sample_shape=torch.Size()):
        return self.rsample_logits(sample_shape).exp()

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        k = self.event_shape[0]
        log_value = value.log()
        residual = log_value - self.loc
        centred = residual - residual.mean(-1, keepdim=True)
        variance = self.scale.pow(2)
        return (
            -0.5 * (k - 1) * torch.log(2 * math.pi * variance)
            - 0.5 * math.log(k)
            - centred.pow(2).sum(-1) / (2 * variance)
            - log_value.sum(-1)
        )


class DiscreteUpdate(SoftmaxNormal):
    """Bayesian update distribution for discrete data (paper Sec. 5.2): the law of the
    updated parameters :math:`\\theta' = \\mathrm{softmax}(\\ln\\theta + y)` when
    :math:`y \\sim p_S(\\cdot \\mid x;\\, \\alpha)`, i.e. a :class:`SoftmaxNormal` with
    :math:`m = \\ln\\theta + \\alpha(K e_x - 1)` and :math:`s^2 = \\alpha K`.

    :param torch.Tensor input_logits: :math:`\\ln\\theta` (up to a constant; finite), shape
        ``batch_shape + (K,)``.
    :param torch.Tensor x: class indices, broadcastable with ``batch_shape`` (integer).
    :param torch.Tensor accuracy: :math:`\\alpha > 0`, broadcastable with ``batch_shape``.
    """

    arg_constraints = {"input_logits": finite_real_vector, "accuracy": finite_positive}
    _parameter_event_dims = {"input_logits": 1}

    def __init__(self, input_logits, x, accuracy, validate_args=None):
        input_logits = to_float_tensor(input_logits, "input_logits")
        num_classes = _check_num_classes(input_logits.shape[-1] if input_logits.dim() else 0)
        accuracy = to_float_tensor(accuracy, "accuracy", input_logits)
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(x)
        check_class_index(x, num_classes, check_range=validation_enabled_for(validate_args))
        # a ValueError naming the arguments (before sender_mean's RuntimeError) when they do not broadcast
        infer_batch_shape({"input_logits": 1}, input_logits=input_logits.shape, x=x.shape, accuracy=accuracy.shape)
        self.x = x
        self.accuracy = accuracy
        self.input_logits = input_logits
        loc = input_logits + sender_mean(x, accuracy, num_classes)
        self._init_softmax_normal(loc, (num_classes * accuracy).sqrt(), validate_args)

    @classmethod
    def infer_shapes(cls, input_logits, x=(), accuracy=()):
        """``(batch_shape, event_shape)`` from the shapes of ``input_logits`` (``batch + (K,)``),
        ``x`` and ``accuracy``: the event shape is ``(K,)``."""
        batch_shape = infer_batch_shape({"input_logits": 1}, input_logits=input_logits, x=x, accuracy=accuracy)
        return batch_shape, torch.Size(input_logits)[-1:]

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        return DiscreteUpdate(
            self.input_logits.expand(batch_shape + self.event_shape),
            self.x.expand(batch_shape),
            self.accuracy.expand(batch_shape),
            validate_args=self._validate_args,
        )


class DiscreteFlow(SoftmaxNormal):
    """Bayesian flow distribution for discrete data (paper Sec. 5.5): the input parameters at
    time :math:`t` given the data, from the uniform prior with total accuracy
    :math:`\\beta = \\beta(t)`,

    .. math:: \\theta = \\mathrm{softmax}(y), \\qquad y \\sim N(\\beta(K e_x - 1),\\, \\beta K I),

    the update distribution from the uniform prior with accuracy :math:`\\beta`.

    :param torch.Tensor x: class indices, shape ``batch_shape`` (integer).
    :param torch.Tensor beta: :math:`\\beta(t) \\ge 0`, broadcastable with ``x``; at 0 the flow
        is the uniform point mass (it samples; it has no density).
    :param int num_classes: ``K >= 2``.
    """

    arg_constraints = {"beta": finite_nonnegative}

    def __init__(self, x, beta, num_classes: int, validate_args=None):
        num_classes = _check_num_classes(num_classes)
        beta = to_float_tensor(beta, "beta")
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(x)
        check_class_index(x, num_classes, check_range=validation_enabled_for(validate_args))
        batch_shape = _broadcast_batch(x, beta, ("x", "beta"))
        self.x, self.beta, self.num_classes = x.expand(batch_shape), beta.expand(batch_shape), num_classes
        self._init_softmax_normal(sender_mean(self.x, self.beta, num_classes), (num_classes * self.beta).sqrt(), validate_args)

    @classmethod
    def infer_shapes(cls, x=(), beta=(), num_classes=None):
        """``(batch_shape, event_shape)`` from the shapes of ``x`` and ``beta`` and the class count
        ``num_classes`` itself (an ``int``: it sets the event shape ``(K,)``)."""
        return infer_batch_shape(x=x, beta=beta), torch.Size((_check_num_classes(num_classes),))

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        return DiscreteFlow(
            self.x.expand(batch_shape), self.beta.expand(batch_shape), self.num_classes, validate_args=self._validate_args
        )
