"""Identical lookups in flight at the same time are one lookup: the shared
lookup, its waiters and listeners, and the table of those in flight."""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, TypeAlias

from ._types import AddrInfo, Host, Port

if TYPE_CHECKING:
    from ._family_merge import _FamilyLookup


class _SharedLookup:
    """One lookup awaited by everybody who asked for the same thing while it
    ran.

    The coroutine doing the work (:func:`_run_lookup`) hands its outcome to
    :meth:`settle` itself, as its last step, instead of the task announcing
    it through done callbacks: those would cost one more pass of the event
    loop, and one scheduled callback per listener, on every lookup.
    """

    __slots__ = (
        "error",
        "infos",
        "key",
        "listeners",
        "settled",
        "table",
        "task",
        "waiters",
    )

    task: asyncio.Task[list[AddrInfo]]

    def __init__(
        self, table: dict[_LookupKey, _SharedLookup] | None, key: _LookupKey
    ) -> None:
        self.table = table
        self.key = key
        self.waiters = 0
        self.settled = False
        self.infos: list[AddrInfo] = []
        self.error: BaseException | None = None
        # The family lookups of concurrent resolutions waiting for the
        # outcome (shared_getaddrinfo's callers await the task instead).
        self.listeners: list[_FamilyLookup] = []

    def settle(self, infos: list[AddrInfo], error: BaseException | None) -> None:
        """Record the outcome, stop offering the lookup to newcomers and
        tell the listeners, all within the lookup task's last step."""
        self.settled = True
        self.infos = infos
        self.error = error
        if self.table is not None:
            _forget(self.table, self.key, self)
        listeners, self.listeners = self.listeners, []
        for listener in listeners:
            # A listener reports its own tracer's failures (it never raises
            # them here), so every listener hears the answer.
            listener.answered(infos, error)

    def leave(self) -> asyncio.Task[list[AddrInfo]] | None:
        """A waiter lost interest before the answer came. When it was the
        last one, cancel the lookup and return its task, to be awaited: the
        executor thread cannot be stopped, but nobody is left to hear its
        answer, and no task may outlive its users."""
        self.waiters -= 1
        if self.waiters > 0 or self.task.done():
            return None
        if self.table is not None:
            _forget(self.table, self.key, self)
        self.task.cancel()
        return self.task


_LookupKey: TypeAlias = tuple[Host, Port, int, int, int, int]

_in_flight: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[_LookupKey, _SharedLookup]
] = weakref.WeakKeyDictionary()


def _in_flight_table(
    loop: asyncio.AbstractEventLoop,
) -> dict[_LookupKey, _SharedLookup] | None:
    try:
        table = _in_flight.get(loop)
        if table is None:
            table = _in_flight[loop] = {}
    except TypeError:  # a loop that cannot be weakly referenced: no sharing
        return None
    return table


def _forget(
    table: dict[_LookupKey, _SharedLookup], key: _LookupKey, shared: _SharedLookup
) -> None:
    if table.get(key) is shared:
        del table[key]
