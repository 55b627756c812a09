"""The ``pyro-bfn data`` commands (:mod:`pyro_bfn.datasets.cli`), through the main command line."""

import argparse

import pytest

from pyro_bfn.datasets.cli import add_data_parser


def _parser():
    parser = argparse.ArgumentParser(prog="pyro-bfn")
    add_data_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_parses(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["data", "--help"])
    out = capsys.readouterr().out
    assert "build-corpus" in out and "fetch-fashion-mnist" in out and "check" in out
    args = _parser().parse_args(["data", "build-corpus", "--sources", "bible,fortunes", "--out", "x.txt"])
    assert args.sources == ("bible", "fortunes") and args.out == "x.txt" and callable(args.func)
    assert _parser().parse_args(["data", "build-corpus"]).sources[0] == "gcide"  # all sources by default
    assert _parser().parse_args(["data", "fetch-fashion-mnist", "--root", "d"]).root == "d"


def test_unknown_corpus_source_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(["data", "build-corpus", "--sources", "bible,wikipedia"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown corpus sources ['wikipedia']" in err and "shakespeare" in err


def test_data_check_through_the_main_command_line(tmp_path, monkeypatch, capsys):
    """``pyro-bfn data check``: one line per dataset; status 1 when one is missing (here the
    English corpus, with $PYRO_BFN_DATA an empty directory), and the line says how to build it."""
    from pyro_bfn.cli import main

    monkeypatch.setenv("PYRO_BFN_DATA", str(tmp_path))
    status = main(["data", "check"])
    lines = capsys.readouterr().out.splitlines()
    assert status == 1
    assert [line.split(":")[0] for line in lines] == ["mnist", "fashion-mnist", "natural-image patches", "english corpus"]
    assert lines[-1].startswith("english corpus: MISSING OR BAD") and "pyro-bfn data build-corpus" in lines[-1]
