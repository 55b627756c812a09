"""The registered KL divergences (pyro_bfn.distributions.kl) against scipy.integrate.

Every oracle integrates :math:`p_S(y) \\ln(p_S(y) / p_R(y))` with densities written from the
paper's definitions in numpy/scipy (never the library's formulas):

* continuous data: 1-D ``quad`` against the closed form;
* discretised data: 1-D ``quad`` over ``y``, split at the bin centres and midpoints;
* discrete data, K = 2: all component means lie on the line ``y_0 + y_1 = 0`` and the covariance
  is isotropic, so the coordinate ``y_0 + y_1`` has the same law under the sender and every
  receiver component and drops out of the KL: a 1-D ``quad`` over ``d = (y_1 - y_0) / sqrt 2``;
* discrete data, K = 3: the same reduction removes ``y_0 + y_1 + y_2``: ``dblquad`` over an
  orthonormal basis of the plane ``sum(y) = 0`` (covariance ``alpha K I_2`` there).

The K > 2 Monte Carlo estimate is checked for unbiasedness with a CLT tolerance (``Z = 5``
standard errors from the sample standard deviation, two-sided tail probability 6e-7 per check,
fixed seeds). Quadrature tolerances are the documented accuracy of the library's integrals
(``KL_RTOL``) plus the oracle's own error estimate.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import integrate, special, stats
from torch.distributions import kl_divergence

from pyro_bfn.distributions import (
    CategoricalOutput,
    DiscreteReceiver,
    DiscreteSender,
    DiscretisedOutput,
    DiscretisedReceiver,
    NormalReceiver,
    NormalSender,
    PointMassOutput,
    bin_centres,
    continuous_time_kl_rate,
    expected_logaddexp_normal,
    expected_neg_logsumexp_affine,
    kl_discrete_monte_carlo,
)
from pyro_bfn.schedules import ContinuousSchedule, DiscreteSchedule
from strategies import accuracies, batch_shapes, beta_1s, num_bins, reals, sigma_1s, times

Z = 5.0
#: Accuracy of the quadrature KLs: exact bends plus Gauss-Legendre on a smooth rest, measured
#: ~1e-11 on adversarial cases (benchmarks/results/kl_accuracy.md); 1e-9 relative to the
#: magnitudes summed (the intercepts a_m are of order alpha d^2 / 2, so rounding alone is
#: eps * max|a_m| absolute).
KL_RTOL = 1e-9
EPS = float(np.finfo(np.float64).eps)
f64 = torch.float64


def _t(value, dtype=f64):
    return torch.as_tensor(value, dtype=dtype)


def _pieces(lower, upper, points):
    knots = np.unique(np.concatenate([[lower, upper], [p for p in points if lower < p < upper]]))
    return zip(knots[:-1], knots[1:])


def _quad_kl_1d(log_sender, log_receiver, loc, sd, points=()):
    """KL = int p_S log(p_S / p_R) over loc +- 12 sd (sender mass outside: 4e-33), split at ``points``;
    returns (value, error estimate)."""

    def integrand(y):
        log_s = log_sender(y)
        return math.exp(log_s) * (log_s - log_receiver(y))

    value = error = 0.0
    for lo, hi in _pieces(loc - 12 * sd, loc + 12 * sd, points):
        v, e = integrate.quad(integrand, lo, hi, limit=200, epsabs=1e-14, epsrel=1e-12)
        value, error = value + v, error + e
    return value, error


def quad_kl_discretised(x, probs, alpha):
    """KL(N(x, 1/alpha) || sum_k probs_k N(k_c, 1/alpha)) by quad over y."""
    probs = np.asarray(probs, dtype=np.float64)
    centres = (2 * np.arange(len(probs)) + 1) / len(probs) - 1
    sd = 1 / math.sqrt(alpha)
    positive = probs > 0
    log_probs, means = np.log(probs[positive]), centres[positive]
    # kinks of the log mixture: where neighbouring components cross (midpoints, shifted by the
    # log-probability ratio); the centres and midpoints within the window, when few enough
    crossings = (means[:-1] + means[1:]) / 2 + (log_probs[:-1] - log_probs[1:]) / (alpha * np.diff(means))
    points = np.concatenate([means, crossings, [x]])
    points = points[np.abs(points - x) < 12 * sd]
    if len(points) > 150:
        points = points[:: len(points) // 150 + 1]
    return _quad_kl_1d(
        lambda y: stats.norm.logpdf(y, x, sd),
        lambda y: special.logsumexp(log_probs + stats.norm.logpdf(y, means, sd)),
        x,
        sd,
        points,
    )


def quad_kl_discrete_k2(p_true, alpha):
    """K = 2, true class 0 (by symmetry), receiver probabilities (p_true, 1 - p_true): along
    d = (y_1 - y_0)/sqrt 2 the sender is N(-sqrt2 alpha, 2 alpha) and the receiver the mixture
    p_true N(-sqrt2 alpha, 2 alpha) + (1 - p_true) N(+sqrt2 alpha, 2 alpha)."""
    sd, m = math.sqrt(2 * alpha), math.sqrt(2) * alpha
    log_w = np.log([p_true, 1 - p_true]) if 0 < p_true < 1 else None
    crossing = (math.log(p_true) - math.log1p(-p_true)) * sd**2 / (2 * m) if log_w is not None else -m
    return _quad_kl_1d(
        lambda d: stats.norm.logpdf(d, -m, sd),
        lambda d: special.logsumexp(log_w + stats.norm.logpdf(d, [-m, m], sd)),
        -m,
        sd,
        [crossing],
    )


_PLANE = np.array([[1.0, -1.0, 0.0], [1.0, 1.0, -2.0]]) / np.sqrt([[2.0], [6.0]])  # orthonormal, sum 0


def dblquad_kl_discrete_k3(x, probs, alpha, epsabs=1e-9, epsrel=1e-7):
    """K = 3: dblquad over the plane sum(y) = 0 (the orthogonal coordinate drops out); returns
    (value, error estimate)."""
    k = 3
    means = (alpha * (k * np.eye(k) - 1) @ _PLANE.T).tolist()  # component means in the plane
    var = alpha * k
    log_probs = np.log(probs).tolist()
    centre = means[x]
    log_norm = -math.log(2 * math.pi * var)

    def integrand(z2, z1):  # scalar arithmetic: dblquad calls it ~1e5 times
        log_c = [lp + log_norm - ((z1 - m1) ** 2 + (z2 - m2) ** 2) / (2 * var) for lp, (m1, m2) in zip(log_probs, means)]
        top = max(log_c)
        log_r = top + math.log(sum(math.exp(v - top) for v in log_c))
        log_s = log_norm - ((z1 - centre[0]) ** 2 + (z2 - centre[1]) ** 2) / (2 * var)
        return math.exp(log_s) * (log_s - log_r)

    half = 10 * math.sqrt(var)  # sender mass outside the square < 4e-23
    return integrate.dblquad(
        integrand, centre[0] - half, centre[0] + half, centre[1] - half, centre[1] + half, epsabs=epsabs, epsrel=epsrel
    )


# ---------------------------------------------------------------------------------------------
# continuous data: closed form vs quad


@given(x=reals(3), x_hat=reals(3), alpha=accuracies(1e-6, 1e6))
@example(x=1.0, x_hat=-1.0, alpha=1e6)
@example(x=0.3, x_hat=0.3, alpha=1e-6)
def test_normal_kl_closed_form_matches_quad(x, x_hat, alpha):
    sd = 1 / math.sqrt(alpha)
    expected, error = _quad_kl_1d(
        lambda y: stats.norm.logpdf(y, x, sd), lambda y: stats.norm.logpdf(y, x_hat, sd), x, sd, [x_hat]
    )
    kl = kl_divergence(NormalSender(_t(x), _t(alpha)), NormalReceiver(_t(x_hat), _t(alpha)))
    np.testing.assert_allclose(kl.item(), 0.5 * alpha * (x - x_hat) ** 2, rtol=4 * EPS)
    assert abs(kl.item() - expected) <= 1e-10 * (1 + expected) + 10 * error


# ---------------------------------------------------------------------------------------------
# discretised data: quadrature vs quad


@st.composite
def _bin_probabilities(draw, k):
    """Output probabilities over k bins: a discretised Normal, or a random (possibly confident,
    possibly wrong, possibly with empty bins) vector."""
    kind = draw(st.sampled_from(["normal", "random", "one_hot_neighbour"]))
    if kind == "normal":
        loc, scale = draw(reals(1.2)), draw(accuracies(1e-3, 3.0))
        return DiscretisedOutput(_t(loc), _t(scale), k).probs.numpy()
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "random":
        probs = rng.dirichlet(np.full(k, draw(st.sampled_from([0.1, 1.0, 10.0]))))
    else:
        probs = np.full(k, 1e-6 / k)
        probs[rng.integers(k)] += 1.0
    return probs / probs.sum()


@st.composite
def _discretised_cases(draw):
    """(K, alpha, output probabilities, index of the data's bin)."""
    k = draw(num_bins(2, 256))
    return k, draw(accuracies(1e-3, 1e7)), draw(_bin_probabilities(k)).tolist(), draw(st.integers(0, k - 1))


@settings(max_examples=25)
@given(case=_discretised_cases())
# 64-node Gauss-Hermite (before e5735fb) missed these by 6.1e-4 and 4.2e-5: kinks in the bulk
@example(case=(3, 36.0, [0.838026161973838, 1e-6, 0.161972838027162], 1))
@example(
    case=(16, 576.0, [0.001747, 0.012927, 0.001487, 0.050936, 0.104703, 0.279682, 0.08026, 0.240695,
                      0.004432, 0.000263, 0.165778, 0.003165, 0.002895, 1e-06, 7.4e-05, 0.050955], 13)
)
@example(case=(3, 36.0, [0.05, 0.005, 0.945], 1))  # old error 1.1e-6
@example(case=(4, 1.0, [0.0, 1.0, 0.0, 0.0], 1))  # empty bins: NaN gradient of ln 0 before e5735fb
def test_discretised_kl_matches_quad(case):
    k, alpha, probs, x_bin = case
    probs = np.asarray(probs, dtype=np.float64)
    centres = bin_centres(k, dtype=f64)
    receiver = DiscretisedReceiver(_t(probs), _t(alpha))
    kl = kl_divergence(NormalSender(centres[x_bin], _t(alpha)), receiver).item()
    expected, error = quad_kl_discretised(centres[x_bin].item(), probs, alpha)
    # rounding: eps times the intercepts ln p_k - alpha/2 (x - k_c)^2 of the components that
    # matter, at most ~alpha * 4 / 2 in magnitude
    scale = 1 + abs(expected) + 2 * alpha * EPS / KL_RTOL
    assert abs(kl - expected) <= KL_RTOL * scale + 10 * error, (kl, expected, error)


# ---------------------------------------------------------------------------------------------
# E[ln(1 + e^u)], u ~ N(mu, sigma^2): the building block of the K = 2 and discretised KLs


def _quad_normal_expectation(f, mu, sigma):
    """E[f(u)], u ~ N(mu, sigma^2), by quad in the standardised eps = (u - mu) / sigma over
    |eps| <= 12 (the Normal mass beyond: 4e-33), split at the kink eps = -mu / sigma of
    ln(1 + e^u)'s pieces when it lies inside; returns (value, error estimate)."""
    kink = -mu / sigma
    points = [kink] if -12 < kink < 12 else None
    value, error = integrate.quad(
        lambda eps: f(mu + sigma * eps) * stats.norm.pdf(eps), -12.0, 12.0, points=points, limit=500, epsabs=1e-15, epsrel=1e-13
    )
    return value, error


@given(mu=st.floats(-60, 60), log_sigma=st.floats(math.log(1e-4), math.log(200)))
@example(mu=0.0, log_sigma=0.0)  # the kink at the mean
@example(mu=-1.0, log_sigma=0.0)  # |mu| / sigma = k sigma for k = 1: the branch point of T_1
@example(mu=1.0, log_sigma=math.log(1e-4))  # a sharp Gaussian far from the kink, relative to sigma
@example(mu=0.3, log_sigma=math.log(3.0))
@example(mu=16.0, log_sigma=-5.0)  # d/dsigma = sigma sigmoid'(16) = 7.6e-10: the oracle must not cancel
@example(mu=32.0, log_sigma=-7.234375)  # found by the explore profile: quad over u (not eps) was off by 6e-11
@example(mu=0.0078125, log_sigma=-5.0)  # found by the explore profile: float32 gradient rounding ~ eps / sigma
def test_expected_logaddexp_normal_matches_quad(mu, log_sigma):
    """Value and both gradients against quad: d/dmu = E[sigmoid(u)] and, by Stein's lemma,
    d/dsigma = E[eps sigmoid(u)] = sigma E[sigmoid'(u)] (a positive integrand, so quad keeps its
    relative precision where E[eps sigmoid(u)] would cancel); float64 within 1e-12 (the series
    bound is 1e-16), float32 within its rounding (a few eps times the magnitudes involved). The
    gradients are those of a sum of pieces that each vary on the scale sigma while their sum
    varies on the scale 1, so their rounding error grows like eps / sigma: the gradient
    tolerances carry that factor (measured: float32, sigma = 1e-4: 6e-4; sigma = 1e-2: 4e-6)."""
    sigma = math.exp(log_sigma)
    value, error = _quad_normal_expectation(lambda u: np.logaddexp(0.0, u), mu, sigma)
    d_mu, error_mu = _quad_normal_expectation(special.expit, mu, sigma)
    d_sigma, error_sigma = _quad_normal_expectation(lambda u: sigma * special.expit(u) * special.expit(-u), mu, sigma)
    for dtype, tolerance in ((f64, 1e-12), (torch.float32, 8 * float(torch.finfo(torch.float32).eps))):
        loc = _t(mu, dtype).requires_grad_()
        scale = _t(sigma, dtype).requires_grad_()
        result = expected_logaddexp_normal(loc, scale)
        result.backward()
        magnitude = 1 + abs(mu) + sigma
        gradient_tolerance = tolerance * (1 + 1 / sigma)
        assert abs(result.item() - value) <= tolerance * magnitude + 10 * error, (dtype, result.item(), value)
        assert abs(loc.grad.item() - d_mu) <= gradient_tolerance + 10 * error_mu, (dtype, loc.grad.item(), d_mu)
        assert abs(scale.grad.item() - d_sigma) <= gradient_tolerance + 10 * error_sigma, (dtype, scale.grad.item(), d_sigma)


def test_expected_logaddexp_normal_series_weights_meet_their_bound():
    """The accelerated alternating series reproduces S = ln 2 = 1 - 1/2 + 1/3 - ... (c_j = 1/(j+1),
    the moments of ds on [0, 1]) within its proven bound 2 S / 5.83^n, and the term counts are
    the documented 10 (float32) and 22 (float64)."""
    from pyro_bfn.distributions.normal_expectations import _alternating_series_weights

    for dtype, count in ((torch.float32, 10), (torch.float64, 22)):
        weights = _alternating_series_weights(dtype)
        assert len(weights) == count
        j = np.arange(count)
        bound = 2 * math.log(2) / (3 + math.sqrt(8)) ** count
        assert abs(np.sum(weights / (j + 1)) - math.log(2)) <= bound + 4 * EPS


# ---------------------------------------------------------------------------------------------
# discrete data, K = 2: quadrature vs quad; the design's regression figures


@given(p_true=st.floats(1e-6, 1 - 1e-6), alpha=accuracies(1e-4, 1e4), x=st.integers(0, 1))
@example(p_true=0.4, alpha=0.81, x=0)
@example(p_true=1e-6, alpha=3.0, x=1)  # confident and wrong at moderate accuracy: the kink in the bulk
def test_discrete_k2_kl_matches_quad(p_true, alpha, x):
    probs = torch.tensor([p_true, 1 - p_true] if x == 0 else [1 - p_true, p_true], dtype=f64)
    receiver = DiscreteReceiver(probs.log(), _t(alpha))
    kl = kl_divergence(DiscreteSender(torch.tensor(x), _t(alpha), 2), receiver).item()
    expected, error = quad_kl_discrete_k2(p_true, alpha)
    assert abs(kl - expected) <= KL_RTOL * (1 + abs(expected) + 2 * alpha) + 10 * error, (kl, expected)


def _factorised_k2_kl(p_true, alpha):
    """The reference code's per-dimension receiver: each y_k its own 1-D mixture
    sum_j p_j N(y_k; alpha (2 delta_jk - 1), 2 alpha); the KL is a sum of two 1-D quads."""
    sd, probs = math.sqrt(2 * alpha), np.array([p_true, 1 - p_true])
    total = 0.0
    for dim in range(2):
        means = alpha * (2 * (np.arange(2) == dim) - 1)  # component j's mean in dimension dim
        value, _ = _quad_kl_1d(
            lambda y: stats.norm.logpdf(y, means[0], sd),  # the sender (true class 0)
            lambda y: special.logsumexp(np.log(probs) + stats.norm.logpdf(y, means, sd)),
            means[0],
            sd,
            [0.0],
        )
        total += value
    return total


@pytest.mark.parametrize("p_true, joint, factorised", [(0.4, 0.399, 0.471), (0.5, 0.291, 0.339)])
def test_design_pitfall_figures_joint_not_factorised(p_true, joint, factorised):
    """DESIGN.md Sec. 4: K = 2, alpha = 0.81: the joint receiver's KL, not the factorised one."""
    alpha = _t(0.81)
    receiver = CategoricalOutput(probs=torch.tensor([p_true, 1 - p_true], dtype=f64)).receiver(alpha)
    kl = kl_divergence(DiscreteSender(torch.tensor(0), alpha, 2), receiver).item()
    assert round(kl, 3) == joint
    assert abs(kl - quad_kl_discrete_k2(p_true, 0.81)[0]) < 1e-10
    oracle_factorised = _factorised_k2_kl(p_true, 0.81)
    assert round(oracle_factorised, 3) == factorised
    assert oracle_factorised - kl > 0.04
    # the Monte Carlo estimator (used for K > 2) agrees at K = 2 within its CLT tolerance
    torch.manual_seed(0)
    n = 40_000
    estimates = kl_discrete_monte_carlo(
        DiscreteSender(torch.zeros(n, dtype=torch.long), alpha, 2), receiver.expand((n,)), 1
    )
    assert abs(estimates.mean().item() - kl) <= Z * estimates.std().item() / math.sqrt(n)


# ---------------------------------------------------------------------------------------------
# discrete data, K > 2: Monte Carlo unbiasedness


@settings(max_examples=8)
@given(alpha=accuracies(0.02, 3.0), x=st.integers(0, 2), seed=st.integers(0, 2**31 - 1))
@example(alpha=0.81, x=1, seed=0)
def test_discrete_k3_monte_carlo_is_unbiased_against_dblquad(alpha, x, seed):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(3))
    expected, error = dblquad_kl_discrete_k3(x, probs, alpha)
    torch.manual_seed(seed % 10_000)
    n = 20_000
    sender = DiscreteSender(torch.full((n,), x), _t(alpha), 3)
    receiver = DiscreteReceiver(torch.tensor(probs).log(), _t(alpha), kl_samples=1).expand((n,))
    estimates = kl_divergence(sender, receiver)  # n independent one-sample estimates
    assert estimates.shape == (n,)
    tolerance = Z * estimates.std().item() / math.sqrt(n) + 10 * error
    assert abs(estimates.mean().item() - expected) <= tolerance, (estimates.mean().item(), expected, tolerance)
    # kl_samples = S averages S draws: same expectation, variance / S
    pooled = kl_divergence(DiscreteSender(torch.tensor(x), _t(alpha), 3), DiscreteReceiver(torch.tensor(probs).log(), _t(alpha), kl_samples=n))
    assert abs(pooled.item() - expected) <= tolerance


