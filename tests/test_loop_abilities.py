"""What each event loop is trusted to do: one answer for the race, the
resolvers and the connection functions alike."""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any

import pytest

from async_stagger import eventloop
from async_stagger._loop_abilities import (
    cancels_handshakes_cleanly,
    connects_directly,
    has_stock_getaddrinfo,
    start_task,
    starts_tasks_eagerly,
)


async def _first_step(steps: list[str]) -> None:
    steps.append("ran")


async def test_an_eager_start_runs_the_first_step_at_once() -> None:
    loop = asyncio.get_running_loop()
    steps: list[str] = []
    task = start_task(loop, _first_step(steps))
    # Started eagerly, the coroutine's first step has run already; else it
    # runs later, unless the loop's own task factory is eager itself.
    if starts_tasks_eagerly(loop):
        assert steps == ["ran"]
    elif loop.get_task_factory() is None:
        assert steps == []
    await task
    assert steps == ["ran"]


async def test_eager_start_needs_python_3_12_and_no_task_factory() -> None:
    loop = asyncio.get_running_loop()
    expected = sys.version_info >= (3, 12) and loop.get_task_factory() is None
    assert starts_tasks_eagerly(loop) is expected


def test_a_loop_class_with_its_own_create_task_gets_its_way() -> None:
    created: list[Any] = []

    class OwnTasks(asyncio.SelectorEventLoop):
        def create_task(self, coro: Any, **options: Any) -> Any:
            created.append(coro)
            return super().create_task(coro, **options)

    loop = OwnTasks()
    try:
        assert not starts_tasks_eagerly(loop)

        async def main() -> None:
            await start_task(loop, _first_step([]))

        loop.run_until_complete(main())
        assert len(created) == 2  # main, then the task started for it
    finally:
        loop.close()


async def test_a_getaddrinfo_put_on_the_loop_is_used_as_it_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()
    assert has_stock_getaddrinfo(loop)

    async def getaddrinfo(*args: Any, **kwargs: Any) -> list[Any]:
        return []

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    assert not has_stock_getaddrinfo(loop)
    # The class's own answer is unchanged for the next loop of the class.
    assert connects_directly(loop)


async def test_a_task_factory_of_the_program_starts_the_lookups_and_runs_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Lookups start eagerly only where the loop has no task factory: one a
    # program set gets every lookup task, which runs its getaddrinfo.
    from async_stagger.resolvers import concurrent_resolver

    loop = asyncio.get_running_loop()
    made: list[asyncio.Task[Any]] = []
    ran_in: list[asyncio.Task[Any] | None] = []

    def factory(loop: Any, coro: Any, **options: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **options)
        made.append(task)
        return task

    async def getaddrinfo(host: Any, port: Any, *, family: int = 0, **_: Any) -> Any:
        ran_in.append(asyncio.current_task())
        if family == socket.AF_INET6:
            raise socket.gaierror(socket.EAI_NONAME, "no such address")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", port))]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    previous = loop.get_task_factory()
    loop.set_task_factory(factory)
    try:
        assert not starts_tasks_eagerly(loop)
        answers = [info async for info in concurrent_resolver("name.test", 80)]
    finally:
        loop.set_task_factory(previous)
    assert answers == [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", 80))]
    assert len(made) == 2
    assert sorted(map(id, ran_in)) == sorted(map(id, made))


async def test_a_create_task_put_on_the_loop_makes_the_tasks_not_started_eagerly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A task started lazily comes from the loop's create_task, one put on the
    # loop object included (asyncio's own is skipped only where it would make
    # the very same task); an eager start is the class's to allow.
    loop = asyncio.get_running_loop()
    made: list[Any] = []
    original = loop.create_task

    def create_task(coro: Any, **options: Any) -> Any:
        made.append(coro)
        return original(coro, **options)

    monkeypatch.setattr(loop, "create_task", create_task)
    steps: list[str] = []
    task = start_task(loop, _first_step(steps))
    await task
    assert steps == ["ran"]
    assert len(made) == (0 if starts_tasks_eagerly(loop) else 1)


async def test_a_started_task_is_an_asyncio_task_of_the_loop_it_knows() -> None:
    loop = asyncio.get_running_loop()
    release = loop.create_future()
    task = start_task(loop, asyncio.wait_for(release, None))
    assert isinstance(task, asyncio.Task)
    assert task.get_loop() is loop
    assert task in asyncio.all_tasks(loop)  # registered, as create_task does
    release.set_result(None)
    await task


def test_only_asyncios_own_create_connection_has_its_handshakes_cancelled() -> None:
    # uvloop's leaves a failed handshake's error unretrieved when cancelled
    # at the wrong moment: its handshakes are stopped another way (see
    # _tls_attempt), as are those of a create_connection no one knows.
    uvloop = pytest.importorskip("uvloop")
    cases = [
        (asyncio.new_event_loop, True),
        (eventloop.new_event_loop, True),  # hands sockets on to asyncio's
        (uvloop.new_event_loop, False),
        (eventloop.new_uvloop_event_loop, False),
    ]
    for make, expected in cases:
        loop = make()
        try:
            assert cancels_handshakes_cleanly(loop) is expected, make
        finally:
            loop.close()


def test_a_create_connection_put_on_the_loop_has_its_handshakes_stopped_apart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.new_event_loop()
    try:
        own = loop.create_connection
        monkeypatch.setattr(loop, "create_connection", lambda *a, **k: own(*a, **k))
        assert not cancels_handshakes_cleanly(loop)
    finally:
        loop.close()
