"""A training loop in plain PyTorch: AdamW, gradient clipping and an EMA of the weights, as in the paper."""

import copy

import torch

from pyro_bfn.evaluation import evaluate_bound
from pyro_bfn.zoo import build_bfn, get_dataset

torch.manual_seed(0)
spec = get_dataset("toy_discretised")  # 8x8 images as 16-bin discretised data
bfn = build_bfn("toy_discretised", "mlp_small", backbone_options={"hidden": 128})
ema = copy.deepcopy(bfn).requires_grad_(False)  # the EMA weights are the ones evaluated and sampled
optimizer = torch.optim.AdamW(bfn.parameters(), lr=2e-3, betas=(0.9, 0.98), weight_decay=0.01)

raw = spec.load("train")
history = []
for step in range(80):
    x = spec.prepare(raw[torch.randint(len(raw), (64,))])  # levels -> bin centres in [-1, 1]
    loss = bfn.loss(x, n_steps=None, reconstruction=False).total.mean()  # L^inf per image, nats
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(bfn.parameters(), 5.0)
    optimizer.step()
    with torch.no_grad():  # decay 0.99 for a short run (the paper uses 0.9999)
        for average, current in zip(ema.parameters(), bfn.parameters()):
            average.lerp_(current, 1 - 0.99)
    history.append(loss.item())
print(f"L^inf: first 10 steps {sum(history[:10]) / 10:.1f}, last 10 steps {sum(history[-10:]) / 10:.1f} nats/image")
assert sum(history[-10:]) < sum(history[:10])

result = evaluate_bound(ema, spec, split="valid", n_steps=None, repeats=2, progress=False)
print(result.format())
