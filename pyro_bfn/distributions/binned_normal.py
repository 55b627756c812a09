"""The masses of a standard Normal over consecutive intervals, for the discretised output
distribution (:class:`~pyro_bfn.distributions.discretised.DiscretisedOutput`, paper Sec. 4.3):

* :func:`log_bin_masses`: :math:`\\ln(\\Phi(z_{k+1}) - \\Phi(z_k))`, right in relative terms for
  every bin down to the smallest float (where :math:`\\Phi` differences underflow to 0 or
  cancel), with analytic gradients;
* :class:`NormalCdfSum`: :math:`\\sum_j \\Phi(z_j)`, exact in absolute terms, for the mean.

Nothing here knows about bins in [-1, 1]; the edges come standardised.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["NormalCdfSum", "exp_floor", "log_bin_masses", "log_normal_tail"]

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
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


class NormalCdfSum(torch.autograd.Function):
    """:math:`\\sum_j \\Phi((e_j - \\mu)/\\sigma)` over the edges ``e`` (shape ``(J,)``) for every
    element of ``loc`` and ``scale`` (same shape), exact in absolute terms
    (:func:`torch.special.ndtr`), with the analytic gradient

    .. math:: \\frac{\\partial}{\\partial\\mu} = -\\frac{1}{\\sigma} \\sum_j \\phi(z_j), \\qquad
              \\frac{\\partial}{\\partial\\sigma} = -\\frac{1}{\\sigma} \\sum_j z_j\\, \\phi(z_j),
              \\qquad z_j = (e_j - \\mu)/\\sigma.

    Autograd through ``ndtr`` would keep the ``(..., J)`` intermediates of the forward pass
    alive until the backward pass; this keeps only ``loc`` and ``scale`` and recomputes
    :math:`z` (faster forward + backward, and ``J`` times less memory held for the backward
    pass). Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, loc, scale, edges):
        """The sum, shape ``loc.shape``; keeps ``loc``, ``scale``, ``edges`` for the backward."""
        ctx.save_for_backward(loc, scale, edges)
        return torch.special.ndtr((edges - loc[..., None]) / scale[..., None]).sum(-1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        """The analytic gradients: :math:`-\\sum_j \\varphi(z_j)/\\sigma` for ``loc`` and
        :math:`-\\sum_j z_j \\varphi(z_j)/\\sigma` for ``scale`` (none for ``edges``)."""
        loc, scale, edges = ctx.saved_tensors
        z = (edges - loc[..., None]) / scale[..., None]
        density = torch.exp((-0.5 * z * z).clamp(min=exp_floor(z.dtype)))
        common = grad / (scale * math.sqrt(2 * math.pi))
        grad_loc = -common * density.sum(-1) if ctx.needs_input_grad[0] else None
        grad_scale = -common * (density * z).sum(-1) if ctx.needs_input_grad[1] else None
        return grad_loc, grad_scale, None
