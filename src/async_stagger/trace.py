"""Structured events describing a Happy Eyeballs connection, for observers.

A caller that wants to see the race (the command line tracer, a debugging
user, a test) passes ``trace=callback`` to the connection functions. The
callback is kept in a context variable for the duration of that call, so the
resolver and the connection attempts, which may run in tasks of their own,
report to it without every layer threading an extra argument through, and
custom resolvers keep the async_stagger 0.4 signature.

When nobody listens the cost is one context variable lookup per event.

The events also go to the ``async_stagger`` logger (:data:`LOGGER`), one
line of text per event at ``DEBUG`` (the command-line tracer's words), when
that logger is enabled for ``DEBUG``; when it is not, a connection pays one
``isEnabledFor`` check. :class:`LogTrace` is the same as a ``trace=``
callback for a logger of your choice.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from ._checks import check_callable
from ._describe import describe_event

__all__ = [
    "LOGGER",
    "EventKind",
    "LogTrace",
    "TraceCallback",
    "TraceEvent",
    "emit",
    "tracing",
    "tracing_active",
]

#: The library's logger, ``logging.getLogger("async_stagger")``, as in
#: async_stagger 0.4. Enabled for ``DEBUG``, it gets every trace event.
LOGGER: logging.Logger = logging.getLogger("async_stagger")

#: What happened. In the order they usually occur:
#:
#: - ``"resolution_started"``: a lookup for ``family`` began (``host``).
#: - ``"resolution_answered"``: the ``family`` lookup returned ``addresses``.
#: - ``"resolution_failed"``: the ``family`` lookup raised ``error``.
#: - ``"nat64_synthesized"``: with no IPv4 route, the IPv4 address
#:   ``synthesized_from`` of ``host`` is to be reached as ``address``, in
#:   the NAT64 prefix ``nat64_prefix`` learnt from ``nat64_origin``
#:   (``"ipv4only.arpa"`` or ``"nat64="``).
#: - ``"attempt_started"``: attempt ``index`` to ``address`` began
#:   (bound to ``local_address`` when one was given).
#: - ``"attempt_failed"``: attempt ``index`` raised ``error``.
#: - ``"attempt_cancelled"``: attempt ``index`` lost the race and was stopped.
#: - ``"tls_started"`` / ``"tls_succeeded"`` / ``"tls_failed"``: the TLS
#:   handshake of attempt ``index``, which has connected TCP (with
#:   ``ssl=``, every such attempt does one and a failed one is followed by
#:   its ``"attempt_failed"``). With ``race_tls=False``: the handshake on the
#:   winning socket, after ``"attempt_succeeded"``, with no ``index``.
#: - ``"attempt_succeeded"``: attempt ``index`` completed the TCP handshake
#:   (and, with ``ssl=``, its TLS handshake) and won the race.
#: - ``"connection_failed"``: the whole call failed with ``error``.
#: - ``"resolution_delay_expired"``: the IPv4 answer came first and the IPv6
#:   lookup did not answer within the Resolution Delay (``delay``): the race
#:   goes on without IPv6 for now (RFC 8305 §3).
#: - ``"resolution_abandoned"``: the ``family`` lookup was still unanswered
#:   after ``delay`` seconds when the connection no longer needed it.
#: - ``"order_decided"``: the ``addresses`` will be tried in this order, each
#:   for the matching entry of ``reasons``; reported once, before the first
#:   attempt (addresses of a late answer join the tail later).
#: - ``"attempt_delay_expired"``: attempt ``index`` got no answer within its
#:   attempt delay (``delay``); the next attempt starts while it goes on.
#: - ``"attempt_delay_from_history"``: the attempt delay after attempt
#:   ``index`` is ``delay``, computed from its address's measured RTT.
#: - ``"address_skipped"``: ``address`` was not tried: no local address of
#:   its family to connect from (``error`` says so).
EventKind = Literal[
    "resolution_started",
    "resolution_answered",
    "resolution_failed",
    "nat64_synthesized",
    "attempt_started",
    "attempt_failed",
    "attempt_cancelled",
    "attempt_succeeded",
    "tls_started",
    "tls_succeeded",
    "tls_failed",
    "connection_failed",
    "resolution_delay_expired",
    "resolution_abandoned",
    "order_decided",
    "attempt_delay_expired",
    "attempt_delay_from_history",
    "address_skipped",
]


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One thing that happened while connecting.

    Attributes:
        kind: What happened (see :data:`EventKind`).
        time: The event loop's monotonic clock (``loop.time()``) when it
            happened.
        host: The host name being resolved, for resolution events.
        family: ``socket.AF_INET`` or ``socket.AF_INET6`` where one applies.
        index: The attempt's position in the race, for attempt events.
        address: The remote socket address of an attempt.
        local_address: The local address an attempt was bound to, if any.
        addresses: The socket addresses a lookup answered with.
        error: The exception, for failure events.
        synthesized_from: The IPv4 socket address a NAT64 address stands
            for.
        nat64_prefix: The NAT64 prefix it was synthesized with
            (``"64:ff9b::/96"``).
        nat64_origin: Where that prefix came from: ``"ipv4only.arpa"``
            (discovered, RFC 7050) or ``"nat64="`` (given).
        delay: Seconds: the delay that expired, or how long a lookup had
            been waiting, or a computed attempt delay.
        reasons: For ``"order_decided"``: why each address is where it is.

    .. versionadded:: 1.0
       the ``nat64_synthesized`` event and its three fields; the ``delay``
       and ``reasons`` fields, and the events that use them.
    """

    kind: EventKind
    time: float
    host: str | None = None
    family: socket.AddressFamily | None = None
    index: int | None = None
    address: tuple[Any, ...] | None = None
    local_address: tuple[Any, ...] | None = None
    addresses: tuple[tuple[Any, ...], ...] | None = None
    error: BaseException | None = None
    synthesized_from: tuple[Any, ...] | None = None
    nat64_prefix: str | None = None
    nat64_origin: str | None = None
    delay: float | None = None
    reasons: tuple[str, ...] | None = None


