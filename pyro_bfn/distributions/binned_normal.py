"""The masses of a standard Normal over consecutive intervals, for the discretised output
distribution (:class:`~pyro_bfn.distributions.discretised.DiscretisedOutput`, paper Sec. 4.3):

* :func:`log_bin_masses`: :math:`\\ln(\\Phi(z_{k+1}) - \\Phi(z_k))`, right in relative terms for
  every bin down to the smallest float (where :math:`\\Phi` differences underflow to 0 or
  cancel), with analytic gradients;
* :class:`NormalCdfSum`: :math:`\\sum_j \\Phi(z_j)` over equally spaced edges, exact in absolute
  terms, for the mean: a window of edges, Euler-Maclaurin or a Taylor series, :math:`O(1)` work
  per element.

The bin masses know nothing about bins in [-1, 1] (their edges come standardised); the sum is over
the edges :math:`2j/K - 1` of ``K`` equal bins on [-1, 1], which its schemes need.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

__all__ = ["NormalCdfSum", "exp_floor", "log_bin_masses", "log_normal_tail"]

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_SQRT_2PI = math.sqrt(2 * math.pi)
#: Where :func:`log_normal_tail` switches to its asymptotic series, and the number of its terms.
_TAIL_SERIES = {torch.float64: (37.5, 7)}
_TAIL_SERIES_DEFAULT = (12.0, 5)


def log_normal_tail(z):
    """:math:`\\ln \\Phi(-z)` for :math:`z \\ge 0` (``inf`` allowed), relative error a few
    :math:`\\epsilon`, without autograd (the callers supply the gradient).

    :math:`\\ln(\\tfrac12 \\operatorname{erfc}(z/\\sqrt2))` while :math:`\\operatorname{erfc}` is
    a normal number (:math:`z < 37.5` in float64, :math:`z < 12` otherwise), and beyond the
    asymptotic series (Abramowitz and Stegun 26.2.12)

    .. math:: \\ln\\Phi(-z) = -\\frac{z^2}{2} - \\ln z - \\ln\\sqrt{2\\pi}
              + \\ln \\sum_{k=0}^{n-1} \\frac{(-1)^k (2k-1)!!}{z^{2k}},

    :math:`n = 7` terms in float64 and 5 otherwise, whose first omitted term is below 2e-17 and
    2e-8 relative there.

    :param torch.Tensor z: any shape, :math:`z \\ge 0`.
    """
    switch, terms = _TAIL_SERIES.get(z.dtype, _TAIL_SERIES_DEFAULT)
    far = z >= switch
    out = torch.log(0.5 * torch.erfc(torch.where(far, 0.0, z) * math.sqrt(0.5)))
    if far.any():  # the series only where it is used
        x = z[far]
        inverse = 1 / (x * x)
        series = torch.ones_like(x)
        for k in range(terms - 1, 0, -1):  # Horner: 1 - 1 u (1 - 3 u (1 - 5 u ...))
            series = 1 - (2 * k - 1) * inverse * series
        out[far] = -0.5 * x * x - torch.log(x) - _LOG_SQRT_2PI + torch.log(series)
    return out


def _log1mexp(z):
    """:math:`\\ln(1 - e^{z})` for :math:`z \\le 0`, to an absolute error of a few :math:`\\epsilon`
    (all that a log-mass needs: it is added to a log-CDF)."""
    return torch.log(-torch.expm1(z.clamp(min=exp_floor(z.dtype))))


def exp_floor(dtype) -> float:
    """:math:`1 + \\ln` of the smallest normal number of ``dtype``. Exponents below it are floored
    there where that changes no result beyond rounding: :func:`torch.exp` is several times
    slower on them."""
    return math.log(torch.finfo(dtype).tiny) + 1.0


#: A bin is *narrow* when :math:`h(1 + |c|) \\le` this, :math:`c` its standardised centre and
#: :math:`h` its standardised half-width: the density varies by less than a factor
#: :math:`e^{1/2}` across it.
_NARROW_BIN = 0.25
#: The positive nodes :math:`v_j` of the 6-point Gauss-Legendre rule on [-1, 1] and their weights
#: (which sum to 1: each node stands for the pair :math:`\\pm v_j`); its error on a narrow bin is
#: below 1e-17 relative.
_NARROW_NODES, _NARROW_WEIGHTS = (tuple(values[3:].tolist()) for values in np.polynomial.legendre.leggauss(6))


def _narrow_bins(lower, upper, half_width):
    """``(narrow, centre)``: which bins are narrow, and their :math:`c = a + h` (0 elsewhere, so
    that no branch overflows)."""
    centre = torch.where(torch.isfinite(lower) & torch.isfinite(upper), lower + half_width, math.inf)
    narrow = half_width * (1 + centre.abs()) <= _NARROW_BIN
    return narrow, torch.where(narrow, centre, 0.0)


def _narrow_rule(centre, half_width, derivatives=False):
    """:math:`S = \\sum_j w_j e^{-h^2 v_j^2/2} \\cosh(c h v_j)`, and with ``derivatives`` also
    :math:`\\partial_c S` and :math:`\\partial_h S` (one node pair at a time: contiguous tensors;
    ``half_width`` may be one per row, which makes the damping factors cheap; the callers clamp
    it to ``_NARROW_BIN``, where the bins that are not narrow cannot overflow)."""
    ch, hh = centre * half_width, half_width * half_width
    total = d_centre = d_half = 0.0
    for node, weight in zip(_NARROW_NODES, _NARROW_WEIGHTS):
        damping = weight * torch.exp(hh * (-0.5 * node * node))
        cosh = torch.cosh(ch * node)
        total = total + damping * cosh
        if derivatives:
            sinh_term = damping * torch.sinh(ch * node) * node
            d_centre = d_centre + sinh_term * half_width
            d_half = d_half + sinh_term * centre - damping * cosh * (node * node) * half_width
    return (total, d_centre, d_half) if derivatives else total


def _log_bin_masses(edges, half_width):
    """The forward computation of :func:`log_bin_masses`."""
    lower, upper = edges[..., :-1], edges[..., 1:]
    # wide bins: from the log tails ln Phi(-|z|) of the edges (each computed once for the two
    # bins that share it); off the mean the edge nearer to it has the larger tail, and
    # p = e^big - e^small; the bin that holds the mean has p = 1 - e^tail_a - e^tail_b
    tails = log_normal_tail(edges.abs())
    tail_lower, tail_upper = tails[..., :-1], tails[..., 1:]
    big, small = torch.maximum(tail_lower, tail_upper), torch.minimum(tail_lower, tail_upper)
    # both tails -inf: the mass is below the log range, and -inf - -inf = NaN becomes ln(0)
    out = big + _log1mexp((small - big).nan_to_num(nan=0.0))
    middle = ((lower <= 0) & (upper > 0)).nonzero(as_tuple=True)
    out[middle] = _log1mexp(torch.logaddexp(tail_lower[middle], tail_upper[middle]))
    # narrow bins: Phi(c + h) - Phi(c - h) = 2h phi(c) mean_v[e^{-chv - h^2 v^2/2}], v ~ U(-1, 1)
    narrow, centre = _narrow_bins(lower, upper, half_width)
    h = half_width.clamp(max=_NARROW_BIN)
    log_narrow = torch.log(2 * h) - 0.5 * centre * centre - _LOG_SQRT_2PI + torch.log(_narrow_rule(centre, h))
    return torch.where(narrow, log_narrow, out)


class _LogBinMasses(torch.autograd.Function):
    """:func:`log_bin_masses` with its analytic gradient: for a wide bin
    :math:`\\partial_a \\ln p = -\\varphi(a)/p`, :math:`\\partial_b \\ln p = \\varphi(b)/p`; for a narrow
    one the derivatives in :math:`c = a + h` and :math:`h` of the rule itself (no cancellation
    between two large edge terms)."""

    @staticmethod
    def forward(ctx, edges, half_width):
        with torch.no_grad():
            out = _log_bin_masses(edges, half_width)
        ctx.save_for_backward(edges, half_width, out)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        edges, half_width, out = ctx.saved_tensors
        lower, upper = edges[..., :-1], edges[..., 1:]
        representable = out > -math.inf
        grad = torch.where(representable, grad, 0.0)  # an unrepresentable mass: no gradient
        narrow, centre = _narrow_bins(lower, upper, half_width)
        # wide: phi(z) / p at both edges (0 at an infinite edge)
        floor = exp_floor(edges.dtype)
        log_ratio = -_LOG_SQRT_2PI - torch.where(representable, out, 0.0)
        d_lower = -torch.exp((-0.5 * lower * lower + log_ratio).clamp(min=floor))
        d_upper = torch.exp((-0.5 * upper * upper + log_ratio).clamp(min=floor))
        # narrow: ln p = ln(2h) - c^2/2 - ln sqrt(2 pi) + ln S(c, h), c = a + h
        h = half_width.clamp(max=_NARROW_BIN)
        total, d_total_centre, d_total_half = _narrow_rule(centre, h, derivatives=True)
        d_centre = d_total_centre / total - centre
        d_half = d_total_half / total + 1 / h
        grad_edges = torch.zeros_like(edges)
        grad_edges[..., :-1] = grad * torch.where(narrow, d_centre, d_lower)
        grad_edges[..., 1:] += grad * torch.where(narrow, 0.0, d_upper)
        grad_half = grad * torch.where(narrow, d_half + d_centre, 0.0)
        return grad_edges, grad_half.sum_to_size(half_width.shape)


def log_bin_masses(edges, half_width):
    """:math:`\\ln(\\Phi(b) - \\Phi(a))` for every bin :math:`[a, b]` between consecutive
    standardised edges, with relative error a few :math:`\\epsilon (1 + |\\ln p|)` down to the
    smallest normal number (a mass whose log is below the dtype's range is ``-inf``).

    * A *wide* bin is a log-CDF difference on the side of the mean it lies on,
      :math:`\\ln\\Phi(b) + \\ln(1 - e^{\\ln\\Phi(a) - \\ln\\Phi(b)})` below it and
      :math:`\\ln(\\Phi(-a) - \\Phi(-b))` likewise above it, with the log tails of
      :func:`log_normal_tail` (no underflow, no cancellation).
    * A *narrow* bin (:math:`h(1 + |c|) \\le 1/4`, centre :math:`c = a + h`, half-width :math:`h`),
      where that difference would cancel, is the integral itself,

      .. math:: \\Phi(c + h) - \\Phi(c - h) = 2h\\,\\varphi(c) \\cdot \\tfrac12\\int_{-1}^{1}
                e^{-chv - h^2v^2/2}\\,dv,

      the last factor by 6-point Gauss-Legendre (the node pairs :math:`\\pm v_j` give
      :math:`\\cosh(chv_j)`).

    Differentiable in both arguments (:class:`_LogBinMasses`); not twice.

    :param torch.Tensor edges: standardised edges :math:`z_0 < \\dots < z_J`, shape ``(..., J + 1)``
        (``-inf`` first and ``inf`` last allowed).
    :param torch.Tensor half_width: the bins' standardised half-widths, shape ``(..., J)`` or
        ``(..., 1)`` for bins of one width, computed from the unstandardised widths
        (:math:`(z_{k+1} - z_k)/2` cancels for narrow bins).
    :returns: shape ``(..., J)``.
    """
    batch_shape = torch.broadcast_shapes(edges.shape[:-1], half_width.shape[:-1])
    edges = edges.expand(batch_shape + edges.shape[-1:])
    return _LogBinMasses.apply(edges, half_width.expand(batch_shape + half_width.shape[-1:]))


def _bernoulli_over_factorial(count: int) -> tuple:
    """:math:`B_{2k}/(2k)!` for :math:`k = 1, \\dots,` ``count`` (exact rationals, rounded once):
    the Euler-Maclaurin coefficients."""
    from fractions import Fraction

    numbers = [Fraction(1)]  # B_0, B_1, ... by sum_{j<=n} C(n + 1, j) B_j = 0
    for n in range(1, 2 * count + 1):
        numbers.append(-sum(math.comb(n + 1, j) * numbers[j] for j in range(n)) / (n + 1))
    return tuple(float(numbers[2 * k] / math.factorial(2 * k)) for k in range(1, count + 1))


#: The schemes of :class:`NormalCdfSum` per dtype (others are computed in float32):
#: ``window``: :math:`W`, the half-width of the window in standard deviations, where
#: :math:`2\\Phi(-W)` is below a quarter of the dtype's :math:`\\epsilon`; ``spacing``: the largest
#: standardised edge spacing :math:`\\delta = 2/(K\\sigma)` given to Euler-Maclaurin (its
#: exponentially small remainder :math:`e^{-2\\pi^2/\\delta^2}/\\pi` is 1.6e-35 and 1.3e-14 there) and
#: ``em_terms`` its number of correction terms (the next is below 1e-17, 1e-8); ``taylor``: the
#: :math:`\\sigma` from which the Taylor series about the centre is used and ``taylor_terms`` its
#: terms (the next below 2e-17, 1e-8 relative to :math:`K`).
_CDF_SUM_SCHEMES = {
    torch.float64: dict(window=8.5, spacing=0.5, em_terms=16, taylor=2.0, taylor_terms=11),
    torch.float32: dict(window=5.6, spacing=0.8, em_terms=8, taylor=2.0, taylor_terms=6),
}
#: Up to this many edges (``K <= 64``) the plain sum over all of them is as cheap as the schemes or
#: cheaper (``benchmarks/results/speed_discretised_mean.md``: they cost about as much as 63 CDFs a
#: variable).
_PLAIN_EDGES = 63
_EULER_MACLAURIN = _bernoulli_over_factorial(max(s["em_terms"] for s in _CDF_SUM_SCHEMES.values()))


def _hermite(z, order: int) -> list:
    """The probabilists' Hermite polynomials :math:`\\mathrm{He}_n(z)`, :math:`n = 0, \\dots,`
    ``order`` (:math:`\\varphi^{(n)} = (-1)^n \\mathrm{He}_n \\varphi`), by the recurrence
    :math:`\\mathrm{He}_{n+1} = z\\,\\mathrm{He}_n - n\\,\\mathrm{He}_{n-1}`."""
    out = [torch.ones_like(z), z]
    for n in range(1, order):
        out.append(torch.sub(z * out[n], out[n - 1], alpha=n))
    return out


def _density(z):
    """:math:`\\varphi(z)`, 0 where it is below the smallest normal number (a subnormal would make
    every product with it several times slower)."""
    exponent = -0.5 * z * z - _LOG_SQRT_2PI
    floor = exp_floor(z.dtype)
    return torch.where(exponent < floor, 0.0, torch.exp(exponent.clamp(min=floor)))


@functools.lru_cache(maxsize=None)
def _edge_moments(num_bins: int, terms: int) -> tuple:
    """:math:`\\sum_{j=1}^{K-1} e_j^{2m} / (2m)!` over the interior edges
    :math:`e_j = 2j/K - 1`, for :math:`m = 0, \\dots,` ``terms`` (float64, summed exactly)."""
    edges = [2 * j / num_bins - 1 for j in range(1, num_bins)]
    return tuple(math.fsum(e ** (2 * m) for e in edges) / math.factorial(2 * m) for m in range(terms + 1))


def _cdf_sums(loc, scale, num_bins: int, gradient: bool) -> tuple:
    """:math:`(S,)`, :math:`S = \\sum_j \\Phi(z_j)`, or with ``gradient``
    :math:`(\\sum_j \\varphi(z_j), \\sum_j z_j \\varphi(z_j))`, over the interior edges of
    ``num_bins`` bins; see :class:`NormalCdfSum` for the three schemes. ``loc``, ``scale``: same
    shape, float32 or float64."""
    scheme = _CDF_SUM_SCHEMES[loc.dtype]
    K, spacing = num_bins, 2 / num_bins
    narrow = scale < spacing / scheme["spacing"]  # delta = spacing / scale > delta_E
    taylor = scale >= scheme["taylor"]

    # ---- narrow: the M edges from j0 + 1 on, j0 the last edge below mu - W sigma (clamped into
    # range); the edges above the window each count 1 (other elements: finite, unused values).
    # Few bins: all edges, for every element, and nothing else. The edges are 2j/K - 1 as
    # _bin_edges computes them (bit for bit: the same z as the plain sum)
    edges = 2 * torch.arange(K + 1, dtype=loc.dtype, device=loc.device) / K - 1
    if K - 1 <= _PLAIN_EDGES:
        z, count = (edges[1:-1] - loc[..., None]) / scale[..., None], None
    else:
        width = min(K - 1, math.ceil(2 * scheme["window"] / scheme["spacing"]))
        sigma = scale.clamp(max=spacing / scheme["spacing"])
        start = ((loc - scheme["window"] * sigma + 1) / spacing).clamp(0, K - 1 - width).floor()
        index = start.long()[..., None] + torch.arange(1, width + 1, device=loc.device)
        z = (edges[index] - loc[..., None]) / sigma[..., None]
        count = K - 1 - width - start
    if gradient:
        # phi floored at the smallest normal number (a subnormal is several times slower) and
        # normalised after the sum
        density = torch.exp((-0.5 * z * z).clamp(min=exp_floor(z.dtype)))
        window = (density.sum(-1) * (1 / _SQRT_2PI), (z * density).sum(-1) * (1 / _SQRT_2PI))
    else:
        window = (torch.special.ndtr(z).sum(-1) + (0 if count is None else count),)
    if count is None:
        return window

    # ---- wide: Euler-Maclaurin over the edges 0..K (z from a to b in steps of delta), and the
    # Taylor series about c = -mu/sigma: Hermite polynomials at a, b and c (z clamped where phi
    # is 0: no overflow), their sums multiplied by phi(z) at the end
    terms, taylor_terms = scheme["em_terms"], scheme["taylor_terms"]
    sigma_em = scale.clamp(min=spacing / scheme["spacing"], max=scheme["taylor"])
    sigma_t = scale.clamp(min=scheme["taylor"])
    ends = ((-1 - loc) / sigma_em, (1 - loc) / sigma_em, -loc / sigma_t)  # a, b, c
    density = [_density(z) for z in ends]
    cutoff = math.sqrt(-2 * (exp_floor(loc.dtype) + _LOG_SQRT_2PI))
    orders = (2 * terms, 2 * terms, 2 * taylor_terms + 1) if gradient else (2 * terms - 2, 2 * terms - 2, 2 * taylor_terms - 1)
    he = [_hermite(z.clamp(-cutoff, cutoff), order) for z, order in zip(ends, orders)]
    delta = spacing / sigma_em
    delta_squared = delta * delta
    moments = _edge_moments(K, taylor_terms)

    def horner(coefficients, variable, term):
        """sum_i coefficients[i] variable^i term(i) (Horner in the variable)."""
        total = coefficients[-1] * term(len(coefficients) - 1)
        for i in range(len(coefficients) - 2, -1, -1):
            total = torch.add(total * variable, term(i), alpha=coefficients[i])
        return total

    def euler_maclaurin(shift):
        """sum_k B_2k/(2k)! delta^(2k-1) [He_(2k-2+shift) phi]_a^b"""
        ends_sum = [horner(_EULER_MACLAURIN[:terms], delta_squared, lambda i: he[e][2 * i + shift]) * density[e] for e in (0, 1)]
        return delta * (ends_sum[1] - ends_sum[0])

    def taylor_series(shift):
        """sum_(m >= 1) E_2m/(2m)! sigma^(-2m) He_(2m-1+shift)(c)"""
        inverse = sigma_t.reciprocal().square()
        return inverse * horner(moments[1:], inverse, lambda i: he[2][2 * i + 1 + shift])

    a, b, c = ends
    if gradient:
        # sum phi = (Phi(b) - Phi(a))/delta - (phi(a) + phi(b))/2 - EM[He_(2k-1) phi]
        # sum z phi = (phi(a) - phi(b))/delta - (a phi(a) + b phi(b))/2 - EM[He_2k phi]
        em0 = (torch.special.ndtr(b) - torch.special.ndtr(a)) / delta - 0.5 * (density[0] + density[1]) - euler_maclaurin(1)
        em1 = (density[0] - density[1]) / delta - 0.5 * (a * density[0] + b * density[1]) - euler_maclaurin(2)
        # sum phi = phi(c) sum_m E_2m/(2m)! He_2m(c)/sigma^2m, sum z phi: He_(2m+1)
        series0 = density[2] * (moments[0] + taylor_series(1))
        series1 = density[2] * (moments[0] * c + taylor_series(2))
        return (torch.where(narrow, window[0], torch.where(taylor, series0, em0)),
                torch.where(narrow, window[1], torch.where(taylor, series1, em1)))
    # sum Phi = (Psi(b) - Psi(a))/delta - (Phi(a) + Phi(b))/2 + EM[He_(2k-2) phi], with
    # Psi(z) = z Phi(z) + phi(z) = int Phi, written K + (Psi(-b) - Psi(-a))/delta for mu < 0
    cdf = [torch.special.ndtr(z) for z in ends]
    mirror = loc < 0
    psi = [torch.where(mirror, -z * (1 - p), z * p) + d for z, p, d in zip(ends[:2], cdf, density)]
    em = torch.where(mirror, float(K), 0.0) + (psi[1] - psi[0]) / delta - 0.5 * (cdf[0] + cdf[1]) + euler_maclaurin(0)
    # sum Phi = (K - 1) Phi(c) - phi(c) sum_m E_2m/(2m)! He_(2m-1)(c)/sigma^2m
    series = moments[0] * cdf[2] - density[2] * taylor_series(0)
    return (torch.where(narrow, window[0], torch.where(taylor, series, em)),)


class NormalCdfSum(torch.autograd.Function):
    """:math:`S = \\sum_{j=1}^{K-1} \\Phi(z_j)`, :math:`z_j = (e_j - \\mu)/\\sigma`, over the
    interior edges :math:`e_j = 2j/K - 1` of ``K`` equal bins on [-1, 1], for every element of
    ``loc`` and ``scale`` (same shape): ``NormalCdfSum.apply(loc, scale, num_bins)``. Exact in
    absolute terms (to a few :math:`\\epsilon K`, as the plain sum of :math:`K - 1` CDFs) with
    :math:`O(1)` work per element instead of :math:`K - 1` CDFs. Up to ``K = 64`` it is that plain
    sum (as cheap there); beyond, one of three schemes by the standardised spacing
    :math:`\\delta = 2/(K\\sigma)` (the constants per dtype in ``_CDF_SUM_SCHEMES``):

    * **narrow** (:math:`\\delta > \\delta_E`, 0.5 in float64, 0.8 in float32): only the
      :math:`M = \\lceil 2W/\\delta_E \\rceil` edges from the last one below :math:`\\mu - W\\sigma`
      on, plus the count of the edges above them. Every edge left out has :math:`|z| \\ge W`
      (:math:`W` = 8.5 in float64, 5.6 in float32): the ones below contribute
      :math:`\\sum_{i \\ge 0} \\Phi(-W - i\\delta)` and those counted as 1 lack as much, together at
      most :math:`2\\Phi(-W)/(1 - e^{-W\\delta_E}) \\le` 2.0e-17 (float64) and 2.2e-8 (float32),
      below a quarter of :math:`\\epsilon` (and :math:`\\hat k` subtracts :math:`2S/K` from a
      number of order 1, which rounds at :math:`\\epsilon/2`).
    * **wide** (:math:`\\delta \\le \\delta_E`, :math:`\\sigma < 2`): Euler-Maclaurin on the trapezoid
      sum over the edges :math:`j = 0, \\dots, K` (:math:`z` from :math:`a = (-1-\\mu)/\\sigma` to
      :math:`b = (1-\\mu)/\\sigma`),

      .. math:: S = \\frac{\\Psi(b) - \\Psi(a)}{\\delta} - \\frac{\\Phi(a) + \\Phi(b)}{2}
                + \\sum_{k=1}^{p} \\frac{B_{2k}}{(2k)!}\\, \\delta^{2k-1}
                \\big[\\mathrm{He}_{2k-2}(z)\\varphi(z)\\big]_a^b,

      :math:`\\Psi(z) = z\\Phi(z) + \\varphi(z)` (written :math:`K + (\\Psi(-b) - \\Psi(-a))/\\delta`
      for :math:`\\mu < 0`, so that no :math:`\\Psi` is large). The remainder after :math:`p` terms
      is the next term plus the Poisson-summation term :math:`e^{-2\\pi^2/\\delta^2}/\\pi`, which for
      a Gaussian is what the asymptotic series cannot capture: 1.6e-35 at :math:`\\delta = 0.5`
      and 1.3e-14 at 0.8, with :math:`p` = 16 and 8 terms.
    * **very wide** (:math:`\\sigma \\ge 2`): all edges lie within :math:`1/\\sigma \\le 1/2` of
      :math:`c = -\\mu/\\sigma`, and the Taylor series of :math:`\\Phi` about it sums over the edges
      in closed form (the odd powers cancel: the edges are symmetric about 0),

      .. math:: S = (K - 1)\\Phi(c) - \\sum_{m=1}^{q} \\mathrm{He}_{2m-1}(c)\\varphi(c)\\,
                \\frac{\\sum_j e_j^{2m}}{(2m)!\\,\\sigma^{2m}},

      11 terms in float64, 6 in float32 (no cancellation between large terms, which the
      Euler-Maclaurin integral would suffer as :math:`a \\to b`).

    The gradient is analytic and restricted the same way,

    .. math:: \\frac{\\partial S}{\\partial\\mu} = -\\frac{1}{\\sigma} \\sum_j \\varphi(z_j), \\qquad
              \\frac{\\partial S}{\\partial\\sigma} = -\\frac{1}{\\sigma} \\sum_j z_j\\, \\varphi(z_j),

    both sums by the same three schemes (the window; Euler-Maclaurin for :math:`\\varphi` and
    :math:`z\\varphi`, whose integrals are :math:`\\Phi` and :math:`-\\varphi`; their Taylor series).
    Only ``loc`` and ``scale`` are kept for the backward pass. Every element's three schemes are
    computed and one selected (no data-dependent shapes: any device, no synchronisation); float16
    and bfloat16 are computed in float32. Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, loc, scale, num_bins):
        """The sum, shape ``loc.shape``; keeps ``loc`` and ``scale`` for the backward."""
        ctx.save_for_backward(loc, scale)
        ctx.num_bins = num_bins
        work = loc.dtype if loc.dtype in _CDF_SUM_SCHEMES else torch.float32
        return _cdf_sums(loc.to(work), scale.to(work), num_bins, gradient=False)[0].to(loc.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        """The analytic gradients: :math:`-\\sum_j \\varphi(z_j)/\\sigma` for ``loc`` and
        :math:`-\\sum_j z_j \\varphi(z_j)/\\sigma` for ``scale`` (none for ``num_bins``)."""
        loc, scale = ctx.saved_tensors
        work = loc.dtype if loc.dtype in _CDF_SUM_SCHEMES else torch.float32
        density, moment = _cdf_sums(loc.to(work), scale.to(work), ctx.num_bins, gradient=True)
        common = grad.to(work) / scale.to(work)
        grad_loc = (-common * density).to(loc.dtype) if ctx.needs_input_grad[0] else None
        grad_scale = (-common * moment).to(scale.dtype) if ctx.needs_input_grad[1] else None
        return grad_loc, grad_scale, None
