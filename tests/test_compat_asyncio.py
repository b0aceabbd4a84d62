"""Values asyncio's connection functions accept mean the same here, and the
three connection functions take the same connection keywords.

Where a test compares with asyncio it runs asyncio itself on this machine:
IP literals (no lookup) or names answered by a fake ``loop.getaddrinfo``.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from async_stagger import connection
from async_stagger.connection import (
    NOT_GIVEN,
    create_connected_sock,
    create_connection,
    open_connection,
)
from async_stagger.trace import TraceEvent
from lab import Endpoint, Lab, ipv6_loopback_available

#: The connection keywords all three functions share.
CONNECTION_KEYWORDS = [
    "family",
    "proto",
    "flags",
    "local_addr",
    "happy_eyeballs_delay",
    "interleave",
    "all_errors",
    "local_addrs",
    "delay",
    "resolver",
    "raise_exc_group",
    "trace",
]


def test_the_three_functions_share_one_set_of_connection_keywords() -> None:
    signatures = [
        inspect.signature(function).parameters
        for function in (create_connected_sock, create_connection, open_connection)
    ]
    for name in CONNECTION_KEYWORDS:
        kinds = {parameters[name].kind for parameters in signatures}
        defaults = {repr(parameters[name].default) for parameters in signatures}
        annotations = {str(parameters[name].annotation) for parameters in signatures}
        assert kinds == {inspect.Parameter.KEYWORD_ONLY}, name
        assert len(defaults) == 1, (name, defaults)
        assert len(annotations) == 1, (name, annotations)


async def test_create_connected_sock_takes_asyncios_connection_keywords(
    lab: Lab,
) -> None:
    server = lab.working("127.0.0.1")
    sock = await create_connected_sock(
        server.host,
        server.port,
        local_addr=("127.0.0.7", 0),
        happy_eyeballs_delay=0.1,
        interleave=2,
        all_errors=True,
    )
    with sock:
        assert sock.getpeername() == server.sockaddr
        assert sock.getsockname()[0] == "127.0.0.7"


async def test_all_errors_on_create_connected_sock_raises_the_group(
    lab: Lab,
) -> None:
    dead = lab.refusing("127.0.0.1")
    with pytest.raises(ExceptionGroup):
        await create_connected_sock(dead.host, dead.port, all_errors=True)


# -- delays ----------------------------------------------------------------------


def two_addresses(dead: Endpoint, server: Endpoint) -> Any:
    async def resolver(host: Any, port: Any, **_: Any) -> AsyncIterator[Any]:
        yield dead.addrinfo
        yield server.addrinfo

    return resolver


async def attempt_starts(
    lab: Lab, function: Any, **options: Any
) -> tuple[list[float], bool]:
    """When the attempts started (seconds after the first), and whether the
    connection was made within 5 s, for a blackholed first address and a
    working second."""
    dead, server = lab.blackholed("127.0.0.3"), lab.working("127.0.0.5")
    events: list[TraceEvent] = []
    arguments: list[Any] = ["h.test", 0]
    if function is create_connection:
        arguments.insert(0, asyncio.Protocol)
    try:
        result = await asyncio.wait_for(
            function(
                *arguments,
                resolver=two_addresses(dead, server),
                trace=events.append,
                **options,
            ),
            5,
        )
    except TimeoutError:
        connected = False
    else:
        connected = True
        if isinstance(result, socket.socket):
            result.close()
        elif isinstance(result[1], asyncio.StreamWriter):
            result[1].close()
            await result[1].wait_closed()
        else:
            result[0].close()
            await asyncio.sleep(0)
    started = [e.time for e in events if e.kind == "attempt_started"]
    return [t - started[0] for t in started], connected


FUNCTIONS = [create_connected_sock, create_connection, open_connection]


@pytest.mark.virtual_clock
@pytest.mark.parametrize("function", FUNCTIONS)
async def test_delays_left_out_stagger_by_the_rfc_delay(
    lab: Lab, function: Any
) -> None:
    starts, connected = await attempt_starts(lab, function)
    assert connected
    assert starts == [0.0, pytest.approx(0.25)]


@pytest.mark.virtual_clock
@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("name", ["delay", "happy_eyeballs_delay"])
async def test_a_delay_of_none_tries_one_address_at_a_time(
    lab: Lab, function: Any, name: str
) -> None:
    # async_stagger 0.4's delay=None, and asyncio's happy_eyeballs_delay=None
    # (base_events.create_connection: "not using happy eyeballs").
    starts, connected = await attempt_starts(lab, function, **{name: None})
    assert not connected
    assert starts == [0.0]


@pytest.mark.virtual_clock
@pytest.mark.parametrize("function", FUNCTIONS)
async def test_happy_eyeballs_delay_sets_the_delay(lab: Lab, function: Any) -> None:
    starts, connected = await attempt_starts(lab, function, happy_eyeballs_delay=0.1)
    assert connected
    assert starts == [0.0, pytest.approx(0.1)]


@pytest.mark.parametrize(
    ("delay", "happy_eyeballs_delay"), [(0.1, 0.2), (None, 0.25), (0.25, None)]
)
async def test_delays_given_twice_must_agree(
    delay: Any, happy_eyeballs_delay: Any
) -> None:
    for function in FUNCTIONS:
        arguments: list[Any] = ["h.test", 80]
        if function is create_connection:
            arguments.insert(0, asyncio.Protocol)
        with pytest.raises(TypeError, match="give one"):
            await function(
                *arguments, delay=delay, happy_eyeballs_delay=happy_eyeballs_delay
            )


def test_not_given_is_not_none() -> None:
    assert NOT_GIVEN is not None
    assert repr(NOT_GIVEN) == "NOT_GIVEN"


# -- values asyncio means something by -----------------------------------------------


def on_asyncios_loop() -> bool:
    """Whether the running loop is asyncio's own: uvloop has a
    ``create_connection`` of its own (no *interleave*, lookups in C), so
    there is nothing of asyncio's to compare with."""
    return "uvloop" not in type(asyncio.get_running_loop()).__module__


