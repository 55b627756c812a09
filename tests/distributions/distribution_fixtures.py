"""The fixture table of the BFN distributions: one :class:`Fixture` row per public class of
:mod:`pyro_bfn.distributions`, after Pyro's own ``tests/distributions/conftest.py``.

Each row holds

* the class and its **examples**: constructor keyword arguments, plain numbers and lists that
  :meth:`Fixture.parameters` turns into float64 (or, for integer lists, class-index) tensors.
  The first example has batch shape ``()``; at least one other has batch rank >= 1, its
  parameters broadcast together, and the last batch side >= 2;
* **random**: a builder of an instance of any batch shape from :class:`RandomParameters` (what
  the hypothesis tests of shapes, ``expand`` and ``pyro.plate`` draw from);
* **reference_log_prob**: the log-density (or pmf) of the same law for a value, written with
  scipy from the paper's definitions and never with the library's formulas (scipy's own
  distribution where one exists; the point mass, which scipy lacks, in one line of numpy);
* **invalid_parameters**: for every entry of ``arg_constraints``, values that break it (a number
  replaces the parameter's first element; a callable maps the whole parameter);
* **outside_support**: values outside the support besides NaN (callables of an instance);
* **static**: the constructor arguments that are not tensors, which ``expand`` must keep.

:mod:`conftest` parametrizes every test argument named ``row`` over :data:`FIXTURES`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest
import torch
from scipy import special, stats

from pyro_bfn.distributions import (
    CategoricalInput,
    CategoricalOutput,
    DiscreteFlow,
    DiscreteReceiver,
    DiscreteSender,
    DiscreteUpdate,
    DiscretisedOutput,
    DiscretisedReceiver,
    NormalFlow,
    NormalInput,
    NormalReceiver,
    NormalSender,
    NormalUpdate,
    PointMassOutput,
    SoftmaxNormal,
)

__all__ = ["FIXTURES", "FIXTURE_BY_NAME", "Fixture", "RandomParameters"]

f64 = torch.float64
NAN, INF = math.nan, math.inf
POSITIVE_INVALID = (0.0, -1.0, INF, NAN)  # finite_positive: an accuracy or a precision
NONNEGATIVE_INVALID = (-1e-3, INF, NAN)  # finite_nonnegative: an accumulated accuracy beta(t)


class RandomParameters:
    """Seeded random float64 parameters for a batch shape ``shape``.

    ``tail`` is a shape that broadcasts to ``shape``: a builder gives one parameter the full
    shape and may give the others ``tail``, so that the instance's batch shape is ``shape``
    while its parameters broadcast. ``num_classes`` is the ``K`` of the discrete and discretised
    classes (classes or bins).
    """

    def __init__(self, shape=(), tail=None, num_classes: int = 4, seed: int = 0):
        self.shape = torch.Size(shape)
        self.tail = self.shape if tail is None else torch.Size(tail)
        self.num_classes = num_classes
        self.generator = torch.Generator().manual_seed(seed)

    def _shape(self, shape):
        return self.shape if shape is None else torch.Size(shape)

    def real(self, shape=None):
        """Standard normal reals."""
        return torch.randn(self._shape(shape), generator=self.generator, dtype=f64)

    def positive(self, shape=None):
        """Uniform in [0.5, 1.5] (accuracies for which every instance is well conditioned)."""
        return torch.rand(self._shape(shape), generator=self.generator, dtype=f64) + 0.5

    def uniform(self, low, high, shape=None):
        return low + (high - low) * torch.rand(self._shape(shape), generator=self.generator, dtype=f64)

    def log_uniform(self, low, high, shape=None):
        return torch.exp(self.uniform(math.log(low), math.log(high), shape))

    def classes(self, shape=None):
        """Class indices in ``0..K-1``."""
        return torch.randint(0, self.num_classes, self._shape(shape), generator=self.generator)

    def logits(self, shape=None):
        """Standard normal logits, shape ``shape + (K,)``."""
        return self.real(self._shape(shape) + (self.num_classes,))


# ----------------------------------------------------------------------------- the table's type


@dataclass(frozen=True)
class Fixture:
    """One row of the table (see the module docstring)."""

    cls: type
    examples: tuple
    random: Callable[[RandomParameters], torch.distributions.Distribution]
    reference_log_prob: Callable[[dict, np.ndarray], np.ndarray]
    invalid_parameters: dict
    outside_support: tuple = ()
    static: tuple = ()
    event_rank: int = 0
    value_dtype: torch.dtype = f64
    rtol: float = 1e-10
    atol: float = 1e-12
    #: test function name -> reason: known bugs, run as ``xfail(strict=True)``
    xfail: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.cls.__name__

    def event_shape(self, num_classes: int) -> torch.Size:
        return torch.Size((num_classes,) * self.event_rank)

    @staticmethod
    def parameters(example: dict) -> dict:
        """The example's constructor arguments: floats and lists as tensors (float64 unless
        they hold integers), tensors copied, other values (counts, class indices) unchanged."""
        out = {}
        for name, value in example.items():
            if isinstance(value, torch.Tensor):
                value = value.clone()
            elif isinstance(value, (float, list)):
                value = torch.tensor(value)
                value = value.to(f64) if value.is_floating_point() else value
            out[name] = value
        return out

    @classmethod
    def numpy_parameters(cls, example: dict) -> dict:
        return {name: np.asarray(value) for name, value in cls.parameters(example).items()}

    def make(self, example: dict, **overrides):
        return self.cls(**{**self.parameters(example), **overrides})

    def distributions(self):
        """An instance for every example."""
        return [self.make(example) for example in self.examples]

    def marks_for(self, test_name: str):
        reason = self.xfail.get(test_name)
        return [pytest.mark.xfail(strict=True, reason=reason)] if reason else []


# ----------------------------------------------------------------------------- scipy references


def _normal_log_pdf(value, loc, precision):
    return stats.norm.logpdf(value, loc, 1 / np.sqrt(precision))


def _update_log_pdf(p, value):
    """paper Sec. 3.3: N((rho mu + alpha x) / (rho + alpha), alpha / (rho + alpha)^2)."""
    mu, rho, x, alpha = p["input_loc"], p["input_precision"], p["x"], p["accuracy"]
    return stats.norm.logpdf(value, (rho * mu + alpha * x) / (rho + alpha), np.sqrt(alpha) / (rho + alpha))


def _flow_log_pdf(p, value):
    """paper Sec. 3.5: N(gamma x, gamma (1 - gamma)), gamma = beta / (1 + beta)."""
    gamma = p["beta"] / (1 + p["beta"])
    return stats.norm.logpdf(value, gamma * p["x"], np.sqrt(gamma * (1 - gamma)))


def _point_mass_log_prob(p, value):
    return np.where(value == p["x_hat"], 0.0, -np.inf)


def _centres(num_bins):
    """paper Sec. 4.1: k_c = (2k - 1)/K - 1, k = 1..K."""
    return (2 * np.arange(1, num_bins + 1) - 1) / num_bins - 1


def _discretised_output_log_pmf(p, value):
    """paper Sec. 4.3: the Normal mass of the value's bin, the outer bins taking the tails
    (upper tail above the mean so that neither difference cancels); built from ``logits``: the
    softmax of the logits at the value's bin."""
    if "logits" in p:
        num_bins = p["logits"].shape[-1]
        index = np.clip(np.rint((value + 1) * num_bins / 2 - 0.5), 0, num_bins - 1).astype(int)
        log_pmf = np.broadcast_to(special.log_softmax(p["logits"], -1), np.shape(index) + (num_bins,))
        return np.take_along_axis(log_pmf, index[..., None], -1)[..., 0]
    num_bins, loc, scale = int(p["num_bins"]), p["loc"], p["scale"]
    index = np.clip(np.rint((value + 1) * num_bins / 2 - 0.5), 0, num_bins - 1)
    lower = np.where(index == 0, -np.inf, 2 * index / num_bins - 1)
    upper = np.where(index == num_bins - 1, np.inf, 2 * (index + 1) / num_bins - 1)
    a, b = (lower - loc) / scale, (upper - loc) / scale
    with np.errstate(divide="ignore"):
        return np.where(
            a > 0, np.log(stats.norm.sf(a) - stats.norm.sf(b)), np.log(stats.norm.cdf(b) - stats.norm.cdf(a))
        )


