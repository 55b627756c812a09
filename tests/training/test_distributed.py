"""Data parallelism: gradient accumulation and ``torchrun`` with 2 gloo processes on loopback
give the updates of one process with the whole batch; a run killed under ``torchrun`` and
resumed ends where the uninterrupted one does; a checkpoint of 2 processes resumes on 1.

Tolerance of the comparisons between different splits of a batch. The random draws of the
loss are made for the whole batch from a shared generator (``BFN.loss_draws``), so each row's
loss is the same number whatever the split; what differs is the summation order of the batch
mean (per micro-batch, then the all-reduce) and the batch-size-dependent blocking of the
matrix products, each a relative rounding of float32 (2**-24 = 6e-8) per operation. AdamW
amplifies such differences where a gradient entry is near zero (its update is about
``lr * sign(g)``), so single entries are no measure; each parameter tensor is compared by
``|theta_a - theta_b| / |theta_a - theta_init|`` (Frobenius norms: the difference relative to
the distance the training moved it). Measured after 40 updates: at most 1.9e-6 between 1 and 2
processes, while a run whose loss draws alone differed (another draw seed) gave 0.03-0.65.
The bound ``1e-4`` leaves a margin of 50x to the first and is 300x below the second. The
losses of ``train_log.csv`` (4 decimals) may differ by one unit of the last digit (a rounding
boundary) plus 64 roundings of the batch sum: ``1e-4 + 64 * 2**-24 * |loss|``.
Splits of the same size on the same number of processes (the kill-and-resume test) are
compared bit for bit.
"""

import csv
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import torch
import yaml

from pyro_bfn.training import TrainConfig, Trainer
from pyro_bfn.training.config import ConfigError
from pyro_bfn.training.distributed import ProcessGroup, join_process_group

#: bound on |theta_a - theta_b| / |theta_a - theta_init| per parameter tensor (module docstring)
RELATIVE_DIFFERENCE = 1e-4
STEPS = 40

#: the run every test here trains: toy binary rectangles, a small MLP, global batch 64, fp32
RUN = ["dataset=toy_binary", "backbone=mlp_small", "batch_size=64", "lr=3e-3", "warmup_steps=5", "ema_decay=0.9",
       f"max_steps={STEPS}", "log_interval=1", "eval_interval=0", "sample_interval=0", "ckpt_interval=10",
       "autocast=none", "device=cpu", "seed=3", "progress=false", "num_threads=1"]


def _config(out_dir, *extra) -> TrainConfig:
    values = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in RUN + list(extra))}
    return TrainConfig.from_dict({**values, "out_dir": str(out_dir)})


def _torchrun(out_dir, *extra, resume=False, wait=True):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "pyro_bfn", "train", "--out-dir", str(out_dir)]
    for item in RUN + list(extra):
        command += ["--set", item]
    command += ["--resume"] if resume else []
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "CI": "true"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=environment, start_new_session=True)
    if not wait:
        return process
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    return output


def _kill_tree(root: int) -> None:
    """SIGKILL to ``root`` and every descendant, workers first (psutil follows the parent links:
    torchrun starts each worker in a session of its own, so its process group would not reach
    them)."""
    try:
        parent = psutil.Process(root)
        tree = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for process in reversed(tree):
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass


def _losses(out_dir) -> dict:
    with open(out_dir / "train_log.csv") as handle:
        return {int(row["step"]): float(row["loss"]) for row in csv.DictReader(handle)}


def _checkpoint(out_dir) -> dict:
    return torch.load(out_dir / "checkpoint.pt", weights_only=True)


def _initial_parameters() -> dict:
    """The parameters every run here starts from (the seed fixes them)."""
    with torch.random.fork_rng():
        return _config_trainer_model_state()


def _config_trainer_model_state() -> dict:
    import tempfile
    with tempfile.TemporaryDirectory() as directory:
        return Trainer(_config(directory), log=lambda line: None).model.state_dict()


def _assert_parameters_close(a: dict, b: dict):
    initial = _initial_parameters()
    for key in ("model", "ema"):
        assert a[key].keys() == b[key].keys() == initial.keys()
        for name in a[key]:
            moved = float((a[key][name] - initial[name]).norm())
            difference = float((a[key][name] - b[key][name]).norm())
            assert moved > 0 and difference <= RELATIVE_DIFFERENCE * moved, (key, name, difference / moved)


