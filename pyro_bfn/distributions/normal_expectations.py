"""Expectations under a Normal of the two piecewise-smooth functions behind the quadrature KLs
(:mod:`pyro_bfn.distributions.kl`):

* :func:`expected_logaddexp_normal`: :math:`E[\\ln(1 + e^u)]`, :math:`u \\sim N(\\mu, \\sigma^2)`, a
  closed form plus an accelerated alternating series, exact to the working precision;
* :func:`expected_neg_logsumexp_affine`: :math:`-E_{\\epsilon \\sim N(0, 1)}[\\operatorname{logsumexp}_m
  (a_m + b_m \\epsilon)]`, every bend of the upper envelope of the lines peeled off exactly and
  the smooth rest integrated by Gauss-Legendre quadrature, refined around the kinks where a
  third line makes it sharp.

Measured against ``mpmath``: ``benchmarks/results/kl_accuracy.md``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from .binned_normal import exp_floor

__all__ = ["QUADRATURE_NODES", "expected_logaddexp_normal", "expected_neg_logsumexp_affine"]

#: Default number of Gauss-Legendre nodes (8 per panel) of the smooth part of the quadrature KLs.
QUADRATURE_NODES = 192
#: The smooth part is integrated over :math:`|\\epsilon| \\le 8` (Normal mass outside: 1.2e-15).
_SMOOTH_HALF_WIDTH = 8.0


@functools.lru_cache(maxsize=32)
def _smooth_rule(num_nodes: int):
    """Nodes and weights for :math:`E_{\\epsilon \\sim N(0,1)}[g(\\epsilon)] \\approx \\sum_i w_i g(z_i)`
    for a bounded smooth ``g``: composite 8-point Gauss-Legendre on ``num_nodes / 8`` equal
    panels of :math:`[-8, 8]`, the Normal density folded into the weights."""
    if num_nodes < 8 or num_nodes % 8:
        raise ValueError(f"num_nodes must be a positive multiple of 8, got {num_nodes!r}")
    panels = num_nodes // 8
    nodes, weights = _gauss_legendre(8)
    position = ((np.arange(panels)[:, None] + nodes) / panels).reshape(-1)
    z = (2 * position - 1) * _SMOOTH_HALF_WIDTH
    w = np.tile(weights / panels, panels) * 2 * _SMOOTH_HALF_WIDTH * np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    return z, w


@functools.lru_cache(maxsize=8)
def _gauss_legendre(num_nodes: int):
    """Nodes in [0, 1] and weights (summing to 1) of the ``num_nodes``-point Gauss-Legendre rule."""
    nodes, weights = np.polynomial.legendre.leggauss(num_nodes)
    return (nodes + 1) / 2, weights / 2


#: :math:`3 + \\sqrt 8`, the rate of the alternating-series acceleration of
#: :func:`expected_logaddexp_normal`: ``n`` terms leave an error below ``2 S / 5.83^n``, ``S`` the sum.
_ACCELERATION_RATE = 3.0 + math.sqrt(8.0)


@functools.lru_cache(maxsize=8)
def _alternating_series_weights(dtype: torch.dtype):
    """Weights :math:`w_0, \\dots, w_{n-1}` with :math:`\\sum_{j \\ge 0} (-1)^j c_j \\approx
    \\sum_{j < n} w_j c_j` for every Hausdorff moment sequence :math:`c_j = \\int_0^1 s^j\\,d\\nu(s)`
    (:math:`\\nu \\ge 0`), with error at most :math:`2 S / (3 + \\sqrt 8)^n`, :math:`S` the sum
    (Cohen, Rodriguez Villegas and Zagier 2000, "Convergence acceleration of alternating series",
    Algorithm 1 and Proposition 1). ``n`` is the smallest count whose bound, for
    :math:`S \\le \\ln 2` (the sum of :func:`expected_logaddexp_normal`), is below half the
    machine epsilon of ``dtype`` (10 terms in float32, 22 in float64)."""
    epsilon = torch.finfo(dtype).eps
    num_terms = 1
    while 2 * math.log(2.0) / _ACCELERATION_RATE**num_terms > epsilon / 2:
        num_terms += 1
    d = _ACCELERATION_RATE**num_terms
    d = (d + 1 / d) / 2
    b, c, weights = -1.0, -d, []
    for j in range(num_terms):
        c = b - c
        weights.append(c / d)
        b = (j + num_terms) * (j - num_terms) * b / ((j + 0.5) * (j + 1))
    return np.array(weights)


def expected_logaddexp_normal(loc, scale):
    """:math:`E[\\ln(1 + e^u)]` for :math:`u \\sim N(\\mu, \\sigma^2)`, exact to the working
    precision for any :math:`\\sigma > 0` (float64: ~1e-13 against ``scipy.integrate.quad``).

    :math:`\\ln(1 + e^u) = \\max(u, 0) + \\ln(1 + e^{-|u|})`. The maximum has the closed-form
    expectation :math:`\\mu\\Phi(\\mu/\\sigma) + \\sigma\\varphi(\\mu/\\sigma)`. The remainder,
    which carries the kink at :math:`u = 0`, is the alternating series
    :math:`\\ln(1 + e^{-|u|}) = \\sum_{k \\ge 1} (-1)^{k+1} e^{-k|u|}/k`, whose terms have
    closed-form expectations (Normal moment-generating function restricted to a half-line),

    .. math:: E[e^{-k|u|}] = T_k(\\mu) + T_k(-\\mu), \\qquad
              T_k(m) = E[e^{-ku}; u > 0] = e^{-km + k^2\\sigma^2/2}\\,\\Phi(m/\\sigma - k\\sigma)
              = \\tfrac12 e^{-m^2/2\\sigma^2} \\operatorname{erfcx}\\big((k\\sigma - m/\\sigma)/\\sqrt2\\big),

    evaluated without overflow or cancellation through :math:`\\operatorname{erfcx}` and
    :math:`\\operatorname{erfcx}(-v) = 2e^{v^2} - \\operatorname{erfcx}(v)`. The coefficients
    :math:`c_j = E[e^{-(j+1)|u|}]/(j+1) = E\\int_0^{e^{-|u|}} s^j ds` form a Hausdorff moment
    sequence, so the accelerated sum of :func:`_alternating_series_weights` converges
    geometrically (rate :math:`5.83^{-n}`) with a proven bound: 10 terms reach float32's
    precision, 22 terms float64's, whatever :math:`\\mu` and :math:`\\sigma`. No quadrature
    nodes; differentiable (the gradients are those of the same closed forms).

    :param torch.Tensor loc: :math:`\\mu`, any shape.
    :param torch.Tensor scale: :math:`\\sigma > 0`, broadcastable with ``loc``.
    :returns: the broadcast shape.
    """
    loc, scale = torch.broadcast_tensors(loc, scale)
    standardised = loc / scale
    floor = exp_floor(loc.dtype)
    gauss = torch.exp((-0.5 * standardised * standardised).clamp(min=floor))
    maximum = loc * torch.special.ndtr(standardised) + scale * gauss / math.sqrt(2 * math.pi)
    weights = torch.as_tensor(_alternating_series_weights(loc.dtype), dtype=loc.dtype, device=loc.device)
    k = torch.arange(1, weights.shape[0] + 1, dtype=loc.dtype, device=loc.device)
    weights = weights / k
    # with a = |mu|/sigma, v = k sigma: T_k(-|mu|) = gauss/2 erfcx((v + a)/sqrt2), and
    # T_k(|mu|) = gauss/2 erfcx((v - a)/sqrt2) for v >= a, else
    # e^{-k|mu| + v^2/2} - gauss/2 erfcx((a - v)/sqrt2) (the exponent is negative there)
    a = standardised.abs()[..., None]
    v = k * scale[..., None]
    excess = a - v
    above = excess > 0
    root_half = math.sqrt(0.5)
    erfcx_terms = torch.special.erfcx((v + a) * root_half) + torch.where(above, -1.0, 1.0) * torch.special.erfcx(
        torch.where(above, excess, -excess) * root_half
    )
    direct = torch.where(above, torch.exp((0.5 * v * v - k * loc.abs()[..., None]).clamp(floor, 0.0)), 0.0)
    return maximum + 0.5 * gauss * (erfcx_terms * weights).sum(-1) + (direct * weights).sum(-1)


def _envelope_successors(a, b):
    """The upper envelope :math:`\\max_m (a_m + b_m \\epsilon)` of lines sorted by slope.

    :param torch.Tensor a: intercepts, shape ``(..., M)``, ``-inf`` for absent lines.
    :param torch.Tensor b: slopes, same shape, non-decreasing along the last dimension.
    :returns: ``(on, successor)``: whether each line is the maximum on an interval of positive
        length, and the index of the next envelope line to its right (``M`` for none); as
        :math:`\\epsilon` grows the envelope runs through the ``on`` lines in index order.
    """
    num_lines = a.shape[-1]
    present = a > -math.inf
    safe_a = torch.where(present, a, torch.zeros_like(a))
    # crossing[i, j] = (a_i - a_j) / (b_j - b_i): line j (i < j, the larger slope) is above
    # line i to the right of it; parallel lines: the later one wins ties, the higher one wins
    rise = safe_a[..., :, None] - safe_a[..., None, :]
    run = b[..., None, :] - b[..., :, None]
    parallel = run <= 0
    crossing = torch.where(parallel, torch.where(rise > 0, math.inf, -math.inf), rise / torch.where(parallel, 1.0, run))
    index = torch.arange(num_lines, device=a.device)
    before = index[:, None] < index[None, :]  # [i, j]: i < j
    # line m is above every present line i < m right of crossing[i, m], and above every
    # present line j > m left of crossing[m, j]
    lower = torch.where(before & present[..., :, None], crossing, -math.inf).amax(-2)
    upper = torch.where(before & present[..., None, :], crossing, math.inf).amin(-1)
    on = present & (lower < upper)
    # the next envelope line: the smallest index j > m that is on the envelope
    candidate = torch.where(on, index, num_lines)
    later = torch.cat([candidate[..., 1:], torch.full_like(candidate[..., :1], num_lines)], -1)
    successor = later.flip(-1).cummin(-1).values.flip(-1)
    return on, successor


def expected_neg_logsumexp_affine(a, b, num_nodes: int = QUADRATURE_NODES):
    """:math:`-E_{\\epsilon \\sim N(0, 1)}[\\operatorname{logsumexp}_m (a_m + b_m \\epsilon)]`, accurate
    to about 1e-12 relative in float64 for any intercepts and slopes (plus the rounding of the
    inputs: a few :math:`\\epsilon` times the largest :math:`|a_m + b_m \\epsilon|` that matters).

    The integrand bends sharply wherever two lines :math:`\\ell_m = a_m + b_m\\epsilon` take over
    from each other on the upper envelope (a kink of slope jump :math:`b_{m'} - b_m`, out of reach
    of Gauss-Hermite when it is large and in the bulk). With the envelope lines
    :math:`m_0, m_1, \\dots` in order of slope and :math:`m_c` the one on top at :math:`\\epsilon = 0`
    (the largest intercept), :math:`\\max_m \\ell_m = \\ell_{m_c} + \\sum_{i \\ge c} \\max(0, u_i)
    + \\sum_{i < c} \\max(0, -u_i)`, :math:`u_i = \\ell_{m_{i+1}} - \\ell_{m_i}`, so

    .. math:: \\operatorname{logsumexp}_m \\ell_m = \\ell_{m_c}
              + \\sum_{i \\ge c} \\ln(1 + e^{u_i}) + \\sum_{i < c} \\ln(1 + e^{-u_i}) + g(\\epsilon),

    (every term small in the bulk: nothing cancels against the large intercept of a line that
    leads only far in a tail),
    where each :math:`\\ln(1 + e^u)` of a Gaussian :math:`u` carries one bend and has an exact
    expectation (:func:`expected_logaddexp_normal`), and the rest :math:`g` is smooth: each bend
    cancels exactly against its own term. :math:`g` is integrated by composite Gauss-Legendre
    quadrature with ``num_nodes`` nodes on :math:`[-8, 8]` (:func:`_smooth_rule`), except that a
    third line coming close to the envelope at a kink :math:`e` (a gap :math:`\\delta` there, a
    slope difference :math:`\\lambda` with the two lines of the kink) leaves a bump of height
    about :math:`e^{-\\delta}` and width :math:`1/\\lambda` in :math:`g`. Every kink whose bumps the
    plain rule could miss by more than the working precision (:func:`_kinks_to_refine`) gets
    extra panels, graded geometrically from width :math:`1/(4\\lambda)` at the kink up to the
    plain panel width (:func:`_refined_rule`). With two lines :math:`g = 0`. Cost per element:
    :math:`O(M^2)` for the envelope and the gaps, :math:`O(M \\cdot` nodes :math:`)` for the
    quadrature (more nodes only for elements with a sharp kink in the bulk).

    :param torch.Tensor a: intercepts, shape ``(..., M)`` (``-inf`` for a component of zero weight).
    :param torch.Tensor b: slopes, broadcastable with ``a``.
    :param int num_nodes: nodes of the plain rule, a positive multiple of 8.
    :returns: shape ``(...)``; ``+inf`` if every intercept is ``-inf``.
    """
    a, b = torch.broadcast_tensors(a, b)
    _smooth_rule(num_nodes)  # checks num_nodes
    # the envelope holds (M, M) and the quadrature (M, num_nodes) numbers per element: bound the
    # working memory by evaluating at most _CHUNK_NUMBERS of them at a time
    num_lines = a.shape[-1]
    batch_shape = a.shape[:-1]
    flat_a, flat_b = a.reshape(-1, num_lines), b.reshape(-1, num_lines)
    chunk = max(1, _CHUNK_NUMBERS // (num_lines * max(num_lines, num_nodes)))
    parts = [
        _expected_neg_logsumexp_affine(flat_a[i : i + chunk], flat_b[i : i + chunk], num_nodes)
        for i in range(0, flat_a.shape[0], chunk)
    ]
    return torch.cat(parts).reshape(batch_shape) if parts else a.new_zeros(batch_shape)


#: Largest number of (element, line, line-or-node) entries evaluated at once by
#: :func:`expected_neg_logsumexp_affine` (2^22: tens of MB per intermediate tensor).
_CHUNK_NUMBERS = 2**22


def _expected_neg_logsumexp_affine(a, b, num_nodes):
    """:func:`expected_neg_logsumexp_affine` on one chunk, ``a`` and ``b`` of shape ``(E, M)``."""
    order = b.argsort(-1)
    a, b = a.gather(-1, order), b.gather(-1, order)
    num_lines = a.shape[-1]
    on, successor = _envelope_successors(a.detach(), b.detach())
    any_on = on.any(-1)
    # the chain starts from the envelope line at eps = 0 (the largest intercept), not the first
    # one: every bend term is then small in the bulk, and none cancels against a large intercept
    centre = torch.where(on, a.detach(), -math.inf).argmax(-1, keepdim=True)
    centre_a, centre_b = a.gather(-1, centre)[..., 0], b.gather(-1, centre)[..., 0]
    # one bend per envelope line m that has a successor m': u = l_m' - l_m ~ N(a_m' - a_m, (b_m' - b_m)^2)
    # right of the centre, ln(1 + e^u); left of it, ln(1 + e^-u) (they differ by u)
    bend = on & (successor < num_lines)
    next_index = successor.clamp(max=num_lines - 1)
    next_a, next_b = a.gather(-1, next_index), b.gather(-1, next_index)
    sign = torch.where(torch.arange(num_lines, device=a.device) < centre, -1.0, 1.0).to(a.dtype)
    safe_a = torch.where(bend, a, torch.zeros_like(a))
    bend_loc = torch.where(bend, sign * (next_a - safe_a), torch.zeros_like(a))
    bend_scale = torch.where(bend, next_b - b, torch.ones_like(b))
    bends = torch.where(bend, expected_logaddexp_normal(bend_loc, bend_scale), torch.zeros_like(a)).sum(-1)
    pieces = (a, b, centre_a, centre_b, bend, bend_loc, sign * bend_scale)
    # the smooth rest g: the plain rule everywhere, the refined one where a kink needs it
    nodes, weights = (torch.as_tensor(v, dtype=a.dtype, device=a.device) for v in _smooth_rule(num_nodes))
    rest = _smooth_rest(pieces, nodes, weights)
    kink = torch.where(bend, -sign * bend_loc.detach() / bend_scale.detach(), 0.0)
    rows, centres, sharpness = _kinks_to_refine(a.detach(), b.detach(), bend, next_index, kink, num_nodes)
    if rows.numel():
        nodes, weights = _refined_rule(centres, sharpness, num_nodes)
        step = max(1, _CHUNK_NUMBERS // (num_lines * nodes.shape[-1]))
        refined = [
            _smooth_rest([p[rows[i : i + step]] for p in pieces], nodes[i : i + step], weights[i : i + step])
            for i in range(0, rows.numel(), step)
        ]
        rest = rest.index_put((rows,), torch.cat(refined))
    value = -(centre_a + bends + rest)
    return torch.where(any_on, value, torch.full_like(value, math.inf))


def _smooth_rest(pieces, nodes, weights):
    """:math:`E[g(\\epsilon)] \\approx \\sum_i w_i g(z_i)` for the quadrature ``nodes`` and
    ``weights`` (shape ``(N,)``, or ``(E, N)`` per element), ``pieces`` the sorted lines, the
    envelope line at 0 and the bends (:math:`u = \\mathrm{loc} + \\mathrm{slope}\\, \\epsilon`) of
    :func:`_expected_neg_logsumexp_affine`."""
    a, b, centre_a, centre_b, bend, bend_loc, bend_slope = pieces
    floor = exp_floor(a.dtype)
    z = nodes[..., None, :]  # (1 or E, 1, N)
    # logsumexp and ln(1 + e^u) with the exponents floored at ln(tiny) (a change below the
    # smallest normal number), which keeps exp off its slow path for far-off lines
    lines = a[..., None] + b[..., None] * z
    top = lines.detach().amax(-2, keepdim=True)
    top = torch.where(torch.isfinite(top), top, 0.0)
    logsumexp = top[..., 0, :] + torch.log(torch.exp((lines - top).clamp(min=floor)).sum(-2))
    u = bend_loc[..., None] + bend_slope[..., None] * z
    peeled = u.clamp(min=0.0) + torch.log1p(torch.exp(-u.abs().clamp(max=-floor)))
    chain = centre_a[..., None] + centre_b[..., None] * nodes + torch.where(bend[..., None], peeled, 0.0).sum(-2)
    return ((logsumexp - chain) * weights).sum(-1)



#: :math:`K_8`: the 8-point Gauss-Legendre rule's relative error on :math:`e^{cx}`, :math:`|x| \\le 1`,
#: is about :math:`K_8 c^{16}` (an overestimate beyond :math:`c \\approx 4`).
_LOG_K8 = math.log(2**17 * math.factorial(8) ** 4 / (17 * math.factorial(16) ** 3))
#: A kink is refined when its estimated quadrature error exceeds this many epsilons.
_REFINE_TOLERANCE = 256


def _kinks_to_refine(a, b, bend, next_index, kink, num_nodes):
    """The kinks of the envelope that need extra quadrature panels, and how sharp they are.

    A third line ``j`` at a gap :math:`\\delta_j` below the envelope at the kink :math:`e` (slope
    jump :math:`s` there), with slope differences up to :math:`\\lambda_j` from the kink's two
    lines, adds to :math:`g` a bump of height about :math:`e^{-\\delta_j}`: exponentials of rate
    up to :math:`\\lambda_j` on either side, joined by a logistic step of width :math:`1/s` (poles
    at :math:`\\pm i\\pi/s`). On plain panels of half-width :math:`r` the 8-point rule's relative
    error is about :math:`E(\\lambda_j r) = \\min(1, K_8 (\\lambda_j r)^{16})`,
    :math:`K_8 = 2^{17} (8!)^4 / (17 (16!)^3)`, on an exponential and :math:`\\rho^{-16}`,
    :math:`\\rho = t + \\sqrt{1 + t^2}`, :math:`t = \\pi/(s r)`, on the step (the Bernstein-ellipse
    bound, for the pole above a panel's centre); a kink is refined when :math:`\\varphi(e)\\,
    e^{-\\delta_j}` times the larger of the two exceeds ``_REFINE_TOLERANCE`` times the dtype's
    epsilon for some line (the estimate overstates the error by two orders of magnitude or
    more). Kinks that fail the bound even with a zero gap and the steepest pair of lines are
    dropped first, so that the :math:`O(M^2)` gaps are computed for a few kinks of a few
    elements only.

    :returns: ``(rows, centres, sharpness)``: the elements (indices) with a refined kink, and for
        each of them the refined kinks' positions and :math:`\\max_j \\lambda_j`, shape
        ``(len(rows), C)``, padded with sharpness 0 (no refinement).
    """
    log_epsilon = math.log(_REFINE_TOLERANCE * torch.finfo(a.dtype).eps)
    half_panel = _SMOOTH_HALF_WIDTH / (num_nodes // 8)
    present = a > -math.inf

    def log_error(kink, gap, sharp, jump):
        exponential = (16 * torch.log(sharp * half_panel) + _LOG_K8).clamp(max=0.0)
        step = -16 * torch.asinh(math.pi / (jump * half_panel))
        return -0.5 * kink * kink - gap + torch.maximum(exponential, step)

    steepest = torch.where(present, b, -math.inf).amax(-1) - torch.where(present, b, math.inf).amin(-1)
    candidate = bend & (kink.abs() < _SMOOTH_HALF_WIDTH + 1)
    steepest = steepest[..., None].clamp(min=1e-300)
    candidate &= log_error(kink, torch.zeros_like(kink), steepest, steepest) > log_epsilon
    rows = candidate.any(-1).nonzero()[:, 0]
    count = int(candidate[rows].sum(-1).max()) if rows.numel() else 0
    if not count:
        return rows, kink.new_zeros((0, 0)), kink.new_zeros((0, 0))
    slots = torch.sort(candidate[rows].to(torch.int8), dim=-1, descending=True, stable=True).indices[:, :count]
    a, b, present = a[rows], b[rows], present[rows]
    used = candidate[rows].gather(-1, slots)
    centres, own_b = kink[rows].gather(-1, slots), b.gather(-1, slots)
    next_slot = next_index[rows].gather(-1, slots)
    next_b = b.gather(-1, next_slot)
    own_a = torch.where(present, a, 0.0).gather(-1, slots)
    safe_a = torch.where(present, a, 0.0)
    # (row, kink, line): the line's gap below the kink's own line at the kink, and its sharpness
    gap = (own_a + own_b * centres)[..., None] - (safe_a[:, None, :] + b[:, None, :] * centres[..., None])
    sharp = torch.maximum((b[:, None, :] - own_b[..., None]).abs(), (b[:, None, :] - next_b[..., None]).abs())
    jump = (next_b - own_b)[..., None].clamp(min=1e-300)
    line = torch.arange(a.shape[-1], device=a.device)
    third = present[:, None, :] & (line != slots[..., None]) & (line != next_slot[..., None]) & used[..., None]
    significant = third & (log_error(centres[..., None], gap.clamp(min=0.0), sharp.clamp(min=1e-300), jump) > log_epsilon)
    sharpness = torch.where(significant, torch.maximum(sharp, jump), 0.0).amax(-1)
    keep = (sharpness > 0).any(-1)
    rows, centres, sharpness = rows[keep], centres[keep], sharpness[keep]
    # keep only the refined kinks (sharpness > 0) in the columns, first
    count = int((sharpness > 0).sum(-1).max()) if rows.numel() else 0
    slots = torch.sort((sharpness > 0).to(torch.int8), dim=-1, descending=True, stable=True).indices[:, :count]
    return rows, centres.gather(-1, slots), sharpness.gather(-1, slots)


#: Ratio of successive panel widths away from a refined kink, and the first panel's width times
#: the kink's sharpness.
_GRADING, _FIRST_PANEL = 2.0, 0.25


def _refined_rule(centres, sharpness, num_nodes):
    """Per-element nodes and weights, shape ``(E, N)``: the panels of the plain rule, split at
    :math:`e \\pm w_0 q^k` around every refined kink :math:`e` (``centres``, shape ``(E, C)``;
    :math:`w_0 = 1/(4\\lambda)`, ``sharpness`` :math:`\\lambda`, 0 for no kink; :math:`q = 2`, up to
    the plain panel width), 8 Gauss-Legendre nodes per panel, the Normal density folded into the
    weights."""
    panels = num_nodes // 8
    width = 2 * _SMOOTH_HALF_WIDTH / panels
    used = sharpness > 0
    first = _FIRST_PANEL / sharpness.clamp(min=1e-300)
    levels = int(torch.log2(width / first[used]).ceil().clamp(min=0).max()) + 1
    offsets = first[..., None] * _GRADING ** torch.arange(levels, dtype=centres.dtype, device=centres.device)
    points = torch.cat([centres[..., None] - offsets, centres[..., None], centres[..., None] + offsets], -1)
    points = torch.where(used[..., None], points, -_SMOOTH_HALF_WIDTH).flatten(-2)
    plain = torch.linspace(-_SMOOTH_HALF_WIDTH, _SMOOTH_HALF_WIDTH, panels + 1, dtype=centres.dtype, device=centres.device)
    edges = torch.cat([plain.expand(centres.shape[0], -1), points.clamp(-_SMOOTH_HALF_WIDTH, _SMOOTH_HALF_WIDTH)], -1)
    edges = edges.sort(-1).values
    lower, size = edges[..., :-1, None], (edges[..., 1:] - edges[..., :-1])[..., None]
    unit_nodes, unit_weights = (torch.as_tensor(v, dtype=centres.dtype, device=centres.device) for v in _gauss_legendre(8))
    nodes = (lower + size * unit_nodes).flatten(-2)
    weights = (size * unit_weights).flatten(-2) * torch.exp(-0.5 * nodes * nodes) / math.sqrt(2 * math.pi)
    return nodes, weights
