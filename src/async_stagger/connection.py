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
   closed.
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
the caller or closed. The race may drop a winner it found just as the caller
was cancelled; the record is what lets us close that socket too, so no exit
path (failure, cancellation, ``asyncio.timeout``) leaves a descriptor open.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import logging
import socket
import ssl as _ssl
import sys
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
)
from functools import partial
from typing import Any, Final, TypeAlias

from . import defaults
from . import history as _history
from ._checks import check_host, check_port, check_seconds
from ._resolver_keywords import extra_keywords_taken
from ._tls_attempt import Handshake, TLSRace
from .address_order import find_source_address
from .address_order import sort_addresses as _sort_addresses
from .history import (
    SHARED,
    ConnectionHistory,
    HistoryOption,
    resolve_history_option,
)
from .nat64 import Nat64Setting, check_setting
from .race import _items_left, _race_on_loop
from .resolvers import (
    _DirectAnswer,
    _resolve_checked,
    basic_resolver,
    concurrent_resolver,
)
from .trace import LOGGER, TraceCallback, _logged, emit, tracing, tracing_active

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


# ``type`` is a parameter name in some signatures here.
_typeof = type

_SOCK_STREAM = socket.SOCK_STREAM

# The optional arguments of a plain connection that default to None, all
# left out.
_ALL_NONE = (None,) * 8

# -- checking arguments ---------------------------------------------------------


def _check_target(
    host: object, port: object, family: object, proto: object, flags: object
) -> None:
    """Check the arguments every connection function takes."""
    # The common case (a str host, an int port, int options) costs four
    # type comparisons and a NUL search; anything else gets the full,
    # explanatory checks.
    if type(host) is not str or not host or "\0" in host:
        check_host(host, allow_empty=False)
    if type(port) is not int or not 0 <= port <= 65535:
        check_port(port)
    if type(family) is not int:
        _check_int("family", family)
    if type(proto) is not int:
        _check_int("proto", proto)
    if type(flags) is not int:
        _check_int("flags", flags)


def _check_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")


def _check_delay(name: str, delay: object) -> float | None:
    return check_seconds(name, delay, allow_none=True)


def _check_interleave(interleave: object) -> None:
    if interleave is None:
        return
    _check_int("interleave", interleave)
    assert isinstance(interleave, int)
    if interleave < 0:
        # 0 is asyncio's "do not reorder"; asyncio takes a negative count
        # too and interleaves with it as if it were a count of addresses.
        raise ValueError(
            "interleave (the RFC 8305 First Address Family Count) must be"
            f" at least 0, got {interleave!r}"
        )


def _check_loop(loop: object) -> asyncio.AbstractEventLoop:
    running = asyncio.get_running_loop()
    if loop is None or loop is running:
        return running
    if not isinstance(loop, asyncio.AbstractEventLoop):
        raise TypeError(f"loop must be the running event loop or None, got {loop!r}")
    raise RuntimeError(
        f"loop {loop!r} is not the running event loop {running!r}; pass None"
    )


def _check_race_tls(race_tls: object) -> None:
    if race_tls is not False:
        raise TypeError(
            "race_tls must be True or False,"
            f" got {type(race_tls).__name__} {race_tls!r}"
        )


def _check_ssl(ssl: object) -> None:
    if ssl is not None and not isinstance(ssl, bool | _ssl.SSLContext):
        raise TypeError(
            "ssl must be an ssl.SSLContext, a bool or None,"
            f" got {type(ssl).__name__} {ssl!r}"
        )


