"""The connection functions' arguments: asyncio's keywords, and bad input.

Bad input must fail before any network activity: every test here uses a
resolver that records being called, and asserts it never was.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest

from async_stagger import defaults
from async_stagger.connection import (
    NOT_GIVEN,
    create_connected_sock,
    create_connection,
    open_connection,
)
from async_stagger.trace import TraceEvent
from lab import Lab, ipv6_loopback_available


class RecordingResolver:
    """A resolver that must not be reached."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, host: Any, port: Any, **options: Any) -> AsyncIterator[Any]:
        self.calls.append((host, port, options))
        return self._nothing()

    async def _nothing(self) -> AsyncIterator[Any]:
        for item in ():
            yield item


# -- asyncio's keywords ---------------------------------------------------------------


def asyncio_create_connection_parameters() -> dict[str, inspect.Parameter]:
    parameters = dict(
        inspect.signature(asyncio.BaseEventLoop.create_connection).parameters
    )
    del parameters["self"]
    return parameters


@pytest.mark.parametrize("ours", [create_connection, open_connection])
def test_every_create_connection_keyword_of_this_python_is_accepted(
    ours: Any,
) -> None:
    mine = inspect.signature(ours).parameters
    for name, theirs in asyncio_create_connection_parameters().items():
        if name == "protocol_factory" and ours is open_connection:
            continue
        assert name in mine, f"{ours.__name__} lacks asyncio's {name!r}"
        assert mine[name].kind == theirs.kind, name
        if name == "happy_eyeballs_delay":
            # None is a value here (one at a time, as in asyncio); left out
            # means RFC 8305's delay.
            assert mine[name].default is NOT_GIVEN
            continue
        assert mine[name].default == theirs.default, name


def test_open_connection_takes_limit_like_asyncio() -> None:
    theirs = inspect.signature(asyncio.open_connection).parameters
    mine = inspect.signature(open_connection).parameters
    assert mine["limit"].default == theirs["limit"].default
    assert mine["limit"].kind == inspect.Parameter.KEYWORD_ONLY
    assert list(mine)[:2] == ["host", "port"]
    assert mine["host"].default is None
    assert mine["port"].default is None


@pytest.mark.parametrize("ours", [create_connection, open_connection])
def test_signatures_are_explicit_without_catch_all_keywords(ours: Any) -> None:
    kinds = {p.kind for p in inspect.signature(ours).parameters.values()}
    assert inspect.Parameter.VAR_KEYWORD not in kinds
    assert inspect.Parameter.VAR_POSITIONAL not in kinds


async def test_every_asyncio_keyword_at_its_default_connects(lab: Lab) -> None:
    server = lab.working("127.0.0.1")
    keywords = {
        name: parameter.default
        for name, parameter in asyncio_create_connection_parameters().items()
        if parameter.kind == inspect.Parameter.KEYWORD_ONLY
    }
    reader, writer = await open_connection(
        server.host, server.port, limit=2**10, **keywords
    )
    writer.write(b"ping\n")
    assert await asyncio.wait_for(reader.readline(), 5) == b"ping\n"
    writer.close()
    await writer.wait_closed()


async def test_a_positive_int_subclass_is_a_limit_as_in_asyncio(lab: Lab) -> None:
    class Size(int):
        pass

    server = lab.working("127.0.0.1")
    reader, writer = await open_connection(server.host, server.port, limit=Size(7))
    assert reader._limit == 7  # type: ignore[attr-defined]
    writer.close()
    await writer.wait_closed()


async def test_unknown_keyword_is_a_type_error_before_any_socket() -> None:
    resolver = RecordingResolver()
    with pytest.raises(TypeError, match="happy_eyeball_delay"):
        await open_connection(
            "example.test",
            80,
            resolver=resolver,
            happy_eyeball_delay=0.1,  # type: ignore[call-arg]
        )
    assert resolver.calls == []


