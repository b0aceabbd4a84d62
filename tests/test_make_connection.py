"""A connection to one IP address takes no race, and ends as the race would.

With one address and nothing that needs the race (no tracer, no local
addresses, no TLS race), the connection is that address's attempt alone, and
on uvloop ``open_connection`` leaves it to uvloop's own ``create_connection``.
Each test makes the same connection both ways on real loopback sockets and
compares what a caller can see: a tracer forces the race (it changes nothing
else), and a spy on the race shows which way each went. Each test runs on
every loop flavour, and on the Happy Eyeballs uvloop loop, whose own
``create_connection`` hands a connected socket on to uvloop's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import loops
from async_stagger import _direct_answer, _loop_abilities, _make_connection
from async_stagger.connection import (
    create_connected_sock,
    create_connection,
    open_connection,
)
from async_stagger.history import SHARED, ConnectionHistory, shared_history
from async_stagger.trace import LOGGER, tracing
from lab import Endpoint, Lab, Namespace, ipv6_loopback_available

pytestmark = pytest.mark.also_on_happy_eyeballs_uvloop

#: The flavours of the tests that start a program of their own.
FLAVOURS = loops.FLAVOURS + (["happy_eyeballs_uvloop"] if loops.uvloop else [])

needs_ipv6 = pytest.mark.skipif(
    not ipv6_loopback_available(), reason="this machine has no IPv6 loopback (::1)"
)

Connect = Callable[..., Awaitable[Any]]


class Spy:
    """Counts the connections that raced and those uvloop made by address."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.races = 0
        self.by_address = 0
        race = _make_connection._race_on_loop
        by_address = _make_connection._open_by_address

        def counted_race(*args: Any, **kwargs: Any) -> Any:
            self.races += 1
            return race(*args, **kwargs)

        def counted_by_address(*args: Any, **kwargs: Any) -> Any:
            self.by_address += 1
            return by_address(*args, **kwargs)

        monkeypatch.setattr(_make_connection, "_race_on_loop", counted_race)
        monkeypatch.setattr(_make_connection, "_open_by_address", counted_by_address)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    return Spy(monkeypatch)


def answers(*endpoints: Endpoint) -> Any:
    """A resolver of our own answering *endpoints* at once (the race)."""

    async def resolver(host: Any, port: Any, **_: Any) -> Any:
        for endpoint in endpoints:
            yield endpoint.addrinfo

    return resolver


def program_path() -> str:
    """PYTHONPATH for a program of a test's own: this suite's helpers and the
    async_stagger under test."""
    package = Path(_make_connection.__file__).parents[1]
    return os.pathsep.join([str(Path(__file__).parent), str(package)])


def on_uvloop() -> bool:
    """Whether the running loop is uvloop's (a Happy Eyeballs one included)."""
    return loops.uvloop is not None and isinstance(
        asyncio.get_running_loop(), loops.uvloop.Loop
    )


def traced() -> dict[str, Any]:
    """The keyword that sends a connection through the race."""
    return {"trace": lambda event: None}


async def open_sock(host: str, port: int, **options: Any) -> socket.socket:
    return await create_connected_sock(host, port, **options)


async def open_stream(host: str, port: int, **options: Any) -> Any:
    return await open_connection(host, port, **options)


async def open_transport(host: str, port: int, **options: Any) -> Any:
    return await create_connection(asyncio.Protocol, host, port, **options)


FUNCTIONS = {
    "create_connected_sock": open_sock,
    "open_connection": open_stream,
    "create_connection": open_transport,
}


def describe_error(exc: BaseException) -> Any:
    """What a caller can see of a failure: its type, errno, words and notes,
    and the same of each exception in a group."""
    if isinstance(exc, BaseExceptionGroup):
        return (
            type(exc),
            str(exc),
            [describe_error(inner) for inner in exc.exceptions],
            getattr(exc, "__notes__", None),
        )
    return (
        type(exc),
        getattr(exc, "errno", None),
        str(exc),
        getattr(exc, "__notes__", None),
    )


async def failure_of(connect: Connect, host: str, port: int, **options: Any) -> Any:
    try:
        result = await connect(host, port, **options)
    except BaseException as exc:
        return describe_error(exc)
    await close(result)
    pytest.fail(f"connecting to {host} port {port} succeeded")


