"""httpx: a transport whose connections are Happy Eyeballs.

``httpx.AsyncClient(transport=HappyEyeballsTransport())`` sends every
request through an ``httpcore.AsyncConnectionPool`` whose network backend is
:class:`~async_stagger.integrations.httpcore.HappyEyeballsBackend`.

Why a transport of our own: httpx's ``AsyncHTTPTransport`` takes no network
backend (as of httpx 0.28), while ``httpx.AsyncBaseTransport`` (what
``AsyncClient(transport=...)`` takes) and ``httpcore.AsyncConnectionPool(
network_backend=...)`` are both public. This transport is the thin layer
between the two: httpx's request becomes httpcore's, httpcore's response
and exceptions become httpx's (``httpx.ConnectTimeout``,
``httpx.ConnectError``, ...), so code catching httpx's exceptions keeps
working. Keep-alive, connection limits, HTTP/2 (with the ``h2`` package)
and retries are the pool's, configured as for ``AsyncHTTPTransport``.
Proxies are not handled here: a proxied connection is no Happy Eyeballs
matter of ours.
"""

from __future__ import annotations

import ssl
import typing
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager

import httpcore
import httpx

from ..connection import Resolver
from ..defaults import CONNECTION_ATTEMPT_DELAY
from ..resolvers import concurrent_resolver
from ..trace import TraceCallback
from .httpcore import HappyEyeballsBackend

__all__ = ["HappyEyeballsTransport"]

# httpx's own default limits.
_DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)

# httpcore's exceptions and httpx's of the same meaning, most specific first.
_EXCEPTIONS: list[tuple[type[Exception], type[httpx.TransportError]]] = [
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
]


@contextmanager
def _httpx_exceptions(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for theirs, ours in _EXCEPTIONS:
            if isinstance(exc, theirs):
                raise ours(str(exc), request=request) from exc
        raise


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(
        self, stream: typing.AsyncIterable[bytes], request: httpx.Request
    ) -> None:
        self._stream = stream
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_exceptions(self._request):
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            with _httpx_exceptions(self._request):
                await aclose()


class HappyEyeballsTransport(httpx.AsyncBaseTransport):
    """An httpx transport connecting with Happy Eyeballs.

    Args:
        verify: As httpx's: true for the default certificate checks (with
            *trust_env*, ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``), false for
            none, or an :class:`ssl.SSLContext`.
        trust_env: Read ``SSL_CERT_FILE``/``SSL_CERT_DIR`` for *verify*.
        http1: Speak HTTP/1.1.
        http2: Speak HTTP/2 (needs the ``h2`` package).
        limits: Connection pool limits; httpx's default (100 connections,
            20 kept alive) if not given.
        retries: How many times to retry a failed connection.
        local_address: A local IP address to connect from.
        socket_options: ``setsockopt`` arguments for every socket.
        delay: The Connection Attempt Delay (RFC 8305 §5).
        resolver: The resolver (see :mod:`async_stagger.resolvers`).
        trace: Called with each connection's
            :class:`~async_stagger.TraceEvent`\\ s.

    .. versionadded:: 1.0
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool = True,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits | None = None,
        retries: int = 0,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
        delay: float | None = CONNECTION_ATTEMPT_DELAY,
        resolver: Resolver = concurrent_resolver,
        trace: TraceCallback | None = None,
    ) -> None:
        if limits is None:
            limits = _DEFAULT_LIMITS
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=trust_env),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=http1,
            http2=http2,
            retries=retries,
            local_address=local_address,
            socket_options=socket_options,
            network_backend=HappyEyeballsBackend(
                delay=delay, resolver=resolver, trace=trace
            ),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send *request* through the pool.

        Returns:
            The response, its body still to be read.

        Raises:
            httpx.TransportError: The connection or the exchange failed, as
                the matching httpx exception (``httpx.ConnectError``, ...).
        """
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_exceptions(request):
            response = await self._pool.handle_async_request(core_request)
        assert isinstance(response.stream, typing.AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream, request),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self._pool.aclose()
