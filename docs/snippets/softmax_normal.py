"""SoftmaxNormal: its log-density equals the additive-logistic-normal density derived in the docs."""

import math

import torch

from pyro_bfn.distributions import SoftmaxNormal

torch.set_default_dtype(torch.float64)
torch.manual_seed(0)
K = 4
m = torch.tensor([0.5, -1.0, 0.2, 0.3])
s = torch.tensor(0.8)
law = SoftmaxNormal(m, s)
theta = law.sample((5,))  # points on the simplex, shape (5, K)

# log-ratio coordinates w_j = ln(theta_j / theta_K) ~ N(m_j - m_K, s^2 (I + 1 1^T)), j < K
w = theta[:, :-1].log() - theta[:, -1:].log()
alr = torch.distributions.MultivariateNormal(m[:-1] - m[-1], s**2 * (torch.eye(K - 1) + torch.ones(K - 1, K - 1)))
# change of variables: |d w / d theta_{<K}| = prod_k 1 / theta_k over all K components
expected = alr.log_prob(w) - theta.log().sum(-1)
print("SoftmaxNormal.log_prob:", law.log_prob(theta).numpy().round(6))
print("ALR density           :", expected.numpy().round(6))
assert torch.allclose(law.log_prob(theta), expected)

# det(I + 1 1^T) = K and (I + 1 1^T)^-1 = I - 1 1^T / K
ones = torch.ones(K - 1, K - 1)
assert torch.isclose(torch.linalg.det(torch.eye(K - 1) + ones), torch.tensor(float(K)))
assert torch.allclose(torch.linalg.inv(torch.eye(K - 1) + ones), torch.eye(K - 1) - ones / K)

# for K = 2 the density in theta_1 integrates to one over (0, 1)
law_2 = SoftmaxNormal(torch.tensor([0.3, -0.5]), torch.tensor(1.5))
grid = torch.linspace(0, 1, 200_001)[1:-1]
density = law_2.log_prob(torch.stack([grid, 1 - grid], -1)).exp()
integral = torch.trapezoid(density, grid).item()
print(f"K = 2: integral of p(theta_1) over (0, 1) = {integral:.6f}")
assert math.isclose(integral, 1.0, abs_tol=1e-4)
