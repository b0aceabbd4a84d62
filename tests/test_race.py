"""staggered_race: the schedule of RFC 8305 §5, a single winner, no orphans.

Timing tests run on the virtual clock (``loop.time()`` starts at 0.0 and jumps
to the next timer), so every start time is asserted exactly.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from async_stagger import staggered_race

virtual_clock = pytest.mark.virtual_clock


class AttemptFailed(Exception):
    """What a scripted attempt raises when told to fail."""


@dataclass
class Script:
    """Scripted attempts: each entry is ``(outcome, duration)``; outcome is
    ``"ok"``, ``"fail"`` or ``"hang"`` (duration ignored). A duration of
    ``None`` settles without awaiting anything at all."""

    plan: list[tuple[str, float | None]]
    started: list[float] = field(default_factory=list)
    settled: dict[int, tuple[str, float]] = field(default_factory=dict)

    def factories(self) -> list[Callable[[], Awaitable[str]]]:
        return [self._factory(i) for i in range(len(self.plan))]

    def _factory(self, index: int) -> Callable[[], Awaitable[str]]:
        async def attempt() -> str:
            loop = asyncio.get_running_loop()
            assert len(self.started) == index, "attempts started out of order"
            self.started.append(loop.time())
            outcome, duration = self.plan[index]
            try:
                if outcome == "hang":
                    await asyncio.Event().wait()
                elif duration is not None:
                    await asyncio.sleep(duration)
            except asyncio.CancelledError:
                self.settled[index] = ("cancelled", loop.time())
                raise
            self.settled[index] = (outcome, loop.time())
            if outcome == "fail":
                raise AttemptFailed(index)
            return f"result {index}"

        return attempt


def kinds(exceptions: list[BaseException | None]) -> list[str]:
    """The exception list in words, for compact assertions."""
    names = []
    for exc in exceptions:
        if exc is None:
            names.append("won")
        elif isinstance(exc, asyncio.CancelledError):
            names.append("cancelled")
        elif isinstance(exc, AttemptFailed):
            names.append("failed")
        else:
            names.append(type(exc).__name__)
    return names


def approx(values: list[float]) -> Any:
    return pytest.approx(values, abs=1e-9)


# -- the schedule ------------------------------------------------------------


@virtual_clock
async def test_instant_failures_start_every_attempt_at_once():
    script = Script([("fail", 0)] * 5)
    winner, index, exceptions, aiter_exc = await staggered_race(
        script.factories(), 0.25
    )
    assert (winner, index, aiter_exc) == (None, None, None)
    assert kinds(exceptions) == ["failed"] * 5
    assert script.started == approx([0.0] * 5)


@virtual_clock
async def test_attempts_that_fail_without_awaiting_start_the_next_at_once():
    script = Script([("fail", None)] * 4)
    _, index, exceptions, _ = await staggered_race(script.factories(), 0.25)
    assert index is None
    assert [e.args for e in exceptions if e is not None] == [(0,), (1,), (2,), (3,)]
    assert script.started == approx([0.0] * 4)


class Hinted:
    """A sync source reporting *left* items left (PEP 424), whatever the
    truth: the race does not take a user's hint at its word."""

    def __init__(self, items: list[Any], left: int | None) -> None:
        self.items = iter(items)
        self.left = left

    def __iter__(self) -> Hinted:
        return self

    def __next__(self) -> Any:
        return next(self.items)

    def __length_hint__(self) -> int:
        return NotImplemented if self.left is None else self.left


@virtual_clock
@pytest.mark.parametrize("left", [None, 1, 0])
@pytest.mark.parametrize("asynchronous", [False, True])
async def test_a_source_saying_nothing_is_left_is_still_raced_on_the_delay(
    left, asynchronous
):
    # PEP 424 makes __length_hint__ a guess: a user's source that says 0 and
    # then yields more keeps its stagger (the timer starts attempt 1 after
    # the delay, not when attempt 0 fails at 1.0).
    script = Script([("fail", 1.0), ("ok", 0.5)])
    source: Any = Hinted(script.factories(), left)
    if asynchronous:
        source = AsyncHinted(source)
    _, index, _, _ = await staggered_race(source, 0.25)
    assert index == 1
    assert script.started == approx([0.0, 0.25])


