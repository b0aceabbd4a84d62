"""Connecting with Happy Eyeballs over real loopback sockets.

Each test runs on every loop flavour. Addresses are loopback endpoints that
work, refuse (RST) or are blackholed (SYN dropped: full accept queue); the
resolver hands them over in the order a test needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from async_stagger.connection import (
    create_connected_sock,
    create_connection,
    open_connection,
)
from async_stagger.trace import TraceEvent
from lab import Endpoint, Lab, ipv6_loopback_available

needs_ipv6 = pytest.mark.skipif(
    not ipv6_loopback_available(), reason="this machine has no IPv6 loopback (::1)"
)


def answers(*endpoints: Endpoint) -> Any:
    """A resolver answering with *endpoints*, in this order, at once."""

    async def resolver(host: Any, port: Any, **_: Any) -> AsyncIterator[Any]:
        for endpoint in endpoints:
            yield endpoint.addrinfo

    return resolver


def is_uvloop_ssl_cancellation_report(context: dict[str, Any]) -> bool:
    """Whether *context* is what uvloop's own SSL transport reports when its
    create_connection is cancelled right after the handshake ("Fatal error on
    SSL protocol ... the handler is closed"): uvloop does that on its own,
    with or without us (plain ``uvloop.Loop.create_connection(host, port,
    ssl=...)`` cancelled there reports it too)."""
    exception = context.get("exception")
    return (
        type(asyncio.get_running_loop()).__module__.startswith("uvloop")
        and context.get("message") == "Fatal error on SSL protocol"
        and isinstance(exception, RuntimeError)
        and "the handler is closed" in str(exception)
    )


@contextlib.contextmanager
def tolerating_uvloop_ssl_cancellation_reports() -> Iterator[None]:
    """Let uvloop's own report through (see
    :func:`is_uvloop_ssl_cancellation_report`); every other report still
    reaches the suite's handler, which fails the test."""
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if is_uvloop_ssl_cancellation_report(context):
            return
        if previous is None:
            loop.default_exception_handler(context)
        else:
            previous(loop, context)

    loop.set_exception_handler(handler)
    try:
        yield
    finally:
        loop.set_exception_handler(previous)


async def assert_sockets_back_to(lab: Lab, before: int, *others: Lab) -> None:
    """Fail unless the count of our open sockets returns to *before*.

    Transports close their socket a loop iteration or so after being told
    to, so allow a moment (real time); a leaked socket never closes at all.
    """
    deadline = time.monotonic() + 1
    while open_fds(lab, *others) != before and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert open_fds(lab, *others) == before


def open_fds(lab: Lab, *others: Lab) -> int:
    """The number of sockets this process holds open that are none of the
    labs' (their listeners and their servers' side of each connection).

    Only sockets: uvloop opens a /dev/null descriptor of its own on first
    need and closes it with the loop (the suite's own leak check counts
    every descriptor once the loop is closed). Each lab's census is exact
    while its threads accept and close sockets (``Lab.other_sockets``); a
    socket is counted only if no lab claims it, so a lab's socket opened or
    closed between two labs' censuses is never counted either.
    """
    counted = set(lab.other_sockets().items())
    for other in others:
        counted &= set(other.other_sockets().items())
    return len(counted)


