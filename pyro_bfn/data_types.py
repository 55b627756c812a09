"""The three kinds of data a BFN models, each tying together an accuracy schedule, the
distributions of :mod:`pyro_bfn.distributions`, and how the network's inputs and outputs
map to input and output parameters (paper Secs. 3-5).

A data type knows nothing about the network beyond the number of features per variable it
reads (:attr:`~DataType.num_input_features`) and writes
(:attr:`~DataType.num_output_features`).

Data representation (``x``, shape ``(B, *data_shape)``):

* :class:`ContinuousData`: floats;
* :class:`DiscretisedData`: floats, the bin centres :math:`(2k+1)/K - 1` (use
  :meth:`DiscretisedData.from_integers` for integer levels);
* :class:`DiscreteData`: integer class indices ``0..K-1``.

``t`` is always a tensor of shape ``(B,)``, one time per example.
"""

from __future__ import annotations

import math

import torch

from .checks import check_integer
from .distributions import (
    CategoricalInput,
    CategoricalOutput,
    DiscreteFlow,
    DiscreteSender,
    DiscretisedOutput,
    NormalFlow,
    NormalInput,
    NormalSender,
    PointMassOutput,
    bin_centres,
    bin_index,
)
from .distributions.util import validation_enabled_for
from .schedules import ContinuousSchedule, DiscreteSchedule

__all__ = ["ContinuousData", "DataType", "DiscreteData", "DiscretisedData", "T_MIN", "per_example"]

#: Below this time the network's noise prediction is not used (paper Sec. 3.6).
T_MIN = 1e-6


def per_example(values: torch.Tensor, like, name: str = "t") -> torch.Tensor:
    """Reshape per-example values of shape ``(B,)`` (times, accuracies, masks) to broadcast over
    ``like``, a tensor of shape ``(B, *rest)`` or that shape: the result has shape
    ``(B, 1, ..., 1)``. ``name`` names ``values`` in the error raised for a wrong shape."""
    shape = like.shape if isinstance(like, torch.Tensor) else torch.Size(like)
    if values.dim() != 1 or values.shape[0] != shape[0]:
        raise ValueError(f"{name} must have shape (batch,) = ({shape[0]},), got {tuple(values.shape)}")
    return values.reshape(values.shape + (1,) * (len(shape) - 1))


def _check_bin_centres(x: torch.Tensor, num_bins: int) -> None:
    """Raise unless every entry of the float tensor ``x`` is one of the ``num_bins`` bin centres."""
    centres = bin_centres(num_bins, dtype=x.dtype, device=x.device)
    if not torch.isfinite(x).all() or (centres[bin_index(x, num_bins)] - x).abs().max() > 1e-4:
        raise ValueError(f"discretised data must hold the {num_bins} bin centres (2k+1)/K - 1 in [-1, 1]")


