"""Smoke runs of the scripts under ``benchmarks/``, each in a subprocess on tiny settings (or
re-rendering a committed result): the tables have the expected columns and finite positive
numbers, the JSON files hold the provenance, and the notes are computed from the numbers.
Plus two static checks of the tree: no ``sys.path`` patching, and no test imports a script."""

import ast
import json
import math
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"
RESULTS = BENCHMARKS / "results"

PROVENANCE = ("command", "date", "seed", "torch", "pyro", "cpu", "cpu_features", "cores", "git", "load_start",
              "load_end", "wall_seconds")


def _run(script: str, *args, timeout: int = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(BENCHMARKS / script), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


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


def _notes(markdown: str) -> str:
    return markdown.split("## Notes", 1)[1]


def _committed_columns(heading_start: str) -> list:
    """The columns of the table of the committed speed.md whose heading starts with ``heading_start``."""
    return next(v for k, v in _tables((RESULTS / "speed.md").read_text()).items() if k.startswith(heading_start))[0]


# ----------------------------------------------------------------------------- speed studies
def test_speed_quick_tiny_config(tmp_path):
    proc = _run("speed.py", "--quick", "--threads", "1", "--configs", "tiny_binary_mlp", "--out", tmp_path)
    markdown = (tmp_path / "speed.md").read_text()
    assert markdown == proc.stdout.rstrip("\n") or markdown in proc.stdout
    tables = _tables(markdown)
    train = next(v for k, v in tables.items() if k.startswith("Training"))
    evaluation = next(v for k, v in tables.items() if k.startswith("Likelihood evaluation"))
    assert train[0] == _committed_columns("Training")  # the columns of the committed results
    assert evaluation[0] == _committed_columns("Likelihood evaluation")
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
    assert all(raw["meta"].get(key) is not None for key in PROVENANCE)
    (result,) = raw["results"]
    assert result["threads"] == 1 and result["torch"] and result["pyro"]
    for mode in ("fp32", "bf16"):
        assert all(t > 0 for t in result["train"][mode]["seconds"])


def test_speed_losses_quick(tmp_path):
    """speed_losses.py on the tiny K = 2 shape: one cost row, nine accuracy rows, the DESIGN.md check
    (joint 0.399 and factorised 0.471 at alpha = 0.81, p = 0.4) reproduced."""
    _run("speed_losses.py", "--quick", "--threads", "1", "--configs", "tiny_kl_k2", "--out", tmp_path)
    markdown = (tmp_path / "speed_losses.md").read_text()
    tables = _tables(markdown)
    cost_columns, cost_rows = tables["Cost"]
    assert len(cost_rows) == 1 and cost_rows[0][0] == "tiny_kl_k2"
    for name, cell in zip(cost_columns, cost_rows[0]):
        if "ms" in name or "/ cont." in name:
            assert math.isfinite(_number(cell)) and _number(cell) > 0, (name, cell)
    assert len(tables["Accuracy"][1]) == 9
    (result,) = json.loads((tmp_path / "speed_losses.json").read_text())["results"]
    check = result["design_check"]
    assert check["joint"] == pytest.approx(0.399, abs=2e-3)
    assert check["factorised"] == pytest.approx(0.471, abs=1e-2)
    assert "tiny_kl_k2 (tiny (2, 64)): the registered KL takes" in _notes(markdown)


def test_committed_speed_json_renders_with_both_scripts(tmp_path):
    """The committed speed.json (model and n-step KL rows of one run) re-renders: its model rows with
    speed.py (every row kept in the JSON it writes), its KL rows with speed_losses.py."""
    shutil.copy(RESULTS / "speed.json", tmp_path / "speed.json")
    committed = json.loads((RESULTS / "speed.json").read_text())
    models = [r["name"] for r in committed["results"] if r["config"].get("kind") == "model"]
    kls = [r["name"] for r in committed["results"] if r["config"].get("kind") == "kl"]
    _run("speed.py", "--render", tmp_path / "speed.json", "--out", tmp_path / "out")
    columns, rows = next(v for k, v in _tables((tmp_path / "out" / "speed.md").read_text()).items()
                         if k.startswith("Training"))
    assert columns == _committed_columns("Training") and [row[0] for row in rows] == models
    assert len(json.loads((tmp_path / "out" / "speed.json").read_text())["results"]) == len(committed["results"])
    _run("speed_losses.py", "--render", tmp_path / "speed.json", "--out", tmp_path / "out")
    _, cost_rows = _tables((tmp_path / "out" / "speed_losses.md").read_text())["Cost"]
    assert [row[0] for row in cost_rows] == kls


def test_speed_profile_tiny(tmp_path):
    _run("speed_profile.py", "tiny_binary_mlp", "--repeats", "1", "--out", tmp_path)
    text = (tmp_path / "speed.profile.md").read_text()
    assert "## tiny_binary_mlp: toy_binary / mlp_small, batch 4" in text
    for heading in ("### Training step", "### Operators of 3 training steps", "### Flow + loss alone"):
        assert heading in text
    assert "CPU " in text and "git " in text


def test_speed_profile_flag_points_to_its_script():
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "speed.py"), "--profile", "tiny_binary_mlp"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2 and "speed_profile.py tiny_binary_mlp" in proc.stderr


