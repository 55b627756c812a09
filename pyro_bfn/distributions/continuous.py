"""BFN distributions for continuous data (paper Sec. 3), shared with discretised data (Sec. 4).

Every per-dimension object of the continuous family is a Normal, so every class here is a
:class:`pyro.distributions.Normal` (log-density, sampling, entropy, CDF are Pyro's), built
from the paper's own parameters:

========================  ===================================================================================  ===============
paper object              distribution                                                                         class
========================  ===================================================================================  ===============
input  p_I(x | theta)     :math:`N(x;\\, \\mu, \\rho^{-1})`                                                       NormalInput
sender p_S(y | x; a)      :math:`N(y;\\, x, \\alpha^{-1})`                                                       NormalSender
output p_O(x | theta; t)  :math:`\\delta(x - \\hat x)`                                                           PointMassOutput
receiver p_R(y | theta)   :math:`N(y;\\, \\hat x, \\alpha^{-1})`                                                  NormalReceiver
update p_U(mu' | ..)      :math:`N(\\frac{\\rho\\mu + \\alpha x}{\\rho + \\alpha}, \\frac{\\alpha}{(\\rho+\\alpha)^2})`  NormalUpdate
flow   p_F(mu | x; t)     :math:`N(\\gamma x,\\, \\gamma(1 - \\gamma))`                                            NormalFlow
========================  ===================================================================================  ===============

All are per-dimension (``event_shape == ()``); use ``.to_event(n)`` for data of ``n``
dimensions.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from pyro.distributions.util import broadcast_shape
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all

from .util import (
    ParameterExpandMixin,
    finite_nonnegative,
    finite_positive,
    finite_real,
    to_float_tensor,
    validation_enabled_for,
)

__all__ = [
    "NormalFlow",
    "NormalInput",
    "NormalReceiver",
    "NormalSender",
    "NormalUpdate",
    "PointMassOutput",
    "bayesian_update",
]


def bayesian_update(loc, precision, y, accuracy):
    """The Bayesian update function for continuous data (paper Sec. 3.2).

    Combining the input distribution :math:`N(\\mu, \\rho^{-1})` with an observation
    :math:`y \\sim N(x, \\alpha^{-1})` gives

    .. math:: \\rho' = \\rho + \\alpha, \\qquad \\mu' = \\frac{\\rho \\mu + \\alpha y}{\\rho'}.

    :param torch.Tensor loc: prior means :math:`\\mu`, any shape.
    :param torch.Tensor precision: prior precisions :math:`\\rho > 0`, broadcastable with ``loc``.
    :param torch.Tensor y: observations, broadcastable.
    :param torch.Tensor accuracy: observation accuracies :math:`\\alpha > 0`, broadcastable.
    :returns: ``(updated_loc, updated_precision)``, both of the broadcast shape.
    """
    updated_precision = precision + accuracy
    updated_loc = (precision * loc + accuracy * y) / updated_precision
    return updated_loc, updated_precision


def _float_parameters(names_values, validate_args):
    """Convert each named argument to a floating tensor and broadcast them all."""
    tensors = []
    like = next((v for _, v in names_values if isinstance(v, torch.Tensor)), None)
    for name, value in names_values:
        tensors.append(to_float_tensor(value, name, like))
    try:
        return broadcast_all(*tensors)
    except RuntimeError as error:
        shapes = ", ".join(f"{n}: {tuple(t.shape)}" for (n, _), t in zip(names_values, tensors))
        raise ValueError(f"arguments cannot be broadcast together ({shapes})") from error


class NormalInput(ParameterExpandMixin, dist.Normal):
    """Input distribution for continuous and discretised data (paper Sec. 3.1):
    :math:`p_I(x \\mid \\theta) = N(x;\\, \\mu, \\rho^{-1})` per dimension, with input
    parameters :math:`\\theta = (\\mu, \\rho)`. The prior is :math:`\\mu = 0, \\rho = 1`.

    Conjugate to a Normal likelihood: :meth:`update` applies one Bayesian update and
    :meth:`conjugate_update` implements Pyro's contract.

    Decentering: :class:`pyro.infer.reparam.LocScaleReparam` rebuilds the distribution as
    ``type(fn)(loc=..., scale=..., **shape_params)``, the shape parameters being by default
    every other entry of ``arg_constraints``, here ``precision``, which is the scale itself
    (:math:`\\rho = \\sigma^{-2}`). Use it with ``LocScaleReparam(shape_params=())``; the default
    ``LocScaleReparam()`` passes ``precision`` and ``scale`` together, which raises a
    :class:`ValueError` saying so.

    :param torch.Tensor loc: means :math:`\\mu`, shape ``batch_shape``.
    :param torch.Tensor precision: precisions :math:`\\rho > 0`, broadcastable with ``loc``; or
    :param torch.Tensor scale: (keyword only) standard deviations :math:`\\sigma = \\rho^{-1/2} > 0`
        instead, the parametrisation of :class:`~pyro.distributions.Normal`.
    """

    arg_constraints = {"loc": constraints.real, "precision": finite_positive}

    def __init__(self, loc, precision=None, validate_args=None, *, scale=None):
        if (precision is None) == (scale is None):
            raise ValueError(
                "NormalInput takes exactly one of precision and scale (precision = scale^-2); "
                "with pyro.infer.reparam.LocScaleReparam use shape_params=() so that it passes scale alone"
            )
        if scale is None:
            loc, precision = _float_parameters([("loc", loc), ("precision", precision)], validate_args)
            scale = precision.rsqrt()
        else:
            loc, scale = _float_parameters([("loc", loc), ("scale", scale)], validate_args)
            if validation_enabled_for(validate_args) and not finite_positive.check(scale).all():
                raise ValueError("scale must be finite and > 0")
            precision = scale.pow(-2)
        self.precision = precision
        super().__init__(loc, scale, validate_args=validate_args)

    @classmethod
    def prior(cls, shape=(), dtype=None, device=None):
        """The prior input distribution :math:`N(0, 1)` of the given batch shape."""
        zeros = torch.zeros(shape, dtype=dtype or torch.get_default_dtype(), device=device)
        return cls(zeros, torch.ones_like(zeros))

    def update(self, y, accuracy):
        """One Bayesian update with an observation ``y`` of accuracy ``accuracy``
        (paper Sec. 3.2); see :func:`bayesian_update`.

        :param torch.Tensor y: sender samples, broadcastable with the batch shape.
        :param torch.Tensor accuracy: their accuracies :math:`\\alpha > 0`.
        :returns: the posterior :class:`NormalInput`.
        """
        y, accuracy = _float_parameters([("y", y), ("accuracy", accuracy)], self._validate_args)
        try:
            broadcast_shape(self.batch_shape, y.shape)
        except ValueError as error:
            raise ValueError(
                f"y and accuracy (shape {tuple(y.shape)}) cannot be broadcast with the batch shape "
                f"{tuple(self.batch_shape)}"
            ) from error
        if self._validate_args:
            if not finite_positive.check(accuracy).all():
                raise ValueError("accuracy must be finite and > 0")
            if torch.isnan(y).any():
                raise ValueError("y contains NaN")
        return NormalInput(*bayesian_update(self.loc, self.precision, y, accuracy))

    def conjugate_update(self, other):
        """Pyro's conjugate update: ``(updated, log_normalizer)`` such that
        ``self.log_prob(z) + other.log_prob(z) == updated.log_prob(z) + log_normalizer``.

        :param other: a :class:`pyro.distributions.Normal` over the same variable (for
            instance the sender likelihood :math:`N(x;\\, y, \\alpha^{-1})` viewed as a
            function of :math:`x`).
        :returns: the updated :class:`NormalInput` and the log normalizer
            :math:`\\ln N(\\mu_1;\\, \\mu_2, \\rho_1^{-1} + \\rho_2^{-1})`, of the broadcast
            batch shape.
        """
        if not isinstance(other, torch.distributions.Normal):
            raise ValueError(f"NormalInput.conjugate_update needs a Normal, got {type(other).__name__}")
        other_precision = other.precision if isinstance(other, NormalInput) else other.scale.pow(-2)
        updated = NormalInput(*bayesian_update(self.loc, self.precision, other.loc, other_precision))
        variance = self.precision.reciprocal() + other_precision.reciprocal()
        log_normalizer = -0.5 * (math.log(2 * math.pi) + variance.log()) - 0.5 * (self.loc - other.loc).pow(2) / variance
        return updated, log_normalizer


class _AccuracyNormal(ParameterExpandMixin, dist.Normal):
    """:math:`N(\\text{centre}, \\alpha^{-1})`, the shape shared by the sender and the receiver."""

    def _init(self, centre_name, centre, accuracy, validate_args):
        centre, accuracy = _float_parameters([(centre_name, centre), ("accuracy", accuracy)], validate_args)
        setattr(self, centre_name, centre)
        self.accuracy = accuracy
        super().__init__(centre, accuracy.rsqrt(), validate_args=validate_args)


class NormalSender(_AccuracyNormal):
    """Sender distribution for continuous and discretised data (paper Secs. 3.7, 4.4):
    :math:`p_S(y \\mid x;\\, \\alpha) = N(y;\\, x, \\alpha^{-1})`.

    :param torch.Tensor x: data, shape ``batch_shape`` (values in [-1, 1] for
        discretised data: the bin centres).
    :param torch.Tensor accuracy: :math:`\\alpha > 0`, broadcastable with ``x``.
    """

    arg_constraints = {"x": constraints.real, "accuracy": finite_positive}

    def __init__(self, x, accuracy, validate_args=None):
        self._init("x", x, accuracy, validate_args)

    def likelihood(self, y):
        """The sender density of an observation ``y`` as a function of the data ``x``:
        :math:`N(x;\\, y, \\alpha^{-1})`, the ``other`` of :meth:`NormalInput.conjugate_update`."""
        return dist.Normal(y, self.scale)


class NormalReceiver(_AccuracyNormal):
    """Receiver distribution for continuous data (paper Sec. 3.8):
    :math:`p_R(y \\mid \\theta;\\, t, \\alpha) = E_{p_O}[p_S] = N(y;\\, \\hat x(\\theta, t), \\alpha^{-1})`.

    :param torch.Tensor x_hat: the network's data prediction :math:`\\hat x`, shape ``batch_shape``.
    :param torch.Tensor accuracy: :math:`\\alpha > 0`, broadcastable with ``x_hat``.
    """

    arg_constraints = {"x_hat": constraints.real, "accuracy": finite_positive}

    def __init__(self, x_hat, accuracy, validate_args=None):
        self._init("x_hat", x_hat, accuracy, validate_args)


class PointMassOutput(ParameterExpandMixin, dist.Delta):
    """Output distribution for continuous data (paper Sec. 3.6):
    :math:`p_O(x \\mid \\theta;\\, t) = \\delta(x - \\hat x(\\theta, t))`, a point mass at the
    network's prediction.

    :param torch.Tensor x_hat: the prediction :math:`\\hat x` (finite), shape ``batch_shape``.
    """

    arg_constraints = {"x_hat": finite_real}

    def __init__(self, x_hat, validate_args=None):
        (x_hat,) = _float_parameters([("x_hat", x_hat)], validate_args)
        self.x_hat = x_hat
        super().__init__(x_hat, event_dim=0, validate_args=validate_args)

    @classmethod
    def infer_shapes(cls, x_hat=()):
        """``(batch_shape, event_shape)`` for a prediction of shape ``x_hat``: ``(x_hat, ())``
        (Pyro's :class:`~pyro.distributions.Delta`, whose event dimension is an argument,
        cannot infer it)."""
        return torch.Size(x_hat), torch.Size()

    @property
    def mode(self):
        return self.x_hat

    def log_prob(self, value):
        """:math:`0` at :math:`\\hat x`, :math:`-\\infty` elsewhere; the value is validated
        (Pyro's :class:`~pyro.distributions.Delta` does not check it)."""
        if self._validate_args:
            self._validate_sample(value)
        return super().log_prob(value)

    def sample(self, sample_shape=torch.Size()):
        """:math:`\\hat x` expanded to ``sample_shape + batch_shape``, detached (``rsample``
        keeps the gradient)."""
        with torch.no_grad():
            return self.rsample(sample_shape).detach()

    def receiver(self, accuracy):
        """The receiver distribution :math:`E_{p_O}[p_S(\\cdot \\mid x;\\, \\alpha)]`."""
        return NormalReceiver(self.x_hat, accuracy, validate_args=self._validate_args)


def _update_moments(loc, precision, x, accuracy):
    """Mean and standard deviation of the updated mean (paper Sec. 3.3): the update of
    :func:`bayesian_update` applied to :math:`y \\sim N(x, \\alpha^{-1})` is linear in ``y``, so
    :math:`\\mu' \\sim N(\\frac{\\rho\\mu + \\alpha x}{\\rho + \\alpha}, \\frac{\\alpha}{(\\rho+\\alpha)^2})`."""
    mean, updated_precision = bayesian_update(loc, precision, x, accuracy)
    return mean, accuracy.sqrt() / updated_precision, updated_precision


class NormalUpdate(ParameterExpandMixin, dist.Normal):
    """Bayesian update distribution for continuous data (paper Sec. 3.3): the distribution of
    the updated mean :math:`\\mu'` when :math:`y \\sim p_S(\\cdot \\mid x;\\, \\alpha)`,

    .. math::

        p_U(\\mu' \\mid \\theta, x;\\, \\alpha)
        = N\\Big(\\mu';\\, \\frac{\\rho\\mu + \\alpha x}{\\rho + \\alpha},
                  \\frac{\\alpha}{(\\rho + \\alpha)^2}\\Big),

    with the updated precision :math:`\\rho' = \\rho + \\alpha` deterministic (attribute
    :attr:`updated_precision`).

    :param torch.Tensor input_loc: the input distribution's means :math:`\\mu`, shape ``batch_shape``.
    :param torch.Tensor input_precision: its precisions :math:`\\rho > 0`.
    :param torch.Tensor x: data.
    :param torch.Tensor accuracy: :math:`\\alpha > 0`. All four broadcast together.
    """

    arg_constraints = {
        "input_loc": constraints.real,
        "input_precision": finite_positive,
        "x": constraints.real,
        "accuracy": finite_positive,
    }

    def __init__(self, input_loc, input_precision, x, accuracy, validate_args=None):
        self.input_loc, self.input_precision, self.x, self.accuracy = _float_parameters(
            [("input_loc", input_loc), ("input_precision", input_precision), ("x", x), ("accuracy", accuracy)],
            validate_args,
        )
        mean, std, self.updated_precision = _update_moments(
            self.input_loc, self.input_precision, self.x, self.accuracy
        )
        super().__init__(mean, std, validate_args=validate_args)

    def updated_input(self, value):
        """The input distribution :math:`N(\\mu', \\rho'^{-1})` for an updated mean ``value``."""
        return NormalInput(value, self.updated_precision, validate_args=self._validate_args)


class NormalFlow(ParameterExpandMixin, dist.Normal):
    """Bayesian flow distribution for continuous and discretised data (paper Sec. 3.5):
    the distribution of the input mean at time :math:`t` given the data, starting from the
    prior :math:`N(0, 1)` and having received total accuracy :math:`\\beta = \\beta(t)`:

    .. math::

        p_F(\\mu \\mid x;\\, t) = N(\\mu;\\, \\gamma x,\\, \\gamma(1 - \\gamma)),
        \\qquad \\gamma = \\frac{\\beta}{1 + \\beta},

    with the precision :math:`\\rho = 1 + \\beta` deterministic (attribute :attr:`precision`).
    It is the update distribution from the prior with accuracy :math:`\\beta` (accuracies add,
    paper Sec. 3.4), and is computed by the same function as :class:`NormalUpdate`.

    :param torch.Tensor x: data, shape ``batch_shape``.
    :param torch.Tensor beta: accumulated accuracy :math:`\\beta(t) \\ge 0` (from an
        accuracy schedule), broadcastable with ``x``. At :math:`\\beta = 0` the flow is a point
        mass at 0: sampling works, densities do not.
    """

    arg_constraints = {"x": constraints.real, "beta": finite_nonnegative}

    def __init__(self, x, beta, validate_args=None):
        self.x, self.beta = _float_parameters([("x", x), ("beta", beta)], validate_args)
        mean, std, self.precision = _update_moments(
            torch.zeros_like(self.x), torch.ones_like(self.x), self.x, self.beta
        )
        super().__init__(mean, std, validate_args=validate_args)

    @property
    def gamma(self):
        """:math:`\\gamma = \\beta / (1 + \\beta)`."""
        return self.beta / self.precision

    def input_distribution(self, value):
        """The input distribution :math:`N(\\mu, \\rho^{-1})` for a flow sample ``value``."""
        return NormalInput(value, self.precision, validate_args=self._validate_args)
