"""Sphinx configuration for the pyro-bfn documentation (built in CI with -W: any warning fails)."""

import glob
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

project = "pyro-bfn"
author = "pyro-bfn developers"
copyright = "2026, pyro-bfn developers"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    # MathJax 3 from the Python package (copied into _static/mathjax/ of the built site, and
    # mathjax_path set to it): the pages render their math offline, with no CDN.
    "sphinx-mathjax-offline",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"
nitpicky = False
exclude_patterns = ["_build", "_generated", "_intersphinx", "snippets"]
html_theme = "furo"
html_title = "pyro-bfn"
html_static_path = []
if os.path.isdir(os.path.join(HERE, "_static")):
    html_static_path = ["_static"]

# Links to Pyro, PyTorch, NumPy and Python. The build has no network, so every inventory is a
# committed file of docs/_intersphinx/ (README.rst there: where each comes from, how to renew it).
INTERSPHINX = os.path.join(HERE, "_intersphinx")
intersphinx_mapping = {
    "python": ("https://docs.python.org/3.11/", os.path.join(INTERSPHINX, "python.inv")),
    "pyro": ("https://docs.pyro.ai/en/stable/", os.path.join(INTERSPHINX, "pyro.inv")),
    "torch": ("https://docs.pytorch.org/docs/stable/", os.path.join(INTERSPHINX, "torch.inv")),
    "numpy": ("https://numpy.org/doc/stable/", os.path.join(INTERSPHINX, "numpy.inv")),
}

# MathJax: a few macros used throughout the pages.
mathjax3_config = {
    "tex": {
        "macros": {
            "KL": r"D_{\mathrm{KL}}",
            "softmax": r"\operatorname{softmax}",
            "logsumexp": r"\operatorname{logsumexp}",
        }
    }
}


# ---------------------------------------------------------------------------------------------
# The measured KL accuracy table: benchmarks/results/kl_accuracy.md (rewritten by the benchmark
# script) is converted to reST on every build, so the KL page always shows the committed file.
# ---------------------------------------------------------------------------------------------
KL_ACCURACY_MD = os.path.join(ROOT, "benchmarks", "results", "kl_accuracy.md")
GENERATED = os.path.join(HERE, "_generated")


def _escape(text: str) -> str:
    """Markdown inline text -> reST: `code` becomes ``code``, every other reST markup
    character is backslash-escaped so that it renders literally."""
    parts = re.split(r"(``[^`]+``|`[^`]+`)", text.strip())
    out = []
    for part in parts:
        if part.startswith("``") and part.endswith("``") and len(part) > 4:
            out.append("``" + part[2:-2] + "``")
        elif part.startswith("`") and part.endswith("`") and len(part) > 2:
            out.append("``" + part[1:-1] + "``")
        else:
            out.append(re.sub(r"([\\*`_|\[\]<>])", r"\\\1", part))
    return "".join(out)


def _table_row(line: str):
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def markdown_tables_to_rst(markdown: str) -> str:
    """Convert the simple Markdown the benchmark scripts write (headings, paragraphs, pipe
    tables) into reST (rubrics, paragraphs, list-tables)."""
    lines = markdown.splitlines()
    out = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            i += 1
            continue
        if stripped.startswith("#"):
            out += [".. rubric:: " + _escape(stripped.lstrip("#")), ""]
            i += 1
            continue
        if stripped.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                row = _table_row(lines[i])
                if not all(re.fullmatch(r":?-+:?", cell) for cell in row):
                    rows.append(row)
                i += 1
            width = max(len(row) for row in rows)
            out += [".. list-table::", "   :header-rows: 1", "   :class: kl-accuracy", ""]
            for row in rows:
                row = row + [""] * (width - len(row))
                for j, cell in enumerate(row):
                    bullet = "   * - " if j == 0 else "     - "
                    out.append((bullet + _escape(cell)).rstrip())
            out.append("")
            continue
        if re.match(r"[-*+] ", stripped):
            while i < len(lines) and re.match(r"[-*+] ", lines[i].strip()):
                out.append("* " + _escape(lines[i].strip()[2:]))
                i += 1
            out.append("")
            continue
        paragraph = []
        while (
            i < len(lines)
            and lines[i].strip()
            and not lines[i].strip().startswith(("#", "|"))
            and not re.match(r"[-*+] ", lines[i].strip())
        ):
            paragraph.append(_escape(lines[i]))
            i += 1
        out += [" ".join(paragraph), ""]
    return "\n".join(out) + "\n"


