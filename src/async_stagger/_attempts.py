"""One attempt per (remote, local) address pair of the same family; every
socket an attempt creates is closed unless it is handed over.

The race (:func:`~async_stagger.race._race_on_loop`) pulls attempts from
:class:`_Attempts`, an async iterator over the resolver's addresses; each
attempt creates a socket, binds it when a local address is given, and
connects it (:func:`_connect_when_writable` where the loop allows, see
:mod:`async_stagger._loop_abilities`). In a TLS-aware race
(:class:`_TLSAttempts`) an attempt also does its TLS handshake. What the
history learns from the attempts is recorded here too
(:func:`_record_outcomes`).
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Sequence,
)
from functools import partial
from typing import TYPE_CHECKING, Any

from . import defaults
from ._answers import _host_text
from ._describe import family_constant_name
from ._failure import empty_answer
from ._loop_abilities import connects_directly
from ._tls_attempt import Handshake, TLSRace
from .address_order import find_source_address
from .history import ConnectionHistory
from .race import _items_left
from .trace import emit, tracing_active

if TYPE_CHECKING:
    from ._types import AddrInfo
    from .connection import LocalAddrs


def _local_family(address: tuple[Any, ...]) -> int:
    """The family a resolved local address belongs to (0: fits either)."""
    if not isinstance(address, tuple) or not 2 <= len(address) <= 4:
        raise TypeError(
            "local addresses must be resolved socket address tuples such as"
            f" ('192.0.2.1', 0) or ('2001:db8::1', 0, 0, 0), got {address!r}"
        )
    host = _host_text(address[0])
    if not isinstance(host, str):
        raise TypeError(f"local address host must be a str, got {address!r}")
    if host == "":
        return 0
    if len(address) == 4 or ":" in host:
        return socket.AF_INET6
    return socket.AF_INET


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
        "connect_times",
        "default_delay",
        "delays",
        "direct_connect",
        "history",
        "latest_finished",
        "live",
        "local_addrs",
        "loop",
        "outlived",
        "pending",
        "remote",
        "skipped",
        "sources",
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
        self.direct_connect = connects_directly(loop)
        # (remote sockaddr, local sockaddr) of attempt i, for error messages.
        self.addresses: list[tuple[tuple[Any, ...], tuple[Any, ...] | None]] = []
        # Sockets connected and not handed to the caller yet: the winner, and
        # one that connected after another had won (an attempt that fails
        # closes its own). Held from the connect on, not from the socket's
        # creation: nothing is held while attempts are in flight.
        self.live: tuple[socket.socket, ...] = ()
        # Errors for remote addresses no local address could be paired with,
        # and further (remote, local) pairs for the current remote address:
        # a list only once there is one (the empty tuple is shared).
        self.skipped: Sequence[tuple[tuple[Any, ...], OSError]] = ()
        self.pending: Sequence[tuple[AddrInfo, tuple[Any, ...]]] = ()
        # What the connection history and the tracer need is kept only when
        # one of them is listening (see _watch), and made only then: the
        # containers cost an IP literal's connection 0.5 % of its
        # instructions when made for every connection.
        self.history: ConnectionHistory | None = None
        self.watched = False

    def _watch(self, history: ConnectionHistory | None, delay: float | None) -> None:
        """Keep what the history (and the tracer) need about each attempt:
        how long its connect took, whether the latest one has ended, those
        still unanswered when the next one started, and the delay after
        each (an attempt keeps its own start time while it runs)."""
        self.history = history
        self.watched = True
        self.default_delay = (
            defaults.CONNECTION_ATTEMPT_DELAY if delay is None else delay
        )
        # Each made at its first entry (None until then): while attempts are
        # in flight they are mostly empty, and even an empty dict takes 64
        # bytes. The attempts whose delay ran out unanswered, in the order
        # of their indexes (a list: 88 bytes with one, a dict 224, 3.13):
        self.outlived: list[int] | None = None
        # By attempt index: the delay after an attempt, where the history
        # measured it (the others had the default delay):
        self.delays: dict[int, float] | None = None
        # The history's network key of each attempt, once looked up:
        self.sources: dict[int, str | None] | None = None
        # How long TCP's connect took (the history's RTT), for those that
        # connected:
        self.connect_times: dict[int, float] | None = None
        # The highest index of an attempt that ended: the latest one has
        # ended when it is this one (only the latest is ever asked about).
        self.latest_finished = -1
        self.unanswered = -1

    def delay_after(self, index: int) -> float:
        """The attempt delay after attempt *index* (RFC 8305 §5): from its
        address's measured RTT when the history has one, else the default."""
        delay = self.default_delay
        history = self.history
        # (The history's table read as len(history) reads it, without the
        # call: ~0.6k instructions per attempt, 3.11.)
        if history is not None and history._entries:
            address, local = self.addresses[index]
            # The source is kept even when the history knows nothing of the
            # address: what is recorded for the attempt is keyed by the
            # source it went out from when it started.
            source = _source_host(address, local)
            if self.sources is None:
                self.sources = {}
            self.sources[index] = source
            # An address with no entry from any source has no RTT to time
            # the attempt by (ConnectionHistory.knows_any): the lookup is
            # not made (delay_after 7.5k to 4.9k instructions for an address
            # the history does not know, 3.11; nothing else changes, as the
            # lookup of a key that is not there changes nothing).
            measured = (
                None
                if source is None or address[0] not in history._destinations
                else history.attempt_delay(source, address[0])
            )
            if measured is not None:
                delay = measured
                # Reported once the attempt has started (see _connect).
                if self.delays is None:
                    self.delays = {}
                self.delays[index] = delay
        return delay

    def _note_outlived(self) -> None:
        """The race asks for the next attempt: if the latest one is still
        running, its delay ran out without an answer (RFC 8305 §5)."""
        latest = len(self.addresses) - 1
        outlived = self.outlived
        if (
            latest < 0
            or latest <= self.latest_finished
            or (outlived is not None and outlived[-1] == latest)
        ):
            return
        if not self.default_delay:
            return  # delay=0: everything starts at once, nobody waited
        if outlived is None:
            outlived = self.outlived = []
        outlived.append(latest)
        self.unanswered = latest

    def _announce_unanswered(self) -> None:
        """Tell the tracer that the attempt still unanswered is why the one
        being made now starts."""
        latest, self.unanswered = self.unanswered, -1
        if latest >= 0 and tracing_active():
            delays = self.delays
            emit(
                "attempt_delay_expired",
                index=latest,
                address=self.addresses[latest][0],
                delay=self.default_delay
                if delays is None
                else delays.get(latest, self.default_delay),
            )

    def __aiter__(self) -> _Attempts:
        return self

    def __length_hint__(self) -> int:
        """Attempts left, as far as is known (PEP 424): the race arms no
        delay timer when nothing is left to start (measured: 5 % of an IP
        literal connection's instructions)."""
        return len(self.pending) + _items_left(self.remote)

    async def __anext__(self) -> Callable[[], Any]:
        # The two bookkeeping calls are made only when they have something
        # to do: no attempt yet to have outlived its delay, none unanswered
        # to announce (with the record's lock taken by hand, 4.6k of the
        # count of a connection to a name with the history on, 3.11; the
        # lock is ~1.0k of it).
        if self.watched and self.addresses:
            self._note_outlived()
        pending = self.pending
        if pending:
            assert isinstance(pending, list)
            info, local = pending.pop()
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
                f"no local address of family {family_constant_name(family)}"
                f" to connect to {info[4]!r} from",
            )
            if not isinstance(self.skipped, list):
                self.skipped = []
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
        if self.watched and self.unanswered >= 0:
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
        started = 0.0
        if watched:
            started = self.loop.time()
            delays = self.delays
            if traced and delays is not None and index in delays:
                emit(
                    "attempt_delay_from_history",
                    index=index,
                    address=address,
                    delay=delays[index],
                )
        sock = None
        try:
            sock = socket.socket(family, type_, proto)
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
                # Waited for here, not in a coroutine of its own: every
                # attempt in flight holds one coroutine less (264 bytes on
                # 3.11, 256 on 3.13, benchmarks/memory.py).
                fd = sock.fileno()
                writable = _connect_when_writable(self.loop, sock, fd, address)
                if writable is not None:
                    try:
                        await writable
                    finally:
                        self.loop.remove_writer(fd)
                    _check_connected(sock, address)
            else:
                await self.loop.sock_connect(sock, address)
        except BaseException as exc:
            if sock is not None:
                sock.close()
            if watched and index > self.latest_finished:
                self.latest_finished = index
            if traced and isinstance(exc, asyncio.CancelledError):
                emit("attempt_cancelled", index=index, address=address)
            elif traced:
                emit("attempt_failed", index=index, address=address, error=exc)
            raise
        if watched:
            if self.connect_times is None:
                self.connect_times = {}
            self.connect_times[index] = self.loop.time() - started
            if index > self.latest_finished:
                self.latest_finished = index
        if self.tls is not None:
            # The socket is the TLS step's from here on (it hands it to a
            # transport), and the attempt succeeds with its handshake.
            return await self.tls.handshake(index, sock, address, local)
        self.live = (*self.live, sock)
        if traced:
            emit("attempt_succeeded", index=index, address=address, local_address=local)
        return sock


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
    # The attributes read once, the index counted by hand, the set of
    # outlived attempts made only when a cancelled attempt asks (no
    # enumerate, no keyword to zip, no set for the usual winner alone):
    # 6.9k to 4.5k instructions around a connection's one record, 3.11.
    sources = attempts.sources
    outlived = attempts.outlived
    outlived_set: set[int] | None = None
    index = -1
    for (address, local), exc in zip(attempts.addresses, exceptions):  # noqa: B905
        index += 1
        if index == winner_index:
            outcome = "connected"
        elif isinstance(exc, OSError):
            if local is not None and isinstance(exc.__cause__, OSError):
                continue  # the local address could not be bound: not its fault
            outcome = "failed"
        elif winner_index is not None and outlived is not None:
            if outlived_set is None:
                outlived_set = set(outlived)
            if index not in outlived_set:
                continue  # cancelled early: nothing learned
            # Cancelled because another won after its delay ran out.
            outcome = "no answer"
        else:
            continue  # cancelled early: nothing learned
        source = "" if sources is None else sources.get(index, "")
        if source == "":
            source = _source_host(address, local)
        if source is None:
            continue
        if outcome == "connected":
            # TCP's connect time: with TLS, the handshake is not the RTT.
            times = attempts.connect_times
            rtt = None if times is None else times.get(index)
            if rtt is not None:
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


