"""Identical lookups in flight at the same time are one lookup: the shared
lookup, its waiters and listeners, and the table of those in flight."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any, TypeAlias

from ._types import AddrInfo, Host, Port

#: Hears a lookup's outcome: ``listener(infos, error)``.
Listener: TypeAlias = Callable[[list[AddrInfo], BaseException | None], None]


class _SharedLookup:
    """One lookup awaited by everybody who asked for the same thing while it
    ran.

    The work hands its outcome to :meth:`settle` itself, as its last step,
    instead of a task announcing it through done callbacks: those would cost
    one more pass of the event loop, and one scheduled callback per
    listener, on every lookup. The work is either a task running the
    lookup coroutine (:func:`_run_lookup`), or, for the system's
    ``getaddrinfo``, no task at all: the job on a daemon thread settles the
    lookup when its answer comes back to the loop (``task`` is ``None``).
    """

    __slots__ = (
        "abandoned",
        "error",
        "infos",
        "key",
        "listeners",
        "settled",
        "stepped",
        "table",
        "task",
        "waiters",
    )

    def __init__(
        self, table: dict[_LookupKey, _SharedLookup] | None, key: _LookupKey
    ) -> None:
        self.table = table
        self.key = key
        self.waiters = 0
        self.settled = False
        # Whether the lookup has taken its first step (a task started
        # lazily has not, until the loop's next pass).
        self.stepped = False
        self.abandoned = False
        self.infos: list[AddrInfo] = []
        self.error: BaseException | None = None
        self.task: asyncio.Task[list[AddrInfo]] | None = None
        # Those waiting for the outcome: the family lookups of concurrent
        # resolutions, and shared_getaddrinfo's callers.
        self.listeners: list[Listener] = []

    def settle(self, infos: list[AddrInfo], error: BaseException | None) -> None:
        """Record the outcome, stop offering the lookup to newcomers and
        tell the listeners, all within the lookup's last step."""
        self.settled = True
        self.infos = infos
        self.error = error
        if self.table is not None:
            _forget(self.table, self.key, self)
        listeners, self.listeners = self.listeners, []
        for listener in listeners:
            # A listener reports its own tracer's failures (it never raises
            # them here), so every listener hears the answer.
            listener(infos, error)

    def deliver(self, infos: list[Any] | None, error: BaseException | None) -> None:
        """The daemon thread's answer, back on the loop: settle, unless
        everybody left meanwhile."""
        if self.abandoned:
            return
        if error is not None:
            # Kept without the thread's traceback, as _run_lookup keeps its
            # errors (each caller raises it afresh).
            self.settle([], error.with_traceback(None))
        else:
            self.settle(infos or [], None)

    def leave(self) -> asyncio.Task[list[AddrInfo]] | None:
        """A waiter lost interest before the answer came. When it was the
        last one, stop the lookup and return its task, if any, to be
        awaited: the thread cannot be stopped, but nobody is left to hear
        its answer, and no task may outlive its users."""
        self.waiters -= 1
        task = self.task
        if self.waiters > 0 or self.settled or (task is not None and task.done()):
            return None
        if self.table is not None:
            _forget(self.table, self.key, self)
        self.abandoned = True
        if task is None:
            return None  # a thread's answer nobody hears: dropped
        task.cancel()
        return task


_LookupKey: TypeAlias = tuple[Host, Port, int, int, int, int]

_in_flight: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[_LookupKey, _SharedLookup]
] = weakref.WeakKeyDictionary()


# The table of the loop asked for last, the loop weakly referenced: a
# program runs one loop, and WeakKeyDictionary.get (a weak reference made
# and two Python calls) is worth 1.1k instructions per lookup (3.11): 2.2k,
# 0.3 %, of a connection to a name that looks up both families.
_last_table: (
    tuple[weakref.ref[asyncio.AbstractEventLoop], dict[_LookupKey, _SharedLookup]]
    | None
) = None


def _in_flight_table(
    loop: asyncio.AbstractEventLoop,
) -> dict[_LookupKey, _SharedLookup] | None:
    global _last_table
    last = _last_table
    if last is not None and last[0]() is loop:
        return last[1]
    try:
        table = _in_flight.get(loop)
        if table is None:
            table = _in_flight[loop] = {}
        _last_table = (weakref.ref(loop, _drop_last_table), table)
    except TypeError:  # a loop that cannot be weakly referenced: no sharing
        return None
    return table


def _drop_last_table(gone: weakref.ref[asyncio.AbstractEventLoop]) -> None:
    # The loop is gone: its table must not outlive it here either.
    global _last_table
    last = _last_table
    if last is not None and last[0] is gone:
        _last_table = None


def _forget(
    table: dict[_LookupKey, _SharedLookup], key: _LookupKey, shared: _SharedLookup
) -> None:
    if table.get(key) is shared:
        del table[key]
