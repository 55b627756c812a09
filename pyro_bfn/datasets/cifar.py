"""The 32x32 colour image datasets: CIFAR-10 and the natural-image patches standing in for it.

* **CIFAR-10** -- :func:`load_cifar10`, the standard python pickle batches at a path the user
  gives (no registry ships CIFAR-10).
* **Natural-image patches** -- :func:`load_natural_image_patches`, 32x32 RGB patches of the
  photographs shipped in scikit-image and scikit-learn (a CIFAR-10 stand-in).

Both return ``uint8`` images of shape ``(N, 3, 32, 32)`` (channels first) and raise the errors
of :mod:`pyro_bfn.datasets.files`.
"""

from __future__ import annotations

import functools
import os
import pickle
from pathlib import Path

import numpy as np

from .files import (
    SPLITS_WITH_FULL,
    DataIntegrityError,
    DataNotFoundError,
    ForbiddenPickleError,
    check_split,
    restricted_unpickle,
)

__all__ = [
    "BENCHMARKS_PIP_COMMAND",
    "NATURAL_IMAGE_SPLITS",
    "PATCH_SIZE",
    "PATCH_STRIDE",
    "load_cifar10",
    "load_natural_image_patches",
]


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
    check_split(split, tuple(_CIFAR_BATCHES))
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
    check_split(split, SPLITS_WITH_FULL)
    names = NATURAL_IMAGE_SPLITS["train"] + NATURAL_IMAGE_SPLITS["valid"] if split == "train_full" else NATURAL_IMAGE_SPLITS[split]
    return np.concatenate([_photo_patches(name) for name in names])

