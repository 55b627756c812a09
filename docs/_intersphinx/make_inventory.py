"""Write the intersphinx inventories of ``docs/_intersphinx/`` (the docs build has no network).

The docs link to Pyro, PyTorch, NumPy and Python through :mod:`sphinx.ext.intersphinx`, which
reads each project's ``objects.inv``. The build machines reach only package registries, so the
inventories are committed here; ``README.rst`` beside this file says where each one comes from.
This script writes three of them (Python's is copied from a Debian package, see the README):

``pyro``
    Pyro's own inventory, made by building Pyro's documentation sources (``docs/source`` of a
    Pyro checkout) with this machine's Sphinx, plus *aliases*: Pyro's pages document an object
    under its defining module (``pyro.infer.svi.SVI``), while code and docs write the name that
    Pyro re-exports (``pyro.infer.SVI``). For every public name of ``pyro``,
    ``pyro.distributions``, ``pyro.infer`` and the other packages in :data:`PYRO_PACKAGES`
    whose defining object is in the built inventory, the alias (and its members) is added with
    the same address.

``torch``
    Generated: the PyTorch documentation cannot be built here, so every entry comes from the
    table :data:`TORCH_PAGES` (the page that documents the object in PyTorch's
    ``docs/source``, checked by hand against those sources) and from one rule checked the same
    way: ``distributions.md`` documents each distribution class under its defining module
    (``distributions.html#torch.distributions.normal.Normal``), with its members. Every object is
    looked up in the installed torch, so a renamed or removed object is an error, not a
    dead link.

``numpy``
    Generated from :data:`NUMPY_PAGES` in the same way (checked against NumPy's
    ``doc/source``).

Run from the repository root::

    python docs/_intersphinx/make_inventory.py pyro --pyro-docs PYRO_CHECKOUT/docs/source
    python docs/_intersphinx/make_inventory.py torch
    python docs/_intersphinx/make_inventory.py numpy
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import posixpath
import subprocess
import sys
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))

# The packages whose re-exported names get an alias in the Pyro inventory.
PYRO_PACKAGES = (
    "pyro",
    "pyro.distributions",
    "pyro.infer",
    "pyro.infer.autoguide",
    "pyro.infer.mcmc",
    "pyro.infer.reparam",
    "pyro.nn",
    "pyro.optim",
    "pyro.poutine",
)

# Sphinx extensions that Pyro's docs/source/conf.py loads and that need no network or theme.
PYRO_EXTENSIONS = (
    "sphinx.ext.todo",
    "sphinx.ext.mathjax",
    "sphinx.ext.ifconfig",
    "sphinx.ext.graphviz",
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.napoleon",
)

# PyTorch: object -> (roles, page#anchor), as PyTorch's docs/source documents them. "generated/"
# pages come from the autosummary lists of torch.rst, nn.rst, nn.functional.rst and optim.md;
# an anchor other than the name is the defining module PyTorch documents the object under.
# torch.autocast and torch.inference_mode are classes used as functions (context managers), so
# they are also entered as functions, which is how ``:func:`` references find them.
TORCH_PAGES = {
    "torch.Tensor": (("class",), "tensors.html#torch.Tensor"),
    "torch.device": (("class",), "tensor_attributes.html#torch.device"),
    "torch.dtype": (("class",), "tensor_attributes.html#torch.dtype"),
    "torch.Generator": (("class",), "generated/torch.Generator.html#torch.Generator"),
    "torch.exp": (("function",), "generated/torch.exp.html#torch.exp"),
    "torch.save": (("function",), "generated/torch.save.html#torch.save"),
    "torch.load": (("function",), "generated/torch.load.html#torch.load"),
    "torch.compile": (("function",), "generated/torch.compile.html#torch.compile"),
    "torch.manual_seed": (("function",), "generated/torch.manual_seed.html#torch.manual_seed"),
    "torch.no_grad": (("class",), "generated/torch.no_grad.html#torch.no_grad"),
    "torch.inference_mode": (
        ("class", "function"),
        "generated/torch.autograd.grad_mode.inference_mode.html#torch.autograd.grad_mode.inference_mode",
    ),
    "torch.autocast": (("class", "function"), "amp.html#torch.autocast"),
    "torch.random.fork_rng": (("function",), "random.html#torch.random.fork_rng"),
    "torch.special.ndtr": (("function",), "special.html#torch.special.ndtr"),
    "torch.special.erfcx": (("function",), "special.html#torch.special.erfcx"),
    "torch.nn.Module": (("class",), "generated/torch.nn.Module.html#torch.nn.Module"),
    "torch.nn.GroupNorm": (("class",), "generated/torch.nn.GroupNorm.html#torch.nn.GroupNorm"),
    "torch.nn.parallel.DistributedDataParallel": (
        ("class",),
        "generated/torch.nn.parallel.DistributedDataParallel.html#torch.nn.parallel.DistributedDataParallel",
    ),
    "torch.nn.functional.one_hot": (
        ("function",),
        "generated/torch.nn.functional.one_hot.html#torch.nn.functional.one_hot",
    ),
    "torch.nn.utils.clip_grad_norm_": (
        ("function",),
        "generated/torch.nn.utils.clip_grad_norm_.html#torch.nn.utils.clip_grad_norm_",
    ),
    "torch.optim.Optimizer": (("class",), "optim.html#torch.optim.Optimizer"),
    "torch.optim.AdamW": (("class",), "generated/torch.optim.AdamW.html#torch.optim.AdamW"),
    "torch.utils.tensorboard.SummaryWriter": (
        ("class",),
        "tensorboard.html#torch.utils.tensorboard.writer.SummaryWriter",
    ),
    "torch.distributions.kl.kl_divergence": (("function",), "distributions.html#torch.distributions.kl.kl_divergence"),
    "torch.distributions.kl_divergence": (("function",), "distributions.html#torch.distributions.kl.kl_divergence"),
    "torch.distributions.kl.register_kl": (("function",), "distributions.html#torch.distributions.kl.register_kl"),
    "torch.distributions.register_kl": (("function",), "distributions.html#torch.distributions.kl.register_kl"),
}
# data.md: one autoclass/autofunction each, under torch.utils.data.
TORCH_DATA = ("DataLoader", "Dataset", "IterableDataset", "TensorDataset", "StackDataset", "ConcatDataset",
              "ChainDataset", "Subset", "Sampler", "default_collate", "default_convert", "get_worker_info",
              "random_split")
# Methods documented on their class's page (the class templates list the members).
TORCH_METHODS = {
    "torch.nn.Module": ("compile", "forward", "load_state_dict", "state_dict", "to", "train", "eval"),
}
TORCH_MODULES = {
    "torch": "torch.html#module-torch",
    "torch.distributed": "distributed.html#module-torch.distributed",
    "torch.distributions": "distributions.html#module-torch.distributions",
    "torch.nn": "nn.html#module-torch.nn",
    "torch.amp": "amp.html#module-torch.amp",
}

NUMPY_PAGES = {
    "numpy.ndarray": (("class",), "reference/generated/numpy.ndarray.html#numpy.ndarray"),
    "numpy.random.SeedSequence": (
        ("class",),
        "reference/random/bit_generators/generated/numpy.random.SeedSequence.html#numpy.random.SeedSequence",
    ),
}


def _resolve(name: str):
    """The object called ``name`` in the installed packages (an error names what is missing)."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name and not module.startswith(error.name):  # module found, a dependency not
                print(f"note: {name} not checked (importing it needs {error.name}, not installed)")
                return None
            continue
        for attribute in parts[cut:]:
            if not hasattr(obj, attribute):
                raise SystemExit(f"make_inventory: {name} does not exist in the installed package")
            obj = getattr(obj, attribute)
        return obj
    raise SystemExit(f"make_inventory: cannot import {name}")


