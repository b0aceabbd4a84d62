"""The Happy Eyeballs event loops, with the clients that use them.

Each test runs its own loop (the selector one and, when installed, the
uvloop one) through ``asyncio.Runner``, as a program would. Host names go
through the lab's scripted ``getaddrinfo``, handed to the loop as its
resolver's lookup: no real name lookup is made.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from functools import partial
from typing import Any

import pytest

from async_stagger import TraceEvent, concurrent_resolver, eventloop
from async_stagger.connection import NOT_GIVEN
from async_stagger.eventloop import (
    HappyEyeballsEventLoop,
    happy_eyeballs_uvloop_class,
    loop_factory,
    new_event_loop,
    new_uvloop_event_loop,
)
from lab import Endpoint, FakeGetaddrinfo, Lab
from loops import uvloop

FACTORIES = ["selector"] + (["uvloop"] if uvloop is not None else [])

#: Generous real-time bound for "did not wait for a TCP timeout": a blackholed
#: address costs one connection attempt delay (0.25 s), a TCP timeout minutes.
QUICK = 2.0


def run(
    coro: Coroutine[Any, Any, Any],
    flavour: str,
    *,
    getaddrinfo: FakeGetaddrinfo | None = None,
    trace: Callable[[TraceEvent], None] | None = None,
) -> Any:
    """Run *coro* on a Happy Eyeballs loop of *flavour*, as a program would,
    failing on errors the loop reported."""
    resolver = (
        concurrent_resolver
        if getaddrinfo is None
        else partial(concurrent_resolver, getaddrinfo_async=getaddrinfo)
    )
    factory = loop_factory(uvloop=flavour == "uvloop", resolver=resolver, trace=trace)
    errors: list[dict[str, Any]] = []

    async def main() -> Any:
        asyncio.get_running_loop().set_exception_handler(
            lambda loop, context: errors.append(context)
        )
        return await coro

    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(main())
    assert errors == []
    return result


def attempts(events: list[TraceEvent]) -> list[Any]:
    return [e.address[0] for e in events if e.kind == "attempt_started"]


@pytest.fixture
def dual(lab: Lab) -> tuple[Endpoint, Endpoint]:
    """A blackholed address and a working echo server, on one port."""
    port = lab.free_port()
    return (
        lab.blackholed(lab.ipv4_address(), port),
        lab.working(lab.ipv4_address(), port),
    )


# -- the loops themselves -----------------------------------------------------


def test_new_event_loop_makes_a_selector_loop_with_our_create_connection() -> None:
    loop = new_event_loop()
    try:
        assert isinstance(loop, HappyEyeballsEventLoop)
        assert isinstance(loop, asyncio.SelectorEventLoop)
    finally:
        loop.close()


@pytest.mark.skipif(uvloop is None, reason="uvloop is not installed")
def test_uvloop_loop_is_a_uvloop_loop_with_our_create_connection() -> None:
    assert uvloop is not None
    loop = new_uvloop_event_loop()
    try:
        assert isinstance(loop, uvloop.Loop)
        assert type(loop) is happy_eyeballs_uvloop_class()
    finally:
        loop.close()


def test_loop_factory_checks_its_defaults_at_once() -> None:
    with pytest.raises(ValueError, match="delay"):
        loop_factory(delay=-1)
    with pytest.raises(TypeError, match="resolver"):
        loop_factory(resolver=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="trace"):
        loop_factory(trace=42)  # type: ignore[arg-type]


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.run(loop_factory=)")
def test_asyncio_run_takes_new_event_loop_as_its_loop_factory(
    working: Endpoint,
) -> None:
    async def main() -> str:
        assert isinstance(asyncio.get_running_loop(), HappyEyeballsEventLoop)
        reader, writer = await asyncio.open_connection(working.host, working.port)
        writer.write(b"ping\n")
        line = await reader.readline()
        writer.close()
        await writer.wait_closed()
        return line.decode()

    run_with_factory: Any = asyncio.run  # 3.11's signature has no loop_factory
    assert run_with_factory(main(), loop_factory=new_event_loop) == "ping\n"


# -- the two plain calls' shortcuts ------------------------------------------


class _RecordingBase(asyncio.SelectorEventLoop):
    """A base loop whose create_connection only records how it was called."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def create_connection(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.calls.append((args, kwargs))


class _RecordingLoop(eventloop._HappyEyeballsMixin, _RecordingBase):
    pass


