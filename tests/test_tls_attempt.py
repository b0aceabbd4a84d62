"""The TLS-aware race: with ``ssl=``, an attempt wins by completing its
TLS handshake (Happy Eyeballs v3).

Real loopback sockets throughout: the lab's hung-TLS endpoint (accepts TCP,
never answers the ClientHello), TLS servers with the lab's certificate, and
TLS servers whose certificate comes from another lab's CA (a bad
certificate for the client). Addresses come from a resolver of the test's
own: no name is looked up. Each test runs on every loop flavour.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import select
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from async_stagger._tls_attempt import (
    TLSRace,
    create_tls_connection,
    descriptor_identity,
    holds_its_own_descriptor,
    let_go_if_closed_behind_its_back,
)
from async_stagger.connection import create_connection, open_connection
from async_stagger.trace import TraceEvent
from conftest import run_on_loop
from lab import Endpoint, Lab
from loops import FLAVOURS
from test_connection import assert_sockets_back_to, open_fds, round_trip

HOST = "service.lab.test"  # in the lab certificate's names, never looked up
GREETING = b"220 service.lab.test ready\r\n"


def answers(
    *endpoints: Endpoint, closing_takes: float = 0.0, endless: bool = False
) -> Any:
    """A resolver answering with *endpoints* at once; closing it (the race
    does when it ends) takes *closing_takes* seconds, which holds back the
    hand-over to the caller's protocol that long. An *endless* one then
    waits for more answers that never come (for races that someone wins:
    its end never coincides with a win)."""

    async def resolver(host: Any, port: Any, **_: Any) -> AsyncIterator[Any]:
        try:
            for endpoint in endpoints:
                yield endpoint.addrinfo
            if endless:
                await asyncio.get_running_loop().create_future()
        finally:
            if closing_takes:
                await asyncio.sleep(closing_takes)

    return resolver


@pytest.fixture
def other_lab() -> Iterator[Lab]:
    """A second lab, with a CA of its own: its TLS servers' certificates
    are not trusted by ``lab.client_ssl_context()``."""
    with Lab() as the_lab:
        yield the_lab


def kinds_of(events: list[TraceEvent], index: int) -> list[str]:
    return [event.kind for event in events if event.index == index]


def time_of(events: list[TraceEvent], kind: str, index: int) -> float:
    return next(e.time for e in events if e.kind == kind and e.index == index)


class Recorder(asyncio.Protocol):
    """Writes down every call its transport makes, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.transport: Any = None
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.calls.append(("connection_made", None))

    def data_received(self, data: bytes) -> None:
        self.calls.append(("data_received", data))

    def eof_received(self) -> None:
        self.calls.append(("eof_received", None))

    def connection_lost(self, exc: Exception | None) -> None:
        self.calls.append(("connection_lost", exc))
        self.lost.set_result(None)


# -- who wins


async def test_hung_tls_handshake_loses_to_the_next_address(lab: Lab) -> None:
    hung = lab.hung_tls("127.0.0.4")
    server = lab.working("127.0.0.5", tls=True)
    events: list[TraceEvent] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    reader, writer = await open_connection(
        HOST,
        server.port,
        ssl=lab.client_ssl_context(),
        delay=0.1,
        resolver=answers(hung, server),
        trace=events.append,
    )
    took = loop.time() - start
    assert writer.get_extra_info("peername")[0] == "127.0.0.5"
    await round_trip(reader, writer)
    # Connected at the delay plus a loopback handshake: far from the 60 s
    # of ssl_handshake_timeout (a wide margin for a loaded machine).
    assert 0.1 <= took < 5
    assert kinds_of(events, 0) == [
        "attempt_started",
        "tls_started",
        "attempt_cancelled",
    ]
    assert kinds_of(events, 1) == [
        "attempt_started",
        "tls_started",
        "tls_succeeded",
        "attempt_succeeded",
    ]
    # The schedule ran on while attempt 0's handshake was in progress.
    assert time_of(events, "tls_started", 0) < time_of(events, "attempt_started", 1)


