"""The user's own data as a dataset: a ``.npz`` or ``.pt`` file, a Python entry point
(``module:function``) or in-memory tensors, described by a few options
(``TrainConfig.data_options``), checked once, and turned into a :class:`~pyro_bfn.zoo.DatasetSpec`.

================== ==========================================================================
option             meaning
================== ==========================================================================
``type``           ``continuous`` (real numbers in [-1, 1]), ``discretised`` (``num_bins``
                   bins: integers ``0..K-1`` or the bin centres) or ``discrete``
                   (``num_classes`` classes: integers ``0..K-1``); required
``num_classes``    K of discrete data (required for ``discrete``)
``num_bins``       K of discretised data (required for ``discretised``)
``x``              the name of the examples' array in the file (default: ``x``, or the only
                   array)
``shape``          the shape of one example, checked against the data (filled in from them)
``labels``         the name of an array of class labels (integers, shape ``(N,)``):
                   class-conditional training; for a registered dataset with labels, ``true``
``num_labels``     the number of classes of the labels (default: largest label + 1)
``context``        the name of an array of context vectors (floats, shape ``(N, D)``)
``context_dim``    D (filled in from the data)
``valid_fraction`` the fraction of the examples held out as the ``valid`` split (a seeded
                   permutation; default 0: all train). ``test`` is the same split.
``modality``       ``image`` (shape ``(C, H, W)``: grids of samples), ``text`` or ``array``
                   (any shape: samples saved as tensors); default ``image`` for a 3-axis shape
                   with 1 or 3 channels, else ``array``
================== ==========================================================================

A file holds the examples (and labels) in the form :meth:`~pyro_bfn.bfn.BFN.loss` takes,
except that discretised data may also be given as integer bin indices. An entry point is a
function of no arguments importable as ``package.module:function`` that returns a tensor or
array of examples, or a mapping of named arrays (as a ``.npz`` file holds).

>>> spec, options = load_dataset("shapes.npz", {"type": "discrete", "num_classes": 2})  # doctest: +SKIP

The resolved options (with ``shape``, ``num_labels``, ``context_dim`` filled in) rebuild the
model without the data (:func:`model_spec`): they are what a checkpoint's configuration and a
pretrained directory store.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from . import zoo
from .data_types import ContinuousData, DiscreteData, DiscretisedData

__all__ = [
    "DATA_TYPES",
    "DataError",
    "FILE_SUFFIXES",
    "IN_MEMORY",
    "OPTION_KEYS",
    "check_options",
    "fingerprint",
    "is_user_source",
    "load_dataset",
    "model_spec",
]

FILE_SUFFIXES = (".npz", ".pt")
#: the dataset name of data passed to the trainer in Python (:func:`pyro_bfn.train`)
IN_MEMORY = "in_memory"
#: data type -> the option that holds its K
DATA_TYPES = {"continuous": None, "discretised": "num_bins", "discrete": "num_classes"}
OPTION_KEYS = ("type", "num_classes", "num_bins", "x", "shape", "labels", "num_labels", "context", "context_dim",
               "valid_fraction", "modality")
_ENTRY_POINT = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


class DataError(ValueError):
    """The user's data or its description is unusable (absent file, wrong dtype or shape,
    labels of the wrong length, values outside the data type's support, an unknown option)."""


def is_user_source(name: str) -> bool:
    """Whether a dataset name is the user's data (a file, an entry point, ``in_memory``) rather
    than a registered dataset."""
    return name == IN_MEMORY or name.endswith(FILE_SUFFIXES) or bool(_ENTRY_POINT.fullmatch(name))


