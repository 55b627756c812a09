"""Training configuration: YAML and overrides, the typed conversion and validation of every
key (one clear ConfigError naming it), renamed keys, the shipped configurations, devices."""

import dataclasses
from pathlib import Path

import pytest
import torch

from pyro_bfn.training import ConfigError, TrainConfig, cpu_has_native_bf16, resolve_autocast

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("dataset: toy_text\nlr: 1e-3\nbetas: [0.9, 0.99]\nbackbone_options: {hidden: 16}\n")
    config = TrainConfig.from_yaml(path, ["lr=2e-3", "loss=10", "backbone_options.depth=1", "time_budget_minutes=0.5"])
    assert config.dataset == "toy_text" and config.lr == 2e-3 and isinstance(config.lr, float)  # YAML reads 2e-3 as a string
    assert config.betas == (0.9, 0.99) and config.backbone_options == {"hidden": 16, "depth": 1}
    assert config.n_steps == 10 and config.time_budget_minutes == 0.5
    assert TrainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["learning_rate=1"], "unknown configuration key.*learning_rate"),
        (["lr=fast"], "lr must be a number"),
        (["batch_size=0"], "batch_size must be a positive integer"),
        (["loss=discrete"], "loss must be 'continuous'"),
        (["autocast=fp8"], "autocast must be one of"),
        (["dataset=cifar100"], "unknown dataset 'cifar100'"),
        (["backbone=resnet"], "unknown backbone 'resnet'"),
        (["seed"], "must look like key=value"),
        (["lr.x=1"], "dotted keys"),
    ],
)
def test_bad_configuration_is_a_clear_error(overrides, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig.from_yaml(None, overrides)


# ---------------------------------------------------------------------------- typed conversion
@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("batch_size", "12", 12),  # int: numeric strings and integral floats
        ("batch_size", 12.0, 12),
        ("eval_examples", None, None),  # int | None
        ("eval_examples", "7", 7),
        ("lr", "1e-3", 1e-3),  # float: YAML reads 1e-3 as a string
        ("lr", 2, 2.0),
        ("time_budget_minutes", None, None),  # float | None
        ("time_budget_minutes", "0.5", 0.5),
        ("betas", [0.9, "0.99"], (0.9, 0.99)),  # tuple[float, float] from a list
        ("loss", "continuous", "continuous"),  # Literal["continuous"] | int
        ("loss", "25", 25),
        ("loss", 25, 25),
        ("autocast", "bf16", "bf16"),  # Literal
        ("compile", True, True),  # bool
        ("progress", False, False),
        ("device", "cuda:1", "cuda:1"),  # str
        ("backbone", None, None),  # str | None
        ("backbone", "mlp_small", "mlp_small"),
        ("backbone_options", {"base_width": 8}, {"base_width": 8}),  # dict (an option of the default unet_small)
    ],
)
def test_each_field_type_is_converted_from_yaml_values(key, value, expected):
    config = TrainConfig.from_dict({key: value})
    assert getattr(config, key) == expected and type(getattr(config, key)) is type(expected)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("batch_size", "many", "batch_size must be an integer, got 'many'"),
        ("batch_size", 2.5, "batch_size must be an integer, got 2.5"),
        ("batch_size", True, "batch_size must be an integer, got True"),  # a bool is not an integer
        ("eval_examples", "all", "eval_examples must be an integer or null, got 'all'"),
        ("lr", [1], "lr must be a number, got [1]"),
        ("lr", True, "lr must be a number, got True"),
        ("progress", "yes", "progress must be true or false, got 'yes'"),
        ("compile", 1, "compile must be true or false, got 1"),
        ("dataset", 3, "dataset must be a string, got 3"),
        ("backbone_options", None, "backbone_options must be a mapping, got None"),
        ("betas", [0.9], "betas must be a list of 2 numbers, got [0.9]"),
        ("autocast", "fp8", "autocast must be one of 'auto', 'bf16', 'fp16', 'none', got 'fp8'"),
        ("loss", 2.5, "loss must be 'continuous' or an integer, got 2.5"),
    ],
)
def test_a_wrong_type_is_an_error_naming_the_key(key, value, message):
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({key: value})
    assert str(info.value) == message


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("batch_size", 0, "batch_size must be a positive integer, got 0"),
        ("warmup_steps", -1, "warmup_steps must be a non-negative integer, got -1"),
        ("eval_examples", 0, "eval_examples must be a positive integer or None, got 0"),
        ("loss", 0, "loss must be a positive integer, got 0"),
        ("lr", 0, "lr must be a positive number, got 0"),
        ("lr", float("nan"), "lr must be a positive number, got nan"),
        ("weight_decay", -0.1, "weight_decay must be a number >= 0, got -0.1"),
        ("grad_clip", -1, "grad_clip must be a number >= 0, got -1"),
        ("ema_decay", 1.0, "ema_decay must be a number in [0, 1), got 1.0"),
        ("betas", [0.9, 1.0], "betas must be two numbers in [0, 1), got [0.9, 1.0]"),
        ("time_budget_minutes", 0, "time_budget_minutes must be a positive number, got 0"),
        ("device", "tpu", "device must be auto, cpu or cuda[:index]; got 'tpu'"),
        ("out_dir", "", "out_dir must be a directory path"),
    ],
)
def test_a_value_out_of_range_is_an_error_naming_the_key(key, value, message):
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({key: value})
    assert str(info.value) == message


