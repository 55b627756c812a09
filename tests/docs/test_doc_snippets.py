"""Every example script of the documentation (docs/snippets/*.py) runs, prints, and passes its asserts.

The pages include these files with ``literalinclude``, so what the site shows is what this test runs.
Each snippet is executed with :func:`runpy.run_path` as ``__main__``; global state a snippet may
change (default dtype, random number generators, Pyro's parameter store, the working directory)
is restored afterwards.
"""

from __future__ import annotations

import os
import pathlib
import runpy

import pyro
import pytest
import torch

SNIPPETS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "snippets"
SCRIPTS = sorted(SNIPPETS.glob("*.py"))


def test_snippets_exist():
    assert SCRIPTS, f"no snippets found in {SNIPPETS}"


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_snippet_runs(path, capsys, tmp_path):
    lines = path.read_text().splitlines()
    # the pages include each file from line 3 on: line 1 is a one-line docstring, line 2 is blank
    assert lines[0].startswith('"""') and lines[0].endswith('"""') and len(lines[0]) > 6, path.name
    assert lines[1] == "", path.name
    assert any(line.lstrip().startswith("assert ") for line in lines), f"{path.name} checks nothing"

    dtype = torch.get_default_dtype()
    cwd = os.getcwd()
    os.chdir(tmp_path)  # anything a snippet writes lands in a temporary directory
    try:
        with torch.random.fork_rng(devices=[]):
            pyro.clear_param_store()
            runpy.run_path(str(path), run_name="__main__")
    finally:
        os.chdir(cwd)
        torch.set_default_dtype(dtype)
        pyro.clear_param_store()
    output = capsys.readouterr().out
    assert output.strip(), f"{path.name} printed nothing"
    assert "nan" not in output.lower().split(), f"{path.name} printed NaN:\n{output}"
