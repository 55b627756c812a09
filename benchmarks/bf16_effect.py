"""Does bf16 autocast of the backbone on this CPU change the likelihood bound? Two models of the
demo configuration (``configs/mnist_demo.yaml``: binarized MNIST, the 1.08M-parameter
``unet_mnist_small_variant``, batch 64) trained from the same seed on the same data order for
the same number of updates, one in float32 and one with bf16 autocast of the backbone (the loss
is float32 in both); each then scored in both precisions.

One command::

    python benchmarks/bf16_effect.py                      # 300 updates each, 2,000 test images (~12 min)
    python benchmarks/bf16_effect.py --steps 1000 --test-examples 10000

Protocol: the continuous-time bound :math:`L^\\infty + L^r` (nats/image, EMA weights) on the first
``--test-examples`` test images, one pass, with the same seed for every (model, precision)
pair, so that all four see the same binarizations, times and flow samples (common random
numbers): the differences between them are paired per image, and their standard errors are
those of the per-image differences (much smaller than the standard error of either bound).

Writes ``benchmarks/results/bf16_effect.md`` and ``.json`` (command, seed, versions, CPU, load,
wall time). Checkpoints go to ``runs/bf16_effect/`` (not committed).

CPU budget: about 12 minutes with 2 threads on the shared 2-core reference machine when quiet
(training 300 x 64 examples at ~90 examples/s in float32 and ~125 in bf16, then four
evaluations of 2,000 images).
"""

from __future__ import annotations

import math
import pathlib
import sys
import time

import harness

harness.passive_openmp()  # before torch loads

CONFIG = harness.ROOT / "configs" / "mnist_demo.yaml"
PRECISIONS = ("none", "bf16")  # TrainConfig.autocast values
LABEL = {"none": "float32", "bf16": "bf16"}


def per_example_bound(bfn, spec, raw, seed: int, batch_size: int):
    """Per-example continuous-time bound L^inf + L^r (float64, nats), with the draws of
    :func:`pyro_bfn.evaluation.evaluate_bound` (same seeding, same order)."""
    import torch

    with torch.inference_mode():
        return torch.cat([bfn.loss(x, n_steps=None, reconstruction=True).total.double()
                          for x in harness.seeded_batches(spec, raw, seed, batch_size)])


