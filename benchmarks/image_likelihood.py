"""Likelihood bounds (bits/dim) of BFNs trained on discretised images, with the continuous-data
loss and the discretised loss compared on the same data, network and budget (Graves et al.
2023, Sec. 6.3, where the same comparison was made on CIFAR-10 at 16 and 256 bins).

One command::

    python benchmarks/image_likelihood.py                 # the three datasets x two losses (~45 min)
    python benchmarks/image_likelihood.py --datasets fashion_mnist_16 --steps 200   # one dataset, shorter

Settings (``--datasets``): Fashion-MNIST at 16 and 256 bins (28x28 grey), the natural-image
patches at 256 bins (32x32 colour; :func:`pyro_bfn.datasets.load_natural_image_patches`). For each,
two models are trained from the same seed with the same network (``--backbone``, default the
1.08M-parameter ``unet_mnist_small_variant``), batch, learning rate and number of updates:

* **discretised loss**: :class:`~pyro_bfn.data_types.DiscretisedData` (paper Sec. 4), the
  network predicts a Normal over the bins;
* **continuous-data loss**: :class:`~pyro_bfn.data_types.ContinuousData` with ``num_bins``
  (paper Sec. 3), the network predicts the noise; its reconstruction term is the
  discretised :math:`N(\\hat x, \\sigma_1^2)`, so its bound is on the same probability.

Both use the paper's :math:`\\sigma_1` for the bin count (1e-3 at 256 bins, sqrt(1e-3) at 16).

Protocol: the test split (Fashion-MNIST 10,000 images, patches 2,298 from photographs held
out of training), EMA weights; the continuous-time bound :math:`L^\\infty + L^r` over R passes
(``--repeats``, default 2; mean and standard error over passes) with the reconstruction term
shown separately, and the discrete-time bound at n = 10 (the paper's CIFAR-10 setting) on the
first ``--nstep-examples`` test images (one pass; the exact 256-bin n-step KL is a 1-D
quadrature per variable and costs about 1 s per 28x28 image on this CPU).

Writes ``benchmarks/results/image_likelihood.md`` (table, notes), ``.json`` (every number,
command, seed, versions, load, wall times) and ``image_likelihood.png`` (learning curves:
training loss in bits/dim against updates, one panel per dataset, one line per loss).
Checkpoints go to ``runs/image_likelihood/`` (not committed).

CPU budget: about 45 minutes on the shared 2-core reference machine with 2 torch threads and
bf16 autocast of the backbone (training about 30 minutes: 600 updates at batch 32 for each
Fashion-MNIST model, 300 for each patch model; evaluation about 15). Throughput there (quiet,
2 threads): Fashion-MNIST 256 bins ~55 examples/s with the discretised loss and ~70 with the
continuous loss; patches ~28 and ~58.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import sys
import time

import harness

harness.passive_openmp()  # before torch loads

DEFAULT_RUNS = harness.ROOT / "runs" / "image_likelihood"
DATASETS = ("fashion_mnist_16", "fashion_mnist_256", "natural_patches_256")
LOSSES = ("discretised", "continuous")
#: updates per dataset (equal for both losses), chosen for the ~45-minute budget
DEFAULT_STEPS = {"fashion_mnist_16": 600, "fashion_mnist_256": 600, "natural_patches_256": 300}
#: the paper's CIFAR-10 result (Sec. 6.3; PAPER_CONFIGS.md), for the notes
PAPER = dict(bits_per_dim=2.66, bins=256, parameters=30.7e6, batch=32, n_steps=10, passes=100)


def _curve(run_dir: pathlib.Path, num_dims: int) -> list:
    """(update, training loss in bits/dim) rows of a run's train_log.csv."""
    return [(int(r["step"]), float(r["loss"]) / (num_dims * math.log(2))) for r in harness.read_run_log(run_dir, "train")]


