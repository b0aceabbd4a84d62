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
import contextvars
import math
import socket
import sys
import time
import weakref
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Sequence,
)
from typing import Any, TypeAlias, cast

from . import nat64 as _nat64
from ._checks import check_host, check_port, check_seconds
from ._lookup_threads import getaddrinfo_in_daemon_thread
from ._tasks import wait_until_done
from .address_order import (
    SOURCE_CACHE_SECONDS,
    AddrInfo,
    explain_order,
    find_source_address,
    interleave,
    sort_addresses,
)
from .defaults import FIRST_ADDRESS_FAMILY_COUNT, RESOLUTION_DELAY
from .history import ConnectionHistory
from .nat64 import Nat64Setting
from .trace import emit, tracing_active

__all__ = [
    "AddrInfo",
    "GetaddrinfoAsync",
    "Host",
    "Port",
    "SortAddresses",
    "basic_resolver",
    "concurrent_resolver",
]

#: A host name, an IP literal, or ``None`` (the local host, or with
#: ``AI_PASSIVE`` the wildcard address).
Host: TypeAlias = str | bytes | None

#: A port number, a numeric string, a service name (``"https"``) or ``None``.
Port: TypeAlias = str | bytes | int | None

#: An asynchronous ``getaddrinfo``: called as ``getaddrinfo_async(host, port,
#: family=..., type=..., proto=..., flags=...)`` like ``loop.getaddrinfo``,
#: it returns the list of 5-tuples. Plug in a DNS library here.
GetaddrinfoAsync: TypeAlias = Callable[..., Awaitable[Sequence[AddrInfo]]]

#: Orders a list of addresses, best first (see ``sort=``).
SortAddresses: TypeAlias = Callable[[list[AddrInfo]], list[AddrInfo]]


# -- argument checks -----------------------------------------------------------


