"""Classifier-based sample quality of a BFN trained on dynamically binarized MNIST.

One command::

    python benchmarks/sample_quality.py                     # runs/mnist_demo/checkpoint.pt, N = 500
    python benchmarks/sample_quality.py --num-samples 1000 --n-steps 100

1. A small CNN classifier (two 3x3 conv + max-pool stages, 16 and 32 channels, a 128-unit
   ReLU layer whose activations are the "features", a 10-way linear output; 0.21M
   parameters) is trained on the real 60,000-image MNIST training set, binarized afresh
   (Bernoulli(pixel / 255)) in every batch so that it scores binary images like the BFN's,
   or loaded from its cache ``runs/mnist_classifier/classifier.pt`` (gitignored). Its accuracy
   on the 10,000 binarized test images is reported.
2. N samples are drawn from the BFN with the paper's n-step sampler (``bfn.sample``, n = 100,
   a draw from the final output distribution, EMA weights) and scored: mean max-confidence
   :math:`E \\max_y p(y|x)`, mean class entropy :math:`E H[p(y|x)]`, marginal class entropy
   :math:`H[E p(y|x)]`, the Inception-Score-style :math:`\\exp(E\\,KL(p(y|x) \\| p(y)))` and the
   Frechet distance between Gaussians fitted to the classifier features of the samples and of
   the whole binarized test set (:mod:`pyro_bfn.metrics`).
3. References scored the same way: N real binarized test images (a random subset; its
   Frechet distance to the whole test set is the floor that N samples can reach, since the
   distance is biased upwards at finite N) and N images of independent pixels with the
   training set's per-pixel marginals (what a model with no structure gets).

Writes ``benchmarks/results/sample_quality.md`` / ``.json`` and the grid of the scored
samples ``sample_quality_samples.png`` (plus the reference grid ``sample_quality_test.png``); the
notes are computed from the table's numbers. ``--render JSON`` re-renders the Markdown of a
saved run.

CPU budget: with one torch thread on the shared 2-core reference machine, about 1.5 minutes
to train the classifier (cached afterwards) and about 4-5 minutes at light load for 500
samples of 100 steps of the demo model (1.08M parameters; the committed run took 11 minutes
under a load average of 5-6); the scoring itself takes seconds.
"""

from __future__ import annotations

import math
import os
import pathlib
import sys
import time

import harness
import mnist_classifier

harness.passive_openmp()  # before torch loads

DEFAULT_CHECKPOINT = harness.ROOT / "runs" / "mnist_demo" / "checkpoint.pt"
DEFAULT_CLASSIFIER = harness.ROOT / "runs" / "mnist_classifier" / "classifier.pt"
PAPER_NATS = 77.87  # the paper's binarized-MNIST bound (Sec. 6.2), for the notes
NUM_CLASSES = 10


def _log(message: str) -> None:
    print(f"[sample_quality] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- report
COLUMNS = ["image set", "N", "mean max-confidence", "mean class entropy (nats)", "marginal class entropy (nats)",
           "IS-style exp E KL", "Frechet distance to test set"]


def render(meta: dict, rows: list) -> str:
    c = meta["classifier"]
    classifier = f"trained in {c['train_seconds']} s" if c["trained_now"] else "loaded from its cache"
    lines = [
        *harness.header_lines(meta, "Binarized MNIST: classifier-based sample quality"),
        f"Classifier {classifier}; sampling {meta['sample_seconds']:.0f} s.",
        "",
        f"BFN: `{meta['checkpoint']}` ({meta['backbone']}, {meta['parameters']:,} parameters, {meta['updates']} updates "
        f"at batch {meta['batch_size']}, EMA weights, autocast {meta['autocast']}); {meta['num_samples']} samples with "
        f"the n = {meta['n_steps']} sampler (`bfn.sample`, a draw from the final output distribution).  ",
        f"Classifier: a {c['parameters']:,}-parameter CNN trained for {c['epochs']} epoch(s) on the "
        f"{c.get('train_images', 60_000):,} MNIST training images binarized afresh per batch; **test accuracy "
        f"{c['test_accuracy']:.2%}** on the 10,000 binarized test images. Features: its 128-unit penultimate layer; the "
        "test-set statistics use all 10,000 binarized test images.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|---|" + "---:|" * (len(COLUMNS) - 1),
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['num']} | {r['mean_max_confidence']:.3f} | {r['mean_class_entropy']:.3f} "
            f"| {r['marginal_class_entropy']:.3f} | {r['inception_score']:.2f} | {r['frechet_distance']:.2f} |"
        )
    lines += ["", f"Class histograms (fraction of each image set whose most probable class is 0..{NUM_CLASSES - 1}):", "",
              "| image set | " + " | ".join(str(k) for k in range(NUM_CLASSES)) + " |", "|---|" + "---:|" * NUM_CLASSES]
    for r in rows:
        lines.append(f"| {r['name']} | " + " | ".join(f"{v:.3f}" for v in r["class_histogram"]) + " |")
    lines += ["", f"Scored samples: ![samples]({meta['sample_grid']})", "", "## Notes", ""]
    lines += [f"- {n}" for n in notes(meta, rows)]
    return "\n".join(lines) + "\n"


