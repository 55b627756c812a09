"""Likelihood evaluation: the bound L^n + L^r with a standard error over repeated passes."""

import math

import torch

from pyro_bfn.evaluation import evaluate_bound
from pyro_bfn.zoo import build_bfn, get_dataset

torch.manual_seed(0)
spec = get_dataset("toy_binary")  # binary 8x8 images, re-binarized on every pass
bfn = build_bfn("toy_binary", "mlp_small", backbone_options={"hidden": 64})

n_step = evaluate_bound(bfn, spec, split="test", n_steps=10, repeats=4, seed=0, progress=False)
print(n_step.format())
assert n_step.stderr_kind == "passes"  # R >= 2: sd of the R per-pass means / sqrt(R)
assert math.isclose(n_step.nats, n_step.flow_nats + n_step.reconstruction_nats, rel_tol=1e-9)
assert math.isclose(n_step.bits_per_dim, n_step.nats / (64 * math.log(2)), rel_tol=1e-12)

# reproducible from the seed
again = evaluate_bound(bfn, spec, split="test", n_steps=10, repeats=4, seed=0, progress=False)
assert again.nats == n_step.nats

# one pass: the standard error is the per-example sd / sqrt(N)
continuous = evaluate_bound(bfn, spec, split="test", n_steps=None, repeats=1, progress=False)
print(continuous.format())
assert continuous.stderr_kind == "examples"
print(continuous.to_dict()["bits_per_dim"])