def _check_sock(sock: object, *, host: object, port: object) -> None:
    if not isinstance(sock, socket.socket):
        raise TypeError(f"sock must be a socket.socket, got {sock!r}")
    if host is not None or port is not None:
        raise ValueError("host/port and sock can not be specified at the same time")
    # The same rules (and types) as asyncio's create_connection.
    if isinstance(sock, _ssl.SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")
    if sock.type != socket.SOCK_STREAM:
        raise ValueError(f"A Stream Socket was expected, got {sock!r}")


def _pick_delay(delay: Delay, happy_eyeballs_delay: Delay) -> float | None:
    """The Connection Attempt Delay asked for: *delay* (async_stagger's name)
    or *happy_eyeballs_delay* (asyncio's), ``None`` for one attempt at a
    time, the RFC 8305 default when neither is given. Both given must agree:
    one silently overriding the other would hide a mistake."""
    if isinstance(delay, NotGiven):
        if isinstance(happy_eyeballs_delay, NotGiven):
            return defaults.CONNECTION_ATTEMPT_DELAY
        return _check_delay("happy_eyeballs_delay", happy_eyeballs_delay)
    checked = _check_delay("delay", delay)
    if not isinstance(happy_eyeballs_delay, NotGiven):
        checked_he = _check_delay("happy_eyeballs_delay", happy_eyeballs_delay)
        if checked != checked_he:
            raise TypeError(
                "delay and happy_eyeballs_delay are the same setting; give one,"
                f" got delay={delay!r},"
                f" happy_eyeballs_delay={happy_eyeballs_delay!r}"
            )
    return checked


def _check_connection_keywords(
    host: Host,
    port: Port,
    family: int,
    proto: int,
    flags: int,
    local_addr: tuple[Any, ...] | None,
    happy_eyeballs_delay: Delay,
    interleave: int | None,
    delay: Delay,
    resolver: Resolver,
) -> float | None:
    """Check the keywords all three connection functions take, before any
    network activity; return the Connection Attempt Delay."""
    _check_target(host, port, family, proto, flags)
    chosen_delay = _pick_delay(delay, happy_eyeballs_delay)
    if not callable(resolver):
        raise TypeError(f"resolver must be callable, got {resolver!r}")
    if interleave is not None:
        _check_interleave(interleave)
        if (
            interleave
            and resolver is not concurrent_resolver
            and "first_addr_family_count" not in extra_keywords_taken(resolver)
        ):
            raise TypeError(
                f"interleave={interleave!r} is passed to the resolver as"
                f" first_addr_family_count, which {resolver!r} does not take"
            )
    if local_addr is not None and (
        not isinstance(local_addr, tuple | list) or len(local_addr) < 2
    ):
        raise TypeError(f"local_addr must be a (host, port) pair, got {local_addr!r}")
    return chosen_delay


def _local_family(address: tuple[Any, ...]) -> int:
    """The family a resolved local address belongs to (0: fits either)."""
    if not isinstance(address, tuple) or not 2 <= len(address) <= 4:
        raise TypeError(
            "local addresses must be resolved socket address tuples such as"
            f" ('192.0.2.1', 0) or ('2001:db8::1', 0, 0, 0), got {address!r}"
        )
    host = address[0]
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        raise TypeError(f"local address host must be a str, got {address!r}")
    if host == "":
        return 0
    if len(address) == 4 or ":" in host:
        return socket.AF_INET6
    return socket.AF_INET


# -- one attempt ----------------------------------------------------------------


class _Attempts:
    """The attempts of one connection, as an async iterator for the race.

    Each address from the resolver becomes one attempt per local address of
    its own family (or one unbound attempt when no local address is given).
    Pairing by family means no attempt is made that is bound to fail: an IPv6
    socket cannot be bound to an IPv4 address. A remote address with no
    local partner is recorded as a failure without creating anything.
    """

    __slots__ = (
        "addresses",
        "connected_at",
        "default_delay",
        "delays",
        "direct_connect",
        "finished",
        "history",
        "live",
        "local_addrs",
        "loop",
        "measured",
        "outlived",
        "pending",
        "remote",
        "skipped",
        "sources",
        "started",
        "unanswered",
        "watched",
    )

    # The race may believe __length_hint__: it counts what is really left
    # (a resolver's hint only when that one is exact too: _items_left).
    _exact_length_hint = True

    # Set in a TLS-aware race (_TLSAttempts): the TLS handshake each attempt
    # also does. A class attribute here, so the plain path stores nothing.
    tls: TLSRace | None = None

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        remote: AsyncIterator[AddrInfo],
        local_addrs: list[tuple[int, tuple[Any, ...]]] | None,
    ) -> None:
        self.loop = loop
        self.remote = remote
        self.local_addrs = local_addrs
        self.direct_connect = _connects_directly(loop)
        # (remote sockaddr, local sockaddr) of attempt i, for error messages.
        self.addresses: list[tuple[tuple[Any, ...], tuple[Any, ...] | None]] = []
        # Sockets created and neither closed nor handed to the caller yet.
        self.live: set[socket.socket] = set()
        # Errors for remote addresses no local address could be paired with.
        self.skipped: list[tuple[tuple[Any, ...], OSError]] = []
        # Further (remote, local) pairs for the current remote address.
        self.pending: list[tuple[AddrInfo, tuple[Any, ...]]] = []
        # What the connection history and the tracer need is kept only when
        # one of them is listening (see _watch), and made only then: the
        # containers cost an IP literal's connection 0.5 % of its
        # instructions when made for every connection.
        self.history: ConnectionHistory | None = None
        self.watched = False

    def _watch(self, history: ConnectionHistory | None, delay: float | None) -> None:
        """Keep what the history (and the tracer) need about each attempt:
        the start of each, the attempts that ended, those still unanswered
        when the next one started, and the delay after each."""
        self.history = history
        self.watched = True
        self.default_delay = (
            defaults.CONNECTION_ATTEMPT_DELAY if delay is None else delay
        )
        self.started: dict[int, float] = {}
        self.finished: set[int] = set()
        self.outlived: set[int] = set()
        self.delays: dict[int, float] = {}
        self.measured: set[int] = set()
        # The history's network key of each attempt, once looked up.
        self.sources: dict[int, str | None] = {}
        self.connected_at: dict[int, float] = {}
        self.unanswered = -1

    def delay_after(self, index: int) -> float:
        """The attempt delay after attempt *index* (RFC 8305 §5): from its
        address's measured RTT when the history has one, else the default."""
        delay = self.default_delay
        history = self.history
        if history is not None and len(history):
            address, local = self.addresses[index]
            source = self.sources[index] = _source_host(address, local)
            measured = (
                None if source is None else history.attempt_delay(source, address[0])
            )
            if measured is not None:
                delay = measured
                # Reported once the attempt has started (see _connect).
                self.measured.add(index)
        self.delays[index] = delay
        return delay

    def _note_outlived(self) -> None:
        """The race asks for the next attempt: if the latest one is still
        running, its delay ran out without an answer (RFC 8305 §5)."""
        latest = len(self.addresses) - 1
        if latest < 0 or latest in self.finished or latest in self.outlived:
            return
        if not self.default_delay:
            return  # delay=0: everything starts at once, nobody waited
        self.outlived.add(latest)
        self.unanswered = latest

    def _announce_unanswered(self) -> None:
        """Tell the tracer that the attempt still unanswered is why the one
        being made now starts."""
        latest, self.unanswered = self.unanswered, -1
        if latest >= 0 and tracing_active():
            emit(
                "attempt_delay_expired",
                index=latest,
                address=self.addresses[latest][0],
                delay=self.delays.get(latest, self.default_delay),
            )

    def __aiter__(self) -> _Attempts:
        return self

    def __length_hint__(self) -> int:
        """Attempts left, as far as is known (PEP 424): the race arms no
        delay timer when nothing is left to start."""
        return len(self.pending) + _items_left(self.remote)

    async def __anext__(self) -> Callable[[], Any]:
        if self.watched:
            self._note_outlived()
        if self.pending:
            info, local = self.pending.pop()
            return self._factory(info, local)
        local_addrs = self.local_addrs
        while True:
            info = await self.remote.__anext__()
            if local_addrs is None:
                return self._factory(info, None)
            family = info[0]
            pairs = [(info, la) for fam, la in local_addrs if fam in (0, family)]
            if pairs:
                pairs.reverse()
                first = pairs.pop()
                self.pending = pairs
                return self._factory(*first)
            skipped = OSError(
                errno.EAFNOSUPPORT,
                f"no local address of family {_family_name(family)}"
                f" to connect to {info[4]!r} from",
            )
            self.skipped.append((info[4], skipped))
            emit("address_skipped", address=info[4], error=skipped)

    def aclose(self) -> Awaitable[None]:
        """Close the resolver's iterator (the race calls this on exit)."""
        aclose = getattr(self.remote, "aclose", None)
        if aclose is None:
            return _nothing()
        # Its own awaitable, not one more coroutine around it: this runs for
        # every connection.
        awaitable: Awaitable[None] = aclose()
        return awaitable

    def _factory(
        self, info: AddrInfo, local: tuple[Any, ...] | None
    ) -> Callable[[], Any]:
        if self.watched:
            self._announce_unanswered()
        index = len(self.addresses)
        self.addresses.append((info[4], local))
        return partial(self._connect, index, info, local)

    async def _connect(
        self, index: int, info: AddrInfo, local: tuple[Any, ...] | None
    ) -> socket.socket | Handshake:
        family, type_, proto, _, address = info
        traced = tracing_active()
        if traced:
            emit("attempt_started", index=index, address=address, local_address=local)
        watched = self.watched
        if watched:
            self.started[index] = self.loop.time()
            if traced and index in self.measured:
                emit(
                    "attempt_delay_from_history",
                    index=index,
                    address=address,
                    delay=self.delays[index],
                )
        live = self.live
        sock = None
        try:
            sock = socket.socket(family, type_, proto)
            live.add(sock)
            sock.setblocking(False)
            if local is not None:
                try:
                    sock.bind(local)
                except OSError as exc:
                    # Say which local address could not be bound, as asyncio
                    # does (the kernel's message names none).
                    raise OSError(
                        exc.errno,
                        f"error while attempting to bind on address {local!r}:"
                        f" {(exc.strerror or str(exc)).lower()}",
                    ) from exc
            if self.direct_connect:
                await _connect_when_writable(self.loop, sock, address)
            else:
                await self.loop.sock_connect(sock, address)
        except asyncio.CancelledError:
            if sock is not None:
                live.discard(sock)
                sock.close()
            if watched:
                self.finished.add(index)
            if traced:
                emit("attempt_cancelled", index=index, address=address)
            raise
        except BaseException as exc:
            if sock is not None:
                live.discard(sock)
                sock.close()
            if watched:
                self.finished.add(index)
            if traced:
                emit("attempt_failed", index=index, address=address, error=exc)
            raise
        if watched:
            self.connected_at[index] = self.loop.time()
            self.finished.add(index)
        if self.tls is not None:
            # The socket is the TLS step's from here on (it hands it to a
            # transport), and the attempt succeeds with its handshake.
            live.discard(sock)
            return await self.tls.handshake(index, sock, address, local)
        if traced:
            emit("attempt_succeeded", index=index, address=address, local_address=local)
        return sock


