"""httpcore: a network backend whose TCP connections are Happy Eyeballs.

:class:`HappyEyeballsBackend` is an ``httpcore.AsyncNetworkBackend``, the
public interface httpcore's connection pools take as *network_backend*::

    pool = httpcore.AsyncConnectionPool(network_backend=HappyEyeballsBackend())

Its ``connect_tcp`` is :func:`async_stagger.create_connection`; the stream
it returns is :class:`AsyncioStream`, a small stream of our own on an
asyncio transport (TLS through :meth:`asyncio.loop.start_tls`), so neither
anyio nor httpcore's private stream classes are involved. For httpx, see
:mod:`async_stagger.integrations.httpx`.

Timeouts and errors become httpcore's exceptions, as its own backends
raise them: ``ConnectTimeout``/``ConnectError`` while connecting or during
the TLS handshake, ``ReadTimeout``/``ReadError`` and
``WriteTimeout``/``WriteError`` afterwards.
"""

from __future__ import annotations

import asyncio
import select
import ssl
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import httpcore

from .._checks import check_callable, check_delay
from ..connection import Resolver, create_connection
from ..defaults import CONNECTION_ATTEMPT_DELAY
from ..resolvers import concurrent_resolver
from ..trace import TraceCallback

__all__ = ["AsyncioStream", "HappyEyeballsBackend"]

# Read flow control: stop reading from the socket while this much is
# buffered and unread, start again below the low mark (asyncio streams'
# default limit).
_HIGH_WATER = 2**16
_LOW_WATER = 2**14

# Seconds aclose waits for the connection to be gone before aborting it.
_CLOSE_TIMEOUT = 5.0


@contextmanager
def _mapped(timeout: type[Exception], error: type[Exception]) -> Iterator[None]:
    """Raise *timeout* for a timeout and *error* for a network error."""
    try:
        yield
    except TimeoutError as exc:
        raise timeout(str(exc) or "timed out") from exc
    except (OSError, ssl.SSLError, EOFError) as exc:
        raise error(str(exc) or type(exc).__name__) from exc


