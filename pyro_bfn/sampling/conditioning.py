"""Conditioning a sample on known dimensions (inpainting; text: known characters).

``known`` holds data of shape ``(B, *data_shape)`` (or ``data_shape``, for every sample) and
``mask`` booleans of the same shape, true where the value is known.

* Replacement (:class:`Replacement`, any sampler): after every update to time :math:`t_i`, the
  input parameters of the known dimensions are replaced by a draw from the Bayesian flow of the
  known values, :math:`\\theta^{known}_i \\sim p_F(\\cdot \\mid x^{known};\\, t_i)` (paper Secs.
  3.3, 5.3: the flow factorises over the dimensions), and the known values are returned as they
  are. The network sees the known part as it saw data in training and fills in the rest.
* Sequential Monte Carlo (:func:`smc_inpaint`, ancestral steps), as ProtBFN conditions on part of
  a sequence: ``P`` particles per example; at step :math:`i` one sender draw of the known part,
  :math:`y^{known} \\sim p_S(\\cdot \\mid x^{known};\\, \\alpha_i)`, is shared by the particles, each
  particle's weight is multiplied by the likelihood of that draw under its receiver,
  :math:`p_R(y^{known} \\mid \\theta_{i-1};\\, t_{i-1}, \\alpha_i)`, the unknown part is drawn from
  the receiver as in ancestral sampling, and both parts update :math:`\\theta`. The particles of an
  example are resampled (systematic resampling, Pyro's :class:`~pyro.infer.SMCFilter`'s) when
  their effective sample size :math:`1/\\sum_p w_p^2` falls below ``ess_threshold * P``; the
  result is one particle per example, drawn by the final weights.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from pyro.infer.smcfilter import _systematic_sample  # batched systematic resampling

from ..checks import check_integer
from ..data_types import DiscreteData
from ..distributions import CategoricalInput, NormalInput
from .grid import TimeGrid
from .loop import receiver_draw, run_steps
from .temperature import tempered_output_draw

__all__ = ["Replacement", "SMCResult", "check_known", "smc_inpaint"]


def check_known(bfn, known, mask, num_samples: int, device):
    """``(known, mask)`` expanded to ``(num_samples, *data_shape)`` on ``device``, or a
    :class:`ValueError` naming the problem (a missing half, a mask of the wrong shape or dtype,
    known values that are not data)."""
    if (known is None) != (mask is None):
        raise ValueError("inpainting needs both known and mask (mask true where known holds the value)")
    shape = (num_samples,) + tuple(bfn.data_shape)
    for name, value in (("known", known), ("mask", mask)):
        if not isinstance(value, torch.Tensor) or tuple(value.shape) not in (shape, shape[1:]):
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"{name} must have shape {shape} or {shape[1:]} (the data shape), got {got}")
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor (true where known), got dtype {mask.dtype}")
    known, mask = known.to(device).expand(shape), mask.to(device).expand(shape)
    bfn.data_type.check_data(known)
    return known, mask


def _replace(data_type, input_distribution, flow_input, mask):
    """The input distribution with the dimensions of ``mask`` taken from ``flow_input``."""
    if isinstance(data_type, DiscreteData):
        logits = torch.where(mask[..., None], flow_input.logits, torch.log_softmax(input_distribution.logits, -1))
        return CategoricalInput.from_log_probs(logits, validate_args=False)
    loc = torch.where(mask, flow_input.loc, input_distribution.loc)
    return NormalInput(loc, input_distribution.precision, validate_args=False)


class Replacement:
    """Inpainting by replacement (module docstring), for any sampler.

    :param bfn: the :class:`~pyro_bfn.bfn.BFN`.
    :param torch.Tensor known: known values, shape ``(B, *data_shape)``.
    :param torch.Tensor mask: bool, shape ``(B, *data_shape)``, true where known.
    """

    def __init__(self, bfn, known, mask):
        self.data_type, self.dtype, self.known, self.mask = bfn.data_type, bfn.dtype, known, mask

    def __call__(self, input_distribution, t: float):
        """The input distribution at time ``t`` with its known dimensions replaced by a draw from
        :math:`p_F(\\cdot \\mid x^{known};\\, t)`."""
        times = torch.full(self.known.shape[:1], float(t), dtype=self.dtype, device=self.known.device)
        flow_input = self.data_type.sample_input(self.known, times, validate_args=False)
        return _replace(self.data_type, input_distribution, flow_input, self.mask)

    def finish(self, samples: torch.Tensor) -> torch.Tensor:
        """The samples with the known values put back."""
        return torch.where(self.mask, self.known.to(samples.dtype), samples)


class SMCResult(NamedTuple):
    """What :func:`smc_inpaint` returns.

    :ivar torch.Tensor samples: one completed example per input, ``(B, *data_shape)``.
    :ivar torch.Tensor effective_sample_size: ESS per step and example, ``(n, B)``, before any
        resampling of that step.
    :ivar int network_calls: the network evaluations (each over all ``B * P`` particles).
    """

    samples: torch.Tensor
    effective_sample_size: torch.Tensor
    network_calls: int


def smc_inpaint(
    bfn, known, mask, n_steps: int, *, num_particles: int = 16, ess_threshold: float = 0.5, context=None,
    mode: bool = False, device=None, progress=None, temperature: float = 1.0,
) -> SMCResult:
    """Complete ``known`` where ``mask`` is false by sequential Monte Carlo over ancestral steps
    (module docstring), ``P = num_particles`` particles per example.

    :param bfn: the :class:`~pyro_bfn.bfn.BFN`.
    :param torch.Tensor known: shape ``(B, *data_shape)``.
    :param torch.Tensor mask: bool, shape ``(B, *data_shape)``, true where known.
    :param int n_steps: ``n``.
    :param float ess_threshold: resample an example's particles when their ESS is below
        ``ess_threshold * P``.
    :param context: ``None``, or conditioning of leading dimension ``B``.
    :param float temperature: tempers the particles' receiver draws and the final draw
        (:mod:`pyro_bfn.sampling.temperature`); the known part's draws and the weights are not.
    """
    num_particles = check_integer("num_particles", num_particles)
    grid = TimeGrid(n_steps)
    if not isinstance(known, torch.Tensor) or known.dim() < 1:
        raise ValueError("known must be a tensor of shape (B, *data_shape)")
    batch = known.shape[0]
    if device is None:
        device = next(bfn.parameters()).device
    known, mask = check_known(bfn, known, mask, batch, device)
    data_type = bfn.data_type
    data_dims = tuple(range(1, known.dim()))
    repeat = (lambda v: None if v is None else v.repeat_interleave(num_particles, 0))
    mask_p, context_p = repeat(mask), repeat(context)
    log_weights = torch.zeros(batch, num_particles, device=device, dtype=torch.float64)
    ess_history = []

    def resample(value, index):
        flat = index + torch.arange(batch, device=device)[:, None] * num_particles
        return value[flat.reshape(-1)]

    def draw(step, output, accuracy):
        nonlocal log_weights
        y_known = repeat(data_type.sender(known, accuracy[::num_particles], validate_args=False).sample())
        receiver = data_type.receiver(output, accuracy)
        log_likelihood = receiver.log_prob(y_known)
        known_part = log_likelihood.masked_fill(~mask_p, 0.0).sum(data_dims).reshape(batch, num_particles)
        log_weights = log_weights + known_part.to(torch.float64)
        y = receiver_draw(data_type, output, accuracy, temperature)
        keep = mask_p[..., None] if isinstance(data_type, DiscreteData) else mask_p
        return torch.where(keep, y_known, y)

    def after_update(input_distribution, t):
        nonlocal log_weights
        probs = torch.softmax(log_weights, -1)
        ess = probs.pow(2).sum(-1).reciprocal()
        ess_history.append(ess.detach().to(torch.float32))
        low = ess < ess_threshold * num_particles
        if not bool(low.any()):
            return input_distribution
        index = torch.where(low[:, None], _systematic_sample(probs), torch.arange(num_particles, device=device))
        log_weights = torch.where(low[:, None], torch.zeros_like(log_weights), log_weights)
        if isinstance(data_type, DiscreteData):
            return CategoricalInput.from_log_probs(resample(input_distribution.logits, index), validate_args=False)
        return NormalInput(resample(input_distribution.loc, index), resample(input_distribution.precision, index),
                           validate_args=False)

    result = run_steps(bfn, grid, batch * num_particles, draw, device=device, context=context_p, progress=progress,
                       condition=after_update)
    samples = result.output.mode if mode else tempered_output_draw(result.output, temperature)
    pick = torch.distributions.Categorical(logits=log_weights).sample()
    samples = resample(samples, pick[:, None])
    samples = torch.where(mask, known.to(samples.dtype), samples)
    return SMCResult(samples, torch.stack(ess_history), result.network_calls)
