"""benchmarks/memory.py on the toy MLP (``--quick``), each measurement in its own process: the
counted figures are exact (the bytes saved for backward grow linearly with the batch, the state
is 4 bytes x parameters x (parameter + gradient + 2 AdamW moments + EMA) in training and the
parameters alone in evaluation), the fits and extrapolations follow from the measurements, and
the real (resident-set) peak is measured."""

import json
import math
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "memory.py"
GiB = 2**30


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("memory")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "memory.json").read_text()), (out / "memory.md").read_text()


def _parameters() -> int:
    from pyro_bfn.training import TrainConfig
    from pyro_bfn.zoo import build_bfn

    config = TrainConfig.from_yaml(ROOT / "configs" / "toy_binary.yaml")
    bfn = build_bfn(config.dataset, config.backbone, config.data_type_options, config.backbone_options)
    return sum(p.numel() for p in bfn.parameters())


def _group(saved, mode, precision):
    rows = sorted((m for m in saved["measurements"] if m["mode"] == mode and m["precision"] == precision),
                  key=lambda m: m["batch"])
    assert [m["batch"] for m in rows] == [1, 2, 4, 8]
    return rows


def test_state_bytes_are_counted_exactly(result):
    saved, _ = result
    parameters = _parameters()
    for m in saved["measurements"]:
        assert m["parameters"] == parameters
        if m["mode"] == "train":  # float32 parameters, also under bf16 autocast
            assert m["state_parts"] == dict(parameters=4 * parameters, gradients=4 * parameters,
                                            optimizer=2 * 4 * parameters, ema=4 * parameters)
            assert m["state_bytes"] == 4 * parameters * (1 + 1 + 2 + 1)
        else:
            assert m["state_parts"] == dict(parameters=4 * parameters) and m["state_bytes"] == 4 * parameters
            assert m["saved_bytes"] == 0


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_saved_for_backward_grows_linearly_with_the_batch(result, precision):
    saved, _ = result
    rows = _group(saved, "train", precision)
    batches = [m["batch"] for m in rows]
    values = [m["saved_bytes"] for m in rows]
    slope = (values[1] - values[0]) // (batches[1] - batches[0])
    assert slope > 0
    assert all(v == values[0] + slope * (b - batches[0]) for b, v in zip(batches, values))  # exact: integers
    for m in rows:  # the live peak holds at least what the backward pass starts with
        assert m["live_peak_bytes"] >= m["state_bytes"] + m["saved_bytes"]
        assert m["real_peak_mib"] > 0 and m["real_method"] == "ru_maxrss"
    fit = next(r for r in saved["fits"] if r["mode"] == "train" and r["precision"] == precision)["saved"]
    assert fit["per_example"] == pytest.approx(slope, rel=1e-9)
    assert fit["fixed"] == pytest.approx(rows[0]["state_bytes"] + values[0] - slope * batches[0], rel=1e-9)


def test_bf16_saves_less_per_example_than_float32(result):
    saved, _ = result
    fits = {r["precision"]: r["saved"]["per_example"] for r in saved["fits"] if r["mode"] == "train"}
    assert fits["bf16"] < fits["fp32"]


def test_evaluation_live_peak_grows_with_the_batch(result):
    saved, _ = result
    for precision in ("fp32", "bf16"):
        rows = _group(saved, "eval", precision)
        peaks = [m["live_peak_bytes"] for m in rows]
        assert all(a < b for a, b in zip(peaks, peaks[1:]))
        assert peaks[0] > rows[0]["state_bytes"]


def test_largest_batches_follow_from_the_live_fit(result):
    saved, markdown = result
    for row in saved["fits"]:
        line = row["live"]
        for capacity in (24, 80, 141):
            expected = math.floor((capacity * GiB - line["fixed"]) / line["per_example"])
            assert row["largest_batch"][f"{capacity} GiB"] == expected
    for heading in ("## Fits: fixed part + MiB per example", "## Largest batch (extrapolated from the live-tensor fit)",
                    "## Measurements (MiB)", "## Notes"):
        assert heading in markdown
    assert markdown.count("| toy_mlp |") == 4 + 4 + 16
    meta = saved["meta"]
    assert meta["command"].startswith("python benchmarks/memory.py") and meta["cpu_features"] and meta["wall_seconds"] > 0