def _orders_by_history(resolver: Resolver) -> bool:
    """Whether *resolver* is one of ours with options bound
    (``functools.partial(concurrent_resolver, ...)``) that can take the
    connection's history and was not given one of its own."""
    return (
        _typeof(resolver) is partial
        and resolver.func in (concurrent_resolver, basic_resolver)
        and "history" not in resolver.keywords
    )


def _source_host(address: tuple[Any, ...], local: tuple[Any, ...] | None) -> str | None:
    """The local address an attempt to *address* goes out from: the one it
    is bound to, else the one the system would pick (the history's network
    key, RFC 8305 §4)."""
    if local is not None and local[0]:
        return str(local[0])
    family = socket.AF_INET6 if len(address) == 4 else socket.AF_INET
    source = find_source_address(family, address)
    return None if source is None else str(source[0])


def _record_outcomes(
    history: ConnectionHistory,
    attempts: _Attempts,
    exceptions: list[BaseException | None],
    winner_index: int | None,
) -> None:
    """Tell the history how each attempt went (see async_stagger.history)."""
    for index, ((address, local), exc) in enumerate(
        zip(attempts.addresses, exceptions, strict=False)
    ):
        if index == winner_index:
            outcome = "connected"
        elif isinstance(exc, OSError):
            if local is not None and isinstance(exc.__cause__, OSError):
                continue  # the local address could not be bound: not its fault
            outcome = "failed"
        elif winner_index is not None and index in attempts.outlived:
            # Cancelled because another won after its delay ran out.
            outcome = "no answer"
        else:
            continue  # cancelled early: nothing learned
        source = attempts.sources.get(index, "")
        if source == "":
            source = _source_host(address, local)
        if source is None:
            continue
        if outcome == "connected":
            # TCP's connect time: with TLS, the handshake is not the RTT.
            connected = attempts.connected_at.get(index)
            if connected is not None:
                rtt = connected - attempts.started.get(index, connected)
                history.record_success(source, address[0], rtt)
        elif outcome == "failed":
            history.record_failure(source, address[0], "failed")
        else:
            history.record_failure(source, address[0], "no answer")