def test_every_key_is_typed_and_checked():
    """Each field's type hint drives its conversion: a value of no admissible type is an error
    naming that key, whatever the key; the defaults are valid."""
    for spec in dataclasses.fields(TrainConfig):
        with pytest.raises(ConfigError, match=f"^{spec.name} must be "):
            TrainConfig.from_dict({spec.name: object()})
    assert TrainConfig.from_dict({}) == TrainConfig()


def test_direct_construction_is_validated_too():
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        TrainConfig(batch_size=0)
    assert TrainConfig(lr="1e-3", betas=[0.9, 0.99]).lr == 1e-3  # converted like a YAML value


def test_unknown_and_renamed_keys_are_errors_naming_them():
    with pytest.raises(ConfigError, match="unknown configuration key.*learning_rate.*known keys"):
        TrainConfig.from_dict({"learning_rate": 1e-3})
    with pytest.raises(ConfigError, match="num_workers was renamed: use num_threads"):
        TrainConfig.from_yaml(None, ["num_workers=2"])
    assert TrainConfig.from_yaml(None, ["num_threads=2"]).num_threads == 2


def test_shipped_configurations_load():
    paths = sorted(CONFIGS.glob("*.yaml"))
    assert any(p.name == "mnist_demo.yaml" for p in paths)
    for path in paths:
        config = TrainConfig.from_yaml(path)
        assert config.loss == "continuous" or config.n_steps >= 1
    demo = TrainConfig.from_yaml(paths[[p.name for p in paths].index("mnist_demo.yaml")])
    assert demo.dataset == "binarized_mnist" and demo.data_type_options == {"beta_1": 9.0}
    assert demo.time_budget_minutes is not None and demo.loss == "continuous"


# ---------------------------------------------------------------------------- devices
def test_fp16_on_cpu_is_refused(tmp_path, tiny_config, quiet):
    with pytest.raises(ConfigError, match="fp16"):
        quiet(tiny_config(tmp_path, autocast="fp16"))


def test_auto_autocast_on_cpu_follows_native_bf16():
    cpu = torch.device("cpu")
    assert isinstance(cpu_has_native_bf16(), bool)
    expected = torch.bfloat16 if cpu_has_native_bf16() else None
    assert resolve_autocast("auto", cpu) == (expected, False)
    assert resolve_autocast("bf16", cpu) == (torch.bfloat16, False) and resolve_autocast("none", cpu) == (None, False)
