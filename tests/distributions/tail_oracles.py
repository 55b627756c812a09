"""High-precision oracles for the tail tests, written from the definitions (never the library's
formulas):

* bin masses of a discretised Normal: :func:`exact_log_bin_masses`, mpmath at 50 digits with the
  exact rational edges ``2k/K - 1``, the mass on the side of the mean where the difference does
  not cancel (mpmath's ``ncdf`` is accurate in relative terms in both tails);
* :math:`E_{\\epsilon \\sim N(0,1)}[\\operatorname{logsumexp}_m(a_m + b_m \\epsilon)]`:
  :func:`mp_expected_logsumexp`, mpmath tanh-sinh quadrature on every segment of the exact upper
  envelope of the lines (the envelope's own part in closed form, the rest smooth inside each
  segment, its features at the segment ends where tanh-sinh clusters its nodes); and
  :func:`ld_expected_logsumexp`, a brute-force composite Gauss-Legendre rule in numpy
  ``longdouble`` (19 digits on x86) on a fine mesh graded at every sharp kink, fast enough for
  256 lines and checked against the mpmath one.
"""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np

DPS = 50
EPS = float(np.finfo(np.float64).eps)


def exact_log_bin_masses(loc: float, scale: float, num_bins: int):
    """``(log_masses, sensitivity)`` for the bins of ``N(loc, scale^2)`` over ``[-1, 1]`` (the outer
    bins take the tails): ``log_masses`` as mpf, and per bin
    :math:`\\sum_{\\text{edges}} (1 + |e|)\\, |\\partial \\ln p / \\partial e|`, which times ``eps`` is
    what computing the edges ``2k/K - 1`` in floats can move :math:`\\ln p` by (the conditioning of
    the problem; an edge is rounded to an ulp of ``2k/K``, not of its own value)."""
    with mp.workdps(DPS):
        loc, scale = mp.mpf(loc), mp.mpf(scale)
        log_masses, sensitivity = [], []
        for k in range(num_bins):
            lower_edge, upper_edge = mp.mpf(2 * k) / num_bins - 1, mp.mpf(2 * k + 2) / num_bins - 1
            a = -mp.inf if k == 0 else (lower_edge - loc) / scale
            b = mp.inf if k == num_bins - 1 else (upper_edge - loc) / scale
            mass = mp.ncdf(-a) - mp.ncdf(-b) if a > 0 else mp.ncdf(b) - mp.ncdf(a)
            log_masses.append(mp.log(mass))
            term = mp.mpf(0)
            if k > 0:
                term += (1 + abs(lower_edge)) * mp.npdf(a) / (scale * mass)
            if k < num_bins - 1:
                term += (1 + abs(upper_edge)) * mp.npdf(b) / (scale * mass)
            sensitivity.append(float(term))
    return log_masses, np.array(sensitivity)


def exact_log_mass_gradient(loc: float, scale: float, num_bins: int, k: int):
    """:math:`(\\partial_\\mu, \\partial_\\sigma) \\ln p_k` in mpmath from the definition
    :math:`p_k = \\Phi(b) - \\Phi(a)`, :math:`a, b = (e - \\mu)/\\sigma`:
    :math:`\\partial_\\mu \\ln p = (\\varphi(a) - \\varphi(b))/(\\sigma p)`,
    :math:`\\partial_\\sigma \\ln p = (a\\varphi(a) - b\\varphi(b))/(\\sigma p)` (an infinite edge adds 0)."""
    with mp.workdps(DPS):
        loc, scale = mp.mpf(loc), mp.mpf(scale)
        a = -mp.inf if k == 0 else (mp.mpf(2 * k) / num_bins - 1 - loc) / scale
        b = mp.inf if k == num_bins - 1 else (mp.mpf(2 * k + 2) / num_bins - 1 - loc) / scale
        mass = mp.ncdf(-a) - mp.ncdf(-b) if a > 0 else mp.ncdf(b) - mp.ncdf(a)
        density = [mp.npdf(z) if mp.isfinite(z) else mp.mpf(0) for z in (a, b)]
        moment = [z * d if mp.isfinite(z) else mp.mpf(0) for z, d in zip((a, b), density)]
        return float((density[0] - density[1]) / (scale * mass)), float((moment[0] - moment[1]) / (scale * mass))


