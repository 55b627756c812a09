"""The top-level API of ``pyro_bfn``: the main names re-exported from their modules, and no
import cycle."""

import subprocess
import sys

import pyro_bfn

NAMES = {
    "save_pretrained": "pyro_bfn.pretrained",
    "from_pretrained": "pyro_bfn.pretrained",
    "BFN": "pyro_bfn.bfn",
    "LossTerms": "pyro_bfn.bfn",
    "ContinuousData": "pyro_bfn.data_types",
    "DiscretisedData": "pyro_bfn.data_types",
    "DiscreteData": "pyro_bfn.data_types",
    "ContinuousSchedule": "pyro_bfn.schedules",
    "DiscreteSchedule": "pyro_bfn.schedules",
    "evaluate_bound": "pyro_bfn.evaluation",
    "BFNLikelihood": "pyro_bfn.infer",
    "bfn_model": "pyro_bfn.infer",
    "bfn_guide": "pyro_bfn.infer",
    "build_bfn": "pyro_bfn.zoo",
    "get_dataset": "pyro_bfn.zoo",
    "list_datasets": "pyro_bfn.zoo",
    "register_dataset": "pyro_bfn.zoo",
    "DatasetSpec": "pyro_bfn.zoo",
    "register_backbone": "pyro_bfn.models",
    "train": "pyro_bfn.training",
    "TrainResult": "pyro_bfn.training",
    "TrainConfig": "pyro_bfn.training",
    "Trainer": "pyro_bfn.training",
    "load_model": "pyro_bfn.training",
    "NULL_LABEL": "pyro_bfn.models",
    "get_sampler": "pyro_bfn.sampling",
    "list_samplers": "pyro_bfn.sampling",
}


def test_the_main_names_are_exported_from_their_modules():
    import importlib

    assert set(pyro_bfn.__all__) == set(NAMES) | {"__version__"}
    for name, module in NAMES.items():
        assert getattr(pyro_bfn, name) is getattr(importlib.import_module(module), name), name
    assert isinstance(pyro_bfn.__version__, str)


def test_import_in_a_fresh_interpreter_has_no_cycle():
    """Every ``import pyro_bfn.<module>`` runs the package's ``__init__`` first, so one fresh
    interpreter importing the package (and then every module of its API) checks them all."""
    modules = sorted(set(NAMES.values()) | {"pyro_bfn.cli", "pyro_bfn.datasets"})
    code = "import pyro_bfn\n" + "".join(f"import {module}\n" for module in modules)
    code += f"from pyro_bfn import {', '.join(NAMES)}\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