def _numpy_monte_carlo_kl(x, probs, alpha, n, rng):
    """Independent estimate from the densities: y ~ p_S, ln p_S(y) - ln p_R(y) with every
    component written out (scipy logsumexp over the K isotropic Normal log-densities)."""
    k = len(probs)
    means = alpha * (k * np.eye(k) - 1)
    y = means[x] + math.sqrt(alpha * k) * rng.standard_normal((n, k))
    sq = lambda m: ((y - m) ** 2).sum(-1) / (2 * alpha * k)  # noqa: E731
    log_s = -sq(means[x])
    log_r = special.logsumexp(np.log(probs)[None, :] - np.stack([sq(m) for m in means], axis=1), axis=1)
    return log_s - log_r  # the normalising constants are shared and cancel


@settings(max_examples=6)
@given(k=st.sampled_from([4, 5, 27, 256]), alpha=accuracies(1e-3, 1.0), seed=st.integers(0, 2**31 - 1))
@example(k=256, alpha=1.0, seed=1)
def test_discrete_monte_carlo_unbiased_against_independent_estimate(k, alpha, seed):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(k))
    x = int(rng.integers(k))
    n = 4000 if k == 256 else 20_000
    reference = _numpy_monte_carlo_kl(x, probs, alpha, n, rng)
    torch.manual_seed(seed % 10_000)
    estimates = kl_discrete_monte_carlo(
        DiscreteSender(torch.full((n,), x), _t(alpha), k), DiscreteReceiver(torch.tensor(probs).log(), _t(alpha)), 1
    )
    difference = estimates.mean().item() - reference.mean()
    standard_error = math.sqrt(estimates.var().item() / n + reference.var() / n)
    # when the true class dominates every draw the estimates are all -ln p_x up to rounding
    # (standard error ~1e-17): allow the float64 rounding of the two means
    rounding = 8 * EPS * (1 + abs(reference.mean()))
    assert abs(difference) <= Z * standard_error + rounding, (difference, standard_error)


