"""Happy Eyeballs connections: drop-in replacements for asyncio's.

:func:`open_connection` and :func:`create_connection` take every argument
:func:`asyncio.open_connection` and :meth:`asyncio.loop.create_connection`
take, and mean the same by them; the difference is how the TCP connection is
made. :func:`create_connected_sock` is that difference on its own: it returns
a connected socket.

How a connection is made
------------------------
1. The arguments are checked before anything touches the network, so a typo
   or an impossible combination fails at once with the exception asyncio
   would raise for it.
2. The resolver turns the host name into a stream of addresses. It looks up
   IPv6 and IPv4 at the same time and hands over the first address as soon
   as it is sensible to start (RFC 8305 §3), ordered and interleaved by
   family (§4); answers that arrive later join the tail of the stream (§6).
3. Each address becomes one connection attempt: create a socket, bind it to
   a local address of the same family when one is given, ``connect`` it
   (on asyncio's selector loops and uvloop's, with the steps of their
   :meth:`~asyncio.loop.sock_connect` minus its second resolution of an
   address that is already resolved, see ``_connect_when_writable``; on any
   other loop, with its ``sock_connect``).
   :func:`~async_stagger.staggered_race` starts the attempts a *delay*
   apart, or the next one at once when the latest fails (§5). The first
   socket to finish the TCP handshake wins; the others are cancelled and
   closed. One IP address with nothing else to race needs no race: it is
   connected directly, with the same outcome.
4. With TLS, each attempt runs its TLS handshake as soon as its TCP
   connection is up, and an attempt succeeds only when its handshake
   completes (Happy Eyeballs v3: with TLS over TCP, wait for the TLS
   handshake before cancelling other attempts; see ``_tls_attempt``), so
   an address that accepts TCP but stalls TLS cannot win. The handshakes
   run through :meth:`asyncio.loop.create_connection`, so the loop's own
   transports and TLS code are used unchanged. With ``race_tls=False`` the
   TCP race picks the winner and TLS runs on it alone (RFC 8305 §5, and
   what asyncio does).

Every socket an attempt creates is recorded until it is either returned to
the caller or closed, so no exit path (failure, cancellation,
``asyncio.timeout``) leaves a descriptor open.
"""

from __future__ import annotations

import asyncio
import enum
import socket
import ssl as _ssl
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
)
from typing import Any, Final, TypeAlias

from . import defaults
from ._checks import check_callable, check_delay, check_host, check_port, not_an_int
from ._make_connection import make_connection
from ._plan import (
    ConnectionPlan,
    check_local_addr,
    check_loop,
    check_resolver_takes_interleave,
    check_sock,
    new_plan,
    tls_keywords,
)
from .history import SHARED, ConnectionHistory, HistoryOption
from .nat64 import Nat64Setting, check_setting
from .resolvers import concurrent_resolver
from .trace import TraceCallback

# Where the code is: this module checks the arguments and builds one
# ConnectionPlan (_plan: the checks and the plan's fields); _make_connection
# makes the connection the plan describes; _attempts turns addresses into
# connection attempts; _failure composes the exception when every attempt
# failed. What each event loop allows is decided once, in _loop_abilities.

__all__ = [
    "NOT_GIVEN",
    "AddrInfo",
    "NotGiven",
    "Resolver",
    "create_connected_sock",
    "create_connection",
    "open_connection",
]

# AddrInfo (a ``getaddrinfo`` result), Host and Port, defined once for all
# modules; importable from here as in 0.4.
from ._types import AddrInfo, Host, Port

#: A resolver: called as ``resolver(host, port, *, family, type, proto,
#: flags)`` (plus ``first_addr_family_count`` and ``raise_exc_group`` when
#: those are asked for and it declares it takes them), it returns an async
#: iterator of :data:`AddrInfo`.
Resolver: TypeAlias = Callable[..., AsyncIterator[AddrInfo]]

#: The ``ssl`` argument of :meth:`asyncio.loop.create_connection`.
SSLArg: TypeAlias = _ssl.SSLContext | bool | None
#: Already-resolved local socket addresses, e.g. ``("192.0.2.1", 0)``.
LocalAddrs: TypeAlias = Iterable[tuple[Any, ...]] | AsyncIterable[tuple[Any, ...]]


