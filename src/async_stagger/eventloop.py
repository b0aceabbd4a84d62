"""Event loops whose ``create_connection`` is Happy Eyeballs.

Most asyncio clients (asyncio streams, websockets, redis-py, asyncpg, ...)
connect through :meth:`asyncio.loop.create_connection`. Run the program on
one of these loops and every such connection races its addresses the way
:func:`async_stagger.create_connection` does, with no change to the
client's code::

    asyncio.run(main(), loop_factory=async_stagger.eventloop.new_event_loop)

(On Python 3.11, ``asyncio.run`` has no *loop_factory*; use
``asyncio.Runner(loop_factory=...)``, which has.)

What is left to the loop's own ``create_connection``, untouched:

* a call with ``sock=``: the connection exists already, nothing to race;
* a call for a family other than IPv4, IPv6 or both (``AF_UNIX``, say):
  Happy Eyeballs is about IP addresses;
* a call with a keyword async_stagger does not know (one a later Python
  adds): the loop knows what it means, we do not.

Everything else is :func:`async_stagger.create_connection`, with the same
arguments, defaults, errors and ``trace`` events; the extra keywords of
that function (*delay*, *resolver*, *local_addrs*, *raise_exc_group*,
*trace*) are accepted here too, and :func:`loop_factory` sets defaults for
them for every connection the program makes.

The loops are subclasses of :class:`asyncio.SelectorEventLoop` (the default
on Unix) and, when uvloop is installed, of ``uvloop.Loop``; uvloop is
imported only when its loop is asked for.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any, TypeVar, cast

from ._checks import check_callable, check_delay
from ._loop_abilities import hands_sockets_on
from ._types import Host, Port
from .connection import (
    NOT_GIVEN,
    Delay,
    LocalAddrs,
    NotGiven,
    Resolver,
    SSLArg,
    create_connection,
)
from .resolvers import concurrent_resolver
from .trace import TraceCallback

__all__ = [
    "HappyEyeballsEventLoop",
    "happy_eyeballs_uvloop_class",
    "loop_factory",
    "new_event_loop",
    "new_uvloop_event_loop",
]

_ProtocolT = TypeVar("_ProtocolT", bound=asyncio.BaseProtocol)

# Families Happy Eyeballs races; anything else goes to the loop as it is.
_IP_FAMILIES = (socket.AF_UNSPEC, socket.AF_INET, socket.AF_INET6)


class _Defaults:
    """The options a loop gives every connection that does not set them."""

    __slots__ = ("delay", "raise_exc_group", "resolver", "trace")

    def __init__(
        self,
        delay: Delay,
        resolver: Resolver,
        raise_exc_group: bool,
        trace: TraceCallback | None,
    ) -> None:
        if not isinstance(delay, NotGiven):
            check_delay("delay", delay)
        check_callable("resolver", resolver, allow_none=False)
        check_callable("trace", trace)
        self.delay = delay
        self.resolver = resolver
        self.raise_exc_group = raise_exc_group
        self.trace = trace


_NO_DEFAULTS = _Defaults(NOT_GIVEN, concurrent_resolver, False, None)


class _HappyEyeballsMixin(asyncio.AbstractEventLoop):
    """``create_connection`` as Happy Eyeballs, on top of any loop class."""

    _happy_eyeballs_defaults: _Defaults = _NO_DEFAULTS

    def create_connection(
        self,
        protocol_factory: Callable[[], _ProtocolT],
        host: Host = None,
        port: Port = None,
        *,
        ssl: SSLArg = None,
        family: int = 0,
        proto: int = 0,
        flags: int = 0,
        sock: socket.socket | None = None,
        local_addr: tuple[Any, ...] | None = None,
        server_hostname: str | None = None,
        ssl_handshake_timeout: float | None = None,
        ssl_shutdown_timeout: float | None = None,
        happy_eyeballs_delay: Delay = NOT_GIVEN,
        interleave: int | None = None,
        all_errors: bool = False,
        local_addrs: LocalAddrs | None = None,
        delay: Delay = NOT_GIVEN,
        resolver: Resolver | None = None,
        raise_exc_group: bool | None = None,
        trace: TraceCallback | None = None,
        **other: Any,
    ) -> Coroutine[Any, Any, tuple[asyncio.Transport, _ProtocolT]]:
        """Connect with Happy Eyeballs: :func:`async_stagger.create_connection`
        on this loop; a call with *sock*, a non-IP *family* or a keyword
        unknown to async_stagger goes to the base loop's method as it is.

        Args:
            protocol_factory: See :func:`async_stagger.create_connection`.
            host: See :func:`async_stagger.create_connection`.
            port: See :func:`async_stagger.create_connection`.
            ssl: See :func:`async_stagger.create_connection`.
            family: See :func:`async_stagger.create_connection`.
            proto: See :func:`async_stagger.create_connection`.
            flags: See :func:`async_stagger.create_connection`.
            sock: See :func:`async_stagger.create_connection`.
            local_addr: See :func:`async_stagger.create_connection`.
            server_hostname: See :func:`async_stagger.create_connection`.
            ssl_handshake_timeout: See
                :func:`async_stagger.create_connection`.
            ssl_shutdown_timeout: See :func:`async_stagger.create_connection`.
            happy_eyeballs_delay: See
                :func:`async_stagger.create_connection`.
            interleave: See :func:`async_stagger.create_connection`.
            all_errors: See :func:`async_stagger.create_connection`.
            local_addrs: See :func:`async_stagger.create_connection`.
            delay: See :func:`async_stagger.create_connection`; defaults to
                the loop's (:func:`loop_factory`).
            resolver: See :func:`async_stagger.create_connection`; defaults
                to the loop's.
            raise_exc_group: See :func:`async_stagger.create_connection`;
                defaults to the loop's.
            trace: See :func:`async_stagger.create_connection`; defaults to
                the loop's.
            other: Keywords of a later Python's ``create_connection``: the
                call goes to the base loop.

        Returns:
            ``(transport, protocol)``.

        Raises:
            OSError: See :func:`async_stagger.create_connection`.
            socket.gaierror: See :func:`async_stagger.create_connection`.
            ExceptionGroup: See :func:`async_stagger.create_connection`.
            ssl.SSLError: See :func:`async_stagger.create_connection`.
            ValueError: See :func:`async_stagger.create_connection`.
            TypeError: See :func:`async_stagger.create_connection`.

        .. versionadded:: 1.0
        """
        # Speed: the two calls every plain connection makes go straight to
        # where the general handling below would send them, with the same
        # arguments: the program's create_connection(factory, host, port)
        # and, from the race's winner, create_connection(factory, sock=...).
        # Worth ~7k and ~11k instructions: a streams request to an IP
        # literal costs 1.038x plain asyncio's without them, 1.001x with
        # them (benchmarks/clients.py --instructions --client streams).
        if (
            ssl is None and local_addr is None and server_hostname is None
            and ssl_handshake_timeout is None and ssl_shutdown_timeout is None
            and happy_eyeballs_delay is NOT_GIVEN and interleave is None
            and all_errors is False and not other
        ):  # fmt: skip
            if sock is not None:
                if family == 0 and proto == 0 and flags == 0:
                    hand_over: Any = super().create_connection
                    handed: Coroutine[Any, Any, Any] = hand_over(
                        protocol_factory, host, port, sock=sock
                    )
                    return handed
            elif (
                local_addrs is None and delay is NOT_GIVEN and resolver is None
                and raise_exc_group is None and trace is None
                and family in _IP_FAMILIES
                and self._happy_eyeballs_defaults is _NO_DEFAULTS
            ):  # fmt: skip
                plain: Any = create_connection(
                    protocol_factory, host, port, family=family, proto=proto,
                    flags=flags,
                )  # fmt: skip
                return plain  # type: ignore[no-any-return]
        if sock is not None or other or family not in _IP_FAMILIES:
            # The call as it was made, for the base loop to judge; keywords
            # left at their defaults stay out (3.11's loop has no
            # all_errors, for one).
            given = {
                "ssl": ssl, "family": family, "proto": proto, "flags": flags,
                "sock": sock, "local_addr": local_addr,
                "server_hostname": server_hostname,
                "ssl_handshake_timeout": ssl_handshake_timeout,
                "ssl_shutdown_timeout": ssl_shutdown_timeout,
                "happy_eyeballs_delay": happy_eyeballs_delay,
                "interleave": interleave, "all_errors": all_errors,
            }  # fmt: skip
            for name, value in given.items():
                if value is None or value is False or value is NOT_GIVEN:
                    continue
                if name in ("family", "proto", "flags") and value == 0:
                    continue
                other.setdefault(name, value)
            base: Any = super().create_connection
            made: Coroutine[Any, Any, Any] = base(protocol_factory, host, port, **other)
            return made
        defaults = self._happy_eyeballs_defaults
        if delay is NOT_GIVEN and happy_eyeballs_delay is NOT_GIVEN:
            delay = defaults.delay
        # The coroutine itself, not one more around it: every coroutine in
        # the chain is resumed again each time the connection waits.
        result = create_connection(
            protocol_factory, host, port, ssl=ssl, family=family, proto=proto,
            flags=flags, local_addr=local_addr, server_hostname=server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
            happy_eyeballs_delay=happy_eyeballs_delay, interleave=interleave,
            all_errors=all_errors, local_addrs=local_addrs, delay=delay,
            resolver=defaults.resolver if resolver is None else resolver,
            raise_exc_group=(
                defaults.raise_exc_group if raise_exc_group is None
                else raise_exc_group
            ),
            trace=defaults.trace if trace is None else trace,
        )  # fmt: skip
        return cast("Coroutine[Any, Any, tuple[asyncio.Transport, _ProtocolT]]", result)


# A call with sock= and nothing else goes to the base loop's method as it is
# (the first branch above): so on a uvloop loop with this create_connection,
# a lone IP address may still be left to uvloop's own (see _loop_abilities).
hands_sockets_on(_HappyEyeballsMixin.create_connection)


class HappyEyeballsEventLoop(_HappyEyeballsMixin, asyncio.SelectorEventLoop):
    """:class:`asyncio.SelectorEventLoop` whose ``create_connection`` is
    :func:`async_stagger.create_connection`.

    Args:
        selector: As for :class:`asyncio.SelectorEventLoop`.

    .. versionadded:: 1.0
    """


_uvloop_class: type[asyncio.AbstractEventLoop] | None = None


def happy_eyeballs_uvloop_class() -> type[asyncio.AbstractEventLoop]:
    """The ``uvloop.Loop`` subclass whose ``create_connection`` is
    :func:`async_stagger.create_connection` (made on first call).

    Returns:
        The class.

    Raises:
        ImportError: uvloop is not installed.

    .. versionadded:: 1.0
    """
    global _uvloop_class
    if _uvloop_class is None:
        import uvloop

        _uvloop_class = type(
            "HappyEyeballsUVLoop",
            (_HappyEyeballsMixin, uvloop.Loop),
            {"__module__": __name__, "__doc__": "uvloop with Happy Eyeballs."},
        )
    return _uvloop_class


def _configured(
    loop: asyncio.AbstractEventLoop, defaults: _Defaults
) -> asyncio.AbstractEventLoop:
    if defaults is not _NO_DEFAULTS:
        cast(_HappyEyeballsMixin, loop)._happy_eyeballs_defaults = defaults
    return loop


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new :class:`HappyEyeballsEventLoop`: pass this function as
    *loop_factory* to :func:`asyncio.run` (3.12+) or :class:`asyncio.Runner`.

    Returns:
        The loop, not running.

    .. versionadded:: 1.0
    """
    return HappyEyeballsEventLoop()


