"""Pieces of the English-corpus recipe (:mod:`pyro_bfn.datasets.corpus`) on tiny inputs; the
recipe itself downloads packages and is not run by the tests."""

import gzip

import pytest

from pyro_bfn import datasets as data
from pyro_bfn.datasets import corpus


def _b64(value):
    alphabet = corpus._B64
    out = ""
    while True:
        out = alphabet[value % 64] + out
        value //= 64
        if value == 0:
            return out


def test_dictd_entries_skip_database_notes(tmp_path):
    notes = "00-database-long\n   licence text that must not appear\n"
    first = "Layman \\Lay\"man\\ n. A man [1913 Webster]\n"
    second = "mat \\m[a^]t\\ n. a m[=a]t; [Obs.] [WordNet 1.5]\n"
    body = (notes + first + second).encode()
    (tmp_path / "toy.dict.dz").write_bytes(gzip.compress(body))
    spans = [("00-database-long", 0, len(notes)), ("layman", len(notes), len(first)),
             ("laymen", len(notes), len(first)), ("mat", len(notes) + len(first), len(second))]
    (tmp_path / "toy.index").write_text("".join(f"{h}\t{_b64(o)}\t{_b64(n)}\n" for h, o, n in spans))
    entries = corpus._dictd_entries(tmp_path, "toy")
    assert entries == [first, second]  # notes skipped, the shared span read once
    cleaned = [data.normalise_text(corpus._gcide_clean(e)) for e in entries]
    assert cleaned == ["layman n a man", "mat n a mat obs"]


def test_corpus_blocks_and_gutenberg():
    text = data.normalise_text("the quick brown fox jumps over the lazy dog " * 50)
    blocks = corpus._blocks(text, 64)
    assert " ".join(blocks) == text
    assert all(len(b) <= 64 and b == b.strip() for b in blocks)
    wrapped = "header licence\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\nbody text\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\nlicence"
    assert corpus._strip_gutenberg(wrapped).strip() == "body text"
    assert corpus._strip_gutenberg("plain text") == "plain text"
    with pytest.raises(ValueError, match="unknown corpus sources"):
        data.build_english_corpus(sources=("wikipedia",))


def test_recipe_packages():
    """The Debian packages of the recipe, in source order (bible-kjv prints the KJV text)."""
    assert data.ENGLISH_CORPUS_DEBS == (
        "dict-gcide", "wordnet-base", "dict-foldoc", "dict-jargon", "bible-kjv-text", "bible-kjv", "fortunes",
    )
    assert set(corpus._SOURCE_DEBS) | {"shakespeare"} == set(data.ENGLISH_CORPUS_SOURCES)
