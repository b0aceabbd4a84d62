"""What an event loop can do, decided once per loop class and asked here only.

Four of the library's shortcuts depend on the loop: connecting a socket
without ``loop.sock_connect`` (see ``_attempts._connect_when_writable``),
handing a lone IP literal to uvloop's own ``create_connection`` (see
``_make_connection._open_by_address``), looking names up in our own daemon
threads instead of ``loop.getaddrinfo`` (see
:mod:`async_stagger._lookup_threads`), and starting tasks eagerly. Each
is taken only where the loop's method is asyncio's own or uvloop's, since a
loop class (or a program, or a test) that brings its own gets its way. One
precaution depends on it too: a TLS handshake is cancelled directly only
where the loop's ``create_connection`` is asyncio's (see
:func:`cancels_handshakes_cleanly`).

The class's answer is worked out on first use and kept; what an instance may
have changed since (a method put on the loop object, a task factory) is
checked on each call. Never by looking in ``loop.__dict__``: reading an
object's ``__dict__`` turns its attribute storage into a real dict for good,
and every attribute asyncio reads on the loop afterwards gets slower
(measured per IP literal connection: +8 % instructions on 3.11 and 3.12,
+5 % on 3.13).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any, NamedTuple, TypeVar, cast

T = TypeVar("T")


class _ClassAbilities(NamedTuple):
    #: The class's ``sock_connect`` when it is asyncio's selector one or
    #: uvloop's (both resolve the address again first): connect directly.
    sock_connect: object
    #: The class's ``getaddrinfo`` when it is asyncio's or uvloop's (the
    #: system's ``getaddrinfo`` in a shared thread pool): look up in ours.
    getaddrinfo: object
    #: The class's ``create_task`` when it is asyncio's or uvloop's own: it
    #: only makes an ``asyncio.Task`` (without a task factory).
    create_task: object
    #: Whether tasks may start eagerly: Python 3.12+ and a stock
    #: ``create_task``.
    eager: bool
    #: The class's ``create_connection`` when a connected socket handed to it
    #: reaches asyncio's own: a TLS handshake it runs may be cancelled at
    #: any moment (see :func:`cancels_handshakes_cleanly`).
    create_connection: object
    #: When a lone IP address may be left to uvloop's ``create_connection``
    #: (the class's is uvloop's, or a Happy Eyeballs loop's that hands a
    #: connected socket on to it, and its ``sock_connect`` is uvloop's):
    #: what the instance's ``create_connection`` and ``sock_connect`` must
    #: still be, and uvloop's ``create_connection``, to call as a function
    #: of the loop. A plain tuple: read by index, ~0.4k instructions less
    #: than two more fields of this one (3.11).
    by_address: tuple[object, object, Callable[..., Coroutine[Any, Any, Any]]] | None


#: Functions that, as a loop class's ``create_connection``, hand a call with
#: ``sock=`` and nothing else as it is to the next class's in the method
#: resolution order (the Happy Eyeballs loops', see
#: :mod:`async_stagger.eventloop`, which registers it here).
_hands_sockets_on: list[object] = []


def hands_sockets_on(create_connection: object) -> None:
    """Declare that a ``create_connection`` passes ``sock=`` calls to its base
    class's unchanged: on a uvloop subclass with it, a lone IP address may
    still be left to uvloop's own, since the connected socket the general
    path would hand over ends there too."""
    _hands_sockets_on.append(create_connection)
    _by_class.clear()


# One entry per loop class ever seen: a handful in any program.
_by_class: dict[type, _ClassAbilities] = {}

_NONE = object()  # matches no method


def _decide(cls: type) -> _ClassAbilities:
    stock_connect: list[object] = [
        asyncio.selector_events.BaseSelectorEventLoop.sock_connect
    ]
    stock_lookup: list[object] = [asyncio.BaseEventLoop.getaddrinfo]
    stock_create_task: list[object] = [asyncio.BaseEventLoop.create_task]
    uvloop_create_connection: object = _NONE
    uvloop = sys.modules.get("uvloop.loop")  # imported if this is its loop
    if uvloop is not None:
        stock_connect.append(getattr(uvloop.Loop, "sock_connect", _NONE))
        stock_lookup.append(getattr(uvloop.Loop, "getaddrinfo", _NONE))
        stock_create_task.append(getattr(uvloop.Loop, "create_task", _NONE))
        uvloop_create_connection = getattr(uvloop.Loop, "create_connection", _NONE)
    connect = getattr(cls, "sock_connect", None)
    lookup = getattr(cls, "getaddrinfo", None)
    create_task = getattr(cls, "create_task", None)
    create_connection = getattr(cls, "create_connection", None)
    # Where a connected socket handed to the class's create_connection ends.
    reached = _ends_in(cls, create_connection)
    by_address: tuple[object, object, Callable[..., Coroutine[Any, Any, Any]]] | None
    by_address = None
    if (
        uvloop_create_connection is not _NONE
        and connect in stock_connect
        and reached is uvloop_create_connection
    ):
        by_address = (
            create_connection,
            connect,
            cast("Callable[..., Coroutine[Any, Any, Any]]", uvloop_create_connection),
        )
    create_task_is_stock = create_task in stock_create_task
    reaches_asyncio = reached is asyncio.BaseEventLoop.create_connection
    return _ClassAbilities(
        sock_connect=connect if connect in stock_connect else _NONE,
        getaddrinfo=lookup if lookup in stock_lookup else _NONE,
        create_task=create_task if create_task_is_stock else _NONE,
        # asyncio.Task(..., eager_start=True) exists from Python 3.12 on.
        eager=sys.version_info >= (3, 12) and create_task_is_stock,
        create_connection=create_connection if reaches_asyncio else _NONE,
        by_address=by_address,
    )


def _ends_in(cls: type, create_connection: object) -> object:
    """The ``create_connection`` that a connected socket handed to *cls*'s
    reaches: its own, or, past each that hands sockets on, the next one in
    the method resolution order."""
    if create_connection not in _hands_sockets_on:
        return create_connection
    own = [
        base.__dict__["create_connection"]
        for base in cls.__mro__
        if "create_connection" in base.__dict__
    ]
    for below in own[1:]:
        if below not in _hands_sockets_on:
            return below
    return _NONE


def _abilities(loop: asyncio.AbstractEventLoop) -> _ClassAbilities:
    cls = type(loop)
    found = _by_class.get(cls)
    if found is None:
        found = _by_class[cls] = _decide(cls)
    return found


def connects_directly(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether attempts on *loop* connect without its ``sock_connect``: when
    that is its class's own, asyncio's selector one or uvloop's. Any other
    (Windows' proactor, a loop class or a program that replaced it) is used
    as it is. Worth 11 % of an IP literal connection's instructions on
    asyncio's loop, 46 % on uvloop's."""
    found = _abilities(loop)
    return getattr(loop.sock_connect, "__func__", None) is found.sock_connect


