"""BFNs inside Pyro programs.

Two views of a Bayesian Flow Network as a Pyro object:

* **The BFN loss is an ELBO.** :func:`bfn_model` is the n-step BFN as a generative model:
  starting from the prior input distribution, for :math:`i = 1, \\dots, n` it samples
  :math:`y_i \\sim p_R(\\cdot \\mid \\theta_{i-1};\\, t_{i-1}, \\alpha_i)` (the receiver), applies the
  Bayesian update :math:`\\theta_i = h(\\theta_{i-1}, y_i, \\alpha_i)`, and finally observes the
  data under the output distribution at :math:`t = 1`. :func:`bfn_guide` samples every
  :math:`y_i \\sim p_S(\\cdot \\mid x;\\, \\alpha_i)` (the sender) instead. With the sender/receiver
  KLs registered in :mod:`pyro_bfn.distributions.kl`,
  :class:`pyro.infer.TraceMeanField_ELBO` computes, for one draw of the senders,

  .. math::

      -\\mathrm{ELBO}(x) = \\sum_{i=1}^n D_{KL}\\big(p_S(\\cdot \\mid x;\\, \\alpha_i)\\,\\|\\,
      p_R(\\cdot \\mid \\theta_{i-1};\\, t_{i-1}, \\alpha_i)\\big) - \\ln p_O(x \\mid \\theta_n;\\, 1),

  and because accuracies add, :math:`\\theta_{i-1}` is distributed as the Bayesian flow
  :math:`p_F(\\cdot \\mid x;\\, t_{i-1})` and :math:`\\theta_n` as :math:`p_F(\\cdot \\mid x;\\, 1)`: in
  expectation the ELBO loss is :math:`L^n(x) + L^r(x)` (paper Sec. 2.5, Eq. 11-16), which
  :meth:`pyro_bfn.bfn.BFN.loss` estimates from *one* random step. ``pyro.infer.SVI`` with
  this model, guide and ELBO trains the network (registered with :func:`pyro.module`).

* **A trained BFN is a likelihood.** :class:`BFNLikelihood` is a
  :class:`~pyro.distributions.TorchDistribution` over data whose ``sample`` runs the BFN
  sampler and whose ``log_prob`` is the negative loss :math:`-(L + L^r)`, a stochastic *lower
  bound* on :math:`\\ln p(x)`; it can be conditioned on a context (for instance a class label
  that is itself a latent variable of a Pyro model, as in the generative classifier of the
  tutorials).

Shapes: ``x`` is a batch ``(B, *data_shape)``; every site of :func:`bfn_model` lives in a
``pyro.plate`` over the ``B`` examples, and the data dimensions (plus the ``K`` dimension of
the discrete sender) are event dimensions (``.to_event(len(data_shape))``): the network couples
all variables of an example, so they are not conditionally independent in the model.
"""

from __future__ import annotations

import contextlib
import math

import pyro
import torch
from pyro.distributions import TorchDistribution
from pyro.distributions.util import broadcast_shape
from torch.distributions import constraints

from .bfn import BFN
from .checks import check_integer
from .data_types import ContinuousData, DiscreteData, DiscretisedData
from .distributions import CategoricalInput, DiscretisedOutput, NormalInput
from .sampling import TimeGrid, draw_times, run_steps

__all__ = ["BFNLikelihood", "bfn_guide", "bfn_model", "step_site_names"]


def step_site_names(n_steps: int, name: str = "bfn") -> list:
    """The names of the latent sites of :func:`bfn_model` and :func:`bfn_guide`:
    ``["{name}_y_1", ..., "{name}_y_n"]``; the observed site is ``"{name}_x"``."""
    return [f"{name}_y_{i}" for i in TimeGrid(n_steps).steps()]


