"""Randomized cancellation of the connection functions on real loopback
sockets, TLS included.

Each example is one connection to a made-up name whose addresses are lab
endpoints (working, refusing, blackholed, hung TLS) in a random order,
answered by the lab's scripted ``getaddrinfo`` after random delays per
family (no real name lookup), raced with a random Connection Attempt Delay
and cut by ``asyncio.timeout`` at a random moment: before the lookups
answer, during the race, during the TLS handshake, just after it, or never.
Whatever happened, afterwards: no task is left pending, the loop reported no
error, no warning was issued, the process holds the sockets it held before,
no reader or writer is left registered on the loop, and a plain connection
on the same loop still works. Each example gets a fresh loop of the flavour
(the flavours of ``loops.py``); the examples share the lab's endpoints.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import ssl
import time
import warnings
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import loops
from async_stagger.connection import (
    create_connected_sock,
    create_connection,
    open_connection,
)
from async_stagger.history import ConnectionHistory, set_shared_history
from async_stagger.resolvers import concurrent_resolver
from lab import Endpoint, Lab, ipv6_loopback_available
from test_connection import is_uvloop_ssl_cancellation_report

#: Examples per loop flavour: about 35 ms each, some 5 s per flavour.
EXAMPLES = 150

NAME = "race.lab.test"
KINDS = ("working", "refusing", "blackholed", "hung_tls")
HOSTS = ["127.0.0.1", "::1"] if ipv6_loopback_available() else ["127.0.0.1"]
FUNCTIONS = ("open_connection", "create_connection", "create_connected_sock")

#: Examples run, per flavour (reported by the test's last example).
examples_run: dict[str, int] = {}


@dataclasses.dataclass(frozen=True)
class Case:
    """One connection and the moment it is cut."""

    function: str
    tls: bool
    addresses: list[tuple[str, str]]  # (kind, host), in getaddrinfo order
    delay: float | None
    ipv6_lookup: float | None  # seconds until the AAAA answer; None: never
    ipv4_lookup: float | None
    cut_after: float


cases = st.builds(
    Case,
    function=st.sampled_from(FUNCTIONS),
    tls=st.booleans(),
    addresses=st.lists(
        st.tuples(st.sampled_from(KINDS), st.sampled_from(HOSTS)),
        min_size=1,
        max_size=4,
    ),
    delay=st.sampled_from([0.0, None, 0.002, 0.02, 0.25]),
    ipv6_lookup=st.sampled_from([0.0, 0.005, 0.03, None]),
    ipv4_lookup=st.sampled_from([0.0, 0.005, 0.03, None]),
    cut_after=st.one_of(
        st.just(0.0),
        st.floats(min_value=0.0, max_value=0.08, allow_nan=False),
    ),
)


class World:
    """The lab endpoints the examples connect to, one per kind and host."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.context = lab.client_ssl_context()
        self.plain: dict[tuple[str, str], Endpoint] = {}
        self.tls: dict[tuple[str, str], Endpoint] = {}
        for host in HOSTS:
            self.plain["working", host] = lab.working(host)
            self.tls["working", host] = lab.working(host, tls=True)
            for kind in ("refusing", "blackholed", "hung_tls"):
                endpoint = getattr(lab, kind)(host)
                self.plain[kind, host] = self.tls[kind, host] = endpoint
        self.check = lab.working("127.0.0.1")


def open_sockets(lab: Lab) -> int:
    """Sockets this process holds that are not the lab's (its listeners and
    its servers' side of each connection, which a server thread closes when
    it notices the client went away); exact while the lab's threads accept
    and close their sockets (``test_connection.open_fds`` counts the same way
    for several labs)."""
    return len(lab.other_sockets())


async def assert_sockets_back_to(lab: Lab, before: int) -> None:
    """Fail unless the count of open sockets returns to *before* within a
    generous moment (transports close their socket a loop pass after being
    told to; a leaked socket never closes)."""
    deadline = time.monotonic() + 2
    count = open_sockets(lab)
    while count != before and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
        count = open_sockets(lab)
    assert count == before, lab.other_sockets()


def registered_fds(loop: asyncio.AbstractEventLoop) -> set[int] | None:
    """The descriptors a selector loop watches; None for other loops."""
    selector = getattr(loop, "_selector", None)
    if selector is None:
        return None
    return set(selector.get_map())


async def connect(world: World, case: Case) -> None:
    """Make the connection of *case*; close whatever it returns."""
    endpoints = world.tls if case.tls else world.plain
    lookup = world.lab.getaddrinfo(
        {NAME: [endpoints[address] for address in case.addresses]},
        delays={
            socket.AF_INET6: case.ipv6_lookup,
            socket.AF_INET: case.ipv4_lookup,
        },
    )
    options: dict[str, Any] = {
        "delay": case.delay,
        "resolver": partial(concurrent_resolver, getaddrinfo_async=lookup),
    }
    if case.function == "create_connected_sock":
        sock = await create_connected_sock(NAME, 80, **options)
        sock.close()
        return
    if case.tls:
        options["ssl"] = world.context
    if case.function == "open_connection":
        _, writer = await open_connection(NAME, 80, **options)
        writer.transport.abort()
    else:
        transport, _ = await create_connection(asyncio.Protocol, NAME, 80, **options)
        transport.abort()


async def example(world: World, case: Case) -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []

    def record(_: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if not is_uvloop_ssl_cancellation_report(context):  # upstream's own
            errors.append(context)

    loop.set_exception_handler(record)
    sockets_before = open_sockets(world.lab)
    watched_before = registered_fds(loop)
    try:
        async with asyncio.timeout(case.cut_after):
            await connect(world, case)
    except (TimeoutError, OSError, ssl.SSLError):
        pass  # cut, or every attempt failed: both are fine outcomes

    me = asyncio.current_task()
    assert [task for task in asyncio.all_tasks() if task is not me] == []
    await assert_sockets_back_to(world.lab, sockets_before)
    assert registered_fds(loop) == watched_before
    # The loop is still good for plain connections.
    reader, writer = await open_connection(world.check.host, world.check.port)
    writer.write(b"ping")
    assert await reader.readexactly(4) == b"ping"
    writer.transport.abort()
    await assert_sockets_back_to(world.lab, sockets_before)
    assert errors == []


def run_example(world: World, case: Case, flavour: str) -> None:
    # Each example with a history of its own: what one example's connections
    # learned would reorder the next one's, and an example must replay alike.
    previous = set_shared_history(ConnectionHistory())
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with asyncio.Runner(loop_factory=loops.loop_factory(flavour)) as runner:
                runner.run(example(world, case))
    finally:
        set_shared_history(previous)
    assert [str(warning.message) for warning in caught] == []


@pytest.mark.parametrize("flavour", loops.FLAVOURS)
def test_cancelled_connections_leave_nothing_behind(lab: Lab, flavour: str) -> None:
    world = World(lab)
    examples_run[flavour] = 0

    # The examples share the lab: its endpoints serve every example alike.
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,
    )
    @given(case=cases)
    def check(case: Case) -> None:
        examples_run[flavour] += 1
        run_example(world, case, flavour)

    check()
    assert examples_run[flavour] >= EXAMPLES // 2