def _check_lookup_arguments(
    family: object, type: object, proto: object, flags: object
) -> None:
    for name, value in (
        ("family", family),
        ("type", type),
        ("proto", proto),
        ("flags", flags),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {_type_name(value)} {value!r}")
    if family not in (socket.AF_UNSPEC, socket.AF_INET, socket.AF_INET6):
        # What getaddrinfo says about a family it cannot resolve for.
        raise socket.gaierror(
            socket.EAI_FAMILY,
            f"family must be AF_UNSPEC, AF_INET or AF_INET6, got {family!r}",
        )


# Argument types the quick check in concurrent_resolver lets through.
_LOOKUP_FAMILIES = (socket.AF_UNSPEC, socket.AF_INET, socket.AF_INET6)
_INT_TYPES = frozenset({int, socket.SocketKind, socket.AddressFamily})


def _type_name(value: object) -> str:
    return builtins.type(value).__name__


def _check_first_addr_family_count(count: object) -> int:
    if isinstance(count, bool) or not isinstance(count, int):
        raise TypeError(
            "first_addr_family_count must be an int,"
            f" got {type(count).__name__} {count!r}"
        )
    if count < 1:
        raise ValueError(f"first_addr_family_count must be at least 1, got {count!r}")
    return count


def _check_resolution_delay(delay: object) -> float:
    seconds = check_seconds("resolution_delay", delay, allow_none=False)
    assert seconds is not None
    return seconds


def _check_callable(name: str, value: object) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, got {value!r}")


def _check_resolver_arguments(
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
    _check_lookup_arguments(family, type, proto, flags)
    count = _check_first_addr_family_count(first_addr_family_count)
    _check_callable("getaddrinfo_async", getaddrinfo_async)
    return count, _sorter(sort)


def _sorter(sort: bool | SortAddresses) -> SortAddresses | None:
    if sort is True:
        return sort_addresses
    if sort is False:
        return None
    if callable(sort):
        return sort
    raise TypeError(f"sort must be True, False or a callable, got {sort!r}")


def _host_text(host: Host) -> str | None:
    if isinstance(host, bytes):
        return host.decode("ascii", "replace")
    return host


# -- the fast path: literals and host=None ---------------------------------------


def _literal_family(host: str) -> int:
    """``AF_INET`` or ``AF_INET6`` for an IP literal, 0 for anything else."""
    if ":" in host:
        # Only IPv6 literals have colons; a zone ("%eth0") may follow them,
        # which inet_pton rejects.
        family, address = _AF_INET6, host.partition("%")[0]
    elif host[-1:].isdigit():
        family, address = _AF_INET, host
    else:
        return 0  # a name ("example.com"): every IPv4 literal ends in a digit
    try:
        _inet_pton(family, address)
    except (OSError, ValueError):
        return 0
    return family


_inet_pton = socket.inet_pton

# Plain ints: arithmetic on the socket module's IntFlag members runs in Python.
_ALL_BUT_NUMERICHOST = ~int(socket.AI_NUMERICHOST)
_AI_NUMERICHOST = int(socket.AI_NUMERICHOST)
_AF_INET = int(socket.AF_INET)
_AF_INET6 = int(socket.AF_INET6)
_SOCK_STREAM = int(socket.SOCK_STREAM)
_IPPROTO_TCP = int(socket.IPPROTO_TCP)


class _Done(tuple[()]):
    """An awaitable that is already done (``await`` gives None): what an
    ``aclose`` with nothing to wait for returns, with no coroutine to create
    and run. Awaiting it iterates an empty tuple, entirely in C."""

    __slots__ = ()
    __await__ = tuple.__iter__


_DONE = cast(Awaitable[None], _Done())


class _DirectAnswer:
    """The addresses of an IP literal or of ``host=None``, handed out one at
    a time: an async iterator that needs no lookup, so no generator, task or
    executor either. An answer that needs ``getaddrinfo`` is computed at the
    first ``__anext__``, where a lookup would start, so its errors surface
    where a lookup's would.
    """

    __slots__ = ("_arguments", "_left")

    # The race may believe __length_hint__: it is exact, not a guess.
    _exact_length_hint = True

    def __init__(
        self, arguments: tuple[Any, ...] | None, left: list[AddrInfo] | None
    ) -> None:
        # What _answer needs, when the answer is not known yet.
        self._arguments = arguments
        # Addresses not handed out yet, last first; None until answered.
        self._left = left

    def __aiter__(self) -> _DirectAnswer:
        return self

    async def __anext__(self) -> AddrInfo:
        left = self._left
        if left is None:
            # An answer that raises ends the iteration, as a generator's
            # exception would.
            self._left = []
            left = self._left = self._answer()
        if left:
            return left.pop()
        raise StopAsyncIteration

    def aclose(self) -> Awaitable[None]:
        """Hand out nothing more (like an async generator's ``aclose``)."""
        self._left = []
        return _DONE

    def __length_hint__(self) -> int:
        """How many addresses are left (PEP 424); 1 before the answer: an
        answer holds at least one address or raises."""
        left = self._left
        return 1 if left is None else len(left)

    def _answer(self) -> list[AddrInfo]:
        assert self._arguments is not None
        (
            host, text, port, family, type, proto, flags, sorter,
            first_addr_family_count,
        ) = self._arguments  # fmt: skip
        if text is _LOCALHOST:
            infos = _loopback_answer(port, family, type, proto, flags)
        else:
            # As bytes: a str host goes through the (pure Python, slow) idna
            # codec first, pointless for a literal already known to be ASCII.
            infos = socket.getaddrinfo(  # type: ignore[assignment]
                None if text is None else text.encode("ascii"),
                port,
                family,
                type,
                proto,
                flags if text is None else flags | _AI_NUMERICHOST,
            )
        _emit_direct_answer(host, infos)
        if len(infos) > 1:
            infos = _order(
                _unique(infos, set()),
                sorter,
                first_addr_family_count,
                system_sorted=True,
            )
        elif not infos:
            raise _no_addresses(host)
        infos.reverse()
        return infos


# Stands for "a localhost name" where _DirectAnswer keeps the literal.
_LOCALHOST = "localhost"


def _is_localhost_name(name: str) -> bool:
    """Whether *name* is ``localhost`` or a name under it (RFC 6761 §6.3),
    in any case, with or without the root's trailing dot."""
    if name.endswith("."):
        name = name[:-1]
    if name[-9:].lower() != "localhost":
        return False  # the common case, any other name
    name = name.lower()
    return name == "localhost" or name.endswith(".localhost")


def _loopback_answer(
    port: Port, family: int, type: int, proto: int, flags: int
) -> list[AddrInfo]:
    """The answer for a localhost name: the loopback addresses, IPv6 first.

    RFC 6761 §6.3: localhost names are the loopback addresses and are never
    sent to DNS. The system's getaddrinfo honours that only through its
    hosts file: without a ``::1 localhost`` line our separate IPv6 lookup
    (or, with no line at all, any lookup) is sent to the DNS server. So,
    like browsers (Chrome and Firefox answer localhost names from the
    loopback addresses), and unlike asyncio (which passes them to
    getaddrinfo), they are answered here without any lookup, from both
    loopback addresses whatever the hosts file says; an IPv6 attempt on a
    host without IPv6 fails at once, and Happy Eyeballs moves on to IPv4.
    """
    infos: list[AddrInfo] = []
    for literal, literal_family in ((b"::1", _AF_INET6), (b"127.0.0.1", _AF_INET)):
        if family in (0, literal_family):
            infos += socket.getaddrinfo(
                literal, port, literal_family, type, proto, flags | _AI_NUMERICHOST
            )
    return infos


def _direct_answer(
    host: Host,
    port: Port,
    family: int,
    type: int,
    proto: int,
    flags: int,
    sorter: SortAddresses | None,
    first_addr_family_count: int,
    nat64: bool | tuple[Any, ...] = True,
    getaddrinfo_async: GetaddrinfoAsync | None = None,
) -> AsyncIterator[AddrInfo] | None:
    """The answer for an IP literal, a localhost name (RFC 6761 §6.3, see
    :func:`_loopback_answer`) or ``host=None``; None for any other name.

    ``getaddrinfo`` with ``AI_NUMERICHOST`` never consults the name service,
    and it does everything exactly as the system would: zone names to scope
    ids, service names, a literal of the wrong family refused with the usual
    ``gaierror``. Only the commonest call, a plain IPv4 literal with a port
    number for a TCP connection, is answered without it, at once, in the
    form ``getaddrinfo`` gives (a test compares the two): that is every
    connection to an IPv4 address, where the call and the conversion of its
    answer would cost more than the rest of the resolution.
    """
    if host is None:
        text = None
    else:
        text = host if builtins.type(host) is str else _host_text(host)
        assert text is not None
        if not text.isascii():
            return None
        literal_family = _literal_family(text)
        if not literal_family:
            if not _is_localhost_name(text):
                return None
            text = _LOCALHOST
        if (
            literal_family == _AF_INET
            and type == _SOCK_STREAM
            and family in (0, _AF_INET)
            and proto in (0, _IPPROTO_TCP)
            and flags & _ALL_BUT_NUMERICHOST == 0
            and builtins.type(port) is int
            and 0 <= port <= 65535
        ):
            infos: list[AddrInfo] = [
                (
                    socket.AF_INET,
                    socket.SOCK_STREAM,
                    socket.IPPROTO_TCP,
                    "",
                    (text, port),
                )
            ]
            if tracing_active():
                _emit_direct_answer(host, infos)
            if (
                nat64 is not False
                and not family
                # The probe's verdict, cached: a routed literal costs this
                # lookup only (see _ipv4_direct_until).
                and _ipv4_direct_until.get(text, 0.0) < _monotonic()
                and _needs_nat64(text)
            ):
                return _through_nat64(
                    _DirectAnswer(None, infos), host, nat64, getaddrinfo_async,
                    sorter, first_addr_family_count,
                )  # fmt: skip
            return _DirectAnswer(None, infos)
    arguments = (
        host, text, port, family, type, proto, flags, sorter, first_addr_family_count,
    )  # fmt: skip
    if (
        text is not None
        and literal_family == _AF_INET
        and nat64 is not False
        and not family
        and _needs_nat64(text)
    ):
        return _through_nat64(
            _DirectAnswer(arguments, None), host, nat64, getaddrinfo_async,
            sorter, first_addr_family_count,
        )  # fmt: skip
    return _DirectAnswer(arguments, None)


# -- IPv6-only networks: IPv4 through NAT64 (RFC 8305 §7) --------------------------

#: IPv4 addresses reached directly, without NAT64 (the probe found an IPv4
#: route, or no IPv6 route either, or the address is one never
#: synthesized), with the ``time.monotonic()`` until which that holds (the
#: probe's own cache lifetime). Checked before anything else about NAT64,
#: so that an IPv4 literal pays one dictionary lookup and one clock read for
#: it. Measured under callgrind (benchmarks/connect.py --instructions), per
#: IP-literal connection: NAT64 with this check costs 0.4 % to 0.6 % more
#: instructions than no NAT64 at all; asking find_source_address's own
#: cache instead cost 1.6 % more.
_ipv4_direct_until: dict[str, float] = {}
_DIRECT_MAX = 1024
_monotonic = time.monotonic


def _needs_nat64(address: str) -> bool:
    """Whether the IPv4 *address* is to be reached through NAT64: the kernel
    has no IPv4 route to it but has an IPv6 route (the source-address probe
    of RFC 6724 rule 1, cached: RFC 8305 §7's sign of an IPv6-only network),
    and it is not in a range never synthesized."""
    if (
        find_source_address(socket.AF_INET, (address, 9)) is None
        and _synthesizable_anywhere(address)
        # Neither family routed (no network at all): nothing to translate
        # through, and no DNS64 to ask.
        and _network_key() is not None
    ):
        return True
    if len(_ipv4_direct_until) >= _DIRECT_MAX:
        _ipv4_direct_until.clear()
    _ipv4_direct_until[address] = _monotonic() + SOURCE_CACHE_SECONDS
    return False


def _synthesizable_anywhere(address: str) -> bool:
    # No NAT64 address stands for 0/8, 127/8, 169.254/16 or
    # 255.255.255.255, so those need no discovery.
    try:
        return _nat64.ever_synthesizable(address)
    except ValueError:  # a form inet_pton takes and ipaddress does not
        return False


# ipv4only.arpa's first address under the Well-Known Prefix: where a DNS64
# server would say it is.
_NETWORK_PROBE = str(
    _nat64.embed(_nat64.WELL_KNOWN_ADDRESSES[0], _nat64.WELL_KNOWN_PREFIX)
)


def _network_key() -> Any:
    """Which network this is, for the prefix cache: the IPv6 source address
    toward the Well-Known Prefix (a UDP connect, which sends nothing), or
    None when there is no IPv6 route at all."""
    source = find_source_address(socket.AF_INET6, (_NETWORK_PROBE, 9, 0, 0))
    return None if source is None else source[0]


def _nat64_applies(infos: list[AddrInfo], nat64: bool | tuple[Any, ...]) -> bool:
    """Whether *infos* hold IPv4 addresses to reach through NAT64: it is on
    and the first of them needs it."""
    if nat64 is False:
        return False
    for info in infos:
        if info[0] == _AF_INET and isinstance(info[4][0], str):
            address: str = info[4][0]
            if _ipv4_direct_until.get(address, 0.0) >= _monotonic():
                return False
            return _needs_nat64(address)
    return False


async def _discover_prefixes(
    getaddrinfo_async: GetaddrinfoAsync | None,
) -> tuple[Any, ...]:
    """This network's NAT64 prefixes: remembered, or found by an AAAA
    lookup of ``ipv4only.arpa`` through the resolver in use (RFC 7050 §3).
    A lookup that fails, or answers without the well-known addresses,
    means no NAT64."""
    network = _network_key()
    known = _nat64.recall(network)
    if known is not None:
        return known
    try:
        answers = await _lookup(
            getaddrinfo_async or shared_getaddrinfo,
            _nat64.DISCOVERY_NAME, None, _AF_INET6, _SOCK_STREAM, 0, 0,
        )  # fmt: skip
    except Exception:
        answers = []
    prefixes = _nat64.prefixes_from_answers(
        info[4][0] for info in answers if isinstance(info[4][0], str)
    )
    _nat64.remember(network, prefixes)
    return prefixes


async def _synthesize(
    host: Host,
    infos: list[AddrInfo],
    setting: bool | tuple[Any, ...],
    getaddrinfo_async: GetaddrinfoAsync | None,
) -> list[AddrInfo]:
    """*infos* with each IPv4 address replaced by its addresses in the
    NAT64 prefixes (RFC 6052 §2.3), those given in *setting* or else the
    discovered ones. An address that cannot be synthesized (no prefix, or a
    range never synthesized) stays as it is, to fail as it would have."""
    if isinstance(setting, tuple):
        prefixes, origin = setting, "nat64="
    else:
        prefixes, origin = await _discover_prefixes(getaddrinfo_async), "ipv4only.arpa"
    result: list[AddrInfo] = []
    traced = tracing_active()
    for info in infos:
        family, kind, proto, canonname, sockaddr = info
        usable = (
            [p for p in prefixes if _nat64.synthesizable(sockaddr[0], p)]
            if family == _AF_INET
            else []
        )
        if not usable:
            result.append(info)
            continue
        for prefix in usable:
            address = (str(_nat64.embed(sockaddr[0], prefix)), sockaddr[1], 0, 0)
            result.append((socket.AF_INET6, kind, proto, canonname, address))
            if traced:
                emit(
                    "nat64_synthesized",
                    host=_host_text(host),
                    address=address,
                    synthesized_from=sockaddr,
                    nat64_prefix=str(prefix),
                    nat64_origin=origin,
                )
    return result


async def _through_nat64(
    ipv4_answer: _DirectAnswer,
    host: Host,
    setting: bool | tuple[Any, ...],
    getaddrinfo_async: GetaddrinfoAsync | None,
    sorter: SortAddresses | None,
    first_addr_family_count: int,
) -> AsyncIterator[AddrInfo]:
    """An IPv4 literal with no IPv4 route: its addresses through NAT64."""
    infos = [info async for info in ipv4_answer]
    synthesized = await _synthesize(host, infos, setting, getaddrinfo_async)
    for info in _order(synthesized, sorter, first_addr_family_count):
        yield info


# -- sharing identical lookups ------------------------------------------------------


class _SharedLookup:
    """One lookup awaited by everybody who asked for the same thing while it
    ran.

    The coroutine doing the work (:func:`_run_lookup`) hands its outcome to
    :meth:`settle` itself, as its last step, instead of the task announcing
    it through done callbacks: those would cost one more pass of the event
    loop, and one scheduled callback per listener, on every lookup.
    """

    __slots__ = (
        "error",
        "infos",
        "key",
        "listeners",
        "settled",
        "table",
        "task",
        "waiters",
    )

    task: asyncio.Task[list[AddrInfo]]

    def __init__(
        self, table: dict[_LookupKey, _SharedLookup] | None, key: _LookupKey
    ) -> None:
        self.table = table
        self.key = key
        self.waiters = 0
        self.settled = False
        self.infos: list[AddrInfo] = []
        self.error: BaseException | None = None
        # The family lookups of concurrent resolutions waiting for the
        # outcome (shared_getaddrinfo's callers await the task instead).
        self.listeners: list[_FamilyLookup] = []

    def settle(self, infos: list[AddrInfo], error: BaseException | None) -> None:
        """Record the outcome, stop offering the lookup to newcomers and
        tell the listeners, all within the lookup task's last step."""
        self.settled = True
        self.infos = infos
        self.error = error
        if self.table is not None:
            _forget(self.table, self.key, self)
        listeners, self.listeners = self.listeners, []
        for listener in listeners:
            try:
                listener.answered(infos, error)
            except Exception as exc:  # a trace callback that raised
                # Reported as a failing callback would be, and no other
                # resolution sharing this lookup misses the answer.
                self.task.get_loop().call_exception_handler(
                    {"message": "error while reporting a lookup", "exception": exc}
                )

    def leave(self) -> asyncio.Task[list[AddrInfo]] | None:
        """A waiter lost interest before the answer came. When it was the
        last one, cancel the lookup and return its task, to be awaited: the
        executor thread cannot be stopped, but nobody is left to hear its
        answer, and no task may outlive its users."""
        self.waiters -= 1
        if self.waiters > 0 or self.task.done():
            return None
        if self.table is not None:
            _forget(self.table, self.key, self)
        self.task.cancel()
        return self.task


_LookupKey: TypeAlias = tuple[Host, Port, int, int, int, int]

_in_flight: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[_LookupKey, _SharedLookup]
] = weakref.WeakKeyDictionary()


def _in_flight_table(
    loop: asyncio.AbstractEventLoop,
) -> dict[_LookupKey, _SharedLookup] | None:
    try:
        table = _in_flight.get(loop)
        if table is None:
            table = _in_flight[loop] = {}
    except TypeError:  # a loop that cannot be weakly referenced: no sharing
        return None
    return table


def _forget(
    table: dict[_LookupKey, _SharedLookup], key: _LookupKey, shared: _SharedLookup
) -> None:
    if table.get(key) is shared:
        del table[key]


# asyncio's own loop.getaddrinfo, for telling it from a replacement.
_BASE_GETADDRINFO = asyncio.BaseEventLoop.getaddrinfo


def _loop_has_stock_getaddrinfo(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether *loop*'s ``getaddrinfo`` is its class's own, asyncio's or
    uvloop's: the system's ``getaddrinfo`` in a thread, which our daemon
    threads do better (see :mod:`async_stagger._lookup_threads`).

    asyncio's runs in the loop's default executor, which ``asyncio.run``
    waits for at shutdown: one lookup abandoned after the race was won (a
    lost AAAA answer) held up the program's end by the resolver's timeout.
    uvloop's runs in libuv's small thread pool, where one unanswered AAAA
    query would hold up every other host's lookups until glibc gives up on
    it. A ``getaddrinfo`` a program or a test put on the loop, or a loop
    class of its own, is called as it is.
    """
    # Not by looking in loop.__dict__ (see connection._connects_directly).
    lookup = getattr(loop.getaddrinfo, "__func__", None)
    if lookup is _BASE_GETADDRINFO:
        return True
    uvloop = sys.modules.get("uvloop.loop")  # imported if this is its loop
    return uvloop is not None and lookup is getattr(uvloop.Loop, "getaddrinfo", 0)


def _join_shared_lookup(
    loop: asyncio.AbstractEventLoop,
    host: Host,
    port: Port,
    family: int,
    type: int,
    proto: int,
    flags: int,
) -> _SharedLookup:
    """The lookup in flight for these arguments, started if there is none;
    the caller counts as one more waiter."""
    key: _LookupKey = (host, port, family, type, proto, flags)
    table = _in_flight_table(loop)
    shared = table.get(key) if table is not None else None
    if shared is None:
        shared = _start_lookup(loop, None, table, key)
        if table is not None and not shared.settled:
            table[key] = shared
    shared.waiters += 1
    return shared


def _start_lookup(
    loop: asyncio.AbstractEventLoop,
    getaddrinfo_async: GetaddrinfoAsync | None,
    table: dict[_LookupKey, _SharedLookup] | None,
    key: _LookupKey,
) -> _SharedLookup:
    shared = _SharedLookup(table, key)
    # The lookup's first step may run right here and even finish it
    # (settling it) before the task is returned: see _lookup_task.
    shared.task = _lookup_task(loop, _run_lookup(shared, loop, getaddrinfo_async))
    return shared


if sys.version_info >= (3, 12):
    _BASE_CREATE_TASK = asyncio.BaseEventLoop.create_task

    def _lookup_task(
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, list[AddrInfo]],
    ) -> asyncio.Task[list[AddrInfo]]:
        """A task for a lookup, started eagerly where the loop allows.

        The first step of a lookup only hands the query to the executor (or
        to a DNS library); taking it at once, in the resolving task, sends
        the query one pass of the event loop sooner and, when the answer is
        immediate (a cache, a hosts-file answer), spares the loop passes
        that would deliver it. A loop with a task factory, or with its own
        ``create_task``, gets its way.
        """
        if (
            loop.get_task_factory() is None
            and builtins.type(loop).create_task is _BASE_CREATE_TASK
        ):
            return asyncio.Task(coro, loop=loop, eager_start=True)
        return loop.create_task(coro)

else:

    def _lookup_task(
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, list[AddrInfo]],
    ) -> asyncio.Task[list[AddrInfo]]:
        """A task for a lookup (Python 3.11 has no eager start)."""
        return loop.create_task(coro)


async def _run_lookup(
    shared: _SharedLookup,
    loop: asyncio.AbstractEventLoop,
    getaddrinfo_async: GetaddrinfoAsync | None,
) -> list[AddrInfo]:
    host, port, family, type, proto, flags = shared.key
    try:
        if getaddrinfo_async is not None:
            infos = list(
                await getaddrinfo_async(
                    host, port, family=family, type=type, proto=proto, flags=flags
                )
            )
        elif _loop_has_stock_getaddrinfo(loop):
            infos = cast(
                list[AddrInfo],
                await getaddrinfo_in_daemon_thread(
                    host, port, family, type, proto, flags
                ),
            )
        else:
            infos = list(
                await loop.getaddrinfo(
                    host, port, family=family, type=type, proto=proto, flags=flags
                )
            )
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
    shared = _join_shared_lookup(loop, host, port, family, type, proto, flags)
    try:
        return list(await asyncio.shield(shared.task))
    except asyncio.CancelledError:
        abandoned = shared.leave()
        if abandoned is not None:
            await wait_until_done([abandoned])
        raise


# -- one lookup, with its trace events ----------------------------------------------


async def _lookup(
    getaddrinfo_async: GetaddrinfoAsync,
    host: Host,
    port: Port,
    family: int,
    type: int,
    proto: int,
    flags: int,
) -> list[AddrInfo]:
    host_text = _host_text(host)
    address_family = socket.AddressFamily(family)
    emit("resolution_started", host=host_text, family=address_family)
    try:
        infos = list(
            await getaddrinfo_async(
                host, port, family=family, type=type, proto=proto, flags=flags
            )
        )
    except Exception as exc:
        emit("resolution_failed", host=host_text, family=address_family, error=exc)
        raise
    emit(
        "resolution_answered",
        host=host_text,
        family=address_family,
        addresses=tuple(info[4] for info in infos),
    )
    return infos


class _FamilyLookup:
    """One family's lookup within one concurrent resolution.

    No task of its own: it listens to the :class:`_SharedLookup` doing the
    work (the shared ``loop.getaddrinfo`` lookup, or one running a custom
    ``getaddrinfo_async`` for this resolution alone), which calls
    :meth:`answered` as soon as the answer is in; that records the outcome,
    reports it to the tracer and nudges the resolution. Under a burst of
    connections that is the difference between keeping up with asyncio's
    single lookup and not.
    """

    __slots__ = (
        "_context",
        "_notify",
        "_shared",
        "error",
        "family",
        "finished",
        "host",
        "infos",
    )

    def __init__(
        self, family: socket.AddressFamily, host: Host, notify: Callable[[], None]
    ) -> None:
        self.family = family
        self.host = host
        self.finished = False
        self.infos: list[AddrInfo] = []
        self.error: Exception | None = None
        self._notify = notify
        self._shared: _SharedLookup | None = None
        # The answer may arrive in another resolution's lookup task (the
        # lookup is shared): its trace events belong to this resolution's
        # tracer, so they are reported in this context.
        self._context = contextvars.copy_context() if tracing_active() else None

    def start(
        self,
        loop: asyncio.AbstractEventLoop,
        getaddrinfo_async: GetaddrinfoAsync | None,
        port: Port,
        type: int,
        proto: int,
        flags: int,
    ) -> None:
        if getaddrinfo_async is None:
            shared = _join_shared_lookup(
                loop, self.host, port, self.family, type, proto, flags
            )
        else:
            key: _LookupKey = (self.host, port, self.family, type, proto, flags)
            shared = _start_lookup(loop, getaddrinfo_async, None, key)
            shared.waiters = 1
        self._shared = shared
        if shared.settled:  # an eager task factory, or an instant answer
            self.answered(shared.infos, shared.error)
        else:
            shared.listeners.append(self)

    def answered(self, infos: list[AddrInfo], error: BaseException | None) -> None:
        """The lookup is over: record *infos* or *error*, trace, and wake
        the resolution."""
        if self.finished:
            return
        if error is not None and not isinstance(error, Exception):
            if not isinstance(error, asyncio.CancelledError):
                return  # KeyboardInterrupt and friends stop the loop anyway
            # Only a lookup that cancelled itself gets here: abandoning one
            # stops listening first.
            error = OSError(f"the {self.family.name} lookup was cancelled")
        self.finished = True
        if error is None:
            self.infos = infos
        else:
            self.error = error
        try:
            if self._context is not None:
                self._context.run(self._trace_answer)
        finally:
            self._notify()

    def _trace_answer(self) -> None:
        host = _host_text(self.host)
        if self.error is None:
            emit(
                "resolution_answered",
                host=host,
                family=self.family,
                addresses=tuple(info[4] for info in self.infos),
            )
        else:
            emit("resolution_failed", host=host, family=self.family, error=self.error)

    def abandon(self) -> asyncio.Future[Any] | None:
        """Stop waiting for the answer; cancel the lookup unless somebody
        else still waits for it. Returns the future to wait for until the
        lookup has stopped, if any."""
        shared = self._shared
        if shared is None:
            return None
        future = shared.task
        if self.finished:
            return future  # done: waiting only marks its exception retrieved
        self.finished = True
        if self in shared.listeners:
            shared.listeners.remove(self)
        abandoned = shared.leave()
        if abandoned is None and future.done() and not future.cancelled():
            future.exception()  # answered; our callback never ran
        return abandoned


def _emit_direct_answer(host: Host, infos: list[AddrInfo]) -> None:
    # No lookup happened, but the tracer should still see where the
    # addresses came from; one event per family present.
    if not tracing_active():
        return  # the common case: build nothing
    families = dict.fromkeys(info[0] for info in infos)
    for family in families:
        emit(
            "resolution_answered",
            host=_host_text(host),
            family=family,
            addresses=tuple(info[4] for info in infos if info[0] == family),
        )


def _emit_order(
    host: Host,
    ordered: Sequence[AddrInfo],
    sorter: SortAddresses | None,
    history: ConnectionHistory | None,
) -> None:
    """Report the order the first attempts will follow, with the reason for
    each position (for the tracer; only called when somebody traces)."""
    if sorter is sort_addresses:
        reasons = explain_order(ordered, history=history)
    elif sorter is None:
        reasons = ["getaddrinfo order (sorting off)"] * len(ordered)
    else:
        reasons = ["custom sort"] * len(ordered)
    emit(
        "order_decided",
        host=_host_text(host),
        addresses=tuple(info[4] for info in ordered),
        reasons=tuple(reasons),
    )


def _identity(info: AddrInfo) -> tuple[Any, ...]:
    # The same address for the same socket type is a duplicate; the
    # canonical name does not matter.
    return (info[0], info[1], info[2], info[4])


def _unique(infos: Iterable[AddrInfo], seen: set[tuple[Any, ...]]) -> list[AddrInfo]:
    result = []
    for info in infos:
        identity = _identity(info)
        if identity not in seen:
            seen.add(identity)
            result.append(info)
    return result


def _order(
    infos: list[AddrInfo],
    sorter: SortAddresses | None,
    first_addr_family_count: int,
    already_yielded: Sequence[int] = (),
    *,
    system_sorted: bool = False,
    history: ConnectionHistory | None = None,
) -> list[AddrInfo]:
    """Sort *infos* with *sorter* and interleave them by family.

    With *system_sorted* (the addresses come from the system's
    ``getaddrinfo``, which orders each answer by RFC 6724 itself), a list
    of one family is left in the system's order: the RFC 6724 sort exists
    here for what the system never saw, the two families side by side.
    A *history* that knows something reorders even one family's list
    (RFC 8305 §4, see :mod:`async_stagger.history`).
    """
    if len(infos) <= 1 and not already_yielded:
        return list(infos)  # nothing to order (an IP literal, typically)
    if (
        history is not None
        and sorter is sort_addresses
        and first_addr_family_count
        and len(history)
    ):
        infos = sort_addresses(infos, history=history)
        return interleave(
            infos, first_addr_family_count, already_yielded=already_yielded
        )
    if system_sorted and sorter is sort_addresses:
        family = infos[0][0] if infos else None
        if all(info[0] == family for info in infos) and all(
            yielded == family for yielded in already_yielded
        ):
            return list(infos)  # one family: nothing to sort or interleave
    if sorter is not None:
        infos = sorter(infos)
    if not first_addr_family_count:
        # asyncio's interleave=0, from the connection functions: keep the
        # order as it is.
        return list(infos)
    return interleave(infos, first_addr_family_count, already_yielded=already_yielded)


def _no_addresses(host: Host) -> socket.gaierror:
    # async_stagger 0.4 raised OSError("getaddrinfo(...) returned empty
    # list"), and asyncio raises the same words: code matches on them.
    return socket.gaierror(
        socket.EAI_NONAME,
        f"getaddrinfo({_host_text(host)!r}) returned empty list:"
        f" no addresses found for host {_host_text(host)!r}",
    )


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
    count, sorter = _check_resolver_arguments(
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
        _checked_history(history),
    )


def _checked_history(history: object) -> ConnectionHistory | None:
    if history is None or isinstance(history, ConnectionHistory):
        return history
    raise TypeError(f"history must be a ConnectionHistory or None, got {history!r}")


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
        an async generator for a name; for an IP literal or ``None``, a
        plain iterator that also reports how many addresses are left
        (``__length_hint__``).

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
        and family in _LOOKUP_FAMILIES
        and builtins.type(type) in _INT_TYPES
        and builtins.type(proto) in _INT_TYPES
        and builtins.type(flags) in _INT_TYPES
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
        count, sorter = _check_resolver_arguments(
            host, port, family, type, proto, flags, first_addr_family_count,
            getaddrinfo_async, sort,
        )  # fmt: skip
        delay = _check_resolution_delay(resolution_delay)
        setting = _nat64.check_setting(nat64)
        history = _checked_history(history)
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
    return _concurrent(
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
    )


def _both_failed(
    host: Host,
    errors: dict[int, BaseException | None],
    raise_exc_group: bool,
) -> BaseException:
    causes: list[Exception] = []
    parts = []
    for family, name in ((socket.AF_INET6, "IPv6"), (socket.AF_INET, "IPv4")):
        error = errors.get(family)
        if error is None:
            error = _no_addresses(host)
        assert isinstance(error, Exception)
        causes.append(error)
        parts.append(f"{name}: {error}")
    message = f"could not resolve {_host_text(host)!r}: " + "; ".join(parts)
    if raise_exc_group:
        return ExceptionGroup(message, causes)
    codes = [c.errno for c in causes if isinstance(c, socket.gaierror)]
    code = codes[0] if codes else socket.EAI_FAIL
    return socket.gaierror(code, message)


async def _concurrent(
    host: Host,
    port: Port,
    type: int,
    proto: int,
    flags: int,
    resolution_delay: float,
    first_addr_family_count: int,
    raise_exc_group: bool,
    getaddrinfo_async: GetaddrinfoAsync | None,
    sorter: SortAddresses | None,
    nat64: bool | tuple[Any, ...] = True,
    history: ConnectionHistory | None = None,
) -> AsyncIterator[AddrInfo]:
    loop = asyncio.get_running_loop()
    wake: asyncio.Future[None] | None = None

    def notify() -> None:
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def wait(timeout: float | None = None) -> None:
        """Until a lookup finishes (or *timeout* seconds pass)."""
        nonlocal wake
        wake = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, notify)
        try:
            await wake
        finally:
            wake = None
            if timer is not None:
                timer.cancel()

    # RFC 8305 §3: both queries go out together, the AAAA query first.
    ipv6 = _FamilyLookup(socket.AF_INET6, host, notify)
    ipv4 = _FamilyLookup(socket.AF_INET, host, notify)
    lookups = (ipv6, ipv4)
    started_at = loop.time()
    try:
        if tracing_active():
            for lookup in lookups:
                emit("resolution_started", host=_host_text(host), family=lookup.family)
        for lookup in lookups:
            lookup.start(loop, getaddrinfo_async, port, type, proto, flags)

        # Phase 1, RFC 8305 §3: wait for the first answer worth starting
        # with. IPv6 addresses go at once; IPv4 addresses wait up to the
        # Resolution Delay for IPv6; a failure or an empty answer waits for
        # the other family.
        ipv4_answered_at: float | None = None
        while not (ipv6.infos or (ipv6.finished and ipv4.finished)):
            if ipv4.infos:
                if ipv4_answered_at is None:
                    ipv4_answered_at = loop.time()
                remaining = ipv4_answered_at + resolution_delay - loop.time()
                if remaining <= 0:
                    if tracing_active():
                        emit(
                            "resolution_delay_expired",
                            host=_host_text(host),
                            family=socket.AF_INET6,
                            delay=resolution_delay,
                        )
                    break  # RFC 8305 §3: stop waiting for AAAA
                await wait(remaining if math.isfinite(remaining) else None)
            else:
                await wait()

        # Phase 2: hand out addresses one at a time. A lookup finishing
        # meanwhile (RFC 8305 §6) re-sorts and re-interleaves what is left;
        # what was handed out stays handed out.
        seen: set[tuple[Any, ...]] = set()
        handed_out: list[int] = []  # families, in order
        # Lookups whose answer is not in the list yet.
        unmerged = list(lookups)

        # Addresses known but not handed out, each family in its own
        # getaddrinfo order, families in the order they answered: the
        # "original order" of RFC 6724 rule 10.
        not_tried: list[AddrInfo] = []
        tail: list[AddrInfo] = []  # not_tried, in the order to try them
        system_sorted = getaddrinfo_async is None
        while True:
            if unmerged[0].finished or (len(unmerged) > 1 and unmerged[1].finished):
                for lookup in [lookup for lookup in unmerged if lookup.finished]:
                    unmerged.remove(lookup)
                    infos = lookup.infos
                    if lookup is ipv4 and _nat64_applies(infos, nat64):
                        # RFC 8305 §7: no IPv4 route, so the IPv4 answers
                        # are reached through NAT64, sorted among the rest.
                        infos = await _synthesize(host, infos, nat64, getaddrinfo_async)
                        system_sorted = False
                    not_tried.extend(_unique(infos, seen))
                tail = _order(
                    not_tried,
                    sorter,
                    first_addr_family_count,
                    handed_out,
                    system_sorted=system_sorted,
                    history=history,
                )
                if not handed_out and tail and tracing_active():
                    _emit_order(host, tail, sorter, history)
                # Handed out from the front: reversed, each pop is cheap.
                tail.reverse()
                if not unmerged:
                    break  # every answer is in; no more reordering
            if tail:
                info = tail.pop()
                not_tried.remove(info)
                handed_out.append(info[0])
                yield info
                continue
            await wait()
        # Both answers are in: the rest of the order is final.
        while tail:
            info = tail.pop()
            handed_out.append(info[0])
            yield info

        if not handed_out:
            raise _both_failed(
                host,
                {lookup.family: lookup.error for lookup in lookups},
                raise_exc_group,
            )
    finally:
        # Closed early (the race was won), cancelled, or done: no lookup may
        # outlive the iterator, and none may leave an exception unretrieved.
        if tracing_active():
            for lookup in lookups:
                if not lookup.finished and lookup._shared is not None:
                    emit(
                        "resolution_abandoned",
                        host=_host_text(host),
                        family=lookup.family,
                        delay=loop.time() - started_at,
                    )
        stopping = [lookup.abandon() for lookup in lookups]
        running = [future for future in stopping if future is not None]
        for future in running:
            if not future.done():
                await wait_until_done(running)
                break
            # The usual case: the lookup is over. Nothing to wait for.
            if not future.cancelled():
                future.exception()