def log_mass_tolerance(log_masses, sensitivity, factor: float = 16.0):
    """Absolute tolerance on float64 log-masses: ``factor`` eps per unit of :math:`1 + |\\ln p|`
    (the rounding of the standardised edges enters through :math:`z^2/2 \\approx |\\ln p|`) plus
    the edges' own rounding."""
    values = np.array([float(v) for v in log_masses])
    return factor * EPS * (1 + np.abs(values)) + 2 * EPS * sensitivity


def kl_lines(x: float, log_masses, alpha: float):
    """The lines :math:`a_k = \\ln p_k - \\frac{\\alpha}{2}(x - k_c)^2`,
    :math:`b_k = -\\sqrt\\alpha (x - k_c)` (mpf) of the discretised KL
    :math:`= -E[\\operatorname{logsumexp}_k(a_k + b_k \\epsilon)]`, exact centres."""
    num_bins = len(log_masses)
    with mp.workdps(DPS):
        x, alpha = mp.mpf(x), mp.mpf(alpha)
        centres = [mp.mpf(2 * k + 1) / num_bins - 1 for k in range(num_bins)]
        a = [lp - alpha / 2 * (x - c) ** 2 for lp, c in zip(log_masses, centres)]
        b = [-mp.sqrt(alpha) * (x - c) for c in centres]
    return a, b


def _upper_envelope(a, b, exact):
    """The lines of the upper envelope in order of slope: ``[(slope, intercept, left end)]``."""
    infinity = mp.inf if exact else math.inf
    best = {}
    for slope, intercept in zip(b, a):
        if intercept > -infinity:
            best[slope] = max(best.get(slope, intercept), intercept)
    hull = []
    for slope in sorted(best):
        intercept = best[slope]
        while hull and (hull[-1][1] - intercept) / (slope - hull[-1][0]) <= hull[-1][2]:
            hull.pop()
        left = -infinity if not hull else (hull[-1][1] - intercept) / (slope - hull[-1][0])
        hull.append((slope, intercept, left))
    return hull


def mp_expected_logsumexp(a, b, dps: int = 30, window: float = 12.0):
    """:math:`E[\\operatorname{logsumexp}_m(a_m + b_m \\epsilon)]` in mpmath: the envelope part
    exactly, :math:`\\ln(1 + \\sum_j e^{\\ell_j - \\ell_{\\max}})` by tanh-sinh on each envelope
    segment within ``window`` (lines more than 90 below the segment's line throughout dropped)."""
    with mp.workdps(dps):
        a, b = [mp.mpf(v) for v in a], [mp.mpf(v) for v in b]
        lines = [(s, i) for s, i in zip(b, a) if i > -mp.inf]
        hull = _upper_envelope(a, b, exact=True)
        ends = [h[2] for h in hull[1:]] + [mp.inf]
        total = mp.mpf(0)
        for (slope, intercept, left), right in zip(hull, ends):
            total += intercept * (mp.ncdf(right) - mp.ncdf(left)) + slope * (mp.npdf(left) - mp.npdf(right))
            lo, hi = max(left, -window), min(right, window)
            if lo >= hi:
                continue
            keep = [
                (s, i)
                for s, i in lines
                if (s, i) != (slope, intercept)
                and min(intercept + slope * lo - i - s * lo, intercept + slope * hi - i - s * hi) < 90
            ]
            if not keep:
                continue

            def rest(e, slope=slope, intercept=intercept, keep=keep):
                return mp.log1p(mp.fsum(mp.exp((i - intercept) + (s - slope) * e) for s, i in keep)) * mp.npdf(e)

            points = [lo] + [mp.mpf(p) for p in range(-int(window) + 2, int(window), 2) if lo < p < hi] + [hi]
            total += mp.quad(rest, points)
        return total


