"""Tools for async iterators, as async_stagger 0.4 offered them.

:func:`~async_stagger.staggered_race` takes plain iterables itself, so
:func:`aiter_from_iter` is needed only by code written for 0.4, whose race
took async iterables alone.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any, TypeVar

from ._checks import not_an_int

__all__ = ["aiter_from_iter", "aiterclose", "product"]

T = TypeVar("T")

_EMPTY: Any = object()


async def aiterclose(aiterator: AsyncIterator[Any]) -> Any:
    """Close an async iterator, if it can be closed.

    An async generator closes with ``aclose()``; :pep:`533` proposes
    ``__aiterclose__()`` for other async iterators. The first of the two
    that *aiterator* has is awaited; with neither, nothing happens.

    Args:
        aiterator: The async iterator to close.

    Returns:
        What the close method returned (``None`` for an async generator).

    Raises:
        TypeError: *aiterator* is not an async iterator.
    """
    if not isinstance(aiterator, AsyncIterator):
        raise TypeError(
            f"{type(aiterator).__name__!r} object is not an asynchronous iterator"
        )
    close = getattr(aiterator, "__aiterclose__", None)
    if close is None:
        close = getattr(aiterator, "aclose", None)
    if close is None:
        return None
    return await close()


async def aiter_from_iter(iterable: Iterable[T]) -> AsyncIterator[T]:
    """An async iterator yielding the items of a plain iterable.

    Args:
        iterable: Any iterable.

    Returns:
        An async generator over the items of *iterable*, in order.
    """
    for item in iterable:
        yield item


async def _first_items(aiterators: list[AsyncIterator[Any]]) -> list[Any]:
    """The first item of each iterator (or ``_EMPTY``), fetched concurrently;
    when any fails, the others are cancelled and awaited, and the failures
    are raised as one :class:`ExceptionGroup`.

    Not an :class:`asyncio.TaskGroup`: on CPython 3.12.1 with the eager task
    factory, a child that fails while ``create_task`` runs it leaves the
    group's cancellation of its parent pending for good, so the next await
    after the group raises :class:`asyncio.CancelledError`.
    """
    tasks = [asyncio.ensure_future(_first_item(it)) for it in aiterators]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        # Every task is awaited, even when we were cancelled: nothing
        # outlives the call.
        await asyncio.wait(tasks)
    errors = [
        error
        for task in tasks
        if not task.cancelled() and (error := task.exception()) is not None
    ]
    if errors:
        # An ExceptionGroup when every error is an Exception, as TaskGroup does.
        raise BaseExceptionGroup("getting the first items failed", errors)
    return [task.result() for task in tasks]


async def _first_item(aiterator: AsyncIterator[Any]) -> Any:
    try:
        return await anext(aiterator)
    except StopAsyncIteration:
        return _EMPTY


async def product(
    *aiterables: AsyncIterable[Any], repeat: int = 1
) -> AsyncIterator[tuple[Any, ...]]:
    """The cartesian product of async iterables: :func:`itertools.product`
    for async iterables, with the same tuples in the same order.

    The first item of every input is awaited concurrently. After that each
    input is advanced only when its next item is needed: the last input is
    exhausted first, then the one before it, and so on, each new item
    yielding the combinations it completes at once. Every input is closed
    (:func:`aiterclose`) when the product ends, however it ends.

    Args:
        aiterables: The input async iterables.
        repeat: How many times the inputs repeat, as for
            :func:`itertools.product`.

    Returns:
        An async generator of tuples.

    Raises:
        TypeError: *repeat* is not an int.
        ValueError: *repeat* is negative.
        ExceptionGroup: Getting the first items failed; the group holds what
            each failing input raised.
    """
    if isinstance(repeat, bool) or not isinstance(repeat, int):
        raise not_an_int("repeat", repeat)
    if repeat < 0:
        raise ValueError(f"repeat must not be negative, got {repeat!r}")
    if not aiterables or repeat == 0:
        yield ()  # as itertools.product: one empty combination
        return
    aiterators = [aiter(aiterable) for aiterable in aiterables]
    try:
        firsts = await _first_items(aiterators)
        if any(first is _EMPTY for first in firsts):
            return  # an empty input: no combinations at all
        # The earlier repeats stay at their first items until every input
        # has been exhausted once.
        lead = tuple(firsts) * (repeat - 1)
        pools: list[list[Any]] = [[first] for first in firsts]
        yield (*lead, *firsts)
        for position in reversed(range(len(aiterators))):
            async for item in aiterators[position]:
                pools[position].append(item)
                for rest in itertools.product(*pools[position + 1 :]):
                    yield (*lead, *firsts[:position], item, *rest)
        # Every input is known now: the combinations whose earlier repeats
        # are not all first items, in itertools.product's order.
        leads = itertools.product(*pools, repeat=repeat - 1)
        next(leads)  # the all-first lead, done above
        for other_lead in leads:
            for combination in itertools.product(*pools):
                yield (*other_lead, *combination)
    finally:
        for it in aiterators:
            await aiterclose(it)
