"""What the race may believe of its source: what is left in it, what an item gives.

The race (:mod:`async_stagger.race`) pulls one item at a time, only when
the next attempt is due, from an iterable or an async iterable; each item is
a zero-argument callable returning the awaitable that does the work. This
module holds what the race needs to know about such a source and its items,
and nothing about scheduling.

When nothing is left
~~~~~~~~~~~~~~~~~~~~
After an attempt starts, the race arms a timer for the delay, so that the
next attempt starts when it runs out (RFC 8305 §5). When the source has
nothing left, that timer could start nothing: sparing it is worth ~5 % of an
IP-literal connection's instructions (the one and only attempt arms no timer
and cancels none).

But a source's ``__length_hint__`` is not believed in general: PEP 424
makes it an estimate, and a source that says "nothing left" and then
produces more would silently lose its stagger, turning Happy Eyeballs
sequential. Only iterators whose count is exact are taken at their word: a
list's or a tuple's, and the library's own sources, which say so with a
class attribute ``_exact_length_hint = True``.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable
from operator import length_hint
from typing import Any, TypeVar

T = TypeVar("T")

# Iterators whose __length_hint__ is an exact count, not PEP 424's estimate:
# the number of items not yet visited. (A list grown while it is being raced
# is the one exception: its new items are still tried, once an attempt
# fails.)
_EXACT_LENGTH_TYPES: frozenset[type] = frozenset({type(iter([])), type(iter(()))})


def items_left(source: object) -> int:
    """How many items *source* has left, as far as the race may rely on it:
    the count of an iterator known to keep it exact (a list's or tuple's, or
    a type with a true ``_exact_length_hint``), else 1 (more may come)."""
    kind = type(source)
    if kind in _EXACT_LENGTH_TYPES or getattr(kind, "_exact_length_hint", False):
        return length_hint(source, 1)
    return 1


async def next_item(source: AsyncIterator[T]) -> T:
    """The next item of an async source, as a coroutine a task can run."""
    return await source.__anext__()


def attempt_work(index: int, factory: object) -> Awaitable[Any]:
    """Call attempt *index*'s factory; refuse what cannot be awaited.

    Raises:
        TypeError: *factory* is not callable, or returned something that is
            not awaitable (the race records it as that attempt's failure).
    """
    if not callable(factory):
        raise TypeError(
            f"attempt {index}: expected a callable returning an awaitable,"
            f" got {factory!r}"
        )
    work = factory()
    if not inspect.isawaitable(work):
        raise TypeError(
            f"attempt {index}: {factory!r} returned {work!r}, which is not awaitable"
        )
    return work
