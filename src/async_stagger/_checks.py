"""Argument checks shared by the race, the resolvers and the connection
functions, so that one kind of bad value gets one kind of message."""

from __future__ import annotations

import math


def check_seconds(name: str, value: object, *, allow_none: bool) -> float | None:
    """Validate a duration: a non-negative real number of seconds (or
    ``None`` where *allow_none*). Returns it as a float.

    Raises:
        TypeError: *value* is not a number (``bool`` is refused too).
        ValueError: *value* is negative or NaN.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        expected = (
            "a number of seconds or None" if allow_none else "a number of seconds"
        )
        raise TypeError(
            f"{name} must be {expected}, got {type(value).__name__} {value!r}"
        )
    if math.isnan(value) or value < 0:
        raise ValueError(
            f"{name} must be a non-negative number of seconds, got {value!r}"
        )
    return float(value)
