"""The cost of the losses outside the backbone: the discrete n-step KL that
``BFN.discrete_time_loss`` uses against the reference implementation's factorised estimate, and
the discretised output's mean (the 256-bin continuous-time loss) by its current scheme against
the full evaluation over all K - 1 edges.

One command prints Markdown tables and writes ``benchmarks/results/speed_losses.md`` (the KL) and
``benchmarks/results/speed_discretised_mean.md`` (the mean), each with a ``.json`` (raw numbers,
command, seed, versions, CPU model and vector features, threads, load)::

    python benchmarks/speed_losses.py                  # every configuration
    python benchmarks/speed_losses.py --configs discretised_mean_k256 discretised_mean_k16
    python benchmarks/speed_losses.py --quick          # tiny shapes, a smoke test
    python benchmarks/speed_losses.py --render benchmarks/results/speed.json   # the KL rows of an older speed.json

**The discretised mean** (``discretised_mean_*``): :class:`~pyro_bfn.distributions.binned_normal.NormalCdfSum`
(a window of edges, Euler-Maclaurin or a Taylor series per variable, O(1) work) against
:class:`FullCdfSum`, the evaluation it replaced (all K - 1 normal CDFs, the same analytic
gradient; here only, as the baseline), swapped into ``DiscretisedOutput.mean`` in turns: the
two are timed in alternation in one process (the mean forward, forward + backward, and the
whole flow + output + continuous-time loss + backward with the network replaced by a stored
output, as in ``speed.py``), at every thread count of ``--mean-threads``. The stored output is
the network's (mu_eps, ln sigma_eps) drawn N(0, 1) and N(0, 0.5^2) at t ~ U(0, 1), so that the
batch mixes the regimes as training does (the fractions are in the table); the largest
difference between the two on it, of the mean and of its gradient, is reported too. On a shared
machine every parallel region of a multi-threaded op waits for a descheduled thread: the
``parallel op`` column times one 351k-float multiply at that moment to show it.

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
    "discretised_mean_k256": dict(kind="discretised_mean", num_bins=256, shape=(32, 784),
                                  label="28x28 batch of 32, 256 bins"),
    "discretised_mean_k64": dict(kind="discretised_mean", num_bins=64, shape=(32, 784), label="28x28 batch of 32, 64 bins"),
    "discretised_mean_k16": dict(kind="discretised_mean", num_bins=16, shape=(32, 784), label="28x28 batch of 32, 16 bins"),
    "tiny_discretised_mean": dict(kind="discretised_mean", num_bins=256, shape=(2, 64), label="tiny (2, 64), 256 bins"),
}
DEFAULT_CONFIGS = [name for name in CONFIGS if not name.startswith("tiny_")]
QUICK_CONFIGS = [name for name in CONFIGS if name.startswith("tiny_")]
SETTINGS = {
    "full": dict(kl_variables=4096, kl_seeds=20, kl_exact_samples=2**20, kl_repeats=5),
    "quick": dict(kl_variables=256, kl_seeds=4, kl_exact_samples=2**12, kl_repeats=2),
}
MEAN_REPEATS = {"full": 15, "quick": 2}
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


# --------------------------------------------------------------------------- the discretised mean
def full_cdf_sum():
    """:class:`FullCdfSum`: the evaluation of ``sum_j Phi((e_j - mu)/sigma)`` over all K - 1
    interior edges that :class:`~pyro_bfn.distributions.binned_normal.NormalCdfSum` replaced
    (git dceb11c), with the same call signature; the baseline of this study only."""
    import torch

    from pyro_bfn.distributions.binned_normal import exp_floor

    class FullCdfSum(torch.autograd.Function):
        @staticmethod
        def forward(ctx, loc, scale, num_bins):
            edges = 2 * torch.arange(1, num_bins, dtype=loc.dtype, device=loc.device) / num_bins - 1
            ctx.save_for_backward(loc, scale, edges)
            return torch.special.ndtr((edges - loc[..., None]) / scale[..., None]).sum(-1)

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, grad):
            loc, scale, edges = ctx.saved_tensors
            z = (edges - loc[..., None]) / scale[..., None]
            density = torch.exp((-0.5 * z * z).clamp(min=exp_floor(z.dtype)))
            common = grad / (scale * math.sqrt(2 * math.pi))
            return -common * density.sum(-1), -common * (density * z).sum(-1), None

    return FullCdfSum


def run_discretised_mean(name: str, s: dict, device_name: str, thread_counts) -> dict:
    import torch

    from pyro_bfn.bfn import BFN
    from pyro_bfn.data_types import DiscretisedData
    from pyro_bfn.distributions import DiscretisedOutput, discretised
    from pyro_bfn.distributions.binned_normal import _CDF_SUM_SCHEMES, NormalCdfSum
    from speed_configs import stored_output_network

    cfg = CONFIGS[name]
    device = torch.device(device_name)
    timed = harness.timer(device)
    K, shape = cfg["num_bins"], tuple(cfg["shape"])
    data_type = DiscretisedData(K)
    generator = torch.Generator().manual_seed(s["seed"])
    x = data_type.from_integers(torch.randint(0, K, shape, generator=generator)).to(device)
    t = torch.rand(shape[0], generator=generator).to(device)
    theta = data_type.sample_input(x, t)
    stored = torch.stack([torch.randn(shape, generator=generator), 0.5 * torch.randn(shape, generator=generator)], -1).to(device)
    output = data_type.output(stored, theta, t)
    loc, scale = output.loc.detach(), output.scale.detach()
    variants = {"full": full_cdf_sum(), "scheme": NormalCdfSum}

    def use(variant):
        discretised.NormalCdfSum = variants[variant]

    scheme = _CDF_SUM_SCHEMES[torch.float32]
    narrow = (scale < (2 / K) / scheme["spacing"]).double().mean().item()
    taylor = (scale >= scheme["taylor"]).double().mean().item()
    out = dict(name=name, config=cfg, elements=loc.numel(),
               regimes=dict(window=narrow, euler_maclaurin=1 - narrow - taylor, taylor=taylor))

    # ---- agreement on this batch (float32 and float64), mean and gradient
    agreement = {}
    for dtype in (torch.float32, torch.float64):
        values = {}
        for variant in variants:
            use(variant)
            mu, sigma = loc.to(dtype).requires_grad_(), scale.to(dtype).requires_grad_()
            mean = DiscretisedOutput(mu, sigma, K).mean
            values[variant] = (mean.detach(), *torch.autograd.grad(mean.sum(), (mu, sigma)))
        agreement[str(dtype).replace("torch.", "")] = {
            key: (a - b).abs().max().item() for key, a, b in zip(("mean", "d_loc", "d_scale"), values["full"], values["scheme"])}
    out["max_abs_difference"] = agreement

    # ---- cost, the variants alternated, per thread count
    stub = BFN(data_type, stored_output_network(stored.clone()), shape[1:]).to(device).train()

    def mean_forward():
        with torch.no_grad():
            DiscretisedOutput(loc, scale, K).mean.sum().item()

    def mean_forward_backward():
        mu, sigma = loc.clone().requires_grad_(), scale.clone().requires_grad_()
        DiscretisedOutput(mu, sigma, K).mean.sum().backward()

    def flow_and_loss():
        stub.zero_grad(set_to_none=True)
        stub.continuous_time_loss(x).mean().backward()

    probe = torch.rand(351_232)

    def parallel_op():
        for _ in range(10):
            probe.mul(1.0)

    cost = {}
    previous = torch.get_num_threads()
    for threads in thread_counts:
        torch.set_num_threads(threads)
        calls = {}
        for step_name, step in (("mean_forward", mean_forward), ("mean_forward_backward", mean_forward_backward),
                                ("flow_and_loss", flow_and_loss)):
            for variant in variants:
                def call(step=step, variant=variant):
                    use(variant)
                    torch.manual_seed(0)  # the same t and theta draws for both variants
                    step()
                calls[f"{step_name}/{variant}"] = call
        for fn in calls.values():
            fn()  # warm-up
        load_before = os.getloadavg()[0]
        seconds = harness.alternate(calls, s["mean_repeats"], timed)
        probe_seconds = [timed(parallel_op) / 10 for _ in range(5)]
        cost[str(threads)] = dict(
            medians_ms={key: 1e3 * statistics.median(v) for key, v in seconds.items()}, seconds=seconds,
            parallel_op_us=1e6 * statistics.median(probe_seconds), load_before=load_before, load_after=os.getloadavg()[0])
    torch.set_num_threads(previous)
    use("scheme")
    out["cost"] = cost
    return out


def paired_bound(num_examples: int, batch_size: int, seed: int) -> dict:
    """The continuous-time bound of one ``fashion_mnist_256`` BFN (the ``unet_mnist_small_variant``
    backbone with its random initial weights, seeded) on the first ``num_examples`` test images,
    with the same evaluation seed, once with each variant of the mean: the scheme must leave it
    unchanged to rounding."""
    import torch

    from pyro_bfn.distributions import discretised
    from pyro_bfn.distributions.binned_normal import NormalCdfSum
    from pyro_bfn.evaluation import evaluate_bound
    from pyro_bfn.zoo import build_bfn, get_dataset

    torch.manual_seed(seed)
    bfn = build_bfn("fashion_mnist_256", "unet_mnist_small_variant").eval()
    spec = get_dataset("fashion_mnist_256")
    out = dict(dataset="fashion_mnist_256", backbone="unet_mnist_small_variant", weights=f"random (seed {seed})",
               num_examples=num_examples, batch_size=batch_size, seed=seed)
    for variant, cls in (("full", full_cdf_sum()), ("scheme", NormalCdfSum)):
        discretised.NormalCdfSum = cls
        start = time.perf_counter()  # (BoundResult.seconds is not used: see the report)
        result = evaluate_bound(bfn, spec, n_steps=None, batch_size=batch_size, seed=seed,
                                max_examples=num_examples, progress=False)
        out[variant] = dict(nats=result.nats, nats_stderr=result.nats_stderr, flow_nats=result.flow_nats,
                            bits_per_dim=result.bits_per_dim, seconds=time.perf_counter() - start)
    out["difference_nats"] = out["scheme"]["nats"] - out["full"]["nats"]
    # per image in float64 (evaluate_bound feeds float32 data): L^inf of the same x, t, theta
    bfn.double()
    generator = torch.Generator().manual_seed(seed)
    x = spec.prepare(spec.load("test")[:num_examples], generator).double()
    t = torch.rand(x.shape[0], generator=generator, dtype=torch.float64)
    losses = {"full": [], "scheme": []}
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            theta = bfn.data_type.sample_input(x[i:i + batch_size], t[i:i + batch_size])
            for variant, cls in (("full", full_cdf_sum()), ("scheme", NormalCdfSum)):
                discretised.NormalCdfSum = cls
                losses[variant].append(bfn.continuous_time_loss(x[i:i + batch_size], t[i:i + batch_size],
                                                                input_distribution=theta))
    losses = {variant: torch.cat(values) for variant, values in losses.items()}
    difference = losses["scheme"] - losses["full"]
    out["float64"] = dict(mean_nats=losses["full"].mean().item(), max_abs_difference=difference.abs().max().item(),
                          max_relative_difference=(difference.abs() / losses["full"].abs()).max().item(),
                          mean_difference=difference.mean().item())
    discretised.NormalCdfSum = NormalCdfSum
    return out


MEAN_COLUMNS = [
    "config", "threads", "step", "full ms", "scheme ms", "speed-up", "parallel op µs", "load",
]


def render_mean(results: list, meta: dict, bound: dict | None = None) -> str:
    lines = [*harness.header_lines(meta, "The discretised output's mean: NormalCdfSum's scheme vs the full "
                                         "evaluation over all K - 1 edges"), ""]
    rows, regime_rows, agreement_rows = [], [], []
    for r in results:
        for threads, c in r["cost"].items():
            for step in ("mean_forward", "mean_forward_backward", "flow_and_loss"):
                full, new = c["medians_ms"][f"{step}/full"], c["medians_ms"][f"{step}/scheme"]
                rows.append([r["name"], threads, step.replace("_", " "), f"{full:.2f}", f"{new:.2f}", f"{full / new:.1f}x",
                             f"{c['parallel_op_us']:.0f}", f"{c['load_before']:.1f}→{c['load_after']:.1f}"])
        g = r["regimes"]
        regime_rows.append([r["name"], r["config"]["num_bins"], "x".join(map(str, r["config"]["shape"])),
                            f"{100 * g['window']:.1f}%", f"{100 * g['euler_maclaurin']:.1f}%", f"{100 * g['taylor']:.1f}%"])
        for dtype, a in r["max_abs_difference"].items():
            agreement_rows.append([r["name"], dtype, f"{a['mean']:.2e}", f"{a['d_loc']:.2e}", f"{a['d_scale']:.2e}"])
    lines += ["## Cost", "", "Median ms per call, the two variants alternated in one process (`full`: all K - 1 CDFs; "
              "`scheme`: NormalCdfSum); `flow and loss` = drawing theta, the output distribution, L^inf and the "
              "backward pass with a stored network output; `parallel op` = one multiply of 351k floats at that "
              "thread count (about 30 µs on an idle core; milliseconds when the machine is oversubscribed):", "",
              harness.markdown_table(MEAN_COLUMNS, rows, numeric_from=3), "",
              "## The batch", "", "Share of the variables in each regime (float32 thresholds):", "",
              harness.markdown_table(["config", "K", "shape", "window", "Euler-Maclaurin", "Taylor"], regime_rows), "",
              "## Agreement", "", "Largest absolute difference between the two on the batch:", "",
              harness.markdown_table(["config", "dtype", "mean", "d mean / d loc", "d mean / d scale"], agreement_rows), ""]
    if meta.get("note"):
        lines += ["Note: " + meta["note"], ""]
    if bound:
        f, n, d = bound["full"], bound["scheme"], bound["float64"]
        rows = [[name, f"{v['nats']:.6f}", f"{v['nats_stderr']:.3f}", f"{v['flow_nats']:.6f}", f"{v['bits_per_dim']:.9f}",
                 f"{v['seconds']:.1f}"] for name, v in (("full", f), ("scheme", n))]
        lines += ["## The continuous-time bound, paired", "",
                  f"One `{bound['dataset']}` BFN (`{bound['backbone']}`, {bound['weights']}), the first "
                  f"{bound['num_examples']} test images, evaluation seed {bound['seed']} (the same t and theta draws), "
                  "`evaluate_bound(..., n_steps=None)` (float32) with each variant of the mean:", "",
                  harness.markdown_table(["variant", "bound nats/image", "stderr", "L^inf nats/image", "bits/dim", "s"], rows), "",
                  f"- float32 bound: scheme - full = {bound['difference_nats']:.3g} nats/image "
                  f"({bound['difference_nats'] / f['nats']:.2g} relative, float32 eps = 1.2e-07; the standard error is "
                  f"{f['nats_stderr']:.3g}).",
                  f"- float64, the same model and images, L^inf per image at one shared (t, theta) each (mean "
                  f"{d['mean_nats']:.4f} nats): largest |scheme - full| {d['max_abs_difference']:.3g} nats "
                  f"({d['max_relative_difference']:.2g} relative, float64 eps = 2.2e-16), mean difference "
                  f"{d['mean_difference']:.3g}. The means differ by a few eps (Agreement above); L^inf weighs "
                  "(x - k_hat)^2 by sigma_1^(-2t) (up to 1e6), and a change dk in k_hat moves a term by 2 dk / |x - k_hat| "
                  "relative to it, which is large where k_hat is close to x.",
                  "- s: wall time of each evaluation; the first one (full) includes loading the test split.", ""]
    return "\n".join(lines)


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
    parser.add_argument("--mean-threads", type=harness.positive_int, nargs="+", default=[1, 2],
                        help="torch thread counts at which the discretised mean is timed (default: 1 2)")
    parser.add_argument("--note", default="", help="a line added to the notes of the discretised-mean results")
    parser.add_argument("--bound-examples", type=harness.non_negative_int, default=0,
                        help="also compare the continuous-time bound of a fashion_mnist_256 BFN on this many test "
                             "images with either variant of the mean (default 0: not run)")
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
    settings = dict(SETTINGS["quick" if args.quick else "full"], seed=args.seed,
                    mean_repeats=MEAN_REPEATS["quick" if args.quick else "full"])
    meta.update(mean_threads=args.mean_threads, note=args.note)
    results = []
    for name in names:
        print(f"[speed_losses] {name} (load {os.getloadavg()[0]:.2f}) ...", file=sys.stderr, flush=True)
        torch.manual_seed(args.seed)
        load_before, start = os.getloadavg()[0], time.perf_counter()
        if CONFIGS[name]["kind"] == "discretised_mean":
            result = run_discretised_mean(name, settings, args.device, args.mean_threads)
        else:
            result = run_kl(name, settings, args.device)
        result.update(settings=settings, seconds=time.perf_counter() - start, load_before=load_before,
                      load_after=os.getloadavg()[0], threads=torch.get_num_threads(), device=args.device)
        results.append(result)
    harness.finish(meta)
    kls = [r for r in results if _is_kl(r)]
    means = [r for r in results if r["config"]["kind"] == "discretised_mean"]
    if kls:
        harness.write_results(args.out, "speed_losses", render(kls, meta), meta, results=kls)
    bound = None
    if args.bound_examples:
        print(f"[speed_losses] paired bound (load {os.getloadavg()[0]:.2f}) ...", file=sys.stderr, flush=True)
        bound = paired_bound(args.bound_examples, 100, args.seed)
        harness.finish(meta)
    if means or bound:
        harness.write_results(args.out, "speed_discretised_mean", render_mean(means, meta, bound), meta, results=means,
                              bound=bound)
    return 0


if __name__ == "__main__":
    sys.exit(main())
