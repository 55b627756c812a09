"""The Bayesian Flow Network: a data type (:mod:`pyro_bfn.data_types`) plus a network.

Losses, in nats per example (paper Secs. 2.5, 3.10-3.11, 4.6, 5.6-5.7):

* n-step loss :math:`L^n(x) = n\\, E_{i \\sim U\\{1..n\\},\\, \\theta \\sim p_F(\\cdot \\mid x; t_{i-1})}
  D_{KL}(p_S(\\cdot \\mid x; \\alpha_i) \\,\\|\\, p_R(\\cdot \\mid \\theta; t_{i-1}, \\alpha_i))`, the
  KL taken from the registry of :mod:`pyro_bfn.distributions.kl` (for discrete data the
  joint K-dimensional receiver);
* continuous-time loss :math:`L^\\infty(x) = E_{t \\sim U(0,1),\\, \\theta \\sim p_F(\\cdot \\mid x; t)}
  \\alpha(t)\\, \\lim_{\\alpha\\to0} D_{KL}/\\alpha`
  (:func:`~pyro_bfn.distributions.continuous_time_kl_rate`);
* reconstruction loss :math:`L^r(x) = -E_{\\theta \\sim p_F(\\cdot \\mid x; 1)} \\ln p_O(x \\mid \\theta; 1)`.

:math:`L^n + L^r` and :math:`L^\\infty + L^r` are upper bounds on :math:`-\\ln p(x)` (each
estimated without bias by one draw of :math:`t` and :math:`\\theta` per example).

The network runs under autocast when ``autocast_dtype`` is set; its output is cast to
float32 before any loss arithmetic.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import kl_divergence

from .data_types import DataType
from .distributions import continuous_time_kl_rate

__all__ = ["BFN", "LossTerms"]


@dataclass
class LossTerms:
    """Per-example loss terms in nats, each of shape ``(B,)``.

    :ivar flow: :math:`L^n` (n-step) or :math:`L^\\infty` (continuous time).
    :ivar reconstruction: :math:`L^r`, or ``None`` when not computed.
    """

    flow: torch.Tensor
    reconstruction: torch.Tensor | None = None

    @property
    def total(self) -> torch.Tensor:
        """:math:`L + L^r` (the negative likelihood bound) per example, shape ``(B,)``."""
        return self.flow if self.reconstruction is None else self.flow + self.reconstruction


def _sum_data_dims(value: torch.Tensor) -> torch.Tensor:
    return value.reshape(value.shape[0], -1).sum(-1)


class BFN(nn.Module):
    """A Bayesian Flow Network.

    :param DataType data_type: :class:`~pyro_bfn.data_types.ContinuousData`,
        :class:`~pyro_bfn.data_types.DiscretisedData` or :class:`~pyro_bfn.data_types.DiscreteData`.
    :param nn.Module network: maps features ``(B, *data_shape, data_type.num_input_features)``
        and times ``(B,)`` to ``(B, *data_shape, data_type.num_output_features)`` (see
        :class:`pyro_bfn.models.adapters.BackboneAdapter`).
    :param tuple data_shape: shape of one example, e.g. ``(1, 28, 28)``.
    :param autocast_dtype: run the network under :func:`torch.autocast` with this dtype
        (e.g. ``torch.bfloat16`` on CPU, ``torch.float16`` on CUDA); ``None`` for full precision.
    """

    def __init__(self, data_type: DataType, network: nn.Module, data_shape, autocast_dtype=None):
        super().__init__()
        if not isinstance(data_type, DataType):
            raise TypeError(f"data_type must be a DataType, got {type(data_type).__name__}")
        self.data_type = data_type
        self.network = network
        self.data_shape = tuple(int(d) for d in data_shape)
        self.autocast_dtype = autocast_dtype

    @property
    def dtype(self) -> torch.dtype:
        """The working precision: the dtype of the network's floating parameters (times,
        accuracies and losses are computed in it; autocast only changes the network's matmuls)."""
        for parameter in self.parameters():
            if parameter.is_floating_point():
                return parameter.dtype
        return torch.get_default_dtype()

    # ------------------------------------------------------------------ network
    def _autocast(self, device: torch.device):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.autocast_dtype)

    def output_distribution(self, input_distribution, t: torch.Tensor):
        """:math:`p_O(\\cdot \\mid \\theta;\\, t)` for input parameters ``input_distribution``
        (batch shape ``(B, *data_shape)``) at times ``t`` of shape ``(B,)``."""
        features = self.data_type.network_features(input_distribution)
        with self._autocast(features.device):
            network_output = self.network(features, t)
        expected = features.shape[:-1] + (self.data_type.num_output_features,)
        if network_output.shape != expected:
            raise ValueError(
                f"the network returned shape {tuple(network_output.shape)}, expected {tuple(expected)}"
            )
        if network_output.dtype in (torch.float16, torch.bfloat16):
            network_output = network_output.float()  # loss arithmetic never in half precision
        return self.data_type.output(network_output, input_distribution, t)

    def _check_batch(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"x must be a tensor, got {type(x).__name__}")
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(f"x must have shape (batch, {', '.join(map(str, self.data_shape))}), got {tuple(x.shape)}")
        self.data_type.check_data(x)

    # ------------------------------------------------------------------ losses
    def continuous_time_loss(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """:math:`L^\\infty` per example, shape ``(B,)``; ``t`` defaults to ``U(0, 1)`` draws."""
        if t is None:
            t = torch.rand(x.shape[0], device=x.device, dtype=self.dtype)
        input_distribution = self.data_type.sample_input(x, t)
        output = self.output_distribution(input_distribution, t)
        rate = continuous_time_kl_rate(output, x)
        return _sum_data_dims(self.data_type.rate(t, x) * rate)

    def discrete_time_loss(self, x: torch.Tensor, n_steps: int, i: torch.Tensor | None = None) -> torch.Tensor:
        """:math:`L^n` per example, shape ``(B,)``; ``i`` (shape ``(B,)``, values ``1..n``)
        defaults to uniform draws."""
        if i is None:
            i = torch.randint(1, n_steps + 1, (x.shape[0],), device=x.device)
        t = (i - 1).to(self.dtype) / n_steps
        input_distribution = self.data_type.sample_input(x, t)
        output = self.output_distribution(input_distribution, t)
        accuracy = self.data_type.step_accuracy(i, n_steps, x, self.dtype)
        sender = self.data_type.sender(x, accuracy)
        receiver = self.data_type.receiver(output, accuracy)
        return n_steps * _sum_data_dims(kl_divergence(sender, receiver))

    def reconstruction_loss(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`L^r` per example, shape ``(B,)``."""
        t = torch.ones(x.shape[0], device=x.device, dtype=self.dtype)
        input_distribution = self.data_type.sample_input(x, t)
        output = self.output_distribution(input_distribution, t)
        return -_sum_data_dims(self.data_type.reconstruction_distribution(output).log_prob(x))

    def loss(self, x: torch.Tensor, n_steps: int | None = None, reconstruction: bool = True) -> LossTerms:
        """Loss terms for a batch ``x`` of shape ``(B, *data_shape)``.

        :param int n_steps: ``None`` for the continuous-time loss, else the n-step loss.
        :param bool reconstruction: also compute :math:`L^r` (needed for the likelihood bound;
            training usually skips it, as in the paper).
        """
        self._check_batch(x)
        if n_steps is None:
            flow = self.continuous_time_loss(x)
        else:
            if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
                raise ValueError(f"n_steps must be a positive integer or None, got {n_steps!r}")
            flow = self.discrete_time_loss(x, n_steps)
        return LossTerms(flow, self.reconstruction_loss(x) if reconstruction else None)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, num_samples: int, n_steps: int, mode: bool = False, device=None, progress=None):
        """Draw ``num_samples`` examples with the paper's ``n``-step sampler: from the prior, for
        ``i = 1..n``: run the network at :math:`t_{i-1}`, draw :math:`k \\sim p_O`, draw
        :math:`y \\sim p_S(\\cdot \\mid k;\\, \\alpha_i)`, apply the Bayesian update. Every one of the
        ``n`` updates happens; then the network runs at ``t = 1`` and a draw from :math:`p_O` (or
        its mode) is returned, shape ``(num_samples, *data_shape)``.

        :param progress: optional callable ``progress(i, n_steps)`` called after each update.
        """
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
        if device is None:
            device = next(self.parameters()).device
        shape = (num_samples,) + self.data_shape
        dtype = self.dtype
        input_distribution = self.data_type.prior(shape, dtype=dtype, device=device)
        for step in range(1, n_steps + 1):
            t = torch.full((num_samples,), (step - 1) / n_steps, device=device, dtype=dtype)
            k = self.output_distribution(input_distribution, t).sample()
            i = torch.full((num_samples,), step, device=device)
            accuracy = self.data_type.step_accuracy(i, n_steps, k, dtype)
            y = self.data_type.sender(k, accuracy).sample()
            input_distribution = input_distribution.update(y, accuracy)
            if progress is not None:
                progress(step, n_steps)
        output = self.output_distribution(input_distribution, torch.ones(num_samples, device=device, dtype=dtype))
        return output.mode if mode else output.sample()
