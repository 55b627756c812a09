"""The GPU path made checkable: every way of running the binarized-MNIST BFNs on a CUDA device,
timed, with its peak memory and loss, in a few minutes::

    python benchmarks/gpu_check.py                        # ~3-5 min on an H200; writes results/gpu_check.md/.json
    python benchmarks/gpu_check.py --paths "demo train"   # only the paths whose name contains a pattern

Without CUDA it says so, measures nothing, writes nothing and exits 0. ``--device cpu --quick``
runs every path on the CPU with tiny U-Nets of the same classes, a smoke test of this script
(written only to ``--out`` when given; nothing in it is a GPU measurement).

Nets: the demo U-Net of ``configs/mnist_demo.yaml`` (1.08M parameters, batch 64) and the paper's
of ``configs/mnist_paper.yaml`` (24.8M, batch ``--paper-batch``), from the same seeded initial
weights in every path. Paths: ``train``, one update as :meth:`pyro_bfn.training.Trainer.train_step`
makes it (:math:`L^\infty`, Graves et al. 2023, arXiv 2308.07037, Sec. 5.7; backward, clipping,
fused AdamW, EMA) in fp32, bf16 autocast (``BFN(autocast_dtype=...)``), fp16 autocast with
``torch.amp.GradScaler`` (timed after the scaler's first update that it does not skip), bf16 with
the backbone ``channels_last``, and bf16 with the backbone under ``torch.compile`` (compile seconds
apart; these run last); ``bound``, :math:`L^\infty + L^r` in eval mode under
``torch.inference_mode`` as :func:`pyro_bfn.evaluation.evaluate_bound` computes it, fp32 and bf16;
``sample``, ``bfn.sample`` in bf16, 16 samples, ancestral (100 steps) and a fast solver (10 steps).

``ms/step`` is the median of the timed repeats after warm-up (CUDA synchronised) of one update,
batch or sampler step; ``peak MiB`` is ``torch.cuda.max_memory_allocated`` within the row;
``loss`` the batch mean (nats/image) at the initial weights in eval mode, with the same batch and
random draws in every path of a net (:func:`pyro_bfn.evaluation.seeded_draws`); ``rel. diff`` is
``(loss - loss_fp32) / |loss_fp32|`` against the fp32 row of its kind. A path FAILS when it raises
or a loss, gradient norm or sample is not finite or valid (fp16: 25 skipped updates in a row, the
trainer's ``max_skipped_steps``); the exit status is then 1. Paths not started within
``--time-limit`` seconds are "skipped: time"; after SIGTERM the rows so far are written. The
batches are binarized MNIST test images when installed, else Bernoulli(0.5) images (the table says).
"""

from __future__ import annotations

import copy
import gc
import math
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field

import harness

harness.passive_openmp()  # before torch loads

import torch  # noqa: E402

CONFIGS = {"demo": "configs/mnist_demo.yaml", "paper": "configs/mnist_paper.yaml"}
#: --quick: tiny U-Nets of the same classes, so that every path runs on a CPU in seconds
QUICK_BACKBONE = {"base_width": 8, "num_groups": 4}
NEEDS_CUDA = "gpu_check needs a CUDA device; torch.cuda.is_available() is False here; nothing was measured"
#: consecutive updates skipped by the gradient scaler that make a run diverged (TrainConfig.max_skipped_steps)
MAX_SKIPPED = 25
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
COLUMNS = ["path", "status", "batch", "ms/step", "examples/s", "peak MiB", "compile s", "loss (nats/image)",
           "rel. diff vs fp32"]


class PathFailure(RuntimeError):
    """A path ran but produced a non-finite loss, gradient norm or sample."""


class Terminated(BaseException):
    """SIGTERM arrived (``timeout``): stop, and write what was measured."""


@dataclass
class Net:
    """A network of the check: configuration, initial weights, batches ``(B, 1, 28, 28)`` in {0, 1} (CPU)."""

    name: str
    config: object  # a pyro_bfn.training.TrainConfig
    backbone_options: dict
    batch: int
    parameters: int
    initial_state: dict
    x: torch.Tensor
    bound_x: torch.Tensor


