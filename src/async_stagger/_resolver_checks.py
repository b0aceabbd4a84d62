"""The resolvers' argument checks, in one place (the values they share with
the connection functions are checked by :mod:`async_stagger._checks`)."""

from __future__ import annotations

import socket

from ._checks import (
    check_callable,
    check_first_addr_family_count,
    check_host,
    check_lookup_arguments,
    check_port,
    check_seconds,
)
from ._types import SortAddresses
from .address_order import sort_addresses
from .history import ConnectionHistory

#: The families the quick check in ``concurrent_resolver`` lets through.
LOOKUP_FAMILIES = (socket.AF_UNSPEC, socket.AF_INET, socket.AF_INET6)
#: The argument types of ``type``, ``proto`` and ``flags`` it lets through.
INT_TYPES = frozenset({int, socket.SocketKind, socket.AddressFamily})


def check_resolution_delay(delay: object) -> float:
    """*delay* as seconds: a number, not negative, not NaN."""
    seconds = check_seconds("resolution_delay", delay, allow_none=False)
    assert seconds is not None
    return seconds


def check_resolver_arguments(
    host: object,
    port: object,
    family: object,
    type: object,
    proto: object,
    flags: object,
    first_addr_family_count: object,
    getaddrinfo_async: object,
    sort: bool | SortAddresses,
) -> tuple[int, SortAddresses | None]:
    """Check the arguments both resolvers take; return the family count and
    the sorter."""
    check_host(host)
    check_port(port)
    check_lookup_arguments(family, type, proto, flags)
    count = check_first_addr_family_count(first_addr_family_count)
    check_callable("getaddrinfo_async", getaddrinfo_async)
    return count, sorter_for(sort)


def sorter_for(sort: bool | SortAddresses) -> SortAddresses | None:
    """The sorting function a resolver's *sort* argument stands for."""
    if sort is True:
        return sort_addresses
    if sort is False:
        return None
    if callable(sort):
        return sort
    raise TypeError(f"sort must be True, False or a callable, got {sort!r}")


def check_history(history: object) -> ConnectionHistory | None:
    """*history* when it is a :class:`ConnectionHistory` or ``None``."""
    if history is None or isinstance(history, ConnectionHistory):
        return history
    raise TypeError(f"history must be a ConnectionHistory or None, got {history!r}")
