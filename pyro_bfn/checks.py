"""Small argument checks shared by the whole library (a leaf module: it imports only the
standard library, so every other module, the probabilistic core included, may use it).

Each check returns the value it accepted, so that it can be used inline::

    self.n_steps = check_integer("n_steps", n_steps)
"""

from __future__ import annotations

import math

__all__ = ["check_finite_number", "check_integer"]


def check_integer(name: str, value, minimum: int = 1, *, allow_none: bool = False):
    """``value`` if it is an ``int`` (not a ``bool``) of at least ``minimum`` (or ``None`` when
    ``allow_none``), else a :class:`ValueError` that names the argument and what it got.

    :param str name: the argument's name, as the caller spells it.
    :param int minimum: the smallest admissible value (1: a positive integer).
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        if minimum == 1:
            what = "a positive integer"
        elif minimum == 0:
            what = "a non-negative integer"
        else:
            what = f"an integer >= {minimum}"
        if allow_none:
            what += " or None"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value


def check_finite_number(name: str, value) -> float:
    """``float(value)`` if ``value`` is a finite ``int`` or ``float`` (not a ``bool``), else a
    :class:`ValueError` that names the argument and what it got."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)
