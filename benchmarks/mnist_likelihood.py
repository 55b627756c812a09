"""The likelihood bound of a trained BFN on dynamically binarized MNIST, as a function of the
number of steps n, with the paper's test protocol (Graves et al. 2023, Sec. 6.2 / Table 1).

One command::

    python benchmarks/mnist_likelihood.py                          # runs/mnist_demo/checkpoint.pt
    python benchmarks/mnist_likelihood.py --test-examples 4000     # a cap on the test set
    python benchmarks/mnist_likelihood.py --train                  # train configs/mnist_demo.yaml first if needed

Protocol: the (first ``--test-examples`` of the) 10,000 MNIST test images, re-binarized on
every pass (Bernoulli(pixel / 255)); for each n in 10, 25, 50, 100, 784 the discrete-time bound
:math:`L^n + L^r`, and the continuous-time bound :math:`L^\\infty + L^r`, each over R passes
(``--repeats``, default 2; the paper used 2000 passes at n = 784); the table gives the mean
over passes, its standard error (standard deviation of the per-pass means over sqrt(R); with
R = 2 this rests on one degree of freedom) and the reconstruction term :math:`L^r` separately.
All settings use the same seed, so they see the same binarizations (common random numbers:
the differences between rows are less noisy than the rows). EMA weights, eval mode,
``torch.inference_mode``, the checkpoint's autocast setting (bf16 for the demo model).

Writes ``benchmarks/results/mnist_likelihood.md`` (table and notes), ``.json`` (every number,
command, seed, versions, CPU, load average, wall time) and ``.png`` (bound vs n, log-x, stderr
error bars, the continuous-time value as a horizontal line). The notes are computed from these
numbers, the checkpoint's configuration and training log, and the paper's (:data:`PAPER`).
``--render JSON`` re-renders the Markdown and plot of a saved run.

CPU budget: 6 settings x R passes x N examples x 2 network passes (flow + reconstruction).
With one torch thread the demo model (1.08M parameters) scored about 75 examples/s per
discrete-time setting and 145 in continuous time on the AVX512-BF16 CPU of an earlier session
(full protocol, N = 10,000, R = 2: 25.6 minutes at a load of 1-2), and about 31-33 examples/s
on this session's AVX2-only CPU, where the committed run took 64 minutes (its first 20 minutes
beside sample_quality.py). Budget an hour for the full protocol on a 2-core CPU, half that with
``--test-examples 5000``, or pass ``--threads 2`` on an otherwise idle machine.
"""

from __future__ import annotations

import math
import os
import pathlib
import sys

import harness

harness.passive_openmp()  # before torch loads

DEFAULT_CHECKPOINT = harness.ROOT / "runs" / "mnist_demo" / "checkpoint.pt"
DEFAULT_CONFIG = harness.ROOT / "configs" / "mnist_demo.yaml"
STEPS = (10, 25, 50, 100, 784)
#: the paper's binarized-MNIST result and its setting (Sec. 6.2, Table 1; PAPER_CONFIGS.md)
PAPER = dict(nats=77.87, parameters=24.8e6, updates=150_000, batch=512, passes=2000,
             note="continuous time + reconstruction, n = 784 with 2000 passes")


def _train(checkpoint: pathlib.Path, config_path: pathlib.Path) -> None:
    from pyro_bfn.training import TrainConfig, Trainer

    config = TrainConfig.from_yaml(config_path, [f"out_dir={checkpoint.parent}"])
    print(f"[mnist_likelihood] training {config_path} into {checkpoint.parent} ...", file=sys.stderr, flush=True)
    Trainer(config, overwrite=True).train()
    produced = checkpoint.parent / "checkpoint.pt"
    if produced != checkpoint:
        produced.replace(checkpoint)


def training_log_summary(run_dir) -> dict:
    """What the checkpoint's run log says about the end of training: the mean logged training
    loss of the second-to-last and last fifth of the logged rows (nats/image), the number of
    logged rows and of validation points. Empty without a ``train_log.csv``."""
    rows = harness.read_run_log(run_dir, "train")
    if len(rows) < 10:
        return {}
    fifth = len(rows) // 5
    mean = lambda part: sum(float(r["loss"]) for r in part) / len(part)  # noqa: E731
    return dict(logged_rows=len(rows), loss_previous_fifth=mean(rows[-2 * fifth : -fifth]),
                loss_last_fifth=mean(rows[-fifth:]), validation_points=len(harness.read_run_log(run_dir, "valid")))


