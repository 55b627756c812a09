"""The BFN distributions in a Pyro model: the Bayesian flow is Bayesian inference.

A BFN's input distribution is a posterior: after the sender has revealed noisy copies
y_1..y_n of the data x with accuracies alpha_1..alpha_n, the input distribution is the
posterior over x given them. Here that statement is checked with Pyro's own inference:

1. continuous data: x ~ NormalInput prior N(0, 1), y_i ~ NormalSender(x, alpha_i) with the
   n-step schedule's accuracies; ``ConjugateReparam`` (which calls
   ``NormalInput.conjugate_update``) draws x from the exact posterior, which is the input
   distribution after n Bayesian updates, with precision 1 + beta(1) whatever the y's; and the
   model's log-density is then the exact log evidence, so ``Trace_ELBO`` with an empty guide
   has zero variance;
2. discrete data: k ~ CategoricalInput(theta), y ~ DiscreteSender(k, alpha); enumerating k
   (``TraceEnum_ELBO``) gives the posterior softmax(ln theta + y), the discrete Bayesian
   update (``ConjugateReparam`` cannot be used here: Pyro requires a reparameterised
   posterior, and a categorical is not one).

Run::

    python docs/examples/distributions_in_pyro.py
"""

from __future__ import annotations

import argparse
import math

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.infer import TraceEnum_ELBO, config_enumerate
from pyro.infer.reparam import ConjugateReparam

from pyro_bfn.distributions import CategoricalInput, DiscreteSender, NormalInput, NormalSender
from pyro_bfn.schedules import ContinuousSchedule


def continuous(n_steps: int, num_draws: int):
    schedule = ContinuousSchedule(sigma_1=0.02)
    alpha = schedule.step_accuracies(n_steps, dtype=torch.float64)  # alpha_1..alpha_n
    x_true = torch.tensor([0.4, -0.7], dtype=torch.float64)
    y = NormalSender(x_true, alpha[:, None]).sample()  # (n, 2): what the sender reveals
    prior = NormalInput.prior((2,), dtype=torch.float64)

    def model():
        with pyro.plate("variables", 2):
            x = pyro.sample("x", prior)
            for i in range(n_steps):
                pyro.sample(f"y_{i + 1}", NormalSender(x, alpha[i]), obs=y[i])

    # the senders' joint likelihood of x is one Normal (accuracies add; the mean is weighted)
    pooled = (alpha[:, None] * y).sum(0) / alpha.sum()
    likelihood = NormalSender(pooled, alpha.sum()).likelihood(pooled)
    conjugate_model = poutine.reparam(model, {"x": ConjugateReparam(likelihood)})

    # the input distribution after the n Bayesian updates of the BFN
    flow = prior
    for i in range(n_steps):
        flow = flow.update(y[i], alpha[i])
    beta_1 = float(schedule.beta(torch.tensor(1.0, dtype=torch.float64)))
    print(f"n = {n_steps} updates: precision {flow.precision.tolist()} = 1 + beta(1) = {1 + beta_1:.1f}")

    draws, log_densities = [], []
    for seed in range(num_draws):
        pyro.set_rng_seed(seed)
        trace = poutine.trace(conjugate_model).get_trace()
        draws.append(trace.nodes["x"]["value"])
        log_densities.append(trace.log_prob_sum().item())
    draws = torch.stack(draws)
    print(f"posterior mean: input distribution {flow.loc.numpy().round(4)}, ConjugateReparam draws "
          f"{draws.mean(0).numpy().round(4)} (standard error {(flow.scale / math.sqrt(num_draws)).numpy().round(4)})")
    spread = max(log_densities) - min(log_densities)
    print(f"log evidence {log_densities[0]:.4f}; spread over {num_draws} draws {spread:.1e} (zero variance)")
    return flow, draws, log_densities


def discrete(num_classes: int = 4):
    theta = CategoricalInput.prior((), num_classes, dtype=torch.float64)  # uniform prior
    alpha = torch.tensor(1.5, dtype=torch.float64)
    y = DiscreteSender(torch.tensor(2), alpha, num_classes).sample()

    @config_enumerate
    def model():
        k = pyro.sample("k", theta)
        pyro.sample("y", DiscreteSender(k, alpha, num_classes), obs=y)

    marginal = TraceEnum_ELBO(max_plate_nesting=0).compute_marginals(model, lambda: None)["k"]
    update = theta.update(y)
    print(f"discrete: enumeration {marginal.probs.numpy().round(4)}; Bayesian update {update.probs.numpy().round(4)}")
    return marginal, update


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--n-steps", type=int, default=20)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pyro.set_rng_seed(0)
    flow, draws, log_densities = continuous(args.n_steps, 20 if args.smoke else 400)
    assert max(log_densities) - min(log_densities) < 1e-8
    marginal, update = discrete()
    assert torch.allclose(marginal.probs.double(), update.probs, atol=1e-6)


if __name__ == "__main__":
    main()