def _discretised_receiver_log_pdf(p, value):
    """paper Sec. 4.5: sum_k p_k N(y; k_c, 1/alpha)."""
    probs, accuracy = p["probs"], p["accuracy"]
    with np.errstate(divide="ignore"):
        terms = np.log(probs) + stats.norm.logpdf(
            value[..., None], _centres(probs.shape[-1]), 1 / np.sqrt(accuracy)[..., None]
        )
    return special.logsumexp(terms, axis=-1)


def _categorical_log_pmf(p, value):
    probs = p["probs"] / p["probs"].sum(-1, keepdims=True) if "probs" in p else special.softmax(p["logits"], -1)
    return stats.multinomial.logpmf(np.eye(probs.shape[-1])[value], 1, probs)


def _sender_mean(x, accuracy, num_classes):
    """paper Sec. 5.2: alpha (K e_x - 1), shape (..., K)."""
    return np.asarray(accuracy)[..., None] * (num_classes * np.eye(num_classes)[x] - 1)


def _discrete_sender_log_pdf(p, value):
    """paper Sec. 5.2: N(y; alpha (K e_x - 1), alpha K I), isotropic: a product of K normals."""
    num_classes, accuracy = int(p["num_classes"]), p["accuracy"]
    scale = np.sqrt(accuracy * num_classes)[..., None]
    return stats.norm.logpdf(value, _sender_mean(p["x"], accuracy, num_classes), scale).sum(-1)


