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


def check_port(port: object) -> None:
    """Reject what ``socket.getaddrinfo`` would reject, early and with the
    value in the message, with the exception type asyncio's connection
    functions raise: ``OverflowError`` for a port outside 0-65535, an int or
    a numeric string alike (asyncio reads a numeric string with ``int()``
    and its ``connect`` raises ``OverflowError``). Ports above 65535 are
    refused even where glibc would silently wrap them (70000 becoming port
    4464). Service names ("https") are left to ``getaddrinfo``.

    Raises:
        TypeError: *port* is not an int, str, bytes or None.
        OverflowError: *port* is an int, or a numeric string, outside 0-65535.
    """
    if port is None:
        return
    if isinstance(port, bool) or not isinstance(port, int | str | bytes):
        raise TypeError(
            "port must be an int, a str, bytes or None,"
            f" got {type(port).__name__} {port!r}"
        )
    if isinstance(port, int):
        if not 0 <= port <= 65535:
            raise OverflowError(f"port must be 0-65535, got {port!r}")
        return
    try:
        number = int(port)
    except ValueError:
        return  # a service name
    if not 0 <= number <= 65535:
        raise OverflowError(f"port must be 0-65535, got {port!r}")
