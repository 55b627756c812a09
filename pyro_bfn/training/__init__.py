"""Training a BFN on a named dataset: configuration, the training loop, checkpoints.

A run is described by a :class:`TrainConfig` (a YAML file plus ``key=value`` overrides) and
carried out by a :class:`Trainer`, which writes into ``config.out_dir``:

==================== =====================================================================
``checkpoint.pt``    model, EMA, optimizer, scheduler, scaler, step, RNG states, config
                     (written atomically; see :func:`save_checkpoint`)
``config.yaml``      the resolved configuration
``train_log.csv``    step, examples, loss, lr, grad_norm, ex_per_s, wall
``valid_log.csv``    step, examples, valid_nats, valid_stderr, wall (EMA weights)
``curves.csv/.png``  loss, validation bound, gradient norm, learning rate against the step
``samples_*.png``    sample grids of the EMA model (``.txt`` for text)
``summary.json``     steps, examples, wall time, mean examples/s, last validation bound
==================== =====================================================================

Reproducibility. The order of the training examples is a function of ``(seed, epoch)``
only (a fresh permutation per epoch, see :meth:`Trainer.batch_indices`); the randomness of
the loss (times, flow samples) comes from torch's global generator and the
preparation of raw batches (e.g. the dynamic binarization of MNIST) from a dedicated
generator. Both, with numpy's and Python's generators, are saved in every checkpoint and
restored on resume, so that on CPU a resumed run reproduces an uninterrupted one bit for bit.
Validation and sampling draw from forked, separately seeded generators and so never
perturb the training stream.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import math
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from .. import zoo
from ..evaluation import evaluate_bound

__all__ = [
    "CheckpointError",
    "ConfigError",
    "TrainConfig",
    "Trainer",
    "TrainingDivergedError",
    "load_checkpoint",
    "load_model",
    "make_optimizer",
    "resolve_autocast",
    "resolve_device",
    "save_checkpoint",
]

#: Examples/s of the likelihood bound (two network passes per example, no backward, inference
#: mode) relative to training examples/s (forward + backward), used to reserve time for
#: evaluation in a time budget until the ratio has been measured on the run's own model and
#: machine (:meth:`Trainer._measure_bound_speedup`, after the second log row). 3.0 was the demo model's
#: ratio with bf16 on an AVX512-BF16 CPU (66 vs 19.3 examples/s under a load of about 7, rounded
#: down); in float32 on an AVX2-only CPU it is nearer 1.5, which is why it is measured.
BOUND_SPEEDUP = 3.0
CHECKPOINT_FORMAT = "pyro-bfn-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
_LOG_FIELDS = ["step", "examples", "loss", "lr", "grad_norm", "ex_per_s", "wall"]
_VALID_FIELDS = ["step", "examples", "valid_nats", "valid_stderr", "wall"]


class ConfigError(ValueError):
    """An invalid configuration: unknown key, bad value, or a resume that does not match."""


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, truncated or not a pyro-bfn checkpoint."""


class TrainingDivergedError(FloatingPointError):
    """The training loss (or gradient norm) became NaN or infinite."""


