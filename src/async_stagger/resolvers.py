"""Host names to ordered, growing streams of addresses (RFC 8305 §3, §4, §6).

A resolver turns ``(host, port)`` into the addresses the race tries, best
first. It is a callable with ``getaddrinfo``'s arguments that returns an
*async iterator* of getaddrinfo 5-tuples (the async_stagger 0.4 contract), so
the race can start connecting to the first address while the resolver is
still waiting for the rest.

Why not one ``getaddrinfo`` call
--------------------------------
``getaddrinfo(host, port, AF_UNSPEC)`` asks for AAAA and A records and returns
only when both have answered. If the AAAA answer is slow or lost (a broken
IPv6 DNS path, a middlebox dropping AAAA queries), every connection waits for
the resolver's timeout, seconds, although the IPv4 address was known after a
few milliseconds. asyncio, aiohappyeyeballs and trio all wait like this.

RFC 8305 §3 ("Hostname Resolution Query Handling") instead sends both queries
at once, the AAAA query first, and

* when the AAAA answer arrives first, starts connecting at once;
* when the A answer arrives first, waits a short Resolution Delay (50 ms) for
  the AAAA answer, then starts with the IPv4 addresses it has;
* merges answers that arrive later into the list of addresses not yet tried
  (§6, "Handling DNS Answer Changes"), never restarting anything;
* treats one family failing as no error while the other has addresses.

With only ``getaddrinfo`` available, "two queries" means two concurrent
lookups, ``family=AF_INET6`` and ``family=AF_INET``: that is
:func:`concurrent_resolver`, the default. :func:`basic_resolver` makes the
single lookup the caller asked for.

Order
-----
Each family's ``getaddrinfo`` answer is already sorted by the system, but the
rules that choose between IPv6 and IPv4 never saw both lists, so the merged
list is sorted here (RFC 8305 §4, RFC 6724 §6; see
:mod:`async_stagger.address_order`) and then interleaved by family, so that a
broken family costs one Connection Attempt Delay, not one per address. When
a late answer arrives, only the addresses not yet handed out are re-sorted
and re-interleaved; an address is never handed out twice.

What never waits
----------------
IP literals (``"192.0.2.1"``, ``"2001:db8::1"``, ``"fe80::1%eth0"``),
localhost names (``"localhost"``, ``"app.localhost"``: the loopback
addresses, RFC 6761 §6.3) and ``host=None`` need no name service: they are
answered directly, without the executor, like asyncio's own fast path, by a
plain async iterator rather than a generator (no frame, no finalizer hooks),
which also tells the race how many addresses are left, so a single address
costs no delay timer.

Threads
-------
The system's ``getaddrinfo`` blocks, so it runs on threads: the library's
own daemon threads, not the loop's default executor, because a lookup
abandoned once the race is won must not hold up the end of the program (see
:mod:`async_stagger._lookup_threads`). Two lookups per connection would
double that work; identical lookups that are in flight at the same time are
therefore shared: a burst of connections to the same host costs two lookups,
not two per connection.
"""

from __future__ import annotations

import asyncio
import builtins
import socket
from collections.abc import AsyncIterator
from typing import Any

from . import nat64 as _nat64
from ._answers import _emit_order, _lookup, _no_addresses, _order, _unique
from ._direct_answer import _direct_answer
from ._direct_answer import _DirectAnswer as _DirectAnswer  # for connection.py
from ._family_merge import _ConcurrentAnswers
from ._lookup_sharing import _in_flight_table, _LookupKey, _SharedLookup
from ._lookup_threads import look_up_in_daemon_thread
from ._loop_abilities import has_stock_getaddrinfo, start_task
from ._nat64_answers import _nat64_applies, _synthesize
from ._resolver_checks import (
    INT_TYPES,
    LOOKUP_FAMILIES,
    check_history,
    check_resolution_delay,
    check_resolver_arguments,
)
from ._tasks import wait_until_done
from ._types import AddrInfo, GetaddrinfoAsync, Host, Port, SortAddresses
from .address_order import sort_addresses
from .defaults import FIRST_ADDRESS_FAMILY_COUNT, RESOLUTION_DELAY
from .history import ConnectionHistory
from .nat64 import Nat64Setting
from .trace import tracing_active

__all__ = [
    "AddrInfo",
    "GetaddrinfoAsync",
    "Host",
    "Port",
    "SortAddresses",
    "basic_resolver",
    "concurrent_resolver",
]


# -- lookups: started, shared, run ---------------------------------------------------


