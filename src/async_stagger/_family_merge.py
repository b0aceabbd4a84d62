"""A concurrent resolution's two lookups, AAAA first, merge here into one
stream of addresses as RFC 8305 §3 and §6 say."""

from __future__ import annotations

import asyncio
import contextvars
import math
import socket
from collections.abc import Awaitable, Callable
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
        self,
        family: socket.AddressFamily,
        host: Host,
        notify: Callable[[], None],
        traced: bool,
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
        self._context = contextvars.copy_context() if traced else None

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
        if self.answered in shared.listeners:
            shared.listeners.remove(self.answered)
        abandoned = shared.leave()
        if (
            abandoned is None
            and future is not None
            and future.done()
            and not future.cancelled()
        ):
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


class _ConcurrentAnswers:
    """The addresses of both families' lookups, merged as RFC 8305 §3 and §6
    say; *open_lookup* starts (or joins) one family's lookup.

    A plain async iterator, not an async generator: a generator costs every
    resolution the loop's first-iteration hook (a WeakSet entry and its
    removal) and an ``aclose`` through ``athrow`` (made, pulled once and
    closed: 9.4k instructions against 4.2k for a class, 3.11), and cannot
    say how many addresses are left. It keeps a generator's promises all
    the same: the lookups start at the first ``__anext__``; once it has
    raised (an error, a cancellation, the end) or been closed, every lookup
    is abandoned and it only ends.
    """

    __slots__ = (
        "_handed_out",
        "_lookups",
        "_loop",
        "_not_tried",
        "_over",
        "_seen",
        "_started_at",
        "_system_sorted",
        "_tail",
        "_unmerged",
        "_wake",
        "first_addr_family_count",
        "flags",
        "getaddrinfo_async",
        "history",
        "host",
        "nat64",
        "open_lookup",
        "port",
        "proto",
        "raise_exc_group",
        "resolution_delay",
        "sorter",
        "type",
    )

    def __init__(
        self,
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
    ) -> None:
        self.host = host
        self.port = port
        self.type = type
        self.proto = proto
        self.flags = flags
        self.resolution_delay = resolution_delay
        self.first_addr_family_count = first_addr_family_count
        self.raise_exc_group = raise_exc_group
        self.getaddrinfo_async = getaddrinfo_async
        self.sorter = sorter
        self.nat64 = nat64
        self.history = history
        self.open_lookup = open_lookup
        self._lookups: tuple[_FamilyLookup, ...] | None = None
        self._over = False
        self._tail: list[AddrInfo] = []  # not tried, in the order to try them
        self._wake: asyncio.Future[None] | None = None

    def __aiter__(self) -> _ConcurrentAnswers:
        return self

    def __length_hint__(self) -> int:
        """Addresses left: exact once both answers are in (so the race arms
        no delay timer after a name's last address), else at least 1."""
        if self._over:
            return 0
        if self._lookups is None or self._unmerged:
            return max(1, len(self._tail))
        return len(self._tail)

    # The race may believe __length_hint__ (see race._items_left).
    _exact_length_hint = True

    async def __anext__(self) -> AddrInfo:
        # One coroutine per address: the steps that need not wait are plain
        # calls (each coroutine more costs ~1.5k instructions).
        if self._over:
            raise StopAsyncIteration
        try:
            if self._lookups is None:
                if self._start():
                    # A lookup task not started eagerly takes its first
                    # step in the next pass of the loop; stepping aside
                    # behind it (instead of waiting to be woken, one pass
                    # later) sees an immediate answer (a cache, a hosts
                    # file) in that same pass: worth 13.5k instructions
                    # (2 %) of a connection to a name (3.11,
                    # benchmarks/connect.py).
                    await asyncio.sleep(0)
                lookups = self._lookups
                assert lookups is not None
                ipv6, ipv4 = lookups
                if not (ipv6.infos or (ipv6.finished and ipv4.finished)):
                    await self._first_answer(ipv6, ipv4)
            # Phase 2: hand out addresses one at a time. A lookup finishing
            # meanwhile (RFC 8305 §6) re-sorts and re-interleaves what is
            # left; what was handed out stays handed out.
            unmerged = self._unmerged
            while True:
                if unmerged and (
                    unmerged[0].finished or (len(unmerged) > 1 and unmerged[1].finished)
                ):
                    answers = []
                    # (The one await below is for the IPv4 answer, always
                    # the last: every lookup is seen finished or not before
                    # it, as in a snapshot taken first.)
                    for lookup in unmerged[:]:
                        if not lookup.finished:
                            continue
                        unmerged.remove(lookup)
                        infos = lookup.infos
                        if not infos:
                            continue  # a failure, or nothing found: nothing to add
                        if lookup.family == socket.AF_INET and _nat64_applies(
                            infos, self.nat64
                        ):
                            # RFC 8305 §7: no IPv4 route, so the IPv4
                            # answers are reached through NAT64, sorted
                            # among the rest.
                            infos = await _synthesize(
                                self.host, infos, self.nat64, self.getaddrinfo_async
                            )
                            self._system_sorted = False
                        answers.append(infos)
                    self._merge(answers)
                tail = self._tail
                if tail:
                    info = tail.pop()
                    if unmerged:
                        self._not_tried.remove(info)
                    self._handed_out.append(info[0])
                    return info
                if not unmerged:
                    break  # every answer is in, every address handed out
                await self._wait()
                if self._over:
                    raise StopAsyncIteration  # closed meanwhile (aclose)
        except BaseException:
            # An error, a cancellation: nothing more to hand out, and no
            # lookup may outlive the iterator.
            await self._finish()
            raise
        await self._finish()
        if not self._handed_out:
            raise _both_failed(
                self.host,
                {lookup.family: lookup.error for lookup in self._lookups or ()},
                self.raise_exc_group,
            )
        raise StopAsyncIteration

    def aclose(self) -> Awaitable[None]:
        """Closed early (the race was won): abandon the lookups still
        running and wait until they have stopped."""
        return self._finish()

    def _notify(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _wait(self, timeout: float | None = None) -> None:
        """Until a lookup finishes (or *timeout* seconds pass)."""
        loop = self._loop
        wake = self._wake = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, self._notify)
        try:
            await wake
        finally:
            self._wake = None
            if timer is not None:
                timer.cancel()

    def _start(self) -> bool:
        """Start both lookups; return whether one is a task whose first
        step is still to come."""
        loop = self._loop = asyncio.get_running_loop()
        host = self.host
        traced = tracing_active()
        notify = self._notify
        # RFC 8305 §3: both queries go out together, the AAAA query first.
        ipv6 = _FamilyLookup(socket.AF_INET6, host, notify, traced)
        ipv4 = _FamilyLookup(socket.AF_INET, host, notify, traced)
        lookups = self._lookups = (ipv6, ipv4)
        self._unmerged = [ipv6, ipv4]  # answers not in the list yet
        self._handed_out: list[int] = []  # families, in order
        self._seen: set[tuple[Any, ...]] | None = set()
        # Addresses known but not handed out, each family in its own
        # getaddrinfo order, families in the order they answered: the
        # "original order" of RFC 6724 rule 10.
        self._not_tried: list[AddrInfo] = []
        self._system_sorted = self.getaddrinfo_async is None
        self._started_at = loop.time()
        if traced:
            for lookup in lookups:
                emit("resolution_started", host=_host_text(host), family=lookup.family)
        open_lookup = self.open_lookup
        getaddrinfo_async = self.getaddrinfo_async
        port, type, proto, flags = self.port, self.type, self.proto, self.flags
        delayed = False
        for lookup in lookups:
            # Start (or join) the lookup. A task whose first step is still to
            # come (in the loop's next pass) delays the first address.
            shared = lookup._shared = open_lookup(
                loop, getaddrinfo_async, host, port, lookup.family, type, proto, flags
            )
            if shared.settled:  # an eager task factory, or an instant answer
                lookup.answered(shared.infos, shared.error)
            else:
                shared.listeners.append(lookup.answered)
                if not shared.stepped:
                    delayed = True
        return delayed and not (ipv6.finished and ipv4.finished)

    async def _first_answer(self, ipv6: _FamilyLookup, ipv4: _FamilyLookup) -> None:
        """Phase 1, RFC 8305 §3: wait for the first answer worth starting
        with. IPv6 addresses go at once; IPv4 addresses wait up to the
        Resolution Delay for IPv6; a failure or an empty answer waits for
        the other family."""
        loop = self._loop
        resolution_delay = self.resolution_delay
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
                            host=_host_text(self.host),
                            family=socket.AF_INET6,
                            delay=resolution_delay,
                        )
                    break  # RFC 8305 §3: stop waiting for AAAA
                await self._wait(remaining if math.isfinite(remaining) else None)
            else:
                await self._wait()
            if self._over:
                raise StopAsyncIteration  # closed meanwhile (aclose)

    def _merge(self, answers: list[list[AddrInfo]]) -> None:
        """Add *answers* to the addresses not tried, and order those afresh
        (kept reversed, so that each pop from the front is cheap)."""
        not_tried = self._not_tried
        seen = self._seen
        assert seen is not None  # let go only once nothing is left to merge
        for infos in answers:
            not_tried.extend(_unique(infos, seen))
        handed_out = self._handed_out
        tail = _order(
            not_tried,
            self.sorter,
            self.first_addr_family_count,
            handed_out,
            system_sorted=self._system_sorted,
            history=self.history,
        )
        if not handed_out and tail and tracing_active():
            _emit_order(self.host, tail, self.sorter, self.history)
        tail.reverse()
        self._tail = tail
        if not self._unmerged and tail:
            # Every answer is in and an address is about to be handed out:
            # nothing will be merged, nor reported as failed, any more. What
            # only served that is let go while the attempts run: about 1 kB per
            # connection in flight (3.13, benchmarks/memory.py).
            self._lookups = ()
            self._seen = None
            self._not_tried.clear()

    async def _finish(self) -> None:
        """Closed early (the race was won), cancelled, failed or done: no
        lookup may outlive the iterator, and none may leave an exception
        unretrieved."""
        if self._over:
            return
        self._over = True
        self._tail = []
        lookups = self._lookups
        if lookups is None:
            return  # never started: nothing to stop
        if not lookups:
            # Let go of once every answer was in (see _merge): nothing to stop.
            self._notify()  # a pull waiting in another task ends too
            return
        if tracing_active():
            loop = self._loop
            for lookup in lookups:
                if not lookup.finished and lookup._shared is not None:
                    emit(
                        "resolution_abandoned",
                        host=_host_text(self.host),
                        family=lookup.family,
                        delay=loop.time() - self._started_at,
                    )
        stopping = [lookup.abandon() for lookup in lookups]
        self._notify()  # a pull waiting in another task ends too
        running = [future for future in stopping if future is not None]
        for future in running:
            if not future.done():
                await wait_until_done(running)
                break
            # The usual case: the lookup is over. Nothing to wait for.
            if not future.cancelled():
                future.exception()
