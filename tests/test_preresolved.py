"""start_connection: Happy Eyeballs to addresses already resolved, on real
loopback sockets of the lab."""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from typing import Any

import pytest

from async_stagger import TraceEvent, start_connection
from lab import Endpoint, Lab, ipv6_loopback_available

QUICK = 2.0  # real seconds; a blackholed address would hang for minutes


def started(events: list[TraceEvent]) -> list[Any]:
    return [e.address[0] for e in events if e.kind == "attempt_started"]


async def test_blackholed_first_address_costs_one_delay_then_the_next_wins(
    blackholed: Endpoint, working: Endpoint
) -> None:
    start = time.monotonic()
    sock = await start_connection(
        [blackholed.addrinfo, working.addrinfo], happy_eyeballs_delay=0.1
    )
    took = time.monotonic() - start
    with sock:
        assert sock.getpeername() == working.sockaddr
        assert sock.getblocking() is False
    assert 0.09 <= took < QUICK


async def test_without_a_delay_a_refused_address_is_followed_by_the_next(
    refusing: Endpoint, working: Endpoint
) -> None:
    events: list[TraceEvent] = []
    sock = await start_connection(
        [refusing.addrinfo, working.addrinfo], trace=events.append
    )
    with sock:
        assert sock.getpeername() == working.sockaddr
    assert [e.kind for e in events] == [
        "attempt_started",
        "attempt_failed",
        "attempt_started",
        "attempt_succeeded",
    ]


async def test_with_a_delay_a_refused_address_starts_the_next_at_once(
    refusing: Endpoint, working: Endpoint
) -> None:
    start = time.monotonic()
    sock = await start_connection(
        [refusing.addrinfo, working.addrinfo], happy_eyeballs_delay=30.0
    )
    sock.close()
    assert time.monotonic() - start < QUICK  # not the 30 s delay


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no ::1 here")
async def test_addresses_are_sorted_by_rfc6724_unless_asked_not_to(lab: Lab) -> None:
    port = lab.free_port()
    v4 = lab.working("127.0.0.1", port)
    v6 = lab.working("::1", port)
    # RFC 6724 §2.1: ::1 has precedence 50, IPv4 35: IPv6 loopback first.
    sorted_sock = await start_connection([v4.addrinfo, v6.addrinfo])
    with sorted_sock:
        assert sorted_sock.getpeername()[0] == "::1"
    as_given = await start_connection([v4.addrinfo, v6.addrinfo], sort=False)
    with as_given:
        assert as_given.getpeername()[0] == "127.0.0.1"


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no ::1 here")
async def test_a_delay_interleaves_families_and_interleave_sets_the_lead(
    lab: Lab,
) -> None:
    port = lab.free_port()
    v4a = lab.refusing(lab.ipv4_address(), port)
    v4b = lab.refusing(lab.ipv4_address(), port)
    v6 = lab.refusing("::1", port)
    infos = [v4a.addrinfo, v4b.addrinfo, v6.addrinfo]
    for interleave, expected in [
        (None, [v4a.host, "::1", v4b.host]),
        (2, [v4a.host, v4b.host, "::1"]),
    ]:
        events: list[TraceEvent] = []
        with pytest.raises(OSError, match="Multiple exceptions"):
            await start_connection(
                infos,
                happy_eyeballs_delay=0.25,
                interleave=interleave,
                sort=False,
                trace=events.append,
            )
        assert started(events) == expected, interleave
    # No delay, no interleave: the order given.
    events = []
    with pytest.raises(OSError):
        await start_connection(infos, sort=False, trace=events.append)
    assert started(events) == [v4a.host, v4b.host, "::1"]


async def test_errors_that_differ_are_listed_with_their_common_errno(
    lab: Lab,
) -> None:
    first = lab.refusing(lab.ipv4_address())
    second = lab.refusing(lab.ipv4_address())
    with pytest.raises(OSError) as info:
        await start_connection([first.addrinfo, second.addrinfo])
    assert info.value.errno == errno.ECONNREFUSED
    assert str(info.value).startswith(f"[Errno {errno.ECONNREFUSED}] Multiple")
    assert first.host in str(info.value)
    assert second.host in str(info.value)


async def test_a_single_failure_is_raised_as_it_is(refusing: Endpoint) -> None:
    with pytest.raises(ConnectionRefusedError):
        await start_connection([refusing.addrinfo])


async def test_empty_addr_infos_and_bad_numbers_fail_before_any_attempt() -> None:
    with pytest.raises(ValueError, match="addr_infos must not be empty"):
        await start_connection([])
    info = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 1))
    with pytest.raises(ValueError, match="happy_eyeballs_delay"):
        await start_connection([info], happy_eyeballs_delay=-1)
    with pytest.raises(TypeError, match="interleave"):
        await start_connection([info], interleave="1")  # type: ignore[arg-type]


async def test_each_attempt_binds_to_a_local_address_of_its_family(
    working: Endpoint, lab: Lab
) -> None:
    local = lab.ipv4_address()
    v6_local = (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", 0, 0, 0))
    v4_local = (socket.AF_INET, socket.SOCK_STREAM, 6, "", (local, 0))
    sock = await start_connection(
        [working.addrinfo], local_addr_infos=[v6_local, v4_local]
    )
    with sock:
        assert sock.getsockname()[0] == local


async def test_no_local_address_of_the_family_fails_the_attempt(
    working: Endpoint,
) -> None:
    v6_local = (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", 0, 0, 0))
    with pytest.raises(OSError, match="no matching local address"):
        await start_connection([working.addrinfo], local_addr_infos=[v6_local])


async def test_the_socket_factory_makes_every_socket(
    refusing: Endpoint, working: Endpoint
) -> None:
    asked: list[Any] = []

    def factory(info: Any) -> socket.socket:
        asked.append(info)
        sock = socket.socket(info[0], info[1], info[2])
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return sock

    sock = await start_connection(
        [refusing.addrinfo, working.addrinfo], socket_factory=factory
    )
    with sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert asked == [refusing.addrinfo, working.addrinfo]


async def test_cancelling_the_race_closes_every_socket_it_opened(
    lab: Lab,
) -> None:
    port = lab.free_port()
    holes = [lab.blackholed(lab.ipv4_address(), port) for _ in range(3)]
    task = asyncio.ensure_future(
        start_connection([h.addrinfo for h in holes], happy_eyeballs_delay=0.01)
    )
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The suite's descriptor census fails the test if a socket is left open.


async def test_the_socket_becomes_a_transport_as_aiohappyeyeballs_documents(
    working: Endpoint,
) -> None:
    sock = await start_connection([working.addrinfo])
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(b"ping\n")
    assert await reader.readline() == b"ping\n"
    writer.close()
    await writer.wait_closed()
