"""One coroutine from a checked plan to a connected socket; nothing left open.

Every public connection function ends here with its
:class:`~async_stagger._plan.ConnectionPlan`: the addresses come from the
plan's resolver, the attempts (:mod:`async_stagger._attempts`) race in
:func:`~async_stagger.race._race_on_loop`, and the winner is returned as a
socket or handed to the loop for a transport (with TLS, see
:mod:`async_stagger._tls_attempt`). One IP address with nothing to race
(no tracer, no local addresses, no TLS race) is its attempt alone
(:func:`_alone`), or on uvloop, for ``open_connection``, uvloop's own
connection to it (:func:`_open_by_address`), each ending as the race would.
It is one coroutine for all three functions (and for a lone IPv4 literal
on uvloop, ``_open_by_address``'s alone): every coroutine between the
caller and the socket's ``connect`` is paid for again each time the
connection waits.

Every socket an attempt creates is recorded until it is either returned to
the caller or closed. The race may drop a winner it found just as the caller
was cancelled; the record is what lets us close that socket too, so no exit
path (failure, cancellation, ``asyncio.timeout``) leaves a descriptor open.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from contextvars import Token
from functools import partial
from typing import TYPE_CHECKING, Any

from . import history as _history
from ._attempts import (
    _Attempts,
    _collect_local_addrs,
    _record_outcomes,
    _resolve_local_addr,
    _TLSAttempts,
)
from ._direct_answer import lone_ipv4_literal
from ._failure import failure
from ._loop_abilities import uvloop_create_connection
from ._plan import ConnectionPlan
from ._resolver_keywords import extra_keywords_taken
from ._tls_attempt import TLSRace, create_tls_connection
from .address_order import sort_addresses as _sort_addresses
from .history import SHARED, ConnectionHistory, resolve_history_option
from .race import _race_on_loop
from .resolvers import (
    _DirectAnswer,
    _resolve_checked,
    basic_resolver,
    concurrent_resolver,
)
from .trace import (
    LOGGER,
    _current_trace,
    _ever_traced,
    _logged,
    _start_tracing,
    _stop_tracing,
    emit,
    tracing_active,
)

if TYPE_CHECKING:
    from ._types import AddrInfo
    from .connection import Resolver

_SOCK_STREAM = socket.SOCK_STREAM
_DEBUG = logging.DEBUG


def make_connection(
    plan: ConnectionPlan,
    protocol_factory: Callable[[], asyncio.BaseProtocol] | None,
    factory_made_protocol: bool = False,
) -> Coroutine[Any, Any, Any]:
    """The coroutine that races connection attempts as *plan* says. Without
    a *protocol_factory*, it returns the winning socket; with one, the
    loop's ``(transport, protocol)`` for it (TLS too, with the plan's *tls*:
    raced when *race_tls*, else on the winner only).

    *factory_made_protocol*: the factory only returns a protocol already
    made (``open_connection``'s), so nobody sees when, or whether, it is
    called: a loop that calls it before connecting may be given it.

    A plain function, so that an IPv4 literal that uvloop connects by itself
    is given :func:`_open_by_address`'s coroutine with none of ours around
    it: one coroutine less between the caller and the connect, each time
    the connection waits."""
    # The plan's fields read at once: one unpacking costs ~1.2k instructions
    # less than reading them one by one, 1.2 % of an IP literal connection
    # on uvloop's loop (~99k), 0.26 % on asyncio's (3.11).
    (
        loop, host, port, family, proto, flags, _, local_addr, local_addrs, _, _,
        resolver, _, _, tls, race_tls, trace, nat64, history,
    ) = plan  # fmt: skip
    # Nothing to race but the addresses: no local addresses, no TLS race,
    # and nobody listening (no tracer; the "async_stagger" logger gets the
    # events when it is enabled for DEBUG: one check per connection when it
    # is not).
    quiet = (
        local_addrs is None
        and local_addr is None
        and (tls is None or not race_tls)
        and trace is None
        # tracing_active() without its call (see trace._ever_traced).
        and (not _ever_traced or _current_trace.get() is None)
        and not LOGGER.isEnabledFor(_DEBUG)
    )
    lone: AddrInfo | None = None
    if quiet and resolver is concurrent_resolver:
        # The default resolver's answer for an IPv4 literal it has answered
        # before, without the resolver.
        lone = lone_ipv4_literal(host, port, family, proto, flags, nat64)
        # A history option still to check is checked in _connect.
        if lone is not None and (history is SHARED or history is None):
            by_address = _left_to_uvloop(factory_made_protocol, tls, lone, loop)
            if by_address is not None:
                assert protocol_factory is not None
                return _open_by_address(plan, protocol_factory, lone, by_address)
    return _connect(plan, protocol_factory, factory_made_protocol, quiet, lone)


def _left_to_uvloop(
    factory_made_protocol: bool,
    tls: dict[str, Any] | None,
    lone: AddrInfo,
    loop: asyncio.AbstractEventLoop,
) -> Callable[..., Coroutine[Any, Any, Any]] | None:
    """uvloop's own ``create_connection`` when the lone address is for it
    (:func:`_open_by_address`), else None."""
    if (
        factory_made_protocol
        and tls is None
        # (An IPv4 address has no scope id: one test, not a call.)
        and (len(lone[4]) == 2 or _scope_id(lone[4]) == 0)
    ):
        return uvloop_create_connection(loop)
    return None


async def _connect(
    plan: ConnectionPlan,
    protocol_factory: Callable[[], asyncio.BaseProtocol] | None,
    factory_made_protocol: bool,
    quiet: bool,
    lone: AddrInfo | None,
) -> Any:
    """:func:`make_connection`'s coroutine; *quiet* and *lone* as it found
    them."""
    trace = plan.trace
    token: Token[Any] | None = None
    if not quiet and (
        trace is not None
        or (LOGGER.isEnabledFor(logging.DEBUG) and not tracing_active())
    ):
        if LOGGER.isEnabledFor(logging.DEBUG):
            trace = _logged(trace)
        assert trace is not None
        token = _start_tracing(trace)
    try:
        loop = plan.loop
        if plan.sock is not None:
            # No Happy Eyeballs to do: the loop takes the socket as it is.
            assert protocol_factory is not None
            if plan.tls is None:
                return await loop.create_connection(protocol_factory, sock=plan.sock)
            return await loop.create_connection(
                protocol_factory, sock=plan.sock, **plan.tls
            )
        history = plan.history
        used_history: ConnectionHistory | None = None
        if history is SHARED:
            used_history = _history._shared
        elif history is not None:
            used_history = resolve_history_option(history)
        try:
            locals_ = None
            if plan.local_addrs is not None or plan.local_addr is not None:
                locals_ = await _local_addresses(plan)
            # The attempts to race, and the delay after each when the
            # history is to time them.
            remote, lone = _addresses_to_race(plan, used_history, quiet, lone)
            if lone is not None:
                by_address = _left_to_uvloop(
                    factory_made_protocol, plan.tls, lone, loop
                )
                if by_address is not None:
                    assert protocol_factory is not None
                    return await _open_by_address(
                        plan, protocol_factory, lone, by_address
                    )
            if plan.tls is None or not plan.race_tls:
                attempts = _Attempts(loop, remote, locals_)
            else:
                attempts = _TLSAttempts(loop, remote, locals_, TLSRace(loop, plan.tls))
            delay_for: Callable[[int], float] | None = None
            # An IP literal has one address: nothing to order or time, and
            # not worth recording (it would cost every literal connection).
            if type(remote) is not _DirectAnswer:
                if used_history is not None:
                    attempts._watch(used_history, plan.delay)
                    if not plan.delay_given:
                        # The history may time each attempt (RFC 8305 §5); a
                        # delay the caller chose is used as given.
                        delay_for = attempts.delay_after
                elif tracing_active():
                    attempts._watch(None, plan.delay)
            tls_race = attempts.tls
            winner: Any = None
            try:
                if lone is not None:
                    winner, winner_index, exceptions, source_exc = await _alone(
                        attempts, lone
                    )
                else:
                    winner, winner_index, exceptions, source_exc = await _race_on_loop(
                        loop, attempts, plan.delay, delay_for
                    )
                if attempts.history is not None:
                    _record_outcomes(
                        attempts.history, attempts, exceptions, winner_index
                    )
            finally:
                # The race closes its losers; this also catches a winner the
                # race dropped because we were cancelled just as it won. (In a
                # TLS race no socket is left here: each is a transport's.)
                live = attempts.live
                if len(live) > 1 or winner is None:
                    for sock in live:
                        if sock is not winner:
                            sock.close()
                if tls_race is not None:
                    tls_race.abort_all_but(winner)
            if winner is None:
                raise failure(
                    plan.host,
                    plan.port,
                    attempts.addresses,
                    attempts.skipped,
                    exceptions,
                    source_exc,
                    plan.raise_exc_group,
                )
        except BaseException as exc:
            emit("connection_failed", error=exc)
            raise
        if protocol_factory is None:
            return winner
        if tls_race is not None:
            try:
                return await tls_race.hand_over(winner, protocol_factory)
            except BaseException as exc:
                emit("connection_failed", error=exc)
                raise
        tls = plan.tls
        if tls is None:
            try:
                return await loop.create_connection(protocol_factory, sock=winner)
            except BaseException as exc:
                _let_go_of_handed_over(loop, winner)
                emit("connection_failed", error=exc)
                raise
        # race_tls=False: as RFC 8305 §5 (and asyncio) have it, the TCP race
        # picked the winner, TLS runs on the winner only.
        peer = _peer(winner)
        emit("tls_started", address=peer)
        try:
            transport, protocol = await create_tls_connection(
                loop, protocol_factory, winner, tls
            )
        except BaseException as exc:
            _let_go_of_handed_over(loop, winner)
            emit("tls_failed", address=peer, error=exc)
            emit("connection_failed", error=exc)
            raise
        emit("tls_succeeded", address=peer)
        return transport, protocol
    finally:
        if token is not None:
            _stop_tracing(token)


async def _alone(
    attempts: _Attempts, info: AddrInfo
) -> tuple[Any, int | None, list[BaseException | None], None]:
    """The race of one attempt to *info*, without the race: what
    ``_race_on_loop`` returns for it, its cancellation rules included.

    Attempt 0 of a race runs in the caller's task, and with no other attempt
    to start the race's timer, driver and tasks have nothing to do; its
    bookkeeping still cost ~22k instructions (5 %) of an IP literal
    connection on asyncio's loop (3.11: 412.7k → 390.5k; ~19k on uvloop's).
    Kept the same as the race: the attempt's step
    (``_Attempts._connect``), its exception as its failure, a cancellation
    of the caller raised as it is, and one asked for while the attempt
    finished without waiting raised all the same (the socket is then closed
    with the live ones, as the race's dropped winner)."""
    attempts.addresses.append((info[4], None))  # as _Attempts._factory does
    me = asyncio.current_task(attempts.loop)
    cancel_requests = 0 if me is None else me.cancelling()
    try:
        sock = await attempts._connect(0, info, None)
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise  # the program's, not the attempt's
    except BaseException as exc:
        if me is not None and me.cancelling() > cancel_requests:
            raise  # the caller is being cancelled, not the attempt failing
        return None, None, [exc], None
    if me is not None and me.cancelling() > cancel_requests:
        raise asyncio.CancelledError()
    return sock, 0, [None], None


async def _open_by_address(
    plan: ConnectionPlan,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    info: AddrInfo,
    create_connection: Callable[..., Coroutine[Any, Any, Any]],
) -> Any:
    """``open_connection`` to one IP address on uvloop: its own
    *create_connection* (``host=address``), which connects and builds the
    transport in C (see ``_loop_abilities.uvloop_create_connection`` for the
    worth), with the outcome the race's would have.

    What uvloop does differently, and how it is made the same:

    * It calls the protocol factory before connecting: only
      ``open_connection``'s, which returns the protocol it already made, is
      given to it.
    * It drops an IPv6 address's scope id: such addresses are not given to
      it (see ``_scope_id``).
    * Its ``TCP_NODELAY`` is set on every transport it makes, as on the one
      made from our socket; its port is ``getaddrinfo``'s number, in range.
    * A connect error found later (``SO_ERROR``) reads "Connection refused"
      where asyncio's and our connect step say ``Connect call failed
      (address)``: an error found later is re-made in those words; one
      ``connect()`` gave at once has the system's words in both. (uvloop
      reports an immediate ``ECONNREFUSED`` only later, which Linux never
      gives at once to a non-blocking TCP socket.) The two are told apart
      by where uvloop raised the error (see :func:`_found_later`), which
      costs a connection that succeeds nothing.
    * The error is then told as the race tells a lone attempt's
      (:func:`~async_stagger._failure.failure`: its address as a note, in a
      group with *raise_exc_group*); a cancellation is raised as it is,
      once uvloop has closed its transport.
    """
    family, _, proto, _, address = info
    error: Exception
    try:
        return await create_connection(
            plan.loop, protocol_factory, address[0], address[1], family=family,
            proto=proto,
        )  # fmt: skip
    except Exception as exc:
        error = exc
    if isinstance(error, OSError) and error.errno and _found_later(error):
        error = OSError(error.errno, f"Connect call failed {address}")
    raise failure(
        plan.host, plan.port, [(address, None)], (), [error], None, plan.raise_exc_group
    )


def _found_later(error: BaseException) -> bool:
    """Whether uvloop's ``create_connection`` raised *error* where it waits
    for the connection's outcome (libuv's connect callback, the socket's
    ``SO_ERROR``), not from within its connect call (``connect()`` itself
    failed, or making the socket did): the innermost entry of its traceback
    is then that coroutine's own, where the other's goes on into uvloop's
    connect step.

    Told this way, a connection that succeeds pays nothing; a callback
    scheduled for the next pass of the loop, and cancelled, which told the
    two apart by whether the loop went round, cost every connection ~2.6k
    instructions (3.11). Both kinds are pinned against the race's words by
    the tests (a refused port; no route, in a network namespace)."""
    entry = error.__traceback__
    if entry is None:
        return False
    while entry.tb_next is not None:
        entry = entry.tb_next
    return entry.tb_frame.f_code.co_name.endswith("create_connection")


# The addresses left once a lone address is taken: none (it only ever hands
# out nothing, so all connections may share it).
_NOTHING_LEFT = _DirectAnswer(None, [])


def _scope_id(address: tuple[Any, ...]) -> int:
    """An IPv6 socket address's scope id (0 for IPv4), which uvloop's
    ``create_connection`` drops on its way to ``connect()``."""
    return int(address[3]) if len(address) == 4 else 0


async def _local_addresses(plan: ConnectionPlan) -> list[tuple[int, tuple[Any, ...]]]:
    """The local addresses to bind to, each with its family: *local_addrs*
    and asyncio's *local_addr* (resolved like asyncio's)."""
    locals_: list[tuple[int, tuple[Any, ...]]] = []
    if plan.local_addrs is not None:
        locals_ = await _collect_local_addrs(plan.local_addrs)
    if plan.local_addr is not None:
        locals_ = locals_ + await _resolve_local_addr(
            plan.loop,
            plan.local_addr,
            family=plan.family,
            proto=plan.proto,
            flags=plan.flags,
        )
    if not locals_:
        raise ValueError("local_addrs is empty: no local address to bind to")
    return locals_


def _addresses_to_race(
    plan: ConnectionPlan,
    used_history: ConnectionHistory | None,
    quiet: bool,
    lone: AddrInfo | None,
) -> tuple[AsyncIterator[AddrInfo], AddrInfo | None]:
    """The stream of addresses to race, and the lone address (*lone*, or
    the only one of an IP literal's answer) when it is the only one and
    nobody listens (*quiet*): a race of one attempt started at once, with
    no delay to wait out, is that attempt alone (see :func:`_alone`)."""
    if not quiet:
        return _remote_addresses(plan, used_history), None
    if lone is not None:
        return _NOTHING_LEFT, lone
    remote = _remote_addresses(plan, used_history)
    if type(remote) is _DirectAnswer:
        lone = remote.take_lone()
    return remote, lone


def _remote_addresses(
    plan: ConnectionPlan, used_history: ConnectionHistory | None
) -> AsyncIterator[AddrInfo]:
    """The resolver's stream of addresses for the plan's host and port."""
    count = plan.first_addr_family_count
    resolver = plan.resolver
    if resolver is concurrent_resolver:
        # The default resolver, past its own argument checks: the plan's
        # have checked the same values (going through its public signature
        # costs 1.6 % of a literal connection's instructions).
        if count is None:
            return _resolve_checked(
                plan.host, plan.port, plan.family, _SOCK_STREAM, plan.proto,
                plan.flags,
                raise_exc_group=plan.raise_exc_group,
                nat64=plan.nat64,
                history=used_history,
            )  # fmt: skip
        return _resolve_checked(
            plan.host, plan.port, plan.family, _SOCK_STREAM, plan.proto,
            plan.flags,
            first_addr_family_count=count,
            raise_exc_group=plan.raise_exc_group,
            # asyncio's interleave=0: the order as getaddrinfo gave it,
            # neither sorted nor interleaved.
            sorter=_sort_addresses if count else None,
            nat64=plan.nat64,
            history=used_history,
        )  # fmt: skip
    # The keywords of the 0.4 resolver contract, and of the others only
    # those asked for and declared by the resolver, so custom resolvers
    # written for async_stagger 0.4 keep working.
    options: dict[str, Any] = {}
    nat64 = plan.nat64
    if count or plan.raise_exc_group or nat64 is not True:
        taken = extra_keywords_taken(resolver)
        if count and "first_addr_family_count" in taken:
            options["first_addr_family_count"] = count
        if plan.raise_exc_group and "raise_exc_group" in taken:
            options["raise_exc_group"] = True
        if nat64 is not True and "nat64" in taken:
            options["nat64"] = nat64
    if used_history is not None and _orders_by_history(resolver):
        options["history"] = used_history
    return resolver(
        plan.host,
        plan.port,
        family=plan.family,
        type=_SOCK_STREAM,
        proto=plan.proto,
        flags=plan.flags,
        **options,
    )


def _orders_by_history(resolver: Resolver) -> bool:
    """Whether *resolver* is one of ours with options bound
    (``functools.partial(concurrent_resolver, ...)``) that can take the
    connection's history and was not given one of its own."""
    return (
        type(resolver) is partial
        and resolver.func in (concurrent_resolver, basic_resolver)
        and "history" not in resolver.keywords
    )


def _let_go_of_handed_over(
    loop: asyncio.AbstractEventLoop, sock: socket.socket
) -> None:
    """Clean up after ``loop.create_connection(sock=sock)`` failed or was
    cancelled.

    The rule: once a socket has been handed to a transport, only the
    transport closes it (we abort the transport); we close the socket
    ourselves only while no transport exists. A cancellation just after a
    TLS handshake makes asyncio's ``create_connection`` call ``close()`` on
    its SSL transport, which starts a TLS shutdown (up to
    ``ssl_shutdown_timeout``, 30 s) with the socket still registered on the
    loop; closing the socket under it freed its descriptor number, and the
    next socket given that number failed with "File descriptor N is used by
    transport". Aborting ends that transport at once and lets it close its
    own socket.
    """
    if sock.fileno() == -1:
        return  # the transport has closed it already
    # asyncio's selector loops keep every live transport by descriptor
    # (``_transports``, which their ``add_reader`` checks); another loop
    # (uvloop, the proactor) has no such table and, when its
    # create_connection fails, leaves the socket to the caller.
    transports = getattr(loop, "_transports", None)
    transport = transports.get(sock.fileno()) if transports is not None else None
    if transport is not None and getattr(transport, "_sock", None) is sock:
        transport.abort()  # it closes the socket itself, in its next step
    else:
        sock.close()


def _peer(sock: socket.socket) -> tuple[Any, ...] | None:
    try:
        peer = sock.getpeername()
    except OSError:
        return None
    return peer if isinstance(peer, tuple) else None
