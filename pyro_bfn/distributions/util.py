"""Shared machinery of the BFN distributions: generic ``expand`` and argument checks.

Nothing here is a formula of the paper; every formula lives in exactly one family file.
"""

from __future__ import annotations

import torch
from pyro.distributions import TorchDistribution
from pyro.distributions.util import broadcast_shape

__all__ = [
    "BFNDistribution",
    "ParameterExpandMixin",
    "check_class_index",
    "finite_nonnegative",
    "finite_positive",
    "finite_real",
    "finite_real_vector",
    "infer_batch_shape",
    "one_hot",
    "to_float_tensor",
    "validation_enabled_for",
]


def to_float_tensor(value, name: str, like: torch.Tensor | None = None) -> torch.Tensor:
    """Return ``value`` as a floating tensor; raise ``ValueError`` naming ``name`` otherwise."""
    if isinstance(value, torch.Tensor):
        if not (value.is_floating_point()):
            raise ValueError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
        return value
    dtype = like.dtype if like is not None and like.is_floating_point() else torch.get_default_dtype()
    device = like.device if like is not None else None
    try:
        return torch.as_tensor(value, dtype=dtype, device=device)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"{name} must be a number or a floating-point tensor, got {value!r}") from error


def check_class_index(x: torch.Tensor, num_classes: int, name: str = "x", check_range: bool = True) -> None:
    """Raise ``ValueError`` unless ``x`` holds integer class indices in ``0..num_classes-1``.

    The dtype is always checked (it costs nothing); the range, which scans ``x`` and waits for
    the device, only with ``check_range`` (argument validation on)."""
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer class indices (an integer tensor), got dtype {x.dtype}")
    if check_range and not bool(((x >= 0) & (x < num_classes)).all()):
        raise ValueError(f"{name} must hold class indices in 0..{num_classes - 1}")


def infer_batch_shape(event_dims: dict | None = None, **shapes) -> torch.Size:
    """The batch shape of the named argument shapes (what an ``infer_shapes`` classmethod
    returns first): their broadcast after dropping ``event_dims[name]`` rightmost sides of each
    (default 0); a :class:`ValueError` naming the arguments when they do not broadcast or an
    argument has fewer dimensions than its event part.

    :param dict event_dims: argument name -> number of event dimensions (the ``K`` of logits: 1).
    :param shapes: argument name -> its shape (a tuple or ``torch.Size``).
    """
    event_dims = event_dims or {}
    batches = []
    for name, shape in shapes.items():
        shape, rank = torch.Size(shape), event_dims.get(name, 0)
        if len(shape) < rank:
            raise ValueError(f"{name} must have at least {rank} dimension(s), got shape {tuple(shape)}")
        batches.append(shape[: len(shape) - rank])
    try:
        return torch.Size(broadcast_shape(*batches))
    except ValueError as error:
        listing = ", ".join(f"{name}: {tuple(shape)}" for name, shape in shapes.items())
        raise ValueError(f"argument shapes cannot be broadcast together ({listing})") from error


def one_hot(x: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """:math:`e_x`, shape ``x.shape + (num_classes,)``, in ``dtype`` (for class indices already
    checked: unlike :func:`torch.nn.functional.one_hot` it does not scan ``x`` for its range)."""
    return (x[..., None] == torch.arange(num_classes, device=x.device)).to(dtype)


def validation_enabled_for(validate_args) -> bool:
    """Whether a distribution built with ``validate_args`` validates: the argument itself, or
    the global default (``pyro.enable_validation``) when it is ``None``."""
    if validate_args is None:
        return bool(torch.distributions.Distribution._validate_args)
    return bool(validate_args)


class ParameterExpandMixin:
    """``expand`` for distributions whose constructor takes exactly their ``arg_constraints``.

    Each parameter is expanded to ``batch_shape + its own event part``; the number of
    rightmost event dimensions of each parameter is declared in ``_parameter_event_dims``
    (default 0). Constructor arguments that are not tensors (a bin count, a Monte Carlo
    sample count) are returned by :meth:`_static_kwargs`.
    """

    _parameter_event_dims: dict = {}

    def _static_kwargs(self) -> dict:
        return {}

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        parameters = {}
        for name in self.arg_constraints:
            value = getattr(self, name)
            event_dims = self._parameter_event_dims.get(name, 0)
            event_part = value.shape[value.dim() - event_dims :] if event_dims else torch.Size()
            parameters[name] = value.expand(batch_shape + event_part)
        return type(self)(**parameters, **self._static_kwargs(), validate_args=self._validate_args)


class BFNDistribution(ParameterExpandMixin, TorchDistribution):
    """Base of BFN distributions that are not subclasses of a Pyro distribution."""


class _FinitePositive(torch.distributions.constraints.Constraint):
    """Finite and strictly positive (an accuracy or a precision)."""

    def check(self, value):
        return (value > 0) & torch.isfinite(value)

    def __repr__(self):
        return "FinitePositive()"


class _FiniteNonnegative(torch.distributions.constraints.Constraint):
    """Finite and >= 0 (an accumulated accuracy beta(t), zero at t = 0)."""

    def check(self, value):
        return (value >= 0) & torch.isfinite(value)

    def __repr__(self):
        return "FiniteNonnegative()"


class _FiniteReal(torch.distributions.constraints.Constraint):
    """Finite reals: torch's ``real`` accepts :math:`\\pm\\infty`, which gives NaN or infinite
    densities for a location (a point mass, a discretised Normal, a softmax-normal)."""

    def check(self, value):
        return torch.isfinite(value)

    def __repr__(self):
        return "FiniteReal()"


class _FiniteRealVector(_FiniteReal):
    """Vectors of finite reals (``event_dim = 1``): logits, a softmax-normal's location."""

    event_dim = 1

    def check(self, value):
        return torch.isfinite(value).all(-1)

    def __repr__(self):
        return "FiniteRealVector()"


finite_positive = _FinitePositive()
finite_nonnegative = _FiniteNonnegative()
finite_real = _FiniteReal()
finite_real_vector = _FiniteRealVector()
