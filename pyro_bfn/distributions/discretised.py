"""BFN distributions for discretised data (paper Sec. 4).

Data take ``K`` values, the centres of ``K`` equal bins that tile :math:`[-1, 1]`:

.. math:: k_c = \\frac{2k - 1}{K} - 1, \\quad k = 1, \\dots, K, \\qquad
          k_l = k_c - \\tfrac{1}{K}, \\quad k_r = k_c + \\tfrac{1}{K}.

The input, sender, update and flow distributions are those of continuous data
(:mod:`pyro_bfn.distributions.continuous`); this file adds the output distribution (a Normal
discretised over the bins, the outer bins taking the tails) and the receiver (a mixture of
senders at the bin centres).

Bin ``k`` of the formulas is index ``k - 1`` of the tensors here (0-based).
"""

from __future__ import annotations

import math

import torch
from pyro.distributions.util import broadcast_shape
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all, lazy_property

from ..checks import check_integer
from .binned_normal import NormalCdfSum, log_bin_masses
from .continuous import NormalSender
from .util import BFNDistribution, finite_positive, finite_real, infer_batch_shape, to_float_tensor

__all__ = ["DiscretisedOutput", "DiscretisedReceiver", "bin_centres", "bin_index"]


def _check_num_bins(num_bins) -> int:
    return check_integer("num_bins", num_bins, minimum=2)


def bin_centres(num_bins: int, dtype=None, device=None) -> torch.Tensor:
    """The ``K`` bin centres :math:`k_c = (2k - 1)/K - 1`, shape ``(num_bins,)``, increasing."""
    num_bins = _check_num_bins(num_bins)
    k = torch.arange(num_bins, dtype=dtype or torch.get_default_dtype(), device=device)
    return (2 * k + 1) / num_bins - 1


def _bin_edges(num_bins: int, dtype, device=None) -> torch.Tensor:
    """The ``K + 1`` bin edges :math:`2k/K - 1`, :math:`k = 0, \\dots, K`, shape ``(num_bins + 1,)``."""
    k = torch.arange(num_bins + 1, dtype=dtype, device=device)
    return 2 * k / num_bins - 1


def bin_index(x: torch.Tensor, num_bins: int) -> torch.Tensor:
    """0-based index of the bin whose centre is nearest to ``x`` (clamped to the range)."""
    index = torch.round((x + 1) * (num_bins / 2) - 0.5)
    return index.clamp(0, num_bins - 1).long()


class _BinCentres(constraints.Constraint):
    """The set of the ``K`` bin centres in [-1, 1] (to a relative tolerance of the dtype)."""

    is_discrete = True

    def __init__(self, num_bins: int):
        self.num_bins = num_bins
        super().__init__()

    def check(self, value):
        if not value.is_floating_point():
            return torch.zeros_like(value, dtype=torch.bool)
        position = (value + 1) * (self.num_bins / 2) - 0.5
        tolerance = 1e-3 if value.dtype in (torch.float16, torch.bfloat16) else 1e-4
        return (
            (position - position.round()).abs().le(tolerance * max(1.0, self.num_bins / 256))
            & position.ge(-tolerance)
            & position.le(self.num_bins - 1 + tolerance)
        )

    def __repr__(self):
        return f"BinCentres(num_bins={self.num_bins})"


class _Simplex(constraints.Constraint):
    """Nonnegative entries summing to one up to the rounding of a sum of ``K`` terms in the
    tensor's dtype (torch's ``simplex`` uses a fixed 1e-6, which float32 bin probabilities
    computed exactly to rounding exceed for a hundred bins or more)."""

    event_dim = 1

    def check(self, value):
        eps = torch.finfo(value.dtype).eps if value.is_floating_point() else 0.0
        tolerance = max(1e-6, 4 * value.shape[-1] * eps)
        return (value >= 0).all(-1) & ((value.sum(-1) - 1).abs() <= tolerance)

    def __repr__(self):
        return "Simplex()"


class _LogSimplex(constraints.Constraint):
    """Log-probabilities (``-inf`` allowed) whose exponentials sum to one, to the tolerance of
    :class:`_Simplex`."""

    event_dim = 1

    def check(self, value):
        eps = torch.finfo(value.dtype).eps if value.is_floating_point() else 0.0
        tolerance = max(1e-6, 4 * value.shape[-1] * eps)
        return (value <= tolerance).all(-1) & (value.logsumexp(-1).abs() <= tolerance)

    def __repr__(self):
        return "LogSimplex()"


