"""Training a BFN on a named dataset or the user's own data: configuration, the training loop,
checkpoints.

A run is described by a :class:`TrainConfig` (a YAML file plus ``key=value`` overrides) and
carried out by a :class:`Trainer` (:func:`train` in one call, also with a BFN and data given in
Python), which writes into ``config.out_dir``:

==================== =====================================================================
``checkpoint.pt``    model, EMA, optimizer, scheduler, scaler, step, RNG states, config
                     (written atomically; see :func:`save_checkpoint`)
``config.yaml``      the resolved configuration
``train_log.csv``    step, examples, loss, lr, grad_norm, ex_per_s, wall
``valid_log.csv``    step, examples, valid_nats, valid_stderr, wall (EMA weights)
``curves.csv/.png``  loss, validation bound, gradient norm, learning rate against the step
``samples_*.png``    sample grids of the EMA model (``.txt`` for text, ``.pt`` for arrays)
``summary.json``     steps, examples, wall time, mean examples/s, last validation bound
``tensorboard/``     with ``logger: tensorboard``: the logged scalars as TensorBoard events
==================== =====================================================================

Status lines are INFO records of the ``pyro_bfn`` loggers (:mod:`logging`); the library
configures no handler; ``pyro-bfn`` (and a script that wants them) calls
:func:`log_to_stderr`, which shows them through :class:`TqdmHandler`.

Reproducibility. The order of the training examples is a function of ``(seed, epoch)``
only (a fresh permutation per epoch, see :meth:`Trainer.batch_indices`); the randomness of
the loss (times, flow samples, classifier-free context dropout) comes from the trainer's own
draw generator, which makes the draws of the whole global batch
(:meth:`~pyro_bfn.bfn.BFN.loss_draws`, so every split of it over processes and micro-batches
sees the same draws), and the preparation of raw batches (e.g. the dynamic binarization of
MNIST) from a dedicated data generator; random numbers drawn inside the network (dropout) come
from torch's global generator, seeded per rank. All of them, with numpy's and Python's
generators, are saved in every checkpoint (every rank's) and restored on resume, so that on CPU
a resumed run reproduces an uninterrupted one bit for bit (:doc:`/distributed` for resuming on
another number of processes).
That holds for in-memory data and map-style Datasets; an iterable of batches is fast-forwarded
instead (:mod:`pyro_bfn.training.data` says when that is exact). Validation and sampling draw from forked, separately seeded generators and so never
perturb the training stream.

The package's modules, each one concern:

=============== ===================================================================
``config``      :class:`TrainConfig` (the fields, their types and admissible values),
                :class:`ConfigError`, ``key=value`` overrides
``values``      a YAML or ``--set`` value converted to a field's type hint, in words for errors
``devices``     :func:`resolve_device`, :func:`resolve_autocast`, :func:`cpu_has_native_bf16`
``optim``       :func:`make_optimizer` (AdamW), the warm-up schedule, the EMA of the weights
``checkpoint``  :func:`save_checkpoint`, :func:`load_checkpoint`, :func:`load_model`,
                :class:`CheckpointError`, the random number generator states
``runlog``      the CSV logs and TensorBoard scalars, curves, :func:`save_samples`,
                ``summary.json``, progress, :class:`TqdmHandler`
``budget``      the stop conditions: :class:`MaxSteps`, :class:`TimeBudget`
``data``        the global batch of every update from in-memory tensors, a map-style
                Dataset or an iterable of batches, and what resume restores for each
``trainer``     :class:`Trainer` (one update, the loop), :class:`TrainingDivergedError`
``resume``      the state a trainer checkpoints and restores, and the checks that a
                checkpoint fits the run
``reports``     validation bounds, sample grids, curves, the final summary
``api``         :func:`train`, the one-call form, and its :class:`TrainResult`
=============== ===================================================================

This package re-exports their public names.
"""

from .budget import BOUND_SPEEDUP, MaxSteps, StopCondition, TimeBudget
from .checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    CHECKPOINT_VERSION,
    CheckpointError,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from .config import ConfigError, TrainConfig, apply_overrides
from .devices import cpu_has_native_bf16, resolve_autocast, resolve_device
from .optim import make_optimizer
from .runlog import RunLog, TqdmHandler, log_to_stderr, save_samples
from .trainer import Trainer, TrainingDivergedError
from .api import TrainResult, train

__all__ = [
    "BOUND_SPEEDUP",
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_NAME",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "ConfigError",
    "MaxSteps",
    "RunLog",
    "StopCondition",
    "TimeBudget",
    "TqdmHandler",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingDivergedError",
    "apply_overrides",
    "cpu_has_native_bf16",
    "load_checkpoint",
    "load_model",
    "log_to_stderr",
    "make_optimizer",
    "resolve_autocast",
    "resolve_device",
    "save_checkpoint",
    "save_samples",
    "train",
]
