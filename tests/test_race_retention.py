"""staggered_race keeps only outcomes: what a finished race holds, and keeps alive.

A race's result keeps every attempt's exception, traceback and frames, so a
race of many attempts must keep nothing else per attempt (no task, no
coroutine, no factory), and nothing that leads back to the result: then a
dropped result is freed by reference counting alone, with the cyclic
garbage collector switched off.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import sys
import traceback
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from async_stagger import staggered_race


class Refused(Exception):
    """What every attempt here fails with."""


@contextmanager
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def refused(
    tasks: weakref.WeakSet[asyncio.Task[Any]], delay: float | None
) -> None:
    """An attempt: notes its task (weakly), and fails."""
    tasks.add(asyncio.current_task())  # type: ignore[arg-type]
    if delay is not None:
        await asyncio.sleep(delay)
    raise Refused("refused")


def factories(
    count: int, delay: float | None = None
) -> tuple[list[functools.partial[Awaitable[None]]], weakref.WeakSet[Any]]:
    """*count* attempts that fail (after *delay*, if any), and the set of
    their tasks, held weakly."""
    tasks: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()
    return [functools.partial(refused, tasks, delay) for _ in range(count)], tasks


async def test_failed_attempts_keep_no_task_and_no_factory_alive() -> None:
    attempts, tasks = factories(50)
    watched = [weakref.ref(factory) for factory in attempts[1:]]
    with collector_off():
        result = await staggered_race(attempts, 0)
        del attempts
        assert result[1] is None
        assert all(isinstance(exc, Refused) for exc in result[2])
        if asyncio.get_running_loop().get_task_factory() is None:
            # Only attempt 0's task (ours: it ran inline) is still alive. A
            # task factory of the program's own is called through Python
            # frames of its own, which on Python 3.12 and 3.13 a failure's
            # frames keep (cpython#100964), with the task in their locals.
            me = asyncio.current_task()
            assert [task for task in tasks if task is not me] == []
        assert [ref for ref in watched if ref() is not None] == []


async def test_a_dropped_result_is_freed_without_the_cyclic_collector() -> None:
    for delay, attempt_delay in ((0, None), (0.001, None), (None, 0.0), (0, 0.0)):
        attempts, _ = factories(20, attempt_delay)
        with collector_off():
            result = await staggered_race(attempts, delay)
            del attempts
            exceptions = [weakref.ref(exc) for exc in result[2] if exc is not None]
            assert len(exceptions) == 20
            del result
            assert [ref for ref in exceptions if ref() is not None] == [], delay


async def test_a_dropped_result_of_an_async_source_is_freed_likewise() -> None:
    attempts, _ = factories(10)

    async def source() -> AsyncIterator[Callable[[], Awaitable[None]]]:
        for factory in attempts:
            yield factory

    with collector_off():
        result = await staggered_race(source(), 0)
        exceptions = [weakref.ref(exc) for exc in result[2] if exc is not None]
        assert len(exceptions) == 10
        del result
        assert [ref for ref in exceptions if ref() is not None] == []


async def test_a_failed_attempt_keeps_its_own_traceback() -> None:
    async def connect(address: str) -> None:
        raise Refused(address)

    attempts = [functools.partial(connect, f"10.0.0.{i}") for i in range(3)]
    _, _, exceptions, _ = await staggered_race(attempts, 0)
    for index, exc in enumerate(exceptions):
        assert exc is not None
        frames = [frame.name for frame in traceback.extract_tb(exc.__traceback__)]
        assert frames == ["connect"], index
        assert exc.__traceback__ is not None
        assert exc.__traceback__.tb_frame.f_locals == {"address": f"10.0.0.{index}"}


async def test_an_attempt_cancelled_before_it_ran_is_recorded_as_cancelled() -> None:
    async def wins_after_two_steps() -> str:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return "won"

    async def would_hang() -> str:
        await asyncio.Event().wait()
        return "never"

    winner, index, exceptions, aiter_exc = await staggered_race(
        [wins_after_two_steps, would_hang], 0
    )
    assert (winner, index, aiter_exc) == ("won", 0, None)
    # Where tasks start lazily, attempt 1's task is cancelled before its
    # first step; where they start eagerly, while it waits. Either way its
    # slot says it was cancelled.
    assert len(exceptions) == 2
    assert exceptions[0] is None
    assert isinstance(exceptions[1], asyncio.CancelledError)


def _tracked_objects() -> int:
    gc.collect()
    return len(gc.get_objects())


async def test_a_failed_attempt_keeps_only_its_exception_traceback_and_frames() -> None:
    # What the cyclic collector walks again at every full collection, per
    # failed attempt (see benchmarks/race_scaling.py): the exception, its
    # traceback entry and the attempt's frame; on Python 3.12 and 3.13 also
    # the frame of the race's coroutine that awaited it, which that frame
    # keeps as its f_back (cpython#100964).
    floor = 4 if sys.version_info >= (3, 12) else 3
    if asyncio.get_running_loop().get_task_factory() is not None:
        # Started through a task factory of the program's own, a failure on
        # 3.12 and 3.13 also keeps that factory's frame, and the task, its
        # context and coroutine in its locals (see the first test here).
        floor += 5

    async def kept_by_race_of(count: int) -> int:
        attempts = [refuse_at_once] * count
        before = _tracked_objects()
        result = await staggered_race(attempts, 0)
        kept = _tracked_objects() - before
        assert result[1] is None
        assert len(result[2]) == count
        return kept

    # The difference leaves out what a race keeps once, whatever its size.
    # What else the process makes meanwhile lands in the counts too (over a
    # hundred objects between two counts was seen on a loaded machine), so
    # the difference spans 2,000 attempts, where one object more per attempt
    # is 2,000 more, and the least of three is taken.
    per_attempt = min(
        [
            (await kept_by_race_of(2_400) - await kept_by_race_of(400)) / 2_000
            for _ in range(3)
        ]
    )
    assert floor - 0.5 < per_attempt < floor + 0.5


async def refuse_at_once() -> None:
    raise Refused("refused")


def _awaiting(coro: Any) -> list[str]:
    """The names of the coroutines *coro* awaits through, innermost last,
    down to the first object that is not a coroutine."""
    names = []
    while inspect.iscoroutine(coro):
        names.append(coro.__qualname__)
        coro = coro.cr_await
    return names


async def test_an_attempt_is_awaited_by_the_race_itself() -> None:
    # Attempt 0 runs in the caller's task, awaited by the race's own
    # coroutine, and a later one by its task's: no coroutine in between to
    # hold in memory while the attempt waits (one per layer, ~270 bytes).
    waiting = asyncio.get_running_loop().create_future()

    async def waits() -> None:
        await waiting

    async def race() -> Any:
        return await staggered_race([waits, waits], 0)

    task = asyncio.ensure_future(race())
    for _ in range(5):
        await asyncio.sleep(0)
    here = "test_an_attempt_is_awaited_by_the_race_itself.<locals>"
    assert _awaiting(task.get_coro()) == [
        f"{here}.race",
        "staggered_race",
        "Race.run",
        f"{here}.waits",
    ]
    [later] = [
        other
        for other in asyncio.all_tasks()
        if _awaiting(other.get_coro())[:1] == ["Race._attempt"]
    ]
    assert _awaiting(later.get_coro()) == ["Race._attempt", f"{here}.waits"]
    waiting.set_result(None)
    await task
