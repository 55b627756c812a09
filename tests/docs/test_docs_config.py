"""The documentation's infrastructure, checked without building the whole site.

* Math is rendered by a MathJax served from the site itself (``_static/mathjax/``), with the
  macros of ``docs/conf.py``: no page loads a script from the network.
* The intersphinx inventories are committed files, and every ``:class:``/``:func:``/``:meth:``/
  ``:mod:`` reference to Pyro, PyTorch or NumPy in the pages and docstrings is in one of them
  (an unresolved reference renders as plain text without a warning, so only this test notices).
* Every script of ``docs/examples/`` has a generated page in the Examples section.

One small Sphinx project with the site's extensions and settings is built (a few seconds).
"""

import glob
import posixpath
import re
import runpy
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
ROOT = DOCS.parent

# References that no inventory can resolve, with the reason.
KNOWN_UNLINKED = {
    "torch.log_softmax": "PyTorch's documentation has no entry for it (only torch.nn.functional.log_softmax)",
    "torch.amp.GradScaler": "PyTorch's amp page documents torch.cuda.amp.GradScaler and torch.cpu.amp.GradScaler only",
}


@pytest.fixture(scope="module")
def conf():
    return runpy.run_path(str(DOCS / "conf.py"))


def _load_inventory(path):
    from sphinx.util.inventory import InventoryFile

    with open(path, "rb") as handle:
        data = InventoryFile.load(handle, "", posixpath.join)
    data = getattr(data, "data", data)
    return {(role, name) for role, items in data.items() for name in items}


@pytest.fixture(scope="module")
def inventories(conf):
    return {key: _load_inventory(path) for key, (_, path) in conf["intersphinx_mapping"].items()}


def test_inventories_are_committed_files(conf):
    assert {"python", "pyro", "torch", "numpy"} <= set(conf["intersphinx_mapping"])
    for url, path in conf["intersphinx_mapping"].values():
        assert url.startswith("https://") and url.endswith("/")
        assert Path(path).parent == DOCS / "_intersphinx" and Path(path).is_file(), path
    assert (DOCS / "_intersphinx" / "README.rst").is_file()


_ROLES = {"class": ("py:class",), "func": ("py:function", "py:method"), "meth": ("py:method",),
          "mod": ("py:module",)}


def _external_references():
    files = [p for p in glob.glob(str(DOCS / "**" / "*.rst"), recursive=True) if "_build" not in p]
    files += glob.glob(str(ROOT / "pyro_bfn" / "**" / "*.py"), recursive=True)
    files += glob.glob(str(ROOT / "models" / "**" / "*.py"), recursive=True)
    found = set()
    for path in files:
        text = Path(path).read_text(encoding="utf-8")
        for match in re.finditer(r":(class|func|meth|mod):`~?((?:torch|pyro|numpy)\.[\w.]+)`", text):
            found.add((match.group(1), match.group(2)))
    return found


def test_every_external_reference_is_in_an_inventory(inventories):
    references = _external_references()
    assert any(name == "pyro.distributions.TorchDistribution" for _, name in references)
    entries = set().union(*inventories.values())
    missing = sorted(
        f":{role}:`{name}`" for role, name in references
        if name not in KNOWN_UNLINKED and not any((kind, name) in entries for kind in _ROLES[role])
    )
    assert not missing, "not in docs/_intersphinx/*.inv: " + ", ".join(missing)


@pytest.fixture(scope="module")
def small_site(conf, tmp_path_factory):
    """A one-page site built with the extensions, MathJax settings and inventories of docs/conf.py."""
    from sphinx.cmd.build import build_main

    source = tmp_path_factory.mktemp("source")
    out = tmp_path_factory.mktemp("html")
    (source / "conf.py").write_text(
        "import runpy\n"
        f"_conf = runpy.run_path({str(DOCS / 'conf.py')!r})\n"
        "extensions = _conf['extensions']\n"
        "intersphinx_mapping = _conf['intersphinx_mapping']\n"
        "mathjax3_config = _conf['mathjax3_config']\n"
    )
    (source / "index.rst").write_text(
        "Page\n====\n\n"
        "The KL divergence :math:`\\KL(p \\,\\|\\, q)` of a :class:`pyro.distributions.TorchDistribution`,\n"
        "and :func:`torch.special.ndtr`, :class:`numpy.random.SeedSequence`, :class:`int`.\n"
    )
    assert build_main(["-W", "-q", "-b", "html", str(source), str(out)]) == 0
    return out


def test_math_is_served_from_the_site(small_site):
    page = (small_site / "index.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script[^>]*\ssrc=\"([^\"]+)\"", page)
    mathjax = [src for src in scripts if "mathjax" in src.lower()]
    assert mathjax and all(src.startswith("_static/mathjax/") for src in mathjax), scripts
    assert not [src for src in scripts if re.match(r"(https?:)?//", src)], scripts
    assert (small_site / mathjax[0].split("?")[0]).is_file()
    assert (small_site / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()
    assert "D_{\\\\mathrm{KL}}" in page  # the macros of mathjax3_config reach the page


def test_references_link_to_the_projects_docs(small_site):
    page = (small_site / "index.html").read_text(encoding="utf-8")
    for url in (
        "https://docs.pyro.ai/en/stable/distributions.html#pyro.distributions.TorchDistribution",
        "https://docs.pytorch.org/docs/stable/special.html#torch.special.ndtr",
        "https://numpy.org/doc/stable/reference/random/bit_generators/generated/numpy.random.SeedSequence.html"
        "#numpy.random.SeedSequence",
        "https://docs.python.org/3.11/library/functions.html#int",
    ):
        assert f'href="{url}"' in page, url


def test_every_example_script_has_a_page(conf, tmp_path):
    scripts = sorted((DOCS / "examples").glob("*.py"))
    assert scripts
    for script in scripts:
        page = conf["example_page"](str(script))
        title = page.split("\n\n")[1].splitlines()
        assert len(title) == 2 and set(title[1]) == {"="} and len(title[1]) == len(title[0])
        assert f".. literalinclude:: {script.name}" in page
    index = (DOCS / "index.rst").read_text(encoding="utf-8")
    assert re.search(r":caption: Examples\n   :glob:\n\n   examples/\*", index)
    # a new script needs nothing but its docstring
    new = tmp_path / "new_example.py"
    new.write_text('"""A new example: what it shows.\n\nRun::\n\n    python new_example.py\n"""\n\nprint(1)\n')
    page = conf["example_page"](str(new))
    assert page.splitlines()[2] == "A new example" and ":lines: 7-" in page
    new.write_text("print(1)\n")
    with pytest.raises(ValueError, match="docstring"):
        conf["example_page"](str(new))


def test_every_module_has_a_place_in_the_docs():
    """Each module of the package is documented by an ``automodule`` on some page (the API
    reference's room pages, or the narrative page of its room); a new module needs one."""
    import pkgutil

    import pyro_bfn
    import pyro_bfn.models  # the repository's models/ directory, installed as pyro_bfn.models

    modules = {"pyro_bfn", "pyro_bfn.models"}
    for package in (pyro_bfn, pyro_bfn.models):
        modules |= {info.name for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")}
    modules -= {"pyro_bfn.__main__"}
    documented = set()
    for path in glob.glob(str(DOCS / "**" / "*.rst"), recursive=True):
        if "_build" not in path:
            documented |= set(re.findall(r"^\.\. automodule:: (\S+)", Path(path).read_text(encoding="utf-8"), re.M))
    assert not sorted(modules - documented), "modules on no page of docs/: " + ", ".join(sorted(modules - documented))