async def close(result: Any) -> None:
    if isinstance(result, socket.socket):
        result.close()
    elif isinstance(result, tuple) and isinstance(result[1], asyncio.StreamWriter):
        result[1].close()
        await result[1].wait_closed()
    else:
        result[0].close()
        await asyncio.sleep(0)


def sock_of(result: Any) -> Any:
    if isinstance(result, socket.socket):
        return result
    transport = (
        result[1].transport
        if isinstance(result[1], asyncio.StreamWriter)
        else result[0]
    )
    return transport.get_extra_info("socket")


async def connection_of(connect: Connect, endpoint: Endpoint, **options: Any) -> Any:
    """What a caller can see of a connection: the peer, the local address's
    family, TCP_NODELAY, and the kinds of objects returned."""
    result = await connect(endpoint.host, endpoint.port, **options)
    try:
        sock = sock_of(result)
        seen = (
            sock.getpeername()[:2],
            sock.family,
            sock.type,
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0,
            type(sock),
            [type(part) for part in result] if isinstance(result, tuple) else None,
        )
        if isinstance(result, socket.socket):
            seen += (sock.getblocking(),)
        return seen
    finally:
        await close(result)


# -- which way a connection goes ------------------------------------------------


@pytest.mark.parametrize("name", FUNCTIONS)
async def test_a_lone_literal_takes_no_race_and_a_traced_one_does(
    lab: Lab, spy: Spy, name: str
) -> None:
    working = lab.working()
    connect = FUNCTIONS[name]
    await close(await connect(working.host, working.port))
    assert spy.races == 0
    by_address = name == "open_connection" and on_uvloop()
    assert spy.by_address == (1 if by_address else 0)
    await close(await connect(working.host, working.port, **traced()))
    assert spy.races == 1
    assert spy.by_address == (1 if by_address else 0)


async def test_two_addresses_and_local_addresses_still_race(lab: Lab, spy: Spy) -> None:
    working = lab.working()
    await close(
        await open_connection(
            working.host, working.port, local_addrs=[("127.0.0.1", 0)]
        )
    )
    await close(await open_connection("localhost", working.port, delay=0))
    assert spy.races == 2
    assert spy.by_address == 0


@needs_ipv6
async def test_an_ipv6_address_with_a_scope_id_is_not_given_to_uvloop(
    lab: Lab, spy: Spy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # uvloop's create_connection drops the scope id on its way to connect().
    # (getaddrinfo gives one only to link-local literals, which loopback has
    # none of: here it gives ::1 the loopback interface's, which Linux
    # ignores for an address that is not link-local.)
    working = lab.working("::1")
    system_getaddrinfo = socket.getaddrinfo

    def scoped(*args: Any) -> list[Any]:
        return [
            (*info[:4], (*info[4][:3], 1)) if len(info[4]) == 4 else info
            for info in system_getaddrinfo(*args)
        ]

    monkeypatch.setattr(socket, "getaddrinfo", scoped)
    _, writer = await open_connection("::1", working.port)
    writer.close()
    await writer.wait_closed()
    assert spy.by_address == 0
    assert spy.races == 0


# -- the same outcome as the race's ---------------------------------------------


@pytest.mark.parametrize("group", [False, True], ids=["oserror", "group"])
@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("host", ["127.0.0.2", "::1"])
async def test_a_refused_lone_literal_fails_as_the_race_fails(
    lab: Lab, spy: Spy, name: str, host: str, group: bool
) -> None:
    if ":" in host and not ipv6_loopback_available():
        pytest.skip("this machine has no IPv6 loopback (::1)")
    refusing = lab.refusing(host)
    connect = FUNCTIONS[name]
    options = {"raise_exc_group": group}
    alone = await failure_of(connect, refusing.host, refusing.port, **options)
    raced = await failure_of(
        connect, refusing.host, refusing.port, **options, **traced()
    )
    assert spy.races == 1
    assert alone == raced
    expected = (
        (ExceptionGroup, ConnectionRefusedError) if group else (ConnectionRefusedError,)
    )
    assert alone[0] is expected[0]


@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("host", ["127.0.0.2", "::1"])
async def test_a_connected_lone_literal_is_what_the_race_connects(
    lab: Lab, spy: Spy, name: str, host: str
) -> None:
    if ":" in host and not ipv6_loopback_available():
        pytest.skip("this machine has no IPv6 loopback (::1)")
    working = lab.working(host)
    connect = FUNCTIONS[name]
    alone = await connection_of(connect, working)
    raced = await connection_of(connect, working, **traced())
    assert spy.races == 1
    assert alone == raced
    assert alone[3] is True  # TCP_NODELAY, as asyncio's transports have it


@pytest.mark.parametrize("name", FUNCTIONS)
async def test_a_blackholed_lone_literal_times_out_as_the_race_does(
    lab: Lab, spy: Spy, name: str
) -> None:
    blackholed = lab.blackholed()
    connect = FUNCTIONS[name]
    me = asyncio.current_task()
    assert me is not None
    outcomes = []
    for options in ({}, traced()):
        try:
            async with asyncio.timeout(0.1):
                await connect(blackholed.host, blackholed.port, **options)
        except BaseException as exc:
            outcomes.append((describe_error(exc), me.cancelling()))
    assert spy.races == 1
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0][0] is TimeoutError
    assert outcomes[0][1] == 0