def reconstruction_diagnostics(bfn, spec, raw, seed: int, batch_size: int = 250) -> dict:
    """Per-pixel view of the reconstruction term at t = 1 on ``raw`` (one draw of the flow,
    seeded): quantiles of the output scale sigma_x (or sigma_1), the share of pixels whose
    log-probability is below -10 and -1000, the worst pixel, and the largest per-image L^r."""
    import torch

    log_probs, scales = [], []
    with torch.inference_mode():
        for x in harness.seeded_batches(spec, raw, seed, batch_size):
            t = torch.ones(x.shape[0])
            output = bfn.output_distribution(bfn.data_type.sample_input(x, t), t, None)
            reconstruction = bfn.data_type.reconstruction_distribution(output)
            log_probs.append(reconstruction.log_prob(x).double().flatten(1))
            scales.append(reconstruction.scale.double().flatten(1) if hasattr(reconstruction, "scale") else None)
    log_prob = torch.cat(log_probs)
    scale = torch.cat(scales).flatten()
    sample = scale[torch.randperm(scale.numel(), generator=torch.Generator().manual_seed(seed))[:1_000_000]]
    q = torch.quantile(sample, torch.tensor([0.01, 0.5, 0.99], dtype=torch.float64)).tolist()
    per_image = -log_prob.sum(1)
    return dict(
        images=int(raw.shape[0]), scale_q01=q[0], scale_median=q[1], scale_q99=q[2],
        pixels_below_minus10=(log_prob < -10).double().mean().item(),
        pixels_below_minus1000=(log_prob < -1000).double().mean().item(),
        worst_pixel_log_prob=log_prob.min().item(), worst_image_nats=per_image.max().item(),
        images_over_100_nats=(per_image > 100).double().mean().item(), mean_nats=per_image.mean().item(),
    )


