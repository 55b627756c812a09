"""The named model configurations that ``speed.py`` times and ``speed_profile.py`` profiles,
and the fixtures both use (imported by both; not a script).

Each is a dataset of :mod:`pyro_bfn.zoo` (its data type and shape), a named backbone, a batch
size and, for the tiny ones of ``--quick`` and the smoke tests, backbone options. ``heavy``
configurations get fewer repeats; ``sample_timed_steps`` times only the first sampling steps and
extrapolates to the whole run.
"""

from __future__ import annotations

#: n of the n-step (discrete-time) loss in every speed study
NSTEP_LOSS_STEPS = 10
#: sampler steps timed by speed.py
SAMPLE_STEPS = 100

_TINY = dict(hidden=32, depth=1, time_embedding_dim=16)

CONFIGS = {
    "mnist_paper_b8": dict(data="binary MNIST, K=2", dataset="binarized_mnist", backbone="unet_mnist_paper", batch=8,
                           heavy=True),
    "mnist_small_variant_b8": dict(data="binary MNIST, K=2", dataset="binarized_mnist",
                                   backbone="unet_mnist_small_variant", batch=8),
    "mnist_small_variant_b32": dict(data="binary MNIST, K=2", dataset="binarized_mnist",
                                    backbone="unet_mnist_small_variant", batch=32, sample_timed_steps=20),
    "mnist_unet_small_b32": dict(data="binary MNIST, K=2", dataset="binarized_mnist", backbone="unet_small", batch=32,
                                 heavy=True, sample_timed_steps=10),
    "mnist_mlp_b32": dict(data="binary MNIST, K=2", dataset="binarized_mnist", backbone="mlp_small", batch=32),
    "discretised256_unet_small_b32": dict(data="28x28, 256 bins", dataset="fashion_mnist_256", backbone="unet_small",
                                          batch=32, heavy=True, sample_timed_steps=10),
    "discretised256_mlp_b32": dict(data="28x28, 256 bins", dataset="fashion_mnist_256", backbone="mlp_small", batch=32),
    "text27_transformer_small_b8": dict(data="text L=256, K=27", dataset="english_text", backbone="transformer_small",
                                        batch=8),
    # tiny configurations for --quick and the smoke tests
    "tiny_binary_mlp": dict(data="toy 8x8, K=2", dataset="toy_binary", backbone="mlp_small", batch=4,
                            backbone_options=_TINY),
    "tiny_discretised_mlp": dict(data="toy 8x8, 16 bins", dataset="toy_discretised", backbone="mlp_small", batch=4,
                                 backbone_options=_TINY),
    "tiny_text_mlp": dict(data="toy text L=32, K=27", dataset="toy_text", backbone="mlp_small", batch=4,
                          backbone_options=_TINY),
}
DEFAULT_CONFIGS = [name for name in CONFIGS if not name.startswith("tiny_")]
QUICK_CONFIGS = [name for name in CONFIGS if name.startswith("tiny_")]


def build(name: str, seed: int = 0):
    """The BFN of configuration ``name`` (in train mode) and a random batch of its data:
    ``(bfn, spec, x)``, ``x`` of shape ``(batch, *spec.data_shape)`` on the CPU."""
    import torch

    from pyro_bfn.zoo import build_bfn, get_dataset

    config = CONFIGS[name]
    spec = get_dataset(config["dataset"])
    bfn = build_bfn(config["dataset"], config["backbone"], backbone_options=config.get("backbone_options")).train()
    x = random_batch(bfn.data_type, (config["batch"],) + spec.data_shape, torch.Generator().manual_seed(seed))
    return bfn, spec, x


def random_batch(data_type, shape: tuple, generator):
    """Random data of ``data_type`` and ``shape``: class indices for discrete data, bin centres
    for discretised data, uniform on [-1, 1] for continuous data (on the CPU)."""
    import torch

    if hasattr(data_type, "num_classes"):
        return torch.randint(0, data_type.num_classes, shape, generator=generator)
    if hasattr(data_type, "num_bins"):
        return data_type.from_integers(torch.randint(0, data_type.num_bins, shape, generator=generator))
    return torch.rand(shape, generator=generator) * 2 - 1


def stored_output_network(stored):
    """A stand-in for a BFN's network that returns ``stored`` (a parameter, so that the loss has
    a gradient), so that a step measures the flow, output distribution and loss alone."""
    from torch import nn

    class StoredOutput(nn.Module):
        def __init__(self):
            super().__init__()
            self.output = nn.Parameter(stored)

        def forward(self, features, t, context=None):
            return self.output

    return StoredOutput()
