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

from .continuous import NormalSender
from .util import BFNDistribution, finite_positive, to_float_tensor

__all__ = ["DiscretisedOutput", "DiscretisedReceiver", "bin_centres", "bin_index"]


def _check_num_bins(num_bins) -> int:
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 2:
        raise ValueError(f"num_bins must be an integer >= 2, got {num_bins!r}")
    return num_bins


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


_simplex = _Simplex()


def _log1mexp(z):
    """:math:`\\ln(1 - e^{z})` for :math:`z \\le 0`, accurate at both ends."""
    return torch.where(z > -math.log(2.0), torch.log(-torch.expm1(z)), torch.log1p(-torch.exp(z)))


def _log_normal_interval_mass(lower, upper):
    """:math:`\\ln(\\Phi(b) - \\Phi(a))` for standardised edges :math:`a < b` (``-inf``/``inf`` allowed).

    Uses the lower tail when :math:`a \\le 0` and the mirrored upper tail otherwise, so that
    neither difference suffers cancellation.
    """
    upper_tail = lower > 0
    a = torch.where(upper_tail, -upper, lower)
    b = torch.where(upper_tail, -lower, upper)
    log_b = torch.special.log_ndtr(b)
    return log_b + _log1mexp(torch.special.log_ndtr(a) - log_b)


class _NormalCdfSum(torch.autograd.Function):
    """:math:`\\sum_j \\Phi((e_j - \\mu)/\\sigma)` over the edges ``e`` (shape ``(J,)``) for every
    element of ``loc`` and ``scale`` (same shape), with the analytic gradient

    .. math:: \\frac{\\partial}{\\partial\\mu} = -\\frac{1}{\\sigma} \\sum_j \\phi(z_j), \\qquad
              \\frac{\\partial}{\\partial\\sigma} = -\\frac{1}{\\sigma} \\sum_j z_j\\, \\phi(z_j),
              \\qquad z_j = (e_j - \\mu)/\\sigma.

    Autograd through ``ndtr`` would keep the ``(..., J)`` intermediates of the forward pass
    alive until the backward pass; this keeps only ``loc`` and ``scale`` and recomputes
    :math:`z` (about 1.6 times faster forward + backward at 256 bins, and ``J`` times less memory
    held for the backward pass). Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, loc, scale, edges):
        ctx.save_for_backward(loc, scale, edges)
        return torch.special.ndtr((edges - loc[..., None]) / scale[..., None]).sum(-1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        loc, scale, edges = ctx.saved_tensors
        z = (edges - loc[..., None]) / scale[..., None]
        density = torch.exp(-0.5 * z * z)
        common = grad / (scale * math.sqrt(2 * math.pi))
        grad_loc = -common * density.sum(-1) if ctx.needs_input_grad[0] else None
        grad_scale = -common * (density * z).sum(-1) if ctx.needs_input_grad[1] else None
        return grad_loc, grad_scale, None


class DiscretisedOutput(BFNDistribution):
    """Output distribution for discretised data (paper Sec. 4.3): a Normal
    :math:`N(\\mu_x, \\sigma_x^2)` discretised over the ``K`` bins, with the outer bins taking
    the tails,

    .. math::

        p_O(k_c \\mid \\theta;\\, t) = G(k_r) - G(k_l), \\qquad
        G(z) = \\begin{cases} 0 & z \\le -1 \\\\ \\Phi\\big(\\frac{z - \\mu_x}{\\sigma_x}\\big) & -1 < z < 1 \\\\
                             1 & z \\ge 1 \\end{cases}

    The values are the bin centres (floats in [-1, 1]), so samples can be fed back to the
    sender like any data. ``probs`` are computed as CDF differences on the tail that avoids
    cancellation; ``log_prob`` works in log space (:func:`torch.special.log_ndtr`), in float64,
    so it stays finite far into the tails.

    :param torch.Tensor loc: :math:`\\mu_x`, shape ``batch_shape``.
    :param torch.Tensor scale: :math:`\\sigma_x > 0`, broadcastable with ``loc``.
    :param int num_bins: ``K >= 2``.
    """

    arg_constraints = {"loc": constraints.real, "scale": finite_positive}
    has_enumerate_support = True

    def __init__(self, loc, scale, num_bins: int, validate_args=None):
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

    def _static_kwargs(self):
        return {"num_bins": self.num_bins}

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self):
        return _BinCentres(self.num_bins)

    @lazy_property
    def centres(self) -> torch.Tensor:
        """Bin centres, shape ``(num_bins,)``."""
        return bin_centres(self.num_bins, dtype=self.loc.dtype, device=self.loc.device)

    def _standardised_edges(self, centres):
        """Standardised lower and upper edges of the bins at ``centres`` (broadcast with the
        batch), with the outer edges at -inf and +inf."""
        # the K + 1 edges 2k/K - 1, computed once so that the upper edge of a bin is bit for bit
        # the lower edge of the next (centre +- 1/K rounds differently on the two sides, and the
        # gap, divided by a small scale, made the probabilities miss or double-count mass)
        edges = _bin_edges(self.num_bins, centres.dtype, centres.device)
        lower, upper = edges[:-1], edges[1:]
        a = (lower - self.loc[..., None]) / self.scale[..., None]
        b = (upper - self.loc[..., None]) / self.scale[..., None]
        # replace the outer edges by -inf/+inf after standardising: (+-inf - loc) / scale would
        # have an infinite derivative in scale, and inf * 0 = NaN in the backward pass
        a[..., 0] = -math.inf
        b[..., -1] = math.inf
        return a, b

    @lazy_property
    def probs(self) -> torch.Tensor:
        """Bin probabilities, shape ``batch_shape + (num_bins,)``; they sum to one."""
        a, b = self._standardised_edges(self.centres)
        upper_tail = a > 0
        # Phi(b) - Phi(a), or equivalently Phi(-a) - Phi(-b) when both edges are above the mean
        low = torch.special.ndtr(torch.where(upper_tail, -b, a))
        high = torch.special.ndtr(torch.where(upper_tail, -a, b))
        return (high - low).clamp(min=0.0)

    def log_prob(self, value):
        """:math:`\\ln p_O(x)` for ``value`` holding bin centres, shape broadcastable with
        ``batch_shape``."""
        if self._validate_args:
            self._validate_sample(value)
        index = bin_index(value, self.num_bins)
        edges = _bin_edges(self.num_bins, torch.float64, value.device)
        loc, scale = self.loc.double(), self.scale.double()
        lower = (edges[index] - loc) / scale
        upper = (edges[index + 1] - loc) / scale
        # outer edges at -inf/+inf, set after standardising so that no gradient flows through
        # (+-inf - loc) / scale (inf * 0 = NaN in the backward pass)
        lower = torch.where(index == 0, torch.full_like(lower, -math.inf), lower)
        upper = torch.where(index == self.num_bins - 1, torch.full_like(upper, math.inf), upper)
        log_mass = _log_normal_interval_mass(lower, upper)
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

        :math:`K - 1` normal CDFs instead of the :math:`2K` of :attr:`probs` (about 5 times faster
        forward and backward at 256 bins; same float32 accuracy, ~3e-7), with an analytic
        gradient (:class:`_NormalCdfSum`).
        """
        edges = _bin_edges(self.num_bins, self.loc.dtype, self.loc.device)[1:-1]
        loc, scale = torch.broadcast_tensors(self.loc, self.scale)
        below = _NormalCdfSum.apply(loc, scale, edges)
        return (1 - 1 / self.num_bins) - (2 / self.num_bins) * below

    @property
    def variance(self):
        return (self.probs * self.centres.pow(2)).sum(-1) - self.mean.pow(2)

    @property
    def mode(self):
        """The centre of the most probable bin."""
        return self.centres[self.probs.argmax(-1)]

    def receiver(self, accuracy):
        """The receiver distribution :math:`E_{p_O}[p_S(\\cdot \\mid k_c;\\, \\alpha)]`."""
        return DiscretisedReceiver(self.probs, accuracy, validate_args=self._validate_args)