class _StreamProtocol(asyncio.Protocol):
    """Buffers what arrives and lets one reader wait for it; tells a writer
    when the transport wants it to wait."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.lost: BaseException | None = None
        self.closed = False
        self._reading_paused = False
        self._writing_paused = False
        self._read_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._lost_waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are asyncio.Transport in all but their class.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake_reader()
        if len(self.buffer) > _HIGH_WATER and not self._reading_paused:
            assert self.transport is not None
            self._reading_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> None:
        self.eof = True
        self._wake_reader()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.eof = True
        self.lost = exc
        self._wake_reader()
        for waiter in (self._drain_waiter, self._lost_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        self._drain_waiter = self._lost_waiter = None

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_reader(self) -> None:
        waiter, self._read_waiter = self._read_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read(self, max_bytes: int) -> bytes:
        while not self.buffer:
            if self.eof:
                if self.lost is not None:
                    raise self.lost
                return b""
            waiter = asyncio.get_running_loop().create_future()
            self._read_waiter = waiter
            try:
                await waiter
            finally:
                self._read_waiter = None
        return self.take(max_bytes)

    def take(self, max_bytes: int) -> bytes:
        """Up to *max_bytes* of the buffer, which must not be empty."""
        data = bytes(self.buffer[:max_bytes])
        del self.buffer[:max_bytes]
        if self._reading_paused and len(self.buffer) <= _LOW_WATER:
            assert self.transport is not None
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    async def wait_lost(self) -> None:
        if self.closed:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._lost_waiter = waiter
        await waiter

    async def drain(self) -> None:
        if self.closed:
            raise self.lost or ConnectionResetError("Connection lost")
        if not self._writing_paused:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._drain_waiter = waiter
        await waiter
        if self.closed:
            raise self.lost or ConnectionResetError("Connection lost")


class AsyncioStream(httpcore.AsyncNetworkStream):
    """An ``httpcore.AsyncNetworkStream`` on an asyncio transport.

    Made by :class:`HappyEyeballsBackend`; not meant to be made by hand.

    Args:
        transport: A connected transport whose protocol is *protocol*.
        protocol: The stream's protocol (made by the backend).

    .. versionadded:: 1.0
    """

    def __init__(self, transport: asyncio.Transport, protocol: Any) -> None:
        self._transport = transport
        self._protocol: _StreamProtocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Up to *max_bytes* bytes, ``b""`` at the end of the stream.

        Raises:
            httpcore.ReadTimeout: Nothing arrived within *timeout* seconds.
            httpcore.ReadError: The connection failed.
        """
        protocol = self._protocol
        with _mapped(httpcore.ReadTimeout, httpcore.ReadError):
            async with asyncio.timeout(timeout):
                return await protocol.read(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        """Send all of *buffer*.

        Raises:
            httpcore.WriteTimeout: The transport did not take it within
                *timeout* seconds.
            httpcore.WriteError: The connection failed.
        """
        if not buffer:
            return
        with _mapped(httpcore.WriteTimeout, httpcore.WriteError):
            if self._protocol.closed:
                raise self._protocol.lost or ConnectionResetError("Connection lost")
            self._transport.write(buffer)
            async with asyncio.timeout(timeout):
                await self._protocol.drain()

    async def aclose(self) -> None:
        """Close the connection (TLS: after sending close_notify)."""
        transport = self._transport
        if not transport.is_closing():
            transport.close()
        try:
            # Let the transport finish, so nothing outlives the stream; a
            # TLS peer that never answers close_notify is not waited for
            # long.
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await self._protocol.wait_lost()
        except TimeoutError:
            transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Upgrade to TLS with :meth:`asyncio.loop.start_tls`.

        Returns:
            This stream, now encrypted.

        Raises:
            httpcore.ConnectTimeout: The handshake took over *timeout* s.
            httpcore.ConnectError: The handshake failed (a bad certificate:
                ``ssl.SSLCertVerificationError`` as its cause).
        """
        loop = asyncio.get_running_loop()
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            try:
                async with asyncio.timeout(timeout):
                    transport = await loop.start_tls(
                        self._transport,
                        self._protocol,
                        ssl_context,
                        server_hostname=server_hostname,
                    )
            except BaseException:
                self._transport.abort()
                raise
        if transport is None:  # the loop's way of saying the peer left
            raise httpcore.ConnectError("connection closed during the TLS handshake")
        self._transport = self._protocol.transport = transport
        return self

    def get_extra_info(self, info: str) -> Any:
        """What httpcore asks of a stream.

        Args:
            info: ``"ssl_object"`` (the :class:`ssl.SSLObject`, or None),
                ``"client_addr"`` and ``"server_addr"`` (local and remote
                socket addresses), ``"socket"`` (the socket, as asyncio's
                transports give it) or ``"is_readable"`` (whether the
                connection has data or an end of stream waiting: an idle
                kept-alive connection that is readable was closed by the
                server).

        Returns:
            The value, or None for anything else.
        """
        transport = self._transport
        if info == "ssl_object":
            return transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return transport.get_extra_info("sockname")
        if info == "server_addr":
            return transport.get_extra_info("peername")
        if info == "socket":
            return transport.get_extra_info("socket")
        if info == "is_readable":
            protocol = self._protocol
            if protocol.buffer or protocol.eof:
                return True
            sock = transport.get_extra_info("socket")
            if sock is None or sock.fileno() < 0:
                return True
            readable, _, _ = select.select([sock.fileno()], [], [], 0)
            return bool(readable)
        return None


def _with_options(
    transport: asyncio.Transport,
    protocol: _StreamProtocol,
    socket_options: Iterable[httpcore.SOCKET_OPTION] | None,
) -> AsyncioStream:
    """The stream on *transport*, its socket's options set (after connecting,
    as httpcore's own backends set them)."""
    if socket_options:
        sock = transport.get_extra_info("socket")
        try:
            for option in socket_options:
                sock.setsockopt(*option)
        except BaseException:
            transport.abort()
            raise
    return AsyncioStream(transport, protocol)


class HappyEyeballsBackend(httpcore.AsyncNetworkBackend):
    """An ``httpcore.AsyncNetworkBackend`` connecting with
    :func:`async_stagger.create_connection`.

    Args:
        delay: The Connection Attempt Delay (RFC 8305 §5).
        resolver: The resolver (see :mod:`async_stagger.resolvers`).
        trace: Called with each connection's
            :class:`~async_stagger.TraceEvent`\\ s.

    Raises:
        TypeError: *resolver* or *trace* is not callable.

    .. versionadded:: 1.0
    """

    def __init__(
        self,
        *,
        delay: float | None = CONNECTION_ATTEMPT_DELAY,
        resolver: Resolver = concurrent_resolver,
        trace: TraceCallback | None = None,
    ) -> None:
        check_delay("delay", delay)
        check_callable("resolver", resolver, allow_none=False)
        check_callable("trace", trace)
        self._delay = delay
        self._resolver = resolver
        self._trace = trace

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Connect to *host* and *port* with Happy Eyeballs.

        Args:
            host: Host name or IP literal.
            port: Port.
            timeout: Seconds for the whole connection, lookups included.
            local_address: A local IP address to bind to (only addresses of
                its family are tried).
            socket_options: ``setsockopt`` arguments for the socket.

        Returns:
            An :class:`AsyncioStream`.

        Raises:
            httpcore.ConnectTimeout: Not connected within *timeout*.
            httpcore.ConnectError: Every attempt, or the lookup, failed.
        """
        local_addrs = None if local_address is None else [(local_address, 0)]
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with asyncio.timeout(timeout):
                transport, protocol = await create_connection(
                    _StreamProtocol,
                    host,
                    port,
                    local_addrs=local_addrs,
                    delay=self._delay,
                    resolver=self._resolver,
                    trace=self._trace,
                )
        return _with_options(
            cast(asyncio.Transport, transport),
            cast(_StreamProtocol, protocol),
            socket_options,
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Connect to the Unix socket *path* (no Happy Eyeballs to do).

        Raises:
            httpcore.ConnectTimeout: Not connected within *timeout*.
            httpcore.ConnectError: The connection failed.
        """
        loop = asyncio.get_running_loop()
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_unix_connection(
                    _StreamProtocol, path
                )
        return _with_options(transport, protocol, socket_options)

    async def sleep(self, seconds: float) -> None:
        """Sleep on the running loop (httpcore's retries wait with this)."""
        await asyncio.sleep(seconds)