class AsyncHinted:
    """An async source whose hint says what its *inner* Hinted says."""

    def __init__(self, inner: Hinted) -> None:
        self.inner = inner

    def __aiter__(self) -> AsyncHinted:
        return self

    async def __anext__(self) -> Any:
        try:
            return next(self.inner)
        except StopIteration:
            raise StopAsyncIteration from None

    def __length_hint__(self) -> int:
        return self.inner.__length_hint__()


class ExactlyHinted:
    """A source with the mark the library's own sources carry: its hint is
    the exact count of items left."""

    _exact_length_hint = True

    def __init__(self, items: list[Any]) -> None:
        self.items = list(items)

    def __iter__(self) -> ExactlyHinted:
        return self

    def __next__(self) -> Any:
        if not self.items:
            raise StopIteration
        return self.items.pop(0)

    def __length_hint__(self) -> int:
        return len(self.items)


@pytest.mark.parametrize(
    "make_source",
    [list, tuple, ExactlyHinted],
    ids=["list", "tuple", "library-source"],
)
async def test_a_source_with_an_exact_count_arms_no_timer_after_its_last_item(
    make_source,
):
    # The commonest race (one address, a list of one): nothing could start
    # when the delay ran out, so no timer is armed.
    loop = asyncio.get_running_loop()
    armed: list[float] = []
    call_later = loop.call_later

    def spy(delay: float, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        armed.append(delay)
        return call_later(delay, *args, **kwargs)

    async def attempt() -> str:
        await asyncio.sleep(0)
        return "done"

    loop.call_later = spy  # type: ignore[method-assign]
    try:
        one = await staggered_race(make_source([attempt]), 0.25)
        assert armed == []
        two = await staggered_race(make_source([attempt, attempt]), 0.25)
        assert armed == [0.25]
    finally:
        del loop.call_later
    assert one[:2] == two[:2] == ("done", 0)


@virtual_clock
async def test_slow_attempts_start_one_delay_apart_and_keep_running():
    script = Script([("fail", 10.0)] * 4)
    _, index, exceptions, _ = await staggered_race(script.factories(), 0.25)
    assert index is None
    assert script.started == approx([0.0, 0.25, 0.5, 0.75])
    # Starting a new attempt never stopped an earlier one.
    assert [script.settled[i] for i in range(4)] == [
        ("fail", pytest.approx(t)) for t in (10.0, 10.25, 10.5, 10.75)
    ]
    assert kinds(exceptions) == ["failed"] * 4


@virtual_clock
async def test_hanging_attempts_are_started_on_schedule_and_cancelled_on_timeout():
    script = Script([("hang", None)] * 3)
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(2.0):
            await staggered_race(script.factories(), 0.25)
    assert loop.time() == pytest.approx(2.0)
    assert script.started == approx([0.0, 0.25, 0.5])
    assert script.settled == {i: ("cancelled", pytest.approx(2.0)) for i in range(3)}


@virtual_clock
async def test_failure_of_the_latest_attempt_starts_the_next_one_early():
    script = Script([("fail", 0.1), ("fail", 0.05), ("ok", 1.0)])
    result, index, exceptions, _ = await staggered_race(script.factories(), 0.25)
    assert (result, index) == ("result 2", 2)
    assert script.started == approx([0.0, 0.1, 0.15])
    assert kinds(exceptions) == ["failed", "failed", "won"]


@virtual_clock
async def test_failure_of_an_older_attempt_does_not_hurry_the_schedule():
    # Attempt 0 fails at 0.3, while attempt 1 (started 0.25) is the latest:
    # attempt 2 still starts at 0.5.
    script = Script([("fail", 0.3), ("hang", None), ("ok", 0.1)])
    _, index, exceptions, _ = await staggered_race(script.factories(), 0.25)
    assert index == 2
    assert script.started == approx([0.0, 0.25, 0.5])
    assert kinds(exceptions) == ["failed", "cancelled", "won"]


@virtual_clock
async def test_mixed_outcomes_follow_the_schedule():
    script = Script(
        [("hang", None), ("fail", 0.0), ("fail", 0.4), ("ok", 0.2), ("ok", 0.0)]
    )
    loop = asyncio.get_running_loop()
    result, index, exceptions, _ = await staggered_race(script.factories(), 0.25)
    # 0 at 0 (hangs); 1 at 0.25 fails at once, so 2 starts at 0.25 too; 3 at
    # 0.5. Attempt 2 fails at 0.65, but it is no longer the latest: attempt 4
    # stays due at 0.75, and attempt 3 wins first, at 0.7.
    assert script.started == approx([0.0, 0.25, 0.25, 0.5])
    assert (result, index) == ("result 3", 3)
    assert kinds(exceptions) == ["cancelled", "failed", "failed", "won"]
    assert loop.time() == pytest.approx(0.7)


@virtual_clock
async def test_late_attempt_wins_while_earlier_ones_still_run():
    script = Script([("ok", 5.0), ("ok", 0.1), ("hang", None)])
    loop = asyncio.get_running_loop()
    result, index, exceptions, _ = await staggered_race(script.factories(), 0.25)
    assert (result, index) == ("result 1", 1)
    assert loop.time() == pytest.approx(0.35)
    assert script.started == approx([0.0, 0.25])
    # The earlier attempt was cancelled (and had finished) before the race
    # returned; attempt 2 was never started.
    assert script.settled[0] == ("cancelled", pytest.approx(0.35))
    assert kinds(exceptions) == ["cancelled", "won"]


@virtual_clock
async def test_delay_none_runs_attempts_strictly_in_sequence():
    script = Script([("fail", 3.0), ("fail", 1.0), ("ok", 2.0), ("ok", 0)])
    loop = asyncio.get_running_loop()
    result, index, exceptions, _ = await staggered_race(script.factories(), None)
    assert script.started == approx([0.0, 3.0, 4.0])
    assert (result, index) == ("result 2", 2)
    assert kinds(exceptions) == ["failed", "failed", "won"]
    assert loop.time() == pytest.approx(6.0)


@virtual_clock
async def test_infinite_delay_means_strictly_in_sequence():
    script = Script([("fail", 3.0), ("ok", 1.0)])
    _, index, _, _ = await staggered_race(script.factories(), math.inf)
    assert index == 1
    assert script.started == approx([0.0, 3.0])


@virtual_clock
async def test_delay_zero_starts_every_attempt_at_once():
    script = Script([("hang", None), ("fail", 1.0), ("ok", 2.0), ("hang", None)])
    result, index, exceptions, _ = await staggered_race(script.factories(), 0)
    assert script.started == approx([0.0] * 4)
    assert (result, index) == ("result 2", 2)
    assert kinds(exceptions) == ["cancelled", "failed", "won", "cancelled"]


@virtual_clock
async def test_first_attempt_returning_without_awaiting_wins_alone():
    script = Script([("ok", None), ("ok", None)])
    result, index, exceptions, _ = await staggered_race(script.factories(), 0.25)
    assert (result, index, exceptions) == ("result 0", 0, [None])
    assert script.started == [0.0]


@virtual_clock
async def test_simultaneous_finish_has_exactly_one_winner():
    # Both attempts' sleeps end at t=0.5, in the same loop iteration.
    script = Script([("ok", 0.5), ("ok", 0.25)])
    result, index, exceptions, _ = await staggered_race(script.factories(), 0.25)
    assert index in (0, 1)
    assert result == f"result {index}"
    assert kinds(exceptions).count("won") == 1
    assert kinds(exceptions).count("cancelled") == 1
    loser = 1 - index
    assert script.settled[loser][0] == "cancelled"


async def test_attempts_woken_by_one_callback_produce_one_winner():
    # Two attempts wait on futures resolved in the very same callback: both
    # are ready to return in the same loop iteration.
    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in range(3)]
    finished: list[int] = []

    def factory(i: int) -> Callable[[], Awaitable[int]]:
        async def attempt() -> int:
            try:
                return await futures[i]
            finally:
                finished.append(i)

        return attempt

    def resolve_all() -> None:
        for i, fut in enumerate(futures):
            fut.set_result(i)

    race = asyncio.ensure_future(staggered_race([factory(i) for i in range(3)], 0))
    for _ in range(5):
        await asyncio.sleep(0)
    loop.call_soon(resolve_all)
    result, index, exceptions, _ = await race
    assert result == index
    assert kinds(exceptions).count("won") == 1
    assert kinds(exceptions).count("cancelled") == 2
    assert sorted(finished) == [0, 1, 2]


