"""A connection's arguments, checked once at the public boundary, travel as one plan.

The public functions of :mod:`async_stagger.connection` check their
arguments with the checks below (asyncio's rules and exception types, before
any network activity) and build one :class:`ConnectionPlan`; the machinery
that makes the connection (:mod:`async_stagger._make_connection`) reads it
and checks nothing again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl as _ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from ._checks import check_interleave, check_port
from ._resolver_keywords import extra_keywords_taken
from .resolvers import concurrent_resolver

if TYPE_CHECKING:
    from ._types import Host, Port
    from .connection import LocalAddrs, Resolver
    from .history import ConnectionHistory, HistoryOption
    from .trace import TraceCallback


class ConnectionPlan(NamedTuple):
    """What one connection is to do, as the caller asked for it."""

    #: The running loop.
    loop: asyncio.AbstractEventLoop
    host: Host
    port: Port
    family: int
    proto: int
    flags: int
    #: A connected socket to hand to the loop as it is (no Happy Eyeballs).
    sock: socket.socket | None
    #: asyncio's local address, a (host, port) pair still to resolve.
    local_addr: tuple[Any, ...] | None
    #: Already-resolved local addresses.
    local_addrs: LocalAddrs | None
    #: The Connection Attempt Delay (RFC 8305 §5); ``None``: one at a time.
    delay: float | None
    #: Whether the caller chose the delay: if not, the history may time
    #: each attempt (RFC 8305 §5).
    delay_given: bool
    resolver: Resolver
    #: The First Address Family Count asked for (asyncio's *interleave*).
    first_addr_family_count: int | None
    #: *raise_exc_group* or asyncio's *all_errors*.
    raise_exc_group: bool
    #: The TLS keywords of ``loop.create_connection``, or ``None`` for TCP.
    tls: dict[str, Any] | None
    #: With *tls*: each attempt's handshake is part of the race.
    race_tls: bool
    trace: TraceCallback | None
    #: ``True``, ``False`` or the NAT64 prefixes (checked).
    nat64: bool | tuple[ipaddress.IPv6Network, ...]
    #: As given; resolved when the connection is made (not for *sock*).
    history: ConnectionHistory | HistoryOption | None


# NamedTuple's own __new__ is a Python function of 19 parameters; building
# the tuple at once spares an IP literal connection 0.5 % of its
# instructions. Called as new_plan(ConnectionPlan, fields), the fields in
# their order as one tuple: tuple.__new__ itself, without a partial around
# it, ~0.3k instructions less (3.11).
new_plan: Callable[[type[ConnectionPlan], tuple[Any, ...]], ConnectionPlan] = (
    tuple.__new__
)


def check_loop(loop: object, running: asyncio.AbstractEventLoop) -> None:
    """Refuse a *loop* that is not the running one (asyncio's old argument,
    accepted for old code)."""
    if not isinstance(loop, asyncio.AbstractEventLoop):
        raise TypeError(f"loop must be the running event loop or None, got {loop!r}")
    raise RuntimeError(
        f"loop {loop!r} is not the running event loop {running!r}; pass None"
    )


def check_sock(sock: object, *, host: object, port: object) -> None:
    if not isinstance(sock, socket.socket):
        raise TypeError(f"sock must be a socket.socket, got {sock!r}")
    if host is not None or port is not None:
        raise ValueError("host/port and sock can not be specified at the same time")
    # The same rules (and types) as asyncio's create_connection.
    if isinstance(sock, _ssl.SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")
    if sock.type != socket.SOCK_STREAM:
        raise ValueError(f"A Stream Socket was expected, got {sock!r}")


def tls_keywords(
    host: Host,
    ssl: object,
    server_hostname: str | None,
    ssl_handshake_timeout: float | None,
    ssl_shutdown_timeout: float | None,
) -> dict[str, Any] | None:
    """The TLS keywords of ``loop.create_connection``, checked by asyncio's
    rules with asyncio's exception types; ``None`` without *ssl*."""
    if ssl is None or ssl is False:
        if server_hostname is not None:
            raise ValueError("server_hostname is only meaningful with ssl")
        if ssl_handshake_timeout is not None:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        return None
    if not isinstance(ssl, bool | _ssl.SSLContext):
        raise TypeError(
            "ssl must be an ssl.SSLContext, a bool or None,"
            f" got {type(ssl).__name__} {ssl!r}"
        )
    if server_hostname is None:
        # asyncio's default: check the certificate against the host name.
        if not host:
            raise ValueError(
                "You must set server_hostname when using ssl without a host"
            )
        server_hostname = host.decode() if isinstance(host, bytes) else host
    tls: dict[str, Any] = {"ssl": ssl, "server_hostname": server_hostname}
    if ssl_handshake_timeout is not None:
        tls["ssl_handshake_timeout"] = ssl_handshake_timeout
    if ssl_shutdown_timeout is not None:
        tls["ssl_shutdown_timeout"] = ssl_shutdown_timeout
    return tls


def check_resolver_takes_interleave(
    interleave: object, resolver: Callable[..., Any]
) -> None:
    """Check *interleave* (see ``_checks.check_interleave``), and that the
    resolver takes it."""
    check_interleave(interleave)
    if (
        interleave
        and resolver is not concurrent_resolver
        and "first_addr_family_count" not in extra_keywords_taken(resolver)
    ):
        raise TypeError(
            f"interleave={interleave!r} is passed to the resolver as"
            f" first_addr_family_count, which {resolver!r} does not take"
        )


def check_local_addr(local_addr: object) -> None:
    """asyncio's *local_addr*: a (host, port) pair, resolved later, its port
    one ``getaddrinfo`` takes (see ``_checks.check_port``)."""
    if not isinstance(local_addr, tuple | list) or len(local_addr) < 2:
        raise TypeError(f"local_addr must be a (host, port) pair, got {local_addr!r}")
    check_port(local_addr[1])