class _TLSAttempts(_Attempts):
    """The attempts of a TLS-aware race: each does its TLS handshake once
    TCP is connected, and succeeds with it (see ``_tls_attempt``)."""

    __slots__ = ("tls",)

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        remote: AsyncIterator[AddrInfo],
        local_addrs: list[tuple[int, tuple[Any, ...]]] | None,
        tls: TLSRace,
    ) -> None:
        super().__init__(loop, remote, local_addrs)
        self.tls = tls


# asyncio's own sock_connect for selector loops (see _connect_when_writable).
_SELECTOR_SOCK_CONNECT = asyncio.selector_events.BaseSelectorEventLoop.sock_connect


async def _connect_when_writable(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, address: tuple[Any, ...]
) -> None:
    """Connect the non-blocking *sock* to the resolved *address*: what
    ``loop.sock_connect`` does, without what it does first.

    asyncio's selector loops resolve the address again before connecting
    (``_ensure_resolved``: a coroutine, an address parser and two enum
    conversions, all in Python), and uvloop's calls its full
    ``getaddrinfo`` (dropping an IPv6 address's scope id on the way). Our
    addresses come from the resolver, already in ``getaddrinfo`` form; that
    second resolution cost about a tenth of a connection's CPU time on
    asyncio's loop, and more than the rest of the connection on uvloop's.
    The steps that remain are the loops' own: ``connect()``; if it is in
    progress, wait until the socket is writable, then read ``SO_ERROR`` (an
    error raises ``OSError(err, "Connect call failed ...")``, their exception
    and message).
    """
    try:
        sock.connect(address)
        return
    except (BlockingIOError, InterruptedError):
        pass  # in progress: wait until the socket is writable
    fd = sock.fileno()
    writable = loop.create_future()
    loop.add_writer(fd, _set_once, writable)
    try:
        await writable
    finally:
        loop.remove_writer(fd)
    error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if error:
        raise OSError(error, f"Connect call failed {address}")


