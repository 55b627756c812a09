"""Parameters and forward+backward throughput of the named backbones on CPU.

For each configuration: the parameter count, and examples per second of one training-style
step (forward, mean-square loss of the output cast to float32, backward; no optimiser) in
float32 and under ``torch.autocast("cpu", dtype=torch.bfloat16)``. Printed as a Markdown
table. The 170M-parameter text8 Transformer is skipped unless named explicitly.

Example::

    python benchmarks/backbone_speed.py --configs unet_small unet_mnist_small_variant --batch 32

Numbers on a shared 2-core machine are noisy: after ``--warmup`` untimed steps, the median
and the best of ``--iters`` timed steps are reported, the two modes timed in alternation.
With ``--out DIR`` the table and its JSON (command, versions, CPU, load) are written to
``DIR/backbone_speed.md`` / ``.json``; without it the table is only printed.
"""

from __future__ import annotations

import sys
from functools import partial

import harness

# name -> (in, out, example input shape without the batch dimension)
EXAMPLES = {
    "mlp_small": (784, 784, (784,)),
    "unet_small": (1, 1, (1, 28, 28)),
    "unet_mnist_small_variant": (1, 1, (1, 28, 28)),
    "unet_mnist_paper": (1, 1, (1, 28, 28)),
    "unet_cifar_paper": (3, 6, (3, 32, 32)),
    "transformer_small": (27, 27, (256, 27)),
    "transformer_text8_paper": (27, 27, (256, 27)),
}
SKIP_BY_DEFAULT = {"transformer_text8_paper"}
COLUMNS = ["config", "params", "fp32 ex/s (median / best)", "bf16 autocast ex/s (median / best)",
           "bf16 speed-up (median)"]


def throughputs(net, shape: tuple, batch: int, warmup: int, iters: int) -> dict:
    """Examples per second of forward + backward in float32 and bf16 autocast.

    The two modes are timed in alternation (:func:`harness.alternate`), so that load from other
    processes hits both alike. Returns ``{mode: harness.throughput(...)}``.
    """
    import torch

    h = torch.randn(batch, *shape)
    t = torch.rand(batch)

    def step(bf16: bool) -> None:
        net.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = net(h, t)
        y.float().square().mean().backward()

    calls = {"fp32": partial(step, False), "bf16": partial(step, True)}
    harness.alternate(calls, warmup)
    return {mode: harness.throughput(seconds, batch) for mode, seconds in harness.alternate(calls, iters).items()}


def main(argv=None) -> int:
    parser = harness.parser(__doc__, out=None, threads=None, device=None)
    parser.add_argument("--configs", nargs="*", default=None, help="names (default: all but the 170M transformer)")
    parser.add_argument("--batch", type=harness.positive_int, default=32)
    parser.add_argument("--warmup", type=harness.non_negative_int, default=2)
    parser.add_argument("--iters", type=harness.positive_int, default=5)
    args = parser.parse_args(argv)

    import torch

    from pyro_bfn.models import build_backbone, list_backbones

    harness.set_threads(args.threads)
    names = args.configs or [n for n in list_backbones() if n not in SKIP_BY_DEFAULT]
    unknown = [n for n in names if n not in EXAMPLES]
    if unknown:
        parser.error(f"no example input for {unknown}; known: {', '.join(EXAMPLES)}")
    meta = harness.provenance(__file__, argv, seed=args.seed, threads=torch.get_num_threads())
    meta.update(batch=args.batch, warmup=args.warmup, iters=args.iters)
    print(f"batch {args.batch}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"median and best of {args.iters} steps per mode after {args.warmup} warm-up\n", file=sys.stderr)
    rows, results = [], []
    for name in names:
        cin, cout, shape = EXAMPLES[name]
        torch.manual_seed(args.seed)
        net = build_backbone(name, cin, cout).train()
        params = sum(p.numel() for p in net.parameters())
        r = throughputs(net, shape, args.batch, args.warmup, args.iters)
        f, b = r["fp32"], r["bf16"]
        rows.append([name, f"{params:,}", f"{f['per_s']:.1f} / {f['best_per_s']:.1f}",
                     f"{b['per_s']:.1f} / {b['best_per_s']:.1f}", f"{b['per_s'] / f['per_s']:.2f}x"])
        results.append(dict(name=name, params=params, **r))
        print(f"[backbone_speed] {name}: {f['per_s']:.1f} / {b['per_s']:.1f} ex/s", file=sys.stderr, flush=True)
    harness.finish(meta)
    markdown = "\n".join([*harness.header_lines(meta, "Forward + backward throughput of the named backbones"),
                          f"Batch {args.batch}; median and best of {args.iters} steps per mode after {args.warmup} "
                          "warm-up rounds, float32 and bf16 autocast in alternation.", "",
                          harness.markdown_table(COLUMNS, rows), ""])
    if args.out is None:
        print(markdown)
    else:
        harness.write_results(args.out, "backbone_speed", markdown, meta, results=results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