# ---------------------------------------------------------------------------- configuration
@dataclass
class TrainConfig:
    """Everything that defines a training run.

    :ivar dataset: a name from :func:`pyro_bfn.zoo.list_datasets`.
    :ivar backbone: a name from :func:`pyro_bfn.models.registry.list_backbones`; the
        dataset's default when ``None``.
    :ivar backbone_options: keyword overrides of the backbone configuration.
    :ivar data_type_options: keyword overrides of the data type, e.g. ``{"beta_1": 9.0}``.
    :ivar batch_size: examples per update.
    :ivar lr: AdamW learning rate after warm-up.
    :ivar betas: AdamW betas.
    :ivar weight_decay: AdamW weight decay.
    :ivar grad_clip: maximum global gradient norm (``0`` disables clipping; the norm is still
        logged).
    :ivar ema_decay: decay of the exponential moving average of the weights; the decay used
        at update ``n`` is ``min(ema_decay, (1 + n) / (10 + n))`` so that the average is not
        dominated by the initial weights in short runs.
    :ivar warmup_steps: linear learning-rate warm-up from ``lr / warmup_steps`` to ``lr``.
    :ivar max_steps: stop after this many updates.
    :ivar time_budget_minutes: also stop once the run's wall time (accumulated over resumes)
        exceeds this; ``None`` for no limit.
    :ivar budget_reserve_examples: keep, inside the time budget, the time to score this many
        examples with the likelihood bound after training (e.g. ``20000`` for two passes over
        a 10k test set): training stops once its wall time plus
        ``budget_reserve_examples / (s * r)`` reaches the budget, ``r`` being the median
        training examples/s of the last five log rows and ``s`` the ratio of bound to training
        examples/s, measured once per session on the EMA model after the second log row (a
        timing of at most 128 examples that leaves the random state untouched). The estimate adapts to
        the machine's load, so a run on a busy machine trains for less time and still finishes
        its evaluation within the budget.
    :ivar log_interval: steps per row of ``train_log.csv`` (the loss is averaged over them).
    :ivar eval_interval: steps between validation bounds (EMA weights, continuous time +
        reconstruction); ``0`` disables validation. A final one is computed at the end.
    :ivar eval_examples: score the first this-many validation examples (``None``: all).
    :ivar eval_repeats: passes over them.
    :ivar eval_batch_size: batch size of validation.
    :ivar ckpt_interval: steps between checkpoints (``0``: only at the end).
    :ivar sample_interval: steps between sample grids (``0`` disables; a final one is drawn
        at the end otherwise).
    :ivar sample_num: samples per grid.
    :ivar sample_steps: sampler steps ``n``.
    :ivar loss: ``"continuous"`` for :math:`L^\\infty` or a positive integer ``n`` for :math:`L^n`.
    :ivar autocast: ``"auto"`` (bf16 on a CPU that supports it, bf16 or fp16 with a gradient
        scaler on CUDA), ``"bf16"``, ``"fp16"`` (CUDA only) or ``"none"``.
    :ivar device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
    :ivar compile: compile the training model's backbone with ``torch.compile`` (in place, so
        checkpoints are unchanged; the EMA copy used for validation and samples is not
        compiled). The first steps are slow while it compiles; needs a C++ compiler on CPU.
    :ivar seed: seeds the model initialization, the data order and every random draw.
    :ivar out_dir: where the run writes its files.
    :ivar num_workers: torch CPU threads (``torch.set_num_threads``); ``0`` keeps torch's
        default. Batches are indexed from in-memory tensors, so there are no loader processes.
    :ivar progress: show a tqdm bar (only when stderr is a terminal and ``CI`` is not
        ``true``).
    """

    dataset: str = "binarized_mnist"
    backbone: str | None = None
    backbone_options: dict = field(default_factory=dict)
    data_type_options: dict = field(default_factory=dict)
    batch_size: int = 64
    lr: float = 1e-4
    betas: tuple = (0.9, 0.98)
    weight_decay: float = 0.01
    grad_clip: float = 5.0
    ema_decay: float = 0.9999
    warmup_steps: int = 0
    max_steps: int = 1000
    time_budget_minutes: float | None = None
    budget_reserve_examples: int = 0
    log_interval: int = 10
    eval_interval: int = 0
    eval_examples: int | None = 1000
    eval_repeats: int = 1
    eval_batch_size: int = 256
    ckpt_interval: int = 500
    sample_interval: int = 0
    sample_num: int = 64
    sample_steps: int = 100
    loss: Any = "continuous"
    autocast: str = "auto"
    device: str = "auto"
    compile: bool = False
    seed: int = 0
    out_dir: str = "runs/default"
    num_workers: int = 0
    progress: bool = True

    #: keys that must agree between a checkpoint and the configuration that resumes it
    RESUME_KEYS = (
        "dataset", "backbone", "backbone_options", "data_type_options", "batch_size", "seed", "loss",
    )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Build and validate a configuration from a plain dict (unknown keys are errors).

        :param dict values: field name -> value.
        """
        if not isinstance(values, dict):
            raise ConfigError(f"a configuration must be a mapping of keys to values, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown configuration key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
        config = cls(**{key: _coerce(key, value) for key, value in values.items()})
        config.validate()
        return config

    @classmethod
    def from_yaml(cls, path, overrides=()) -> "TrainConfig":
        """Load a YAML file, then apply ``key=value`` overrides.

        :param path: a YAML mapping of configuration keys, or ``None`` for the defaults.
        :param overrides: strings ``key=value``; the value is parsed as YAML
            (``lr=2e-3``, ``betas=[0.9,0.99]``); ``backbone_options.base_width=32`` sets
            one entry of a dict-valued key.
        """
        values: dict = {}
        if path is not None:
            try:
                with open(path) as handle:
                    loaded = yaml.safe_load(handle)
            except FileNotFoundError:
                raise ConfigError(f"configuration file {path} does not exist") from None
            except yaml.YAMLError as error:
                raise ConfigError(f"configuration file {path} is not valid YAML: {error}") from None
            if loaded is None:
                loaded = {}
            if not isinstance(loaded, dict):
                raise ConfigError(f"configuration file {path} must hold a mapping of keys to values")
            values.update(loaded)
        apply_overrides(values, overrides)
        return cls.from_dict(values)

    def to_dict(self) -> dict:
        """Plain (YAML/JSON/``weights_only``-safe) dict of the configuration."""
        values = dataclasses.asdict(self)
        values["betas"] = list(self.betas)
        return values

    def replace(self, **changes) -> "TrainConfig":
        """A validated copy with some fields changed."""
        values = self.to_dict()
        values.update(changes)
        return TrainConfig.from_dict(values)

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise :class:`ConfigError` on any invalid value."""
        if self.dataset not in zoo.list_datasets():
            raise ConfigError(f"unknown dataset {self.dataset!r}; known: {', '.join(zoo.list_datasets())}")
        from ..models.registry import list_backbones

        if self.backbone is not None and self.backbone not in list_backbones():
            raise ConfigError(f"unknown backbone {self.backbone!r}; known: {', '.join(list_backbones())}")
        for name in ("backbone_options", "data_type_options"):
            if not isinstance(getattr(self, name), dict):
                raise ConfigError(f"{name} must be a mapping, got {getattr(self, name)!r}")
        positive_ints = ("batch_size", "max_steps", "log_interval", "eval_repeats", "eval_batch_size",
                         "sample_num", "sample_steps")
        for name in positive_ints:
            _require(name, getattr(self, name), lambda v: v >= 1, "a positive integer")
        for name in ("warmup_steps", "budget_reserve_examples", "eval_interval", "ckpt_interval", "sample_interval", "num_workers", "seed"):
            _require(name, getattr(self, name), lambda v: v >= 0, "a non-negative integer")
        if self.eval_examples is not None:
            _require("eval_examples", self.eval_examples, lambda v: v >= 1, "a positive integer or null")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a positive number, got {self.lr!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if not self.weight_decay >= 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not self.grad_clip >= 0:
            raise ConfigError(f"grad_clip must be >= 0 (0 disables clipping), got {self.grad_clip!r}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay must lie in [0, 1), got {self.ema_decay!r}")
        if self.time_budget_minutes is not None and not self.time_budget_minutes > 0:
            raise ConfigError(f"time_budget_minutes must be positive or null, got {self.time_budget_minutes!r}")
        if self.loss != "continuous":
            if isinstance(self.loss, bool) or not isinstance(self.loss, int) or self.loss < 1:
                raise ConfigError(f"loss must be 'continuous' or a positive number of steps, got {self.loss!r}")
        if self.autocast not in ("auto", "bf16", "fp16", "none"):
            raise ConfigError(f"autocast must be one of auto, bf16, fp16, none; got {self.autocast!r}")
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ConfigError(f"device must be auto, cpu or cuda[:index]; got {self.device!r}")
        if not self.out_dir:
            raise ConfigError("out_dir must be a directory path")

    @property
    def n_steps(self) -> int | None:
        """``None`` for the continuous-time loss, else the ``n`` of :math:`L^n`."""
        return None if self.loss == "continuous" else int(self.loss)


_FIELD_TYPES = {
    "batch_size": int, "max_steps": int, "warmup_steps": int, "log_interval": int, "eval_interval": int,
    "eval_repeats": int, "eval_batch_size": int, "ckpt_interval": int, "sample_interval": int,
    "sample_num": int, "sample_steps": int, "seed": int, "budget_reserve_examples": int, "num_workers": int, "eval_examples": int,
    "lr": float, "weight_decay": float, "grad_clip": float, "ema_decay": float, "time_budget_minutes": float,
    "dataset": str, "backbone": str, "autocast": str, "device": str, "out_dir": str, "progress": bool,
    "compile": bool,
}


def _coerce(key: str, value):
    """Convert a YAML value to the field's type, with a clear error (YAML reads ``1e-3`` as a
    string, so numbers are also accepted as strings)."""
    kind = _FIELD_TYPES.get(key)
    if value is None and key in ("backbone", "time_budget_minutes", "eval_examples"):
        return None
    try:
        if kind is bool:
            if not isinstance(value, bool):
                raise ValueError
            return value
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind is str:
            if not isinstance(value, str):
                raise ValueError
            return value
        if key == "betas":
            return tuple(float(b) for b in value)
        if key == "loss":
            if value == "continuous":
                return value
            if isinstance(value, str) and value.strip().isdigit():
                return int(value)
            return value
    except (TypeError, ValueError):
        name = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(kind, "valid")
        raise ConfigError(f"{key} must be {name}, got {value!r}") from None
    return value


def _require(name, value, predicate, what):
    if isinstance(value, bool) or not isinstance(value, int) or not predicate(value):
        raise ConfigError(f"{name} must be {what}, got {value!r}")


def apply_overrides(values: dict, overrides) -> dict:
    """Apply ``key=value`` strings to a dict of configuration values, in place.

    :param dict values: the configuration so far.
    :param overrides: iterable of ``"key=value"``; ``"a.b=value"`` sets ``values["a"]["b"]``.
    """
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value")
        key, text = item.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        if "." in key:
            outer, inner = key.split(".", 1)
            if outer not in ("backbone_options", "data_type_options"):
                raise ConfigError(f"only backbone_options.* and data_type_options.* take dotted keys, got {key!r}")
            nested = dict(values.get(outer) or {})
            nested[inner] = value
            values[outer] = nested
        else:
            values[key] = value
    return values


# ---------------------------------------------------------------------------- devices
def make_optimizer(parameters, lr: float, betas=(0.9, 0.98), weight_decay: float = 0.01) -> torch.optim.AdamW:
    """AdamW over ``parameters``, with the fused implementation (one kernel for all parameters
    instead of a Python loop over them) where torch has it for the parameters' device. For the
    1.08M-parameter MNIST U-Net on a 2-core CPU the fused step takes 2.3 ms
    (``benchmarks/results/speed.md``), and a whole training step with the plain loop was about 9%
    slower (``benchmarks/results/reference_side_by_side.md``). The update is the same algorithm up
    to floating-point rounding."""
    parameters = list(parameters)
    devices = {p.device.type for p in parameters}
    fused = len(devices) == 1 and devices <= {"cpu", "cuda"} and all(p.is_floating_point() for p in parameters)
    kwargs = dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay)
    if fused:
        try:
            return torch.optim.AdamW(parameters, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):  # a torch without fused AdamW for this device
            pass
    return torch.optim.AdamW(parameters, **kwargs)


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU.

    :param str name: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:<index>"``.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    return device