async def _run_lookup(
    shared: _SharedLookup,
    loop: asyncio.AbstractEventLoop,
    getaddrinfo_async: GetaddrinfoAsync | None,
) -> list[AddrInfo]:
    shared.stepped = True
    host, port, family, type, proto, flags = shared.key
    try:
        if getaddrinfo_async is not None:
            infos = list(
                await getaddrinfo_async(
                    host, port, family=family, type=type, proto=proto, flags=flags
                )
            )
        else:
            infos = list(
                await loop.getaddrinfo(
                    host, port, family=family, type=type, proto=proto, flags=flags
                )
            )
    except Exception as exc:
        # The error is the outcome, kept in the shared lookup without its
        # traceback and not raised by the task: a finished task that raised
        # holds the traceback, and with it this lookup's frames, for as long
        # as the connection holds the lookup: 2.8 kB per connection in
        # flight on 3.13 (14.6 kB before, 11.9 kB after; benchmarks/memory.py).
        # shared_getaddrinfo raises it for its callers.
        shared.settle([], exc.with_traceback(None))
        return []
    except BaseException as exc:
        shared.settle([], exc)
        raise
    shared.settle(infos, None)
    return infos


async def shared_getaddrinfo(
    host: Host,
    port: Port,
    *,
    family: int = 0,
    type: int = 0,
    proto: int = 0,
    flags: int = 0,
) -> list[AddrInfo]:
    """``loop.getaddrinfo``, sharing identical lookups that are in flight.

    A caller asking for the same ``(host, port, family, type, proto,
    flags)`` as a lookup still running waits for that lookup instead of
    queueing another job in the executor. The lookup is cancelled only when
    every caller waiting for it was cancelled. Finished lookups are not
    remembered: this is no cache.

    Args:
        host: As for ``loop.getaddrinfo``.
        port: As for ``loop.getaddrinfo``.
        family: As for ``loop.getaddrinfo``.
        type: As for ``loop.getaddrinfo``.
        proto: As for ``loop.getaddrinfo``.
        flags: As for ``loop.getaddrinfo``.

    Returns:
        A new list of getaddrinfo 5-tuples.

    Raises:
        OSError: whatever ``loop.getaddrinfo`` raised (``socket.gaierror``).

    .. versionadded:: 1.0
    """
    loop = asyncio.get_running_loop()
    shared = _open_family_lookup(loop, None, host, port, family, type, proto, flags)
    if not shared.settled:
        answered = loop.create_future()

        def hear(infos: list[AddrInfo], error: BaseException | None) -> None:
            if not answered.done():
                answered.set_result(None)

        shared.listeners.append(hear)
        try:
            await answered
        except asyncio.CancelledError:
            if hear in shared.listeners:
                shared.listeners.remove(hear)
            abandoned = shared.leave()
            if abandoned is not None:
                await wait_until_done([abandoned])
            raise
    error = shared.error
    if error is not None:
        # Raised afresh by each caller, each with a traceback of its own.
        raise error.with_traceback(None)
    return list(shared.infos)


def _open_family_lookup(
    loop: asyncio.AbstractEventLoop,
    getaddrinfo_async: GetaddrinfoAsync | None,
    host: Host,
    port: Port,
    family: int,
    type: int,
    proto: int,
    flags: int,
) -> _SharedLookup:
    """A lookup for these arguments, the caller counting as one more
    waiter: for the system's ``getaddrinfo``, the identical one in flight
    if there is one, else a new one offered to the next callers; for a
    custom *getaddrinfo_async*, one of its own."""
    key: _LookupKey = (host, port, family, type, proto, flags)
    table = None
    if getaddrinfo_async is None:
        table = _in_flight_table(loop)
        if table is not None:
            joined = table.get(key)
            if joined is not None:
                joined.waiters += 1
                return joined
    shared = _SharedLookup(table, key)
    shared.waiters = 1
    if getaddrinfo_async is None and has_stock_getaddrinfo(loop):
        # The system's getaddrinfo, on our daemon threads: the job settles
        # the lookup itself when its answer is back on the loop, so no task
        # (nor its coroutines and future) is made. Measured on 3.11 with
        # socket.getaddrinfo answering at once on the threads: 322k to 221k
        # instructions per resolution of a name (both families, the
        # threads' work included), and 8.4 kB to 5.0 kB per resolution in
        # flight.
        shared.stepped = True
        look_up_in_daemon_thread(loop, shared.deliver, *key)
    else:
        # Started eagerly where the loop allows (see _loop_abilities): the
        # first step of a lookup only hands the query to a thread (or to a
        # DNS library); taking it at once sends the query one pass of the
        # loop sooner and, when the answer is immediate (a cache, a
        # hosts-file answer), settles the lookup before the task is even
        # returned.
        shared.task = start_task(loop, _run_lookup(shared, loop, getaddrinfo_async))
    if table is not None and not shared.settled:
        table[key] = shared
    return shared