# ---------------------------------------------------------------------------- options
def check_options(name: str, options: dict | None) -> dict:
    """Check the data options of dataset ``name`` without reading any data.

    :raises DataError: an unknown dataset or option, or a value of the wrong kind (naming it).
    :returns: a copy of the options.
    """
    options = dict(options or {})
    if not is_user_source(name):
        try:
            spec = zoo.get_dataset(name)
        except ValueError as error:
            raise DataError(f"{error}, or a .npz/.pt file, or a module:function entry point") from None
        unknown = sorted(set(options) - {"labels"})
        if unknown or options.get("labels", False) not in (True, False):
            raise DataError(f"data_options: the registered dataset {name} takes only labels: true (class-conditional "
                            f"training), got {options}; for your own data, dataset is a .npz/.pt file, a "
                            "module:function or in_memory (examples given in Python)")
        if options.get("labels") and spec.load_context is None:
            raise DataError(f"data_options: the registered dataset {name} has no labels")
        return options
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise DataError(f"data_options: unknown option(s) {', '.join(map(repr, unknown))}; accepted: {', '.join(OPTION_KEYS)}")
    kind = options.get("type")
    if kind not in DATA_TYPES:
        raise DataError(f"data_options.type must be one of {', '.join(DATA_TYPES)} for the data {name}, got {kind!r}")
    for other_kind, key in DATA_TYPES.items():
        if key is None:
            continue
        if other_kind == kind:
            options[key] = _integer(key, options.get(key), 2, f"(the K of {kind} data; required)")
        elif key in options:
            raise DataError(f"data_options.{key} is for {other_kind} data, not {kind}")
    for key in ("num_labels", "context_dim"):
        if options.get(key) is not None:
            options[key] = _integer(key, options[key], 1)
    if options.get("shape") is not None:
        if not isinstance(options["shape"], (list, tuple)) or not options["shape"]:
            raise DataError(f"data_options.shape must be a list of positive integers, got {options['shape']!r}")
        options["shape"] = [_integer("shape entry", d, 1) for d in options["shape"]]
    for key in ("x", "labels", "context"):
        if options.get(key) is not None and not isinstance(options[key], str):
            raise DataError(f"data_options.{key} must be the name of an array, got {options[key]!r}")
    if options.get("labels") and options.get("context"):
        raise DataError("data_options.labels and data_options.context exclude each other: condition on one")
    fraction = options.get("valid_fraction", 0.0)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise DataError(f"data_options.valid_fraction must be a number in [0, 1), got {fraction!r}")
    if options.get("modality") is not None and options["modality"] not in zoo.MODALITIES:
        raise DataError(f"data_options.modality must be one of {', '.join(zoo.MODALITIES)}, got {options['modality']!r}")
    return options