def _compare(a: float, b: float) -> str:
    return "below" if a < b else "above" if a > b else "equal to"


def notes(meta: dict, rows: list) -> list:
    """The notes of the table, every number from ``rows``, ``meta`` or the paper."""
    by = {r["key"]: r for r in rows}
    s, t, m = by.get("bfn"), by.get("test"), by.get("marginal")
    out = [
        f"Upper limits with {NUM_CLASSES} classes: IS-style score {NUM_CLASSES}, marginal class entropy ln {NUM_CLASSES} "
        f"= {math.log(NUM_CLASSES):.3f} nats; mean class entropy 0 and max-confidence 1 for perfectly recognisable digits. "
        "The Frechet distance is in squared feature units of this classifier and comparable only between rows of this "
        "table (not to published FIDs, which use Inception-v3 features).",
    ]
    if s and t:
        out.append(
            f"The {t['num']} real test images are the floor at this N: Frechet distance {t['frechet_distance']:.2f} to the "
            f"whole test set comes from sampling noise alone (the distance is biased upwards at finite N). The BFN samples "
            f"are at {s['frechet_distance']:.2f}, {s['frechet_distance'] / max(t['frechet_distance'], 1e-12):.1f}x that floor"
            + (f", and the independent-pixel images at {m['frechet_distance']:.2f}" if m else "") + "."
        )
        bound = (f"its test bound in `test_bound.json` beside the checkpoint is {meta['test_bound_nats']:.2f} nats/image"
                 if meta.get("test_bound_nats") is not None else "no test bound of this checkpoint was found")
        out.append(
            f"Recognisability: on real digits the classifier's mean max-confidence is {t['mean_max_confidence']:.3f} and the "
            f"IS-style score {t['inception_score']:.2f}; on the samples {s['mean_max_confidence']:.3f} "
            f"({_compare(s['mean_max_confidence'], t['mean_max_confidence'])} the real digits') and "
            f"{s['inception_score']:.2f} ({_compare(s['inception_score'], t['inception_score'])}), for a "
            f"{meta['parameters'] / 1e6:.2f}M-parameter model trained for {meta['updates']} updates ({bound}, against the "
            f"paper's {PAPER_NATS}). The marginal class entropy ({s['marginal_class_entropy']:.3f} vs "
            f"{t['marginal_class_entropy']:.3f} for real images) says whether the samples cover the {NUM_CLASSES} classes; "
            "the class histogram shows which classes are over- or under-produced."
        )
        hist_s, hist_t = s["class_histogram"], t["class_histogram"]
        over = [k for k in range(NUM_CLASSES) if hist_s[k] > 1.4 * hist_t[k]]
        under = [k for k in range(NUM_CLASSES) if hist_s[k] < 0.7 * hist_t[k]]
        if over or under:
            p = 1 / NUM_CLASSES
            out.append(
                "Against the real test images the samples over-produce the classes "
                + (", ".join(str(k) for k in over) or "none") + " and under-produce "
                + (", ".join(str(k) for k in under) or "none")
                + f" (ratio of histogram entries above 1.4 or below 0.7; with N = {s['num']} an entry near {p:.1f} has a "
                f"binomial standard error of about {math.sqrt(p * (1 - p) / s['num']):.3f})."
            )
    if m and t:
        out.append(
            f"No single number suffices: the independent-pixel images get a mean max-confidence of "
            f"{m['mean_max_confidence']:.3f} (the classifier calls {max(m['class_histogram']):.0%} of them one class), "
            f"but their IS-style score ({m['inception_score']:.2f} vs {t['inception_score']:.2f} for real images), marginal "
            f"class entropy ({m['marginal_class_entropy']:.3f} vs {t['marginal_class_entropy']:.3f}) and Frechet distance "
            f"({m['frechet_distance']:.1f} vs {t['frechet_distance']:.1f}) tell them apart."
        )
    if s:
        out.append(
            "The scored samples are draws from the final output distribution, as `bfn.sample` returns by default (the "
            "reference code returns its mode), so pixels drawn against the output's most probable value are scored too."
        )
    out.append(
        "The paper reports no sample-quality numbers for binarized MNIST (only likelihoods and sample grids); these "
        "scores are ours, to track sample quality across models trained with this library."
    )
    return out


