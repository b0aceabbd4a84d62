"""A concurrent resolution's two lookups, AAAA first, merge here into one
stream of addresses as RFC 8305 §3 and §6 say."""

from __future__ import annotations

import asyncio
import contextvars
import math
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeAlias

from ._answers import _emit_order, _host_text, _no_addresses, _order, _unique
from ._lookup_sharing import _SharedLookup
from ._nat64_answers import _nat64_applies, _synthesize
from ._tasks import wait_until_done
from ._types import AddrInfo, GetaddrinfoAsync, Host, Port, SortAddresses
from .history import ConnectionHistory
from .trace import emit, tracing_active

#: Starts one family's lookup, or joins the identical one in flight:
#: ``open_lookup(loop, getaddrinfo_async, host, port, family, type, proto,
#: flags)``, the caller counting as one waiter.
OpenLookup: TypeAlias = Callable[
    [
        asyncio.AbstractEventLoop,
        GetaddrinfoAsync | None,
        Host,
        Port,
        int,
        int,
        int,
        int,
    ],
    _SharedLookup,
]


class _FamilyLookup:
    """One family's lookup within one concurrent resolution.

    No task of its own: it listens to the :class:`_SharedLookup` doing the
    work (the shared ``loop.getaddrinfo`` lookup, or one running a custom
    ``getaddrinfo_async`` for this resolution alone), which calls
    :meth:`answered` as soon as the answer is in; that records the outcome,
    reports it to the tracer and nudges the resolution. Under a burst of
    connections that is the difference between keeping up with asyncio's
    single lookup and not.
    """

    __slots__ = (
        "_context",
        "_notify",
        "_shared",
        "error",
        "family",
        "finished",
        "host",
        "infos",
    )

    def __init__(
        self, family: socket.AddressFamily, host: Host, notify: Callable[[], None]
    ) -> None:
        self.family = family
        self.host = host
        self.finished = False
        self.infos: list[AddrInfo] = []
        self.error: Exception | None = None
        self._notify = notify
        self._shared: _SharedLookup | None = None
        # The answer may arrive in another resolution's lookup task (the
        # lookup is shared): its trace events belong to this resolution's
        # tracer, so they are reported in this context.
        self._context = contextvars.copy_context() if tracing_active() else None

    def start(
        self,
        open_lookup: OpenLookup,
        loop: asyncio.AbstractEventLoop,
        getaddrinfo_async: GetaddrinfoAsync | None,
        port: Port,
        type: int,
        proto: int,
        flags: int,
    ) -> None:
        shared = open_lookup(
            loop, getaddrinfo_async, self.host, port, self.family, type, proto, flags
        )
        self._shared = shared
        if shared.settled:  # an eager task factory, or an instant answer
            self.answered(shared.infos, shared.error)
        else:
            shared.listeners.append(self)

    def answered(self, infos: list[AddrInfo], error: BaseException | None) -> None:
        """The lookup is over: record *infos* or *error*, trace, and wake
        the resolution."""
        if self.finished:
            return
        if error is not None and not isinstance(error, Exception):
            if not isinstance(error, asyncio.CancelledError):
                return  # KeyboardInterrupt and friends stop the loop anyway
            # Only a lookup that cancelled itself gets here: abandoning one
            # stops listening first.
            error = OSError(f"the {self.family.name} lookup was cancelled")
        self.finished = True
        # Settled: nothing needs the shared lookup (or its finished task)
        # any more, so it is not kept for the rest of the connection: 1.1 kB
        # per connection in flight on 3.13 (benchmarks/memory.py).
        self._shared = None
        if error is None:
            self.infos = infos
        else:
            self.error = error
        try:
            if self._context is not None:
                try:
                    self._context.run(self._trace_answer)
                except Exception as exc:  # a trace callback that raised
                    # Reported as a failing callback would be, whether the
                    # answer came in a lookup task (shared with other
                    # resolutions) or at once in this one's step: no
                    # resolution misses the answer because a tracer broke.
                    asyncio.get_running_loop().call_exception_handler(
                        {"message": "error while reporting a lookup", "exception": exc}
                    )
        finally:
            self._notify()

    def _trace_answer(self) -> None:
        host = _host_text(self.host)
        if self.error is None:
            emit(
                "resolution_answered",
                host=host,
                family=self.family,
                addresses=tuple(info[4] for info in self.infos),
            )
        else:
            emit("resolution_failed", host=host, family=self.family, error=self.error)

    def abandon(self) -> asyncio.Future[Any] | None:
        """Stop waiting for the answer; cancel the lookup unless somebody
        else still waits for it. Returns the future to wait for until the
        lookup has stopped, if any."""
        shared = self._shared
        if shared is None:
            return None
        future = shared.task
        if self.finished:
            return future  # done: waiting only marks its exception retrieved
        self.finished = True
        if self in shared.listeners:
            shared.listeners.remove(self)
        abandoned = shared.leave()
        if abandoned is None and future.done() and not future.cancelled():
            future.exception()  # answered; our callback never ran
        return abandoned


def _both_failed(
    host: Host,
    errors: dict[int, BaseException | None],
    raise_exc_group: bool,
) -> BaseException:
    causes: list[Exception] = []
    parts = []
    for family, name in ((socket.AF_INET6, "IPv6"), (socket.AF_INET, "IPv4")):
        error = errors.get(family)
        if error is None:
            error = _no_addresses(host)
        assert isinstance(error, Exception)
        causes.append(error)
        parts.append(f"{name}: {error}")
    message = f"could not resolve {_host_text(host)!r}: " + "; ".join(parts)
    if raise_exc_group:
        return ExceptionGroup(message, causes)
    codes = [c.errno for c in causes if isinstance(c, socket.gaierror)]
    code = codes[0] if codes else socket.EAI_FAIL
    return socket.gaierror(code, message)


