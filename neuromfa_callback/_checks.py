"""Argument validators. Every message names the argument and the offending value."""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

__all__ = [
    "check_choice",
    "check_int",
    "check_positive_int",
    "check_real",
]


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """Return ``value`` as an ``int`` or raise naming ``name``.

    Example:
        >>> check_int("samples", 3, minimum=1)
        3
        >>> check_int("samples", 0, minimum=1)
        Traceback (most recent call last):
        ...
        ValueError: Expected `samples` >= 1, got 0
    """
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"Expected `{name}` to be an int, got {value!r} of type {type(value).__name__}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"Expected `{name}` >= {minimum}, got {value}")
    return value


def check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` if it is an int >= 1."""
    return check_int(name, value, minimum=1)


def check_real(
    name: str,
    value: Any,
    *,
    greater_than: float | None = None,
    at_least: float | None = None,
) -> float:
    """Return ``value`` as a finite ``float`` or raise naming ``name``.

    Example:
        >>> check_real("threshold", 150, greater_than=1)
        150.0
        >>> check_real("threshold", 0.5, greater_than=1)
        Traceback (most recent call last):
        ...
        ValueError: Expected `threshold` > 1, got 0.5
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"Expected `{name}` to be a real number, got {value!r} of type {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"Expected `{name}` to be finite, got {value}")
    if greater_than is not None and not value > greater_than:
        raise ValueError(f"Expected `{name}` > {greater_than:g}, got {value:g}")
    if at_least is not None and not value >= at_least:
        raise ValueError(f"Expected `{name}` >= {at_least:g}, got {value:g}")
    return value


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> Any:
    """Return ``value`` if it is one of ``choices``.

    Example:
        >>> check_choice("backend", "numpy", ("auto", "numpy"))
        'numpy'
    """
    if value not in choices:
        raise ValueError(f"Expected `{name}` to be one of {choices}, got {value!r}")
    return value
