"""Nothing the race started outlives it: how a race stops, waits and closes.

However the race ends (a winner, every attempt failed, the source failed,
the caller cancelled, an attempt asked the program to exit), it ends here,
in three steps, each done even when the caller is cancelled meanwhile:

1. Stop: the delay timer is cancelled, and every task the race still runs
   (attempts, the driver, a background pull of an async source) is
   cancelled, each once: a second ``cancel()`` would interrupt the cleanup
   a losing attempt is already doing in response to the first (closing its
   socket, say).
2. Wait: the race waits for all of them, through any cancellation of its
   own (:func:`~async_stagger._tasks.wait_until_done`), and so returns only
   once their cleanup has run.
3. Close: an async source is closed (``aclose``) only then, after its pull
   has stopped: a source is never closed while it is still running.

Only after that does the race raise what it must: an attempt's
``KeyboardInterrupt`` or ``SystemExit`` first, then a cancellation of its
own.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ._tasks import wait_until_done

if TYPE_CHECKING:
    from ._race_state import Race

# What an attempt's slot in the exceptions list holds until it has finished.
NOT_FINISHED: Any = object()


async def finish(race: Race[Any]) -> None:
    """Stop the timer, cancel and await whatever still runs, close the
    source. Keep going when cancelled meanwhile, then re-raise."""
    if race.timer is not None:
        race.timer.cancel()
        race.timer = None
    cancelled: asyncio.CancelledError | None = None
    if race.tasks or race.driver is not None or race.pull is not None:
        try:
            await _stop_tasks(race)
        except asyncio.CancelledError as exc:
            cancelled = exc
    if race.asynchronous:
        aclose = getattr(race.source, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except asyncio.CancelledError as exc:
                cancelled = exc
            except Exception as exc:
                if race.iter_exc is None:
                    race.iter_exc = exc
    for index, outcome in enumerate(race.exceptions):
        if outcome is NOT_FINISHED:
            # An attempt cancelled before its first step ever ran.
            race.exceptions[index] = asyncio.CancelledError()
    if race.exit_exc is not None:
        raise race.exit_exc
    if cancelled is not None:
        raise cancelled


async def _stop_tasks(race: Race[Any]) -> None:
    """Cancel every task the race still runs (the driver, attempts, a
    pull of the source) and wait for all of them, even when cancelled
    meanwhile (then re-raise)."""
    stopping = [task for task in race.tasks.values() if not task.done()]
    driver = race.driver
    if driver is not None and not driver.done():
        stopping.append(driver)
    pull = race.pull
    if pull is not None:
        pull.remove_done_callback(race.wake_driver)
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
            race.pull = None
            # Finished in the very step an attempt won, the pull was
            # never read: an error the source raised there is still the
            # race's aiter_exc (an item it produced is simply unused).
            if not pull.cancelled():
                exc = pull.exception()
                if not isinstance(exc, StopAsyncIteration | None):
                    race.exhausted = True
                    if race.iter_exc is None:
                        race.iter_exc = exc