# -- basic_resolver --------------------------------------------------------------------


def basic_resolver(
    host: Host,
    port: Port,
    *,
    family: int = 0,
    type: int = 0,
    proto: int = 0,
    flags: int = 0,
    first_addr_family_count: int = FIRST_ADDRESS_FAMILY_COUNT,
    raise_exc_group: bool = False,
    getaddrinfo_async: GetaddrinfoAsync | None = None,
    sort: bool | SortAddresses = True,
    nat64: Nat64Setting = True,
    history: ConnectionHistory | None = None,
) -> AsyncIterator[AddrInfo]:
    """Resolve with one lookup, then yield the addresses sorted and
    interleaved by family.

    This is what asyncio does, plus the RFC 6724 ordering and RFC 8305 §4
    interleaving. A slow AAAA answer delays everything; prefer
    :func:`concurrent_resolver` unless the name service answers both
    families in one go anyway.

    Arguments are checked when this is called; the lookup starts at the
    first ``__anext__``.

    Args:
        host: Host name, IP literal, or ``None``. Literals and ``None`` are
            answered without a lookup.
        port: Port number, numeric string, service name, or ``None``.
        family: ``AF_UNSPEC`` (0), ``AF_INET`` or ``AF_INET6``.
        type: Socket type filter, as for ``getaddrinfo``.
        proto: Protocol filter, as for ``getaddrinfo``.
        flags: ``getaddrinfo`` flags.
        first_addr_family_count: RFC 8305 "First Address Family Count": how
            many addresses of the first family lead before the families
            alternate.
        raise_exc_group: Accepted for symmetry with
            :func:`concurrent_resolver`; with one lookup the error is raised
            as it is.
        getaddrinfo_async: The asynchronous ``getaddrinfo`` to use; ``None``
            means the system's, as the running loop's ``loop.getaddrinfo``
            would call it but on the library's own daemon threads (a
            ``getaddrinfo`` a program put on the loop, or a loop class's
            own, is called instead); identical lookups in flight are shared.
        sort: ``True`` to order by RFC 6724
            (:func:`~async_stagger.address_order.sort_addresses`), ``False``
            to keep ``getaddrinfo``'s order, or a callable ordering a list
            of 5-tuples (tests pass ``sort_addresses`` with a fixed
            ``source_address``).
        nat64: On a host with no IPv4 route to an IPv4 literal or answer,
            reach it through NAT64 (RFC 8305 §7): ``True`` discovers the
            network's prefix (RFC 7050), ``False`` never synthesizes, an
            iterable of prefixes (``["64:ff9b::/96"]``) uses those.
        history: A :class:`~async_stagger.history.ConnectionHistory` whose
            outcomes refine the RFC 6724 order (RFC 8305 §4), or ``None``.
            Only with ``sort=True``.

    Returns:
        An async iterator with ``aclose`` of getaddrinfo 5-tuples
        ``(family, type, proto, canonname, sockaddr)``, without duplicates:
        an async generator for a name; for an IP literal or ``None``, a
        plain iterator that also reports how many addresses are left
        (``__length_hint__``).

    Raises:
        TypeError: an argument has the wrong type (raised by the call).
        ValueError: *first_addr_family_count* is below 1 (raised by the
            call).
        OverflowError: *port* is an int or a numeric string outside
            0-65535 (raised by the call).
        socket.gaierror: *family* is not ``AF_UNSPEC``, ``AF_INET`` or ``AF_INET6``
            (raised by the call); or, during iteration, the lookup failed or found
            nothing.

    .. versionchanged:: 1.0
       Sorts by RFC 6724, answers literals directly, drops duplicates,
       validates its arguments; new ``getaddrinfo_async``, ``sort`` and
       ``history``.

    .. versionadded:: 1.0
       *nat64*: IPv4 through NAT64 on IPv6-only networks.
    """
    count, sorter = check_resolver_arguments(
        host, port, family, type, proto, flags, first_addr_family_count,
        getaddrinfo_async, sort,
    )  # fmt: skip
    setting = _nat64.check_setting(nat64)
    direct = _direct_answer(
        host, port, family, type, proto, flags, sorter, count, setting,
        getaddrinfo_async,
    )  # fmt: skip
    if direct is not None:
        return direct
    return _basic(
        host,
        port,
        family,
        type,
        proto,
        flags,
        count,
        getaddrinfo_async or shared_getaddrinfo,
        sorter,
        setting,
        check_history(history),
    )


