"""Bits per character of a small BFN on the 27-symbol English corpus, trained on a CPU for a
time budget, with text samples and the share of their words found in an English word list.

CPU budget (defaults, 1 torch thread on the shared 2-core reference machine): about 20 minutes
in all. Measured for the committed run (18.1 min, 1-minute load average 2.6 rising to 5.6 from
other users' jobs): half a minute timing float32 vs bf16 training steps, 12 minutes of training
(``--budget-minutes``; the validation bounds during training count in it), 5.1 minutes for the
test bound (2048 windows x 2 passes, ~13 windows/s), 26 s of sampling (16 samples x 100 steps).
A loaded machine trains fewer steps in the same 12 minutes and evaluates more slowly; a quiet
one evaluates in about half the time.

::

    python benchmarks/text_likelihood.py                         # the committed run
    python benchmarks/text_likelihood.py --budget-minutes 2 --test-windows 256 --repeats 1
    python benchmarks/text_likelihood.py --quick                 # smoke run, under a minute
    python benchmarks/text_likelihood.py --stride 1 --test-windows 1000   # the reference's protocol

What it does:

1. **Precision.** Times a few training steps (continuous-time loss, forward + backward + AdamW,
   the configured batch) in float32 and under bf16 autocast, alternating, and trains in the
   faster one (``--autocast measure``, the default; ``bf16`` / ``none`` force one). Both timings
   are recorded.
2. **Training.** :class:`pyro_bfn.training.Trainer` with ``configs/text_small.yaml``
   (``transformer_small``, 3.18M parameters; ``--set key=value`` overrides, e.g.
   ``--set backbone_options.width=128``) for ``--budget-minutes`` of wall time, continuous-time
   loss :math:`L^\\infty`. The checkpoint and logs go to ``runs/text_likelihood`` (gitignored).
3. **Test bound.** :math:`L^\\infty + L^r` of the EMA weights on length-256 windows of the test
   split (the last 5% of ``data/english27.txt``, 2.7M characters) taken at stride ``--stride``:
   256 (default) gives non-overlapping windows, 10.6k of them; ``--stride 1`` is the reference
   code's protocol (every window, each character counted up to 256 times) and costs 256 times
   more for the same expectation. ``--test-windows`` caps the number of windows, spread evenly
   over the split (:func:`pyro_bfn.metrics.select_windows`); ``R = --repeats`` passes with fresh times and flow
   samples; the standard error is over passes. bits/char = nats per window / (256 ln 2).
4. **Samples.** ``--sample-num`` texts of 256 characters from the EMA model with the paper's
   sampler (``--sample-steps`` = n = 100 updates, then a draw from the final output
   distribution). The share of their words (space-separated tokens, the first and last token
   of each text dropped as they may be cut) that are in the word list of Debian's
   ``wamerican`` package (``usr/share/dict/american-english``; entries lowercased, those with
   any character outside a-z dropped; fetched with ``apt-get download wamerican`` and
   ``dpkg-deb -x`` into ``data/wordlist``, no root needed; :func:`pyro_bfn.metrics.word_list_share`)
   is compared with the same share for the evaluated real test windows.

Writes ``benchmarks/results/text_likelihood.md``, ``.json``, ``_curve.png`` (learning curve
from the training log) and ``_samples.txt``; prints the Markdown. ``--render JSON`` re-renders
the Markdown of a saved run. The windows, word-list share and unigram baseline are
:mod:`pyro_bfn.metrics`.
"""

from __future__ import annotations

import json
import math
import pathlib
import sys
import time

import harness

harness.passive_openmp()  # before torch loads

DEFAULT_CONFIG = harness.ROOT / "configs" / "text_small.yaml"
WORDLIST_PACKAGE = "wamerican"
WORDLIST_MEMBER = "usr/share/dict/american-english"
PAPER = dict(bits_per_char=1.41, parameters=170e6, batch=3328, train_characters=90e6, corpus="text8")
TEST_SHARE = 0.05  # the test split is the last 5% of the corpus (pyro_bfn.datasets.split_text)


