"""A CPU-time profile of a training step and an evaluation pass of named model configurations
(those of ``speed_configs.py``), range by range and per operator: what ``speed.py``'s "flow +
loss" share is made of, on a machine where wall-clock timings are disturbed by other jobs.

One command writes ``benchmarks/results/speed.profile.md`` and prints it::

    python benchmarks/speed_profile.py mnist_small_variant_b8 mnist_paper_b8
    python benchmarks/speed_profile.py tiny_binary_mlp --repeats 2      # a smoke test

For each configuration, in this process with one torch thread, timed with
:func:`time.thread_time` (the CPU time of the calling thread, which with one thread does all
the work), so that preemption by other processes does not count:

* the training step (float32, continuous-time loss, AdamW) and the evaluation pass
  :math:`L^\\infty + L^r` range by range (input validation, flow, network features, network,
  output distribution, loss, backward, AdamW);
* the operators of three training steps by self CPU time (:mod:`torch.profiler`) and the share
  of the convolution kernels;
* flow + loss alone (the network replaced by a stub that returns a stored output, as in
  ``speed.py``) with distribution validation on and off, and its top functions by own CPU time
  (:mod:`cProfile` with the thread-time clock).

CPU budget, per configuration and on one thread: ``--repeats`` + 2 training steps and as many
evaluation passes for the range tables, 3 profiled steps, and a few dozen calls of the stub
(no network).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import harness
from speed_configs import CONFIGS, NSTEP_LOSS_STEPS, build, stored_output_network

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


def profile_config(name: str, repeats: int, seed: int) -> str:
    """CPU-time profile of one training step and one evaluation pass of a model
    configuration, in this process with one torch thread, timed with ``time.thread_time`` (CPU
    time of the calling thread, which with one thread does all the work): robust to
    preemption by other processes, unlike wall-clock profilers on a shared machine.

    The step is decomposed range by range with the same public calls that
    ``BFN.continuous_time_loss`` / ``BFN.reconstruction_loss`` make (a profile has to split
    the loss into its calls to time them); then flow+loss alone
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

    cfg = CONFIGS[name]
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    clock = time.thread_time
    bfn, spec, x = build(name, seed)
    data_type, batch = bfn.data_type, cfg["batch"]
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

    stub = BFN(data_type, stored_output_network(stored), spec.data_shape)

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
        text = [line.replace(str(harness.ROOT) + "/", "").replace(sys.prefix + "/", "") for line in text]
        lines += [f"### cProfile (thread-time clock): {count} x stub {label}, by own time", "", "```"] + text + ["```", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = harness.parser(__doc__, threads=None, device=None)
    parser.add_argument("configs", nargs="+", metavar="CONFIG", help=f"model configurations: {', '.join(CONFIGS)}")
    parser.add_argument("--repeats", type=harness.positive_int, default=5, help="timed calls per range (default 5)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.configs if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown model configs {unknown}; known: {', '.join(CONFIGS)}")
    meta = harness.provenance(__file__, argv, seed=args.seed, threads=1)
    sections = [profile_config(n, args.repeats, args.seed) for n in args.configs]
    harness.finish(meta)
    text = "\n".join([*harness.header_lines(meta, "CPU-time profile of a training step and an evaluation pass"), ""])
    harness.write_results(args.out, "speed.profile", text + "\n" + "\n".join(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
