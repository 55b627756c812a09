"""Stop conditions: the time budget as a unit (a fake clock, a fake bound timing) and in real
runs, the reserve for evaluation, and conditions handed to the trainer."""

import types

import pytest
import torch

from pyro_bfn.training import BOUND_SPEEDUP, StopCondition, TimeBudget, Trainer, load_checkpoint


def fake_trainer(wall_seconds=0.0):
    lines = []
    return types.SimpleNamespace(wall_seconds=wall_seconds, log=lines.append, lines=lines)


# ---------------------------------------------------------------------------- the unit
def test_time_budget_without_reserve_stops_at_the_budget():
    budget = TimeBudget(1.5)
    trainer = fake_trainer()
    budget.begin(trainer)
    for wall, expected in [(0.0, None), (89.9, None), (90.0, "time budget"), (120.0, "time budget")]:
        trainer.wall_seconds = wall
        assert budget.reason(trainer) == expected
    budget.after_log_row(trainer, 10.0)
    assert budget.reserve_seconds() == 0.0 and budget.describe() == "budget 1.5 min"


def test_time_budget_reserves_the_predicted_evaluation_time():
    """Reserve N / (s r): s is BOUND_SPEEDUP until the bound is timed after the second log row
    (against the median rate of the rows so far), r the median rate of the last five rows."""
    timed = []
    budget = TimeBudget(1.0, reserve_examples=600, measure_bound_rate=lambda trainer: timed.append(1) or 40.0)
    trainer = fake_trainer()
    budget.begin(trainer)
    assert budget.reserve_seconds() == 0.0  # no rate known yet
    budget.after_log_row(trainer, 10.0)
    assert not timed and budget.reserve_seconds() == pytest.approx(600 / (BOUND_SPEEDUP * 10.0))
    budget.after_log_row(trainer, 30.0)
    assert timed == [1] and budget.speedup == pytest.approx(40.0 / 20.0)
    assert any("bound / training examples/s measured: 2.00" in line for line in trainer.lines)
    assert budget.reserve_seconds() == pytest.approx(600 / (2.0 * 20.0))  # 15 s
    trainer.wall_seconds = 44.9
    assert budget.reason(trainer) is None
    trainer.wall_seconds = 45.0
    assert budget.reason(trainer) == "time budget (reserving 15 s for evaluation)"
    for rate in (20.0, 20.0, 20.0, 20.0, 20.0):  # the window: the last five rows only
        budget.after_log_row(trainer, rate)
    assert timed == [1] and budget.reserve_seconds() == pytest.approx(600 / (2.0 * 20.0))
    budget.begin(trainer)  # a new session measures again
    assert budget.speedup is None and budget.rates == []


def test_a_failed_bound_timing_keeps_the_default_ratio():
    def out_of_memory(trainer):
        raise RuntimeError("out of memory (simulated)")

    budget = TimeBudget(1.0, reserve_examples=600, measure_bound_rate=out_of_memory)
    trainer = fake_trainer()
    budget.after_log_row(trainer, 10.0)
    budget.after_log_row(trainer, 10.0)
    assert budget.speedup == BOUND_SPEEDUP
    assert any("could not time the bound (out of memory (simulated))" in line for line in trainer.lines)


def test_the_trainer_stops_on_its_budget_with_a_fake_clock(tmp_path, tiny_config):
    """A clock that reads the update count as seconds: the wall time after update k is k s, the
    examples/s of a log row of 2 updates are 2 * 32 / 2 = 32; a reserve of 64 examples at a
    bound rate of 64 examples/s (ratio 2 after the second row) is 1 s, so a 0.1-minute budget
    stops before update 6 (5 + 1 >= 6)."""
    holder = {}
    budget = TimeBudget(0.1, reserve_examples=64, measure_bound_rate=lambda trainer: 64.0)
    config = tiny_config(tmp_path, max_steps=1000, log_interval=2)
    trainer = Trainer(config, log=lambda line: None, stop_conditions=[budget],
                      clock=lambda: float(holder["trainer"].step) if "trainer" in holder else 0.0)
    holder["trainer"] = trainer
    summary = trainer.train()
    assert summary["stopped_by"] == "time budget (reserving 1 s for evaluation)"
    assert summary["step"] == 5 and summary["train_wall_seconds"] == 5.0
    assert budget.rates == [32.0, 32.0] and budget.speedup == 2.0
    assert summary["median_logged_examples_per_second"] == 32.0


def test_stop_conditions_are_given_to_the_trainer(tmp_path, tiny_config):
    class AfterThree(StopCondition):
        def reason(self, trainer):
            return "three updates" if trainer.step >= 3 else None

    config = tiny_config(tmp_path, max_steps=10, time_budget_minutes=60)
    trainer = Trainer(config, log=lambda line: None, stop_conditions=[AfterThree()])
    assert not any(isinstance(c, TimeBudget) for c in trainer.stop_conditions)  # replaced the configured budget
    summary = trainer.train()
    assert summary["stopped_by"] == "three updates" and summary["step"] == 3
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 3


# ---------------------------------------------------------------------------- real runs
def test_time_budget_stops_the_run(tmp_path, tiny_config, quiet):
    summary = quiet(tiny_config(tmp_path, max_steps=10**6, time_budget_minutes=0.02)).train()
    assert summary["stopped_by"] == "time budget" and 0 < summary["step"] < 10**6
    assert summary["train_wall_seconds"] >= 1.2
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == summary["step"]


def test_time_budget_reserves_time_for_evaluation(tmp_path, tiny_config, quiet):
    # a reserve no machine can afford: training stops at the first log row, when the rate is known
    config = tiny_config(tmp_path, max_steps=10**6, time_budget_minutes=10, log_interval=3,
                         budget_reserve_examples=10**12)
    summary = quiet(config).train()
    assert summary["step"] == 3 and summary["stopped_by"].startswith("time budget (reserving")


def test_measuring_the_bound_rate_leaves_the_run_unchanged(tmp_path, tiny_config, quiet):
    """The one-off timing of the bound (for the reserve) restores every random state: a
    budgeted run with a reserve trains bit for bit like the same run without one."""
    lines = []
    with_reserve = tiny_config(tmp_path / "a", max_steps=9, time_budget_minutes=60, log_interval=3,
                               budget_reserve_examples=100)
    trainer = Trainer(with_reserve, log=lines.append)
    trainer.train()
    assert any("bound / training examples/s measured" in line for line in lines)
    plain = quiet(tiny_config(tmp_path / "b", max_steps=9, log_interval=3))
    plain.train()
    for (name, a), (_, b) in zip(trainer.model.state_dict().items(), plain.model.state_dict().items()):
        assert torch.equal(a, b), name