_simplex = _Simplex()
_log_simplex = _LogSimplex()


class DiscretisedOutput(BFNDistribution):
    """Output distribution for discretised data (paper Sec. 4.3): a Normal
    :math:`N(\\mu_x, \\sigma_x^2)` discretised over the ``K`` bins, with the outer bins taking
    the tails,

    .. math::

        p_O(k_c \\mid \\theta;\\, t) = G(k_r) - G(k_l), \\qquad
        G(z) = \\begin{cases} 0 & z \\le -1 \\\\ \\Phi\\big(\\frac{z - \\mu_x}{\\sigma_x}\\big) & -1 < z < 1 \\\\
                             1 & z \\ge 1 \\end{cases}

    The values are the bin centres (floats in [-1, 1]), so samples can be fed back to the
    sender like any data. The bin masses are computed as log-masses, :attr:`log_probs`
    (:func:`~pyro_bfn.distributions.binned_normal.log_bin_masses`: log-CDF differences on the
    side of the mean that avoids cancellation, the integral itself for bins narrow against
    :math:`\\sigma_x`), right in relative terms far into the tails, where :math:`\\Phi` differences
    underflow to 0; the receiver and the n-step KL use them. ``log_prob`` computes the mass of
    the given bin only, in float64.

    ``DiscretisedOutput(logits=...)`` is the other parametrisation: any distribution over the
    ``K`` bin centres, with log bin masses ``logits`` up to a constant (normalised on
    construction, like :class:`~pyro.distributions.Categorical`). It is what Pyro's enumeration
    builds, ``type(fn)(logits=...)``, for the posterior marginals of
    :meth:`pyro.infer.TraceEnum_ELBO.compute_marginals` and the draws of
    :meth:`~pyro.infer.TraceEnum_ELBO.sample_posterior`; it has no ``loc`` and ``scale``.

    :param torch.Tensor loc: :math:`\\mu_x` (finite), shape ``batch_shape``.
    :param torch.Tensor scale: :math:`\\sigma_x > 0`, broadcastable with ``loc``.
    :param int num_bins: ``K >= 2`` (with ``logits``: optional, their last side).
    :param torch.Tensor logits: (keyword only, instead of ``loc`` and ``scale``) unnormalised log
        bin masses, shape ``batch_shape + (num_bins,)``.
    """

    arg_constraints = {"loc": finite_real, "scale": finite_positive, "logits": constraints.real_vector}
    _parameter_event_dims = {"logits": 1}
    has_enumerate_support = True

    def __init__(self, loc=None, scale=None, num_bins: int | None = None, validate_args=None, *, logits=None):
        self._from_logits = logits is not None
        if self._from_logits:
            self._init_from_logits(loc, scale, num_bins, logits, validate_args)
            return
        if loc is None or scale is None:
            raise ValueError("DiscretisedOutput needs loc, scale and num_bins, or logits")
        self.num_bins = _check_num_bins(num_bins)
        like = loc if isinstance(loc, torch.Tensor) else None
        loc, scale = to_float_tensor(loc, "loc", like), to_float_tensor(scale, "scale", like)
        try:
            self.loc, self.scale = broadcast_all(loc, scale)
        except RuntimeError as error:
            raise ValueError(
                f"loc (shape {tuple(loc.shape)}) and scale (shape {tuple(scale.shape)}) cannot be broadcast together"
            ) from error
        super().__init__(self.loc.shape, torch.Size(), validate_args=validate_args)

    def _init_from_logits(self, loc, scale, num_bins, logits, validate_args):
        if loc is not None or scale is not None:
            raise ValueError("DiscretisedOutput takes loc and scale, or logits, not both")
        logits = to_float_tensor(logits, "logits")
        if logits.dim() < 1 or logits.shape[-1] < 2:
            raise ValueError(f"logits must have a last dimension of at least 2 bins, got shape {tuple(logits.shape)}")
        self.num_bins = logits.shape[-1]
        if num_bins is not None and _check_num_bins(num_bins) != self.num_bins:
            raise ValueError(f"num_bins = {num_bins} does not match the last side of logits, shape {tuple(logits.shape)}")
        self.logits = self.log_probs = logits - logits.logsumexp(-1, keepdim=True)
        super().__init__(logits.shape[:-1], torch.Size(), validate_args=validate_args)

    @lazy_property
    def loc(self) -> torch.Tensor:
        """:math:`\\mu_x`, shape ``batch_shape`` (none when built from ``logits``: AttributeError)."""
        raise AttributeError("a DiscretisedOutput built from logits has no loc and scale")

    @lazy_property
    def scale(self) -> torch.Tensor:
        """:math:`\\sigma_x`, shape ``batch_shape`` (none when built from ``logits``: AttributeError)."""
        raise AttributeError("a DiscretisedOutput built from logits has no loc and scale")

    @lazy_property
    def logits(self) -> torch.Tensor:
        """Normalised log bin masses, shape ``batch_shape + (num_bins,)``: :attr:`log_probs`."""
        return self.log_probs

    @property
    def _parameter(self) -> torch.Tensor:
        """The tensor that sets the dtype and device: ``loc``, or ``logits``."""
        return self.logits if self._from_logits else self.loc

    def _static_kwargs(self):
        return {"num_bins": self.num_bins}

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        if self._from_logits:
            return DiscretisedOutput(logits=self.logits.expand(batch_shape + (self.num_bins,)), validate_args=self._validate_args)
        loc, scale = self.loc.expand(batch_shape), self.scale.expand(batch_shape)
        return DiscretisedOutput(loc, scale, self.num_bins, validate_args=self._validate_args)

    @classmethod
    def infer_shapes(cls, loc=(), scale=(), num_bins=None, logits=None):
        """``(batch_shape, ())`` from the shapes of ``loc`` and ``scale``, or of ``logits``
        (``batch_shape + (num_bins,)``); ``num_bins`` does not change the shapes."""
        if logits is not None:
            return infer_batch_shape({"logits": 1}, logits=logits), torch.Size()
        return infer_batch_shape(loc=loc, scale=scale), torch.Size()

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self):
        return _BinCentres(self.num_bins)

    @lazy_property
    def centres(self) -> torch.Tensor:
        """Bin centres, shape ``(num_bins,)``."""
        return bin_centres(self.num_bins, dtype=self._parameter.dtype, device=self._parameter.device)

    @lazy_property
    def log_probs(self) -> torch.Tensor:
        """Log bin masses :math:`\\ln p_O(k)`, shape ``batch_shape + (num_bins,)``, in the dtype of
        ``loc``: relative error a few :math:`\\epsilon (1 + |\\ln p_O(k)|)` for every bin (``-inf``
        only where the log-mass itself is below the dtype's range); see
        :func:`~pyro_bfn.distributions.binned_normal.log_bin_masses`."""
        # the K + 1 edges 2k/K - 1, computed once so that the upper edge of a bin is bit for bit
        # the lower edge of the next (centre +- 1/K rounds differently on the two sides)
        edges = _bin_edges(self.num_bins, self.loc.dtype, self.loc.device)
        loc, scale = self.loc[..., None], self.scale[..., None]
        standardised = (edges[1:-1] - loc) / scale
        # the outer edges at -inf/+inf, set after standardising so that no gradient flows
        # through (+-inf - loc) / scale (inf * 0 = NaN in the backward pass)
        outer = torch.full_like(standardised[..., :1], math.inf)
        standardised = torch.cat([-outer, standardised, outer], -1)
        return log_bin_masses(standardised, (1 / self.num_bins) / scale)

    @lazy_property
    def probs(self) -> torch.Tensor:
        """Bin probabilities :math:`\\exp(` :attr:`log_probs` :math:`)` (0 below the dtype's
        smallest normal number), shape ``batch_shape + (num_bins,)``; they sum to one."""
        # below the smallest normal number: 0 (exp would take its slow path on them)
        tiny = self.log_probs < math.log(torch.finfo(self._parameter.dtype).tiny)
        return torch.where(tiny, 0.0, torch.where(tiny, 0.0, self.log_probs).exp())

    def log_prob(self, value):
        """:math:`\\ln p_O(x)` for ``value`` holding bin centres, shape broadcastable with
        ``batch_shape``; the mass of the bin of ``value`` only, computed in float64."""
        if self._validate_args:
            self._validate_sample(value)
        index = bin_index(value, self.num_bins)
        if self._from_logits:  # gather the bin's log-mass, as Categorical.log_prob does
            index, log_probs = torch.broadcast_tensors(index[..., None], self.logits)
            return log_probs.gather(-1, index[..., :1])[..., 0].to(torch.promote_types(self.logits.dtype, value.dtype))
        edges = _bin_edges(self.num_bins, torch.float64, value.device)
        loc, scale = self.loc.double(), self.scale.double()
        lower = torch.where(index == 0, -math.inf, (edges[index] - loc) / scale)
        upper = torch.where(index == self.num_bins - 1, math.inf, (edges[index + 1] - loc) / scale)
        half_width = (1 / self.num_bins) / scale
        log_mass = log_bin_masses(torch.stack([lower, upper], -1), half_width[..., None])[..., 0]
        return log_mass.to(torch.promote_types(self.loc.dtype, value.dtype))

    def sample(self, sample_shape=torch.Size()):
        index = torch.distributions.Categorical(probs=self.probs).sample(sample_shape)
        return self.centres[index]

    def enumerate_support(self, expand=True):
        values = self.centres.reshape((-1,) + (1,) * len(self.batch_shape))
        if expand:
            values = values.expand((-1,) + self.batch_shape)
        return values

    @property
    def mean(self):
        """:math:`\\hat k = \\sum_k p_O(k)\\, k_c`, the prediction used by the continuous-time loss.

        Summed by parts: with :math:`G_k = \\Phi((e_k - \\mu)/\\sigma)` at the interior edges
        :math:`e_k = 2k/K - 1`, :math:`k = 1, \\dots, K-1` (:math:`G_0 = 0`, :math:`G_K = 1`: the outer
        bins take the tails) and centres :math:`k_c` spaced :math:`2/K` apart,

        .. math:: \\hat k = \\sum_{k=1}^K k_c (G_k - G_{k-1}) = K_c - \\frac{2}{K} \\sum_{k=1}^{K-1} G_k,

        a sum of :math:`K - 1` normal CDFs, exact in absolute terms (which is what a sum of bounded
        terms needs; the relative accuracy of :attr:`log_probs` is not), with an analytic gradient:
        :class:`~pyro_bfn.distributions.binned_normal.NormalCdfSum`, which does :math:`O(1)` work
        per variable instead of :math:`K - 1` CDFs for :math:`K > 64` (only the edges within
        :math:`\\pm W\\sigma_x` of :math:`\\mu_x` plus a count when :math:`\\sigma_x` is narrow against the
        bins, Euler-Maclaurin or a Taylor series in closed form when it is wide).
        Built from ``logits``: :math:`\\sum_k p_O(k)\\, k_c`.
        """
        if self._from_logits:
            return (self.probs * self.centres).sum(-1)
        loc, scale = torch.broadcast_tensors(self.loc, self.scale)
        below = NormalCdfSum.apply(loc, scale, self.num_bins)
        return (1 - 1 / self.num_bins) - (2 / self.num_bins) * below

    @property
    def variance(self):
        return (self.probs * self.centres.pow(2)).sum(-1) - self.mean.pow(2)

    @property
    def mode(self):
        """The centre of the most probable bin."""
        return self.centres[self.log_probs.argmax(-1)]

    def receiver(self, accuracy):
        """The receiver distribution :math:`E_{p_O}[p_S(\\cdot \\mid k_c;\\, \\alpha)]`, built from
        :attr:`log_probs`."""
        return DiscretisedReceiver.from_log_probs(self.log_probs, accuracy, validate_args=self._validate_args)


