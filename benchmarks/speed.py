"""Training, evaluation and sampling speed of named BFN configurations, and where a training
step goes.

One command prints Markdown tables and writes ``benchmarks/results/speed.md`` and
``benchmarks/results/speed.json`` (raw numbers, command, seed, torch / pyro versions, CPU
model and vector features, threads, load average)::

    python benchmarks/speed.py                      # every default configuration
    python benchmarks/speed.py --quick              # tiny configurations, a smoke test
    python benchmarks/speed.py --configs mnist_small_variant_b8 --threads 2
    python benchmarks/speed.py --reference benchmarks/results/reference_side_by_side.json
    python benchmarks/speed.py --reference /path/to/bayesian-flow-networks --threads 2

The configurations are the table of ``speed_configs.py``. For each (a dataset's data type, a
named backbone, a batch size), in a fresh subprocess (so that the peak-memory numbers belong to
that configuration alone):

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

The other speed studies: ``speed_losses.py`` (the discrete n-step KL: exact against the
reference's factorised estimate, cost and accuracy) and ``speed_profile.py`` (a per-operator
CPU-time profile of a step).

Warm-up steps are discarded; every reported time is the median over the repeats. Numbers on
a shared machine are noisy: the 1-minute load average before and after each configuration is
in the tables.

CPU budget: the default configurations (with the n-step KL study, then part of this script)
took 19 minutes with 2 threads on a quiet 2-core AVX2-only CPU (``speed.md``; its bf16 columns
are slow there, which is most of the time) and 4 minutes on an AVX512-BF16 CPU
(``speed.avx512_bf16.md``); ``--compile`` adds several minutes of compilation per configuration.

``--reference DIR``, with ``DIR`` a checkout of the reference implementation that the user
obtains (``git clone https://github.com/nnaisense/bayesian-flow-networks``; never vendored or
committed here), imports its model code from there, builds the same networks and times both
implementations side by side in this process, steps alternated (``reference_adapter.py``):
training (small net batch 8 and 32, paper net batch 8), evaluation (batch 100), sampling
(batch 16, 100 steps), and the share of a step outside the network; it writes
``reference_side_by_side.md`` / ``.json`` instead of the tables above (``--quick``: a tiny smoke run).
``--reference benchmarks/results/reference_side_by_side.json`` (a file) puts such a measurement
into the notes of the tables above; without it the notes quote the issue's figures.
``--render speed.json`` re-renders the tables of a saved run (the model rows of a ``speed.json``
written before the n-step KL study moved to ``speed_losses.py`` included).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import harness
from speed_configs import (CONFIGS, DEFAULT_CONFIGS, NSTEP_LOSS_STEPS, QUICK_CONFIGS, SAMPLE_STEPS,
                           stored_output_network)

# settings: full, heavy (fewer repeats, sampling extrapolated), quick
SETTINGS = {
    "full": dict(warmup=2, repeats=5, eval_repeats=5, sample_repeats=1, sample_steps=SAMPLE_STEPS),
    "heavy": dict(warmup=1, repeats=3, eval_repeats=3, sample_repeats=1, sample_steps=SAMPLE_STEPS, sample_timed_steps=5),
    "quick": dict(warmup=1, repeats=2, eval_repeats=2, sample_repeats=1, sample_steps=5),
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


# --------------------------------------------------------------------------- peak memory
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


# --------------------------------------------------------------------------- worker
def run_model(name: str, s: dict, device_name: str) -> dict:
    import gc
    from functools import partial

    import torch

    from pyro_bfn.bfn import BFN
    from pyro_bfn.training import make_optimizer
    from speed_configs import build

    cfg = CONFIGS[name]
    device = torch.device(device_name)
    memory = Memory(device)
    timed = harness.timer(device)
    bfn, spec, x = build(name, s["seed"])
    bfn = bfn.to(device)
    x = x.to(device)
    if s.get("compile"):
        bfn.network.compile()  # as TrainConfig.compile; the warm-up steps absorb the compilation
    data_type = bfn.data_type
    batch = cfg["batch"]
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
    mem = {}
    for mode, dtype in modes.items():  # the memory phases double as the warm-up (discarded)
        memory.reset()
        for _ in range(s["warmup"]):
            train_step(dtype)
        mem[f"train_{mode}_mb"] = memory.peak()
    times = harness.alternate({mode: partial(train_step, dtype) for mode, dtype in modes.items()}, s["repeats"], timed)
    out["train"] = {mode: harness.throughput(v, batch) for mode, v in times.items()}
    nstep_step = partial(train_step, None, NSTEP_LOSS_STEPS)
    if discrete:
        memory.reset()
        for _ in range(s["warmup"]):
            nstep_step()
        mem["train_nstep_fp32_mb"] = memory.peak()
        out["train_nstep_fp32"] = harness.throughput([timed(nstep_step) for _ in range(s["repeats"])], batch)
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
    stub_bfn = BFN(data_type, stored_output_network(stored), spec.data_shape).to(device).train()

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
    for part in ("flow_loss", "adamw", "backbone"):
        breakdown[f"{part}_share"] = breakdown[f"{part}_ms"] / breakdown["step_ms"]
    if discrete:
        stub_step(NSTEP_LOSS_STEPS)
        nstep_times = [timed(partial(stub_step, NSTEP_LOSS_STEPS)) for _ in range(s["repeats"])]
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
    eval_times = harness.alternate({mode: partial(evaluate, dtype) for mode, dtype in modes.items()}, s["eval_repeats"],
                                   timed)
    out["eval"] = {mode: harness.throughput(v, batch) for mode, v in eval_times.items()}
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
    out["sample"] = dict(harness.throughput(sample_times, batch), n_steps=n_sample, extrapolated_from=timed_steps)
    out["memory"] = mem
    out["memory"]["params_mb"] = params * 4 / 2**20
    return out


def worker(args) -> None:
    """Measure one configuration in this (fresh) process and write its JSON to ``args.result``."""
    import torch

    harness.set_threads(args.threads)
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
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    result = run_model(args.worker, s, args.device)
    result.update(settings=s, seconds=time.perf_counter() - start, load_before=load_before,
                  load_after=os.getloadavg()[0], threads=torch.get_num_threads(), device=args.device,
                  **{k: v for k, v in harness.versions().items() if k in ("torch", "pyro")})
    pathlib.Path(args.result).write_text(json.dumps(result))


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
    "bf16 speed-up (medians)", "n-step train fp32 ex/s (median / best)", "flow+loss % of step", "AdamW % of step",
    "n-step / cont. loss cost", "peak MB fp32", "peak MB bf16", "load",
]
EVAL_COLUMNS = [
    "config", "batch", "eval fp32 ex/s (median / best)", "eval bf16 ex/s (median / best)", "eval peak MB", "sample n",
    "samples/s", "sample peak MB", "load",
]
BREAKDOWN_COLUMNS = ["config", "step", "backbone fwd+bwd", "AdamW", "flow+loss fwd+bwd", "flow+loss n-step fwd+bwd",
                     "step - backbone - AdamW"]


def _is_model(result: dict) -> bool:
    return result.get("config", {}).get("kind", "model") == "model"  # results of older runs hold "kl" rows too


def render(results: list, meta: dict) -> str:
    models = [r for r in results if _is_model(r) and "error" not in r]
    failed = [r for r in results if "error" in r]
    env = ", ".join(f"{k}={v}" for k, v in (meta.get("env") or {}).items() if v) or "no OMP/MKL variables set"
    lines = [*harness.header_lines(meta, "Speed of pyro-bfn (training, evaluation, sampling)"),
             f"Device {meta.get('device', 'cpu')}; environment {env}. The `load` column is the 1-minute load "
             "before→after each configuration.", ""]
    if models:
        train_rows, eval_rows, breakdown_rows = [], [], []
        for r in models:
            c, b, m = r["config"], r["breakdown"], r["memory"]
            nstep = r.get("train_nstep_fp32")
            params = f"{r['params'] / 1e6:.2f}M" if r["params"] >= 1e5 else f"{r['params'] / 1e3:.1f}k"
            train_rows.append([
                r["name"], c["data"], c["backbone"], params, c["batch"],
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
            breakdown_rows.append([
                r["name"], _fmt(b["step_ms"]), _fmt(b["backbone_ms"]), _fmt(b["adamw_ms"], 2), _fmt(b["flow_loss_ms"], 2),
                _fmt(b.get("flow_loss_nstep_ms"), 2), _fmt(b["step_ms"] - b["backbone_ms"] - b["adamw_ms"], 1),
            ])
        lines += ["## Training (continuous-time loss; forward + backward + AdamW step)", "",
                  harness.markdown_table(TRAIN_COLUMNS, train_rows), ""]
        lines += ["## Likelihood evaluation and sampling (float32 unless marked)", "",
                  harness.markdown_table(EVAL_COLUMNS, eval_rows), ""]
        lines += ["### Step breakdown, float32 (median ms)", "", harness.markdown_table(BREAKDOWN_COLUMNS, breakdown_rows), ""]
    if failed:
        lines += ["## Failed configurations", ""] + [f"- {r['name']}: {r['error']}" for r in failed] + [""]
    lines += ["## Notes", ""] + [f"- {note}" for note in notes(models, meta)] + [""]
    return "\n".join(lines)


def notes(models: list, meta: dict) -> list:
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
            nstep = (f"; n-step (n = 10) flow+loss {m['reference_nstep_ms']:.1f} vs {m['ours_nstep_ms']:.1f} ms"
                     if "reference_nstep_ms" in m else "")
            out.append(
                f"{ours}. Side by side on this machine ({measured['cpu']}; {measured['cpu_features']}; "
                f"{measured['date']}; `reference_side_by_side.md`), same network, float32, steps alternated: "
                f"reference {m['reference_ex_s_median']:.1f} ex/s, ours {m['ours_ex_s_median']:.1f} ex/s "
                f"({m['speed_up']:.2f}x); flow+loss {m['reference_flow_loss_ms']:.2f} vs {m['ours_flow_loss_ms']:.2f} ms "
                f"({100 * m['reference_flow_share']:.2f}% vs {100 * m['ours_flow_share']:.2f}% of a step){nstep}."
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
def _rerender(args) -> int:
    saved = harness.load_saved(args.render)
    meta = saved["meta"]
    if args.note:
        meta["note"] = " ".join(filter(None, [meta.get("note", ""), args.note]))
    # every row is kept in the JSON (an older speed.json also holds the n-step KL rows of speed_losses.py)
    harness.write_results(args.out, "speed", render(saved["results"], meta), meta, results=saved["results"])
    return 0


def _side_by_side(parser, args, argv) -> int:
    """``--reference DIR``: the reference implementation and pyro-bfn timed in this process."""
    import reference_adapter

    try:
        reference_adapter.check_checkout(args.reference)
    except reference_adapter.ReferenceCheckoutError as error:
        parser.error(str(error))
    harness.set_threads(args.threads)
    meta = harness.provenance(__file__, argv, seed=args.seed, threads=args.threads)
    meta.update(device="cpu", note=args.note, quick=args.quick)
    result = reference_adapter.side_by_side(args.reference, quick=args.quick, seed=args.seed,
                                            log=lambda line: print(line, file=sys.stderr, flush=True))
    harness.finish(meta)
    meta.update(reference_git=result["reference_git"], default_autocast=result["default_autocast"])
    harness.write_results(args.out, "reference_side_by_side", reference_adapter.render(result, meta), meta,
                          configs=result["configs"], rows=result["rows"], settings=result["settings"])
    return 0


def main(argv=None) -> int:
    parser = harness.parser(__doc__, threads=None, render="re-render speed.md from a speed.json (no measurement); "
                            "--note is appended to its notes")
    harness.add_configs(parser, CONFIGS, DEFAULT_CONFIGS, QUICK_CONFIGS,
                        "tiny configurations and settings (1 warm-up, 2 repeats, 5 sampling steps)")
    parser.add_argument("--warmup", type=harness.positive_int, default=None, help="override the warm-up steps")
    parser.add_argument("--repeats", type=harness.positive_int, default=None, help="override the timed repeats")
    parser.add_argument("--omp-wait-policy", choices=("inherit", "PASSIVE", "ACTIVE"), default="inherit",
                        help="OMP_WAIT_POLICY of the workers (PASSIVE: idle OpenMP threads sleep instead of spinning, "
                        "which matters when other processes share the cores); default: inherit the environment")
    parser.add_argument("--note", default="", help="a sentence added to the notes of the table")
    parser.add_argument("--reference", type=pathlib.Path, default=None, metavar="DIR|JSON",
                        help="DIR: a checkout of the reference implementation (git clone "
                             "https://github.com/nnaisense/bayesian-flow-networks): time it side by side with pyro-bfn "
                             "and write reference_side_by_side.md/.json; JSON: such a measurement "
                             "(benchmarks/results/reference_side_by_side.json) for the notes, instead of the issue's figures")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per configuration")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile each backbone (in place, as TrainConfig.compile) before timing it")
    parser.add_argument("--profile", nargs="+", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.profile:
        parser.error("the profile is its own study now: python benchmarks/speed_profile.py " + " ".join(args.profile))
    if args.worker:
        worker(args)
        return 0
    if args.render:
        return _rerender(args)

    if args.reference is not None and not args.reference.is_file():
        return _side_by_side(parser, args, argv)
    names = harness.selected_configs(parser, args)  # the n-step KL configurations kl_* are speed_losses.py's
    meta = harness.provenance(__file__, argv, seed=args.seed, threads=args.threads)
    meta.update(device=args.device, note=args.note, quick=args.quick)
    if args.reference is not None:
        try:
            reference = json.loads(args.reference.read_text())
        except (OSError, ValueError) as error:
            parser.error(f"--reference {args.reference}: {error}")
        source = reference.get("meta", reference)  # newer files keep the provenance under "meta"
        meta["reference"] = {k: source[k] for k in ("cpu", "cpu_features", "date")}
        meta["reference"]["configs"] = reference["configs"]
    worker_env = dict(os.environ)
    if args.omp_wait_policy != "inherit":
        worker_env["OMP_WAIT_POLICY"] = args.omp_wait_policy
    meta["env"] = {k: worker_env.get(k) for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "KMP_BLOCKTIME")}
    meta["omp_wait_policy"] = worker_env.get("OMP_WAIT_POLICY", "")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            result_path = pathlib.Path(tmp) / f"{name}.json"
            cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", name, "--result", str(result_path),
                   "--device", args.device, "--seed", str(args.seed)]
            for flag in ("threads", "warmup", "repeats"):
                if getattr(args, flag) is not None:
                    cmd += [f"--{flag}", str(getattr(args, flag))]
            cmd += ["--quick"] * args.quick + ["--compile"] * args.compile
            print(f"[speed] {name} (load {os.getloadavg()[0]:.2f}) ...", file=sys.stderr, flush=True)
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=worker_env)
                if proc.returncode != 0:
                    raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}")
                results.append(json.loads(result_path.read_text()))
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                print(f"[speed] {name} failed: {error}", file=sys.stderr, flush=True)
                results.append(dict(name=name, config=CONFIGS[name], error=str(error)))
    harness.finish(meta)
    ok = [r for r in results if "error" not in r]
    if ok:
        meta.update(torch=ok[0]["torch"], pyro=ok[0]["pyro"], threads=ok[0]["threads"])
    harness.write_results(args.out, "speed", render(results, meta), meta, results=results)
    return 0 if len(ok) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
