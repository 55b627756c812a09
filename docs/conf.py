"""Sphinx configuration for the pyro-bfn documentation (built in CI with -W)."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "pyro-bfn"
author = "pyro-bfn developers"
copyright = "2026, pyro-bfn developers"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "description"
nitpicky = False
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = "pyro-bfn"
