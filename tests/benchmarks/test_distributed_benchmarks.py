"""benchmarks/fault_tolerance.py (``--quick``: one kill trial of each kind and two damaged-file
cases) and benchmarks/ddp_speed.py (``--quick``: the MLP in one and two gloo processes), each in
a subprocess: every kill lands where it was aimed (the wrappers of the child process still find
the library functions they wrap), the resumed run finishes with the uninterrupted run's
parameters, EMA and optimizer state, the damaged files give the expected outcome, and the tables
follow from the JSON."""

import json
import math
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _run(script: str, out) -> tuple:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=400, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stem = pathlib.Path(script).stem
    return json.loads((out / f"{stem}.json").read_text()), (out / f"{stem}.md").read_text()


@pytest.fixture(scope="module")
def fault_tolerance(tmp_path_factory):
    return _run("fault_tolerance.py", tmp_path_factory.mktemp("fault_tolerance"))


def test_every_kill_lands_where_it_was_aimed_and_the_checkpoint_ends_exact(fault_tolerance):
    saved, markdown = fault_tolerance
    trials = saved["trials"]
    assert [t["kind"] for t in trials] == ["step", "checkpoint", "validation"]
    for trial in trials:
        assert trial["processes"] == 1 and trial["where"] != "not reached", trial
        # the log rows are compared too; known log-row defects are tests/training/test_fault_recovery.py's
        assert not [d for d in trial["differences"] if not d.startswith(("train_log.csv", "valid_log.csv"))], trial
        assert trial["exact"] == (not trial["differences"])
    exact = sum(t["exact"] for t in trials)
    assert f"| 1 | **all** | **{exact}/3** |" in markdown
    assert saved["meta"]["command"].startswith("python benchmarks/fault_tolerance.py") and saved["meta"]["wall_seconds"] > 0


def test_damaged_files_stop_with_one_error_or_resume(fault_tolerance):
    saved, markdown = fault_tolerance
    cases = {c["case"]: c for c in saved["cases"]}
    assert cases.keys() == {"truncated", "stale_temporary"}
    assert cases["truncated"]["passed"] and "corrupt, truncated" in cases["truncated"]["outcome"]
    assert cases["stale_temporary"]["passed"] and "resumed from step 40" in cases["stale_temporary"]["outcome"]
    assert "## Damaged files (one process)" in markdown


def test_ddp_speed_quick(tmp_path):
    saved, markdown = _run("ddp_speed.py", tmp_path)
    rows = saved["rows"]
    assert [(r["processes"], r["threads"]) for r in rows] == [(1, 1), (1, 2), (2, 1)]
    for row in rows:
        assert row["model"] == "mlp_toy" and row["batch"] == 256 and row["examples_per_s"] > 0
        assert math.isclose(row["examples_per_s"], row["batch"] / row["step_s"])
    two = rows[2]
    assert math.isfinite(two["all_reduce_share"]) and two["bare_all_reduce_s"] > 0
    assert "all_reduce_share" not in rows[0]
    for heading in ("## Steps", "## Ring all-reduce per update on N GPUs (computed, not measured)"):
        assert heading in markdown
    assert markdown.count("| mlp_toy |") == 3
