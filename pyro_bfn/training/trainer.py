"""The :class:`Trainer`: one update, the state it checkpoints, and the training loop as a
sequence of periodic actions (log, validate, sample, checkpoint) between stop conditions."""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import statistics
import time
from pathlib import Path
from typing import Callable, NamedTuple

import torch

from .. import zoo
from ..bfn import NonFiniteNetworkOutput
from ..evaluation import evaluate_bound
from .budget import MaxSteps, TimeBudget
from . import distributed
from .checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    CHECKPOINT_VERSION,
    CheckpointError,
    build_model,
    capture_rng_states,
    fork_rng,
    load_checkpoint,
    mix_seed,
    remove_stale_temporaries,
    restore_rng_states,
    save_checkpoint,
    seed_everything,
)
from .config import ConfigError, TrainConfig
from .devices import resolve_autocast, resolve_device
from .optim import ema_decay, make_optimizer, make_warmup_scheduler, update_ema
from .runlog import Progress, RunLog, save_samples

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


class Trainer:
    """Trains a BFN as described by a :class:`~pyro_bfn.training.TrainConfig`.

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

    >>> trainer = Trainer(TrainConfig(dataset="toy_binary", max_steps=5, out_dir="runs/doc"))  # doctest: +SKIP
    >>> summary = trainer.train()                                                                # doctest: +SKIP
    """

    def __init__(self, config: TrainConfig, resume: bool = False, overwrite: bool = False, log=None,
                 stop_conditions=None, clock=time.perf_counter):
        config.validate()
        self.config = config
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

        self.group = distributed.join_process_group(resolve_device(config.device))
        self.device = distributed.rank_device(resolve_device(config.device), self.group)
        shards = self.group.world_size * config.accumulate
        if config.batch_size % shards:
            raise ConfigError(f"batch_size {config.batch_size} is not divisible by the {self.group.world_size} processes "
                              f"x accumulate {config.accumulate} = {shards} micro-batches it is split into")
        self.micro_batch_size = config.batch_size // shards
        if not self.group.is_main:
            self.log = lambda line: None  # rank 0 reports
        self.autocast_dtype, use_scaler = resolve_autocast(config.autocast, self.device)
        self.spec = zoo.get_dataset(config.dataset)
        self.train_raw = self.spec.load("train")  # raw integers (N, *data_shape), loaded once
        if self.train_raw.shape[0] < config.batch_size:
            raise ConfigError(
                f"batch_size {config.batch_size} exceeds the {self.train_raw.shape[0]} training examples of {config.dataset}"
            )
        self._valid_raw = None

        seed_everything(config.seed)
        self.model = build_model(config, self.device, self.autocast_dtype)
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
        self._epoch_cache = (None, None)
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
    def batches_per_epoch(self) -> int:
        return self.train_raw.shape[0] // self.config.batch_size

    def batch_indices(self, step: int) -> torch.Tensor:
        """Indices into the training split of the batch of update ``step`` (0-based):
        epoch ``e = step // batches_per_epoch`` uses a permutation drawn from a generator
        seeded by ``(seed, e)`` alone; incomplete final batches are dropped. Shape ``(batch_size,)``."""
        epoch, position = divmod(step, self.batches_per_epoch)
        cached_epoch, permutation = self._epoch_cache
        if cached_epoch != epoch:
            generator = torch.Generator().manual_seed(mix_seed(self.config.seed, 0, epoch))
            permutation = torch.randperm(self.train_raw.shape[0], generator=generator)
            self._epoch_cache = (epoch, permutation)
        size = self.config.batch_size
        return permutation[position * size : (position + 1) * size]

    def batch(self, step: int) -> torch.Tensor:
        """The prepared batch of update ``step`` (its preparation, e.g. MNIST's dynamic
        binarization, draws from the data generator). Shape ``(batch_size, *data_shape)``."""
        raw = self.train_raw[self.batch_indices(step)]
        return self.spec.prepare(raw, self.data_generator).to(self.device)

    @property
    def valid_raw(self) -> torch.Tensor:
        if self._valid_raw is None:
            raw = self.spec.load("valid")
            self._valid_raw = raw if self.config.eval_examples is None else raw[: self.config.eval_examples]
        return self._valid_raw

    # ------------------------------------------------------------------ one update
    def train_step(self, x: torch.Tensor) -> tuple:
        """One AdamW update on the global batch ``x`` (shape ``(batch_size, *data_shape)``, BFN
        data, the same on every rank): the loss's random draws are made for the whole batch
        (:meth:`~pyro_bfn.bfn.BFN.loss_draws`, shared generator), this rank's
        ``batch_size / W`` rows are split into ``accumulate`` micro-batches whose gradients
        add up (averaged over the ranks by DistributedDataParallel), so the update is the one of
        the whole batch up to summation order.

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
        draws = self.model.loss_draws(x, n_steps=config.n_steps, generator=self.draw_generator)
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

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Everything needed to continue the run exactly (plain data and tensors); on every
        rank of a data-parallel run (a collective: each rank's random states are gathered)."""
        rng = capture_rng_states(self.data_generator, self.device, self.draw_generator)
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "model": self.model.state_dict(),
            "ema": self.ema_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "examples": self.examples,
            "wall_seconds": self.wall_seconds,
            "last_valid": self.last_valid,
            "skipped_steps": self.skipped_steps,
            "consecutive_skips": self.consecutive_skips,
            "rng": rng,
            "world_size": self.group.world_size,
            "rank_rng": distributed.all_gather_objects(self.group, rng),
            "config": self.config.to_dict(),
            "torch_version": str(torch.__version__),
        }

    def save(self) -> Path:
        """Write ``out_dir/checkpoint.pt`` atomically (rank 0; every rank takes part, then waits
        for the file).

        :raises CheckpointError: if it cannot be written (e.g. a full disk); the previous
            checkpoint is then left as it was."""
        state = self.state_dict()
        if self.group.is_main:
            try:
                save_checkpoint(state, self.checkpoint_path)
            except OSError as error:
                kept = (f"the previous checkpoint (step {self._last_checkpoint_step}) was left intact"
                        if self._last_checkpoint_step is not None else "no earlier checkpoint exists")
                raise CheckpointError(f"cannot write the checkpoint {self.checkpoint_path} at step {self.step}: "
                                      f"{error.strerror or error}; {kept}") from None
        distributed.barrier(self.group)
        self._last_checkpoint_step = self.step
        return self.checkpoint_path

    def _check_resumable(self, state: dict) -> None:
        saved = state["config"]
        current = self.config.to_dict()
        differing = [key for key in TrainConfig.RESUME_KEYS if saved.get(key) != current.get(key)]
        if differing:
            details = "; ".join(f"{key}: checkpoint {saved.get(key)!r}, config {current.get(key)!r}" for key in differing)
            raise ConfigError(f"cannot resume {self.checkpoint_path} with a different model or data order ({details})")

    def _restore(self, state: dict) -> None:
        try:
            self.model.load_state_dict(state["model"])
            self.ema_model.load_state_dict(state["ema"])
            self.optimizer.load_state_dict(state["optimizer"])
            for group in self.optimizer.param_groups:  # load_state_dict restores the saved
                for key in ("fused", "foreach"):  # implementation flags: keep this run's choice
                    if key in self.optimizer.defaults:
                        group[key] = self.optimizer.defaults[key]
            self.scheduler.load_state_dict(state["scheduler"])
            if "scaler" in state and state["scaler"]:
                self.scaler.load_state_dict(state["scaler"])
        except (RuntimeError, KeyError, ValueError) as error:
            raise CheckpointError(f"checkpoint {self.checkpoint_path} does not match this model: {str(error).splitlines()[0]}") from None
        self.step = int(state["step"])
        self.examples = int(state["examples"])
        self.wall_seconds = float(state.get("wall_seconds", 0.0))
        self.last_valid = state.get("last_valid")
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self.consecutive_skips = int(state.get("consecutive_skips", 0))
        self._restore_rng(state)
        self._last_checkpoint_step = self.step

    def _restore_rng(self, state: dict) -> None:
        """Each rank's random states. On as many processes as wrote the checkpoint, every
        generator continues exactly. On another number, the shared streams (data order and
        preparation, the loss's draws) continue exactly, and torch's, numpy's and Python's
        global generators, which only draw inside the network (e.g. dropout), are restored for
        the ranks the checkpoint has and seeded from ``(seed, rank, step)`` for the others."""
        rank, saved_world = self.group.rank, int(state.get("world_size", 1))
        rank_states = state.get("rank_rng") or [state["rng"]]
        if rank < len(rank_states):
            restore_rng_states(rank_states[rank], self.data_generator, self.device, self.draw_generator)
        else:
            restore_rng_states(state["rng"], self.data_generator, self.device, self.draw_generator, shared_only=True)
            seed_everything(mix_seed(self.config.seed, 4, rank, self.step))
        if saved_world != self.group.world_size:
            self.log(f"resuming a run of {saved_world} processes on {self.group.world_size}: the data order and the "
                     "loss's draws continue exactly; random numbers drawn inside the network do not")

    # ------------------------------------------------------------------ evaluation, samples
    def validate(self) -> dict:
        """The continuous-time bound :math:`L^\\infty + L^r` of the EMA model on the first
        ``eval_examples`` validation examples (seeded by the config seed, so the numbers of
        different steps are comparable). Appends a row to ``valid_log.csv``."""
        config = self.config
        result = evaluate_bound(
            self.ema_model, self.spec, split="valid", n_steps=None, repeats=config.eval_repeats,
            batch_size=config.eval_batch_size, seed=config.seed, device=self.device, progress=False,
            raw=self.valid_raw,
        )
        self.last_valid = {"step": self.step, "nats": result.nats, "stderr": result.nats_stderr,
                           "bits_per_dim": result.bits_per_dim, "num_examples": result.num_examples}
        self.run_log.valid_row(self.step, self.examples, result.nats, result.nats_stderr, self.wall_seconds)
        return self.last_valid

    @torch.no_grad()
    def write_samples(self) -> Path:
        """Draw ``sample_num`` samples from the EMA model with ``sample_steps`` steps (a
        generator forked from the global one, seeded by ``seed``) and write
        ``samples_<step>.png`` (images) or ``.txt`` (text)."""
        config = self.config
        with fork_rng(self.device):
            torch.manual_seed(mix_seed(config.seed, 2))
            samples = self.ema_model.sample(config.sample_num, config.sample_steps, device=self.device)
        return save_samples(self.spec, samples, self.out_dir / f"samples_{self.step:07d}")

    def plot_curves(self) -> Path | None:
        """``curves.csv`` (loss, validation bound, gradient norm, learning rate, examples/s per
        logged step) and its plot ``curves.png`` (:meth:`RunLog.write_curves
        <pyro_bfn.training.runlog.RunLog.write_curves>`)."""
        return self.run_log.write_curves()

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
            _Periodic(config.ckpt_interval, self.save, at_last_step=False, main_only=False),  # gathers every rank's state
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
            self.run_log.start(self.config.to_dict(), self.step)
        parallel = (f"; {self.group.world_size} processes x {self.config.accumulate} micro-batches of "
                    f"{self.micro_batch_size}" if self.group.distributed or self.config.accumulate > 1 else "")
        self.log(
            f"training {self.config.dataset} with {self.config.backbone or self.spec.default_backbone} "
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
        x = self.batch(self.step)
        skipped = self.skipped_steps
        loss, grad_norm = self.train_step(x)
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

    def _final_report(self, stop_reason: str) -> dict:
        if self.config.eval_interval:
            self._validate_and_report()
        sample_path = self.write_samples() if self.config.sample_interval else None
        curves = self.plot_curves()
        summary = {
            "stopped_by": stop_reason,
            "step": self.step,
            "examples": self.examples,
            "train_wall_seconds": round(self.wall_seconds, 1),
            "examples_per_second": round(self.examples / self.wall_seconds, 1) if self.wall_seconds else None,
            "median_logged_examples_per_second": round(statistics.median(self.session_rates), 1)
            if self.session_rates else None,
            "session_seconds": round(self.clock() - self._session_start, 1),
            "num_parameters": self.num_parameters,
            "autocast": str(self.autocast_dtype or "none"),
            "threads": torch.get_num_threads(),
            "processes": self.group.world_size,
            "accumulate": self.config.accumulate,
            "skipped_steps": self.skipped_steps,
            "last_valid": self.last_valid,
            "checkpoint": str(self.checkpoint_path),
            "curves": None if curves is None else str(curves),
            "samples": None if sample_path is None else str(sample_path),
        }
        self.run_log.write_summary(summary)
        self.log(f"stopped by {stop_reason} at step {self.step} ({self.examples:,} examples, "
                 f"{self.wall_seconds / 60:.1f} min of training, {summary['examples_per_second']} ex/s)")
        return summary
