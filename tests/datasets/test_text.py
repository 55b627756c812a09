"""Text loaders (:mod:`pyro_bfn.datasets.text`): text8 and the English corpus, on tiny files
written by the tests."""

import numpy as np
import pytest

from pyro_bfn import datasets as data
from pyro_bfn.datasets import text


def _alphabet_text(n, seed=0):
    rng = np.random.default_rng(seed)
    return data.decode_text(rng.integers(0, 27, size=n))


def test_text8_split_sizes(tmp_path):
    content = _alphabet_text(1000)
    path = tmp_path / "text8"
    path.write_text(content)
    parts = {split: data.load_text8(path, split) for split in ("train", "valid", "test")}
    assert [len(parts[s]) for s in ("train", "valid", "test")] == [900, 50, 50]
    assert parts["train"] + parts["valid"] + parts["test"] == content
    # 100M characters split as 90M / 5M / 5M
    assert [len(text.split_text("x" * 100, s)) for s in ("train", "valid", "test")] == [90, 5, 5]
    with pytest.raises(ValueError, match="unknown split"):
        text.split_text("x" * 100, "dev")


def test_text8_errors(tmp_path):
    with pytest.raises(data.DataNotFoundError, match="text8"):
        data.load_text8(tmp_path / "text8", "train")
    path = tmp_path / "text8"
    path.write_text("abc Def")
    with pytest.raises(data.DataIntegrityError, match="offset 4"):
        data.load_text8(path, "train")
    with pytest.raises(ValueError, match="unknown split"):
        data.load_text8(path, "dev")


def test_english_corpus_loader_and_zoo(tmp_path, monkeypatch):
    monkeypatch.setenv("PYRO_BFN_DATA", str(tmp_path))
    with pytest.raises(data.DataNotFoundError) as info:
        data.load_english_corpus("train")
    assert "pyro-bfn data build-corpus" in str(info.value)
    assert str(tmp_path / "english27.txt") in str(info.value)

    content = _alphabet_text(20_000, seed=3)
    (tmp_path / "english27.txt").write_text(content + "\n")
    parts = [data.load_english_corpus(s) for s in ("train", "valid", "test")]
    assert [len(p) for p in parts] == [18_000, 1_000, 1_000] and "".join(parts) == content
    assert data.load_english_corpus("test", path=tmp_path / "english27.txt") == parts[2]

    from pyro_bfn.zoo import get_dataset

    raw = get_dataset("english_text").load("train")
    assert tuple(raw.shape) == (18_000 // 256, 256)
    assert data.decode_text(raw[0].numpy()) == content[:256]