def bfn_model(bfn: BFN, x: torch.Tensor, n_steps: int, context=None, name: str = "bfn"):
    """The n-step BFN as a Pyro model of a batch ``x`` (paper Sec. 2).

    Registers the network with ``pyro.module(name, bfn)``, then inside
    ``pyro.plate(name + "_examples", B)``: from the prior input distribution, for
    ``i = 1..n``,

    * ``{name}_y_i`` :math:`\\sim p_R(\\cdot \\mid \\theta_{i-1};\\, t_{i-1}, \\alpha_i)` (the
      receiver of the data type, over ``data_shape`` as event dimensions),
    * :math:`\\theta_i = h(\\theta_{i-1}, y_i, \\alpha_i)` (the Bayesian update);

    and finally ``{name}_x`` is observed under the data type's reconstruction distribution at
    :math:`t = 1` (the output distribution; for continuous data
    :math:`N(\\hat x, \\sigma_1^2)`, see :meth:`~pyro_bfn.data_types.ContinuousData.reconstruction_distribution`).

    Run on its own (no guide), it is the BFN's generative process: :math:`y_i` from the
    receiver is the sampler's draw of :math:`k \\sim p_O` followed by :math:`y \\sim p_S(\\cdot \\mid k)`.

    :param BFN bfn: the BFN.
    :param torch.Tensor x: data, shape ``(B, *bfn.data_shape)`` (observed at ``{name}_x``; its
        shape also sets the batch).
    :param int n_steps: ``n``.
    :param context: optional conditioning of leading dimension ``B`` (see :class:`~pyro_bfn.bfn.BFN`).
    :param str name: prefix of the site, plate and module names.
    :returns: the final input distribution :math:`\\theta_n` (batch shape ``(B, *data_shape)``).
    """
    grid = TimeGrid(n_steps)
    bfn.check_data(x)
    context = bfn.check_context(context, x.shape[0])
    pyro.module(name, bfn)
    data_type, event_dims = bfn.data_type, len(bfn.data_shape)
    sites = step_site_names(n_steps, name)

    def draw(step, output, accuracy):
        return pyro.sample(sites[step - 1], data_type.receiver(output, accuracy).to_event(event_dims))

    with pyro.plate(f"{name}_examples", x.shape[0]):
        result = run_steps(bfn, grid, x.shape[0], draw, device=x.device, context=context)
        pyro.sample(f"{name}_x", data_type.reconstruction_distribution(result.output).to_event(event_dims), obs=x)
    return result.input_distribution


def bfn_guide(bfn: BFN, x: torch.Tensor, n_steps: int, context=None, name: str = "bfn"):
    """The guide of :func:`bfn_model`: ``{name}_y_i`` :math:`\\sim p_S(\\cdot \\mid x;\\, \\alpha_i)`
    (the sender; reparameterised), independently for ``i = 1..n``. It has no parameters and
    ignores ``context``; its signature matches :func:`bfn_model` so both take the same
    arguments in ``pyro.infer.SVI``.
    """
    grid = TimeGrid(n_steps)
    bfn.check_data(x)
    data_type, event_dims = bfn.data_type, len(bfn.data_shape)
    with pyro.plate(f"{name}_examples", x.shape[0]):
        for step, site in zip(grid.steps(), step_site_names(n_steps, name)):
            i = torch.full((x.shape[0],), step, device=x.device)
            pyro.sample(site, data_type.sender(x, grid.accuracy(data_type, i, x, bfn.dtype)).to_event(event_dims))


#: Rows per network call that BFNLikelihood.log_prob fills by stacking repeats of a small batch
#: (when ``max_batch`` is not given).
_ROWS_PER_CALL = 256


def _index_input(input_distribution, index: torch.Tensor):
    """Rows ``index`` of an input distribution of batch shape ``(U, *data_shape)``."""
    if isinstance(input_distribution, NormalInput):
        return NormalInput(input_distribution.loc[index], input_distribution.precision[index])
    if isinstance(input_distribution, CategoricalInput):
        return CategoricalInput(logits=input_distribution.logits[index])
    raise TypeError(f"cannot index an input distribution of type {type(input_distribution).__name__}")


def _data_support(data_type, dtype=None):
    if isinstance(data_type, DiscreteData):
        return constraints.integer_interval(0, data_type.num_classes - 1)
    if isinstance(data_type, DiscretisedData):
        return DiscretisedOutput(torch.zeros((), dtype=dtype), torch.ones((), dtype=dtype), data_type.num_bins).support
    if isinstance(data_type, ContinuousData):
        return constraints.real
    raise TypeError(f"unknown data type {type(data_type).__name__}")


