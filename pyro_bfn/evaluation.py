"""Likelihood evaluation: the negative likelihood bound :math:`L + L^r` over a dataset.

Protocol (paper Sec. 6): the whole split (or its first ``max_examples``) is scored ``repeats``
times; each pass draws fresh times, flow samples and, for binarized MNIST, a fresh
binarization. The estimate is the mean over passes; its standard error is the standard
deviation of the per-pass means over :math:`\\sqrt{R}` (the Monte Carlo error for this test
set) when ``repeats >= 2``, and the per-example standard deviation over :math:`\\sqrt{N}`
otherwise. Every number is reproducible from ``seed``.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from .bfn import BFN
from .checks import check_integer

__all__ = ["BoundResult", "evaluate_bound", "prepared_batches", "seeded_draws"]

_LN2 = math.log(2.0)


@dataclass
class BoundResult:
    """A likelihood bound, in nats per example and bits per dimension.

    :ivar nats: mean of :math:`L + L^r` per example, nats.
    :ivar nats_stderr: its standard error (see the module docstring).
    :ivar flow_nats: the mean of the transmission term :math:`L^n` or :math:`L^\\infty`
        (:attr:`LossTerms.transmission <pyro_bfn.bfn.LossTerms.transmission>`).
    :ivar reconstruction_nats: the mean of :math:`L^r`.
    :ivar bits_per_dim: ``nats / (num_dims * ln 2)`` (bits per character for text).
    :ivar stderr_kind: ``"passes"`` or ``"examples"``.
    """

    nats: float
    nats_stderr: float
    flow_nats: float
    reconstruction_nats: float
    bits_per_dim: float
    bits_per_dim_stderr: float
    n_steps: int | None
    repeats: int
    num_examples: int
    num_dims: int
    seconds: float
    stderr_kind: str
    dataset: str = ""
    split: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, path) -> None:
        with open(path, "w") as handle:
            json.dump(self.to_dict(), handle, indent=2)

    def format(self) -> str:
        steps = "continuous time" if self.n_steps is None else f"n = {self.n_steps}"
        return (
            f"{self.dataset} {self.split}: {self.nats:.2f} ± {self.nats_stderr:.2f} nats/example "
            f"(flow {self.flow_nats:.2f} + reconstruction {self.reconstruction_nats:.2f}), "
            f"{self.bits_per_dim:.4f} ± {self.bits_per_dim_stderr:.4f} bits/dim; {steps}, "
            f"{self.repeats} pass(es) over {self.num_examples} examples, {self.seconds:.1f} s"
        )


@contextlib.contextmanager
def seeded_draws(seed: int, device="cpu"):
    """The random state of an evaluation: inside, torch's global generator (and ``device``'s,
    for CUDA) is seeded with ``seed`` (the flow and time draws of the losses), and the context
    gives a new CPU generator seeded with ``seed`` for preparing the data (e.g. the dynamic
    binarization of :meth:`~pyro_bfn.zoo.DatasetSpec.prepare`). The global state is restored on
    exit."""
    devices = [device] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield torch.Generator().manual_seed(seed)


def prepared_batches(spec, raw: torch.Tensor, batch_size: int, generator=None):
    """``spec.prepare`` of consecutive batches of ``raw`` (shape ``(N, *data_shape)``), in
    order, drawing from ``generator``: one pass of :func:`evaluate_bound`."""
    for start in range(0, raw.shape[0], batch_size):
        yield spec.prepare(raw[start : start + batch_size], generator)


@torch.inference_mode()
def evaluate_bound(
    bfn: BFN,
    spec,
    split: str = "test",
    n_steps: int | None = None,
    repeats: int = 1,
    batch_size: int = 256,
    seed: int = 0,
    max_examples: int | None = None,
    device=None,
    progress: bool = True,
    raw: torch.Tensor | None = None,
    context: torch.Tensor | None = None,
) -> BoundResult:
    """The negative likelihood bound :math:`L^n + L^r` (or :math:`L^\\infty + L^r` when
    ``n_steps`` is ``None``) of ``bfn`` on a dataset split.

    :param BFN bfn: the model (use the EMA weights).
    :param spec: a :class:`~pyro_bfn.zoo.DatasetSpec`.
    :param str split: ``"test"``, ``"valid"`` or ``"train"``.
    :param int n_steps: steps of the discrete-time loss, or ``None`` for continuous time.
    :param int repeats: passes over the data (``R``).
    :param int seed: seeds every random draw of the evaluation.
    :param int max_examples: score only the first examples of the split.
    :param raw: raw data to use instead of ``spec.load(split)`` (shape ``(N, *data_shape)``).
    :param context: the examples' labels ``(N,)`` or context vectors ``(N, D)`` for a
        conditional model (aligned with ``raw``, or with the split when ``raw`` is ``None``);
        ``None``: the null context.
    """
    check_integer("repeats", repeats)
    check_integer("batch_size", batch_size)
    if device is None:
        device = next(bfn.parameters()).device
    if raw is None:
        raw = spec.load(split)
    if max_examples is not None:
        raw = raw[:max_examples]
        context = None if context is None else context[:max_examples]
    if context is not None and context.shape[0] != raw.shape[0]:
        raise ValueError(f"context has {context.shape[0]} rows for {raw.shape[0]} examples")
    num_examples = raw.shape[0]
    if num_examples == 0:
        raise ValueError(f"no examples to evaluate in split {split!r}")
    was_training = bfn.training
    bfn.eval()
    started = time.perf_counter()
    pass_means, transmission_sum, reconstruction_sum, all_values = [], 0.0, 0.0, []
    batches = math.ceil(num_examples / batch_size)
    bar = tqdm(total=repeats * batches, desc=f"bound {split}", disable=not progress, leave=False)
    try:
        with seeded_draws(seed, device) as generator:
            for _ in range(repeats):
                total = 0.0
                for start, x in zip(range(0, num_examples, batch_size), prepared_batches(spec, raw, batch_size, generator)):
                    x = x.to(device)
                    rows = None if context is None else context[start : start + batch_size].to(device)
                    terms = bfn.loss(x, n_steps=n_steps, reconstruction=True, context=rows)
                    # summed in float64, so that the bound is exactly its two terms' sum
                    transmission, reconstruction = terms.transmission.double().cpu(), terms.reconstruction.double().cpu()
                    values = transmission + reconstruction
                    if not torch.isfinite(values).all():
                        raise FloatingPointError("the likelihood bound is not finite for some examples")
                    total += values.sum().item()
                    transmission_sum += transmission.sum().item()
                    reconstruction_sum += reconstruction.sum().item()
                    if repeats == 1:
                        all_values.append(values)
                    bar.update(1)
                pass_means.append(total / num_examples)
    finally:
        bar.close()
        bfn.train(was_training)
    means = torch.tensor(pass_means, dtype=torch.float64)
    nats = means.mean().item()
    if repeats >= 2:
        stderr, kind = (means.std(unbiased=True) / math.sqrt(repeats)).item(), "passes"
    else:
        values = torch.cat(all_values)
        stderr = (values.std(unbiased=True) / math.sqrt(num_examples)).item() if num_examples > 1 else float("nan")
        kind = "examples"
    count = repeats * num_examples
    scale = spec.num_dims * _LN2
    return BoundResult(
        nats=nats,
        nats_stderr=stderr,
        flow_nats=transmission_sum / count,
        reconstruction_nats=reconstruction_sum / count,
        bits_per_dim=nats / scale,
        bits_per_dim_stderr=stderr / scale,
        n_steps=n_steps,
        repeats=repeats,
        num_examples=num_examples,
        num_dims=spec.num_dims,
        seconds=time.perf_counter() - started,
        stderr_kind=kind,
        dataset=spec.name,
        split=split,
    )
