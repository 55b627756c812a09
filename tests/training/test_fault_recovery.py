"""What ``benchmarks/fault_tolerance.py`` found a killed-and-resumed run to get wrong (2 of its
first 20 single-process trials), each the smallest state that shows it, built in-process, and
the neighbouring case that always worked.
"""

import csv
import errno

import pytest

from pyro_bfn import cli
from pyro_bfn.training import RunLog, runlog


def _rows(path) -> list:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _steps(out_dir, name: str) -> list:
    return [int(row["step"]) for row in _rows(out_dir / f"{name}_log.csv")]


def test_a_row_cut_short_by_a_kill_is_dropped_at_resume(tmp_path):
    """A kill during the append of the row of step 105 leaves ``"1"``: read as step 1, it
    survives the resume from the checkpoint of step 100."""
    log = RunLog(tmp_path)
    for step in range(5, 105, 5):
        log.train_row(step, 64 * step, 1.0, 1e-3, 1.0, 100.0, 0.1)
    with open(tmp_path / "train_log.csv", "a") as handle:
        handle.write("1")  # the first character of "105,6720,..."
    log.start({}, 100)
    assert _steps(tmp_path, "train") == list(range(5, 105, 5))


def test_resuming_after_the_final_validation_does_not_repeat_its_row(tmp_path, tiny_config, quiet):
    """A run killed after its final validation row (while writing samples, curves or the summary)
    has the final checkpoint and that row; ``--resume`` validates and writes the row again.
    Resuming a finished run is the same state."""
    config = tiny_config(tmp_path, max_steps=10, eval_interval=5, eval_examples=64)
    quiet(config).train()
    assert _steps(tmp_path / "run", "valid") == [5, 10]
    quiet(config, resume=True).train()
    assert _steps(tmp_path / "run", "valid") == [5, 10]


def _untimed_rows(out_dir) -> list:
    return [{k: v for k, v in row.items() if k not in ("ex_per_s", "wall")} for row in _rows(out_dir / "train_log.csv")]


def test_a_checkpoint_on_a_log_row_resumes_with_the_same_rows(tmp_path, tiny_config, quiet):
    """``ckpt_interval`` a multiple of ``log_interval``: the run continued from the checkpoint of
    step 10 logs the rows of the uninterrupted run."""
    quiet(tiny_config(tmp_path / "whole", max_steps=20, log_interval=5, ckpt_interval=10)).train()
    quiet(tiny_config(tmp_path / "part", max_steps=10, log_interval=5, ckpt_interval=10)).train()
    quiet(tiny_config(tmp_path / "part", max_steps=20, log_interval=5, ckpt_interval=10), resume=True).train()
    assert _untimed_rows(tmp_path / "part" / "run") == _untimed_rows(tmp_path / "whole" / "run")


def test_a_checkpoint_between_log_rows_resumes_with_the_same_rows(tmp_path, tiny_config, quiet):
    """Rows every 3 updates, a checkpoint at 10. Once, the uninterrupted run's row of step 12
    averaged updates 10-12 and a run resumed from the checkpoint of 10 (killed before the row of
    12) updates 11-12; now every checkpoint writes a row first (the row of 10), in both runs."""
    quiet(tiny_config(tmp_path / "whole", max_steps=16, log_interval=3, ckpt_interval=10)).train()
    assert _steps(tmp_path / "whole" / "run", "train") == [3, 6, 9, 10, 12, 15, 16]
    # the state of a kill after the checkpoint of step 10: its rows up to 10, then a row cut short
    quiet(tiny_config(tmp_path / "part", max_steps=10, log_interval=3, ckpt_interval=10)).train()
    with open(tmp_path / "part" / "run" / "train_log.csv", "a") as handle:
        handle.write("1")
    quiet(tiny_config(tmp_path / "part", max_steps=16, log_interval=3, ckpt_interval=10), resume=True).train()
    assert _untimed_rows(tmp_path / "part" / "run") == _untimed_rows(tmp_path / "whole" / "run")


def test_a_full_disk_at_a_log_row_is_one_clear_error(tmp_path, monkeypatch, capsys):
    append = runlog._append_csv
    calls = []

    def full_disk(path, fields, row):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return append(path, fields, row)

    monkeypatch.setattr(runlog, "_append_csv", full_disk)
    status = cli.main(["train", "--out-dir", str(tmp_path / "run"), "--set", "dataset=toy_binary",
                       "--set", "max_steps=4", "--set", "log_interval=1", "--set", "progress=false"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("pyro-bfn: error:")]
    assert status == 2 and len(errors) == 1 and "No space left on device" in errors[0]
