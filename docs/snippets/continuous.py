"""Continuous data: schedule, input, sender, update, flow, output, receiver, KL and losses."""

import torch
from torch.distributions import kl_divergence

from pyro_bfn.data_types import ContinuousData
from pyro_bfn.distributions import (
    NormalFlow,
    NormalInput,
    NormalSender,
    NormalUpdate,
    PointMassOutput,
    continuous_time_kl_rate,
)
from pyro_bfn.schedules import ContinuousSchedule

torch.manual_seed(0)
torch.set_default_dtype(torch.float64)

# accuracy schedule: beta(t) = sigma_1^(-2t) - 1, and the n-step accuracies add up to beta(1)
schedule = ContinuousSchedule(sigma_1=0.02)
alphas = schedule.step_accuracies(10)
print(f"sum alpha_i = {alphas.sum():.4f}, beta(1) = {schedule.beta(torch.tensor(1.0)):.4f}")
assert torch.allclose(alphas.sum(), schedule.beta(torch.tensor(1.0)))

# input distribution at the prior, one sender sample, one Bayesian update
x = torch.tensor([0.5, -0.3])
prior = NormalInput.prior((2,))  # N(0, 1): mu = 0, rho = 1
sender = NormalSender(x, alphas[0])  # N(x, 1/alpha)
y = sender.sample()
posterior = prior.update(y, alphas[0])  # rho' = rho + alpha, mu' = (rho mu + alpha y) / rho'
assert torch.allclose(posterior.precision, 1 + alphas[0])
assert torch.allclose(posterior.loc, alphas[0] * y / (1 + alphas[0]))

# Pyro's conjugate_update contract: f.log_prob(z) + g.log_prob(z) == fg.log_prob(z) + log_normalizer
updated, log_normalizer = prior.conjugate_update(sender.likelihood(y))
z = torch.tensor([0.1, 0.2])
assert torch.allclose(prior.log_prob(z) + sender.likelihood(y).log_prob(z), updated.log_prob(z) + log_normalizer)

# accuracies add: updates with alpha_1 then alpha_2 have the law of one update with alpha_1 + alpha_2
two_steps = NormalInput.prior((100_000,)).update(NormalSender(x[0], alphas[0]).sample((100_000,)), alphas[0])
two_steps = two_steps.update(NormalSender(x[0], alphas[1]).sample((100_000,)), alphas[1])
one_step = NormalUpdate(0.0, 1.0, x[0], alphas[0] + alphas[1])
print(f"two updates: mean {two_steps.loc.mean():.4f} sd {two_steps.loc.std():.4f}; "
      f"p_U with alpha_1 + alpha_2: mean {one_step.mean:.4f} sd {one_step.stddev:.4f}")
assert abs(two_steps.loc.mean() - one_step.mean) < 5e-3 and abs(two_steps.loc.std() - one_step.stddev) < 5e-3

# the Bayesian flow distribution at time t: N(gamma x, gamma (1 - gamma)), rho = 1 + beta(t)
t = torch.tensor(0.5)
flow = NormalFlow(x, schedule.beta(t))
assert torch.allclose(flow.mean, schedule.gamma(t) * x)
assert torch.allclose(flow.variance, schedule.gamma(t) * (1 - schedule.gamma(t)))

# output (a point mass at x_hat), receiver N(x_hat, 1/alpha), closed-form KL alpha/2 (x - x_hat)^2
x_hat = torch.tensor([0.4, -0.1])
receiver = PointMassOutput(x_hat).receiver(alphas[3])
kl = kl_divergence(NormalSender(x, alphas[3]), receiver)
print("KL(p_S || p_R) =", kl.numpy().round(6))
assert torch.allclose(kl, alphas[3] / 2 * (x - x_hat) ** 2)
assert torch.allclose(continuous_time_kl_rate(PointMassOutput(x_hat), x), (x - x_hat) ** 2 / 2)

# the data type ties it together: network noise prediction -> x_hat = mu/gamma - sqrt((1-gamma)/gamma) eps
data_type = ContinuousData(sigma_1=0.02)
theta = data_type.sample_input(x[None], t[None])  # theta ~ p_F(. | x; t), batch of one example
eps_hat = torch.zeros(1, 2, 1)  # a network output (B, *data_shape, 1)
output = data_type.output(eps_hat, theta, t[None])
gamma = schedule.gamma(t)
assert torch.allclose(output.x_hat, (theta.loc / gamma).clamp(-1, 1))
print("x_hat =", output.x_hat.numpy().round(4))
