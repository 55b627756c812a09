"""A BFN as a likelihood in a Pyro model.

Trains a small BFN on generated 8x8 binary rectangles, then uses it through
``BFNLikelihood``, whose ``log_prob`` is the negative loss -(L^inf + L^r), a lower bound on
ln p(x):

1. scoring: the bound on held-out rectangles and on noise images of the same pixel density;
2. composition: a Pyro model that explains each image as either a rectangle (the BFN) or
   noise (independent pixels), with the switch enumerated exactly (``TraceEnum_ELBO``);
3. learning through the likelihood: ``SVI`` with ``Trace_ELBO`` and an empty guide maximises
   the bound (the gradients reach the network through ``pyro.module``);
4. sampling: ``BFNLikelihood.sample`` runs the BFN's n-step sampler;
5. MCMC through the bound: NUTS on the location of data whose noise density is a BFN (a 1-D
   continuous-data BFN trained in a second), with ``fixed_noise=False`` and ``True``.

Run::

    python docs/examples/bfn_likelihood.py            # about a minute
    python docs/examples/bfn_likelihood.py --smoke    # seconds
"""

from __future__ import annotations

import argparse

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.transforms import AffineTransform
from pyro.infer import MCMC, NUTS, SVI, Trace_ELBO, TraceEnum_ELBO, config_enumerate

from pyro_bfn.bfn import BFN
from pyro_bfn.data_types import ContinuousData
from pyro_bfn.infer import BFNLikelihood
from pyro_bfn.models import MLP
from pyro_bfn.models.adapters import BackboneAdapter
from pyro_bfn.zoo import build_bfn, get_dataset


def auroc(positive, negative) -> float:
    """Probability that a positive scores above a negative (ties count half)."""
    difference = positive[:, None] - negative[None, :]
    return ((difference > 0).double().mean() + 0.5 * (difference == 0).double().mean()).item()


def skewed_noise(n: int, generator) -> torch.Tensor:
    """``n`` draws, shape ``(n, 1)``, of a skewed mixture: 70% N(-0.2, 0.1^2), 30% N(0.4, 0.2^2)."""
    first = torch.rand(n, 1, generator=generator) < 0.7
    return torch.where(first, -0.2 + 0.1 * torch.randn(n, 1, generator=generator), 0.4 + 0.2 * torch.randn(n, 1, generator=generator))


def train_noise_bfn(steps: int, generator) -> BFN:
    """A continuous-data BFN of one variable (a small MLP) trained on :func:`skewed_noise`."""
    data_type = ContinuousData(sigma_1=0.05)
    features = data_type.num_input_features, data_type.num_output_features
    mlp = MLP(*features, hidden=64, depth=2, time_embedding_dim=16)
    bfn = BFN(data_type, BackboneAdapter(mlp, "flat", (1,), *features), (1,))
    optimizer = torch.optim.Adam(bfn.parameters(), lr=3e-3)
    for step in range(steps):
        loss = bfn.loss(skewed_noise(256, generator), reconstruction=False).transmission.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return bfn.eval()