def _assert_losses_close(a: dict, b: dict):
    assert a.keys() == b.keys()
    for step in a:
        assert abs(a[step] - b[step]) <= 1e-4 + 64 * 2**-24 * abs(a[step]), (step, a[step], b[step])


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """One process, the whole batch of 64 per update."""
    out_dir = tmp_path_factory.mktemp("one") / "run"
    Trainer(_config(out_dir), log=lambda line: None).train()
    return out_dir


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """``torchrun --nproc-per-node 2``: 32 examples per process and update."""
    out_dir = tmp_path_factory.mktemp("two") / "run"
    _torchrun(out_dir)
    return out_dir


def test_gradient_accumulation_equals_the_whole_batch(tmp_path, one_process):
    trainer = Trainer(_config(tmp_path / "run", "accumulate=4"), log=lambda line: None)
    trainer.train()
    assert trainer.micro_batch_size == 16
    _assert_losses_close(_losses(tmp_path / "run"), _losses(one_process))
    _assert_parameters_close(_checkpoint(tmp_path / "run"), _checkpoint(one_process))


def test_two_processes_equal_one_with_the_whole_batch(one_process, two_processes):
    _assert_losses_close(_losses(two_processes), _losses(one_process))
    _assert_parameters_close(_checkpoint(two_processes), _checkpoint(one_process))
    state = _checkpoint(two_processes)
    assert state["world_size"] == 2 and len(state["rank_rng"]) == 2
    # the ranks share the data and draw streams and have their own global generators
    assert torch.equal(state["rank_rng"][0]["draws"], state["rank_rng"][1]["draws"])
    assert not torch.equal(state["rank_rng"][0]["torch"], state["rank_rng"][1]["torch"])
    assert (two_processes / "summary.json").is_file() and not list(two_processes.glob(".checkpoint.pt.tmp-*"))


def test_killed_and_resumed_under_torchrun_ends_as_the_uninterrupted_run(tmp_path, two_processes):
    """SIGKILL to torchrun and its workers as soon as the first checkpoint (step 10)
    exists, then ``--resume``: the final checkpoint and logs equal the uninterrupted run's bit
    for bit (same processes, same splits)."""
    out_dir = tmp_path / "run"
    process = _torchrun(out_dir, f"max_steps={10 * STEPS}", wait=False)  # long enough to be killed mid-run
    deadline = time.monotonic() + 240
    while not (out_dir / "checkpoint.pt").is_file():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0][-3000:]
        time.sleep(0.02)
    _kill_tree(process.pid)
    process.communicate()
    killed_at = int(_checkpoint(out_dir)["step"])
    assert 10 <= killed_at < STEPS
    _torchrun(out_dir, resume=True)  # max_steps back to STEPS: the run continues to the same end
    resumed, uninterrupted = _checkpoint(out_dir), _checkpoint(two_processes)
    assert resumed["step"] == uninterrupted["step"] == STEPS
    for key in ("model", "ema"):
        for name, value in uninterrupted[key].items():
            assert torch.equal(resumed[key][name], value), (key, name)
    for a, b in zip(resumed["optimizer"]["state"].values(), uninterrupted["optimizer"]["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in ("exp_avg", "exp_avg_sq"))
    assert _losses(out_dir) == _losses(two_processes)


def test_a_checkpoint_of_two_processes_resumes_on_one(tmp_path, two_processes):
    """The data order and the loss's draws do not depend on the number of processes, so a
    2-process checkpoint (step 10 of a 2-process run) continued by one process ends where the
    2-process run does, up to summation order."""
    out_dir = tmp_path / "run"
    _torchrun(out_dir, "max_steps=10")
    lines = []
    Trainer(_config(out_dir), resume=True, log=lines.append).train()
    assert any("resuming a run of 2 processes on 1" in line for line in lines)
    _assert_losses_close(_losses(out_dir), _losses(two_processes))
    _assert_parameters_close(_checkpoint(out_dir), _checkpoint(two_processes))


def test_batch_must_split_evenly(tmp_path):
    with pytest.raises(ConfigError, match="batch_size 64 is not divisible by the 1 processes x accumulate 3"):
        Trainer(_config(tmp_path / "run", "accumulate=3"), log=lambda line: None)


def test_single_process_without_torchrun_environment(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert join_process_group(torch.device("cpu")) == ProcessGroup(0, 1, 0, owned=False)
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE='two'"):
        join_process_group(torch.device("cpu"))