async def test_happy_eyeballs_delay_is_the_delay(lab: Lab) -> None:
    dead = lab.blackholed("127.0.0.3")
    server = lab.working("127.0.0.5")
    events: list[TraceEvent] = []

    async def resolver(host: Any, port: Any, **_: Any) -> AsyncIterator[Any]:
        yield dead.addrinfo
        yield server.addrinfo

    transport, _ = await create_connection(
        asyncio.Protocol,
        "example.test",
        0,
        happy_eyeballs_delay=0.05,
        resolver=resolver,
        trace=events.append,
    )
    transport.close()
    await asyncio.sleep(0)
    started = [e.time for e in events if e.kind == "attempt_started"]
    assert len(started) == 2
    # uvloop's clock counts whole milliseconds.
    assert 0.05 - 0.002 <= started[1] - started[0] < 0.5


async def test_interleave_is_the_first_address_family_count() -> None:
    resolver = RecordingResolver()
    with pytest.raises(OSError, match="empty list"):
        await open_connection("example.test", 80, interleave=2, resolver=resolver)
    [(_, _, options)] = resolver.calls
    assert options["first_addr_family_count"] == 2


async def test_resolver_gets_only_the_options_asked_for() -> None:
    resolver = RecordingResolver()
    with pytest.raises(OSError, match="empty list"):
        await open_connection(
            "example.test", 80, family=socket.AF_INET, resolver=resolver
        )
    [(host, port, options)] = resolver.calls
    assert (host, port) == ("example.test", 80)
    assert options == {
        "family": socket.AF_INET,
        "type": socket.SOCK_STREAM,
        "proto": 0,
        "flags": 0,
    }


async def test_all_errors_asks_the_resolver_for_a_group() -> None:
    resolver = RecordingResolver()
    with pytest.raises(ExceptionGroup):
        await open_connection("example.test", 80, all_errors=True, resolver=resolver)
    [(_, _, options)] = resolver.calls
    assert options["raise_exc_group"] is True


async def test_loop_may_be_the_running_loop(lab: Lab) -> None:
    server = lab.working("127.0.0.1")
    _, writer = await open_connection(
        server.host, server.port, loop=asyncio.get_running_loop()
    )
    writer.close()
    await writer.wait_closed()


async def test_loop_other_than_the_running_one_is_a_runtime_error() -> None:
    other = asyncio.new_event_loop()
    try:
        with pytest.raises(RuntimeError, match="not the running event loop"):
            await open_connection("127.0.0.1", 80, loop=other)
    finally:
        other.close()


async def test_loop_that_is_no_loop_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="loop must be the running event loop"):
        await create_connection(asyncio.Protocol, "127.0.0.1", 80, loop="loop")  # type: ignore[arg-type]


async def test_sock_skips_happy_eyeballs(lab: Lab) -> None:
    server = lab.working("127.0.0.1")
    sock = socket.create_connection(server.sockaddr)
    sock.setblocking(False)
    events: list[TraceEvent] = []
    reader, writer = await open_connection(sock=sock, trace=events.append)
    assert writer.get_extra_info("socket").fileno() == sock.fileno()
    writer.write(b"ping\n")
    assert await asyncio.wait_for(reader.readline(), 5) == b"ping\n"
    writer.close()
    await writer.wait_closed()
    assert events == []


# -- bad input -------------------------------------------------------------------------