def test_a_socket_handed_over_reaches_the_base_loop_as_the_general_path_sends_it() -> (
    None
):
    loop = _RecordingLoop()
    sock = socket.socket()
    try:
        # The hand-over's shortcut: sock and nothing else, or keywords left
        # at their defaults (given or not), then calls it does not take.
        loop.create_connection(asyncio.Protocol, sock=sock)
        loop.create_connection(
            asyncio.Protocol, sock=sock, family=0, proto=0, flags=0, ssl=None,
            all_errors=False, delay=0.1, trace=print,
        )  # fmt: skip
        loop.create_connection(asyncio.Protocol, sock=sock, family=socket.AF_INET)
        loop.create_connection(asyncio.Protocol, sock=sock, family=None)
        loop.create_connection(asyncio.Protocol, sock=sock, ssl_handshake_timeout=5)
        loop.create_connection(asyncio.Protocol, sock=sock, all_errors=True)
    finally:
        sock.close()
        loop.close()
    assert loop.calls == [
        ((asyncio.Protocol, None, None), {"sock": sock}),
        ((asyncio.Protocol, None, None), {"sock": sock}),
        ((asyncio.Protocol, None, None), {"sock": sock, "family": socket.AF_INET}),
        ((asyncio.Protocol, None, None), {"sock": sock}),
        ((asyncio.Protocol, None, None), {"sock": sock, "ssl_handshake_timeout": 5}),
        ((asyncio.Protocol, None, None), {"sock": sock, "all_errors": True}),
    ]


def test_a_plain_call_reaches_create_connection_with_the_general_paths_arguments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = inspect.signature(eventloop.create_connection)
    received: list[dict[str, Any]] = []

    def record(*args: Any, **kwargs: Any) -> None:
        bound = real.bind(*args, **kwargs)
        bound.apply_defaults()
        received.append(dict(bound.arguments))

    monkeypatch.setattr(eventloop, "create_connection", record)
    calls: list[dict[str, Any]] = [
        {},
        {"family": socket.AF_INET, "proto": 6, "flags": socket.AI_ADDRCONFIG},
        {"family": socket.AF_INET6},
        {"family": socket.AF_UNSPEC, "ssl": None, "delay": NOT_GIVEN, "trace": None},
    ]
    for keywords in calls:
        # A loop without defaults takes the shortcut; one made by
        # loop_factory() (defaults equal to none, in an object of their own)
        # takes the general path.
        for loop in (new_event_loop(), loop_factory()()):
            try:
                loop.create_connection(asyncio.Protocol, "a.lab.test", 80, **keywords)
            finally:
                loop.close()
    assert len(received) == 2 * len(calls)
    for shortcut, general in zip(received[::2], received[1::2], strict=True):
        assert shortcut == general


# -- asyncio streams ----------------------------------------------------------


@pytest.mark.parametrize("flavour", FACTORIES)
def test_open_connection_on_the_loop_skips_a_blackholed_first_address(
    flavour: str, lab: Lab, dual: tuple[Endpoint, Endpoint]
) -> None:
    blackholed, working = dual
    names = lab.getaddrinfo({"dual.lab.test": [blackholed, working]})
    events: list[TraceEvent] = []

    async def main() -> tuple[str, float]:
        start = time.monotonic()
        _, writer = await asyncio.open_connection("dual.lab.test", working.port)
        took = time.monotonic() - start
        peer = writer.get_extra_info("peername")[0]
        writer.close()
        await writer.wait_closed()
        return peer, took

    peer, took = run(main(), flavour, getaddrinfo=names, trace=events.append)
    assert peer == working.host
    assert attempts(events) == [blackholed.host, working.host]
    assert took < QUICK


@pytest.mark.parametrize("flavour", FACTORIES)
def test_open_connection_on_the_loop_moves_on_from_a_refused_address_at_once(
    flavour: str, lab: Lab
) -> None:
    port = lab.free_port()
    refusing = lab.refusing(lab.ipv4_address(), port)
    working = lab.working(lab.ipv4_address(), port)
    names = lab.getaddrinfo({"dual.lab.test": [refusing, working]})
    events: list[TraceEvent] = []

    async def main() -> str:
        # With a delay no timer would end in time, only the refusal can
        # start the second attempt.
        _, writer = await asyncio.open_connection(
            "dual.lab.test", port, happy_eyeballs_delay=30.0
        )
        peer: str = writer.get_extra_info("peername")[0]
        writer.close()
        await writer.wait_closed()
        return peer

    assert run(main(), flavour, getaddrinfo=names, trace=events.append) == (
        working.host
    )
    assert [e.kind for e in events if e.kind.startswith("attempt")] == [
        "attempt_started",
        "attempt_failed",
        "attempt_started",
        "attempt_succeeded",
    ]