def _connects_directly(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether attempts on *loop* connect with :func:`_connect_when_writable`:
    when its ``sock_connect`` is asyncio's selector one or uvloop's, its
    class's own. Any other (Windows' proactor, a loop class or a program
    that replaced it) is used as it is."""
    # Not by looking in loop.__dict__: on Python 3.11+ reading an object's
    # __dict__ turns its attribute storage into a real dict for good, and
    # every attribute asyncio reads on the loop afterwards gets slower
    # (measured: +8 % instructions per connection).
    connect = getattr(loop.sock_connect, "__func__", None)
    if connect is _SELECTOR_SOCK_CONNECT:
        return True
    uvloop = sys.modules.get("uvloop.loop")  # imported if this is its loop
    return uvloop is not None and connect is getattr(uvloop.Loop, "sock_connect", 0)


def _set_once(future: asyncio.Future[None]) -> None:
    # A writable socket is reported on every pass of the loop until the
    # waiting coroutine runs and unregisters it.
    if not future.done():
        future.set_result(None)


async def _nothing() -> None:
    pass


def _family_name(family: int) -> str:
    try:
        return socket.AddressFamily(family).name
    except ValueError:
        return str(family)


# -- the connection ---------------------------------------------------------------


def _describe(address: tuple[Any, ...], local: tuple[Any, ...] | None) -> str:
    text = f"{address[0]}:{address[1]}" if len(address) >= 2 else repr(address)
    if ":" in str(address[0]):
        text = f"[{address[0]}]:{address[1]}"
    if local is not None:
        text += f" from {local[0]}:{local[1]}" if len(local) >= 2 else f" {local!r}"
    return text


def _annotate(exc: BaseException, note: str) -> None:
    notes = getattr(exc, "__notes__", None)
    if notes is None or note not in notes:
        exc.add_note(note)


def _failure(
    host: Host,
    port: Port,
    attempts: _Attempts,
    exceptions: list[BaseException | None],
    source_exc: BaseException | None,
    raise_exc_group: bool,
) -> BaseException:
    """The exception to raise when no attempt succeeded."""
    failures: list[tuple[str, BaseException]] = []
    for (address, local), exc in zip(attempts.addresses, exceptions, strict=False):
        if exc is not None:
            failures.append((_describe(address, local), exc))
    for address, exc in attempts.skipped:
        failures.append((_describe(address, None), exc))
    lookup: list[BaseException] = []
    if isinstance(source_exc, BaseExceptionGroup):
        lookup.extend(source_exc.exceptions)
    elif source_exc is not None:
        lookup.append(source_exc)
    # Annotate in place: the note travels with the exception however it is
    # reported, alone, combined or in a group.
    for description, exc in failures:
        _annotate(exc, f"while connecting to {description}")
    for exc in lookup:
        _annotate(exc, f"while resolving {host!r} (port {port!r})")

    if raise_exc_group:
        everything = [exc for _, exc in failures] + lookup
        if not everything:
            everything = [_empty_answer(host, port)]
        return _exception_group(
            f"all connection attempts to {host!r} port {port!r} failed", everything
        )

    if not failures:
        if lookup:
            # RFC 8305 §3: only both families failing is an error; the
            # resolver raises socket.gaierror for that, as asyncio does.
            return source_exc if source_exc is not None else lookup[0]
        return _empty_answer(host, port)
    errors = [exc for _, exc in failures]
    if len(errors) == 1 and not lookup:
        return errors[0]
    model = str(errors[0])
    if not lookup and all(str(exc) == model for exc in errors):
        return errors[0]
    # Like asyncio: one OSError naming every attempt's error, here with the
    # address each belongs to.
    parts = [f"{description}: {exc}" for description, exc in failures]
    parts += [f"lookup of {host!r}: {exc}" for exc in lookup]
    return OSError(f"Multiple exceptions: {'; '.join(parts)}")


def _empty_answer(host: object, port: object) -> OSError:
    # asyncio's words, which async_stagger 0.4 used too, naming the host.
    return OSError(f"getaddrinfo({host!r}, {port!r}) returned empty list")


def _exception_group(message: str, excs: list[BaseException]) -> BaseException:
    if all(isinstance(exc, Exception) for exc in excs):
        return ExceptionGroup(message, excs)  # type: ignore[type-var]
    return BaseExceptionGroup(message, excs)


async def _resolve_local_addr(
    loop: asyncio.AbstractEventLoop,
    local_addr: tuple[Any, ...],
    *,
    family: int,
    proto: int,
    flags: int,
) -> list[tuple[int, tuple[Any, ...]]]:
    """Resolve asyncio's ``local_addr`` (a host/port pair) like asyncio."""
    if not isinstance(local_addr, tuple | list) or len(local_addr) < 2:
        raise TypeError(f"local_addr must be a (host, port) pair, got {local_addr!r}")
    host, port = local_addr[0], local_addr[1]
    check_port(port)
    infos = await loop.getaddrinfo(
        host, port, family=family, type=socket.SOCK_STREAM, proto=proto, flags=flags
    )
    if not infos:
        raise _empty_answer(host, port)
    return [(info[0], info[4]) for info in infos]


