"""The staggered race: try several ways of doing one thing, a little apart.

This is the scheduler at the heart of Happy Eyeballs (RFC 8305 §5), kept free
of anything socket-specific so it can race mirrors, replicas or any other
alternatives.

How the race runs
-----------------
Attempts are zero-argument callables returning awaitables, pulled one at a
time from an iterable (or async iterable) only when the next attempt is due,
so the source may be infinite or may still be producing items (the resolver
feeds addresses that arrive late this way, RFC 8305 §6).

* Attempt 0 starts at once.
* Attempt *i + 1* starts when ``delay`` seconds have passed since attempt *i*
  started, or at once when attempt *i* fails, whichever comes first (RFC 8305
  §5: a failure means waiting longer for it is pointless). Failures of older
  attempts do not hurry the schedule: the clock runs from the most recent
  start. ``delay=None`` means "only on failure": strictly one at a time.
* Starting an attempt never stops an earlier one; several may be in flight.
* The first attempt to *return* wins. The winner is decided synchronously,
  inside the winning attempt's own task step, and every other attempt is
  cancelled in that same step, before any of them can run again. So there is
  never a second winner, not even when two attempts finish in the same loop
  iteration or when an eager task factory runs attempts synchronously.
* The race returns only when every attempt it started has finished, and it
  closes an async iterable (``aclose``) on every exit, so nothing it started
  outlives it.
* A source that says it has nothing left (``__length_hint__``, PEP 424,
  returning 0: a list's iterator does, and so do the resolvers' answers for
  IP literals) gets no delay timer after attempt 0: nothing could start when
  it ran out. The hint is taken at its word; a source that then produces
  more starts its next attempt when attempt 0 fails.

Attempt 0 runs directly in the task that awaits the race; later attempts run
in tasks of their own, started only when the delay runs out or attempt 0
fails. The common case, where the first attempt wins, so costs no task and
no extra loop iteration. (Attempt 0 thus shares the caller's task, its
context variables and its cancellations, like any awaited coroutine.)

Cancelling the task awaiting the race cancels every attempt, waits for them,
closes the iterable and re-raises the ``CancelledError``; the cancel request is
not consumed, so ``asyncio.timeout`` around the race works as usual.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import sys
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
)
from operator import length_hint
from types import CoroutineType
from typing import Any, Generic, TypeAlias, TypeVar

from ._checks import check_seconds

__all__ = ["AttemptFactory", "RaceResult", "staggered_race"]

T = TypeVar("T")

#: One way of doing the job: called with no arguments when its turn comes,
#: it returns the awaitable that does the work.
AttemptFactory: TypeAlias = Callable[[], Awaitable[T]]

#: ``(winner_result, winner_index, exceptions, aiter_exc)``, as returned by
#: async_stagger since 0.4.
RaceResult: TypeAlias = tuple[
    T | None, int | None, list[BaseException | None], BaseException | None
]

_NOT_FINISHED: Any = object()
_EXHAUSTED: Any = object()

# asyncio.Task(..., eager_start=True) exists from Python 3.12 on.
_EAGER_START = sys.version_info >= (3, 12)


def _check_delay(delay: float | None) -> float | None:
    """Validate the delay; infinity means the same as ``None``."""
    seconds = check_seconds("delay", delay, allow_none=True)
    if seconds is not None and math.isinf(seconds):
        return None
    return seconds


async def _anext(source: AsyncIterator[T]) -> T:
    return await source.__anext__()


def _work(index: int, factory: object) -> Awaitable[Any]:
    """Call an attempt's factory; refuse what cannot be awaited."""
    if not callable(factory):
        raise TypeError(
            f"attempt {index}: expected a callable returning an awaitable,"
            f" got {factory!r}"
        )
    work = factory()
    if type(work) is not CoroutineType and not inspect.isawaitable(work):
        raise TypeError(
            f"attempt {index}: {factory!r} returned {work!r}, which is not awaitable"
        )
    return work


