"""Argument checks shared by the race, the resolvers and the connection
functions, so that one kind of bad value gets one kind of message."""

from __future__ import annotations

import builtins
import math
import socket


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


def check_host(host: object, *, allow_empty: bool = True) -> None:
    """Reject a host that is not a host name the caller could mean, before
    any lookup: the one host check of the resolvers and the connection
    functions.

    A NUL character ends the name in C, so ``socket.getaddrinfo`` would
    resolve only what comes before it (``"127.0.0.1\\x00.example.com"``
    becoming ``127.0.0.1``): connecting to a host other than the one named.
    asyncio refuses such a host with ``ValueError("embedded null
    character")`` (from ``socket.inet_pton``); so do we, naming the value.

    Raises:
        TypeError: *host* is not a str, bytes or None.
        ValueError: *host* contains a NUL character.
        socket.gaierror: *host* is empty where *allow_empty* is false.
    """
    if host is None:
        return
    if not isinstance(host, str | bytes):
        raise TypeError(
            f"host must be a str, bytes or None, got {type(host).__name__} {host!r}"
        )
    if not host and not allow_empty:
        # asyncio hands an empty host to getaddrinfo, which fails with
        # EAI_NONAME: the same error, without the lookup.
        raise socket.gaierror(
            socket.EAI_NONAME, f"host must not be empty, got {host!r}"
        )
    if "\0" in host if isinstance(host, str) else b"\0" in host:
        raise ValueError(
            f"host must not contain a NUL character (embedded null character),"
            f" got {host!r}"
        )


def check_lookup_arguments(
    family: object, type: object, proto: object, flags: object
) -> None:
    for name, value in (
        ("family", family),
        ("type", type),
        ("proto", proto),
        ("flags", flags),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise not_an_int(name, value)
    if family not in (socket.AF_UNSPEC, socket.AF_INET, socket.AF_INET6):
        # What getaddrinfo says about a family it cannot resolve for.
        raise socket.gaierror(
            socket.EAI_FAMILY,
            f"family must be AF_UNSPEC, AF_INET or AF_INET6, got {family!r}",
        )


def not_an_int(name: str, value: object) -> TypeError:
    """The error for an int argument given something else."""
    return TypeError(f"{name} must be an int, got {type_name(value)} {value!r}")


def type_name(value: object) -> str:
    return builtins.type(value).__name__


def check_first_addr_family_count(count: object) -> int:
    """Validate an RFC 8305 §4 First Address Family Count: an int of at
    least 1 (the one check of it, for the resolvers and the ordering).

    Raises:
        TypeError: *count* is not an int.
        ValueError: *count* is below 1.
    """
    if isinstance(count, bool) or not isinstance(count, int):
        raise not_an_int("first_addr_family_count", count)
    if count < 1:
        raise ValueError(f"first_addr_family_count must be at least 1, got {count!r}")
    return count


def check_callable(name: str, value: object, *, allow_none: bool = True) -> None:
    """Refuse a *value* that cannot be called (``None`` too, unless
    *allow_none*).

    Raises:
        TypeError: *value* is not callable.
    """
    if allow_none:
        if value is not None and not callable(value):
            raise TypeError(f"{name} must be callable or None, got {value!r}")
    elif not callable(value):
        raise TypeError(f"{name} must be callable, got {value!r}")


def check_delay(name: str, value: object) -> float | None:
    """Validate a Connection Attempt Delay (RFC 8305 §5): a non-negative
    number of seconds, or ``None`` for "no staggering"; the one delay check
    of the race and the preresolved connections.

    Raises:
        TypeError: *value* is not a number or None.
        ValueError: *value* is negative or NaN.
    """
    return check_seconds(name, value, allow_none=True)


def check_interleave(value: object) -> int | None:
    """Validate an ``interleave`` (asyncio's First Address Family Count,
    where 0 means "keep the order as it is"): an int of at least 0, or None.

    Raises:
        TypeError: *value* is not an int or None.
        ValueError: *value* is negative.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"interleave must be an int or None, got {type_name(value)} {value!r}"
        )
    if value < 0:
        raise ValueError(f"interleave must be at least 0, got {value!r}")
    return value
