"""async_stagger 0.4's module path of :func:`staggered_race`.

The race lives in :mod:`async_stagger.race`; this module re-exports it so
that ``from async_stagger.stagger import staggered_race`` keeps working. It
takes 0.4's arguments (an async iterable of coroutine functions, and a delay,
``None`` for one at a time) and returns 0.4's 4-tuple ``(winner_result,
winner_index, exceptions, aiter_exc)``; a plain iterable works too.
"""

from .race import staggered_race

__all__ = ["staggered_race"]