def _discrete_receiver_log_pdf(p, value):
    """paper Sec. 5.4: sum_k p_O(k) N(y; alpha (K e_k - 1), alpha K I)."""
    log_probs = special.log_softmax(p["logits"], -1)
    num_classes = log_probs.shape[-1]
    accuracy = np.asarray(p["accuracy"])[..., None, None]
    means = accuracy * (num_classes * np.eye(num_classes) - 1)  # (..., component, coordinate)
    component = stats.norm.logpdf(value[..., None, :], means, np.sqrt(accuracy * num_classes)).sum(-1)
    return special.logsumexp(log_probs + component, axis=-1)


def _softmax_normal_log_pdf_at(value, loc, scale):
    """The density of theta = softmax(z), z ~ N(m, s^2 I), by the change of variables
    w = log(theta_{<K} / theta_K) ~ N(m_{<K} - m_K, s^2 (I + 1 1^T)) and the Jacobian
    prod_k theta_k, with scipy's multivariate normal."""
    num_classes = np.shape(value)[-1]
    value, loc, scale = np.broadcast_arrays(value, loc, np.asarray(scale)[..., None])
    out = []
    for theta, m, s in zip(value.reshape(-1, num_classes), loc.reshape(-1, num_classes), scale.reshape(-1, num_classes)):
        w = np.log(theta[:-1]) - np.log(theta[-1])
        cov = s[0] ** 2 * (np.eye(num_classes - 1) + 1)
        out.append(stats.multivariate_normal(m[:-1] - m[-1], cov).logpdf(w) - np.log(theta).sum())
    return np.array(out).reshape(value.shape[:-1])


def _softmax_normal_log_pdf(p, value):
    return _softmax_normal_log_pdf_at(value, p["loc"], p["scale"])


