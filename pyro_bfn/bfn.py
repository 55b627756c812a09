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

Conditional BFNs: every loss and the sampler take an optional ``context`` (class labels of
shape ``(B,)`` or float vectors of shape ``(B, D)``), passed to the network as
``network(features, t, context)``; the network must then accept it (the backbones of
:mod:`pyro_bfn.models` do when built with ``num_classes`` or ``context_dim``). With
``context_dropout = p`` the training loss replaces each example's context by the null token
with probability ``p`` (classifier-free training): labels by
:data:`~pyro_bfn.models.NULL_LABEL` (``-1``), float vectors by a row of NaN, which the
backbones' :class:`~pyro_bfn.models.ContextEmbedding` maps to a learned null
embedding. ``context=None`` is the null context for a conditional network, and no context at
all for an unconditional one.

The n-step times :math:`t_{i-1} = (i-1)/n`, the random times and steps of the losses and the
generative loop of the sampler are those of :mod:`pyro_bfn.sampling`.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.distributions import kl_divergence

from .checks import check_integer
from .data_types import DataType, per_example
from .distributions import continuous_time_kl_rate
from .distributions.util import validation_enabled_for
from .models import NULL_LABEL
from .sampling import TimeGrid, draw_times
from .sampling import api as sampling_api
from .sampling.api import random_numbers_from

__all__ = ["BFN", "LossDraws", "LossTerms", "NonFiniteNetworkOutput", "drop_context"]


class NonFiniteNetworkOutput(ValueError):
    """The network returned NaN or infinite values (raised by
    :meth:`BFN.output_distribution` while validation is on; during training it means the run
    diverged)."""


@dataclass
class LossTerms:
    """Per-example loss terms in nats, each of shape ``(B,)``.

    :ivar transmission: the transmission cost of the sender's messages, :math:`L^n` (n-step)
        or :math:`L^\\infty` (continuous time).
    :ivar reconstruction: :math:`L^r`, or ``None`` when not computed.
    """

    transmission: torch.Tensor
    reconstruction: torch.Tensor | None = None

    @property
    def total(self) -> torch.Tensor:
        """:math:`L + L^r` (the negative likelihood bound) per example, shape ``(B,)``."""
        if self.reconstruction is None:
            return self.transmission
        return self.transmission + self.reconstruction


class LossDraws(NamedTuple):
    """The random draws of a batch's transmission loss (:meth:`BFN.loss_draws`), so that the
    loss of some of its rows can be computed with the draws of the whole batch.

    Splitting a batch into shards (data-parallel processes, gradient accumulation) and
    computing each shard's loss with ``draws.rows(shard)`` gives, row for row, the loss of the
    whole batch: only the summation order of the batch mean changes.

    :ivar torch.Tensor t: times, shape ``(B,)``: :math:`t \\sim U(0, 1)` for
        :math:`L^\\infty`, :math:`t_{i-1} = (i-1)/n` for :math:`L^n`.
    :ivar steps: the steps :math:`i \\in \\{1..n\\}` of :math:`L^n`, shape ``(B,)`` (int64);
        ``None`` for :math:`L^\\infty`.
    :ivar torch.Tensor flow_sample: :math:`\\theta \\sim p_F(\\cdot \\mid x;\\, t)` as the data
        type's :meth:`~pyro_bfn.data_types.DataType.sample_flow` tensor, batch dimension first.
    :ivar context: the context after classifier-free dropout, batch dimension first, or ``None``.
    """

    t: torch.Tensor
    steps: torch.Tensor | None
    flow_sample: torch.Tensor
    context: torch.Tensor | None

    @property
    def batch_size(self) -> int:
        return self.t.shape[0]

    def rows(self, rows: slice) -> "LossDraws":
        """The draws of the rows ``rows`` (a :class:`slice` of the batch)."""
        if not isinstance(rows, slice):
            raise TypeError(f"rows must be a slice of the batch, got {type(rows).__name__}")
        return LossDraws(*(None if value is None else value[rows] for value in self))


