"""ODE and SDE solvers for BFNs (BFN-Solver, Xue et al., ICML 2024, arXiv 2404.15766); the
derivation is in ``docs/sampling_solvers.rst``.

Every data type's Bayesian flow is the marginal of a Gaussian diffusion of a state :math:`z_t`:

* continuous and discretised data (paper Sec. 3.3): :math:`z_t = \\mu_t \\sim N(\\gamma_t x,\\,
  \\gamma_t(1-\\gamma_t))`, so :math:`a_t = \\gamma_t`, :math:`s_t = \\sqrt{\\gamma_t(1-\\gamma_t)}`
  and the data prediction is :math:`\\hat x = E_{p_O}[x]`;
* discrete data (paper Sec. 5.3, the logits of :math:`\\theta = \\mathrm{softmax}(y)`):
  :math:`z_t = y_t \\sim N(\\beta_t (K e_x - 1),\\, \\beta_t K I)`, so :math:`a_t = \\beta_t`,
  :math:`s_t = \\sqrt{K\\beta_t}`, the "data" :math:`K e_x - 1` and its prediction
  :math:`K\\, p_O(\\cdot \\mid \\theta;\\, t) - 1`.

With the half log signal-to-noise ratio :math:`\\lambda_t = \\ln(a_t/s_t)` and :math:`h =
\\lambda_t - \\lambda_s`, a step from :math:`s` to :math:`t` of the probability-flow ODE in its
data-prediction form (BFN-Solver++, DPM-Solver++) is

.. math:: z_t = \\frac{s_t}{s_s} z_s + a_t (1 - e^{-h})\\, D,

with :math:`D = \\hat x_s` (first order, ``"ode1"``) or the multistep
:math:`D = (1 + \\tfrac{1}{2r})\\hat x_s - \\tfrac{1}{2r}\\hat x_{s'}`, :math:`r = h'/h`, from the
previous step's prediction (second order, ``"ode2"``); a step of the SDE is

.. math:: z_t = \\frac{s_t}{s_s} e^{-h} z_s + a_t (1 - e^{-2h})\\,
    \\big(\\hat x_s + \\tfrac{1}{2r}(\\hat x_s - \\hat x_{s'})\\big) + s_t\\sqrt{1 - e^{-2h}}\\, \\epsilon

(second order, ``"sde2"``; without the correction it is the paper's ancestral step for
continuous data). At :math:`t_0 = 0` the state is the point :math:`z_0 = 0` (:math:`a_0 = s_0 =
0`), from which no ODE can spread, so the first step of every solver is the ancestral step (a draw
from the receiver); after the ``n`` steps the network runs at ``t = 1`` and the output
distribution's draw or mode is returned: ``n + 1`` network calls, as the ancestral sampler.
"""

from __future__ import annotations

import math

import torch

from ..checks import check_integer
from ..data_types import DiscreteData
from ..distributions import CategoricalInput, NormalInput
from .grid import TimeGrid
from .loop import receiver_draw, report_step
from .registry import SampleResult, register_sampler
from .temperature import tempered_noise, tempered_output_draw

__all__ = ["GaussianView", "ode1", "ode2", "sde2", "solve"]


class GaussianView:
    """A data type's Bayesian flow seen as the Gaussian diffusion :math:`z_t = a_t\\, \\xi +
    s_t\\, \\epsilon` (see the module docstring).

    :param data_type: a :class:`~pyro_bfn.data_types.DataType`.
    """

    def __init__(self, data_type):
        self.data_type = data_type
        self.discrete = isinstance(data_type, DiscreteData)

    def coefficients(self, t: torch.Tensor):
        """:math:`(a_t, s_t, \\lambda_t)` for times ``t`` (float64 tensors of any shape)."""
        schedule = self.data_type.schedule
        if self.discrete:
            a = schedule.beta(t)
            s = (self.data_type.num_classes * a).sqrt()
        else:
            a = schedule.gamma(t)
            s = (a * (1 - a)).sqrt()
        return a, s, torch.log(a) - torch.log(s)

    def state(self, input_distribution) -> torch.Tensor:
        """:math:`z`: the means :math:`\\mu` ``(B, *data_shape)`` or the logits
        ``(B, *data_shape, K)`` of the input distribution."""
        return input_distribution.logits if self.discrete else input_distribution.loc

    def input_distribution(self, z: torch.Tensor, t: float):
        """The input distribution of state ``z`` at time ``t``: :math:`\\mathrm{softmax}(z)`, or
        :math:`N(z, 1/(1 + \\beta_t))`."""
        if self.discrete:
            return CategoricalInput.from_log_probs(torch.log_softmax(z, -1), validate_args=False)
        precision = 1 + self.data_type.schedule.beta(torch.tensor(t, dtype=torch.float64))
        return NormalInput(z, torch.full_like(z, float(precision)), validate_args=False)

    def prediction(self, output) -> torch.Tensor:
        """:math:`\\hat\\xi`: :math:`E_{p_O}[x]`, or :math:`K p_O - 1` for discrete data."""
        if self.discrete:
            return self.data_type.num_classes * output.probs - 1
        return output.mean