def _cpu_supports_bf16() -> bool:
    """Whether this CPU runs bf16 natively (AVX512-BF16 or AMX) and oneDNN uses it. oneDNN alone
    also reports bf16 support on AVX512 CPUs without those units, where it emulates bf16 and is
    slower than float32; without AVX512 the convolutions fall back to generic kernels, 9-12 times
    slower (``benchmarks/results/speed.md``)."""
    try:
        onednn = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        native = bool(torch.cpu._is_avx512_bf16_supported()) or bool(torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False
    return onednn and native


def resolve_autocast(name: str, device: torch.device) -> tuple:
    """The autocast dtype (or ``None``) and whether a gradient scaler is needed.

    :param str name: ``"auto"``, ``"bf16"``, ``"fp16"`` or ``"none"``.
    :param torch.device device: the training device.
    :returns: ``(dtype or None, use_grad_scaler)``.
    """
    if name == "none":
        return None, False
    if device.type == "cuda":
        if name == "bf16" or (name == "auto" and torch.cuda.is_bf16_supported()):
            return torch.bfloat16, False
        return torch.float16, True
    if name == "fp16":
        raise ConfigError("autocast fp16 is only supported on CUDA (it needs a gradient scaler); use bf16 or none on CPU")
    if name == "bf16" or _cpu_supports_bf16():
        return torch.bfloat16, False
    return None, False


# ---------------------------------------------------------------------------- checkpoints
def save_checkpoint(state: dict, path) -> Path:
    """Write ``state`` with :func:`torch.save` atomically: to a temporary file in the same
    directory, flushed to disk, then renamed over ``path`` with :func:`os.replace`. A failure
    at any point leaves an existing ``path`` untouched (and removes the temporary file).

    :param dict state: plain data and tensors only (loadable with ``weights_only=True``).
    :param path: destination file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            temporary.unlink()
        except FileNotFoundError:
            pass
        raise
    return path


_REQUIRED_KEYS = ("model", "ema", "optimizer", "scheduler", "step", "examples", "rng", "config")


def load_checkpoint(path, map_location="cpu") -> dict:
    """Load and check a checkpoint written by :class:`Trainer`.

    :param path: the checkpoint file.
    :param map_location: passed to :func:`torch.load`.
    :raises CheckpointError: naming the file, if it is missing, unreadable (truncated,
        corrupt) or not a pyro-bfn checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        unpickler = [line for line in lines if "WeightsUnpickler error" in line]
        reason = (unpickler or lines or [type(error).__name__])[0]
        raise CheckpointError(f"checkpoint {path} is corrupt, truncated or not a torch file ({reason[:200]})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a pyro-bfn checkpoint (no '{CHECKPOINT_FORMAT}' marker)")
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint {path} has version {state.get('version')!r}, this code reads {CHECKPOINT_VERSION}")
    missing = [key for key in _REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}")
    return state


def _build_model(config: TrainConfig, device, autocast_dtype):
    return zoo.build_bfn(
        config.dataset,
        config.backbone,
        data_type_options=config.data_type_options,
        backbone_options=config.backbone_options,
        autocast_dtype=autocast_dtype,
    ).to(device)


def load_model(path, device="auto", ema: bool = True, autocast: str | None = None):
    """The BFN stored in a checkpoint, in eval mode.

    :param path: checkpoint file.
    :param device: ``"auto"``, ``"cpu"``, ``"cuda"`` or a :class:`torch.device`.
    :param bool ema: load the EMA weights (used for evaluation and sampling) rather than the
        raw ones.
    :param str autocast: override the checkpoint's autocast setting.
    :returns: ``(bfn, config, state)``.
    """
    state = load_checkpoint(path)
    try:
        config = TrainConfig.from_dict(dict(state["config"]))
    except ConfigError as error:
        raise CheckpointError(f"checkpoint {path} holds an invalid configuration: {error}") from None
    device = device if isinstance(device, torch.device) else resolve_device(device)
    autocast_dtype, _ = resolve_autocast(autocast or config.autocast, device)
    with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten; keep the caller's RNG as is
        torch.manual_seed(config.seed)
        bfn = _build_model(config, device, autocast_dtype)
    try:
        bfn.load_state_dict(state["ema" if ema else "model"])
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint {path} does not match its configured model: {str(error).splitlines()[0]}") from None
    bfn.eval()
    return bfn, config, state


def _numpy_state_to_plain(state) -> dict:
    name, keys, position, has_gauss, cached = state
    return {"name": name, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "position": int(position),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def _numpy_state_from_plain(plain) -> tuple:
    return (plain["name"], plain["keys"].numpy().astype(np.uint32), plain["position"], plain["has_gauss"], plain["cached"])


def _python_state_to_plain(state) -> dict:
    version, internal, gauss = state
    return {"version": version, "internal": list(internal), "gauss": gauss}


def _python_state_from_plain(plain) -> tuple:
    return (plain["version"], tuple(plain["internal"]), plain["gauss"])


def _mix_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _progress_enabled(requested: bool) -> bool:
    if not requested or os.environ.get("CI", "").lower() == "true":
        return False
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


# ---------------------------------------------------------------------------- the trainer
class Trainer:
    """Trains a BFN as described by a :class:`TrainConfig`.

    :param TrainConfig config: the run.
    :param bool resume: continue from ``out_dir/checkpoint.pt`` (model, EMA, optimizer,
        scheduler, step and every RNG state restored).
    :param bool overwrite: start afresh even if ``out_dir`` holds a checkpoint (otherwise
        that is an error, so a finished run is never clobbered by accident).
    :param log: callable taking one line of text (status messages); ``print`` to stderr by
        default.

    >>> trainer = Trainer(TrainConfig(dataset="toy_binary", max_steps=5, out_dir="runs/doc"))  # doctest: +SKIP
    >>> summary = trainer.train()                                                                # doctest: +SKIP
    """

    def __init__(self, config: TrainConfig, resume: bool = False, overwrite: bool = False, log=None):
        config.validate()
        self.config = config
        self.out_dir = Path(config.out_dir)
        self.checkpoint_path = self.out_dir / CHECKPOINT_NAME
        self._log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        if resume and not self.checkpoint_path.is_file():
            raise CheckpointError(f"cannot resume: {self.checkpoint_path} does not exist")
        if not resume and not overwrite and self.checkpoint_path.is_file():
            raise ConfigError(
                f"{self.checkpoint_path} already exists; pass --resume to continue that run, "
                "--overwrite to start afresh, or choose another out_dir"
            )
        state = load_checkpoint(self.checkpoint_path) if resume else None
        if state is not None:
            self._check_resumable(state)
        if config.num_workers:
            torch.set_num_threads(config.num_workers)

        self.device = resolve_device(config.device)
        self.autocast_dtype, use_scaler = resolve_autocast(config.autocast, self.device)
        self.spec = zoo.get_dataset(config.dataset)
        self.train_raw = self.spec.load("train")  # raw integers (N, *data_shape), loaded once
        if self.train_raw.shape[0] < config.batch_size:
            raise ConfigError(
                f"batch_size {config.batch_size} exceeds the {self.train_raw.shape[0]} training examples of {config.dataset}"
            )
        self._valid_raw = None

        _seed_everything(config.seed)
        self.model = _build_model(config, self.device, self.autocast_dtype)
        self.ema_model = copy.deepcopy(self.model).requires_grad_(False).eval()
        if config.compile:
            self.model.network.compile()  # nn.Module.compile: in place, parameter names unchanged
        self.optimizer = make_optimizer(self.model.parameters(), config.lr, config.betas, config.weight_decay)
        warmup = config.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler)
        self.data_generator = torch.Generator().manual_seed(_mix_seed(config.seed, 1))
        self.step = 0
        self.examples = 0
        self.wall_seconds = 0.0
        self.last_valid = None
        self.loss_history: list[float] = []  # losses of the steps run by this Trainer object
        self._rates: list[float] = []  # examples/s of this session's log rows
        self._epoch_cache = (None, None)
        if state is not None:
            self._restore(state)
        self.num_parameters = sum(p.numel() for p in self.model.parameters())

    # ------------------------------------------------------------------ data
    @property
    def batches_per_epoch(self) -> int:
        return self.train_raw.shape[0] // self.config.batch_size

    def batch_indices(self, step: int) -> torch.Tensor:
        """Indices into the training split of the batch of update ``step`` (0-based):
        epoch ``e = step // batches_per_epoch`` uses a permutation drawn from a generator
        seeded by ``(seed, e)`` alone; incomplete final batches are dropped. Shape ``(batch_size,)``."""
        epoch, position = divmod(step, self.batches_per_epoch)
        cached_epoch, permutation = self._epoch_cache
        if cached_epoch != epoch:
            generator = torch.Generator().manual_seed(_mix_seed(self.config.seed, 0, epoch))
            permutation = torch.randperm(self.train_raw.shape[0], generator=generator)
            self._epoch_cache = (epoch, permutation)
        size = self.config.batch_size
        return permutation[position * size : (position + 1) * size]

    def _batch(self, step: int) -> torch.Tensor:
        raw = self.train_raw[self.batch_indices(step)]
        return self.spec.prepare(raw, self.data_generator).to(self.device)

    @property
    def valid_raw(self) -> torch.Tensor:
        if self._valid_raw is None:
            raw = self.spec.load("valid")
            self._valid_raw = raw if self.config.eval_examples is None else raw[: self.config.eval_examples]
        return self._valid_raw

    # ------------------------------------------------------------------ one update
    def train_step(self, x: torch.Tensor) -> tuple:
        """One AdamW update on the batch ``x`` (shape ``(B, *data_shape)``, BFN data).

        :returns: ``(loss, grad_norm)`` as floats; the loss is the mean over the batch of
            :math:`L^\\infty` (or :math:`L^n`) in nats per example.
        :raises TrainingDivergedError: if the loss, or (without a gradient scaler) the gradient
            norm, is not finite; the parameters are then left as they were before this step.
        """
        config = self.config
        self.model.train()
        terms = self.model.loss(x, n_steps=config.n_steps, reconstruction=False)
        loss = terms.flow.mean()
        loss_value = float(loss.detach())
        step = self.step + 1
        if not math.isfinite(loss_value):
            raise TrainingDivergedError(self._diverged_message(f"the loss is {loss_value}", step))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        parameters = [p for p in self.model.parameters() if p.grad is not None]
        max_norm = config.grad_clip if config.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(parameters, max_norm))
        if not math.isfinite(grad_norm) and not self.scaler.is_enabled():
            self.optimizer.zero_grad(set_to_none=True)
            raise TrainingDivergedError(self._diverged_message(f"the gradient norm is {grad_norm}", step))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self._update_ema(step)
        return loss_value, grad_norm

    def _diverged_message(self, what: str, step: int) -> str:
        where = (f"the last good checkpoint {self.checkpoint_path} (step {self._last_checkpoint_step}) was left intact"
                 if self._last_checkpoint_step is not None else "no checkpoint had been written yet")
        return f"training diverged at step {step}: {what}; stopped without saving this state; {where}"

    @torch.no_grad()
    def _update_ema(self, updates: int) -> None:
        decay = min(self.config.ema_decay, (1 + updates) / (10 + updates))
        ema_parameters = list(self.ema_model.parameters())
        parameters = [p.detach() for p in self.model.parameters()]
        torch._foreach_lerp_(ema_parameters, parameters, 1.0 - decay)
        for ema_buffer, buffer in zip(self.ema_model.buffers(), self.model.buffers()):
            ema_buffer.copy_(buffer)

    # ------------------------------------------------------------------ checkpoints
    _last_checkpoint_step: int | None = None

    def state_dict(self) -> dict:
        """Everything needed to continue the run exactly (plain data and tensors)."""
        rng = {
            "torch": torch.get_rng_state(),
            "numpy": _numpy_state_to_plain(np.random.get_state()),
            "python": _python_state_to_plain(random.getstate()),
            "data": self.data_generator.get_state(),
        }
        if torch.cuda.is_available() and self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "model": self.model.state_dict(),
            "ema": self.ema_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "examples": self.examples,
            "wall_seconds": self.wall_seconds,
            "last_valid": self.last_valid,
            "rng": rng,
            "config": self.config.to_dict(),
            "torch_version": str(torch.__version__),
        }

    def save(self) -> Path:
        """Write ``out_dir/checkpoint.pt`` atomically."""
        path = save_checkpoint(self.state_dict(), self.checkpoint_path)
        self._last_checkpoint_step = self.step
        return path

    def _check_resumable(self, state: dict) -> None:
        saved = state["config"]
        current = self.config.to_dict()
        differing = [key for key in TrainConfig.RESUME_KEYS if saved.get(key) != current.get(key)]
        if differing:
            details = "; ".join(f"{key}: checkpoint {saved.get(key)!r}, config {current.get(key)!r}" for key in differing)
            raise ConfigError(f"cannot resume {self.checkpoint_path} with a different model or data order ({details})")

    def _restore(self, state: dict) -> None:
        try:
            self.model.load_state_dict(state["model"])
            self.ema_model.load_state_dict(state["ema"])
            self.optimizer.load_state_dict(state["optimizer"])
            for group in self.optimizer.param_groups:  # load_state_dict restores the saved
                for key in ("fused", "foreach"):  # implementation flags: keep this run's choice
                    if key in self.optimizer.defaults:
                        group[key] = self.optimizer.defaults[key]
            self.scheduler.load_state_dict(state["scheduler"])
            if "scaler" in state and state["scaler"]:
                self.scaler.load_state_dict(state["scaler"])
        except (RuntimeError, KeyError, ValueError) as error:
            raise CheckpointError(f"checkpoint {self.checkpoint_path} does not match this model: {str(error).splitlines()[0]}") from None
        self.step = int(state["step"])
        self.examples = int(state["examples"])
        self.wall_seconds = float(state.get("wall_seconds", 0.0))
        self.last_valid = state.get("last_valid")
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        np.random.set_state(_numpy_state_from_plain(rng["numpy"]))
        random.setstate(_python_state_from_plain(rng["python"]))
        self.data_generator.set_state(rng["data"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(rng["cuda"])
        self._last_checkpoint_step = self.step

    # ------------------------------------------------------------------ evaluation, samples
    def validate(self) -> dict:
        """The continuous-time bound :math:`L^\\infty + L^r` of the EMA model on the first
        ``eval_examples`` validation examples (seeded by the config seed, so the numbers of
        different steps are comparable). Appends a row to ``valid_log.csv``."""
        config = self.config
        result = evaluate_bound(
            self.ema_model, self.spec, split="valid", n_steps=None, repeats=config.eval_repeats,
            batch_size=config.eval_batch_size, seed=config.seed, device=self.device, progress=False,
            raw=self.valid_raw,
        )
        self.last_valid = {"step": self.step, "nats": result.nats, "stderr": result.nats_stderr,
                           "bits_per_dim": result.bits_per_dim, "num_examples": result.num_examples}
        _append_csv(self.out_dir / "valid_log.csv", _VALID_FIELDS, {
            "step": self.step, "examples": self.examples, "valid_nats": f"{result.nats:.4f}",
            "valid_stderr": f"{result.nats_stderr:.4f}", "wall": f"{self.wall_seconds:.1f}",
        })
        return self.last_valid

    @torch.no_grad()
    def write_samples(self) -> Path:
        """Draw ``sample_num`` samples from the EMA model with ``sample_steps`` steps (a
        generator forked from the global one, seeded by ``seed``) and write
        ``samples_<step>.png`` (images) or ``.txt`` (text)."""
        config = self.config
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(_mix_seed(config.seed, 2))
            samples = self.ema_model.sample(config.sample_num, config.sample_steps, device=self.device)
        return save_samples(self.spec, samples, self.out_dir / f"samples_{self.step:07d}")

    def plot_curves(self) -> Path | None:
        """``curves.csv`` (loss, validation bound, gradient norm, learning rate, examples/s per
        logged step) and its plot ``curves.png``."""
        from ..plotting import plot_training_curves

        log_path = self.out_dir / "train_log.csv"
        if not log_path.is_file():
            return None
        rows = _read_csv(log_path)
        valid = {int(row["step"]): row["valid_nats"] for row in _read_csv(self.out_dir / "valid_log.csv")}
        if not rows:
            return None
        curve_rows = []
        for row in rows:
            step = int(row["step"])
            curve_rows.append({"step": step, "loss (nats/example)": row["loss"],
                               "valid bound (nats/example)": valid.pop(step, ""),
                               "grad_norm": row["grad_norm"], "lr": row["lr"], "ex_per_s": row["ex_per_s"]})
        for step, value in valid.items():  # validation at steps without a log row
            curve_rows.append({"step": step, "valid bound (nats/example)": value})
        curve_rows.sort(key=lambda r: r["step"])
        fields = ["step", "loss (nats/example)", "valid bound (nats/example)", "grad_norm", "lr", "ex_per_s"]
        csv_path = self.out_dir / "curves.csv"
        with open(csv_path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fields, restval="")
            writer.writeheader()
            writer.writerows(curve_rows)
        return Path(plot_training_curves(csv_path, self.out_dir / "curves.png"))

    # ------------------------------------------------------------------ the loop
    def train(self) -> dict:
        """Run until ``max_steps`` or the time budget, then checkpoint, validate, sample and
        plot. Returns the summary written to ``summary.json``.

        :raises TrainingDivergedError: on a non-finite loss; nothing is saved from that state.
        """
        config = self.config
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / "config.yaml", "w") as handle:
            yaml.safe_dump(config.to_dict(), handle, sort_keys=False)
        self._truncate_logs()
        budget = None if config.time_budget_minutes is None else 60.0 * config.time_budget_minutes
        self._log(
            f"training {config.dataset} with {config.backbone or self.spec.default_backbone} "
            f"({self.num_parameters:,} parameters) on {self.device}, autocast "
            f"{self.autocast_dtype or 'none'}, {torch.get_num_threads()} threads; from step {self.step}; "
            f"max_steps {config.max_steps}" + (f", budget {config.time_budget_minutes:g} min" if budget else "")
        )
        from tqdm.auto import tqdm

        bar = tqdm(total=config.max_steps, initial=self.step, disable=not _progress_enabled(config.progress),
                   desc="train", dynamic_ncols=True, smoothing=0.1)
        self._rates = []
        self._measured_speedup = None
        session_start = time.perf_counter()
        wall_at_start = self.wall_seconds
        interval_losses, interval_norms, interval_start = [], [], time.perf_counter()
        last_status = time.perf_counter()
        stop_reason = "max_steps"
        try:
            while self.step < config.max_steps:
                if budget is not None and self.wall_seconds + self._reserve_seconds() >= budget:
                    stop_reason = "time budget"
                    if config.budget_reserve_examples:
                        stop_reason += f" (reserving {self._reserve_seconds():.0f} s for evaluation)"
                    break
                x = self._batch(self.step)
                loss, grad_norm = self.train_step(x)
                self.step += 1
                self.examples += x.shape[0]
                self.loss_history.append(loss)
                interval_losses.append(loss)
                interval_norms.append(grad_norm)
                now = time.perf_counter()
                self.wall_seconds = wall_at_start + (now - session_start)
                bar.update(1)
                if self.step % config.log_interval == 0 or self.step == config.max_steps:
                    rate, mean_loss = self._log_row(interval_losses, interval_norms, now - interval_start)
                    bar.set_postfix(loss=f"{mean_loss:.2f}", ex_s=f"{rate:.0f}")
                    if bar.disable and now - last_status >= 30:
                        self._log(f"step {self.step}: loss {mean_loss:.2f} nats/example, {rate:.0f} ex/s, "
                                  f"{self.wall_seconds / 60:.1f} min")
                        last_status = now
                    if (budget is not None and config.budget_reserve_examples and self._measured_speedup is None
                            and len(self._rates) >= self._SPEEDUP_AFTER_ROW):
                        self._measure_bound_speedup()  # before interval_start: not in the next row's rate
                    interval_losses, interval_norms, interval_start = [], [], time.perf_counter()
                if config.eval_interval and self.step % config.eval_interval == 0 and self.step < config.max_steps:
                    valid = self.validate()
                    self._log(f"step {self.step}: valid bound {valid['nats']:.2f} ± {valid['stderr']:.2f} nats/example (EMA)")
                    interval_start = time.perf_counter()
                if config.sample_interval and self.step % config.sample_interval == 0 and self.step < config.max_steps:
                    self.write_samples()
                    interval_start = time.perf_counter()
                if config.ckpt_interval and self.step % config.ckpt_interval == 0:
                    self.save()
        finally:
            bar.close()
        if interval_losses:  # the steps since the last row (a time-budget stop)
            self._log_row(interval_losses, interval_norms, time.perf_counter() - interval_start)
        self.save()
        if config.eval_interval:
            valid = self.validate()
            self._log(f"step {self.step}: valid bound {valid['nats']:.2f} ± {valid['stderr']:.2f} nats/example (EMA)")
        sample_path = self.write_samples() if config.sample_interval else None
        curves = self.plot_curves()
        session_seconds = time.perf_counter() - session_start
        summary = {
            "stopped_by": stop_reason,
            "step": self.step,
            "examples": self.examples,
            "train_wall_seconds": round(self.wall_seconds, 1),
            "examples_per_second": round(self.examples / self.wall_seconds, 1) if self.wall_seconds else None,
            "median_logged_examples_per_second": round(statistics.median(self._rates), 1) if self._rates else None,
            "session_seconds": round(session_seconds, 1),
            "num_parameters": self.num_parameters,
            "autocast": str(self.autocast_dtype or "none"),
            "threads": torch.get_num_threads(),
            "last_valid": self.last_valid,
            "checkpoint": str(self.checkpoint_path),
            "curves": None if curves is None else str(curves),
            "samples": None if sample_path is None else str(sample_path),
        }
        with open(self.out_dir / "summary.json", "w") as handle:
            json.dump(summary, handle, indent=2)
        self._log(f"stopped by {stop_reason} at step {self.step} ({self.examples:,} examples, "
                  f"{self.wall_seconds / 60:.1f} min of training, {summary['examples_per_second']} ex/s)")
        return summary

    def _reserve_seconds(self) -> float:
        """Predicted seconds of the post-training evaluation reserved in the time budget
        (``0`` before the first log row of this session)."""
        if not self.config.budget_reserve_examples or not self._rates:
            return 0.0
        rate = statistics.median(self._rates[-5:])
        return self.config.budget_reserve_examples / (self._bound_speedup() * rate)

    #: examples scored by the one-off timing of :meth:`_measure_bound_speedup` (at most)
    _SPEEDUP_EXAMPLES = 128
    #: the log row after which it is taken (the first includes the warm-up steps)
    _SPEEDUP_AFTER_ROW = 2

    def _bound_speedup(self) -> float:
        """Bound examples/s over training examples/s: measured (:meth:`_measure_bound_speedup`)
        once per session, else :data:`BOUND_SPEEDUP`."""
        return BOUND_SPEEDUP if self._measured_speedup is None else self._measured_speedup

    def _measure_bound_speedup(self) -> None:
        """Time the bound (``L^inf + L^r``, inference mode, as
        :func:`~pyro_bfn.evaluation.evaluate_bound` computes it) of the EMA model on up to
        ``_SPEEDUP_EXAMPLES`` training examples, in batches of ``eval_batch_size`` after one
        small warm-up call, against the median training rate of the log rows so far. The
        examples are binarized with their own generator and every random state is restored,
        so the run stays bit-for-bit reproducible; if the timing fails (memory), the reserve
        keeps :data:`BOUND_SPEEDUP`."""
        count = min(self._SPEEDUP_EXAMPLES, self.train_raw.shape[0])
        batch = min(self.config.eval_batch_size, count)
        x = self.spec.prepare(self.train_raw[:count], torch.Generator().manual_seed(0)).to(self.device)
        devices = [self.device] if self.device.type == "cuda" else []
        was_training = self.ema_model.training
        self.ema_model.eval()
        try:
            with torch.random.fork_rng(devices=devices), torch.inference_mode():
                self.ema_model.loss(x[: min(8, count)], reconstruction=True)  # warm-up
                start = time.perf_counter()
                for first in range(0, count, batch):
                    self.ema_model.loss(x[first : first + batch], reconstruction=True)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                seconds = time.perf_counter() - start
        except (RuntimeError, MemoryError) as error:  # e.g. out of memory: keep the fallback
            self._log(f"could not time the bound ({error}); reserving with the default ratio {BOUND_SPEEDUP}")
            self._measured_speedup = BOUND_SPEEDUP
            return
        finally:
            self.ema_model.train(was_training)
        bound_rate = count / max(seconds, 1e-9)
        train_rate = statistics.median(self._rates)
        self._measured_speedup = bound_rate / train_rate
        self._log(f"bound / training examples/s measured: {self._measured_speedup:.2f} ({bound_rate:.0f} vs "
                  f"{train_rate:.0f}), reserving {self.config.budget_reserve_examples / bound_rate:.0f} s for evaluation")

    def _log_row(self, losses, norms, seconds) -> tuple:
        """Append the mean loss and gradient norm of the last ``len(losses)`` steps to
        ``train_log.csv``; returns ``(examples per second, mean loss)``."""
        rate = len(losses) * self.config.batch_size / max(seconds, 1e-9)
        self._rates.append(rate)
        mean_loss = sum(losses) / len(losses)
        _append_csv(self.out_dir / "train_log.csv", _LOG_FIELDS, {
            "step": self.step, "examples": self.examples, "loss": f"{mean_loss:.4f}",
            "lr": f"{self.scheduler.get_last_lr()[0]:.3e}", "grad_norm": f"{sum(norms) / len(norms):.4f}",
            "ex_per_s": f"{rate:.1f}", "wall": f"{self.wall_seconds:.1f}",
        })
        return rate, mean_loss

    def _truncate_logs(self) -> None:
        """Drop log rows past the current step (written after the checkpoint a run resumes
        from), so a resumed run's logs read like an uninterrupted one's."""
        for name in ("train_log.csv", "valid_log.csv"):
            path = self.out_dir / name
            if not path.is_file():
                continue
            if self.step == 0:
                path.unlink()
                continue
            rows = [row for row in _read_csv(path) if _int_or_none(row.get("step")) is not None
                    and int(row["step"]) <= self.step]
            fields = _LOG_FIELDS if name == "train_log.csv" else _VALID_FIELDS
            with open(path, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fields, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)


def save_samples(spec, samples: torch.Tensor, stem) -> Path:
    """Write samples as an image grid (``stem.png``) or text lines (``stem.txt``).

    :param spec: the :class:`~pyro_bfn.zoo.DatasetSpec` (its ``kind`` decides).
    :param samples: shape ``(N, *data_shape)``.
    :param stem: path without suffix (a suffix, if given, is replaced).
    """
    from ..plotting import save_image_grid, save_text_samples

    stem = Path(stem)
    if spec.kind == "text":
        path = stem.with_suffix(".txt")
        save_text_samples(samples.reshape(samples.shape[0], -1), path)
    else:
        path = stem.with_suffix(".png")
        save_image_grid(samples, path)
    return path


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _read_csv(path) -> list:
    if not Path(path).is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _append_csv(path, fields, row) -> None:
    path = Path(path)
    new = not path.is_file() or path.stat().st_size == 0
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fields)
        if new:
            writer.writeheader()
        writer.writerow(row)
