""":func:`train`: a training run in one call, on a configuration or on a BFN and data given in
Python; the :class:`~pyro_bfn.training.Trainer` and ``pyro-bfn train`` underneath, so the
run writes the same checkpoints, logs, EMA and summary and resumes the same way."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .. import user_data
from ..bfn import BFN
from .config import ConfigError, TrainConfig
from .data import model_data_options
from .trainer import Trainer

__all__ = ["TrainResult", "train"]


@dataclass
class TrainResult:
    """What :func:`train` returns.

    :ivar BFN model: the exponential moving average of the weights, in eval mode: the model to
        sample from, evaluate and save (:func:`pyro_bfn.save_pretrained`).
    :ivar BFN raw_model: the trained weights themselves (the BFN passed in, when one was).
    :ivar dict summary: ``summary.json``: steps, examples, wall time, why it stopped, ...
    :ivar TrainConfig config: the run's configuration, with the data options resolved.
    :ivar Path checkpoint: the exact-resume checkpoint.
    :ivar int rank: this process's rank in a data-parallel run (``torchrun``; 0 alone).
    """

    model: BFN
    raw_model: BFN
    summary: dict
    config: TrainConfig
    checkpoint: Path
    rank: int = 0


def train(model_or_config=None, data=None, *, labels=None, context=None, resume: bool = False,
          overwrite: bool = False, log=None, **config) -> TrainResult:
    """Train a BFN; the one-call form of :class:`~pyro_bfn.training.Trainer`.

    >>> result = train(dataset="shapes.npz", data_options={"type": "discrete", "num_classes": 2},
    ...                max_steps=500, out_dir="runs/shapes")                      # doctest: +SKIP
    >>> result = train(bfn, data=x, labels=y, max_steps=500, out_dir="runs/mine")  # doctest: +SKIP
    >>> samples = result.model.sample(16, 100)                                     # doctest: +SKIP

    :param model_or_config: a :class:`~pyro_bfn.bfn.BFN` to train (in place), a
        :class:`TrainConfig`, a dict of its keys, the path of a YAML file of them, or ``None``
        (the defaults).
    :param data: examples given in Python instead of ``dataset``: a tensor or array
        ``(N, *data_shape)``, a map-style :class:`~torch.utils.data.Dataset`, or an iterable
        of batches such as a :class:`~torch.utils.data.DataLoader`
        (:mod:`pyro_bfn.training.data`). Without a BFN, ``data_options={"type": ...}`` says its data
        type.
    :param labels: class labels ``(N,)`` of tensor ``data``: class-conditional training.
    :param context: float context vectors ``(N, D)`` of tensor ``data``.
    :param bool resume: continue the run in ``out_dir`` exactly where its checkpoint stopped
        (pass the same model, data and configuration again).
    :param bool overwrite: start afresh although ``out_dir`` holds a checkpoint.
    :param log: callable taking a status line; by default :mod:`logging` INFO records
        (:func:`~pyro_bfn.training.log_to_stderr` shows them).
    :param config: :class:`TrainConfig` keys overriding the above, e.g. ``max_steps=2000``,
        ``batch_size=128``, ``out_dir="runs/mine"``, ``context_dropout=0.1``.
    :raises ConfigError: an invalid configuration or unusable data (one message naming it).
    :returns: a :class:`TrainResult`.
    """
    model = None
    if isinstance(model_or_config, BFN):
        model, base = model_or_config, TrainConfig()
        if "context_dropout" in config:  # the model's own unless given
            model.context_dropout = float(TrainConfig(context_dropout=config.pop("context_dropout")).context_dropout)
    elif isinstance(model_or_config, TrainConfig):
        base = model_or_config
    elif isinstance(model_or_config, dict):
        base = TrainConfig.from_dict(dict(model_or_config))
    elif isinstance(model_or_config, (str, os.PathLike)):
        base = TrainConfig.from_yaml(model_or_config)
    elif model_or_config is None:
        base = TrainConfig()
    else:
        raise ConfigError(f"train takes a BFN, a TrainConfig, a dict or a YAML path, got {type(model_or_config).__name__}")
    values = base.to_dict()
    unknown = sorted(set(config) - set(values))
    if unknown:
        raise ConfigError(f"unknown configuration key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(values))}")
    if data is not None and "dataset" in config:
        raise ConfigError("give data= (examples in Python) or dataset=, not both")
    values.update(config)
    if data is not None:
        values["dataset"] = user_data.IN_MEMORY
        if model is not None:
            try:
                values["data_options"] = model_data_options(values["data_options"], model)
            except user_data.DataError as error:
                raise ConfigError(str(error)) from None
    trainer = Trainer(TrainConfig.from_dict(values), resume=resume, overwrite=overwrite, log=log, model=model,
                      data=data, labels=labels, context=context)
    summary = trainer.train()
    return TrainResult(model=trainer.ema_model, raw_model=trainer.model, summary=summary, config=trainer.config,
                       checkpoint=trainer.checkpoint_path, rank=trainer.group.rank)
