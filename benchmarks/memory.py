"""Peak memory per example of training and evaluation against the batch size, for the demo and
paper U-Nets and the text Transformers, and the largest batch that fits in 24, 80 or 141 GiB.

One command prints the tables and writes ``benchmarks/results/memory.md`` and ``.json``::

    python benchmarks/memory.py                            # the five models (~5 min on 2 cores)
    python benchmarks/memory.py --configs mnist_demo --batch-sizes 1 2 4 8 16
    python benchmarks/memory.py --quick                    # the toy MLP, a smoke test (seconds)

For each model (a training configuration of ``configs/``), mode, precision (float32, bf16
autocast of the network) and batch size, one measurement in a fresh process (forked by a
``forkserver`` that has imported torch, so that one starts in a fraction of a second):

* **training**: one update as :meth:`pyro_bfn.training.Trainer.train_step` makes it (loss
  ``BFN.loss(x, reconstruction=False)``, ``zero_grad``, backward, clipping, fused AdamW, EMA),
  with an earlier update's gradients and AdamW state allocated (as in every update but the first);
* **evaluation**: ``BFN.loss(x, reconstruction=True)`` (:math:`L^\\infty + L^r`) in eval mode under
  :func:`torch.inference_mode` (one model: its parameters are the state).

Four figures each:

* **state**: parameters, and for training their gradients, the two AdamW moments and the EMA
  copy, counted (:math:`4 \\times 5` bytes per parameter: the parameters stay float32 under autocast);
* **saved for backward** (training): the storages of the tensors autograd saves
  (:class:`torch.autograd.graph.saved_tensors_hooks`; each storage once, the parameters' excluded)
  still alive at the end of the forward pass: "state + saved" is held when the backward starts;
* **live tensors, peak**: the state plus the storages the step creates, alive at once, at the worst
  moment (a :class:`~torch.utils._python_dispatch.TorchDispatchMode` sees each operator's outputs,
  weak references their storages' release): activations, their gradients, temporaries. It is what
  ``torch.cuda.max_memory_allocated`` reports, up to the caching allocator's rounding and kernel
  workspaces, and does not depend on the device;
* **real peak**: on CPU the peak resident set size (``ru_maxrss``) above the resident size after
  imports and a priming step (allocator caches and fragmentation, scratch buffers and thread pools
  included); on CUDA ``torch.cuda.max_memory_allocated``.

Each is fitted by least squares as ``fixed + per_example * batch`` (exact for the counted figures);
the largest batches are extrapolated from the live-tensor fit.

CPU budget: 4.5 minutes with 2 threads on the shared 2-core machine (most of it the
170M-parameter text8 Transformer); ``--render memory.json`` re-renders a saved run.
"""

from __future__ import annotations

import json
import math
import sys
import time

import harness

harness.passive_openmp()  # before torch loads

GiB = 2**30
MiB = 2**20
#: memories (GiB) for which the largest batch is extrapolated: a 24 GiB card, an 80 GiB H100 /
#: A100, a 141 GiB H200
CAPACITIES_GIB = (24, 80, 141)
PRECISIONS = ("fp32", "bf16")
MODES = ("train", "eval")

#: name -> the training configuration, the batch sizes measured, the model's description
MODELS = {
    "mnist_demo": dict(config="configs/mnist_demo.yaml", batches=(1, 2, 4, 8), label="demo U-Net (MNIST)"),
    "mnist_paper": dict(config="configs/mnist_paper.yaml", batches=(1, 2, 4), label="paper MNIST U-Net"),
    "patches_paper": dict(config="configs/patches_paper.yaml", batches=(1, 2, 4), label="paper CIFAR-10 U-Net (32x32x3)"),
    "text8_paper": dict(config="configs/text8_paper.yaml", batches=(1, 2, 4), label="paper text8 Transformer (L=256)"),
    "text_small": dict(config="configs/text_small.yaml", batches=(1, 2, 4, 8), label="small text Transformer (L=256)"),
    "toy_mlp": dict(config="configs/toy_binary.yaml", batches=(1, 2, 4, 8), label="toy MLP (8x8 binary)"),
}
DEFAULT_MODELS = [name for name in MODELS if name != "toy_mlp"]
QUICK_MODELS = ["toy_mlp"]


# --------------------------------------------------------------------------- counting tensors
def storage_of(tensor):
    """The untyped storage of a dense tensor, or ``None`` (opaque / sparse layouts, no data)."""
    try:
        storage = tensor.untyped_storage()
    except (RuntimeError, NotImplementedError, TypeError):
        return None
    return storage if storage.nbytes() > 0 else None


