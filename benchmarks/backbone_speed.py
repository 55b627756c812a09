"""Parameters and forward+backward throughput of the named backbones on CPU.

For each configuration: the parameter count, and examples per second of one training-style
step (forward, mean-square loss of the output cast to float32, backward; no optimiser) in
float32 and under ``torch.autocast("cpu", dtype=torch.bfloat16)``. Printed as a Markdown
table. The 170M-parameter text8 Transformer is skipped unless named explicitly.

Example::

    python benchmarks/backbone_speed.py --configs unet_small unet_mnist_small_variant --batch 32

Numbers on a shared 2-core machine are noisy: after ``--warmup`` untimed steps, the median
and the best of ``--iters`` timed steps are reported, the two modes timed in alternation.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from pyro_bfn.models import build_backbone, list_backbones

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


def throughputs(net: torch.nn.Module, shape: tuple, batch: int, warmup: int, iters: int) -> dict:
    """Examples per second of forward + backward in float32 and bf16 autocast.

    The two modes are timed in alternation, so that load from other processes hits both
    alike. Returns ``{mode: (median, best)}`` in examples per second.
    """
    h = torch.randn(batch, *shape)
    t = torch.rand(batch)

    def step(bf16: bool) -> float:
        t0 = time.perf_counter()
        net.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = net(h, t)
        y.float().square().mean().backward()
        return time.perf_counter() - t0

    for _ in range(warmup):
        step(False)
        step(True)
    times = {"fp32": [], "bf16": []}
    for _ in range(iters):
        times["fp32"].append(step(False))
        times["bf16"].append(step(True))
    return {k: (batch / statistics.median(v), batch / min(v)) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="*", default=None, help="names (default: all but the 170M transformer)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.configs or [n for n in list_backbones() if n not in SKIP_BY_DEFAULT]

    print(f"batch {args.batch}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"median and best of {args.iters} steps per mode after {args.warmup} warm-up\n")
    print("| config | params | fp32 ex/s (median / best) | bf16 autocast ex/s (median / best) | bf16 speed-up (median) |")
    print("|---|---:|---:|---:|---:|")
    for name in names:
        cin, cout, shape = EXAMPLES[name]
        torch.manual_seed(0)
        net = build_backbone(name, cin, cout).train()
        n_params = sum(p.numel() for p in net.parameters())
        r = throughputs(net, shape, args.batch, args.warmup, args.iters)
        (f_med, f_best), (b_med, b_best) = r["fp32"], r["bf16"]
        print(
            f"| {name} | {n_params:,} | {f_med:.1f} / {f_best:.1f} | {b_med:.1f} / {b_best:.1f} | {b_med / f_med:.2f}x |",
            flush=True,
        )

if __name__ == "__main__":
    main()