class _Race(Generic[T]):
    """The state of one race. Attempts and the driver share it; all of it
    is touched only from the event loop's thread."""

    __slots__ = (
        "asynchronous",
        "cancelled_inline",
        "delay",
        "delay_for",
        "driver",
        "exceptions",
        "exhausted",
        "inline_running",
        "inline_task",
        "iter_exc",
        "last_started",
        "loop",
        "next_due",
        "next_due_at",
        "running",
        "source",
        "tasks",
        "timer",
        "wake",
        "winner_index",
        "winner_result",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        delay: float | None,
        source: Any,
        asynchronous: bool,
        delay_for: Callable[[int], float] | None = None,
    ) -> None:
        # Slots, all set here: reading a slot is one of the cheapest things
        # Python does (a class-level default read through an instance is
        # not), and the race reads its state often.
        self.loop = loop
        self.delay = delay
        # Chooses the delay after each attempt by its index, for callers that
        # time attempts individually (connection history, RFC 8305 §5).
        self.delay_for = delay_for
        self.source = source
        self.asynchronous = asynchronous
        self.tasks: list[asyncio.Task[None]] = []
        self.exceptions: list[BaseException | None] = []
        self.winner_index: int | None = None
        self.winner_result: T | None = None
        self.iter_exc: BaseException | None = None
        self.exhausted = False
        # True when the next attempt may start: at the beginning, after the
        # delay since the latest start, or when the latest attempt failed.
        self.next_due = True
        self.last_started = -1
        self.running = 0
        self.timer: asyncio.TimerHandle | None = None
        # When the latest attempt's delay runs out (None: no deadline).
        self.next_due_at: float | None = None
        self.wake: asyncio.Future[None] | None = None
        # Attempt 0 runs in the caller's own task (see run()); while it does,
        # later attempts are started by a driver task of their own.
        self.inline_task: asyncio.Task[Any] | None = None
        self.inline_running = False
        self.cancelled_inline = False
        self.driver: asyncio.Task[None] | None = None

    @property
    def eager(self) -> bool:
        """Whether to start attempt tasks eagerly: where asyncio can, unless
        the loop has a task factory of its own (it gets its way)."""
        return _EAGER_START and self.loop.get_task_factory() is None

    # -- signals from attempts and timers -------------------------------------

    def _wake(self) -> None:
        wake = self.wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def _delay_elapsed(self) -> None:
        self.timer = None
        self.next_due_at = None
        self.next_due = True
        if self.inline_running and self.driver is None:
            self._spawn_driver()
        else:
            self._wake()

    def _spawn_driver(self) -> None:
        """Attempt 0 is still busy in the caller's task: start later
        attempts from a task of their own."""
        if self.asynchronous:
            drive = self.drive_async(self.source)
        else:
            drive = self.drive_sync(self.source)
        self.driver = self.loop.create_task(drive)

    def _wake_on_done(self, _: object) -> None:
        self._wake()

    async def _attempt(self, index: int, factory: object) -> None:
        try:
            result = await _work(index, factory)
        except (Exception, asyncio.CancelledError) as exc:
            self._failed(index, exc)
            return
        self._succeeded(index, result)

    def _failed(self, index: int, exc: BaseException) -> None:
        # Swallowed by the caller, reported in the race's result: a lost
        # attempt must not surface as "Task exception was never retrieved".
        self.exceptions[index] = exc
        self.running -= 1
        if self.winner_index is None:
            if index == self.last_started:
                # RFC 8305 §5: the latest attempt failed, so start the next
                # one now instead of waiting out the delay.
                self.next_due = True
                self._wake()
            elif self.running == 0:
                self._wake()

    def _succeeded(self, index: int, result: Any) -> None:
        self.running -= 1
        if self.winner_index is not None:
            # Only reachable when an attempt ignored its cancellation and
            # returned anyway; there is already a winner.
            self.exceptions[index] = asyncio.CancelledError(
                "finished after another attempt had won"
            )
            return
        # The winner. Cancel everybody else now, in this same task step, so
        # no other attempt gets to run (and perhaps finish) again.
        self.winner_index = index
        self.winner_result = result
        self.exceptions[index] = None
        tasks = self.tasks
        for other in tasks:
            if not other.done():
                other.cancel()
        if self.inline_running and index != 0:
            # Attempt 0 lost while running in the caller's task: interrupt
            # it there. run() takes this cancel request back (uncancel) once
            # attempt 0 has stopped, as asyncio.timeout does with its own.
            self.cancelled_inline = True
            assert self.inline_task is not None
            self.inline_task.cancel()
        wake = self.wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    # -- the driver ----------------------------------------------------------

    def _start(self, factory: object) -> None:
        index = len(self.exceptions)
        self.exceptions.append(_NOT_FINISHED)
        self.last_started = index
        self.running += 1
        self.next_due = False
        self.next_due_at = None
        timer = self.timer
        if timer is not None:
            timer.cancel()
            self.timer = None
        delay = self.delay if self.delay_for is None else self.delay_for(index)
        if delay is not None:
            if delay > 0:
                # The timer itself is armed only if the driver has to wait
                # (see _wait): an attempt that settles at once needs none.
                self.next_due_at = self.loop.time() + delay
            else:
                self.next_due = True
        # Started eagerly where asyncio can (3.12+): the attempt runs up to its
        # first suspension right now, so a connect() that completes or fails
        # at once costs no loop iteration. It may even finish, and win, before
        # this returns; the driver re-checks the state after every start.
        attempt = self._attempt(index, factory)
        if self.eager:
            task = asyncio.Task(attempt, loop=self.loop, eager_start=True)  # type: ignore[call-arg]
        else:
            task = self.loop.create_task(attempt)
        if not task.done():
            self.tasks.append(task)

    async def _wait(self) -> None:
        if (
            self.timer is None
            and not self.next_due
            and not self.exhausted
            and self.next_due_at is not None
        ):
            self.timer = self.loop.call_at(self.next_due_at, self._delay_elapsed)
        self.wake = wake = self.loop.create_future()
        try:
            await wake
        finally:
            self.wake = None

    async def run(self) -> RaceResult[T]:
        """Run the race to the end, clean up, and return its result.

        Attempt 0 runs right here, in the caller's task; later ones get
        tasks only when the delay runs out or attempt 0 fails. The common
        case is that the first attempt wins (one address, or the first one
        works): with no task, wake-up future or coroutine of its own around
        the attempt, it costs little more than awaiting the attempt alone.
        """
        source = self.source
        asynchronous = self.asynchronous
        try:
            try:
                if asynchronous:
                    first = await source.__anext__()
                else:
                    first = next(source)
            except (Exception, asyncio.CancelledError) as exc:
                self._source_stopped(exc)
            else:
                me = asyncio.current_task(self.loop)
                if me is None:  # pragma: no cover - awaited outside any task
                    self._start(first)
                else:
                    self._start_inline(me)
                    cancel_requests = me.cancelling()
                    try:
                        result = await _work(0, first)
                    except (Exception, asyncio.CancelledError) as exc:
                        self._failed(0, exc)
                    else:
                        self._succeeded(0, result)
                    finally:
                        self.inline_running = False
                        if self.cancelled_inline:
                            self.cancelled_inline = False
                            me.uncancel()
                    if me.cancelling() > cancel_requests:
                        # Somebody else cancelled us while attempt 0 ran
                        # here; the attempt took the CancelledError, pass it
                        # on.
                        outcome = self.exceptions[0]
                        if isinstance(outcome, asyncio.CancelledError):
                            raise outcome
                        raise asyncio.CancelledError()
                if self.driver is not None:
                    await self.driver
                elif self.winner_index is None:
                    if asynchronous:
                        await self.drive_async(source)
                    else:
                        await self.drive_sync(source)
        finally:
            # Stop the timer, cancel and await whatever still runs, close
            # the source. Keep going when cancelled meanwhile, then re-raise.
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            cancelled: asyncio.CancelledError | None = None
            if self.tasks or self.driver is not None:
                cancelled = await self._stop_tasks()
            aclose = getattr(source, "aclose", None) if asynchronous else None
            if aclose is not None:
                try:
                    await aclose()
                except asyncio.CancelledError as exc:
                    cancelled = exc
                except Exception as exc:
                    if self.iter_exc is None:
                        self.iter_exc = exc
            if _NOT_FINISHED in self.exceptions:
                for index, outcome in enumerate(self.exceptions):
                    if outcome is _NOT_FINISHED:
                        # Cancelled before its first step ever ran.
                        self.exceptions[index] = asyncio.CancelledError()
            if cancelled is not None:
                raise cancelled
        return self.winner_result, self.winner_index, self.exceptions, self.iter_exc

    def _start_inline(self, me: asyncio.Task[Any]) -> None:
        """Book attempt 0 as started in the caller's task *me*, and arrange
        for the next one."""
        self.exceptions.append(_NOT_FINISHED)
        self.last_started = 0
        self.running = 1
        self.next_due = False
        delay = self.delay if self.delay_for is None else self.delay_for(0)
        if delay is not None:
            if delay == 0:
                # delay=0: everything starts at once, so later attempts must
                # not wait for this one. (An eager driver may start and even
                # finish some right here, before attempt 0 runs.)
                self.next_due = True
                self._spawn_driver()
            elif length_hint(self.source, 1) > 0:
                self.timer = self.loop.call_later(delay, self._delay_elapsed)
            # else: the source says nothing is left to start (PEP 424), so
            # there is nothing for a timer to do.
        self.inline_task = me
        self.inline_running = True

    def _source_stopped(self, exc: BaseException) -> None:
        """The source ended (Stop[Async]Iteration) or raised *exc*: pull no
        more, and report a real error as ``aiter_exc``. A CancelledError
        that is our own task being cancelled propagates instead."""
        self.exhausted = True
        if isinstance(exc, StopIteration | StopAsyncIteration):
            return
        if isinstance(exc, asyncio.CancelledError):
            task = asyncio.current_task(self.loop)
            if task is not None and task.cancelling():
                raise exc  # we are being cancelled, not the source
        self.iter_exc = exc

    async def drive_sync(self, iterator: Iterator[Callable[[], Awaitable[T]]]) -> None:
        while self.winner_index is None:
            if self.next_due and not self.exhausted:
                if self.delay == 0 and self.last_started >= 0:
                    # Let attempts already started take their first step, and
                    # never starve the loop on an endless iterable.
                    await asyncio.sleep(0)
                    if self.winner_index is not None:
                        break
                try:
                    factory = next(iterator)
                except Exception as exc:
                    self._source_stopped(exc)
                else:
                    self._start(factory)
                continue
            if self.exhausted and self.running == 0:
                break
            await self._wait()

    async def drive_async(
        self, source: AsyncIterator[Callable[[], Awaitable[T]]]
    ) -> None:
        pull: asyncio.Future[Callable[[], Awaitable[T]]] | None = None
        try:
            while self.winner_index is None:
                if self.next_due and not self.exhausted:
                    if self.delay == 0 and self.last_started >= 0:
                        await asyncio.sleep(0)
                        if self.winner_index is not None:
                            break
                    try:
                        if pull is None and self.running == 0:
                            # Nothing else can happen meanwhile: pull directly.
                            factory = await source.__anext__()
                        else:
                            # Attempts in flight may win or fail while the
                            # source thinks, so pull in a task we can abandon.
                            if pull is None:
                                pull = self.loop.create_task(_anext(source))
                                if not pull.done():
                                    pull.add_done_callback(self._wake_on_done)
                            if not pull.done():
                                await self._wait()
                                continue
                            done, pull = pull, None
                            factory = done.result()
                    except (Exception, asyncio.CancelledError) as exc:
                        self._source_stopped(exc)
                    else:
                        self._start(factory)
                    continue
                if self.exhausted and self.running == 0:
                    break
                await self._wait()
        finally:
            if pull is not None and not pull.done():
                pull.remove_done_callback(self._wake_on_done)
                pull.cancel()
                self.tasks.append(pull)  # type: ignore[arg-type]

    async def _stop_tasks(self) -> asyncio.CancelledError | None:
        """Cancel every task still running and wait for all of them, even
        when cancelled meanwhile; return that cancellation, if any."""
        cancelled: asyncio.CancelledError | None = None
        if self.driver is not None and not self.driver.done():
            self.driver.cancel()
            self.tasks.append(self.driver)
        pending = [task for task in self.tasks if not task.done()]
        for task in pending:
            # Cancel each task once: a second cancel() would interrupt the
            # cleanup a loser is already doing in response to the first.
            if not task.cancelling():
                task.cancel()
        while pending:
            try:
                await asyncio.wait(pending)
            except asyncio.CancelledError as exc:
                cancelled = exc
            pending = [task for task in pending if not task.done()]
        return cancelled