async def test_loser_that_ignores_cancellation_is_not_a_second_winner():
    loop = asyncio.get_running_loop()
    gate = loop.create_future()

    async def stubborn() -> str:
        try:
            await gate
        except asyncio.CancelledError:
            await asyncio.sleep(0)
            return "too late"
        return "never"

    async def quick() -> str:
        await asyncio.sleep(0)
        return "first"

    result, index, exceptions, _ = await staggered_race([stubborn, quick], 0)
    assert (result, index) == ("first", 1)
    assert isinstance(exceptions[0], asyncio.CancelledError)
    gate.cancel()


async def test_race_returns_only_after_losers_have_finished_cleaning_up():
    cleanup_done = []

    async def slow_loser() -> str:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            cleanup_done.append("loser")
        return "never"

    async def winner() -> str:
        await asyncio.sleep(0.001)
        return "win"

    result, index, _, _ = await staggered_race([slow_loser, winner], 0)
    assert (result, index) == ("win", 1)
    assert cleanup_done == ["loser"]


async def test_empty_iterable_returns_no_winner_and_no_attempts():
    assert await staggered_race([], 0.25) == (None, None, [], None)


# -- sources: lazy pulling, async iterables, iteration errors -------------------


@virtual_clock
async def test_items_are_pulled_only_when_the_next_attempt_is_due():
    loop = asyncio.get_running_loop()
    pulled: list[float] = []
    script = Script([("fail", 10.0)] * 3 + [("ok", 0.1)])

    def source() -> Any:
        for factory in script.factories():
            pulled.append(loop.time())
            yield factory

    _, index, _, _ = await staggered_race(source(), 0.25)
    assert index == 3
    assert pulled == approx([0.0, 0.25, 0.5, 0.75])


