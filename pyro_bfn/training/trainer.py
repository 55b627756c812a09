"""The :class:`Trainer`: one update, the state it checkpoints, and the training loop as a
sequence of periodic actions (log, validate, sample, checkpoint) between stop conditions."""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch

from .. import user_data
from ..bfn import BFN, NonFiniteNetworkOutput
from .budget import MaxSteps, TimeBudget
from . import distributed
from .checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    build_model,
    load_checkpoint,
    mix_seed,
    remove_stale_temporaries,
    seed_everything,
)
from .config import ConfigError, TrainConfig
from .data import TrainingData, given_data_config, in_memory, load_training_data, stream_data
from .devices import resolve_autocast, resolve_device
from .optim import ema_decay, make_optimizer, make_warmup_scheduler, update_ema
from .reports import Reports
from .resume import CheckpointedState
from .runlog import Progress, RunLog

__all__ = ["Trainer", "TrainingDivergedError"]

#: the logger of the training status lines (INFO); :mod:`pyro_bfn.cli` shows them through
#: :class:`~pyro_bfn.training.runlog.TqdmHandler`, a library user configures :mod:`logging`
logger = logging.getLogger(__name__)



class TrainingDivergedError(FloatingPointError):
    """The training loss (or gradient norm) became NaN or infinite."""


class _Periodic(NamedTuple):
    """An action of the loop, due every ``interval`` updates (never for ``0``); at the last
    update (``max_steps``) it is due if and only if ``at_last_step``, because the end of the
    run writes a log row of the remaining steps and a checkpoint, validates and samples anyway.
    A ``main_only`` action runs on rank 0 alone; with ``wait`` the other ranks wait for it."""

    interval: int
    run: Callable[[], None]
    at_last_step: bool
    main_only: bool = True
    wait: bool = False

    def due(self, step: int, last: int) -> bool:
        if step == last:
            return self.at_last_step
        return bool(self.interval) and step % self.interval == 0


class _Interval:
    """The steps since the last log row: their losses, gradient norms, skipped updates and start time."""

    def __init__(self, now: float):
        self.losses: list[float] = []
        self.norms: list[float] = []
        self.skipped = 0
        self.start = now


