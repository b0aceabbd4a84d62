"""Happy Eyeballs to addresses that are already resolved.

A program that resolved the host name itself (from its own DNS cache, a
service registry, a configuration file) has a list of ``getaddrinfo``
5-tuples and wants the race, not another lookup. :func:`start_connection`
takes exactly that list, with the signature and the meaning of
``aiohappyeyeballs.start_connection``, so code written for it can switch by
changing one import; it also orders the addresses by RFC 6724 first, unless
told not to (``sort=False``).

What it does with the list, in order:

1. Sort by RFC 6724 §6 (:func:`async_stagger.address_order.sort_addresses`).
   A list from ``getaddrinfo`` is usually sorted already; a list put
   together by hand, or from a cache that merged two lookups, is not.
2. Interleave by family (RFC 8305 §4) when *interleave* is given, or when
   *happy_eyeballs_delay* is (then with a First Address Family Count of 1).
3. Without *happy_eyeballs_delay*, try the addresses one after another, each
   when the previous one failed; with it, race them: the next attempt starts
   that many seconds after the previous one, or at once when it fails (RFC
   8305 §5). The first socket connected wins; the others are closed.

Errors are reported as ``aiohappyeyeballs`` reports them: the one error if
there was one, or if all read alike; otherwise an :class:`OSError` listing
every message (with their errno, if they share one).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeAlias

from ._checks import check_delay, check_interleave
from .address_order import interleave as interleave_by_family
from .address_order import sort_addresses
from .race import staggered_race
from .trace import TraceCallback, emit, tracing, tracing_active

__all__ = ["AddrInfoType", "SocketFactoryType", "start_connection"]

#: A ``getaddrinfo`` 5-tuple ``(family, type, proto, canonname, sockaddr)``.
AddrInfoType: TypeAlias = tuple[
    socket.AddressFamily | int, socket.SocketKind | int, int, str, tuple[Any, ...]
]
#: Makes the socket for one address: called with its 5-tuple.
SocketFactoryType: TypeAlias = Callable[[AddrInfoType], socket.socket]

# An attempt's errors; uvloop raises RuntimeError where asyncio raises OSError.
_Errors: TypeAlias = list[OSError | RuntimeError]


async def start_connection(
    addr_infos: Sequence[AddrInfoType],
    *,
    local_addr_infos: Sequence[AddrInfoType] | None = None,
    happy_eyeballs_delay: float | None = None,
    interleave: int | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
    socket_factory: SocketFactoryType | None = None,
    sort: bool = True,
    trace: TraceCallback | None = None,
) -> socket.socket:
    """Connect to one of *addr_infos*, already resolved; return the socket.

    A drop-in for ``aiohappyeyeballs.start_connection``, with the addresses
    sorted by RFC 6724 first (unless *sort* is false). Hand the socket to
    ``loop.create_connection(..., sock=sock)`` for a transport.

    Args:
        addr_infos: ``getaddrinfo`` 5-tuples to connect to, best first.
        local_addr_infos: ``getaddrinfo`` 5-tuples to bind to: each attempt
            binds to the first of its own family that it can bind.
        happy_eyeballs_delay: The Connection Attempt Delay in seconds (RFC
            8305 §5); ``None`` tries one address after the other.
        interleave: The First Address Family Count (RFC 8305 §4); ``None``
            means 1 with *happy_eyeballs_delay* and no interleaving without
            it; 0 never interleaves.
        loop: The event loop; defaults to the running one.
        socket_factory: Makes the socket for an address (called with its
            5-tuple); defaults to ``socket.socket(family, type, proto)``.
        sort: Order *addr_infos* by RFC 6724 §6 first; false keeps the
            order given.
        trace: Called with a :class:`~async_stagger.TraceEvent` per attempt
            started, failed, cancelled or won.

    Returns:
        A connected, non-blocking socket. The caller owns it.

    Raises:
        ValueError: *addr_infos* is empty, or a delay or count is negative.
        TypeError: *happy_eyeballs_delay* or *interleave* is not a number.
        OSError: Every attempt failed: the single error when there was one
            or all read alike, else one listing them all
            (``"Multiple exceptions: ..."``), with their common errno.
        RuntimeError: Every attempt failed with a RuntimeError (uvloop).

    .. versionadded:: 1.0
    """
    if not addr_infos:
        raise ValueError("addr_infos must not be empty")
    delay = check_delay("happy_eyeballs_delay", happy_eyeballs_delay)
    count = check_interleave(interleave)
    running = asyncio.get_running_loop() if loop is None else loop
    infos: list[Any] = list(addr_infos)
    if len(infos) > 1:
        if sort:
            infos = sort_addresses(infos)
        if delay is not None and count is None:
            count = 1  # Happy Eyeballs interleaves: RFC 8305 §4
        if count:
            infos = interleave_by_family(infos, count)
    if trace is not None:
        with tracing(trace):
            return await _race(running, infos, local_addr_infos, delay, socket_factory)
    return await _race(running, infos, local_addr_infos, delay, socket_factory)


async def _race(
    loop: asyncio.AbstractEventLoop,
    infos: list[AddrInfoType],
    local_infos: Sequence[AddrInfoType] | None,
    delay: float | None,
    factory: SocketFactoryType | None,
) -> socket.socket:
    errors: list[_Errors] = []
    live: set[socket.socket] = set()
    winner: socket.socket | None = None
    try:
        winner, _, outcomes, _ = await staggered_race(
            (
                partial(_attempt, loop, index, info, local_infos, factory, live, errors)
                for index, info in enumerate(infos)
            ),
            delay,
        )
    finally:
        # The race closes what its losers opened; a socket that connected
        # just as another won, or a winner dropped because we were cancelled,
        # is still here.
        for sock in live:
            if sock is not winner:
                sock.close()
    if winner is None:
        failures = [error for attempt in errors for error in attempt]
        if failures:
            raise _failure(failures)
        # No OSError at all: an attempt failed in the socket factory, say.
        raise next(exc for exc in reversed(outcomes) if exc is not None)
    return winner


async def _attempt(
    loop: asyncio.AbstractEventLoop,
    index: int,
    info: AddrInfoType,
    local_infos: Sequence[AddrInfoType] | None,
    socket_factory: SocketFactoryType | None,
    live: set[socket.socket],
    errors: list[_Errors],
) -> socket.socket:
    mine: _Errors = []
    errors.append(mine)
    family, type_, proto, _, address = info
    traced = tracing_active()
    if traced:
        emit("attempt_started", index=index, address=address)
    sock = None
    try:
        if socket_factory is None:
            sock = socket.socket(family, type_, proto)
        else:
            sock = socket_factory(info)
        live.add(sock)
        sock.setblocking(False)
        if local_infos is not None:
            _bind(sock, family, local_infos, mine)
        await loop.sock_connect(sock, address)
    except BaseException as exc:
        if isinstance(exc, OSError | RuntimeError):
            mine.append(exc)
        if sock is not None:
            live.discard(sock)
            sock.close()
        if traced:
            if isinstance(exc, asyncio.CancelledError):
                emit("attempt_cancelled", index=index, address=address)
            else:
                emit("attempt_failed", index=index, address=address, error=exc)
        raise
    if traced:
        emit("attempt_succeeded", index=index, address=address)
    return sock


def _bind(
    sock: socket.socket,
    family: int,
    local_infos: Sequence[AddrInfoType],
    errors: _Errors,
) -> None:
    """Bind to the first local address of *family* that binds."""
    for local_family, _, _, _, local in local_infos:
        if local_family != family:
            continue
        try:
            sock.bind(local)
            return
        except OSError as exc:
            # Name the address: the kernel's message does not.
            errors.append(
                OSError(
                    exc.errno,
                    f"error while attempting to bind on address {local!r}:"
                    f" {(exc.strerror or '').lower()}",
                )
            )
    if errors:
        raise errors.pop()
    raise OSError(f"no matching local address with family={family!r} found")


def _failure(errors: _Errors) -> BaseException:
    """The one exception to raise when every attempt failed."""
    first = errors[0]
    if len(errors) == 1 or all(str(error) == str(first) for error in errors):
        return first
    message = "Multiple exceptions: " + ", ".join(str(error) for error in errors)
    if isinstance(first, OSError):
        if all(isinstance(e, OSError) and e.errno == first.errno for e in errors):
            return OSError(first.errno, message)
    elif all(isinstance(error, RuntimeError) for error in errors):
        return RuntimeError(message)
    return OSError(message)