async def test_without_tls_race_a_hung_handshake_on_the_tcp_winner_fails(
    lab: Lab,
) -> None:
    hung = lab.hung_tls("127.0.0.4")
    server = lab.working("127.0.0.5", tls=True)
    before = open_fds(lab)
    events: list[TraceEvent] = []
    with pytest.raises((TimeoutError, ConnectionAbortedError)):
        await open_connection(
            HOST,
            server.port,
            ssl=lab.client_ssl_context(),
            ssl_handshake_timeout=0.2,
            delay=0.05,
            resolver=answers(hung, server),
            trace=events.append,
            race_tls=False,
        )
    await assert_sockets_back_to(lab, before)
    kinds = [event.kind for event in events]
    # The TCP race was over before TLS began, as asyncio does it.
    assert kinds.index("attempt_succeeded") < kinds.index("tls_started")
    assert "tls_failed" in kinds


async def test_handshake_failure_starts_the_next_attempt_at_once(
    lab: Lab, other_lab: Lab
) -> None:
    untrusted = other_lab.working("127.0.0.6", tls=True)
    server = lab.working("127.0.0.5", tls=True)
    events: list[TraceEvent] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    reader, writer = await open_connection(
        HOST,
        server.port,
        ssl=lab.client_ssl_context(),
        delay=30,  # only a failure can start attempt 1 in time
        resolver=answers(untrusted, server),
        trace=events.append,
    )
    assert loop.time() - start < 5
    assert writer.get_extra_info("peername")[0] == "127.0.0.5"
    await round_trip(reader, writer)
    assert kinds_of(events, 0) == [
        "attempt_started",
        "tls_started",
        "tls_failed",
        "attempt_failed",
    ]
    failed = next(e for e in events if e.kind == "tls_failed")
    assert isinstance(failed.error, ssl.SSLCertVerificationError)
    assert time_of(events, "attempt_started", 1) - failed.time < 1


async def test_ssl_handshake_timeout_bounds_each_attempts_handshake(
    lab: Lab,
) -> None:
    hung = [lab.hung_tls(f"127.0.0.{i}") for i in (7, 8)]
    before = open_fds(lab)
    events: list[TraceEvent] = []
    with pytest.raises((TimeoutError, ConnectionAbortedError)):
        await open_connection(
            HOST,
            hung[0].port,
            ssl=lab.client_ssl_context(),
            ssl_handshake_timeout=0.2,
            delay=None,  # one attempt at a time: only a failure moves on
            resolver=answers(*hung),
            trace=events.append,
        )
    await assert_sockets_back_to(lab, before)
    assert [e.kind for e in events if e.kind in ("tls_failed", "attempt_failed")] == [
        "tls_failed",
        "attempt_failed",
    ] * 2
    # (0.19: uvloop's timers have millisecond resolution and may fire a
    # little early by the loop's clock.)
    first_failed = time_of(events, "tls_failed", 0)
    assert first_failed - time_of(events, "tls_started", 0) >= 0.19
    # The timeout failed attempt 0, and attempt 1 started at once with a
    # timeout of its own.
    assert time_of(events, "attempt_started", 1) - first_failed < 1
    assert time_of(events, "tls_failed", 1) - time_of(events, "tls_started", 1) >= 0.19


async def test_every_attempt_failing_tls_raises_the_tls_error(
    lab: Lab, other_lab: Lab
) -> None:
    untrusted = other_lab.working("127.0.0.6", tls=True)
    before = open_fds(lab, other_lab)
    with pytest.raises(ssl.SSLCertVerificationError) as caught:
        await open_connection(
            HOST,
            untrusted.port,
            ssl=lab.client_ssl_context(),
            resolver=answers(untrusted),
        )
    assert f"while connecting to 127.0.0.6:{untrusted.port}" in caught.value.__notes__
    await assert_sockets_back_to(lab, before, other_lab)


# -- the hand-over to the caller's protocol


async def test_protocol_factory_is_called_once_for_the_winner(lab: Lab) -> None:
    servers = [lab.working(f"127.0.0.{i}", tls=True) for i in (5, 6, 7)]
    made: list[Recorder] = []

    def factory() -> Recorder:
        made.append(Recorder())
        return made[-1]

    before = open_fds(lab)
    # All three handshakes run at once (delay 1 ms); one wins.
    transport, protocol = await create_connection(
        factory,
        HOST,
        servers[0].port,
        ssl=lab.client_ssl_context(),
        delay=0.001,
        resolver=answers(*servers, endless=True),
    )
    assert made == [protocol]
    assert transport.get_protocol() is protocol
    assert transport.get_extra_info("ssl_object") is not None
    assert protocol.calls[0] == ("connection_made", None)
    transport.close()
    await protocol.lost
    await assert_sockets_back_to(lab, before)