def tensor_bytes(tensors) -> int:
    """Bytes of the distinct storages of ``tensors``."""
    return sum({id(s): s.nbytes() for s in map(storage_of, tensors) if s is not None}.values())


def live_tensor_tracker(existing, offset: int):
    """A dispatch mode that follows the bytes of the tensor storages created while it is active.

    :param existing: tensors whose storages exist already (parameters, state, the batch): not
        counted, also when an operator returns a view of them or writes into them.
    :param int offset: bytes added to the live count (the state); the caller lowers it when
        state is freed (``tracker.offset -= ...``).
    :returns: the mode; after use, ``tracker.peak`` is the largest ``offset + live bytes``.
    """
    import weakref

    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves
    from torch.utils.weak import WeakIdKeyDictionary

    import torch

    class LiveTensorBytes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.known = WeakIdKeyDictionary()
            for storage in filter(None, map(storage_of, existing)):
                self.known[storage] = 0
            self.offset, self.live, self.peak = offset, 0, offset

        def _freed(self, nbytes: int) -> None:
            self.live -= nbytes

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for leaf in tree_leaves(out):
                storage = storage_of(leaf) if isinstance(leaf, torch.Tensor) else None
                if storage is not None and storage not in self.known:
                    self.known[storage] = storage.nbytes()
                    self.live += storage.nbytes()
                    weakref.finalize(storage, self._freed, storage.nbytes())
            self.peak = max(self.peak, self.offset + self.live)
            return out

    return LiveTensorBytes()


def saved_for_backward(tracker):
    """Saved-tensor hooks (:class:`torch.autograd.graph.saved_tensors_hooks`) that note the
    storage of every tensor autograd saves, except the storages that existed before
    ``tracker`` (a :func:`live_tensor_tracker`: the parameters, the batch); returns
    ``(hooks, alive_bytes)``, ``alive_bytes()`` the bytes of the noted storages still alive."""
    import torch
    from torch.utils.weak import WeakIdKeyDictionary

    saved = WeakIdKeyDictionary()

    def pack(tensor):
        storage = storage_of(tensor)
        if storage is not None and tracker.known.get(storage) != 0:
            saved[storage] = storage.nbytes()
        return tensor

    return torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), lambda: sum(saved.values())


# --------------------------------------------------------------------------- one measurement
def _resident_mib(peak: bool = False) -> float:
    """The resident set size now (``VmRSS``), or its peak (``ru_maxrss``), in MiB (Linux: kB)."""
    import resource

    if peak:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:")) / 1024.0


def _prime(device) -> None:
    """A tiny update in float32 and bf16 and an inference call, so that one-off costs (autograd
    engine, thread pools, kernels) fall below the baseline."""
    import torch

    layer = torch.nn.Linear(8, 8).to(device)
    optimiser = torch.optim.AdamW(layer.parameters())
    for enabled in (False, True):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled):
            layer(torch.randn(4, 8, device=device)).float().square().mean().backward()
        optimiser.step()
    with torch.inference_mode():
        layer(torch.randn(4, 8, device=device))