async def round_trip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    writer.write(b"hello\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.readline(), 5) == b"hello\n"
    writer.close()
    await writer.wait_closed()


# -- the happy path


async def test_open_connection_to_an_ip_literal_round_trips_data(lab: Lab) -> None:
    server = lab.working("127.0.0.1")
    reader, writer = await open_connection(server.host, server.port)
    assert writer.get_extra_info("peername") == server.sockaddr
    await round_trip(reader, writer)


@needs_ipv6
async def test_open_connection_to_ipv6_loopback_round_trips_data(lab: Lab) -> None:
    server = lab.working("::1")
    reader, writer = await open_connection("::1", server.port)
    assert writer.get_extra_info("peername")[:2] == ("::1", server.port)
    await round_trip(reader, writer)


async def test_create_connection_returns_transport_and_protocol(lab: Lab) -> None:
    server = lab.working("127.0.0.1")
    made: list[asyncio.BaseTransport] = []

    class Protocol(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            made.append(transport)

    transport, protocol = await create_connection(Protocol, server.host, server.port)
    assert isinstance(protocol, Protocol)
    assert made == [transport]
    transport.close()
    await asyncio.sleep(0)


async def test_connected_socket_is_non_blocking_with_nodelay(lab: Lab) -> None:
    server = lab.working("127.0.0.1")
    sock = await create_connected_sock(server.host, server.port)
    with sock:
        assert sock.getblocking() is False
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert sock.getpeername() == server.sockaddr


async def test_transport_socket_has_nodelay_like_asyncios_own(lab: Lab) -> None:
    server = lab.working("127.0.0.1")
    _, writer = await open_connection(server.host, server.port)
    sock = writer.get_extra_info("socket")
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    writer.close()
    await writer.wait_closed()


async def test_working_address_after_refused_ones_is_reached(lab: Lab) -> None:
    dead = [lab.refusing(f"127.0.0.{i}") for i in (2, 3)]
    server = lab.working("127.0.0.5")
    reader, writer = await open_connection(
        "example.test", server.port, resolver=answers(*dead, server)
    )
    assert writer.get_extra_info("peername") == server.sockaddr
    await round_trip(reader, writer)


async def test_socket_that_cannot_be_created_is_a_failed_attempt(lab: Lab) -> None:
    server = lab.working(lab.ipv4_address())
    bogus = (socket.AF_INET, socket.SOCK_STREAM, 254, "", server.sockaddr)

    async def resolver(host: Any, port: Any, **_: Any) -> AsyncIterator[Any]:
        yield bogus  # protocol 254: socket() itself fails
        yield server.addrinfo

    events: list[TraceEvent] = []
    sock = await create_connected_sock(
        "example.test", 0, delay=30, resolver=resolver, trace=events.append
    )
    with sock:
        assert sock.getpeername() == server.sockaddr
    failed = [e for e in events if e.kind == "attempt_failed"]
    assert [e.index for e in failed] == [0]
    assert isinstance(failed[0].error, OSError)


# -- the schedule (RFC 8305 §5)


async def test_first_address_blackholed_connects_after_about_one_delay(
    lab: Lab,
) -> None:
    dead = lab.blackholed("127.0.0.3")
    server = lab.working("127.0.0.5")
    loop = asyncio.get_running_loop()
    start = loop.time()
    sock = await create_connected_sock(
        "example.test", 0, delay=0.1, resolver=answers(dead, server)
    )
    took = loop.time() - start
    with sock:
        assert sock.getpeername() == server.sockaddr
    # uvloop's clock counts whole milliseconds.
    assert 0.1 - 0.002 <= took < 0.6


async def test_blackholed_attempt_is_cancelled_when_the_next_wins(lab: Lab) -> None:
    dead = lab.blackholed("127.0.0.3")
    server = lab.working("127.0.0.5")
    events: list[TraceEvent] = []
    sock = await create_connected_sock(
        "example.test",
        0,
        delay=0.05,
        resolver=answers(dead, server),
        trace=events.append,
    )
    sock.close()
    assert [(e.kind, e.index) for e in events] == [
        ("attempt_started", 0),
        ("attempt_delay_expired", 0),
        ("attempt_started", 1),
        ("attempt_succeeded", 1),
        ("attempt_cancelled", 0),
    ]
    assert [e.address for e in events] == [
        dead.sockaddr,
        dead.sockaddr,
        server.sockaddr,
        server.sockaddr,
        dead.sockaddr,
    ]


async def test_no_delay_waits_for_a_failure_before_the_next_attempt(
    lab: Lab,
) -> None:
    dead = lab.blackholed("127.0.0.3")
    server = lab.working("127.0.0.5")
    events: list[TraceEvent] = []
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await create_connected_sock(
                "example.test",
                0,
                delay=None,
                resolver=answers(dead, server),
                trace=events.append,
            )
    assert [e.index for e in events if e.kind == "attempt_started"] == [0]


async def test_refused_address_starts_next_attempt_at_once(lab: Lab) -> None:
    dead = lab.refusing("127.0.0.2")
    server = lab.working("127.0.0.5")
    events: list[TraceEvent] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    sock = await create_connected_sock(
        "example.test",
        0,
        delay=30,
        resolver=answers(dead, server),
        trace=events.append,
    )
    sock.close()
    # With a 30 s delay, only the failure can have started attempt 1.
    assert loop.time() - start < 5
    kinds = [(event.kind, event.index) for event in events]
    assert kinds == [
        ("attempt_started", 0),
        ("attempt_failed", 0),
        ("attempt_started", 1),
        ("attempt_succeeded", 1),
    ]


async def test_slower_attempt_keeps_running_when_the_next_starts(lab: Lab) -> None:
    # Both blackholed: attempt 0 must still be running (not failed) when
    # attempt 1 starts a delay later, and both are cancelled at the end.
    dead = [lab.blackholed(f"127.0.0.{i}") for i in (3, 4)]
    events: list[TraceEvent] = []
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await create_connected_sock(
                "example.test",
                0,
                delay=0.05,
                resolver=answers(*dead),
                trace=events.append,
            )
    kinds = sorted((event.kind, event.index) for event in events)
    assert kinds == [
        ("attempt_cancelled", 0),
        ("attempt_cancelled", 1),
        ("attempt_delay_expired", 0),
        ("attempt_started", 0),
        ("attempt_started", 1),
        ("connection_failed", None),
    ]


# -- when everything fails


async def test_one_refused_address_raises_its_own_error(lab: Lab) -> None:
    dead = lab.refusing("127.0.0.2")
    with pytest.raises(ConnectionRefusedError) as caught:
        await open_connection(dead.host, dead.port)
    assert f"while connecting to 127.0.0.2:{dead.port}" in caught.value.__notes__


async def test_different_errors_raise_one_oserror_naming_each_address(
    lab: Lab,
) -> None:
    dead = [lab.refusing("127.0.0.2"), lab.refusing("127.0.0.3")]
    with pytest.raises(OSError, match=r"^Multiple exceptions: ") as caught:
        await open_connection("example.test", 0, resolver=answers(*dead))
    assert type(caught.value) is OSError
    for endpoint in dead:
        assert f"{endpoint.host}:{endpoint.port}: " in str(caught.value)


async def test_alike_errors_raise_the_first_of_them() -> None:
    class Refuse(OSError):
        pass

    async def resolver(host: Any, port: Any, **_: Any) -> AsyncIterator[Any]:
        yield (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", 9))
        yield (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.3", 9))

    # A bind failure reads the same for both addresses.
    with pytest.raises(OSError, match="error while attempting to bind") as caught:
        await create_connected_sock(
            "example.test",
            9,
            resolver=resolver,
            local_addrs=[("192.0.2.1", 0)],  # not an address of this host
        )
    assert "Multiple exceptions" not in str(caught.value)


@needs_ipv6
async def test_raise_exc_group_collects_every_attempt_annotated(lab: Lab) -> None:
    dead = [lab.refusing("127.0.0.2"), lab.refusing("::1")]
    with pytest.raises(ExceptionGroup) as caught:
        await create_connected_sock(
            "example.test", 0, resolver=answers(*dead), raise_exc_group=True
        )
    errors = caught.value.exceptions
    assert [type(error) for error in errors] == [ConnectionRefusedError] * 2
    assert errors[0].__notes__ == [f"while connecting to 127.0.0.2:{dead[0].port}"]
    assert errors[1].__notes__ == [f"while connecting to [::1]:{dead[1].port}"]


async def test_all_errors_is_asyncios_name_for_raise_exc_group(lab: Lab) -> None:
    dead = lab.refusing("127.0.0.2")
    with pytest.raises(ExceptionGroup) as caught:
        await open_connection(
            "example.test", 0, resolver=answers(dead), all_errors=True
        )
    assert [type(e) for e in caught.value.exceptions] == [ConnectionRefusedError]


async def test_resolution_failure_raises_gaierror() -> None:
    async def resolver(host: Any, port: Any, **_: Any) -> AsyncIterator[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        yield  # pragma: no cover

    with pytest.raises(socket.gaierror):
        await open_connection("nowhere.test", 80, resolver=resolver)


async def test_resolution_failure_is_in_the_group_too() -> None:
    async def resolver(host: Any, port: Any, **_: Any) -> AsyncIterator[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        yield  # pragma: no cover

    with pytest.raises(ExceptionGroup) as caught:
        await open_connection("nowhere.test", 80, resolver=resolver, all_errors=True)
    [error] = caught.value.exceptions
    assert isinstance(error, socket.gaierror)
    assert "while resolving 'nowhere.test' (port 80)" in error.__notes__


async def test_empty_answer_raises_like_asyncio() -> None:
    async def resolver(host: Any, port: Any, **_: Any) -> AsyncIterator[Any]:
        for _ in ():
            yield _

    with pytest.raises(
        OSError, match=r"getaddrinfo\('nowhere.test', 80\) returned empty list"
    ):
        await open_connection("nowhere.test", 80, resolver=resolver)


async def test_failure_is_traced_with_its_error(lab: Lab) -> None:
    dead = lab.refusing("127.0.0.2")
    events: list[TraceEvent] = []
    with pytest.raises(ConnectionRefusedError) as caught:
        await open_connection(dead.host, dead.port, trace=events.append)
    assert events[-1].kind == "connection_failed"
    assert events[-1].error is caught.value
    times = [event.time for event in events]
    assert times == sorted(times)


# -- local addresses


@needs_ipv6
async def test_local_addrs_of_both_families_pair_with_their_own_family(
    lab: Lab,
) -> None:
    v4 = lab.working("127.0.0.1")
    v6 = lab.working("::1")
    local = [("127.0.0.7", 0), ("::1", 0, 0, 0)]
    events: list[TraceEvent] = []
    for server in (v4, v6):
        sock = await create_connected_sock(
            server.host, server.port, local_addrs=local, trace=events.append
        )
        with sock:
            expected = "127.0.0.7" if server is v4 else "::1"
            assert sock.getsockname()[0] == expected
    started = [
        event.local_address for event in events if event.kind == "attempt_started"
    ]
    # One attempt each: no doomed cross-family pairing was tried.
    assert started == [("127.0.0.7", 0), ("::1", 0, 0, 0)]


async def test_local_addrs_may_be_an_async_iterable(lab: Lab) -> None:
    server = lab.working("127.0.0.1")

    async def local() -> AsyncIterator[tuple[str, int]]:
        yield ("127.0.0.8", 0)

    sock = await create_connected_sock(server.host, server.port, local_addrs=local())
    with sock:
        assert sock.getsockname()[0] == "127.0.0.8"


@needs_ipv6
async def test_remote_family_without_local_partner_is_skipped_not_attempted(
    lab: Lab,
) -> None:
    v6 = lab.working("::1")
    v4 = lab.working("127.0.0.1", v6.port)  # same port, other family
    events: list[TraceEvent] = []
    sock = await create_connected_sock(
        "example.test",
        v6.port,
        resolver=answers(v6, v4),
        local_addrs=[("127.0.0.9", 0)],
        trace=events.append,
    )
    with sock:
        assert sock.getsockname()[0] == "127.0.0.9"
    started = [event.address for event in events if event.kind == "attempt_started"]
    assert started == [v4.sockaddr]


@needs_ipv6
async def test_no_local_partner_at_all_is_an_eafnosupport_error(lab: Lab) -> None:
    v6 = lab.working("::1")
    with pytest.raises(OSError, match="no local address of family AF_INET6"):
        await create_connected_sock("::1", v6.port, local_addrs=[("127.0.0.9", 0)])


async def test_local_addr_is_resolved_and_bound(lab: Lab) -> None:
    server = lab.working("127.0.0.1")
    reader, writer = await open_connection(
        server.host, server.port, local_addr=("127.0.0.6", 0)
    )
    assert writer.get_extra_info("sockname")[0] == "127.0.0.6"
    await round_trip(reader, writer)


@needs_ipv6
async def test_local_addr_joins_local_addrs(lab: Lab) -> None:
    v6 = lab.working("::1")
    transport, _ = await create_connection(
        asyncio.Protocol,
        "::1",
        v6.port,
        local_addr=("::1", 0),
        local_addrs=[("127.0.0.6", 0)],
    )
    assert transport.get_extra_info("sockname")[0] == "::1"
    transport.close()
    await asyncio.sleep(0)


# -- TLS


async def test_tls_handshake_runs_on_the_connected_attempt_and_round_trips(
    lab: Lab,
) -> None:
    dead = lab.refusing("127.0.0.2")
    server = lab.working("127.0.0.5", tls=True)
    events: list[TraceEvent] = []
    reader, writer = await open_connection(
        "localhost",
        server.port,
        ssl=lab.client_ssl_context(),
        resolver=answers(dead, server),
        trace=events.append,
    )
    assert writer.get_extra_info("ssl_object") is not None
    await round_trip(reader, writer)
    kinds = [event.kind for event in events]
    # The refused attempt never got to TLS; the winner won by its handshake.
    assert kinds[-3:] == ["tls_started", "tls_succeeded", "attempt_succeeded"]
    assert kinds.count("tls_started") == 1
    assert [e.index for e in events if e.kind.startswith("tls")] == [1, 1]


async def test_tls_server_hostname_defaults_to_host(lab: Lab) -> None:
    server = lab.working("127.0.0.5", tls=True, tls_names=("good.test",))
    context = lab.client_ssl_context()
    with pytest.raises(ssl.SSLError):
        await open_connection(
            "bad.test", server.port, ssl=context, resolver=answers(server)
        )
    reader, writer = await open_connection(
        "good.test", server.port, ssl=context, resolver=answers(server)
    )
    await round_trip(reader, writer)


async def test_failed_tls_handshake_closes_the_socket(lab: Lab) -> None:
    server = lab.working("127.0.0.5", tls=True)
    before = open_fds(lab)
    events: list[TraceEvent] = []
    with pytest.raises(ssl.SSLCertVerificationError):
        await open_connection(
            server.host,
            server.port,
            ssl=lab.client_ssl_context(),
            server_hostname="not-in-the-certificate.test",
            trace=events.append,
        )
    await assert_sockets_back_to(lab, before)
    assert [event.kind for event in events][-3:] == [
        "tls_failed",
        "attempt_failed",
        "connection_failed",
    ]


# -- cancellation and timeouts


async def test_timeout_mid_race_closes_every_socket(lab: Lab) -> None:
    dead = [lab.blackholed(f"127.0.0.{i}") for i in (3, 4, 5)]
    before = open_fds(lab)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.15):
            await open_connection(
                "example.test", 0, delay=0.05, resolver=answers(*dead)
            )
    await assert_sockets_back_to(lab, before)


async def test_cancel_mid_race_closes_every_socket(lab: Lab) -> None:
    dead = lab.blackholed("127.0.0.3")
    before = open_fds(lab)
    task = asyncio.ensure_future(
        create_connected_sock(dead.host, dead.port, delay=0.05)
    )
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_sockets_back_to(lab, before)


@pytest.mark.virtual_clock
async def test_timeout_during_resolution_leaves_nothing_behind(lab: Lab) -> None:
    looked_up = asyncio.Event()

    async def resolver(host: Any, port: Any, **_: Any) -> AsyncIterator[Any]:
        looked_up.set()
        await asyncio.sleep(3600)
        yield  # pragma: no cover

    before = open_fds(lab)
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await open_connection("slow.test", 80, resolver=resolver)
    assert looked_up.is_set()
    assert loop.time() == pytest.approx(0.5, abs=1e-9)
    await assert_sockets_back_to(lab, before)


async def test_timeout_during_tls_handshake_closes_the_socket(lab: Lab) -> None:
    server = lab.hung_tls("127.0.0.4")
    before = open_fds(lab)
    events: list[TraceEvent] = []
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await open_connection(
                server.host,
                server.port,
                ssl=lab.client_ssl_context(),
                trace=events.append,
            )
    await assert_sockets_back_to(lab, before)
    assert "tls_started" in [event.kind for event in events]


async def test_ssl_handshake_timeout_applies_to_the_winner(lab: Lab) -> None:
    server = lab.hung_tls("127.0.0.4")
    before = open_fds(lab)
    with pytest.raises((TimeoutError, ConnectionAbortedError)):
        await open_connection(
            server.host,
            server.port,
            ssl=lab.client_ssl_context(),
            ssl_handshake_timeout=0.1,
        )
    await assert_sockets_back_to(lab, before)


async def test_cancelled_right_after_tls_handshake_leaves_the_socket_to_its_transport(
    lab: Lab,
) -> None:
    # The protocol's connection_made runs when the TLS handshake is done, one
    # step before create_connection returns: cancelling there is the moment
    # asyncio closes its SSL transport (a TLS shutdown, the socket still on
    # the loop). Closing the socket under it would free the descriptor
    # number, and the next socket to get it would find it "used by
    # transport".
    server = lab.working("127.0.0.5", tls=True)
    plain = lab.working("127.0.0.6")
    before = open_fds(lab)
    me = asyncio.current_task()
    assert me is not None

    class CancelsOnceConnected(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            me.cancel()

    with tolerating_uvloop_ssl_cancellation_reports():
        with pytest.raises(asyncio.CancelledError):
            await create_connection(
                CancelsOnceConnected,
                server.host,
                server.port,
                ssl=lab.client_ssl_context(),
            )
        me.uncancel()
        # At once: the next socket may get the descriptor number.
        for _ in range(3):
            reader, writer = await open_connection(plain.host, plain.port)
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
            writer.close()
            await writer.wait_closed()
        await asyncio.sleep(0.05)  # uvloop reports a pass or two later
    await assert_sockets_back_to(lab, before)


async def test_tls_connections_cut_by_timeouts_leave_the_loop_usable(lab: Lab) -> None:
    # The sweep: timeouts 0-40 ms around TLS connections on one loop
    # cut some before, some during and some just after the handshake; every
    # connection afterwards works, and no descriptor stays open.
    server = lab.working("127.0.0.5", tls=True)
    plain = lab.working("127.0.0.6")
    context = lab.client_ssl_context()
    before = open_fds(lab)
    with tolerating_uvloop_ssl_cancellation_reports():
        await sweep_tls_timeouts(server, plain, context)
        await asyncio.sleep(0.05)  # uvloop reports a pass or two later
    await assert_sockets_back_to(lab, before)


async def sweep_tls_timeouts(
    server: Endpoint, plain: Endpoint, context: ssl.SSLContext
) -> None:
    for milliseconds in range(41):
        try:
            async with asyncio.timeout(milliseconds / 1000):
                _, writer = await open_connection(server.host, server.port, ssl=context)
        except TimeoutError:
            pass
        else:
            writer.transport.abort()
        reader, writer = await open_connection(plain.host, plain.port)
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        writer.transport.abort()


async def test_winner_is_closed_when_cancelled_as_it_wins(lab: Lab) -> None:
    # Cancel at every step of a connection in turn: whatever the step, no
    # socket may survive.
    server = lab.working("127.0.0.1")
    before = open_fds(lab)
    for steps in range(12):
        task = asyncio.ensure_future(create_connected_sock(server.host, server.port))
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        try:
            sock = await task
        except asyncio.CancelledError:
            pass
        else:
            sock.close()
        assert open_fds(lab) == before, f"cancelled after {steps} steps"


# -- the connect step ---------------------------------------------------------------


def _nonblocking_socket(endpoint: Endpoint) -> socket.socket:
    sock = socket.socket(endpoint.family, socket.SOCK_STREAM)
    sock.setblocking(False)
    return sock


def _connect_step(loop: asyncio.AbstractEventLoop) -> Any:
    """An attempt's connect step (``_Attempts._connect``) on *loop*, which
    connects without ``loop.sock_connect``."""
    from async_stagger._attempts import _Attempts

    async def no_addresses() -> AsyncIterator[Any]:
        return
        yield

    attempts = _Attempts(loop, no_addresses(), None)
    assert attempts.direct_connect

    def connect(endpoint: Endpoint) -> Any:
        info = (endpoint.family, socket.SOCK_STREAM, 0, "", endpoint.sockaddr)
        return attempts._connect(0, info, None)

    return connect


async def test_connect_step_matches_asyncios_sock_connect(lab: Lab) -> None:
    # On asyncio's selector loops and uvloop's the attempt connects without
    # loop.sock_connect (which resolves the address again first); what it
    # does and raises must be what sock_connect does and raises.
    loop = asyncio.get_running_loop()
    connect_step = _connect_step(loop)
    working = lab.working()
    refusing = lab.refusing()
    for endpoint in (working, refusing):
        outcomes = []
        for ours in (True, False):
            sock = None
            try:
                if ours:
                    sock = await connect_step(endpoint)
                else:
                    sock = _nonblocking_socket(endpoint)
                    await loop.sock_connect(sock, endpoint.sockaddr)
            except OSError as exc:
                outcomes.append((type(exc), exc.errno, str(exc)))
            else:
                assert sock is not None
                peer = sock.getpeername()[:2]
                outcomes.append((None, None, peer))
            finally:
                if sock is not None:
                    sock.close()
        assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] is ConnectionRefusedError


async def test_connect_step_cancelled_leaves_nothing_registered(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[int] = []

    class Noted(socket.socket):
        """A socket that notes its file descriptor."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self.fileno())

    loop = asyncio.get_running_loop()
    connect_step = _connect_step(loop)
    blackholed = lab.blackholed()
    monkeypatch.setattr(socket, "socket", Noted)
    waiting = asyncio.ensure_future(connect_step(blackholed))
    await asyncio.sleep(0.05)
    monkeypatch.undo()
    assert not waiting.done()  # the SYN was dropped: still connecting
    [fd] = made
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    # Nothing is left watching the socket's descriptor (asyncio answers
    # False, uvloop None, when there was nothing to remove); the attempt
    # closed the socket.
    assert not loop.remove_writer(fd)


async def test_a_loops_own_sock_connect_is_used(lab: Lab) -> None:
    # A loop whose sock_connect a program replaced keeps it: the attempts
    # use it (as they use the proactor's, or a loop class's own).
    loop = asyncio.get_running_loop()
    calls = []
    original = loop.sock_connect

    async def sock_connect(sock: socket.socket, address: Any) -> None:
        calls.append(address)
        await original(sock, address)

    working = lab.working()
    loop.sock_connect = sock_connect  # type: ignore[method-assign]
    try:
        sock = await create_connected_sock(
            "two.test", working.port, resolver=answers(working)
        )
        sock.close()
    finally:
        del loop.sock_connect
    assert calls == [working.sockaddr]


async def test_which_connect_step_each_loop_uses() -> None:
    # Pins what the flavours cover: asyncio's selector loops and uvloop take
    # the connect step above (their sock_connect resolves the address again).
    from async_stagger._loop_abilities import connects_directly

    assert connects_directly(asyncio.get_running_loop())


def test_a_loop_class_with_its_own_sock_connect_keeps_it() -> None:
    from async_stagger._loop_abilities import connects_directly

    class OwnConnect(asyncio.SelectorEventLoop):
        async def sock_connect(self, sock: socket.socket, address: Any) -> None:
            await super().sock_connect(sock, address)

    for make in (asyncio.SelectorEventLoop, OwnConnect):
        loop = make()
        try:
            assert connects_directly(loop) is (make is not OwnConnect)
        finally:
            loop.close()


async def test_an_attempt_waits_for_its_connect_in_its_own_coroutine(
    lab: Lab,
) -> None:
    # Waiting for the handshake holds no coroutine besides the attempt's own
    # (each layer costs ~260 bytes per attempt in flight).
    loop = asyncio.get_running_loop()
    connect_step = _connect_step(loop)
    attempt = connect_step(lab.blackholed())
    waiting = asyncio.ensure_future(attempt)
    try:
        await asyncio.sleep(0.05)
        assert not waiting.done()  # the SYN was dropped: still connecting
        # It awaits the future of the socket's writability (its iterator), no
        # coroutine of ours.
        assert attempt.cr_await is not None
        assert not inspect.iscoroutine(attempt.cr_await)
    finally:
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