@dataclass
class Row:
    path: str
    kind: str
    status: str = "ok"
    batch: int | None = None
    ms: float | None = None
    per_s: float | None = None
    peak_mib: float | None = None
    compile_s: float | None = None
    loss: float | None = None
    rel_diff: float | None = None
    details: dict = field(default_factory=dict)

    def timed(self, batch: int, seconds: list, per_call: int = 1) -> None:
        """Set batch, ms per step (``per_call`` steps a call) and examples/s from the calls' seconds."""
        median = statistics.median(seconds)
        self.batch, self.ms, self.per_s = batch, 1e3 * median / per_call, batch / median
        self.details["seconds"] = seconds


def _finite(what: str, value: float) -> float:
    if not math.isfinite(value):
        raise PathFailure(f"{what} is {value}")
    return value


# --------------------------------------------------------------------------- data and models
def data_source(args):
    """``(draw, description)``: ``draw(n)`` gives the first ``n`` binarized MNIST test images
    (binarization seeded) when the data are installed, else ``n`` Bernoulli(0.5) images."""
    from pyro_bfn.zoo import get_dataset

    spec = get_dataset("binarized_mnist")
    why = "--data synthetic"
    if args.data == "auto":
        try:
            raw = spec.load("test")
            return (lambda n: spec.prepare(raw[:n], torch.Generator().manual_seed(args.seed)),
                    "binarized MNIST test images (the first of the split, binarization seeded)")
        except Exception as error:  # DataNotFoundError, a missing package, ...: the synthetic batch will do
            why = f"MNIST not available: {type(error).__name__}"
    generator = torch.Generator().manual_seed(args.seed)
    return (lambda n: torch.bernoulli(torch.full((n, *spec.data_shape), 0.5), generator=generator).long(),
            f"synthetic Bernoulli(0.5) images of MNIST's shape ({why}); speed and numerics only")


def make_net(name: str, args, draw) -> Net:
    """The :class:`Net` of ``CONFIGS[name]``, its initial weights from ``torch.manual_seed(seed)``."""
    from pyro_bfn.training import TrainConfig
    from pyro_bfn.zoo import build_bfn

    config = TrainConfig.from_yaml(harness.ROOT / CONFIGS[name])
    options = dict(config.backbone_options or {}, **(QUICK_BACKBONE if args.quick else {}))
    batch = 2 if args.quick else (config.batch_size if name == "demo" else args.paper_batch)
    bound_batch = 2 if args.quick else args.bound_batch
    torch.manual_seed(args.seed)
    model = build_bfn(config.dataset, config.backbone, data_type_options=config.data_type_options, backbone_options=options)
    x = draw(max(batch, bound_batch))
    return Net(name, config, options, batch, sum(p.numel() for p in model.parameters()),
               {k: v.clone() for k, v in model.state_dict().items()}, x[:batch], x[:bound_batch])


def build(net: Net, ctx, path: str, autocast_dtype, channels_last=False):
    """The BFN of ``net`` from its initial weights on the device, autocast as the trainer sets it."""
    from pyro_bfn.zoo import build_bfn

    with torch.random.fork_rng(devices=[]):  # the weights are overwritten: leave the generators alone
        model = build_bfn(net.config.dataset, net.config.backbone, data_type_options=net.config.data_type_options,
                          backbone_options=net.backbone_options, autocast_dtype=autocast_dtype)
    model.load_state_dict(net.initial_state)
    model.to(ctx.device)
    if channels_last:
        model.network.to(memory_format=torch.channels_last)
        model.network.backbone.register_forward_pre_hook(  # its input (B, C, H, W) too
            lambda module, args: (args[0].contiguous(memory_format=torch.channels_last), *args[1:]))
    if any(p in path for p in ctx.inject_nan):
        model.network.register_forward_hook(lambda module, args, output: output * math.nan)
    return model


def fixed_draw_loss(model, x: torch.Tensor, ctx, reconstruction: bool) -> float:
    """The mean over the batch ``x`` (shape ``(B, 1, 28, 28)``, on the device) of :math:`L^\\infty`
    (``+ L^r``) in eval mode with the draws of the seed (the same in every precision: the times and
    flow samples are drawn in float32, outside autocast)."""
    from pyro_bfn.evaluation import seeded_draws

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), seeded_draws(ctx.seed, ctx.device):
            total = model.loss(x, n_steps=None, reconstruction=reconstruction).total
    finally:
        model.train(was_training)
    return _finite("the loss", float(total.double().mean()))


