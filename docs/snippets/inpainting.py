"""Inpainting: complete the left half of 8x8 binary images by replacement and by sequential Monte Carlo."""

import torch

from pyro_bfn.zoo import build_bfn, get_dataset

torch.manual_seed(0)
spec = get_dataset("toy_binary")  # 8x8 binary rectangles: DiscreteData(K=2, beta_1=3)
bfn = build_bfn("toy_binary", "mlp_small", backbone_options={"hidden": 128})
raw = spec.prepare(spec.load("train"))
optimizer = torch.optim.Adam(bfn.parameters(), lr=2e-3)
for step in range(60):
    loss = bfn.loss(raw[torch.randint(len(raw), (64,))], n_steps=None, reconstruction=False).total.mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

known = spec.prepare(spec.load("test"))[:8]  # (8, 1, 8, 8) class indices
mask = torch.zeros(known.shape, dtype=torch.bool)
mask[..., :4] = True  # the left half is known, the right half is sampled

# replacement: after every update the known dimensions are set to a draw from their Bayesian flow
completed = bfn.sample(8, n_steps=20, known=known, mask=mask)
# sequential Monte Carlo: 16 particles per image, reweighted by the known values' likelihood
smc = bfn.sample(8, n_steps=20, known=known, mask=mask, num_particles=16)
for name, images in (("replacement", completed), ("SMC", smc)):
    agree = (images[..., 4:] == known[..., 4:]).float().mean().item()
    print(f"{name}: known half kept: {bool((images[mask] == known[mask]).all())}; right half agrees with the truth on {agree:.0%}")
    assert images.shape == known.shape and torch.equal(images[mask], known[mask])
