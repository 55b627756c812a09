"""The cost and accuracy of the discrete n-step loss: the KL that ``BFN.discrete_time_loss``
uses against the reference implementation's factorised estimate.

One command prints Markdown tables and writes ``benchmarks/results/speed_losses.md`` and
``.json`` (raw numbers, command, seed, versions, CPU model and vector features, threads, load)::

    python benchmarks/speed_losses.py                  # kl_k2 and kl_k27
    python benchmarks/speed_losses.py --quick          # tiny shapes, a smoke test
    python benchmarks/speed_losses.py --render benchmarks/results/speed.json   # the KL rows of an older speed.json

The KL registered for (``DiscreteSender``, ``DiscreteReceiver``) (the joint K-dimensional
receiver of the paper, Sec. 6: quadrature for K = 2, an unbiased 16-sample Monte Carlo estimate
for K > 2) against the reference's estimator, written here only
(:func:`factorised_receiver_kl`): a receiver factorised per dimension (a product of K
one-dimensional mixtures) and 10 sender samples. For each configuration (K, beta_1 and a batch
shape of the data):

* **cost**: time per call on a batch, forward and forward + backward to the output logits,
  beside the continuous-time rate :math:`\\alpha(t)\\,\\mathrm{KL}` rate of :math:`L^\\infty`;
* **accuracy**: for one variable at steps 1, n/2 and n of n = 10 and three output
  probabilities on the true class, the mean and spread of each estimate across seeds and its
  bias against the exact joint KL (quadrature for K = 2; a 2^20-sample float64 Monte Carlo value
  for K = 27);
* the DESIGN.md check of the factorised receiver (K = 2, alpha = 0.81, p = 0.4: joint 0.399,
  factorised 0.471).

CPU budget: the committed numbers (the n-step KL section of ``speed.md``) were measured as part
of ``speed.py``'s default run, before this study had its own script; its share of that run's 19
minutes was not recorded separately.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time

import harness
from speed_configs import NSTEP_LOSS_STEPS

CONFIGS = {
    "kl_k2": dict(kind="kl", num_classes=2, beta_1=9.0, shape=(8, 784), label="binary MNIST batch (8, 784)"),
    "kl_k27": dict(kind="kl", num_classes=27, beta_1=0.5625, shape=(8, 256), label="text batch (8, 256)"),
    # tiny configurations for --quick and the smoke test
    "tiny_kl_k2": dict(kind="kl", num_classes=2, beta_1=9.0, shape=(2, 64), label="tiny (2, 64)"),
    "tiny_kl_k27": dict(kind="kl", num_classes=27, beta_1=0.5625, shape=(2, 32), label="tiny (2, 32)"),
}
DEFAULT_CONFIGS = [name for name in CONFIGS if not name.startswith("tiny_")]
QUICK_CONFIGS = [name for name in CONFIGS if name.startswith("tiny_")]
SETTINGS = {
    "full": dict(kl_variables=4096, kl_seeds=20, kl_exact_samples=2**20, kl_repeats=5),
    "quick": dict(kl_variables=256, kl_seeds=4, kl_exact_samples=2**12, kl_repeats=2),
}
FACTORISED_SAMPLES = 10


def factorised_receiver_kl(x, accuracy, logits, num_samples: int = FACTORISED_SAMPLES):
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


def run_kl(name: str, s: dict, device_name: str) -> dict:
    import torch
    from torch.distributions import kl_divergence

    from pyro_bfn.data_types import DiscreteData
    from pyro_bfn.distributions import CategoricalOutput, continuous_time_kl_rate
    from pyro_bfn.sampling import TimeGrid

    cfg = CONFIGS[name]
    device = torch.device(device_name)
    timed = harness.timer(device)
    num_classes, beta_1 = cfg["num_classes"], cfg["beta_1"]
    data_type = DiscreteData(num_classes, beta_1)
    n = NSTEP_LOSS_STEPS
    out = dict(name=name, config=cfg, n_steps=n, kl_samples_registered=data_type.kl_samples,
               factorised_samples=FACTORISED_SAMPLES)

    def registered(x, accuracy, logits):
        output = CategoricalOutput(logits=logits)
        return kl_divergence(data_type.sender(x, accuracy), data_type.receiver(output, accuracy))

    # ---- cost per call on a batch of the data's shape (random i, logits from the flow plus noise)
    generator = torch.Generator().manual_seed(s["seed"])
    shape = tuple(cfg["shape"])
    x = torch.randint(0, num_classes, shape, generator=generator).to(device)
    i = torch.randint(1, n + 1, shape[:1], generator=generator).to(device)
    t = TimeGrid(n).start_time(i, torch.float32)
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


# --------------------------------------------------------------------------- tables
COST_COLUMNS = [
    "config", "K", "batch shape", "registered KL fwd ms", "registered KL fwd+bwd ms", "factorised-10 fwd ms",
    "factorised-10 fwd+bwd ms", "cont.-time rate fwd+bwd ms", "registered / cont.", "factorised / cont.", "load",
]
ACCURACY_COLUMNS = [
    "config", "i/n", "alpha", "p_O(x)", "exact joint KL", "registered mean", "registered sd (1 var)",
    "factorised-10 mean", "factorised-10 sd (1 var)", "factorised bias", "factorised rel. bias",
]


def _is_kl(result: dict) -> bool:
    return result.get("config", {}).get("kind") == "kl"


def render(results: list, meta: dict) -> str:
    kls = [r for r in results if _is_kl(r) and "error" not in r]
    failed = [r for r in results if _is_kl(r) and "error" in r]
    n = NSTEP_LOSS_STEPS
    lines = [*harness.header_lines(meta, f"Discrete n-step KL (n = {n}): registered joint-receiver KL vs the "
                                         "reference's factorised 10-sample estimate"), ""]
    cost_rows, accuracy_rows = [], []
    for r in kls:
        c, k = r["config"], r["cost"]
        cont = k["continuous_time"]["forward_backward_ms"]
        cost_rows.append([
            r["name"], c["num_classes"], "x".join(map(str, c["shape"])),
            f"{k['registered']['forward_ms']:.2f}", f"{k['registered']['forward_backward_ms']:.2f}",
            f"{k['factorised_10']['forward_ms']:.2f}", f"{k['factorised_10']['forward_backward_ms']:.2f}",
            f"{cont:.2f}", f"{k['registered']['forward_backward_ms'] / cont:.1f}x",
            f"{k['factorised_10']['forward_backward_ms'] / cont:.1f}x",
            f"{r['load_before']:.1f}→{r['load_after']:.1f}",
        ])
        for a in r["accuracy"]:
            exact = f"{a['exact']:.4f}" + (f" ± {a['exact_se']:.4f}" if a["exact_se"] else "")
            accuracy_rows.append([
                r["name"], f"{a['step']}/{r['n_steps']}", f"{a['alpha']:.3f}", a["p_true"], exact,
                f"{a['registered']['mean']:.4f}", f"{a['registered']['sd_one_variable']:.4f}",
                f"{a['factorised_10']['mean']:.4f}", f"{a['factorised_10']['sd_one_variable']:.4f}",
                f"{a['factorised_10']['bias']:+.4f}", f"{100 * a['factorised_10']['relative_bias']:+.1f}%",
            ])
    lines += ["## Cost", "", "Per call on a batch of the data's shape (n times the KL summed over the batch; backward to "
              "the output logits):", "", harness.markdown_table(COST_COLUMNS, cost_rows), "",
              "## Accuracy", "", "For one variable at step i (alpha_i), output probability p_O(x) on the true class, the "
              "rest uniform; mean and sd over seeds x variables:", "", harness.markdown_table(ACCURACY_COLUMNS, accuracy_rows),
              ""]
    for r in kls:
        if "design_check" in r:
            d = r["design_check"]
            lines.append(f"Check against DESIGN.md (K = 2, alpha = {d['alpha']}, p = {d['p_true']}; expected joint "
                         f"{d['expected'][0]}, factorised {d['expected'][1]}): joint {d['joint']:.3f}, factorised "
                         f"{d['factorised']:.3f}.")
    if failed:
        lines += ["", "## Failed configurations", ""] + [f"- {r['name']}: {r['error']}" for r in failed]
    lines += ["", "## Notes", ""] + [f"- {note}" for note in notes(kls)] + [""]
    return "\n".join(lines)


def notes(kls: list) -> list:
    out = []
    for r in kls:
        k = r["cost"]
        registered, factorised = k["registered"]["forward_backward_ms"], k["factorised_10"]["forward_backward_ms"]
        worst = max(r["accuracy"], key=lambda a: abs(a["factorised_10"]["relative_bias"]))
        out.append(
            f"{r['name']} ({r['config']['label']}): the registered KL takes {registered:.2f} ms forward + backward, "
            f"{registered / factorised:.2f}x the factorised estimate's {factorised:.2f} ms; the factorised estimate's "
            f"largest relative bias is {100 * worst['factorised_10']['relative_bias']:+.1f}% (step "
            f"{worst['step']}/{r['n_steps']}, p_O(x) = {worst['p_true']})."
        )
    return out


# --------------------------------------------------------------------------- driver
def main(argv=None) -> int:
    parser = harness.parser(__doc__, threads=None, render="re-render from a speed_losses.json, or the n-step KL "
                            "rows of an older speed.json")
    harness.add_configs(parser, CONFIGS, DEFAULT_CONFIGS, QUICK_CONFIGS, "tiny shapes, few seeds and repeats")
    args = parser.parse_args(argv)
    if args.render:
        saved = harness.load_saved(args.render)
        results = [r for r in saved["results"] if _is_kl(r)]
        harness.write_results(args.out, "speed_losses", render(results, saved["meta"]), saved["meta"], results=results)
        return 0
    names = harness.selected_configs(parser, args)

    import torch

    harness.set_threads(args.threads)
    meta = harness.provenance(__file__, argv, seed=args.seed, threads=torch.get_num_threads())
    meta.update(device=args.device, quick=args.quick)
    settings = dict(SETTINGS["quick" if args.quick else "full"], seed=args.seed)
    results = []
    for name in names:
        print(f"[speed_losses] {name} (load {os.getloadavg()[0]:.2f}) ...", file=sys.stderr, flush=True)
        torch.manual_seed(args.seed)
        load_before, start = os.getloadavg()[0], time.perf_counter()
        result = run_kl(name, settings, args.device)
        result.update(settings=settings, seconds=time.perf_counter() - start, load_before=load_before,
                      load_after=os.getloadavg()[0], threads=torch.get_num_threads(), device=args.device)
        results.append(result)
    harness.finish(meta)
    harness.write_results(args.out, "speed_losses", render(results, meta), meta, results=results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
