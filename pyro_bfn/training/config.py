"""The configuration of a training run: :class:`TrainConfig` and ``key=value`` overrides.

The dataclass's fields are the one description of the configuration keys: each field's type
hint says which values a key takes (and how a YAML value is converted to it), and the
metadata of a numeric field says its admissible range (``minimum`` for integers, ``rule`` for
real numbers). :meth:`TrainConfig.validate` converts and checks every field from them, so a
YAML file, ``--set`` overrides, a checkpoint's stored configuration and direct construction
in Python all pass the same checks; a bad value is one :class:`ConfigError` naming its key.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import typing
from dataclasses import dataclass, field
from typing import Literal

import yaml

from .. import user_data
from ..checks import check_integer
from ..models import backbone_class, list_backbones
from .values import Mismatch, convert, describe

__all__ = ["ConfigError", "RENAMED_KEYS", "TrainConfig", "apply_overrides"]

#: configuration keys that were renamed: old name -> new name (an old name is an error that
#: names the new one; :func:`~pyro_bfn.training.load_checkpoint` renames them in
#: the configuration stored in older checkpoints)
RENAMED_KEYS = {"num_workers": "num_threads"}


class ConfigError(ValueError):
    """An invalid configuration: unknown key, bad value, or a resume that does not match."""


# ---------------------------------------------------------------------------- field specs
_POSITIVE = (lambda v: math.isfinite(v) and v > 0, "a positive number")
_NON_NEGATIVE = (lambda v: v >= 0, "a number >= 0")
_UNIT_INTERVAL = (lambda v: 0 <= v < 1, "a number in [0, 1)")
_BETAS = (lambda v: all(0 <= b < 1 for b in v), "two numbers in [0, 1)")


def _key(default=dataclasses.MISSING, *, factory=dataclasses.MISSING, minimum=None, rule=None):
    """A configuration field: its default (or ``factory``) and what values it admits beyond
    its type: ``minimum`` for an integer, checked with :func:`~pyro_bfn.checks.check_integer`,
    or ``rule = (predicate, what)`` for a real number (or a tuple of them)."""
    metadata = {key: value for key, value in (("minimum", minimum), ("rule", rule)) if value is not None}
    return field(default=default, default_factory=factory, metadata=metadata)


@dataclass
class TrainConfig:
    """Everything that defines a training run.

    Constructing one converts each value to its field's type (YAML reads ``1e-3`` as a
    string, so numbers are also accepted as strings) and validates it; a bad value is a
    :class:`ConfigError` naming the key.

    :ivar dataset: a name from :func:`pyro_bfn.zoo.list_datasets`, the path of a ``.npz`` or
        ``.pt`` file of the user's data, a ``package.module:function`` entry point returning
        them, or ``in_memory`` (data given in Python to :func:`pyro_bfn.train`).
    :ivar data_options: the data options (:mod:`pyro_bfn.user_data`): for the user's data its
        ``type`` (``continuous``, ``discretised`` with ``num_bins``, ``discrete`` with
        ``num_classes``), the arrays' names (``x``, ``labels`` or ``context``), ``shape``,
        ``valid_fraction``; for a registered dataset with labels, ``labels: true``. Labels or
        context make the run class-/context-conditional (the backbone gets ``num_classes`` or
        ``context_dim``). The trainer fills in ``shape``, ``num_labels`` and ``context_dim``
        from the data, so a checkpoint's configuration rebuilds the model without them.
    :ivar context_dropout: the probability with which the loss replaces an example's label or
        context by the null token (classifier-free guidance; :class:`~pyro_bfn.bfn.BFN`).
    :ivar backbone: a name from :func:`pyro_bfn.models.registry.list_backbones`; the
        dataset's default when ``None``.
    :ivar backbone_options: keyword overrides of the backbone configuration.
    :ivar data_type_options: keyword overrides of the data type, e.g. ``{"beta_1": 9.0}``.
    :ivar batch_size: examples per update, over all processes: the global batch. Each of the
        ``W`` processes of a data-parallel run (``torchrun``) computes the loss of
        ``batch_size / W`` of them, in ``accumulate`` micro-batches; the data order and the
        loss's random draws depend on ``batch_size`` only, so the run is the same (up to
        summation order) for any ``W`` and ``accumulate`` that divide it.
    :ivar accumulate: micro-batches per update and process (gradient accumulation), to fit a
        large ``batch_size`` in memory: each is ``batch_size / (W * accumulate)`` examples.
    :ivar lr: AdamW learning rate after warm-up.
    :ivar betas: AdamW betas.
    :ivar weight_decay: AdamW weight decay.
    :ivar max_skipped_steps: with a gradient scaler (fp16 autocast on CUDA), an update whose
        gradients are not finite is skipped (and counted in the ``skipped`` column of
        ``train_log.csv``); this many consecutive skips stop the run as diverged (40: each
        skip halves the scale, and 40 halvings take torch's initial 2**16 below fp16's
        smallest number, 2**-24).
    :ivar grad_clip: maximum global gradient norm (``0`` disables clipping; the norm is still
        logged).
    :ivar ema_decay: decay of the exponential moving average of the weights; the decay used
        at update ``n`` is ``min(ema_decay, (1 + n) / (10 + n))`` so that the average is not
        dominated by the initial weights in short runs.
    :ivar warmup_steps: linear learning-rate warm-up from ``lr / warmup_steps`` to ``lr``.
    :ivar max_steps: stop after this many updates.
    :ivar time_budget_minutes: also stop once the run's wall time (accumulated over resumes)
        exceeds this; ``None`` for no limit (see :class:`~pyro_bfn.training.TimeBudget`).
    :ivar budget_reserve_examples: keep, inside the time budget, the time to score this many
        examples with the likelihood bound after training (e.g. ``20000`` for two passes over
        a 10k test set): training stops once its wall time plus
        ``budget_reserve_examples / (s * r)`` reaches the budget, ``r`` being the median
        training examples/s of the last five log rows and ``s`` the ratio of bound to training
        examples/s, measured once per session on the EMA model after the second log row (a
        timing of at most 128 examples that leaves the random state untouched). The estimate
        adapts to the machine's load, so a run on a busy machine trains for less time and
        still finishes its evaluation within the budget.
    :ivar log_interval: steps per row of ``train_log.csv`` (the loss is averaged over them);
        every checkpoint also writes a row of the steps since the last one, so that a resumed
        run's rows are the uninterrupted run's.
    :ivar eval_interval: steps between validation bounds (EMA weights, continuous time +
        reconstruction); ``0`` disables validation. A final one is computed at the end.
    :ivar eval_examples: score the first this-many validation examples (``None``: all).
    :ivar eval_repeats: passes over them.
    :ivar eval_batch_size: batch size of validation.
    :ivar ckpt_interval: steps between checkpoints (``0``: only at the end).
    :ivar sample_interval: steps between sample grids (``0`` disables; a final one is drawn
        at the end otherwise).
    :ivar sample_num: samples per grid.
    :ivar sample_steps: sampler steps ``n``.
    :ivar loss: ``"continuous"`` for :math:`L^\\infty` or a positive integer ``n`` for :math:`L^n`.
    :ivar autocast: ``"auto"`` (bf16 on a CPU with native bf16 units, bf16 or fp16 with a
        gradient scaler on CUDA), ``"bf16"``, ``"fp16"`` (CUDA only) or ``"none"``.
    :ivar device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:<index>"``.
    :ivar compile: compile the training model's backbone with ``torch.compile`` (in place, so
        checkpoints are unchanged; the EMA copy used for validation and samples is not
        compiled). The first steps are slow while it compiles; needs a C++ compiler on CPU.
    :ivar seed: seeds the model initialization, the data order and every random draw.
    :ivar out_dir: where the run writes its files.
    :ivar num_threads: torch CPU threads (``torch.set_num_threads``); ``0`` keeps torch's
        default. Batches are indexed from in-memory tensors, so there are no loader processes.
        (Formerly ``num_workers``.)
    :ivar progress: show a tqdm bar (only when stderr is a terminal and ``CI`` is not
        ``true``).
    :ivar logger: ``"csv"`` (the CSV logs only) or ``"tensorboard"`` (also the same scalars
        through :class:`torch.utils.tensorboard.SummaryWriter` into ``out_dir/tensorboard``;
        needs ``pip install pyro-bfn[tensorboard]``).

    ``backbone_options`` and ``data_type_options`` are checked against the keyword parameters
    of the backbone's class and of the dataset's data type (:func:`inspect.signature`): an
    unknown key is a :class:`ConfigError` that lists the accepted ones.
    """

    dataset: str = "binarized_mnist"
    data_options: dict = _key(factory=dict)
    context_dropout: float = _key(0.0, rule=_UNIT_INTERVAL)
    backbone: str | None = None
    backbone_options: dict = _key(factory=dict)
    data_type_options: dict = _key(factory=dict)
    batch_size: int = _key(64, minimum=1)
    accumulate: int = _key(1, minimum=1)
    lr: float = _key(1e-4, rule=_POSITIVE)
    betas: tuple[float, float] = _key((0.9, 0.98), rule=_BETAS)
    weight_decay: float = _key(0.01, rule=_NON_NEGATIVE)
    grad_clip: float = _key(5.0, rule=_NON_NEGATIVE)
    max_skipped_steps: int = _key(40, minimum=1)
    ema_decay: float = _key(0.9999, rule=_UNIT_INTERVAL)
    warmup_steps: int = _key(0, minimum=0)
    max_steps: int = _key(1000, minimum=1)
    time_budget_minutes: float | None = _key(None, rule=_POSITIVE)
    budget_reserve_examples: int = _key(0, minimum=0)
    log_interval: int = _key(10, minimum=1)
    eval_interval: int = _key(0, minimum=0)
    eval_examples: int | None = _key(1000, minimum=1)
    eval_repeats: int = _key(1, minimum=1)
    eval_batch_size: int = _key(256, minimum=1)
    ckpt_interval: int = _key(500, minimum=0)
    sample_interval: int = _key(0, minimum=0)
    sample_num: int = _key(64, minimum=1)
    sample_steps: int = _key(100, minimum=1)
    loss: Literal["continuous"] | int = _key("continuous", minimum=1)
    autocast: Literal["auto", "bf16", "fp16", "none"] = "auto"
    device: str = "auto"
    compile: bool = False
    seed: int = _key(0, minimum=0)
    out_dir: str = "runs/default"
    num_threads: int = _key(0, minimum=0)
    progress: bool = True
    logger: Literal["csv", "tensorboard"] = "csv"

    #: keys that must agree between a checkpoint and the configuration that resumes it
    RESUME_KEYS = (
        "dataset", "data_options", "context_dropout", "backbone", "backbone_options", "data_type_options", "batch_size",
        "seed", "loss",
    )

    def __post_init__(self):
        self.validate()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Build and validate a configuration from a plain dict (unknown keys are errors).

        :param dict values: field name -> value.
        """
        if not isinstance(values, dict):
            raise ConfigError(f"a configuration must be a mapping of keys to values, got {type(values).__name__}")
        for old, new in RENAMED_KEYS.items():
            if old in values:
                raise ConfigError(f"configuration key {old} was renamed: use {new} (same meaning)")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown configuration key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
        return cls(**values)

    @classmethod
    def from_yaml(cls, path, overrides=()) -> "TrainConfig":
        """Load a YAML file, then apply ``key=value`` overrides.

        :param path: a YAML mapping of configuration keys, or ``None`` for the defaults.
        :param overrides: strings ``key=value``; the value is parsed as YAML
            (``lr=2e-3``, ``betas=[0.9,0.99]``); ``backbone_options.base_width=32`` sets
            one entry of a dict-valued key.
        """
        values: dict = {}
        if path is not None:
            try:
                with open(path) as handle:
                    loaded = yaml.safe_load(handle)
            except FileNotFoundError:
                raise ConfigError(f"configuration file {path} does not exist") from None
            except yaml.YAMLError as error:
                raise ConfigError(f"configuration file {path} is not valid YAML: {error}") from None
            if loaded is None:
                loaded = {}
            if not isinstance(loaded, dict):
                raise ConfigError(f"configuration file {path} must hold a mapping of keys to values")
            values.update(loaded)
        apply_overrides(values, overrides)
        return cls.from_dict(values)

    def to_dict(self) -> dict:
        """Plain (YAML/JSON/``weights_only``-safe) dict of the configuration."""
        values = dataclasses.asdict(self)
        values["betas"] = list(self.betas)
        return values

    def replace(self, **changes) -> "TrainConfig":
        """A validated copy with some fields changed."""
        values = self.to_dict()
        values.update(changes)
        return TrainConfig.from_dict(values)

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Convert every field to its type and check it (:class:`ConfigError` naming the key
        otherwise), then the values that depend on the registries and the device names."""
        if hasattr(self.dataset, "shape"):  # a tensor or an array: the first try
            raise ConfigError(f"dataset must be a name, a .npz/.pt file or a module:function, got a "
                              f"{type(self.dataset).__name__}; give examples in Python as data= of pyro_bfn.train "
                              "or of Trainer")
        hints = _type_hints()
        for spec in dataclasses.fields(self):
            setattr(self, spec.name, _field_value(spec, hints[spec.name], getattr(self, spec.name)))
        try:
            self.data_options = user_data.check_options(self.dataset, self.data_options)
        except user_data.DataError as error:
            raise ConfigError(str(error)) from None
        if self.backbone is not None and self.backbone not in list_backbones():
            raise ConfigError(f"unknown backbone {self.backbone!r}; known: {', '.join(list_backbones())}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be auto, cpu or cuda[:index]; got {self.device!r}")
        if not self.out_dir:
            raise ConfigError("out_dir must be a directory path")
        if user_data.is_user_source(self.dataset):
            make_data_type, default_backbone = user_data.make_data_type(self.data_options), "mlp_small"
        else:
            spec = user_data.model_spec(self.dataset)
            make_data_type, default_backbone = spec.make_data_type, spec.default_backbone
        backbone = self.backbone or default_backbone
        _check_options("backbone_options", self.backbone_options, _backbone_keywords(backbone),
                       f"backbone {backbone}")
        _check_options("data_type_options", self.data_type_options,
                       _data_type_keywords(make_data_type, self.data_type_options), f"the data type of {self.dataset}")

    @property
    def n_steps(self) -> int | None:
        """``None`` for the continuous-time loss, else the ``n`` of :math:`L^n`."""
        return None if self.loss == "continuous" else int(self.loss)


@functools.cache
def _type_hints() -> dict:
    """Field name -> its type hint (the annotations are strings under ``from __future__``)."""
    return typing.get_type_hints(TrainConfig)


def _dict_keys() -> tuple:
    """The dict-valued keys (the ones that take dotted ``a.b=value`` overrides)."""
    hints = _type_hints()
    return tuple(spec.name for spec in dataclasses.fields(TrainConfig) if hints[spec.name] is dict)


# ---------------------------------------------------------------------------- nested options
def _keywords(callable_, skip: int = 0, optional_only: bool = False) -> set | None:
    """The names ``callable_`` takes as keyword arguments after its first ``skip`` parameters
    (only those with a default when ``optional_only``); ``None`` when it takes ``**kwargs``."""
    parameters = list(inspect.signature(callable_).parameters.values())[skip:]
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and not (optional_only and p.default is p.empty)}


def _backbone_keywords(name: str) -> set | None:
    """The keyword options of a named backbone: its class's constructor parameters after the
    two that :func:`~pyro_bfn.models.build_backbone` fills (input and output features or
    channels); ``None`` when the class takes any keyword."""
    return _keywords(backbone_class(name), skip=2)


def _data_type_keywords(make_data_type, options: dict) -> set | None:
    """The keyword options of a dataset's data type: the named parameters of its
    ``make_data_type`` and, where that forwards ``**options``, the optional parameters of the
    data type class it builds from those named ones (e.g. ``loss="continuous"`` picks
    :class:`~pyro_bfn.data_types.ContinuousData`; the required parameters, e.g.
    ``num_classes``, it fills itself); ``None`` when that class takes any keyword."""
    named = {p.name for p in inspect.signature(make_data_type).parameters.values()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if _keywords(make_data_type) is not None:  # no **options forwarded
        return named
    try:
        data_type = make_data_type(**{key: value for key, value in options.items() if key in named})
    except (TypeError, ValueError) as error:
        raise ConfigError(f"data_type_options: {error}") from None
    forwarded = _keywords(type(data_type), optional_only=True)
    return None if forwarded is None else named | forwarded


def _check_options(key: str, options: dict, accepted: set | None, owner: str) -> None:
    unknown = sorted(set(options) - accepted) if accepted is not None else []
    if unknown:
        raise ConfigError(f"{key}: {owner} takes no option {', '.join(map(repr, unknown))}; "
                          f"accepted: {', '.join(sorted(accepted))}")


def _field_value(spec: dataclasses.Field, hint, value):
    """``value`` converted to the field's type and checked against its range."""
    try:
        converted = convert(hint, value)
    except Mismatch:
        raise ConfigError(f"{spec.name} must be {describe(hint)}, got {value!r}") from None
    if converted is None or isinstance(converted, str):
        return converted
    if "minimum" in spec.metadata:
        try:
            check_integer(spec.name, converted, spec.metadata["minimum"], allow_none=type(None) in typing.get_args(hint))
        except ValueError as error:
            raise ConfigError(str(error)) from None
    if "rule" in spec.metadata:
        holds, what = spec.metadata["rule"]
        if not holds(converted):
            raise ConfigError(f"{spec.name} must be {what}, got {value!r}")
    return converted


def apply_overrides(values: dict, overrides) -> dict:
    """Apply ``key=value`` strings to a dict of configuration values, in place.

    :param dict values: the configuration so far.
    :param overrides: iterable of ``"key=value"``; ``"a.b=value"`` sets ``values["a"]["b"]``
        for a dict-valued key ``a``.
    """
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value")
        key, text = item.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        if "." in key:
            outer, inner = key.split(".", 1)
            if outer not in _dict_keys():
                dotted = " and ".join(f"{name}.*" for name in _dict_keys())
                raise ConfigError(f"only {dotted} take dotted keys, got {key!r}")
            nested = dict(values.get(outer) or {})
            nested[inner] = value
            values[outer] = nested
        else:
            values[key] = value
    return values
