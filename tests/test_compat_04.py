"""Code written against async_stagger 0.4.1's documented API runs unchanged.

Each test is a use of 0.4.1's API reference and docstrings: its module
paths and names, keywords, return shapes and error types. Connections are
real, to the lab's loopback endpoints; names resolve through a fake
``getaddrinfo``.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import itertools
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

import async_stagger
from async_stagger import connection, race
from async_stagger.trace import TraceEvent
from lab import Endpoint, Lab

# -- the modules and names ------------------------------------------------------------

DOCUMENTED_NAMES = {
    "async_stagger": [
        "staggered_race",
        "create_connected_sock",
        "create_connection",
        "open_connection",
        "basic_resolver",
        "concurrent_resolver",
    ],
    "async_stagger.aitertools": ["aiter_from_iter", "aiterclose", "product"],
    "async_stagger.stagger": ["staggered_race"],
    "async_stagger.happy_eyeballs": [
        "create_connected_sock",
        "create_connection",
        "open_connection",
    ],
    "async_stagger.resolvers": ["basic_resolver", "concurrent_resolver"],
    "async_stagger.typing": [
        "AddrInfoType",
        "HostType",
        "PortType",
        "AsyncGetAddrInfoType",
        "ResolverType",
    ],
    "async_stagger.exceptions": ["raise_one_exception_from_many"],
    "async_stagger.constants": [
        "CONNECT_DELAY",
        "RESOLUTION_DELAY",
        "FIRST_ADDRESS_FAMILY_COUNT",
    ],
    "async_stagger.debug": ["set_debug", "get_debug", "logger"],
}


@pytest.mark.parametrize("module_name", sorted(DOCUMENTED_NAMES))
def test_every_name_of_0_4_imports_from_its_0_4_module(module_name: str) -> None:
    module = importlib.import_module(module_name)
    for name in DOCUMENTED_NAMES[module_name]:
        assert hasattr(module, name), f"{module_name}.{name}"
        if module_name != "async_stagger":
            assert name in module.__all__


def test_old_module_paths_re_export_the_one_implementation() -> None:
    from async_stagger import happy_eyeballs, stagger

    assert stagger.staggered_race is race.staggered_race
    assert happy_eyeballs.open_connection is connection.open_connection
    assert happy_eyeballs.create_connection is connection.create_connection
    assert happy_eyeballs.create_connected_sock is connection.create_connected_sock


def test_constants_keep_their_0_4_values() -> None:
    from async_stagger import constants, defaults

    assert constants.CONNECT_DELAY == 0.25 == defaults.CONNECTION_ATTEMPT_DELAY
    assert constants.RESOLUTION_DELAY == 0.05
    assert constants.FIRST_ADDRESS_FAMILY_COUNT == 1


# -- staggered_race ----------------------------------------------------------------


async def test_staggered_race_takes_an_async_iterable_and_returns_the_4_tuple() -> None:
    from async_stagger import aitertools, stagger

    async def fail() -> None:
        raise ValueError("no")

    async def win() -> str:
        return "won"

    result = await stagger.staggered_race(
        aitertools.aiter_from_iter([fail, win, win]), 0.01
    )
    winner_result, winner_index, coro_exc, aiter_exc = result
    assert (winner_result, winner_index, aiter_exc) == ("won", 1, None)
    assert isinstance(coro_exc[0], ValueError)
    assert coro_exc[1] is None
    # Only attempts that were started are listed: the third never was.
    assert len(coro_exc) == 2


async def test_staggered_race_reports_what_the_async_iterable_raised() -> None:
    from async_stagger import stagger

    async def fail() -> None:
        raise OSError("refused")

    async def coro_fns() -> AsyncIterator[Any]:
        yield fail
        raise RuntimeError("source broke")

    winner_result, winner_index, coro_exc, aiter_exc = await stagger.staggered_race(
        coro_fns(), 0.01
    )
    assert winner_result is None
    assert winner_index is None
    assert [type(e) for e in coro_exc] == [OSError]
    assert isinstance(aiter_exc, RuntimeError)


@pytest.mark.virtual_clock
async def test_staggered_race_with_delay_none_runs_one_at_a_time() -> None:
    from async_stagger import aitertools, stagger

    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def fail_after_a_second() -> None:
        starts.append(loop.time())
        await asyncio.sleep(1)
        raise OSError("timed out")

    async def win() -> int:
        starts.append(loop.time())
        return 7

    result = await stagger.staggered_race(
        aitertools.aiter_from_iter([fail_after_a_second, fail_after_a_second, win]),
        None,
    )
    assert result[:2] == (7, 2)
    assert starts == [0.0, 1.0, 2.0]


# -- aitertools ----------------------------------------------------------------------


async def test_aiter_from_iter_yields_the_items_in_order() -> None:
    from async_stagger.aitertools import aiter_from_iter

    assert [item async for item in aiter_from_iter(range(4))] == [0, 1, 2, 3]


async def test_aiterclose_closes_an_async_generator() -> None:
    from async_stagger.aitertools import aiterclose

    closed = []

    async def generator() -> AsyncIterator[int]:
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)

    it = generator()
    assert await anext(it) == 1
    await aiterclose(it)
    assert closed == [True]


async def test_aiterclose_prefers_pep_533_aiterclose() -> None:
    from async_stagger.aitertools import aiterclose

    calls = []

    class Closable:
        def __aiter__(self) -> Closable:
            return self

        async def __anext__(self) -> int:
            raise StopAsyncIteration

        async def __aiterclose__(self) -> None:
            calls.append("__aiterclose__")

        async def aclose(self) -> None:  # pragma: no cover - must not be called
            calls.append("aclose")

    await aiterclose(Closable())
    assert calls == ["__aiterclose__"]


async def test_aiterclose_does_nothing_without_a_close_method() -> None:
    from async_stagger.aitertools import aiterclose

    class Bare:
        def __aiter__(self) -> Bare:
            return self

        async def __anext__(self) -> int:
            raise StopAsyncIteration

    assert await aiterclose(Bare()) is None


async def test_aiterclose_refuses_what_is_not_an_async_iterator() -> None:
    from async_stagger.aitertools import aiterclose

    with pytest.raises(TypeError, match="'list' object is not an asynchronous"):
        await aiterclose([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("inputs", "repeat"),
    [
        ([[1, 2], ["a", "b", "c"]], 1),
        ([[1, 2], ["a"], [True, False]], 1),
        ([[1, 2, 3]], 2),
        ([[1, 2], "xy"], 2),
        ([[1], [2]], 3),
        ([[1, 2], []], 1),
        ([[], [1, 2]], 2),
        ([[1, 2]], 0),
        ([], 1),
    ],
)
async def test_product_gives_itertools_products_tuples_in_its_order(
    inputs: list[Any], repeat: int
) -> None:
    from async_stagger.aitertools import aiter_from_iter, product

    got = [
        combination
        async for combination in product(
            *(aiter_from_iter(i) for i in inputs), repeat=repeat
        )
    ]
    assert got == list(itertools.product(*inputs, repeat=repeat))


async def test_product_closes_its_inputs_when_closed_early() -> None:
    from async_stagger.aitertools import product

    closed: list[str] = []

    async def numbers(name: str) -> AsyncIterator[int]:
        try:
            for i in range(10):
                yield i
        finally:
            closed.append(name)

    combinations = product(numbers("a"), numbers("b"))
    assert await anext(combinations) == (0, 0)
    await combinations.aclose()  # type: ignore[attr-defined]
    assert sorted(closed) == ["a", "b"]


async def test_product_groups_the_errors_of_the_first_items() -> None:
    from async_stagger.aitertools import aiter_from_iter, product

    async def broken() -> AsyncIterator[int]:
        raise OSError("broken input")
        yield 0  # pragma: no cover

    with pytest.raises(ExceptionGroup) as caught:
        async for _ in product(aiter_from_iter([1]), broken()):
            pass  # pragma: no cover
    [error] = caught.value.exceptions
    assert isinstance(error, OSError)


async def test_product_cancelled_while_fetching_first_items_leaves_no_task() -> None:
    from async_stagger.aitertools import aiter_from_iter, product

    async def never() -> AsyncIterator[int]:
        await asyncio.Event().wait()
        yield 0  # pragma: no cover

    async def consume() -> None:
        async for _ in product(aiter_from_iter([1]), never()):
            pass  # pragma: no cover

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(consume(), 0.01)
    # The suite fails a test that leaves a task pending.


@pytest.mark.parametrize(("repeat", "error"), [(-1, ValueError), (1.5, TypeError)])
async def test_product_checks_repeat(repeat: Any, error: type[Exception]) -> None:
    from async_stagger.aitertools import aiter_from_iter, product

    with pytest.raises(error):
        await anext(product(aiter_from_iter([1]), repeat=repeat))


# -- exceptions ----------------------------------------------------------------------


def test_one_exception_is_raised_as_it_is() -> None:
    from async_stagger.exceptions import raise_one_exception_from_many

    only = ConnectionRefusedError("refused")
    with pytest.raises(ConnectionRefusedError) as caught:
        raise_one_exception_from_many([only], OSError)
    assert caught.value is only


def test_alike_exceptions_raise_the_first() -> None:
    from async_stagger.exceptions import raise_one_exception_from_many

    first, second = OSError("down"), OSError("down")
    with pytest.raises(OSError) as caught:
        raise_one_exception_from_many([first, second], OSError)
    assert caught.value is first


def test_different_exceptions_raise_one_of_the_class_given_naming_each() -> None:
    from async_stagger.exceptions import raise_one_exception_from_many

    errors = [ConnectionRefusedError("refused"), TimeoutError("slow")]
    with pytest.raises(socket.gaierror) as caught:
        raise_one_exception_from_many(errors, socket.gaierror)
    message = str(caught.value)
    assert message.startswith("Multiple exceptions: ")
    assert "ConnectionRefusedError('refused')" in message
    assert "TimeoutError('slow')" in message


# -- debug -------------------------------------------------------------------------


async def test_set_debug_logs_the_connection_to_the_async_stagger_logger(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    from async_stagger import debug

    server = lab.working("127.0.0.1")
    assert debug.logger is logging.getLogger("async_stagger")
    caplog.handler.setLevel(logging.DEBUG)
    assert not logging.getLogger().isEnabledFor(logging.DEBUG)
    try:
        debug.set_debug(True)
        assert debug.get_debug()
        _, writer = await async_stagger.open_connection(server.host, server.port)
        writer.close()
        await writer.wait_closed()
    finally:
        debug.set_debug(False)
    assert not debug.get_debug()
    lines = [r.getMessage() for r in caplog.records if r.name == "async_stagger"]
    assert f"attempt #0 to 127.0.0.1:{server.port} connected: the winner" in lines


# -- the connection functions --------------------------------------------------------


def resolver_04(*endpoints: Endpoint) -> Any:
    """A resolver with exactly 0.4.1's documented signature."""

    async def resolver(
        host: Any,
        port: Any,
        *,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> AsyncIterator[Any]:
        for endpoint in endpoints:
            yield endpoint.addrinfo

    return resolver


async def test_a_0_4_resolver_works_with_raise_exc_group(lab: Lab) -> None:
    from async_stagger.happy_eyeballs import create_connected_sock

    server = lab.working(lab.ipv4_address())
    sock = await create_connected_sock(
        "service.test",
        server.port,
        resolver=resolver_04(server),
        raise_exc_group=True,
    )
    with sock:
        assert sock.getpeername() == server.sockaddr


async def test_a_0_4_resolver_failing_everywhere_gives_the_exception_group(
    lab: Lab,
) -> None:
    from async_stagger.happy_eyeballs import create_connected_sock

    dead = [lab.refusing(lab.ipv4_address()), lab.refusing(lab.ipv4_address())]
    with pytest.raises(ExceptionGroup) as caught:
        await create_connected_sock(
            "service.test", 80, resolver=resolver_04(*dead), raise_exc_group=True
        )
    assert [type(e) for e in caught.value.exceptions] == [ConnectionRefusedError] * 2


async def test_a_0_4_resolver_is_refused_interleave_before_it_is_called() -> None:
    called = []

    async def resolver(
        host: Any, port: Any, *, family: int = 0, type: int = 0, proto: int = 0,
        flags: int = 0,
    ) -> AsyncIterator[Any]:  # fmt: skip
        called.append(host)  # pragma: no cover
        yield  # pragma: no cover

    with pytest.raises(TypeError, match="first_addr_family_count"):
        await async_stagger.open_connection(
            "service.test", 80, interleave=2, resolver=resolver
        )
    assert called == []


async def test_a_resolver_declaring_raise_exc_group_gets_it(lab: Lab) -> None:
    server = lab.working(lab.ipv4_address())
    seen: list[dict[str, Any]] = []

    async def resolver(
        host: Any, port: Any, *, raise_exc_group: bool = False, **options: Any
    ) -> AsyncIterator[Any]:
        seen.append({"raise_exc_group": raise_exc_group, **options})
        yield server.addrinfo

    sock = await async_stagger.create_connected_sock(
        "service.test", server.port, resolver=resolver, raise_exc_group=True
    )
    sock.close()
    assert seen == [
        {
            "raise_exc_group": True,
            "family": 0,
            "type": socket.SOCK_STREAM,
            "proto": 0,
            "flags": 0,
        }
    ]


async def test_the_documented_partial_of_concurrent_resolver_works(lab: Lab) -> None:
    # 0.4's docstring: bind resolver options with functools.partial.
    servers = [lab.working("::1"), lab.working("::1"), lab.working("127.0.0.1")]
    getaddrinfo = lab.getaddrinfo({"dual.test": servers})
    resolver = functools.partial(
        async_stagger.resolvers.concurrent_resolver,
        first_addr_family_count=2,
        getaddrinfo_async=getaddrinfo,
    )
    events: list[TraceEvent] = []
    sock = await async_stagger.create_connected_sock(
        "dual.test", 0, resolver=resolver, raise_exc_group=True, trace=events.append
    )
    sock.close()
    assert {call.family for call in getaddrinfo.calls} == {
        socket.AF_INET,
        socket.AF_INET6,
    }
    assert [e.kind for e in events].count("attempt_succeeded") == 1


@pytest.mark.parametrize("as_async", [False, True])
async def test_local_addrs_take_sync_and_async_iterables(
    lab: Lab, as_async: bool
) -> None:
    from async_stagger.aitertools import aiter_from_iter

    server = lab.working("127.0.0.1")
    local = [("127.0.0.9", 0)]
    local_addrs: Any = aiter_from_iter(local) if as_async else local
    sock = await async_stagger.create_connected_sock(
        server.host, server.port, local_addrs=local_addrs
    )
    with sock:
        assert sock.getsockname()[0] == "127.0.0.9"


@pytest.mark.virtual_clock
@pytest.mark.parametrize("entry_point", ["sock", "create", "open"])
async def test_delay_none_tries_one_address_at_a_time_as_in_0_4(
    lab: Lab, entry_point: str
) -> None:
    dead, server = lab.blackholed("127.0.0.3"), lab.working("127.0.0.5")
    events: list[TraceEvent] = []
    options: dict[str, Any] = {
        "delay": None,
        "resolver": resolver_04(dead, server),
        "trace": events.append,
    }
    if entry_point == "sock":
        connecting = async_stagger.create_connected_sock("h.test", 0, **options)
    elif entry_point == "create":
        connecting = async_stagger.create_connection(
            asyncio.Protocol, "h.test", 0, **options
        )
    else:
        connecting = async_stagger.open_connection("h.test", 0, **options)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(connecting, 5)
    # The blackholed first attempt never ends, so the second never starts.
    assert [e.index for e in events if e.kind == "attempt_started"] == [0]


async def test_alike_failures_raise_one_of_them_as_0_4_did(lab: Lab) -> None:
    dead = lab.refusing("127.0.0.1")
    with pytest.raises(ConnectionRefusedError):
        await async_stagger.open_connection(
            "h.test", 80, resolver=resolver_04(dead, dead)
        )


async def test_create_connection_passes_asyncios_keywords_to_the_loop(
    lab: Lab,
) -> None:
    server = lab.working("127.0.0.1", tls=True)
    lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    class Protocol(asyncio.Protocol):
        def connection_lost(self, exc: BaseException | None) -> None:
            lost.set_result(None)

    transport, _ = await async_stagger.create_connection(
        Protocol,
        "tls.lab.test",
        server.port,
        ssl=lab.client_ssl_context(),
        server_hostname="localhost",
        resolver=resolver_04(server),
        delay=0.1,
    )
    assert transport.get_extra_info("peername") == server.sockaddr
    assert transport.get_extra_info("ssl_object") is not None
    transport.close()
    await asyncio.wait_for(lost, 5)


async def test_open_connection_takes_limit(lab: Lab) -> None:
    server = lab.working("127.0.0.1")
    reader, writer = await async_stagger.open_connection(
        server.host, server.port, limit=10
    )
    assert reader._limit == 10  # type: ignore[attr-defined]
    writer.close()
    await writer.wait_closed()


async def test_an_empty_getaddrinfo_answer_says_returned_empty_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def getaddrinfo(host: Any, port: Any, **_: Any) -> list[Any]:
        return []

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    for family in (socket.AF_UNSPEC, socket.AF_INET):
        with pytest.raises(OSError, match="returned empty list") as caught:
            await async_stagger.open_connection("empty.test", 80, family=family)
        assert "'empty.test'" in str(caught.value)


async def test_a_resolver_yielding_nothing_says_returned_empty_list() -> None:
    with pytest.raises(
        OSError, match=r"getaddrinfo\('empty.test', 80\) returned empty list"
    ):
        await async_stagger.create_connected_sock(
            "empty.test", 80, resolver=resolver_04()
        )


def test_the_resolvers_keep_their_0_4_keywords() -> None:
    import inspect

    from async_stagger.resolvers import basic_resolver, concurrent_resolver

    concurrent = inspect.signature(concurrent_resolver).parameters
    basic = inspect.signature(basic_resolver).parameters
    for name in (
        "family",
        "type",
        "proto",
        "flags",
        "resolution_delay",
        "first_addr_family_count",
        "raise_exc_group",
        "getaddrinfo_async",
    ):
        assert concurrent[name].kind is inspect.Parameter.KEYWORD_ONLY
    for name in ("family", "type", "proto", "flags", "first_addr_family_count"):
        assert basic[name].kind is inspect.Parameter.KEYWORD_ONLY
    assert "getaddrinfo_async" in basic


async def test_0_4_type_names_annotate_a_working_resolver(lab: Lab) -> None:
    from async_stagger.typing import AddrInfoType, HostType, PortType, ResolverType

    server = lab.working("127.0.0.1")

    async def resolver(
        host: HostType, port: PortType, **_: Any
    ) -> AsyncIterator[AddrInfoType]:
        yield server.addrinfo

    typed: ResolverType = resolver
    sock = await async_stagger.create_connected_sock("h.test", 0, resolver=typed)
    sock.close()