def test_backbone_speed_tiny(tmp_path):
    _run("backbone_speed.py", "--configs", "mlp_small", "--batch", "2", "--warmup", "0", "--iters", "1", "--threads", "1",
         "--out", tmp_path)
    columns, rows = _tables((tmp_path / "backbone_speed.md").read_text())["Forward + backward throughput of the named backbones"]
    assert [row[0] for row in rows] == ["mlp_small"]
    assert _number(rows[0][columns.index("fp32 ex/s (median / best)")]) > 0
    saved = json.loads((tmp_path / "backbone_speed.json").read_text())
    assert saved["results"][0]["params"] > 0 and saved["meta"]["cpu_features"]


def test_bad_integer_arguments_are_named():
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "speed.py"), "--repeats", "0"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2 and "--repeats" in proc.stderr and "positive integer, got 0" in proc.stderr


# ----------------------------------------------------------------------------- likelihood studies
def test_image_likelihood_tiny_run(tmp_path):
    """benchmarks/image_likelihood.py end to end on the toy 16-bin images: both losses trained for a
    few updates, the table has one finite row per loss, the JSON and the learning-curve plot exist."""
    _run("image_likelihood.py", "--datasets", "toy_discretised", "--steps", "4", "--repeats", "2",
         "--nstep-examples", "4", "--backbone", "mlp_small", "--threads", "1", "--out", tmp_path / "out",
         "--runs", tmp_path / "runs", timeout=300)
    markdown = (tmp_path / "out" / "image_likelihood.md").read_text()
    columns, rows = _tables(markdown)["Likelihood bounds on discretised images: continuous-data vs discretised loss"]
    assert [row[2] for row in rows] == ["discretised", "continuous"]
    for row in rows:
        bound = _number(row[columns.index("bits/dim, continuous time (± s.e.)")])
        assert math.isfinite(bound) and bound > 0
        assert _number(row[columns.index("updates")]) == 4
    saved = json.loads((tmp_path / "out" / "image_likelihood.json").read_text())
    assert len(saved["results"]) == 2 and saved["meta"]["command"].startswith("python benchmarks/image_likelihood.py")
    assert saved["meta"]["plots"] == ["image_likelihood.png"]
    assert (tmp_path / "out" / "image_likelihood.png").stat().st_size > 0
    assert "## The reconstruction term at t = 1, per pixel" in markdown
    assert "The bounds are those of short runs (4 updates of a" in _notes(markdown)
    # --diagnose fills in rows that lack the per-pixel table, from the checkpoints
    expected = [row.pop("reconstruction_diagnostics") for row in saved["results"]]
    stripped = tmp_path / "stripped.json"
    stripped.write_text(json.dumps(saved))
    _run("image_likelihood.py", "--diagnose", stripped, "--threads", "1", "--out", tmp_path / "again",
         "--runs", tmp_path / "runs", timeout=300)
    again = json.loads((tmp_path / "again" / "image_likelihood.json").read_text())
    assert [row["reconstruction_diagnostics"] for row in again["results"]] == expected


def test_bf16_effect_tiny_run(tmp_path):
    """benchmarks/bf16_effect.py on the toy binary images: two trainings, four paired scores; the
    float32/float32 row is the baseline (difference exactly 0), every bound finite."""
    _run("bf16_effect.py", "--steps", "2", "--test-examples", "20", "--config", "configs/toy_binary.yaml",
         "--threads", "1", "--out", tmp_path / "out", "--runs", tmp_path / "runs", timeout=300)
    saved = json.loads((tmp_path / "out" / "bf16_effect.json").read_text())
    pairs = [(row["trained"], row["scored"]) for row in saved["scores"]]
    assert pairs == [("float32", "float32"), ("float32", "bf16"), ("bf16", "float32"), ("bf16", "bf16")]
    assert saved["scores"][0]["difference"] == 0 and all(math.isfinite(row["nats"]) for row in saved["scores"])
    assert "## Bound (nats/image)" in (tmp_path / "out" / "bf16_effect.md").read_text()
    assert all(saved["meta"].get(key) is not None for key in PROVENANCE)


