"""Checkpoints: atomic writes, checked reads, the model a checkpoint holds, and the random
number generator states that make a resumed run reproduce an uninterrupted one.

A checkpoint is a dict of plain data and tensors (loadable with ``weights_only=True``) with at
least the keys of :data:`REQUIRED_KEYS`, marked with :data:`CHECKPOINT_FORMAT` and
:data:`CHECKPOINT_VERSION`; :class:`~pyro_bfn.training.Trainer` writes and reads it.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from .. import user_data, zoo
from .config import RENAMED_KEYS, ConfigError, TrainConfig
from .devices import resolve_autocast, resolve_device

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_NAME",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "build_model",
    "capture_rng_states",
    "fork_rng",
    "load_checkpoint",
    "load_model",
    "mix_seed",
    "remove_stale_temporaries",
    "restore_rng_states",
    "save_checkpoint",
    "seed_everything",
]

CHECKPOINT_FORMAT = "pyro-bfn-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
#: the keys every checkpoint has
REQUIRED_KEYS = ("model", "ema", "optimizer", "scheduler", "step", "examples", "rng", "config")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, truncated or not a pyro-bfn checkpoint."""


# ---------------------------------------------------------------------------- files
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


def remove_stale_temporaries(path, log=None) -> list:
    """Delete the temporary files an interrupted :func:`save_checkpoint` of ``path`` left
    behind (``.NAME.tmp-PID``: a process killed before its rename); ``path`` itself is never
    touched. ``log`` (a callable taking a line) reports each one. Returns the removed paths."""
    path = Path(path)
    removed = []
    for temporary in sorted(path.parent.glob(f".{path.name}.tmp-*")):
        if temporary.name == f".{path.name}.tmp-{os.getpid()}":
            continue
        try:
            temporary.unlink()
        except OSError:
            continue
        removed.append(temporary)
        if log is not None:
            log(f"removed {temporary}, a checkpoint write that was interrupted")
    return removed


def load_checkpoint(path, map_location="cpu") -> dict:
    """Load and check a checkpoint written by :class:`~pyro_bfn.training.Trainer`.

    The stored configuration of an older checkpoint is brought up to date: keys renamed since
    (``RENAMED_KEYS`` of :mod:`pyro_bfn.training.config`) take their new names.

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
        raise CheckpointError(f"checkpoint {path} is corrupt, truncated or not a torch file ({_load_failure(error)})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a pyro-bfn checkpoint (no '{CHECKPOINT_FORMAT}' marker)")
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint {path} has version {state.get('version')!r}, this code reads {CHECKPOINT_VERSION}")
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}")
    if isinstance(state["config"], dict):
        config = dict(state["config"])
        for old, new in RENAMED_KEYS.items():
            if old in config:
                config.setdefault(new, config.pop(old))
        state["config"] = config
    return state


def _load_failure(error: Exception) -> str:
    """Why :func:`torch.load` failed, in a few words: the unpickler's reason (an object other
    than tensors and plain data) or the error's first line, without torch's advice on loading
    untrusted files or filing issues."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
        for marker in (" was not an allowed global", " Check the documentation"):
            text = text.split(marker, 1)[0]
        text = text.strip()
        if text.startswith("Unsupported global"):
            return f"it holds objects other than tensors and plain data: {text}"[:200]
        return f"unpickling failed: {text}"[:200]
    for marker in (" Please ", " If you "):  # torch's advice, not a reason
        text = text.split(marker, 1)[0]
    first = text.split(". ", 1)[0].strip() or "unreadable"
    return f"{type(error).__name__}: {first}"[:200]


