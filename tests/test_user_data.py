"""The user's own data (:mod:`pyro_bfn.user_data`): files, entry points and arrays as datasets,
their options, and one clear error for every bad input."""

import sys

import numpy as np
import pytest
import torch

from pyro_bfn import zoo
from pyro_bfn.data_types import DiscretisedData
from pyro_bfn.user_data import DataError, check_options, is_user_source, load_dataset, model_spec

DISCRETE = {"type": "discrete", "num_classes": 3}


def _npz(tmp_path, name=None, **arrays):
    path = tmp_path / (name or f"data{len(list(tmp_path.glob('*.npz')))}.npz")
    np.savez(path, **arrays)
    return str(path)


def test_names_of_the_users_data():
    assert is_user_source("a/b.npz") and is_user_source("b.pt") and is_user_source("pkg.mod:load")
    assert is_user_source("in_memory")
    assert not is_user_source("toy_binary") and not is_user_source("mnist")


def test_a_discrete_file_with_labels(tmp_path):
    x = np.random.default_rng(0).integers(0, 3, size=(10, 2, 5))
    labels = np.arange(10) % 4
    spec, options = load_dataset(_npz(tmp_path, x=x, y=labels), dict(DISCRETE, labels="y", valid_fraction=0.2))
    assert options["shape"] == [2, 5] and options["num_labels"] == 4
    assert spec.data_shape == (2, 5) and spec.modality == "array" and spec.conditional and spec.num_labels == 4
    train, valid = spec.load("train"), spec.load("valid")
    assert train.shape == (8, 2, 5) and valid.shape == (2, 2, 5)
    assert torch.equal(spec.load("test"), valid) and train.dtype == torch.long
    # the two splits are a partition of the examples, each with its own labels
    rows = {tuple(r.flatten().tolist()) + (int(c),) for split in ("train", "valid")
            for r, c in zip(spec.load(split), spec.load_context(split))}
    assert rows == {tuple(r.flatten().tolist()) + (int(c),) for r, c in zip(x, labels)}
    # the resolved options rebuild the model without the file
    rebuilt = model_spec(spec.name, options)
    assert rebuilt.data_shape == (2, 5) and rebuilt.num_labels == 4
    bfn = zoo.build_bfn(rebuilt, "mlp_small", backbone_options={"hidden": 8, "depth": 1})
    assert bfn.build_recipe["data_options"] == options
    with pytest.raises(DataError, match="not loaded here"):
        rebuilt.load("train")


def test_discretised_bins_as_integers_or_centres_and_images(tmp_path):
    levels = torch.arange(16).reshape(1, 1, 4, 4).repeat(3, 1, 1, 1)
    centres = DiscretisedData(16).from_integers(levels)
    options = {"type": "discretised", "num_bins": 16}
    for given in (levels.numpy(), centres.numpy()):
        spec, _ = load_dataset(_npz(tmp_path, x=given), options)
        assert torch.equal(spec.load("train"), centres) and spec.modality == "image"
    with pytest.raises(DataError, match="bin centres"):
        load_dataset(_npz(tmp_path, x=centres.numpy() + 0.01), options)