class NotGiven(enum.Enum):
    """The type of :data:`NOT_GIVEN`."""

    NOT_GIVEN = "NOT_GIVEN"

    def __repr__(self) -> str:
        return "NOT_GIVEN"


#: The default of *delay* and *happy_eyeballs_delay*: left out, which means
#: the Connection Attempt Delay of RFC 8305
#: (:data:`async_stagger.defaults.CONNECTION_ATTEMPT_DELAY`). It is not
#: ``None``, because ``None`` is a value of its own: attempts one at a time,
#: as in async_stagger 0.4 (``delay=None``) and asyncio
#: (``happy_eyeballs_delay=None``).
NOT_GIVEN: Final = NotGiven.NOT_GIVEN

#: A delay as the connection functions take it (see :data:`NOT_GIVEN`).
Delay: TypeAlias = float | NotGiven | None


async def create_connected_sock(
    host: Host,
    port: Port,
    *,
    family: int = 0,
    proto: int = 0,
    flags: int = 0,
    local_addr: tuple[Any, ...] | None = None,
    happy_eyeballs_delay: Delay = NOT_GIVEN,
    interleave: int | None = None,
    all_errors: bool = False,
    local_addrs: LocalAddrs | None = None,
    delay: Delay = NOT_GIVEN,
    resolver: Resolver = concurrent_resolver,
    raise_exc_group: bool = False,
    trace: TraceCallback | None = None,
    nat64: Nat64Setting = True,
    history: ConnectionHistory | HistoryOption | None = SHARED,
) -> socket.socket:
    """Connect to *host* and *port* with Happy Eyeballs; return the socket.

    The host name is resolved with *resolver* (both address families at
    once, RFC 8305 §3), and connection attempts to its addresses are started
    *delay* seconds apart, or at once when the previous attempt fails (RFC
    8305 §5). The first to connect wins; all others are closed.

    The connection keywords (*family* to *trace*) are the same for all three
    connection functions, and mean the same in each; they are described
    here (and compared with asyncio's and 0.4's in the guide's table).

    Args:
        host: Host name or IP address literal to connect to.
        port: Port number, numeric string or service name.
        family: ``socket.AF_INET`` or ``socket.AF_INET6`` to use only that
            family; 0 for both.
        proto: Socket protocol, passed to the resolver and ``socket()``.
        flags: ``getaddrinfo`` flags, passed to the resolver.
        local_addr: asyncio's local address: a ``(host, port)`` pair,
            resolved like asyncio's if needed; one more local address next
            to *local_addrs*.
        happy_eyeballs_delay: asyncio's name for *delay*; ``None`` means one
            attempt at a time, as in asyncio.
        interleave: asyncio's name for the First Address Family Count (RFC
            8305 §4): passed to the resolver as ``first_addr_family_count``;
            0 keeps the addresses in ``getaddrinfo``'s order, neither sorted
            nor interleaved (asyncio's meaning; with a resolver of your own,
            its order); ``None`` leaves the resolver's default (1).
        all_errors: asyncio's name for *raise_exc_group*.
        local_addrs: Already-resolved local addresses to bind to, as a sync
            or async iterable of socket address tuples, e.g.
            ``[("192.0.2.7", 0), ("2001:db8::7", 0, 0, 0)]``. Each remote
            address is tried from each local address of its own family.
        delay: The Connection Attempt Delay in seconds (RFC 8305 §5);
            ``None`` starts the next attempt only when the previous one
            fails (one at a time); left out, it is
            :data:`async_stagger.defaults.CONNECTION_ATTEMPT_DELAY`.
            *happy_eyeballs_delay* is asyncio's name for the same setting;
            given both, they must be equal.
        resolver: Turns host and port into an async iterator of
            ``getaddrinfo`` tuples; see :mod:`async_stagger.resolvers`. Bind
            its own options with :func:`functools.partial`. It is called
            with ``host, port, family=, type=, proto=, flags=`` (the
            async_stagger 0.4 contract), plus ``first_addr_family_count``
            (from *interleave*) and ``raise_exc_group`` only when those are
            asked for and its signature names them or takes ``**kwargs``.
        raise_exc_group: When every attempt fails, raise an
            :class:`ExceptionGroup` of every attempt's and lookup's exception
            instead of one :class:`OSError`.
        trace: Called with a :class:`~async_stagger.TraceEvent` for each step
            (lookups, attempts started, failed, won).
        nat64: Where the host has no IPv4 route to an IPv4 literal or to a
            name's IPv4 addresses (an IPv6-only network), reach them through
            NAT64 (RFC 8305 §7): ``True`` (the default) discovers the
            network's NAT64 prefix with an AAAA lookup of ``ipv4only.arpa``
            (RFC 7050); ``False`` turns this off; an iterable of prefixes
            (``["64:ff9b::/96"]``, for a network that announces its prefix
            otherwise, e.g. in router advertisements, RFC 8781) uses those
            without a lookup. Passed to a custom *resolver* only when not
            ``True`` and its signature names it or takes ``**kwargs``.
        history: The :class:`~async_stagger.history.ConnectionHistory` that
            orders the addresses and times the attempts from what earlier
            connections learned, and learns from this one (RFC 8305 §4,
            §5): by default the process's shared one
            (:func:`~async_stagger.history.shared_history`); ``None`` for
            none. With *delay* and *happy_eyeballs_delay* left out, it may
            choose each attempt's delay from measured round-trip times; a
            delay given is used as given. IP literals are left out of it.

    Returns:
        A connected, non-blocking :class:`socket.socket` with ``TCP_NODELAY``
        set. The caller owns it.

    Raises:
        OSError: Every attempt failed: the single error if all were alike,
            else one naming each address and its error.
        socket.gaierror: The host name could not be resolved, or is empty.
        ExceptionGroup: Every attempt failed and *raise_exc_group* or
            *all_errors* is true.
        OverflowError: *port* is an int or a numeric string outside 0-65535.
        ValueError: *delay* is negative or NaN, *interleave* negative.
        TypeError: An argument has the wrong type; *delay* and
            *happy_eyeballs_delay* disagree; *interleave* with a resolver
            that does not take ``first_addr_family_count``.

    .. versionadded:: 1.0
       the *trace*, *nat64* and *history* arguments; ``TCP_NODELAY`` is set
       on the socket; the keywords of :meth:`asyncio.loop.create_connection` that
       concern the TCP connection (*local_addr*, *happy_eyeballs_delay*,
       *interleave*, *all_errors*).
    """
    # The values in the order of _plan's parameters.
    plan = _plan(
        None, host, port, None, family, proto, flags, None, local_addr,
        local_addrs, None, None, None, happy_eyeballs_delay, interleave, delay,
        resolver, raise_exc_group or all_errors, trace, nat64, False, history,
        True,
    )  # fmt: skip
    sock: socket.socket = await make_connection(plan, None)
    # What asyncio gives the sockets of its transports (which set it
    # themselves on the sockets create_connection hands them).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