def _discrete_update_log_pdf(p, value):
    """paper Sec. 5.2: softmax(ln theta + y), y ~ N(alpha (K e_x - 1), alpha K I)."""
    num_classes = p["input_logits"].shape[-1]
    loc = p["input_logits"] + _sender_mean(p["x"], p["accuracy"], num_classes)
    return _softmax_normal_log_pdf_at(value, loc, np.sqrt(p["accuracy"] * num_classes))


def _discrete_flow_log_pdf(p, value):
    """paper Sec. 5.5: softmax(y), y ~ N(beta (K e_x - 1), beta K I)."""
    num_classes = int(p["num_classes"])
    loc = _sender_mean(p["x"], p["beta"], num_classes)
    return _softmax_normal_log_pdf_at(value, loc, np.sqrt(p["beta"] * num_classes))


# ----------------------------------------------------------------------------- bad values


def _sum_not_one(probs):
    return probs * 1.5


def _negative_entry(probs):
    """Sums to one, first entry negative."""
    probs = probs.clone()
    probs[..., 0] -= 1.0
    probs[..., 1] += 1.0
    return probs


def _simplex_outside(d):
    """Two event vectors off the simplex: entries summing to 1.5, and a negative entry."""
    k = d.event_shape[0]
    return (torch.full((k,), 1.5 / k, dtype=f64), _negative_entry(torch.full((k,), 1.0 / k, dtype=f64)))


def _class_outside(d):
    k = d.logits.shape[-1]
    return (torch.tensor(k), torch.tensor(-1), torch.tensor(0.5, dtype=f64))


def _bin_outside(d):
    """The edge between the first two bins, beyond [-1, 1], the outer edge, an integer."""
    return (
        torch.tensor(-1 + 2 / d.num_bins, dtype=f64),
        torch.tensor(1.5, dtype=f64),
        torch.tensor(-1.0, dtype=f64),
        torch.tensor(0),
    )


# ----------------------------------------------------------------------------- the rows


def _discretised_output(p):
    return DiscretisedOutput(p.uniform(-1.5, 1.5), p.log_uniform(1e-4, 1e4, p.tail), p.num_classes)


_RECEIVER_PROBS = DiscretisedOutput(torch.tensor(0.2, dtype=f64), torch.tensor(0.3, dtype=f64), 16).probs
_RECEIVER_PROBS_BATCH = DiscretisedOutput(
    torch.tensor([[-0.5], [0.4]], dtype=f64), torch.tensor([0.1, 0.8, 0.02], dtype=f64), 8
).probs  # (2, 3, 8), one bin taking almost all the mass in the last column