BAD_CALLS: list[tuple[str, dict[str, Any], type[BaseException], str]] = [
    ("port above range", {"port": 70000}, OverflowError, "70000"),
    ("negative port", {"port": -1}, OverflowError, "-1"),
    ("numeric string port above range", {"port": "65536"}, OverflowError, "65536"),
    ("float port", {"port": 80.0}, TypeError, "80.0"),
    ("bool port", {"port": True}, TypeError, "True"),
    ("empty host", {"host": ""}, socket.gaierror, "host must not be empty"),
    ("empty bytes host", {"host": b""}, socket.gaierror, "host must not be empty"),
    ("host of a wrong type", {"host": 127}, TypeError, "127"),
    ("host with a NUL", {"host": "a.test\x00b"}, ValueError, "NUL"),
    ("bytes host with a NUL", {"host": b"a.test\x00b"}, ValueError, "NUL"),
    ("negative delay", {"delay": -0.1}, ValueError, "-0.1"),
    ("NaN delay", {"delay": math.nan}, ValueError, "nan"),
    ("negative happy_eyeballs_delay", {"happy_eyeballs_delay": -1}, ValueError, "-1"),
    ("NaN happy_eyeballs_delay", {"happy_eyeballs_delay": math.nan}, ValueError, "nan"),
    ("delay of a wrong type", {"delay": "0.1"}, TypeError, "'0.1'"),
    (
        "two different delays",
        {"delay": 0.1, "happy_eyeballs_delay": 0.2},
        TypeError,
        "give one",
    ),
    ("negative interleave", {"interleave": -2}, ValueError, "-2"),
    ("fractional interleave", {"interleave": 1.5}, TypeError, "1.5"),
    ("family of a wrong type", {"family": "inet"}, TypeError, "'inet'"),
    ("server_hostname without ssl", {"server_hostname": "a.test"}, ValueError, "ssl"),
    (
        "ssl_handshake_timeout without ssl",
        {"ssl_handshake_timeout": 1.0},
        ValueError,
        "ssl_handshake_timeout",
    ),
    (
        "ssl_shutdown_timeout without ssl",
        {"ssl_shutdown_timeout": 1.0},
        ValueError,
        "ssl_shutdown_timeout",
    ),
    ("ssl of a wrong type", {"ssl": "yes"}, TypeError, "'yes'"),
    (
        "ssl with no host to check",
        {"host": None, "ssl": True},
        ValueError,
        "server_hostname",
    ),
    ("neither host, port nor sock", {"host": None, "port": None}, ValueError, "sock"),
    ("local_addrs as a string", {"local_addrs": "127.0.0.1"}, TypeError, "local_addrs"),
    (
        "local_addrs item not a tuple",
        {"local_addrs": ["127.0.0.1"]},
        TypeError,
        "'127.0.0.1'",
    ),
    ("empty local_addrs", {"local_addrs": []}, ValueError, "local_addrs is empty"),
    ("local_addr not a pair", {"local_addr": "127.0.0.1"}, TypeError, "local_addr"),
    (
        "local_addr port out of range",
        {"local_addr": ("127.0.0.1", 70000)},
        OverflowError,
        "70000",
    ),
    ("limit 0", {"limit": 0}, ValueError, "limit"),
    ("resolver not callable", {"resolver": "dns"}, TypeError, "resolver"),
]


@pytest.mark.parametrize(
    ("keywords", "error", "message"),
    [case[1:] for case in BAD_CALLS],
    ids=[case[0] for case in BAD_CALLS],
)
async def test_bad_input_fails_before_any_network_activity(
    keywords: dict[str, Any], error: type[BaseException], message: str
) -> None:
    resolver = RecordingResolver()
    events: list[TraceEvent] = []
    arguments: dict[str, Any] = {
        "host": "example.test",
        "port": 80,
        "resolver": resolver,
        "trace": events.append,
    }
    arguments.update(keywords)
    if keywords.get("resolver") == "dns":
        arguments["resolver"] = "dns"
    with pytest.raises(error, match=message_pattern(message)):
        await open_connection(**arguments)
    assert resolver.calls == []
    assert [e.kind for e in events if e.kind != "connection_failed"] == []


async def test_a_protocol_factory_that_cannot_be_called_is_named() -> None:
    resolver = RecordingResolver()
    with pytest.raises(TypeError, match="protocol_factory must be callable, got 'x'"):
        await create_connection("x", "example.test", 80, resolver=resolver)  # type: ignore[arg-type]
    assert resolver.calls == []


async def test_a_trace_that_cannot_be_called_is_named() -> None:
    resolver = RecordingResolver()
    with pytest.raises(TypeError, match="trace must be callable or None, got 'x'"):
        await open_connection("example.test", 80, resolver=resolver, trace="x")  # type: ignore[arg-type]
    assert resolver.calls == []


@pytest.mark.parametrize(
    "host", ["127.0.0.1\x00.example.com", b"127.0.0.1\x00.example.com", "\x00"]
)
async def test_host_with_a_nul_is_refused_by_every_connection_function(
    lab: Lab, host: Any
) -> None:
    # The C name ends at the NUL: resolving it would connect to 127.0.0.1,
    # not to the host named. Refused as asyncio refuses it, before any
    # lookup, on the default resolver's path too.
    server = lab.working("127.0.0.1")
    calls = [
        lambda: open_connection(host, server.port),
        lambda: create_connection(asyncio.Protocol, host, server.port),
        lambda: create_connected_sock(host, server.port),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="embedded null character"):
            await call()


