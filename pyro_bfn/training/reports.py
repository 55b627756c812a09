"""What a :class:`~pyro_bfn.training.Trainer` reports besides its losses: validation bounds
of the EMA model, sample grids, the curves, and the final ``summary.json``."""

from __future__ import annotations

import statistics
from pathlib import Path

import torch

from ..evaluation import evaluate_bound
from .checkpoint import fork_rng, mix_seed
from .runlog import save_samples

__all__ = ["Reports"]


class Reports:
    """The reporting side of :class:`~pyro_bfn.training.Trainer` (a mixin: it reads the
    trainer's attributes)."""

    def validate(self) -> dict:
        """The continuous-time bound :math:`L^\\infty + L^r` of the EMA model on the first
        ``eval_examples`` validation examples (seeded by the config seed, so the numbers of
        different steps are comparable). Appends a row to ``valid_log.csv``."""
        config = self.config
        result = evaluate_bound(
            self.ema_model, self.spec, split="valid", n_steps=None, repeats=config.eval_repeats,
            batch_size=config.eval_batch_size, seed=config.seed, device=self.device, progress=False,
            raw=self.valid_raw[0], context=self.valid_raw[1],
        )
        self.last_valid = {"step": self.step, "nats": result.nats, "stderr": result.nats_stderr,
                           "bits_per_dim": result.bits_per_dim, "num_examples": result.num_examples}
        self.run_log.valid_row(self.step, self.examples, result.nats, result.nats_stderr, self.wall_seconds)
        return self.last_valid

    @torch.no_grad()
    def write_samples(self) -> Path:
        """Draw ``sample_num`` samples from the EMA model with ``sample_steps`` steps (a
        generator forked from the global one, seeded by ``seed``) and write
        ``samples_<step>.png`` (images), ``.txt`` (text) or ``.pt`` (arrays); a class-conditional
        model's samples cycle through the labels ``0, 1, ...``."""
        config = self.config
        labels = None
        if self.spec.conditional and self.spec.num_labels:
            labels = torch.arange(config.sample_num, device=self.device) % self.spec.num_labels
        with fork_rng(self.device):
            torch.manual_seed(mix_seed(config.seed, 2))
            samples = self.ema_model.sample(config.sample_num, config.sample_steps, device=self.device, context=labels)
        return save_samples(self.spec, samples, self.out_dir / f"samples_{self.step:07d}")

    def plot_curves(self) -> Path | None:
        """``curves.csv`` (loss, validation bound, gradient norm, learning rate, examples/s per
        logged step) and its plot ``curves.png`` (:meth:`RunLog.write_curves
        <pyro_bfn.training.runlog.RunLog.write_curves>`)."""
        return self.run_log.write_curves()

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
