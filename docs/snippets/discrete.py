"""Discrete data: input, sender, update, flow, output, the joint receiver, its KLs, the loss rates."""

import torch
from torch.distributions import kl_divergence

from pyro_bfn.data_types import DiscreteData
from pyro_bfn.distributions import (
    CategoricalInput,
    CategoricalOutput,
    DiscreteFlow,
    DiscreteSender,
    DiscreteUpdate,
    continuous_time_kl_rate,
)

torch.manual_seed(0)
torch.set_default_dtype(torch.float64)
K = 4
x = torch.tensor(2)  # a class index in 0..K-1
alpha = torch.tensor(0.8)

# input distribution (uniform prior), sender N(alpha (K e_x - 1), alpha K I), update softmax(ln theta + y)
prior = CategoricalInput.prior((), num_classes=K)
sender = DiscreteSender(x, alpha, num_classes=K)
y = sender.sample()
posterior = prior.update(y)
assert torch.allclose(posterior.probs, torch.softmax(prior.logits + y, -1))
print("theta after one update:", posterior.probs.numpy().round(3))

# the update distribution is a SoftmaxNormal with m = ln theta + alpha (K e_x - 1), s^2 = alpha K
update = DiscreteUpdate(prior.logits, x, alpha)
theta = update.sample((50_000,))
print("E[theta'] (p_U samples):", theta.mean(0).numpy().round(3))
assert torch.allclose(theta.mean(0), torch.softmax(prior.logits + sender.sample((50_000,)), -1).mean(0), atol=0.01)

# the Bayesian flow at time t: softmax(y), y ~ N(beta (K e_x - 1), beta K I), beta(t) = beta_1 t^2
data_type = DiscreteData(num_classes=K, beta_1=2.0)
t = torch.tensor(0.6)
flow = DiscreteFlow(x, data_type.schedule.beta(t), num_classes=K)
print(f"beta(0.6) = {flow.beta:.2f}; E[theta_x] under p_F = {flow.sample((50_000,))[:, 2].mean():.3f}")

# the joint K-dimensional receiver and the registered KL: Monte Carlo for K > 2 ...
output = CategoricalOutput(probs=torch.tensor([0.1, 0.2, 0.6, 0.1]))
receiver = data_type.receiver(output, alpha)  # kl_samples = 16 draws per evaluation
estimates = torch.stack([kl_divergence(sender, receiver) for _ in range(2000)])
y = sender.sample((400_000,))
reference = (sender.log_prob(y) - receiver.log_prob(y)).mean()
print(f"K = 4: Monte Carlo KL {estimates.mean():.4f} +- {estimates.std() / 2000 ** 0.5:.4f}, reference {reference:.4f}")
assert abs(estimates.mean() - reference) < 5 * estimates.std() / 2000**0.5 + 0.005

# ... and exact (closed-form maximum + Gauss-Legendre) for K = 2. The paper's joint receiver, not a
# per-dimension product: K = 2, alpha = 0.81, p_O(true class) = 0.4 gives 0.399 (factorised: 0.471)
kl_2 = kl_divergence(DiscreteSender(torch.tensor(0), torch.tensor(0.81), 2),
                     CategoricalOutput(probs=torch.tensor([0.4, 0.6])).receiver(torch.tensor(0.81)))
print(f"K = 2, alpha = 0.81, p = 0.4: KL = {kl_2:.3f}")
assert abs(kl_2 - 0.399) < 5e-4

# the continuous-time rate lim KL/alpha = K/2 ||e_x - p_O||^2
rate = continuous_time_kl_rate(output, x)
assert torch.isclose(rate, K / 2 * ((torch.nn.functional.one_hot(x, K) - output.probs) ** 2).sum())
print(f"K/2 ||e_x - p_O||^2 = {rate:.4f}")
