""":func:`~pyro_bfn.distributions.expected_neg_logsumexp_affine` for any intercepts and slopes,
against mpmath (``tail_oracles.mp_expected_logsumexp``: the exact upper envelope, tanh-sinh on
each of its segments), in relative terms.

A fixed node rule missed the narrow bump a line just below the envelope makes at a kink
(relative errors up to 7.5e-4 on random lines); the rule is now refined around such kinks.
The tolerance is 1e-11 relative plus the rounding of the inputs: a few eps times the largest
magnitude of a line that matters in the bulk (the result is an expectation of such numbers).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pyro_bfn.distributions import expected_neg_logsumexp_affine
from pyro_bfn.distributions import normal_expectations
from tail_oracles import EPS, ld_expected_logsumexp, mp_expected_logsumexp

f64 = torch.float64


def _examples(ci_count: int) -> int:
    """``ci_count`` examples in the ci profile (30 by default), proportionally more in ``explore``."""
    return max(1, ci_count * settings().max_examples // 30)

# the issue's case: M = 16, a line just below the envelope; came out -43.3756667277445
ISSUE_A = [1.3220493492482337, -0.448818620531357, -4.130830033055371, 4.758223550910809, -3.5481719739524804, 1.259478775553517, -0.8325810169049697, 2.1751021653150424, -4.440639012987166, -2.781666385618086, -3.187400313465995, -1.544279148289823, 2.7034513081178044, -1.556976625597002, -0.33421099486234684, 0.15815096705744142]  # noqa: E501
ISSUE_B = [7.196146915169461, 8.806785504769287, -7.107897716505308, -45.98504821761432, -10.931456971308451, -3.1221038888329415, 11.980267919293341, -1.25337073094925, 6.470492234840063, -19.51752085188889, -10.103121172400195, 21.940170787824627, 3.1600815844116523, 58.402413422195345, 16.999992839452155, 28.343561616291982]  # noqa: E501


def _rounding_scale(a, b):
    """The largest |a_m + b_m eps| over |eps| <= 8 among the lines within 40 of the envelope there."""
    eps = np.linspace(-8, 8, 161)[:, None]
    lines = np.asarray(a)[None, :] + np.asarray(b)[None, :] * eps
    near = lines > lines.max(-1, keepdims=True) - 40
    return np.abs(np.where(near, lines, 0.0)).max()


def _check(a, b, rtol=1e-11):
    value = expected_neg_logsumexp_affine(torch.tensor(a, dtype=f64), torch.tensor(b, dtype=f64)).item()
    expected = -float(mp_expected_logsumexp(a, b))
    bound = rtol * abs(expected) + 64 * EPS * (1 + _rounding_scale(a, b))
    assert abs(value - expected) <= bound, (value, expected, abs(value - expected) / abs(expected))


def test_the_issue_example():
    value = expected_neg_logsumexp_affine(torch.tensor(ISSUE_A, dtype=f64), torch.tensor(ISSUE_B, dtype=f64)).item()
    np.testing.assert_allclose(value, -43.374921486011341, rtol=1e-14)
    np.testing.assert_allclose(float(mp_expected_logsumexp(ISSUE_A, ISSUE_B)), -value, rtol=1e-15)


@st.composite
def line_sets(draw, max_lines=16):
    """Random lines of four kinds: spread, nearly concurrent at a point of the bulk (gaps of a
    few units at a kink), the discretised KL's parabola of centres, slopes over four decades."""
    m = draw(st.integers(2, max_lines))
    kind = draw(st.sampled_from(["spread", "concurrent", "kl", "steep"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "spread":
        a, b = rng.uniform(-5, 5, m), rng.normal(0, 30, m)
    elif kind == "concurrent":
        point = rng.uniform(-3, 3)
        b = rng.normal(0, 1, m) * 10 ** rng.uniform(0, 3, m)
        a = -b * point - rng.exponential(2, m)
    elif kind == "kl":
        alpha, x = 10 ** rng.uniform(-2, 6), rng.uniform(-1, 1)
        centres = (2 * np.arange(m) + 1) / m - 1
        a = np.log(rng.dirichlet(np.full(m, 0.3)) + 1e-300) - alpha / 2 * (x - centres) ** 2
        b = -math.sqrt(alpha) * (x - centres)
    else:
        a, b = rng.uniform(-20, 20, m), rng.normal(0, 1, m) * 10 ** rng.uniform(0, 4, m)
    return a.tolist(), b.tolist()


@settings(max_examples=_examples(25))
@given(lines=line_sets())
@example(lines=(ISSUE_A, ISSUE_B))
@example(lines=([0.0, 0.0, -1e-3], [-50.0, 50.0, 0.0]))  # a third line just below a sharp kink at 0
@example(lines=([0.0, 0.0, 0.0], [-1e4, 1e4, 3e3]))  # three lines through one point, steep
# large intercepts of lines that lead only far in a tail (they cancelled against the bends)
@example(lines=([-37525.546990715644, -11.19060129007802, -3059.318496479788], [-273.9292056963333, -3.0753795153990127, 78.1807683388813]))  # noqa: E501
def test_matches_mpmath_in_relative_terms(lines):
    _check(*lines)


@pytest.mark.parametrize("seed", range(3))
def test_many_lines_match_the_longdouble_oracle(seed):
    """64 lines, near-concurrent at several kinks (beyond what the mpmath oracle does quickly)."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(-2, 2, 4)
    b = rng.normal(0, 1, 64) * 10 ** rng.uniform(0, 3, 64)
    a = -b * points[np.arange(64) % 4] - rng.exponential(3, 64)
    value = expected_neg_logsumexp_affine(torch.tensor(a), torch.tensor(b)).item()
    expected = -float(ld_expected_logsumexp(a, b))
    assert abs(value - expected) <= 1e-11 * abs(expected) + 64 * EPS * (1 + _rounding_scale(a, b))


@given(lines=line_sets())
def test_gradients_satisfy_the_exact_identities(lines):
    """d/da_m = -E[softmax_m] sums to -1 and lies in [-1, 0]; d/db_m = -E[eps softmax_m] sums to
    -E[eps] = 0 (the refined panels and the peeled bends must not break either)."""
    a = torch.tensor(lines[0], dtype=f64, requires_grad=True)
    b = torch.tensor(lines[1], dtype=f64, requires_grad=True)
    grad_a, grad_b = torch.autograd.grad(expected_neg_logsumexp_affine(a, b), [a, b])
    assert abs(grad_a.sum().item() + 1) <= 1e-10
    assert (grad_a <= 1e-12).all() and (grad_a >= -1 - 1e-12).all()
    assert abs(grad_b.sum().item()) <= 1e-10 * (1 + grad_b.abs().sum().item())


def test_refined_elements_in_a_batch_and_in_chunks_equal_one_at_a_time(monkeypatch):
    """A batch mixing elements that need refined panels and elements that do not, evaluated
    whole, in chunks of a few elements, and one element at a time: the same values and gradients."""
    rng = np.random.default_rng(1)
    a = torch.tensor(rng.uniform(-5, 5, (6, 12)), requires_grad=True)
    b = torch.tensor(rng.normal(0, 30, (6, 12)))
    b[::2] /= 100  # gentle slopes: no refinement
    whole = expected_neg_logsumexp_affine(a, b)
    (grad_whole,) = torch.autograd.grad(whole.sum(), a)
    single = torch.stack([expected_neg_logsumexp_affine(a[i], b[i]) for i in range(6)])
    (grad_single,) = torch.autograd.grad(single.sum(), a)
    monkeypatch.setattr(normal_expectations, "_CHUNK_NUMBERS", 12 * 192 * 2)
    chunked = expected_neg_logsumexp_affine(a, b)
    (grad_chunked,) = torch.autograd.grad(chunked.sum(), a)
    for value, grad in ((single, grad_single), (chunked, grad_chunked)):
        torch.testing.assert_close(value, whole, rtol=0, atol=1e-13)
        torch.testing.assert_close(grad, grad_whole, rtol=0, atol=1e-13)


def test_float32_is_finite_and_close():
    value = expected_neg_logsumexp_affine(torch.tensor(ISSUE_A), torch.tensor(ISSUE_B))
    assert value.dtype == torch.float32
    np.testing.assert_allclose(value.item(), -43.374921486011341, rtol=1e-6)
