"""Discretised data: bins, the discretised output, the mixture receiver, its quadrature KL, the losses."""

import math

import torch
from torch.distributions import kl_divergence

from pyro_bfn.data_types import DiscretisedData
from pyro_bfn.distributions import DiscretisedOutput, NormalSender, bin_centres

torch.manual_seed(0)
torch.set_default_dtype(torch.float64)

# K = 16 bins tiling [-1, 1]; data are the bin centres k_c = (2k - 1)/K - 1 (k = 1..K)
data_type = DiscretisedData(num_bins=16)  # sigma_1 = sqrt(1e-3) for 16 bins
print(data_type)
levels = torch.tensor([[0, 5, 15]])  # integer levels 0..K-1, a batch of one example of 3 variables
x = data_type.from_integers(levels, dtype=torch.float64)
print("bin centres:", x.numpy().round(4))
assert torch.equal(data_type.to_integers(x), levels)

# output distribution: N(mu_x, sigma_x^2) discretised over the bins, the outer bins taking the tails
output = DiscretisedOutput(loc=torch.tensor(0.1), scale=torch.tensor(0.3), num_bins=16)
print(f"sum of p_O(k) = {output.probs.sum():.12f}, mode = {output.mode:.4f}, k_hat = {output.mean:.4f}")
assert torch.isclose(output.probs.sum(), torch.tensor(1.0))
normal = torch.distributions.Normal(0.1, 0.3)
centres = bin_centres(16)
k = 7  # an inner bin: Phi((k_r - mu)/sigma) - Phi((k_l - mu)/sigma)
inner = normal.cdf(centres[k] + 1 / 16) - normal.cdf(centres[k] - 1 / 16)
assert torch.isclose(output.log_prob(centres[k]).exp(), inner)
assert torch.isclose(output.probs[0], normal.cdf(centres[0] + 1 / 16))  # the first bin takes the lower tail

# receiver: the sender averaged over p_O, a mixture of N(k_c, 1/alpha); KL by quadrature
alpha = torch.tensor(50.0)
receiver = output.receiver(alpha)
sender = NormalSender(centres[9], alpha)
kl = kl_divergence(sender, receiver)
y = sender.sample((200_000,))
monte_carlo = (sender.log_prob(y) - receiver.log_prob(y)).mean()
print(f"KL(p_S || p_R): quadrature {kl:.5f}, Monte Carlo {monte_carlo:.5f}")
assert abs(kl - monte_carlo) < 0.02

# the network's (mu_eps, ln sigma_eps) -> (mu_x, sigma_x) through the flow's gamma(t)
t = torch.tensor([0.7])
theta = data_type.sample_input(x, t)  # theta ~ p_F(. | x; t)
network_output = torch.zeros(1, 3, 2)  # mu_eps = 0, ln sigma_eps = 0
out = data_type.output(network_output, theta, t)
gamma = data_type.schedule.gamma(t)
assert torch.allclose(out.loc, theta.loc / gamma)
assert torch.allclose(out.scale, ((1 - gamma) / gamma).sqrt().expand(1, 3))
print("mu_x =", out.loc.numpy().round(4), " sigma_x =", out.scale.numpy().round(4))

# reconstruction term -ln p_O(x | theta; 1) with the flow at t = 1
theta_1 = data_type.sample_input(x, torch.ones(1))
out_1 = data_type.output(network_output, theta_1, torch.ones(1))
reconstruction = -out_1.log_prob(x).sum()
print(f"L^r for this draw = {reconstruction:.4f} nats")
assert math.isfinite(reconstruction)