async def asyncio_error(**options: Any) -> BaseException:
    try:
        _, writer = await asyncio.open_connection(**options)
    except BaseException as exc:
        return exc
    writer.close()  # pragma: no cover
    raise AssertionError("asyncio connected")  # pragma: no cover


@pytest.mark.parametrize("port", ["70000", "65536", b"70000", "-1", 70000, -1])
async def test_a_port_out_of_range_is_an_overflow_error_as_in_asyncio(
    port: Any,
) -> None:
    theirs = await asyncio_error(host="127.0.0.1", port=port)
    if not on_asyncios_loop():
        # uvloop's own resolution wraps a numeric string above 65535 (70000
        # is port 4464, where nothing listens): refused here all the same.
        assert type(theirs) in (OverflowError, ConnectionRefusedError)
    else:
        assert type(theirs) is OverflowError
    for function in FUNCTIONS:
        arguments: list[Any] = ["127.0.0.1", port]
        if function is create_connection:
            arguments.insert(0, asyncio.Protocol)
        with pytest.raises(OverflowError, match=repr(port).replace("-", r"\-")):
            await function(*arguments)


@pytest.mark.parametrize("host", ["", b""])
async def test_an_empty_host_is_a_gaierror_as_in_asyncio_without_a_lookup(
    monkeypatch: pytest.MonkeyPatch, host: Any
) -> None:
    looked_up: list[Any] = []

    async def getaddrinfo(host: Any, port: Any, **_: Any) -> Any:
        # What the system's getaddrinfo answers for an empty name.
        looked_up.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    if on_asyncios_loop():
        theirs = await asyncio_error(host=host, port=80)
        assert type(theirs) is socket.gaierror
        assert looked_up == [host]  # asyncio asks getaddrinfo
        looked_up.clear()
    for function in FUNCTIONS:
        arguments: list[Any] = [host, 80]
        if function is create_connection:
            arguments.insert(0, asyncio.Protocol)
        with pytest.raises(socket.gaierror) as caught:
            await function(*arguments)
        assert caught.value.errno == socket.EAI_NONAME
    assert looked_up == []  # we know the answer without asking