@pytest.mark.parametrize("name", FUNCTIONS)
async def test_a_cancelled_lone_literal_is_cancelled_as_the_race_is(
    lab: Lab, spy: Spy, name: str
) -> None:
    blackholed = lab.blackholed()
    connect = FUNCTIONS[name]
    outcomes = []
    for options in ({}, traced()):
        task = asyncio.ensure_future(
            connect(blackholed.host, blackholed.port, **options)
        )
        await asyncio.sleep(0.05)
        assert not task.done()  # the SYN was dropped: still connecting
        task.cancel("stop")
        try:
            await task
        except BaseException as exc:
            outcomes.append(describe_error(exc))
    assert spy.races == 1
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] is asyncio.CancelledError


@pytest.mark.parametrize("outcome", ["cancel_asked", "cancelled_error"])
async def test_a_connect_step_cancelling_its_caller_ends_as_in_the_race(
    lab: Lab, spy: Spy, monkeypatch: pytest.MonkeyPatch, outcome: str
) -> None:
    # A loop's own sock_connect that connects at once but cancels the task
    # meanwhile (the race raises the cancellation and closes the socket), or
    # raises CancelledError with nobody cancelling (the race reports it as
    # the attempt's failure).
    working = lab.working()
    loop = asyncio.get_running_loop()

    async def sock_connect(sock: socket.socket, address: Any) -> None:
        sock.setblocking(True)
        sock.connect(address)
        sock.setblocking(False)
        if outcome == "cancel_asked":
            me = asyncio.current_task()
            assert me is not None
            me.cancel()
        else:
            raise asyncio.CancelledError("not asked for")

    monkeypatch.setattr(loop, "sock_connect", sock_connect)
    outcomes = []
    for options in ({}, traced()):
        # In a task of its own: a cancel asked for stays asked for.
        task = asyncio.ensure_future(
            create_connected_sock(working.host, working.port, **options)
        )
        try:
            await task
        except asyncio.CancelledError as exc:
            outcomes.append((describe_error(exc), task.cancelling()))
    assert spy.races == 1
    assert len(outcomes) == 2
    assert outcomes[0] == outcomes[1]
    if outcome == "cancelled_error":
        # The attempt's failure, told with its address.
        assert outcomes[0][0][3] == [
            f"while connecting to {working.host}:{working.port}"
        ]


async def test_a_users_protocol_factory_is_called_only_once_connected(
    lab: Lab, spy: Spy
) -> None:
    # uvloop's create_connection calls the factory before connecting; only
    # open_connection's own factory is given to it.
    refusing = lab.refusing()
    made = []

    def factory() -> asyncio.Protocol:
        made.append(None)
        return asyncio.Protocol()

    with pytest.raises(ConnectionRefusedError):
        await create_connection(factory, refusing.host, refusing.port)
    assert made == []
    assert spy.races == 0