def measure(model: str, mode: str, precision: str, batch: int, seed: int = 0, device: str = "cpu",
            threads: int | None = None) -> dict:
    """One measurement (run it in a fresh process for a meaningful real peak).

    :param str model: a key of :data:`MODELS`.
    :param str mode: ``"train"`` (one update) or ``"eval"`` (the likelihood-bound terms).
    :param str precision: ``"fp32"`` or ``"bf16"`` (autocast of the network).
    :param int batch: examples.
    :param int threads: torch threads (``None``: unchanged).
    :returns: bytes of the state (and its parts), of the tensors saved for backward, the
        live-tensor peak, the real peak (MiB), the parameter count, the seconds taken.
    """
    import copy

    import torch

    from pyro_bfn.training import TrainConfig, make_optimizer
    from pyro_bfn.training.checkpoint import build_model
    from pyro_bfn.training.optim import ema_decay, update_ema
    from speed_configs import random_batch

    harness.set_threads(threads)
    device = torch.device(device)
    cuda = device.type == "cuda"
    _prime(device)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    baseline = torch.cuda.memory_allocated() / MiB if cuda else _resident_mib()
    began = time.perf_counter()
    config = TrainConfig.from_yaml(harness.ROOT / MODELS[model]["config"])
    torch.manual_seed(seed)
    bfn = build_model(config, device, torch.bfloat16 if precision == "bf16" else None)
    x = random_batch(bfn.data_type, (batch, *bfn.data_shape), torch.Generator().manual_seed(seed)).to(device)
    parameters = list(bfn.parameters())
    parts = dict(parameters=tensor_bytes(parameters))
    existing = parameters + list(bfn.buffers()) + [x]
    if mode == "train":
        bfn.train()
        ema = copy.deepcopy(bfn).requires_grad_(False).eval()
        optimizer = make_optimizer(parameters, config.lr, config.betas, config.weight_decay)
        for p in parameters:  # an earlier update's gradients and AdamW state
            p.grad = torch.zeros_like(p)
        optimizer.step()
        moments = [v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)]
        parts.update(gradients=tensor_bytes(p.grad for p in parameters),
                     optimizer=tensor_bytes(v for v in moments if v.dim() > 0),
                     ema=tensor_bytes(ema.parameters()))
        existing += [p.grad for p in parameters] + moments + list(ema.parameters()) + list(ema.buffers())
    else:
        bfn.eval()
    state = sum(parts.values())
    after_build = torch.cuda.memory_allocated() / MiB if cuda else _resident_mib()
    tracker = live_tensor_tracker(existing, state)
    hooks, saved_alive_bytes = saved_for_backward(tracker)
    saved_bytes = 0
    with tracker:
        if mode == "train":
            with hooks:
                loss = bfn.loss(x, n_steps=config.n_steps, reconstruction=False).transmission.mean()
            saved_bytes = saved_alive_bytes()
            optimizer.zero_grad(set_to_none=True)  # the earlier gradients go, as in Trainer.train_step
            tracker.offset -= parts["gradients"]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip or math.inf)
            optimizer.step()
            update_ema(ema, bfn, ema_decay(config.ema_decay, 1))
        else:
            with torch.inference_mode():
                bfn.loss(x, n_steps=None, reconstruction=True)
    if cuda:
        torch.cuda.synchronize()
        real_peak = torch.cuda.max_memory_allocated() / MiB - baseline
    else:
        real_peak = _resident_mib(peak=True) - baseline
    return dict(model=model, mode=mode, precision=precision, batch=batch, parameters=sum(p.numel() for p in parameters),
                state_bytes=state, state_parts=parts, saved_bytes=saved_bytes, live_peak_bytes=tracker.peak,
                real_peak_mib=real_peak, real_after_build_mib=after_build - baseline,
                real_method="cuda.max_memory_allocated" if cuda else "ru_maxrss",
                seconds=time.perf_counter() - began)


# --------------------------------------------------------------------------- fits
def fit(batches, values) -> dict:
    """Least-squares ``value = fixed + per_example * batch`` (:func:`numpy.polyfit`) and the
    largest residual."""
    import numpy

    per_example, fixed = numpy.polyfit(numpy.asarray(batches, float), numpy.asarray(values, float), 1)
    residual = max(abs(v - fixed - per_example * b) for b, v in zip(batches, values))
    return dict(fixed=float(fixed), per_example=float(per_example), max_residual=float(residual))


def largest_batch(line: dict, capacity_bytes: float):
    """``floor((capacity - fixed) / per_example)``, ``0`` when even the fixed part does not fit."""
    if line["per_example"] <= 0:
        return None
    return max(0, math.floor((capacity_bytes - line["fixed"]) / line["per_example"]))


def summarise(measurements: list) -> list:
    """One row per (model, mode, precision): the fits of the saved, live and real figures (bytes)
    and the largest batch of each capacity of :data:`CAPACITIES_GIB` (live-tensor fit)."""
    groups = {}
    for m in measurements:
        groups.setdefault((m["model"], m["mode"], m["precision"]), []).append(m)
    rows = []
    for (model, mode, precision), group in groups.items():
        group.sort(key=lambda m: m["batch"])
        batches = [m["batch"] for m in group]
        row = dict(model=model, mode=mode, precision=precision, batches=batches, parameters=group[0]["parameters"],
                   state_bytes=group[0]["state_bytes"])
        if len(batches) >= 2:
            row["saved"] = fit(batches, [m["state_bytes"] + m["saved_bytes"] for m in group]) if mode == "train" \
                else None
            row["live"] = fit(batches, [m["live_peak_bytes"] for m in group])
            row["real"] = fit(batches, [m["real_peak_mib"] * MiB for m in group])
            row["largest_batch"] = {f"{c} GiB": largest_batch(row["live"], c * GiB) for c in CAPACITIES_GIB}
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- rendering
def _mib(value) -> str:
    value /= MiB
    return f"{value:,.{3 if abs(value) < 1 else 2 if abs(value) < 100 else 1}f}"


