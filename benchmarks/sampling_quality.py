"""Sample quality against network calls for every sampler of the registry, on binarized MNIST.

One command (the committed run's is in its header: the whole grid, ordered so that the goal's
points come first, with the inpainting and guidance modes)::

    python benchmarks/sampling_quality.py                       # every sampler x NFE 5..200, N = 1000
    python benchmarks/sampling_quality.py --points ode2:10 ancestral:ref --num-samples 1000
    python benchmarks/sampling_quality.py --modes inpaint       # completed halves, replacement and SMC
    python benchmarks/sampling_quality.py --append --modes cfg --cfg-checkpoint runs/mnist_labels/checkpoint.pt
    python benchmarks/sampling_quality.py --smoke --out /tmp/x  # seconds: tiny untrained model, no MNIST

**Quality vs network calls** (``--modes quality``, the default). For every sampler of
:func:`pyro_bfn.sampling.list_samplers` (``--samplers``) and every number of network calls
``NFE`` of ``--nfe`` (5, 10, 20, 50, 100, 200), ``N`` samples (``--num-samples``, 1000) are drawn
with ``n = NFE - 1`` steps (every sampler makes ``n + 1`` calls: one per step and one at ``t = 1``;
``BFN.sample(..., sampler=..., generator=...)``, a draw from the final output distribution, EMA
weights), plus the reference point ``ancestral:ref``, the paper's sampler with ``--reference-steps``
(100) steps (101 calls). Each point is scored with the independent classifier of
``sample_quality.py`` (:func:`mnist_classifier.load_classifier`; trained on the real MNIST training images
and cached under ``runs/``): the Frechet distance of its 128 penultimate features to those of the
10,000 binarized test images and the IS-style score (:mod:`pyro_bfn.metrics`), each with a
bootstrap standard error (``--bootstrap`` resamples of the ``N`` samples). The Frechet distance's
own noise is also measured on real data: ``--real-sets`` disjoint sets of ``N`` binarized
*training* images (independent of the test set), each scored like a sampler's point; their mean
is the floor a perfect sampler reaches at this ``N`` and their spread the distance's sampling
noise. Two points differ significantly when their difference exceeds twice the standard error of
the difference, :math:`\\sqrt{se_1^2 + se_2^2}`. Seconds per sample (wall clock, the sampling only)
stand beside every row. Points run in the order given and the results are written after each,
so an interrupted run keeps what finished; ``--points SAMPLER:NFE ...`` selects points (``ref``
for the reference).

**Inpainting** (``--modes inpaint``): the top half (rows 0-13) of ``--inpaint-num`` real test
images is known; the bottom half is completed by replacement (``known``/``mask`` of
``BFN.sample``) with each of ``--samplers`` at ``--inpaint-nfe`` calls, and by SMC with
``--particles`` particles (ancestral steps; its network calls are per completed image, all particles
counted); the classifier's accuracy on the completed images
against the true labels is reported beside its accuracy on the real images and on the images
whose bottom half is blank.

**Classifier-free guidance** (``--modes cfg``, needs ``--cfg-checkpoint``: a class-conditional
binarized-MNIST model trained with ``context_dropout``, e.g. ``pyro-bfn train`` with
``data_options: {labels: true}``): ``--cfg-num`` samples, the labels 0..9 in turn, at each
``--guidance-scales`` value; class accuracy (the classifier's most probable class equals the
requested label) against diversity (the mean over labels of the trace of the samples' feature
covariance, relative to the same for real test images of that label).

Writes ``sampling_quality.md`` / ``.json`` and the plot ``sampling_quality.png`` (quality vs
network calls, one line per sampler) under ``--out``; ``--render JSON`` re-renders a saved run.

CPU budget (``--threads``; the committed run's CPU and load are in its header): the cost is
``N x sum(NFE)`` image-forward passes of the network (4 samplers x 385 calls x 1000 samples plus
the reference: 1.6M). The 1.08M-parameter demo U-Net in bf16 took about 28 ms per image-forward
on the shared 2-core AVX512-BF16 machine under a load average of about 7 (one thread), about 12
hours for the grid; the committed run therefore scores a 0.55M-parameter MLP BFN (``mlp_small``,
trained for 15 minutes with ``pyro-bfn train --config configs/mnist_demo.yaml --set
backbone=mlp_small --set batch_size=128 --set time_budget_minutes=15 --set
budget_reserve_examples=0``; the guidance sweep's conditional model the same with ``--set
'data_options={labels: true}' --set context_dropout=0.1``), which takes about 0.1-0.5 ms per image-forward there (the whole run,
with inpainting and the guidance sweep, in minutes). The Frechet distance's bootstrap takes about
0.3 s per resample there (:func:`scipy.linalg.sqrtm`), so ``--bootstrap 50`` adds about 15 s per point.
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
DEFAULT_NFE = (5, 10, 20, 50, 100, 200)
REFERENCE = "ref"  # the --points name of the reference's NFE
STEM = "sampling_quality"


def _log(message: str) -> None:
    print(f"[{STEM}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- scoring
class Scorer:
    """The classifier and the test set's feature statistics; scores an image set.

    :param classifier: from :func:`mnist_classifier.load_classifier`.
    :param test_images: binary test images ``(M, 1, 28, 28)``.
    """

    def __init__(self, classifier, test_images, bootstrap: int, seed: int):
        from pyro_bfn import metrics

        self.classifier, self.bootstrap, self.seed = classifier, bootstrap, seed
        _, features = mnist_classifier.classify(classifier, test_images)
        self.mu, self.sigma = metrics.feature_statistics(features)

    def frechet(self, features) -> float:
        from pyro_bfn import metrics

        mu, sigma = metrics.feature_statistics(features)
        return metrics.frechet_distance(mu, sigma, self.mu, self.sigma)

    def score(self, images) -> dict:
        """Frechet distance and IS-style score with bootstrap standard errors, and the class
        statistics of :func:`pyro_bfn.metrics.class_probability_scores`."""
        import numpy as np

        from pyro_bfn import metrics

        probs, features = mnist_classifier.classify(self.classifier, images)
        row = dict(num=int(images.shape[0]), frechet_distance=self.frechet(features), **metrics.class_probability_scores(probs))
        rng = np.random.default_rng(self.seed)
        fds, iss = [], []
        for _ in range(self.bootstrap):
            pick = rng.integers(0, features.shape[0], features.shape[0])
            fds.append(self.frechet(features[pick]))
            iss.append(metrics.inception_score(probs[pick]))
        row.update(frechet_se=float(np.std(fds, ddof=1)) if self.bootstrap > 1 else None,
                   inception_se=float(np.std(iss, ddof=1)) if self.bootstrap > 1 else None)
        return row


def _difference(a: dict, b: dict, key: str = "frechet_distance", se: str = "frechet_se"):
    """``(a - b, its standard error, significant at 2 s.e.)`` of two independent points."""
    diff = a[key] - b[key]
    if a.get(se) is None or b.get(se) is None:
        return diff, None, None
    err = math.sqrt(a[se] ** 2 + b[se] ** 2)
    return diff, err, abs(diff) > 2 * err


# --------------------------------------------------------------------------- report
def _fmt(value, se=None, digits=2):
    return f"{value:.{digits}f}" + (f" ± {se:.{digits}f}" if se is not None else "")


def render(meta: dict, results: dict) -> str:
    lines = [*harness.header_lines(meta, "Binarized MNIST: sample quality vs network calls, per sampler"), ""]
    for added in meta.get("appended", []):
        lines.insert(-1, f"Appended ({', '.join(added['modes'])}): `{added['command']}` on {added['date']}, wall time "
                         f"{added['wall_seconds'] / 60:.1f} min, load {added['load_start']} at the start.  ")
    model = meta.get("model", {})
    if model:
        lines += [f"BFN: `{model['checkpoint']}` ({model['backbone']}, {model['parameters']:,} parameters, "
                  f"{model['updates']} updates at batch {model['batch_size']}, EMA weights, autocast {model['autocast']}"
                  + (f"; validation bound {model['valid']['nats']:.1f} ± {model['valid']['stderr']:.1f} nats/image on "
                     f"{model['valid']['num_examples']} images at step {model['valid']['step']}, against the paper's 77.87 "
                     "for its 24.8M-parameter U-Net" if model.get("valid") else "") + "). "
                  f"Classifier: {meta['classifier']['parameters']:,}-parameter CNN, test accuracy "
                  f"{meta['classifier']['test_accuracy']:.2%} (`{meta['classifier']['cache']}`). N = {meta['num_samples']} "
                  f"samples per point, a draw from the final output distribution; ± one bootstrap standard error "
                  f"({meta['bootstrap']} resamples).", ""]
    quality = results.get("quality")
    if quality:
        lines += _render_quality(meta, quality)
    if results.get("inpaint"):
        lines += _render_inpaint(results["inpaint"])
    if results.get("cfg"):
        lines += _render_cfg(meta, results["cfg"])
    lines += ["", "## Notes", ""] + [f"- {n}" for n in notes(meta, results)]
    return "\n".join(lines) + "\n"


QUALITY_COLUMNS = ["sampler", "network calls", "steps n", "Frechet distance", "IS-style score", "mean max-confidence",
                   "s / sample", "load (1 min)"]


def _render_quality(meta: dict, quality: dict) -> list:
    rows = []
    for p in quality["points"]:
        rows.append([p["sampler"] + (" (reference)" if p.get("reference") else ""), p["nfe"], p["n_steps"],
                     _fmt(p["frechet_distance"], p.get("frechet_se")), _fmt(p["inception_score"], p.get("inception_se")),
                     f"{p['mean_max_confidence']:.3f}", f"{p['seconds_per_sample']:.4f}", p.get("load", "")])
    real = quality.get("real")
    lines = ["## Quality vs network calls", "", harness.markdown_table(QUALITY_COLUMNS, rows), ""]
    if real:
        lines += [f"Real images ({real['sets']} disjoint sets of {real['num']} binarized training images, scored alike): "
                  f"Frechet distance {real['frechet_mean']:.2f} (spread between sets {real['frechet_std']:.2f}; bootstrap "
                  f"s.e. of one set {real['frechet_se_first']:.2f}), IS-style {real['inception_mean']:.2f}.", ""]
    if meta.get("plots"):
        lines += [f"![quality vs network calls]({meta['plots'][0]})", ""]
    if meta.get("grids"):
        lines += ["Samples (the first 100 of each point): " + ", ".join(f"[{k}]({v})" for k, v in meta["grids"].items()), ""]
    return lines


def _render_inpaint(rows: list) -> list:
    columns = ["completion", "network calls", "classifier accuracy", "s / sample"]
    table = [[r["name"], r.get("nfe", ""), f"{r['accuracy']:.3f} ± {r['accuracy_se']:.3f}",
              f"{r['seconds_per_sample']:.4f}" if r.get("seconds_per_sample") is not None else ""] for r in rows]
    return ["## Inpainting: the bottom half of test digits given the top half", "", harness.markdown_table(columns, table), ""]


def _render_cfg(meta: dict, rows: list) -> list:
    columns = ["guidance scale w", "network calls", "class accuracy", "diversity (feature trace / real)", "s / sample"]
    table = [[r["scale"], r.get("nfe", ""), f"{r['accuracy']:.3f} ± {r['accuracy_se']:.3f}", f"{r['diversity']:.3f}",
              f"{r['seconds_per_sample']:.4f}"] for r in rows]
    model = meta.get("cfg_model")
    about = ([f"Conditional BFN: `{model['checkpoint']}` ({model['backbone']}, {model['updates']} updates, labels dropped "
              f"with probability {model['context_dropout']} in training); the labels 0..9 in turn, w = 0 the unconditional "
              "model, w = 1 the conditional one; every call runs the network twice.", ""] if model else [])
    return ["## Classifier-free guidance: class accuracy vs diversity", "", *about, harness.markdown_table(columns, table), ""]


def headline(quality: dict, nfe: int = 10):
    """The goal's verdict: for each sampler's point at ``nfe`` calls, its Frechet distance and
    IS-style differences to the reference and whether they are significant; ``None`` without a
    reference."""
    ref = next((p for p in quality["points"] if p.get("reference")), None)
    if ref is None:
        return None
    verdicts = []
    for p in quality["points"]:
        if p["nfe"] != nfe or p.get("reference"):
            continue
        fd, fd_se, fd_sig = _difference(p, ref)
        is_, is_se, is_sig = _difference(p, ref, "inception_score", "inception_se")
        reached = fd <= 0 or fd_sig is False  # not significantly worse in Frechet distance
        verdicts.append(dict(sampler=p["sampler"], fd_diff=fd, fd_se=fd_se, fd_significant=fd_sig, is_diff=is_,
                             is_se=is_se, is_significant=is_sig, reached=reached))
    return dict(reference=ref, nfe=nfe, verdicts=verdicts)


def notes(meta: dict, results: dict) -> list:
    """The notes, every number from the results."""
    out = []
    quality = results.get("quality")
    if quality:
        ran = sorted({(p["sampler"], p["nfe"]) for p in quality["points"] if not p.get("reference")},
                     key=lambda sp: (sp[1], sp[0]))
        wanted = quality.get("wanted", [])
        missing = [w for w in wanted if tuple(w) not in ran and w[1] != REFERENCE]
        out.append("Points run: " + ", ".join(f"{s} at {n}" for s, n in ran)
                   + (f"; the reference (ancestral, {quality['reference_steps']} steps)" if any(
                       p.get("reference") for p in quality["points"]) else "; no reference")
                   + ". " + ("Not run: " + ", ".join(f"{s} at {n}" for s, n in missing) + " (run them with "
                             "`--points SAMPLER:NFE ...`)." if missing else "Every requested point ran."))
        real = quality.get("real")
        if real:
            ratio = real["frechet_se_first"] / real["frechet_std"] if real["frechet_std"] > 0 else math.inf
            judged = ("about the spread" if 0.67 <= ratio <= 1.5 else
                      f"{ratio:.1f} times the spread, so the bootstrap errors are conservative" if ratio > 1.5 else
                      f"{ratio:.1f} times the spread, so the bootstrap errors understate the noise")
            out.append(f"Sampling noise of the Frechet distance at N = {real['num']}: {real['sets']} disjoint sets of real "
                       f"training images lie at {real['frechet_mean']:.2f} (the floor a perfect sampler reaches at this N) "
                       f"with a standard deviation of {real['frechet_std']:.2f} between sets; the bootstrap standard error "
                       f"of one set is {real['frechet_se_first']:.2f}, {judged}. The table's errors are the bootstrap's of "
                       "each row (the distance's noise grows with the distance); a difference between two rows is "
                       "significant when it exceeds twice the standard error of the difference (sqrt(se1^2 + se2^2)).")
        for nfe in sorted({p["nfe"] for p in quality["points"] if not p.get("reference")}):
            verdict = headline(quality, nfe)
            if verdict is None or not verdict["verdicts"] or nfe != 10:
                continue
            ref = verdict["reference"]
            parts = []
            for v in verdict["verdicts"]:
                if v["fd_se"] is None:  # no bootstrap: no significance
                    parts.append(f"{v['sampler']} {v['fd_diff']:+.2f} (no standard error: --bootstrap 0)")
                    continue
                sig = "significant" if v["fd_significant"] else "not significant"
                parts.append(f"{v['sampler']} {v['fd_diff']:+.2f} ± {v['fd_se']:.2f} ({sig}; IS-style {v['is_diff']:+.2f})")
            met = [v["sampler"] for v in verdict["verdicts"] if v["reached"]]
            out.append(f"**Goal (10 network calls reach the {quality['reference_steps']}-step ancestral sampler's quality): "
                       + (f"met by {', '.join(met)}" if met else "not met by any sampler") + ".** Reference Frechet "
                       f"distance {ref['frechet_distance']:.2f} ± {ref['frechet_se']:.2f}; differences at 10 calls "
                       "(sampler minus reference, ± s.e.): " + "; ".join(parts) + ". 'Met' means not significantly "
                       "worse in Frechet distance (below the reference, or above it by less than 2 s.e.).")
        ref = next((p for p in quality["points"] if p.get("reference")), None)
        if ref is not None:
            reach = []
            for sampler in sorted({p["sampler"] for p in quality["points"] if not p.get("reference")}):
                ok = sorted(p["nfe"] for p in quality["points"] if p["sampler"] == sampler and not p.get("reference")
                            and (p["frechet_distance"] <= ref["frechet_distance"] or _difference(p, ref)[2] is False))
                reach.append(f"{sampler} at {ok[0]}" if ok else f"{sampler} at none of the calls run")
            out.append("Fewest network calls run at which each sampler is not significantly worse than the reference "
                       f"({ref['nfe']} calls) in Frechet distance: " + "; ".join(reach) + ".")
        if quality["points"]:
            per_call = sorted(p["seconds_per_sample"] / p["nfe"] for p in quality["points"])
            out.append(f"Seconds per sample are wall clock under the load shown (the machine was shared); per network call "
                       f"and sample they range from {per_call[0] * 1e3:.3f} to {per_call[-1] * 1e3:.3f} ms (median "
                       f"{per_call[len(per_call) // 2] * 1e3:.3f} ms) whatever the sampler: the network is the cost, so the "
                       "number of calls is the cost.")
    inpaint = results.get("inpaint")
    if inpaint:
        by = {r["name"]: r for r in inpaint}
        done = [r for r in inpaint if r.get("nfe")]
        best = max(done, key=lambda r: r["accuracy"]) if done else None
        if best and "real images" in by and "bottom half blank" in by:
            out.append(f"Inpainting: the classifier recognises {by['real images']['accuracy']:.1%} of the real test digits and "
                       f"{by['bottom half blank']['accuracy']:.1%} with the bottom half blank; completed by the model, "
                       + ", ".join(f"{r['name']} {r['accuracy']:.1%}" for r in done)
                       + f" (best: {best['name']}). The gap to the real digits is what the completions lose.")
    cfg = results.get("cfg")
    if cfg and len(cfg) > 1:
        first, last = cfg[0], cfg[-1]
        out.append(f"Classifier-free guidance: from w = {first['scale']:g} to w = {last['scale']:g} the class accuracy goes "
                   f"from {first['accuracy']:.1%} to {last['accuracy']:.1%} and the diversity from {first['diversity']:.2f} "
                   f"to {last['diversity']:.2f} of the real digits' (the usual trade of guidance).")
    return out


def plot(quality: dict, path) -> str | None:
    from pyro_bfn.plotting import new_figure

    points = [p for p in quality["points"] if not p.get("reference")]
    if not points:
        return None
    figure = new_figure(figsize=(10, 4))
    axes = figure.subplots(1, 2)
    ref = next((p for p in quality["points"] if p.get("reference")), None)
    for ax, key, se, label in ((axes[0], "frechet_distance", "frechet_se", "Frechet distance (classifier features)"),
                               (axes[1], "inception_score", "inception_se", "IS-style score")):
        for sampler in sorted({p["sampler"] for p in points}):
            mine = sorted((p for p in points if p["sampler"] == sampler), key=lambda p: p["nfe"])
            ax.errorbar([p["nfe"] for p in mine], [p[key] for p in mine], yerr=[p.get(se) or 0 for p in mine], marker="o",
                        capsize=3, label=sampler)
        if ref is not None:
            ax.axhline(ref[key], color="k", ls="--", lw=1, label=f"ancestral, {ref['n_steps']} steps")
        real = quality.get("real")
        if real:  # in the title, not as a line: it would squash the curves
            ax.set_title(f"real images: {real['frechet_mean' if key == 'frechet_distance' else 'inception_mean']:.2f}",
                         fontsize=9)
        ax.set_xscale("log")
        nfes = sorted({p["nfe"] for p in points})
        ax.set_xticks(nfes, [str(n) for n in nfes])
        ax.minorticks_off()
        ax.set_xlabel("network calls (NFE)")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=8)
    return harness.save_figure(figure, path)


# --------------------------------------------------------------------------- studies
def _sample(bfn, num, n_steps, batch, seed, **options):
    """``num`` samples in batches, from a generator seeded with ``seed``; ``(images, seconds)``."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    start, out = time.perf_counter(), []
    for done in range(0, num, batch):
        count = min(batch, num - done)
        extra = {k: (v[done : done + count] if isinstance(v, torch.Tensor) and v.dim() > 0 else v) for k, v in options.items()}
        out.append(bfn.sample(count, n_steps, generator=generator, **extra).float().cpu())
    return torch.cat(out), time.perf_counter() - start