class DiscretisedReceiver(BFNDistribution):
    """Receiver distribution for discretised data (paper Sec. 4.5): the sender averaged over
    the output distribution,

    .. math::

        p_R(y \\mid \\theta;\\, t, \\alpha) = \\sum_{k=1}^K p_O(k \\mid \\theta;\\, t)\\,
        N(y;\\, k_c, \\alpha^{-1}).

    :param torch.Tensor probs: bin probabilities :math:`p_O(k)`, shape
        ``batch_shape + (num_bins,)`` (for instance :attr:`DiscretisedOutput.probs`).
    :param torch.Tensor accuracy: :math:`\\alpha > 0`, broadcastable with ``batch_shape``.
    """

    arg_constraints = {"probs": _simplex, "accuracy": finite_positive}
    _parameter_event_dims = {"probs": 1}
    support = constraints.real
    has_rsample = False

    def __init__(self, probs, accuracy, validate_args=None):
        probs = to_float_tensor(probs, "probs")
        if probs.dim() < 1 or probs.shape[-1] < 2:
            raise ValueError(f"probs must have a last dimension of at least 2 bins, got shape {tuple(probs.shape)}")
        accuracy = to_float_tensor(accuracy, "accuracy", probs)
        try:
            batch_shape = broadcast_shape(probs.shape[:-1], accuracy.shape)
        except ValueError as error:
            raise ValueError(
                f"probs (batch shape {tuple(probs.shape[:-1])}) and accuracy (shape {tuple(accuracy.shape)}) "
                "cannot be broadcast together"
            ) from error
        self.num_bins = probs.shape[-1]
        self.probs = probs.expand(batch_shape + probs.shape[-1:])
        self.accuracy = accuracy.expand(batch_shape)
        super().__init__(batch_shape, torch.Size(), validate_args=validate_args)

    @lazy_property
    def centres(self) -> torch.Tensor:
        return bin_centres(self.num_bins, dtype=self.probs.dtype, device=self.probs.device)

    def components(self) -> NormalSender:
        """The mixture components: senders at every bin centre, batch shape ``batch_shape + (K,)``."""
        return NormalSender(self.centres, self.accuracy[..., None], validate_args=False)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        component_log_prob = self.components().log_prob(value[..., None])
        # log(0) = -inf is right for the value, but its derivative 1/0 times the zero weight
        # logsumexp gives it is NaN: take the log of the positive entries only
        positive = self.probs > 0
        log_probs = torch.where(positive, torch.where(positive, self.probs, 1.0).log(), -math.inf)
        return torch.logsumexp(log_probs + component_log_prob, dim=-1)

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            index = torch.distributions.Categorical(probs=self.probs).sample(sample_shape)
            centre = self.centres[index]
            return centre + torch.randn_like(centre) * self.accuracy.rsqrt()

    @property
    def mean(self):
        return (self.probs * self.centres).sum(-1)

    @property
    def variance(self):
        mean = self.mean
        return (self.probs * self.centres.pow(2)).sum(-1) - mean.pow(2) + self.accuracy.reciprocal()