# --------------------------------------------------------------------------- the paths
def train_path(row: Row, net: Net, ctx, precision: str, channels_last=False, compiled=False):
    from pyro_bfn.training.optim import ema_decay, make_optimizer, update_ema

    config = net.config
    model = build(net, ctx, row.path, PRECISIONS[precision], channels_last)
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    if compiled:
        model.network.compile()  # nn.Module.compile, in place, as the trainer does
    optimizer = make_optimizer(model.parameters(), config.lr, config.betas, config.weight_decay)
    scaler = torch.amp.GradScaler(ctx.device.type, init_scale=ctx.fp16_init_scale, enabled=precision == "fp16")
    x = net.x.to(ctx.device)
    max_norm = config.grad_clip if config.grad_clip > 0 else math.inf
    log = dict(losses=[], grad_norms=[], skipped_updates=0)

    def step():
        model.train()
        loss = model.loss(x, n_steps=None, reconstruction=False).transmission.mean()
        log["losses"].append(_finite(f"the training loss of update {len(log['losses']) + 1}", float(loss.detach())))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        norm = float(torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], max_norm))
        log["grad_norms"].append(norm)
        if not math.isfinite(norm) and not scaler.is_enabled():
            raise PathFailure(f"the gradient norm of update {len(log['losses'])} is {norm}")
        scale = scaler.get_scale() if scaler.is_enabled() else None
        scaler.step(optimizer)
        scaler.update()
        if scale is not None and scaler.get_scale() < scale:  # non-finite gradients: the update was skipped
            log["skipped_updates"] += 1
        update_ema(ema, model, ema_decay(config.ema_decay, len(log["losses"])))

    timed = harness.timer(ctx.device)
    first = timed(lambda: setattr(row, "loss", fixed_draw_loss(model, x, ctx, False)))
    warmup = ctx.warmup
    if compiled:
        row.compile_s, warmup = first + timed(step), warmup - 1  # the eval graph, then the training graph
    while scaler.is_enabled() and log["skipped_updates"] == len(log["losses"]):  # until its first update
        if len(log["losses"]) == MAX_SKIPPED:
            raise PathFailure(f"the gradient scaler skipped the first {MAX_SKIPPED} updates (non-finite gradients)")
        step()
    if scaler.is_enabled():
        log["skipped_before_first_update"] = log["skipped_updates"]
    for _ in range(warmup):
        step()
    row.timed(net.batch, [timed(step) for _ in range(ctx.reps)])
    row.details.update(log, grad_scale=scaler.get_scale() if scaler.is_enabled() else None)


def bound_path(row: Row, net: Net, ctx, precision: str):
    model = build(net, ctx, row.path, PRECISIONS[precision]).eval()
    x = net.bound_x.to(ctx.device)
    row.loss = fixed_draw_loss(model, x, ctx, True)

    def bound():
        with torch.inference_mode():
            return model.loss(x, n_steps=None, reconstruction=True).total

    for _ in range(ctx.warmup):
        bound()
    row.timed(x.shape[0], [harness.timer(ctx.device)(bound) for _ in range(ctx.reps)])
    _finite("the bound", float(bound().double().mean()))


def sample_path(row: Row, net: Net, ctx, sampler: str, n_steps: int):
    model = build(net, ctx, row.path, torch.bfloat16).eval()
    generator = torch.Generator(device=ctx.device).manual_seed(ctx.seed)
    model.sample(ctx.samples, 2, sampler=sampler, generator=generator)  # warm-up
    samples = []
    draw = lambda: samples.append(model.sample(ctx.samples, n_steps, sampler=sampler, generator=generator))  # noqa: E731
    row.timed(ctx.samples, [harness.timer(ctx.device)(draw) for _ in range(ctx.sample_reps)], per_call=n_steps)
    for drawn in samples:
        if not bool(torch.isfinite(drawn.double()).all()):
            raise PathFailure("a sample is not finite")
        try:
            model.check_data(drawn)
        except ValueError as error:
            raise PathFailure(f"a sample is not valid data: {error}") from None
    row.details.update(n_steps=n_steps, sampler=sampler, mean_value=float(torch.cat(samples).double().mean()))


