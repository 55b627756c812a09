"""The state a :class:`~pyro_bfn.training.Trainer` checkpoints and restores: what makes a
resumed run continue exactly (model, EMA, optimizer, scheduler, scaler, counters, every
rank's random states, the data's fingerprint), and the checks that a checkpoint fits the run."""

from __future__ import annotations

from pathlib import Path

import torch

from . import distributed
from .checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    CheckpointError,
    capture_rng_states,
    mix_seed,
    restore_rng_states,
    save_checkpoint,
    seed_everything,
)
from .config import ConfigError, TrainConfig

__all__ = ["CheckpointedState"]


class CheckpointedState:
    """The checkpoint side of :class:`~pyro_bfn.training.Trainer` (a mixin: it reads and
    sets the trainer's attributes)."""

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
            "model_source": self.model_source,
            "data_fingerprint": self.data.fingerprint(),
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
        saved_print, current_print = state.get("data_fingerprint"), self.data.fingerprint()
        if saved_print is not None and current_print is not None and saved_print != current_print:
            raise ConfigError(f"cannot resume {self.checkpoint_path}: the training data differ from the checkpoint's "
                              "(another file, array or labels)")
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
