"""Status lines through :mod:`logging`, the tqdm-aware handler, and the optional TensorBoard
writer; the nested options checked against the constructors' signatures."""

import importlib.util
import logging

import pytest

from pyro_bfn.training import ConfigError, RunLog, TqdmHandler, TrainConfig, Trainer

HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


def test_trainer_logs_through_the_logging_module(tmp_path, tiny_config, caplog):
    config = tiny_config(tmp_path, max_steps=3)
    with caplog.at_level(logging.INFO, logger="pyro_bfn"):
        Trainer(config).train()
    messages = [r.getMessage() for r in caplog.records if r.name == "pyro_bfn.training.trainer"]
    assert messages[0].startswith("training toy_binary with mlp_small")
    assert messages[-1].startswith("stopped by max_steps at step 3")


def test_tqdm_handler_writes_lines_above_the_bar(monkeypatch):
    from tqdm.auto import tqdm

    written = []
    monkeypatch.setattr(tqdm, "write", classmethod(lambda cls, text, file=None: written.append(text)))
    handler = TqdmHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    test_logger = logging.getLogger("test_tqdm_handler")  # outside pyro_bfn: no handler of the CLI's
    test_logger.propagate = False
    test_logger.addHandler(handler)
    try:
        test_logger.warning("step %d: status", 7)
    finally:
        test_logger.removeHandler(handler)
    assert written == ["WARNING step 7: status"]


@pytest.mark.parametrize("key, options, fragments", [
    ("backbone_options", {"hiden": 64}, ["backbone mlp_small", "'hiden'", "hidden", "depth"]),
    ("data_type_options", {"beta": 2}, ["toy_binary", "'beta'", "beta_1", "kl_samples"]),
])
def test_nested_options_are_checked_against_the_signatures(key, options, fragments):
    with pytest.raises(ConfigError, match=key) as info:
        TrainConfig(dataset="toy_binary", backbone="mlp_small", **{key: options})
    for fragment in fragments:
        assert fragment in str(info.value)


def test_nested_options_of_the_built_class_are_accepted():
    """``loss: continuous`` builds ContinuousData, whose ``clip`` the default class lacks."""
    config = TrainConfig(dataset="toy_discretised", data_type_options={"loss": "continuous", "clip": [-1.0, 1.0]})
    assert config.data_type_options["clip"] == [-1.0, 1.0]
    TrainConfig(dataset="toy_binary", backbone_options={"hidden": 8, "depth": 1})


def test_logger_key_takes_csv_or_tensorboard():
    assert TrainConfig().logger == "csv"
    with pytest.raises(ConfigError, match="logger"):
        TrainConfig(logger="wandb")


@pytest.mark.skipif(HAS_TENSORBOARD, reason="tensorboard is installed")
def test_tensorboard_without_the_package_is_a_config_error(tmp_path, tiny_config, quiet):
    config = tiny_config(tmp_path, logger="tensorboard")
    with pytest.raises(ConfigError, match=r"pip install pyro-bfn\[tensorboard\]"):
        quiet(config)
    with pytest.raises(ConfigError, match="tensorboard"):
        RunLog(tmp_path / "run", tensorboard=True)


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="needs pip install pyro-bfn[tensorboard]")
def test_tensorboard_writes_the_logged_scalars(tmp_path, tiny_config, quiet):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = tiny_config(tmp_path, logger="tensorboard", max_steps=10, log_interval=5, eval_interval=5,
                         eval_examples=16)
    quiet(config).train()
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train/loss", "train/lr", "train/grad_norm", "valid/nats"} <= set(tags)
    assert [event.step for event in events.Scalars("train/loss")] == [5, 10]
    assert [event.step for event in events.Scalars("valid/nats")] == [5, 10]