async def create_connection(
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    host: Host = None,
    port: Port = None,
    *,
    loop: asyncio.AbstractEventLoop | None = None,
    ssl: SSLArg = None,
    family: int = 0,
    proto: int = 0,
    flags: int = 0,
    sock: socket.socket | None = None,
    local_addr: tuple[Any, ...] | None = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    happy_eyeballs_delay: Delay = NOT_GIVEN,
    interleave: int | None = None,
    all_errors: bool = False,
    local_addrs: LocalAddrs | None = None,
    delay: Delay = NOT_GIVEN,
    resolver: Resolver = concurrent_resolver,
    raise_exc_group: bool = False,
    trace: TraceCallback | None = None,
    nat64: Nat64Setting = True,
    race_tls: bool = True,
    history: ConnectionHistory | HistoryOption | None = SHARED,
) -> tuple[asyncio.BaseTransport, asyncio.BaseProtocol]:
    """Connect to *host* and *port* with Happy Eyeballs; a drop-in for
    :meth:`asyncio.loop.create_connection`.

    Every argument of :meth:`asyncio.loop.create_connection` is accepted
    and means what it means there, except that Happy Eyeballs is always on.
    With *ssl*, each attempt does its own TLS handshake, through the loop's
    own ``create_connection``, and the first attempt to complete it wins
    (see *race_tls*).

    Args:
        protocol_factory: Called with no arguments to make the protocol.
        host: Host name or IP address literal to connect to.
        port: Port number, numeric string or service name.
        loop: Accepted for old code; must be the running loop.
        ssl: An :class:`ssl.SSLContext`, or true for a default context.
        family: See :func:`create_connected_sock`.
        proto: See :func:`create_connected_sock`.
        flags: See :func:`create_connected_sock`.
        sock: An already-connected socket: no Happy Eyeballs, the socket is
            handed to the loop as is. Excludes *host* and *port*.
        local_addr: See :func:`create_connected_sock`.
        server_hostname: The name to check the server's certificate
            against; defaults to *host*. Only with *ssl*.
        ssl_handshake_timeout: Seconds to wait for the TLS handshake.
        ssl_shutdown_timeout: Seconds to wait for the TLS shutdown.
        happy_eyeballs_delay: See :func:`create_connected_sock`.
        interleave: See :func:`create_connected_sock`.
        all_errors: See :func:`create_connected_sock`.
        local_addrs: See :func:`create_connected_sock`.
        delay: See :func:`create_connected_sock`.
        resolver: See :func:`create_connected_sock`.
        raise_exc_group: See :func:`create_connected_sock`.
        trace: See :func:`create_connected_sock`; here each attempt's TLS
            handshake is traced too.
        nat64: See :func:`create_connected_sock`.
        race_tls: With *ssl*: an attempt succeeds only once its TLS
            handshake completes, so an address that accepts TCP but stalls
            TLS cannot win (Happy Eyeballs v3); each handshake gets its own
            *ssl_handshake_timeout*, and *protocol_factory* is called once,
            for the winner. False: the TCP race picks the winner and TLS
            runs on it alone, as asyncio does. No effect without *ssl*.
        history: See :func:`create_connected_sock`.

    Returns:
        ``(transport, protocol)``, as :meth:`asyncio.loop.create_connection`.

    Raises:
        OSError: Every attempt failed (see :func:`create_connected_sock`).
        socket.gaierror: The host name could not be resolved, or is empty
            (as asyncio's ``getaddrinfo`` call fails for it).
        ExceptionGroup: Every attempt failed, with *raise_exc_group* or
            *all_errors*.
        ssl.SSLError: The TLS handshake failed (every attempt's, in a TLS
            race).
        ValueError: Arguments that asyncio rejects (*server_hostname*
            without *ssl*, *sock* together with *host*), negative or NaN
            delays, a negative *interleave*.
        OverflowError: *port* is an int or a numeric string outside 0-65535,
            as asyncio raises.
        TypeError: An argument of the wrong type, *ssl* with an
            :class:`ssl.SSLSocket` as *sock*; see also
            :func:`create_connected_sock`.
        RuntimeError: *loop* is not the running event loop.

    .. versionadded:: 1.0
       every keyword of :meth:`asyncio.loop.create_connection` (*sock*,
       *happy_eyeballs_delay*, *interleave*, *all_errors*, ...), *trace*,
       *nat64*, *history*, and *race_tls*: TLS handshakes are part of the race.
    """
    check_callable("protocol_factory", protocol_factory, allow_none=False)
    # The values in the order of _plan's parameters.
    plan = _plan(
        loop, host, port, ssl, family, proto, flags, sock, local_addr,
        local_addrs, server_hostname, ssl_handshake_timeout,
        ssl_shutdown_timeout, happy_eyeballs_delay, interleave, delay, resolver,
        raise_exc_group or all_errors, trace, nat64, race_tls, history, False,
    )  # fmt: skip
    result: tuple[asyncio.BaseTransport, asyncio.BaseProtocol]
    result = await make_connection(plan, protocol_factory)
    return result