def location_model(bfn, repeats: int, fixed_noise: bool):
    """location ~ N(0, 1); y_j = location + noise_j, the noise's density the BFN's bound."""

    def model(y):
        location = pyro.sample("location", dist.Normal(0.0, 1.0))
        with pyro.plate("observations", y.shape[0]):
            noise = BFNLikelihood(bfn, num_repeats=repeats, fixed_noise=fixed_noise)
            pyro.sample("y", dist.TransformedDistribution(noise, AffineTransform(location, 1.0, event_dim=1)), obs=y)

    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--train-steps", type=int, default=800)
    parser.add_argument("--svi-steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--nuts-steps", type=int, default=100, help="NUTS warmup steps, and as many samples")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    noise_train_steps = 300
    if args.smoke:
        args.train_steps, args.svi_steps, args.repeats, args.nuts_steps, noise_train_steps = 20, 5, 2, 10, 50
    torch.manual_seed(args.seed)
    pyro.set_rng_seed(args.seed)
    pyro.clear_param_store()

    spec = get_dataset("toy_binary")
    train, test = spec.load("train"), spec.load("test")
    bfn = build_bfn("toy_binary", "mlp_small", backbone_options=dict(hidden=128, depth=2, input_skip=True))
    optimizer = torch.optim.Adam(bfn.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(args.seed)
    for step in range(args.train_steps):
        x = spec.prepare(train[torch.randint(0, train.shape[0], (64,), generator=generator)], generator)
        loss = bfn.loss(x, reconstruction=False).transmission.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    bfn.eval()

    # 1. the bound on rectangles and on noise of the same pixel density
    rectangles = spec.prepare(test, torch.Generator().manual_seed(1))
    density = rectangles.double().mean().item()
    noise = torch.bernoulli(torch.full(rectangles.shape, density), generator=torch.Generator().manual_seed(2)).long()
    likelihood = BFNLikelihood(bfn, num_repeats=args.repeats)
    with torch.no_grad():
        rectangle_scores, noise_scores = likelihood.log_prob(rectangles), likelihood.log_prob(noise)
    print(f"lower bound on ln p(x): rectangles {rectangle_scores.mean():.1f}, noise {noise_scores.mean():.1f} nats "
          f"(AUROC {auroc(rectangle_scores, noise_scores):.3f})")

    # 2. rectangle or noise? an enumerated switch between the BFN and independent pixels
    pixels = dist.Categorical(probs=torch.tensor([1 - density, density])).expand(spec.data_shape).to_event(3)

    @config_enumerate
    def model(images):
        with pyro.plate("images", images.shape[0]):
            is_rectangle = pyro.sample("is_rectangle", dist.Bernoulli(0.5))
            pyro.sample("x", dist.MaskedMixture(is_rectangle.bool(), pixels, likelihood), obs=images)

    images = torch.cat([rectangles[:50], noise[:50]])
    with torch.no_grad():
        marginal = TraceEnum_ELBO(max_plate_nesting=1).compute_marginals(model, lambda images: None, images)
    probability = marginal["is_rectangle"].probs[:, 1] if marginal["is_rectangle"].probs.dim() > 1 else None
    if probability is None:  # Bernoulli marginal: a Categorical over {0, 1} in Pyro
        probability = marginal["is_rectangle"].probs
    correct = torch.cat([probability[:50] > 0.5, probability[50:] < 0.5]).double().mean().item()
    print(f"P(rectangle | x): {probability[:50].mean():.3f} on rectangles, {probability[50:].mean():.3f} on noise; "
          f"{100 * correct:.0f}% classified right")

    # 3. maximum likelihood through the bound: SVI, empty guide, the network as a pyro.module
    def bound_model(images):
        pyro.module("bfn", bfn)
        with pyro.plate("images", images.shape[0]):
            pyro.sample("x", BFNLikelihood(bfn), obs=images)

    bfn.train()
    svi = SVI(bound_model, lambda images: None, pyro.optim.Adam({"lr": 5e-4}), Trace_ELBO())
    losses = []
    for step in range(args.svi_steps):
        x = spec.prepare(train[torch.randint(0, train.shape[0], (64,), generator=generator)], generator)
        losses.append(svi.step(x) / 64)
    window = max(1, min(20, len(losses) // 2))
    print(f"SVI on -log_prob: {sum(losses[:window]) / window:.1f} -> {sum(losses[-window:]) / window:.1f} nats/image")
    bfn.eval()

    # 4. sampling through the distribution
    samples = BFNLikelihood(bfn, sample_steps=20).sample((4,))
    print("samples:")
    for lines in zip(*[["".join("#" if v else "." for v in line) for line in image] for image in samples[:, 0].tolist()]):
        print("   ".join(lines))

    # 5. NUTS on a latent location through the bound, without and with fixed noise
    noise_bfn = train_noise_bfn(noise_train_steps, generator)
    true_location = 0.3
    y = true_location + skewed_noise(20, torch.Generator().manual_seed(3))
    print(f"NUTS on a location, 20 observations, noise density a BFN ({args.nuts_steps} warmup steps, {args.nuts_steps} samples):")
    acceptance = {}
    for fixed_noise in (False, True):
        pyro.set_rng_seed(args.seed)
        mcmc = MCMC(NUTS(location_model(noise_bfn, 4, fixed_noise), max_tree_depth=4),
                    num_samples=args.nuts_steps, warmup_steps=args.nuts_steps, disable_progbar=True)
        mcmc.run(y)
        acceptance[fixed_noise] = mcmc.diagnostics()["acceptance rate"]["chain 0"]
        draws = mcmc.get_samples()["location"]
        print(f"  fixed_noise={fixed_noise!s:5}: acceptance rate {acceptance[fixed_noise]:.2f}, "
              f"location {draws.mean():.3f} +- {draws.std():.3f}")
    # the posterior NUTS targets, on a grid: the fixed-noise bound (one call per location, so that
    # every call has the shape of NUTS's and the same draws)
    grid = torch.linspace(-0.5, 1.0, 61 if args.smoke else 301)
    bound = BFNLikelihood(noise_bfn, num_repeats=4, fixed_noise=True)
    with torch.no_grad():
        log_density = torch.stack([dist.Normal(0.0, 1.0).log_prob(m) + bound.log_prob(y - m).sum() for m in grid])
    weights = torch.softmax(log_density, 0)
    mean = (weights * grid).sum()
    print(f"  grid posterior of the fixed-noise bound: {mean:.3f} +- {(weights * (grid - mean) ** 2).sum().sqrt():.3f} "
          f"(true location {true_location})")
    return dict(rectangles=rectangle_scores.mean().item(), noise=noise_scores.mean().item(), correct=correct,
                nuts_acceptance_random=acceptance[False], nuts_acceptance_fixed=acceptance[True])


if __name__ == "__main__":
    main()
