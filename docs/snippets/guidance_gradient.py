"""Gradient guidance: steer a BFN for 8x8 binary images by the gradient of a log-score of its output."""

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


def log_score(output, t):
    """A differentiable log-score of the output distribution, one value per sample (shape (B,)):
    the log-probability that the top half of the image is on (pixel class 1)."""
    log_p_on = output.logits.log_softmax(-1)[..., 1]  # (B, 1, 8, 8)
    return log_p_on[:, :, :4].flatten(1).sum(-1)


# every step, the logits of the output distribution move by scale * d log_score / d logits(theta)
for scale in (0.0, 1.0, 4.0):
    samples = bfn.sample(256, n_steps=20, log_score=log_score, log_score_scale=scale, generator=torch.Generator().manual_seed(1))
    top, bottom = samples[:, :, :4].float().mean().item(), samples[:, :, 4:].float().mean().item()
    print(f"scale {scale}: fraction of 1-pixels, top half {top:.2f}, bottom half {bottom:.2f}")
    if scale == 0.0:
        unguided_top = top
        # scale 0 is the unguided sampler, draw for draw
        assert torch.equal(samples, bfn.sample(256, n_steps=20, generator=torch.Generator().manual_seed(1)))
assert top > unguided_top + 0.1  # the guided samples fill the scored region