@virtual_clock
async def test_endless_iterable_stops_being_pulled_after_the_winner():
    counter = itertools.count()
    script = Script([("fail", 0.0)] * 3 + [("ok", 0.0)] + [("ok", 0.0)] * 100)

    def endless() -> Any:
        for i in counter:
            yield script.factories()[i] if i < len(script.plan) else None

    result, index, _, _ = await staggered_race(endless(), 0.25)
    assert (result, index) == ("result 3", 3)
    assert next(counter) == 4  # nothing pulled after the winner


@virtual_clock
async def test_async_iterable_items_arriving_late_start_when_they_arrive():
    loop = asyncio.get_running_loop()
    script = Script([("hang", None), ("ok", 0.1)])
    closed = []

    async def trickle() -> AsyncIterator[Callable[[], Awaitable[str]]]:
        factories = script.factories()
        try:
            yield factories[0]
            await asyncio.sleep(1.0 - loop.time())  # the answer comes at t=1
            yield factories[1]
            await asyncio.sleep(3600)
        finally:
            closed.append(loop.time())

    result, index, exceptions, aiter_exc = await staggered_race(trickle(), 0.25)
    assert (result, index, aiter_exc) == ("result 1", 1, None)
    assert script.started == approx([0.0, 1.0])
    assert kinds(exceptions) == ["cancelled", "won"]
    assert closed == approx([1.1])


@virtual_clock
async def test_winner_while_source_is_still_thinking_abandons_the_pull():
    script = Script([("ok", 0.5)])
    closed = []

    async def slow_source() -> AsyncIterator[Callable[[], Awaitable[str]]]:
        try:
            yield script.factories()[0]
            await asyncio.sleep(3600)
            yield script.factories()[0]
        finally:
            closed.append(True)

    loop = asyncio.get_running_loop()
    result, index, _, _ = await staggered_race(slow_source(), 0.25)
    assert (result, index) == ("result 0", 0)
    assert loop.time() == pytest.approx(0.5)
    assert closed == [True]