@pytest.mark.parametrize("ok", [True, False], ids=["connected", "refused"])
async def test_a_lone_literal_leaves_the_history_as_the_race_does(
    lab: Lab, spy: Spy, ok: bool
) -> None:
    # An IP literal is left out of the history, raced or not (the shared
    # one included); the same address from a resolver is recorded.
    endpoint = lab.working() if ok else lab.refusing()
    shared = shared_history()

    async def learned(**options: Any) -> int:
        history = options.setdefault("history", ConnectionHistory())
        try:
            await close(await open_connection(endpoint.host, endpoint.port, **options))
        except ConnectionRefusedError:
            assert not ok
        return len(shared if history is SHARED else history)

    assert await learned(history=SHARED) == 0  # the default
    assert await learned(**traced()) == 0
    assert await learned(history=shared) == 0
    assert spy.races == 1
    assert await learned(resolver=answers(endpoint)) == 1


# -- an error connect() gives at once ---------------------------------------------

# describe_error's fields, for a program of its own that prints them as JSON
# (a format string: no braces).
DESCRIBE_IN_PROGRAM = """
def describe(exc):
    notes = getattr(exc, "__notes__", None)
    if isinstance(exc, BaseExceptionGroup):
        inner = [describe(e) for e in exc.exceptions]
        return [type(exc).__name__, str(exc), inner, notes]
    return [type(exc).__name__, getattr(exc, "errno", None), str(exc), notes]
"""

UNREACHABLE_PROGRAM = (
    """
import asyncio, json
import loops
from async_stagger.connection import open_connection
"""
    + DESCRIBE_IN_PROGRAM
    + """

async def main():
    seen = []
    for options in ({{}}, {{"trace": lambda event: None}}):
        for group in (False, True):
            try:
                await open_connection("10.99.0.1", 80, raise_exc_group=group, **options)
            except Exception as exc:
                seen.append(describe(exc))
    print(json.dumps(seen))

with asyncio.Runner(loop_factory=loops.loop_factory({flavour!r})) as runner:
    runner.run(main())
"""
)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_an_error_connect_gives_at_once_reads_as_in_the_race(
    netns: Namespace, flavour: str
) -> None:
    # In a namespace with no route to 10.99.0.1, connect() fails at once with
    # ENETUNREACH (no packet is sent): the system's words, both ways.
    import json

    done = netns.run_python(
        textwrap.dedent(UNREACHABLE_PROGRAM.format(flavour=flavour)), timeout=30
    )
    assert done.returncode == 0, done.stderr
    alone, alone_group, raced, raced_group = json.loads(done.stdout)
    assert alone == raced
    assert alone_group == raced_group
    assert alone[0] == "OSError"
    assert "Connect call failed" not in alone[2]


# -- TLS ---------------------------------------------------------------------------


async def test_tls_on_a_lone_literal_without_a_tls_race_is_as_in_the_race(
    lab: Lab, spy: Spy
) -> None:
    # race_tls=False: TLS runs on the TCP winner, raced or alone.
    server = lab.working("127.0.0.5", tls=True)
    hung = lab.hung_tls("127.0.0.4")
    seen = []
    for options in ({}, traced()):
        _, writer = await open_connection(
            server.host,
            server.port,
            ssl=lab.client_ssl_context(),
            race_tls=False,
            **options,
        )
        seen.append(
            (
                writer.get_extra_info("peername")[:2],
                writer.get_extra_info("ssl_object") is not None,
            )
        )
        writer.close()
        await writer.wait_closed()
        try:
            await open_connection(
                hung.host,
                hung.port,
                ssl=lab.client_ssl_context(),
                server_hostname="localhost",
                ssl_handshake_timeout=0.1,
                race_tls=False,
                **options,
            )
        except (TimeoutError, ConnectionAbortedError) as exc:
            seen.append(describe_error(exc))
    assert spy.races == 2
    assert spy.by_address == 0
    assert seen[:2] == seen[2:]
    assert seen[0] == ((server.host, server.port), True)


async def test_a_tls_race_of_one_literal_still_races(lab: Lab, spy: Spy) -> None:
    server = lab.working("127.0.0.5", tls=True)
    _, writer = await open_connection(
        server.host, server.port, ssl=lab.client_ssl_context()
    )
    writer.close()
    await writer.wait_closed()
    assert spy.races == 1


# -- a literal connected to before ----------------------------------------------