def parse_points(texts, samplers, nfes, reference: bool) -> list:
    """``[(sampler, nfe or "ref")]``: the given ``SAMPLER:NFE`` texts, else every sampler x NFE and
    the reference."""
    if texts:
        points = []
        for text in texts:
            sampler, _, nfe = text.partition(":")
            if not nfe:
                raise ValueError(f"a point is SAMPLER:NFE or ancestral:{REFERENCE}, got {text!r}")
            if nfe == REFERENCE:
                points.append(("ancestral", REFERENCE))
                continue
            nfe = int(nfe)
            if nfe < 2:
                raise ValueError(f"a point needs at least 2 network calls (1 step), got {text!r}")
            points.append((sampler, nfe))
        return points
    return [(s, n) for n in nfes for s in samplers] + ([("ancestral", REFERENCE)] if reference else [])


def run_quality(args, bfn, scorer, real_pool, meta, results, save) -> None:
    import torch

    from pyro_bfn.sampling import get_sampler

    points = parse_points(args.points, args.samplers, args.nfe, not args.no_reference)
    for sampler, _ in points:
        get_sampler(sampler)  # an unknown name fails before any work
    quality = results.setdefault("quality", dict(points=[], reference_steps=args.reference_steps,
                                                 wanted=[[s, n] for s, n in points]))
    # the Frechet distance's own noise: disjoint sets of N real training images
    sets = min(args.real_sets, real_pool.shape[0] // args.num_samples)
    if sets >= 1:
        scores = [scorer.score(real_pool[k * args.num_samples : (k + 1) * args.num_samples]) for k in range(sets)]
        fds = [s["frechet_distance"] for s in scores]
        quality["real"] = dict(sets=sets, num=args.num_samples, frechet_mean=sum(fds) / sets,
                               frechet_std=float(torch.tensor(fds).std()) if sets > 1 else 0.0,
                               frechet_se_first=scores[0]["frechet_se"] or 0.0,
                               inception_mean=sum(s["inception_score"] for s in scores) / sets)
        _log(f"real sets: Frechet {quality['real']['frechet_mean']:.2f} ± {quality['real']['frechet_std']:.2f}")
    for index, (sampler, nfe) in enumerate(points):
        reference = nfe == REFERENCE
        n_steps = args.reference_steps if reference else nfe - 1
        seed = args.seed * 1000 + index + 1
        with torch.inference_mode():
            images, seconds = _sample(bfn, args.num_samples, n_steps, args.sample_batch, seed, sampler=sampler)
        row = dict(sampler=sampler, nfe=n_steps + 1, n_steps=n_steps, reference=reference, seed=seed,
                   seconds=seconds, seconds_per_sample=seconds / args.num_samples,
                   load=f"{os.getloadavg()[0]:.1f}", **scorer.score(images))
        quality["points"].append(row)
        _log(f"{sampler} NFE {row['nfe']}: Frechet {row['frechet_distance']:.2f} ± {row['frechet_se']}, IS-style "
             f"{row['inception_score']:.2f}, {row['seconds_per_sample']:.3f} s/sample")
        if reference or row["nfe"] == 10:  # grids of the goal's points
            from pyro_bfn.plotting import save_image_grid

            grid = save_image_grid(images[:100], args.out / f"{STEM}_{sampler}_{row['nfe']}.png", nrow=10)
            meta.setdefault("grids", {})[f"{sampler}:{row['nfe']}"] = pathlib.Path(grid).name
        save()


def run_inpaint(args, bfn, scorer, test_images, test_labels, results, save) -> None:
    import numpy as np
    import torch

    num = min(args.inpaint_num, test_images.shape[0])
    images, labels = test_images[:num], np.asarray(test_labels[:num])
    mask = torch.zeros_like(images, dtype=torch.bool)
    mask[..., : images.shape[-2] // 2, :] = True
    known = images.long()

    def accuracy(completed):
        probs, _ = mnist_classifier.classify(scorer.classifier, completed)
        hits = probs.argmax(1) == labels
        return float(hits.mean()), float(hits.std(ddof=1) / math.sqrt(num))

    rows = results.setdefault("inpaint", [])
    for name, completed in (("real images", images), ("bottom half blank", images * mask)):
        acc, se = accuracy(completed)
        rows.append(dict(name=name, accuracy=acc, accuracy_se=se))
    variants = [(f"replacement, {s}", s, None) for s in args.samplers] + (
        [(f"SMC, {args.particles} particles", "ancestral", args.particles)] if args.particles else [])
    for index, (name, sampler, particles) in enumerate(variants):
        options = dict(sampler=sampler, known=known, mask=mask)
        if particles:
            options["num_particles"] = particles
        with torch.inference_mode():
            completed, seconds = _sample(bfn, num, args.inpaint_nfe - 1, args.sample_batch, args.seed * 1000 + 500 + index,
                                         **options)
        acc, se = accuracy(completed)
        rows.append(dict(name=name, nfe=args.inpaint_nfe * (particles or 1), accuracy=acc, accuracy_se=se,
                         seconds_per_sample=seconds / num))
        _log(f"inpaint {name}: accuracy {acc:.3f}")
        save()


def run_cfg(args, bfn, scorer, test_images, test_labels, results, save) -> None:
    import numpy as np
    import torch

    labels = torch.arange(args.cfg_num) % 10
    _, real_features = mnist_classifier.classify(scorer.classifier, test_images)
    test_labels = np.asarray(test_labels)

    def spread(features, which):
        return np.mean([np.trace(np.cov(features[which == k], rowvar=False)) for k in range(10) if (which == k).sum() > 1])

    real_spread = spread(real_features, test_labels)
    rows = results.setdefault("cfg", [])
    for index, scale in enumerate(args.guidance_scales):
        with torch.inference_mode():
            images, seconds = _sample(bfn, args.cfg_num, args.cfg_nfe - 1, args.sample_batch, args.seed * 1000 + 900 + index,
                                      context=labels, guidance_scale=scale)
        probs, features = mnist_classifier.classify(scorer.classifier, images)
        hits = probs.argmax(1) == labels.numpy()
        rows.append(dict(scale=scale, nfe=2 * args.cfg_nfe, accuracy=float(hits.mean()), accuracy_se=float(hits.std(ddof=1) / math.sqrt(len(hits))),
                         diversity=float(spread(features, labels.numpy()) / real_spread),
                         seconds_per_sample=seconds / args.cfg_num))
        _log(f"cfg scale {scale}: accuracy {rows[-1]['accuracy']:.3f}, diversity {rows[-1]['diversity']:.3f}")
        save()


# --------------------------------------------------------------------------- main
def _smoke_data(seed: int):
    """Synthetic stand-ins for MNIST (no data needed): images with a bright block whose position
    is the label, so that a classifier learns something in a few steps."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (1200,), generator=generator)
    pixels = torch.full((1200, 1, 28, 28), 20.0)
    for k in range(10):
        rows = slice(2 + 2 * k, 8 + 2 * k)
        pixels[labels == k, :, rows, 4:24] = 235.0
    return pixels, labels


def main(argv=None) -> int:
    parser = harness.parser(__doc__, threads=1, render=f"re-render the .md from a {STEM}.json (no computation)")
    parser.add_argument("--checkpoint", type=pathlib.Path, default=DEFAULT_CHECKPOINT,
                        help="a pyro-bfn checkpoint of a binarized-MNIST model (default: the demo's)")
    parser.add_argument("--modes", nargs="+", default=["quality"], choices=["quality", "inpaint", "cfg"])
    parser.add_argument("--samplers", nargs="+", default=None, help="default: every registered sampler")
    parser.add_argument("--nfe", nargs="+", type=harness.integer_at_least(2), default=list(DEFAULT_NFE),
                        help="network calls per sample (default 5 10 20 50 100 200)")
    parser.add_argument("--points", nargs="+", default=None, metavar="SAMPLER:NFE",
                        help=f"run these points, in this order, instead of --samplers x --nfe (ancestral:{REFERENCE}: "
                        "the reference)")
    parser.add_argument("--reference-steps", type=harness.positive_int, default=100)
    parser.add_argument("--no-reference", action="store_true", help="without --points: skip the reference point")
    parser.add_argument("--num-samples", type=harness.integer_at_least(2), default=1000, help="N per point (default 1000)")
    parser.add_argument("--sample-batch", type=harness.positive_int, default=500)
    parser.add_argument("--bootstrap", type=harness.non_negative_int, default=50,
                        help="bootstrap resamples per point for the standard errors (default 50; 0: none)")
    parser.add_argument("--real-sets", type=harness.non_negative_int, default=10)
    parser.add_argument("--inpaint-num", type=harness.integer_at_least(2), default=1000)
    parser.add_argument("--inpaint-nfe", type=harness.integer_at_least(2), default=20)
    parser.add_argument("--particles", type=harness.non_negative_int, default=4, help="SMC particles (0: no SMC row)")
    parser.add_argument("--cfg-checkpoint", type=pathlib.Path, default=None)
    parser.add_argument("--cfg-num", type=harness.integer_at_least(20), default=1000)
    parser.add_argument("--cfg-nfe", type=harness.integer_at_least(2), default=20)
    parser.add_argument("--guidance-scales", nargs="+", type=float, default=[0.0, 1.0, 2.0, 3.0])
    parser.add_argument("--classifier", type=pathlib.Path, default=DEFAULT_CLASSIFIER, help="classifier cache")
    parser.add_argument("--classifier-epochs", type=harness.positive_int, default=2)
    parser.add_argument("--append", action="store_true",
                        help=f"add the results of --modes to OUT/{STEM}.json (replacing those modes' earlier results)")
    parser.add_argument("--smoke", action="store_true",
                        help="plumbing check in seconds: an untrained mlp_small BFN, synthetic images instead of MNIST")
    args = parser.parse_args(argv)
    if args.render:
        saved = harness.load_saved(args.render)
        harness.write_results(args.out, STEM, render(saved["meta"], saved["results"]))
        return 0
    if "cfg" in args.modes and args.cfg_checkpoint is None and not args.smoke:
        parser.error("--modes cfg needs --cfg-checkpoint (a class-conditional model trained with context_dropout)")
    if not args.smoke and not args.checkpoint.is_file():
        print(f"{STEM}: {args.checkpoint} does not exist; run `make demo` first (about 20 minutes)", file=sys.stderr)
        return 2

    import torch

    from pyro_bfn.sampling import list_samplers
    from pyro_bfn.training import load_model

    args.samplers = args.samplers or list_samplers()
    try:
        parse_points(args.points, args.samplers, args.nfe, True)
    except ValueError as error:
        parser.error(str(error))
    harness.set_threads(args.threads)
    meta = harness.provenance(__file__, argv, seed=args.seed, threads=torch.get_num_threads())
    meta.update(num_samples=args.num_samples, bootstrap=args.bootstrap, smoke=args.smoke)
    generator = torch.Generator().manual_seed(args.seed + 2)
    if args.smoke:
        from pyro_bfn.zoo import build_bfn

        pixels, labels = _smoke_data(args.seed)
        train_pixels, train_labels = pixels[:1000], labels[:1000]
        test_pixels, test_labels = pixels[1000:], labels[1000:]
        torch.manual_seed(args.seed)
        bfn = build_bfn("binarized_mnist", "mlp_small", {"beta_1": 9.0}).eval()
        args.classifier = args.out / "smoke_classifier.pt"
        torch.manual_seed(args.seed)
        cfg_bfn = build_bfn("binarized_mnist", "mlp_small", {"beta_1": 9.0}, {"num_classes": 10}).eval()
        trained_now = not args.classifier.is_file()
        meta["model"] = dict(checkpoint="untrained (smoke)", backbone="mlp_small", parameters=sum(
            p.numel() for p in bfn.parameters()), updates=0, batch_size=0, autocast="none")
    else:
        from pyro_bfn.datasets import load_mnist

        train_pixels, train_labels = load_mnist("train_full")
        test_pixels, test_labels = load_mnist("test")
        trained_now = not args.classifier.is_file()
        bfn, config, state = load_model(args.checkpoint, device=args.device)
        meta["model"] = dict(checkpoint=harness.checkpoint_label(args.checkpoint), backbone=config.backbone,
                             parameters=sum(p.numel() for p in bfn.parameters()), updates=int(state["step"]),
                             batch_size=config.batch_size, autocast=str(bfn.autocast_dtype or "none"),
                             valid=state.get("last_valid"))
    if trained_now:
        _log(f"training the classifier ({args.classifier_epochs} epochs) ...")
        mnist_classifier.train_classifier(args.classifier, args.classifier_epochs, args.seed, train_pixels, train_labels)
    classifier, info = mnist_classifier.load_classifier(args.classifier)
    test_images = mnist_classifier.binarize(torch.as_tensor(test_pixels).reshape(-1, 1, 28, 28), generator)
    real_pool = mnist_classifier.binarize(torch.as_tensor(train_pixels).reshape(-1, 1, 28, 28)[
        torch.randperm(len(train_pixels), generator=generator)], generator)
    probs, _ = mnist_classifier.classify(classifier, test_images)
    info.update(test_accuracy=float((probs.argmax(1) == torch.as_tensor(test_labels).numpy()).mean()), trained_now=trained_now,
                cache=harness.checkpoint_label(args.classifier))
    meta["classifier"] = info
    scorer = Scorer(classifier, test_images, args.bootstrap, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    results, started = {}, time.perf_counter()
    if args.append:  # add these modes' results to a saved run, which keeps its provenance
        saved = harness.load_saved(args.out / f"{STEM}.json")
        results = {k: v for k, v in saved["results"].items() if k not in args.modes}
        added = {k: meta[k] for k in ("command", "date", "load_start")}
        meta = dict(saved["meta"], appended=[a for a in saved["meta"].get("appended", [])
                                             if not set(a["modes"]) & set(args.modes)])
        meta["appended"].append(dict(added, modes=list(args.modes)))

    def save():
        quality = results.get("quality")
        plots = [plot(quality, args.out / f"{STEM}.png")] if quality else []
        if args.append:
            entry = meta["appended"][-1]
            entry["wall_seconds"] = time.perf_counter() - started
        else:
            harness.finish(meta)
        meta["plots"] = [pathlib.Path(p).name for p in plots if p]
        harness.write_results(args.out, STEM, render(meta, results), meta, plots=plots, results=results)

    if "quality" in args.modes:
        run_quality(args, bfn, scorer, real_pool, meta, results, save)
    if "inpaint" in args.modes:
        run_inpaint(args, bfn, scorer, test_images, test_labels, results, save)
    if "cfg" in args.modes:
        if not args.smoke:
            cfg_bfn, cfg_config, cfg_state = load_model(args.cfg_checkpoint, device=args.device)
            meta["cfg_model"] = dict(checkpoint=harness.checkpoint_label(args.cfg_checkpoint), backbone=cfg_config.backbone,
                                     updates=int(cfg_state["step"]), context_dropout=cfg_config.context_dropout)
        run_cfg(args, cfg_bfn, scorer, test_images, test_labels, results, save)
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