@virtual_clock
async def test_async_source_that_ends_lets_running_attempts_finish():
    script = Script([("fail", 1.0), ("ok", 2.0)])

    async def source() -> AsyncIterator[Callable[[], Awaitable[str]]]:
        for factory in script.factories():
            yield factory

    result, index, exceptions, aiter_exc = await staggered_race(source(), 0.25)
    assert (result, index, aiter_exc) == ("result 1", 1, None)
    assert script.started == approx([0.0, 0.25])
    assert kinds(exceptions) == ["failed", "won"]


@pytest.mark.parametrize("asynchronous", [False, True])
@virtual_clock
async def test_iteration_error_is_reported_and_running_attempts_finish(asynchronous):
    script = Script([("fail", 1.0), ("ok", 2.0)])
    boom = LookupError("resolver broke")

    def sync_source() -> Any:
        yield from script.factories()
        raise boom

    async def async_source() -> AsyncIterator[Callable[[], Awaitable[str]]]:
        for factory in script.factories():
            yield factory
        raise boom

    source = async_source() if asynchronous else sync_source()
    result, index, exceptions, aiter_exc = await staggered_race(source, 0.25)
    assert (result, index) == ("result 1", 1)
    assert aiter_exc is boom
    assert kinds(exceptions) == ["failed", "won"]


@virtual_clock
async def test_iteration_error_before_any_attempt_returns_it():
    async def broken() -> AsyncIterator[Callable[[], Awaitable[str]]]:
        raise OSError("no addresses")
        yield  # pragma: no cover

    result = await staggered_race(broken(), 0.25)
    assert result[:3] == (None, None, [])
    assert isinstance(result[3], OSError)


class ClosingSource:
    """An async iterator that records aclose(), without being a generator."""

    def __init__(self, factories: list[Callable[[], Awaitable[str]]]) -> None:
        self.factories = list(factories)
        self.closed = 0

    def __aiter__(self) -> ClosingSource:
        return self

    async def __anext__(self) -> Callable[[], Awaitable[str]]:
        if not self.factories:
            await asyncio.sleep(3600)
            raise StopAsyncIteration
        return self.factories.pop(0)

    async def aclose(self) -> None:
        self.closed += 1


@pytest.mark.parametrize(
    "plan",
    [[("ok", 0.1)], [("fail", 0.1)], [("fail", 0.1), ("ok", 0.3)]],
    ids=["winner", "all-failed", "late-winner"],
)
@virtual_clock
async def test_async_source_is_closed_exactly_once_on_every_exit(plan):
    script = Script(plan)
    source = ClosingSource(script.factories())
    if any(outcome == "ok" for outcome, _ in plan):
        await staggered_race(source, 0.25)
    else:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(5):
                await staggered_race(source, 0.25)
    assert source.closed == 1


# -- bad input -----------------------------------------------------------------


@pytest.mark.parametrize("delay", [-0.1, -1, math.nan])
async def test_negative_or_nan_delay_is_a_value_error(delay):
    with pytest.raises(ValueError, match="delay"):
        await staggered_race([], delay)


@pytest.mark.parametrize("delay", ["0.25", True, [0.25]])
async def test_non_numeric_delay_is_a_type_error(delay):
    with pytest.raises(TypeError, match="delay"):
        await staggered_race([], delay)


@pytest.mark.parametrize("coro_fns", [5, None, object()])
async def test_non_iterable_source_is_a_type_error(coro_fns):
    with pytest.raises(TypeError, match="iterable"):
        await staggered_race(coro_fns, 0.25)


@virtual_clock
async def test_bad_items_fail_their_attempt_and_the_race_goes_on():
    script = Script([("ok", 0.1)])

    def not_awaitable() -> int:
        return 42

    items: list[Any] = ["not callable", not_awaitable, *script.factories()]
    result, index, exceptions, _ = await staggered_race(items, 0.25)
    assert (result, index) == ("result 0", 2)
    assert isinstance(exceptions[0], TypeError)
    assert "not callable" in str(exceptions[0])
    assert isinstance(exceptions[1], TypeError)
    assert "not awaitable" in str(exceptions[1])
    # Bad items fail at once, so the good one was not delayed.
    assert script.started == [0.0]


# -- cancellation ------------------------------------------------------------