async def staggered_race(
    coro_fns: Iterable[Callable[[], Awaitable[T]]]
    | AsyncIterable[Callable[[], Awaitable[T]]],
    delay: float | None,
) -> RaceResult[T]:
    """Run attempts with staggered starts; the first to succeed wins.

    Attempt 0 starts at once. Each next attempt starts *delay* seconds after
    the previous one started, or as soon as the previous one fails, whichever
    is first (RFC 8305 §5). Earlier attempts keep running when a later one
    starts. The first attempt to return a value wins; every other attempt is
    then cancelled, and the race returns once they have all finished.

    Args:
        coro_fns: An iterable or async iterable of zero-argument callables,
            each returning an awaitable (typically ``functools.partial`` of a
            coroutine function). Items are pulled lazily, only when the next
            attempt is due, so the iterable may be endless or slow.
        delay: Seconds between attempt starts, ``0`` to start them all at
            once, or ``None`` to start each only after the previous failed.

    Returns:
        ``(winner_result, winner_index, exceptions, aiter_exc)``:
        the winning attempt's return value and its index (both ``None`` when
        every attempt failed); a list with one entry per attempt started,
        holding what it raised (``None`` for the winner, a
        ``CancelledError`` for attempts cancelled because another won); and
        the exception raised while iterating *coro_fns*, or ``None``. An
        item that is not callable, or whose call returns something not
        awaitable, counts as a started attempt that failed with
        ``TypeError``.

        Attempt 0 runs in the calling task itself (later ones in tasks of
        their own), so it sees the caller's ``asyncio.current_task()`` and
        context variables.

        A source whose ``__length_hint__`` (PEP 424) reports nothing left
        after attempt 0 gets no delay timer: attempt 1, should the source
        produce one after all, then starts when attempt 0 fails.

        If the task running the race is cancelled after the winner is known
        but before the losers have finished, the winner's result is
        discarded: callers racing for resources (sockets) should keep track
        of them to close them in that case.

    Raises:
        TypeError: *coro_fns* is not iterable, or *delay* is not a number.
        ValueError: *delay* is negative or NaN.
        asyncio.CancelledError: the race was cancelled; every attempt has
            been cancelled and awaited.

    .. versionchanged:: 1.0
       Accepts async iterables; validates its arguments; guarantees a single
       winner under eager task factories; arms no delay timer for a source
       that reports nothing left.
    """
    return await _race_on_loop(asyncio.get_running_loop(), coro_fns, delay)