class DataType:
    """Interface shared by the three data types."""

    schedule = None
    #: features per variable that the network reads / writes
    num_input_features: int
    num_output_features: int

    def check_data(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is valid data of this type."""
        raise NotImplementedError

    def prior(self, shape, dtype=torch.float32, device=None):
        """The prior input distribution, batch shape ``shape = (B, *data_shape)``."""
        raise NotImplementedError

    def flow(self, x, t, validate_args=None):
        """The Bayesian flow distribution :math:`p_F(\\theta \\mid x;\\, t)`.

        ``validate_args`` here and below is passed to the distributions built (``None``: Pyro's
        global setting); :class:`~pyro_bfn.bfn.BFN` passes ``False`` for the distributions it
        builds from data it has already checked."""
        raise NotImplementedError

    def sample_flow(self, x, t, validate_args=None) -> torch.Tensor:
        """Draw :math:`\\theta \\sim p_F(\\cdot \\mid x;\\, t)` (paper Secs. 3.5, 5.5) as the
        tensor that parametrises the input distribution at time ``t``: the mean :math:`\\mu`
        (shape ``(B, *data_shape)``) for continuous and discretised data, the
        log-probabilities :math:`\\ln\\theta` (shape ``(B, *data_shape, K)``) for discrete data.
        Rows of the result can be taken (``flow_sample[rows]``) together with ``t[rows]``."""
        raise NotImplementedError

    def input_distribution(self, flow_sample: torch.Tensor, t, validate_args=None):
        """The input distribution at time ``t`` (shape ``(B,)``) whose parameters a
        :meth:`sample_flow` draw ``flow_sample`` holds."""
        raise NotImplementedError

    def sample_input(self, x, t, validate_args=None):
        """Draw :math:`\\theta \\sim p_F(\\cdot \\mid x;\\, t)` and return it as an input distribution
        (:meth:`sample_flow`, then :meth:`input_distribution`)."""
        return self.input_distribution(self.sample_flow(x, t, validate_args), t, validate_args)

    def network_features(self, input_distribution) -> torch.Tensor:
        """Network input, shape ``(B, *data_shape, num_input_features)``."""
        raise NotImplementedError

    def output(self, network_output, input_distribution, t, validate_args=None):
        """The output distribution from the network output ``(B, *data_shape, num_output_features)``."""
        raise NotImplementedError

    def sender(self, x, accuracy, validate_args=None):
        """The sender distribution :math:`p_S(\\cdot \\mid x;\\, \\alpha)`."""
        raise NotImplementedError

    def receiver(self, output, accuracy):
        """The receiver distribution :math:`p_R(\\cdot \\mid \\theta;\\, t, \\alpha)` of an output distribution."""
        return output.receiver(accuracy)

    def reconstruction_distribution(self, output):
        """The distribution whose negative log-likelihood of ``x`` at ``t = 1`` is the
        reconstruction loss :math:`L^r`."""
        return output

    def step_accuracy(self, i, n_steps, x, dtype):
        """:math:`\\alpha_i` in ``dtype`` for step indices ``i`` of shape ``(B,)``, broadcasting over
        data ``x`` of shape ``(B, *data_shape)`` (or over that shape itself)."""
        return per_example(self.schedule.step_accuracy(i, n_steps, dtype=dtype), x, name="i")

    def rate(self, t, x):
        """:math:`\\alpha(t)` (in the dtype of ``t``, shape ``(B,)``), broadcasting over data ``x``."""
        return per_example(self.schedule.alpha(t), x)

    def num_variables(self, data_shape) -> int:
        return math.prod(data_shape)


class _NormalInputData(DataType):
    """Shared by continuous and discretised data: Normal input, sender, update and flow."""

    num_input_features = 1

    def __init__(self, sigma_1: float, t_min: float = T_MIN):
        self.schedule = ContinuousSchedule(sigma_1)
        if not 0 <= t_min < 1:
            raise ValueError(f"t_min must lie in [0, 1), got {t_min}")
        self.t_min = t_min

    def prior(self, shape, dtype=torch.float32, device=None):
        return NormalInput.prior(shape, dtype=dtype, device=device)

    def flow(self, x, t, validate_args=None):
        return NormalFlow(x, per_example(self.schedule.beta(t).to(x.dtype), x), validate_args=validate_args)

    def sample_flow(self, x, t, validate_args=None):
        return self.flow(x, t, validate_args).rsample()

    def input_distribution(self, flow_sample, t, validate_args=None):
        # the flow's precision rho = 1 + beta(t) does not depend on x, so the flow of any x gives it
        return self.flow(torch.zeros_like(flow_sample), t, validate_args).input_distribution(flow_sample)

    def network_features(self, input_distribution):
        return input_distribution.loc[..., None]

    def sender(self, x, accuracy, validate_args=None):
        return NormalSender(x, accuracy, validate_args=validate_args)

    def _noise_to_data(self, loc, t, noise):
        """The data prediction from a noise prediction (paper Sec. 3.6):
        :math:`\\hat x = \\mu/\\gamma - \\sqrt{(1-\\gamma)/\\gamma}\\, \\hat\\epsilon`, and
        :math:`\\sqrt{(1-\\gamma)/\\gamma}`; below ``t_min`` the caller uses the prior guess."""
        t = per_example(t, loc)
        gamma = self.schedule.gamma(t.clamp(min=self.t_min)).to(loc.dtype)
        noise_scale = ((1 - gamma) / gamma).sqrt()
        return loc / gamma - noise_scale * noise, noise_scale, t < self.t_min


class ContinuousData(_NormalInputData):
    """Continuous data (paper Sec. 3): the network predicts the noise :math:`\\hat\\epsilon`
    (one output feature per variable), :math:`\\hat x` is clipped to ``[x_min, x_max]`` and set
    to 0 below ``t_min``.

    :param float sigma_1: the schedule's final standard deviation (paper: 0.02 for continuous
        data, 1e-3 for 256-bin data).
    :param float t_min: below this time :math:`\\hat x = 0`.
    :param tuple clip: ``(x_min, x_max)`` for :math:`\\hat x` (``None``: no clipping).
    :param int num_bins: for data that lie on ``K`` bin centres (discretised data trained with
        the continuous-data loss, paper Sec. 6.3): the reconstruction term then gives the bin
        of ``x`` the mass of :math:`N(\\hat x, \\sigma_1^2)` over it (the outer bins take the
        tails, as in :class:`~pyro_bfn.distributions.DiscretisedOutput`), so that the bound is
        on a probability, in the same units as :class:`DiscretisedData`'s. ``None``: a density.
    """

    num_output_features = 1

    def __init__(self, sigma_1: float = 0.02, t_min: float = T_MIN, clip=(-1.0, 1.0), num_bins: int | None = None):
        super().__init__(sigma_1, t_min)
        self.clip = clip
        self.num_bins = check_integer("num_bins", num_bins, minimum=2, allow_none=True)

    def __repr__(self):
        bins = "" if self.num_bins is None else f", num_bins={self.num_bins}"
        return f"ContinuousData(sigma_1={self.schedule.sigma_1}{bins})"

    def check_data(self, x):
        if not x.is_floating_point():
            raise ValueError(f"continuous data must be a floating-point tensor, got dtype {x.dtype}")
        if not torch.isfinite(x).all():
            raise ValueError("continuous data contains NaN or inf")
        if self.num_bins is not None:
            _check_bin_centres(x, self.num_bins)

    def output(self, network_output, input_distribution, t, validate_args=None):
        loc = input_distribution.loc
        x_hat, _, early = self._noise_to_data(loc, t, network_output[..., 0].to(loc.dtype))
        x_hat = torch.where(early, torch.zeros_like(x_hat), x_hat)
        if self.clip is not None:
            x_hat = x_hat.clamp(*self.clip)
        return PointMassOutput(x_hat, validate_args=validate_args)

    def reconstruction_distribution(self, output):
        """Continuous data have a point-mass output, which has no density; the reconstruction
        term uses :math:`N(\\hat x, \\sigma_1^2)` at ``t = 1`` (the input distribution's own
        uncertainty at the end of the flow), so that the bound is on a density; with
        ``num_bins`` the same Normal discretised over the bins, so that it is on a probability."""
        import pyro.distributions as dist

        scale = torch.full_like(output.x_hat, self.schedule.sigma_1)
        if self.num_bins is not None:
            return DiscretisedOutput(output.x_hat, scale, self.num_bins)
        return dist.Normal(output.x_hat, scale)


class DiscretisedData(_NormalInputData):
    """Discretised data with ``num_bins`` bins on [-1, 1] (paper Sec. 4): the network predicts
    :math:`(\\mu_\\epsilon, \\ln\\sigma_\\epsilon)` per variable (two output features), turned
    into the output distribution's :math:`\\mu_x, \\sigma_x`; below ``t_min``
    :math:`\\mu_x = 0, \\sigma_x = 1`.

    :param int num_bins: ``K``.
    :param float sigma_1: paper: 1e-3 for 256 bins, sqrt(1e-3) for 16 bins.
    """

    num_output_features = 2

    def __init__(self, num_bins: int, sigma_1: float | None = None, t_min: float = T_MIN):
        self.num_bins = check_integer("num_bins", num_bins, minimum=2)
        if sigma_1 is None:
            sigma_1 = 1e-3 if num_bins > 16 else math.sqrt(1e-3)
        super().__init__(sigma_1, t_min)

    def __repr__(self):
        return f"DiscretisedData(num_bins={self.num_bins}, sigma_1={self.schedule.sigma_1})"

    def from_integers(self, levels: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        """Map integer levels ``0..K-1`` to bin centres."""
        if levels.is_floating_point():
            raise ValueError(f"levels must be integers, got dtype {levels.dtype}")
        if (levels < 0).any() or (levels >= self.num_bins).any():
            raise ValueError(f"levels must lie in 0..{self.num_bins - 1}")
        return bin_centres(self.num_bins, dtype=dtype, device=levels.device)[levels.long()]

    def to_integers(self, x: torch.Tensor) -> torch.Tensor:
        """Map bin centres back to integer levels."""
        return bin_index(x, self.num_bins)

    def check_data(self, x):
        if not x.is_floating_point():
            raise ValueError(f"discretised data must be bin centres as floats, got dtype {x.dtype}")
        _check_bin_centres(x, self.num_bins)

    def output(self, network_output, input_distribution, t, validate_args=None):
        loc = input_distribution.loc
        network_output = network_output.to(loc.dtype)
        mean, noise_scale, early = self._noise_to_data(loc, t, network_output[..., 0])
        scale = noise_scale * network_output[..., 1].exp()
        mean = torch.where(early, torch.zeros_like(mean), mean)
        scale = torch.where(early, torch.ones_like(scale), scale)
        # a finite but extreme log-scale output overflows or underflows exp(): name it (the
        # output distribution may be built unvalidated, from a network output checked finite)
        if validation_enabled_for(None) and not bool(((scale > 0) & torch.isfinite(scale)).all()):
            raise ValueError("the network's log-scale output gives an output scale of 0 or inf (|ln sigma_eps| too large)")
        return DiscretisedOutput(mean, scale, self.num_bins, validate_args=validate_args)


class DiscreteData(DataType):
    """Discrete data with ``num_classes`` classes (paper Sec. 5).

    Network input: :math:`2\\theta - 1` per class; for ``K = 2`` a single feature
    :math:`2\\theta_1 - 1` (the two probabilities sum to one, so one carries all of
    :math:`\\theta`; paper Sec. 6.2). Network output: ``K`` logits; for ``K = 2`` one logit
    :math:`\\ell`, the output probabilities being :math:`\\mathrm{softmax}(0, \\ell)`.

    :param int num_classes: ``K >= 2``.
    :param float beta_1: final accuracy (paper: 9 for binarized MNIST, 0.5625 for text8).
    :param int kl_samples: Monte Carlo draws of the n-step KL when ``K > 2``.
    """

    def __init__(self, num_classes: int, beta_1: float, kl_samples: int = 16):
        self.num_classes = check_integer("num_classes", num_classes, minimum=2)
        self.schedule = DiscreteSchedule(beta_1)
        self.kl_samples = kl_samples
        self.num_input_features = 1 if num_classes == 2 else num_classes
        self.num_output_features = 1 if num_classes == 2 else num_classes

    def __repr__(self):
        return f"DiscreteData(num_classes={self.num_classes}, beta_1={self.schedule.beta_1})"

    def check_data(self, x):
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise ValueError(f"discrete data must be integer class indices, got dtype {x.dtype}")
        if not bool(((x >= 0) & (x < self.num_classes)).all()):
            raise ValueError(f"discrete data must hold class indices in 0..{self.num_classes - 1}")

    def prior(self, shape, dtype=torch.float32, device=None):
        return CategoricalInput.prior(shape, self.num_classes, dtype=dtype, device=device)

    def flow(self, x, t, validate_args=None):
        beta = per_example(self.schedule.beta(t), x)
        return DiscreteFlow(x, beta, self.num_classes, validate_args=validate_args)

    def sample_flow(self, x, t, validate_args=None):
        return self.flow(x, t, validate_args).rsample_logits()

    def input_distribution(self, flow_sample, t, validate_args=None):
        return CategoricalInput.from_log_probs(flow_sample, validate_args=validate_args)

    def network_features(self, input_distribution):
        probs = input_distribution.probs
        if self.num_classes == 2:
            probs = probs[..., 1:]
        return 2 * probs - 1

    def output(self, network_output, input_distribution, t, validate_args=None):
        logits = network_output.to(input_distribution.logits.dtype)
        if self.num_classes == 2:
            logits = torch.cat([torch.zeros_like(logits), logits], dim=-1)
        return CategoricalOutput.from_log_probs(torch.log_softmax(logits, dim=-1), validate_args=validate_args)

    def sender(self, x, accuracy, validate_args=None):
        return DiscreteSender(x, accuracy, self.num_classes, validate_args=validate_args)

    def receiver(self, output, accuracy):
        return output.receiver(accuracy, kl_samples=self.kl_samples)
