"""The n-step sampler: every one of the n Bayesian updates happens, then a draw (or the mode) at t = 1."""

import torch

from pyro_bfn.plotting import decode_symbols
from pyro_bfn.zoo import build_bfn

torch.manual_seed(0)
# an (untrained) BFN for 32-character text: DiscreteData(K=27, beta_1=0.5625)
bfn = build_bfn("toy_text", "mlp_small", backbone_options={"hidden": 64})

updates = []
samples = bfn.sample(4, n_steps=25, progress=lambda i, n: updates.append(i))
print("updates applied:", len(updates), "of 25; last step", updates[-1])
assert updates == list(range(1, 26))
print(samples.shape, samples.dtype)  # (4, 32) class indices
assert samples.shape == (4, 32) and samples.min() >= 0 and samples.max() < 27

# mode=True returns the most probable value of the final output distribution instead of a draw
modes = bfn.sample(4, n_steps=25, mode=True)
assert modes.shape == (4, 32)
for line in decode_symbols(modes[:2]):
    print(repr(line))  # untrained, so no English yet