@pytest.mark.skipif(not ipv6_loopback_available(), reason="needs ::1")
async def test_interleave_0_keeps_getaddrinfos_order_as_asyncio_does(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every address refuses at once; the order they were tried in shows.
    endpoints = [
        lab.refusing("::1"),
        lab.refusing("::1"),
        lab.refusing("127.0.0.1"),
        lab.refusing("127.0.0.1"),
    ]
    getaddrinfo = lab.getaddrinfo({"mixed.test": endpoints})
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    ports = [endpoint.port for endpoint in endpoints]
    if on_asyncios_loop():
        theirs = await asyncio_error(host="mixed.test", port=80, interleave=0)
        message = str(theirs)
        assert sorted(ports, key=lambda port: message.index(f", {port}")) == ports

    for function in FUNCTIONS:
        events: list[TraceEvent] = []
        arguments: list[Any] = ["mixed.test", 80]
        if function is create_connection:
            arguments.insert(0, asyncio.Protocol)
        with pytest.raises(OSError):
            await function(*arguments, interleave=0, trace=events.append)
        tried = [
            e.address[1] for e in events if e.kind == "attempt_started" if e.address
        ]
        assert tried == ports, function.__name__

    # Left out, the families alternate (RFC 8305 §4).
    events = []
    with pytest.raises(OSError):
        await open_connection("mixed.test", 80, trace=events.append)
    tried = [e.address[1] for e in events if e.kind == "attempt_started" if e.address]
    assert tried == [ports[0], ports[2], ports[1], ports[3]]


async def test_a_negative_interleave_is_refused_though_asyncio_takes_it(
    lab: Lab,
) -> None:
    server = lab.working("127.0.0.1")
    if on_asyncios_loop():
        _, writer = await asyncio.open_connection(
            server.host, server.port, interleave=-1
        )
        writer.close()
        await writer.wait_closed()
    with pytest.raises(ValueError, match="at least 0, got -1"):
        await open_connection(server.host, server.port, interleave=-1)


# -- what a custom resolver is passed -------------------------------------------------


def test_a_resolvers_signature_is_read_once() -> None:
    from async_stagger import _resolver_keywords

    reads: list[Any] = []
    read = _resolver_keywords._read_signature

    def counting(resolver: Any) -> frozenset[str]:
        reads.append(resolver)
        return read(resolver)

    async def resolver(host: Any, port: Any, **_: Any) -> AsyncIterator[Any]:
        yield  # pragma: no cover

    original = _resolver_keywords._read_signature
    _resolver_keywords._read_signature = counting
    try:
        for _ in range(3):
            taken = _resolver_keywords.extra_keywords_taken(resolver)
    finally:
        _resolver_keywords._read_signature = original
    assert taken == _resolver_keywords.EXTRA_KEYWORDS
    assert reads == [resolver]


def test_what_a_resolver_declares_is_what_it_gets() -> None:
    from async_stagger._resolver_keywords import extra_keywords_taken

    def contract_04(
        host: Any, port: Any, *, family: int = 0, type: int = 0, proto: int = 0,
        flags: int = 0,
    ) -> Any:  # fmt: skip
        pass  # pragma: no cover

    def with_count(host: Any, port: Any, *, first_addr_family_count: int = 1) -> Any:
        pass  # pragma: no cover

    assert extra_keywords_taken(contract_04) == frozenset()
    assert extra_keywords_taken(with_count) == {"first_addr_family_count"}
    assert extra_keywords_taken(len) == frozenset()  # no signature to read
    assert extra_keywords_taken(connection.concurrent_resolver) == {
        "first_addr_family_count",
        "raise_exc_group",
        "nat64",
    }
