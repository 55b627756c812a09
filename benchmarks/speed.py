"""Training, evaluation and sampling speed of named BFN configurations, and the cost and
accuracy of the discrete n-step KL.

One command prints Markdown tables and writes ``benchmarks/results/speed.md`` and
``benchmarks/results/speed.json`` (raw numbers, command, seed, torch / pyro versions, CPU
model, threads, load average)::

    python benchmarks/speed.py                      # every default configuration
    python benchmarks/speed.py --quick              # tiny configurations, a smoke test
    python benchmarks/speed.py --configs mnist_small_variant_b8 kl_k2 --threads 2
    python benchmarks/speed.py --profile mnist_small_variant_b8   # CPU-time profile, 1 thread

For each model configuration (a dataset's data type, a named backbone, a batch size), in a
fresh subprocess (so that the peak-memory numbers belong to that configuration alone):

* training throughput, examples/s of one step = continuous-time loss forward, backward,
  AdamW step (no gradient clipping, no EMA), in float32 and under bf16 autocast
  (``BFN(autocast_dtype=torch.bfloat16)``; the loss stays float32), the two timed in
  alternation so that load from other processes hits both alike; for discrete data also
  the n-step loss (``n = 10``) in float32;
* where a float32 step goes: the backbone alone (forward + backward on the same features
  and times), the AdamW step alone, and "flow + loss" = the whole step with the network
  replaced by a stub that returns a stored output (drawing :math:`\\theta \\sim p_F`,
  building the output distribution, the loss and its backward, input validation);
* peak memory of each phase: on CPU the peak resident set size (``VmHWM``, reset before
  each phase through ``/proc/self/clear_refs`` after ``malloc_trim``; falls back to
  ``getrusage`` when that is not possible) above the resident size after imports, i.e.
  parameters, gradients, optimiser state, activations and allocator caches; on CUDA
  ``torch.cuda.max_memory_allocated``;
* likelihood-evaluation throughput, examples/s of ``bfn.loss(x, reconstruction=True)``
  (:math:`L^\\infty + L^r`) in eval mode under ``torch.inference_mode``;
* sampling throughput, samples/s of ``bfn.sample(batch, n_steps=100)``; for the heavy
  configurations the per-step time of the first steps is extrapolated to 100 steps (marked).

For the discrete n-step loss (``kl_k2``, ``kl_k27``): the KL registered for
(``DiscreteSender``, ``DiscreteReceiver``) that ``BFN.discrete_time_loss`` uses (the joint
K-dimensional receiver: quadrature for K = 2, an unbiased 16-sample Monte Carlo estimate for
K > 2) against the reference implementation's estimator, written here only: a receiver
factorised per dimension (a product of K one-dimensional mixtures) and 10 sender samples.
Time per call on a batch of the data's shape, the spread of each estimate across seeds, and
its bias against the exact joint KL (quadrature for K = 2; a 2^20-sample Monte Carlo value
for K = 27).

Warm-up steps are discarded; every reported time is the median over the repeats. Numbers on
a shared machine are noisy: the 1-minute load average before and after each configuration is
in the tables.

CPU budget: the default configurations took 19 minutes with 2 threads on this session's quiet
2-core AVX2-only CPU (``speed.md``; its bf16 columns are slow there, which is most of the time)
and 4 minutes on the AVX512-BF16 CPU of an earlier session (``speed.avx512_bf16.md``; 20 minutes
when other jobs were running); ``--compile`` adds several minutes of compilation per
configuration (three configurations: 12 minutes).

``--reference benchmarks/results/reference_side_by_side.json`` puts a side-by-side measurement
of the reference implementation on the same machine into the notes (how it was taken:
``reference_side_by_side.md``); without it the notes quote the issue's figures for the reference.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results"
NSTEP_LOSS_STEPS = 10
SAMPLE_STEPS = 100

# name -> configuration. kind "model": a BFN from pyro_bfn.zoo.build_bfn on random data of
# the dataset's type and shape; kind "kl": the discrete n-step KL comparison.
CONFIGS = {
    "mnist_paper_b8": dict(
        kind="model", data="binary MNIST, K=2", dataset="binarized_mnist", backbone="unet_mnist_paper", batch=8, heavy=True
    ),
    "mnist_small_variant_b8": dict(
        kind="model", data="binary MNIST, K=2", dataset="binarized_mnist", backbone="unet_mnist_small_variant", batch=8
    ),
    "mnist_small_variant_b32": dict(
        kind="model", data="binary MNIST, K=2", dataset="binarized_mnist", backbone="unet_mnist_small_variant", batch=32,
        sample_timed_steps=20,
    ),
    "mnist_unet_small_b32": dict(
        kind="model", data="binary MNIST, K=2", dataset="binarized_mnist", backbone="unet_small", batch=32, heavy=True,
        sample_timed_steps=10,
    ),
    "mnist_mlp_b32": dict(kind="model", data="binary MNIST, K=2", dataset="binarized_mnist", backbone="mlp_small", batch=32),
    "discretised256_unet_small_b32": dict(
        kind="model", data="28x28, 256 bins", dataset="fashion_mnist_256", backbone="unet_small", batch=32, heavy=True,
        sample_timed_steps=10,
    ),
    "discretised256_mlp_b32": dict(
        kind="model", data="28x28, 256 bins", dataset="fashion_mnist_256", backbone="mlp_small", batch=32
    ),
    "text27_transformer_small_b8": dict(
        kind="model", data="text L=256, K=27", dataset="english_text", backbone="transformer_small", batch=8
    ),
    "kl_k2": dict(kind="kl", num_classes=2, beta_1=9.0, shape=(8, 784), label="binary MNIST batch (8, 784)"),
    "kl_k27": dict(kind="kl", num_classes=27, beta_1=0.5625, shape=(8, 256), label="text batch (8, 256)"),
    # tiny configurations for --quick and the smoke test
    "tiny_binary_mlp": dict(
        kind="model", data="toy 8x8, K=2", dataset="toy_binary", backbone="mlp_small", batch=4,
        backbone_options=dict(hidden=32, depth=1, time_embedding_dim=16),
    ),
    "tiny_discretised_mlp": dict(
        kind="model", data="toy 8x8, 16 bins", dataset="toy_discretised", backbone="mlp_small", batch=4,
        backbone_options=dict(hidden=32, depth=1, time_embedding_dim=16),
    ),
    "tiny_text_mlp": dict(
        kind="model", data="toy text L=32, K=27", dataset="toy_text", backbone="mlp_small", batch=4,
        backbone_options=dict(hidden=32, depth=1, time_embedding_dim=16),
    ),
    "tiny_kl_k2": dict(kind="kl", num_classes=2, beta_1=9.0, shape=(2, 64), label="tiny (2, 64)"),
    "tiny_kl_k27": dict(kind="kl", num_classes=27, beta_1=0.5625, shape=(2, 32), label="tiny (2, 32)"),
}
DEFAULT_CONFIGS = [n for n in CONFIGS if not n.startswith("tiny_")]
QUICK_CONFIGS = [n for n in CONFIGS if n.startswith("tiny_")]

# settings: (full, quick); heavy configurations use fewer repeats and extrapolate sampling
SETTINGS = {
    "full": dict(warmup=2, repeats=5, eval_repeats=5, sample_repeats=1, sample_steps=SAMPLE_STEPS,
                 kl_variables=4096, kl_seeds=20, kl_exact_samples=2**20, kl_repeats=5),
    "heavy": dict(warmup=1, repeats=3, eval_repeats=3, sample_repeats=1, sample_steps=SAMPLE_STEPS, sample_timed_steps=5),
    "quick": dict(warmup=1, repeats=2, eval_repeats=2, sample_repeats=1, sample_steps=5,
                  kl_variables=256, kl_seeds=4, kl_exact_samples=2**12, kl_repeats=2),
}

# Reference implementation (nnaisense/bayesian-flow-networks), 2 threads, torch 2.13,
# continuous-time loss, forward + backward + AdamW: the figures, measured on the
# development CPU of that time (AVX512-BF16 and AMX). --reference replaces them by a
# side-by-side measurement on the machine at hand (benchmarks/results/reference_side_by_side.json).
REFERENCE_SOURCE = "the issue's figures for the reference implementation, measured on a CPU with AVX512-BF16 and AMX"
REFERENCE = {
    "mnist_small_variant_b8": dict(ex_s=(35, 55), flow_share=1.0),
    "mnist_paper_b8": dict(ex_s=(3.2, 3.8), flow_share=0.1),
    "binary_nstep_over_continuous": 25.0,
}


# --------------------------------------------------------------------------- measurement helpers
def _load_average() -> float:
    return os.getloadavg()[0]


class Memory:
    """Peak memory of a phase above the resident size after imports (CPU) or the peak of
    ``torch.cuda.max_memory_allocated`` (CUDA), in MB."""

    def __init__(self, device):
        import ctypes

        self.cuda = device.type == "cuda"
        try:
            self._libc = ctypes.CDLL("libc.so.6")
        except OSError:
            self._libc = None
        self.method = "cuda.max_memory_allocated" if self.cuda else "VmHWM (clear_refs reset)"
        if not self.cuda and not self._can_reset():
            self.method = "getrusage maxrss (not reset between phases)"
        self._prime(device)
        self._trim()
        self.baseline = 0.0 if self.cuda else self._status("VmRSS")

    @staticmethod
    def _prime(device):
        """One tiny training step in float32 and bf16 autocast and one inference call, so that
        the one-off costs of the first use (autograd engine, kernels, thread pools) fall
        below the baseline rather than into the first phase."""
        import torch

        layer = torch.nn.Linear(8, 8).to(device)
        optimiser = torch.optim.AdamW(layer.parameters())
        for enabled in (False, True):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled):
                loss = layer(torch.randn(4, 8, device=device)).float().square().mean()
            loss.backward()
            optimiser.step()
        with torch.inference_mode():
            layer(torch.randn(4, 8, device=device))

    @staticmethod
    def _status(field: str) -> float:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0  # kB -> MB
        raise KeyError(field)

    @staticmethod
    def _can_reset() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            return True
        except OSError:
            return False

    def _trim(self):
        if self._libc is not None:
            try:
                self._libc.malloc_trim(0)
            except AttributeError:
                pass

    def reset(self):
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return
        self._trim()
        if self.method.startswith("VmHWM"):
            self._can_reset()

    def peak(self) -> float:
        import resource

        import torch

        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() / 2**20
        if self.method.startswith("VmHWM"):
            return self._status("VmHWM") - self.baseline
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0 - self.baseline


def _stored_output_network(stored):
    """A stand-in for the network that returns ``stored`` (a leaf with a gradient), so that a
    step measures the flow, output distribution and loss alone (torch is imported lazily here,
    as everywhere in this file, so the driver process never loads it)."""
    from torch import nn

    class StoredOutput(nn.Module):
        def __init__(self):
            super().__init__()
            self.output = nn.Parameter(stored)

        def forward(self, features, t, context=None):
            return self.output

    return StoredOutput()

def _timer(device):
    import torch

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def timed(fn):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - start

    return timed


def _summary(seconds: list, batch: int) -> dict:
    median = statistics.median(seconds)
    return dict(seconds=seconds, median_s=median, per_s=batch / median, best_per_s=batch / min(seconds))


def _random_data(data_type, shape, generator):
    import torch

    if hasattr(data_type, "num_classes"):
        return torch.randint(0, data_type.num_classes, shape, generator=generator)
    if hasattr(data_type, "num_bins"):
        return data_type.from_integers(torch.randint(0, data_type.num_bins, shape, generator=generator))
    return torch.rand(shape, generator=generator) * 2 - 1


# --------------------------------------------------------------------------- model worker
def run_model(name: str, cfg: dict, s: dict, device_name: str) -> dict:
    import gc

    import torch

    from pyro_bfn.bfn import BFN
    from pyro_bfn.training import make_optimizer
    from pyro_bfn.zoo import build_bfn, get_dataset

    device = torch.device(device_name)
    memory = Memory(device)
    timed = _timer(device)
    spec = get_dataset(cfg["dataset"])
    bfn = build_bfn(cfg["dataset"], cfg["backbone"], backbone_options=cfg.get("backbone_options")).to(device).train()
    if s.get("compile"):
        bfn.network.compile()  # as TrainConfig.compile; the warm-up steps absorb the compilation
    data_type = bfn.data_type
    batch = cfg["batch"]
    generator = torch.Generator().manual_seed(s["seed"])
    x = _random_data(data_type, (batch,) + spec.data_shape, generator).to(device)
    params = sum(p.numel() for p in bfn.parameters())
    optimiser = make_optimizer(bfn.parameters(), 1e-4, (0.9, 0.98), 0.01)  # as training: fused AdamW
    discrete = hasattr(data_type, "num_classes")
    out = dict(name=name, config=cfg, params=params, data_type=repr(data_type), memory_method=memory.method,
               memory_baseline_mb=memory.baseline)

    def train_step(autocast_dtype, n_steps=None):
        bfn.autocast_dtype = autocast_dtype
        optimiser.zero_grad(set_to_none=True)
        loss = bfn.loss(x, n_steps=n_steps, reconstruction=False).total.mean()
        loss.backward()
        optimiser.step()

    modes = {"fp32": None, "bf16": torch.bfloat16}
    # memory phases double as the warm-up (discarded)
    mem = {}
    for mode, dtype in modes.items():
        memory.reset()
        for _ in range(s["warmup"]):
            train_step(dtype)
        mem[f"train_{mode}_mb"] = memory.peak()
    times = {mode: [] for mode in modes}
    for _ in range(s["repeats"]):
        for mode, dtype in modes.items():
            times[mode].append(timed(lambda: train_step(dtype)))
    out["train"] = {mode: _summary(v, batch) for mode, v in times.items()}
    if discrete:
        memory.reset()
        for _ in range(s["warmup"]):
            train_step(None, NSTEP_LOSS_STEPS)
        mem["train_nstep_fp32_mb"] = memory.peak()
        out["train_nstep_fp32"] = _summary(
            [timed(lambda: train_step(None, NSTEP_LOSS_STEPS)) for _ in range(s["repeats"])], batch
        )
    bfn.autocast_dtype = None

    # ---- where a float32 step goes
    t = torch.rand(batch, device=device)
    features = data_type.network_features(data_type.sample_input(x, t))

    def backbone_step():
        bfn.zero_grad(set_to_none=True)
        bfn.network(features, t).float().sum().backward()

    backbone_step()
    backbone_times = [timed(backbone_step) for _ in range(s["repeats"])]
    optimiser_times = [timed(optimiser.step) for _ in range(s["repeats"])]
    with torch.no_grad():
        stored = bfn.network(features, t).detach().clone()

    stub_bfn = BFN(data_type, _stored_output_network(stored), spec.data_shape).to(device).train()

    def stub_step(n_steps=None):
        stub_bfn.zero_grad(set_to_none=True)
        stub_bfn.loss(x, n_steps=n_steps, reconstruction=False).total.mean().backward()

    stub_step()
    flow_times = [timed(stub_step) for _ in range(s["repeats"])]
    step_median = out["train"]["fp32"]["median_s"]
    breakdown = dict(
        step_ms=1e3 * step_median,
        backbone_ms=1e3 * statistics.median(backbone_times),
        adamw_ms=1e3 * statistics.median(optimiser_times),
        flow_loss_ms=1e3 * statistics.median(flow_times),
        backbone_times=backbone_times,
        adamw_times=optimiser_times,
        flow_loss_times=flow_times,
    )
    breakdown["flow_loss_share"] = breakdown["flow_loss_ms"] / breakdown["step_ms"]
    breakdown["adamw_share"] = breakdown["adamw_ms"] / breakdown["step_ms"]
    breakdown["backbone_share"] = breakdown["backbone_ms"] / breakdown["step_ms"]
    if discrete:
        stub_step(NSTEP_LOSS_STEPS)
        nstep_times = [timed(lambda: stub_step(NSTEP_LOSS_STEPS)) for _ in range(s["repeats"])]
        breakdown["flow_loss_nstep_ms"] = 1e3 * statistics.median(nstep_times)
        breakdown["flow_loss_nstep_times"] = nstep_times
        breakdown["nstep_over_continuous"] = breakdown["flow_loss_nstep_ms"] / breakdown["flow_loss_ms"]
    out["breakdown"] = breakdown
    del stub_bfn, optimiser
    bfn.zero_grad(set_to_none=True)
    gc.collect()

    # ---- likelihood evaluation (L^inf + L^r) under inference mode
    bfn.eval()

    def evaluate(autocast_dtype):
        bfn.autocast_dtype = autocast_dtype
        with torch.inference_mode():
            bfn.loss(x, n_steps=None, reconstruction=True).total.sum().item()

    for mode, dtype in modes.items():
        memory.reset()
        evaluate(dtype)
        mem[f"eval_{mode}_mb"] = memory.peak()
    eval_times = {mode: [] for mode in modes}
    for _ in range(s["eval_repeats"]):
        for mode, dtype in modes.items():
            eval_times[mode].append(timed(lambda: evaluate(dtype)))
    out["eval"] = {mode: _summary(v, batch) for mode, v in eval_times.items()}
    bfn.autocast_dtype = None

    # ---- sampling, n = 100 steps (heavy configurations: the first steps, extrapolated)
    n_sample = s["sample_steps"]
    timed_steps = s.get("sample_timed_steps")

    class Stop(Exception):
        pass

    def sample_once():
        stamps = [time.perf_counter()]

        def progress(i, n):
            if device.type == "cuda":
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())
            if timed_steps is not None and i >= timed_steps:
                raise Stop

        start = time.perf_counter()
        try:
            bfn.sample(batch, n_sample, device=device, progress=progress)
        except Stop:
            step = statistics.median(b - a for a, b in zip(stamps, stamps[1:]))
            return step * (n_sample + 1)  # n updates + the final network call
        return time.perf_counter() - start

    memory.reset()
    sample_times = [sample_once() for _ in range(s["sample_repeats"])]
    mem["sample_fp32_mb"] = memory.peak()
    out["sample"] = dict(_summary(sample_times, batch), n_steps=n_sample, extrapolated_from=timed_steps)
    out["memory"] = mem
    out["memory"]["params_mb"] = params * 4 / 2**20
    return out


# --------------------------------------------------------------------------- KL worker
def factorised_receiver_kl(x, accuracy, logits, num_samples: int = 10):
    """The reference implementation's n-step KL estimate (per variable, summed over the K
    sender dimensions): a receiver factorised per dimension, each dimension ``d`` a mixture
    ``sum_k p_O(k) N(y_d; alpha (K [k = d] - 1), alpha K)``, and ``num_samples`` sender draws
    (``torch.distributions.MixtureSameFamily`` as in the reference). Here only, for comparison.

    :param x: class indices, shape ``S``; :param accuracy: shape ``S``; :param logits: ``S + (K,)``.
    :returns: shape ``S``.
    """
    import torch
    import torch.distributions as D

    num_classes = logits.shape[-1]
    alpha = accuracy.expand(x.shape)[..., None]
    one_hot = torch.nn.functional.one_hot(x, num_classes).to(logits.dtype)
    std = (num_classes * alpha).sqrt()
    sender = D.Normal(alpha * (num_classes * one_hot - 1), std, validate_args=False)
    classes = torch.eye(num_classes, dtype=logits.dtype, device=logits.device)
    # receiver dimension d, component k: mean alpha (K [k = d] - 1)
    means = alpha[..., None] * (num_classes * classes - 1)
    weights = torch.softmax(logits, -1)[..., None, :].expand(means.shape)
    receiver = D.MixtureSameFamily(
        D.Categorical(probs=weights, validate_args=False),
        D.Normal(means, std[..., None].expand(means.shape), validate_args=False),
        validate_args=False,
    )
    y = sender.sample(torch.Size([num_samples]))
    return (sender.log_prob(y) - receiver.log_prob(y)).mean(0).sum(-1)


def run_kl(name: str, cfg: dict, s: dict, device_name: str) -> dict:
    import torch
    from torch.distributions import kl_divergence

    from pyro_bfn.data_types import DiscreteData
    from pyro_bfn.distributions import CategoricalOutput, continuous_time_kl_rate

    device = torch.device(device_name)
    timed = _timer(device)
    num_classes, beta_1 = cfg["num_classes"], cfg["beta_1"]
    data_type = DiscreteData(num_classes, beta_1)
    n = NSTEP_LOSS_STEPS
    out = dict(name=name, config=cfg, n_steps=n, kl_samples_registered=data_type.kl_samples, factorised_samples=10)

    def registered(x, accuracy, logits):
        output = CategoricalOutput(logits=logits)
        return kl_divergence(data_type.sender(x, accuracy), data_type.receiver(output, accuracy))

    # ---- cost per call on a batch of the data's shape (random i, logits from the flow plus noise)
    generator = torch.Generator().manual_seed(s["seed"])
    shape = tuple(cfg["shape"])
    x = torch.randint(0, num_classes, shape, generator=generator).to(device)
    i = torch.randint(1, n + 1, shape[:1], generator=generator).to(device)
    t = (i - 1).float() / n
    theta = data_type.sample_input(x, t)
    base_logits = (theta.logits + torch.randn(theta.logits.shape, generator=generator).to(device)).detach()
    accuracy = data_type.step_accuracy(i, n, x, torch.float32)
    rate = data_type.rate(t, x)

    estimators = {
        "registered": lambda lg: n * registered(x, accuracy, lg).sum(),
        "factorised_10": lambda lg: n * factorised_receiver_kl(x, accuracy, lg).sum(),
        "continuous_time": lambda lg: (rate * continuous_time_kl_rate(CategoricalOutput(logits=lg), x)).sum(),
    }
    cost = {}
    for key, fn in estimators.items():
        def forward():
            with torch.no_grad():
                fn(base_logits).item()

        def forward_backward():
            lg = base_logits.clone().requires_grad_(True)
            fn(lg).backward()

        forward(), forward_backward()  # warm-up
        fwd = [timed(forward) for _ in range(s["kl_repeats"])]
        both = [timed(forward_backward) for _ in range(s["kl_repeats"])]
        cost[key] = dict(forward_ms=1e3 * statistics.median(fwd), forward_backward_ms=1e3 * statistics.median(both),
                         forward_times=fwd, forward_backward_times=both)
    out["cost"] = cost

    # ---- accuracy: one variable's KL at step i of n, output probability p on the true class
    variables = s["kl_variables"]
    rows = []
    probs_grid = (0.4, 0.5, 0.9) if num_classes == 2 else (0.1, 0.5, 0.9)
    for step in (1, n // 2, n):
        for p in probs_grid:
            xs = torch.randint(0, num_classes, (variables,), generator=generator).to(device)
            other = (1 - p) / (num_classes - 1)
            logits = torch.full((variables, num_classes), math.log(other), device=device)
            logits.scatter_(-1, xs[:, None], math.log(p))
            steps = torch.full((variables,), step, device=device)
            acc = data_type.step_accuracy(steps, n, xs, torch.float32)
            with torch.no_grad():
                if num_classes == 2:
                    exact = registered(xs[:1], acc[:1].double(), logits[:1].double()).item()
                    exact_se = 0.0
                    exact_method = "quadrature (registered KL)"
                else:
                    sender = data_type.sender(xs[:1].expand(1), acc[:1].double())
                    receiver = CategoricalOutput(logits=logits[:1].double()).receiver(acc[:1].double())
                    chunk, draws = min(2**16, s["kl_exact_samples"]), []
                    for c in range(s["kl_exact_samples"] // chunk):
                        torch.manual_seed(10_000 + c)
                        y = sender.sample((chunk,))
                        own = y[..., 0, xs[0]]
                        draws.append(own - torch.logsumexp(receiver.logits + y, -1)[..., 0])
                    draws = torch.cat(draws)
                    exact, exact_se = draws.mean().item(), (draws.std() / math.sqrt(draws.numel())).item()
                    exact_method = f"Monte Carlo, {draws.numel()} joint-receiver draws (float64)"
                per_seed = {"registered": [], "factorised_10": []}
                for seed in range(s["kl_seeds"]):
                    torch.manual_seed(seed)
                    per_seed["registered"].append(registered(xs, acc, logits).double())
                    torch.manual_seed(seed)
                    per_seed["factorised_10"].append(factorised_receiver_kl(xs, acc, logits).double())
            row = dict(step=step, alpha=float(acc[0]), p_true=p, exact=exact, exact_se=exact_se, exact_method=exact_method)
            for key, values in per_seed.items():
                values = torch.stack(values)  # (seeds, variables)
                seed_means = values.mean(1)
                row[key] = dict(
                    mean=values.mean().item(),
                    bias=values.mean().item() - exact,
                    relative_bias=(values.mean().item() - exact) / exact,
                    sd_one_variable=values.std().item(),
                    sd_across_seeds_of_mean=seed_means.std().item() if len(seed_means) > 1 else float("nan"),
                )
            rows.append(row)
    out["accuracy"] = rows
    # the DESIGN.md check of the factorised receiver: K = 2, alpha = 0.81, p = 0.4 -> 0.471 vs 0.399
    if num_classes == 2:
        with torch.no_grad():
            xs = torch.zeros(1, dtype=torch.long, device=device)
            acc = torch.full((1,), 0.81, dtype=torch.float64, device=device)
            logits = torch.log(torch.tensor([[0.4, 0.6]], dtype=torch.float64, device=device))
            torch.manual_seed(0)
            fact = factorised_receiver_kl(xs.expand(2**16), acc.expand(2**16), logits.expand(2**16, 2)).mean().item()
            joint = registered(xs, acc, logits).item()
        out["design_check"] = dict(alpha=0.81, p_true=0.4, joint=joint, factorised=fact, expected=(0.399, 0.471))
    return out



# --------------------------------------------------------------------------- profile mode
#: operator-name prefixes counted as convolution kernels in the operator table of --profile
_CONVOLUTION_OPS = ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::_slow_conv2d",
                    "aten::thnn_conv2d", "aten::_convolution", "aten::slow_conv")


def _operator_table(step, torch, steps: int = 3, rows: int = 10) -> list:
    """Markdown lines: the operators of ``steps`` training steps by self CPU time
    (:mod:`torch.profiler`), and the share of the convolution kernels (forward and backward)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    convolution = sum(e.self_cpu_time_total for e in events if e.key.startswith(_CONVOLUTION_OPS))
    lines = [f"### Operators of {steps} training steps by self CPU time (torch.profiler)", "",
             f"Convolution kernels (forward and backward): {100 * convolution / total:.1f}% of all self time.", "",
             "| operator | self CPU ms per step | share | calls per step |", "|---|---:|---:|---:|"]
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:rows]:
        lines.append(f"| {e.key} | {e.self_cpu_time_total / 1e3 / steps:.2f} | {100 * e.self_cpu_time_total / total:.1f}% | "
                     f"{e.count // steps} |")
    return lines + [""]