#: The signature of a trace callback. It is called synchronously, in the event
#: loop's thread; it should return quickly and must not raise.
TraceCallback = Callable[[TraceEvent], None]

_current_trace: contextvars.ContextVar[TraceCallback | None] = contextvars.ContextVar(
    "async_stagger_trace", default=None
)

# Empty until _start_tracing first sets _current_trace (nothing else sets
# it), and never emptied again: while it is empty, every context of the
# process holds the default, None, and nobody traces; once a tracer was set,
# a context copied meanwhile (a task started inside a tracing block) may
# hold it after the block, so the variable is asked from then on. Read
# where a connection asks whether anybody listens (``_make_connection``):
# the variable's lookup, ~1k instructions of an IP literal connection on
# uvloop in the benchmark (3.11; its cache rarely holds between tasks),
# against a test of this list.
_ever_traced: list[None] = []


def emit(kind: EventKind, **fields: Any) -> None:
    """Report an event to the callback of the enclosing :func:`tracing` block.

    Does nothing (beyond one context variable lookup) when nobody traces.
    """
    callback = _current_trace.get()
    if callback is not None:
        time = asyncio.get_running_loop().time()
        callback(TraceEvent(kind, time, **fields))


def tracing_active() -> bool:
    """Whether a trace callback is listening (so an event is worth building)."""
    return _current_trace.get() is not None


@contextmanager
def tracing(callback: TraceCallback | None) -> Iterator[None]:
    """Send the events emitted inside this block (and in tasks created inside
    it) to *callback*. ``None`` leaves the current setting alone."""
    if callback is None:
        yield
        return
    token = _start_tracing(callback)
    try:
        yield
    finally:
        _stop_tracing(token)


def _start_tracing(
    callback: TraceCallback,
) -> contextvars.Token[TraceCallback | None]:
    """Enter a :func:`tracing` block without a ``with`` statement (the
    connection functions, which would otherwise need a coroutine more, or a
    context manager, for every connection); end it with
    :func:`_stop_tracing`."""
    check_callable("trace", callback)
    if not _ever_traced:
        _ever_traced.append(None)
    return _current_trace.set(callback)


def _stop_tracing(token: contextvars.Token[TraceCallback | None]) -> None:
    """End the block :func:`_start_tracing` entered."""
    _current_trace.reset(token)


class LogTrace:
    """A ``trace=`` callback that logs each event as one line of text, in the
    words of the command-line tracer (``attempt #0 to 192.0.2.1:443
    started``). The event itself is attached to the log record as its
    ``trace_event`` attribute.

    Args:
        logger: The logger, or the name of one; by default :data:`LOGGER`.
        level: The level to log at.

    .. versionadded:: 1.0
    """

    __slots__ = ("level", "logger")

    def __init__(
        self, logger: logging.Logger | str = LOGGER, level: int = logging.DEBUG
    ) -> None:
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.level = level

    def __call__(self, event: TraceEvent) -> None:
        """Log *event*, if the logger is enabled for the level."""
        if self.logger.isEnabledFor(self.level):
            self.logger.log(
                self.level,
                "%s",
                describe_event(event),
                extra={"trace_event": event},
            )

    def __repr__(self) -> str:
        return f"LogTrace({self.logger.name!r}, {logging.getLevelName(self.level)})"


_log_event = LogTrace()


def _logged(trace: TraceCallback | None) -> TraceCallback:
    """*trace*, and the events also logged to :data:`LOGGER`."""
    if trace is None:
        return _log_event

    def both(event: TraceEvent) -> None:
        trace(event)
        _log_event(event)

    return both