# --------------------------------------------------------------------------- running
def fp16_supported(device: torch.device) -> bool:
    """fp16 autocast with a gradient scaler: on CUDA, and on a CPU where this torch has both."""
    if device.type == "cuda":
        return True
    try:
        with torch.autocast("cpu", dtype=torch.float16):
            torch.nn.functional.conv2d(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 3, 3))
        torch.amp.GradScaler("cpu")
        return True
    except (RuntimeError, TypeError, ValueError, AttributeError):
        return False


def plan(nets, ctx, fast: str) -> list:
    """``[(path, kind, function of the row, or why it is skipped)]`` in the order they run."""
    sample_steps = (3, 2) if ctx.quick else (100, 10)
    fp16 = fp16_supported(ctx.device)
    rows = []
    for net in nets:
        n = net.name
        rows += [
            (f"{n} train fp32", "train", lambda r, net=net: train_path(r, net, ctx, "fp32")),
            (f"{n} train bf16", "train", lambda r, net=net: train_path(r, net, ctx, "bf16")),
            (f"{n} train fp16 + GradScaler", "train", (lambda r, net=net: train_path(r, net, ctx, "fp16")) if fp16
             else "skipped on CPU: this torch has no CPU fp16 autocast with a gradient scaler"),
            (f"{n} train bf16 channels_last", "train", lambda r, net=net: train_path(r, net, ctx, "bf16", channels_last=True)),
            (f"{n} bound fp32", "bound", lambda r, net=net: bound_path(r, net, ctx, "fp32")),
            (f"{n} bound bf16", "bound", lambda r, net=net: bound_path(r, net, ctx, "bf16")),
            *[(f"{n} sample {name} {ctx.samples}x{steps} bf16", "sample",
               lambda r, net=net, name=name, steps=steps: sample_path(r, net, ctx, name, steps))
              for name, steps in zip(("ancestral", fast), sample_steps)],
        ]
    compile_skip = "skipped on CPU (pass --compile; needs a C++ compiler and minutes)"
    rows += [(f"{net.name} train bf16 torch.compile", "train", compile_skip if ctx.device.type == "cpu" and not ctx.compile
              else lambda r, net=net: train_path(r, net, ctx, "bf16", compiled=True)) for net in nets]
    return [row for row in rows if not ctx.paths or any(p in row[0] for p in ctx.paths)]


def run_row(row: Row, action, ctx, started: float) -> None:
    """One path in its own ``try``: a failure is reported in its row and the others still run."""
    if isinstance(action, str):
        row.status = action
        return
    if time.perf_counter() - started > ctx.time_limit:
        row.status = "skipped: time"
        return
    cuda = ctx.device.type == "cuda"
    if cuda:  # the last row's tensors freed, so that the peak is this row's alone
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(ctx.device)
    began = time.perf_counter()
    try:
        if any(p in row.path for p in ctx.inject_failure):
            raise RuntimeError("failure injected by --inject-failure")
        action(row)
    except Exception as error:
        row.status = f"FAILED: {type(error).__name__}: {' '.join(str(error).split())}"[:160].replace("|", "/")
        row.details["error"] = f"{type(error).__name__}: {error}"
    except Terminated:
        row.status = f"FAILED: terminated (SIGTERM) after {time.perf_counter() - began:.0f} s in this path"
        raise
    finally:
        row.details["wall_s"] = time.perf_counter() - began
        if cuda:
            row.peak_mib = torch.cuda.max_memory_allocated(ctx.device) / 2**20
        print(f"[gpu_check] {row.path}: {row.status}; {_cell(row.ms, '.3f')} ms/step, peak {_cell(row.peak_mib, '.0f')} "
              f"MiB, compile {_cell(row.compile_s, '.1f')} s, loss {_cell(row.loss, '.4f')}; row {row.details['wall_s']:.1f} s",
              file=sys.stderr, flush=True)