async def _concurrent(
    host: Host,
    port: Port,
    type: int,
    proto: int,
    flags: int,
    resolution_delay: float,
    first_addr_family_count: int,
    raise_exc_group: bool,
    getaddrinfo_async: GetaddrinfoAsync | None,
    sorter: SortAddresses | None,
    nat64: bool | tuple[Any, ...],
    history: ConnectionHistory | None,
    open_lookup: OpenLookup,
) -> AsyncIterator[AddrInfo]:
    """The addresses of both families' lookups, merged as RFC 8305 §3 and §6
    say; *open_lookup* starts (or joins) one family's lookup."""
    loop = asyncio.get_running_loop()
    wake: asyncio.Future[None] | None = None

    def notify() -> None:
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def wait(timeout: float | None = None) -> None:
        """Until a lookup finishes (or *timeout* seconds pass)."""
        nonlocal wake
        wake = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, notify)
        try:
            await wake
        finally:
            wake = None
            if timer is not None:
                timer.cancel()

    # RFC 8305 §3: both queries go out together, the AAAA query first.
    ipv6 = _FamilyLookup(socket.AF_INET6, host, notify)
    ipv4 = _FamilyLookup(socket.AF_INET, host, notify)
    lookups = (ipv6, ipv4)
    started_at = loop.time()
    try:
        if tracing_active():
            for lookup in lookups:
                emit("resolution_started", host=_host_text(host), family=lookup.family)
        for lookup in lookups:
            lookup.start(open_lookup, loop, getaddrinfo_async, port, type, proto, flags)

        # Phase 1, RFC 8305 §3: wait for the first answer worth starting
        # with. IPv6 addresses go at once; IPv4 addresses wait up to the
        # Resolution Delay for IPv6; a failure or an empty answer waits for
        # the other family.
        ipv4_answered_at: float | None = None
        while not (ipv6.infos or (ipv6.finished and ipv4.finished)):
            if ipv4.infos:
                if ipv4_answered_at is None:
                    ipv4_answered_at = loop.time()
                remaining = ipv4_answered_at + resolution_delay - loop.time()
                if remaining <= 0:
                    if tracing_active():
                        emit(
                            "resolution_delay_expired",
                            host=_host_text(host),
                            family=socket.AF_INET6,
                            delay=resolution_delay,
                        )
                    break  # RFC 8305 §3: stop waiting for AAAA
                await wait(remaining if math.isfinite(remaining) else None)
            else:
                await wait()

        # Phase 2: hand out addresses one at a time. A lookup finishing
        # meanwhile (RFC 8305 §6) re-sorts and re-interleaves what is left;
        # what was handed out stays handed out.
        seen: set[tuple[Any, ...]] = set()
        handed_out: list[int] = []  # families, in order
        # Lookups whose answer is not in the list yet.
        unmerged = list(lookups)

        # Addresses known but not handed out, each family in its own
        # getaddrinfo order, families in the order they answered: the
        # "original order" of RFC 6724 rule 10.
        not_tried: list[AddrInfo] = []
        tail: list[AddrInfo] = []  # not_tried, in the order to try them
        system_sorted = getaddrinfo_async is None
        while True:
            if unmerged[0].finished or (len(unmerged) > 1 and unmerged[1].finished):
                for lookup in [lookup for lookup in unmerged if lookup.finished]:
                    unmerged.remove(lookup)
                    infos = lookup.infos
                    if lookup is ipv4 and _nat64_applies(infos, nat64):
                        # RFC 8305 §7: no IPv4 route, so the IPv4 answers
                        # are reached through NAT64, sorted among the rest.
                        infos = await _synthesize(host, infos, nat64, getaddrinfo_async)
                        system_sorted = False
                    not_tried.extend(_unique(infos, seen))
                tail = _order(
                    not_tried,
                    sorter,
                    first_addr_family_count,
                    handed_out,
                    system_sorted=system_sorted,
                    history=history,
                )
                if not handed_out and tail and tracing_active():
                    _emit_order(host, tail, sorter, history)
                # Handed out from the front: reversed, each pop is cheap.
                tail.reverse()
                if not unmerged:
                    break  # every answer is in; no more reordering
            if tail:
                info = tail.pop()
                not_tried.remove(info)
                handed_out.append(info[0])
                yield info
                continue
            await wait()
        # Both answers are in: the rest of the order is final.
        while tail:
            info = tail.pop()
            handed_out.append(info[0])
            yield info

        if not handed_out:
            raise _both_failed(
                host,
                {lookup.family: lookup.error for lookup in lookups},
                raise_exc_group,
            )
    finally:
        # Closed early (the race was won), cancelled, or done: no lookup may
        # outlive the iterator, and none may leave an exception unretrieved.
        if tracing_active():
            for lookup in lookups:
                if not lookup.finished and lookup._shared is not None:
                    emit(
                        "resolution_abandoned",
                        host=_host_text(host),
                        family=lookup.family,
                        delay=loop.time() - started_at,
                    )
        stopping = [lookup.abandon() for lookup in lookups]
        running = [future for future in stopping if future is not None]
        for future in running:
            if not future.done():
                await wait_until_done(running)
                break
            # The usual case: the lookup is over. Nothing to wait for.
            if not future.cancelled():
                future.exception()
