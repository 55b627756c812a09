"""The image sample-quality scores of :mod:`pyro_bfn.metrics` (used by
``benchmarks/sample_quality.py``) against independent numpy / scipy computations on small
arrays. Fast, no MNIST."""

import numpy as np
import pytest
from scipy import linalg, stats

from pyro_bfn.metrics import class_probability_scores, feature_statistics, frechet_distance, inception_score


def _random_probs(rng, n, k):
    logits = rng.normal(size=(n, k)) * 2
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ----------------------------------------------------------------------------- inception score
@pytest.mark.parametrize("k", [2, 3, 10])
def test_is_of_confident_uniform_predictions_is_num_classes(k):
    probs = np.tile(np.eye(k), (5, 1))
    assert inception_score(probs) == pytest.approx(k, rel=1e-9)


def test_is_of_identical_predictions_is_one():
    probs = np.tile([[0.2, 0.5, 0.3]], (7, 1))
    assert inception_score(probs) == pytest.approx(1.0, abs=1e-12)


def test_is_matches_scipy_entropy():
    rng = np.random.default_rng(0)
    probs = _random_probs(rng, 50, 10)
    marginal = probs.mean(axis=0)
    expected = np.exp(np.mean([stats.entropy(p, marginal) for p in probs]))
    assert inception_score(probs) == pytest.approx(expected, rel=1e-10)
    assert 1.0 <= inception_score(probs) <= 10.0


def test_class_probability_scores_match_scipy():
    rng = np.random.default_rng(1)
    probs = _random_probs(rng, 40, 4)
    probs[0] = [1.0, 0.0, 0.0, 0.0]  # a zero probability: 0 ln 0 = 0
    scores = class_probability_scores(probs)
    assert scores["mean_max_confidence"] == pytest.approx(probs.max(axis=1).mean())
    assert scores["mean_class_entropy"] == pytest.approx(np.mean([stats.entropy(p) for p in probs]))
    assert scores["marginal_class_entropy"] == pytest.approx(stats.entropy(probs.mean(axis=0)))
    # IS = exp(H[marginal] - E H[p(y|x)])
    assert scores["inception_score"] == pytest.approx(
        np.exp(scores["marginal_class_entropy"] - scores["mean_class_entropy"]), rel=1e-10)
    assert sum(scores["class_histogram"]) == pytest.approx(1.0)
    assert scores["class_histogram"] == pytest.approx(list(np.bincount(probs.argmax(1), minlength=4) / 40))


def test_probs_are_validated():
    with pytest.raises(ValueError):
        inception_score(np.array([[0.5, 0.6]]))
    with pytest.raises(ValueError):
        inception_score(np.array([0.5, 0.5]))


# ----------------------------------------------------------------------------- Frechet distance
def test_frechet_of_identical_statistics_is_zero():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(6, 6))
    sigma = a @ a.T + 0.1 * np.eye(6)
    mu = rng.normal(size=6)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)


def test_frechet_of_diagonal_gaussians_matches_closed_form():
    rng = np.random.default_rng(3)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    v1, v2 = rng.uniform(0.1, 3, size=5), rng.uniform(0.1, 3, size=5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-9)


def test_frechet_of_one_dimensional_gaussians():
    # W2^2 between N(m1, s1^2) and N(m2, s2^2) is (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx(9.0 + 1.0)


def test_frechet_matches_scipy_sqrtm_formula_and_is_symmetric():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    s1, s2 = a @ a.T + 0.5 * np.eye(4), b @ b.T + 0.5 * np.eye(4)
    m1, m2 = rng.normal(size=4), rng.normal(size=4)
    # independent route: tr((S1^1/2 S2 S1^1/2)^1/2), symmetric square roots
    r1 = linalg.sqrtm(s1).real
    cross = linalg.sqrtm(r1 @ s2 @ r1).real
    expected = np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * cross)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(m2, s2, m1, s1) == pytest.approx(expected, rel=1e-8)


def test_frechet_with_singular_covariances_is_finite():
    mu = np.zeros(3)
    sigma = np.diag([1.0, 0.0, 0.0])
    assert frechet_distance(mu, sigma, mu + 1.0, sigma) == pytest.approx(3.0, abs=1e-4)


def test_feature_statistics_match_numpy():
    rng = np.random.default_rng(5)
    features = rng.normal(size=(30, 3))
    mu, sigma = feature_statistics(features)
    assert mu == pytest.approx(features.mean(axis=0))
    assert sigma == pytest.approx(np.cov(features.T, ddof=1))
    one_dim = feature_statistics(features[:, :1])[1]
    assert one_dim.shape == (1, 1)