FIXTURES = (
    Fixture(
        NormalInput,
        examples=(
            {"loc": 0.3, "precision": 2.0},
            {"loc": [[-1.0, 0.5, 2.0]], "precision": [[0.5], [4.0]]},
        ),
        random=lambda p: NormalInput(p.real(), p.positive(p.tail)),
        reference_log_prob=lambda p, v: _normal_log_pdf(v, p["loc"], p["precision"]),
        invalid_parameters={"loc": (NAN,), "precision": POSITIVE_INVALID},
    ),
    Fixture(
        NormalSender,
        examples=({"x": -0.4, "accuracy": 3.0}, {"x": [[0.1], [-0.7]], "accuracy": [[0.2, 1.0, 25.0]]}),
        random=lambda p: NormalSender(p.real(p.tail), p.positive()),
        reference_log_prob=lambda p, v: _normal_log_pdf(v, p["x"], p["accuracy"]),
        invalid_parameters={"x": (NAN,), "accuracy": POSITIVE_INVALID},
    ),
    Fixture(
        NormalReceiver,
        examples=(
            {"x_hat": 0.8, "accuracy": 0.5},
            {"x_hat": [[-0.2, 0.4, 1.1], [0.0, -1.0, 0.3]], "accuracy": [2.0, 0.25, 9.0]},
        ),
        random=lambda p: NormalReceiver(p.real(), p.positive(p.tail)),
        reference_log_prob=lambda p, v: _normal_log_pdf(v, p["x_hat"], p["accuracy"]),
        invalid_parameters={"x_hat": (NAN,), "accuracy": POSITIVE_INVALID},
    ),
    Fixture(
        NormalUpdate,
        examples=(
            {"input_loc": 0.2, "input_precision": 1.5, "x": -0.6, "accuracy": 2.0},
            {"input_loc": [[0.0], [0.5]], "input_precision": [1.0, 3.0, 10.0], "x": [[-1.0, 0.2, 0.9]], "accuracy": 0.7},
        ),
        random=lambda p: NormalUpdate(p.real(p.tail), p.positive(), p.real(p.tail), p.positive(p.tail)),
        reference_log_prob=_update_log_pdf,
        invalid_parameters={
            "input_loc": (NAN,),
            "input_precision": POSITIVE_INVALID,
            "x": (NAN,),
            "accuracy": POSITIVE_INVALID,
        },
    ),
    Fixture(
        NormalFlow,
        examples=({"x": 0.6, "beta": 3.0}, {"x": [[-0.9, 0.1, 0.5], [0.3, 0.3, -0.2]], "beta": [[0.05], [20.0]]}),
        random=lambda p: NormalFlow(p.real(), p.positive(p.tail)),
        reference_log_prob=_flow_log_pdf,
        invalid_parameters={"x": (NAN,), "beta": NONNEGATIVE_INVALID},
    ),
    Fixture(
        PointMassOutput,
        examples=({"x_hat": 0.25}, {"x_hat": [[-0.5, 0.0], [0.75, 1.0]]}),
        random=lambda p: PointMassOutput(p.real()),
        reference_log_prob=_point_mass_log_prob,
        invalid_parameters={"x_hat": (NAN,)},
    ),
    Fixture(
        DiscretisedOutput,
        examples=(
            {"loc": 0.2, "scale": 0.3, "num_bins": 16},
            {"loc": [[-0.8, 0.1, 0.95]], "scale": [[0.05], [0.6]], "num_bins": 5},
            # the parametrisation of Pyro's enumeration (compute_marginals): bin logits
            {"logits": [[0.5, -1.0, 2.0, 0.0, -3.0], [0.0, 0.0, 0.0, 0.0, 0.0]]},
        ),
        random=_discretised_output,
        reference_log_prob=_discretised_output_log_pmf,
        invalid_parameters={"loc": (NAN,), "scale": POSITIVE_INVALID, "logits": (NAN, INF)},
        outside_support=(_bin_outside,),
        static=("num_bins",),
    ),
    Fixture(
        DiscretisedReceiver,
        examples=(
            {"probs": _RECEIVER_PROBS, "accuracy": 30.0},
            {"probs": _RECEIVER_PROBS_BATCH, "accuracy": [[5.0], [200.0]]},
        ),
        random=lambda p: DiscretisedReceiver(_discretised_output(p).probs, p.log_uniform(1e-2, 1e2, p.tail)),
        reference_log_prob=_discretised_receiver_log_pdf,
        invalid_parameters={"probs": (_sum_not_one, _negative_entry, NAN), "accuracy": POSITIVE_INVALID},
        static=("num_bins",),
    ),
    Fixture(
        CategoricalInput,
        examples=(
            {"logits": [0.3, -1.0, 0.5, 2.0]},
            {"probs": [[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]]},
        ),
        random=lambda p: CategoricalInput(logits=p.logits()),
        reference_log_prob=_categorical_log_pmf,
        # torch normalises probs, so only a negative entry (or NaN) is invalid
        invalid_parameters={"logits": (NAN,), "probs": (_negative_entry, NAN)},
        outside_support=(_class_outside,),
        value_dtype=torch.long,
    ),
    Fixture(
        CategoricalOutput,
        examples=(
            {"logits": [-0.2, 0.9, 0.0, -3.0]},
            {"logits": [[0.0, 0.0, 0.0, 0.0], [5.0, -5.0, 0.0, 1.0], [-1.0, 2.0, 0.5, 0.5]]},
            {"probs": [[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0]]},
        ),
        random=lambda p: CategoricalOutput(logits=p.logits()),
        reference_log_prob=_categorical_log_pmf,
        invalid_parameters={"logits": (NAN,), "probs": (_negative_entry, NAN)},
        outside_support=(_class_outside,),
        value_dtype=torch.long,
    ),
    Fixture(
        DiscreteSender,
        examples=(
            {"x": 2, "accuracy": 0.8, "num_classes": 4},
            {"x": [[0, 3, 1]], "accuracy": [[0.1], [2.5]], "num_classes": 4},
        ),
        random=lambda p: DiscreteSender(p.classes(p.tail), p.positive(), p.num_classes),
        reference_log_prob=_discrete_sender_log_pdf,
        invalid_parameters={"accuracy": POSITIVE_INVALID},
        static=("num_classes",),
        event_rank=1,
    ),
    Fixture(
        DiscreteReceiver,
        examples=(
            {"logits": [0.5, -0.5, 1.0, 0.0], "accuracy": 1.3},
            {"logits": [[2.0, 0.0, -1.0, 0.0], [0.1, 0.2, 0.3, 0.4]], "accuracy": [[0.2], [1.0], [4.0]]},
        ),
        random=lambda p: DiscreteReceiver(p.logits(), p.positive(p.tail), kl_samples=5),
        reference_log_prob=_discrete_receiver_log_pdf,
        invalid_parameters={"logits": (NAN,), "accuracy": POSITIVE_INVALID},
        static=("num_classes", "kl_samples"),
        event_rank=1,
    ),
    Fixture(
        DiscreteUpdate,
        examples=(
            {"input_logits": [0.0, 0.5, -0.5, 1.0], "x": 1, "accuracy": 0.6},
            {"input_logits": [[0.0, 0.0, 0.0, 0.0], [1.0, -1.0, 0.5, 0.0]], "x": [[0], [3], [1]], "accuracy": [0.3, 2.0]},
        ),
        random=lambda p: DiscreteUpdate(p.logits(p.tail), p.classes(), p.positive(p.tail)),
        reference_log_prob=_discrete_update_log_pdf,
        invalid_parameters={"input_logits": (NAN,), "accuracy": POSITIVE_INVALID},
        outside_support=(_simplex_outside,),
        event_rank=1,
        rtol=1e-9,
        atol=1e-8,
    ),
    Fixture(
        DiscreteFlow,
        examples=(
            {"x": 0, "beta": 1.5, "num_classes": 4},
            {"x": [[1, 2], [3, 0]], "beta": [[0.4], [3.0]], "num_classes": 4},
        ),
        random=lambda p: DiscreteFlow(p.classes(), p.positive(p.tail), p.num_classes),
        reference_log_prob=_discrete_flow_log_pdf,
        invalid_parameters={"beta": NONNEGATIVE_INVALID},
        outside_support=(_simplex_outside,),
        static=("num_classes",),
        event_rank=1,
        rtol=1e-9,
        atol=1e-8,
    ),
    Fixture(
        SoftmaxNormal,
        examples=(
            {"loc": [0.2, -0.3, 0.0, 1.0], "scale": 0.9},
            {"loc": [[0.0, 1.0, 2.0, 3.0], [-1.0, 0.0, 0.0, 1.0]], "scale": [[0.5], [1.0], [2.0]]},
        ),
        random=lambda p: SoftmaxNormal(p.logits(), p.positive(p.tail)),
        reference_log_prob=_softmax_normal_log_pdf,
        invalid_parameters={"loc": (NAN,), "scale": NONNEGATIVE_INVALID},
        outside_support=(_simplex_outside,),
        event_rank=1,
        rtol=1e-9,
        atol=1e-8,
    ),
)

FIXTURE_BY_NAME = {row.name: row for row in FIXTURES}