def uvloop_create_connection(
    loop: asyncio.AbstractEventLoop,
) -> Callable[..., Coroutine[Any, Any, Any]] | None:
    """uvloop's own ``create_connection``, to be called as a function of
    *loop*, when *loop* is uvloop's, or a Happy Eyeballs uvloop loop (see
    :func:`hands_sockets_on`), with its class's ``create_connection`` and
    ``sock_connect``; else None. A connection to one IP address, which
    needs no race, may then be left to it, ``create_connection(host=address)``
    (see ``_make_connection._open_by_address``), where the general path
    would connect a socket and hand it to the same function. Worth ~59k
    instructions, a third, of an IP literal connection on uvloop's loop
    (3.11: 173k → 114k): its connect and transport are C, where ours is a
    Python socket watched through ``add_writer``.

    The class's answer is kept; the instance's two methods are read on each
    call, since a program may put its own on the loop object at any time
    and then gets its way (nothing cheaper tells: see the module's note on
    ``__dict__``). Those two reads are ~1.3k instructions of the ~1.9k this
    costs (3.11)."""
    # The one place _abilities is inlined, and the methods read as
    # attributes, not with getattr(): together ~0.8k instructions, 0.8 %, of
    # the uvloop IP literal connection this serves (~99k, 3.11).
    found = _by_class.get(type(loop))
    if found is None:
        found = _abilities(loop)
    by_address = found.by_address
    if by_address is not None:
        try:
            if (
                loop.create_connection.__func__ is by_address[0]  # type: ignore[attr-defined]
                and loop.sock_connect.__func__ is by_address[1]  # type: ignore[attr-defined]
            ):
                return by_address[2]
        except AttributeError:  # a function of a program's own, not a method
            pass
    return None


