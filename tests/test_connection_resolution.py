"""Connecting through the default resolver, with lookups that misbehave.

The lab's scripted ``getaddrinfo`` answers made-up names with lab endpoints,
each address family after its own delay or never; the connection goes
through :func:`~async_stagger.resolvers.concurrent_resolver` exactly as in
production, over real loopback sockets.
"""

from __future__ import annotations

import asyncio
import functools
import socket
from typing import Any

import pytest

from async_stagger.connection import create_connected_sock, open_connection
from async_stagger.resolvers import concurrent_resolver
from async_stagger.trace import TraceEvent
from lab import Lab, ipv6_loopback_available

needs_ipv6 = pytest.mark.skipif(
    not ipv6_loopback_available(), reason="this machine has no IPv6 loopback (::1)"
)


def resolver_for(getaddrinfo: Any, **options: Any) -> Any:
    return functools.partial(
        concurrent_resolver, getaddrinfo_async=getaddrinfo, **options
    )


@needs_ipv6
async def test_ipv6_lookup_never_answering_costs_only_the_resolution_delay(
    lab: Lab,
) -> None:
    v4 = lab.working(lab.ipv4_address())
    v6 = lab.working("::1")
    getaddrinfo = lab.getaddrinfo(
        {"dual.lab.test": [v6, v4]}, delays={socket.AF_INET6: None}
    )
    events: list[TraceEvent] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    _, writer = await open_connection(
        "dual.lab.test",
        80,
        resolver=resolver_for(getaddrinfo, resolution_delay=0.05),
        trace=events.append,
    )
    took = loop.time() - start
    assert writer.get_extra_info("peername") == v4.sockaddr
    writer.close()
    await writer.wait_closed()
    # RFC 8305 §3: A answered first, so wait up to the Resolution Delay for
    # AAAA, then connect with what is there; never the lookup's timeout.
    assert 0.05 - 0.002 <= took < 0.5
    started = [e for e in events if e.kind == "attempt_started"]
    assert [e.address for e in started] == [v4.sockaddr]
    assert started[0].time - start >= 0.05 - 0.002
    # The same trace callback saw the lookups: both started, IPv4 answered.
    lookups = {(e.kind, e.family) for e in events if e.kind.startswith("resolution")}
    assert ("resolution_started", socket.AF_INET6) in lookups
    assert ("resolution_started", socket.AF_INET) in lookups
    assert ("resolution_answered", socket.AF_INET) in lookups
    assert ("resolution_answered", socket.AF_INET6) not in lookups


@needs_ipv6
async def test_slow_ipv6_answer_joins_the_race_after_a_dead_ipv4(lab: Lab) -> None:
    dead_v4 = lab.blackholed(lab.ipv4_address())
    v6 = lab.working("::1")
    getaddrinfo = lab.getaddrinfo(
        {"dual.lab.test": [v6, dead_v4]}, delays={socket.AF_INET6: 0.1}
    )
    events: list[TraceEvent] = []
    sock = await create_connected_sock(
        "dual.lab.test",
        80,
        delay=0.05,
        resolver=resolver_for(getaddrinfo, resolution_delay=0.02),
        trace=events.append,
    )
    with sock:
        assert sock.getpeername()[:2] == v6.sockaddr[:2]
    # RFC 8305 §6: the late AAAA answer joined the addresses still to try.
    started = [e.address for e in events if e.kind == "attempt_started"]
    assert started == [dead_v4.sockaddr, v6.sockaddr]


async def test_both_lookups_failing_raise_gaierror(lab: Lab) -> None:
    getaddrinfo = lab.getaddrinfo({})
    with pytest.raises(socket.gaierror):
        await open_connection(
            "nowhere.lab.test", 80, resolver=resolver_for(getaddrinfo)
        )


async def test_both_lookups_failing_are_grouped_with_all_errors(lab: Lab) -> None:
    getaddrinfo = lab.getaddrinfo({})
    with pytest.raises(ExceptionGroup) as caught:
        await open_connection(
            "nowhere.lab.test",
            80,
            resolver=resolver_for(getaddrinfo),
            all_errors=True,
        )
    errors = caught.value.exceptions
    assert errors
    assert all(isinstance(error, socket.gaierror) for error in errors)
    for error in errors:
        assert "while resolving 'nowhere.lab.test' (port 80)" in error.__notes__


async def test_one_family_failing_is_no_error_while_the_other_works(
    lab: Lab,
) -> None:
    v4 = lab.working(lab.ipv4_address())
    getaddrinfo = lab.getaddrinfo(
        {"v4.lab.test": [v4]},
        errors={socket.AF_INET6: socket.gaierror(socket.EAI_NONAME, "no AAAA")},
    )
    _, writer = await open_connection(
        "v4.lab.test", 80, resolver=resolver_for(getaddrinfo)
    )
    assert writer.get_extra_info("peername") == v4.sockaddr
    writer.close()
    await writer.wait_closed()


@pytest.mark.virtual_clock
async def test_timeout_while_both_lookups_hang_leaves_nothing_behind(
    lab: Lab,
) -> None:
    getaddrinfo = lab.getaddrinfo(
        {"hang.lab.test": []},
        delays={socket.AF_INET: None, socket.AF_INET6: None},
    )
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(3):
            await open_connection(
                "hang.lab.test", 80, resolver=resolver_for(getaddrinfo)
            )
    assert loop.time() == pytest.approx(3, abs=1e-9)
    assert len(getaddrinfo.calls) == 2


async def test_async_stagger_0_4_keywords_still_work(lab: Lab) -> None:
    # 0.4 spelled the options delay, local_addrs, resolver (with its own
    # options bound by functools.partial) and raise_exc_group.
    server = lab.working(lab.ipv4_address())
    getaddrinfo = lab.getaddrinfo({"v4.lab.test": [server]})
    _, writer = await open_connection(
        "v4.lab.test",
        80,
        delay=0.1,
        local_addrs=[("127.0.0.11", 0)],
        resolver=resolver_for(getaddrinfo, first_addr_family_count=2),
        raise_exc_group=True,
    )
    assert writer.get_extra_info("peername") == server.sockaddr
    assert writer.get_extra_info("sockname")[0] == "127.0.0.11"
    writer.close()
    await writer.wait_closed()