# --------------------------------------------------------------------------- measurement
def fetch_word_list(cache_dir) -> pathlib.Path:
    """``usr/share/dict/american-english`` of Debian's ``wamerican``, downloaded with
    ``apt-get download`` and unpacked with ``dpkg-deb -x`` into ``cache_dir`` (no root)."""
    from pyro_bfn.datasets.files import download_debs, unpack_debs

    cache_dir = pathlib.Path(cache_dir)
    target = cache_dir / WORDLIST_MEMBER
    if not target.is_file():
        unpack_debs(download_debs([WORDLIST_PACKAGE], cache_dir).values(), cache_dir)
    if not target.is_file():
        raise FileNotFoundError(f"the {WORDLIST_PACKAGE} package unpacked into {cache_dir} has no {WORDLIST_MEMBER}")
    return target


def measure_precision(config, steps: int, seed: int, length: int) -> dict:
    """Seconds per training step (continuous-time loss, forward + backward + AdamW) in float32
    and, where the CPU has native bf16, under bf16 autocast, alternating; the first step of each
    is discarded.

    :param int length: characters per sequence of the configuration's dataset.
    """
    import statistics
    from functools import partial

    import torch

    from pyro_bfn.training import cpu_has_native_bf16
    from pyro_bfn.zoo import build_bfn

    dtypes = {"fp32": None}
    if cpu_has_native_bf16():
        dtypes["bf16"] = torch.bfloat16
    x = torch.randint(0, 27, (config.batch_size, length), generator=torch.Generator().manual_seed(seed))

    def step(bfn, optimizer):
        loss = bfn.loss(x, reconstruction=False).transmission.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    calls = {}
    for name, dtype in dtypes.items():
        torch.manual_seed(seed)
        bfn = build_bfn(config.dataset, config.backbone, config.data_type_options, config.backbone_options, dtype)
        calls[name] = partial(step, bfn, torch.optim.AdamW(bfn.parameters(), lr=config.lr))
    with torch.random.fork_rng(devices=[]):
        times = harness.alternate(calls, steps + 1)
    result = {"batch_size": config.batch_size, "timed_steps": steps, "bf16_supported": "bf16" in dtypes}
    for name, seconds in times.items():
        median = statistics.median(seconds[1:])
        result[name] = {"seconds": [round(s, 4) for s in seconds[1:]], "median_s": median,
                        "examples_per_s": config.batch_size / median}
    if "bf16" in result:
        result["bf16_speedup"] = result["fp32"]["median_s"] / result["bf16"]["median_s"]
    return result


def plot_learning_curve(run_dir, png_path, title: str, length: int, unigram: float | None = None) -> str | None:
    """Training loss (transmission term, per logged step) and validation bound, in bits/char,
    against training characters seen, from the run's logs."""
    from pyro_bfn.plotting import new_figure

    train, valid = harness.read_run_log(run_dir, "train"), harness.read_run_log(run_dir, "valid")
    if not train:
        return None
    scale = length * math.log(2.0)
    figure = new_figure(figsize=(7, 4.2))
    axis = figure.subplots()
    axis.plot([int(r["examples"]) * length / 1e6 for r in train], [float(r["loss"]) / scale for r in train],
              lw=0.8, alpha=0.8, label="training loss $L^\\infty$ (batch mean, raw weights)")
    if valid:
        axis.plot([int(r["examples"]) * length / 1e6 for r in valid], [float(r["valid_nats"]) / scale for r in valid],
                  "o-", label="validation bound $L^\\infty + L^r$ (EMA)")
    axis.axhline(math.log2(27), color="grey", ls=":", lw=1, label=f"uniform over 27 symbols ({math.log2(27):.2f})")
    if unigram is not None:
        axis.axhline(unigram, color="tab:red", ls="-.", lw=1, label=f"unigram (training-split frequencies, {unigram:.2f})")
    axis.axhline(PAPER["bits_per_char"], color="black", ls="--", lw=1,
                 label=f"paper, text8, {PAPER['parameters'] / 1e6:.0f}M params ({PAPER['bits_per_char']})")
    axis.set_xlabel("training characters seen (millions)")
    axis.set_ylabel("bits / character")
    axis.set_ylim(0, 6)
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    return harness.save_figure(figure, png_path, dpi=110)


