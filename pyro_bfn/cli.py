"""The ``pyro-bfn`` command line: train, evaluate, sample, export, list, data.

::

    pyro-bfn train --config configs/mnist_demo.yaml [--set key=value ...] [--resume] [--device cpu]
    pyro-bfn evaluate --checkpoint runs/mnist_demo/checkpoint.pt [--n-steps N | --continuous]
                      [--repeats R] [--split test] [--json out.json]
    pyro-bfn sample --checkpoint runs/mnist_demo/checkpoint.pt --num 64 --n-steps 100 [--mode] --out grid.png
    pyro-bfn export --checkpoint runs/mnist_demo/checkpoint.pt --out pretrained/mnist_demo [--raw-weights]
    pyro-bfn convert-official pretrained-BFNs/mnist_ema.pt --out pretrained/mnist_official
    pyro-bfn list
    pyro-bfn data build-corpus | fetch-fashion-mnist | check

Each command parser sets ``func``, its handler ``handler(args) -> exit status``; the ``data``
commands are :mod:`pyro_bfn.datasets.cli`'s.

Threads: on a CPU shared with other busy processes, OpenMP threads that spin while waiting
for one another make two threads slower than one (``benchmarks/results/speed.passive.md``);
:func:`main` therefore sets ``OMP_WAIT_POLICY=PASSIVE`` before torch is imported, unless the
variable is already set.

Expected failures (missing data, a file that is not a checkpoint, an invalid configuration or
nested option, a diverged run) print one line ``pyro-bfn: error: ...`` to stderr and exit
with status 2. When the reader of standard output goes away (``pyro-bfn list | head -1``),
the command stops quietly with status 1, as the Python documentation recommends for
``SIGPIPE`` (the note on SIGPIPE in :mod:`signal`).

Logging: the library logs through :mod:`logging` (the ``pyro_bfn`` logger); :func:`main`
shows its INFO records on stderr (:func:`~pyro_bfn.training.log_to_stderr`: a
:class:`~pyro_bfn.training.TqdmHandler`, above any progress bar). ``pyro-bfn --version``
prints :data:`pyro_bfn.__version__`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

import pyro_bfn

from .checks import check_integer
from .sampling import get_sampler, list_samplers

__all__ = ["main"]

EXIT_ERROR = 2


def _positive_int(text: str) -> int:
    try:
        return check_integer("the value", int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    from .datasets.cli import add_data_parser

    parser = argparse.ArgumentParser(
        prog="pyro-bfn", description="Bayesian Flow Networks in Pyro: train, evaluate, sample; obtain the data."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {pyro_bfn.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a BFN from a YAML configuration")
    train.set_defaults(func=_train)
    train.add_argument("--config", help="YAML file of pyro_bfn.training.TrainConfig keys (defaults when omitted)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a configuration key (repeatable); e.g. --set lr=2e-3 --set backbone_options.base_width=32")
    train.add_argument("--resume", action="store_true", help="continue from OUT_DIR/checkpoint.pt")
    train.add_argument("--overwrite", action="store_true", help="start afresh even if OUT_DIR holds a checkpoint")
    train.add_argument("--device", help="auto, cpu or cuda (overrides the configuration)")
    train.add_argument("--out-dir", help="output directory (overrides the configuration)")

    evaluate = commands.add_parser("evaluate", help="likelihood bound of a checkpoint's EMA model")
    evaluate.set_defaults(func=_evaluate)
    evaluate.add_argument("--checkpoint", required=True, help="checkpoint.pt written by pyro-bfn train")
    steps = evaluate.add_mutually_exclusive_group()
    steps.add_argument("--n-steps", type=_positive_int, help="n-step loss L^n + L^r")
    steps.add_argument("--continuous", action="store_true", help="continuous-time loss L^inf + L^r (the default)")
    evaluate.add_argument("--repeats", type=_positive_int, default=1, help="passes over the split (default 1)")
    evaluate.add_argument("--split", default="test", choices=["train", "valid", "test"], help="data split (default test)")
    evaluate.add_argument("--batch-size", type=_positive_int, default=256, help="examples per network call (default 256)")
    evaluate.add_argument("--max-examples", type=_positive_int, help="score only the first examples")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of times, flow samples and binarization (default 0)")
    evaluate.add_argument("--json", help="also write the result as JSON here")
    evaluate.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    evaluate.add_argument("--autocast", choices=["auto", "bf16", "fp16", "none"],
                          help="override the checkpoint's autocast setting")
    evaluate.add_argument("--raw-weights", action="store_true", help="use the raw instead of the EMA weights")

    sample = commands.add_parser("sample", help="draw samples from a checkpoint's EMA model")
    sample.set_defaults(func=_sample)
    sample.add_argument("--checkpoint", required=True, help="checkpoint.pt written by pyro-bfn train")
    sample.add_argument("--num", type=_positive_int, default=64, help="number of samples (default 64)")
    sample.add_argument("--n-steps", type=_positive_int, default=100, help="sampler steps n; all n Bayesian updates happen (default 100)")
    sample.add_argument("--mode", action="store_true", help="return the mode of the final output distribution")
    sample.add_argument("--sampler", default="ancestral",
                        help="a registered sampler: " + ", ".join(list_samplers()) + " (default ancestral)")
    sample.add_argument("--guidance-scale", type=float, default=None,
                        help="classifier-free guidance scale w (needs --label; 0: the conditional model)")
    sample.add_argument("--label", type=int, default=None, help="class label of a class-conditional model")
    sample.add_argument("--temperature", type=float, default=1.0,
                        help="sampling temperature T >= 0: every draw from the model tempered (logits / T, "
                        "Gaussian variances x T); 1: the model's own (default), 0: every draw its mode")
    sample.add_argument("--out", required=True,
                        help="by extension: .pt or .npz (raw samples), .png (image grid), .txt (text)")
    sample.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    sample.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    sample.add_argument("--autocast", choices=["auto", "bf16", "fp16", "none"], help="override the checkpoint's autocast setting")
    sample.add_argument("--raw-weights", action="store_true", help="use the raw instead of the EMA weights")

    export = commands.add_parser("export", help="write a checkpoint's model as a pretrained directory")
    export.set_defaults(func=_export)
    export.add_argument("--checkpoint", required=True, help="checkpoint.pt written by pyro-bfn train")
    export.add_argument("--out", required=True, help="directory for model.safetensors, config.json, README.md")
    export.add_argument("--raw-weights", action="store_true", help="export the raw instead of the EMA weights")

    convert = commands.add_parser("convert-official", help="convert a checkpoint of the official implementation "
                                  "(nnaisense/bayesian-flow-networks) into a pretrained directory")
    convert.set_defaults(func=_convert_official)
    convert.add_argument("checkpoint", metavar="CKPT", help="the official binarized-MNIST state dict, e.g. mnist_ema.pt "
                         "of the Hugging Face Hub repository rupspace/pretrained-BFNs")
    convert.add_argument("--out", required=True, help="directory for model.safetensors, config.json, README.md")
    convert.add_argument("--backbone-options", metavar="JSON",
                         help="overrides of unet_mnist_paper's options for an official network of other widths, "
                              'e.g. \'{"base_width": 32}\'')

    commands.add_parser("list", help="list the named datasets and backbones").set_defaults(func=_list)
    add_data_parser(commands)
    return parser


def _train(args) -> int:
    from .training import TrainConfig, train

    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"device={args.device}")
    if args.out_dir:
        overrides.append(f"out_dir={args.out_dir}")
    result = train(TrainConfig.from_yaml(args.config, overrides), resume=args.resume, overwrite=args.overwrite)
    if result.rank == 0:  # under torchrun, rank 0 reports
        print(json.dumps(result.summary, indent=2))
    return 0


def _evaluate(args) -> int:
    from .evaluation import evaluate_bound
    from .training import load_model
    from .user_data import load_dataset

    bfn, config, state = load_model(args.checkpoint, device=args.device, ema=not args.raw_weights,
                                     autocast=args.autocast)
    spec, _ = load_dataset(config.dataset, config.data_options, config.data_type_options)
    raw = spec.load(args.split)
    if raw.shape[0] == 0:
        raise UsageError(f"{config.dataset} has no {args.split} examples (data_options.valid_fraction of the run is 0: "
                         "use --split train)")
    context = spec.load_context(args.split) if spec.conditional else None
    n_steps = None if args.continuous or args.n_steps is None else args.n_steps
    with _finite_network(args.checkpoint):
        result = evaluate_bound(
            bfn, spec, split=args.split, n_steps=n_steps, repeats=args.repeats, batch_size=args.batch_size,
            seed=args.seed, max_examples=args.max_examples, progress=sys.stderr.isatty(), raw=raw, context=context,
        )
    print(result.format())
    unit = "bits/char" if spec.modality == "text" else "bits/dim"
    print(f"{result.nats:.3f} ± {result.nats_stderr:.3f} nats/example, "
          f"{result.bits_per_dim:.5f} ± {result.bits_per_dim_stderr:.5f} {unit} "
          f"(standard error over {result.stderr_kind}); checkpoint step {state['step']}")
    if args.json:
        payload = result.to_dict()
        payload.update(checkpoint=str(args.checkpoint), checkpoint_step=int(state["step"]),
                       weights="raw" if args.raw_weights else "ema", autocast=str(bfn.autocast_dtype or "none"),
                       bits_unit=unit)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as handle:
            json.dump(payload, handle, indent=2)
        print(f"wrote {args.json}")
    return 0


def _sample(args) -> int:
    import torch

    from .training import load_model, save_samples
    from .user_data import model_spec

    out = Path(args.out)
    if out.suffix not in SAMPLE_FORMATS:
        raise UsageError(f"--out must end in one of {', '.join(SAMPLE_FORMATS)}, got {str(out)!r}")
    try:
        get_sampler(args.sampler)  # an unknown name fails before the checkpoint is read
    except ValueError as error:
        raise UsageError(str(error)) from None
    bfn, config, _ = load_model(args.checkpoint, device=args.device, ema=not args.raw_weights, autocast=args.autocast)
    spec = model_spec(config.dataset, config.data_options)
    native = {"text": ".txt", "image": ".png"}.get(spec.modality)
    if out.suffix in (".png", ".txt") and out.suffix != native:
        raise UsageError(f"{spec.modality} samples are written as {native + ', ' if native else ''}"
                         f".pt or .npz, got {str(out)!r}")
    torch.manual_seed(args.seed)
    generator = torch.Generator(device=next(bfn.parameters()).device).manual_seed(args.seed)
    start = time.perf_counter()
    try:
        with _finite_network(args.checkpoint):
            samples = bfn.sample(args.num, args.n_steps, mode=args.mode, sampler=args.sampler, context=args.label,
                                 guidance_scale=args.guidance_scale, generator=generator, temperature=args.temperature)
    except ValueError as error:  # e.g. a label for an unconditional model, guidance without one
        raise UsageError(f"sampling from {args.checkpoint}: {error}") from None
    seconds = time.perf_counter() - start
    if out.suffix in (".pt", ".npz"):
        _save_raw_samples(out, samples, args, config)
    else:
        save_samples(spec, samples, out)
    print(f"wrote {args.num} samples ({args.sampler}, {args.n_steps} steps{', mode' if args.mode else ''}, "
          f"{seconds:.1f} s) to {out}")
    return 0


class UsageError(ValueError):
    """A command-line argument that the command cannot use (reported as one error line)."""


#: the file types ``pyro-bfn sample --out`` writes
SAMPLE_FORMATS = (".pt", ".npz", ".png", ".txt")


def _save_raw_samples(out: Path, samples, args, config) -> None:
    """The samples (shape ``(N, *data_shape)``) and how they were drawn, as a ``.pt`` file
    (a dict) or a ``.npz`` archive."""
    import numpy as np
    import torch

    meta = dict(checkpoint=str(args.checkpoint), dataset=config.dataset, sampler=args.sampler,
                n_steps=args.n_steps, seed=args.seed, mode=args.mode, label=args.label,
                guidance_scale=args.guidance_scale, temperature=args.temperature)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".pt":
        torch.save(dict(samples=samples.cpu(), **meta), out)
    else:
        np.savez(out, samples=samples.cpu().numpy(), **{k: np.asarray("" if v is None else v) for k, v in meta.items()})


@contextlib.contextmanager
def _finite_network(checkpoint):
    """A non-finite network output (:class:`~pyro_bfn.bfn.NonFiniteNetworkOutput`) as a :class:`CheckpointError` naming the file."""
    from .bfn import NonFiniteNetworkOutput
    from .training import CheckpointError

    try:
        yield
    except NonFiniteNetworkOutput:
        raise CheckpointError(f"the model of checkpoint {checkpoint} returned NaN or infinite values "
                              "(weights of a diverged run?)") from None


def _export(args) -> int:
    from .pretrained import PretrainedError, export_checkpoint

    try:
        out = export_checkpoint(args.checkpoint, args.out, ema=not args.raw_weights)
    except PretrainedError as error:
        raise UsageError(str(error)) from None
    print(f"wrote {out} ({'raw' if args.raw_weights else 'EMA'} weights)")
    return 0


def _convert_official(args) -> int:
    from .convert import export_official

    options = None
    if args.backbone_options is not None:
        try:
            options = json.loads(args.backbone_options)
        except ValueError as error:
            raise UsageError(f"--backbone-options is not JSON ({error})") from None
        if not isinstance(options, dict):
            raise UsageError(f"--backbone-options must be a JSON object, got {args.backbone_options!r}")
    out = export_official(args.checkpoint, args.out, backbone_options=options)
    print(f"wrote {out} (the weights of official checkpoint {args.checkpoint})")
    return 0


def _list(args) -> int:
    from .models import backbone_config, list_backbones
    from .zoo import get_dataset, list_datasets

    print("datasets:")
    for name in list_datasets():
        spec = get_dataset(name)
        shape = "x".join(str(d) for d in spec.data_shape)
        print(f"  {name:<22} {shape:<9} {spec.modality:<6} default backbone {spec.default_backbone}: {spec.description}")
    print("backbones:")
    for name in list_backbones():
        print(f"  {name:<26} {backbone_config(name)['class']}")
    return 0


def _silence_stdout() -> None:
    """After a broken pipe: point standard output at ``os.devnull``, so that the interpreter's
    final flush does not raise again (the Python documentation's recipe)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # a replaced sys.stdout without a file descriptor
        pass


def main(argv=None) -> int:
    """Run the command line; returns the exit status.

    :param argv: arguments without the program name (``sys.argv[1:]`` when ``None``).
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see the module docstring; before torch loads
    from .datasets import DataIntegrityError
    from .training import CheckpointError, ConfigError, TrainingDivergedError, log_to_stderr
    from .user_data import DataError

    # OSError: a file that cannot be read or written (a full disk at a log row, a read-only out_dir)
    expected = (UsageError, ConfigError, CheckpointError, TrainingDivergedError, DataIntegrityError, DataError,
                OSError)
    args = _parser().parse_args(argv)
    log_to_stderr()
    try:
        status = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here rather than at the interpreter's exit
        return status
    except BrokenPipeError:  # the reader went away (pyro-bfn list | head): nothing to say
        _silence_stdout()
        return EXIT_ERROR
    except expected as error:
        message = str(error) or type(error).__name__
        if isinstance(error, OSError) and error.filename and str(error.filename) not in message:
            message = f"{message}: {error.filename}"
        print(f"pyro-bfn: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("pyro-bfn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
