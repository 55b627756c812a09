"""Scores of generated samples and the pieces of the text likelihood protocol.

**Images** (classifier-based): Inception-Score-style statistics of class probabilities and the
Frechet distance between Gaussians fitted to classifier features. These are the usual
sample-quality proxies (Salimans et al. 2016 for the Inception Score, Heusel et al. 2017 for the
Frechet Inception Distance) computed with any classifier, e.g. a small CNN trained on MNIST
(``benchmarks/sample_quality.py``). They are numpy functions with no network code; the numbers
depend on the classifier and are comparable only between sample sets scored by the same
classifier.

**Text** (``benchmarks/text_likelihood.py``): the scored windows of a test split
(:func:`window_starts`, :func:`select_windows`, :func:`make_windows`; paper Sec. 6.4 scores
sequences of :data:`SEQUENCE_LENGTH` characters), the share of a sample's words found in a word
list (:func:`load_word_list`, :func:`word_list_share`) and the unigram baseline
(:func:`unigram_bits_per_char`).

>>> import numpy as np
>>> probs = np.eye(10)                       # ten confident predictions, one per class
>>> round(inception_score(probs), 6)
10.0
>>> mu, cov = np.zeros(3), np.eye(3)
>>> frechet_distance(mu, cov, mu, cov)
0.0
>>> window_starts(10, length=4, stride=3)
[0, 3, 6]
>>> word_list_share(["xx the cat sat yy"], {"the", "cat"})
{'share': 0.6666666666666666, 'found': 2, 'tokens': 3}
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .checks import check_integer

__all__ = [
    "SEQUENCE_LENGTH",
    "class_probability_scores",
    "feature_statistics",
    "frechet_distance",
    "inception_score",
    "load_word_list",
    "make_windows",
    "select_windows",
    "unigram_bits_per_char",
    "window_starts",
    "word_list_share",
]

_EPS = 1e-12

#: characters per scored sequence in the paper's text8 experiment (Sec. 6.4)
SEQUENCE_LENGTH = 256


# ----------------------------------------------------------------------------- images


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


# ----------------------------------------------------------------------------- text
def window_starts(num_chars: int, length: int = SEQUENCE_LENGTH, stride: int = SEQUENCE_LENGTH) -> list:
    """Start positions of the complete windows of ``length`` characters at ``stride``.

    ``stride = length`` gives non-overlapping windows; ``stride = 1`` is the reference code's
    protocol (every window, each interior character scored ``length`` times), with the same
    expectation at ``length`` times the cost.

    :param int num_chars: characters in the text.
    :param int length: characters per window.
    :param int stride: characters between consecutive starts.
    :returns: ``[0, stride, 2 stride, ...]`` up to the last start ``<= num_chars - length``
        (an incomplete tail is not scored); empty when the text is shorter than ``length``.
    """
    check_integer("num_chars", num_chars, 0)
    check_integer("length", length)
    check_integer("stride", stride)
    return list(range(0, num_chars - length + 1, stride))


def select_windows(num_windows: int, cap: int | None) -> list:
    """Indices of at most ``cap`` windows out of ``num_windows``, spread evenly:
    :math:`\\lfloor i \\cdot W / c \\rfloor` for :math:`i = 0, \\dots, c - 1` (all of them when
    ``cap`` is ``None`` or at least ``num_windows``).

    :param int num_windows: ``W``.
    :param cap: ``c``, a positive integer, or ``None`` for no cap.
    """
    check_integer("num_windows", num_windows, 0)
    check_integer("cap", cap, allow_none=True)
    if cap is None or cap >= num_windows:
        return list(range(num_windows))
    return [(i * num_windows) // cap for i in range(cap)]


def make_windows(codes, length: int = SEQUENCE_LENGTH, stride: int = SEQUENCE_LENGTH, cap: int | None = None):
    """The scored windows of a sequence of codes: those of :func:`window_starts`, at most ``cap``
    of them chosen by :func:`select_windows`.

    :param codes: a 1-D integer tensor or array, shape ``(N,)``.
    :returns: ``(windows, starts)``: a ``(W, length)`` int64 tensor and the list of the ``W``
        start positions in ``codes``.
    """
    codes = torch.as_tensor(codes).long()
    if codes.dim() != 1:
        raise ValueError(f"codes must be 1-D, got shape {tuple(codes.shape)}")
    starts = window_starts(codes.numel(), length, stride)
    starts = [starts[i] for i in select_windows(len(starts), cap)]
    if not starts:
        return codes.new_zeros((0, length)), []
    index = torch.tensor(starts)[:, None] + torch.arange(length)[None, :]
    return codes[index], starts


def load_word_list(path) -> frozenset:
    """The words of a word-list file (one per line, e.g. Debian's ``wamerican``), lowercased;
    entries with any character outside a-z after lowercasing (apostrophes, accents) are
    dropped.

    :param path: the file.
    """
    words = set()
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            word = line.strip().lower()
            if word and all("a" <= ch <= "z" for ch in word):
                words.add(word)
    return frozenset(words)


def word_list_share(texts, words, drop_edges: bool = True, min_letters: int = 1) -> dict:
    """The share of the space-separated tokens of ``texts`` that are in ``words``.

    :param texts: strings (e.g. decoded samples of :data:`SEQUENCE_LENGTH` characters).
    :param words: a set of lowercase words (:func:`load_word_list`).
    :param bool drop_edges: ignore the first and last token of each text (a window may cut a
        word in two).
    :param int min_letters: count only tokens of at least this many letters (``2`` leaves out
        single letters, which a word list may hold one and all).
    :returns: ``{"share", "found", "tokens"}``; the share is ``nan`` when there are no tokens.
    """
    check_integer("min_letters", min_letters)
    found = tokens = 0
    for text in texts:
        parts = text.split()
        if drop_edges:
            parts = parts[1:-1]
        parts = [part for part in parts if len(part) >= min_letters]
        tokens += len(parts)
        found += sum(1 for part in parts if part in words)
    return {"share": found / tokens if tokens else float("nan"), "found": found, "tokens": tokens}


def unigram_bits_per_char(train_codes, test_codes, num_classes: int = 27) -> float:
    """The cross-entropy in bits per character of ``test_codes`` under the character
    frequencies :math:`p` of ``train_codes``, :math:`-\\sum_k q_k \\log_2 p_k` with :math:`q` the
    test frequencies: the bound of a model that ignores all context.

    :param train_codes: integer codes in ``0..num_classes-1``, shape ``(N,)``.
    :param test_codes: integer codes, shape ``(M,)``.
    :param int num_classes: ``K`` (27 for the text8 alphabet).
    :returns: bits per character (``inf`` if a test code never occurs in training).
    """
    check_integer("num_classes", num_classes, 2)
    p = np.bincount(np.asarray(train_codes), minlength=num_classes).astype(np.float64)
    q = np.bincount(np.asarray(test_codes), minlength=num_classes).astype(np.float64)
    p, q = p / p.sum(), q / q.sum()
    with np.errstate(divide="ignore"):
        return float(-(q[q > 0] * np.log2(p[q > 0])).sum())