def main(argv=None) -> int:
    parser = harness.parser(__doc__, threads=1, render="re-render the .md from a sample_quality.json (no computation)")
    parser.add_argument("--checkpoint", type=pathlib.Path, default=DEFAULT_CHECKPOINT,
                        help="a pyro-bfn checkpoint of a binarized-MNIST model (default: the demo's; `make demo` makes it)")
    parser.add_argument("--num-samples", type=harness.positive_int, default=500,
                        help="N, samples and reference images (default 500)")
    parser.add_argument("--n-steps", type=harness.positive_int, default=100, help="sampler steps (default 100)")
    parser.add_argument("--sample-batch", type=harness.positive_int, default=100)
    parser.add_argument("--classifier", type=pathlib.Path, default=DEFAULT_CLASSIFIER, help="classifier cache")
    parser.add_argument("--retrain-classifier", action="store_true", help="train the classifier even if cached")
    parser.add_argument("--classifier-epochs", type=harness.positive_int, default=2)
    args = parser.parse_args(argv)
    if args.render:
        saved = harness.load_saved(args.render, "test_bound_nats")
        harness.write_results(args.out, "sample_quality", render(saved["meta"], saved["results"]))
        return 0
    if not args.checkpoint.is_file():
        print(f"sample_quality: {args.checkpoint} does not exist; run `make demo` first (about 20 minutes)", file=sys.stderr)
        return 2

    import numpy as np
    import torch

    from pyro_bfn import metrics
    from pyro_bfn.datasets import load_mnist
    from pyro_bfn.plotting import save_image_grid
    from pyro_bfn.training import load_model

    harness.set_threads(args.threads)
    meta = harness.provenance(__file__, argv, seed=args.seed, threads=torch.get_num_threads())
    meta.update(num_samples=args.num_samples, n_steps=args.n_steps)

    # 1. classifier
    trained_now = args.retrain_classifier or not args.classifier.is_file()
    if trained_now:
        _log(f"training the classifier ({args.classifier_epochs} epochs, load {os.getloadavg()[0]:.2f}) ...")
        mnist_classifier.train_classifier(args.classifier, args.classifier_epochs, args.seed)
    classifier, info = mnist_classifier.load_classifier(args.classifier)
    test_pixels, test_labels = load_mnist("test")
    test_pixels = torch.as_tensor(test_pixels).reshape(-1, 1, 28, 28)
    generator = torch.Generator().manual_seed(args.seed + 2)
    test_binary = mnist_classifier.binarize(test_pixels, generator)
    test_probs, test_features = mnist_classifier.classify(classifier, test_binary)
    info.update(test_accuracy=float((test_probs.argmax(1) == np.asarray(test_labels)).mean()), trained_now=trained_now,
                cache=str(args.classifier))
    meta["classifier"] = info
    _log(f"classifier test accuracy {info['test_accuracy']:.4f}")
    mu_test, sigma_test = metrics.feature_statistics(test_features)

    # 2. BFN samples
    bfn, config, state = load_model(args.checkpoint, device=args.device)
    meta.update(checkpoint=harness.checkpoint_label(args.checkpoint), backbone=config.backbone,
                parameters=sum(p.numel() for p in bfn.parameters()), updates=int(state["step"]),
                batch_size=config.batch_size, autocast=str(bfn.autocast_dtype or "none"),
                test_bound_nats=harness.demo_test_bound(args.checkpoint, int(state["step"])))
    torch.manual_seed(args.seed)
    sample_start = time.perf_counter()
    samples = []
    with torch.inference_mode():
        for done in range(0, args.num_samples, args.sample_batch):
            count = min(args.sample_batch, args.num_samples - done)
            samples.append(bfn.sample(count, args.n_steps).cpu())
            _log(f"{done + count}/{args.num_samples} samples ({time.perf_counter() - sample_start:.0f} s, "
                 f"load {os.getloadavg()[0]:.2f})")
    samples = torch.cat(samples).float()
    meta["sample_seconds"] = time.perf_counter() - sample_start

    # 3. references
    pick = torch.randperm(test_binary.shape[0], generator=torch.Generator().manual_seed(args.seed + 3))[: args.num_samples]
    real = test_binary[pick]
    train_pixels, _ = load_mnist("train_full")
    marginal = torch.as_tensor(train_pixels).float().mean(0).reshape(1, 1, 28, 28) / 255.0
    independent = torch.bernoulli(marginal.expand(args.num_samples, 1, 28, 28),
                                  generator=torch.Generator().manual_seed(args.seed + 4))

    rows = []
    for key, name, images in (("bfn", f"BFN samples (n = {args.n_steps})", samples),
                              ("test", "real binarized test images", real),
                              ("marginal", "independent pixels (training marginals)", independent)):
        probs, features = mnist_classifier.classify(classifier, images)
        mu, sigma = metrics.feature_statistics(features)
        row = dict(key=key, name=name, num=int(images.shape[0]), **metrics.class_probability_scores(probs),
                   frechet_distance=metrics.frechet_distance(mu, sigma, mu_test, sigma_test),
                   mean_pixel=float(images.mean()))
        rows.append(row)
        _log(f"{name}: IS-style {row['inception_score']:.2f}, Frechet {row['frechet_distance']:.2f}")

    args.out.mkdir(parents=True, exist_ok=True)
    grid = save_image_grid(samples, args.out / "sample_quality_samples.png", nrow=25)
    reference_grid = save_image_grid(real, args.out / "sample_quality_test.png", nrow=25)
    meta.update(sample_grid=pathlib.Path(grid).name, reference_grid=pathlib.Path(reference_grid).name)
    harness.finish(meta)
    harness.write_results(args.out, "sample_quality", render(meta, rows), meta, plots=[grid, reference_grid], results=rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