def _sum_data_dims(value: torch.Tensor) -> torch.Tensor:
    return value.reshape(value.shape[0], -1).sum(-1)


def drop_context(context: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
    """Replace the context of the examples where ``drop`` (bool, shape ``(B,)``) is true by the
    null token: :data:`~pyro_bfn.models.NULL_LABEL` for integer labels, NaN for float
    vectors."""
    if context.is_floating_point():
        mask = per_example(drop, context, name="drop")
        return torch.where(mask, torch.full_like(context, math.nan), context)
    return torch.where(drop, torch.full_like(context, NULL_LABEL), context)


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
    :param float context_dropout: probability with which :meth:`loss` replaces an example's
        context by the null token in training mode (classifier-free training; 0 disables it).
    """

    def __init__(self, data_type: DataType, network: nn.Module, data_shape, autocast_dtype=None, context_dropout: float = 0.0):
        super().__init__()
        if not isinstance(data_type, DataType):
            raise TypeError(f"data_type must be a DataType, got {type(data_type).__name__}")
        if not 0.0 <= float(context_dropout) <= 1.0:
            raise ValueError(f"context_dropout must lie in [0, 1], got {context_dropout!r}")
        self.context_dropout = float(context_dropout)
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

    def output_distribution(self, input_distribution, t: torch.Tensor, context: torch.Tensor | None = None):
        """:math:`p_O(\\cdot \\mid \\theta;\\, t)` for input parameters ``input_distribution``
        (batch shape ``(B, *data_shape)``) at times ``t`` of shape ``(B,)``, given an optional
        ``context`` of leading dimension ``B``."""
        features = self.data_type.network_features(input_distribution)
        extra = () if context is None else (context,)
        with self._autocast(features.device):
            network_output = self.network(features, t, *extra)
        expected = features.shape[:-1] + (self.data_type.num_output_features,)
        if network_output.shape != expected:
            raise ValueError(
                f"the network returned shape {tuple(network_output.shape)}, expected {tuple(expected)}"
            )
        # the one input from outside: checked here (while validation is on, as Pyro's
        # distributions check theirs), so that the output distribution need not re-check it
        if validation_enabled_for(None) and not bool(torch.isfinite(network_output).all()):
            raise NonFiniteNetworkOutput("the network returned NaN or infinite values")
        if network_output.dtype in (torch.float16, torch.bfloat16):
            network_output = network_output.float()  # loss arithmetic never in half precision
        return self.data_type.output(network_output, input_distribution, t, validate_args=False)

    def check_data(self, x: torch.Tensor) -> None:
        """Raise a :class:`ValueError` naming the problem unless ``x`` is a batch of data: a
        tensor of shape ``(B, *data_shape)`` with ``B >= 1`` whose values are valid for the data
        type (:meth:`~pyro_bfn.data_types.DataType.check_data`)."""
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"x must be a tensor, got {type(x).__name__}")
        if x.dim() == 0 or tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(f"x must have shape (batch, {', '.join(map(str, self.data_shape))}), got {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError(f"x must hold at least one example, got an empty batch of shape {tuple(x.shape)}")
        self.data_type.check_data(x)

    def check_context(self, context, batch: int):
        """Return ``context`` if it is ``None`` or a tensor of leading dimension ``batch``, else
        raise a :class:`ValueError` naming the problem.

        :param context: class labels of shape ``(B,)``, float vectors of shape ``(B, D)``, or
            ``None``.
        :param int batch: ``B``.
        """
        if context is None:
            return None
        if not isinstance(context, torch.Tensor):
            raise ValueError(f"context must be a tensor or None, got {type(context).__name__}")
        if context.dim() == 0 or context.shape[0] != batch:
            raise ValueError(f"context must have leading dimension {batch} (the batch), got shape {tuple(context.shape)}")
        return context

    def _training_context(self, context):
        """The context with classifier-free dropout applied (training mode only)."""
        if context is None or not self.training or self.context_dropout == 0.0:
            return context
        drop = torch.rand(context.shape[0], device=context.device) < self.context_dropout
        return drop_context(context, drop)

    # ------------------------------------------------------------------ losses
    def continuous_time_loss(
        self, x: torch.Tensor, t: torch.Tensor | None = None, context=None, input_distribution=None
    ) -> torch.Tensor:
        """:math:`L^\\infty` per example, shape ``(B,)``; ``t`` defaults to ``U(0, 1)`` draws.

        :param input_distribution: a draw of :math:`\\theta \\sim p_F(\\cdot \\mid x;\\, t)` to use
            (batch shape ``(B, *data_shape)``); drawn here when ``None``.
        """
        self.check_data(x)
        if t is None:
            t = draw_times(x.shape[0], device=x.device, dtype=self.dtype)
        if input_distribution is None:
            input_distribution = self.data_type.sample_input(x, t, validate_args=False)
        output = self.output_distribution(input_distribution, t, context)
        rate = continuous_time_kl_rate(output, x)
        return _sum_data_dims(self.data_type.rate(t, x) * rate)

    def discrete_time_loss(
        self, x: torch.Tensor, n_steps: int, i: torch.Tensor | None = None, context=None, input_distribution=None
    ) -> torch.Tensor:
        """:math:`L^n` per example, shape ``(B,)``; ``i`` (shape ``(B,)``, values ``1..n``)
        defaults to uniform draws.

        :param input_distribution: a draw of :math:`\\theta \\sim p_F(\\cdot \\mid x;\\, t_{i-1})`
            to use; drawn here when ``None``.
        """
        self.check_data(x)
        grid = TimeGrid(n_steps)
        if i is None:
            i = grid.draw_steps(x.shape[0], device=x.device)
        t = grid.start_time(i, self.dtype)
        if input_distribution is None:
            input_distribution = self.data_type.sample_input(x, t, validate_args=False)
        output = self.output_distribution(input_distribution, t, context)
        accuracy = grid.accuracy(self.data_type, i, x, self.dtype)
        sender = self.data_type.sender(x, accuracy, validate_args=False)
        receiver = self.data_type.receiver(output, accuracy)
        return n_steps * _sum_data_dims(kl_divergence(sender, receiver))

    def reconstruction_loss(self, x: torch.Tensor, context=None, input_distribution=None) -> torch.Tensor:
        """:math:`L^r` per example, shape ``(B,)``.

        :param input_distribution: a draw of :math:`\\theta \\sim p_F(\\cdot \\mid x;\\, 1)` to
            use; drawn here when ``None``.
        """
        self.check_data(x)
        t = torch.ones(x.shape[0], device=x.device, dtype=self.dtype)
        if input_distribution is None:
            input_distribution = self.data_type.sample_input(x, t, validate_args=False)
        output = self.output_distribution(input_distribution, t, context)
        return -_sum_data_dims(self.data_type.reconstruction_distribution(output).log_prob(x))

    def loss_draws(self, x: torch.Tensor, n_steps: int | None = None, context=None, generator=None) -> LossDraws:
        """The random draws of the transmission loss of the batch ``x`` (shape
        ``(B, *data_shape)``; its values are checked by the loss): in training mode the classifier-free dropout of ``context``, then
        the times (or steps) and the flow sample, in the order :meth:`loss` draws them.

        :param int n_steps: ``None`` for :math:`L^\\infty`, else the steps of :math:`L^n`.
        :param context: optional conditioning, labels ``(B,)`` or vectors ``(B, D)``.
        :param torch.Generator generator: draw from this generator (on ``x``'s device type)
            instead of torch's global one.
        """
        if not isinstance(x, torch.Tensor) or x.dim() == 0 or x.shape[0] == 0 or tuple(x.shape[1:]) != self.data_shape:
            self.check_data(x)  # raises, naming the problem
        check_integer("n_steps", n_steps, allow_none=True)
        with random_numbers_from(generator, x.device):
            context = self._training_context(self.check_context(context, x.shape[0]))
            steps = None
            if n_steps is None:
                t = draw_times(x.shape[0], device=x.device, dtype=self.dtype)
            else:
                grid = TimeGrid(n_steps)
                steps = grid.draw_steps(x.shape[0], device=x.device)
                t = grid.start_time(steps, self.dtype)
            flow_sample = self.data_type.sample_flow(x, t, validate_args=False)
        return LossDraws(t, steps, flow_sample, context)

    def loss(self, x: torch.Tensor, n_steps: int | None = None, reconstruction: bool = True, context=None,
             draws: LossDraws | None = None) -> LossTerms:
        """Loss terms for a batch ``x`` of shape ``(B, *data_shape)``.

        :param int n_steps: ``None`` for the continuous-time loss, else the n-step loss.
        :param bool reconstruction: also compute :math:`L^r` (needed for the likelihood bound;
            training usually skips it, as in the paper).
        :param context: optional conditioning, labels ``(B,)`` or vectors ``(B, D)``; in
            training mode each example's context is dropped to the null token with probability
            ``context_dropout``.
        :param LossDraws draws: the transmission loss's random draws for these rows (from
            :meth:`loss_draws`, possibly of a larger batch, then :meth:`LossDraws.rows`); they
            hold the context, so ``context`` must then be ``None``. Drawn here when ``None``.
        """
        if draws is None:
            draws = self.loss_draws(x, n_steps, context)
        else:
            if not isinstance(x, torch.Tensor) or x.dim() == 0 or tuple(x.shape[1:]) != self.data_shape:
                self.check_data(x)  # raises, naming the problem (the loss below checks the values)
            if context is not None:
                raise ValueError("the context of a loss with given draws is the draws' (BFN.loss_draws); pass context=None")
            if not isinstance(draws, LossDraws) or draws.batch_size != x.shape[0]:
                raise ValueError(f"draws must be the LossDraws of the {x.shape[0]} rows of x "
                                 f"(BFN.loss_draws, then .rows), got {type(draws).__name__}"
                                 + (f" of {draws.batch_size} rows" if isinstance(draws, LossDraws) else ""))
            if (draws.steps is None) != (n_steps is None):
                raise ValueError(f"draws were made for the {'continuous-time' if draws.steps is None else 'n-step'} "
                                 f"loss, but n_steps is {n_steps}")
        input_distribution = self.data_type.input_distribution(draws.flow_sample, draws.t, validate_args=False)
        if n_steps is None:
            transmission = self.continuous_time_loss(x, draws.t, draws.context, input_distribution)
        else:
            transmission = self.discrete_time_loss(x, n_steps, draws.steps, draws.context, input_distribution)
        return LossTerms(transmission, self.reconstruction_loss(x, context=draws.context) if reconstruction else None)

    def forward(self, x: torch.Tensor, n_steps: int | None = None, reconstruction: bool = True, context=None,
                draws: LossDraws | None = None) -> LossTerms:
        """The loss terms (:meth:`loss`): calling the module computes them, so that a wrapper
        that hooks the call, such as :class:`~torch.nn.parallel.DistributedDataParallel`,
        sees the loss's forward pass."""
        return self.loss(x, n_steps, reconstruction, context, draws)

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        num_samples: int,
        n_steps: int,
        mode: bool = False,
        device=None,
        progress=None,
        context=None,
        sampler: str = "ancestral",
        *,
        final: str | None = None,
        guidance_scale: float | None = None,
        log_score=None,
        log_score_scale: float = 1.0,
        generator: torch.Generator | None = None,
        callback=None,
        known: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        num_particles: int | None = None,
        temperature: float = 1.0,
    ):
        """Draw ``num_samples`` examples with ``n_steps`` steps of a registered sampler
        (:func:`pyro_bfn.sampling.registry.get_sampler`), shape ``(num_samples, *data_shape)``.

        The default, ``"ancestral"``, is the paper's sampler
        (:func:`pyro_bfn.sampling.samplers.ancestral`): from the prior, for ``i = 1..n``: run the
        network at :math:`t_{i-1}`, draw :math:`k \\sim p_O`, draw :math:`y \\sim p_S(\\cdot \\mid
        k;\\, \\alpha_i)`, apply the Bayesian update; then run the network at ``t = 1`` and return a
        draw from :math:`p_O` (or its mode). ``"ode1"``, ``"ode2"`` and ``"sde2"`` are the
        BFN-Solver ODE/SDE solvers (:mod:`pyro_bfn.sampling.solvers`). Every sampler makes
        ``n + 1`` network calls (twice that with guidance).

        :param int num_samples: ``B >= 1``.
        :param int n_steps: ``n >= 1``.
        :param bool mode: return the mode of the last output distribution instead of a draw
            (the same as ``final="mode"``).
        :param device: default: the device of the parameters.
        :param progress: optional callable ``progress(i, n_steps)`` called after each update.
        :param context: optional conditioning: one label or vector for every sample (an ``int``,
            a 0-d tensor or a vector of shape ``(D,)`` is repeated), or ``num_samples`` of them.
        :param str sampler: the name of a registered sampler
            (:func:`~pyro_bfn.sampling.registry.list_samplers`).
        :param str final: ``"sample"`` (a draw from the last output distribution) or ``"mode"``
            (its mode); ``None``: as ``mode`` says.
        :param float guidance_scale: classifier-free guidance scale :math:`w`
            (:mod:`pyro_bfn.sampling.guidance`; needs a ``context`` and a conditional network
            trained with ``context_dropout``); ``None``: no guidance.
        :param callable log_score: gradient guidance (:mod:`pyro_bfn.sampling.gradient_guidance`):
            a differentiable ``log_score(output, t) -> (B,)`` of the output distribution whose
            gradient with respect to the input parameters steers every step; ``None``: none.
        :param float log_score_scale: its scale :math:`s`; ``0`` samples exactly as unguided.
        :param torch.Generator generator: draw every random number from this generator (on the
            sampling device) instead of the global one, and advance it; ``None``: torch's
            global generator, exactly as before.
        :param callback: optional ``callback(info)`` after each update, ``info`` a dict with
            ``"step"``, ``"n_steps"``, ``"t"``, ``"input_distribution"`` and ``"output"``
            (:func:`~pyro_bfn.sampling.loop.report_step`).
        :param torch.Tensor known: inpainting: known values, shape ``(num_samples, *data_shape)``
            or ``data_shape`` (:mod:`pyro_bfn.sampling.conditioning`), with
        :param torch.Tensor mask: bool, the shape of ``known``, true where the value is known.
            The known dimensions are replaced by draws from their Bayesian flow after every
            update, and returned as given.
        :param int num_particles: with ``known``/``mask``: condition by sequential Monte Carlo
            with this many particles per sample instead of replacement (ancestral steps;
            :func:`~pyro_bfn.sampling.conditioning.smc_inpaint`, which also returns the
            effective sample sizes).
        :param float temperature: :math:`T \\ge 0`: every draw from the model (from the output
            distribution and the sender in each step, the SDE noise, the final draw) is from the
            tempered distribution :math:`p^{1/T}` (:mod:`pyro_bfn.sampling.temperature`): logits
            divided by ``T``, Gaussian variances times ``T``; ``1`` (default) the model's own
            draws, bit for bit; ``0`` every draw its mode (deterministic).

        The updates run under ``torch.inference_mode`` (no autograd bookkeeping); the result is
        copied out of it, so it is an ordinary tensor that later autograd code can use.
        """
        return sampling_api.sample(
            self, num_samples, n_steps, mode, device, progress, context, sampler, final=final,
            guidance_scale=guidance_scale, log_score=log_score, log_score_scale=log_score_scale, generator=generator,
            callback=callback, known=known, mask=mask, num_particles=num_particles, temperature=temperature,
        )
