"""benchmarks/sampling_quality.py in its smoke mode (an untrained toy BFN, synthetic images instead of
MNIST, a classifier trained for one epoch on them): the points run in the order given, every row
has finite scores and a seconds-per-sample figure, the reference row and the real-image noise are
there, the notes state the goal's verdict from the numbers, the inpainting table has its rows, and
``--render`` of the JSON gives the same Markdown."""

import json
import math
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "sampling_quality.py"
RESULTS = ROOT / "benchmarks" / "results"


def _run(*args, timeout=300):
    proc = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    return proc


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("sampling_quality")
    proc = _run("--smoke", "--out", out, "--points", "ode2:3", "ancestral:3", "ancestral:ref", "--reference-steps", 4,
                "--num-samples", 12, "--sample-batch", 6, "--bootstrap", 3, "--real-sets", 2, "--classifier-epochs", 1,
                "--modes", "quality", "inpaint", "--samplers", "ancestral", "ode2", "--inpaint-num", 8,
                "--inpaint-nfe", 3, "--particles", 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "sampling_quality.json").read_text()), (out / "sampling_quality.md").read_text()


def test_points_rows_and_noise(smoke):
    out, saved, markdown = smoke
    points = saved["results"]["quality"]["points"]
    assert [(p["sampler"], p["nfe"], p["n_steps"], p["reference"]) for p in points] == [
        ("ode2", 3, 2, False), ("ancestral", 3, 2, False), ("ancestral", 5, 4, True)]
    for p in points:
        assert p["num"] == 12 and p["seconds_per_sample"] > 0
        for key in ("frechet_distance", "frechet_se", "inception_score", "inception_se"):
            assert math.isfinite(p[key]) and p[key] >= 0, (key, p)
    real = saved["results"]["quality"]["real"]
    assert real["sets"] == 2 and real["num"] == 12 and math.isfinite(real["frechet_std"])
    assert "| ancestral (reference) | 5 | 4 |" in markdown
    assert saved["meta"]["plots"] == ["sampling_quality.png"] and (out / "sampling_quality.png").stat().st_size > 0
    assert saved["meta"]["smoke"] is True and saved["meta"]["cpu"]


def test_notes_say_what_ran_and_what_did_not(smoke):
    _, saved, markdown = smoke
    notes = markdown.split("## Notes", 1)[1]
    assert "Points run: ancestral at 3, ode2 at 3; the reference (ancestral, 4 steps)" in notes
    assert "Every requested point ran." in notes
    assert "Sampling noise of the Frechet distance at N = 12" in notes


def test_inpainting_rows(smoke):
    _, saved, markdown = smoke
    names = [row["name"] for row in saved["results"]["inpaint"]]
    assert names == ["real images", "bottom half blank", "replacement, ancestral", "replacement, ode2",
                     "SMC, 2 particles"]
    assert all(0 <= row["accuracy"] <= 1 for row in saved["results"]["inpaint"])
    assert "## Inpainting: the bottom half of test digits given the top half" in markdown


def test_render_reproduces_the_markdown(smoke, tmp_path):
    out, _, markdown = smoke
    shutil.copy(out / "sampling_quality.json", tmp_path / "saved.json")
    proc = _run("--render", tmp_path / "saved.json", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "sampling_quality.md").read_text() == markdown


def test_cfg_appended_to_a_saved_run(smoke, tmp_path):
    """--append --modes cfg adds the guidance sweep (an untrained conditional toy model in smoke mode)
    and keeps the saved quality and inpainting results and their provenance."""
    out, saved, _ = smoke
    for name in ("sampling_quality.json", "smoke_classifier.pt"):
        shutil.copy(out / name, tmp_path / name)
    proc = _run("--smoke", "--out", tmp_path, "--append", "--modes", "cfg", "--cfg-num", 20, "--cfg-nfe", 3,
                "--guidance-scales", 0, 2, "--sample-batch", 10, "--classifier-epochs", 1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads((tmp_path / "sampling_quality.json").read_text())
    assert again["results"]["quality"] == saved["results"]["quality"]
    assert again["results"]["inpaint"] == saved["results"]["inpaint"]
    assert [row["scale"] for row in again["results"]["cfg"]] == [0.0, 2.0]
    assert all(0 <= row["accuracy"] <= 1 and row["diversity"] >= 0 and row["nfe"] == 6 for row in again["results"]["cfg"])
    assert again["meta"]["command"] == saved["meta"]["command"]
    assert again["meta"]["appended"][0]["modes"] == ["cfg"]
    markdown = (tmp_path / "sampling_quality.md").read_text()
    assert "## Classifier-free guidance: class accuracy vs diversity" in markdown and "Appended (cfg):" in markdown


def test_goal_verdict_is_computed_from_the_numbers(tmp_path):
    """A saved result with 10-call points: the verdict follows the 2-standard-error rule."""
    def point(sampler, nfe, fd, se, reference=False):
        return dict(sampler=sampler, nfe=nfe, n_steps=nfe - 1 if not reference else 100, reference=reference, seed=0,
                    seconds=1.0, seconds_per_sample=0.01, load="1.0", num=1000, frechet_distance=fd, frechet_se=se,
                    inception_score=5.0, inception_se=0.1, mean_max_confidence=0.9, mean_class_entropy=0.2,
                    marginal_class_entropy=2.2, class_histogram=[0.1] * 10)

    saved = dict(meta=dict(command="python benchmarks/sampling_quality.py", date="d", num_samples=1000, bootstrap=50),
                 results=dict(quality=dict(reference_steps=100, wanted=[], points=[
                     point("ancestral", 101, 10.0, 0.5, reference=True),
                     point("ode2", 10, 10.9, 0.5),       # +0.9 < 2 * 0.71: not significantly worse
                     point("ancestral", 10, 14.0, 0.5),  # +4.0: significantly worse
                 ])))
    path = tmp_path / "saved.json"
    path.write_text(json.dumps(saved))
    proc = _run("--render", path, "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    notes = (tmp_path / "sampling_quality.md").read_text().split("## Notes", 1)[1]
    assert "**Goal (10 network calls reach the 100-step ancestral sampler's quality): met by ode2.**" in notes
    assert "ode2 +0.90 ± 0.71 (not significant" in notes and "ancestral +4.00 ± 0.71 (significant" in notes


def test_committed_result_renders(tmp_path):
    committed = RESULTS / "sampling_quality.json"
    if not committed.is_file():
        pytest.skip("no committed sampling_quality.json yet")
    shutil.copy(committed, tmp_path / "saved.json")
    proc = _run("--render", tmp_path / "saved.json", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "sampling_quality.md").read_text() == (RESULTS / "sampling_quality.md").read_text()


def test_bad_points_are_usage_errors(tmp_path):
    proc = _run("--smoke", "--out", tmp_path, "--points", "ode2", timeout=120)
    assert proc.returncode == 2 and "a point is SAMPLER:NFE" in proc.stderr
    proc = _run("--smoke", "--out", tmp_path, "--points", "euler:10", timeout=120)
    assert proc.returncode != 0 and "unknown sampler 'euler'" in proc.stderr