def _line(line) -> str:
    return "–" if line is None else f"{_mib(line['fixed'])} + {_mib(line['per_example'])}"


def render(meta: dict, measurements: list, rows: list) -> str:
    lines = [*harness.header_lines(meta, "Peak memory of training and evaluation against the batch size"), ""]
    lines += [
        "Training: one update (loss without reconstruction, backward, clipping, fused AdamW, EMA) with an earlier "
        "update's gradients and AdamW state allocated; evaluation: the likelihood-bound terms with reconstruction "
        "under inference_mode. Each measurement in a fresh process. Figures in MiB as `fixed + per example × batch` "
        "(least-squares fit over the batch sizes); `state` = parameters (+ gradients, 2 AdamW moments, EMA when "
        "training), counted.", "",
        "Models: " + "; ".join(f"{name} = {MODELS[name]['label']}, {MODELS[name]['config']}"
                               for name in dict.fromkeys(r["model"] for r in rows)) + ".", "",
        "## Fits: fixed part + MiB per example", "",
    ]
    table = [[r["model"], f"{r['parameters'] / 1e6:.2f}M", r["mode"], r["precision"], " ".join(map(str, r["batches"])),
              _mib(r["state_bytes"]), _line(r.get("saved")), _line(r.get("live")), _line(r.get("real"))] for r in rows]
    lines.append(harness.markdown_table(
        ["model", "parameters", "mode", "precision", "batches", "state", "state + saved for backward",
         "live tensors, peak", f"real peak ({meta['real_method']})"], table, numeric_from=4))
    lines += ["", "## Largest batch (extrapolated from the live-tensor fit)", ""]
    table = [[r["model"], r["mode"], r["precision"],
              *(f"{n:,}" if n is not None else "–" for n in r["largest_batch"].values())]
             for r in rows if r.get("largest_batch")]
    lines.append(harness.markdown_table(["model", "mode", "precision", *(f"{c} GiB" for c in CAPACITIES_GIB)], table,
                                        numeric_from=3))
    lines += ["", "## Measurements (MiB)", ""]
    table = [[m["model"], m["mode"], m["precision"], m["batch"], _mib(m["saved_bytes"]), _mib(m["live_peak_bytes"]),
              f"{m['real_peak_mib']:,.1f}", f"{m['real_peak_mib'] - m['live_peak_bytes'] / MiB:,.1f}",
              f"{m['seconds']:.1f}"] for m in measurements]
    lines.append(harness.markdown_table(["model", "mode", "precision", "batch", "saved for backward", "live tensors, peak",
                                         "real peak", "real − live", "seconds"], table, numeric_from=3))
    lines += ["", "## Notes", "", *notes(meta, measurements, rows), ""]
    return "\n".join(lines)


def notes(meta: dict, measurements: list, rows: list) -> list:
    fitted = [r for r in rows if r.get("live")]
    bf16 = meta.get("cpu_has_native_bf16")
    out = [
        "- The counted figures (state, saved for backward, live tensors) are the portable estimate: they depend on "
        "the tensors' shapes and dtypes only, so they carry over to a GPU. On CUDA the caching allocator rounds blocks "
        "up and keeps freed ones, cuBLAS/cuDNN allocate workspaces and the CUDA context takes several hundred MiB: "
        "plan with some headroom (e.g. 10-20%).",
        "- bf16: autocast of the network, the loss in float32" + ("" if bf16 is None else
        f"; `autocast: auto` picks it on this CPU (cpu_has_native_bf16() is {bf16})") + ". CPU autocast casts "
        "another operator list than CUDA's, and scaled_dot_product_attention picks its kernel per device, so the bf16 "
        "rows estimate a GPU's bf16 run; the float32 rows bound it from above.",
        "- The largest batches are extrapolated far beyond the measured batches: `floor((capacity − fixed) / per "
        "example)` of the live-tensor fit, with no headroom.",
    ]
    real = [m for m in measurements if m.get("real_peak_mib") is not None]
    if real:
        excess = [m["real_peak_mib"] - m["live_peak_bytes"] / MiB for m in real]
        built = [m["real_after_build_mib"] - m["state_bytes"] / MiB for m in real]
        slopes = [r["real"]["per_example"] / r["live"]["per_example"] for r in fitted if r["live"]["per_example"] > 0]
        out.append(f"- Real peak ({meta.get('real_method')}) − live-tensor peak: {min(excess):,.0f} to "
                   f"{max(excess):,.0f} MiB over the measurements (after building, the real size is {min(built):,.0f} "
                   f"to {max(built):,.0f} MiB above the counted state): the allocator's caches and fragmentation, the temporaries inside "
                   "operators (which the dispatch mode does not see), thread pools. The excess does not grow in proportion to the batch, so the real fits' slopes, "
                   f"{min(slopes):.2f} to {max(slopes):.2f} times the live-tensor ones, are noisy, and the live-tensor "
                   "fit is the one extrapolated.")
    train = [r for r in fitted if r["mode"] == "train" and r.get("saved") and r["saved"]["per_example"] > 0]
    if train:
        ratio = [r["live"]["per_example"] / r["saved"]["per_example"] for r in train]
        out.append(f"- In training the live-tensor peak per example is {min(ratio):.2f} to {max(ratio):.2f} times "
                   "what is saved for backward: the gradients of the activations and the temporaries of the backward "
                   "pass come on top.")
    pairs = {}
    for r in fitted:
        pairs.setdefault((r["model"], r["mode"]), {})[r["precision"]] = r["live"]["per_example"]
    shares = [p["bf16"] / p["fp32"] for p in pairs.values() if p.get("fp32", 0) > 0 and "bf16" in p]
    if shares:
        out.append(f"- bf16 autocast needs {min(shares):.2f} to {max(shares):.2f} of float32's live-tensor bytes per "
                   "example.")
    return out


