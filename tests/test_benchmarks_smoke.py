"""Smoke test of ``benchmarks/speed.py``: one tiny configuration in a subprocess (``--quick``),
the Markdown tables have the expected columns and finite positive numbers, the JSON is written."""

import json
import math
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "speed.py"


def _tables(markdown: str) -> dict:
    """Markdown tables by the heading line that precedes them: {heading: (columns, rows)}."""
    tables, heading, lines = {}, None, markdown.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.startswith("| ") and heading is not None and heading not in tables:
            columns = [c.strip() for c in line.strip("|").split("|")]
            rows = []
            index += 2  # skip the alignment row
            while index < len(lines) and lines[index].startswith("| "):
                rows.append([c.strip() for c in lines[index].strip("|").split("|")])
                index += 1
            tables[heading] = (columns, rows)
            continue
        index += 1
    return tables


def _number(cell: str) -> float:
    return float(cell.replace(",", "").rstrip("x*%").split()[0])


def test_speed_quick_tiny_config(tmp_path):
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import speed
    finally:
        sys.path.pop(0)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--configs", "tiny_binary_mlp", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    markdown = (tmp_path / "speed.md").read_text()
    assert markdown == proc.stdout.rstrip("\n") or markdown in proc.stdout
    tables = _tables(markdown)
    train = next(v for k, v in tables.items() if k.startswith("Training"))
    evaluation = next(v for k, v in tables.items() if k.startswith("Likelihood evaluation"))
    assert train[0] == speed.TRAIN_COLUMNS
    assert evaluation[0] == speed.EVAL_COLUMNS
    for columns, rows in (train, evaluation):
        assert len(rows) == 1 and rows[0][0] == "tiny_binary_mlp"
        row = dict(zip(columns, rows[0]))
        for name, cell in row.items():
            if "ex/s" in name or "samples/s" in name or "peak MB" in name or "speed-up" in name or name == "batch":
                value = _number(cell)
                assert math.isfinite(value) and value > 0, (name, cell)
    row = dict(zip(*[train[0], train[1][0]]))
    assert _number(row["flow+loss % of step"]) > 0
    assert _number(row["n-step / cont. loss cost"]) > 0
    raw = json.loads((tmp_path / "speed.json").read_text())
    assert raw["meta"]["seed"] == 0 and raw["meta"]["cpu"]
    (result,) = raw["results"]
    assert result["threads"] == 1 and result["torch"] and result["pyro"]
    for mode in ("fp32", "bf16"):
        assert all(t > 0 for t in result["train"][mode]["seconds"])


def test_image_likelihood_tiny_run(tmp_path):
    """benchmarks/image_likelihood.py end to end on the toy 16-bin images: both losses trained for a
    few updates, the table has one finite row per loss, the JSON and the learning-curve plot exist."""
    script = ROOT / "benchmarks" / "image_likelihood.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--datasets", "toy_discretised", "--steps", "4", "--repeats", "2",
         "--nstep-examples", "4", "--backbone", "mlp_small", "--threads", "1", "--out", str(tmp_path / "out"),
         "--runs", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    markdown = (tmp_path / "out" / "image_likelihood.md").read_text()
    columns, rows = _tables(markdown)["Likelihood bounds on discretised images: continuous-data vs discretised loss"]
    assert [row[2] for row in rows] == ["discretised", "continuous"]
    for row in rows:
        bound = _number(row[columns.index("bits/dim, continuous time (± s.e.)")])
        assert math.isfinite(bound) and bound > 0
        assert _number(row[columns.index("updates")]) == 4
    saved = json.loads((tmp_path / "out" / "image_likelihood.json").read_text())
    assert len(saved["results"]) == 2 and saved["meta"]["command"].startswith("python benchmarks/image_likelihood.py")
    assert (tmp_path / "out" / "image_likelihood.png").stat().st_size > 0
    assert "## The reconstruction term at t = 1, per pixel" in markdown
    # --diagnose fills in rows that lack the per-pixel table, from the checkpoints
    expected = [row.pop("reconstruction_diagnostics") for row in saved["results"]]
    stripped = tmp_path / "stripped.json"
    stripped.write_text(json.dumps(saved))
    proc = subprocess.run(
        [sys.executable, str(script), "--diagnose", str(stripped), "--threads", "1", "--out", str(tmp_path / "again"),
         "--runs", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = json.loads((tmp_path / "again" / "image_likelihood.json").read_text())
    assert [row["reconstruction_diagnostics"] for row in again["results"]] == expected


def test_bf16_effect_tiny_run(tmp_path):
    """benchmarks/bf16_effect.py on the toy binary images: two trainings, four paired scores; the
    float32/float32 row is the baseline (difference exactly 0), every bound finite."""
    script = ROOT / "benchmarks" / "bf16_effect.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--steps", "2", "--test-examples", "20", "--config", "configs/toy_binary.yaml",
         "--threads", "1", "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    saved = json.loads((tmp_path / "out" / "bf16_effect.json").read_text())
    pairs = [(row["trained"], row["scored"]) for row in saved["scores"]]
    assert pairs == [("float32", "float32"), ("float32", "bf16"), ("bf16", "float32"), ("bf16", "bf16")]
    assert saved["scores"][0]["difference"] == 0 and all(math.isfinite(row["nats"]) for row in saved["scores"])
    assert "## Bound (nats/image)" in (tmp_path / "out" / "bf16_effect.md").read_text()