def cancels_handshakes_cleanly(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether a TLS handshake that *loop*'s ``create_connection(sock=,
    ssl=)`` runs may be cancelled at any moment: when that is asyncio's own,
    which waits for the transport and its handshake on one future.

    uvloop's (0.23, ``loop.pyx``) waits for the TCP transport first and for
    the handshake's own future only after it. Cancelled between the two
    waits, with the handshake already failed (its server's answer read in
    the same pass of the loop), it returns without ever asking that future
    for its error, which the loop then logs as "Future exception was never
    retrieved" when the future is collected (no upstream report found;
    reproduced by ``tests/test_tls_attempt.py``). A loop class or program with a
    ``create_connection`` of its own is treated as uvloop's: see
    ``_tls_attempt.create_tls_connection``.
    """
    found = _abilities(loop)
    return getattr(loop.create_connection, "__func__", None) is found.create_connection


def has_stock_getaddrinfo(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether *loop*'s ``getaddrinfo`` is its class's own, asyncio's or
    uvloop's: the system's ``getaddrinfo`` in a thread, which our daemon
    threads do better (see :mod:`async_stagger._lookup_threads`).

    asyncio's runs in the loop's default executor, which ``asyncio.run``
    waits for at shutdown: one lookup abandoned after the race was won (a
    lost AAAA answer) held up the program's end by the resolver's timeout.
    uvloop's runs in libuv's small thread pool, where one unanswered AAAA
    query would hold up every other host's lookups until glibc gives up on
    it. A ``getaddrinfo`` a program or a test put on the loop, or a loop
    class of its own, is called as it is.
    """
    found = _abilities(loop)
    return getattr(loop.getaddrinfo, "__func__", None) is found.getaddrinfo


def starts_tasks_eagerly(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether :func:`start_task` starts tasks eagerly on *loop*: where
    asyncio can, unless the loop has a task factory of its own, or a
    ``create_task`` of its own (either gets its way)."""
    found = _abilities(loop)
    return found.eager and loop.get_task_factory() is None


def start_task(
    loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]
) -> asyncio.Task[T]:
    """A task for *coro*, started eagerly where :func:`starts_tasks_eagerly`:
    it runs up to its first suspension right now, so a step that completes
    at once (a ``connect()`` refused or accepted, a cached lookup) costs no
    pass of the loop, and may even finish before this returns. Worth, for
    the two lookup tasks of a name whose loop ``getaddrinfo`` answers at
    once: 725.5k to 679.3k instructions per connection on 3.12, 653.9k to
    612.6k on 3.13 (benchmarks/connect.py, the loop's getaddrinfo row).

    Started lazily (3.11) by the loop's own stock ``create_task``, with no
    task factory, the task is made as that method makes it
    (``asyncio.Task(coro, loop=loop)``) without calling it: its Python
    frame and closed-loop check (the loop runs) are worth ~1.3k
    instructions per task, 2.6k per resolution of a name whose loop has its
    own ``getaddrinfo`` (153.4k to 150.9k, 3.11)."""
    found = _abilities(loop)
    if found.create_task is not _NONE and loop.get_task_factory() is None:
        if found.eager:
            if _create_task_starts_eagerly(loop):
                return loop.create_task(coro, eager_start=True)  # type: ignore[call-arg,unused-ignore]
            return asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
        # A create_task put on the loop object gets its way, as before.
        if getattr(loop.create_task, "__func__", None) is found.create_task:
            return asyncio.Task(coro, loop=loop)
    return loop.create_task(coro)


def task_starter(
    loop: asyncio.AbstractEventLoop,
) -> Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]]:
    """:func:`start_task` on *loop* as one callable of the coroutine, for a
    caller that starts many tasks from one frame (the race's driver). It is
    built in C (a ``functools.partial`` or a bound method): a task that
    finishes during its eager start then has its caller's frame right below
    it, not a frame of ours (see the race's note on cpython#100964)."""
    if starts_tasks_eagerly(loop):
        if _create_task_starts_eagerly(loop):
            return partial(loop.create_task, eager_start=True)  # type: ignore[call-arg,unused-ignore]
        return partial(asyncio.Task, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
    return loop.create_task


def _create_task_starts_eagerly(loop: asyncio.AbstractEventLoop) -> bool:
    # 3.14's create_task takes eager_start itself, and keeps its own
    # bookkeeping of the task.
    return sys.version_info >= (3, 14) and type(loop).create_task is (
        asyncio.BaseEventLoop.create_task
    )
