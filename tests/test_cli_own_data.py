"""``pyro-bfn`` on the user's own data: a ``.npz`` named by a configuration, trained,
evaluated, sampled and exported from the command line; each bad input one error line."""

import json

import numpy as np
import pytest
import torch

from pyro_bfn.cli import main

TINY = ["--set", "backbone=mlp_small", "--set", "backbone_options={hidden: 32, depth: 1}", "--set", "autocast=none",
        "--set", "progress=false", "--set", "batch_size=16", "--set", "log_interval=4", "--set", "device=cpu"]


def _run(argv, capsys):
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture
def npz(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=96)
    images = (rng.random((96, 1, 4, 4)) < (labels[:, None, None, None] + 1) / 4).astype(np.uint8)
    path = tmp_path / "mine.npz"
    np.savez(path, images=images, labels=labels)
    return path


def test_a_npz_config_end_to_end(tmp_path, npz, capsys):
    config = tmp_path / "mine.yaml"
    config.write_text(f"dataset: {npz}\ndata_options:\n  type: discrete\n  num_classes: 2\n  x: images\n"
                      "  labels: labels\n  valid_fraction: 0.25\ncontext_dropout: 0.1\nmax_steps: 8\n"
                      "eval_interval: 4\nsample_interval: 8\nsample_num: 6\nsample_steps: 3\n")
    out = tmp_path / "run"
    status, stdout, err = _run(["train", "--config", config, "--out-dir", out, *TINY], capsys)
    assert status == 0, err
    summary = json.loads(stdout)
    assert summary["step"] == 8 and summary["last_valid"]["num_examples"] == 24
    assert (out / "samples_0000008.png").is_file()
    status, stdout, err = _run(["evaluate", "--checkpoint", out / "checkpoint.pt", "--split", "valid"], capsys)
    assert status == 0 and "bits/dim" in stdout, err
    status, stdout, err = _run(["sample", "--checkpoint", out / "checkpoint.pt", "--num", 4, "--n-steps", 3,
                                "--label", 2, "--guidance-scale", 1.0, "--out", tmp_path / "s.pt"], capsys)
    assert status == 0, err
    assert torch.load(tmp_path / "s.pt")["samples"].shape == (4, 1, 4, 4)
    status, stdout, err = _run(["export", "--checkpoint", out / "checkpoint.pt", "--out", tmp_path / "pre"], capsys)
    assert status == 0, err
    assert json.loads((tmp_path / "pre" / "config.json").read_text())["data_options"]["num_labels"] == 3
    status, stdout, err = _run(["evaluate", "--checkpoint", out / "checkpoint.pt", "--split", "test",
                                "--max-examples", 4], capsys)
    assert status == 0, err  # test is the held-out split too


@pytest.mark.parametrize("sets, fragment", [
    (["dataset=absent.npz", "data_options={type: discrete, num_classes: 2}"], "data file absent.npz does not exist"),
    (["data_options.typ=discrete"], "unknown option(s) 'typ'"),
    (["data_options.type=discret"], "data_options.type must be one of continuous, discretised, discrete"),
    (["data_options.type=continuous"], "data_options.num_classes is for discrete data, not continuous"),
    (["data_options.num_classes=1"], "data_options.num_classes must be an integer >= 2"),
    (["data_options.labels=nolabels"], "has no array 'nolabels' (labels); it has: images, labels"),
    (["data_options.x=labels"], "must have shape (N, *example_shape)"),
    (["data_options.shape=[2,8]"], "have shape (1, 4, 4), data_options.shape says (2, 8)"),
    (["eval_interval=2"], "no validation examples"),
    (["context_dropout=2"], "context_dropout must be a number in [0, 1)"),
])
def test_bad_user_data_is_one_error_line(tmp_path, npz, capsys, sets, fragment):
    values = [f"dataset={npz}", "data_options={type: discrete, num_classes: 2, x: images}", "max_steps=2", *sets]
    argv = ["train", "--out-dir", tmp_path / "run", *TINY]
    for item in values:
        argv += ["--set", item]
    status, _, err = _run(argv, capsys)
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("pyro-bfn: error: "), err
    assert fragment in lines[0], lines[0]