async def _collect_local_addrs(
    local_addrs: LocalAddrs,
) -> list[tuple[int, tuple[Any, ...]]]:
    addrs: list[tuple[Any, ...]] = []
    if isinstance(local_addrs, AsyncIterable):
        async for address in local_addrs:
            addrs.append(address)
    elif isinstance(local_addrs, Iterable) and not isinstance(local_addrs, str | bytes):
        addrs.extend(local_addrs)
    else:
        raise TypeError(
            "local_addrs must be an iterable or async iterable of resolved"
            f" address tuples, got {local_addrs!r}"
        )
    return [(_local_family(address), tuple(address)) for address in addrs]


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
    chosen_delay = _check_connection_keywords(
        host, port, family, proto, flags, local_addr, happy_eyeballs_delay,
        interleave, delay, resolver,
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    sock: socket.socket = await _create_connection(
        loop, None, host, port, family, proto, flags, None, local_addrs,
        local_addr, chosen_delay, resolver, raise_exc_group or all_errors,
        interleave, None, trace, nat64, False, history,
    )  # fmt: skip
    # What asyncio gives the sockets of its transports (which set it
    # themselves on the sockets create_connection hands them).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _prepare(
    loop: object,
    host: Host,
    port: Port,
    ssl: SSLArg,
    family: int,
    proto: int,
    flags: int,
    sock: socket.socket | None,
    local_addr: tuple[Any, ...] | None,
    server_hostname: str | None,
    ssl_handshake_timeout: float | None,
    ssl_shutdown_timeout: float | None,
    happy_eyeballs_delay: Delay,
    interleave: int | None,
    delay: Delay,
    resolver: Resolver,
) -> tuple[asyncio.AbstractEventLoop, dict[str, Any] | None, float | None]:
    """Check ``create_connection``'s arguments as asyncio does, before any
    network activity; return the loop, the TLS keywords and the delay."""
    if (
        # The commonest call, a host and a port, checked in a few
        # comparisons; anything else goes through the full checks.
        _typeof(host) is str
        and host
        and "\0" not in host
        and _typeof(port) is int
        and 0 <= port <= 65535
        and resolver is concurrent_resolver
        and _typeof(family) is _typeof(proto) is _typeof(flags) is int
        and delay is NOT_GIVEN
        and happy_eyeballs_delay is NOT_GIVEN
        and (
            loop,
            ssl,
            sock,
            local_addr,
            server_hostname,
            ssl_handshake_timeout,
            ssl_shutdown_timeout,
            interleave,
        )
        == _ALL_NONE
    ):
        return asyncio.get_running_loop(), None, defaults.CONNECTION_ATTEMPT_DELAY
    running = _check_loop(loop)
    tls: dict[str, Any] | None = None
    if ssl is not None and ssl is not False:
        _check_ssl(ssl)
        if server_hostname is None:
            # asyncio's default: check the certificate against the host name.
            if not host:
                raise ValueError(
                    "You must set server_hostname when using ssl without a host"
                )
            server_hostname = host.decode() if isinstance(host, bytes) else host
        tls = {"ssl": ssl, "server_hostname": server_hostname}
        if ssl_handshake_timeout is not None:
            tls["ssl_handshake_timeout"] = ssl_handshake_timeout
        if ssl_shutdown_timeout is not None:
            tls["ssl_shutdown_timeout"] = ssl_shutdown_timeout
    else:
        # asyncio's rules, with asyncio's exception types.
        if server_hostname is not None:
            raise ValueError("server_hostname is only meaningful with ssl")
        if ssl_handshake_timeout is not None:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
    if sock is not None:
        _check_sock(sock, host=host, port=port)
        return running, tls, 0.0
    if host is None and port is None:
        raise ValueError("host and port was not specified and no sock specified")
    chosen_delay = _check_connection_keywords(
        host, port, family, proto, flags, local_addr, happy_eyeballs_delay,
        interleave, delay, resolver,
    )  # fmt: skip
    return running, tls, chosen_delay


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
    if not callable(protocol_factory):
        raise TypeError(f"protocol_factory must be callable, got {protocol_factory!r}")
    if race_tls is not True:
        _check_race_tls(race_tls)
    running, tls, chosen_delay = _prepare(
        loop, host, port, ssl, family, proto, flags, sock,
        local_addr, server_hostname, ssl_handshake_timeout, ssl_shutdown_timeout,
        happy_eyeballs_delay, interleave, delay, resolver,
    )  # fmt: skip
    result: tuple[asyncio.BaseTransport, asyncio.BaseProtocol]
    result = await _create_connection(
        running, protocol_factory, host, port, family, proto, flags, sock,
        local_addrs, local_addr, chosen_delay, resolver,
        raise_exc_group or all_errors, interleave, tls, trace, nat64, race_tls, history,
    )  # fmt: skip
    return result


