"""Classifier-based scores of generated samples: Inception-Score-style statistics of class
probabilities and the Frechet distance between Gaussians fitted to classifier features.

These are the usual sample-quality proxies (Salimans et al. 2016 for the Inception Score,
Heusel et al. 2017 for the Frechet Inception Distance) computed with any classifier, e.g. a
small CNN trained on MNIST (``benchmarks/sample_quality.py``). They are numpy functions with
no network code; the numbers depend on the classifier and are comparable only between sample
sets scored by the same classifier.

>>> import numpy as np
>>> probs = np.eye(10)                       # ten confident predictions, one per class
>>> round(inception_score(probs), 6)
10.0
>>> mu, cov = np.zeros(3), np.eye(3)
>>> frechet_distance(mu, cov, mu, cov)
0.0
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = [
    "class_probability_scores",
    "feature_statistics",
    "frechet_distance",
    "inception_score",
]

_EPS = 1e-12


def _check_probs(probs) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] < 1 or probs.shape[1] < 2:
        raise ValueError(f"probs must have shape (N, K) with N >= 1 and K >= 2, got {probs.shape}")
    if not np.all(np.isfinite(probs)) or probs.min() < 0:
        raise ValueError("probs must be finite and non-negative")
    if not np.allclose(probs.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("each row of probs must sum to 1")
    return probs


def _entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy in nats along the last axis, with 0 ln 0 = 0."""
    return -np.sum(np.where(probs > 0, probs * np.log(np.maximum(probs, _EPS)), 0.0), axis=-1)


def inception_score(probs) -> float:
    """The Inception-Score-style statistic :math:`\\exp(E_x[KL(p(y|x) \\| p(y))])` with
    :math:`p(y) = E_x[p(y|x)]` the marginal class distribution of the sample set.

    Equivalently :math:`\\exp(H[p(y)] - E_x H[p(y|x)])`. It lies in ``[1, K]``: ``K`` when every
    prediction is confident and the classes are used uniformly, 1 when every prediction is the
    same distribution.

    :param probs: class probabilities :math:`p(y|x)`, shape ``(N, K)``, rows summing to 1.
    :returns: the score (a float).
    """
    probs = _check_probs(probs)
    marginal = probs.mean(axis=0)
    kl = np.sum(np.where(probs > 0, probs * (np.log(np.maximum(probs, _EPS)) - np.log(np.maximum(marginal, _EPS))), 0.0),
                axis=1)
    return float(np.exp(kl.mean()))


def class_probability_scores(probs) -> dict:
    """Summary statistics of a classifier's predictions on a sample set.

    :param probs: class probabilities, shape ``(N, K)``.
    :returns: a dict with ``mean_max_confidence`` (mean of :math:`\\max_y p(y|x)`),
        ``mean_class_entropy`` (:math:`E_x H[p(y|x)]`, nats; low = recognisable samples),
        ``marginal_class_entropy`` (:math:`H[E_x p(y|x)]`, nats; ``ln K`` = classes used
        uniformly), ``inception_score`` (:func:`inception_score`) and ``class_histogram``
        (the fraction of samples whose most probable class is each ``y``, a list of ``K``).
    """
    probs = _check_probs(probs)
    num_classes = probs.shape[1]
    counts = np.bincount(probs.argmax(axis=1), minlength=num_classes) / probs.shape[0]
    return dict(
        mean_max_confidence=float(probs.max(axis=1).mean()),
        mean_class_entropy=float(_entropy(probs).mean()),
        marginal_class_entropy=float(_entropy(probs.mean(axis=0))),
        inception_score=inception_score(probs),
        class_histogram=[float(c) for c in counts],
    )


def feature_statistics(features) -> tuple:
    """Mean and covariance (unbiased, ``N - 1`` in the denominator) of feature vectors.

    :param features: shape ``(N, D)`` with ``N >= 2``.
    :returns: ``(mu, sigma)`` of shapes ``(D,)`` and ``(D, D)``, float64.
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must have shape (N, D) with N >= 2, got {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False).reshape(features.shape[1], features.shape[1])


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """The Frechet (2-Wasserstein squared) distance between :math:`N(\\mu_1, \\Sigma_1)` and
    :math:`N(\\mu_2, \\Sigma_2)`:

    .. math:: \\|\\mu_1 - \\mu_2\\|^2 + \\operatorname{tr}\\big(\\Sigma_1 + \\Sigma_2
              - 2 (\\Sigma_1 \\Sigma_2)^{1/2}\\big)

    (Dowson & Landau 1982; the FID of Heusel et al. 2017 applies it to Inception features).
    The matrix square root is :func:`scipy.linalg.sqrtm`; if it is singular or not finite,
    ``eps`` is added to both diagonals (as in the reference FID code), and a negligible
    imaginary part from round-off is dropped. The result is clipped at 0.

    :param mu1: mean, shape ``(D,)``.
    :param sigma1: covariance, shape ``(D, D)``.
    :param mu2: mean, shape ``(D,)``.
    :param sigma2: covariance, shape ``(D, D)``.
    :returns: the distance (a float, in squared feature units).
    """
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, dtype=np.float64)), np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64)), np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0],) * 2:
        raise ValueError(f"shape mismatch: mu {mu1.shape} / {mu2.shape}, sigma {sigma1.shape} / {sigma2.shape}")
    diff = mu1 - mu2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", linalg.LinAlgWarning)  # singular product: use the offset below
            covmean = linalg.sqrtm(sigma1 @ sigma2)
        singular = not np.all(np.isfinite(covmean))
    except linalg.LinAlgWarning:
        singular = True
    if singular:
        offset = np.eye(sigma1.shape[0]) * eps
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", linalg.LinAlgWarning)
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"sqrtm has a large imaginary part {np.max(np.abs(covmean.imag)):.3g}")
        covmean = covmean.real
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean)
    return float(max(value, 0.0))
