"""With TLS an attempt wins by its handshake; only a transport closes its socket.

Happy Eyeballs v3 (draft-ietf-happy-happyeyeballs-v3, "Determining
successful connection establishment") lets a client that runs TLS over TCP
wait for the TLS handshake to complete before it cancels the other
attempts. Without that, an address that accepts TCP but never finishes TLS
(a TCP-terminating middlebox, an IPv6 path whose MTU black hole swallows the
server's certificate) wins the TCP race, and the connection then hangs until
``ssl_handshake_timeout`` (60 s by default) although another address works.

How an attempt runs with TLS
----------------------------
1. TCP connects as it does without TLS (``_attempts._Attempts``).
2. The connected socket goes to the loop's own
   :meth:`~asyncio.loop.create_connection` (``sock=``, ``ssl=``, the
   caller's ``server_hostname`` and ``ssl_handshake_timeout``) with a
   stand-in protocol, :class:`Handshake`, so the loop's own TLS code and
   transports do the work, on asyncio's loops and on uvloop's alike. Each
   attempt's handshake has its own ``ssl_handshake_timeout``.
3. The attempt returns when its handshake completes. The race's schedule
   runs on meanwhile: the next attempt starts when the delay is up, or at
   once when this handshake fails, as after a refused TCP connection
   (RFC 8305 §5: a failure means waiting longer is pointless).
4. The winner's transport gets the caller's protocol, made by the caller's
   ``protocol_factory`` only now: once, for the winner. What the stand-in
   received in the meantime (bytes the server sent right after its
   handshake, its EOF, the loss of the connection) is passed on in order
   before the loop runs anything else, so nothing the server said is lost.
5. Every other transport is aborted.

Stopping a handshake
--------------------
A handshake run by asyncio's own ``create_connection`` is stopped by
cancelling it, at any moment. uvloop's cannot be: cancelled at the wrong
pass of the loop it leaves its handshake's failure unretrieved, for the loop
to log as an error (see ``_loop_abilities.cancels_handshakes_cleanly``). On
uvloop, and on any loop whose ``create_connection`` is not asyncio's, the
call runs in a task of its own (:func:`create_tls_connection`, also used for
the TLS of a TCP race's winner) that the attempt's cancellation never
reaches; the attempt stops it by shutting the socket down (the handshake
then fails at once on the end of the stream) and waits for it to return.
The loop may have closed the socket's descriptor by then, and the process
given its number to another socket: the number is used only while it is
still the socket's (:func:`descriptor_identity`), here and after a failed
``create_connection`` (:func:`let_go_if_closed_behind_its_back`).

Who closes what
---------------
Once ``create_connection`` has the socket, only the transport closes it: we
abort the transport (at once, no TLS close_notify exchange that could wait
``ssl_shutdown_timeout`` on a peer that never answers). The socket is
closed by us only while no transport exists. Closing a socket under a live
transport frees its descriptor number while the transport still has it
registered with the loop, and the next socket given that number fails with
``File descriptor N is used by transport``.

Left out: the draft also lets an attempt whose handshake is making progress
hold off the next attempt's timer. Here the timer runs as for TCP; the
handshakes in flight continue and the first to finish wins. A slow but
progressing handshake may so see a next attempt it did not need, the price
of needing no view into the TLS state machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from typing import Any

from . import defaults
from ._loop_abilities import cancels_handshakes_cleanly, start_task
from ._tasks import wait_until_done
from .trace import emit, tracing_active

__all__ = ["Handshake", "TLSRace", "create_tls_connection"]


class Handshake(asyncio.Protocol):
    """The protocol of an attempt's TLS transport until it is handed over.

    It keeps what arrives after the handshake (data, EOF, connection loss)
    so the caller's protocol gets it later, in order; it pauses reading
    once :data:`~async_stagger.defaults.STREAM_LIMIT` bytes are kept, so a
    chatty server cannot fill memory before the race ends.
    """

    __slots__ = (
        "eof",
        "lost",
        "made",
        "paused_reading",
        "paused_writing",
        "received",
        "received_size",
        "target",
        "transport",
    )

    def __init__(self) -> None:
        # True once the loop called our factory: from then on a transport
        # owns the socket.
        self.made = False
        # An asyncio.Transport in all but name: uvloop's TLS transport does
        # not derive from it.
        self.transport: Any = None
        self.received: list[bytes] = []
        self.received_size = 0
        self.eof = False
        # (exc,) once the connection is lost before the hand-over.
        self.lost: tuple[Exception | None] | None = None
        self.paused_reading = False
        self.paused_writing = False
        # The caller's protocol, once handed over.
        self.target: asyncio.BaseProtocol | None = None

    def factory(self) -> Handshake:
        """The protocol factory given to ``loop.create_connection``."""
        self.made = True
        return self

    # -- asyncio.Protocol --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Called by the loop's TLS code when the handshake completes.
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received.append(data)
        self.received_size += len(data)
        if self.received_size >= defaults.STREAM_LIMIT and not self.paused_reading:
            self.paused_reading = True
            self.transport.pause_reading()

    def eof_received(self) -> None:
        # The return value means nothing on a TLS transport (asyncio and
        # uvloop both close it after close_notify).
        self.eof = True

    def connection_lost(self, exc: Exception | None) -> None:
        # The loop schedules this with call_soon, bound to the protocol of
        # that moment: it may arrive after the hand-over.
        if self.target is not None:
            self.target.connection_lost(exc)
        else:
            self.lost = (exc,)

    def pause_writing(self) -> None:
        if self.target is not None:
            self.target.pause_writing()
        else:
            self.paused_writing = True

    def resume_writing(self) -> None:
        if self.target is not None:
            self.target.resume_writing()
        else:
            self.paused_writing = False

    # -- the hand-over -----------------------------------------------------

    def hand_over(self, protocol: asyncio.BaseProtocol) -> None:
        """Make *protocol* the transport's protocol and give it, in order,
        what has arrived so far."""
        transport = self.transport
        assert transport is not None
        transport.set_protocol(protocol)
        self.target = protocol
        if self.paused_reading and self.lost is None:
            # Before connection_made: both loops resume in a later
            # callback, so a protocol that pauses reading in
            # connection_made stays paused, and what we pass on below
            # still comes first.
            transport.resume_reading()
        # Called as the loops call a protocol: any object with the methods.
        target: Any = protocol
        target.connection_made(transport)
        if self.paused_writing:
            target.pause_writing()
        received, self.received = self.received, []
        for data in received:
            _deliver(target, data)
        if self.eof:
            target.eof_received()
        if self.lost is not None:
            target.connection_lost(self.lost[0])


async def create_tls_connection(
    loop: asyncio.AbstractEventLoop,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    sock: socket.socket,
    keywords: dict[str, Any],
) -> tuple[Any, Any]:
    """``loop.create_connection(protocol_factory, sock=sock, **keywords)``,
    for a TLS handshake on the connected *sock*, that can be cancelled at
    any moment on any loop (see "Stopping a handshake" above): on a loop
    whose ``create_connection`` is not asyncio's, the call runs in a task of
    its own, which a cancellation stops by shutting *sock* down; the
    cancellation is raised once that task has returned, its transport
    aborted if its handshake completed meanwhile."""
    if cancels_handshakes_cleanly(loop):
        return await loop.create_connection(protocol_factory, sock=sock, **keywords)
    identity = descriptor_identity(sock)
    connecting = start_task(
        loop, loop.create_connection(protocol_factory, sock=sock, **keywords)
    )
    try:
        return await asyncio.shield(connecting)
    except asyncio.CancelledError:
        # Only through a number that is still the socket's: the loop may
        # have closed it, and the process given it to another.
        if not connecting.done() and holds_its_own_descriptor(sock, identity):
            # OSError: not connected any more, so ending anyway.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        try:
            # Also marks its error retrieved: the call is cancelled, that
            # is what it reports (a second cancellation meanwhile too).
            await wait_until_done((connecting,))
        finally:
            if (
                connecting.done()
                and not connecting.cancelled()
                and connecting.exception() is None
            ):
                # Done just as it was cancelled: at once, no TLS
                # close_notify exchange with a peer that may never answer.
                connecting.result()[0].abort()
        raise
    finally:
        if connecting.done() and (
            connecting.cancelled() or connecting.exception() is not None
        ):
            let_go_if_closed_behind_its_back(sock, identity)


def descriptor_identity(sock: socket.socket) -> tuple[int, int]:
    """What tells *sock*'s own socket from any other that its descriptor
    number may later be given to: the kernel's device and inode numbers of
    it (Linux numbers sockets, as pipes and the like, from one 32-bit
    counter: another socket gets the same inode number only after some four
    billion more numbers were handed out)."""
    found = os.fstat(sock.fileno())
    return found.st_dev, found.st_ino


def holds_its_own_descriptor(sock: socket.socket, identity: tuple[int, int]) -> bool:
    """Whether *sock*'s descriptor number still opens the socket of
    *identity* (see :func:`descriptor_identity`)."""
    number = sock.fileno()
    if number == -1:
        return False
    try:
        found = os.fstat(number)
    except OSError:  # closed, and not given to anything since
        return False
    return (found.st_dev, found.st_ino) == identity


def let_go_if_closed_behind_its_back(
    sock: socket.socket, identity: tuple[int, int]
) -> None:
    """Detach *sock* if the loop closed its descriptor but left the socket
    object holding the number.

    uvloop's ``create_connection(sock=, ssl=)`` (0.23) gives the socket
    object to its transport once the transport is set up, to detach when the
    transport closes. When the handshake fails before that (the peer resets,
    or we shut the socket down, in the same pass of the loop), the transport
    is already closed, descriptor and all, when the object is given to it, and
    nothing detaches it: at collection it would close its number again,
    which by then may be another socket's.
    """
    if sock.fileno() != -1 and not holds_its_own_descriptor(sock, identity):
        sock.detach()


def _deliver(protocol: Any, data: bytes) -> None:
    """Pass *data* to *protocol* as its transport would: to a
    :class:`~asyncio.BufferedProtocol` through the buffers it hands out."""
    if not isinstance(protocol, asyncio.BufferedProtocol):
        protocol.data_received(data)
        return
    view = memoryview(data)
    while view:
        buffer = memoryview(protocol.get_buffer(len(view))).cast("B")
        size = min(len(buffer), len(view))
        if not size:
            raise RuntimeError("get_buffer() returned an empty buffer")
        buffer[:size] = view[:size]
        protocol.buffer_updated(size)
        view = view[size:]


class TLSRace:
    """The TLS side of one connection's attempts.

    Holds the keywords for the loop's ``create_connection`` and every
    handshake that has started and is neither dropped nor handed over, so
    that whatever way the race ends, no transport is left open.
    """

    __slots__ = ("keywords", "live", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, keywords: dict[str, Any]):
        self.loop = loop
        self.keywords = keywords
        self.live: set[Handshake] = set()

    async def handshake(
        self,
        index: int,
        sock: socket.socket,
        address: tuple[Any, ...],
        local: tuple[Any, ...] | None,
    ) -> Handshake:
        """Run the TLS handshake of attempt *index* on its connected
        *sock*; the attempt succeeds when this returns."""
        traced = tracing_active()
        if traced:
            emit("tls_started", index=index, address=address)
        handshake = Handshake()
        live = self.live
        live.add(handshake)
        try:
            await create_tls_connection(
                self.loop, handshake.factory, sock, self.keywords
            )
        except asyncio.CancelledError:
            self._drop(handshake, sock)
            if traced:
                emit("attempt_cancelled", index=index, address=address)
            raise
        except BaseException as exc:
            self._drop(handshake, sock)
            if traced:
                emit("tls_failed", index=index, address=address, error=exc)
                emit("attempt_failed", index=index, address=address, error=exc)
            raise
        if traced:
            emit("tls_succeeded", index=index, address=address)
            emit("attempt_succeeded", index=index, address=address, local_address=local)
        return handshake

    def _drop(self, handshake: Handshake, sock: socket.socket) -> None:
        self.live.discard(handshake)
        if handshake.transport is not None:
            # The handshake completed but the attempt lost (or was
            # cancelled) before create_connection returned; the loop would
            # close it politely, waiting for the peer's close_notify.
            handshake.transport.abort()
        elif not handshake.made:
            # The loop failed before making a transport: the socket is ours.
            sock.close()
        # Otherwise the loop made a transport and, the handshake having
        # failed or been cancelled, closed it itself (asyncio and uvloop
        # both abort a transport whose handshake has not completed).

    def abort_all_but(self, winner: object) -> None:
        """Abort every transport of this race except *winner*'s: the race
        may end with a handshake done and dropped (the caller was cancelled
        just as it won)."""
        live, self.live = self.live, set()
        for handshake in live:
            if handshake is not winner and handshake.transport is not None:
                handshake.transport.abort()

    async def hand_over(
        self,
        winner: Handshake,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
    ) -> tuple[asyncio.BaseTransport, asyncio.BaseProtocol]:
        """Give the winner's transport the caller's protocol, made now."""
        transport = winner.transport
        assert transport is not None
        task = asyncio.current_task(self.loop)
        asked = task.cancelling() if task is not None else 0
        try:
            protocol = protocol_factory()
            winner.hand_over(protocol)
            if task is not None and task.cancelling() > asked:
                # Cancelled from the protocol's connection_made: asyncio's
                # create_connection awaits once more after that call, so the
                # cancellation ends it; so it does here.
                await asyncio.sleep(0)
        except BaseException:
            transport.abort()
            raise
        return transport, protocol
