"""Quick example: a BFN for 8x8 binary images, trained briefly, its bound, its samples."""

import torch

from pyro_bfn.evaluation import evaluate_bound
from pyro_bfn.zoo import build_bfn, get_dataset

torch.manual_seed(0)
spec = get_dataset("toy_binary")  # generated 8x8 binary rectangles: DiscreteData(K=2, beta_1=3)
bfn = build_bfn("toy_binary", "mlp_small", backbone_options={"hidden": 128})
print(bfn.data_type)  # DiscreteData(num_classes=2, beta_1=3.0)

raw = spec.load("train")  # integer pixels 0/255, shape (512, 1, 8, 8)
optimizer = torch.optim.Adam(bfn.parameters(), lr=2e-3)
losses = []
for step in range(60):
    x = spec.prepare(raw[torch.randint(len(raw), (64,))])  # binarized: class indices 0/1
    loss = bfn.loss(x, n_steps=None, reconstruction=False).total.mean()  # L^inf, nats/image
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
print(f"L^inf: {sum(losses[:10]) / 10:.1f} -> {sum(losses[-10:]) / 10:.1f} nats/image")
assert sum(losses[-10:]) < sum(losses[:10])

# the negative likelihood bound L^inf + L^r on the test split, two passes
result = evaluate_bound(bfn, spec, split="test", n_steps=None, repeats=2, progress=False)
print(result.format())
assert result.nats > 0 and result.nats_stderr >= 0

# 16 samples with the 20-step sampler (all 20 Bayesian updates happen)
samples = bfn.sample(16, n_steps=20)
print(samples.shape, samples.dtype)  # torch.Size([16, 1, 8, 8]) torch.int64
assert samples.shape == (16, 1, 8, 8) and set(samples.unique().tolist()) <= {0, 1}
