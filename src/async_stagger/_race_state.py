"""The race's state machine: who starts when, who wins, and the caller's task.

:class:`Race` holds one race's state; the attempts, the delay timer and the
driver task all act on it, only from the event loop's thread. Its
:meth:`~Race.run` is the whole race in three steps: the first pull, attempt
0 in the caller's task, and the finish (:mod:`async_stagger._race_stop`).
Everything after attempt 0 is the driver's loop (:meth:`~Race._drive`):
start an attempt when one is due, else sleep until something happens.

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

Why there is never a second winner
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
The winner is decided synchronously, inside the winning attempt's own task
step (:meth:`~Race._succeeded`), and every other attempt is cancelled in
that same step, before any of them can run again: not even two attempts
finishing in one loop iteration, or an eager task factory running attempts
synchronously, make two winners. Attempts start eagerly where asyncio can
(3.12+): one that is refused or accepted at once costs no pass of the loop,
and may finish, even win, before its start returns; the driver looks at the
state again after every start.

What a failed attempt leaves behind
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
The result keeps every attempt's exception, and with it its traceback and
the attempt's own frames: a race of many attempts keeps them all, and the
cyclic garbage collector walks them again at every full collection. So a
failure keeps nothing else alive, and nothing that leads back to the race
(a reference cycle, cpython#124858): its traceback loses the race's own
frame (:func:`_drop_own_frame`), a finished attempt forgets its task and its
factory, and the race lets go of the result once it has returned it.

On Python 3.12 and 3.13 a finished coroutine's frame also keeps the frame
that was running it when it finished (``f_back``, cpython#100964), and that
one the frame below it, and so on. An attempt that fails during its eager
start finishes inside the call that started its task: if that call went
through Python functions (a ``start_task`` helper, a ``_start`` method),
each failure would keep their frames too, with the task, its context and
the coroutine in their locals (nine objects per failed attempt instead of
four: the cost per attempt grew 2.7-3.6x from 1,000 to 100,000 attempts,
now 1.09-1.14x on 3.13, see ``benchmarks/race_scaling.py``). So the driver
starts each task itself, through a starter built in C
(:func:`~async_stagger._loop_abilities.task_starter`): a failed attempt's
frame then leads only to the frame of its task's coroutine
(:meth:`Race._attempt`, the fourth object) and on to the driver's, which
all attempts share.

That fourth object stays: whatever Python frame awaits the attempt when it
fails becomes its ``f_back``, and an attempt needs a coroutine of the race's
around it in its task (its factory is called in the attempt's own task and
context; ``KeyboardInterrupt`` and ``SystemExit`` are caught there, so the
race stops everything before raising them). Nor can the frames be cleared
(``frame.clear()``): their locals are what a user reads in the traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._loop_abilities import task_starter
from ._race_source import attempt_work, items_left, next_item
from ._race_stop import NOT_FINISHED, finish

if TYPE_CHECKING:
    from .race import RaceResult

T = TypeVar("T")

# What a pull of the source returns when it started nothing: the source
# ended or failed, or is still thinking (look again once woken).
_NO_ITEM: Any = object()
# What a finished race holds in place of the exceptions list it returned:
# storing it costs no allocation (worth ~130 instructions per race against
# a new empty list, 0.03 % of an IP-literal connection), and a race that
# wrote to it after the end would fail loudly.
_HANDED_OVER: Any = ()


class _NoTasks(dict[int, "asyncio.Task[None]"]):
    """What a race holds as its attempt tasks until it has one: the
    commonest race never does (attempt 0 runs in the caller's task, and an
    attempt that finishes during its eager start is never entered). Shared by
    every race, so it refuses to be written to; worth an empty dict, 64
    bytes of each connection in flight on its first attempt (3.11, 3.13,
    benchmarks/memory.py)."""

    __slots__ = ()

    def __setitem__(self, index: int, task: asyncio.Task[None]) -> None:
        raise TypeError("a race's first attempt task goes into a dict of its own")


_NO_TASKS: dict[int, asyncio.Task[None]] = _NoTasks()


def _drop_own_frame(exc: BaseException) -> None:
    """Take the race's own frame off an attempt's traceback: the result
    keeps the exception, and that frame holds the race, a reference cycle
    (cpython#124858) the cyclic GC would walk again and again in a race of
    many attempts (the cost per attempt grew 3x from 1,000 to 100,000). The
    attempt's own frames stay."""
    traceback = exc.__traceback__
    if traceback is not None:
        exc.__traceback__ = traceback.tb_next


class Race(Generic[T]):
    """The state of one race, shared by its attempts, timer and driver (see
    the module's docstring)."""

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
        # drops its own: see _attempt); a dict of its own from the first.
        self.tasks = _NO_TASKS
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
        # Attempt 0 runs in the caller's own task (see run);
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
                me = asyncio.current_task(self.loop)
                if me is None:  # pragma: no cover - awaited outside any task
                    # Nothing to interrupt attempt 0 with: the driver starts
                    # it as it starts the others.
                    await self._drive(first)
                else:
                    # Attempt 0, in the caller's task (see the module's
                    # docstring for the cancel request this may have to take
                    # back). Awaited in this frame, not in a coroutine of its
                    # own: every connection in flight holds one coroutine
                    # less (272 bytes on 3.11, 264 on 3.13, benchmarks/memory.py).
                    self._start_inline(me)
                    cancel_requests = me.cancelling()
                    work: Awaitable[Any] | None
                    try:
                        try:
                            work = attempt_work(0, first)
                        finally:
                            # Called, the factory has given the attempt what
                            # it needs: it need not live while the attempt
                            # runs (a connection attempt's holds 272 bytes,
                            # 3.13), nor be kept by a failure's frames (3.12+).
                            del first
                        result = await work
                    except (KeyboardInterrupt, SystemExit, GeneratorExit):
                        raise  # the program's, not the attempt's: finish below
                    except BaseException as exc:
                        work = None  # the finished attempt: likewise
                        _drop_own_frame(exc)
                        self._failed(0, exc)
                    else:
                        self._succeeded(0, result)
                        del result
                    finally:
                        self.inline_running = False
                        if self.cancelled_inline:
                            self.cancelled_inline = False
                            me.uncancel()
                    if me.cancelling() > cancel_requests:
                        # Somebody else cancelled us while attempt 0 ran
                        # here; the attempt took the CancelledError, pass it on.
                        outcome = self.exceptions[0]
                        if isinstance(outcome, asyncio.CancelledError):
                            raise outcome
                        raise asyncio.CancelledError()
                if self.driver is not None:
                    await self.driver
                elif not self.over:
                    await self._drive()
        finally:
            await finish(self)
        try:
            return self.winner_result, self.winner_index, self.exceptions, self.iter_exc
        finally:
            # Let go of the result, keeping it in no variable either: on
            # 3.12+ its exceptions' frames lead back to the race and to this
            # frame (see "What a failed attempt leaves behind"), and neither
            # may lead to them, or the result is freed only by the cyclic
            # garbage collector.
            self.exceptions = _HANDED_OVER

    def _start_inline(self, me: asyncio.Task[Any]) -> None:
        """Book attempt 0 as started in the caller's task *me*, and arrange
        for the next one."""
        self.exceptions.append(NOT_FINISHED)
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
            elif items_left(self.source) > 0:
                self.timer = self.loop.call_later(delay, self._delay_elapsed)
            # else: nothing is left to start, so nothing for a timer to do.

    # -- the driver: everything after attempt 0 ---------------------------------

    def _spawn_driver(self) -> None:
        """Attempt 0 is still busy in the caller's task: start later
        attempts from a task of their own."""
        self.driver = self.loop.create_task(self._drive())

    async def _drive(self, factory: object = _NO_ITEM) -> None:
        """Start attempts as they fall due, until one wins or the source has
        ended and every attempt has failed; *factory*, when given, is the
        next attempt's, already pulled."""
        asynchronous = self.asynchronous
        # Tasks are started from this frame and through no Python function:
        # see "What a failed attempt leaves behind" (Python 3.12 and 3.13).
        start = task_starter(self.loop)
        while not self.over:
            if self.next_due and not self.exhausted:
                if factory is _NO_ITEM:
                    if self.delay == 0 and self.last_started >= 0:
                        # Let attempts already started take their first
                        # step, and never starve the loop on an endless
                        # source.
                        await asyncio.sleep(0)
                        if self.over:
                            break
                    if asynchronous:
                        factory = await self._pull_async()
                    else:
                        factory = await self._pull_sync()
                    if factory is _NO_ITEM:
                        continue
                index = self._start()
                task = start(self._attempt(index, factory))
                if not task.done():
                    if self.tasks is _NO_TASKS:
                        self.tasks = {}
                    self.tasks[index] = task
                factory = task = _NO_ITEM
            elif self.exhausted and self.running == 0:
                break
            else:
                await self._woken()

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
            pull = self.pull = self.loop.create_task(next_item(self.source))
            if not pull.done():
                pull.add_done_callback(self.wake_driver)
        if not pull.done():
            await self._woken()
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

    def _start(self) -> int:
        """Book the next attempt as started, and arrange for the one after
        it; returns its index. The driver starts its task (see _drive)."""
        index = len(self.exceptions)
        self.exceptions.append(NOT_FINISHED)
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
                # (see _woken): an attempt that settles at once needs none.
                self.next_due_at = self.loop.time() + delay
            else:
                self.next_due = True
        return index

    def _woken(self) -> asyncio.Future[None]:
        """What the driver awaits to sleep until an attempt settles, the
        delay runs out or the pull has an item; the delay timer is armed
        only now, when needed.

        A future, not a coroutine awaiting it: the driver sleeps holding one
        object less (208 bytes, 3.13). Once woken, it stays ``wake`` until
        the next sleep, done: :meth:`wake_driver` leaves a done one alone."""
        if (
            self.timer is None
            and not self.next_due
            and not self.exhausted
            and self.next_due_at is not None
        ):
            self.timer = self.loop.call_at(self.next_due_at, self._delay_elapsed)
        self.wake = wake = self.loop.create_future()
        return wake

    # -- signals from attempts and timers -------------------------------------

    def wake_driver(self, _: object = None) -> None:
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
            self.wake_driver()

    async def _attempt(self, index: int, factory: object) -> None:
        """Attempt *index*, in a task of its own: it never raises, it
        reports. It forgets its factory once called, and its task in its
        last step: a race of many attempts keeps only their outcomes (on
        3.12+ a failure's own frames keep this one)."""
        work: Awaitable[Any] | None
        try:
            try:
                work = attempt_work(index, factory)
            finally:
                del factory  # see run
            result = await work
        except GeneratorExit:
            raise  # the coroutine is being closed, not the attempt failing
        except BaseException as exc:
            work = None
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
                self.wake_driver()
            elif self.running == 0:
                self.wake_driver()

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
            # it there; run takes this cancel request back.
            self.cancelled_inline = True
            assert self.inline_task is not None
            self.inline_task.cancel()
        self.wake_driver()
