"""An infinite location is not a location: with validation on, each distribution whose density
it turns into NaN or inf refuses it with a ValueError naming the argument (finite constraints of
``pyro_bfn.distributions.util``); with validation off it is left alone."""

from __future__ import annotations

import math

import pytest
import torch

from pyro_bfn.distributions import DiscretisedOutput, DiscreteUpdate, PointMassOutput, SoftmaxNormal

f64 = torch.float64


@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_discretised_output_rejects_an_infinite_loc(value):
    with pytest.raises(ValueError, match=r"\bloc\b"):
        DiscretisedOutput(torch.tensor([0.0, value], dtype=f64), torch.ones(2, dtype=f64), 16)


@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_point_mass_output_rejects_an_infinite_x_hat(value):
    with pytest.raises(ValueError, match=r"\bx_hat\b"):
        PointMassOutput(torch.tensor([0.5, value], dtype=f64))


@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_softmax_normal_rejects_an_infinite_loc(value):
    with pytest.raises(ValueError, match=r"\bloc\b"):
        SoftmaxNormal(torch.tensor([0.0, value, 1.0], dtype=f64), torch.tensor(0.5, dtype=f64))


@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_discrete_update_rejects_infinite_input_logits(value):
    with pytest.raises(ValueError, match=r"\binput_logits\b"):
        DiscreteUpdate(torch.tensor([0.0, value, 1.0], dtype=f64), torch.tensor(1), torch.tensor(2.0, dtype=f64))


def test_finite_locations_and_unvalidated_ones_are_accepted():
    DiscretisedOutput(torch.tensor([-5.0, 5.0]), torch.ones(2), 16)
    PointMassOutput(torch.tensor([1e30]))
    SoftmaxNormal(torch.tensor([0.0, 1e30]), torch.tensor(1.0))
    DiscreteUpdate(torch.tensor([0.0, -1e30]), torch.tensor(0), torch.tensor(1.0))
    DiscretisedOutput(torch.tensor(math.inf), torch.tensor(1.0), 16, validate_args=False)