# --------------------------------------------------------------------------- report
def _fmt(value, digits=3):
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def render(meta: dict) -> str:
    train, test, prec, words = meta["training"], meta["test"], meta["precision"], meta["words"]
    length = meta.get("length", 256)
    capped = " (capped by --test-windows, spread evenly)" if test["windows"] < test["windows_available"] else ""
    options = f" {train['backbone_options']}" if train["backbone_options"] else ""
    lines = [
        *harness.header_lines(meta, "Bits per character on the English corpus (CPU, minutes of training)"),
        "",
        "## Result",
        "",
        "| quantity | value |",
        "| --- | ---: |",
        f"| test bits/char, $L^\\infty + L^r$ (EMA weights) | **{_fmt(test['bits_per_char'])} ± {_fmt(test['bits_per_char_stderr'])}** |",
        f"| of which transmission $L^\\infty$ / reconstruction $L^r$ (bits/char) | {_fmt(test['flow_bits_per_char'])} / "
        f"{_fmt(test['reconstruction_bits_per_char'], 4)} |",
        f"| test windows (length {length}, stride {test['stride']}) scored / available | {test['windows']:,} / "
        f"{test['windows_available']:,}{capped} |",
        f"| passes R (standard error over {test['stderr_kind']}) | {test['repeats']} |",
        f"| evaluation wall time | {test['seconds'] / 60:.1f} min |",
        f"| model | {train['backbone']}{options}, {train['num_parameters']:,} parameters |",
        f"| training | {train['steps']:,} updates of batch {train['batch_size']} = {train['examples']:,} sequences "
        f"({train['characters'] / 1e6:.2f}M characters, {train['epoch_fraction'] * 100:.1f}% of an epoch) in "
        f"{train['wall_seconds'] / 60:.1f} min, {train['autocast']} |",
        f"| last validation bound (EMA, {train['valid_windows']} windows) | {_fmt(train['last_valid_bits_per_char'])} bits/char |",
        f"| sample words in the word list (n = {words['sample_steps']} steps, {words['sample_num']} samples) | "
        f"{words['samples']['share'] * 100:.1f}% of {words['samples']['tokens']:,} |",
        f"| real test windows, same rule (reference) | {words['real']['share'] * 100:.1f}% of {words['real']['tokens']:,} |",
        *([f"| sample words of 2+ letters in the word list | {words['samples_2plus']['share'] * 100:.1f}% of "
           f"{words['samples_2plus']['tokens']:,} |",
           f"| real test words of 2+ letters (reference) | {words['real_2plus']['share'] * 100:.1f}% of "
           f"{words['real_2plus']['tokens']:,} |"] if "samples_2plus" in words else []),
        f"| sampling wall time | {words['sample_seconds']:.0f} s |",
        *([f"| reference: unigram model (training-split letter frequencies), test bits/char | "
           f"{test['unigram_bits_per_char']:.3f} |"] if "unigram_bits_per_char" in test else []),
        f"| reference: uniform over 27 symbols | {math.log2(27):.3f} |",
        "",
        f"![learning curve]({pathlib.Path(meta['curve']).name})" if meta.get("curve") else "",
        "",
        "## Float32 vs bf16 autocast (training step, continuous-time loss, forward + backward + AdamW)",
        "",
        "| precision | batch | median s/step | examples/s |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name in ("fp32", "bf16"):
        if name in prec:
            lines.append(f"| {name} | {prec['batch_size']} | {prec[name]['median_s']:.3f} | {prec[name]['examples_per_s']:.1f} |")
    lines += [
        "",
        f"Median over {prec['timed_steps']} alternating steps after one discarded; "
        + (f"bf16 speed-up {prec['bf16_speedup']:.2f}x; " if "bf16_speedup" in prec else "bf16 not supported; ")
        + f"trained in **{train['autocast']}** ({meta['autocast_choice']}).",
        "",
        "## Samples",
        "",
        f"The first {len(meta['sample_lines'])} of {words['sample_num']} samples (EMA weights, n = {words['sample_steps']} "
        f"steps, a draw from the final output distribution); all in `{pathlib.Path(meta['samples_file']).name}`:",
        "",
        "```",
        *meta["sample_lines"],
        "```",
        "",
        "Real test text for comparison (the first scored window):",
        "",
        "```",
        meta["real_line"],
        "```",
        "",
        "## Notes",
        "",
        *[f"- {note}" for note in notes(meta)],
    ]
    return "\n".join(lines) + "\n"


def _validation_trend(train: dict, length: int) -> str | None:
    """The change of the validation bound over its last two points, as a clause, or ``None``."""
    log = train.get("valid_log") or []
    if len(log) < 2:
        return None
    a, b = (float(row["valid_nats"]) / (length * math.log(2.0)) for row in log[-2:])
    verb = "still falling" if b < a else "no longer falling"
    return (f"the validation bound was {verb} when training stopped ({a:.3f} -> {b:.3f} bits/char from step "
            f"{int(float(log[-2]['step']))} to {int(float(log[-1]['step']))})")


def notes(meta: dict) -> list:
    """The notes of the table, every number from ``meta`` (the run) or :data:`PAPER`."""
    train, test, words = meta["training"], meta["test"], meta["words"]
    length = meta.get("length", 256)
    trend = _validation_trend(train, length)
    corpus = test.get("test_characters", 0) / TEST_SHARE
    out = [
        f"The paper reports {PAPER['bits_per_char']} bits/char on {PAPER['corpus']} (continuous-time bound, test split) "
        f"with a {PAPER['parameters'] / 1e6:.0f}M-parameter Transformer (24 layers, width 768) trained on 8 GPUs with "
        f"batch {PAPER['batch']:,} sequences (`configs/text8_paper.yaml` holds those settings for GPU users). This "
        f"number differs for three reasons: (1) a small model ({train['num_parameters'] / 1e6:.2f}M parameters, "
        f"1/{PAPER['parameters'] / train['num_parameters']:.0f} of the paper's); (2) minutes of CPU: "
        f"{train['characters'] / 1e6:.1f}M training characters, {train['epoch_fraction'] * 100:.1f}% of one pass over "
        f"our {train['train_sequences'] * length / 1e6:.1f}M-character training split at batch {train['batch_size']}, "
        f"against the paper's batch of {PAPER['batch']:,} sequences on {PAPER['train_characters'] / 1e6:.0f}M "
        "training characters" + (f"; {trend}" if trend else "") + "; "
        f"(3) a different corpus: "
        + (f"about {corpus / 1e6:.1f}M characters of " if corpus else "")
        + "dictionary definitions (GCIDE, WordNet, FOLDOC, Jargon), the King James Bible, fortunes and "
        "Shakespeare/Milton, normalised like text8 but not Wikipedia, and split 90/5/5 by position, so the test split is "
        f"whatever sources come last; the numbers are not comparable with {PAPER['corpus']}'s. A uniform model scores "
        f"log2 27 = {math.log2(27):.2f} bits/char" + _unigram_clause(test),
        f"Protocol: non-overlapping windows (stride {length}) have the same expectation as the reference's stride-1 "
        f"windows at 1/{length} of the cost (`--stride 1` reproduces the latter). "
        + (f"The cap on windows (`--test-windows {test['cap']}`) scores {test['windows']:,} of the "
           f"{test['windows_available']:,} windows, spread evenly over the test split. " if test.get("cap") and
           test["windows"] < test["windows_available"] else "Every window of the test split is scored. ")
        + (f"The standard error is over the {test['repeats']} passes only (the Monte Carlo error of the bound for these "
           "windows; from few passes itself a rough estimate), not over the choice of windows." if test["stderr_kind"] == "passes" else
           "With one pass the standard error is over windows (it mixes the Monte Carlo error with the spread of the text)."),
        f"Word-list share: tokens = space-separated words of a sample; the first and last token of each {length}-character "
        f"text are dropped (they may be cut); the list is Debian `{WORDLIST_PACKAGE}` (american-english, "
        f"{words['list_size']:,} entries after lowercasing and keeping a-z only"
        + (f", {words['single_letters']} of them single letters, so a stray letter counts as a word for both samples "
           "and real text" if words.get("single_letters") else "") + ").",
        "Precision: bf16 autocast runs the network in bf16 and the BFN's flow and loss in float32; this run "
        + ("measured both at its start and trained in the faster." if meta["autocast_choice"].startswith(("measured", "float32 measured"))
           else f"used the precision {meta['autocast_choice']}."),
    ]
    if meta.get("note"):
        out.append(meta["note"])
    return out


def _unigram_clause(test: dict) -> str:
    if "unigram_bits_per_char" not in test:
        return "."
    unigram, bound = test["unigram_bits_per_char"], test["bits_per_char"]
    relation = (f"{bound - unigram:.2f} bits/char below this run's bound: after these minutes the BFN's bound (an upper "
                "bound on its negative log-likelihood) is still worse than counting letters"
                if bound > unigram else f"{unigram - bound:.2f} bits/char above this run's bound")
    return (f"; a unigram model (the training split's character frequencies, no context) scores {unigram:.2f} on the "
            f"test split, {relation}.")


# --------------------------------------------------------------------------- main
def _rerender(args) -> int:
    saved = harness.load_saved(args.render)
    meta = saved.get("meta", saved)  # runs before the harness wrote the meta at the top level
    if args.note:
        meta["note"] = args.note
        args.render.write_text(json.dumps(saved, indent=1, default=str))
    markdown = render(meta)
    args.render.with_suffix(".md").write_text(markdown)
    print(markdown)
    return 0


def main(argv=None) -> int:
    parser = harness.parser(__doc__, threads=1, device=None, render="only re-render the Markdown (beside the JSON) from a "
                            "text_likelihood.json (no training); --note replaces its note (in the JSON too)")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="TrainConfig YAML (default configs/text_small.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a configuration key (repeatable), e.g. --set backbone_options.width=128")
    parser.add_argument("--budget-minutes", type=float, default=12.0, help="wall time of training (default 12)")
    parser.add_argument("--autocast", choices=["measure", "bf16", "none"], default="measure",
                        help="measure: time fp32 and bf16 steps and train in the faster (default)")
    parser.add_argument("--precision-steps", type=harness.positive_int, default=4, help="timed steps per precision (default 4)")
    parser.add_argument("--test-windows", type=harness.non_negative_int, default=2048,
                        help="cap on scored test windows, spread evenly (default 2048; 0 = all)")
    parser.add_argument("--stride", type=harness.positive_int, default=None,
                        help="window stride (default: the sequence length, non-overlapping; 1: the reference's protocol, "
                        "length times costlier)")
    parser.add_argument("--repeats", type=harness.positive_int, default=2, help="passes R over the test windows (default 2)")
    parser.add_argument("--eval-batch-size", type=harness.positive_int, default=64)
    parser.add_argument("--sample-num", type=harness.positive_int, default=16)
    parser.add_argument("--sample-steps", type=harness.positive_int, default=100, help="sampler steps n (default 100)")
    parser.add_argument("--run-dir", default="runs/text_likelihood", help="Trainer output (checkpoint, logs); gitignored")
    parser.add_argument("--wordlist-dir", default="data/wordlist", help="cache of the unpacked wamerican package")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: a tiny Transformer, 0.3 min, 64 windows, 1 pass, 4 samples x 10 steps")
    parser.add_argument("--note", default="", help="a sentence added to the notes")
    parser.add_argument("--tag", default="", help="suffix of the output names (text_likelihood_TAG.*) and the run directory")
    args = parser.parse_args(argv)
    if args.render:
        return _rerender(args)
    if args.quick and args.out == harness.RESULTS:
        args.out = pathlib.Path(args.run_dir + "_quick")  # a smoke run never overwrites the committed results

    import torch

    from pyro_bfn.datasets import load_english_corpus
    from pyro_bfn.evaluation import evaluate_bound
    from pyro_bfn.metrics import load_word_list, make_windows, unigram_bits_per_char, window_starts, word_list_share
    from pyro_bfn.text_codec import decode_rows, encode_text
    from pyro_bfn.training import TrainConfig, Trainer
    from pyro_bfn.zoo import get_dataset

    harness.set_threads(args.threads)
    meta = harness.provenance(__file__, argv, seed=args.seed, threads=torch.get_num_threads())
    overrides = list(args.overrides)
    budget, test_cap, repeats = args.budget_minutes, args.test_windows or None, args.repeats
    sample_num, sample_steps = args.sample_num, args.sample_steps
    if args.quick:
        overrides += ["backbone_options.width=32", "backbone_options.depth=1", "backbone_options.heads=2",
                      "eval_interval=20", "eval_examples=16", "log_interval=5"]
        budget, test_cap, repeats, sample_num, sample_steps = 0.3, 64, 1, 4, 10
    run_dir = args.run_dir + (f"_{args.tag}" if args.tag else "") + ("_quick" if args.quick else "")
    overrides += [f"time_budget_minutes={budget}", f"out_dir={run_dir}", f"num_threads={args.threads}",
                  f"seed={args.seed}"]
    config = TrainConfig.from_yaml(args.config, overrides)
    spec = get_dataset(config.dataset)
    length = spec.data_shape[0]
    stride = args.stride or length

    # 1. precision
    print(f"measuring fp32 vs bf16 training steps ({args.precision_steps} each, batch {config.batch_size}) ...", flush=True)
    precision = measure_precision(config, args.precision_steps, args.seed, length)
    if args.autocast == "measure":
        use_bf16 = precision.get("bf16_speedup", 0.0) > 1.0
        autocast_choice = "measured faster" if use_bf16 else "float32 measured faster or bf16 unsupported"
    else:
        use_bf16 = args.autocast == "bf16"
        autocast_choice = f"forced by --autocast {args.autocast}"
    config = config.replace(autocast="bf16" if use_bf16 else "none")
    print(json.dumps({k: v for k, v in precision.items() if k in ("fp32", "bf16", "bf16_speedup")}, default=str), flush=True)

    # 2. training
    trainer = Trainer(config, overwrite=True)
    summary = trainer.train()
    scale = length * math.log(2.0)
    train_sequences = trainer.train_raw.shape[0]
    valid_rows = harness.read_run_log(trainer.out_dir, "valid")
    training = {
        "backbone": config.backbone or spec.default_backbone, "backbone_options": config.backbone_options,
        "num_parameters": trainer.num_parameters, "batch_size": config.batch_size, "lr": config.lr,
        "warmup_steps": config.warmup_steps, "ema_decay": config.ema_decay, "steps": trainer.step,
        "examples": trainer.examples, "characters": trainer.examples * length,
        "epoch_fraction": trainer.examples / train_sequences, "train_sequences": train_sequences,
        "wall_seconds": trainer.wall_seconds, "autocast": str(trainer.autocast_dtype or "float32").replace("torch.", ""),
        "budget_minutes": budget, "valid_windows": config.eval_examples,
        "last_valid_bits_per_char": (trainer.last_valid or {}).get("nats", float("nan")) / scale,
        "valid_log": [{k: float(v) for k, v in row.items()} for row in valid_rows], "summary": summary,
        "config": config.to_dict(),
    }

    # 3. test bound
    model = trainer.ema_model.eval()
    codes = torch.from_numpy(encode_text(load_english_corpus("test"))).long()
    available = len(window_starts(codes.numel(), length, stride))
    windows, starts = make_windows(codes, length, stride, test_cap)
    print(f"test bound: {windows.shape[0]} of {available} windows (stride {stride}), {repeats} pass(es) ...", flush=True)
    result = evaluate_bound(model, spec, split="test", n_steps=None, repeats=repeats, batch_size=args.eval_batch_size,
                            seed=args.seed, raw=windows, progress=False)
    print(result.format(), flush=True)
    test = {
        "bits_per_char": result.bits_per_dim, "bits_per_char_stderr": result.bits_per_dim_stderr,
        "flow_bits_per_char": result.flow_nats / scale, "reconstruction_bits_per_char": result.reconstruction_nats / scale,
        "nats_per_window": result.nats, "nats_stderr": result.nats_stderr, "stderr_kind": result.stderr_kind,
        "windows": windows.shape[0], "windows_available": available, "cap": test_cap, "stride": stride,
        "repeats": repeats, "test_characters": codes.numel(), "seconds": result.seconds,
        "first_starts": starts[:5],
        "unigram_bits_per_char": unigram_bits_per_char(trainer.train_raw.flatten().numpy(), codes.numpy()),
    }

    # 4. samples and the word list
    word_file = fetch_word_list(args.wordlist_dir)
    words = load_word_list(word_file)
    sample_start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        with torch.inference_mode():
            samples = model.sample(sample_num, sample_steps)
    sample_seconds = time.perf_counter() - sample_start
    sample_texts = decode_rows(samples.reshape(sample_num, -1).cpu().numpy())
    real_texts = decode_rows(windows.numpy())
    word_stats = {
        "list_file": str(word_file), "list_package": WORDLIST_PACKAGE, "list_size": len(words),
        "single_letters": sum(1 for w in words if len(w) == 1),
        "sample_num": sample_num, "sample_steps": sample_steps, "sample_seconds": sample_seconds,
        "samples": word_list_share(sample_texts, words), "real": word_list_share(real_texts, words),
        "samples_2plus": word_list_share(sample_texts, words, min_letters=2),
        "real_2plus": word_list_share(real_texts, words, min_letters=2),
        "rule": "space-separated tokens, first and last of each text dropped; list lowercased, a-z only",
    }

    # 5. outputs
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "text_likelihood" + (f"_{args.tag}" if args.tag else "") + ("_quick" if args.quick else "")
    samples_file = args.out / f"{stem}_samples.txt"
    samples_file.write_text("\n".join(sample_texts) + "\n")
    curve = plot_learning_curve(
        trainer.out_dir, args.out / f"{stem}_curve.png",
        f"{training['backbone']} ({trainer.num_parameters / 1e6:.2f}M params), batch {config.batch_size}, "
        f"{training['autocast']}, {torch.get_num_threads()} CPU thread(s), {training['wall_seconds'] / 60:.1f} min",
        length, unigram=test["unigram_bits_per_char"],
    )
    meta.update(
        precision=precision, autocast_choice=autocast_choice, training=training, test=test, words=word_stats,
        curve=curve, samples_file=str(samples_file), sample_lines=sample_texts[:6], real_line=real_texts[0],
        note=args.note, length=length, paper_bits_per_char_text8=PAPER["bits_per_char"],
    )
    harness.finish(meta)
    harness.write_results(args.out, stem, render(meta), meta, plots=[curve])
    return 0


if __name__ == "__main__":
    sys.exit(main())