def run_one(dataset: str, loss: str, args, runs: pathlib.Path) -> dict:
    import torch

    from pyro_bfn import zoo
    from pyro_bfn.evaluation import evaluate_bound
    from pyro_bfn.training import TrainConfig, Trainer, load_model

    spec = zoo.get_dataset(dataset)
    steps = args.steps or DEFAULT_STEPS.get(dataset, 300)
    run_dir = runs / f"{dataset}_{loss}"
    config = TrainConfig(
        dataset=dataset, backbone=args.backbone, data_type_options={"loss": loss}, batch_size=args.batch_size,
        lr=args.lr, betas=(0.9, 0.99), weight_decay=0.01, ema_decay=0.998, warmup_steps=min(100, steps // 5),
        max_steps=steps, log_interval=max(1, min(20, steps // 10)), eval_interval=0, ckpt_interval=0,
        sample_interval=0, sample_num=16, sample_steps=10, autocast=args.autocast, device=args.device,
        seed=args.seed, out_dir=str(run_dir), num_threads=args.threads, progress=sys.stderr.isatty(),
    )
    load = os.getloadavg()[0]
    start = time.perf_counter()
    Trainer(config, overwrite=True).train()
    train_seconds = time.perf_counter() - start
    bfn, _, state = load_model(run_dir / "checkpoint.pt", device=args.device)
    raw = spec.load("test")
    if args.test_examples:
        raw = raw[: args.test_examples]
    start = time.perf_counter()
    with torch.inference_mode():
        continuous = evaluate_bound(bfn, spec, n_steps=None, repeats=args.repeats, batch_size=args.eval_batch_size,
                                    seed=args.seed, raw=raw, progress=sys.stderr.isatty())
        print(f"[image_likelihood] {dataset} {loss}: {continuous.format()}", file=sys.stderr, flush=True)
        nstep = None
        if args.nstep_examples:
            nstep = evaluate_bound(bfn, spec, n_steps=10, repeats=1, batch_size=min(args.eval_batch_size, 32),
                                   seed=args.seed, raw=raw[: args.nstep_examples], progress=sys.stderr.isatty())
            print(f"[image_likelihood] {dataset} {loss}: {nstep.format()}", file=sys.stderr, flush=True)
    diagnostics = reconstruction_diagnostics(bfn, spec, raw, args.seed, args.eval_batch_size)
    return dict(
        reconstruction_diagnostics=diagnostics,
        dataset=dataset, loss=loss, data_type=repr(bfn.data_type), num_dims=spec.num_dims,
        parameters=sum(p.numel() for p in bfn.parameters()), updates=int(state["step"]), batch_size=args.batch_size,
        train_minutes=train_seconds / 60, eval_minutes=(time.perf_counter() - start) / 60,
        continuous=continuous.to_dict(), nstep10=None if nstep is None else nstep.to_dict(),
        curve=_curve(run_dir, spec.num_dims), load_before=round(load, 2), load_after=round(os.getloadavg()[0], 2),
    )


def render(meta: dict, rows: list) -> str:
    lines = [
        *harness.header_lines(meta, "Likelihood bounds on discretised images: continuous-data vs discretised loss"),
        f"Network: `{meta['backbone']}`, batch {meta['batch_size']}, AdamW lr {meta['lr']} (betas 0.9, 0.99, "
        f"weight decay 0.01), EMA 0.998, autocast {meta['autocast']}; the same seed, data order and updates "
        "for both losses. Bounds on the test split with the EMA weights.",
        "",
        "| dataset | bins | loss | params | updates | train min | ex/s | bits/dim, continuous time (± s.e.) "
        "| of which L^r | bits/dim, n = 10 | n = 10 examples | eval min |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        c, n = r["continuous"], r["nstep10"]
        dims_ln2 = r["num_dims"] * math.log(2)
        bins = _bins(r)
        rate = r["updates"] * r["batch_size"] / (r["train_minutes"] * 60)
        lines.append(
            f"| {r['dataset']} | {bins} | {r['loss']} | {r['parameters'] / 1e6:.2f}M | {r['updates']} "
            f"| {r['train_minutes']:.1f} | {rate:.1f} | {c['bits_per_dim']:.3f} ± {c['bits_per_dim_stderr']:.3f} "
            f"({c['num_examples']:,} x {c['repeats']}) | {c['reconstruction_nats'] / dims_ln2:.3f} "
            f"| {'–' if n is None else format(n['bits_per_dim'], '.3f')} | {'–' if n is None else n['num_examples']} "
            f"| {r['eval_minutes']:.1f} |"
        )
    diagnosed = [r for r in rows if r.get("reconstruction_diagnostics")]
    if diagnosed:
        lines += [
            "",
            "## The reconstruction term at t = 1, per pixel",
            "",
            "One seeded draw of the flow at t = 1 over the scored test images: the reconstruction distribution's "
            "scale (sigma_x of the discretised output; sigma_1 for the continuous-data loss), the share of pixels "
            "whose bin log-probability is below -10 and -1000, the worst pixel and image."
            + (f" Added afterwards from the checkpoints by `{meta['diagnose_command']}`." if meta.get("diagnose_command")
               else ""),
            "",
            "| dataset | loss | images | scale 1% / 50% / 99% | pixels < -10 | pixels < -1000 | worst pixel log p "
            "| images with L^r > 100 nats | worst image L^r | mean L^r |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in diagnosed:
            d = r["reconstruction_diagnostics"]
            lines.append(
                f"| {r['dataset']} | {r['loss']} | {d['images']:,} | {d['scale_q01']:.2g} / {d['scale_median']:.2g} / "
                f"{d['scale_q99']:.2g} | {d['pixels_below_minus10']:.2e} | {d['pixels_below_minus1000']:.2e} "
                f"| {d['worst_pixel_log_prob']:.4g} | {d['images_over_100_nats']:.2%} | {d['worst_image_nats']:.4g} "
                f"| {d['mean_nats']:.4g} |"
            )
    lines += ["", "## Notes", ""]
    lines += [f"- {note}" for note in notes(meta, rows)]
    lines.append("")
    return "\n".join(lines)


def notes(meta: dict, rows: list) -> list:
    out = []
    by = {(r["dataset"], r["loss"]): r for r in rows}
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        d, c = by.get((dataset, "discretised")), by.get((dataset, "continuous"))
        if d and c:
            bd, bc = d["continuous"], c["continuous"]
            diff = bc["bits_per_dim"] - bd["bits_per_dim"]
            se = math.hypot(bd["bits_per_dim_stderr"], bc["bits_per_dim_stderr"])
            better = "discretised" if diff > 0 else "continuous-data"
            out.append(
                f"{dataset}: the {better} loss gives the lower continuous-time bound by {abs(diff):.3f} bits/dim "
                f"(pass-to-pass s.e. of the difference {se:.3f}; both models saw the same {d['updates']} updates). "
                f"Training throughput: discretised {d['updates'] * d['batch_size'] / (d['train_minutes'] * 60):.1f}, "
                f"continuous {c['updates'] * c['batch_size'] / (c['train_minutes'] * 60):.1f} examples/s."
            )
    heavy = [r for r in rows if r["loss"] == "discretised"
             and r["continuous"]["reconstruction_nats"] > 0.5 * r["continuous"]["nats"]]
    for r in heavy:
        dims_ln2 = r["num_dims"] * math.log(2)
        bins = _bins(r)
        text = (f"Discretised loss, {r['dataset']}: the reconstruction term dominates the continuous-time bound "
                f"(L^r {r['continuous']['reconstruction_nats'] / dims_ln2:.3f} of {r['continuous']['bits_per_dim']:.3f} "
                f"bits/dim; the transmission term alone {r['continuous']['flow_nats'] / dims_ln2:.3f}).")
        d = r.get("reconstruction_diagnostics")
        if d:
            text += (f" It is heavy-tailed (the per-pixel table): the worst pixel has log-probability "
                     f"{d['worst_pixel_log_prob']:.4g}, {d['images_over_100_nats']:.2%} of the images have L^r above 100 "
                     f"nats, the worst {d['worst_image_nats']:.4g}; the median output scale sigma_x at t = 1, "
                     f"{d['scale_median']:.2g}, is {1 / bins / d['scale_median']:,.0f}x below the bin half-width 1/{bins}.")
        text += (" At t = 1, sigma_x = sqrt((1 - gamma)/gamma) exp(ln sigma_eps), and a pixel whose mean mu_x lies an "
                 "offset away from its bin gets a log-probability of about -(offset / sigma_x)^2 / 2. The continuous-time "
                 "loss trains sigma_eps only through the mean k_hat, which rewards a small sigma_x whenever mu_x lies in "
                 "the right bin and never sees the cost of a wrong bin, and L^r is not a training term (neither longer "
                 "training nor L^r in the training loss was tried here).")
        if r.get("nstep10"):
            text += (f" Its n = 10 bound on the first {r['nstep10']['num_examples']} images is "
                     f"{r['nstep10']['bits_per_dim']:.3f} bits/dim.")
        c = by.get((r["dataset"], "continuous"))
        if c:
            text += (f" The continuous-data model's reconstruction scale is fixed at sigma_1; its L^r is "
                     f"{c['continuous']['reconstruction_nats'] / (c['num_dims'] * math.log(2)):.3f} bits/dim.")
        out.append(text)
    if rows:
        updates = _span([r["updates"] for r in rows], "{}")
        params = _span([r["parameters"] / 1e6 for r in rows], "{:.2f}")
        out.append(
            f"The bounds are those of short runs ({updates} updates of a {params}M-parameter network at batch "
            f"{rows[0]['batch_size']}); they measure where each loss gets in a fixed budget, not what BFNs reach: the paper "
            f"(Sec. 6.3) reports {PAPER['bits_per_dim']} bits/dim on CIFAR-10 at {PAPER['bins']} bins (32x32 colour, a "
            f"{PAPER['parameters'] / 1e6:.1f}M-parameter U-Net at batch {PAPER['batch']}; n = {PAPER['n_steps']} with "
            f"{PAPER['passes']} passes), a different dataset from the photograph patches here."
        )
    out.append(
        "The continuous-data model's bound is a valid bound on the same discrete data: its transmission term L^inf is the "
        "continuous-data KL rate (receiver N(x_hat, 1/alpha)), and its reconstruction term L^r is the probability of "
        "the observed bin under N(x_hat, sigma_1^2) discretised over the bins (ContinuousData(num_bins=K))."
    )
    nstep = [r for r in rows if r.get("nstep10")]
    if nstep:
        gaps = ", ".join(f"{r['dataset']} {r['loss']} {r['nstep10']['bits_per_dim'] - r['continuous']['bits_per_dim']:+.3f}"
                         for r in nstep)
        out.append(
            f"n = 10 bounds are on the first {nstep[0]['nstep10']['num_examples']} test images only and one pass (no "
            "standard error): compare them between the two losses, not with the continuous-time column, which scores "
            + ", ".join(f"{n:,} ({d})" for d, n in {r["dataset"]: r["continuous"]["num_examples"] for r in rows}.items())
            + f" images. n = 10 minus continuous time, bits/dim: {gaps}."
        )
    return out


def _span(values, form: str) -> str:
    """``"lo-hi"`` of ``values`` formatted with ``form``, or one value when they all format alike."""
    low, high = form.format(min(values)), form.format(max(values))
    return low if low == high else f"{low}-{high}"


def _bins(row: dict) -> int:
    """The number of bins of a result row's data type (from its repr, ``...num_bins=K...``)."""
    return int(row["data_type"].split("num_bins=")[1].split(",")[0].rstrip(")"))


def plot(rows: list, path: pathlib.Path) -> str:
    from pyro_bfn.plotting import new_figure

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    figure = new_figure(figsize=(4.2 * len(datasets), 3.4))
    axes = figure.subplots(1, len(datasets), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for r in rows:
            if r["dataset"] != dataset or not r["curve"]:
                continue
            steps, bits = zip(*r["curve"])
            ax.plot(steps, bits, label=f"{r['loss']} loss (test {r['continuous']['bits_per_dim']:.2f})")
        ax.set_yscale("log")
        ax.set_xlabel("update")
        ax.set_ylabel("training loss, bits/dim (log)")
        ax.set_title(dataset, fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    return harness.save_figure(figure, path)


def _rewrite(args, saved: dict) -> int:
    """Write the JSON (when it changed), plot and Markdown of ``saved`` under ``--out``."""
    args.out.mkdir(parents=True, exist_ok=True)
    png = plot(saved["results"], args.out / "image_likelihood.png")
    harness.write_results(args.out, "image_likelihood", render(saved["meta"], saved["results"]),
                          saved["meta"] if args.diagnose else None, plots=[png], results=saved["results"])
    return 0


def main(argv=None) -> int:
    parser = harness.parser(__doc__, threads=2, render="re-render the .md and .png from an image_likelihood.json "
                            "(no training)")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), help="zoo dataset names (binned images)")
    parser.add_argument("--losses", nargs="+", default=list(LOSSES), choices=LOSSES)
    parser.add_argument("--backbone", default="unet_mnist_small_variant")
    parser.add_argument("--steps", type=harness.positive_int, default=None,
                        help="updates per model (default: 600 for Fashion-MNIST, 300 for the patches)")
    parser.add_argument("--batch-size", type=harness.positive_int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--autocast", default="auto", help="TrainConfig.autocast (default auto: bf16 where the CPU has it)")
    parser.add_argument("--repeats", type=harness.positive_int, default=2, help="passes R over the test set, continuous time")
    parser.add_argument("--test-examples", type=harness.positive_int, default=None, help="cap on the test set (default: all)")
    parser.add_argument("--nstep-examples", type=harness.non_negative_int, default=64,
                        help="test images for the n = 10 bound (0: skip)")
    parser.add_argument("--eval-batch-size", type=harness.positive_int, default=250)
    parser.add_argument("--runs", type=pathlib.Path, default=DEFAULT_RUNS, help="where the (uncommitted) runs go")
    parser.add_argument("--diagnose", type=pathlib.Path, default=None, metavar="JSON",
                        help="add the per-pixel reconstruction table to an image_likelihood.json whose rows lack it, "
                        "from the checkpoints under --runs, and re-render")
    args = parser.parse_args(argv)
    if args.render:
        return _rewrite(args, harness.load_saved(args.render))
    if args.diagnose:
        from pyro_bfn import zoo
        from pyro_bfn.training import load_model

        harness.set_threads(args.threads)
        saved = json.loads(args.diagnose.read_text())
        for row in saved["results"]:
            if row.get("reconstruction_diagnostics"):
                continue
            spec = zoo.get_dataset(row["dataset"])
            bfn, _, _ = load_model(args.runs / f"{row['dataset']}_{row['loss']}" / "checkpoint.pt", device=args.device)
            raw = spec.load("test")[: row["continuous"]["num_examples"]]
            row["reconstruction_diagnostics"] = reconstruction_diagnostics(bfn, spec, raw, args.seed, args.eval_batch_size)
        saved["meta"]["diagnose_command"] = harness.command_line(__file__, argv)
        return _rewrite(args, saved)

    from pyro_bfn import zoo

    for dataset in args.datasets:
        zoo.get_dataset(dataset)  # unknown names fail before any training
    harness.set_threads(args.threads)
    meta = harness.provenance(__file__, argv, seed=args.seed, threads=args.threads)
    meta.update(backbone=args.backbone, batch_size=args.batch_size, lr=args.lr, autocast=args.autocast,
                repeats=args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for dataset in args.datasets:
        for loss in args.losses:
            rows.append(run_one(dataset, loss, args, args.runs))
            # partial results are written after every model, so an interrupted run keeps what it measured
            saved = {k: v for k, v in harness.finish(meta).items() if k != "started"}
            (args.out / "image_likelihood.json").write_text(json.dumps(dict(meta=saved, results=rows), indent=1))
    png = plot(rows, args.out / "image_likelihood.png")
    harness.write_results(args.out, "image_likelihood", render(meta, rows), meta, plots=[png], results=rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
