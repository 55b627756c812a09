"""Accuracy schedules (paper Secs. 3.5, 4, 5.5) against independent numpy closed forms.

Tolerances are derived from float64 rounding: ``exp(z)`` of an argument ``z`` that carries a
relative rounding error of a few ulps has a relative error of about ``(1 + |z|) * eps``, and a
sum of ``n`` terms adds at most ``n * eps`` (relative).
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from pyro_bfn.schedules import ContinuousSchedule, DiscreteSchedule

from strategies import beta_1s, sigma_1s, times

EPS64 = float(np.finfo(np.float64).eps)
steps = st.one_of(st.sampled_from([1, 2, 10, 1000]), st.integers(1, 2000))


def _exp_rtol(sigma_1):
    """Relative rounding error bound of sigma_1^(+-2t) for t in [0, 1], in float64."""
    return 8 * (1 + abs(2 * math.log(sigma_1))) * EPS64


@given(sigma_1=sigma_1s(), n=steps)
@example(sigma_1=1e-3, n=10)  # step_accuracies(dtype=float64) used to be computed in float32
def test_continuous_step_accuracies_sum_to_beta_1(sigma_1, n):
    schedule = ContinuousSchedule(sigma_1)
    alphas = schedule.step_accuracies(n, dtype=torch.float64)
    assert alphas.dtype == torch.float64 and alphas.shape == (n,)
    assert (alphas > 0).all()
    expected = sigma_1**-2.0 - 1.0  # numpy/python closed form, independent of the library
    rtol = (2 * n) * EPS64 + 2 * _exp_rtol(sigma_1)
    assert abs(alphas.sum().item() - expected) <= rtol * (1 + expected)
    beta_1 = schedule.beta(torch.tensor(1.0, dtype=torch.float64)).item()
    assert abs(beta_1 - expected) <= _exp_rtol(sigma_1) * (1 + expected)


@given(beta_1=beta_1s(), n=steps)
def test_discrete_step_accuracies_sum_to_beta_1(beta_1, n):
    alphas = DiscreteSchedule(beta_1).step_accuracies(n, dtype=torch.float64)
    assert alphas.shape == (n,) and (alphas > 0).all()
    np.testing.assert_allclose(alphas.sum().item(), beta_1, rtol=4 * n * EPS64)
    i = np.arange(1, n + 1)
    np.testing.assert_allclose(alphas.numpy(), beta_1 * (2 * i - 1) / n**2, rtol=4 * EPS64)


@given(sigma_1=sigma_1s(), n=steps)
def test_continuous_step_accuracy_is_beta_difference(sigma_1, n):
    schedule = ContinuousSchedule(sigma_1)
    alphas = schedule.step_accuracies(n, dtype=torch.float64).numpy()
    i = np.arange(1, n + 1)
    beta_hi = schedule.beta(torch.tensor(i / n, dtype=torch.float64)).numpy()
    beta_lo = schedule.beta(torch.tensor((i - 1) / n, dtype=torch.float64)).numpy()
    # the difference of two betas cancels: absolute error ~ rounding error of beta(i/n)
    atol = 4 * _exp_rtol(sigma_1) * (1 + beta_hi)
    assert np.all(np.abs(alphas - (beta_hi - beta_lo)) <= atol)
    # the paper's closed form sigma_1^(-2i/n) (1 - sigma_1^(2/n)), evaluated in numpy
    closed = sigma_1 ** (-2.0 * i / n) * (1 - sigma_1 ** (2.0 / n))
    assert np.all(np.abs(alphas - closed) <= atol)


@given(beta_1=beta_1s(), n=steps)
def test_discrete_step_accuracy_is_beta_difference(beta_1, n):
    schedule = DiscreteSchedule(beta_1)
    i = torch.arange(1, n + 1)
    alphas = schedule.step_accuracy(i, n, dtype=torch.float64).numpy()
    t = i.double() / n
    diff = (schedule.beta(t) - schedule.beta(t - 1.0 / n)).numpy()
    np.testing.assert_allclose(alphas, diff, rtol=0, atol=8 * EPS64 * beta_1)


def _finite_difference_check(schedule, t, third_derivative_bound, beta_bound):
    """alpha(t) against the central difference of beta with step h; the error bound is the
    truncation term h^2/6 max|beta'''| plus the rounding term (rounding error of beta) / h."""
    h = 1e-5
    t = min(max(t, h), 1 - h)
    tt = torch.tensor([t - h, t, t + h], dtype=torch.float64)
    beta = schedule.beta(tt).numpy()
    derivative = (beta[2] - beta[0]) / (2 * h)
    alpha = schedule.alpha(tt[1:2]).item()
    tol = h**2 / 6 * third_derivative_bound + 2 * beta_bound / h
    assert abs(alpha - derivative) <= tol, (alpha, derivative, tol)


@given(sigma_1=sigma_1s(), t=times())
def test_continuous_alpha_is_derivative_of_beta(sigma_1, t):
    schedule = ContinuousSchedule(sigma_1)
    c = -2 * math.log(sigma_1)
    top = math.exp(c * min(t + 2e-5, 1.0))
    _finite_difference_check(schedule, t, c**3 * top, _exp_rtol(sigma_1) * (1 + top))
    # and the closed form -2 ln(sigma_1) sigma_1^(-2t)
    alpha = schedule.alpha(torch.tensor(t, dtype=torch.float64)).item()
    assert abs(alpha - c * sigma_1 ** (-2 * t)) <= _exp_rtol(sigma_1) * c * sigma_1 ** (-2 * t)


@given(beta_1=beta_1s(), t=times())
def test_discrete_alpha_is_derivative_of_beta(beta_1, t):
    schedule = DiscreteSchedule(beta_1)
    _finite_difference_check(schedule, t, 0.0, 4 * EPS64 * beta_1)
    np.testing.assert_allclose(schedule.alpha(torch.tensor(t, dtype=torch.float64)).item(), 2 * beta_1 * t, rtol=4 * EPS64)


@given(sigma_1=sigma_1s(), t=times())
def test_continuous_gamma_is_beta_over_one_plus_beta(sigma_1, t):
    schedule = ContinuousSchedule(sigma_1)
    tt = torch.tensor(t, dtype=torch.float64)
    beta = schedule.beta(tt).item()
    gamma = schedule.gamma(tt).item()
    assert 0.0 <= gamma < 1.0
    rtol = 4 * _exp_rtol(sigma_1)
    assert abs(gamma - beta / (1 + beta)) <= rtol * gamma + 1e-300
    assert abs(gamma - (1 - sigma_1 ** (2 * t))) <= rtol * gamma + 2 * EPS64
    np.testing.assert_allclose(beta, math.expm1(-2 * t * math.log(sigma_1)), rtol=rtol, atol=0)


@given(sigma_1=sigma_1s(), t=times(), shape=st.sampled_from([(), (3,), (2, 1, 2)]))
def test_continuous_schedule_float32_extremes_finite_with_gradients(sigma_1, t, shape):
    schedule = ContinuousSchedule(sigma_1)
    tt = torch.full(shape, t, dtype=torch.float32, requires_grad=True)
    for fn in (schedule.beta, schedule.alpha, schedule.gamma):
        value = fn(tt)
        assert value.shape == shape and value.dtype == torch.float32
        assert torch.isfinite(value).all() and (value >= 0).all()
        (grad,) = torch.autograd.grad(value.sum(), tt)
        assert torch.isfinite(grad).all()
    alphas = schedule.step_accuracies(1000)
    assert alphas.dtype == torch.float32 and torch.isfinite(alphas).all() and (alphas > 0).all()


@given(beta_1=beta_1s(), t=times())
def test_discrete_schedule_float32_finite(beta_1, t):
    schedule = DiscreteSchedule(beta_1)
    tt = torch.tensor(t, dtype=torch.float32, requires_grad=True)
    for fn in (schedule.beta, schedule.alpha):
        value = fn(tt)
        assert torch.isfinite(value) and value >= 0
        (grad,) = torch.autograd.grad(value, tt)
        assert torch.isfinite(grad)


@pytest.mark.parametrize("sigma_1", [0.0, 1.0, -0.5, math.nan, 1.5, math.inf, "0.5", None])
def test_invalid_sigma_1(sigma_1):
    with pytest.raises(ValueError, match="sigma_1"):
        ContinuousSchedule(sigma_1)


@pytest.mark.parametrize("beta_1", [0.0, -1.0, math.nan, math.inf, "9", None])
def test_invalid_beta_1(beta_1):
    with pytest.raises(ValueError, match="beta_1"):
        DiscreteSchedule(beta_1)


@pytest.mark.parametrize("schedule", [ContinuousSchedule(0.02), DiscreteSchedule(9.0)])
@pytest.mark.parametrize(
    "t",
    [-1e-9, 1.0 + 1e-6, math.nan, torch.tensor([0.5, math.nan]), torch.tensor([0.2, 1.5]), torch.tensor([0, 1])],
)
def test_invalid_time(schedule, t):
    methods = [schedule.beta, schedule.alpha] + ([schedule.gamma] if hasattr(schedule, "gamma") else [])
    for method in methods:
        with pytest.raises(ValueError, match=r"\bt\b"):
            method(t)


@pytest.mark.parametrize("schedule", [ContinuousSchedule(0.02), DiscreteSchedule(9.0)])
@pytest.mark.parametrize("n_steps", [0, -3, 2.0, 2.5, "10", True, None])
def test_invalid_n_steps(schedule, n_steps):
    with pytest.raises(ValueError, match="n_steps"):
        schedule.step_accuracies(n_steps)
    with pytest.raises(ValueError, match="n_steps"):
        schedule.step_accuracy(torch.tensor([1]), n_steps)


@pytest.mark.parametrize("schedule", [ContinuousSchedule(0.02), DiscreteSchedule(9.0)])
@pytest.mark.parametrize("i", [torch.tensor([0]), torch.tensor([11]), torch.tensor([1.0])])
def test_invalid_step_index(schedule, i):
    with pytest.raises(ValueError, match="step index i"):
        schedule.step_accuracy(i, 10)