async def test_cancel_message_reaches_the_caller_and_attempts_are_cancelled():
    started = asyncio.Event()
    cancelled = []

    async def hang() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    race = asyncio.ensure_future(staggered_race([hang, hang], 0))
    await started.wait()
    await asyncio.sleep(0)
    race.cancel("stop racing")
    with pytest.raises(asyncio.CancelledError) as caught:
        await race
    assert caught.value.args == ("stop racing",)
    assert cancelled == [True, True]


async def test_timeout_around_the_race_keeps_cancel_bookkeeping_intact():
    async def hang() -> None:
        await asyncio.sleep(3600)

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await staggered_race([hang, hang, hang], 0.001)
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_cancel_during_loser_cleanup_still_waits_for_losers():
    loser_done = []
    loser_running = asyncio.Event()
    cleaning = asyncio.Event()

    async def win() -> str:
        # Wins once the loser runs (a fixed sleep could end before the
        # loser's task had its first step on a loaded machine: cancelled
        # before it started, it would have no cleanup to wait for).
        await loser_running.wait()
        return "won"

    async def stubborn_cleanup() -> None:
        loser_running.set()
        try:
            await asyncio.sleep(3600)
        finally:
            cleaning.set()
            # Cleanup takes a few iterations.
            for _ in range(3):
                await asyncio.sleep(0)
            loser_done.append(True)

    # The loser is attempt 1: attempt 0 runs in the race's own task, where a
    # second cancel of that task reaches it like any awaited code.
    race = asyncio.ensure_future(staggered_race([win, stubborn_cleanup], 0))
    await cleaning.wait()
    race.cancel()
    with pytest.raises(asyncio.CancelledError):
        await race
    assert loser_done == [True]


@virtual_clock
async def test_late_winner_leaves_no_cancel_request_on_the_caller():
    # Attempt 0 runs in the caller's task; when attempt 1 wins, attempt 0 is
    # interrupted there, and that cancel request must be taken back.
    script = Script([("ok", 5.0), ("ok", 0.1)])
    async with asyncio.timeout(10):
        result, index, exceptions, _ = await staggered_race(script.factories(), 0.25)
    assert (result, index) == ("result 1", 1)
    assert kinds(exceptions) == ["cancelled", "won"]
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    await asyncio.sleep(0)  # no stray CancelledError is pending


async def test_outside_cancel_coinciding_with_a_late_winner_still_cancels():
    loop = asyncio.get_running_loop()
    gate = loop.create_future()

    async def first() -> str:
        await asyncio.sleep(3600)
        return "never"

    async def second() -> str:
        return await gate

    race = asyncio.ensure_future(staggered_race([first, second], 0))
    for _ in range(3):
        await asyncio.sleep(0)

    def win_and_cancel() -> None:
        gate.set_result("second")
        race.cancel("from outside")

    loop.call_soon(win_and_cancel)
    with pytest.raises(asyncio.CancelledError):
        await race


def _cancel_scenario() -> tuple[Script, Callable[[], AsyncIterator[Any]], list[str]]:
    """A race touching every await point: a source that pauses, attempts
    failing, hanging and winning at various times."""
    script = Script(
        [("fail", 0.1), ("hang", None), ("fail", 0.0), ("ok", 0.5), ("ok", 0.7)]
    )
    log: list[str] = []

    async def source() -> AsyncIterator[Callable[[], Awaitable[str]]]:
        try:
            for i, factory in enumerate(script.factories()):
                if i == 2:
                    await asyncio.sleep(0.05)
                yield factory
        finally:
            log.append("closed")

    return script, source, log


_EVENT_TIMES = [0.0, 0.05, 0.1, 0.15, 0.25, 0.3, 0.35, 0.5, 0.6, 0.65, 0.8]


@pytest.mark.parametrize("ticks", range(4))
@pytest.mark.parametrize("when", _EVENT_TIMES)
@virtual_clock
async def test_cancellation_at_any_point_cancels_everything_and_closes_the_source(
    when, ticks
):
    loop = asyncio.get_running_loop()
    script, source, log = _cancel_scenario()
    race = asyncio.ensure_future(staggered_race(source(), 0.25))

    def tick(remaining: int) -> None:
        if remaining == 0:
            race.cancel()
        else:
            loop.call_soon(tick, remaining - 1)

    loop.call_at(when, tick, ticks)
    try:
        result = await race
    except asyncio.CancelledError:
        pass
    else:
        # The race can be over before the cancel lands; then it must have
        # a proper winner.
        assert result[1] is not None
    assert log == ["closed"]
    # Every attempt that started has settled: none is left running.
    assert set(script.settled) == set(range(len(script.started)))
    assert race.done()


