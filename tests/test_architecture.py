"""The import rules of ``docs/architecture.rst``, checked on the source.

Every module of ``pyro_bfn`` (and of ``models/``, installed as ``pyro_bfn.models``) is read with
:mod:`ast`; every import it makes of the package itself (at module level or inside a function,
absolute or relative) is resolved to a *room*: the first name below ``pyro_bfn`` (``bfn``,
``distributions``, ``training``, ...). :data:`ALLOWED` says which rooms each room may import;
it is the table of the architecture page, and the test checks that the page and the table name
the same rooms.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pyro_bfn"
BACKBONES = ROOT / "models"  # installed as pyro_bfn.models

#: room -> the rooms it may import (besides itself). The probabilistic core
#: (distributions, schedules, data types) imports no network, training or data code; the
#: backbones import nothing of pyro_bfn; everything above the BFN module is free to use what is
#: below it, and nothing below imports what is above.
ALLOWED = {
    "checks": set(),
    "distributions": {"checks"},
    "schedules": {"checks"},
    "data_types": {"checks", "distributions", "schedules"},
    "sampling": {"checks", "data_types", "distributions", "schedules"},
    "models": set(),
    "bfn": {"checks", "data_types", "distributions", "models", "sampling", "schedules"},
    "evaluation": {"bfn", "checks", "data_types", "distributions", "sampling", "schedules"},
    "infer": {"bfn", "checks", "data_types", "distributions", "sampling", "schedules"},
    "text_codec": {"checks"},
    "datasets": {"checks", "text_codec"},
    "metrics": {"checks", "text_codec"},
    "plotting": {"checks", "text_codec"},
    "zoo": {"bfn", "checks", "data_types", "datasets", "distributions", "models", "schedules", "text_codec"},
    "user_data": {"checks", "data_types", "zoo"},
    "training": {
        "bfn", "checks", "data_types", "datasets", "distributions", "evaluation", "models",
        "plotting", "sampling", "schedules", "user_data", "zoo",
    },
    "pretrained": {"bfn", "checks", "training", "user_data", "zoo"},
    "convert": {"bfn", "data_types", "models", "pretrained", "training", "zoo"},
    "cli": {
        "bfn", "checks", "convert", "datasets", "evaluation", "models", "plotting", "pretrained", "sampling", "training",
        "user_data", "zoo", "text_codec", "__init__",
    },
    "__main__": {"cli"},
    "__init__": None,  # the top-level API re-exports from every room
}


def _source_files():
    files = [(path, ("pyro_bfn",) + path.relative_to(PACKAGE).with_suffix("").parts) for path in PACKAGE.rglob("*.py")]
    files += [(path, ("pyro_bfn", "models") + path.relative_to(BACKBONES).with_suffix("").parts) for path in BACKBONES.rglob("*.py")]
    return files


def _module_name(parts: tuple) -> tuple:
    """The dotted module of a file: ``pkg/__init__.py`` is ``pkg``."""
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imports(path: Path, parts: tuple):
    """The pyro_bfn modules that ``path`` imports, as tuples of names."""
    module = _module_name(parts)
    package = module if parts[-1] == "__init__" else module[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [tuple(alias.name.split(".")) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = base + (tuple(node.module.split(".")) if node.module else ())
            else:
                target = tuple(node.module.split("."))
            if node.module is None:  # "from .. import zoo": the names are modules
                found += [target + (alias.name,) for alias in node.names]
            else:
                found.append(target)
    return [name for name in found if name[:1] == ("pyro_bfn",)]


def _room(module: tuple) -> str:
    return module[1] if len(module) > 1 else "__init__"


SOURCES = _source_files()


def test_every_room_has_a_rule():
    rooms = {_room(_module_name(parts)) for _, parts in SOURCES}
    assert rooms <= set(ALLOWED), f"rooms without an import rule: {sorted(rooms - set(ALLOWED))}"


@pytest.mark.parametrize("path, parts", SOURCES, ids=[str(p.relative_to(ROOT)) for p, _ in SOURCES])
def test_imports_follow_the_rules(path, parts):
    room = _room(_module_name(parts))
    allowed = ALLOWED[room]
    for target in _imports(path, parts):
        target_room = _room(target)
        if target_room == room:
            continue
        if allowed is not None:
            assert target_room in allowed, f"{path.relative_to(ROOT)} ({room}) imports {'.'.join(target)} ({target_room})"
        if target_room == "models":
            # the other rooms use the backbones' public API, not their modules
            assert len(target) == 2, f"{path.relative_to(ROOT)} reaches into {'.'.join(target)}: import from pyro_bfn.models"


def test_core_and_backbones_are_separate():
    """The two rules DESIGN.md states, spelled out on their own."""
    for path, parts in SOURCES:
        room = _room(_module_name(parts))
        targets = {_room(t) for t in _imports(path, parts)}
        if room == "distributions":
            assert targets <= {"distributions", "checks"}, f"{path}: the core imports {targets}"
        if room == "models":
            assert all(t[:2] == ("pyro_bfn", "models") for t in _imports(path, parts)), f"{path} imports pyro_bfn"


def test_the_architecture_page_names_every_room():
    page = (ROOT / "docs" / "architecture.rst").read_text()
    rooms = {room for room in ALLOWED if room not in ("__init__", "__main__")}
    missing = sorted(room for room in rooms if f"``{room}``" not in page)
    assert not missing, f"docs/architecture.rst does not describe: {missing}"


def test_the_rule_catches_a_violation(tmp_path):
    """The reader is not blind: a core module importing a backbone is reported."""
    fake = tmp_path / "bad.py"
    fake.write_text("from ..models.layers import NULL_LABEL\nimport pyro_bfn.training\n")
    targets = _imports(fake, ("pyro_bfn", "distributions", "bad"))
    assert ("pyro_bfn", "models", "layers") in targets and ("pyro_bfn", "training") in targets
