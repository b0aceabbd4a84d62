"""How several failures become one exception, as async_stagger 0.4 offered
it (``raise_one_exception_from_many``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

__all__ = ["raise_one_exception_from_many"]


def raise_one_exception_from_many(
    exc: Sequence[BaseException], exc_class: type[BaseException]
) -> NoReturn:
    """Raise one exception standing for all of *exc*, the way asyncio reports
    the failed attempts of one connection.

    Args:
        exc: The exceptions, at least one.
        exc_class: The type of the combined exception, e.g. :class:`OSError`.

    Raises:
        BaseException: The only exception of *exc*; or its first, when all are
            of one type with one message; otherwise an *exc_class* whose
            message is ``"Multiple exceptions: "`` and the ``repr`` of each,
            separated by commas.
        ValueError: *exc* is empty.
    """
    if not exc:
        raise ValueError("raise_one_exception_from_many needs an exception, got none")
    first = exc[0]
    if len(exc) == 1 or all(
        type(other) is type(first) and str(other) == str(first) for other in exc
    ):
        raise first
    raise exc_class(f"Multiple exceptions: {', '.join(map(repr, exc))}")