def _label(n) -> str:
    return "continuous (L^inf)" if n is None else f"n = {n}"


def render(meta: dict, rows: list) -> str:
    cap = meta["test_examples"]
    lines = [
        *harness.header_lines(meta, "Binarized MNIST: likelihood bound vs number of steps"),
        "",
        f"Model: `{meta['checkpoint']}` ({meta['backbone']}, {meta['parameters']:,} parameters, "
        f"{meta['updates']} updates at batch {meta['batch_size']}, {meta['train_loss']} training loss, "
        f"{meta['weights']} weights, autocast {meta['autocast']}).  ",
        (f"Data: the first {cap:,} of the 10,000 MNIST test images (**capped** with `--test-examples`)"
         if cap < 10_000 else "Data: the whole MNIST test set (10,000 images)")
        + f", re-binarized on each of R = {meta['repeats']} passes; the same binarizations for every row.",
        "",
        "| steps | test examples | passes R | L + L^r (nats/image) | stderr | L^n or L^inf (nats) | L^r (nats) "
        "| bits/dim | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {_label(r['n_steps'])} | {r['num_examples']:,} | {r['repeats']} | {r['nats']:.2f} | {r['nats_stderr']:.2f} "
            f"| {r['flow_nats']:.2f} | {r['reconstruction_nats']:.2f} | {r['bits_per_dim']:.4f} | {r['seconds']:.0f} |"
        )
    lines += ["", "![bound vs n](mnist_likelihood.png)", "", "## Notes", ""]
    lines += [f"- {note}" for note in notes(meta, rows)]
    return "\n".join(lines) + "\n"


def _scale_note(meta: dict, cont: dict) -> str:
    """The model and its training against the paper's, every ratio computed."""
    params, examples = meta["parameters"], meta["updates"] * meta["batch_size"]
    paper_examples = PAPER["updates"] * PAPER["batch"]
    budget = f" in a {meta['time_budget_minutes']:g}-minute time budget" if meta.get("time_budget_minutes") else ""
    text = (
        f"The paper reports {PAPER['nats']} nats/image ({PAPER['note']}) with a {PAPER['parameters'] / 1e6:.1f}M-parameter "
        f"U-Net trained for about {PAPER['updates']:,} updates at batch {PAPER['batch']} on a GPU. This model has "
        f"{params / 1e6:.2f}M parameters ({PAPER['parameters'] / params:.0f}x fewer) and saw {meta['updates']} updates at "
        f"batch {meta['batch_size']} ({examples:,} examples, {paper_examples / examples:,.0f}x fewer than the paper's "
        f"~{paper_examples / 1e6:.0f}M){budget}; its continuous-time bound is {cont['nats']:.2f} ± {cont['nats_stderr']:.2f}, "
        f"{cont['nats'] - PAPER['nats']:.1f} nats/image above the paper's."
    )
    log = meta.get("training_log") or {}
    if log:
        change = log["loss_last_fifth"] - log["loss_previous_fifth"]
        text += (f" Over the last two fifths of its {log['logged_rows']} logged training steps the mean training loss went "
                 f"from {log['loss_previous_fifth']:.2f} to {log['loss_last_fifth']:.2f} nats/image "
                 f"({'still falling' if change < 0 else 'no longer falling'}); its log has {log['validation_points']} "
                 "validation point(s).")
    return text + " `configs/mnist_paper.yaml` holds the paper's settings, for a GPU."


