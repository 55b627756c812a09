"""Discretised-data distributions far into the tails, against oracles that are exact there
(``tail_oracles``: mpmath at 50 digits for the bin masses and the receiver, and a 19-digit
quadrature on exact masses for the KL), compared in relative terms.

The bin masses used to be CDF differences, which underflow to 0 (float64 ``ndtr`` is 0 below
-8.3) and dropped the far bins from the receiver and the n-step KL; they are now log-masses.
Tolerances: a few eps per unit of ``1 + |ln p|`` (the rounding of the standardised edges enters
through ``z^2 / 2 ~ |ln p|``) plus what rounding the edges ``2k/K - 1`` themselves to floats can
move the result by (``exact_log_bin_masses``' sensitivity; zero when ``K`` is a power of two).
"""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch.distributions import kl_divergence

from pyro_bfn.data_types import DiscretisedData
from pyro_bfn.distributions import DiscretisedOutput, NormalSender, bin_centres
from strategies import accuracies, num_bins, reals
from tail_oracles import (
    EPS,
    exact_log_bin_masses,
    exact_log_mass_gradient,
    kl_lines,
    ld_expected_logsumexp,
    log_mass_tolerance,
    mp_expected_logsumexp,
)

f64 = torch.float64


def _examples(ci_count: int) -> int:
    """``ci_count`` examples in the ci profile (30 by default), proportionally more in ``explore``."""
    return max(1, ci_count * settings().max_examples // 30)
EPS32 = float(np.finfo(np.float32).eps)
#: The last step accuracy of sigma_1 = 1e-3 with n = 10 (the CIFAR-10 256-bin protocol); n = 1
#: gives the largest, 1e6 (1 - 1e-6).
ALPHA_LAST_STEP = 1e6 * -math.expm1(0.2 * math.log(1e-3))


def _t(value, dtype=f64):
    return torch.as_tensor(value, dtype=dtype)


def _output(loc, scale, k, dtype=f64):
    return DiscretisedOutput(_t(loc, dtype), _t(scale, dtype), k)


# the example of the issue: a 16-bin output whose first six masses underflowed to 0
ISSUE_LOC, ISSUE_SCALE, ISSUE_ALPHA = 0.7258321545426821, 0.03485529540734768, 498.8127663727276


@given(loc=st.one_of(reals(1.5), st.sampled_from([-1.0, 0.0, 1.0, 0.999])), scale=accuracies(1e-4, 1e4), k=num_bins())
@example(loc=ISSUE_LOC, scale=ISSUE_SCALE, k=16)
@example(loc=0.9, scale=1e-4, k=256)  # every mass but a few below 1e-300
@example(loc=-1.5, scale=1e-4, k=2)
@example(loc=0.3, scale=1e4, k=256)  # every bin narrow: CDF differences would cancel
@example(loc=0.0, scale=0.02, k=255)  # edges that are not floats
@example(loc=0.0, scale=0.01, k=16)  # found by explore: outer masses 4.6e-308 (normal) came out 0
def test_log_probs_match_mpmath_in_relative_terms(loc, scale, k):
    output = _output(loc, scale, k)
    exact, sensitivity = exact_log_bin_masses(loc, scale, k)
    expected = np.array([float(v) for v in exact])
    tolerance = log_mass_tolerance(exact, sensitivity)
    log_probs = output.log_probs
    assert log_probs.shape == (k,) and torch.isfinite(log_probs).all()
    error = np.abs(log_probs.numpy() - expected)
    assert (error <= tolerance).all(), np.max(error / tolerance)
    # log_prob (the float64 path of one bin) agrees, and so do the probabilities, relatively,
    # wherever they are normal numbers
    log_prob = output.log_prob(bin_centres(k, dtype=f64)).numpy()
    assert (np.abs(log_prob - expected) <= tolerance).all()
    normal = expected > math.log(np.finfo(np.float64).tiny)
    probs = output.probs.numpy()
    np.testing.assert_allclose(probs[normal], np.exp(expected[normal]), rtol=2 * tolerance.max(), atol=0)
    assert (probs[~normal] < 1e-300).all()
    assert abs(probs.sum() - 1) <= 4 * k * EPS


@settings(max_examples=_examples(15))
@given(loc=reals(1.5), scale=accuracies(1e-4, 1e3), k=num_bins(), bin_=st.integers(0, 255))
@example(loc=ISSUE_LOC, scale=ISSUE_SCALE, k=16, bin_=3)
@example(loc=0.3, scale=1e3, k=256, bin_=100)  # narrow bin: no cancellation between the edges
def test_log_prob_gradients_match_mpmath(loc, scale, k, bin_):
    """The analytic gradient of a log-mass in loc and scale against the exact one (mpmath, from
    the definition); relative error a few eps times the conditioning (|ln p| and the edges)."""
    bin_ = bin_ % k
    loc_, scale_ = _t(loc).requires_grad_(), _t(scale).requires_grad_()
    grads = torch.autograd.grad(DiscretisedOutput(loc_, scale_, k).log_probs[bin_], [loc_, scale_])
    exact = exact_log_mass_gradient(loc, scale, k, bin_)
    log_mass, sensitivity = (v[bin_] for v in exact_log_bin_masses(loc, scale, k))
    for grad, value in zip(grads, exact):
        # as well conditioned as the log-mass itself, relative to the gradient's natural scale
        bound = 64 * EPS * (1 + abs(float(log_mass)) + sensitivity) * (abs(value) + 1 / scale)
        assert abs(grad.item() - value) <= bound, (grad.item(), value)


@given(loc=reals(1.5), scale=accuracies(1e-3, 1e3), k=num_bins())
@example(loc=ISSUE_LOC, scale=ISSUE_SCALE, k=16)
@example(loc=0.9, scale=1e-3, k=256)
def test_float32_log_probs_are_right_to_float32_precision_with_finite_gradients(loc, scale, k):
    loc_, scale_ = _t(loc, torch.float32).requires_grad_(), _t(scale, torch.float32).requires_grad_()
    log_probs = DiscretisedOutput(loc_, scale_, k).log_probs
    assert log_probs.dtype == torch.float32 and torch.isfinite(log_probs).all()
    exact, sensitivity = exact_log_bin_masses(loc_.item(), scale_.item(), k)
    tolerance = log_mass_tolerance(exact, sensitivity) * (EPS32 / EPS)
    expected = np.array([float(v) for v in exact])
    # values of magnitude up to |z|^2 / 2 ~ 2e6: float32 rounds them to about 0.1
    assert (np.abs(log_probs.detach().double().numpy() - expected) <= tolerance).all()
    grads = torch.autograd.grad((log_probs * torch.linspace(-1, 1, k)).sum(), [loc_, scale_])
    assert all(torch.isfinite(g) for g in grads)


def test_the_issue_example_masses_and_kl():
    output = _output(ISSUE_LOC, ISSUE_SCALE, 16)
    # all six were 0.0 before; the first three are below the smallest float, their logs are not
    assert (output.probs[3:6] > 0).all() and torch.isfinite(output.log_probs).all()
    assert (output.log_probs[:3] < math.log(np.finfo(np.float64).tiny)).all()
    np.testing.assert_allclose(output.log_probs[3].item(), output.log_prob(_t(-0.5625)).item(), rtol=1e-14)
    np.testing.assert_allclose(output.log_prob(_t(-0.5625)).item(), -622.9155, atol=5e-5)
    alpha = _t(ISSUE_ALPHA)
    kl = kl_divergence(NormalSender(_t(-0.5625), alpha), output.receiver(alpha)).item()
    np.testing.assert_allclose(kl, 237.000727263281, rtol=1e-13)  # 273.2060 before
    exact = -ld_expected_logsumexp(*kl_lines(-0.5625, exact_log_bin_masses(ISSUE_LOC, ISSUE_SCALE, 16)[0], ISSUE_ALPHA))
    np.testing.assert_allclose(kl, float(exact), rtol=1e-14)


def test_the_longdouble_kl_oracle_agrees_with_mpmath():
    """The fast oracle of the KL tests against the mpmath one (tanh-sinh per envelope segment)."""
    cases = [
        (-0.5625, ISSUE_LOC, ISSUE_SCALE, 16, ISSUE_ALPHA),
        (0.3125, -0.6488, 0.09397, 16, 498.81),
        (0.0, 0.3, 0.2, 8, 30.0),
    ]
    for x, loc, scale, k, alpha in cases:
        lines = kl_lines(x, exact_log_bin_masses(loc, scale, k)[0], alpha)
        fast, slow = float(ld_expected_logsumexp(*lines)), float(mp_expected_logsumexp(*lines))
        assert abs(fast - slow) <= 1e-16 * abs(slow) + 1e-18, (fast, slow)


def _receiver_oracle(loc, scale, k, alpha, y):
    """ln p_R(y) = logsumexp_k(ln p_k + ln N(y; k_c, 1/alpha)) in mpmath, and the largest
    magnitude among its terms within 40 of the total (what float64 rounding is relative to)."""
    exact, _ = exact_log_bin_masses(loc, scale, k)
    with mp.workdps(50):
        alpha, y = mp.mpf(alpha), mp.mpf(y)
        squares = [alpha / 2 * (y - (mp.mpf(2 * j + 1) / k - 1)) ** 2 for j in range(k)]
        terms = [lp + mp.log(alpha) / 2 - mp.log(2 * mp.pi) / 2 - square for lp, square in zip(exact, squares)]
        total = mp.log(mp.fsum(mp.exp(t) for t in terms))
        scale_ = max(float(abs(lp) + square) for lp, square, t in zip(exact, squares, terms) if t > total - 40)
    return float(total), scale_


@given(
    loc=reals(1.5),
    scale=accuracies(1e-4, 1e3),
    k=num_bins(),
    alpha=st.one_of(accuracies(1e-4, 1e6), st.just(ALPHA_LAST_STEP)),
    y=reals(2.0),
)
@example(loc=ISSUE_LOC, scale=ISSUE_SCALE, k=16, alpha=ISSUE_ALPHA, y=-0.5625)
@example(loc=0.9, scale=1e-4, k=256, alpha=ALPHA_LAST_STEP, y=-0.3)
def test_receiver_log_prob_matches_mpmath(loc, scale, k, alpha, y):
    receiver = _output(loc, scale, k).receiver(_t(alpha))
    value = receiver.log_prob(_t(y)).item()
    expected, magnitude = _receiver_oracle(loc, scale, k, alpha, y)
    assert abs(value - expected) <= 64 * EPS * (1 + abs(expected) + magnitude) + 1e-13 * abs(expected), (value, expected)


def _kl_oracle(x, loc, scale, k, alpha):
    """The discretised KL from exact masses, and the magnitude of the intercepts that matter
    (within 40 of the largest): the KL is -E[logsumexp] of O(those) numbers."""
    lines = kl_lines(x, exact_log_bin_masses(loc, scale, k)[0], alpha)
    intercepts = np.array([float(v) for v in lines[0]])
    magnitude = np.abs(intercepts[intercepts > intercepts.max() - 40]).max()
    return float(-ld_expected_logsumexp(*lines)), magnitude


def _check_kl(x, loc, scale, k, alpha):
    output = _output(loc, scale, k)
    kl = kl_divergence(NormalSender(_t(x), _t(alpha)), output.receiver(_t(alpha))).item()
    expected, magnitude = _kl_oracle(x, loc, scale, k, alpha)
    assert abs(kl - expected) <= 1e-11 * abs(expected) + 64 * EPS * (1 + magnitude), (kl, expected)


@settings(max_examples=_examples(20))
@given(
    k=num_bins(),
    x_bin=st.integers(0, 255),
    loc=reals(1.2),
    scale=accuracies(1e-4, 10.0),
    alpha=st.one_of(accuracies(1e-4, 1e6), st.just(ALPHA_LAST_STEP)),
)
@example(k=16, x_bin=1, loc=ISSUE_LOC, scale=ISSUE_SCALE, alpha=ISSUE_ALPHA)
@example(k=16, x_bin=10, loc=-0.6488, scale=0.09397, alpha=498.81)  # came out 39.9776, too low
@example(k=256, x_bin=192, loc=-0.34, scale=0.05, alpha=ALPHA_LAST_STEP)
@example(k=256, x_bin=128, loc=0.9, scale=1e-4, alpha=ALPHA_LAST_STEP)
@example(k=2, x_bin=0, loc=1.2, scale=1e-4, alpha=1e6)
def test_discretised_kl_matches_the_exact_tails_oracle(k, x_bin, loc, scale, alpha):
    _check_kl(bin_centres(k, dtype=f64)[x_bin % k].item(), loc, scale, k, alpha)


# n-step loss terms n KL(p_S(x; alpha_i) || p_R(theta; t_{i-1}, alpha_i)) at extreme outputs,
# through the data type as BFN.loss builds them; the first three came out 459, 312 and 1,233
# times too large before (tail bins dropped), the K = 16 one 0.3% too low
@pytest.mark.parametrize(
    "k, sigma_1, n, i, x_bin, loc, scale",
    [
        (256, 1e-3, 10, 10, 192, -0.34, 0.05),
        (256, 1e-3, 10, 10, 200, -0.2, 0.06),
        (256, 1e-3, 10, 10, 10, 0.5, 0.07),
        (256, 1e-3, 10, 7, 255, -1.0, 1e-4),
        (256, 1e-3, 1000, 1000, 0, 1.0, 1e-3),
        (16, math.sqrt(1e-3), 10, 10, 10, -0.6488, 0.09397),
        (16, math.sqrt(1e-3), 100, 1, 3, 0.9, 1e-4),
    ],
)
def test_n_step_loss_terms_at_extreme_outputs_match_the_oracle(k, sigma_1, n, i, x_bin, loc, scale):
    data_type = DiscretisedData(k, sigma_1)
    alpha = data_type.schedule.step_accuracy(torch.tensor(i), n, dtype=f64)
    x = bin_centres(k, dtype=f64)[x_bin]
    receiver = data_type.receiver(_output(loc, scale, k), alpha)
    term = n * kl_divergence(NormalSender(x, alpha), receiver).item()
    expected, magnitude = _kl_oracle(x.item(), loc, scale, k, alpha.item())
    assert abs(term - n * expected) <= n * (1e-12 * abs(expected) + 64 * EPS * (1 + magnitude)), (term, n * expected)
