"""HappyEyeballsBackend (httpcore) and HappyEyeballsTransport (httpx) with
the real clients against a real HTTP/1.1 server on loopback.

Host names resolve through the lab's scripted ``getaddrinfo``, handed to the
backend's resolver: no real lookup is made.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
httpcore = pytest.importorskip("httpcore")
trustme = pytest.importorskip("trustme")

from async_stagger import TraceEvent, concurrent_resolver  # noqa: E402
from async_stagger.integrations.httpcore import HappyEyeballsBackend  # noqa: E402
from async_stagger.integrations.httpx import HappyEyeballsTransport  # noqa: E402
from http_lab import HTTPServer, http_server  # noqa: E402
from lab import Endpoint, FakeGetaddrinfo, Lab  # noqa: E402

QUICK = 2.0


def transport_for(names: FakeGetaddrinfo, **options: Any) -> Any:
    return HappyEyeballsTransport(
        resolver=partial(concurrent_resolver, getaddrinfo_async=names), **options
    )


def endpoint(server: HTTPServer) -> Endpoint:
    return Endpoint(socket.AF_INET, server.host, server.port)


@pytest.fixture
def server(lab: Lab) -> Iterator[HTTPServer]:
    with http_server(lab.ipv4_address()) as running:
        yield running


async def test_client_skips_a_blackholed_first_address(
    lab: Lab, server: HTTPServer
) -> None:
    blackholed = lab.blackholed(lab.ipv4_address(), server.port)
    names = lab.getaddrinfo({"web.lab.test": [blackholed, endpoint(server)]})
    events: list[TraceEvent] = []
    async with httpx.AsyncClient(
        transport=transport_for(names, trace=events.append)
    ) as client:
        start = time.monotonic()
        response = await client.get(f"http://web.lab.test:{server.port}/one")
        assert time.monotonic() - start < QUICK
    assert response.status_code == 200
    assert response.text == "hello /one"
    started = [e.address[0] for e in events if e.kind == "attempt_started"]
    assert started == [blackholed.host, server.host]


async def test_client_moves_on_from_a_refused_first_address_at_once(
    lab: Lab, server: HTTPServer
) -> None:
    refusing = lab.refusing(lab.ipv4_address(), server.port)
    names = lab.getaddrinfo({"web.lab.test": [refusing, endpoint(server)]})
    async with httpx.AsyncClient(transport=transport_for(names, delay=30.0)) as client:
        start = time.monotonic()
        response = await client.get(f"http://web.lab.test:{server.port}/")
        assert time.monotonic() - start < QUICK
    assert response.status_code == 200


async def test_client_connects_at_once_when_aaaa_is_lost(
    lab: Lab, server: HTTPServer
) -> None:
    aaaa = Endpoint(socket.AF_INET6, "::1", server.port)
    names = lab.getaddrinfo(
        {"web.lab.test": [endpoint(server), aaaa]}, delays={socket.AF_INET6: None}
    )
    async with httpx.AsyncClient(transport=transport_for(names)) as client:
        start = time.monotonic()
        response = await client.get(f"http://web.lab.test:{server.port}/")
        assert time.monotonic() - start < QUICK
    assert response.status_code == 200


async def test_keep_alive_uses_one_connection_for_many_requests(
    lab: Lab, server: HTTPServer
) -> None:
    names = lab.getaddrinfo({"web.lab.test": [endpoint(server)]})
    async with httpx.AsyncClient(transport=transport_for(names)) as client:
        for n in range(5):
            response = await client.get(f"http://web.lab.test:{server.port}/{n}")
            assert response.text == f"hello /{n}"
    assert len(server.connections) == 1
    assert len(names.calls) == 2  # one lookup per family, for one connection


async def test_a_connection_the_server_dropped_while_idle_is_replaced(
    lab: Lab,
) -> None:
    with http_server(lab.ipv4_address(), idle_timeout=0.1) as server:
        names = lab.getaddrinfo({"web.lab.test": [endpoint(server)]})
        async with httpx.AsyncClient(transport=transport_for(names)) as client:
            url = f"http://web.lab.test:{server.port}/"
            assert (await client.get(url)).status_code == 200
            await asyncio.sleep(0.5)  # the server closes the idle connection
            # httpcore sees the closed connection as readable
            # (get_extra_info("is_readable")) and opens a new one.
            assert (await client.get(url)).status_code == 200
        assert len(server.connections) == 2


async def test_large_responses_and_concurrent_requests_arrive_whole(
    lab: Lab, server: HTTPServer
) -> None:
    names = lab.getaddrinfo({"web.lab.test": [endpoint(server)]})
    async with httpx.AsyncClient(transport=transport_for(names)) as client:
        urls = [
            f"http://web.lab.test:{server.port}/{'x' * 50_000}{n}?wait=0.05"
            for n in range(4)
        ]
        responses = await asyncio.gather(*(client.get(url) for url in urls))
    for n, response in enumerate(responses):
        assert response.text == f"hello /{'x' * 50_000}{n}"
    assert len(server.connections) == 4


@pytest.fixture
def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("web.lab.test").configure_cert(server)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client)
    return server, client


async def test_tls_keep_alive_and_the_stream_answers_what_httpcore_asks(
    lab: Lab, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_tls, client_tls = tls_contexts
    with http_server(lab.ipv4_address(), tls=server_tls) as server:
        blackholed = lab.blackholed(lab.ipv4_address(), server.port)
        names = lab.getaddrinfo({"web.lab.test": [blackholed, endpoint(server)]})
        async with httpx.AsyncClient(
            transport=transport_for(names, verify=client_tls)
        ) as client:
            url = f"https://web.lab.test:{server.port}/"
            for _ in range(3):
                response = await client.get(url)
                assert response.text == "hello /"
            stream = response.extensions["network_stream"]
            ssl_object = stream.get_extra_info("ssl_object")
            assert ssl_object.getpeercert()["subjectAltName"] == (
                ("DNS", "web.lab.test"),
            )
            assert stream.get_extra_info("server_addr") == (server.host, server.port)
            assert stream.get_extra_info("client_addr")[0] == "127.0.0.1"
            assert stream.get_extra_info("socket").family == socket.AF_INET
            assert stream.get_extra_info("is_readable") is False
        assert len(server.connections) == 1


async def test_a_certificate_for_another_name_is_httpx_connect_error(
    lab: Lab, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_tls, client_tls = tls_contexts
    with http_server(lab.ipv4_address(), tls=server_tls) as server:
        names = lab.getaddrinfo({"other.lab.test": [endpoint(server)]})
        async with httpx.AsyncClient(
            transport=transport_for(names, verify=client_tls)
        ) as client:
            with pytest.raises(httpx.ConnectError) as info:
                await client.get(f"https://other.lab.test:{server.port}/")
    assert "certificate verify failed" in str(info.value)


async def test_connection_failures_are_httpx_exceptions(lab: Lab) -> None:
    port = lab.free_port()
    refusing = lab.refusing(lab.ipv4_address(), port)
    blackholed = lab.blackholed(lab.ipv4_address(), port)
    names = lab.getaddrinfo(
        {"refused.lab.test": [refusing], "hole.lab.test": [blackholed]}
    )
    async with httpx.AsyncClient(transport=transport_for(names)) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://refused.lab.test:{port}/")
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://unknown.lab.test:{port}/")
        with pytest.raises(httpx.ConnectTimeout):
            await client.get(f"http://hole.lab.test:{port}/", timeout=0.2)


async def test_httpcore_pool_takes_the_backend_as_its_network_backend(
    lab: Lab, server: HTTPServer
) -> None:
    blackholed = lab.blackholed(lab.ipv4_address(), server.port)
    names = lab.getaddrinfo({"web.lab.test": [blackholed, endpoint(server)]})
    backend = HappyEyeballsBackend(
        resolver=partial(concurrent_resolver, getaddrinfo_async=names)
    )
    async with httpcore.AsyncConnectionPool(network_backend=backend) as pool:
        for _ in range(2):
            response = await pool.request("GET", f"http://web.lab.test:{server.port}/")
            assert response.status == 200
            assert response.content == b"hello /"
    assert len(server.connections) == 1


async def test_backend_binds_to_the_local_address_and_sets_socket_options(
    lab: Lab, server: HTTPServer
) -> None:
    local = lab.ipv4_address()
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    backend = HappyEyeballsBackend()
    stream = await backend.connect_tcp(
        server.host, server.port, local_address=local, socket_options=options
    )
    try:
        sock = stream.get_extra_info("socket")
        assert sock.getsockname()[0] == local
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        await stream.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := await stream.read(65536, timeout=5):
            data += chunk
        assert data.startswith(b"HTTP/1.1 200")
        assert data.endswith(b"hello /")
    finally:
        await stream.aclose()


async def test_a_read_that_gets_nothing_in_time_is_read_timeout(
    lab: Lab, server: HTTPServer
) -> None:
    backend = HappyEyeballsBackend()
    stream = await backend.connect_tcp(server.host, server.port)
    try:
        with pytest.raises(httpcore.ReadTimeout):
            await stream.read(100, timeout=0.05)
    finally:
        await stream.aclose()


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"delay": -1}, ValueError),
        ({"delay": "0.25"}, TypeError),
        ({"resolver": 42}, TypeError),
        ({"trace": 42}, TypeError),
    ],
)
def test_backend_checks_its_options_when_made(
    options: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error, match=next(iter(options))):
        HappyEyeballsBackend(**options)