@pytest.mark.parametrize("flavour", FACTORIES)
def test_tls_through_the_loop_checks_the_certificate_of_the_winner(
    flavour: str, lab: Lab
) -> None:
    port = lab.free_port()
    blackholed = lab.blackholed(lab.ipv4_address(), port)
    working = lab.working(
        lab.ipv4_address(), port, tls=True, tls_names=["tls.lab.test"]
    )
    names = lab.getaddrinfo({"tls.lab.test": [blackholed, working]})
    context = lab.client_ssl_context()
    events: list[TraceEvent] = []

    async def main() -> str:
        reader, writer = await asyncio.open_connection(
            "tls.lab.test", port, ssl=context
        )
        assert writer.get_extra_info("ssl_object") is not None
        writer.write(b"secret\n")
        line = await reader.readline()
        writer.close()
        await writer.wait_closed()
        return line.decode()

    assert run(main(), flavour, getaddrinfo=names, trace=events.append) == "secret\n"
    # The winner won by its TLS handshake (the TLS-aware race).
    winner = next(e.index for e in events if e.kind == "attempt_succeeded")
    assert [e.kind for e in events if e.index == winner][-3:] == [
        "tls_started",
        "tls_succeeded",
        "attempt_succeeded",
    ]


@pytest.mark.parametrize("flavour", FACTORIES)
def test_a_call_can_bring_its_own_trace_and_delay(
    flavour: str, lab: Lab, dual: tuple[Endpoint, Endpoint]
) -> None:
    blackholed, working = dual
    names = lab.getaddrinfo({"dual.lab.test": [blackholed, working]})
    loop_events: list[TraceEvent] = []
    call_events: list[TraceEvent] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(
            asyncio.Protocol,
            "dual.lab.test",
            working.port,
            delay=0.05,
            trace=call_events.append,
        )
        transport.close()

    run(main(), flavour, getaddrinfo=names, trace=loop_events.append)
    assert loop_events == []
    assert attempts(call_events) == [blackholed.host, working.host]
    started = [e.time for e in call_events if e.kind == "attempt_started"]
    assert started[1] - started[0] < 0.25  # the call's delay, not the default


@pytest.mark.parametrize("flavour", FACTORIES)
def test_a_connected_sock_goes_to_the_base_loop_untouched(
    flavour: str, working: Endpoint
) -> None:
    events: list[TraceEvent] = []

    async def main() -> str:
        sock = socket.create_connection((working.host, working.port))
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"as is\n")
        line = await reader.readline()
        writer.close()
        await writer.wait_closed()
        return line.decode()

    assert run(main(), flavour, trace=events.append) == "as is\n"
    assert events == []  # no race, no resolver


@pytest.mark.parametrize("flavour", FACTORIES)
def test_a_keyword_unknown_to_us_goes_to_the_base_loop(
    flavour: str, working: Endpoint
) -> None:
    events: list[TraceEvent] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with pytest.raises(TypeError, match="no_such_keyword"):
            await loop.create_connection(
                asyncio.Protocol, working.host, working.port, no_such_keyword=1
            )

    run(main(), flavour, trace=events.append)
    assert events == []


@pytest.mark.parametrize("flavour", FACTORIES)
def test_a_non_ip_family_goes_to_the_base_loop(flavour: str, tmp_path: Any) -> None:
    events: list[TraceEvent] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        # AF_UNIX is no Happy Eyeballs matter: the base loop answers the call
        # with its own error for a family it cannot resolve host names in.
        with pytest.raises((OSError, ValueError)):
            await loop.create_connection(
                asyncio.Protocol, "127.0.0.1", 1, family=socket.AF_UNIX
            )

    run(main(), flavour, trace=events.append)
    assert events == []


@pytest.mark.parametrize("flavour", FACTORIES)
def test_failure_through_the_loop_is_our_error_naming_each_address(
    flavour: str, lab: Lab
) -> None:
    port = lab.free_port()
    first = lab.refusing(lab.ipv4_address(), port)
    second = lab.refusing(lab.ipv4_address(), port)
    names = lab.getaddrinfo({"gone.lab.test": [first, second]})

    async def main() -> None:
        with pytest.raises(OSError) as info:
            await asyncio.open_connection("gone.lab.test", port)
        assert first.host in str(info.value)
        assert second.host in str(info.value)

    run(main(), flavour, getaddrinfo=names)


# -- websockets ---------------------------------------------------------------


