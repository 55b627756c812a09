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