async def _basic(
    host: Host,
    port: Port,
    family: int,
    type: int,
    proto: int,
    flags: int,
    first_addr_family_count: int,
    getaddrinfo_async: GetaddrinfoAsync,
    sorter: SortAddresses | None,
    nat64: bool | tuple[Any, ...] = True,
    history: ConnectionHistory | None = None,
) -> AsyncIterator[AddrInfo]:
    infos = await _lookup(getaddrinfo_async, host, port, family, type, proto, flags)
    system_sorted = getaddrinfo_async is shared_getaddrinfo
    if not family and _nat64_applies(infos, nat64):
        infos = await _synthesize(host, infos, nat64, getaddrinfo_async)
        system_sorted = False
    ordered = _order(
        _unique(infos, set()),
        sorter,
        first_addr_family_count,
        system_sorted=system_sorted,
        history=history,
    )
    if not ordered:
        raise _no_addresses(host)
    if tracing_active():
        _emit_order(host, ordered, sorter, history)
    for info in ordered:
        yield info


# -- concurrent_resolver ---------------------------------------------------------------


def concurrent_resolver(
    host: Host,
    port: Port,
    *,
    family: int = 0,
    type: int = 0,
    proto: int = 0,
    flags: int = 0,
    resolution_delay: float = RESOLUTION_DELAY,
    first_addr_family_count: int = FIRST_ADDRESS_FAMILY_COUNT,
    raise_exc_group: bool = False,
    getaddrinfo_async: GetaddrinfoAsync | None = None,
    sort: bool | SortAddresses = True,
    nat64: Nat64Setting = True,
    history: ConnectionHistory | None = None,
) -> AsyncIterator[AddrInfo]:
    """Resolve IPv6 and IPv4 concurrently and yield addresses as soon as
    RFC 8305 §3 allows (the default resolver).

    For ``family=AF_UNSPEC``, an ``AF_INET6`` and an ``AF_INET`` lookup start
    together (IPv6 first). If IPv6 answers first, its addresses are yielded
    at once. If IPv4 answers first, the resolver waits up to
    *resolution_delay* for IPv6, then starts yielding what it has. Answers
    that arrive later join the addresses not yet yielded, re-sorted and
    re-interleaved (§6). One family failing is fine while the other has
    addresses. With a specific *family*, this makes the one lookup asked
    for, like :func:`basic_resolver`.

    Closing the iterator early (``aclose()``, or cancelling a pending
    ``__anext__``) cancels the lookups still running and waits for them.

    Arguments are checked when this is called; the lookups start at the
    first ``__anext__``.

    Args:
        host: Host name, IP literal, or ``None``. Literals and ``None`` are
            answered without a lookup.
        port: Port number, numeric string, service name, or ``None``.
        family: ``AF_UNSPEC`` (0) for both families, or one family.
        type: Socket type filter, as for ``getaddrinfo``.
        proto: Protocol filter, as for ``getaddrinfo``.
        flags: ``getaddrinfo`` flags.
        resolution_delay: RFC 8305 "Resolution Delay": seconds to wait for
            the IPv6 answer after the IPv4 answer came first.
        first_addr_family_count: RFC 8305 "First Address Family Count": how
            many addresses of the first family lead before the families
            alternate.
        raise_exc_group: When both lookups fail, raise an
            ``ExceptionGroup`` of the two errors instead of one
            ``socket.gaierror``.
        getaddrinfo_async: The asynchronous ``getaddrinfo`` to use; ``None``
            means the system's, as the running loop's ``loop.getaddrinfo``
            would call it but on the library's own daemon threads (a
            ``getaddrinfo`` a program put on the loop, or a loop class's
            own, is called instead); identical lookups in flight are shared.
        sort: ``True`` to order by RFC 6724
            (:func:`~async_stagger.address_order.sort_addresses`), ``False``
            to keep each family's ``getaddrinfo`` order, or a callable
            ordering a list of 5-tuples.
        nat64: On a host with no IPv4 route to an IPv4 literal or answer,
            reach it through NAT64 (RFC 8305 §7): ``True`` discovers the
            network's prefix with an AAAA lookup of ``ipv4only.arpa``
            through *getaddrinfo_async* (RFC 7050), ``False`` never
            synthesizes, an iterable of prefixes (``["64:ff9b::/96"]``, say
            from router advertisements, RFC 8781) uses those. See
            :mod:`async_stagger.nat64`.
        history: A :class:`~async_stagger.history.ConnectionHistory` whose
            outcomes refine the RFC 6724 order (RFC 8305 §4), or ``None``.
            Only with ``sort=True``.

    Returns:
        An async iterator with ``aclose`` of getaddrinfo 5-tuples
        ``(family, type, proto, canonname, sockaddr)``, without duplicates:
        for an IP literal, ``None`` or a name looked up in both families, a
        plain iterator that also reports how many addresses are left once
        every answer is in (``__length_hint__``); an async generator for a
        name looked up in one family.

    Raises:
        TypeError: an argument has the wrong type (raised by the call).
        ValueError: *first_addr_family_count* is below 1 or
            *resolution_delay* negative or NaN (raised by the call).
        OverflowError: *port* is an int or a numeric string outside
            0-65535 (raised by the call).
        socket.gaierror: *family* is not ``AF_UNSPEC``, ``AF_INET`` or ``AF_INET6``
            (raised by the call); or, during iteration, both lookups failed or found
            nothing: the message names the host and both causes.
        ExceptionGroup: both lookups failed and *raise_exc_group* is true.

    .. versionchanged:: 1.0
       Waits for IPv6 only for the resolution delay, merges late answers,
       sorts by RFC 6724, answers literals directly, drops duplicates,
       validates its arguments; new ``getaddrinfo_async``, ``sort`` and
       ``history``.

    .. versionadded:: 1.0
       *nat64*: IPv4 through NAT64 on IPv6-only networks.
    """
    if (
        # The common call, from the connection functions, checked in a few
        # comparisons; anything else gets the full, explanatory checks.
        builtins.type(host) is str
        and "\0" not in host
        and builtins.type(port) is int
        and 0 <= port <= 65535
        and builtins.type(family) is int
        and family in LOOKUP_FAMILIES
        and builtins.type(type) in INT_TYPES
        and builtins.type(proto) in INT_TYPES
        and builtins.type(flags) in INT_TYPES
        and resolution_delay is RESOLUTION_DELAY
        and first_addr_family_count is FIRST_ADDRESS_FAMILY_COUNT
        and getaddrinfo_async is None
        and sort is True
        and nat64 is True
        and history is None
    ):
        delay: float = resolution_delay
        count: int = first_addr_family_count
        sorter: SortAddresses | None = sort_addresses
        setting: bool | tuple[Any, ...] = True
    else:
        count, sorter = check_resolver_arguments(
            host, port, family, type, proto, flags, first_addr_family_count,
            getaddrinfo_async, sort,
        )  # fmt: skip
        delay = check_resolution_delay(resolution_delay)
        setting = _nat64.check_setting(nat64)
        history = check_history(history)
    return _resolve_checked(
        host, port, family, type, proto, flags, delay, count, raise_exc_group,
        getaddrinfo_async, sorter, setting, history,
    )  # fmt: skip