# ---------------------------------------------------------------------------- the model
def build_model(config: TrainConfig, device, autocast_dtype, spec=None):
    """The (freshly initialized) BFN that ``config`` trains, on ``device``.

    :param TrainConfig config: its dataset (and data options), backbone and options.
    :param device: a :class:`torch.device`.
    :param autocast_dtype: the network's autocast dtype, or ``None``.
    :param spec: the dataset's :class:`~pyro_bfn.zoo.DatasetSpec` when loaded already;
        rebuilt from the configuration (without reading data) when ``None``.
    :raises ConfigError: the options do not build a model (a value the data type or the
        backbone rejects, a backbone whose layout the dataset's examples do not have).
    """
    try:
        spec = spec or user_data.model_spec(config.dataset, config.data_options)
        bfn = zoo.build_bfn(
            spec,
            config.backbone,
            data_type_options=config.data_type_options,
            backbone_options=config.backbone_options,
            autocast_dtype=autocast_dtype,
        )
    except (TypeError, ValueError) as error:
        backbone = config.backbone or (spec.default_backbone if spec is not None else "its default")
        raise ConfigError(f"cannot build the model of {config.dataset} with backbone {backbone} "
                          f"from the configured options: {error}") from None
    bfn.context_dropout = config.context_dropout
    return bfn.to(device)


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
    if state.get("model_source") == "python":
        raise CheckpointError(f"the model of checkpoint {path} was given to the Trainer in Python, so its configuration "
                              "does not rebuild it: build the same BFN and load torch.load(path)['ema'] (or 'model') "
                              "into it with load_state_dict")
    try:
        config = TrainConfig.from_dict(dict(state["config"]))
    except ConfigError as error:
        raise CheckpointError(f"checkpoint {path} holds an invalid configuration: {error}") from None
    device = device if isinstance(device, torch.device) else resolve_device(device)
    autocast_dtype, _ = resolve_autocast(autocast or config.autocast, device)
    with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten; keep the caller's RNG as is
        torch.manual_seed(config.seed)
        bfn = build_model(config, device, autocast_dtype)
    try:
        bfn.load_state_dict(state["ema" if ema else "model"])
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint {path} does not match its configured model: {str(error).splitlines()[0]}") from None
    bfn.eval()
    return bfn, config, state


# ---------------------------------------------------------------------------- random states
def seed_everything(seed: int) -> None:
    """Seed torch's, numpy's and Python's global generators with ``seed``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def mix_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (numpy's :class:`~numpy.random.SeedSequence`),
    e.g. ``mix_seed(seed, 0, epoch)`` for the data order of an epoch."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


def fork_rng(device: torch.device):
    """A context in which random draws leave the global generators as they were: torch's CPU
    generator and, on a CUDA ``device``, that device's (:func:`torch.random.fork_rng`)."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def capture_rng_states(data_generator: torch.Generator, device: torch.device, draw_generator=None) -> dict:
    """The states of torch's (and, on a CUDA ``device``, CUDA's), numpy's and Python's global
    generators, of ``data_generator`` and (if given) of ``draw_generator``, as plain data and
    tensors."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "data": data_generator.get_state(),
    }
    if draw_generator is not None:
        states["draws"] = draw_generator.get_state()
    if torch.cuda.is_available() and device.type == "cuda":
        # this device's only: querying every visible GPU would create a context on each
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def restore_rng_states(states: dict, data_generator: torch.Generator, device: torch.device,
                       draw_generator=None, shared_only: bool = False) -> None:
    """Set the generators from what :func:`capture_rng_states` returned (a ``draw_generator``
    only if the states hold one). With ``shared_only``, only ``data_generator`` and
    ``draw_generator`` (the streams every rank of a data-parallel run shares)."""
    data_generator.set_state(states["data"])
    if draw_generator is not None and "draws" in states:
        draw_generator.set_state(states["draws"])
    if shared_only:
        return
    torch.set_rng_state(states["torch"])
    numpy = states["numpy"]
    np.random.set_state((numpy["name"], numpy["keys"].numpy().astype(np.uint32), numpy["position"],
                         numpy["has_gauss"], numpy["cached"]))
    python = states["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss"]))
    if "cuda" in states and device.type == "cuda":
        if isinstance(states["cuda"], (list, tuple)):  # written by an earlier version: every GPU's
            torch.cuda.set_rng_state_all(states["cuda"])
        else:
            torch.cuda.set_rng_state(states["cuda"], device)
