"""benchmarks/gpu_check.py, run as a subprocess (tests never import a script): without CUDA it
measures and writes nothing; its CPU dry run (``--device cpu --quick``) runs every path with tiny
U-Nets; an injected failure or NaN fails its path and the exit status."""

import json
import math
import pathlib
import subprocess
import sys

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
PROVENANCE = ("command", "date", "seed", "torch", "pyro", "cpu", "git", "load_start", "load_end", "wall_seconds")
#: every path of the check, in the order it runs (the compile rows last)
PATHS = [f"{net} {path}" for net in ("demo", "paper") for path in (
    "train fp32", "train bf16", "train fp16 + GradScaler", "train bf16 channels_last", "bound fp32", "bound bf16",
    "sample ancestral 2x3 bf16", "sample ode2 2x2 bf16")] + ["demo train bf16 torch.compile", "paper train bf16 torch.compile"]
#: bf16 keeps 8 significant bits: one rounding changes a value by at most 2^-8 ~ 3.9e-3 of it, and the
#: batch-mean loss (a sum over 784 pixels of rounded network outputs) by far less; 1e-2 bounds it safely
REL_TOLERANCE = 1e-2


def _run(*args, timeout=120):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def _rows(markdown: str) -> dict:
    """The rows of the '## Paths' table: {path: {column: cell}}."""
    lines = markdown.split("## Paths", 1)[1].strip().splitlines()
    columns = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        if not line.startswith("| "):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(columns, cells))
    return rows


@pytest.mark.skipif(torch.cuda.is_available(), reason="the default run measures on the CUDA device here")
def test_without_cuda_it_measures_and_writes_nothing(tmp_path):
    proc = _run("--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == ("gpu_check needs a CUDA device; torch.cuda.is_available() is False here; "
                                   "nothing was measured")
    assert not (tmp_path / "out").exists()


def test_cpu_dry_run_runs_every_path(tmp_path):
    # a small initial scale of the fp16 gradient scaler: CPU fp16 steps are slow, and from 2**16 the
    # tiny nets need ~12 skipped updates first (the default run's note counts them)
    proc = _run("--device", "cpu", "--quick", "--threads", "1", "--data", "synthetic", "--reps", "1",
                "--fp16-init-scale", "16", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert markdown.startswith("# gpu_check dry run on the CPU (nothing here is a GPU measurement)")
    assert "synthetic Bernoulli(0.5) images" in markdown
    rows = _rows(markdown)
    assert list(rows) == PATHS
    for path, row in rows.items():
        if "torch.compile" in path:
            assert row["status"].startswith("skipped on CPU"), row
            continue
        assert row["status"] == "ok", row
        assert float(row["ms/step"]) > 0 and float(row["examples/s"].replace(",", "")) > 0, row
        if "sample" not in path:
            assert math.isfinite(float(row["loss (nats/image)"])), row
            assert abs(float(row["rel. diff vs fp32"])) < (0 if path.endswith("fp32") else REL_TOLERANCE) + 1e-12, row
    saved = json.loads((tmp_path / "gpu_check.json").read_text())
    assert all(saved["meta"].get(key) is not None for key in PROVENANCE)
    assert saved["meta"]["device"] == "cpu" and saved["meta"]["gpu"] is None
    assert [row["path"] for row in saved["rows"]] == PATHS
    fp16 = next(row for row in saved["rows"] if row["path"] == "demo train fp16 + GradScaler")
    assert fp16["details"]["grad_scale"] > 0 and all(math.isfinite(v) for v in fp16["details"]["losses"])


def test_a_failing_path_fails_the_run_and_the_others_still_run(tmp_path):
    proc = _run("--device", "cpu", "--quick", "--threads", "1", "--paths", "demo train fp32", "demo bound",
                "--inject-failure", "demo train fp32", "--inject-nan", "demo bound bf16", "--out", tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    rows = _rows((tmp_path / "gpu_check.md").read_text())
    assert list(rows) == ["demo train fp32", "demo bound fp32", "demo bound bf16"]
    assert rows["demo train fp32"]["status"] == "FAILED: RuntimeError: failure injected by --inject-failure"
    assert rows["demo bound fp32"]["status"] == "ok"
    assert rows["demo bound bf16"]["status"].startswith("FAILED: ")  # NaN network output
    assert rows["demo bound bf16"]["rel. diff vs fp32"] == "–"
    assert "2 path(s) FAILED: demo train fp32, demo bound bf16" in proc.stderr