class Trainer(CheckpointedState, Reports):
    """Trains a BFN as described by a :class:`~pyro_bfn.training.TrainConfig`, or a BFN and
    data given in Python (:func:`pyro_bfn.train` is the one-call form).

    :param TrainConfig config: the run.
    :param bool resume: continue from ``out_dir/checkpoint.pt`` (model, EMA, optimizer,
        scheduler, step and every RNG state restored).
    :param bool overwrite: start afresh even if ``out_dir`` holds a checkpoint (otherwise
        that is an error, so a finished run is never clobbered by accident).
    :param log: callable taking one line of text (status messages); by default the INFO
        records of the ``pyro_bfn.training.trainer`` logger (:mod:`logging`: the library only
        logs, the caller or the command line configures the handlers).
    :param stop_conditions: :class:`~pyro_bfn.training.StopCondition` objects checked
        before every update besides ``max_steps``; ``None`` for the configuration's
        (:class:`~pyro_bfn.training.TimeBudget` when ``time_budget_minutes`` is set).
    :param clock: callable returning seconds, for the wall time and the examples/s
        (:func:`time.perf_counter`).
    :param BFN model: train this BFN (in place; its data type describes the data) instead
        of the one the configuration builds; checkpoints then hold its weights, and a resumed
        run needs the same model passed again.
    :param data: the examples, instead of ``config.dataset`` (which becomes ``in_memory``):
        a tensor or array ``(N, *data_shape)``, a map-style
        :class:`~torch.utils.data.Dataset` of examples or ``(example, label)`` pairs, or an
        iterable of batches (e.g. a :class:`~torch.utils.data.DataLoader`) of
        ``batch_size`` examples; what resume restores for each is in
        :mod:`pyro_bfn.training.data`. Without ``model``, ``config.data_options`` says its ``type``.
    :param labels: class labels ``(N,)`` of tensor ``data`` (class-conditional training);
    :param context: or float context vectors ``(N, D)``.

    >>> trainer = Trainer(TrainConfig(dataset="toy_binary", max_steps=5, out_dir="runs/doc"))  # doctest: +SKIP
    >>> summary = trainer.train()                                                                # doctest: +SKIP
    """

    def __init__(self, config: TrainConfig, resume: bool = False, overwrite: bool = False, log=None,
                 stop_conditions=None, clock=time.perf_counter, *, model: BFN | None = None, data=None,
                 labels=None, context=None):
        config.validate()
        if model is not None and not isinstance(model, BFN):
            raise ConfigError(f"model must be a pyro_bfn.BFN, got {type(model).__name__}")
        try:
            if data is not None:
                config = given_data_config(config, model)
            self.spec, options = load_training_data(config, data, labels, context, model)
        except user_data.DataError as error:
            raise ConfigError(str(error)) from None
        if model is not None:
            if tuple(model.data_shape) != self.spec.data_shape:
                raise ConfigError(f"the model's data shape {tuple(model.data_shape)} is not that of the data "
                                  f"{self.spec.data_shape}")
            config = config.replace(context_dropout=model.context_dropout)
        self.config = config = config.replace(data_options=options) if options != config.data_options else config
        self.out_dir = Path(config.out_dir)
        self.checkpoint_path = self.out_dir / CHECKPOINT_NAME
        self.log = log or logger.info
        self.clock = clock
        if stop_conditions is None:
            stop_conditions = [TimeBudget(config.time_budget_minutes, config.budget_reserve_examples)] \
                if config.time_budget_minutes is not None else []
        self.stop_conditions = [MaxSteps(config.max_steps), *stop_conditions]
        if resume and not self.checkpoint_path.is_file():
            raise CheckpointError(f"cannot resume: {self.checkpoint_path} does not exist")
        if not resume and not overwrite and self.checkpoint_path.is_file():
            raise ConfigError(
                f"{self.checkpoint_path} already exists; pass --resume to continue that run, "
                "--overwrite to start afresh, or choose another out_dir"
            )
        state = load_checkpoint(self.checkpoint_path) if resume else None
        if state is not None:
            self._check_resumable(state)
        if config.num_threads:
            torch.set_num_threads(config.num_threads)

        device = resolve_device(config.device)
        self.group = distributed.join_process_group(device)
        self.device = distributed.rank_device(device, self.group)
        shards = self.group.world_size * config.accumulate
        if config.batch_size % shards:
            raise ConfigError(f"batch_size {config.batch_size} is not divisible by the {self.group.world_size} processes "
                              f"x accumulate {config.accumulate} = {shards} micro-batches it is split into")
        self.micro_batch_size = config.batch_size // shards
        if not self.group.is_main:
            self.log = lambda line: None  # rank 0 reports
        self.autocast_dtype, use_scaler = resolve_autocast(config.autocast, self.device)
        self._valid_raw = None

        seed_everything(config.seed)
        self.model_source = "config" if model is None else "python"
        if model is None:
            self.model = build_model(config, self.device, self.autocast_dtype, self.spec)
        else:
            self.model = model.to(self.device)
            self.model.autocast_dtype = self.autocast_dtype
        try:
            self.data: TrainingData = in_memory(self.spec, config.batch_size, config.seed) \
                if data is None or isinstance(data, (torch.Tensor, np.ndarray)) \
                else stream_data(data, self.model, self.spec, config.batch_size, config.seed)
        except user_data.DataError as error:
            raise ConfigError(str(error)) from None
        if config.eval_interval and self.spec.source is not None:
            self.valid_raw  # the user's data: no validation split is an error now, not at the first validation
        self.ema_model = copy.deepcopy(self.model).requires_grad_(False).eval()
        if config.compile:
            self.model.network.compile()  # nn.Module.compile: in place, parameter names unchanged
        self.optimizer = make_optimizer(self.model.parameters(), config.lr, config.betas, config.weight_decay)
        self.scheduler = make_warmup_scheduler(self.optimizer, config.warmup_steps)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler)
        # the streams every rank shares (the batch's preparation, the loss's draws of the whole
        # batch) and the rank's own (torch's global generator: draws inside the network)
        self.data_generator = torch.Generator().manual_seed(mix_seed(config.seed, 1))
        self.draw_generator = torch.Generator(self.device).manual_seed(mix_seed(config.seed, 3))
        seed_everything(mix_seed(config.seed, 4, self.group.rank))
        self.run_log = RunLog(self.out_dir, tensorboard=config.logger == "tensorboard" and self.group.is_main)
        self.step = 0
        self.examples = 0
        self.wall_seconds = 0.0
        self.last_valid = None
        self.skipped_steps = 0  # updates the gradient scaler skipped (non-finite gradients)
        self.consecutive_skips = 0
        self.loss_history: list[float] = []  # losses of the steps run by this Trainer object
        self.session_rates: list[float] = []  # examples/s of this session's log rows
        self._last_checkpoint_step = None
        if state is not None:
            self._restore(state)
        if self.group.is_main:
            remove_stale_temporaries(self.checkpoint_path, self.log)
        self.num_parameters = sum(p.numel() for p in self.model.parameters())
        self.parallel_model = None  # the model's DistributedDataParallel wrapper, several processes only
        if self.group.distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.parallel_model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)

    # ------------------------------------------------------------------ data
    @property
    def train_raw(self) -> torch.Tensor | None:
        """The raw training examples held in memory (``None`` for a Dataset or an iterable)."""
        return getattr(self.data, "raw", None)

    @property
    def batches_per_epoch(self) -> int:
        return self.data.order.batches_per_epoch

    def batch_indices(self, step: int) -> torch.Tensor:
        """Indices into the training examples of the batch of update ``step`` (0-based):
        epoch ``e = step // batches_per_epoch`` uses a permutation drawn from a generator
        seeded by ``(seed, e)`` alone; incomplete final batches are dropped. Shape ``(batch_size,)``
        (in-memory data and map-style Datasets; :mod:`pyro_bfn.training.data`)."""
        return self.data.order.indices(step)

    def batch(self, step: int) -> tuple:
        """``(x, context)`` of update ``step``: the prepared batch (its preparation, e.g.
        MNIST's dynamic binarization, draws from the data generator), shape
        ``(batch_size, *data_shape)``, and its labels or context vectors (``None`` when
        unconditional), on the trainer's device."""
        try:
            x, context = self.data.batch(step, self.data_generator)
        except user_data.DataError as error:
            raise ConfigError(str(error)) from None
        return x.to(self.device), None if context is None else context.to(self.device)

    @property
    def valid_raw(self) -> tuple:
        """``(examples, context)`` of the first ``eval_examples`` validation examples."""
        if self._valid_raw is None:
            if not hasattr(self.data, "raw"):
                raise ConfigError("cannot validate a Dataset or an iterable given in Python (eval_interval > 0): give "
                                  "tensors with data_options.valid_fraction, a file or a registered dataset, or "
                                  "set eval_interval: 0 and evaluate with pyro_bfn.evaluate_bound")
            try:
                raw = self.spec.load("valid")
                context = self.spec.load_context("valid") if self.spec.conditional else None
            except user_data.DataError as error:
                raise ConfigError(f"cannot validate: {error}") from None
            if raw.shape[0] == 0:
                raise ConfigError(f"cannot validate: {self.config.dataset} has no validation examples "
                                  "(set data_options.valid_fraction, or eval_interval: 0)")
            count = self.config.eval_examples
            self._valid_raw = (raw[:count], None if context is None else context[:count])
        return self._valid_raw

    # ------------------------------------------------------------------ one update
    def train_step(self, x: torch.Tensor, context: torch.Tensor | None = None) -> tuple:
        """One AdamW update on the global batch ``x`` (shape ``(batch_size, *data_shape)``, BFN
        data, the same on every rank): the loss's random draws are made for the whole batch
        (:meth:`~pyro_bfn.bfn.BFN.loss_draws`, shared generator), this rank's
        ``batch_size / W`` rows are split into ``accumulate`` micro-batches whose gradients
        add up (averaged over the ranks by DistributedDataParallel), so the update is the one of
        the whole batch up to summation order. ``context``: the batch's labels ``(batch_size,)``
        or vectors ``(batch_size, D)`` of a conditional run (classifier-free dropout applied
        with the model's ``context_dropout``).

        :returns: ``(loss, grad_norm)`` as floats; the loss is the mean over the batch of
            :math:`L^\\infty` (or :math:`L^n`) in nats per example.
        :raises TrainingDivergedError: if the network output, the loss, or (without a gradient
            scaler) the gradient norm, is not finite, or the scaler skipped
            ``max_skipped_steps`` consecutive updates; the parameters are then left as they
            were before this step.
        """
        config, group = self.config, self.group
        model = self.parallel_model or self.model
        model.train()
        step = self.step + 1
        draws = self.model.loss_draws(x, n_steps=config.n_steps, context=context, generator=self.draw_generator)
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
        first = group.rank * (x.shape[0] // group.world_size)
        for index in range(config.accumulate):
            rows = slice(first + index * self.micro_batch_size, first + (index + 1) * self.micro_batch_size)
            last = index == config.accumulate - 1
            # the gradients are all-reduced after the last micro-batch's backward only
            with contextlib.nullcontext() if last or self.parallel_model is None else self.parallel_model.no_sync():
                try:
                    transmission = model(x[rows], config.n_steps, False, None, draws.rows(rows)).transmission
                except NonFiniteNetworkOutput as error:
                    raise TrainingDivergedError(self._diverged_message(str(error), step)) from None
                loss_sum += transmission.detach().sum()
                # mean over the batch: DistributedDataParallel divides the sum by the W ranks
                self.scaler.scale(transmission.sum() * (group.world_size / x.shape[0])).backward()
        loss_value = float(distributed.sum_across_ranks(group, loss_sum)) / x.shape[0]
        if not math.isfinite(loss_value):
            self.optimizer.zero_grad(set_to_none=True)
            raise TrainingDivergedError(self._diverged_message(f"the loss is {loss_value}", step))
        self.scaler.unscale_(self.optimizer)
        parameters = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = config.grad_clip if config.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(parameters, max_norm))
        if not math.isfinite(grad_norm) and not self.scaler.is_enabled():
            self.optimizer.zero_grad(set_to_none=True)
            raise TrainingDivergedError(self._diverged_message(f"the gradient norm is {grad_norm}", step))
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if scale is not None and self.scaler.get_scale() < scale:  # the scaler skipped the update
            self._skipped(step, grad_norm, scale)
        else:
            self.consecutive_skips = 0
            if group.is_main:  # the EMA is used (validation, samples, checkpoints) on rank 0 only
                update_ema(self.ema_model, self.model, ema_decay(config.ema_decay, step))
        return loss_value, grad_norm

    def _skipped(self, step: int, grad_norm: float, scale: float) -> None:
        """Count an update the gradient scaler skipped; stop after ``max_skipped_steps`` in a row."""
        self.skipped_steps += 1
        self.consecutive_skips += 1
        logger.warning("step %d: the gradient scaler skipped the update (gradient norm %s at scale %g); "
                       "%d consecutive", step, grad_norm, scale, self.consecutive_skips)
        if self.consecutive_skips >= self.config.max_skipped_steps:
            raise TrainingDivergedError(self._diverged_message(
                f"the gradient scaler skipped {self.consecutive_skips} consecutive updates (gradients not "
                f"finite down to scale {self.scaler.get_scale():g}; max_skipped_steps {self.config.max_skipped_steps})", step))

    def _diverged_message(self, what: str, step: int) -> str:
        where = (f"the last good checkpoint {self.checkpoint_path} (step {self._last_checkpoint_step}) was left intact"
                 if self._last_checkpoint_step is not None else "no checkpoint had been written yet")
        return f"training diverged at step {step}: {what}; stopped without saving this state; {where}"

    # ------------------------------------------------------------------ the loop
    def train(self) -> dict:
        """Update until a stop condition holds, running the periodic actions after each
        update; then log the remaining steps, checkpoint, validate, sample and plot. Returns
        the summary written to ``summary.json``.

        :raises TrainingDivergedError: on a non-finite loss; nothing is saved from that state.
        """
        config = self.config
        self._begin_session()
        actions = [
            _Periodic(config.log_interval, self._log_interval, at_last_step=True),
            _Periodic(config.eval_interval, self._validate_and_report, at_last_step=False, wait=True),
            _Periodic(config.sample_interval, self._sample_between, at_last_step=False, wait=True),
            _Periodic(config.ckpt_interval, self._checkpoint, at_last_step=False, main_only=False),  # gathers every rank's state
        ]
        try:
            try:
                while (stop_reason := self._stop_reason()) is None:
                    self._update()
                    for action in actions:
                        if action.due(self.step, config.max_steps):
                            if self.group.is_main or not action.main_only:
                                action.run()
                            if action.wait:
                                distributed.barrier(self.group)
            finally:
                self._progress.close()
            return self._end_session(stop_reason)
        finally:
            self.run_log.close()
            distributed.leave_process_group(self.group)

    def _begin_session(self) -> None:
        if self.group.is_main:
            # a validation after the checkpoint (the final one) runs again, so its row is dropped
            self.run_log.start(self.config.to_dict(), self.step, (self.last_valid or {}).get("step", 0))
        parallel = (f"; {self.group.world_size} processes x {self.config.accumulate} micro-batches of "
                    f"{self.micro_batch_size}" if self.group.distributed or self.config.accumulate > 1 else "")
        self.log(
            f"training {self.config.dataset} with "
            f"{'a BFN given in Python' if self.model_source == 'python' else self.config.backbone or self.spec.default_backbone} "
            f"({self.num_parameters:,} parameters) on {self.device}, autocast "
            f"{self.autocast_dtype or 'none'}, {torch.get_num_threads()} threads{parallel}; from step {self.step}; "
            + ", ".join(condition.describe() for condition in self.stop_conditions)
        )
        self._progress = Progress(self.config.max_steps, self.step, self.config.progress and self.group.is_main,
                                  self.log, self.clock)
        self.session_rates = []
        for condition in self.stop_conditions:
            condition.begin(self)
        self._session_start = self.clock()
        self._wall_at_start = self.wall_seconds
        self._interval = _Interval(self.clock())
        self._updated_at = self._session_start

    def _stop_reason(self) -> str | None:
        """The first stop condition that holds (rank 0's, when a condition such as a time
        budget may differ between ranks), or ``None``."""
        reason = next((r for r in (c.reason(self) for c in self.stop_conditions) if r is not None), None)
        if len(self.stop_conditions) > 1:  # beyond max_steps: rank 0 decides for all
            reason = distributed.broadcast_object(self.group, reason)
        return reason

    def _update(self) -> None:
        x, context = self.batch(self.step)
        skipped = self.skipped_steps
        loss, grad_norm = self.train_step(x, context)
        self._interval.skipped += self.skipped_steps - skipped
        self.step += 1
        self.examples += x.shape[0]
        self.loss_history.append(loss)
        self._interval.losses.append(loss)
        self._interval.norms.append(grad_norm)
        self._updated_at = self.clock()
        self.wall_seconds = self._wall_at_start + (self._updated_at - self._session_start)
        self._progress.update()

    def _log_row(self, now: float) -> tuple:
        """Append the mean loss and gradient norm of the steps since the last row to
        ``train_log.csv``; returns ``(examples per second, mean loss)``."""
        losses, norms = self._interval.losses, self._interval.norms
        rate = len(losses) * self.config.batch_size / max(now - self._interval.start, 1e-9)
        self.session_rates.append(rate)
        mean_loss = sum(losses) / len(losses)
        self.run_log.train_row(self.step, self.examples, mean_loss, self.scheduler.get_last_lr()[0],
                               sum(norms) / len(norms), rate, self.wall_seconds, self._interval.skipped)
        return rate, mean_loss

    def _log_interval(self) -> None:
        """The periodic log row; the stop conditions see its rate (a time budget may time
        the bound here, before the next row's clock starts)."""
        rate, mean_loss = self._log_row(self._updated_at)
        self._progress.row(self.step, mean_loss, rate, self.wall_seconds, self._updated_at)
        for condition in self.stop_conditions:
            condition.after_log_row(self, rate)
        self._interval = _Interval(self.clock())

    def _checkpoint(self) -> None:
        """The periodic checkpoint, preceded by a log row of the steps since the last one (rank
        0), so that every checkpoint falls on a row: a run resumed from it logs the rows of the
        uninterrupted run whatever ``log_interval`` and ``ckpt_interval`` are."""
        if self.group.is_main and self._interval.losses:
            self._log_interval()
        self.save()

    def _validate_and_report(self) -> None:
        valid = self.validate()
        self.log(f"step {self.step}: valid bound {valid['nats']:.2f} ± {valid['stderr']:.2f} nats/example (EMA)")
        self._interval.start = self.clock()  # not in the training rate

    def _sample_between(self) -> None:
        self.write_samples()
        self._interval.start = self.clock()  # not in the training rate

    def _end_session(self, stop_reason: str) -> dict:
        """The end of a session: the last log row, a checkpoint, then (rank 0) the final
        validation, samples, curves and ``summary.json``; every rank returns rank 0's summary."""
        if self._interval.losses and self.group.is_main:  # the steps since the last row (a stop between rows)
            self._log_row(self.clock())
        self.save()
        summary = self._final_report(stop_reason) if self.group.is_main else None
        return distributed.broadcast_object(self.group, summary)