def _connect_when_writable(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    fd: int,
    address: tuple[Any, ...],
) -> asyncio.Future[None] | None:
    """Start connecting the non-blocking *sock* (file descriptor *fd*) to
    the resolved *address*: what ``loop.sock_connect`` does, without what it
    does first. Returns ``None`` once connected, or, while the connection is
    in progress, a future that is done when the socket is writable: the
    caller awaits it, removes the writer of *fd* however the wait ends, and
    then asks :func:`_check_connected`.

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
    # connect_ex, not connect: an error code, not a BlockingIOError, for
    # "in progress". The exception's traceback would make the attempt's
    # frame an object, kept for as long as the connect waits (240 bytes per
    # attempt in flight, 3.13); an error is raised as connect() raises it.
    error = sock.connect_ex(address)
    if error == 0:
        return None
    if error not in _IN_PROGRESS:
        raise OSError(error, os.strerror(error))
    writable = loop.create_future()
    loop.add_writer(fd, _set_once, writable)
    return writable


def _check_connected(sock: socket.socket, address: tuple[Any, ...]) -> None:
    """Raise the error of *sock*'s finished connect to *address*, if any."""
    error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if error:
        raise OSError(error, f"Connect call failed {address}")


# What connect() raises BlockingIOError or InterruptedError for: the
# connection goes on in the background.
_IN_PROGRESS = frozenset(
    {errno.EINPROGRESS, errno.EAGAIN, errno.EALREADY, errno.EWOULDBLOCK, errno.EINTR}
)


def _set_once(future: asyncio.Future[None]) -> None:
    # A writable socket is reported on every pass of the loop until the
    # waiting coroutine runs and unregisters it.
    if not future.done():
        future.set_result(None)


async def _nothing() -> None:
    pass


async def _resolve_local_addr(
    loop: asyncio.AbstractEventLoop,
    local_addr: tuple[Any, ...],
    *,
    family: int,
    proto: int,
    flags: int,
) -> list[tuple[int, tuple[Any, ...]]]:
    """Resolve asyncio's ``local_addr`` (a host/port pair, checked by
    ``_plan.check_local_addr``) like asyncio."""
    host, port = local_addr[0], local_addr[1]
    infos = await loop.getaddrinfo(
        host, port, family=family, type=socket.SOCK_STREAM, proto=proto, flags=flags
    )
    if not infos:
        raise empty_answer(host, port)
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
