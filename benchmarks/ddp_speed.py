"""Data-parallel speed on this machine: one process against two ``torchrun`` gloo processes, in
examples per second of the same global batch, and the share of a step that the gradient
all-reduce costs; what that predicts for N GPUs.

One command prints the tables and writes ``benchmarks/results/ddp_speed.md`` and ``.json``::

    python benchmarks/ddp_speed.py            # demo U-Net and small MLP (~1.5 min on 2 cores)
    python benchmarks/ddp_speed.py --quick    # the MLP, few steps (a smoke test)
    python benchmarks/ddp_speed.py --render benchmarks/results/ddp_speed.json

Each model is timed in three launches of this script's ``--worker`` mode: one process with one
torch thread, one process with two threads (the same two cores as two processes), and
``torchrun --standalone --nproc-per-node 2`` with one thread per process (gloo on loopback).
A worker builds a :class:`~pyro_bfn.training.Trainer` (float32, no validation or checkpoints
during the timing) on random data of the dataset's shape (registered as a dataset of its own,
so that no data files are needed) and times :meth:`~pyro_bfn.training.Trainer.train_step` on
the global batch: the loss's draws, forward and backward of this rank's rows, the all-reduce
of :class:`~torch.nn.parallel.DistributedDataParallel`, clipping, AdamW, EMA.

**All-reduce share**: steps alternate between normal ones and ones inside DDP's
:meth:`~torch.nn.parallel.DistributedDataParallel.no_sync` (identical work without the gradient
all-reduce); the share is ``(t_sync - t_no_sync) / t_sync`` of the median step times: the part of
the all-reduce that the backward pass does not hide. The time of a bare ``dist.all_reduce`` of
the gradients' size (one float32 tensor) is reported beside it.

Timings on a shared 2-core machine are noisy: each configuration alternates its modes in rounds
and reports the median and the best round (the one least disturbed by other jobs); the load
average is in the header. Two processes on two cores compete with everything else on the machine,
so a load average above 2 makes their numbers pessimistic.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import harness

harness.passive_openmp()  # before torch loads

#: name -> (dataset whose shape and preparation the random data take, backbone, global batch)
MODELS = {
    "unet_demo": ("binarized_mnist", "unet_mnist_small_variant", 32),
    "mlp_toy": ("toy_binary", "mlp_small", 256),
}
LAUNCHES = (("1 process, 1 thread", 1, 1), ("1 process, 2 threads", 1, 2), ("2 processes, 1 thread each", 2, 1))
#: NCCL bus bandwidths (GB/s) for the prediction: roughly PCIe / 100 Gb/s networks, InfiniBand
#: NDR per GPU, NVLink of an 8-GPU H100 node (orders of magnitude, not measurements)
BANDWIDTHS = (10, 50, 300)
#: parameters of the paper's networks (benchmarks/results/memory.md)
PAPER_PARAMETERS = {"paper MNIST U-Net": 24.81e6, "paper CIFAR-10 U-Net": 30.73e6, "paper text8 Transformer": 170.18e6}


# --------------------------------------------------------------------------- the worker
def worker(model: str, steps: int, rounds: int, result_path: str) -> int:
    """``--worker``: time the steps of ``model`` in this process (of a ``torchrun`` launch or alone)."""
    import torch
    import torch.distributed as dist

    from pyro_bfn import zoo
    from pyro_bfn.training import TrainConfig, Trainer

    dataset, backbone, batch = MODELS[model]
    base = zoo.get_dataset(dataset)
    high = 2 if dataset == "toy_binary" else 256

    def random_split(split, count=max(batch, 512)):
        generator = torch.Generator().manual_seed(0 if split == "train" else 1)
        return torch.randint(0, high, (count, *base.data_shape), generator=generator, dtype=torch.uint8)

    name = f"random_{dataset}"
    zoo.register_dataset(dataclasses.replace(base, name=name, load=random_split, description="random data"),
                         overwrite=True)
    with tempfile.TemporaryDirectory() as directory:
        config = TrainConfig(dataset=name, backbone=backbone, batch_size=batch, autocast="none", device="cpu",
                             num_threads=torch.get_num_threads(), eval_interval=0, sample_interval=0,
                             ckpt_interval=0, progress=False, out_dir=directory, max_steps=10**6)
        trainer = Trainer(config, log=lambda line: None)
        data = trainer.batch(0)
        data = data if isinstance(data, tuple) else (data,)  # (x, context) or x

        def step():
            trainer.train_step(*data)

        for _ in range(2):  # warm-up: allocations, the first all-reduce's buckets
            step()
        ddp = trainer.parallel_model
        modes = {"sync": step}
        if ddp is not None:
            def no_sync():
                with ddp.no_sync():
                    step()
            modes["no_sync"] = no_sync
        seconds = harness.alternate({m: (lambda fn=fn: [fn() for _ in range(steps)]) for m, fn in modes.items()},
                                    rounds)
        per_step = {m: [s / steps for s in values] for m, values in seconds.items()}
        parameters = sum(p.numel() for p in trainer.model.parameters())
        bare = None
        if ddp is not None:
            flat = torch.zeros(parameters)
            times = []
            for _ in range(5 * rounds):
                dist.barrier()
                start = time.perf_counter()
                dist.all_reduce(flat)
                times.append(time.perf_counter() - start)
            bare = statistics.median(times)
        if trainer.group.is_main:
            pathlib.Path(result_path).write_text(json.dumps(dict(
                model=model, dataset=dataset, backbone=backbone, batch=batch, parameters=parameters,
                processes=trainer.group.world_size, threads=torch.get_num_threads(), seconds=per_step,
                bare_all_reduce_s=bare)))
        if ddp is not None:
            dist.destroy_process_group()
    return 0


# --------------------------------------------------------------------------- the launches
def launch(model: str, processes: int, threads: int, steps: int, rounds: int, directory) -> dict:
    result = pathlib.Path(directory) / f"{model}_{processes}_{threads}.json"
    script = [str(pathlib.Path(__file__).resolve()), "--worker", model, str(steps), str(rounds), str(result)]
    launcher = [sys.executable] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)]
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "CI": "true"}
    proc = subprocess.run(launcher + script, env=environment, capture_output=True, text=True, timeout=600,
                          cwd=harness.ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{model} with {processes} process(es) failed:\n{proc.stderr[-3000:]}")
    return json.loads(result.read_text())


def summarise(found: dict) -> dict:
    """Median and best (least disturbed by other jobs) step times, examples/s and all-reduce shares."""
    seconds = found["seconds"]
    sync, best = statistics.median(seconds["sync"]), min(seconds["sync"])
    row = dict(found, step_s=sync, examples_per_s=found["batch"] / sync, best_step_s=best,
               best_examples_per_s=found["batch"] / best)
    if "no_sync" in seconds:
        no_sync, best_no_sync = statistics.median(seconds["no_sync"]), min(seconds["no_sync"])
        row.update(no_sync_step_s=no_sync, all_reduce_share=(sync - no_sync) / sync,
                   best_all_reduce_share=(best - best_no_sync) / best)
    return row


def ring_all_reduce_ms(parameters: float, gpus: int, bandwidth_gb_s: float) -> float:
    """Time of a ring all-reduce of ``parameters`` float32 gradients over ``gpus`` GPUs at a bus
    bandwidth (each GPU sends and receives ``2 (N - 1) / N`` times the gradients' bytes)."""
    return 2 * (gpus - 1) / gpus * 4 * parameters / (bandwidth_gb_s * 1e9) * 1e3


def markdown(meta, rows) -> str:
    lines = harness.header_lines(meta, "Data-parallel speed: 1 process vs 2 gloo processes") + [""]
    lines += ["Same global batch per update in every launch (2 processes: half of it each); float32; random data of "
              "the dataset's shape. `all-reduce share` = (step - step under DDP no_sync) / step, of the median and "
              "of the best round: the part of the gradient all-reduce the backward pass does not hide. `bare all-reduce`: one `dist.all_reduce` of a "
              "float32 tensor of the gradients' size.", "", "## Steps", ""]
    table = []
    for row in rows:
        base = next(r for r in rows if r["model"] == row["model"] and r["processes"] == 1 and r["threads"] == 1)
        shares = "–" if "all_reduce_share" not in row else \
            f"{100 * row['all_reduce_share']:.0f}% / {100 * row['best_all_reduce_share']:.0f}%"
        table.append([row["model"], f"{row['backbone']} ({row['parameters'] / 1e6:.2f}M)", row["batch"], row["launch"],
                      f"{row['step_s'] * 1e3:.1f}", f"{row['examples_per_s']:.0f} / {row['best_examples_per_s']:.0f}",
                      f"{row['examples_per_s'] / base['examples_per_s']:.2f}x / "
                      f"{row['best_examples_per_s'] / base['best_examples_per_s']:.2f}x",
                      f"{row['no_sync_step_s'] * 1e3:.1f}" if "no_sync_step_s" in row else "–", shares,
                      f"{row['bare_all_reduce_s'] * 1e3:.2f}" if row.get("bare_all_reduce_s") else "–"])
    lines += [harness.markdown_table(["model", "network", "global batch", "launch", "step ms (median)",
                                      "ex/s median / best", "vs 1 process 1 thread", "no_sync step ms",
                                      "all-reduce share median / best", "bare all-reduce ms"], table,
                                     numeric_from=4), ""]
    lines += ["## Ring all-reduce per update on N GPUs (computed, not measured)", "",
              "`2 (N-1)/N x 4 bytes x parameters / bus bandwidth`, float32 gradients, in ms; bandwidths "
              f"{', '.join(map(str, BANDWIDTHS))} GB/s stand for PCIe or 100 Gb/s Ethernet, InfiniBand NDR per GPU, "
              "NVLink within an H100 node (orders of magnitude).", ""]
    table = []
    for label, parameters in PAPER_PARAMETERS.items():
        for gpus in (8, 64):
            table.append([label, f"{parameters / 1e6:.1f}M", gpus]
                         + [f"{ring_all_reduce_ms(parameters, gpus, b):.1f}" for b in BANDWIDTHS])
    lines += [harness.markdown_table(["network", "parameters", "GPUs"] + [f"{b} GB/s" for b in BANDWIDTHS], table,
                                     numeric_from=1), ""]
    return "\n".join(lines)


def main(argv=None):
    if argv is None and sys.argv[1:2] == ["--worker"]:
        model, steps, rounds, result = sys.argv[2:6]
        return worker(model, int(steps), int(rounds), result)
    parser = harness.parser(__doc__, threads=None, device=None, render="re-render a saved ddp_speed.json")
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--steps", type=harness.positive_int, default=3, help="steps per timed round (3)")
    parser.add_argument("--rounds", type=harness.positive_int, default=5, help="rounds per mode (5)")
    parser.add_argument("--quick", action="store_true", help="the MLP, 1 round of 2 steps (a smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.steps, args.rounds = ["mlp_toy"], 2, 1
    if args.render is not None:
        saved = harness.load_saved(args.render)
        harness.write_results(args.out, "ddp_speed", markdown(saved["meta"], saved["rows"]), saved["meta"],
                              rows=saved["rows"])
        return 0
    meta = harness.provenance(__file__, argv, seed=args.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ddp_speed_") as directory:
        for model in args.models:
            for label, processes, threads in LAUNCHES:
                row = summarise(launch(model, processes, threads, args.steps, args.rounds, directory))
                rows.append(dict(row, launch=label))
                print(f"{model}, {label}: {row['examples_per_s']:.0f} ex/s", file=sys.stderr, flush=True)
    harness.finish(meta)
    harness.write_results(args.out, "ddp_speed", markdown(meta, rows), meta, rows=rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