@pytest.mark.parametrize("flavour", FACTORIES)
def test_websockets_reconnect_loop_keeps_working_past_a_blackholed_address(
    flavour: str, lab: Lab
) -> None:
    ws_server = pytest.importorskip("websockets.asyncio.server")
    ws_client = pytest.importorskip("websockets.asyncio.client")
    exceptions = pytest.importorskip("websockets.exceptions")
    host = lab.ipv4_address()
    events: list[TraceEvent] = []

    async def main() -> list[str]:
        served = 0

        async def handler(ws: Any) -> None:
            nonlocal served
            served += 1
            await ws.send(f"hello {served}")
            await ws.close()  # every connection ends: the client reconnects

        async with ws_server.serve(handler, host, 0) as server:
            port = server.sockets[0].getsockname()[1]
            blackholed = lab.blackholed(lab.ipv4_address(), port)
            working = Endpoint(socket.AF_INET, host, port)
            names.names["ws.lab.test"] = [blackholed, working]
            greetings: list[str] = []
            async for ws in ws_client.connect(
                f"ws://ws.lab.test:{port}/", reconnect_delays=lambda: iter([0.0] * 5)
            ):
                try:
                    greetings.append(await ws.recv())
                    await ws.recv()
                except exceptions.ConnectionClosed:
                    if len(greetings) == 2:
                        break
                    continue
        return greetings

    names = lab.getaddrinfo({})
    assert run(main(), flavour, getaddrinfo=names, trace=events.append) == [
        "hello 1",
        "hello 2",
    ]
    # The first connection raced past the blackholed address; the reconnect,
    # with the connection history knowing it unanswered, went straight to
    # the working one.
    tried = attempts(events)
    assert len(tried) == 3
    assert tried[0] != host
    assert tried[1:] == [host, host]
    assert [e.kind for e in events].count("attempt_succeeded") == 2


# -- redis.asyncio against a real redis-server ------------------------------------


def redis_server_binary() -> str:
    """redis-py and the redis-server binary, or the test is skipped (in CI,
    which installs both, failed)."""
    pytest.importorskip("redis.asyncio")
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (.ci/run installs it)")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    return binary


@pytest.fixture
def redis_server(lab: Lab) -> Iterator[Endpoint]:
    """A redis-server on a loopback address of its own: no persistence, no
    protected mode to trip over, stopped at teardown."""
    binary = redis_server_binary()
    host = lab.ipv4_address()
    port = lab.free_port()
    # No persistence, in the foreground, only on its loopback address.
    argv = [binary, "--bind", host, "--port", str(port), "--save", ""]
    argv += ["--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"]
    process = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((host, port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    assert process.stderr is not None
                    error = process.stderr.read()
                    pytest.fail(f"redis-server did not start: {error!r}")
                time.sleep(0.02)
        yield Endpoint(socket.AF_INET, host, port)
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()


@pytest.mark.parametrize("flavour", FACTORIES)
def test_redis_client_skips_a_blackholed_address_of_its_server(
    flavour: str, lab: Lab, redis_server: Endpoint
) -> None:
    import redis.asyncio

    blackholed = lab.blackholed(lab.ipv4_address(), redis_server.port)
    names = lab.getaddrinfo({"redis.lab.test": [blackholed, redis_server]})
    events: list[TraceEvent] = []

    async def main() -> tuple[Any, float]:
        client = redis.asyncio.Redis(host="redis.lab.test", port=redis_server.port)
        try:
            start = time.monotonic()
            await client.set("greeting", "hello")
            took = time.monotonic() - start
            value = await client.get("greeting")
            await client.delete("greeting")
        finally:
            await client.aclose()
        return value, took

    value, took = run(main(), flavour, getaddrinfo=names, trace=events.append)
    assert value == b"hello"
    assert took < QUICK
    assert attempts(events) == [blackholed.host, redis_server.host]


@pytest.mark.parametrize("flavour", FACTORIES)
def test_happy_eyeballs_delay_none_means_one_attempt_at_a_time_as_in_asyncio(
    flavour: str, lab: Lab, dual: tuple[Endpoint, Endpoint]
) -> None:
    blackholed, working = dual
    names = lab.getaddrinfo({"dual.lab.test": [blackholed, working]})
    events: list[TraceEvent] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.6):
                await loop.create_connection(
                    asyncio.Protocol,
                    "dual.lab.test",
                    working.port,
                    happy_eyeballs_delay=None,
                )

    run(main(), flavour, getaddrinfo=names, trace=events.append)
    # Past the default delay, and still only the blackholed address tried.
    assert attempts(events) == [blackholed.host]


@pytest.mark.parametrize("flavour", FACTORIES)
def test_loop_factory_delay_is_the_default_of_every_connection(
    flavour: str, lab: Lab, dual: tuple[Endpoint, Endpoint]
) -> None:
    blackholed, working = dual
    names = lab.getaddrinfo({"dual.lab.test": [blackholed, working]})
    resolver = partial(concurrent_resolver, getaddrinfo_async=names)
    events: list[TraceEvent] = []
    factory = loop_factory(
        uvloop=flavour == "uvloop", resolver=resolver, trace=events.append, delay=0.05
    )

    async def main() -> None:
        _, writer = await asyncio.open_connection("dual.lab.test", working.port)
        writer.close()
        await writer.wait_closed()

    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
    started = [e.time for e in events if e.kind == "attempt_started"]
    assert len(started) == 2
    assert started[1] - started[0] < 0.2  # 0.05 s, not the 0.25 s default