def _resolve_checked(
    host: Host,
    port: Port,
    family: int,
    type: int,
    proto: int,
    flags: int,
    resolution_delay: float = RESOLUTION_DELAY,
    first_addr_family_count: int = FIRST_ADDRESS_FAMILY_COUNT,
    raise_exc_group: bool = False,
    getaddrinfo_async: GetaddrinfoAsync | None = None,
    sorter: SortAddresses | None = sort_addresses,
    nat64: bool | tuple[Any, ...] = True,
    history: ConnectionHistory | None = None,
) -> AsyncIterator[AddrInfo]:
    """:func:`concurrent_resolver` for arguments already checked (the
    connection functions check theirs before anything else): the same
    resolution, without checking the same values twice."""
    direct = _direct_answer(
        host, port, family, type, proto, flags, sorter, first_addr_family_count,
        nat64, getaddrinfo_async,
    )  # fmt: skip
    if direct is not None:
        return direct
    if family != socket.AF_UNSPEC:
        lookup = getaddrinfo_async or shared_getaddrinfo
        return _basic(
            host, port, family, type, proto, flags, first_addr_family_count,
            lookup, sorter, history=history,
        )  # fmt: skip
    return _ConcurrentAnswers(
        host,
        port,
        type,
        proto,
        flags,
        resolution_delay,
        first_addr_family_count,
        raise_exc_group,
        getaddrinfo_async,
        sorter,
        nat64,
        history,
        _open_family_lookup,
    )