async def test_server_bytes_sent_right_after_the_handshake_reach_the_stream(
    lab: Lab,
) -> None:
    server = lab.working("127.0.0.5", tls=True, greeting=GREETING)
    # The race ends 0.2 s after the handshake, long after the greeting came:
    # it waits for the stand-in protocol and must be passed on.
    reader, writer = await open_connection(
        HOST,
        server.port,
        ssl=lab.client_ssl_context(),
        resolver=answers(server, closing_takes=0.2),
    )
    assert await asyncio.wait_for(reader.readexactly(len(GREETING)), 5) == GREETING
    await round_trip(reader, writer)


async def test_greeting_then_close_reaches_the_protocol_as_the_loop_gives_it(
    lab: Lab,
) -> None:
    # The server greets and closes before the race has even ended: the
    # protocol must see what the loop's own create_connection shows it
    # (asyncio's loop calls eof_received for a TCP close without TLS
    # close_notify, uvloop's does not).
    server = lab.working(
        "127.0.0.5", tls=True, greeting=GREETING, after_greeting="close"
    )
    seen = []
    for race_tls, closing_takes in ((False, 0.0), (True, 0.2)):
        transport, protocol = await create_connection(
            Recorder,
            HOST,
            server.port,
            ssl=lab.client_ssl_context(),
            resolver=answers(server, closing_takes=closing_takes),
            race_tls=race_tls,
        )
        await asyncio.wait_for(protocol.lost, 5)
        assert transport.is_closing()
        assert b"".join(data for _, data in protocol.calls if data) == GREETING
        names = [name for name, _ in protocol.calls if name != "data_received"]
        seen.append(names)
        first_data = [name for name, _ in protocol.calls].index("data_received")
        assert first_data == 1  # right after connection_made
    assert seen[0] == seen[1]
    assert seen[1][0] == "connection_made"
    assert seen[1][-1] == "connection_lost"


async def test_greeting_reaches_a_buffered_protocol(lab: Lab) -> None:
    server = lab.working("127.0.0.5", tls=True, greeting=GREETING)

    class Buffered(asyncio.BufferedProtocol):
        def __init__(self) -> None:
            self.buffer = bytearray(5)  # small: the greeting takes several
            self.received = bytearray()
            self.got_greeting = asyncio.get_running_loop().create_future()

        def get_buffer(self, sizehint: int) -> bytearray:
            return self.buffer

        def buffer_updated(self, nbytes: int) -> None:
            self.received += self.buffer[:nbytes]
            if len(self.received) >= len(GREETING):
                self.got_greeting.set_result(None)

    transport, protocol = await create_connection(
        Buffered,
        HOST,
        server.port,
        ssl=lab.client_ssl_context(),
        resolver=answers(server, closing_takes=0.2),
    )
    await asyncio.wait_for(protocol.got_greeting, 5)
    assert bytes(protocol.received) == GREETING
    transport.close()
    await asyncio.sleep(0.05)


async def test_a_protocol_factory_that_raises_leaves_nothing_open(lab: Lab) -> None:
    server = lab.working("127.0.0.5", tls=True)
    before = open_fds(lab)
    events: list[TraceEvent] = []

    def factory() -> asyncio.Protocol:
        raise LookupError("no protocol today")

    with pytest.raises(LookupError):
        await create_connection(
            factory,
            HOST,
            server.port,
            ssl=lab.client_ssl_context(),
            resolver=answers(server),
            trace=events.append,
        )
    await assert_sockets_back_to(lab, before)
    assert events[-1].kind == "connection_failed"


# -- losers and cancellation leave nothing behind