# -- what a pull of the source leaves behind ------------------------------------


@pytest.mark.parametrize("steps", range(6))
async def test_source_error_in_the_step_an_attempt_wins_is_reported(steps):
    # delay=0: the next item is pulled in the background while attempt 0
    # runs. However the loop orders the two, an error the source raised is
    # the race's aiter_exc, never an unretrieved task exception.
    boom = LookupError("source broke")
    pulls = []

    async def attempt() -> str:
        for _ in range(steps):
            await asyncio.sleep(0)
        return "won"

    async def source() -> AsyncIterator[Callable[[], Awaitable[str]]]:
        yield attempt
        pulls.append("second")
        raise boom

    result, index, exceptions, aiter_exc = await staggered_race(source(), 0)
    assert (result, index, exceptions) == ("won", 0, [None])
    assert aiter_exc is (boom if pulls else None)


@virtual_clock
async def test_cancelled_race_waits_for_its_pull_before_closing_the_source():
    # Attempt 0 hangs in the caller's task; the delay runs out and the next
    # item is awaited in a task of the race's. The source, like a resolver,
    # takes a few loop steps to clean up when its __anext__ is cancelled.
    log: list[str] = []

    async def hang() -> None:
        await asyncio.Event().wait()

    async def slow_source() -> AsyncIterator[Callable[[], Awaitable[None]]]:
        try:
            yield hang
            await asyncio.sleep(3600)  # the next item never comes
            yield hang
        finally:
            for _ in range(3):
                await asyncio.sleep(0)
            log.append("closed")

    source = slow_source()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1.0):
            await staggered_race(source, 0.25)
    me = asyncio.current_task()
    assert [task for task in asyncio.all_tasks() if task is not me] == []
    assert log == ["closed"]
    assert source.ag_frame is None  # finished, not left suspended


# -- attempts raising BaseException ----------------------------------------------


class Unusual(BaseException):
    """Neither an Exception nor a CancelledError."""


@virtual_clock
async def test_base_exception_of_a_later_attempt_is_recorded_as_its_failure():
    async def first() -> str:
        await asyncio.sleep(1.0)
        raise AttemptFailed(0)

    async def second() -> str:
        await asyncio.sleep(0.1)
        raise Unusual("odd")

    async with asyncio.timeout(100):  # the race used to hang here
        result, index, exceptions, _ = await staggered_race([first, second], 0.25)
    assert (result, index) == (None, None)
    assert isinstance(exceptions[0], AttemptFailed)
    assert isinstance(exceptions[1], Unusual)


@pytest.mark.parametrize("attempt", [0, 1])
@virtual_clock
async def test_base_exception_of_a_loser_is_recorded_while_another_wins(attempt):
    async def odd() -> str:
        await asyncio.sleep(0.1)
        raise Unusual("odd")

    async def slow() -> str:
        await asyncio.sleep(1.0)
        return "slow"

    attempts = [odd, slow] if attempt == 0 else [slow, odd, slow]
    result, index, exceptions, _ = await staggered_race(attempts, 0.05)
    assert (result, index) == ("slow", 0 if attempt == 1 else 1)
    assert isinstance(exceptions[attempt], Unusual)