def test_mnist_likelihood_notes_are_computed(tmp_path):
    """Re-rendering the committed run: the notes state the ratios to the paper's network and training
    computed from the JSON (not fixed prose), and the table keeps every row."""
    shutil.copy(RESULTS / "mnist_likelihood.json", tmp_path / "mnist_likelihood.json")
    _run("mnist_likelihood.py", "--render", tmp_path / "mnist_likelihood.json", "--out", tmp_path / "out")
    saved = json.loads((RESULTS / "mnist_likelihood.json").read_text())
    meta = saved["meta"]
    markdown = (tmp_path / "out" / "mnist_likelihood.md").read_text()
    notes = _notes(markdown)
    assert f"({24.8e6 / meta['parameters']:.0f}x fewer)" in notes
    examples = meta["updates"] * meta["batch_size"]
    assert f"{examples:,} examples, {150_000 * 512 / examples:,.0f}x fewer" in notes
    assert "~23x smaller" not in notes and "15-minute" not in notes
    (_, rows), = [v for k, v in _tables(markdown).items() if k.startswith("Binarized MNIST")]
    assert len(rows) == len(saved["results"])
    assert (tmp_path / "out" / "mnist_likelihood.png").stat().st_size > 0


def test_sample_quality_notes_are_computed(tmp_path):
    shutil.copy(RESULTS / "sample_quality.json", tmp_path / "sample_quality.json")
    _run("sample_quality.py", "--render", tmp_path / "sample_quality.json", "--out", tmp_path / "out")
    meta = json.loads((RESULTS / "sample_quality.json").read_text())["meta"]
    notes = _notes((tmp_path / "out" / "sample_quality.md").read_text())
    assert f"a {meta['parameters'] / 1e6:.2f}M-parameter model trained for {meta['updates']} updates" in notes
    assert "speckle" not in notes and "as expected" not in notes


def test_text_likelihood_render_from_a_minimal_result(tmp_path):
    meta = {
        "command": "python benchmarks/text_likelihood.py", "date": "d", "seed": 0, "torch": "t", "pyro": "p",
        "cpu": "c", "threads": 1, "omp_wait_policy": "PASSIVE", "git": "g", "wall_seconds": 60.0,
        "load_start": "l0", "load_end": "l1", "autocast_choice": "measured faster", "curve": None,
        "samples_file": "s.txt", "sample_lines": ["the cat"], "real_line": "the mat", "note": "",
        "precision": {"batch_size": 16, "timed_steps": 4, "fp32": {"median_s": 1.0, "examples_per_s": 16.0},
                      "bf16": {"median_s": 0.5, "examples_per_s": 32.0}, "bf16_speedup": 2.0},
        "training": {"backbone": "transformer_small", "backbone_options": {}, "num_parameters": 3_181_083,
                     "batch_size": 16, "steps": 10, "examples": 160, "characters": 40_960, "epoch_fraction": 0.001,
                     "train_sequences": 191_000, "wall_seconds": 30.0, "autocast": "bfloat16", "valid_windows": 128,
                     "last_valid_bits_per_char": 4.0},
        "test": {"bits_per_char": 3.5, "bits_per_char_stderr": 0.01, "flow_bits_per_char": 3.4,
                 "reconstruction_bits_per_char": 0.1, "windows": 8, "windows_available": 10, "cap": 8, "stride": 256,
                 "repeats": 2, "stderr_kind": "passes", "seconds": 6.0},
        "words": {"sample_steps": 100, "sample_num": 1, "samples": {"share": 0.5, "tokens": 2},
                  "real": {"share": 0.9, "tokens": 10}, "sample_seconds": 1.0, "list_size": 5},
    }
    path = tmp_path / "text_likelihood.json"
    path.write_text(json.dumps(meta))
    _run("text_likelihood.py", "--render", path)
    markdown = path.with_suffix(".md").read_text()
    assert "**3.500 ± 0.010**" in markdown
    assert "8 / 10 (capped by --test-windows, spread evenly)" in markdown
    assert "| bf16 | 16 | 0.500 | 32.0 |" in markdown
    assert "1.41 bits/char on text8" in markdown
    # the harness's layout ({"meta": ...}) renders the same
    nested = tmp_path / "nested.json"
    nested.write_text(json.dumps({"meta": meta}))
    _run("text_likelihood.py", "--render", nested)
    assert nested.with_suffix(".md").read_text() == markdown


# ----------------------------------------------------------------------------- the tree
def test_no_sys_path_patching_in_benchmarks_or_tests():
    patterns = ("sys.path." + "insert", "sys.path." + "append")
    files = sorted(BENCHMARKS.glob("*.py")) + sorted((ROOT / "tests").rglob("*.py"))
    offenders = [str(path.relative_to(ROOT)) for path in files if any(p in path.read_text() for p in patterns)]
    assert offenders == []


def test_no_test_imports_a_benchmark_script():
    scripts = {path.stem for path in BENCHMARKS.glob("*.py")}
    found = []
    for path in (ROOT / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            found += [f"{path.relative_to(ROOT)}: {name}" for name in names
                      if name.split(".")[0] in scripts or name.startswith("benchmarks")]
    assert found == []
