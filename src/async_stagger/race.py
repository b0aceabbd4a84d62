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

The first attempt to *return* wins, and every other attempt is cancelled in
that same step: there is never a second winner. Attempt 0 runs in the
caller's own task, later ones in tasks of their own.

The race returns only once every attempt it started has finished, a
background pull of the source included, and it closes an async source
(``aclose``) on every exit, after that pull has stopped: nothing the race
started outlives it, and a source is never closed while it is still running.

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
  it an estimate. Only iterators whose count is exact (a list's or tuple's,
  and the library's own sources) spare the delay timer after their last
  item.
* A plain iterable is not closed: the race starts no task inside it, and a
  generator is closed when it is dropped.

Where each part lives
~~~~~~~~~~~~~~~~~~~~~
This module is the public face: :func:`staggered_race` and the checks of
its arguments. Behind it, one job per module, each telling its part in
prose: ``_race_state`` (the state machine: who starts when, who wins,
attempt 0 in the caller's task and the cancel request it may have to take
back, what a failed attempt leaves behind), ``_race_stop`` (how every exit
stops, waits for and closes everything) and ``_race_source`` (reading the
source and calling its items; which length hints are believed).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import (
    AsyncIterable,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
)
from typing import Any, TypeAlias, TypeVar

from ._checks import check_delay
from ._race_source import items_left
from ._race_state import Race

__all__ = ["AttemptFactory", "RaceResult", "staggered_race"]

# The connection's attempts source keeps its own length hint exact by the
# race's rule, and imports it from here.
_items_left = items_left

T = TypeVar("T")

#: One way of doing the job: called with no arguments when its turn comes,
#: it returns the awaitable that does the work.
AttemptFactory: TypeAlias = Callable[[], Awaitable[T]]

#: ``(winner_result, winner_index, exceptions, aiter_exc)``, as returned by
#: async_stagger since 0.4.
RaceResult: TypeAlias = tuple[
    T | None, int | None, list[BaseException | None], BaseException | None
]


def _check_delay(delay: float | None) -> float | None:
    """Validate the delay; infinity means the same as ``None``."""
    seconds = check_delay("delay", delay)
    if seconds is not None and math.isinf(seconds):
        return None
    return seconds


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
    race = _race_on_loop(asyncio.get_running_loop(), coro_fns, delay)
    # On 3.12+ attempt 0's failure keeps this frame (cpython#100964): not
    # the attempts with it.
    del coro_fns
    return await race


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
    # The common delay (None, or a finite positive float such as the
    # default 0.25) passes on two tests; anything else gets the full check.
    # Worth 3-5k instructions (0.5-0.7 %) of a connection to a name with
    # two addresses (3.11, benchmarks/connect.py's loop's-getaddrinfo row).
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
    race: Race[T] = Race(loop, checked_delay, source, asynchronous, delay_for)
    return race.run()
