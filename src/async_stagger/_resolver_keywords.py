"""A resolver is passed only the keywords of async_stagger 0.4's resolver
contract, plus the ones it declares it takes.

0.4 documented a resolver as ``resolver(host, port, *, family=0, type=0,
proto=0, flags=0)``, and its ``create_connected_sock`` called every resolver
with exactly those keywords. The connection functions here can ask for more
(``first_addr_family_count`` from asyncio's ``interleave``,
``raise_exc_group``); a resolver written to the 0.4 contract would fail with
``TypeError`` if it got them. So a keyword beyond the contract is passed
only to a resolver whose signature names it or takes ``**kwargs``: the
library's own resolvers and :func:`functools.partial` objects of them do.

The signature is read once per resolver object (``inspect.signature`` costs
more than a connection to an IP literal) and remembered for as long as the
object lives; a resolver that cannot be weakly referenced, or whose
signature cannot be read, is asked again each time or given the contract's
keywords only.
"""

from __future__ import annotations

import contextlib
import inspect
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["EXTRA_KEYWORDS", "extra_keywords_taken"]

#: The keywords the connection functions may pass beyond the 0.4 contract.
EXTRA_KEYWORDS = frozenset({"first_addr_family_count", "raise_exc_group", "nat64"})

_taken: weakref.WeakKeyDictionary[Callable[..., Any], frozenset[str]] = (
    weakref.WeakKeyDictionary()
)


def extra_keywords_taken(resolver: Callable[..., Any]) -> frozenset[str]:
    """Which of :data:`EXTRA_KEYWORDS` *resolver* declares it takes: those
    its signature names as keyword parameters, or all of them when it takes
    ``**kwargs``; none when its signature cannot be read."""
    try:
        return _taken[resolver]
    except (KeyError, TypeError):
        pass
    taken = _read_signature(resolver)
    # Not weakly referenceable: read again next time.
    with contextlib.suppress(TypeError):
        _taken[resolver] = taken
    return taken


def _read_signature(resolver: Callable[..., Any]) -> frozenset[str]:
    try:
        parameters = inspect.signature(resolver).parameters.values()
    except (TypeError, ValueError):
        return frozenset()
    names = set()
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            return EXTRA_KEYWORDS
        if parameter.kind in (
            inspect.Parameter.KEYWORD_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            names.add(parameter.name)
    return EXTRA_KEYWORDS & names