def _integer(key: str, value, minimum: int, note: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DataError(f"data_options.{key} must be an integer >= {minimum} {note}".rstrip() + f", got {value!r}")
    return int(value)


def _make_data_type(kind: str, count: int | None):
    """The ``make_data_type`` of user data: the paper's defaults (``beta_1 = 9`` for K = 2 as
    for binarized MNIST, else text8's 0.5625; the discretised ``sigma_1`` of
    :class:`~pyro_bfn.data_types.DiscretisedData`; ``sigma_1 = 0.02``), keyword overrides
    from ``data_type_options``."""
    if kind == "discrete":
        def make(beta_1=9.0 if count == 2 else 0.5625, **options):
            return DiscreteData(count, beta_1, **options)
    elif kind == "discretised":
        def make(sigma_1=None, **options):
            return DiscretisedData(count, sigma_1, **options)
    else:
        def make(sigma_1=0.02, **options):
            return ContinuousData(sigma_1, **options)
    return make


def make_data_type(options: dict):
    """The ``make_data_type`` the options describe (for checking ``data_type_options``)."""
    kind = options["type"]
    return _make_data_type(kind, options.get(DATA_TYPES[kind]) if DATA_TYPES[kind] else None)


def model_spec(name: str, options: dict | None = None) -> zoo.DatasetSpec:
    """The :class:`~pyro_bfn.zoo.DatasetSpec` that builds the model of dataset ``name`` with
    the resolved ``options``, without reading data (its ``load`` says so when called).

    :raises DataError: unknown dataset, or the options of the user's data lack ``shape``.
    """
    options = check_options(name, options)
    if not is_user_source(name):
        spec = zoo.get_dataset(name)
        return _conditional(spec) if options.get("labels") else spec
    if options.get("shape") is None:
        raise DataError(f"data_options.shape is needed to build the model of {name} without reading its data")

    def no_data(split):
        raise DataError(f"the data of {name} are not loaded here (a model rebuilt from its options)")

    return _spec(name, options, no_data, None)


def _conditional(spec):
    import dataclasses

    return dataclasses.replace(spec, conditional=True)


def _spec(name, options, load, load_context) -> zoo.DatasetSpec:
    shape = tuple(options["shape"])
    modality = options.get("modality") or ("image" if len(shape) == 3 and shape[0] in (1, 3) else "array")
    kind = options["type"]
    count = options.get(DATA_TYPES[kind]) if DATA_TYPES[kind] else None
    conditional = options.get("num_labels") is not None or options.get("context_dim") is not None
    try:
        return zoo.DatasetSpec(
            name=name, data_shape=shape, modality=modality, make_data_type=_make_data_type(kind, count),
            load=load, prepare=lambda raw, generator=None: raw, load_context=load_context,
            num_labels=options.get("num_labels"), context_dim=options.get("context_dim"), conditional=conditional,
            description=f"the user's {kind} data" + (f", K = {count}" if count else ""), source=dict(options),
        )
    except ValueError as error:
        raise DataError(f"data of {name}: {error}") from None


# ---------------------------------------------------------------------------- reading
def read_arrays(name: str) -> dict:
    """The named arrays of a ``.npz``/``.pt`` file or an entry point's result.

    :raises DataError: an absent or unreadable file, a failing entry point, or contents that
        are not arrays.
    """
    if _ENTRY_POINT.fullmatch(name) and not name.endswith(FILE_SUFFIXES):
        return _call_entry_point(name)
    path = Path(name)
    if not path.is_file():
        raise DataError(f"data file {name} does not exist")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
            raise DataError(f"data file {name} is not a readable .npz archive of numeric arrays ({error})") from None
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for a bad file
        raise DataError(f"data file {name} is not a readable .pt file of tensors "
                        f"({str(error).splitlines()[0][:160]})") from None
    return _as_arrays(loaded, f"data file {name}")


def _call_entry_point(name: str) -> dict:
    module_name, function_name = name.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise DataError(f"cannot import {module_name} of the entry point {name}: {error}") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise DataError(f"entry point {name}: {module_name} has no function {function_name}")
    return _as_arrays(function(), f"entry point {name}")


def _as_arrays(value, where: str) -> dict:
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return {"x": value}
    if isinstance(value, dict) and value and all(isinstance(v, (torch.Tensor, np.ndarray)) for v in value.values()):
        return dict(value)
    raise DataError(f"{where} must hold a tensor or array of examples or a mapping of names to them, "
                    f"got {type(value).__name__}")


def _array(arrays: dict, key: str | None, role: str, name: str) -> torch.Tensor:
    if key is None:
        if "x" in arrays or len(arrays) != 1:
            key = "x"
        else:
            key = next(iter(arrays))
    if key not in arrays:
        raise DataError(f"{name} has no array {key!r} ({role}); it has: {', '.join(map(str, arrays))}"
                        + ("; name the examples' array with data_options.x" if role == "examples" else ""))
    value = arrays[key]
    try:
        return torch.as_tensor(np.asarray(value)) if isinstance(value, np.ndarray) else value.detach().cpu()
    except TypeError as error:
        raise DataError(f"array {key!r} of {name} is not numeric ({error})") from None


def as_data(x: torch.Tensor, data_type, name: str) -> torch.Tensor:
    """The examples ``x`` as BFN data of ``data_type`` (discretised integer bins mapped to the
    bin centres), their dtype and values checked.

    :raises DataError: naming the dtype or the values outside the support."""
    kind = type(data_type).__name__
    if x.dtype == torch.bool:
        x = x.long()
    integral = not (x.is_floating_point() or x.is_complex())
    if isinstance(data_type, DiscreteData):
        if not integral:
            raise DataError(f"discrete data of {name} must be integer class indices 0..{data_type.num_classes - 1}, "
                            f"got dtype {x.dtype} (convert integral values with .long())")
        _in_range(x, data_type.num_classes, "class indices", name)
        return x.long()
    if isinstance(data_type, DiscretisedData) and integral:
        _in_range(x, data_type.num_bins, "bin indices", name)
        return data_type.from_integers(x)
    if integral and isinstance(data_type, ContinuousData) and data_type.num_bins is None:
        x = x.to(torch.float32)
    if not x.is_floating_point():
        raise DataError(f"{kind} data of {name} must be real numbers, got dtype {x.dtype}")
    x = x.to(torch.float32) if x.dtype == torch.float64 else x
    if not torch.isfinite(x).all():
        raise DataError(f"data of {name} contain NaN or infinite values")
    clip = getattr(data_type, "clip", (-1.0, 1.0))
    if clip is not None and (x.min() < clip[0] or x.max() > clip[1]):
        raise DataError(f"{kind} data of {name} must lie in [{clip[0]:g}, {clip[1]:g}], found values from "
                        f"{x.min().item():.4g} to {x.max().item():.4g}; rescale them, e.g. 2 (x - min) / (max - min) - 1")
    try:
        data_type.check_data(x)
    except ValueError as error:
        raise DataError(f"data of {name}: {error}") from None
    return x


def _in_range(x, count, what, name):
    if x.numel() and (x.min() < 0 or x.max() >= count):
        raise DataError(f"data of {name} must hold {what} 0..{count - 1}, found values from {x.min().item()} "
                        f"to {x.max().item()}")


def load_dataset(name: str, options: dict | None = None, data_type_options: dict | None = None,
                 arrays: dict | None = None) -> tuple:
    """Read, check and split the data of dataset ``name``.

    :param str name: a registered dataset (returned as it is, conditional with
        ``labels: true``), a ``.npz``/``.pt`` file, a ``module:function`` entry point, or
        :data:`IN_MEMORY` with ``arrays``.
    :param dict options: the data options (module docstring).
    :param dict data_type_options: the data type's options (its support is checked against
        the data, e.g. ``clip``).
    :param dict arrays: the named arrays themselves instead of reading ``name``.
    :returns: ``(spec, options)``: a :class:`~pyro_bfn.zoo.DatasetSpec` whose ``load(split)``
        gives the checked BFN data of ``"train"``, ``"valid"`` (= ``"test"``), and
        ``load_context`` their labels or context vectors; the options with ``shape``,
        ``num_labels``/``context_dim`` filled in.
    :raises DataError: naming the problem.
    """
    options = check_options(name, options)
    if not is_user_source(name):
        return model_spec(name, options), options
    if arrays is None:
        if name == IN_MEMORY:
            raise DataError("the dataset in_memory is data given in Python (pyro_bfn.train(..., data=tensor))")
        arrays = read_arrays(name)
    x = _array(arrays, options.get("x"), "examples", name)
    if x.dim() < 2 or x.shape[0] == 0:
        raise DataError(f"the examples of {name} must have shape (N, *example_shape) with N >= 1, got {tuple(x.shape)}")
    if options.get("shape") is not None and list(x.shape[1:]) != options["shape"]:
        raise DataError(f"the examples of {name} have shape {tuple(x.shape[1:])}, data_options.shape says {tuple(options['shape'])}")
    options["shape"] = list(x.shape[1:])
    try:
        data_type = make_data_type(options)(**(data_type_options or {}))
    except (TypeError, ValueError) as error:
        raise DataError(f"data_type_options: {error}") from None
    x = as_data(x, data_type, name)
    context = None
    if options.get("labels"):
        context = _labels(_array(arrays, options["labels"], "labels", name), x.shape[0], options, name)
    elif options.get("context"):
        context = _context(_array(arrays, options["context"], "context", name), x.shape[0], options, name)
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))
    held_out = int(round(options.get("valid_fraction", 0.0) * x.shape[0]))
    splits = {"train": order[held_out:], "valid": order[:held_out], "test": order[:held_out]}
    if held_out == 0:
        splits = {"train": torch.arange(x.shape[0]), "valid": order[:0], "test": order[:0]}
    if splits["train"].numel() == 0:
        raise DataError(f"data_options.valid_fraction {options['valid_fraction']} leaves no training examples of {name}")

    def load(split):
        return x[splits[_split(split)]]

    def load_context(split):
        return context[splits[_split(split)]]

    return _spec(name, options, load, None if context is None else load_context), options


