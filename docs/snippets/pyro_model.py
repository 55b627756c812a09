"""Pyro example: SVI recovers the exact conjugate Bayesian update of the continuous input distribution."""

import pyro
import torch
from pyro.infer import SVI, Trace_ELBO
from torch.distributions import constraints

from pyro_bfn.distributions import NormalInput, NormalSender

y, alpha = torch.tensor([0.3, -1.2, 0.8]), torch.tensor(4.0)  # sender samples, accuracy alpha


def model(y):
    with pyro.plate("variables", len(y)):
        x = pyro.sample("x", NormalInput.prior((len(y),)))  # input distribution at the prior N(0, 1)
        pyro.sample("y", NormalSender(x, alpha), obs=y)  # sender p_S(y | x; alpha) = N(x, 1/alpha)


def guide(y):
    loc = pyro.param("loc", torch.zeros(len(y)))
    precision = pyro.param("precision", torch.ones(len(y)), constraint=constraints.positive)
    with pyro.plate("variables", len(y)):
        pyro.sample("x", NormalInput(loc, precision))


pyro.set_rng_seed(0)
pyro.clear_param_store()
elbo = Trace_ELBO(num_particles=32, vectorize_particles=True, max_plate_nesting=1)
svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), elbo)
for step in range(1500):
    svi.step(y)

# the exact posterior: one Bayesian update, rho' = 1 + alpha, mu' = alpha y / rho'
posterior = NormalInput.prior((3,)).update(y, alpha)
loc, precision = pyro.param("loc").detach(), pyro.param("precision").detach()
print("SVI  :", loc.numpy().round(2), precision.numpy().round(1))
print("exact:", posterior.loc.numpy().round(2), posterior.precision.numpy().round(1))
assert torch.allclose(loc, posterior.loc, atol=0.1)
assert torch.allclose(precision, posterior.precision, rtol=0.25)