def _write_if_changed(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            if handle.read() == text:
                return
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def _generate_kl_accuracy() -> None:
    if os.path.exists(KL_ACCURACY_MD):
        with open(KL_ACCURACY_MD, encoding="utf-8") as handle:
            text = markdown_tables_to_rst(handle.read())
    else:
        text = ".. note:: ``benchmarks/results/kl_accuracy.md`` is not present in this checkout.\n"
    _write_if_changed(os.path.join(GENERATED, "kl_accuracy.inc"), text)


# ---------------------------------------------------------------------------------------------
# The command line's own --help texts, captured at build time so that the training page always
# shows the flags of the committed pyro_bfn/cli.py.
# ---------------------------------------------------------------------------------------------
CLI_COMMANDS = {
    "main": ["--help"],
    "train": ["train", "--help"],
    "evaluate": ["evaluate", "--help"],
    "sample": ["sample", "--help"],
    "list": ["list"],
    "data": ["data", "--help"],
    "export": ["export", "--help"],
}


def _generate_cli_help() -> None:
    import subprocess

    env = dict(os.environ, COLUMNS="96", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for name, command in CLI_COMMANDS.items():
        try:
            result = subprocess.run(
                [sys.executable, "-m", "pyro_bfn.cli", *command],
                capture_output=True, text=True, timeout=120, env=env, cwd=ROOT,
            )
            text = result.stdout if result.returncode == 0 and result.stdout.strip() else ""
        except (OSError, subprocess.SubprocessError):
            text = ""
        if text:
            body = ".. code-block:: text\n\n" + "".join(
                "   " + line + "\n" if line.strip() else "\n" for line in text.rstrip().splitlines()
            )
        else:
            body = ".. note:: ``pyro-bfn {}`` is not available in this checkout.\n".format(" ".join(command))
        _write_if_changed(os.path.join(GENERATED, f"cli_{name}.inc"), body)


# ---------------------------------------------------------------------------------------------
# Figures of the demo run (docs/_static/demo/*.png, produced separately): listed at build time,
# so that a figure is shown when it is there and a missing one is never a broken reference.
# ---------------------------------------------------------------------------------------------
DEMO_CAPTIONS = {
    "samples": "Samples of the demo model (EMA weights; ``make demo`` draws them with 100 sampler steps).",
    "curves": "The demo run per logged step: training loss, validation bound (EMA weights), gradient "
    "norm, learning rate and throughput.",
}


def _generate_demo_figures() -> None:
    order = list(DEMO_CAPTIONS)
    figures = sorted(
        glob.glob(os.path.join(HERE, "_static", "demo", "*.png")),
        key=lambda path: (
            next((i for i, key in enumerate(order) if key in os.path.basename(path).lower()), len(order)),
            path,
        ),
    )
    if not figures:
        text = (
            ".. note:: The demo's figures are not part of this build; ``make demo`` writes them "
            "into ``runs/mnist_demo/``.\n"
        )
    else:
        parts = []
        for path in figures:
            name = os.path.splitext(os.path.basename(path))[0]
            caption = next(
                (text for key, text in DEMO_CAPTIONS.items() if key in name.lower()),
                "``" + os.path.basename(path) + "``",
            )
            parts.append(
                f".. figure:: /_static/demo/{os.path.basename(path)}\n"
                f"   :alt: {name}\n"
                f"   :width: {'60%' if 'samples' in name.lower() else '90%'}\n\n"
                f"   {caption}\n"
            )
        text = "\n".join(parts)
    _write_if_changed(os.path.join(GENERATED, "demo_figures.inc"), text)


def _generate_demo_results() -> None:
    """A table of the committed demo run (docs/_static/demo/test_bound.json, summary.json)."""
    import json

    demo = os.path.join(HERE, "_static", "demo")
    try:
        with open(os.path.join(demo, "test_bound.json"), encoding="utf-8") as handle:
            bound = json.load(handle)
    except (OSError, ValueError):
        _write_if_changed(os.path.join(GENERATED, "demo_results.inc"), "")
        return
    try:
        with open(os.path.join(demo, "summary.json"), encoding="utf-8") as handle:
            summary = json.load(handle)
    except (OSError, ValueError):
        summary = {}
    steps = "continuous time" if bound.get("n_steps") is None else f"n = {bound['n_steps']}"
    rows = [
        ("dataset, split", f"``{bound.get('dataset', '')}``, {bound.get('split', '')}"),
        (
            "test bound :math:`L + L^r`",
            f"**{bound['nats']:.2f} ± {bound['nats_stderr']:.2f}** nats/example "
            f"(flow {bound['flow_nats']:.2f} + reconstruction {bound['reconstruction_nats']:.2f}), {steps}",
        ),
        (
            bound.get("bits_unit", "bits/dim"),
            f"{bound['bits_per_dim']:.4f} ± {bound['bits_per_dim_stderr']:.4f}",
        ),
        (
            "protocol",
            f"{bound['repeats']} passes over {bound['num_examples']:,} examples, standard error over "
            f"{bound.get('stderr_kind', '')}, {str(bound.get('weights', 'ema')).replace('ema', 'EMA')} weights",
        ),
    ]
    if summary:
        rows += [
            ("parameters", f"{summary.get('num_parameters', 0):,}"),
            (
                "training",
                f"{summary.get('step', 0):,} updates, {summary.get('examples', 0):,} examples, "
                f"{summary.get('train_wall_seconds', 0) / 60:.1f} min at "
                f"{summary.get('examples_per_second', 0):.1f} examples/s "
                f"({summary.get('threads', '?')} threads, autocast {summary.get('autocast', 'none')}); "
                f"stopped by {summary.get('stopped_by', '?')}",
            ),
        ]
    lines = [
        "The committed demo run (``docs/_static/demo/``; the paper's 24.8M-parameter network reaches",
        "77.87 nats/image after about 150k updates of 512 images on a GPU):",
        "",
        ".. list-table::",
        "   :widths: 25 75",
        "",
    ]
    for key, value in rows:
        lines += [f"   * - {key}", f"     - {value}"]
    _write_if_changed(os.path.join(GENERATED, "demo_results.inc"), "\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------
# The Examples section: one page per script of docs/examples/, generated at every build from the
# script itself (its docstring says what it shows and how to run it; the page adds the tutorial
# that walks through it, when docs/tutorials/ has one of the same name, and the code). A new
# script gets its page without anyone editing the docs; tests/docs/test_examples.py runs every
# script. The pages are docs/examples/<script>.rst (ignored by git, see docs/.gitignore).
# ---------------------------------------------------------------------------------------------
EXAMPLES = os.path.join(HERE, "examples")
_EXAMPLE_MARKER = ".. Generated by docs/conf.py from "


def example_page(path: str) -> str:
    """The reST page of the example script ``path``."""
    import ast

    name = os.path.splitext(os.path.basename(path))[0]
    with open(path, encoding="utf-8") as handle:
        module = ast.parse(handle.read(), filename=path)
    docstring = ast.get_docstring(module)
    if not docstring:
        raise ValueError(f"{path}: an example script needs a module docstring (what it shows, how to run it)")
    code_start = module.body[0].end_lineno + 1 if isinstance(module.body[0], ast.Expr) else 1
    first, _, rest = docstring.partition("\n")
    title = first.split(": ")[0].rstrip(".")
    body = rest.strip() if title == first.rstrip(".") else docstring  # no sentence said twice
    lines = [
        f"{_EXAMPLE_MARKER}docs/examples/{name}.py at every build: edit the script.",
        "",
        title,
        "=" * len(title),
        "",
        body,
        "",
    ]
    if os.path.exists(os.path.join(HERE, "tutorials", name + ".rst")):
        lines += [f"The tutorial :doc:`/tutorials/{name}` walks through it and shows its output.", ""]
    lines += [
        f"The test suite runs it at small scale (``--smoke``, ``tests/docs/test_examples.py``).",
        "",
        f".. rubric:: ``docs/examples/{name}.py``",
        "",
        f".. literalinclude:: {name}.py",
        "   :language: python",
        f"   :lines: {code_start}-",
        "",
    ]
    return "\n".join(lines)


def _generate_example_pages() -> None:
    scripts = sorted(glob.glob(os.path.join(EXAMPLES, "*.py")))
    for script in scripts:
        _write_if_changed(os.path.splitext(script)[0] + ".rst", example_page(script))
    for page in glob.glob(os.path.join(EXAMPLES, "*.rst")):  # the page of a removed script
        with open(page, encoding="utf-8") as handle:
            generated = handle.read().startswith(_EXAMPLE_MARKER)
        if generated and not os.path.exists(os.path.splitext(page)[0] + ".py"):
            os.remove(page)


# ---------------------------------------------------------------------------------------------
# Tutorials and examples are written separately (docs/tutorials/, docs/examples/). The index
# lists them with a glob toctree; when a directory holds no page yet, its toctree block is
# dropped before parsing (a glob that matches nothing would be a warning, i.e. a CI failure).
# ---------------------------------------------------------------------------------------------
_OPTIONAL_TOCTREES = {"tutorials": "TUTORIALS", "examples": "EXAMPLES"}


def _has_pages(directory: str) -> bool:
    suffixes = (".rst",)
    return any(
        path.endswith(suffixes) for path in glob.glob(os.path.join(HERE, directory, "**", "*"), recursive=True)
    )


def _drop_empty_optional_toctrees(app, docname, source):
    if docname != "index":
        return
    for directory, marker in _OPTIONAL_TOCTREES.items():
        if not _has_pages(directory):
            source[0] = re.sub(
                rf"\.\. {marker} START.*?\.\. {marker} END\n", "", source[0], flags=re.DOTALL
            )


def setup(app):
    # The generated includes and pages are written when Sphinx loads this file, before it reads
    # any page; importing conf.py alone (tests/docs/test_docs_config.py) writes nothing.
    _generate_kl_accuracy()
    _generate_cli_help()
    _generate_demo_figures()
    _generate_demo_results()
    _generate_example_pages()
    app.connect("source-read", _drop_empty_optional_toctrees)