@pytest.mark.parametrize("exit_exc", [SystemExit, KeyboardInterrupt])
@pytest.mark.parametrize("exiting", [0, 1])
@virtual_clock
async def test_exit_from_an_attempt_propagates_after_everything_stopped(
    exit_exc, exiting
):
    # KeyboardInterrupt and SystemExit are not an attempt's failure but the
    # program's: the race stops every other attempt, closes the source and
    # then raises it (asyncio's own staggered_race lets them through too).
    loop = asyncio.get_running_loop()
    settled: dict[int, tuple[str, float]] = {}
    log: list[str] = []

    def factory(index: int) -> Callable[[], Awaitable[str]]:
        async def attempt() -> str:
            try:
                await asyncio.sleep(0.1 if index == exiting else 3600)
            except asyncio.CancelledError:
                await asyncio.sleep(0)  # a loser's cleanup takes a step
                settled[index] = ("cancelled", loop.time())
                raise
            raise exit_exc("stop")

        return attempt

    async def source() -> AsyncIterator[Callable[[], Awaitable[str]]]:
        try:
            for index in range(3):
                yield factory(index)
        finally:
            log.append("closed")

    with pytest.raises(exit_exc, match="stop"):
        async with asyncio.timeout(100):
            await staggered_race(source(), 0.01)
    assert log == ["closed"]
    assert settled == {
        i: ("cancelled", pytest.approx(0.1 + 0.01 * exiting))
        for i in range(3)
        if i != exiting
    }
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


# -- property: the schedule matches a reference model ---------------------------

from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def model(
    plan: list[tuple[str, float]], delay: float | None
) -> tuple[int | None, list[float], list[str]]:
    """The schedule RFC 8305 §5 prescribes, computed directly."""
    starts: list[float] = []
    ends: list[float] = []
    now = 0.0
    for outcome, duration in plan:
        starts.append(now)
        end = math.inf if outcome == "hang" else now + duration
        ends.append(end)
        next_start = now + delay if delay is not None else math.inf
        if outcome == "fail":
            next_start = min(next_start, end)
        # Has anyone already started won before the next start?
        wins = [e for (o, _), e in zip(plan, ends, strict=False) if o == "ok"]
        first_win = min(wins, default=math.inf)
        if first_win <= next_start or next_start == math.inf:
            break
        now = next_start
    started = len(starts)
    wins = [(ends[i], i) for i in range(started) if plan[i][0] == "ok"]
    winner = min(wins)[1] if wins else None
    if winner is None:
        kinds_ = [
            "failed" if plan[i][0] == "fail" else "cancelled" for i in range(started)
        ]
    else:
        stop = ends[winner]
        kinds_ = [
            "won"
            if i == winner
            else ("failed" if plan[i][0] == "fail" and ends[i] < stop else "cancelled")
            for i in range(started)
        ]
    return winner, starts, kinds_


def _well_separated(plan: list[tuple[str, float]], delay: float | None) -> bool:
    """True when no two events of the model coincide (ties are decided by the
    loop's internals, which the model does not describe)."""
    _, starts, _ = model(plan, delay)
    # Every start is caused by a failure or by the delay timer, so these are
    # all the events; a timer runs out even when the model starts nothing
    # then (an attempt won at that very moment: a tie too).
    events = []
    for index, ((outcome, duration), start) in enumerate(
        zip(plan, starts, strict=False)
    ):
        if outcome != "hang":
            events.append(start + duration)
        if delay is not None and index < len(plan) - 1:
            events.append(start + delay)
    ordered = sorted(events)
    return all(b - a > 1e-6 for a, b in itertools.pairwise(ordered))


attempt_plans = st.lists(
    st.tuples(
        st.sampled_from(["ok", "fail", "fail", "hang"]),
        st.integers(min_value=1, max_value=1000).map(lambda ms: ms / 1000),
    ),
    min_size=1,
    max_size=8,
)
delays = st.sampled_from([None, 0.1, 0.25, 0.333])


@settings(
    max_examples=60 if sys.version_info >= (3, 12) else 100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(plan=attempt_plans, delay=delays)
def test_schedule_matches_the_reference_model(plan, delay):
    import loops
    from conftest import run_on_loop

    assume(_well_separated(plan, delay))
    winner, starts, expected_kinds = model(plan, delay)
    # A race with no winner and a hanging attempt never ends: the timeout
    # tests cover it.
    assume(winner is not None or all(o != "hang" for o, _ in plan[: len(starts)]))

    for flavour in loops.VIRTUAL_FLAVOURS:
        script = Script(list(plan))

        race = staggered_race(script.factories(), delay)
        result, index, exceptions, aiter_exc = run_on_loop(race, flavour, virtual=True)
        assert index == winner
        assert result == (None if winner is None else f"result {winner}")
        assert script.started == approx(starts)
        assert kinds(exceptions) == expected_kinds
        assert aiter_exc is None