def notes(meta: dict, rows: list) -> list:
    by_n = {r["n_steps"]: r for r in rows}
    cont = by_n.get(None)
    discrete = [r for r in rows if r["n_steps"] is not None]
    out = [_scale_note(meta, cont)] if cont is not None else []
    if discrete:
        first, last = discrete[0], discrete[-1]
        falling = all(b["nats"] < a["nats"] for a, b in zip(discrete, discrete[1:]))
        out.append(
            f"The discrete-time bound {'falls with n' if falling else 'does not fall monotonically with n'}, from "
            f"{first['nats']:.2f} at n = {first['n_steps']} to {last['nats']:.2f} at n = {last['n_steps']}"
            + (f"; the continuous-time value (the limit n -> infinity) is {cont['nats']:.2f}" if cont else "") + "."
            + (" The model was trained with the continuous-time loss only (as in the paper), so the discrete-time bounds "
               "measure how well a continuous-time model does when run with n steps." if meta["train_loss"] == "continuous"
               else "")
        )
    if cont is not None and discrete:
        last = discrete[-1]
        diff = last["nats"] - cont["nats"]
        both = math.hypot(last["nats_stderr"], cont["nats_stderr"])
        resolved = abs(diff) > 2 * both
        out.append(
            f"n = {last['n_steps']} minus continuous time: {diff:+.2f} nats (stderrs {last['nats_stderr']:.2f} and "
            f"{cont['nats_stderr']:.2f}; {both:.2f} combined if they were independent), "
            + ("more than" if resolved else "within") + f" two combined standard errors, so R = {meta['repeats']} passes "
            + ("resolve" if resolved else "cannot resolve") + " this difference. Per example, L^n at large n is n times "
            "the KL at one random step, the continuous-time bound the KL rate at one random time."
        )
    if rows:
        reconstruction = rows[0]["reconstruction_nats"]
        same = all(r["reconstruction_nats"] == reconstruction for r in rows)
        out.append(
            f"The reconstruction term L^r is {reconstruction:.2f} nats/image"
            + (f", {reconstruction / cont['nats']:.1%} of the continuous-time bound" if cont else "")
            + ": at t = 1 the input distribution has the flow's full accuracy beta(1) = beta_1. It does not depend on n"
            + ("; with one seed for every row its random draws coincide, hence the identical values." if same else ".")
        )
    out.append(
        f"Standard errors are over R = {meta['repeats']} passes (the paper used {PAPER['passes']} passes at n = 784)"
        + ("; with R = 2 the stderr is the half-difference of two numbers and itself very uncertain." if meta["repeats"] == 2
           else ".")
        + (f" The demo's own test bound of this checkpoint (`make demo`: whole 10k test set, L^inf + L^r, 2 passes, "
           f"other draws; `test_bound.json` beside it) was {meta['demo_test_bound_nats']:.2f}."
           if meta.get("demo_test_bound_nats") is not None else "")
    )
    if "--out" in meta["command"]:
        out.append("The run wrote to the directory given by --out; this table and plot were re-rendered from its JSON "
                   "with `--render benchmarks/results/mnist_likelihood.json` (same numbers).")
    if meta["test_examples"] < 10_000:
        loads = [r["load_before"] for r in rows if "load_before" in r]
        out.append(
            f"The test set was capped at its first {meta['test_examples']:,} images (the full protocol would take "
            f"{10_000 / meta['test_examples']:.1f}x as long); the run took {meta['wall_seconds'] / 60:.0f} minutes"
            + (f", with a 1-minute load average of {min(loads):.1f} to {max(loads):.1f} before the rows" if loads else "")
            + ". `python benchmarks/mnist_likelihood.py` without `--test-examples` runs the whole test set."
        )
    return out