_PI = np.longdouble("3.141592653589793238462643383279502884")


def _gauss_legendre(n: int):
    """Nodes in [0, 1] and weights (summing to 1) of the n-point Gauss-Legendre rule in
    ``longdouble``: numpy's float64 nodes polished by Newton's method on the Legendre recurrence."""
    x = np.polynomial.legendre.leggauss(n)[0].astype(np.longdouble)
    for _ in range(3):
        previous, current = np.ones_like(x), x.copy()
        for k in range(2, n + 1):
            previous, current = current, ((2 * k - 1) * x * current - (k - 1) * previous) / k
        derivative = n * (x * current - previous) / (x * x - 1)
        x = x - current / derivative
    return (x + 1) / 2, 1 / ((1 - x * x) * derivative * derivative)


def ld_expected_logsumexp(a, b, window: float = 12.0):
    """:math:`E[\\operatorname{logsumexp}_m(a_m + b_m \\epsilon)]` by brute force in ``longdouble``:
    16-point Gauss-Legendre on panels of width 0.1 over ``window``, split further at every kink of
    the envelope where a line within 80 of it has a slope difference above 5, geometrically (ratio
    1.6) from width ``0.02 / slope difference``; lines never within 90 of the envelope dropped."""
    a = np.array([np.longdouble(mp.nstr(v, 25)) if isinstance(v, mp.mpf) else np.longdouble(v) for v in a])
    b = np.array([np.longdouble(mp.nstr(v, 25)) if isinstance(v, mp.mpf) else np.longdouble(v) for v in b])
    present = a > -np.inf
    a, b = a[present], b[present]
    hull = _upper_envelope(list(a), list(b), exact=False)
    kinks = [left for _, _, left in hull[1:]]
    envelope_at = lambda e: max(i + s * e for s, i, _ in hull)  # noqa: E731
    probes = [np.longdouble(-window), np.longdouble(window)] + [k for k in kinks if abs(k) < window]
    gaps = np.min([envelope_at(e) - (a + b * e) for e in probes], axis=0)
    a, b = a[gaps < 90], b[gaps < 90]
    points = [np.linspace(-window, window, int(20 * window) + 1).astype(np.longdouble)]
    for (s_left, i_left, _), (s_right, i_right, kink) in zip(hull[:-1], hull[1:]):
        if abs(kink) > window + 1:
            continue
        near = (i_left + s_left * kink) - (a + b * kink) < 80
        differences = np.abs(np.concatenate([b[near] - s_left, b[near] - s_right]))
        sharp = max(float(s_right - s_left), float(np.max(differences, initial=0)))
        if sharp < 5:
            continue
        offsets = 0.02 / sharp * 1.6 ** np.arange(int(math.log(5 * sharp) / math.log(1.6)) + 2)
        points.append(np.concatenate([kink - offsets, [kink], kink + offsets]).astype(np.longdouble))
    edges = np.unique(np.clip(np.concatenate(points), -window, window))
    nodes, weights = _gauss_legendre(16)
    width = (edges[1:] - edges[:-1])[:, None]
    z = (edges[:-1, None] + width * nodes).reshape(-1)
    w = (width * weights).reshape(-1) * np.exp(-z * z / 2) / np.sqrt(2 * _PI)
    total = np.longdouble(0)
    for start in range(0, z.size, 4096):
        lines = a[None, :] + b[None, :] * z[start : start + 4096, None]
        top = lines.max(-1)
        total += np.sum(w[start : start + 4096] * (top + np.log(np.exp(lines - top[:, None]).sum(-1))))
    return total
