"""Pretrained models: a directory that rebuilds a trained BFN for use (evaluation, sampling),
apart from the training checkpoint, which stays the exact-resume format.

A pretrained directory holds three files and no pickle:

=====================  ====================================================================
``model.safetensors``  the network's weights (:mod:`safetensors`): the EMA weights by default
                       when exported from a training checkpoint
``config.json``        what rebuilds the model: dataset name (and, for the user's own data,
                       its data options: type, K, shape, labels), backbone name and options,
                       data-type options, data shape, context and autocast settings
                       (:data:`PRETRAINED_FORMAT`, :data:`PRETRAINED_VERSION`)
``README.md``          a generated model card: data, bound with its protocol when known,
                       training budget (steps, examples)
=====================  ====================================================================

>>> from pyro_bfn import build_bfn, save_pretrained, from_pretrained
>>> bfn = build_bfn("toy_binary", "mlp_small")
>>> save_pretrained(bfn, "out/toy")                                          # doctest: +SKIP
>>> bfn = from_pretrained("out/toy")                                         # doctest: +SKIP

These are module-level functions, not methods of :class:`~pyro_bfn.bfn.BFN`: rebuilding a
model needs the named datasets and backbones of :mod:`pyro_bfn.zoo`, and the BFN module may
not import the zoo (``docs/architecture.rst``). A BFN built by :func:`pyro_bfn.zoo.build_bfn`
carries its recipe (``bfn.build_recipe``); any other BFN needs ``recipe=`` when saved.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from . import user_data, zoo
from .bfn import BFN

__all__ = [
    "CONFIG_NAME",
    "PRETRAINED_FORMAT",
    "PRETRAINED_VERSION",
    "WEIGHTS_NAME",
    "bound_beside_checkpoint",
    "PretrainedError",
    "export_checkpoint",
    "from_pretrained",
    "save_pretrained",
]

PRETRAINED_FORMAT = "pyro-bfn-pretrained"
PRETRAINED_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
#: the keys of ``config.json`` that :func:`zoo.build_bfn` needs (and ``data_options``, the data
#: options of :mod:`pyro_bfn.user_data`, empty for an unconditional registered dataset)
RECIPE_KEYS = ("dataset", "backbone", "backbone_options", "data_type_options")
_AUTOCAST_NAMES = {None: "none", torch.bfloat16: "bf16", torch.float16: "fp16"}


class PretrainedError(ValueError):
    """A pretrained directory (or the model saved into one) that is absent, corrupt or does not
    match the model its configuration builds."""


# ---------------------------------------------------------------------------- saving
def save_pretrained(bfn: BFN, directory, recipe: dict | None = None, card: dict | None = None) -> Path:
    """Write ``bfn`` as a pretrained directory (weights, configuration, model card).

    :param BFN bfn: the model; its weights are written as they are.
    :param directory: the output directory (created when absent; its three files replaced).
    :param dict recipe: ``dataset``, ``backbone``, ``backbone_options``, ``data_type_options``
        (what :func:`pyro_bfn.zoo.build_bfn` takes); ``bfn.build_recipe`` when ``None``.
    :param dict card: facts for the model card: ``step``, ``examples``, ``weights``
        (``"ema"``/``"raw"``), ``bound`` (a ``pyro-bfn evaluate --json`` result).
    :raises PretrainedError: no recipe, or a recipe that does not describe ``bfn``.
    :returns: the directory.
    """
    from safetensors.torch import save_file

    recipe = dict(recipe if recipe is not None else getattr(bfn, "build_recipe", None) or {})
    missing = [key for key in RECIPE_KEYS if key not in recipe]
    if missing:
        raise PretrainedError(f"cannot save a pretrained model without its recipe ({', '.join(missing)} missing); "
                              "build it with pyro_bfn.build_bfn or pass recipe=")
    try:
        spec = user_data.model_spec(recipe["dataset"], recipe.get("data_options"))
    except user_data.DataError as error:
        raise PretrainedError(f"the model's recipe does not describe its data: {error}") from None
    if tuple(bfn.data_shape) != spec.data_shape:
        raise PretrainedError(f"the model's data shape {tuple(bfn.data_shape)} is not that of dataset "
                              f"{spec.name} {spec.data_shape}")
    config = {
        "format": PRETRAINED_FORMAT,
        "version": PRETRAINED_VERSION,
        **{key: recipe[key] for key in RECIPE_KEYS},
        "data_options": dict(recipe.get("data_options") or {}),
        "backbone": recipe["backbone"] or spec.default_backbone,
        "data_shape": list(bfn.data_shape),
        "context_dropout": bfn.context_dropout,
        "autocast": _AUTOCAST_NAMES.get(bfn.autocast_dtype, "none"),
    }
    try:
        config_text = json.dumps(config, indent=2) + "\n"
    except (TypeError, ValueError) as error:
        raise PretrainedError(f"the model's recipe is not plain JSON data: {error}") from None
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = {name: tensor.detach().to("cpu").contiguous().clone() for name, tensor in bfn.state_dict().items()}
    save_file(weights, str(directory / WEIGHTS_NAME), metadata={"format": PRETRAINED_FORMAT})
    (directory / CONFIG_NAME).write_text(config_text)
    (directory / CARD_NAME).write_text(_model_card(config, spec, card or {}))
    return directory


def export_checkpoint(checkpoint, directory, ema: bool = True) -> Path:
    """Write the model of a training checkpoint as a pretrained directory; the model card
    gets the checkpoint's steps and examples and, when ``test_bound.json`` beside it was
    computed at the checkpoint's step, that bound and its protocol.

    :param checkpoint: ``checkpoint.pt`` written by :class:`~pyro_bfn.training.Trainer`.
    :param directory: the output directory.
    :param bool ema: write the EMA weights (the default) rather than the raw ones.
    :raises pyro_bfn.training.CheckpointError: an absent, corrupt or mismatched checkpoint.
    """
    from .training import load_model

    bfn, config, state = load_model(checkpoint, device="cpu", ema=ema)
    recipe = {key: getattr(config, key) for key in (*RECIPE_KEYS, "data_options")}
    card = {"step": int(state["step"]), "examples": int(state["examples"]), "weights": "ema" if ema else "raw",
            "bound": bound_beside_checkpoint(Path(checkpoint), int(state["step"]))}
    return save_pretrained(bfn, directory, recipe=recipe, card=card)


def bound_beside_checkpoint(checkpoint: Path, step: int) -> dict | None:
    """The bound in ``test_bound.json`` beside ``checkpoint`` (what ``pyro-bfn evaluate --json``
    and ``make demo`` write: ``nats``, ``bits_per_dim``, ``split``, ``n_steps``, ...) if it was
    computed at the checkpoint's ``step``, else ``None``."""
    try:
        bound = json.loads((checkpoint.parent / "test_bound.json").read_text())
    except (OSError, ValueError):
        return None
    return bound if isinstance(bound, dict) and bound.get("checkpoint_step") == step else None