async def _create_connection(
    loop: asyncio.AbstractEventLoop,
    protocol_factory: Callable[[], asyncio.BaseProtocol] | None,
    host: Host,
    port: Port,
    family: int,
    proto: int,
    flags: int,
    sock: socket.socket | None,
    local_addrs: LocalAddrs | None,
    local_addr: tuple[Any, ...] | None,
    delay: float | None,
    resolver: Resolver,
    raise_exc_group: bool,
    first_addr_family_count: int | None,
    tls: dict[str, Any] | None,
    trace: TraceCallback | None,
    nat64: Nat64Setting = True,
    race_tls: bool = False,
    history: ConnectionHistory | HistoryOption | None = SHARED,
) -> Any:
    """Race connection attempts to *host* and *port*. Without a
    *protocol_factory*, return the winning socket; with one, return the
    loop's ``(transport, protocol)`` for it (TLS too, with *tls*: raced
    when *race_tls*, else on the winner only). Events go to *trace*, if
    given.

    One coroutine for all three public functions: every coroutine between
    the caller and the socket's ``connect`` is paid for again each time the
    connection waits.
    """
    if nat64 is not True:
        nat64 = check_setting(nat64)
    if trace is not None or (
        # The "async_stagger" logger gets the events when it is enabled for
        # DEBUG: one check per connection when it is not.
        LOGGER.isEnabledFor(logging.DEBUG) and not tracing_active()
    ):
        # Connect as an untraced call would, inside the tracing block.
        with tracing(_logged(trace) if LOGGER.isEnabledFor(logging.DEBUG) else trace):
            return await _create_connection(
                loop, protocol_factory, host, port, family, proto, flags, sock,
                local_addrs, local_addr, delay, resolver, raise_exc_group,
                first_addr_family_count, tls, None, nat64, race_tls, history,
            )  # fmt: skip
    if sock is not None:
        # No Happy Eyeballs to do: the loop takes the socket as it is.
        assert protocol_factory is not None
        if tls is None:
            return await loop.create_connection(protocol_factory, sock=sock)
        return await loop.create_connection(protocol_factory, sock=sock, **tls)
    used_history: ConnectionHistory | None = None
    if history is SHARED:
        used_history = _history._shared
    elif history is not None:
        used_history = resolve_history_option(history)
    try:
        locals_: list[tuple[int, tuple[Any, ...]]] | None = None
        if local_addrs is not None or local_addr is not None:
            if local_addrs is not None:
                locals_ = await _collect_local_addrs(local_addrs)
            if local_addr is not None:
                resolved = await _resolve_local_addr(
                    loop, local_addr, family=family, proto=proto, flags=flags
                )
                locals_ = resolved if locals_ is None else locals_ + resolved
            if not locals_:
                raise ValueError("local_addrs is empty: no local address to bind to")

        if resolver is concurrent_resolver:
            # The default resolver, past its own argument checks: ours have
            # checked the same values (going through its public signature
            # costs 1.6 % of a literal connection's instructions).
            if first_addr_family_count is None:
                remote = _resolve_checked(
                    host, port, family, _SOCK_STREAM, proto, flags,
                    raise_exc_group=raise_exc_group,
                    nat64=nat64,
                    history=used_history,
                )  # fmt: skip
            else:
                remote = _resolve_checked(
                    host, port, family, _SOCK_STREAM, proto, flags,
                    first_addr_family_count=first_addr_family_count,
                    raise_exc_group=raise_exc_group,
                    # asyncio's interleave=0: the order as getaddrinfo gave
                    # it, neither sorted nor interleaved.
                    sorter=_sort_addresses if first_addr_family_count else None,
                    nat64=nat64,
                    history=used_history,
                )  # fmt: skip
        else:
            # The keywords of the 0.4 resolver contract, and of the others
            # only those asked for and declared by the resolver, so custom
            # resolvers written for async_stagger 0.4 keep working.
            options: dict[str, Any] = {}
            if first_addr_family_count or raise_exc_group or nat64 is not True:
                taken = extra_keywords_taken(resolver)
                if first_addr_family_count and "first_addr_family_count" in taken:
                    options["first_addr_family_count"] = first_addr_family_count
                if raise_exc_group and "raise_exc_group" in taken:
                    options["raise_exc_group"] = True
                if nat64 is not True and "nat64" in taken:
                    options["nat64"] = nat64
            if used_history is not None and _orders_by_history(resolver):
                options["history"] = used_history
            remote = resolver(
                host,
                port,
                family=family,
                type=_SOCK_STREAM,
                proto=proto,
                flags=flags,
                **options,
            )
        tls_race = None
        if tls is None or not race_tls:
            attempts = _Attempts(loop, remote, locals_)
        else:
            tls_race = TLSRace(loop, tls)
            attempts = _TLSAttempts(loop, remote, locals_, tls_race)
        winner: Any = None
        delay_for = None
        # An IP literal has one address: nothing to order or time, and not
        # worth recording (it would cost every literal connection).
        if _typeof(remote) is not _DirectAnswer:
            if used_history is not None:
                attempts._watch(used_history, delay)
                if delay is defaults.CONNECTION_ATTEMPT_DELAY:
                    # No delay was given (this very object is the default):
                    # the history may time each attempt (RFC 8305 §5). A
                    # delay the caller chose is used as given.
                    delay_for = attempts.delay_after
            elif tracing_active():
                attempts._watch(None, delay)
        try:
            winner, winner_index, exceptions, source_exc = await _race_on_loop(
                loop, attempts, delay, delay_for
            )
            if attempts.history is not None:
                _record_outcomes(attempts.history, attempts, exceptions, winner_index)
        finally:
            # The race closes its losers; this also catches a winner the race
            # dropped because we were cancelled just as it won. (In a TLS
            # race no socket is left here: each is a transport's by now.)
            live = attempts.live
            if len(live) > 1 or winner is None:
                for sock in live:
                    if sock is not winner:
                        sock.close()
            if tls_race is not None:
                tls_race.abort_all_but(winner)
        if winner is None:
            raise _failure(
                host, port, attempts, exceptions, source_exc, raise_exc_group
            )
    except BaseException as exc:
        emit("connection_failed", error=exc)
        raise
    if protocol_factory is None:
        return winner
    if tls_race is not None:
        try:
            return await tls_race.hand_over(winner, protocol_factory)
        except BaseException as exc:
            emit("connection_failed", error=exc)
            raise
    if tls is None:
        try:
            return await loop.create_connection(protocol_factory, sock=winner)
        except BaseException as exc:
            _let_go_of_handed_over(loop, winner)
            emit("connection_failed", error=exc)
            raise
    # race_tls=False: as RFC 8305 §5 (and asyncio) have it, the TCP race
    # picked the winner, TLS runs on the winner only.
    peer = _peer(winner)
    emit("tls_started", address=peer)
    try:
        transport, protocol = await loop.create_connection(
            protocol_factory, sock=winner, **tls
        )
    except BaseException as exc:
        _let_go_of_handed_over(loop, winner)
        emit("tls_failed", address=peer, error=exc)
        emit("connection_failed", error=exc)
        raise
    emit("tls_succeeded", address=peer)
    return transport, protocol