# ---------------------------------------------------------------------------------------------
# a perfect output gives zero KL, for all three data types (values and gradients finite)


@given(shape=batch_shapes(max_side=3), k=num_bins(2, 256), alpha=accuracies(1e-6, 1e6), seed=st.integers(0, 2**16))
@example(shape=(2,), k=2, alpha=1e6, seed=0)
def test_perfect_output_gives_zero_kl_for_every_data_type(shape, k, alpha, seed):
    rng = np.random.default_rng(seed)
    index = torch.as_tensor(rng.integers(0, k, size=tuple(shape)))
    accuracy = torch.full(tuple(shape), alpha, dtype=f64)
    one_hot = torch.nn.functional.one_hot(index, k).to(f64)
    # continuous: the point mass at the data
    x = torch.as_tensor(rng.uniform(-1, 1, size=tuple(shape)))
    kl = kl_divergence(NormalSender(x, accuracy), PointMassOutput(x).receiver(accuracy))
    assert (kl == 0).all()
    # discretised: all the output mass on the data's bin
    probs = one_hot.clone().requires_grad_()
    kl = kl_divergence(NormalSender(bin_centres(k, dtype=f64)[index], accuracy), DiscretisedReceiver(probs, accuracy))
    assert kl.shape == shape and (kl.abs() <= 1e-12).all(), kl
    (grad,) = torch.autograd.grad(kl.sum(), probs)
    assert torch.isfinite(grad).all()
    # discrete: logits one-hot on the true class (log 0 = -inf elsewhere); exact for K = 2 and,
    # for K > 2, every Monte Carlo draw is exactly 0
    logits = one_hot.log().requires_grad_()
    receiver = DiscreteReceiver(logits, accuracy, kl_samples=3)
    kl = kl_divergence(DiscreteSender(index, accuracy, k), receiver)
    assert kl.shape == shape and (kl.abs() <= 1e-12).all(), kl
    (grad,) = torch.autograd.grad(kl.sum(), logits)
    assert torch.isfinite(grad).all()