@pytest.mark.parametrize("history", ["shared", "none", "own"])
async def test_a_literal_connected_to_before_goes_the_same_way_again(
    lab: Lab, spy: Spy, history: str
) -> None:
    # The first connection answers the literal with the resolver; the next
    # one finds it remembered (_direct_answer.lone_ipv4_literal).
    working = lab.working()
    option = {"shared": SHARED, "none": None, "own": ConnectionHistory()}[history]
    _direct_answer._ipv4_literals.clear()
    first = await connection_of(open_stream, working, history=option)
    assert working.host in _direct_answer._ipv4_literals
    again = await connection_of(open_stream, working, history=option)
    assert again == first
    assert spy.races == 0
    assert spy.by_address == (2 if on_uvloop() else 0)


async def test_a_literal_connected_to_before_still_has_its_history_checked(
    lab: Lab,
) -> None:
    working = lab.working()
    await close(await open_connection(working.host, working.port))
    assert working.host in _direct_answer._ipv4_literals
    with pytest.raises(TypeError, match="history must be a ConnectionHistory"):
        await open_connection(working.host, working.port, history="shared")  # type: ignore[arg-type]


# -- what the quick way asks again on each connection -------------------------


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("how", ["own_level", "root_level"])
async def test_a_logger_enabled_later_sends_the_next_connection_through_the_race(
    lab: Lab, spy: Spy, how: str
) -> None:
    # The quick way reads logging's own cache of isEnabledFor's answers,
    # which a level set later (on the logger or above it) empties.
    working = lab.working()
    records = Records()
    LOGGER.addHandler(records)
    logger = LOGGER if how == "own_level" else logging.getLogger()
    levels = (LOGGER.level, logger.level)
    try:
        await close(await open_stream(working.host, working.port))
        assert not LOGGER.isEnabledFor(logging.DEBUG)
        assert spy.races == 0
        logger.setLevel(logging.DEBUG)
        await close(await open_stream(working.host, working.port))
        assert spy.races == 1
        assert any("attempt #0" in message for message in records.messages)
        logging.disable(logging.DEBUG)
        try:
            await close(await open_stream(working.host, working.port))
        finally:
            logging.disable(logging.NOTSET)
        assert spy.races == 1
    finally:
        LOGGER.removeHandler(records)
        LOGGER.setLevel(levels[0])
        logger.setLevel(levels[1])


async def test_a_tracer_set_later_around_the_call_sends_it_through_the_race(
    lab: Lab, spy: Spy
) -> None:
    working = lab.working()
    await close(await open_stream(working.host, working.port))
    events: list[Any] = []
    with tracing(events.append):
        await close(await open_stream(working.host, working.port))
    assert spy.races == 1
    assert "attempt_succeeded" in [event.kind for event in events]
    await close(await open_stream(working.host, working.port))
    assert spy.races == 1


@pytest.mark.parametrize("method", ["create_connection", "sock_connect"])
async def test_a_method_put_on_the_loop_later_is_called_as_in_the_race(
    lab: Lab, spy: Spy, method: str
) -> None:
    # The loop's class is judged once; its instance's two methods are read
    # on every connection, so one a program puts there afterwards is used.
    working = lab.working()
    loop = asyncio.get_running_loop()
    await close(await open_stream(working.host, working.port))
    taken = spy.by_address
    assert taken == (1 if on_uvloop() else 0)
    calls: list[Any] = []
    original = getattr(loop, method)

    def own(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("sock") if method == "create_connection" else args[1])
        return original(*args, **kwargs)

    setattr(loop, method, own)
    try:
        await close(await open_stream(working.host, working.port))
    finally:
        delattr(loop, method)
    assert spy.by_address == taken
    if method == "create_connection":
        # As the race hands its winner over: a connected socket.
        assert len(calls) == 1
        assert isinstance(calls[0], socket.socket)
    else:
        assert calls == [(working.host, working.port)]
    await close(await open_stream(working.host, working.port))
    assert spy.by_address == taken + (1 if on_uvloop() else 0)


