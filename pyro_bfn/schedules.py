"""Accuracy schedules of Bayesian Flow Networks.

An accuracy schedule :math:`\\beta(t)`, :math:`t \\in [0, 1]`, is the total accuracy the
sender has revealed by time :math:`t`; its derivative :math:`\\alpha(t) = \\beta'(t)` is
the accuracy rate (paper Sec. 2.3). An ``n``-step process with :math:`t_i = i/n` uses the
step accuracies

.. math:: \\alpha_i = \\beta(t_i) - \\beta(t_{i-1}), \\qquad \\sum_{i=1}^n \\alpha_i = \\beta(1),

which is exactly what makes the n-step and continuous-time processes agree, because
accuracies add (paper Sec. 3.4). The grid :math:`t_i` itself is
:class:`pyro_bfn.sampling.grid.TimeGrid`'s.

Two families are defined:

* :class:`ContinuousSchedule` (continuous and discretised data, paper Secs. 3.5 and 4):
  :math:`\\beta(t) = \\sigma_1^{-2t} - 1`, chosen so that the expected entropy of the
  input distribution falls linearly in :math:`t`.
* :class:`DiscreteSchedule` (discrete data, paper Sec. 5.5):
  :math:`\\beta(t) = \\beta_1 t^2`.

Each closed form is written once, here; distributions take accuracies as tensors and never
recompute a schedule.
"""

from __future__ import annotations

import math
from numbers import Real

import torch

from .checks import check_integer

__all__ = ["AccuracySchedule", "ContinuousSchedule", "DiscreteSchedule"]


def _as_time(t, like: torch.Tensor | None = None) -> torch.Tensor:
    """Return ``t`` as a floating tensor, checking that every value lies in [0, 1]."""
    if not isinstance(t, torch.Tensor):
        dtype = like.dtype if like is not None else torch.get_default_dtype()
        t = torch.as_tensor(t, dtype=dtype)
    if not t.is_floating_point():
        raise ValueError(f"t must be a floating-point tensor, got dtype {t.dtype}")
    if not bool(((t >= 0) & (t <= 1)).all()):  # one pass and one device sync; NaN fails both
        if torch.isnan(t).any():
            raise ValueError("t contains NaN")
        raise ValueError(f"t must lie in [0, 1], got values in [{t.min().item()}, {t.max().item()}]")
    return t


def _check_step_index(i: torch.Tensor, n_steps: int) -> torch.Tensor:
    if not isinstance(i, torch.Tensor):
        i = torch.as_tensor(i)
    if i.is_floating_point() or i.is_complex():
        raise ValueError(f"step index i must be an integer tensor, got dtype {i.dtype}")
    if not bool(((i >= 1) & (i <= n_steps)).all()):
        raise ValueError(f"step index i must lie in 1..{n_steps}")
    return i


class AccuracySchedule:
    """Base class: the accumulated accuracy :math:`\\beta(t)`, its rate :math:`\\alpha(t)`
    and the n-step accuracies :math:`\\alpha_i`.

    Subclasses implement :meth:`beta`, :meth:`alpha` and :meth:`step_accuracy`.
    """

    def beta(self, t) -> torch.Tensor:
        """Accumulated accuracy :math:`\\beta(t)`.

        :param t: times in [0, 1], any shape.
        :returns: a tensor of the shape of ``t``.
        """
        raise NotImplementedError

    def alpha(self, t) -> torch.Tensor:
        """Accuracy rate :math:`\\alpha(t) = d\\beta/dt`.

        :param t: times in [0, 1], any shape.
        :returns: a tensor of the shape of ``t``.
        """
        raise NotImplementedError

    def step_accuracy(self, i, n_steps: int, dtype=None) -> torch.Tensor:
        """Accuracy of step ``i`` of ``n_steps``: :math:`\\alpha_i = \\beta(i/n) - \\beta((i-1)/n)`.

        :param i: integer step indices in ``1..n_steps``, any shape.
        :param int n_steps: number of steps ``n``.
        :param dtype: floating dtype of the result (and of the computation); default
            ``torch.get_default_dtype()``.
        :returns: a floating tensor of the shape of ``i``.
        """
        raise NotImplementedError

    def step_accuracies(self, n_steps: int, dtype=None, device=None) -> torch.Tensor:
        """All n-step accuracies :math:`(\\alpha_1, \\dots, \\alpha_n)`, shape ``(n_steps,)``."""
        n_steps = check_integer("n_steps", n_steps)
        i = torch.arange(1, n_steps + 1, device=device)
        return self.step_accuracy(i, n_steps, dtype=dtype)