def _step(view, z, t_from, t_to, predictions, steps_back, stochastic, noise):
    """One solver step from ``t_from`` to ``t_to`` (floats) of state ``z`` given the data
    predictions ``predictions`` (the newest last; a second-order step uses the last two, whose
    times are ``steps_back``)."""
    times = torch.tensor([t_from, t_to] + steps_back, dtype=torch.float64)
    a, s, lam = view.coefficients(times)
    h = float(lam[1] - lam[0])
    current = predictions[-1]
    correction = 0.0
    if len(predictions) > 1:
        ratio = float(lam[0] - lam[2]) / h
        correction = (current - predictions[-2]) / (2 * ratio)
    if not stochastic:
        return float(s[1] / s[0]) * z + float(a[1] * -math.expm1(-h)) * (current + correction)
    decay = float(s[1] / s[0]) * math.exp(-h)
    weight = float(a[1] * -math.expm1(-2 * h))
    return decay * z + weight * (current + correction) + float(s[1]) * math.sqrt(-math.expm1(-2 * h)) * noise()


def solve(view, z, times, predict, *, order: int = 1, stochastic: bool = False, noise=None, on_step=None, condition=None):
    """Integrate state ``z`` over the increasing ``times`` (floats, all > 0) with the ODE
    (``stochastic=False``) or SDE solver of ``order`` 1 or 2 (module docstring).

    :param GaussianView view: the data type's diffusion.
    :param torch.Tensor z: the state at ``times[0]``.
    :param list times: :math:`t_0 < \\dots < t_m`.
    :param callable predict: ``predict(z, t) -> (prediction, output)``, the data prediction of
        state ``z`` at time ``t`` (and the output distribution it came from, or ``None``).
    :param callable noise: ``noise() -> eps`` of the shape of ``z`` (SDE only).
    :param callable on_step: optional ``on_step(j, z, output)`` after step ``j = 1..m``.
    :param callable condition: optional ``condition(input_distribution, t)`` applied to the
        state's input distribution after each step (e.g. inpainting).
    :returns: ``(z at times[-1], number of predictions made)``.
    """
    predictions, calls = [], 0
    for j in range(1, len(times)):
        prediction, output = predict(z, times[j - 1])
        calls += 1
        predictions = (predictions + [prediction])[-order:]
        back = [times[j - 2]] if len(predictions) > 1 else []
        z = _step(view, z, times[j - 1], times[j], predictions, back, stochastic, noise)
        if condition is not None:
            z = view.state(condition(view.input_distribution(z, times[j]), times[j]))
        if on_step is not None:
            on_step(j, z, output)
    return z, calls


def _solver_sampler(order, stochastic):
    def sampler(
        bfn, num_samples: int, grid: TimeGrid, *, context=None, mode: bool = False, progress=None, device=None,
        callback=None, condition=None, temperature: float = 1.0,
    ) -> SampleResult:
        check_integer("num_samples", num_samples)
        if device is None:
            device = next(bfn.parameters()).device
        data_type, dtype, n = bfn.data_type, bfn.dtype, grid.n_steps
        view = GaussianView(data_type)
        shape = (num_samples,) + tuple(bfn.data_shape)
        times = grid.times(dtype=torch.float64).tolist()

        def evaluate(input_distribution, t):
            return bfn.output_distribution(input_distribution, torch.full((num_samples,), t, device=device, dtype=dtype), context)

        # step 1, from the point z_0 = 0: the ancestral step (a draw from the receiver)
        prior = data_type.prior(shape, dtype=dtype, device=device)
        output = evaluate(prior, times[0])
        accuracy = grid.accuracy(data_type, torch.ones(num_samples, dtype=torch.long, device=device), shape, dtype)
        input_distribution = prior.update(receiver_draw(data_type, output, accuracy, temperature), accuracy)
        if condition is not None:
            input_distribution = condition(input_distribution, times[1])
        report_step(1, n, times[1], input_distribution, output, progress, callback)

        def predict(z, t):
            output = evaluate(view.input_distribution(z, t), t)
            return view.prediction(output), output

        def on_step(j, z, output):
            report_step(j + 1, n, times[j + 1], view.input_distribution(z, times[j + 1]), output, progress, callback)

        z = view.state(input_distribution)
        z, calls = solve(
            view, z, times[1:], predict, order=order, stochastic=stochastic, noise=lambda: tempered_noise(z, temperature), on_step=on_step,
            condition=condition,
        )
        output = evaluate(view.input_distribution(z, 1.0), 1.0)
        samples = output.mode if mode else tempered_output_draw(output, temperature)
        return SampleResult(samples, (calls + 2) * getattr(bfn, "calls_per_evaluation", 1))

    return sampler


ode1 = register_sampler("ode1")(_solver_sampler(1, False))
ode1.__name__ = ode1.__qualname__ = "ode1"
ode1.__doc__ = """First-order ODE solver (BFN-Solver++1; DDIM-like), ``n + 1`` network calls: the
    probability-flow ODE step :math:`z_t = (s_t/s_s) z_s + a_t(1 - e^{-h})\\hat x_s` after an
    ancestral first step (module docstring). Arguments as :func:`~pyro_bfn.sampling.samplers.ancestral`,
    plus ``callback`` (see :func:`~pyro_bfn.sampling.loop.report_step`)."""
ode2 = register_sampler("ode2")(_solver_sampler(2, False))
ode2.__name__ = ode2.__qualname__ = "ode2"
ode2.__doc__ = """Second-order multistep ODE solver (BFN-Solver++2; DPM-Solver++(2M)), ``n + 1``
    network calls; first order on the first ODE step, which has no previous prediction."""
sde2 = register_sampler("sde2")(_solver_sampler(2, True))
sde2.__name__ = sde2.__qualname__ = "sde2"
sde2.__doc__ = """Second-order multistep SDE solver (SDE-BFN-Solver++2; SDE-DPM-Solver++(2M),
    midpoint form), ``n + 1`` network calls."""