def _split(split):
    if split not in ("train", "valid", "test"):
        raise DataError(f"split must be train, valid or test, got {split!r}")
    return split


def _labels(labels, count, options, name):
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool or labels.dim() != 1:
        raise DataError(f"the labels of {name} must be integers of shape (N,), got dtype {labels.dtype}, "
                        f"shape {tuple(labels.shape)}")
    if labels.shape[0] != count:
        raise DataError(f"{name} has {labels.shape[0]} labels for {count} examples")
    if labels.numel() and labels.min() < 0:
        raise DataError(f"the labels of {name} must be class indices >= 0, found {labels.min().item()}")
    largest = int(labels.max()) if labels.numel() else 0
    if options.get("num_labels") is None:
        options["num_labels"] = largest + 1
    elif largest >= options["num_labels"]:
        raise DataError(f"the labels of {name} go up to {largest}, data_options.num_labels is {options['num_labels']}")
    return labels.long()


def _context(context, count, options, name):
    if not context.is_floating_point() or context.dim() != 2:
        raise DataError(f"the context of {name} must be float vectors of shape (N, D), got dtype {context.dtype}, "
                        f"shape {tuple(context.shape)}")
    if context.shape[0] != count:
        raise DataError(f"{name} has {context.shape[0]} context vectors for {count} examples")
    if not torch.isfinite(context).all():
        raise DataError(f"the context of {name} contains NaN or infinite values")
    if options.get("context_dim") is not None and context.shape[1] != options["context_dim"]:
        raise DataError(f"the context vectors of {name} have length {context.shape[1]}, data_options.context_dim says "
                        f"{options['context_dim']}")
    options["context_dim"] = int(context.shape[1])
    return context.float()


def fingerprint(*tensors) -> str:
    """A SHA-256 of the tensors' shapes, dtypes and bytes (``None`` entries skipped): whether
    a resumed run has the same data."""
    digest = hashlib.sha256()
    for tensor in tensors:
        if tensor is None:
            continue
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{tuple(tensor.shape)} {tensor.dtype}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()