class ContinuousSchedule(AccuracySchedule):
    """The schedule for continuous and discretised data (paper Secs. 3.5, 4).

    .. math::

        \\beta(t) = \\sigma_1^{-2t} - 1, \\qquad
        \\alpha(t) = -2 \\ln(\\sigma_1)\\, \\sigma_1^{-2t}, \\qquad
        \\gamma(t) = \\frac{\\beta(t)}{1 + \\beta(t)} = 1 - \\sigma_1^{2t},

    and for ``n`` steps :math:`\\alpha_i = \\sigma_1^{-2i/n}(1 - \\sigma_1^{2/n})`.

    :param float sigma_1: standard deviation of the input distribution at ``t = 1`` given
        the data (the prior is :math:`N(0, 1)`); must lie in (0, 1). The paper uses
        ``1e-3`` for 256 bins, ``sqrt(1e-3)`` for 16 bins and ``0.02`` for continuous data.
    """

    def __init__(self, sigma_1: float):
        if isinstance(sigma_1, torch.Tensor):
            sigma_1 = float(sigma_1)
        if not isinstance(sigma_1, Real) or not math.isfinite(sigma_1) or not 0.0 < sigma_1 < 1.0:
            raise ValueError(f"sigma_1 must lie in (0, 1), got {sigma_1!r}")
        self.sigma_1 = float(sigma_1)
        self._log_sigma_1 = math.log(self.sigma_1)

    def __repr__(self):
        return f"ContinuousSchedule(sigma_1={self.sigma_1!r})"

    def beta(self, t) -> torch.Tensor:
        t = _as_time(t)
        # sigma_1^(-2t) - 1 = expm1(-2 t ln sigma_1): exact near t = 0
        return torch.expm1(-2.0 * self._log_sigma_1 * t)

    def alpha(self, t) -> torch.Tensor:
        t = _as_time(t)
        return -2.0 * self._log_sigma_1 * torch.exp(-2.0 * self._log_sigma_1 * t)

    def gamma(self, t) -> torch.Tensor:
        """:math:`\\gamma(t) = 1 - \\sigma_1^{2t}`, the weight of the data in the flow's mean."""
        t = _as_time(t)
        return -torch.expm1(2.0 * self._log_sigma_1 * t)

    def step_accuracy(self, i, n_steps: int, dtype=None) -> torch.Tensor:
        n_steps = check_integer("n_steps", n_steps)
        i = _check_step_index(i, n_steps)
        i = i.to(dtype or torch.get_default_dtype())
        # sigma_1^(-2i/n) (1 - sigma_1^(2/n)), with 1 - sigma_1^(2/n) = -expm1(2 ln(sigma_1) / n)
        return torch.exp(-2.0 * self._log_sigma_1 * i / n_steps) * (
            -math.expm1(2.0 * self._log_sigma_1 / n_steps)
        )


class DiscreteSchedule(AccuracySchedule):
    """The schedule for discrete data (paper Sec. 5.5).

    .. math::

        \\beta(t) = \\beta_1 t^2, \\qquad \\alpha(t) = 2 \\beta_1 t, \\qquad
        \\alpha_i = \\beta_1 \\frac{2i - 1}{n^2}.

    :param float beta_1: final accuracy, > 0. The paper uses 9 for binarized MNIST (K = 2)
        and 0.5625 for text8 (K = 27); the reference code stores ``sqrt(beta_1)`` under
        the name ``max_sqrt_beta``.
    """

    def __init__(self, beta_1: float):
        if isinstance(beta_1, torch.Tensor):
            beta_1 = float(beta_1)
        if not isinstance(beta_1, Real) or not math.isfinite(beta_1) or not beta_1 > 0.0:
            raise ValueError(f"beta_1 must be a finite positive number, got {beta_1!r}")
        self.beta_1 = float(beta_1)

    def __repr__(self):
        return f"DiscreteSchedule(beta_1={self.beta_1!r})"

    def beta(self, t) -> torch.Tensor:
        t = _as_time(t)
        return self.beta_1 * t * t

    def alpha(self, t) -> torch.Tensor:
        t = _as_time(t)
        return 2.0 * self.beta_1 * t

    def step_accuracy(self, i, n_steps: int, dtype=None) -> torch.Tensor:
        n_steps = check_integer("n_steps", n_steps)
        i = _check_step_index(i, n_steps)
        i = i.to(dtype or torch.get_default_dtype())
        return self.beta_1 * (2.0 * i - 1.0) / (n_steps * n_steps)