def render(meta: dict, training: list, scores: list) -> str:
    lines = [
        *harness.header_lines(meta, "bf16 autocast on CPU: speed and effect on the likelihood bound"),
        f"Model: configs/mnist_demo.yaml ({meta['backbone']}, batch {meta['batch_size']}), {meta['steps']} updates "
        f"from the same seed; bound: continuous time + reconstruction on the first {meta['test_examples']:,} test images, "
        "one pass, common random numbers.",
        "",
        "## Training",
        "",
        "| training precision | updates | wall min | examples/s | final training loss (mean of last 5 log rows) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in training:
        lines.append(f"| {row['precision']} | {row['updates']} | {row['minutes']:.2f} | {row['examples_per_s']:.1f} "
                     f"| {row['final_loss']:.2f} |")
    lines += [
        "",
        "## Bound (nats/image)",
        "",
        "| trained in | scored in | bound ± s.e. | minus (float32, float32) ± paired s.e. | eval examples/s |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for row in scores:
        lines.append(f"| {row['trained']} | {row['scored']} | {row['nats']:.2f} ± {row['stderr']:.2f} "
                     f"| {row['difference']:+.3f} ± {row['difference_stderr']:.3f} | {row['examples_per_s']:.1f} |")
    lines += ["", "## Notes", ""]
    fp32, bf16 = training
    lines.append(f"- Training speed-up of bf16 autocast: {bf16['examples_per_s'] / fp32['examples_per_s']:.2f}x "
                 "(the wall-clock rates of a shared machine; see benchmarks/results/speed.md for repeated timings).")
    by = {(r["trained"], r["scored"]): r for r in scores}
    same = by[("bf16", "bf16")]
    evaluation = by[("float32", "bf16")]
    lines.append(
        f"- bf16 end to end (trained and scored in bf16) vs float32 end to end: {same['difference']:+.3f} ± "
        f"{same['difference_stderr']:.3f} nats/image; scoring the float32 model in bf16 alone changes its bound by "
        f"{evaluation['difference']:+.3f} ± {evaluation['difference_stderr']:.3f}. Two training runs from one seed differ "
        "also through the rounding's effect on the optimisation path, so the training-precision difference is one draw, "
        "not an expectation."
    )
    lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = harness.parser(__doc__, threads=2, device=None)
    parser.add_argument("--steps", type=harness.positive_int, default=300, help="updates per model (default 300)")
    parser.add_argument("--test-examples", type=harness.integer_at_least(2), default=2000,
                        help="test images scored (at least 2, for the paired standard error; default 2000)")
    parser.add_argument("--batch-size", type=harness.positive_int, default=500, help="evaluation batch size")
    parser.add_argument("--config", type=pathlib.Path, default=CONFIG)
    parser.add_argument("--overrides", nargs="*", default=[], help="extra key=value overrides of the configuration")
    parser.add_argument("--runs", type=pathlib.Path, default=harness.ROOT / "runs" / "bf16_effect")
    args = parser.parse_args(argv)

    from pyro_bfn import zoo
    from pyro_bfn.training import TrainConfig, Trainer, load_model

    harness.set_threads(args.threads)
    meta = harness.provenance(__file__, argv, seed=args.seed, threads=args.threads)
    training, checkpoints = [], {}
    config = None
    for precision in PRECISIONS:
        run_dir = args.runs / precision
        config = TrainConfig.from_yaml(args.config, list(args.overrides) + [
            f"autocast={precision}", f"max_steps={args.steps}", "time_budget_minutes=null", "budget_reserve_examples=0",
            "eval_interval=0", "sample_interval=0", "ckpt_interval=0", f"seed={args.seed}", f"out_dir={run_dir}",
            f"num_threads={args.threads}", "device=cpu", f"progress={'true' if sys.stderr.isatty() else 'false'}",
        ])
        began = time.perf_counter()
        Trainer(config, overwrite=True).train()
        minutes = (time.perf_counter() - began) / 60
        losses = [float(row["loss"]) for row in harness.read_run_log(run_dir, "train")]
        training.append(dict(precision=LABEL[precision], updates=args.steps,
                             minutes=minutes, examples_per_s=args.steps * config.batch_size / (minutes * 60),
                             final_loss=sum(losses[-5:]) / len(losses[-5:])))
        checkpoints[precision] = run_dir / "checkpoint.pt"
        print(f"[bf16_effect] trained {precision}: {minutes:.2f} min", file=sys.stderr, flush=True)

    spec = zoo.get_dataset(config.dataset)
    raw = spec.load("test")[: args.test_examples]
    values, scores = {}, []
    for trained in PRECISIONS:
        for scored in PRECISIONS:
            bfn, _, _ = load_model(checkpoints[trained], device="cpu", autocast=scored)
            began = time.perf_counter()
            values[trained, scored] = per_example_bound(bfn, spec, raw, args.seed, args.batch_size)
            rate = raw.shape[0] / (time.perf_counter() - began)
            v = values[trained, scored]
            d = v - values["none", "none"]
            n = v.numel()
            scores.append(dict(
                trained=LABEL[trained], scored=LABEL[scored],
                nats=v.mean().item(), stderr=(v.std() / math.sqrt(n)).item(), difference=d.mean().item(),
                difference_stderr=(d.std() / math.sqrt(n)).item(), examples_per_s=rate,
            ))
            print(f"[bf16_effect] trained {trained}, scored {scored}: {v.mean().item():.3f}", file=sys.stderr, flush=True)
    meta.update(backbone=config.backbone, batch_size=config.batch_size, steps=args.steps, test_examples=int(raw.shape[0]))
    harness.finish(meta)
    harness.write_results(args.out, "bf16_effect", render(meta, training, scores), meta, training=training, scores=scores)
    return 0


if __name__ == "__main__":
    sys.exit(main())
