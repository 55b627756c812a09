"""The trainer's data: the global batch of every update, the same on every rank.

Three sources, one interface (:class:`TrainingData`: ``batch(step, generator)`` gives the
examples and their context of update ``step``):

=================== ======================================================================
:class:`TensorData` in-memory examples (a registered dataset, a ``.npz``/``.pt`` file, an
                    entry point, tensors): epoch ``e`` is a permutation drawn from ``(seed,
                    e)`` alone, so the batch of a step is a function of the step and a
                    resumed run continues it exactly (the data's fingerprint is checked)
:class:`MapData`    a map-style :class:`torch.utils.data.Dataset` (``__len__`` and
                    ``__getitem__``): the same seeded permutations, its items collated with
                    :func:`torch.utils.data.default_collate`; exact on resume when
                    ``dataset[i]`` is deterministic
:class:`StreamData` any other iterable of batches (a :class:`~torch.utils.data.DataLoader`,
                    a generator): its batches in order, iterated again at its end; on resume
                    it is iterated afresh and the batches of the steps already taken are
                    skipped, which continues the run exactly only when a fresh iteration
                    yields the same batches (a ``DataLoader`` built with a seeded
                    ``generator``, a deterministic generator function), and a one-shot
                    iterator cannot be resumed
=================== ======================================================================

An item of a Dataset or a batch of an iterable is a tensor of examples, or a pair
``(examples, labels)`` (integers) / ``(examples, context)`` (floats); a list is an iterable
of batches, a :class:`~torch.utils.data.Dataset` one of examples; its values are checked
against the model's data type as it comes (:func:`pyro_bfn.user_data.as_data`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import torch

from .. import user_data
from ..data_types import ContinuousData, DiscreteData, DiscretisedData
from ..models import ContextEmbedding
from .checkpoint import mix_seed
from .config import ConfigError

__all__ = ["MapData", "StreamData", "TensorData", "TrainingData", "given_data_config", "load_training_data", "model_data_options", "options_from_model"]

logger = logging.getLogger(__name__)


class TrainingData:
    """The interface: :meth:`batch`, :meth:`head`, :attr:`fingerprint`, :attr:`num_examples`."""

    #: the number of training examples, or ``None`` for an iterable
    num_examples: int | None = None

    def batch(self, step: int, generator: torch.Generator) -> tuple:
        """``(x, context)`` of update ``step`` (0-based): BFN data of shape
        ``(batch_size, *data_shape)`` and labels ``(batch_size,)``, vectors
        ``(batch_size, D)`` or ``None``; the preparation of raw data draws from ``generator``."""
        raise NotImplementedError

    def head(self, count: int) -> torch.Tensor:
        """Up to ``count`` prepared training examples (for timing), without touching any
        generator of the run."""
        raise NotImplementedError

    def fingerprint(self) -> str | None:
        """A digest of the data a resumed run must have again, or ``None`` when unknown."""
        return None


class _Permutations:
    """Epoch ``e``: a permutation of ``n`` from the generator seeded by ``(seed, 0, e)``; the
    batch of update ``step`` is its ``step % batches_per_epoch``-th slice (an incomplete final
    batch is dropped)."""

    def __init__(self, count: int, batch_size: int, seed: int):
        self.count, self.batch_size, self.seed = count, batch_size, seed
        self._cache = (None, None)

    @property
    def batches_per_epoch(self) -> int:
        return self.count // self.batch_size

    def indices(self, step: int) -> torch.Tensor:
        epoch, position = divmod(step, self.batches_per_epoch)
        cached_epoch, permutation = self._cache
        if cached_epoch != epoch:
            generator = torch.Generator().manual_seed(mix_seed(self.seed, 0, epoch))
            permutation = torch.randperm(self.count, generator=generator)
            self._cache = (epoch, permutation)
        return permutation[position * self.batch_size : (position + 1) * self.batch_size]


class TensorData(TrainingData):
    """In-memory raw examples ``raw`` (shape ``(N, *data_shape)``) with ``prepare(raw_batch,
    generator)`` (e.g. MNIST's dynamic binarization) and an optional aligned ``context``."""

    def __init__(self, raw: torch.Tensor, context, prepare, batch_size: int, seed: int, name: str):
        if raw.shape[0] < batch_size:
            raise ConfigError(f"batch_size {batch_size} exceeds the {raw.shape[0]} training examples of {name}")
        self.raw, self.context, self.prepare = raw, context, prepare
        self.num_examples = raw.shape[0]
        self.order = _Permutations(raw.shape[0], batch_size, seed)

    def batch(self, step, generator):
        indices = self.order.indices(step)
        context = None if self.context is None else self.context[indices]
        return self.prepare(self.raw[indices], generator), context

    def head(self, count):
        return self.prepare(self.raw[:count], torch.Generator().manual_seed(0))

    def fingerprint(self):
        return user_data.fingerprint(self.raw, self.context)


class _Checked:
    """Splits an item or batch into examples and context and checks them against the model
    and the dataset spec (labels in ``0..num_labels-1``, vectors of length ``context_dim``)."""

    def __init__(self, model, spec, name: str):
        self.model, self.spec, self.name = model, spec, name

    def __call__(self, item, what: str) -> tuple:
        x, context = _split_item(item, what)
        if tuple(x.shape[1:]) != tuple(self.model.data_shape):
            raise user_data.DataError(f"{what} has examples of shape {tuple(x.shape[1:])}, the model's data shape "
                                      f"is {tuple(self.model.data_shape)}")
        x = user_data.as_data(x, self.model.data_type, self.name)
        if (context is not None) != self.spec.conditional:
            raise user_data.DataError(f"{what} has {'a' if context is not None else 'no'} label or context, but the "
                                      f"run is {'' if self.spec.conditional else 'not '}conditional")
        if context is None:
            return x, None
        if context.shape[0] != x.shape[0]:
            raise user_data.DataError(f"{what} has {context.shape[0]} labels or context vectors for {x.shape[0]} examples")
        if self.spec.num_labels is not None:
            if context.is_floating_point() or context.dim() != 1:
                raise user_data.DataError(f"the labels of {what} must be integers of shape (batch,), got dtype "
                                          f"{context.dtype}, shape {tuple(context.shape)}")
            if context.numel() and (context.min() < 0 or context.max() >= self.spec.num_labels):
                raise user_data.DataError(f"the labels of {what} must lie in 0..{self.spec.num_labels - 1}, found "
                                          f"{context.min().item()} to {context.max().item()}")
            return x, context.long()
        if not context.is_floating_point() or tuple(context.shape[1:]) != (self.spec.context_dim,):
            raise user_data.DataError(f"the context of {what} must be float vectors of shape (batch, "
                                      f"{self.spec.context_dim}), got dtype {context.dtype}, shape {tuple(context.shape)}")
        return x, context.float()


def _split_item(item, what: str) -> tuple:
    if isinstance(item, (tuple, list)) and len(item) in (1, 2):
        x, context = (item[0], item[1] if len(item) == 2 else None)
    elif isinstance(item, dict):
        raise user_data.DataError(f"{what} is a mapping; give (examples,) or (examples, labels) tuples or tensors")
    else:
        x, context = item, None
    x = torch.as_tensor(x) if isinstance(x, np.ndarray) else x
    context = torch.as_tensor(context) if isinstance(context, (np.ndarray, int, float)) else context
    if not isinstance(x, torch.Tensor) or (context is not None and not isinstance(context, torch.Tensor)):
        raise user_data.DataError(f"{what} must be a tensor of examples or an (examples, labels) pair, "
                                  f"got {type(item).__name__}")
    return x, context


class MapData(TrainingData):
    """A map-style dataset of single examples (or ``(example, label)`` pairs) in the seeded
    permutation order, collated into batches."""

    def __init__(self, dataset, batch_size: int, seed: int, checked: _Checked):
        self.dataset, self.checked = dataset, checked
        self.num_examples = len(dataset)
        if self.num_examples < batch_size:
            raise ConfigError(f"batch_size {batch_size} exceeds the {self.num_examples} examples of the Dataset")
        self.order = _Permutations(self.num_examples, batch_size, seed)

    def _collate(self, indices) -> tuple:
        from torch.utils.data import default_collate

        return self.checked(default_collate([self.dataset[int(i)] for i in indices]), "a batch of the Dataset")

    def batch(self, step, generator):
        return self._collate(self.order.indices(step))

    def head(self, count):
        return self._collate(range(min(count, self.num_examples)))[0]


class StreamData(TrainingData):
    """An iterable of batches of ``batch_size`` examples, in order; a smaller batch (the end
    of a ``DataLoader`` without ``drop_last``) is skipped; iterated again at its end."""

    def __init__(self, iterable, batch_size: int, checked: _Checked):
        self.iterable, self.batch_size, self.checked = iterable, batch_size, checked
        self._iterator = iter(iterable)
        self._first = self._next_batch(allow_restart=False)
        self._pending = [self._first]
        self.position = 0  # the step of the next batch

    def _next_batch(self, allow_restart: bool = True):
        for attempt in range(2):
            for item in self._iterator:
                x, context = self.checked(item, "a batch of the iterable")
                if x.shape[0] == self.batch_size:
                    return x, context
                if x.shape[0] > self.batch_size:
                    raise user_data.DataError(f"the iterable yields batches of {x.shape[0]} examples, batch_size is "
                                              f"{self.batch_size}: make them equal")
            if not allow_restart or attempt:
                break
            self._iterator = iter(self.iterable)
            if self._iterator is self.iterable:
                raise user_data.DataError("the iterable is a one-shot iterator and is exhausted")
        raise user_data.DataError(f"the iterable yields no batch of batch_size {self.batch_size} examples")

    def batch(self, step, generator):
        if step < self.position:
            raise ValueError(f"the batches of an iterable come in order: step {step} was asked after {self.position}")
        if step > self.position:  # a resumed run: skip the batches of the steps taken
            logger.warning("resuming on an iterable of batches: its first %d batches are skipped (the run continues "
                           "exactly only if the iterable yields the same batches in a new process)", step - self.position)
            for _ in range(step - self.position):
                self._take()
        return self._take()

    def _take(self):
        self.position += 1
        return self._pending.pop(0) if self._pending else self._next_batch()

    def head(self, count):
        return self._first[0][:count]


def options_from_model(model) -> dict:
    """The data options of a BFN's data type and shape (the ``type`` and its K, ``shape``)."""
    data_type = model.data_type
    if isinstance(data_type, DiscreteData):
        options = {"type": "discrete", "num_classes": data_type.num_classes}
    elif isinstance(data_type, DiscretisedData):
        options = {"type": "discretised", "num_bins": data_type.num_bins}
    elif isinstance(data_type, ContinuousData):
        options = {"type": "continuous"}
    else:
        raise ConfigError(f"cannot train on the data type {type(data_type).__name__} with data given in Python")
    return {**options, "shape": list(model.data_shape)}


def model_data_options(options: dict, model) -> dict:
    """The data options with the data type and shape of a BFN given in Python.

    :raises user_data.DataError: ``type`` contradicts the model's data type."""
    derived = options_from_model(model)
    if options.get("type", derived["type"]) != derived["type"]:
        raise user_data.DataError(f"data_options.type {options['type']!r} is not the model's data type ({derived['type']})")
    return {**options, **derived}


def given_data_config(config, model=None):
    """``config`` for data given in Python: ``dataset`` is ``in_memory`` and, with a model,
    the data options say its data type and shape (:func:`model_data_options`)."""
    options = model_data_options(config.data_options, model) if model is not None else dict(config.data_options)
    return config.replace(dataset=user_data.IN_MEMORY, data_options=options)


def load_training_data(config, data=None, labels=None, context=None, model=None) -> tuple:
    """The dataset and data source of a run.

    :param TrainConfig config: the run (its ``dataset`` and ``data`` options when ``data`` is
        ``None``; ``dataset`` must then be a registered name, a file or an entry point).
    :param data: examples given in Python: a tensor or array ``(N, *data_shape)``, a
        map-style :class:`~torch.utils.data.Dataset`, or an iterable of batches.
    :param labels: class labels ``(N,)`` of tensor ``data``; :param context: or context
        vectors ``(N, D)``.
    :param model: the BFN when given in Python (its data type then describes the data).
    :returns: ``(spec, options)``: the :class:`~pyro_bfn.zoo.DatasetSpec` (its ``train``
        split for :func:`in_memory`, its ``valid`` split for validation; only the model's
        description for a Dataset or an iterable, see :func:`stream_data`) and the resolved
        data options.
    :raises user_data.DataError: naming the problem with the data.
    """
    if data is None:
        if labels is not None or context is not None:
            raise user_data.DataError("labels= and context= go with data= (tensors given in Python); for a file or "
                                      "entry point, name their arrays with data_options.labels / data_options.context")
        if config.dataset == user_data.IN_MEMORY:
            raise user_data.DataError("dataset in_memory needs the data given in Python: Trainer(config, data=tensor) "
                                      "or pyro_bfn.train(..., data=tensor)")
        spec, options = user_data.load_dataset(config.dataset, config.data_options, config.data_type_options)
        return spec, options
    if labels is not None and context is not None:
        raise user_data.DataError("give labels= or context=, not both")
    options = dict(config.data_options)
    if isinstance(data, (torch.Tensor, np.ndarray)):
        arrays = {"x": torch.as_tensor(data)}
        for key, value in (("labels", labels), ("context", context)):
            if value is not None:
                if not isinstance(value, (torch.Tensor, np.ndarray)):
                    raise user_data.DataError(f"{key}= must be a tensor or array, got {type(value).__name__}")
                arrays[key], options[key] = torch.as_tensor(value), key
        spec, options = user_data.load_dataset(user_data.IN_MEMORY, options, config.data_type_options, arrays=arrays)
        return spec, options
    if labels is not None or context is not None:
        raise user_data.DataError("labels= and context= go with tensor data; a Dataset or an iterable yields "
                                  "(examples, labels) pairs itself")
    if not isinstance(data, Iterable) and not hasattr(data, "__getitem__"):
        raise user_data.DataError(f"data must be a tensor, an array, a Dataset or an iterable of batches, "
                                  f"got {type(data).__name__}")
    x, item_context = _split_item(_first_item(data), "the first item of data")
    if _is_map_style(data):
        x, item_context = x.unsqueeze(0), (None if item_context is None else torch.as_tensor(item_context).reshape(1, -1))
    if options.get("shape") is None:
        options["shape"] = list(x.shape[1:])
    if item_context is not None:
        if item_context.is_floating_point():
            options.setdefault("context_dim", int(item_context.reshape(x.shape[0], -1).shape[1]))
        elif options.get("num_labels") is None and model is not None:
            options["num_labels"] = _model_num_labels(model)
        elif options.get("num_labels") is None:
            raise user_data.DataError("labels from a Dataset or an iterable need data_options.num_labels (the number of "
                                      "classes): they are not all read in advance")
    spec = user_data.model_spec(user_data.IN_MEMORY, options)
    return spec, spec.source


def _is_map_style(data) -> bool:
    """A map-style :class:`torch.utils.data.Dataset` (a list or any other iterable holds batches)."""
    from torch.utils.data import Dataset, IterableDataset

    return isinstance(data, Dataset) and not isinstance(data, IterableDataset)


def _model_num_labels(model) -> int:
    """The number of classes a BFN's network embeds (its context embedding's ``num_classes``)."""
    counts = {module.num_classes for module in model.modules()
              if isinstance(module, ContextEmbedding) and module.num_classes}
    if len(counts) != 1:
        raise user_data.DataError("the data hold labels, but the model's network embeds no class labels (build it "
                                  "with num_classes) or data_options.num_labels is needed")
    return counts.pop()


def _first_item(data):
    if _is_map_style(data):
        if len(data) == 0:
            raise user_data.DataError("the Dataset is empty")
        return data[0]
    if iter(data) is data:
        raise user_data.DataError("data is a one-shot iterator (a generator object): give an iterable that can be "
                                  "iterated again, e.g. a DataLoader or a list of batches, so that its first batch "
                                  "can be read to size the model and a resumed run can iterate it afresh")
    try:
        return next(iter(data))
    except StopIteration:
        raise user_data.DataError("the iterable yields no batch") from None


def stream_data(data, model, spec, batch_size: int, seed: int) -> TrainingData:
    """The :class:`MapData` or :class:`StreamData` of a Dataset or an iterable given in Python."""
    checked = _Checked(model, spec, "the data given in Python")
    if _is_map_style(data):
        return MapData(data, batch_size, seed, checked)
    return StreamData(data, batch_size, checked)


def in_memory(spec, batch_size: int, seed: int) -> TensorData:
    """The :class:`TensorData` of a dataset spec's ``train`` split."""
    raw = spec.load("train")  # raw data (N, *data_shape), loaded once
    context = spec.load_context("train") if spec.conditional else None
    return TensorData(raw, context, spec.prepare, batch_size, seed, spec.name)

