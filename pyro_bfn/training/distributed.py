"""Data-parallel training across processes, through :mod:`torch.distributed`: the process
group of a ``torchrun`` launch and the few collectives the trainer needs.

A run started as ``torchrun --nproc-per-node N -m pyro_bfn train --config C`` (or a script
that builds a :class:`~pyro_bfn.training.Trainer`, launched the same way) finds ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` in its environment; :func:`join_process_group` then
initialises the default process group (``gloo`` on CPU, ``nccl`` on CUDA, the rendezvous that
``torchrun`` set up) unless the caller already did. Without those variables the run is one
process and every function here is a no-op. The gradients are averaged by
:class:`torch.nn.parallel.DistributedDataParallel`; nothing here reimplements an all-reduce.

What each rank does, the ``torchrun`` command lines for one and several machines, the split
of the global batch and the resume rules are on the page :doc:`/distributed`
(``docs/distributed.rst``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .config import ConfigError

__all__ = [
    "ProcessGroup",
    "all_gather_objects",
    "barrier",
    "broadcast_object",
    "join_process_group",
    "leave_process_group",
    "rank_device",
    "sum_across_ranks",
]


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place in the run.

    :ivar int rank: global rank, ``0 .. world_size - 1``; rank 0 writes the files.
    :ivar int world_size: number of processes.
    :ivar int local_rank: rank on this machine (the CUDA device index).
    :ivar bool owned: the trainer initialised the group (and so destroys it at the end).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owned: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _environment_integer(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"the environment variable {name}={value!r} (set by torchrun) is not an integer") from None


def join_process_group(device: torch.device) -> ProcessGroup:
    """This process's :class:`ProcessGroup`: the initialised default group's, else the one
    described by ``torchrun``'s environment (initialised here with ``nccl`` for a CUDA
    ``device``, ``gloo`` otherwise), else a single process.

    :param torch.device device: the device the run was configured for (its type picks the backend).
    :raises ConfigError: if the environment is inconsistent, or the backend is unavailable.
    """
    local_rank = _environment_integer("LOCAL_RANK", 0)
    if dist.is_available() and dist.is_initialized():
        return ProcessGroup(dist.get_rank(), dist.get_world_size(), local_rank, owned=False)
    world_size = _environment_integer("WORLD_SIZE", 1)
    rank = _environment_integer("RANK", 0)
    if world_size <= 1:
        return ProcessGroup()
    if not 0 <= rank < world_size:
        raise ConfigError(f"RANK={rank} is not in 0..WORLD_SIZE-1 = 0..{world_size - 1}")
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)  # before the group, so that NCCL binds this rank's device
    dist.init_process_group(backend=backend)  # env:// rendezvous from torchrun's MASTER_ADDR/PORT
    return ProcessGroup(rank, world_size, local_rank, owned=True)


def rank_device(device: torch.device, group: ProcessGroup) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` for a CUDA run of several processes (one
    GPU per process), ``device`` otherwise.

    :raises ConfigError: for a run of several processes configured with one fixed CUDA device
        (``cuda:1``), or more local ranks than GPUs.
    """
    if not group.distributed or device.type != "cuda":
        return device
    if device.index is not None:
        raise ConfigError(f"device {device} names one GPU, but {group.world_size} processes run; "
                          "use device: cuda (each process takes the GPU of its LOCAL_RANK)")
    if group.local_rank >= torch.cuda.device_count():
        raise ConfigError(f"LOCAL_RANK {group.local_rank} but only {torch.cuda.device_count()} GPUs are visible")
    return torch.device("cuda", group.local_rank)


def leave_process_group(group: ProcessGroup) -> None:
    """Destroy the default process group if :func:`join_process_group` created it."""
    if group.owned and dist.is_initialized():
        dist.destroy_process_group()


def barrier(group: ProcessGroup) -> None:
    """Wait until every rank gets here (no-op for one process)."""
    if group.distributed:
        dist.barrier()


def broadcast_object(group: ProcessGroup, value, source: int = 0):
    """``value`` of rank ``source`` on every rank (a picklable object)."""
    if not group.distributed:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=source)
    return holder[0]


def all_gather_objects(group: ProcessGroup, value) -> list:
    """Every rank's ``value`` (a picklable object), in rank order, on every rank."""
    if not group.distributed:
        return [value]
    gathered = [None] * group.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def sum_across_ranks(group: ProcessGroup, value: torch.Tensor) -> torch.Tensor:
    """The sum of ``value`` (a tensor, same shape on every rank) over the ranks."""
    if group.distributed:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value
