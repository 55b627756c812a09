"""The :class:`Trainer`: one update, the state it checkpoints, and the training loop as a
sequence of periodic actions (log, validate, sample, checkpoint) between stop conditions."""

from __future__ import annotations

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
    run writes a log row of the remaining steps and a checkpoint, validates and samples anyway."""

    interval: int
    run: Callable[[], None]
    at_last_step: bool

    def due(self, step: int, last: int) -> bool:
        if step == last:
            return self.at_last_step
        return bool(self.interval) and step % self.interval == 0


class _Interval:
    """The steps since the last log row: their losses, gradient norms and start time."""

    def __init__(self, now: float):
        self.losses: list[float] = []
        self.norms: list[float] = []
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

        self.device = resolve_device(config.device)
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
        self.data_generator = torch.Generator().manual_seed(mix_seed(config.seed, 1))
        self.run_log = RunLog(self.out_dir, tensorboard=config.logger == "tensorboard")
        self.step = 0
        self.examples = 0
        self.wall_seconds = 0.0
        self.last_valid = None
        self.loss_history: list[float] = []  # losses of the steps run by this Trainer object
        self.session_rates: list[float] = []  # examples/s of this session's log rows
        self._last_checkpoint_step = None
        self._epoch_cache = (None, None)
        if state is not None:
            self._restore(state)
        self.num_parameters = sum(p.numel() for p in self.model.parameters())

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
        """One AdamW update on the batch ``x`` (shape ``(B, *data_shape)``, BFN data).

        :returns: ``(loss, grad_norm)`` as floats; the loss is the mean over the batch of
            :math:`L^\\infty` (or :math:`L^n`) in nats per example.
        :raises TrainingDivergedError: if the network output, the loss, or (without a gradient
            scaler) the gradient norm, is not finite; the parameters are then left as they were
            before this step.
        """
        config = self.config
        self.model.train()
        step = self.step + 1
        try:
            terms = self.model.loss(x, n_steps=config.n_steps, reconstruction=False)
        except NonFiniteNetworkOutput as error:
            raise TrainingDivergedError(self._diverged_message(str(error), step)) from None
        loss = terms.transmission.mean()
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise TrainingDivergedError(self._diverged_message(f"the loss is {loss_value}", step))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        parameters = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = config.grad_clip if config.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(parameters, max_norm))
        if not math.isfinite(grad_norm) and not self.scaler.is_enabled():
            self.optimizer.zero_grad(set_to_none=True)
            raise TrainingDivergedError(self._diverged_message(f"the gradient norm is {grad_norm}", step))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        update_ema(self.ema_model, self.model, ema_decay(config.ema_decay, step))
        return loss_value, grad_norm

    def _diverged_message(self, what: str, step: int) -> str:
        where = (f"the last good checkpoint {self.checkpoint_path} (step {self._last_checkpoint_step}) was left intact"
                 if self._last_checkpoint_step is not None else "no checkpoint had been written yet")
        return f"training diverged at step {step}: {what}; stopped without saving this state; {where}"

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Everything needed to continue the run exactly (plain data and tensors)."""
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
            "rng": capture_rng_states(self.data_generator, self.device),
            "config": self.config.to_dict(),
            "torch_version": str(torch.__version__),
        }

    def save(self) -> Path:
        """Write ``out_dir/checkpoint.pt`` atomically."""
        path = save_checkpoint(self.state_dict(), self.checkpoint_path)
        self._last_checkpoint_step = self.step
        return path

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
        restore_rng_states(state["rng"], self.data_generator, self.device)
        self._last_checkpoint_step = self.step

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
            _Periodic(config.eval_interval, self._validate_and_report, at_last_step=False),
            _Periodic(config.sample_interval, self._sample_between, at_last_step=False),
            _Periodic(config.ckpt_interval, self.save, at_last_step=False),
        ]
        try:
            try:
                while (stop_reason := self._stop_reason()) is None:
                    self._update()
                    for action in actions:
                        if action.due(self.step, config.max_steps):
                            action.run()
            finally:
                self._progress.close()
            return self._end_session(stop_reason)
        finally:
            self.run_log.close()

    def _begin_session(self) -> None:
        self.run_log.start(self.config.to_dict(), self.step)
        self.log(
            f"training {self.config.dataset} with {self.config.backbone or self.spec.default_backbone} "
            f"({self.num_parameters:,} parameters) on {self.device}, autocast "
            f"{self.autocast_dtype or 'none'}, {torch.get_num_threads()} threads; from step {self.step}; "
            + ", ".join(condition.describe() for condition in self.stop_conditions)
        )
        self._progress = Progress(self.config.max_steps, self.step, self.config.progress, self.log, self.clock)
        self.session_rates = []
        for condition in self.stop_conditions:
            condition.begin(self)
        self._session_start = self.clock()
        self._wall_at_start = self.wall_seconds
        self._interval = _Interval(self.clock())
        self._updated_at = self._session_start

    def _stop_reason(self) -> str | None:
        for condition in self.stop_conditions:
            reason = condition.reason(self)
            if reason is not None:
                return reason
        return None

    def _update(self) -> None:
        x = self.batch(self.step)
        loss, grad_norm = self.train_step(x)
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
                               sum(norms) / len(norms), rate, self.wall_seconds)
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
        if self._interval.losses:  # the steps since the last row (a stop between rows)
            self._log_row(self.clock())
        self.save()
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
            "last_valid": self.last_valid,
            "checkpoint": str(self.checkpoint_path),
            "curves": None if curves is None else str(curves),
            "samples": None if sample_path is None else str(sample_path),
        }
        self.run_log.write_summary(summary)
        self.log(f"stopped by {stop_reason} at step {self.step} ({self.examples:,} examples, "
                 f"{self.wall_seconds / 60:.1f} min of training, {summary['examples_per_second']} ex/s)")
        return summary