# --------------------------------------------------------------------------- driver
#: what the process that forks the measurements imports once (each measurement then starts in
#: a fraction of a second instead of importing torch again; torch._dynamo: the first optimiser loads it)
PRELOAD = ["torch", "torch._dynamo", "pyro_bfn.training", "pyro_bfn.zoo", "speed_configs"]


def forkserver():
    """The ``forkserver`` context that imports :data:`PRELOAD`, started now (while this process
    imports its own)."""
    import multiprocessing
    import multiprocessing.forkserver

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    multiprocessing.forkserver.ensure_running()
    return context


def run_jobs(context, jobs: list, threads: int, timeout: float):
    """Yield :func:`measure` of each job, each in a fresh process forked by ``context`` (a
    :func:`forkserver`), so that each process's peak resident size is its measurement's alone."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=context, max_tasks_per_child=1) as pool:
        for job in jobs:
            yield pool.submit(measure, **job, threads=threads).result(timeout=timeout)


def main(argv=None) -> int:
    context = forkserver()
    parser = harness.parser(__doc__, threads=2, render="re-render the tables of a saved memory.json")
    harness.add_configs(parser, list(MODELS), DEFAULT_MODELS, QUICK_MODELS, "the toy MLP only: a smoke test")
    parser.add_argument("--batch-sizes", type=harness.positive_int, nargs="+", default=None,
                        help="batch sizes of every model (default: each model's own, 1 2 4 or 1 2 4 8)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--timeout", type=harness.positive_int, default=900, help="seconds per measurement")
    args = parser.parse_args(argv)
    if args.render is not None:
        saved = harness.load_saved(args.render)
        return write(args.out, saved["meta"], saved["measurements"], saved["models"])
    harness.set_threads(args.threads)
    models = harness.selected_configs(parser, args)
    meta = harness.provenance(__file__, argv, seed=args.seed, threads=args.threads)
    meta.update(device=args.device,
                real_method="cuda.max_memory_allocated" if args.device.startswith("cuda") else "ru_maxrss")
    if not args.device.startswith("cuda"):
        from pyro_bfn.training import cpu_has_native_bf16

        meta["cpu_has_native_bf16"] = cpu_has_native_bf16()
    jobs = [dict(model=model, mode=mode, precision=precision, batch=batch, seed=args.seed, device=args.device)
            for model in models for mode in args.modes for precision in args.precisions
            for batch in args.batch_sizes or MODELS[model]["batches"]]
    measurements = []
    for result in run_jobs(context, jobs, args.threads, args.timeout):
        measurements.append(result)
        print(f"[memory] {result['model']} {result['mode']} {result['precision']} batch {result['batch']}: live peak "
              f"{result['live_peak_bytes'] / MiB:,.1f} MiB, {result['seconds']:.1f} s", file=sys.stderr, flush=True)
    harness.finish(meta)
    return write(args.out, meta, measurements, {name: MODELS[name] for name in models})


def write(out, meta: dict, measurements: list, models: dict) -> int:
    rows = summarise(measurements)
    harness.write_results(out, "memory", render(meta, measurements, rows), meta, fits=rows, measurements=measurements,
                          models=models)
    return 0


if __name__ == "__main__":
    sys.exit(main())
