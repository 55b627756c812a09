"""The BFN loss as an ELBO: the n-step BFN as a Pyro model and guide, trained with SVI.

1. For one example and an untrained network, compare the ELBO loss of
   ``TraceMeanField_ELBO`` (every one of the n steps, KLs from the registry) with
   ``BFN.loss(x, n_steps)`` (n times one random step): the same L^n + L^r in expectation.
2. Train a small BFN on generated 8x8 binary rectangles with ``pyro.infer.SVI`` and that ELBO,
   then report the bound on held-out rectangles and draw samples.

Run::

    python docs/examples/bfn_elbo.py            # a few minutes: every step's KL is an exact
                                                # two-component quadrature per pixel
    python docs/examples/bfn_elbo.py --smoke    # seconds
"""

from __future__ import annotations

import argparse
import math

import pyro
import torch
from pyro.infer import SVI, TraceMeanField_ELBO

from pyro_bfn.infer import bfn_guide, bfn_model
from pyro_bfn.zoo import build_bfn, get_dataset


def compare_estimators(bfn, x, n_steps, draws):
    """Mean and standard error of the ELBO loss and of BFN.loss for copies of one example."""
    elbo = TraceMeanField_ELBO()
    copies = x.expand((draws,) + x.shape[1:]).contiguous()
    with torch.no_grad():
        # the ELBO loss of a batch is a sum over its examples: score one copy per call to get
        # one draw per example (ten copies per call would average ten draws)
        elbo_draws = torch.tensor([elbo.loss(bfn_model, bfn_guide, bfn, x, n_steps) for _ in range(draws)])
        bfn_draws = bfn.loss(copies, n_steps).total
    summary = {}
    for name, values in (("TraceMeanField_ELBO", elbo_draws), ("BFN.loss", bfn_draws)):
        summary[name] = (values.mean().item(), values.std().item() / math.sqrt(draws))
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--n-steps", type=int, default=5)
    parser.add_argument("--svi-steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    draws = 400
    if args.smoke:
        args.svi_steps, args.n_steps, args.batch_size, draws = 6, 3, 16, 20
    torch.manual_seed(args.seed)
    pyro.set_rng_seed(args.seed)
    pyro.clear_param_store()

    spec = get_dataset("toy_binary")
    train, test = spec.load("train"), spec.load("test")
    bfn = build_bfn("toy_binary", "mlp_small", backbone_options=dict(hidden=128, depth=2))

    # 1. two estimators of the same bound
    x = spec.prepare(test[:1])
    for name, (mean, stderr) in compare_estimators(bfn, x, args.n_steps, draws).items():
        print(f"{name:>20}: L^n + L^r = {mean:8.3f} ± {stderr:.3f} nats (n = {args.n_steps}, {draws} draws)")

    # 2. SVI: the guide has no parameters; pyro.module in the model registers the network
    svi = SVI(bfn_model, bfn_guide, pyro.optim.Adam({"lr": 2e-3}), TraceMeanField_ELBO())
    generator = torch.Generator().manual_seed(args.seed)
    losses = []
    for step in range(1, args.svi_steps + 1):
        index = torch.randint(0, train.shape[0], (args.batch_size,), generator=generator)
        losses.append(svi.step(bfn, spec.prepare(train[index], generator), args.n_steps) / args.batch_size)
        if step % 50 == 0 or step == args.svi_steps:
            recent = losses[-50:]
            print(f"SVI step {step}: ELBO loss {sum(recent) / len(recent):.2f} nats/image")
    with torch.no_grad():
        test_x = spec.prepare(test, torch.Generator().manual_seed(1))
        bound = bfn.loss(test_x, args.n_steps).total
        print(f"test bound L^n + L^r: {bound.mean():.2f} ± {bound.std() / math.sqrt(bound.numel()):.2f} nats/image")
        samples = bfn.sample(4, args.n_steps)
    print("samples:")
    for lines in zip(*[[("".join("#" if v else "." for v in line)) for line in image] for image in samples[:, 0].tolist()]):
        print("   ".join(lines))
    window = max(1, min(50, len(losses) // 2))
    return {"first_loss": sum(losses[:window]) / window, "last_loss": sum(losses[-window:]) / window}


if __name__ == "__main__":
    main()
