"""Training on the user's own data (:func:`pyro_bfn.train`, ``Trainer(model=, data=)``, files
named by a configuration): the loss falls, labels condition the model, a resumed run equals
the uninterrupted one bit for bit, and bad data are one clear error."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import pyro_bfn
from pyro_bfn import build_bfn
from pyro_bfn.training import CheckpointError, ConfigError, TrainConfig, load_model, train
from pyro_bfn.user_data import model_spec

TINY = {"hidden": 64, "depth": 2}
RUN = dict(backbone="mlp_small", backbone_options=TINY, batch_size=32, lr=3e-3, log_interval=5, ckpt_interval=0,
           autocast="none", device="cpu", seed=0, progress=False)
DISCRETE = {"type": "discrete", "num_classes": 2}


def _two_patterns(count=256, seed=0):
    """4x4 binary images: label 0 the top half on, label 1 the bottom half on."""
    labels = torch.randint(0, 2, (count,), generator=torch.Generator().manual_seed(seed))
    x = torch.zeros(count, 1, 4, 4, dtype=torch.long)
    x[labels == 0, :, :2] = 1
    x[labels == 1, :, 2:] = 1
    return x, labels


def _quiet(**values):
    return dict(RUN, log=lambda line: None, **values)


def _equal_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_training_on_a_tensor_reduces_the_loss(tmp_path):
    x, _ = _two_patterns()
    result = train(data=x, data_options=DISCRETE, max_steps=60, out_dir=str(tmp_path / "run"), **_quiet())
    steps = result.summary["step"]
    history = [float(row.split(",")[2]) for row in (tmp_path / "run" / "train_log.csv").read_text().splitlines()[1:]]
    assert steps == 60 and history[-1] < 0.6 * history[0], history
    assert result.config.dataset == "in_memory" and result.config.data_options["shape"] == [1, 4, 4]
    assert not result.model.training and result.model is not result.raw_model
    assert result.model.sample(3, 5).shape == (3, 1, 4, 4)
    loaded, _, _ = load_model(result.checkpoint, device="cpu")  # rebuilt from the resolved options
    assert _equal_weights(loaded, result.model)


def test_labels_make_a_class_conditional_model(tmp_path):
    x, labels = _two_patterns()
    result = train(data=x, labels=labels, data_options=DISCRETE, max_steps=80, context_dropout=0.1,
                   out_dir=str(tmp_path / "run"), **_quiet())
    model = result.model
    assert model.context_dropout == 0.1 and result.config.data_options["num_labels"] == 2
    assert model.network.backbone.context_embedding is not None

    def bound(context):
        torch.manual_seed(1)
        return model.loss(x, context=context).total.mean().item()

    right, wrong, null = bound(labels), bound(1 - labels), bound(None)
    assert right < null < wrong, (right, null, wrong)
    samples = model.sample(64, 20, context=torch.arange(64) % 2)
    top = samples[:, 0, :2].float().mean(dim=(1, 2))
    assert (top[::2] > top[1::2]).float().mean() > 0.9  # label 0 draws the top half


def _resume_pair(tmp_path, run):
    """``run(out_dir, max_steps, resume)`` straight to 10 steps, and to 4 then resumed to 10."""
    straight = run(tmp_path / "a", 10, False)
    run(tmp_path / "b", 4, False)
    resumed = run(tmp_path / "b", 10, True)
    return straight, resumed


def test_resume_of_a_npz_config_is_bitwise_identical(tmp_path):
    x, labels = _two_patterns()
    path = tmp_path / "patterns.npz"
    np.savez(path, images=x.numpy(), digits=labels.numpy())
    options = dict(DISCRETE, x="images", labels="digits", valid_fraction=0.25)

    def run(out, steps, resume):
        config = TrainConfig(dataset=str(path), data_options=options, max_steps=steps, out_dir=str(out),
                             eval_interval=3, eval_examples=16, sample_interval=5, sample_num=4, sample_steps=3,
                             context_dropout=0.2, **RUN)
        return train(config, resume=resume, log=lambda line: None)

    straight, resumed = _resume_pair(tmp_path, run)
    assert _equal_weights(straight.raw_model, resumed.raw_model) and _equal_weights(straight.model, resumed.model)
    assert straight.summary["last_valid"] == resumed.summary["last_valid"]
    assert (tmp_path / "a" / "samples_0000005.png").is_file()
    # a checkpoint of file data rebuilds its model without the file
    path.unlink()
    bfn, config, _ = load_model(tmp_path / "b" / "checkpoint.pt", device="cpu")
    assert _equal_weights(bfn, resumed.model) and config.data_options["num_labels"] == 2


def test_resume_on_tensors_a_dataset_and_a_seeded_dataloader(tmp_path):
    x, labels = _two_patterns()

    def passed_model():
        torch.manual_seed(5)
        return build_bfn(model_spec("in_memory", dict(DISCRETE, shape=[1, 4, 4], num_labels=2)), "mlp_small",
                         backbone_options=TINY)

    def tensors(out, steps, resume):
        return train(passed_model(), data=x, labels=labels, max_steps=steps, out_dir=str(out), **_quiet())

    def dataset(out, steps, resume):
        return train(passed_model(), data=TensorDataset(x, labels), max_steps=steps, out_dir=str(out),
                     resume=resume, **_quiet())

    def loader(out, steps, resume):  # built afresh, as a new process would
        batches = DataLoader(TensorDataset(x, labels), batch_size=32, shuffle=True,
                             generator=torch.Generator().manual_seed(3))
        return train(passed_model(), data=batches, max_steps=steps, out_dir=str(out), resume=resume, **_quiet())

    a, b = _resume_pair(tmp_path / "dataset", dataset)
    assert _equal_weights(a.raw_model, b.raw_model) and _equal_weights(a.model, b.model)
    # the map-style Dataset is drawn in the same seeded order as the tensors it holds
    assert _equal_weights(a.raw_model, tensors(tmp_path / "tensors", 10, False).raw_model)
    a, b = _resume_pair(tmp_path / "loader", loader)  # 8 batches an epoch: the resumed run crosses one
    assert _equal_weights(a.raw_model, b.raw_model) and _equal_weights(a.model, b.model)
    with pytest.raises(CheckpointError, match="given to the Trainer in Python"):
        load_model(tmp_path / "loader" / "b" / "checkpoint.pt")


def test_resume_refuses_other_data(tmp_path):
    x, _ = _two_patterns()
    train(data=x, data_options=DISCRETE, max_steps=2, out_dir=str(tmp_path / "run"), **_quiet())
    with pytest.raises(ConfigError, match="training data differ from the checkpoint's"):
        train(data=1 - x, data_options=DISCRETE, max_steps=4, out_dir=str(tmp_path / "run"), resume=True, **_quiet())


def test_a_bfn_is_trained_in_place_and_saved_as_pretrained(tmp_path):
    x, _ = _two_patterns(64)
    bfn = build_bfn(model_spec("in_memory", dict(DISCRETE, shape=[1, 4, 4])), "mlp_small", backbone_options=TINY)
    before = {k: v.clone() for k, v in bfn.state_dict().items()}
    result = train(bfn, data=x.numpy(), max_steps=3, out_dir=str(tmp_path / "run"), **_quiet())
    assert result.raw_model is bfn
    assert any(not torch.equal(before[k], v) for k, v in bfn.state_dict().items())
    pyro_bfn.save_pretrained(result.model, tmp_path / "pretrained")
    assert _equal_weights(pyro_bfn.from_pretrained(tmp_path / "pretrained"), result.model)


@pytest.mark.parametrize("make, message", [
    (lambda x, y: dict(data=x, labels=y[:10], data_options=DISCRETE), "has 10 labels for 256 examples"),
    (lambda x, y: dict(data=x.float(), data_options=DISCRETE), "must be integer class indices 0..1"),
    (lambda x, y: dict(data=x + 1, data_options=DISCRETE), "class indices 0..1, found values from 1 to 2"),
    (lambda x, y: dict(data=x, data_options={"type": "discrete"}), "data_options.num_classes must be an integer"),
    (lambda x, y: dict(data=x, data_options=DISCRETE, eval_interval=5), "no validation examples"),
    (lambda x, y: dict(data=x, data_options=DISCRETE, batch_size=512), "batch_size 512 exceeds the 256"),
    (lambda x, y: dict(data=(b for b in [x]), data_options=DISCRETE), "one-shot iterator"),
    (lambda x, y: dict(data=[x[:48]], data_options=DISCRETE), "batches of 48 examples, batch_size is 32"),
    (lambda x, y: dict(data=TensorDataset(x, y), data_options=DISCRETE), "need data_options.num_labels"),
    (lambda x, y: dict(data=[(x[:32], y[:32])], data_options=DISCRETE), "need data_options.num_labels"),
    (lambda x, y: dict(data=[(x[:32], y[:32] + 1)], data_options=dict(DISCRETE, num_labels=2)),
     "labels of a batch of the iterable must lie in 0..1, found 1 to 2"),
    (lambda x, y: dict(data=[(x[:32], y[:31])], data_options=dict(DISCRETE, num_labels=2)), "31 labels or context"),
    (lambda x, y: dict(data=TensorDataset(x), data_options=DISCRETE, eval_interval=2), "cannot validate a Dataset"),
    (lambda x, y: dict(data=x, dataset="toy_binary", data_options=DISCRETE), "data= .* or dataset=, not both"),
    (lambda x, y: dict(data=x, data_options=DISCRETE, max_step=3), "unknown configuration key.* max_step"),
    (lambda x, y: dict(dataset="absent.npz", data_options=DISCRETE), "data file absent.npz does not exist"),
])
def test_bad_data_are_one_clear_error(tmp_path, make, message):
    x, labels = _two_patterns()
    with pytest.raises(ConfigError, match=message):
        train(**dict(dict(max_steps=2, out_dir=str(tmp_path / "run"), **_quiet()), **make(x, labels)))


def test_a_bfn_and_data_that_do_not_fit(tmp_path):
    x, _ = _two_patterns()
    bfn = build_bfn("toy_binary", "mlp_small", backbone_options=TINY)  # 8x8 images
    with pytest.raises(ConfigError, match=r"examples of in_memory have shape \(1, 4, 4\), data_options.shape says"):
        train(bfn, data=x, max_steps=2, out_dir=str(tmp_path / "run"), **_quiet())
    with pytest.raises(ConfigError, match="data_options.type 'continuous' is not the model's data type"):
        train(bfn, data=x, data_options={"type": "continuous"}, max_steps=2, out_dir=str(tmp_path / "r"), **_quiet())


def test_a_registered_dataset_and_backbone_train_by_name(tmp_path, monkeypatch):
    from pyro_bfn import zoo
    from pyro_bfn.models import registry

    monkeypatch.setattr(zoo, "_REGISTRY", dict(zoo._REGISTRY))
    for name in ("CONFIGS", "BACKBONES", "INPUT_LAYOUTS"):
        monkeypatch.setattr(registry, name, dict(getattr(registry, name)))
    x, _ = _two_patterns()

    class Flat(torch.nn.Module):
        def __init__(self, in_features, out_features, width=16):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(in_features + 1, width), torch.nn.SiLU(),
                                           torch.nn.Linear(width, out_features))

        def forward(self, h, t):
            return self.net(torch.cat([h, t[:, None]], dim=1))

    pyro_bfn.register_backbone("flat_test", Flat, layout="flat", width=8)
    pyro_bfn.register_dataset(zoo.DatasetSpec(
        name="patterns_test", data_shape=(1, 4, 4), modality="image",
        make_data_type=lambda beta_1=3.0: pyro_bfn.DiscreteData(2, beta_1), load=lambda split: x,
        prepare=lambda raw, generator=None: raw, default_backbone="flat_test"))
    with pytest.raises(ConfigError, match="backbone flat_test takes no option 'widht'; accepted: width"):
        TrainConfig(dataset="patterns_test", backbone_options={"widht": 4})
    values = dict(RUN, backbone="flat_test", backbone_options={"width": 12})
    result = train(dataset="patterns_test", max_steps=3, out_dir=str(tmp_path / "run"), log=lambda line: None,
                   **values)
    assert result.model.network.backbone.net[0].out_features == 12


def test_labels_of_a_registered_dataset(tmp_path, monkeypatch):
    from pyro_bfn import zoo

    monkeypatch.setattr(zoo, "_REGISTRY", dict(zoo._REGISTRY))
    x, labels = _two_patterns()
    pyro_bfn.register_dataset(zoo.DatasetSpec(
        name="labelled_test", data_shape=(1, 4, 4), modality="image",
        make_data_type=lambda beta_1=3.0: pyro_bfn.DiscreteData(2, beta_1), load=lambda split: x,
        prepare=lambda raw, generator=None: raw, load_context=lambda split: labels, num_labels=2))
    plain = train(dataset="labelled_test", max_steps=2, out_dir=str(tmp_path / "a"), **_quiet())
    assert plain.model.network.backbone.context_embedding is None
    conditional = train(dataset="labelled_test", data_options={"labels": True}, max_steps=2,
                        out_dir=str(tmp_path / "b"), **_quiet())
    assert conditional.model.network.backbone.context_embedding.num_classes == 2
    assert conditional.model.build_recipe["data_options"] == {"labels": True}


def test_a_tensor_as_dataset_points_to_data():
    with pytest.raises(ConfigError, match="got a Tensor; give examples in Python as data= of pyro_bfn.train"):
        TrainConfig(dataset=torch.zeros(3, 2))
    with pytest.raises(ConfigError, match="for your own data, dataset is a .npz/.pt file"):
        TrainConfig(data_options=DISCRETE)