def new_uvloop_event_loop() -> asyncio.AbstractEventLoop:
    """A new uvloop loop whose ``create_connection`` is Happy Eyeballs (see
    :func:`happy_eyeballs_uvloop_class`); a *loop_factory* like
    :func:`new_event_loop`.

    Returns:
        The loop, not running.

    Raises:
        ImportError: uvloop is not installed.

    .. versionadded:: 1.0
    """
    return happy_eyeballs_uvloop_class()()


def _make_loop(uvloop: bool, defaults: _Defaults) -> asyncio.AbstractEventLoop:
    loop = new_uvloop_event_loop() if uvloop else new_event_loop()
    return _configured(loop, defaults)


def loop_factory(
    *,
    uvloop: bool = False,
    delay: Delay = NOT_GIVEN,
    resolver: Resolver = concurrent_resolver,
    raise_exc_group: bool = False,
    trace: TraceCallback | None = None,
) -> Callable[[], asyncio.AbstractEventLoop]:
    """A *loop_factory* for :func:`asyncio.run` or :class:`asyncio.Runner`
    making Happy Eyeballs loops with defaults for every connection.

    A connection's own keywords win over these defaults.

    Args:
        uvloop: Make uvloop-based loops (uvloop must be installed).
        delay: The Connection Attempt Delay for connections that set none
            (by default :data:`async_stagger.defaults.CONNECTION_ATTEMPT_DELAY`;
            ``None``: one attempt at a time).
        resolver: The resolver for connections that set none.
        raise_exc_group: Raise an :class:`ExceptionGroup` of every
            attempt's error when a connection fails.
        trace: Called with every connection's
            :class:`~async_stagger.TraceEvent`\\ s, e.g. to log them.

    Returns:
        A callable making a new loop on each call.

    Raises:
        ImportError: *uvloop* is true and uvloop is not installed.
        TypeError: *resolver* or *trace* is not callable.
        ValueError: *delay* is negative or not a number.

    .. versionadded:: 1.0
    """
    defaults = _Defaults(delay, resolver, raise_exc_group, trace)
    if uvloop:
        happy_eyeballs_uvloop_class()  # fail here, not in the runner
    return partial(_make_loop, uvloop, defaults)