async def test_losers_are_aborted_without_waiting_for_their_peers(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    # Servers that finish the handshake and then never read again (not
    # even a TLS close_notify): a loser closed politely would wait
    # ssl_shutdown_timeout (30 s) for an answer; aborted, it is gone at once.
    silent = [
        lab.working(f"127.0.0.{i}", tls=True, after_greeting="hold") for i in (5, 6)
    ]
    hung = lab.hung_tls("127.0.0.4")
    asyncio.get_running_loop().set_debug(True)  # asyncio logs fatal errors
    before = open_fds(lab)
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        for _ in range(5):
            transport, protocol = await create_connection(
                Recorder,
                HOST,
                hung.port,
                ssl=lab.client_ssl_context(),
                delay=0.001,
                resolver=answers(hung, *silent, endless=True),
            )
            transport.abort()
            await protocol.lost
        await assert_sockets_back_to(lab, before)
    noise = [r.getMessage() for r in caplog.records if "Fatal error" in r.getMessage()]
    assert noise == []


@pytest.mark.parametrize(
    "after", [0.0, 0.001, 0.005, 0.02, 0.021, 0.022, 0.024, 0.027, 0.03, 0.05]
)
async def test_cancelled_at_any_moment_of_a_tls_race_leaves_nothing(
    lab: Lab, after: float
) -> None:
    # Cancelled while connecting, mid-handshake, just after a handshake
    # or during the hand-over: never a socket left open or one closed
    # under a live transport (which would hold its descriptor number).
    silent = [
        lab.working(f"127.0.0.{i}", tls=True, after_greeting="hold") for i in (5, 6)
    ]
    hung = lab.hung_tls("127.0.0.4")
    before = open_fds(lab)
    for _ in range(3):
        connected: tuple[Any, Any] | None = None
        try:
            async with asyncio.timeout(after):
                connected = await create_connection(
                    Recorder,
                    HOST,
                    hung.port,
                    ssl=lab.client_ssl_context(),
                    # Attempt 1 at 20 ms, handshaking at about 21 ms.
                    delay=0.02,
                    resolver=answers(hung, *silent),
                )
        except TimeoutError:
            pass
        if connected is not None:
            transport, protocol = connected
            transport.abort()
            await protocol.lost
        await assert_sockets_back_to(lab, before)
    # And the loop still connects afterwards.
    _, writer = await open_connection(
        HOST,
        silent[0].port,
        ssl=lab.client_ssl_context(),
        resolver=answers(lab.working("127.0.0.9", tls=True)),
    )
    writer.close()
    await writer.wait_closed()


async def test_cancelled_mid_handshake_leaves_nothing(lab: Lab) -> None:
    hung = lab.hung_tls("127.0.0.4")
    before = open_fds(lab)
    events: list[TraceEvent] = []
    task = asyncio.ensure_future(
        open_connection(
            HOST,
            hung.port,
            ssl=lab.client_ssl_context(),
            resolver=answers(hung),
            trace=events.append,
        )
    )
    deadline = time.monotonic() + 5
    while "tls_started" not in [e.kind for e in events]:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_sockets_back_to(lab, before)
    assert kinds_of(events, 0)[-1] == "attempt_cancelled"


def connected_with_data_waiting(
    endpoint: Endpoint, *, prompt: bytes = b""
) -> socket.socket:
    """A non-blocking socket connected to *endpoint*, once what its server
    sends first (bytes, or a reset), after *prompt* if any, has arrived."""
    sock = socket.create_connection(endpoint.sockaddr, timeout=5)
    try:
        sock.sendall(prompt)
        readable, _, _ = select.select([sock], [], [], 5)
        assert readable == [sock]
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


@pytest.mark.parametrize("passes", range(8))
async def test_a_handshake_cancelled_at_any_pass_of_the_loop_leaves_no_error_behind(
    lab: Lab, passes: int
) -> None:
    # The server's first bytes are not TLS and are already waiting when the
    # handshake starts: it fails on its first read, one or two passes in.
    # Cancelled before, at or after that pass, the handshake's failure must
    # not outlive it as a "Future exception was never retrieved" (uvloop's
    # create_connection leaves one behind when cancelled between its two
    # waits: see _tls_attempt), and nothing stays open.
    speaker = lab.working(
        "127.0.0.10", greeting=b"220 not TLS\r\n", after_greeting="hold"
    )
    before = open_fds(lab)
    loop = asyncio.get_running_loop()
    sock = connected_with_data_waiting(speaker)
    race = TLSRace(loop, {"ssl": lab.client_ssl_context(), "server_hostname": HOST})
    task = asyncio.ensure_future(race.handshake(0, sock, speaker.sockaddr, None))
    # Once the task has started, the socket is the handshake's to close.
    await asyncio.sleep(0)
    for _ in range(passes):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises((asyncio.CancelledError, ssl.SSLError)):
        await task
    assert race.live == set()
    del task
    gc.collect()
    await assert_sockets_back_to(lab, before)


@pytest.mark.parametrize("passes", range(12))
@pytest.mark.parametrize("server", ["not TLS", "TLS"])
@pytest.mark.parametrize("cancellations", [1, 2])
async def test_tls_on_a_socket_cancelled_at_any_pass_of_the_loop_leaves_nothing(
    lab: Lab, server: str, passes: int, cancellations: int
) -> None:
    # create_tls_connection, as the TLS of a TCP race's winner runs: its
    # handshake failing or completing as the cancellation comes (and a
    # second one while it waits for the handshake to stop). Either it is
    # cancelled and leaves nothing open, or it returns its connection.
    if server == "TLS":
        endpoint = lab.working("127.0.0.12", tls=True)
    else:
        endpoint = lab.working("127.0.0.10", greeting=b"220 not TLS\r\n")
    before = open_fds(lab)
    sock = socket.create_connection(endpoint.sockaddr, timeout=5)
    sock.setblocking(False)
    keywords = {"ssl": lab.client_ssl_context(), "server_hostname": HOST}
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(
        create_tls_connection(loop, asyncio.Protocol, sock, keywords)
    )
    await asyncio.sleep(0)  # started: the socket is its to close
    for _ in range(passes):
        await asyncio.sleep(0)
    task.cancel()
    if cancellations == 2:
        await asyncio.sleep(0)
        task.cancel()
    try:
        transport, _ = await task
    except (asyncio.CancelledError, ssl.SSLError):
        pass
    else:
        transport.abort()
    del task
    gc.collect()
    await assert_sockets_back_to(lab, before)


async def test_a_peer_resetting_as_the_handshake_starts_leaves_no_socket_behind(
    lab: Lab,
) -> None:
    # The reset is already in when the handshake starts (a byte sent first
    # drew it): it fails while the loop sets its transport up (uvloop then
    # closes the descriptor but leaves the socket object holding its number,
    # see _tls_attempt).
    resetting = lab.resetting("127.0.0.11")
    before = open_fds(lab)
    loop = asyncio.get_running_loop()
    sock = connected_with_data_waiting(resetting, prompt=b"?")
    race = TLSRace(loop, {"ssl": lab.client_ssl_context(), "server_hostname": HOST})
    with pytest.raises(ConnectionResetError):
        await race.handshake(0, sock, resetting.sockaddr, None)
    await assert_sockets_back_to(lab, before)
    # Closed or detached: it can never close a number that is not its own.
    assert sock.fileno() == -1


async def test_a_resetting_address_loses_to_the_next(lab: Lab) -> None:
    resetting = lab.resetting("127.0.0.11")
    working = lab.working("127.0.0.5", tls=True)
    before = open_fds(lab)
    for _ in range(5):
        events: list[TraceEvent] = []
        reader, writer = await open_connection(
            HOST,
            working.port,
            ssl=lab.client_ssl_context(),
            resolver=answers(resetting, working),
            trace=events.append,
        )
        await round_trip(reader, writer)
        # In its handshake: the reset answers its ClientHello.
        assert kinds_of(events, 0)[-1] == "attempt_failed"
        assert kinds_of(events, 1)[-1] == "attempt_succeeded"
    await assert_sockets_back_to(lab, before)


@pytest.mark.parametrize("race_tls", [True, False])
async def test_a_lone_resetting_address_fails_with_the_reset(
    lab: Lab, race_tls: bool
) -> None:
    # Raced or on the TCP winner only, the handshake fails on the reset that
    # answers its ClientHello, and the socket is let go of as the loop left
    # it.
    resetting = lab.resetting("127.0.0.11")
    before = open_fds(lab)
    for _ in range(5):
        with pytest.raises(ConnectionResetError):
            await open_connection(
                HOST,
                resetting.port,
                ssl=lab.client_ssl_context(),
                race_tls=race_tls,
                resolver=answers(resetting),
            )
    await assert_sockets_back_to(lab, before)


def test_a_descriptor_closed_behind_the_sockets_back_is_let_go_of() -> None:
    # The number the loop closed is another socket's now: the socket object
    # is detached, never closed, and the other socket stays open.
    sock, peer = socket.socketpair()
    identity = descriptor_identity(sock)
    os.close(sock.fileno())
    other = socket.socket()
    try:
        assert other.fileno() == sock.fileno()  # the lowest free number
        other_identity = descriptor_identity(other)
        let_go_if_closed_behind_its_back(sock, identity)
        assert sock.fileno() == -1
        # Its number still opens the other socket: nothing closed it.
        assert holds_its_own_descriptor(other, other_identity)
    finally:
        other.close()
        peer.close()


def test_a_socket_still_holding_its_own_descriptor_is_left_alone() -> None:
    sock, peer = socket.socketpair()
    with sock, peer:
        identity = descriptor_identity(sock)
        assert holds_its_own_descriptor(sock, identity)
        let_go_if_closed_behind_its_back(sock, identity)
        assert sock.fileno() != -1
        assert not holds_its_own_descriptor(peer, identity)


# -- the switch


async def test_race_tls_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="race_tls must be True or False, got str 'no'"):
        await open_connection("127.0.0.1", 1, ssl=True, race_tls="no")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="race_tls"):
        await create_connection(asyncio.Protocol, "127.0.0.1", 1, race_tls=None)  # type: ignore[arg-type]


