"""The one text codec (:mod:`pyro_bfn.text_codec`): normalising text to the 27-symbol text8
alphabet, codes and back, and that every text path of the library goes through it."""

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pyro_bfn import datasets as data
from pyro_bfn import text_codec
from pyro_bfn.text_codec import TEXT8_ALPHABET, decode_rows, decode_text, encode_text, first_foreign_byte, normalise_text


def test_alphabet_is_shared_by_datasets_plotting_and_toy_text():
    from pyro_bfn import plotting
    from pyro_bfn.zoo import _toy_text

    assert TEXT8_ALPHABET == " abcdefghijklmnopqrstuvwxyz" and len(TEXT8_ALPHABET) == 27
    # the data package re-exports the codec's own objects, and plotting decodes with it
    assert data.TEXT8_ALPHABET is TEXT8_ALPHABET
    assert data.encode_text is encode_text and data.decode_text is decode_text and data.normalise_text is normalise_text
    assert plotting.decode_rows is decode_rows
    row = _toy_text("test")[0]
    assert encode_text(decode_text(row.numpy())).tolist() == row.tolist()
    assert plotting.decode_symbols(_toy_text("test")[:2]) == [decode_text(r.numpy()) for r in _toy_text("test")[:2]]


_ALPHABET_SET = set(TEXT8_ALPHABET)
_WORDS = "zero one two three four five six seven eight nine".split()


@given(st.text(max_size=200))
@example("  Hello,\tWORLD!! 42  ")
@example("İstanbul straße café 1,000.5")
@example("\u212a")  # Kelvin sign, lowercases to ASCII k
def test_normalise_text_properties(text):
    out = normalise_text(text)
    assert set(out) <= _ALPHABET_SET
    assert "  " not in out
    assert out == out.strip(" ")
    assert normalise_text(out) == out
    assert out.replace(" ", "").isascii()
    digits = [c for c in text if c in "0123456789"]
    words = out.split()
    for digit_word in (_WORDS[int(c)] for c in digits):
        assert digit_word in words


@given(st.lists(st.sampled_from("0123456789"), min_size=1, max_size=12))
def test_normalise_text_spells_digits(digits):
    assert normalise_text("".join(digits)) == " ".join(_WORDS[int(d)] for d in digits)


def test_normalise_text_examples():
    assert normalise_text("Hello, World! In 1984...") == "hello world in one nine eight four"
    assert normalise_text("a1b") == "a one b"
    assert normalise_text("naïve — Ünïcode") == "na ve n code"
    assert normalise_text("") == "" and normalise_text("!!!") == ""
    with pytest.raises(TypeError):
        normalise_text(b"bytes")


@given(st.text(alphabet=TEXT8_ALPHABET, max_size=300))
def test_encode_decode_round_trip(text):
    codes = encode_text(text)
    assert codes.dtype == np.uint8 and codes.shape == (len(text),)
    assert codes.max(initial=0) <= 26
    assert decode_text(codes) == text
    assert decode_text(codes.tolist()) == text
    assert decode_text(torch.from_numpy(codes).long()) == text


@given(hnp.arrays(np.int64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=12), elements=st.integers(0, 26)))
def test_rows_round_trip(codes):
    rows = decode_rows(codes)
    assert len(rows) == codes.shape[0] and all(len(row) == codes.shape[1] for row in rows)
    assert [encode_text(row).tolist() for row in rows] == codes.tolist()
    assert rows == [decode_text(row) for row in codes]


def test_encode_decode_codes_and_errors():
    assert encode_text(" az").tolist() == [0, 1, 26]
    assert decode_text(np.array([8, 9, 0, 26], dtype=np.int64)) == "hi z"
    with pytest.raises(ValueError, match=r"'A' at position 2"):
        encode_text("abA")
    with pytest.raises(ValueError, match="position 1"):
        encode_text("aé")
    with pytest.raises(ValueError, match="position 0.*normalise_text"):
        encode_text("?")
    with pytest.raises(TypeError, match="expects str"):
        encode_text(b"ab")
    with pytest.raises(ValueError, match="0..26"):
        decode_text([0, 27])
    with pytest.raises(ValueError, match="0..26"):
        decode_text([-1])
    with pytest.raises(ValueError, match="integer"):
        decode_text(np.array([1.0]))
    with pytest.raises(ValueError, match="1-D"):
        decode_text(np.zeros((2, 2), dtype=np.int64))
    assert decode_text([]) == ""
    with pytest.raises(ValueError, match="decode_rows expects a 2-D array"):
        decode_rows([1, 2])
    with pytest.raises(ValueError, match="0..26"):
        decode_rows([[1, 27]])


def test_first_foreign_byte():
    assert first_foreign_byte(b"hello world") is None and first_foreign_byte(b"") is None
    assert first_foreign_byte(b"abc Def") == 4
    assert first_foreign_byte(b"ab\n") == 2


def test_the_codec_imports_nothing_heavy():
    import ast
    import pathlib

    tree = ast.parse(pathlib.Path(text_codec.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "re", "numpy"}