def _let_go_of_handed_over(
    loop: asyncio.AbstractEventLoop, sock: socket.socket
) -> None:
    """Clean up after ``loop.create_connection(sock=sock)`` failed or was
    cancelled.

    The rule: once a socket has been handed to a transport, only the
    transport closes it (we abort the transport); we close the socket
    ourselves only while no transport exists. A cancellation just after a
    TLS handshake makes asyncio's ``create_connection`` call ``close()`` on
    its SSL transport, which starts a TLS shutdown (up to
    ``ssl_shutdown_timeout``, 30 s) with the socket still registered on the
    loop; closing the socket under it freed its descriptor number, and the
    next socket given that number failed with "File descriptor N is used by
    transport". Aborting ends that transport at once and lets it close its
    own socket.
    """
    if sock.fileno() == -1:
        return  # the transport has closed it already
    # asyncio's selector loops keep every live transport by descriptor
    # (``_transports``, which their ``add_reader`` checks); another loop
    # (uvloop, the proactor) has no such table and, when its
    # create_connection fails, leaves the socket to the caller.
    transports = getattr(loop, "_transports", None)
    transport = transports.get(sock.fileno()) if transports is not None else None
    if transport is not None and getattr(transport, "_sock", None) is sock:
        transport.abort()  # it closes the socket itself, in its next step
    else:
        sock.close()


def _peer(sock: socket.socket) -> tuple[Any, ...] | None:
    try:
        peer = sock.getpeername()
    except OSError:
        return None
    return peer if isinstance(peer, tuple) else None


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
    if type(limit) is not int or limit <= 0:
        _check_int("limit", limit)
        raise ValueError(f"limit must be positive, got {limit!r}")
    if race_tls is not True:
        _check_race_tls(race_tls)
    running, tls, chosen_delay = _prepare(
        loop, host, port, ssl, family, proto, flags, sock,
        local_addr, server_hostname, ssl_handshake_timeout, ssl_shutdown_timeout,
        happy_eyeballs_delay, interleave, delay, resolver,
    )  # fmt: skip
    reader = asyncio.StreamReader(limit=limit, loop=running)
    protocol = asyncio.StreamReaderProtocol(reader, loop=running)
    transport, _ = await _create_connection(
        running, lambda: protocol, host, port, family, proto, flags, sock,
        local_addrs, local_addr, chosen_delay, resolver,
        raise_exc_group or all_errors, interleave, tls, trace, nat64, race_tls, history,
    )  # fmt: skip
    writer = asyncio.StreamWriter(transport, protocol, reader, running)
    return reader, writer