def plot(rows: list, path: pathlib.Path, meta: dict) -> str:
    from pyro_bfn.plotting import new_figure

    discrete = [r for r in rows if r["n_steps"] is not None]
    cont = next((r for r in rows if r["n_steps"] is None), None)
    figure = new_figure(figsize=(6, 4))
    ax = figure.subplots()
    if discrete:
        ax.errorbar([r["n_steps"] for r in discrete], [r["nats"] for r in discrete],
                    yerr=[r["nats_stderr"] for r in discrete], marker="o", capsize=3, label="L^n + L^r")
    if cont is not None:
        ax.axhline(cont["nats"], color="C1", linestyle="--", label=f"continuous time L^inf + L^r = {cont['nats']:.2f}")
        ax.axhspan(cont["nats"] - cont["nats_stderr"], cont["nats"] + cont["nats_stderr"], color="C1", alpha=0.15)
    ax.set_xscale("log")
    steps = [r["n_steps"] for r in discrete] or list(STEPS)
    ax.set_xticks(steps)
    ax.set_xticklabels([str(n) for n in steps])
    ax.set_xlabel("steps n")
    ax.set_ylabel("negative log-likelihood bound (nats/image)")
    ax.set_title(f"Binarized MNIST test ({meta['test_examples']:,} images, R = {meta['repeats']}), "
                 f"{meta['parameters'] / 1e6:.2f}M-param BFN", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return harness.save_figure(figure, path)


def main(argv=None) -> int:
    parser = harness.parser(__doc__, threads=1, render="re-render the .md and .png from a mnist_likelihood.json "
                            "(no evaluation)")
    parser.add_argument("--checkpoint", type=pathlib.Path, default=DEFAULT_CHECKPOINT,
                        help="a pyro-bfn checkpoint of a binarized-MNIST model (default: the demo's)")
    parser.add_argument("--train", action="store_true",
                        help=f"if the checkpoint is missing, train {DEFAULT_CONFIG.relative_to(harness.ROOT)} with the "
                        "Trainer and then evaluate")
    parser.add_argument("--config", type=pathlib.Path, default=DEFAULT_CONFIG, help="configuration used by --train")
    parser.add_argument("--repeats", type=harness.positive_int, default=2,
                        help="passes R over the test set per setting (default 2)")
    parser.add_argument("--test-examples", type=harness.positive_int, default=10_000,
                        help="score only the first this many test images (default: all 10,000)")
    parser.add_argument("--steps", type=harness.positive_int, nargs="*", default=list(STEPS), help="discrete-time n values")
    parser.add_argument("--no-continuous", action="store_true", help="skip the continuous-time row")
    parser.add_argument("--batch-size", type=harness.positive_int, default=250)
    args = parser.parse_args(argv)
    if args.render:
        saved = harness.load_saved(args.render, "demo_test_bound_nats")
        meta = saved["meta"]
        args.out.mkdir(parents=True, exist_ok=True)
        png = plot(saved["results"], args.out / "mnist_likelihood.png", meta)
        harness.write_results(args.out, "mnist_likelihood", render(meta, saved["results"]))
        print(f"wrote {png}", file=sys.stderr)
        return 0

    if not args.checkpoint.is_file():
        if not args.train:
            print(f"mnist_likelihood: {args.checkpoint} does not exist; run `make demo` first (about 20 minutes), "
                  "or pass --train to train configs/mnist_demo.yaml here", file=sys.stderr)
            return 2
        _train(args.checkpoint, args.config)

    import torch

    from pyro_bfn import zoo
    from pyro_bfn.evaluation import evaluate_bound
    from pyro_bfn.training import load_model

    harness.set_threads(args.threads)
    bfn, config, state = load_model(args.checkpoint, device=args.device)
    if config.dataset != "binarized_mnist":
        parser.error(f"{args.checkpoint} models {config.dataset}, not binarized_mnist")
    spec = zoo.get_dataset(config.dataset)
    raw = spec.load("test")[: args.test_examples]
    meta = harness.provenance(__file__, argv, seed=args.seed, threads=torch.get_num_threads())
    meta.update(
        checkpoint=harness.checkpoint_label(args.checkpoint), backbone=config.backbone,
        parameters=sum(p.numel() for p in bfn.parameters()), updates=int(state["step"]), batch_size=config.batch_size,
        train_loss=config.loss, weights="EMA", autocast=str(bfn.autocast_dtype or "none"),
        time_budget_minutes=config.time_budget_minutes, training_log=training_log_summary(args.checkpoint.parent),
        test_examples=int(raw.shape[0]), repeats=args.repeats, batch=args.batch_size,
        demo_test_bound_nats=harness.demo_test_bound(args.checkpoint, int(state["step"])),
    )
    settings = list(args.steps) + ([] if args.no_continuous else [None])
    rows = []
    with torch.inference_mode():
        for n in settings:
            load = os.getloadavg()[0]
            result = evaluate_bound(bfn, spec, split="test", n_steps=n, repeats=args.repeats, batch_size=args.batch_size,
                                    seed=args.seed, raw=raw, progress=sys.stderr.isatty())
            row = result.to_dict()
            row.update(load_before=round(load, 2), load_after=round(os.getloadavg()[0], 2))
            rows.append(row)
            print(f"[mnist_likelihood] {result.format()} (load {load:.2f})", file=sys.stderr, flush=True)
    harness.finish(meta)
    args.out.mkdir(parents=True, exist_ok=True)
    png = plot(rows, args.out / "mnist_likelihood.png", meta)
    harness.write_results(args.out, "mnist_likelihood", render(meta, rows), meta, plots=[png], paper=PAPER, results=rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
