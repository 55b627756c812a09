"""Pretrained directories (:mod:`pyro_bfn.pretrained`): round trip, EMA vs raw weights from a
checkpoint, the errors of a mismatched, absent or corrupt directory, and ``pyro-bfn export``."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from pyro_bfn import build_bfn, from_pretrained, save_pretrained
from pyro_bfn.pretrained import CONFIG_NAME, WEIGHTS_NAME, PretrainedError, export_checkpoint
from pyro_bfn.training import load_model

from test_cli import TINY, assert_one_line_error, run_cli  # tests/ is on sys.path (rootdir-relative, no __init__)

OPTIONS = {"hidden": 16, "depth": 1}


def _toy_bfn():
    torch.manual_seed(0)
    return build_bfn("toy_binary", "mlp_small", backbone_options=OPTIONS).eval()


def _outputs(bfn, seed=3):
    torch.manual_seed(seed)
    x = torch.randint(0, 2, (4, *bfn.data_shape))
    with torch.no_grad():
        loss = bfn.loss(x).total
    torch.manual_seed(seed)
    samples = bfn.sample(4, n_steps=3)
    return loss, samples


def test_round_trip_same_outputs_and_samples(tmp_path):
    bfn = _toy_bfn()
    save_pretrained(bfn, tmp_path / "toy")
    assert sorted(p.name for p in (tmp_path / "toy").iterdir()) == ["README.md", CONFIG_NAME, WEIGHTS_NAME]
    config = json.loads((tmp_path / "toy" / CONFIG_NAME).read_text())
    assert config["dataset"] == "toy_binary" and config["backbone"] == "mlp_small"
    assert config["backbone_options"] == OPTIONS and config["data_shape"] == [1, 8, 8]
    torch.manual_seed(123)  # loading leaves the caller's random state alone
    before = torch.get_rng_state()
    loaded = from_pretrained(tmp_path / "toy")
    assert torch.equal(before, torch.get_rng_state())
    for name, tensor in bfn.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    (loss_a, samples_a), (loss_b, samples_b) = _outputs(bfn), _outputs(loaded)
    assert torch.equal(samples_a, samples_b) and torch.equal(loss_a, loss_b)


def test_directory_holds_no_pickle(tmp_path):
    save_pretrained(_toy_bfn(), tmp_path / "toy")
    for path in (tmp_path / "toy").iterdir():
        assert not path.read_bytes().startswith(b"\x80"), path  # no pickle protocol header
        assert path.suffix in (".safetensors", ".json", ".md"), path


def test_recipe_needed(tmp_path):
    bfn = _toy_bfn()
    del bfn.build_recipe
    with pytest.raises(PretrainedError, match="recipe"):
        save_pretrained(bfn, tmp_path / "toy")


def test_mismatch_names_each_key(tmp_path):
    save_pretrained(_toy_bfn(), tmp_path / "toy")
    weights = load_file(str(tmp_path / "toy" / WEIGHTS_NAME))
    names = sorted(weights)
    dropped, reshaped = names[0], names[1]
    weights.pop(dropped)
    weights[reshaped] = torch.zeros(weights[reshaped].numel() + 1)
    weights["extra.weight"] = torch.zeros(2)
    save_file(weights, str(tmp_path / "toy" / WEIGHTS_NAME))
    with pytest.raises(PretrainedError) as error:
        from_pretrained(tmp_path / "toy")
    message = str(error.value)
    assert f"missing keys: {dropped}" in message
    assert "unexpected keys: extra.weight" in message
    assert f"shape mismatches: {reshaped}" in message


@pytest.mark.parametrize("damage, fragment", [
    ("no_directory", "does not exist"),
    ("no_config", "has no config.json"),
    ("bad_json", "is not valid JSON"),
    ("no_marker", "pretrained configuration"),
    ("no_weights", "has no model.safetensors"),
    ("bad_weights", "corrupt or not a safetensors file"),
    ("bad_recipe", "does not build a model"),
])
def test_absent_or_corrupt_is_one_clear_error(tmp_path, damage, fragment):
    directory = tmp_path / "toy"
    save_pretrained(_toy_bfn(), directory)
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    if damage == "no_directory":
        directory = tmp_path / "elsewhere"
    elif damage == "no_config":
        config_path.unlink()
    elif damage == "bad_json":
        config_path.write_text("{not json")
    elif damage == "no_marker":
        config_path.write_text("{}")
    elif damage == "no_weights":
        weights_path.unlink()
    elif damage == "bad_weights":
        weights_path.write_bytes(b"garbage bytes")
    elif damage == "bad_recipe":
        config = json.loads(config_path.read_text())
        config["backbone_options"] = {"no_such_option": 1}
        config_path.write_text(json.dumps(config))
    with pytest.raises(PretrainedError, match=fragment):
        from_pretrained(directory)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("run")
    status = run_cli_plain(["train", "--out-dir", out_dir, "--device", "cpu", *TINY, "--set", "dataset=toy_binary",
                            "--set", "batch_size=16", "--set", "max_steps=6", "--set", "ema_decay=0.5",
                            "--set", "progress=false", "--set", "sample_interval=0", "--set", "eval_interval=0"])
    assert status == 0
    return out_dir


def run_cli_plain(argv):
    from pyro_bfn.cli import main

    return main([str(a) for a in argv])


@pytest.mark.parametrize("ema", [True, False])
def test_export_checkpoint_ema_or_raw(run_dir, tmp_path, ema):
    checkpoint = run_dir / "checkpoint.pt"
    export_checkpoint(checkpoint, tmp_path / "out", ema=ema)
    loaded = from_pretrained(tmp_path / "out")
    expected, _, state = load_model(checkpoint, device="cpu", ema=ema)
    for name, tensor in expected.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    other = state["model" if ema else "ema"]
    assert any(not torch.equal(other[name], tensor) for name, tensor in loaded.state_dict().items())
    card = (tmp_path / "out" / "README.md").read_text()
    assert f"{state['step']} updates, {state['examples']} examples" in card
    assert ("ema" if ema else "raw") in card


def test_export_card_has_bound_with_protocol(run_dir, tmp_path):
    checkpoint = run_dir / "checkpoint.pt"
    step = int(load_model(checkpoint, device="cpu")[2]["step"])
    (run_dir / "test_bound.json").write_text(json.dumps(
        {"nats": 12.5, "nats_stderr": 0.25, "bits_per_dim": 0.28, "bits_unit": "bits/dim", "n_steps": None,
         "split": "test", "repeats": 2, "num_examples": 128, "seed": 0, "weights": "ema", "checkpoint_step": step}))
    try:
        export_checkpoint(checkpoint, tmp_path / "out")
    finally:
        (run_dir / "test_bound.json").unlink()
    card = (tmp_path / "out" / "README.md").read_text()
    assert "12.5000 ± 0.2500 nats/example" in card
    assert "test split, continuous time, 2 pass(es) over 128 examples" in card


def test_cli_export_and_its_errors(run_dir, tmp_path, capsys):
    out = tmp_path / "exported"
    status, stdout, err = run_cli(["export", "--checkpoint", run_dir / "checkpoint.pt", "--out", out], capsys)
    assert status == 0, err
    assert "wrote" in stdout and (out / WEIGHTS_NAME).is_file()
    from_pretrained(out)

    status, _, err = run_cli(["export", "--checkpoint", tmp_path / "missing.pt", "--out", out], capsys)
    assert_one_line_error(status, err, "does not exist")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    status, _, err = run_cli(["export", "--checkpoint", bad, "--out", out], capsys)
    assert_one_line_error(status, err, "corrupt")
