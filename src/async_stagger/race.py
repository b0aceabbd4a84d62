"""The staggered race: try several ways of doing one thing, a little apart.

This is the scheduler at the heart of Happy Eyeballs (RFC 8305 §5), kept free
of anything socket-specific so it can race mirrors, replicas or any other
alternatives.

What the race does
~~~~~~~~~~~~~~~~~~
Attempts are zero-argument callables returning awaitables, pulled one at a
time from an iterable (or async iterable) only when the next attempt is due,
so the source may be endless or still producing items (the resolver feeds
addresses that arrive late this way, RFC 8305 §6).

Attempt 0 starts at once. Attempt *i + 1* starts when ``delay`` seconds have
passed since attempt *i* started, or at once when attempt *i* fails,
whichever comes first: RFC 8305 §5 staggers the attempts so a broken path
costs only the delay, and a failure means waiting any longer for it is
pointless. Failures of older attempts do not hurry the schedule: the clock
runs from the most recent start. ``delay=None`` means "only on failure",
strictly one at a time; ``delay=0`` starts everything at once. Starting an
attempt never stops an earlier one: a slow path that works can still win.

The first attempt to *return* wins. The winner is decided synchronously,
inside the winning attempt's own task step, and every other attempt is
cancelled in that same step, before any of them can run again: there is
never a second winner, not even when two attempts finish in one loop
iteration or an eager task factory runs attempts synchronously.

The race returns only once every attempt it started has finished, a
background pull of the source included, and it closes an async source
(``aclose``) on every exit, after that pull has stopped: nothing the race
started outlives it, and a source is never closed while it is still running.

Why attempt 0 runs in the caller's task
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
The commonest race has one attempt that works (an IP literal, or a first
address that answers). Run directly in the task awaiting the race, it costs
no task, no wake-up future and no extra loop iteration: 15–20 % of an
IP-literal connection. Later attempts run in tasks of their own, started by
a driver task only when the delay runs out or attempt 0 fails. Attempt 0
thus sees the caller's ``current_task()``, context variables and
cancellations, like any awaited coroutine.

The invariant that makes this safe: *the race takes back every cancel
request it makes of the caller's task, and no other.* When a later attempt
wins (or asks the program to exit) while attempt 0 is still running, the
race interrupts attempt 0 by cancelling the caller's task, and calls
``uncancel()`` once attempt 0 has stopped, so ``cancelling()`` is what it
was, as ``asyncio.timeout`` does with its own request. A cancellation from
anyone else is never taken back: the race stops everything and re-raises
it, and ``asyncio.timeout`` around the race works as usual.

What an attempt's exception means
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
Any exception, a ``CancelledError`` included, is that attempt's failure,
recorded in the result. So is a ``BaseException`` subclass that is neither
(asyncio's staggered race records those too). ``KeyboardInterrupt`` and
``SystemExit`` are not an attempt's failure but the program's wish to stop:
the race stops every other attempt as a winner would, waits for them, closes
the source, and raises it.

What is left out, and why
~~~~~~~~~~~~~~~~~~~~~~~~~
* No task group: a task group turns one failing child into the cancellation
  of all, where here a failure is an ordinary outcome that starts the next
  attempt; and it would put attempt 0 in a task of its own.
* No timeout per attempt and no retries: an attempt that should give up
  carries its own timeout (the connection functions' TLS handshake does).
  The race only decides when attempts start and who won.
* A source's ``__length_hint__`` is not believed in general: PEP 424 makes
  it an estimate, and a source that says "nothing left" but then produces
  more would silently lose its stagger. Only iterators whose count is exact
  (a list's or tuple's, and the library's own sources) spare the delay
  timer after their last item (``_items_left``).
* A plain iterable is not closed: the race starts no task inside it, and a
  generator is closed when it is dropped.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
)
from operator import length_hint
from types import CoroutineType
from typing import Any, Generic, TypeAlias, TypeVar

from ._checks import check_delay
from ._loop_abilities import start_task
from ._tasks import wait_until_done

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

# What an attempt's slot in the exceptions list holds until it has finished.
_NOT_FINISHED: Any = object()
# What a pull of the source returns when it started nothing: the source
# ended or failed, or is still thinking (look again once woken).
_NO_ITEM: Any = object()

# Iterators whose __length_hint__ is an exact count, not PEP 424's estimate:
# the number of items not yet visited. (A list grown while it is being raced
# is the one exception: its new items are still tried, once an attempt
# fails.) The library's own sources say so with a class attribute.
_EXACT_LENGTH_TYPES: frozenset[type] = frozenset({type(iter([])), type(iter(()))})


def _items_left(source: object) -> int:
    """How many items *source* has left, as far as the race may rely on it:
    the count of an iterator known to keep it exact (a list's or tuple's, or
    a type with a true ``_exact_length_hint``), else 1 (more may come).

    Worth ~5 % of an IP-literal connection's instructions: no delay timer is
    armed (and cancelled) for the one and only attempt.
    """
    kind = type(source)
    if kind in _EXACT_LENGTH_TYPES or getattr(kind, "_exact_length_hint", False):
        return length_hint(source, 1)
    return 1


def _drop_own_frame(exc: BaseException) -> None:
    """Take the race's own frame off an attempt's traceback: the result
    keeps the exception, and that frame holds the race, a reference cycle
    (cpython#124858) the cyclic GC would walk again and again in a race of
    many attempts (the cost per attempt grew 3x from 1,000 to 100,000). The
    attempt's own frames stay."""
    traceback = exc.__traceback__
    if traceback is not None:
        exc.__traceback__ = traceback.tb_next


def _check_delay(delay: float | None) -> float | None:
    """Validate the delay; infinity means the same as ``None``."""
    seconds = check_delay("delay", delay)
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
    """The state of one race. Attempts, timer and driver share it; all of it
    is touched only from the event loop's thread.

    :meth:`run` is the whole race in three steps: the first pull, attempt 0
    in the caller's task, and the finish (stop, wait, close). Everything
    after attempt 0 is :meth:`_drive`'s loop.
    """

    __slots__ = (
        "asynchronous",
        "cancelled_inline",
        "delay",
        "delay_for",
        "driver",
        "exceptions",
        "exhausted",
        "exit_exc",
        "inline_running",
        "inline_task",
        "iter_exc",
        "last_started",
        "loop",
        "next_due",
        "next_due_at",
        "over",
        "pull",
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
        # The tasks of attempts still running, by index (a finished attempt
        # drops its own: see _attempt).
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.exceptions: list[BaseException | None] = []
        self.winner_index: int | None = None
        self.winner_result: T | None = None
        self.iter_exc: BaseException | None = None
        # KeyboardInterrupt or SystemExit from an attempt, raised at the end.
        self.exit_exc: BaseException | None = None
        # True once there is a winner (or an exit): start nothing more.
        self.over = False
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
        # The background pull of an async source, while attempts run.
        self.pull: asyncio.Task[Any] | None = None
        # Attempt 0 runs in the caller's own task (see _attempt_inline);
        # while it does, later attempts are started by a driver task.
        self.inline_task: asyncio.Task[Any] | None = None
        self.inline_running = False
        self.cancelled_inline = False
        self.driver: asyncio.Task[None] | None = None

    # -- the race in three steps ------------------------------------------------

    async def run(self) -> RaceResult[T]:
        """Run the race to the end, clean up, and return its result."""
        try:
            try:
                if self.asynchronous:
                    first = await self.source.__anext__()
                else:
                    first = next(self.source)
            except (Exception, asyncio.CancelledError) as exc:
                self._source_stopped(exc)
            else:
                await self._attempt_inline(first)
                if self.driver is not None:
                    await self.driver
                elif not self.over:
                    await self._drive()
        finally:
            await self._finish()
        return self.winner_result, self.winner_index, self.exceptions, self.iter_exc

    async def _attempt_inline(self, factory: object) -> None:
        """Run attempt 0 right here, in the caller's task (see the module's
        docstring for the cancel request this may have to take back)."""
        me = asyncio.current_task(self.loop)
        if me is None:  # pragma: no cover - awaited outside any task
            self._start(factory)
            return
        self._start_inline(me)
        cancel_requests = me.cancelling()
        try:
            result = await _work(0, factory)
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise  # the program's, not the attempt's: run() cleans up
        except BaseException as exc:
            _drop_own_frame(exc)
            self._failed(0, exc)
        else:
            self._succeeded(0, result)
        finally:
            self.inline_running = False
            if self.cancelled_inline:
                self.cancelled_inline = False
                me.uncancel()
        if me.cancelling() > cancel_requests:
            # Somebody else cancelled us while attempt 0 ran here; the
            # attempt took the CancelledError, pass it on.
            outcome = self.exceptions[0]
            if isinstance(outcome, asyncio.CancelledError):
                raise outcome
            raise asyncio.CancelledError()

    async def _finish(self) -> None:
        """Stop the timer, cancel and await whatever still runs, close the
        source. Keep going when cancelled meanwhile, then re-raise."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        cancelled: asyncio.CancelledError | None = None
        if self.tasks or self.driver is not None or self.pull is not None:
            try:
                await self._stop_tasks()
            except asyncio.CancelledError as exc:
                cancelled = exc
        if self.asynchronous:
            aclose = getattr(self.source, "aclose", None)
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
        if self.exit_exc is not None:
            raise self.exit_exc
        if cancelled is not None:
            raise cancelled

    def _start_inline(self, me: asyncio.Task[Any]) -> None:
        """Book attempt 0 as started in the caller's task *me*, and arrange
        for the next one."""
        self.exceptions.append(_NOT_FINISHED)
        self.last_started = 0
        self.running = 1
        self.next_due = False
        self.inline_task = me
        self.inline_running = True
        delay = self.delay if self.delay_for is None else self.delay_for(0)
        if delay is not None:
            if delay == 0:
                # Everything starts at once: later attempts must not wait
                # for this one, so a driver task starts them meanwhile. (An
                # eager driver runs up to its first sleep(0) right here.)
                self.next_due = True
                self._spawn_driver()
            elif _items_left(self.source) > 0:
                self.timer = self.loop.call_later(delay, self._delay_elapsed)
            # else: nothing is left to start, so nothing for a timer to do.

    # -- the driver: everything after attempt 0 ---------------------------------

    def _spawn_driver(self) -> None:
        """Attempt 0 is still busy in the caller's task: start later
        attempts from a task of their own."""
        self.driver = self.loop.create_task(self._drive())

    async def _drive(self) -> None:
        """Start attempts as they fall due, until one wins or the source has
        ended and every attempt has failed."""
        pull = self._pull_async if self.asynchronous else self._pull_sync
        while not self.over:
            if self.next_due and not self.exhausted:
                if self.delay == 0 and self.last_started >= 0:
                    # Let attempts already started take their first step,
                    # and never starve the loop on an endless source.
                    await asyncio.sleep(0)
                    if self.over:
                        break
                factory = await pull()
                if factory is not _NO_ITEM:
                    self._start(factory)
            elif self.exhausted and self.running == 0:
                break
            else:
                await self._wait()

    async def _pull_sync(self) -> Any:
        """The next item of a plain iterator, or ``_NO_ITEM`` at its end."""
        try:
            return next(self.source)
        except Exception as exc:
            self._source_stopped(exc)
            return _NO_ITEM

    async def _pull_async(self) -> Any:
        """The next item of an async source, or ``_NO_ITEM``: the source
        ended or failed, or it is still thinking and the driver was woken by
        something else."""
        pull = self.pull
        if pull is None:
            if self.running == 0:
                # Nothing else can happen meanwhile: pull directly.
                try:
                    return await self.source.__anext__()
                except (Exception, asyncio.CancelledError) as exc:
                    self._source_stopped(exc)
                    return _NO_ITEM
            # Attempts in flight may win or fail while the source thinks, so
            # pull in a task the race can stop waiting for (_stop_tasks
            # cancels and awaits it, before the source is closed).
            pull = self.pull = self.loop.create_task(_anext(self.source))
            if not pull.done():
                pull.add_done_callback(self._wake)
        if not pull.done():
            await self._wait()
            return _NO_ITEM
        self.pull = None
        try:
            return pull.result()
        except (Exception, asyncio.CancelledError) as exc:
            self._source_stopped(exc)
            return _NO_ITEM

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
        task = start_task(self.loop, self._attempt(index, factory))
        if not task.done():
            self.tasks[index] = task

    async def _wait(self) -> None:
        """Sleep until an attempt settles, the delay runs out or the pull
        has an item; the delay timer is armed only now, when needed."""
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

    async def _stop_tasks(self) -> None:
        """Cancel every task the race still runs (the driver, attempts, a
        pull of the source) and wait for all of them, even when cancelled
        meanwhile (then re-raise)."""
        stopping = [task for task in self.tasks.values() if not task.done()]
        driver = self.driver
        if driver is not None and not driver.done():
            stopping.append(driver)
        pull = self.pull
        if pull is not None:
            pull.remove_done_callback(self._wake)
            stopping.append(pull)
        for task in stopping:
            # Cancel each task once: a second cancel() would interrupt the
            # cleanup a loser is already doing in response to the first.
            if not task.cancelling():
                task.cancel()
        try:
            await wait_until_done(stopping)
        finally:
            if pull is not None:
                self.pull = None
                # Finished in the very step an attempt won, the pull was
                # never read: an error the source raised there is still the
                # race's aiter_exc (an item it produced is simply unused).
                if not pull.cancelled():
                    exc = pull.exception()
                    if not isinstance(exc, StopAsyncIteration | None):
                        self.exhausted = True
                        if self.iter_exc is None:
                            self.iter_exc = exc

    # -- signals from attempts and timers -------------------------------------

    def _wake(self, _: object = None) -> None:
        """Wake the driver (also a pull's done callback)."""
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

    async def _attempt(self, index: int, factory: object) -> None:
        """Attempt *index*, in a task of its own: it never raises, it
        reports. This is its task's last step, so it forgets its task: a
        race of many attempts keeps only their outcomes."""
        try:
            result = await _work(index, factory)
        except GeneratorExit:
            raise  # the coroutine is being closed, not the attempt failing
        except BaseException as exc:
            self.tasks.pop(index, None)
            _drop_own_frame(exc)
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                self._exiting(index, exc)
            else:
                self._failed(index, exc)
        else:
            self.tasks.pop(index, None)
            self._succeeded(index, result)

    def _failed(self, index: int, exc: BaseException) -> None:
        # Swallowed by the caller, reported in the race's result: a lost
        # attempt must not surface as "Task exception was never retrieved".
        self.exceptions[index] = exc
        self.running -= 1
        if not self.over:
            if index == self.last_started:
                # RFC 8305 §5: the latest attempt failed, so start the next
                # one now instead of waiting out the delay.
                self.next_due = True
                self._wake()
            elif self.running == 0:
                self._wake()

    def _succeeded(self, index: int, result: Any) -> None:
        self.running -= 1
        if self.over:
            # Only reachable when an attempt ignored its cancellation and
            # returned anyway; the race was already decided.
            self.exceptions[index] = asyncio.CancelledError(
                "finished after another attempt had won"
            )
            return
        self.winner_index = index
        self.winner_result = result
        self.exceptions[index] = None
        self._stop_others(index)

    def _exiting(self, index: int, exc: BaseException) -> None:
        """Attempt *index* raised KeyboardInterrupt or SystemExit: stop the
        race as a winner would; :meth:`_finish` raises it once everything
        has stopped."""
        self.exceptions[index] = exc
        self.running -= 1
        if self.exit_exc is None:
            self.exit_exc = exc
        if not self.over:
            self._stop_others(index)

    def _stop_others(self, index: int) -> None:
        """The race is decided by attempt *index*: cancel everybody else
        now, in this same task step, so no other attempt gets to run (and
        perhaps finish) again."""
        self.over = True
        for other in self.tasks.values():
            if not other.done():
                other.cancel()
        if self.inline_running and index != 0:
            # Attempt 0 lost while running in the caller's task: interrupt
            # it there; _attempt_inline takes this cancel request back.
            self.cancelled_inline = True
            assert self.inline_task is not None
            self.inline_task.cancel()
        self._wake()


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

        A list or tuple of one item gets no delay timer: nothing could
        start when it ran out. Any other source is raced with the timer
        whatever its ``__length_hint__`` says (PEP 424 makes it a guess).

        An attempt's exception is its failure, whatever its class, with one
        exception: ``KeyboardInterrupt`` or ``SystemExit`` from an attempt
        stops the race (every other attempt is cancelled and awaited, the
        source closed) and is then raised by the race.

        If the task running the race is cancelled after the winner is known
        but before the losers have finished, the winner's result is
        discarded: callers racing for resources (sockets) should keep track
        of them to close them in that case.

    Raises:
        TypeError: *coro_fns* is not iterable, or *delay* is not a number.
        ValueError: *delay* is negative or NaN.
        asyncio.CancelledError: the race was cancelled; every attempt has
            been cancelled and awaited.
        KeyboardInterrupt: an attempt raised it; everything has been
            stopped first (likewise ``SystemExit``).

    .. versionchanged:: 1.0
       Accepts async iterables; validates its arguments; guarantees a single
       winner under eager task factories; arms no delay timer for a list or
       tuple with nothing left; records any ``BaseException`` of an attempt
       except ``KeyboardInterrupt`` and ``SystemExit``, which it raises once
       everything has stopped.
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