def write_inventory(path: str, project: str, version: str, entries) -> None:
    """Write a Sphinx inventory (format version 2) of ``entries``: (name, "py:role", uri)."""
    lines = sorted({f"{name} {role} 1 {uri} -" for name, role, uri in entries})
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    with open(path, "wb") as handle:
        handle.write(header.encode("utf-8"))
        handle.write(zlib.compress(("\n".join(lines) + "\n").encode("utf-8"), 9))
    print(f"{path}: {len(lines)} entries")


def read_inventory(path: str) -> dict:
    """``{"py:class": {name: relative uri}, ...}`` of an inventory file."""
    from sphinx.util.inventory import InventoryFile

    with open(path, "rb") as handle:
        data = InventoryFile.load(handle, "", posixpath.join)
    data = getattr(data, "data", data)
    return {role: {name: item[2] if isinstance(item, tuple) else item.uri for name, item in items.items()}
            for role, items in data.items()}


def _public_members(cls):
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, property):
            yield name, "py:property"
        elif inspect.isfunction(value) or isinstance(value, (classmethod, staticmethod)):
            yield name, "py:method"


def pyro_inventory(pyro_docs: str) -> None:
    import pyro

    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "sphinx", "-q", "-b", "html", "-C",
                   "-D", "extensions=" + ",".join(PYRO_EXTENSIONS), "-D", "master_doc=index",
                   "-D", "project=Pyro", "-D", f"version={pyro.__version__}",
                   "-D", f"release={pyro.__version__}", "-D", "autodoc_inherit_docstrings=0",
                   pyro_docs, out]
        subprocess.run(command, check=True)  # warnings (e.g. contrib modules needing funsor) are expected
        built = read_inventory(os.path.join(out, "objects.inv"))
    entries = [(name, role, uri) for role, items in built.items() for name, uri in items.items()]
    by_name = {name: (role, uri) for role, items in built.items() for name, uri in items.items()
               if role.startswith("py:")}
    aliases = 0
    for package_name in PYRO_PACKAGES:
        package = importlib.import_module(package_name)
        for name in getattr(package, "__all__", ()):
            alias = f"{package_name}.{name}"
            obj = getattr(package, name, None)
            module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
            if alias in by_name or not module or not qualname:
                continue
            target = f"{module}.{qualname}"
            if target not in by_name:
                continue
            for full, (role, uri) in by_name.items():
                if full == target or full.startswith(target + "."):
                    entries.append((alias + full[len(target):], role, uri))
                    aliases += 1
    print(f"pyro: {aliases} alias entries")
    write_inventory(os.path.join(HERE, "pyro.inv"), "Pyro", pyro.__version__, entries)