def profile_config(name: str, cfg: dict, repeats: int, seed: int) -> str:
    """CPU-time profile of one training step and one evaluation pass of a model
    configuration, in this process with one torch thread, timed with ``time.thread_time`` (CPU
    time of the calling thread, which with one thread does all the work): robust to
    preemption by other processes, unlike wall-clock profilers on a shared machine.

    The step is decomposed range by range with the same public calls that
    ``BFN.continuous_time_loss`` / ``BFN.reconstruction_loss`` make; then flow+loss alone
    (the stub network of the speed table) with distribution validation on and off, and the
    top functions by own CPU time (``cProfile`` with the thread-time clock).
    """
    import cProfile
    import io
    import pstats

    import torch

    from pyro_bfn.bfn import BFN
    from pyro_bfn.distributions import continuous_time_kl_rate
    from pyro_bfn.training import make_optimizer
    from pyro_bfn.zoo import build_bfn, get_dataset

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    clock = time.thread_time
    spec = get_dataset(cfg["dataset"])
    bfn = build_bfn(cfg["dataset"], cfg["backbone"], backbone_options=cfg.get("backbone_options")).train()
    data_type, batch = bfn.data_type, cfg["batch"]
    x = _random_data(data_type, (batch,) + spec.data_shape, torch.Generator().manual_seed(seed))
    optimiser = make_optimizer(bfn.parameters(), 1e-4)
    discrete = hasattr(data_type, "num_classes")

    def per_example_sum(value):
        return value.reshape(value.shape[0], -1).sum(-1)

    ranges = {}

    def timed(label, fn):
        start = clock()
        value = fn()
        ranges.setdefault(label, []).append(1e3 * (clock() - start))
        return value

    def step():
        optimiser.zero_grad(set_to_none=True)
        timed("input validation (check_data)", lambda: data_type.check_data(x))
        t = torch.rand(batch)
        theta = timed("flow: theta ~ p_F (sample_input)", lambda: data_type.sample_input(x, t))
        features = timed("network_features", lambda: data_type.network_features(theta))
        out = timed("NETWORK forward", lambda: bfn.network(features, t))
        output = timed("output distribution", lambda: data_type.output(out, theta, t))
        loss = timed("loss: rate x KL rate, sum",
                     lambda: per_example_sum(data_type.rate(t, x) * continuous_time_kl_rate(output, x)).mean())
        timed("backward (network + flow/loss)", loss.backward)
        timed("AdamW step", optimiser.step)

    def evaluate():
        with torch.inference_mode():
            timed("input validation (check_data)", lambda: data_type.check_data(x))
            for label, t in (("", torch.rand(batch)), (" (t=1)", torch.ones(batch))):
                theta = timed("flow: theta ~ p_F (sample_input)" + label, lambda: data_type.sample_input(x, t))
                features = timed("network_features" + label, lambda: data_type.network_features(theta))
                out = timed("NETWORK forward" + label, lambda: bfn.network(features, t))
                output = timed("output distribution" + label, lambda: data_type.output(out, theta, t))
                if label:
                    timed("reconstruction log_prob",
                          lambda: -per_example_sum(data_type.reconstruction_distribution(output).log_prob(x)))
                else:
                    timed("loss: rate x KL rate, sum",
                          lambda: per_example_sum(data_type.rate(t, x) * continuous_time_kl_rate(output, x)))

    lines = [f"## {name}: {cfg['dataset']} / {cfg['backbone']}, batch {batch}",
             "", f"1 torch thread, CPU time of the thread (`time.thread_time`), median over {repeats} calls after 2 "
             f"warm-up calls; load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}.", ""]
    for title, fn, mode in (("Training step (fp32, continuous-time loss, AdamW)", step, True),
                            ("Evaluation pass L^inf + L^r (fp32, eval mode, inference_mode)", evaluate, False)):
        bfn.train(mode)
        for _ in range(2):
            fn()
        ranges.clear()
        for _ in range(repeats):
            fn()
        rows = [(k, statistics.median(v)) for k, v in ranges.items()]
        total = sum(v for _, v in rows)
        outside = sum(v for k, v in rows if not k.startswith(("NETWORK", "backward", "AdamW")))
        lines += [f"### {title}", "", "| range | CPU ms | share |", "|---|---:|---:|"]
        lines += [f"| {k} | {v:.2f} | {100 * v / total:.2f}% |" for k, v in rows]
        lines += [f"| total | {total:.1f} | 100% |", "",
                  f"Forward-side ranges outside the network: {outside:.2f} ms = {100 * outside / total:.2f}% "
                  "(their backward is inside the backward range; see the stub numbers below).", ""]
    bfn.train()
    lines += _operator_table(step, torch)

    t = torch.rand(batch)
    with torch.no_grad():
        stored = bfn.network(data_type.network_features(data_type.sample_input(x, t)), t).clone()

    stub = BFN(data_type, _stored_output_network(stored), spec.data_shape)

    def stub_step(n_steps=None):
        stub.zero_grad(set_to_none=True)
        stub.loss(x, n_steps=n_steps, reconstruction=False).total.mean().backward()

    def stub_eval():
        stub.eval()
        with torch.inference_mode():
            stub.loss(x, reconstruction=True).total.sum().item()
        stub.train()

    def cpu_median(fn, count):
        for _ in range(2):
            fn()
        values = []
        for _ in range(count):
            start = clock()
            fn()
            values.append(1e3 * (clock() - start))
        return statistics.median(values)

    cases = [("continuous-time training step (fwd+bwd)", stub_step, 20), ("evaluation L^inf + L^r", stub_eval, 20)]
    if discrete:
        cases.append((f"n-step training step, n = {NSTEP_LOSS_STEPS} (fwd+bwd)", lambda: stub_step(NSTEP_LOSS_STEPS), 5))
    lines += ["### Flow + loss alone (network replaced by a stub), CPU ms", "",
              "| case | validate_args on (default) | off |", "|---|---:|---:|"]
    for label, fn, count in cases:
        on = cpu_median(fn, count)
        torch.distributions.Distribution.set_default_validate_args(False)
        try:
            off = cpu_median(fn, count)
        finally:
            torch.distributions.Distribution.set_default_validate_args(True)
        lines.append(f"| {label} | {on:.2f} | {off:.2f} |")
    lines.append("")
    for label, fn, count in cases:
        profiler = cProfile.Profile(clock)
        profiler.enable()
        for _ in range(count):
            fn()
        profiler.disable()
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(12)
        text = [line for line in stream.getvalue().splitlines() if line.strip() and not line.lstrip().startswith(("Ordered", "List reduced"))]
        text = [line.replace(str(HERE.parent) + "/", "").replace(sys.prefix + "/", "") for line in text]
        lines += [f"### cProfile (thread-time clock): {count} x stub {label}, by own time", "", "```"] + text + ["```", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- worker entry point
def worker(args) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = CONFIGS[args.worker]
    s = dict(SETTINGS["quick" if args.quick else "full"])
    if cfg.get("heavy") and not args.quick:
        s.update(SETTINGS["heavy"])
    if "sample_timed_steps" in cfg and not args.quick:
        s["sample_timed_steps"] = cfg["sample_timed_steps"]
    for key in ("warmup", "repeats"):
        if getattr(args, key) is not None:
            s[key] = getattr(args, key)
    s["seed"] = args.seed
    s["compile"] = bool(args.compile)
    load_before = _load_average()
    start = time.perf_counter()
    run = run_model if cfg["kind"] == "model" else run_kl
    result = run(args.worker, cfg, s, args.device)
    import pyro

    result.update(
        settings=s,
        seconds=time.perf_counter() - start,
        load_before=load_before,
        load_after=_load_average(),
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        pyro=pyro.__version__,
        device=args.device,
    )
    with open(args.result, "w") as handle:
        json.dump(result, handle)


# --------------------------------------------------------------------------- tables
def _fmt(value, digits=1):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _pair(summary):
    """``median / best`` throughput: on a shared machine the best repeat is the one least hit by
    other processes."""
    return f"{_fmt(summary['per_s'])} / {_fmt(summary['best_per_s'])}"


def _load(r):
    return f"{r['load_before']:.1f}→{r['load_after']:.1f}"


TRAIN_COLUMNS = [
    "config", "data", "backbone", "params", "batch", "train fp32 ex/s (median / best)", "train bf16 ex/s (median / best)",
    "bf16 speed-up (medians)", "n-step train fp32 ex/s (median / best)", "flow+loss % of step", "AdamW % of step", "n-step / cont. loss cost",
    "peak MB fp32", "peak MB bf16", "load",
]
EVAL_COLUMNS = [
    "config", "batch", "eval fp32 ex/s (median / best)", "eval bf16 ex/s (median / best)", "eval peak MB", "sample n", "samples/s", "sample peak MB", "load",
]
KL_COST_COLUMNS = [
    "config", "K", "batch shape", "registered KL fwd ms", "registered KL fwd+bwd ms", "factorised-10 fwd ms",
    "factorised-10 fwd+bwd ms", "cont.-time rate fwd+bwd ms", "registered / cont.", "factorised / cont.", "load",
]
KL_ACCURACY_COLUMNS = [
    "config", "i/n", "alpha", "p_O(x)", "exact joint KL", "registered mean", "registered sd (1 var)",
    "factorised-10 mean", "factorised-10 sd (1 var)", "factorised bias", "factorised rel. bias",
]


def _row(cells):
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(columns, rows):
    aligns = ["---" if i < 1 else "---:" for i in range(len(columns))]
    return "\n".join([_row(columns), _row(aligns)] + [_row(r) for r in rows])


def render(results: list, meta: dict) -> str:
    models = [r for r in results if r.get("config", {}).get("kind") == "model" and "error" not in r]
    kls = [r for r in results if r.get("config", {}).get("kind") == "kl" and "error" not in r]
    failed = [r for r in results if "error" in r]
    lines = [
        "# Speed of pyro-bfn (training, evaluation, sampling, n-step KL)",
        "",
        f"Command: `{meta['command']}`  ",
        f"Date: {meta['date']}; seed {meta['seed']}; torch {meta.get('torch')}, pyro {meta.get('pyro')}; "
        f"device {meta['device']}; CPU {meta['cpu']} ({meta['cores']} cores; {meta.get('cpu_features', 'features not recorded')}); {meta.get('threads')} torch threads; "
        f"git {meta['git']}; environment {', '.join(f'{k}={v}' for k, v in (meta.get('env') or {}).items() if v) or 'no OMP/MKL variables set'}  ",
        f"Load average (1, 5, 15 min) at start: {meta['load_start']}; at end: {meta['load_end']}. "
        "The `load` column is the 1-minute load before→after each configuration.",
        "",
    ]
    if models:
        train_rows, eval_rows = [], []
        for r in models:
            c, b, m = r["config"], r["breakdown"], r["memory"]
            nstep = r.get("train_nstep_fp32")
            train_rows.append([
                r["name"], c["data"], c["backbone"], (f"{r['params'] / 1e6:.2f}M" if r["params"] >= 1e5 else f"{r['params'] / 1e3:.1f}k"), c["batch"],
                _pair(r["train"]["fp32"]), _pair(r["train"]["bf16"]),
                f"{r['train']['bf16']['per_s'] / r['train']['fp32']['per_s']:.2f}x",
                _pair(nstep) if nstep else "–",
                f"{100 * b['flow_loss_share']:.2f}", f"{100 * b['adamw_share']:.2f}",
                f"{b['nstep_over_continuous']:.1f}x" if "nstep_over_continuous" in b else "–",
                _fmt(m["train_fp32_mb"]), _fmt(m["train_bf16_mb"]), _load(r),
            ])
            sample = r["sample"]
            mark = "*" if sample.get("extrapolated_from") else ""
            eval_rows.append([
                r["name"], c["batch"], _pair(r["eval"]["fp32"]), _pair(r["eval"]["bf16"]),
                _fmt(m["eval_fp32_mb"]), sample["n_steps"], _fmt(sample["per_s"], 2) + mark,
                _fmt(m["sample_fp32_mb"]), _load(r),
            ])
        lines += ["## Training (continuous-time loss; forward + backward + AdamW step)", "", _table(TRAIN_COLUMNS, train_rows), ""]
        lines += ["## Likelihood evaluation and sampling (float32 unless marked)", "", _table(EVAL_COLUMNS, eval_rows), ""]
        lines += ["### Step breakdown, float32 (median ms)", "",
                  _table(["config", "step", "backbone fwd+bwd", "AdamW", "flow+loss fwd+bwd", "flow+loss n-step fwd+bwd",
                          "step - backbone - AdamW"],
                         [[r["name"], _fmt(r["breakdown"]["step_ms"]), _fmt(r["breakdown"]["backbone_ms"]),
                           _fmt(r["breakdown"]["adamw_ms"], 2), _fmt(r["breakdown"]["flow_loss_ms"], 2),
                           _fmt(r["breakdown"].get("flow_loss_nstep_ms"), 2),
                           _fmt(r["breakdown"]["step_ms"] - r["breakdown"]["backbone_ms"] - r["breakdown"]["adamw_ms"], 1)]
                          for r in models]), ""]
    if kls:
        cost_rows, acc_rows = [], []
        for r in kls:
            c, k = r["config"], r["cost"]
            cont = k["continuous_time"]["forward_backward_ms"]
            cost_rows.append([
                r["name"], c["num_classes"], "x".join(map(str, c["shape"])),
                _fmt(k["registered"]["forward_ms"], 2), _fmt(k["registered"]["forward_backward_ms"], 2),
                _fmt(k["factorised_10"]["forward_ms"], 2), _fmt(k["factorised_10"]["forward_backward_ms"], 2),
                _fmt(cont, 2), f"{k['registered']['forward_backward_ms'] / cont:.1f}x",
                f"{k['factorised_10']['forward_backward_ms'] / cont:.1f}x", _load(r),
            ])
            for a in r["accuracy"]:
                exact = f"{a['exact']:.4f}" + (f" ± {a['exact_se']:.4f}" if a["exact_se"] else "")
                acc_rows.append([
                    r["name"], f"{a['step']}/{r['n_steps']}", f"{a['alpha']:.3f}", a["p_true"], exact,
                    f"{a['registered']['mean']:.4f}", f"{a['registered']['sd_one_variable']:.4f}",
                    f"{a['factorised_10']['mean']:.4f}", f"{a['factorised_10']['sd_one_variable']:.4f}",
                    f"{a['factorised_10']['bias']:+.4f}", f"{100 * a['factorised_10']['relative_bias']:+.1f}%",
                ])
        lines += [f"## Discrete n-step KL (n = {NSTEP_LOSS_STEPS}): registered joint-receiver KL vs the reference's "
                  "factorised 10-sample estimate", "", "Cost per call on a batch of the data's shape (n times the "
                  "KL summed over the batch; backward to the output logits):", "", _table(KL_COST_COLUMNS, cost_rows), "",
                  "Accuracy for one variable at step i (alpha_i), output probability p_O(x) on the true class, the "
                  "rest uniform; mean and sd over seeds x variables:", "", _table(KL_ACCURACY_COLUMNS, acc_rows), ""]
        for r in kls:
            if "design_check" in r:
                d = r["design_check"]
                lines.append(f"Check against DESIGN.md (K = 2, alpha = 0.81, p = 0.4; expected joint 0.399, factorised "
                             f"0.471): joint {d['joint']:.3f}, factorised {d['factorised']:.3f}.")
        lines.append("")
    if failed:
        lines += ["## Failed configurations", ""] + [f"- {r['name']}: {r['error']}" for r in failed] + [""]
    lines += ["## Notes", ""] + [f"- {note}" for note in notes(models, kls, meta)] + [""]
    return "\n".join(lines)


def notes(models, kls, meta) -> list:
    out = [
        "Every configuration ran in a fresh subprocess on random data of the dataset's type and shape; "
        "warm-up steps discarded, medians of the repeats (settings in the JSON); fp32 and bf16 timed in alternation.",
        "Peak memory: " + (models[0]["memory_method"] if models else "–") + ", above the resident size after imports "
        "(parameters, gradients, AdamW state, activations, allocator caches).",
        "flow+loss = the whole step with the network replaced by a stub returning a stored output: drawing theta from "
        "the flow, input validation, the output distribution, the loss and their backward; "
        "`step - backbone - AdamW` is the same quantity by subtraction (noisy).",
        f"n-step losses use n = {NSTEP_LOSS_STEPS}; `n-step / cont. loss cost` compares flow+loss of the two losses.",
        "Sampling: `*` = per-step time of the first steps extrapolated to n updates + the final network call.",
    ]
    by_name = {r["name"]: r for r in models}
    measured = meta.get("reference")
    for name in ("mnist_small_variant_b8", "mnist_small_variant_b32", "mnist_paper_b8"):
        if name not in by_name:
            continue
        r = by_name[name]
        ours = (f"{name}: ours {r['train']['fp32']['per_s']:.1f} ex/s fp32 median, {r['train']['fp32']['best_per_s']:.1f} best "
                f"({r['train']['bf16']['per_s']:.1f} / {r['train']['bf16']['best_per_s']:.1f} bf16); "
                f"flow+loss {100 * r['breakdown']['flow_loss_share']:.2f}% of a step")
        if measured and name in measured["configs"]:
            m = measured["configs"][name]
            out.append(
                f"{ours}. Side by side on this machine ({measured['cpu']}; {measured['cpu_features']}; "
                f"{measured['date']}; `reference_side_by_side.md`), same network, float32, steps alternated: "
                f"reference {m['reference_ex_s_median']:.1f} ex/s, ours {m['ours_ex_s_median']:.1f} ex/s "
                f"({m['speed_up']:.2f}x); flow+loss {m['reference_flow_loss_ms']:.2f} vs {m['ours_flow_loss_ms']:.2f} ms "
                f"({100 * m['reference_flow_share']:.2f}% vs {100 * m['ours_flow_share']:.2f}% of a step); n-step (n = 10) "
                f"flow+loss {m['reference_nstep_ms']:.1f} vs {m['ours_nstep_ms']:.1f} ms."
            )
        elif name in REFERENCE:
            ref = REFERENCE[name]
            out.append(f"{ours}; {REFERENCE_SOURCE}: {ref['ex_s'][0]}-{ref['ex_s'][1]} ex/s, flow+loss ~{ref['flow_share']}%.")
    binary = [r for r in models if "nstep_over_continuous" in r["breakdown"] and "num_classes=2," in r["data_type"]]
    if binary:
        ratios = ", ".join(f"{r['name']} {r['breakdown']['nstep_over_continuous']:.1f}x" for r in binary)
        out.append(f"Binary n-step loss / continuous-time loss (flow+loss fwd+bwd): {ratios}; the reference's is "
                   f"~{REFERENCE['binary_nstep_over_continuous']:.0f}x ({REFERENCE_SOURCE}).")
    if meta.get("note"):
        out.append(meta["note"])
    return out


# --------------------------------------------------------------------------- driver
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from provenance import cpu_features as _cpu_features  # noqa: E402  (benchmarks/provenance.py)
from provenance import cpu_model as _cpu_model  # noqa: E402
from provenance import git_revision as _git  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="*", default=None,
                        help=f"names (default: all but the tiny ones; --quick: the tiny ones). Known: {', '.join(CONFIGS)}")
    parser.add_argument("--quick", action="store_true", help="tiny settings (1 warm-up, 2 repeats, 5 sampling steps)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per worker (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=None, help="override the warm-up steps")
    parser.add_argument("--repeats", type=int, default=None, help="override the timed repeats")
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, help="directory for speed.md and speed.json")
    parser.add_argument("--omp-wait-policy", choices=("inherit", "PASSIVE", "ACTIVE"), default="inherit",
                        help="OMP_WAIT_POLICY of the workers (PASSIVE: idle OpenMP threads sleep instead of spinning, "
                        "which matters when other processes share the cores); default: inherit the environment")
    parser.add_argument("--note", default="", help="a sentence added to the notes of the table")
    parser.add_argument("--reference", type=pathlib.Path, default=None, metavar="JSON",
                        help="a side-by-side measurement of the reference implementation on this machine "
                             "(benchmarks/results/reference_side_by_side.json) to compare with, instead of the issue's figures")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per configuration")
    parser.add_argument("--profile", nargs="+", default=None, metavar="CONFIG",
                        help="instead of the tables: CPU-time profile (1 thread) of a training step and an evaluation "
                        "pass of these model configs; writes speed.profile.md")
    parser.add_argument("--render", type=pathlib.Path, default=None, metavar="JSON",
                        help="re-render speed.md from a speed.json (no measurement); --note is appended to its notes")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile each backbone (in place, as TrainConfig.compile) before timing it")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if args.render:
        raw = json.loads(args.render.read_text())
        if args.note:
            raw["meta"]["note"] = " ".join(filter(None, [raw["meta"].get("note", ""), args.note]))
        table = render(raw["results"], raw["meta"])
        print(table)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "speed.md").write_text(table)
        if args.render.resolve() != (args.out / "speed.json").resolve():
            (args.out / "speed.json").write_text(json.dumps(raw, indent=1))
        else:
            args.render.write_text(json.dumps(raw, indent=1))
        return 0
    if args.profile:
        bad = [n for n in args.profile if CONFIGS.get(n, {}).get("kind") != "model"]
        if bad:
            parser.error(f"--profile takes model configs; not: {bad}")
        command = " ".join(shlex.quote(a) for a in ["python", "benchmarks/speed.py"] + (sys.argv[1:] if argv is None else argv))
        import pyro
        import torch

        header = [
            "# CPU-time profile of a training step and an evaluation pass", "",
            f"Command: `{command}`  ", f"Date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; seed {args.seed}; "
            f"torch {torch.__version__}, pyro {pyro.__version__}; CPU {_cpu_model()}; git {_git()}", "",
        ]
        sections = [profile_config(n, CONFIGS[n], args.repeats or 5, args.seed) for n in args.profile]
        text = "\n".join(header) + "\n" + "\n".join(sections)
        print(text)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "speed.profile.md").write_text(text)
        return 0

    names = args.configs or (QUICK_CONFIGS if args.quick else DEFAULT_CONFIGS)
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown configs {unknown}; known: {', '.join(CONFIGS)}")
    command = " ".join(shlex.quote(a) for a in ["python", "benchmarks/speed.py"] + (sys.argv[1:] if argv is None else argv))
    meta = dict(command=command, date=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), seed=args.seed,
                device=args.device, cpu=_cpu_model(), cpu_features=_cpu_features(), cores=os.cpu_count(), git=_git(),
                load_start=", ".join(f"{v:.2f}" for v in os.getloadavg()), note=args.note, quick=args.quick)
    if args.reference is not None:
        try:
            reference = json.loads(args.reference.read_text())
        except (OSError, ValueError) as error:
            parser.error(f"--reference {args.reference}: {error}")
        meta["reference"] = {k: reference[k] for k in ("cpu", "cpu_features", "date", "configs")}
    worker_env = dict(os.environ)
    if args.omp_wait_policy != "inherit":
        worker_env["OMP_WAIT_POLICY"] = args.omp_wait_policy
    meta["env"] = {k: worker_env.get(k) for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "KMP_BLOCKTIME")}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            result_path = pathlib.Path(tmp) / f"{name}.json"
            cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", name, "--result", str(result_path),
                   "--device", args.device, "--seed", str(args.seed)]
            for flag in ("threads", "warmup", "repeats"):
                if getattr(args, flag) is not None:
                    cmd += [f"--{flag}", str(getattr(args, flag))]
            if args.quick:
                cmd.append("--quick")
            if args.compile:
                cmd.append("--compile")
            print(f"[speed] {name} (load {os.getloadavg()[0]:.2f}) ...", file=sys.stderr, flush=True)
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=worker_env)
                if proc.returncode != 0:
                    raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}")
                results.append(json.loads(result_path.read_text()))
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                print(f"[speed] {name} failed: {error}", file=sys.stderr, flush=True)
                results.append(dict(name=name, config=CONFIGS[name], error=str(error)))
    meta["load_end"] = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    ok = [r for r in results if "error" not in r]
    if ok:
        meta.update(torch=ok[0]["torch"], pyro=ok[0]["pyro"], threads=ok[0]["threads"])
    table = render(results, meta)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speed.md").write_text(table)
    (args.out / "speed.json").write_text(json.dumps(dict(meta=meta, results=results), indent=1))
    return 0 if len(ok) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
