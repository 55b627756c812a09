"""Accuracy of the quadrature KLs against scipy.integrate.quad.

Measures the absolute and relative error of the two registered quadrature KLs,

* ``KL(NormalSender || DiscretisedReceiver)`` (K bins, true bin probability p), and
* ``KL(DiscreteSender || DiscreteReceiver)`` for K = 2 (true class probability p),

over a grid of accuracies alpha in {1e-4, 1e-2, 1, 1e2, 1e4, 1e6}, K bins in {2, 16, 256}
and p in {0.01, 0.5, 0.99}, in float64. The oracle integrates
``p_S(y) (ln p_S(y) - ln p_R(y))`` over ``y`` with :func:`scipy.integrate.quad`, written
directly from the densities (scipy.stats / scipy.special), split at the bin centres and
midpoints inside the sender's +-40 sd window.

Run: ``python benchmarks/kl_accuracy.py``; prints a Markdown table and writes
``benchmarks/results/kl_accuracy.md``.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np
import torch
from scipy import integrate, special, stats

ALPHAS = (1e-4, 1e-2, 1.0, 1e2, 1e4, 1e6)
BINS = (2, 16, 256)
PROBS = (0.01, 0.5, 0.99)


def discretised_output_probs(num_bins: int, true_bin: int, p: float) -> np.ndarray:
    """p on the true bin, 70% of the rest on its right (or left) neighbour, the rest uniform."""
    probs = np.zeros(num_bins)
    neighbour = true_bin + 1 if true_bin + 1 < num_bins else true_bin - 1
    others = [k for k in range(num_bins) if k not in (true_bin, neighbour)]
    probs[true_bin] = p
    if others:
        probs[neighbour] = 0.7 * (1 - p)
        probs[others] = 0.3 * (1 - p) / len(others)
    else:
        probs[neighbour] = 1 - p
    return probs


def oracle_kl_discretised(x: float, probs: np.ndarray, alpha: float) -> float:
    """KL(N(x, 1/alpha) || sum_k probs_k N(k_c, 1/alpha)) by scipy quad over y."""
    num_bins = len(probs)
    centres = (2 * np.arange(num_bins) + 1) / num_bins - 1
    sd = 1 / math.sqrt(alpha)
    log_probs = np.log(probs)

    def integrand(y):
        log_s = stats.norm.logpdf(y, x, sd)
        log_r = special.logsumexp(log_probs + stats.norm.logpdf(y, centres, sd))
        return math.exp(log_s) * (log_s - log_r)

    lower, upper = x - 40 * sd, x + 40 * sd
    edges = np.concatenate([centres, centres[:-1] + 1 / num_bins, [x]])
    points = np.sort(edges[(edges > lower) & (edges < upper)])
    # break the range into pieces at the points (quad's `points` is limited to finite ranges)
    knots = np.concatenate([[lower], points, [upper]])
    total = 0.0
    for lo, hi in zip(knots[:-1], knots[1:]):
        if hi > lo:
            total += integrate.quad(integrand, lo, hi, limit=200, epsabs=1e-13, epsrel=1e-12)[0]
    return total


def oracle_kl_discrete(x: int, probs: np.ndarray, alpha: float) -> float:
    """KL(N(alpha(K e_x - 1), alpha K I) || sum_k probs_k N(alpha(K e_k - 1), alpha K I)) for
    K = 2, reduced to 1-D: with v = (y_1 - y_0)/sqrt(2), the orthogonal coordinate has the same
    law under sender and receiver and drops out; along v the sender is N(m_x, 2 alpha) and the
    receiver the 2-component mixture at m_0 = -sqrt(2) alpha, m_1 = +sqrt(2) alpha."""
    assert len(probs) == 2
    sd = math.sqrt(2 * alpha)
    means = np.array([-math.sqrt(2) * alpha, math.sqrt(2) * alpha])
    log_probs = np.log(probs)

    def integrand(v):
        log_s = stats.norm.logpdf(v, means[x], sd)
        log_r = special.logsumexp(log_probs + stats.norm.logpdf(v, means, sd))
        return math.exp(log_s) * (log_s - log_r)

    lower, upper = means[x] - 40 * sd, means[x] + 40 * sd
    # the mixture's log-ratio kink sits where the components cross
    crossing = (log_probs[0] - log_probs[1]) * sd**2 / (means[1] - means[0])
    knots = np.sort(np.concatenate([[lower, upper], [p for p in (crossing, means[x]) if lower < p < upper]]))
    return sum(
        integrate.quad(integrand, lo, hi, limit=200, epsabs=1e-13, epsrel=1e-12)[0]
        for lo, hi in zip(knots[:-1], knots[1:])
    )


def library_kl_discretised(x_bin: int, probs: np.ndarray, alpha: float, **kwargs) -> float:
    from pyro_bfn.distributions import DiscretisedReceiver, NormalSender, bin_centres

    num_bins = len(probs)
    x = bin_centres(num_bins, dtype=torch.float64)[x_bin]
    a = torch.tensor(alpha, dtype=torch.float64)
    sender = NormalSender(x, a)
    receiver = DiscretisedReceiver(torch.tensor(probs, dtype=torch.float64), a)
    return float(torch.distributions.kl_divergence(sender, receiver))


def library_kl_discrete(x: int, probs: np.ndarray, alpha: float) -> float:
    from pyro_bfn.distributions import DiscreteReceiver, DiscreteSender

    a = torch.tensor(alpha, dtype=torch.float64)
    sender = DiscreteSender(torch.tensor(x), a, len(probs))
    receiver = DiscreteReceiver(torch.tensor(probs, dtype=torch.float64).log(), a)
    return float(torch.distributions.kl_divergence(sender, receiver))


def study():
    """Rows (kind, K, alpha, p, library, oracle, abs error, rel error)."""
    rows = []
    for num_bins in BINS:
        # the true bin in the interior (or bin 0 for K = 2): the hardest case has neighbours on both sides
        true_bin = num_bins // 2
        for alpha in ALPHAS:
            for p in PROBS:
                probs = discretised_output_probs(num_bins, true_bin, p)
                centres = (2 * np.arange(num_bins) + 1) / num_bins - 1
                oracle = oracle_kl_discretised(centres[true_bin], probs, alpha)
                value = library_kl_discretised(true_bin, probs, alpha)
                rows.append(("discretised", num_bins, alpha, p, value, oracle))
    for alpha in ALPHAS:
        for p in PROBS:
            probs = np.array([p, 1 - p])
            oracle = oracle_kl_discrete(0, probs, alpha)
            value = library_kl_discrete(0, probs, alpha)
            rows.append(("discrete", 2, alpha, p, value, oracle))
    out = []
    for kind, k, alpha, p, value, oracle in rows:
        error = abs(value - oracle)
        out.append((kind, k, alpha, p, value, oracle, error, error / max(abs(oracle), 1e-300)))
    return out


def markdown(rows) -> str:
    lines = [
        "| KL | K | alpha | p | library | scipy quad | abs error | rel error |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind, k, alpha, p, value, oracle, error, rel in rows:
        lines.append(f"| {kind} | {k} | {alpha:g} | {p:g} | {value:.10g} | {oracle:.10g} | {error:.2e} | {rel:.2e} |")
    lines.append("")
    lines.append("Max by regime:")
    lines.append("")
    lines.append("| KL | alpha | max abs error | max rel error |")
    lines.append("|---|---|---|---|")
    for kind in ("discretised", "discrete"):
        for alpha in ALPHAS:
            sel = [r for r in rows if r[0] == kind and r[2] == alpha]
            lines.append(f"| {kind} | {alpha:g} | {max(r[6] for r in sel):.2e} | {max(r[7] for r in sel):.2e} |")
    return "\n".join(lines) + "\n"


def main():
    rows = study()
    text = "# KL quadrature accuracy (float64, vs scipy.integrate.quad)\n\n" + markdown(rows)
    print(text)
    path = pathlib.Path(__file__).parent / "results" / "kl_accuracy.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


if __name__ == "__main__":
    main()
