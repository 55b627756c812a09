"""Checkpoints: atomic writes, clear errors for corrupt, truncated or foreign files, exact
(bitwise) resume, refused resumes, and older checkpoints (renamed configuration keys)."""

import os

import pytest
import torch

from pyro_bfn.training import (
    CheckpointError,
    ConfigError,
    load_checkpoint,
    load_model,
    save_checkpoint,
)


def _parameters(module):
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


# ---------------------------------------------------------------------------- files
def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint({"value": torch.arange(3)}, path)
    original = path.read_bytes()
    real_save = torch.save

    def failing_save(obj, handle, *args, **kwargs):
        real_save(obj, handle, *args, **kwargs)
        handle.seek(handle.tell() // 2)
        handle.truncate()
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"value": torch.arange(1000)}, path)
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["ckpt.pt"]  # the temporary file was removed


def test_corrupt_truncated_or_foreign_checkpoint_is_a_clear_error(tmp_path, tiny_config, quiet):
    quiet(tiny_config(tmp_path, max_steps=2)).train()
    good = tmp_path / "run" / "checkpoint.pt"
    state = load_checkpoint(good)
    assert state["step"] == 2 and state["config"]["dataset"] == "toy_binary"

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint" * 10)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "pyro-bfn-checkpoint", "object": ConfigError("x")}, pickled)  # not weights-only safe
    cases = [
        (truncated, "corrupt, truncated"),
        (garbage, "corrupt, truncated"),
        (foreign, "not a pyro-bfn checkpoint"),
        (pickled, "corrupt, truncated"),
        (tmp_path / "missing.pt", "does not exist"),
    ]
    for path, match in cases:
        with pytest.raises(CheckpointError, match=match) as info:
            load_checkpoint(path)
        assert str(path) in str(info.value)
    with pytest.raises(CheckpointError, match="truncated.pt"):
        load_model(truncated)
    (tmp_path / "run" / "checkpoint.pt").write_bytes(truncated.read_bytes())
    with pytest.raises(CheckpointError, match="checkpoint.pt"):
        quiet(tiny_config(tmp_path, max_steps=4), resume=True)


def test_an_older_checkpoint_with_num_workers_loads_and_resumes(tmp_path, tiny_config, quiet):
    """Checkpoints written before the num_workers -> num_threads rename: the stored
    configuration's key takes its new name on loading."""
    quiet(tiny_config(tmp_path, max_steps=2, num_threads=1)).train()
    path = tmp_path / "run" / "checkpoint.pt"
    state = load_checkpoint(path)
    state["config"]["num_workers"] = state["config"].pop("num_threads")
    save_checkpoint(state, path)
    assert load_checkpoint(path)["config"]["num_threads"] == 1 and "num_workers" not in load_checkpoint(path)["config"]
    _, config, _ = load_model(path)
    assert config.num_threads == 1
    resumed = quiet(tiny_config(tmp_path, max_steps=3), resume=True)
    assert resumed.train()["step"] == 3


# ---------------------------------------------------------------------------- resume
@pytest.mark.parametrize("autocast", ["none", "bf16"])
def test_resume_is_bitwise_identical(tmp_path, autocast, tiny_config, quiet):
    """Stop after 3 of 7 updates and resume: parameters, EMA and optimizer state equal those of
    an uninterrupted run exactly. Batch 128 of 512 examples, so the run crosses an epoch; toy
    binary data is re-binarized on every batch; validation and sampling in between must not
    perturb the training stream."""
    common = dict(batch_size=128, ckpt_interval=2, eval_interval=2, eval_examples=16, sample_interval=3,
                  sample_num=4, sample_steps=3, autocast=autocast)
    straight = quiet(tiny_config(tmp_path / "a", max_steps=7, **common))
    straight.train()

    first = quiet(tiny_config(tmp_path / "b", max_steps=3, **common))
    first.train()
    resumed = quiet(tiny_config(tmp_path / "b", max_steps=7, **common), resume=True)
    assert resumed.step == 3
    resumed.train()

    for a, b in [(straight.model, resumed.model), (straight.ema_model, resumed.ema_model)]:
        pa, pb = _parameters(a), _parameters(b)
        assert pa.keys() == pb.keys()
        for name in pa:
            assert torch.equal(pa[name], pb[name]), name
    sa, sb = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    for key in sa:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(sa[key][name], sb[key][name])
    assert straight.loss_history[3:] == resumed.loss_history
    # the resumed run's log continues the first one: no step twice, in order
    steps = [int(line.split(",")[0]) for line in (tmp_path / "b" / "run" / "train_log.csv").read_text().splitlines()[1:]]
    assert steps == sorted(set(steps)) and steps[-1] == 7


def test_resume_keeps_fused_adamw_for_an_older_checkpoint(tmp_path, tiny_config, quiet):
    """A checkpoint whose optimizer state says fused=False (written before make_optimizer)
    resumes with this run's fused AdamW: load_state_dict would otherwise restore the flag."""
    first = quiet(tiny_config(tmp_path, max_steps=2))
    first.train()
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    for group in state["optimizer"]["param_groups"]:
        group["fused"] = None
    save_checkpoint(state, tmp_path / "run" / "checkpoint.pt")
    resumed = quiet(tiny_config(tmp_path, max_steps=4), resume=True)
    assert all(group["fused"] is True for group in resumed.optimizer.param_groups)
    resumed.train()
    assert resumed.step == 4


def test_resume_refuses_a_different_model_or_order(tmp_path, tiny_config, quiet):
    quiet(tiny_config(tmp_path, max_steps=2)).train()
    with pytest.raises(ConfigError, match="batch_size"):
        quiet(tiny_config(tmp_path, max_steps=4, batch_size=16), resume=True)
    with pytest.raises(ConfigError, match="already exists"):
        quiet(tiny_config(tmp_path, max_steps=4))
    with pytest.raises(CheckpointError, match="does not exist"):
        quiet(tiny_config(tmp_path / "elsewhere"), resume=True)
