"""The 27-symbol text8 alphabet, the one text codec of the library: text to codes and back.

text8 (Mahoney's 100M characters of Wikipedia) and the English corpus of
:mod:`pyro_bfn.datasets` are written over :data:`TEXT8_ALPHABET`: the space is code 0 and the
letters ``a``..``z`` are codes 1..26, the ``K = 27`` classes of the paper's text8 experiment
(Sec. 6.4). Every module that turns text into codes or codes into text (the data loaders, the
generated toy text of :mod:`pyro_bfn.zoo`, :mod:`pyro_bfn.plotting`, the text metrics) uses the
functions here; this module imports only numpy, so it is cheap to import.

* :func:`normalise_text` reduces any text to the alphabet;
* :func:`encode_text` / :func:`decode_text` map one text to codes ``(L,)`` and back;
* :func:`decode_rows` decodes a batch of sequences ``(N, L)``;
* :func:`first_foreign_byte` finds the first byte of a file's content outside the alphabet.

>>> encode_text("hi z").tolist()
[8, 9, 0, 26]
>>> decode_rows([[8, 9], [0, 26]])
['hi', ' z']
"""

from __future__ import annotations

import re

import numpy as np

__all__ = ["TEXT8_ALPHABET", "decode_rows", "decode_text", "encode_text", "first_foreign_byte", "normalise_text"]

#: index 0 is the space, 1..26 are a..z (the text8 alphabet)
TEXT8_ALPHABET = " abcdefghijklmnopqrstuvwxyz"

_ALPHABET_BYTES = TEXT8_ALPHABET.encode("ascii")
_FOREIGN = 255  # the code table's mark for a byte outside the alphabet
_CODES = np.full(256, _FOREIGN, dtype=np.uint8)  # byte -> code
_CODES[np.frombuffer(_ALPHABET_BYTES, dtype=np.uint8)] = np.arange(len(TEXT8_ALPHABET), dtype=np.uint8)
_CHARACTERS = np.frombuffer(_ALPHABET_BYTES, dtype=np.uint8)  # code -> byte

_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_DIGIT_TABLE = {ord(str(d)): f" {w} " for d, w in enumerate(_DIGIT_WORDS)}
_NOT_LETTERS = re.compile(r"[^a-z]+")


def normalise_text(text: str) -> str:
    """Reduce text to the 27-symbol text8 alphabet (as text8 was made from Wikipedia).

    Lowercases, spells out each ASCII digit as a word (``"1984"`` -> ``"one nine eight
    four"``), turns every other run of characters (punctuation, whitespace, non-ASCII letters)
    into one space, and strips spaces at both ends. The result contains only ``a``-``z`` and
    single spaces, and ``normalise_text(normalise_text(s)) == normalise_text(s)``.

    :param str text: any text.
    :returns: the normalised text.
    :raises TypeError: ``text`` is not a ``str``.
    """
    if not isinstance(text, str):
        raise TypeError(f"normalise_text expects str, got {type(text).__name__}")
    return _NOT_LETTERS.sub(" ", text.lower().translate(_DIGIT_TABLE)).strip(" ")


def first_foreign_byte(raw: bytes) -> int | None:
    """The offset of the first byte of ``raw`` outside :data:`TEXT8_ALPHABET`, or ``None``.

    :param bytes raw: e.g. the content of a text8-style file.
    """
    if not raw.translate(None, _ALPHABET_BYTES):  # the common case: every byte is in the alphabet
        return None
    return int(np.flatnonzero(_CODES[np.frombuffer(raw, dtype=np.uint8)] == _FOREIGN)[0])


def encode_text(text: str) -> np.ndarray:
    """Map text over :data:`TEXT8_ALPHABET` to codes (space 0, a..z 1..26).

    :param str text: normalised text (see :func:`normalise_text`).
    :returns: ``np.uint8`` array of shape ``(len(text),)``.
    :raises TypeError: ``text`` is not a ``str``.
    :raises ValueError: a character is outside the alphabet (its position is named).
    """
    if not isinstance(text, str):
        raise TypeError(f"encode_text expects str, got {type(text).__name__}")
    raw = text.encode("ascii", errors="replace")  # one byte per character; '?' is foreign too
    position = first_foreign_byte(raw)
    if position is not None:
        raise ValueError(
            f"character {text[position]!r} at position {position} is not in the text8 alphabet "
            f"(space and a-z); pass the text through normalise_text first"
        )
    return _CODES[np.frombuffer(raw, dtype=np.uint8)]


def _characters(codes, ndim: int, caller: str) -> np.ndarray:
    """The alphabet bytes of ``codes`` (checked: ``ndim`` dimensions of integers in 0..26)."""
    array = np.asarray(codes)
    if array.ndim != ndim:
        shape = "1-D sequence" if ndim == 1 else f"{ndim}-D array"
        raise ValueError(f"{caller} expects a {shape} of codes, got shape {array.shape}")
    if array.size == 0:
        return np.zeros(array.shape, dtype=np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{caller} expects integer codes, got dtype {array.dtype}")
    if array.min() < 0 or array.max() >= len(TEXT8_ALPHABET):
        raise ValueError(f"codes must be in 0..{len(TEXT8_ALPHABET) - 1}, got {array.min()}..{array.max()}")
    return _CHARACTERS[array.astype(np.intp)]


def decode_text(codes) -> str:
    """Map codes 0..26 back to text over :data:`TEXT8_ALPHABET`.

    :param codes: a 1-D sequence of integers in 0..26 (list, numpy array or CPU tensor),
        shape ``(L,)``.
    :returns: the text, of length ``L``.
    :raises ValueError: codes are not 1-D integers in 0..26.
    """
    return _characters(codes, 1, "decode_text").tobytes().decode("ascii")


def decode_rows(codes) -> list[str]:
    """Map a batch of code sequences to one string per row.

    :param codes: integers in 0..26 of shape ``(N, L)`` (nested lists, numpy array or CPU tensor).
    :returns: ``N`` strings of length ``L``.
    :raises ValueError: codes are not 2-D integers in 0..26.
    """
    characters = _characters(codes, 2, "decode_rows")
    return [row.tobytes().decode("ascii") for row in characters]