# -- randomized: any mix of addresses, cut at any moment

KINDS = ("working", "silent", "hung", "untrusted", "refusing")


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    order=st.lists(st.sampled_from(KINDS), min_size=1, max_size=4),
    delay=st.sampled_from([0.001, 0.005, 0.02, None]),
    cancel_at=st.none() | st.floats(min_value=0, max_value=0.04),
)
def test_random_tls_races_cut_at_random_moments_leave_nothing(
    lab: Lab, other_lab: Lab, order: list[str], delay: float | None, cancel_at: Any
) -> None:
    # Every flavour per example. Invariants however the race ends: at most
    # one protocol made, the connection works if one was returned, every
    # socket closed (the conftest's run also fails on a task left pending or
    # on anything reported to the loop's exception handler).
    endpoints = random_lab_endpoints(lab, other_lab)
    context = lab.client_ssl_context()
    race = [endpoints[kind] for kind in order]
    for flavour in FLAVOURS:
        run_on_loop(
            random_tls_race(lab, other_lab, race, delay, cancel_at, context), flavour
        )


def random_lab_endpoints(lab: Lab, other_lab: Lab) -> dict[str, Endpoint]:
    """One endpoint of each kind, made once per lab (hypothesis runs every
    example of a test with the same fixtures)."""
    endpoints: dict[str, Endpoint] | None = getattr(lab, "random_endpoints", None)
    if endpoints is None:
        endpoints = {
            "working": lab.working("127.0.0.5", tls=True, greeting=GREETING),
            "silent": lab.working("127.0.0.6", tls=True, after_greeting="hold"),
            "hung": lab.hung_tls("127.0.0.4"),
            "untrusted": other_lab.working("127.0.0.7", tls=True),
            "refusing": lab.refusing("127.0.0.8"),
        }
        lab.random_endpoints = endpoints  # type: ignore[attr-defined]
    return endpoints


async def random_tls_race(
    lab: Lab,
    other_lab: Lab,
    endpoints: list[Endpoint],
    delay: float | None,
    cancel_at: float | None,
    context: ssl.SSLContext,
) -> None:
    before = open_fds(lab, other_lab)
    made: list[Recorder] = []

    def factory() -> Recorder:
        made.append(Recorder())
        return made[-1]

    connected: tuple[Any, Any] | None = None
    try:
        async with asyncio.timeout(cancel_at if cancel_at is not None else 5):
            connected = await create_connection(
                factory,
                HOST,
                endpoints[0].port,
                ssl=context,
                delay=delay,
                ssl_handshake_timeout=0.5,
                resolver=answers(*endpoints),
            )
    except (TimeoutError, OSError):
        pass
    assert len(made) <= 1
    if connected is not None:
        transport, protocol = connected
        assert made == [protocol]
        assert transport.get_extra_info("peername")[0] in ("127.0.0.5", "127.0.0.6")
        transport.abort()
        await asyncio.wait_for(protocol.lost, 5)
    await assert_sockets_back_to(lab, before, other_lab)