class DiscretisedReceiver(BFNDistribution):
    """Receiver distribution for discretised data (paper Sec. 4.5): the sender averaged over
    the output distribution,

    .. math::

        p_R(y \\mid \\theta;\\, t, \\alpha) = \\sum_{k=1}^K p_O(k \\mid \\theta;\\, t)\\,
        N(y;\\, k_c, \\alpha^{-1}).

    ``DiscretisedReceiver.from_log_probs(log_probs, accuracy)`` builds it from log bin masses
    (what :meth:`DiscretisedOutput.receiver` does, so that masses below the smallest float keep
    their weight); :attr:`log_probs` and :attr:`probs` are available whichever was given.

    :param torch.Tensor probs: bin probabilities :math:`p_O(k)`, shape
        ``batch_shape + (num_bins,)`` (for instance :attr:`DiscretisedOutput.probs`).
    :param torch.Tensor accuracy: :math:`\\alpha > 0`, broadcastable with ``batch_shape``.
    """

    arg_constraints = {"probs": _simplex, "log_probs": _log_simplex, "accuracy": finite_positive}
    _parameter_event_dims = {"probs": 1, "log_probs": 1}
    support = constraints.real
    has_rsample = False

    def __init__(self, probs, accuracy, validate_args=None):
        self._init_receiver("probs", probs, accuracy, validate_args)

    @classmethod
    def from_log_probs(cls, log_probs, accuracy, validate_args=None):
        """The receiver with log bin masses ``log_probs`` (shape ``batch_shape + (num_bins,)``,
        ``-inf`` for an empty bin; validated to sum to one in probability)."""
        new = cls.__new__(cls)
        new._init_receiver("log_probs", log_probs, accuracy, validate_args)
        return new

    def _init_receiver(self, name, weights, accuracy, validate_args):
        """Check and broadcast the bin weights (``probs`` or ``log_probs``, as ``name``) and the accuracy."""
        weights = to_float_tensor(weights, name)
        if weights.dim() < 1 or weights.shape[-1] < 2:
            raise ValueError(f"{name} must have a last dimension of at least 2 bins, got shape {tuple(weights.shape)}")
        accuracy = to_float_tensor(accuracy, "accuracy", weights)
        try:
            batch_shape = broadcast_shape(weights.shape[:-1], accuracy.shape)
        except ValueError as error:
            raise ValueError(
                f"{name} (batch shape {tuple(weights.shape[:-1])}) and accuracy (shape {tuple(accuracy.shape)}) "
                "cannot be broadcast together"
            ) from error
        self.num_bins = weights.shape[-1]
        setattr(self, name, weights.expand(batch_shape + weights.shape[-1:]))
        self.accuracy = accuracy.expand(batch_shape)
        super().__init__(batch_shape, torch.Size(), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        accuracy = self.accuracy.expand(batch_shape)
        if "probs" in self.__dict__:
            return DiscretisedReceiver(self.probs.expand(batch_shape + (self.num_bins,)), accuracy, self._validate_args)
        log_probs = self.log_probs.expand(batch_shape + (self.num_bins,))
        return DiscretisedReceiver.from_log_probs(log_probs, accuracy, validate_args=self._validate_args)

    @lazy_property
    def probs(self) -> torch.Tensor:
        """Bin probabilities, shape ``batch_shape + (num_bins,)``."""
        return self.log_probs.exp()

    @lazy_property
    def log_probs(self) -> torch.Tensor:
        """Log bin probabilities, shape ``batch_shape + (num_bins,)``, ``-inf`` for an empty bin."""
        # log(0) = -inf is right, but its derivative 1/0 times the zero weight it gets is NaN
        # in the backward pass: take the log of the positive entries only
        positive = self.probs > 0
        return torch.where(positive, torch.where(positive, self.probs, 1.0).log(), -math.inf)

    @lazy_property
    def centres(self) -> torch.Tensor:
        weights = self.__dict__["log_probs"] if "log_probs" in self.__dict__ else self.probs
        return bin_centres(self.num_bins, dtype=weights.dtype, device=weights.device)

    def components(self) -> NormalSender:
        """The mixture components: senders at every bin centre, batch shape ``batch_shape + (K,)``."""
        return NormalSender(self.centres, self.accuracy[..., None], validate_args=False)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        component_log_prob = self.components().log_prob(value[..., None])
        return torch.logsumexp(self.log_probs + component_log_prob, dim=-1)

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            index = torch.distributions.Categorical(logits=self.log_probs).sample(sample_shape)
            centre = self.centres[index]
            return centre + torch.randn_like(centre) * self.accuracy.rsqrt()

    @property
    def mean(self):
        return (self.probs * self.centres).sum(-1)

    @property
    def variance(self):
        mean = self.mean
        return (self.probs * self.centres.pow(2)).sum(-1) - mean.pow(2) + self.accuracy.reciprocal()