async def open_connection(
    host: Host = None,
    port: Port = None,
    *,
    limit: int = defaults.STREAM_LIMIT,
    loop: asyncio.AbstractEventLoop | None = None,
    ssl: SSLArg = None,
    family: int = 0,
    proto: int = 0,
    flags: int = 0,
    sock: socket.socket | None = None,
    local_addr: tuple[Any, ...] | None = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    happy_eyeballs_delay: Delay = NOT_GIVEN,
    interleave: int | None = None,
    all_errors: bool = False,
    local_addrs: LocalAddrs | None = None,
    delay: Delay = NOT_GIVEN,
    resolver: Resolver = concurrent_resolver,
    raise_exc_group: bool = False,
    trace: TraceCallback | None = None,
    nat64: Nat64Setting = True,
    race_tls: bool = True,
    history: ConnectionHistory | HistoryOption | None = SHARED,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to *host* and *port* with Happy Eyeballs; a drop-in for
    :func:`asyncio.open_connection`.

    Args:
        host: Host name or IP address literal to connect to.
        port: Port number, numeric string or service name.
        limit: The buffer limit of the returned
            :class:`~asyncio.StreamReader`.
        loop: Accepted for old code; must be the running loop.
        ssl: See :func:`create_connection`.
        family: See :func:`create_connected_sock`.
        proto: See :func:`create_connected_sock`.
        flags: See :func:`create_connected_sock`.
        sock: See :func:`create_connection`.
        local_addr: See :func:`create_connected_sock`.
        server_hostname: See :func:`create_connection`.
        ssl_handshake_timeout: See :func:`create_connection`.
        ssl_shutdown_timeout: See :func:`create_connection`.
        happy_eyeballs_delay: See :func:`create_connected_sock`.
        interleave: See :func:`create_connected_sock`.
        all_errors: See :func:`create_connected_sock`.
        local_addrs: See :func:`create_connected_sock`.
        delay: See :func:`create_connected_sock`.
        resolver: See :func:`create_connected_sock`.
        raise_exc_group: See :func:`create_connected_sock`.
        trace: See :func:`create_connection`.
        nat64: See :func:`create_connected_sock`.
        race_tls: See :func:`create_connection`. In a TLS race, bytes the
            server sends right after its handshake reach the reader.
        history: See :func:`create_connected_sock`.

    Returns:
        ``(reader, writer)``, as :func:`asyncio.open_connection`.

    Raises:
        OSError: Every attempt failed (see :func:`create_connected_sock`).
        socket.gaierror: The host name could not be resolved.
        ExceptionGroup: Every attempt failed, with *raise_exc_group* or
            *all_errors*.
        ssl.SSLError: The TLS handshake failed.
        ValueError: Bad arguments (see :func:`create_connection`).
        OverflowError: *port* is out of range (see :func:`create_connection`).
        TypeError: Bad arguments (see :func:`create_connection`).
        RuntimeError: *loop* is not the running event loop.

    .. versionadded:: 1.0
       *race_tls*: TLS handshakes are part of the race.
    """
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise not_an_int("limit", limit)
    if limit <= 0:
        raise ValueError(f"limit must be positive, got {limit!r}")
    # The values in the order of _plan's parameters.
    plan = _plan(
        loop, host, port, ssl, family, proto, flags, sock, local_addr,
        local_addrs, server_hostname, ssl_handshake_timeout,
        ssl_shutdown_timeout, happy_eyeballs_delay, interleave, delay, resolver,
        raise_exc_group or all_errors, trace, nat64, race_tls, history, False,
    )  # fmt: skip
    running = plan.loop
    reader = asyncio.StreamReader(limit=limit, loop=running)
    protocol = asyncio.StreamReaderProtocol(reader, loop=running)
    transport, _ = await make_connection(plan, lambda: protocol, True)
    writer = asyncio.StreamWriter(transport, protocol, reader, running)
    return reader, writer


# -- building the plan ----------------------------------------------------------


def _plan(
    loop: object,
    host: Host,
    port: Port,
    ssl: object,
    family: int,
    proto: int,
    flags: int,
    sock: socket.socket | None,
    local_addr: tuple[Any, ...] | None,
    local_addrs: LocalAddrs | None,
    server_hostname: str | None,
    ssl_handshake_timeout: float | None,
    ssl_shutdown_timeout: float | None,
    happy_eyeballs_delay: Delay,
    interleave: int | None,
    delay: Delay,
    resolver: Resolver,
    raise_exc_group: bool,
    trace: TraceCallback | None,
    nat64: Nat64Setting,
    race_tls: bool,
    history: ConnectionHistory | HistoryOption | None,
    returns_socket: bool,
) -> ConnectionPlan:
    """Check a connection function's arguments as asyncio checks them (its
    rules, its exception types), before any network activity, and make the
    plan of the connection: the one argument check of all three functions,
    each value looked at once."""
    if race_tls is not True and race_tls is not False:
        raise TypeError(
            "race_tls must be True or False,"
            f" got {type(race_tls).__name__} {race_tls!r}"
        )
    running = asyncio.get_running_loop()
    if loop is not None and loop is not running:
        check_loop(loop, running)
    tls = tls_keywords(
        host, ssl, server_hostname, ssl_handshake_timeout, ssl_shutdown_timeout
    )
    if sock is not None:
        # No Happy Eyeballs: the other connection keywords play no part.
        check_sock(sock, host=host, port=port)
        nat64 = check_setting(nat64)
        return new_plan(ConnectionPlan, (
            running, host, port, family, proto, flags, sock, None, None, 0.0,
            True, resolver, None, raise_exc_group, tls, race_tls, trace,
            nat64, history,
        ))  # fmt: skip
    if host is None and port is None and not returns_socket:
        raise ValueError("host and port was not specified and no sock specified")
    # The common call (a str host, an int port, plain int family, proto and
    # flags) passes on type and range tests alone; anything else gets the
    # full checks. Worth ~3.4k instructions (0.9 %) of a literal connection:
    # ~2.0k the host's and port's, ~1.4k the three ints' (3.11).
    if type(host) is not str or not host or "\0" in host:
        check_host(host, allow_empty=False)
    if type(port) is not int or not 0 <= port <= 65535:
        check_port(port)
    if type(family) is not int or type(proto) is not int or type(flags) is not int:
        if isinstance(family, bool) or not isinstance(family, int):
            raise not_an_int("family", family)
        if isinstance(proto, bool) or not isinstance(proto, int):
            raise not_an_int("proto", proto)
        if isinstance(flags, bool) or not isinstance(flags, int):
            raise not_an_int("flags", flags)
    delay_given = delay is not NOT_GIVEN or happy_eyeballs_delay is not NOT_GIVEN
    chosen_delay = (
        _pick_delay(delay, happy_eyeballs_delay)
        if delay_given
        else defaults.CONNECTION_ATTEMPT_DELAY
    )
    check_callable("resolver", resolver, allow_none=False)
    if interleave is not None:
        check_resolver_takes_interleave(interleave, resolver)
    if local_addr is not None:
        check_local_addr(local_addr)
    nat64 = check_setting(nat64)
    return new_plan(ConnectionPlan, (
        running, host, port, family, proto, flags, None, local_addr, local_addrs,
        chosen_delay, delay_given, resolver, interleave, raise_exc_group, tls,
        race_tls, trace, nat64, history,
    ))  # fmt: skip


def _pick_delay(delay: Delay, happy_eyeballs_delay: Delay) -> float | None:
    """The Connection Attempt Delay asked for: *delay* (async_stagger's name)
    or *happy_eyeballs_delay* (asyncio's), ``None`` for one attempt at a
    time. Both given must agree: one silently overriding the other would
    hide a mistake."""
    if delay is NOT_GIVEN:
        return check_delay("happy_eyeballs_delay", happy_eyeballs_delay)
    checked = check_delay("delay", delay)
    if happy_eyeballs_delay is not NOT_GIVEN:
        checked_he = check_delay("happy_eyeballs_delay", happy_eyeballs_delay)
        if checked != checked_he:
            raise TypeError(
                "delay and happy_eyeballs_delay are the same setting; give one,"
                f" got delay={delay!r},"
                f" happy_eyeballs_delay={happy_eyeballs_delay!r}"
            )
    return checked