def _model_card(config: dict, spec, card: dict) -> str:
    """The generated ``README.md``: what the model is, its data, bound and training budget."""
    lines = [f"# pyro-bfn model: {spec.name} / {config['backbone']}", "",
             "A Bayesian Flow Network (Graves et al. 2023, arXiv 2308.07037) saved with "
             "`pyro_bfn.save_pretrained`; load it with `pyro_bfn.from_pretrained(directory)`.", "",
             "## Data", "", f"- dataset: `{spec.name}`: {spec.description}",
             f"- data shape: {tuple(config['data_shape'])} ({spec.modality})",
             f"- data options: `{json.dumps(config.get('data_options') or {})}`",
             f"- data-type options: `{json.dumps(config['data_type_options'] or {})}`", "",
             "## Network", "", f"- backbone: `{config['backbone']}`, options "
             f"`{json.dumps(config['backbone_options'] or {})}`",
             f"- weights: {card.get('weights', 'as saved')}", "", "## Bound", ""]
    bound = card.get("bound")
    if bound and bound.get("nats") is not None:
        steps = "continuous time" if bound.get("n_steps") is None else f"n = {bound['n_steps']} steps"
        lines.append(f"- {bound['nats']:.4f} ± {bound.get('nats_stderr', float('nan')):.4f} nats/example, "
                     f"{bound.get('bits_per_dim', float('nan')):.5f} {bound.get('bits_unit', 'bits/dim')}")
        lines.append(f"- protocol: {bound.get('split', '?')} split, {steps}, {bound.get('repeats', '?')} pass(es) "
                     f"over {bound.get('num_examples', '?')} examples, seed {bound.get('seed', '?')}, "
                     f"{bound.get('weights', card.get('weights', '?'))} weights")
    else:
        lines.append("- not known" + (" (no `test_bound.json` computed at this checkpoint's step)" if "step" in card else ""))
    lines += ["", "## Training budget", ""]
    if "step" in card:
        lines.append(f"- {card['step']} updates, {card.get('examples', '?')} examples")
    else:
        lines.append("- not known (saved from a model, not a training checkpoint)")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- loading
