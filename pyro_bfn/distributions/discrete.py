"""BFN distributions for discrete data with ``K`` classes (paper Sec. 5).

========================  ====================================================================  =================
paper object              distribution                                                          class
========================  ====================================================================  =================
input  p_I(x | theta)     :math:`\\mathrm{Cat}(\\theta)`                                          CategoricalInput
sender p_S(y | x; a)      :math:`N(y;\\, \\alpha(K e_x - 1), \\alpha K I)`                         DiscreteSender
output p_O(x | theta; t)  :math:`\\mathrm{Cat}(\\mathrm{softmax}(\\Psi(\\theta, t)))`               CategoricalOutput
receiver p_R(y | theta)   :math:`\\sum_k p_O(k) N(y;\\, \\alpha(K e_k - 1), \\alpha K I)`           DiscreteReceiver
update p_U(theta' | ..)   :math:`\\mathrm{softmax}(\\ln\\theta + y),\\; y \\sim p_S`                 DiscreteUpdate
flow   p_F(theta | x; t)  :math:`\\mathrm{softmax}(y),\\; y \\sim N(\\beta(K e_x - 1), \\beta K I)`  DiscreteFlow
========================  ====================================================================  =================

The update and flow distributions, both softmax-normal, are in
:mod:`pyro_bfn.distributions.softmax_normal`.

Class indices are 0-based integers. The sender, receiver, update and flow distributions have
``event_shape == (K,)``; the receiver is the paper's joint K-dimensional mixture, not a
product of per-dimension mixtures. Probabilities are updated in log space
(:math:`\\ln\\theta + y`), never as :math:`\\theta e^y`, which overflows.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from pyro.distributions.util import broadcast_shape
from torch.distributions import constraints
from torch.distributions.utils import lazy_property

from ..checks import check_integer
from .util import (
    BFNDistribution,
    check_class_index,
    finite_positive,
    infer_batch_shape,
    one_hot,
    to_float_tensor,
    validation_enabled_for,
)

__all__ = [
    "CategoricalInput",
    "CategoricalOutput",
    "DiscreteReceiver",
    "DiscreteSender",
    "sender_mean",
]


def _check_num_classes(num_classes) -> int:
    return check_integer("num_classes", num_classes, minimum=2)


def sender_mean(x, accuracy, num_classes: int):
    """Mean of the discrete sender, :math:`\\alpha (K e_x - 1)` (paper Sec. 5.2).

    :param torch.Tensor x: class indices, shape ``batch_shape`` (integer).
    :param torch.Tensor accuracy: :math:`\\alpha \\ge 0`, broadcastable with ``x``.
    :returns: shape ``broadcast(x, accuracy).shape + (num_classes,)``.
    """
    return accuracy[..., None] * (num_classes * one_hot(x, num_classes, accuracy.dtype) - 1)


def _broadcast_batch(x, accuracy, names=("x", "accuracy")):
    try:
        return broadcast_shape(x.shape, accuracy.shape)
    except ValueError as error:
        raise ValueError(
            f"{names[0]} (shape {tuple(x.shape)}) and {names[1]} (shape {tuple(accuracy.shape)}) "
            "cannot be broadcast together"
        ) from error


class _NormalisedCategorical(dist.Categorical):
    """A Pyro categorical whose ``probs`` are ``exp(logits)`` (its logits are normalised on
    construction, so torch's second softmax is redundant), constructible from log-probabilities
    that are already normalised."""

    @classmethod
    def from_log_probs(cls, log_probs: torch.Tensor, validate_args=None):
        """The distribution with log-probabilities ``log_probs`` (shape ``batch_shape + (K,)``),
        which must already be normalised (e.g. from :func:`torch.log_softmax`): unlike
        ``cls(logits=...)`` they are not normalised again. Built as torch's own
        ``Categorical.expand`` builds a categorical; ``logits`` are validated as usual."""
        log_probs = to_float_tensor(log_probs, "log_probs")
        if log_probs.dim() < 1 or log_probs.shape[-1] < 2:
            raise ValueError(f"log_probs must have a last dimension of at least 2 classes, got shape {tuple(log_probs.shape)}")
        new = cls.__new__(cls)
        new.logits = log_probs
        new._param = log_probs
        new._num_events = log_probs.shape[-1]
        torch.distributions.Distribution.__init__(new, log_probs.shape[:-1], validate_args=validate_args)
        if new._validate_args:  # after the parameter check, which names NaN
            error = log_probs.logsumexp(-1).abs().max().item() if log_probs.numel() else 0.0
            if not error <= torch.finfo(log_probs.dtype).eps ** 0.5:
                raise ValueError(f"log_probs must be normalised (logsumexp 0 over the classes), off by {error:.3g}")
        return new

    @lazy_property
    def probs(self) -> torch.Tensor:
        return self.logits.exp()


class CategoricalInput(_NormalisedCategorical):
    """Input distribution for discrete data (paper Sec. 5.1): :math:`p_I(x \\mid \\theta) =
    \\theta_x`, a categorical over ``K`` classes per variable; the prior is uniform.

    Conjugate to the sender: the sender density of an observation ``y`` as a function of the
    class, :math:`N(y;\\, \\alpha(K e_k - 1), \\alpha K I) \\propto e^{y_k}`, is the categorical
    likelihood with logits ``y``, so the Bayesian update (paper Sec. 5.2) is

    .. math:: \\theta' = \\mathrm{softmax}(\\ln \\theta + y),

    computed from the logits, in log space.

    :param torch.Tensor probs: :math:`\\theta`, shape ``batch_shape + (K,)``; or
    :param torch.Tensor logits: unnormalised log-probabilities of the same shape.

    ``CategoricalInput.from_log_probs(log_theta)`` builds one from log-probabilities that are
    already normalised (e.g. :meth:`~pyro_bfn.distributions.softmax_normal.SoftmaxNormal.rsample_logits`) without normalising them
    again; ``probs`` is ``exp(logits)`` (one softmax, not two).
    """

    @classmethod
    def prior(cls, shape, num_classes: int, dtype=None, device=None):
        """The uniform prior of batch shape ``shape`` over ``num_classes`` classes."""
        num_classes = _check_num_classes(num_classes)
        logits = torch.zeros(tuple(shape) + (num_classes,), dtype=dtype or torch.get_default_dtype(), device=device)
        return cls(logits=logits)

    def update(self, y, accuracy=None):
        """One Bayesian update with a sender sample ``y`` (paper Sec. 5.2).

        :param torch.Tensor y: sender samples, shape ``batch_shape + (K,)``.
        :param accuracy: unused: the accuracy is already in the scale of ``y`` (accepted so
            that every input distribution shares the signature ``update(y, accuracy)``).
        :returns: the posterior :class:`CategoricalInput`.
        """
        y = to_float_tensor(y, "y", self.logits)
        if y.shape[-1:] != self.logits.shape[-1:]:
            raise ValueError(f"y must have last dimension K = {self.logits.shape[-1]}, got shape {tuple(y.shape)}")
        if self._validate_args and torch.isnan(y).any():
            raise ValueError("y contains NaN")
        return self.conjugate_update(dist.Categorical(logits=y))[0]

    def conjugate_update(self, other):
        """Pyro's conjugate update: ``(updated, log_normalizer)`` with
        ``self.log_prob(k) + other.log_prob(k) == updated.log_prob(k) + log_normalizer``.

        :param other: a :class:`pyro.distributions.Categorical` over the same ``K`` classes.
        :returns: the :class:`CategoricalInput` with logits ``self.logits + other.logits``
            and :math:`\\ln \\sum_k \\theta_k q_k`, of the broadcast batch shape.
        """
        if not isinstance(other, torch.distributions.Categorical):
            raise ValueError(f"CategoricalInput.conjugate_update needs a Categorical, got {type(other).__name__}")
        joint_logits = self.logits + other.logits
        return CategoricalInput(logits=joint_logits), torch.logsumexp(joint_logits, dim=-1)


class CategoricalOutput(_NormalisedCategorical):
    """Output distribution for discrete data (paper Sec. 5.3): a categorical per variable
    whose probabilities come from the network, :math:`p_O(k \\mid \\theta;\\, t) =
    \\mathrm{softmax}(\\Psi(\\theta, t))_k`.

    :param torch.Tensor probs: shape ``batch_shape + (K,)``; or
    :param torch.Tensor logits: the network's outputs, same shape.

    ``CategoricalOutput.from_log_probs(torch.log_softmax(logits, -1))`` builds the same
    distribution from normalised log-probabilities without normalising them again (what
    :class:`~pyro_bfn.data_types.DiscreteData` does); ``probs`` is ``exp(logits)``.
    """

    def receiver(self, accuracy, kl_samples: int | None = None):
        """The receiver distribution :math:`E_{p_O}[p_S(\\cdot \\mid k;\\, \\alpha)]`."""
        kwargs = {} if kl_samples is None else {"kl_samples": kl_samples}
        return DiscreteReceiver(self.logits, accuracy, validate_args=self._validate_args, **kwargs)


class DiscreteSender(BFNDistribution):
    """Sender distribution for discrete data (paper Sec. 5.2): a ``K``-dimensional isotropic
    Normal,

    .. math:: p_S(y \\mid x;\\, \\alpha) = N(y;\\, \\alpha(K e_x - 1),\\, \\alpha K I).

    :param torch.Tensor x: class indices in ``0..K-1``, shape ``batch_shape`` (integer).
    :param torch.Tensor accuracy: :math:`\\alpha > 0`, broadcastable with ``x``.
    :param int num_classes: ``K >= 2``.
    """

    arg_constraints = {"accuracy": finite_positive}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, x, accuracy, num_classes: int, validate_args=None):
        self.num_classes = _check_num_classes(num_classes)
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(x)
        accuracy = to_float_tensor(accuracy, "accuracy")
        check_class_index(x, self.num_classes, check_range=validation_enabled_for(validate_args))
        batch_shape = _broadcast_batch(x, accuracy)
        self.x = x.expand(batch_shape)
        self.accuracy = accuracy.expand(batch_shape)
        super().__init__(batch_shape, torch.Size((self.num_classes,)), validate_args=validate_args)

    @classmethod
    def infer_shapes(cls, x=(), accuracy=(), num_classes=None):
        """``(batch_shape, event_shape)`` from the shapes of ``x`` and ``accuracy`` and the
        class count ``num_classes`` itself (an ``int``: it sets the event shape ``(K,)``)."""
        return infer_batch_shape(x=x, accuracy=accuracy), torch.Size((_check_num_classes(num_classes),))

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        return DiscreteSender(
            self.x.expand(batch_shape), self.accuracy.expand(batch_shape), self.num_classes, self._validate_args
        )

    @lazy_property
    def loc(self) -> torch.Tensor:
        return sender_mean(self.x, self.accuracy, self.num_classes)

    @property
    def mean(self):
        return self.loc

    @property
    def variance(self):
        return (self.num_classes * self.accuracy)[..., None].expand(self.batch_shape + self.event_shape)

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        noise = torch.randn(shape, dtype=self.accuracy.dtype, device=self.accuracy.device)
        return self.loc + noise * (self.num_classes * self.accuracy).sqrt()[..., None]

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        variance = self.num_classes * self.accuracy
        return -0.5 * self.num_classes * torch.log(2 * math.pi * variance) - 0.5 * (value - self.loc).pow(2).sum(
            -1
        ) / variance

    def likelihood(self, y):
        """The sender density of ``y`` as a function of the class: a categorical with logits
        ``y`` (the common factor cancels), the ``other`` of :meth:`CategoricalInput.conjugate_update`."""
        return dist.Categorical(logits=y)


class DiscreteReceiver(BFNDistribution):
    """Receiver distribution for discrete data (paper Sec. 5.4): the joint ``K``-dimensional
    mixture of senders over the output distribution,

    .. math:: p_R(y \\mid \\theta;\\, t, \\alpha) = \\sum_{k=1}^K p_O(k \\mid \\theta;\\, t)\\,
              N(y;\\, \\alpha(K e_k - 1), \\alpha K I).

    Expanding the squares, every component shares all terms but :math:`y_k`, so

    .. math:: \\ln p_R(y) = \\operatorname{logsumexp}_k (\\ln p_O(k) + y_k)
              - \\tfrac{K}{2}\\ln(2\\pi\\alpha K) - \\frac{\\lVert y + \\alpha \\rVert^2}{2\\alpha K}
              + \\alpha - \\tfrac{\\alpha K}{2},

    which costs one logsumexp and is exact for any ``K``.

    :param torch.Tensor logits: output log-probabilities (normalised or not), shape
        ``batch_shape + (K,)``.
    :param torch.Tensor accuracy: :math:`\\alpha > 0`, broadcastable with ``batch_shape``.
    :param int kl_samples: Monte Carlo samples used by the registered KL from a
        :class:`DiscreteSender` when ``K > 2`` (see :mod:`pyro_bfn.distributions.kl`).
    """

    arg_constraints = {"logits": constraints.real_vector, "accuracy": finite_positive}
    _parameter_event_dims = {"logits": 1}
    support = constraints.real_vector
    has_rsample = False

    def __init__(self, logits, accuracy, kl_samples: int = 16, validate_args=None):
        logits = to_float_tensor(logits, "logits")
        if logits.dim() < 1 or logits.shape[-1] < 2:
            raise ValueError(f"logits must have a last dimension of at least 2 classes, got shape {tuple(logits.shape)}")
        check_integer("kl_samples", kl_samples)
        accuracy = to_float_tensor(accuracy, "accuracy", logits)
        batch_shape = _broadcast_batch(logits[..., 0], accuracy, ("logits", "accuracy"))
        self.num_classes = logits.shape[-1]
        self.kl_samples = kl_samples
        self.logits = (logits - logits.logsumexp(-1, keepdim=True)).expand(batch_shape + logits.shape[-1:])
        self.accuracy = accuracy.expand(batch_shape)
        super().__init__(batch_shape, torch.Size((self.num_classes,)), validate_args=validate_args)

    def _static_kwargs(self):
        return {"kl_samples": self.kl_samples}

    @classmethod
    def infer_shapes(cls, logits, accuracy=(), kl_samples=None):
        """``(batch_shape, event_shape)`` from the shapes of ``logits`` (``batch + (K,)``) and
        ``accuracy``: the event shape is ``(K,)``."""
        batch_shape = infer_batch_shape({"logits": 1}, logits=logits, accuracy=accuracy)
        return batch_shape, torch.Size(logits)[-1:]

    @lazy_property
    def probs(self) -> torch.Tensor:
        return self.logits.exp()

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        k, a = self.num_classes, self.accuracy
        shared = -0.5 * k * torch.log(2 * math.pi * a * k) - (value + a[..., None]).pow(2).sum(-1) / (2 * a * k) + a - 0.5 * a * k
        return torch.logsumexp(self.logits + value, dim=-1) + shared

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            k = torch.distributions.Categorical(logits=self.logits).sample(sample_shape)
            accuracy = self.accuracy.expand(k.shape)
            return DiscreteSender(k, accuracy, self.num_classes, validate_args=False).sample()

    @property
    def mean(self):
        return self.accuracy[..., None] * (self.num_classes * self.probs - 1)

    @property
    def variance(self):
        k, a = self.num_classes, self.accuracy[..., None]
        return a * k + (a * k) ** 2 * self.probs * (1 - self.probs)
