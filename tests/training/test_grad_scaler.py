"""Updates skipped by the gradient scaler (fp16 autocast on CUDA; issue 12 item 5), on the CPU:
the trainer's scaler is replaced by an enabled ``torch.amp.GradScaler("cpu")`` and a gradient hook
makes the gradients of chosen updates infinite, as an fp16 overflow would."""

import csv
import math

import pytest
import torch

from pyro_bfn.training import TrainingDivergedError

INIT_SCALE = 2.0**10


def _with_scaler(trainer, poisoned_steps):
    """Enable a CPU gradient scaler and make the gradients of the updates ``poisoned_steps``
    (1-based; ``None``: all) infinite."""
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=INIT_SCALE, enabled=True)
    parameter = next(trainer.model.parameters())

    def poison(gradient):
        update = trainer.step + 1
        return gradient * math.inf if poisoned_steps is None or update in poisoned_steps else gradient

    parameter.register_hook(poison)
    return trainer


def test_a_skipped_update_leaves_weights_ema_and_optimizer_as_they_were(tmp_path, tiny_config, quiet):
    trainer = _with_scaler(quiet(tiny_config(tmp_path, max_steps=4)), poisoned_steps={2})
    x, context = trainer.batch(0)
    trainer.train_step(x, context)
    trainer.step += 1
    before = {name: value.clone() for name, value in trainer.model.state_dict().items()}
    ema_before = {name: value.clone() for name, value in trainer.ema_model.state_dict().items()}
    moments_before = [state["exp_avg"].clone() for state in trainer.optimizer.state.values()]
    loss, grad_norm = trainer.train_step(*trainer.batch(1))
    assert math.isfinite(loss) and not math.isfinite(grad_norm)
    assert trainer.skipped_steps == 1 and trainer.consecutive_skips == 1
    assert trainer.scaler.get_scale() == INIT_SCALE / 2  # the scaler's backoff
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, before[name]), name
    for name, value in trainer.ema_model.state_dict().items():
        assert torch.equal(value, ema_before[name]), name
    for state, moment in zip(trainer.optimizer.state.values(), moments_before):
        assert torch.equal(state["exp_avg"], moment)
    trainer.step += 1
    trainer.train_step(*trainer.batch(2))  # a good update resets the run of skips
    assert trainer.skipped_steps == 1 and trainer.consecutive_skips == 0


def test_skipped_updates_are_counted_in_the_log_and_the_summary(tmp_path, tiny_config, quiet):
    trainer = _with_scaler(quiet(tiny_config(tmp_path, max_steps=6, log_interval=3)), poisoned_steps={2, 3})
    summary = trainer.train()
    assert summary["skipped_steps"] == 2
    with open(tmp_path / "run" / "train_log.csv", newline="") as handle:
        rows = {int(row["step"]): int(row["skipped"]) for row in csv.DictReader(handle)}
    assert rows == {3: 2, 6: 0}


def test_consecutive_skips_stop_the_run_as_diverged(tmp_path, tiny_config, quiet):
    trainer = _with_scaler(quiet(tiny_config(tmp_path, max_steps=20, max_skipped_steps=3)), poisoned_steps=None)
    with pytest.raises(TrainingDivergedError, match="skipped 3 consecutive updates"):
        trainer.train()
    assert trainer.skipped_steps == 3