def torch_inventory() -> None:
    import torch
    import torch.distributions

    entries = []
    for name, (roles, uri) in TORCH_PAGES.items():
        _resolve(name)
        entries += [(name, "py:" + role, uri) for role in roles]
    for short in TORCH_DATA:
        name = f"torch.utils.data.{short}"
        role = "py:class" if inspect.isclass(_resolve(name)) else "py:function"
        entries.append((name, role, f"data.html#{name}"))
    for name, uri in TORCH_MODULES.items():
        _resolve(name)
        entries.append((name, "py:module", uri))
    for name, methods in TORCH_METHODS.items():
        cls = _resolve(name)
        page = TORCH_PAGES[name][1].split("#")[0]
        for method in methods:
            if not hasattr(cls, method):
                raise SystemExit(f"make_inventory: {name}.{method} does not exist in the installed torch")
            entries.append((f"{name}.{method}", "py:method", f"{page}#{name}.{method}"))
    # distributions.md: one autoclass per distribution, under its defining module, with members
    for name in torch.distributions.__all__:
        cls = getattr(torch.distributions, name)
        if not (inspect.isclass(cls) and issubclass(cls, torch.distributions.Distribution)):
            continue
        anchor = f"{cls.__module__}.{cls.__qualname__}"
        for alias in {f"torch.distributions.{name}", anchor}:
            entries.append((alias, "py:class", f"distributions.html#{anchor}"))
            for member, role in _public_members(cls):
                entries.append((f"{alias}.{member}", role, f"distributions.html#{anchor}.{member}"))
    write_inventory(os.path.join(HERE, "torch.inv"), "PyTorch", torch.__version__.split("+")[0], entries)


def numpy_inventory() -> None:
    import numpy

    entries = []
    for name, (roles, uri) in NUMPY_PAGES.items():
        _resolve(name)
        entries += [(name, "py:" + role, uri) for role in roles]
    write_inventory(os.path.join(HERE, "numpy.inv"), "NumPy", numpy.__version__, entries)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("project", choices=("pyro", "torch", "numpy"))
    parser.add_argument("--pyro-docs", help="docs/source of a Pyro checkout (for pyro)")
    args = parser.parse_args(argv)
    if args.project == "pyro":
        if not args.pyro_docs:
            parser.error("pyro needs --pyro-docs PYRO_CHECKOUT/docs/source")
        pyro_inventory(args.pyro_docs)
    elif args.project == "torch":
        torch_inventory()
    else:
        numpy_inventory()


if __name__ == "__main__":
    main()