def test_perfect_discretised_output_at_small_scale_gives_zero_kl():
    """sigma_x -> 0 at the data's centre: p_O is one-hot to float64 (the other bins underflow to
    exactly 0), which used to make the two-bin KL NaN."""
    for k in (2, 3, 256):
        centres = bin_centres(k, dtype=f64)
        loc = centres[k // 2].clone().requires_grad_()
        scale = _t(1e-4).requires_grad_()
        output = DiscretisedOutput(loc, scale, k)
        kl = kl_divergence(NormalSender(centres[k // 2], _t(5.0)), output.receiver(_t(5.0)))
        assert abs(kl.item()) <= 1e-12
        grads = torch.autograd.grad(kl, [loc, scale])
        assert all(torch.isfinite(g) for g in grads)


# ---------------------------------------------------------------------------------------------
# continuous-time limit: lim KL / alpha = continuous_time_kl_rate
#
# For a mixture of senders at unit-variance distances D_k (in sender standard deviations) from the
# sender with weights p_k, KL = -E ln sum_k p_k exp(D_k eps - D_k^2 / 2); expanding in Hermite
# polynomials, KL = m1^2 / 2 + (m2^2 / 4 - m1^2 m2 + 3 m1^4 / 4) + O(D^6) with m_j = sum p_k D_k^j,
# so |KL - alpha * rate| <= 2 max_k D_k^4 to fourth order; below we take 3 max D^4 (the higher
# orders are a factor D^2 <= 1e-3 smaller), plus the KL's rounding (eps per unit intercept).


@example(x_bin=0, k=3, loc=-1.0, scale=0.01)  # rate 2.5e-32 vs 0.0 under a relative-only check
@given(x_bin=st.integers(0, 255), k=num_bins(2, 256), loc=reals(1.2), scale=accuracies(1e-2, 3.0))
def test_discretised_rate_is_the_small_alpha_limit(x_bin, k, loc, scale):
    alpha = 1e-6
    x_bin = x_bin % k
    output = DiscretisedOutput(_t(loc), _t(scale), k)
    x = bin_centres(k, dtype=f64)[x_bin]
    kl = kl_divergence(NormalSender(x, _t(alpha)), output.receiver(_t(alpha))).item()
    rate = continuous_time_kl_rate(output, x).item()
    # the rate is (x - k_hat)^2 / 2 with k_hat = sum_k p_O(k) k_c, here from scipy's bin masses;
    # an error d in k_hat moves the rate by at most |x - k_hat| d + d^2 / 2, d = 4 K eps (float64
    # rounding over K terms); a relative check alone failed where x and k_hat agree to rounding
    # (rate 2.5e-32 vs 0.0)
    edges = np.concatenate([[-np.inf], np.arange(1, k) / k * 2 - 1, [np.inf]])
    masses = np.diff(stats.norm.cdf((edges - loc) / scale))
    k_hat = float(np.sum(masses * bin_centres(k, dtype=f64).numpy()))
    d = 4 * k * EPS
    assert abs(rate - 0.5 * (x.item() - k_hat) ** 2) <= abs(x.item() - k_hat) * d + d * d / 2
    max_d4 = (alpha * 4) ** 2  # |x - k_c| <= 2 in data units: D^2 <= 4 alpha
    # the KL's absolute rounding is about eps times the largest |ln p_k| that matters (<= 750)
    assert abs(kl / alpha - rate) <= 3 * max_d4 / alpha + 750 * 8 * EPS / alpha


@given(p_true=st.floats(1e-6, 1.0), x=st.integers(0, 1))
@example(p_true=1.0, x=0)
def test_discrete_k2_rate_is_the_small_alpha_limit(p_true, x):
    alpha = 1e-6
    probs = torch.tensor([p_true, 1 - p_true] if x == 0 else [1 - p_true, p_true], dtype=f64)
    output = CategoricalOutput(probs=probs)
    kl = kl_divergence(DiscreteSender(torch.tensor(x), _t(alpha), 2), DiscreteReceiver(probs.log(), _t(alpha))).item()
    rate = continuous_time_kl_rate(output, torch.tensor(x)).item()
    np.testing.assert_allclose(rate, (1 - p_true) ** 2 * 2, rtol=1e-9, atol=1e-15)  # (K/2) ||e_x - p||^2
    max_d4 = (2 * alpha * 2) ** 2  # D^2 = 2 alpha K between the sender and the other component
    assert abs(kl / alpha - rate) <= 3 * max_d4 / alpha + 14 * 8 * EPS / alpha


@pytest.mark.parametrize("x, probs", [(0, [0.2, 0.5, 0.3]), (2, [0.9, 0.05, 0.05]), (1, [1 / 3, 1 / 3, 1 / 3])])
def test_discrete_k3_rate_is_the_small_alpha_limit_of_the_dblquad_kl(x, probs):
    alpha = 1e-3
    expected, error = dblquad_kl_discrete_k3(x, np.array(probs), alpha)
    rate = continuous_time_kl_rate(CategoricalOutput(probs=torch.tensor(probs, dtype=f64)), torch.tensor(x)).item()
    one_hot = np.eye(3)[x]
    np.testing.assert_allclose(rate, 1.5 * ((one_hot - probs) ** 2).sum(), rtol=1e-12)
    max_d4 = (2 * alpha * 3) ** 2
    assert abs(expected / alpha - rate) <= (3 * max_d4 + 10 * error) / alpha


@given(x=reals(3), x_hat=reals(3), alpha=accuracies(1e-8, 1e8))
def test_continuous_rate_is_kl_over_alpha_exactly(x, x_hat, alpha):
    kl = kl_divergence(NormalSender(_t(x), _t(alpha)), NormalReceiver(_t(x_hat), _t(alpha)))
    rate = continuous_time_kl_rate(PointMassOutput(_t(x_hat)), _t(x))
    np.testing.assert_allclose((kl / alpha).item(), rate.item(), rtol=4 * EPS, atol=0)


# ---------------------------------------------------------------------------------------------
# extremes: no NaN or inf in the KLs or their gradients (float32 and float64)


@settings(max_examples=25)
@given(
    kind=st.sampled_from(["continuous", "discretised", "discrete"]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    t=times(),
    sigma_1=sigma_1s(),
    beta_1=beta_1s(),
    k=num_bins(2, 256),
    loc=reals(1.5),
    log_scale=st.floats(-9.0, 1.0),
    seed=st.integers(0, 2**16),
)
@example(kind="discretised", dtype=torch.float32, t=1.0, sigma_1=1e-4, beta_1=1.0, k=256, loc=0.3, log_scale=-9.0, seed=0)
@example(kind="discrete", dtype=torch.float32, t=1.0, sigma_1=0.1, beta_1=1e3, k=256, loc=0.0, log_scale=0.0, seed=0)
@example(kind="discrete", dtype=torch.float32, t=1.0, sigma_1=0.1, beta_1=1e3, k=2, loc=0.0, log_scale=0.0, seed=0)
@example(kind="discretised", dtype=torch.float64, t=1e-12, sigma_1=0.9, beta_1=1.0, k=2, loc=-1.5, log_scale=1.0, seed=0)
def test_kls_and_gradients_finite_at_extremes(kind, dtype, t, sigma_1, beta_1, k, loc, log_scale, seed):
    torch.manual_seed(seed)
    tt = _t(t, dtype)
    if kind == "discrete":
        alpha = DiscreteSchedule(beta_1).alpha(tt)
    else:
        alpha = ContinuousSchedule(sigma_1).alpha(tt)
    if not alpha > 0:  # alpha(0) = 0 for discrete data: the KL is not defined at zero accuracy
        alpha = torch.finfo(dtype).tiny * torch.ones((), dtype=dtype)
    shape = (3,)
    index = torch.randint(0, k, shape)
    centres = bin_centres(k, dtype=dtype)
    if kind == "continuous":
        x_hat = (torch.randn(shape, dtype=dtype) * 3).requires_grad_()
        kl = kl_divergence(NormalSender(centres[index], alpha), PointMassOutput(x_hat).receiver(alpha))
        parameters = [x_hat]
    elif kind == "discretised":
        mu = torch.full(shape, loc, dtype=dtype, requires_grad=True)
        ln_sigma = torch.full(shape, log_scale, dtype=dtype, requires_grad=True)
        output = DiscretisedOutput(mu, ln_sigma.exp(), k)
        kl = kl_divergence(NormalSender(centres[index], alpha), output.receiver(alpha))
        parameters = [mu, ln_sigma]
    else:
        logits = (torch.randn(shape + (k,), dtype=dtype) * 10).requires_grad_()
        kl = kl_divergence(DiscreteSender(index, alpha, k), CategoricalOutput(logits=logits).receiver(alpha, kl_samples=4))
        parameters = [logits]
    assert kl.dtype == dtype and kl.shape == shape
    assert torch.isfinite(kl).all(), kl
    if kind != "discrete" or k == 2:  # exact KLs are nonnegative up to rounding
        assert (kl >= -1e-5 * (1 + alpha)).all(), kl
    grads = torch.autograd.grad(kl.sum(), parameters)
    assert all(torch.isfinite(g).all() for g in grads)


# ---------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: kl_divergence(NormalSender(0.0, _t(1.0)), NormalReceiver(0.0, _t(2.0))), "accuracy"),
        (lambda: kl_divergence(NormalSender(0.0, _t(1.0)), DiscretisedReceiver(torch.ones(4, dtype=f64) / 4, _t(2.0))), "accuracy"),
        (lambda: kl_divergence(DiscreteSender(torch.tensor(0), _t(1.0), 3), DiscreteReceiver(torch.zeros(3), _t(2.0))), "accuracy"),
        (lambda: kl_divergence(DiscreteSender(torch.tensor(0), _t(1.0), 3), DiscreteReceiver(torch.zeros(4), _t(1.0))), "num_classes"),
        (lambda: kl_divergence(DiscreteSender(torch.zeros(2, dtype=torch.long), _t(1.0), 3), DiscreteReceiver(torch.zeros(3, 3), _t(1.0))), "batch"),
        (lambda: kl_divergence(NormalSender(torch.zeros(2), _t(1.0)), DiscretisedReceiver(torch.ones(3, 4) / 4, _t(1.0))), "batch"),
        (lambda: kl_discrete_monte_carlo(DiscreteSender(torch.tensor(0), _t(1.0), 3), DiscreteReceiver(torch.zeros(3), _t(1.0)), 0), "num_samples"),
        (lambda: expected_neg_logsumexp_affine(torch.zeros(3), torch.arange(3.0), num_nodes=10), "num_nodes"),
        (lambda: continuous_time_kl_rate(CategoricalOutput(logits=torch.zeros(3)), torch.tensor(3)), "x"),
        (lambda: continuous_time_kl_rate(CategoricalOutput(logits=torch.zeros(3)), torch.tensor(0.5)), "x"),
        (lambda: continuous_time_kl_rate(PointMassOutput(torch.zeros(2)), torch.zeros(3)), "x"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(make, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        make()


def test_quadrature_kl_in_chunks_equals_unchunked(monkeypatch):
    """The envelope quadrature bounds its memory by evaluating chunks of elements; the chunked
    value and gradient are those of one pass (a 256-bin KL over a CIFAR-sized batch needed
    tens of GB in one pass)."""
    from pyro_bfn.distributions import normal_expectations as kl_module

    generator = torch.Generator().manual_seed(3)
    a = torch.randn(4, 5, 17, generator=generator, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, 5, 17, generator=generator, dtype=torch.float64)
    whole = kl_module.expected_neg_logsumexp_affine(a, b)
    (grad_whole,) = torch.autograd.grad(whole.sum(), a)
    monkeypatch.setattr(kl_module, "_CHUNK_NUMBERS", 17 * 192 * 3)  # 3 elements per chunk
    chunked = kl_module.expected_neg_logsumexp_affine(a, b)
    (grad_chunked,) = torch.autograd.grad(chunked.sum(), a)
    assert chunked.shape == (4, 5)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad_chunked, grad_whole, rtol=0, atol=1e-12)