def test_only_uvloops_create_connection_or_one_handing_sockets_on_takes_it() -> None:
    if loops.uvloop is None:
        pytest.skip("uvloop is not installed")
    from async_stagger.eventloop import happy_eyeballs_uvloop_class

    uvloop_own = loops.uvloop.Loop.create_connection

    class OwnConnect(loops.uvloop.Loop):  # type: ignore[misc,name-defined]
        async def create_connection(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("not to be called")

    class OwnBelow(happy_eyeballs_uvloop_class(), OwnConnect):  # type: ignore[misc]
        pass

    for cls, expected in [
        (loops.uvloop.Loop, uvloop_own),
        (happy_eyeballs_uvloop_class(), uvloop_own),
        (OwnConnect, None),
        # The Happy Eyeballs create_connection hands sockets on to
        # OwnConnect's, not to uvloop's.
        (OwnBelow, None),
    ]:
        loop = cls()
        try:
            assert _loop_abilities.uvloop_create_connection(loop) is expected, cls
        finally:
            loop.close()


# -- an error before connect() ---------------------------------------------------

NO_DESCRIPTOR_PROGRAM = (
    """
import asyncio, json, os, resource, socket
import loops
from async_stagger.connection import open_connection
"""
    + DESCRIBE_IN_PROGRAM
    + """

async def main():
    taken = []
    seen = []
    try:
        while True:  # every descriptor the limit allows, taken
            taken.append(os.dup(0))
    except OSError:
        pass
    try:
        for options in ({{}}, {{"trace": lambda event: None}}):
            try:
                await open_connection("127.0.0.2", {port}, **options)
            except Exception as exc:
                seen.append(describe(exc))
    finally:
        for fd in taken:
            os.close(fd)
    print(json.dumps(seen))

_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
with asyncio.Runner(loop_factory=loops.loop_factory({flavour!r})) as runner:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    runner.run(main())
"""
)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_an_error_making_the_socket_reads_as_in_the_race(flavour: str) -> None:
    # No descriptor left for the socket (EMFILE): nothing is sent; the
    # system's words both ways, as an error of connect() itself.
    done = subprocess.run(
        [sys.executable, "-c", NO_DESCRIPTOR_PROGRAM.format(flavour=flavour, port=9)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": program_path()},
    )
    assert done.returncode == 0, done.stderr
    alone, raced = json.loads(done.stdout)
    assert alone == raced
    assert alone[1] == 24  # EMFILE
    assert "Connect call failed" not in alone[2]


FIRST_TRACER_PROGRAM = """
import asyncio, json, socket
import loops
from async_stagger import _make_connection, trace
from async_stagger.connection import open_connection

races = []
race = _make_connection._race_on_loop

def counted(*args, **kwargs):
    races.append(None)
    return race(*args, **kwargs)

_make_connection._race_on_loop = counted

async def main():
    server = socket.create_server(("127.0.0.2", 0))
    port = server.getsockname()[1]
    seen = []

    async def connect():
        _, writer = await open_connection("127.0.0.2", port)
        writer.close()
        await writer.wait_closed()

    await connect()
    await connect()
    seen.append(["untraced", len(races), bool(trace._ever_traced)])
    events = []
    with trace.tracing(events.append):
        # Started inside the block, run after it: its context keeps the tracer.
        task = asyncio.get_running_loop().create_task(asyncio.sleep(0))
        later = asyncio.get_running_loop().create_task(connect())
        task.cancel()
    await asyncio.sleep(0)
    await later
    seen.append(["task of the block", len(races), len(events) > 0])
    await connect()
    seen.append(["untraced again", len(races)])
    server.close()
    print(json.dumps(seen))

with asyncio.Runner(loop_factory=loops.loop_factory({flavour!r})) as runner:
    runner.run(main())
"""


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_the_first_tracer_of_the_process_reaches_a_task_started_in_its_block(
    flavour: str,
) -> None:
    # Until a tracer is first set, nobody can be tracing, and the variable is
    # not even asked; a task that a tracing block started keeps its tracer
    # after the block ends.
    done = subprocess.run(
        [sys.executable, "-c", FIRST_TRACER_PROGRAM.format(flavour=flavour)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": program_path()},
    )
    assert done.returncode == 0, done.stderr
    untraced, in_block, again = json.loads(done.stdout)
    assert untraced == ["untraced", 0, False]
    assert in_block == ["task of the block", 1, True]
    assert again == ["untraced again", 1]