def _race_on_loop(
    loop: asyncio.AbstractEventLoop,
    coro_fns: Iterable[Callable[[], Awaitable[T]]]
    | AsyncIterable[Callable[[], Awaitable[T]]],
    delay: float | None,
    delay_for: Callable[[int], float] | None = None,
) -> Coroutine[Any, Any, RaceResult[T]]:
    """:func:`staggered_race` on *loop*, which must be the running loop:
    checks the arguments and returns the race's coroutine, to be awaited.

    *delay_for*, when given, is called with each attempt's index as it
    starts and returns the delay after it in place of *delay* (which still
    decides the schedule's shape: ``0`` or ``None`` as usual). It must return
    a finite number of seconds > 0, already checked.

    For callers that already hold the running loop: looking it up again is
    not free (on Python 3.11 it costs a ``getpid`` system call), and neither
    is one more coroutine between the caller and the attempts.
    """
    if delay is None or (type(delay) is float and 0.0 < delay < math.inf):
        checked_delay = delay
    else:
        checked_delay = _check_delay(delay)
    source: Any
    asynchronous = hasattr(type(coro_fns), "__aiter__")
    if asynchronous:
        source = coro_fns.__aiter__()  # type: ignore[union-attr]
    else:
        try:
            source = iter(coro_fns)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(
                "coro_fns must be an iterable or async iterable of callables,"
                f" got {type(coro_fns).__name__}"
            ) from None
    race: _Race[T] = _Race(loop, checked_delay, source, asynchronous, delay_for)
    return race.run()
