"""Values of typed configuration keys: a YAML or ``--set`` value converted to the type a
:class:`~pyro_bfn.training.TrainConfig` field's hint names (:func:`convert`), and that type in
words for error messages (:func:`describe`). Used by :mod:`pyro_bfn.training.config`, which
adds the range checks and names the key in its :class:`~pyro_bfn.training.ConfigError`.
"""

from __future__ import annotations

import types
import typing
from typing import Literal, Union

__all__ = ["Mismatch", "convert", "describe"]


class Mismatch(Exception):
    """A value that does not have (and cannot be converted to) a type."""


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a mapping",
               type(None): "null"}
_PLURAL_NAMES = {int: "integers", float: "numbers", str: "strings"}


def convert(hint, value):
    """``value`` as the type ``hint`` describes; raises :class:`Mismatch` if it is not one.

    Unions are tried in order; integers accept integral floats and numeric strings, real
    numbers accept strings (YAML reads ``1e-3`` as one), a fixed-length tuple accepts a list;
    ``bool``, ``str`` and ``dict`` take only themselves.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        for option in args:
            try:
                return convert(option, value)
            except Mismatch:
                pass
        raise Mismatch
    if origin is Literal:
        if isinstance(value, str) and value in args:
            return value
        raise Mismatch
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise Mismatch
        return tuple(convert(option, item) for option, item in zip(args, value))
    if hint is type(None):
        if value is None:
            return None
        raise Mismatch
    if isinstance(value, bool) and hint is not bool:
        raise Mismatch
    try:
        if hint in (int, float) and isinstance(value, (int, float, str)):
            if hint is int and isinstance(value, float) and not value.is_integer():
                raise Mismatch
            return hint(value)
    except (ValueError, OverflowError):
        raise Mismatch from None
    if hint in (bool, str, dict) and isinstance(value, hint):
        return value
    raise Mismatch


def describe(hint) -> str:
    """What a value of type ``hint`` is, in words (for error messages)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(describe(option) for option in args)
    if origin is Literal:
        return repr(args[0]) if len(args) == 1 else "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        return f"a list of {len(args)} {_PLURAL_NAMES.get(args[0], 'values')}"
    return _TYPE_NAMES.get(hint, getattr(hint, "__name__", str(hint)))
