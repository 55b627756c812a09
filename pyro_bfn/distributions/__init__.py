"""BFN distributions (paper Sec. 2) for continuous, discretised and discrete data.

Importing this package registers the sender/receiver KL divergences
(:mod:`pyro_bfn.distributions.kl`). It imports no network code.
"""

from .continuous import (
    NormalFlow,
    NormalInput,
    NormalReceiver,
    NormalSender,
    NormalUpdate,
    PointMassOutput,
    bayesian_update,
)
from .discrete import (
    CategoricalInput,
    CategoricalOutput,
    DiscreteReceiver,
    DiscreteSender,
    sender_mean,
)
from .softmax_normal import DiscreteFlow, DiscreteUpdate, SoftmaxNormal
from .discretised import DiscretisedOutput, DiscretisedReceiver, bin_centres, bin_index
from .kl import continuous_time_kl_rate, kl_discrete_monte_carlo
from .normal_expectations import QUADRATURE_NODES, expected_logaddexp_normal, expected_neg_logsumexp_affine

__all__ = [
    "CategoricalInput",
    "CategoricalOutput",
    "DiscreteFlow",
    "DiscreteReceiver",
    "DiscreteSender",
    "DiscreteUpdate",
    "DiscretisedOutput",
    "DiscretisedReceiver",
    "QUADRATURE_NODES",
    "NormalFlow",
    "NormalInput",
    "NormalReceiver",
    "NormalSender",
    "NormalUpdate",
    "PointMassOutput",
    "SoftmaxNormal",
    "bayesian_update",
    "bin_centres",
    "bin_index",
    "continuous_time_kl_rate",
    "expected_logaddexp_normal",
    "expected_neg_logsumexp_affine",
    "kl_discrete_monte_carlo",
    "sender_mean",
]
