"""Event loop flavours for the test suite, and a virtual clock.

Every coroutine test runs once per flavour available on the interpreter:

* ``default``: asyncio's own loop.
* ``eager``: asyncio's loop with ``asyncio.eager_task_factory`` (3.12+), where
  tasks run synchronously up to their first suspension: the place where
  races between "started" and "finished" hide.
* ``uvloop``: when installed.

Modules marked ``also_on_happy_eyeballs_uvloop`` also run on
``happy_eyeballs_uvloop``: :func:`async_stagger.eventloop.new_uvloop_event_loop`,
uvloop with our ``create_connection``.

Tests marked ``virtual_clock`` run on :class:`VirtualClockLoop` instead (in the
``default`` and ``eager`` flavours; uvloop has no clock to replace): its clock
stands still while callbacks run and jumps straight to the next timer when
nothing else is ready, so timing assertions are exact and instant.
"""

from __future__ import annotations

import asyncio
import selectors
import sys
from collections.abc import Callable
from typing import Any

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a test extra
    uvloop = None

FLAVOURS: list[str] = ["default"]
if sys.version_info >= (3, 12):
    FLAVOURS.append("eager")
if uvloop is not None:
    FLAVOURS.append("uvloop")

VIRTUAL_FLAVOURS = [f for f in FLAVOURS if f != "uvloop"]

#: Real seconds a virtual-clock loop may sit with nothing to do before the
#: test is declared deadlocked.
DEADLOCK_SECONDS = 10.0


class _VirtualSelector(selectors.DefaultSelector):
    """A selector that, instead of sleeping until a timer is due, moves the
    loop's clock forward to it. Real I/O (an executor finishing, a socket) is
    still waited for when no timer is pending."""

    def __init__(self) -> None:
        super().__init__()
        self.clock: _Clock | None = None

    def select(self, timeout: float | None = None) -> Any:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            # Nothing is scheduled: only real I/O (an executor thread's result,
            # a socket) can wake the loop. A test waiting that long on the
            # virtual clock is deadlocked; fail instead of hanging the suite.
            ready = super().select(DEADLOCK_SECONDS)
            if not ready:
                raise RuntimeError(
                    f"virtual clock loop deadlocked: no timer pending and no I/O"
                    f" for {DEADLOCK_SECONDS} s of real time"
                )
            return ready
        assert self.clock is not None
        self.clock.now += timeout
        return []


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on virtual time, starting at 0.0."""

    def __init__(self) -> None:
        selector = _VirtualSelector()
        self._virtual_clock = _Clock()
        selector.clock = self._virtual_clock
        super().__init__(selector)
        # The loop runs every timer due before time() + resolution; keep the
        # virtual clock's view exact.
        self._clock_resolution = 1e-9

    def time(self) -> float:
        return self._virtual_clock.now


def loop_factory(
    flavour: str, *, virtual: bool = False
) -> Callable[[], asyncio.AbstractEventLoop]:
    """A factory for ``asyncio.Runner`` making a loop of the given flavour."""

    def make() -> asyncio.AbstractEventLoop:
        loop: asyncio.AbstractEventLoop
        if flavour == "uvloop":
            assert uvloop is not None
            assert not virtual
            loop = uvloop.new_event_loop()
        elif flavour == "happy_eyeballs_uvloop":
            from async_stagger.eventloop import new_uvloop_event_loop

            assert not virtual
            loop = new_uvloop_event_loop()
        elif virtual:
            loop = VirtualClockLoop()
        else:
            loop = asyncio.SelectorEventLoop()
        if flavour == "eager":
            loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
        return loop

    return make