class BFNLikelihood(TorchDistribution):
    """A trained BFN as a Pyro distribution over examples of shape ``bfn.data_shape``,
    optionally conditioned on a context (a class label, or a float vector).

    * :meth:`sample` runs the BFN's n-step sampler (:meth:`~pyro_bfn.bfn.BFN.sample`) with
      ``sample_steps`` steps.
    * :meth:`log_prob` returns :math:`-(L + L^r)`, the negative loss, which is a **lower
      bound** on :math:`\\ln p(x)` (the variational bound of the BFN, paper Sec. 2.5), estimated
      without bias: :math:`L = L^n` (one random step, times ``n``) when ``n_steps`` is given,
      :math:`L = L^\\infty` (one random time) when ``n_steps`` is ``None``, and :math:`L^r` from one
      draw of the flow at ``t = 1``; the estimate is averaged over ``num_repeats`` draws to
      reduce its variance. With ``stratified=True`` (the default) the ``R = num_repeats`` times
      are stratified: draw ``r`` has :math:`t = (r + u_r)/R`, :math:`u_r \\sim U(0, 1)`
      (n steps: :math:`i = \\lfloor n t \\rfloor + 1`), which keeps the estimate unbiased and
      reduces its variance (the time is its main source). It is not a normalised log-density:
      treat it as an ELBO-style surrogate (exact enumeration over a discrete context then gives
      the posterior of the bound-based model, not of the exact one).
    * Gradients flow to the network's parameters (register them with :func:`pyro.module`).
    * Common random numbers: when the value is broadcast against a batch of contexts (for
      instance a label enumerated by ``TraceEnum_ELBO``, or ``expand`` by ``pyro.plate``), each
      example's time and flow draws are shared by all the contexts it is scored under, so that
      differences between contexts carry no flow noise.
    * **MCMC needs** ``fixed_noise=True``. By default every call of :meth:`log_prob` makes new
      draws, so the same value gets a different score each time: a Metropolis or HMC/NUTS
      acceptance test compares two noisy numbers and rejects most proposals (and HMC's
      gradients belong to no single energy; the tutorial's NUTS accepts 5% of its proposals).
      With ``fixed_noise=True`` every call reseeds the random state with ``seed`` before its
      draws (times or steps, flow noise) inside :func:`torch.random.fork_rng`, so ``log_prob``
      is a deterministic, differentiable function of the value, the context and the network
      (common random numbers: for a fixed seed it is the bound of one draw of the noise,
      unbiased over seeds), and the global random state is left as it was. The draws are the
      same for values of the same shape; a network with dropout must be in ``eval()`` mode.

    Shapes: ``event_shape = bfn.data_shape``; ``batch_shape`` is that of the context
    (labels ``(*batch,)``, vectors ``(*batch, D)``), ``()`` without one, or set by
    :meth:`expand`. ``log_prob(value)`` takes ``value`` of shape ``(*value_batch, *data_shape)``
    and returns ``broadcast(value_batch, batch_shape)``.

    :param BFN bfn: the model.
    :param context: labels (integer tensor of the batch shape) or vectors (float tensor of
        shape ``batch_shape + (D,)``), or ``None``.
    :param int n_steps: ``None`` for the continuous-time bound :math:`L^\\infty + L^r`, else the
        n-step bound :math:`L^n + L^r`.
    :param int num_repeats: draws averaged in :meth:`log_prob`.
    :param bool stratified: stratify the times of the ``num_repeats`` draws (else independent).
    :param int sample_steps: steps of the sampler (default ``n_steps``, or 100 in continuous time).
    :param int max_batch: evaluate the network on at most this many rows at a time (memory); the
        rows of several repeats of a small batch share one call up to this size. Default:
        ``max(N, 256)`` for ``N`` scored rows, i.e. one repeat per call for large batches.
    :param bool fixed_noise: draw the bound's noise from ``seed`` at every call (see above).
    :param int seed: the seed of ``fixed_noise=True`` (default 0); only with ``fixed_noise``.
    """

    arg_constraints = {}
    has_rsample = False

    def __init__(
        self,
        bfn: BFN,
        context=None,
        n_steps: int | None = None,
        num_repeats: int = 1,
        sample_steps: int | None = None,
        max_batch: int | None = None,
        batch_shape=None,
        stratified: bool = True,
        validate_args=None,
        fixed_noise: bool = False,
        seed: int | None = None,
    ):
        if not isinstance(bfn, BFN):
            raise TypeError(f"bfn must be a BFN, got {type(bfn).__name__}")
        self.bfn = bfn
        self.n_steps = check_integer("n_steps", n_steps, allow_none=True)
        self.num_repeats = check_integer("num_repeats", num_repeats)
        self.sample_steps = check_integer("sample_steps", sample_steps if sample_steps is not None else (n_steps or 100))
        self.max_batch = check_integer("max_batch", max_batch, allow_none=True)
        self.stratified = bool(stratified)
        self.fixed_noise = bool(fixed_noise)
        if seed is not None and not self.fixed_noise:
            raise ValueError("seed is only used with fixed_noise=True")
        self.seed = check_integer("seed", 0 if seed is None else seed, minimum=0) if self.fixed_noise else None
        if context is not None:
            if not isinstance(context, torch.Tensor):
                raise ValueError(f"context must be a tensor or None, got {type(context).__name__}")
            self.context_event_dims = 1 if context.is_floating_point() else 0
            if context.dim() < self.context_event_dims:
                raise ValueError("a float context must have a last dimension (the vector)")
            context_batch = context.shape[: context.dim() - self.context_event_dims]
        else:
            self.context_event_dims = 0
            context_batch = torch.Size()
        if batch_shape is None:
            batch_shape = context_batch
        batch_shape = torch.Size(batch_shape)
        if context is not None:
            event = context.shape[context.dim() - self.context_event_dims :]
            try:
                context = context.expand(batch_shape + event)
            except RuntimeError as error:
                raise ValueError(f"context of shape {tuple(context.shape)} cannot be expanded to batch shape {tuple(batch_shape)}") from error
        self.context = context
        super().__init__(batch_shape, torch.Size(bfn.data_shape), validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        return constraints.independent(_data_support(self.bfn.data_type, self.bfn.dtype), len(self.bfn.data_shape))

    def expand(self, batch_shape, _instance=None):
        return BFNLikelihood(
            self.bfn,
            self.context,
            n_steps=self.n_steps,
            num_repeats=self.num_repeats,
            sample_steps=self.sample_steps,
            max_batch=self.max_batch,
            batch_shape=batch_shape,
            stratified=self.stratified,
            validate_args=self._validate_args,
            fixed_noise=self.fixed_noise,
            seed=self.seed,
        )

    def _flat_context(self, batch_shape, count: int):
        if self.context is None:
            return None
        event = self.context.shape[self.context.dim() - self.context_event_dims :]
        return self.context.expand(batch_shape + event).reshape((count,) + event)

    def sample(self, sample_shape=torch.Size()):
        """Draws of shape ``sample_shape + batch_shape + data_shape`` from the BFN sampler."""
        shape = torch.Size(sample_shape) + self.batch_shape
        count = math.prod(shape)
        context = self._flat_context(shape, count)
        with torch.no_grad():
            draws = self.bfn.sample(count, self.sample_steps, context=context)
        return draws.reshape(shape + self.event_shape)

    def _rows_per_call(self, count: int) -> int:
        """Rows per network call when ``count`` rows are scored: ``max_batch``, else
        ``max(count, 256)``."""
        return self.max_batch or max(count, _ROWS_PER_CALL)

    def _bound(self, x_unique, index, context, stratum=0, strata: int = 1):
        """One draw of :math:`L + L^r` per row ``index`` of ``x_unique``, shape ``(N,)``; the
        time and flow draws are made once per row of ``x_unique``, the time (or step) of row
        ``u`` in the ``stratum[u]``-th of ``strata`` equal parts of [0, 1) (``stratum``: an int
        or a tensor of shape ``(U,)``)."""
        bfn, data_type = self.bfn, self.bfn.data_type
        unique = x_unique.shape[0]
        device, dtype = x_unique.device, bfn.dtype
        if self.n_steps is None:
            step, t = None, draw_times(unique, device=device, dtype=dtype, stratum=stratum, strata=strata)
        else:
            grid = TimeGrid(self.n_steps)
            step = grid.draw_steps(unique, device=device, stratum=stratum, strata=strata)
            t = grid.start_time(step, dtype)
        flow_input = data_type.sample_input(x_unique, t)
        end_input = data_type.sample_input(x_unique, torch.ones(unique, device=device, dtype=dtype))
        count = index.shape[0]
        chunk = self._rows_per_call(count)
        totals = []
        for start in range(0, count, chunk):
            rows = index[start : start + chunk]
            x = x_unique[rows]
            part_context = None if context is None else context[start : start + chunk]
            if step is None:
                transmission = bfn.continuous_time_loss(x, t[rows], part_context, _index_input(flow_input, rows))
            else:
                transmission = bfn.discrete_time_loss(x, self.n_steps, step[rows], part_context, _index_input(flow_input, rows))
            reconstruction = bfn.reconstruction_loss(x, part_context, _index_input(end_input, rows))
            totals.append(transmission + reconstruction)
        return torch.cat(totals)

    @contextlib.contextmanager
    def _noise(self, device: torch.device):
        """The context of the bound's draws: nothing, or with ``fixed_noise`` the random state of
        the CPU (and of ``device``) seeded from ``seed``, and restored on exit."""
        if not self.fixed_noise:
            yield
            return
        accelerator = device.type != "cpu"
        devices, kind = ([device], device.type) if accelerator else ([], "cuda")
        with torch.random.fork_rng(devices=devices, device_type=kind):
            torch.random.default_generator.manual_seed(self.seed)
            if accelerator:
                module = getattr(torch, device.type)
                with module.device(device):
                    module.manual_seed(self.seed)
            yield

    def log_prob(self, value):
        """:math:`-(L + L^r)`, a lower bound on :math:`\\ln p(x)` (see the class docstring),
        averaged over ``num_repeats`` draws; shape ``broadcast(value_batch, batch_shape)``; with
        ``fixed_noise``, the same draws at every call."""
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"value must be a tensor, got {type(value).__name__}")
        event_dims = len(self.event_shape)
        if value.dim() < event_dims or value.shape[value.dim() - event_dims :] != self.event_shape:
            raise ValueError(f"value must end in the data shape {tuple(self.event_shape)}, got shape {tuple(value.shape)}")
        value_batch = value.shape[: value.dim() - event_dims]
        try:
            batch_shape = torch.Size(broadcast_shape(value_batch, self.batch_shape))
        except ValueError as error:
            raise ValueError(
                f"value batch shape {tuple(value_batch)} does not broadcast with batch shape {tuple(self.batch_shape)}"
            ) from error
        x_unique = value.reshape((-1,) + self.event_shape)
        if self._validate_args:
            self.bfn.data_type.check_data(x_unique)
        unique = x_unique.shape[0]
        index = torch.arange(unique, device=value.device).reshape(value_batch).expand(batch_shape).reshape(-1)
        context = self._flat_context(batch_shape, index.shape[0])
        # several repeats (draws of t and theta) per network call when the batch is small: the
        # rows of `group` repeats are stacked, repeat-major, so that each call sees up to
        # max_batch (default: max(N, 256)) rows instead of N
        repeats, count = self.num_repeats, index.shape[0]
        strata = repeats if self.stratified else 1
        group = max(1, min(repeats, self._rows_per_call(count) // max(count, 1)))
        offsets = torch.arange(group, device=value.device)
        total = 0.0
        with self._noise(value.device):
            for first in range(0, repeats, group):
                size = min(group, repeats - first)
                x_group = x_unique.repeat((size,) + (1,) * event_dims)
                index_group = (index[None, :] + unique * offsets[:size, None]).reshape(-1)
                context_group = None if context is None else context.repeat((size,) + (1,) * (context.dim() - 1))
                stratum = (first + offsets[:size]).repeat_interleave(unique) if self.stratified else 0
                total = total + self._bound(x_group, index_group, context_group, stratum, strata).reshape(size, count).sum(0)
        return -(total / repeats).reshape(batch_shape)
