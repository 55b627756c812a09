"""Shared helpers of the training tests: tiny MLP runs on the generated toy datasets, CPU."""

import pytest

from pyro_bfn.training import TrainConfig, Trainer

TINY = {"hidden": 64, "depth": 2}


def _tiny_config(tmp_path, dataset="toy_binary", **changes):
    values = dict(
        dataset=dataset, backbone="mlp_small", backbone_options=dict(TINY), batch_size=32, lr=3e-3,
        max_steps=60, log_interval=5, eval_interval=0, ckpt_interval=0, sample_interval=0,
        autocast="none", device="cpu", seed=0, out_dir=str(tmp_path / "run"), progress=False,
    )
    values.update(changes)
    return TrainConfig.from_dict(values)


def _quiet(config, **kwargs):
    return Trainer(config, log=lambda line: None, **kwargs)


@pytest.fixture
def tiny_config():
    """``tiny_config(tmp_path, dataset="toy_binary", **changes)``: a small run's configuration
    writing into ``tmp_path / "run"``."""
    return _tiny_config


@pytest.fixture
def quiet():
    """``quiet(config, **kwargs)``: a :class:`Trainer` that logs nothing."""
    return _quiet