def run_all(planned, ctx, started: float) -> list:
    """The rows of ``planned``, with the relative differences; after SIGTERM the path running
    FAILED and the rest are skipped."""
    def terminate(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    rows = []
    try:
        for path, kind, action in planned:
            rows.append(Row(path, kind))
            run_row(rows[-1], action, ctx, started)
    except Terminated:
        rows += [Row(path, kind, status="skipped: terminated") for path, kind, _ in planned[len(rows):]]
    finally:
        signal.signal(signal.SIGTERM, previous)
    reference = {(r.path.split()[0], r.kind): r.loss for r in rows
                 if r.path.endswith(" fp32") and r.status == "ok" and r.loss is not None}
    for row in rows:  # the relative difference against the fp32 row of the same net and kind
        fp32 = reference.get((row.path.split()[0], row.kind))
        if fp32 is not None and row.loss is not None and row.status == "ok":
            row.rel_diff = (row.loss - fp32) / abs(fp32)
    return rows


# --------------------------------------------------------------------------- results
def _cell(value, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def render(meta: dict, rows) -> str:
    title = "GPU check: training, bound and sampler paths" if meta["device"] == "cuda" else \
        "gpu_check dry run on the CPU (nothing here is a GPU measurement)"
    lines = harness.header_lines(meta, title)
    if meta.get("gpu"):
        gpu = meta["gpu"]
        lines.append(f"GPU: {gpu['name']} (compute capability {gpu['capability']}, {gpu['memory_gib']:.0f} GiB), "
                     f"CUDA {gpu['cuda']}, cuDNN {gpu['cudnn']}; TF32 matmul {gpu['tf32_matmul']}, "
                     f"TF32 cuDNN {gpu['tf32_cudnn']}, cudnn.benchmark {gpu['cudnn_benchmark']} (torch's defaults).")
    nets = "; ".join(f"{n['name']} = {n['backbone']} ({n['parameters']:,} parameters), batch {n['batch']}"
                     for n in meta["nets"])
    lines += ["", f"Data: {meta['data']}. Nets: {nets}; bound batch {meta['bound_batch']}; {meta['warmup']} warm-up + "
              f"{meta['reps']} timed repeats ({meta['sample_reps']} timed sampler call(s)).", "", "## Paths", ""]
    table = [[r.path, r.status, _cell(r.batch, "d"), _cell(r.ms, ".2f"), _cell(r.per_s, ",.0f"), _cell(r.peak_mib, ",.0f"),
              _cell(r.compile_s, ".1f"), _cell(r.loss, ".2f"), _cell(r.rel_diff, "+.1e")] for r in rows]
    lines += [harness.markdown_table(COLUMNS, table, numeric_from=2), "", "## Notes", ""]
    failed = [r.path for r in rows if r.status.startswith("FAILED")]
    late = [r.path for r in rows if r.status == "skipped: time"]
    skipped = [r for r in rows if r.status.startswith("skipped")]
    lines.append(f"- {len(rows) - len(skipped)} of {len(rows)} paths ran" + (f" ({len(skipped)} skipped)" if skipped else "")
                 + (f"; FAILED: {', '.join(failed)}" if failed else "; none failed")
                 + (f"; not started within the {meta['time_limit']:.0f} s limit: {', '.join(late)}" if late else "") + ".")
    for row in rows:
        if "skipped_before_first_update" in row.details:
            first, total = row.details["skipped_before_first_update"], row.details["skipped_updates"]
            lines.append(f"- {row.path}: from the initial scale {meta['fp16_init_scale']:g}, the gradient scaler skipped the "
                         f"first {first} updates (non-finite fp16 gradients; untimed warm-up) and {total - first} of the "
                         f"{meta['warmup']} + {meta['reps']} after them; final scale {row.details['grad_scale']:g}.")
    lines += ["- ms/step: one update (train), one batch (bound), one sampler step (sample, whose examples/s are "
              "samples/s). Compile s: the compiled backbone's first eval forward and first training update (one "
              "step's execution included).",
              "- loss: nats/image at the initial weights, eval mode, the same batch and draws in every path of a net "
              "(train rows L^inf, bound rows L^inf + L^r); rel. diff against the fp32 row of the same kind. It measures "
              "rounding, not what the precision does to training (bf16_effect.md)."]
    return "\n".join(lines) + "\n"


def gpu_meta(device: torch.device) -> dict:
    props = torch.cuda.get_device_properties(device)
    return dict(name=torch.cuda.get_device_name(device), capability=f"{props.major}.{props.minor}",
                memory_gib=props.total_memory / 2**30, cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                tf32_matmul=torch.backends.cuda.matmul.allow_tf32, tf32_cudnn=torch.backends.cudnn.allow_tf32,
                cudnn_benchmark=torch.backends.cudnn.benchmark, bf16_supported=torch.cuda.is_bf16_supported())


def main(argv=None) -> int:
    parser = harness.parser(__doc__, out=None, threads=None, device="cuda")
    add = parser.add_argument
    add("--quick", action="store_true", help="tiny U-Nets, batches of 2, 1 warm-up + 2 timed repeats")
    add("--data", choices=("auto", "synthetic"), default="auto",
        help="auto (default): MNIST test images when installed, else synthetic Bernoulli(0.5) images")
    add("--paper-batch", type=harness.positive_int, default=128, help="the paper net's batch (default 128)")
    add("--bound-batch", type=harness.positive_int, default=256, help="the bound's batch (default 256)")
    add("--warmup", type=harness.positive_int, default=None, help="warm-up repeats (default 3; --quick 1)")
    add("--reps", type=harness.positive_int, default=None, help="timed repeats (default 10; --quick 2)")
    add("--paths", nargs="*", default=None, metavar="PATTERN", help="only the paths whose name contains a pattern")
    add("--time-limit", type=float, default=240.0, help="seconds after which no path starts (default 240)")
    add("--fp16-init-scale", type=float, default=2.0**16,
        help="the gradient scaler's initial scale (default 2**16, GradScaler's and the trainer's)")
    add("--compile", action="store_true", help="run the torch.compile paths on the CPU too (minutes)")
    add("--inject-failure", nargs="*", default=[], metavar="PATTERN", help="for the tests: these paths raise")
    add("--inject-nan", nargs="*", default=[], metavar="PATTERN", help="for the tests: these paths' network outputs NaN")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(NEEDS_CUDA)
        return 0
    if device.type not in ("cuda", "cpu"):
        parser.error(f"--device must be cuda[:index] or cpu, got {args.device!r}")
    cuda = device.type == "cuda"
    if cuda and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    out = args.out if args.out is not None or not cuda else harness.RESULTS  # a CPU run writes only where told
    harness.set_threads(args.threads)
    meta = harness.provenance(__file__, argv, seed=args.seed, threads=torch.get_num_threads())
    started = time.perf_counter()

    from pyro_bfn.sampling import list_samplers

    draw, data = data_source(args)
    nets = [make_net(name, args, draw) for name in CONFIGS]
    fast = "ode2" if "ode2" in list_samplers() else next(s for s in list_samplers() if s != "ancestral")
    ctx = args  # what the paths read: the arguments, with the device and the repeats resolved
    ctx.device, ctx.warmup, ctx.reps = device, args.warmup or (1 if args.quick else 3), args.reps or (2 if args.quick else 10)
    ctx.samples, ctx.sample_reps = (2, 1) if args.quick else (16, 3)
    rows = run_all(plan(nets, ctx, fast), ctx, started)

    meta.update(device=device.type, gpu=gpu_meta(device) if cuda else None, data=data, quick=args.quick,
                bound_batch=nets[0].bound_x.shape[0], warmup=ctx.warmup, reps=ctx.reps, sample_reps=ctx.sample_reps,
                time_limit=args.time_limit, fp16_init_scale=args.fp16_init_scale,
                validation=bool(torch.distributions.Distribution._validate_args),
                nets=[dict(name=n.name, config=CONFIGS[n.name], backbone=n.config.backbone, backbone_options=n.backbone_options,
                           batch=n.batch, parameters=n.parameters) for n in nets])
    harness.finish(meta)
    markdown = render(meta, rows)
    if out is not None:
        harness.write_results(out, "gpu_check", markdown, meta, rows=[vars(r) for r in rows])
    else:
        print(markdown)
    failed = [r.path for r in rows if r.status.startswith("FAILED")]
    if failed:
        print(f"[gpu_check] {len(failed)} path(s) FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