def test_a_pt_file_and_an_entry_point(tmp_path, monkeypatch):
    x = torch.rand(6, 3) * 2 - 1
    torch.save({"x": x, "c": torch.randn(6, 2)}, tmp_path / "d.pt")
    spec, options = load_dataset(str(tmp_path / "d.pt"), {"type": "continuous", "context": "c"})
    assert torch.equal(spec.load("train"), x) and options["context_dim"] == 2 and spec.context_dim == 2
    (tmp_path / "my_points.py").write_text("import torch\ndef load():\n    return torch.linspace(-1, 1, 8).reshape(4, 2)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec, options = load_dataset("my_points:load", {"type": "continuous"})
    assert spec.load("train").shape == (4, 2) and options["shape"] == [2]
    sys.modules.pop("my_points", None)


@pytest.mark.parametrize("options, message", [
    ({}, "data_options.type must be one of continuous, discretised, discrete"),
    ({"type": "discrete"}, "data_options.num_classes must be an integer >= 2"),
    ({"type": "discrete", "num_classes": 2, "num_bins": 4}, "data_options.num_bins is for discretised data"),
    ({"type": "continuous", "lables": "y"}, "unknown option(s) 'lables'"),
    ({"type": "continuous", "labels": "y", "context": "c"}, "exclude each other"),
    ({"type": "continuous", "valid_fraction": 1.0}, "valid_fraction must be a number in [0, 1)"),
    ({"type": "continuous", "shape": [0]}, "shape entry must be an integer >= 1"),
    ({"type": "continuous", "modality": "audio"}, "modality must be one of"),
])
def test_bad_options_are_named(options, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        check_options("data.npz", options)


def test_registered_datasets_take_only_labels():
    assert check_options("binarized_mnist", {"labels": True}) == {"labels": True}
    assert model_spec("binarized_mnist", {"labels": True}).conditional
    with pytest.raises(DataError, match="takes only labels: true"):
        check_options("toy_binary", {"type": "discrete"})
    with pytest.raises(DataError, match="toy_binary has no labels"):
        check_options("toy_binary", {"labels": True})
    with pytest.raises(DataError, match="unknown dataset 'toy_binry'"):
        check_options("toy_binry", {})


def test_bad_data_are_one_clear_error(tmp_path):
    ints = np.zeros((4, 3), dtype=np.int64)
    cases = [
        (str(tmp_path / "absent.npz"), DISCRETE, "data file .*absent.npz does not exist"),
        (_npz(tmp_path, a=ints, b=ints), DISCRETE, "has no array 'x' .*it has: a, b; name the examples' array"),
        (_npz(tmp_path, x=ints.astype(np.float32)), DISCRETE, "must be integer class indices 0..2, got dtype torch.float32"),
        (_npz(tmp_path, x=ints + 3), DISCRETE, "must hold class indices 0..2, found values from 3 to 3"),
        (_npz(tmp_path, x=ints - 1), {"type": "discretised", "num_bins": 4}, "bin indices 0..3, found values from -1"),
        (_npz(tmp_path, x=np.full((4, 3), 2.0)), {"type": "continuous"}, r"must lie in \[-1, 1\], found values from 2"),
        (_npz(tmp_path, x=np.full((4, 3), np.nan)), {"type": "continuous"}, "NaN or infinite"),
        (_npz(tmp_path, x=ints, y=np.arange(3)), dict(DISCRETE, labels="y"), "has 3 labels for 4 examples"),
        (_npz(tmp_path, x=ints, y=np.ones(4)), dict(DISCRETE, labels="y"), "labels .* must be integers of shape"),
        (_npz(tmp_path, x=ints, y=np.arange(4)), dict(DISCRETE, labels="y", num_labels=2), "go up to 3, data_options.num_labels is 2"),
        (_npz(tmp_path, x=ints), dict(DISCRETE, shape=[4]), r"have shape \(3,\), data_options.shape says \(4,\)"),
        (_npz(tmp_path, x=np.zeros(4, dtype=np.int64)), DISCRETE, r"shape \(N, \*example_shape\)"),
        ("no_such_module_xyz:load", DISCRETE, "cannot import no_such_module_xyz"),
    ]
    (tmp_path / "bad.npz").write_text("not a zip")
    cases.append((str(tmp_path / "bad.npz"), DISCRETE, "not a readable .npz"))
    (tmp_path / "bad.pt").write_text("not a torch file")
    cases.append((str(tmp_path / "bad.pt"), DISCRETE, "not a readable .pt file"))
    for name, options, message in cases:
        with pytest.raises(DataError, match=message):
            load_dataset(name, options)


def test_model_spec_needs_the_shape():
    with pytest.raises(DataError, match="data_options.shape is needed"):
        model_spec("data.npz", DISCRETE)
