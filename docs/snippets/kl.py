"""The registered sender/receiver KLs: closed form, exact bends plus Gauss-Legendre, Monte Carlo."""

import torch
from torch.distributions import kl_divergence

from pyro_bfn.distributions import (
    CategoricalOutput,
    DiscreteSender,
    DiscretisedOutput,
    NormalSender,
    PointMassOutput,
    bin_centres,
)

torch.manual_seed(0)
torch.set_default_dtype(torch.float64)
alpha = torch.tensor(3.0)


def monte_carlo(sender, receiver, draws=400_000):
    y = sender.sample((draws,))
    return (sender.log_prob(y) - receiver.log_prob(y)).mean()


# continuous data: closed form alpha/2 (x - x_hat)^2
sender = NormalSender(torch.tensor(0.2), alpha)
receiver = PointMassOutput(torch.tensor(-0.1)).receiver(alpha)
print(f"continuous      : {kl_divergence(sender, receiver):.5f} (closed form {1.5 * 0.3 ** 2:.5f})")

# discretised data, 16 bins: a 1-D integral (exact expectations of its bends + Gauss-Legendre for the rest)
receiver = DiscretisedOutput(torch.tensor(0.0), torch.tensor(0.4), 16).receiver(alpha)
sender = NormalSender(bin_centres(16)[10], alpha)
print(f"discretised K=16: {kl_divergence(sender, receiver):.5f} (Monte Carlo {monte_carlo(sender, receiver):.5f})")

# discrete data, K = 2: closed-form expectation of the maximum + Gauss-Legendre remainder
sender = DiscreteSender(torch.tensor(1), alpha, 2)
receiver = CategoricalOutput(probs=torch.tensor([0.7, 0.3])).receiver(alpha)
print(f"discrete K=2    : {kl_divergence(sender, receiver):.5f} (Monte Carlo {monte_carlo(sender, receiver):.5f})")

# discrete data, K = 27: unbiased Monte Carlo with receiver.kl_samples draws; error ~ S^(-1/2)
small = torch.tensor(0.05)  # text8-like step accuracy (beta_1 = 0.5625)
logits = torch.randn(27)
sender = DiscreteSender(torch.tensor(4), small, 27)
reference = monte_carlo(sender, CategoricalOutput(logits=logits).receiver(small))
for samples in (4, 16, 64):
    receiver = CategoricalOutput(logits=logits).receiver(small, kl_samples=samples)
    estimates = torch.stack([kl_divergence(sender, receiver) for _ in range(1000)])
    print(f"discrete K=27, S={samples:2d}: mean {estimates.mean():.4f}, sd of one estimate {estimates.std():.4f}"
          f" (reference {reference:.4f})")
    assert abs(estimates.mean() - reference) < 5 * estimates.std() / 1000**0.5 + 0.01
