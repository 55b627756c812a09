"""``benchmarks/speed.py --reference DIR``: the reference implementation beside pyro-bfn.

The reference's code is never part of this repository: the smoke run needs a checkout named by
the environment variable ``BFN_REFERENCE_DIR`` (``git clone
https://github.com/nnaisense/bayesian-flow-networks``) and is skipped without one. The error for
a directory that is not a checkout needs nothing."""

import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPEED = ROOT / "benchmarks" / "speed.py"
REFERENCE_DIR = os.environ.get("BFN_REFERENCE_DIR")


def _speed(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SPEED), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.mark.parametrize("make", [lambda tmp: tmp / "absent", lambda tmp: tmp], ids=["missing", "not_a_checkout"])
def test_a_directory_that_is_not_a_checkout_is_one_clear_error(tmp_path, make):
    target = make(tmp_path)
    (tmp_path / "model.py").write_text("# not the reference\n")
    proc = _speed("--reference", target, "--out", tmp_path / "out", timeout=120)
    assert proc.returncode == 2  # argparse's usage error, no traceback
    assert "Traceback" not in proc.stderr
    message = proc.stderr.strip().splitlines()[-1]
    assert f"--reference {target}" in message
    assert "git clone https://github.com/nnaisense/bayesian-flow-networks" in message
    if target.exists():
        assert "not a checkout" in message and "(missing probability.py, utils_model.py," in message  # model.py is there
    else:
        assert "not a directory" in message
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not REFERENCE_DIR, reason="needs a checkout of the reference implementation named by "
                    "BFN_REFERENCE_DIR (git clone https://github.com/nnaisense/bayesian-flow-networks)")
def test_side_by_side_smoke(tmp_path):
    proc = _speed("--reference", REFERENCE_DIR, "--quick", "--threads", 1, "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = json.loads((tmp_path / "reference_side_by_side.json").read_text())
    rows = saved["rows"]
    assert [(r["kind"], r["network"]) for r in rows] == [("train", "small"), ("eval", "small"), ("sample", "small")]
    for row in rows:
        assert row["params"] == 1_080_545  # the same network on both sides
        for mode in ("reference", "ours_fp32", "ours_default"):
            assert math.isfinite(row[mode]["per_s"]) and row[mode]["per_s"] > 0
        assert row["ours_fp32_speed_up"] == pytest.approx(row["ours_fp32"]["per_s"] / row["reference"]["per_s"])
    shares = rows[0]["flow_share"]
    assert all(0 < shares[mode] < 1 for mode in ("reference", "ours_fp32", "ours_default"))
    assert saved["meta"]["reference_git"] and saved["meta"]["cpu_features"]
    markdown = (tmp_path / "reference_side_by_side.md").read_text()
    assert "| training, small net (1.08M), batch 2 |" in markdown and ">= 2.0x (default)" in markdown