def from_pretrained(directory, device="cpu", autocast: str | None = None) -> BFN:
    """The BFN saved in a pretrained directory, in eval mode.

    :param directory: written by :func:`save_pretrained` or ``pyro-bfn export``.
    :param device: where the model goes (a name or :class:`torch.device`).
    :param str autocast: ``"bf16"``, ``"fp16"`` or ``"none"``; the saved setting when ``None``.
    :raises PretrainedError: an absent directory or file, a corrupt configuration or weights
        file, or weights that do not match the configured model (each missing key,
        unexpected key and shape mismatch named).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    config = _read_config(directory)
    path = directory / WEIGHTS_NAME
    if not path.is_file():
        raise PretrainedError(f"pretrained directory {directory} has no {WEIGHTS_NAME}")
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise PretrainedError(f"{path} is corrupt or not a safetensors file ({str(error).splitlines()[0][:160]})") from None
    names = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    autocast = autocast or config.get("autocast", "none")
    if autocast not in names:
        raise PretrainedError(f"autocast must be one of {', '.join(names)}, got {autocast!r}")
    try:
        with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten; keep the caller's RNG
            spec = user_data.model_spec(config["dataset"], config.get("data_options"))
            bfn = zoo.build_bfn(spec, **{key: config[key] for key in RECIPE_KEYS if key != "dataset"},
                                autocast_dtype=names[autocast])
    except (TypeError, ValueError) as error:
        raise PretrainedError(f"{directory / CONFIG_NAME} does not build a model: {error}") from None
    if list(bfn.data_shape) != list(config["data_shape"]):
        raise PretrainedError(f"{directory / CONFIG_NAME} has data shape {tuple(config['data_shape'])}, "
                              f"its dataset {config['dataset']} has {tuple(bfn.data_shape)}")
    bfn.context_dropout = float(config.get("context_dropout", 0.0))
    _check_weights(bfn.state_dict(), weights, path)
    bfn.load_state_dict(weights)
    return bfn.to(device).eval()


def _read_config(directory: Path) -> dict:
    path = directory / CONFIG_NAME
    if not directory.is_dir():
        raise PretrainedError(f"pretrained directory {directory} does not exist")
    if not path.is_file():
        raise PretrainedError(f"pretrained directory {directory} has no {CONFIG_NAME}")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise PretrainedError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(config, dict) or config.get("format") != PRETRAINED_FORMAT:
        raise PretrainedError(f"{path} is not a pyro-bfn pretrained configuration (no '{PRETRAINED_FORMAT}' marker)")
    if config.get("version") != PRETRAINED_VERSION:
        raise PretrainedError(f"{path} has version {config.get('version')!r}, this code reads {PRETRAINED_VERSION}")
    missing = [key for key in (*RECIPE_KEYS, "data_shape") if key not in config]
    if missing:
        raise PretrainedError(f"{path} lacks {', '.join(missing)}")
    return config


def _check_weights(expected: dict, found: dict, path: Path) -> None:
    """One error naming every missing key, unexpected key and shape mismatch."""
    problems = []
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing:
        problems.append("missing keys: " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected keys: " + ", ".join(unexpected))
    shapes = [f"{name} {tuple(found[name].shape)} (model: {tuple(expected[name].shape)})"
              for name in sorted(set(expected) & set(found)) if found[name].shape != expected[name].shape]
    if shapes:
        problems.append("shape mismatches: " + ", ".join(shapes))
    if problems:
        raise PretrainedError(f"{path} does not match the configured model: " + "; ".join(problems))