def message_pattern(message: str) -> str:
    import re

    return re.escape(message)


@pytest.mark.parametrize(
    ("keywords", "error"),
    [
        ({"port": 65536}, OverflowError),
        ({"host": ""}, socket.gaierror),
        ({"delay": -1}, ValueError),
        ({"delay": math.nan}, ValueError),
        ({"local_addrs": [("127.0.0.1",)]}, TypeError),
    ],
)
async def test_create_connected_sock_checks_its_input_too(
    keywords: dict[str, Any], error: type[BaseException]
) -> None:
    resolver = RecordingResolver()
    arguments: dict[str, Any] = {"host": "example.test", "port": 80}
    arguments.update(keywords)
    with pytest.raises(error):
        await create_connected_sock(resolver=resolver, **arguments)
    assert resolver.calls == []


async def test_ssl_socket_as_sock_is_a_type_error() -> None:
    context = ssl.create_default_context()
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    wrapped = context.wrap_socket(
        raw, server_hostname="a.test", do_handshake_on_connect=False
    )
    with wrapped, pytest.raises(TypeError, match="SSLSocket"):
        await create_connection(
            asyncio.Protocol, sock=wrapped, ssl=context, server_hostname="a.test"
        )
    raw.close()


async def test_datagram_sock_is_a_value_error() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
        pytest.raises(ValueError, match="A Stream Socket was expected"),
    ):
        await create_connection(asyncio.Protocol, sock=sock)


async def test_sock_with_host_is_a_value_error() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock,
        pytest.raises(ValueError, match="host/port and sock"),
    ):
        await create_connection(asyncio.Protocol, "127.0.0.1", 80, sock=sock)


async def test_service_name_ports_are_left_to_the_resolver() -> None:
    resolver = RecordingResolver()
    with pytest.raises(OSError, match="empty list"):
        await open_connection("example.test", "https", resolver=resolver)
    assert resolver.calls[0][1] == "https"


@pytest.mark.parametrize(
    "function", [create_connected_sock, create_connection, open_connection]
)
def test_delays_left_out_default_to_a_sentinel_that_is_not_none(
    function: Any,
) -> None:
    parameters = inspect.signature(function).parameters
    assert parameters["delay"].default is NOT_GIVEN
    assert parameters["happy_eyeballs_delay"].default is NOT_GIVEN
    assert defaults.CONNECTION_ATTEMPT_DELAY == 0.25


async def test_resolver_returning_a_bare_async_iterator_works(lab: Lab) -> None:
    server = lab.working(lab.ipv4_address())

    class Answers:
        """An async iterator with no aclose()."""

        def __init__(self) -> None:
            self.left = [server.addrinfo]

        def __aiter__(self) -> Answers:
            return self

        async def __anext__(self) -> Any:
            if not self.left:
                raise StopAsyncIteration
            return self.left.pop()

    sock = await create_connected_sock(
        "example.test", 0, resolver=lambda host, port, **_: Answers()
    )
    with sock:
        assert sock.getpeername() == server.sockaddr


@pytest.mark.skipif(
    not ipv6_loopback_available(), reason="this machine has no IPv6 loopback (::1)"
)
@pytest.mark.parametrize(
    ("interleave", "families"),
    [(None, [6, 4, 6, 4]), (2, [6, 6, 4, 4])],
)
async def test_interleave_orders_the_default_resolvers_addresses(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, interleave: Any, families: list[int]
) -> None:
    # Through the default resolver, on the system-lookup path: every address
    # refuses at once, the trace shows the order they were tried in.
    answers = {
        socket.AF_INET6: [lab.refusing("::1"), lab.refusing("::1")],
        socket.AF_INET: [lab.refusing("127.0.0.1"), lab.refusing("127.0.0.1")],
    }

    async def getaddrinfo(host: Any, port: Any, *, family: int = 0, **_: Any) -> Any:
        return [endpoint.addrinfo for endpoint in answers[family]]

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    events: list[TraceEvent] = []
    with pytest.raises(OSError):
        await open_connection(
            "example.test", 80, interleave=interleave, trace=events.append
        )
    started = [e.address for e in events if e.kind == "attempt_started"]
    assert [6 if ":" in a[0] else 4 for a in started if a] == families
