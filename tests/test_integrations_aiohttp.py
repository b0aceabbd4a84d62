"""HappyEyeballsResolver with a real aiohttp client and server on loopback.

Host names resolve through the lab's scripted ``getaddrinfo`` (handed to the
resolver as its lookup), so each family can answer, fail or never answer,
and no real lookup is made.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

aiohttp = pytest.importorskip("aiohttp")
web = pytest.importorskip("aiohttp.web")
trustme = pytest.importorskip("trustme")

from async_stagger import TraceEvent  # noqa: E402
from async_stagger.integrations.aiohttp import HappyEyeballsResolver  # noqa: E402
from async_stagger.trace import tracing  # noqa: E402
from lab import Endpoint, FakeGetaddrinfo, Lab  # noqa: E402

QUICK = 2.0


@asynccontextmanager
async def http_server(
    host: str, port: int = 0, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[Endpoint, list[Any]]]:
    """An aiohttp server answering ``GET /``; yields its endpoint and the
    connections (transports) its requests came over, each once."""
    connections: list[Any] = []

    async def hello(request: Any) -> Any:
        if not any(t is request.transport for t in connections):
            connections.append(request.transport)
        await asyncio.sleep(float(request.query.get("wait", 0)))
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=tls)
    await site.start()
    bound = runner.addresses[0]
    try:
        yield Endpoint(socket.AF_INET, bound[0], bound[1]), connections
    finally:
        await runner.cleanup()


def resolver_for(names: FakeGetaddrinfo, events: list[TraceEvent] | None = None) -> Any:
    return HappyEyeballsResolver(
        getaddrinfo_async=names, trace=None if events is None else events.append
    )


async def test_resolver_returns_both_families_in_rfc6724_order(lab: Lab) -> None:
    v4 = Endpoint(socket.AF_INET, "127.0.0.1", 80)
    v6 = Endpoint(socket.AF_INET6, "::1", 80)
    names = lab.getaddrinfo({"dual.lab.test": [v4, v6]})
    resolver = HappyEyeballsResolver(getaddrinfo_async=names)
    results = await resolver.resolve("dual.lab.test", 80, family=socket.AF_UNSPEC)
    await resolver.close()
    # RFC 6724 §2.1: ::1 (precedence 50) before IPv4 (35).
    assert [r["host"] for r in results] == ["::1", "127.0.0.1"]
    assert results[0] == {
        "hostname": "dual.lab.test",
        "host": "::1",
        "port": 80,
        "family": socket.AF_INET6,
        "proto": socket.IPPROTO_TCP,
        "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
    }


async def test_resolver_answers_with_ipv4_after_the_resolution_delay_when_aaaa_is_lost(
    lab: Lab,
) -> None:
    v4 = Endpoint(socket.AF_INET, "127.0.0.1", 80)
    v6 = Endpoint(socket.AF_INET6, "::1", 80)
    names = lab.getaddrinfo({"lost.lab.test": [v4, v6]}, delays={socket.AF_INET6: None})
    resolver = HappyEyeballsResolver(getaddrinfo_async=names)
    start = time.monotonic()
    results = await resolver.resolve("lost.lab.test", 80, family=socket.AF_UNSPEC)
    took = time.monotonic() - start
    assert [r["host"] for r in results] == ["127.0.0.1"]
    assert 0.04 <= took < 0.5


async def test_resolver_waits_for_late_answers_as_long_as_it_is_told(
    lab: Lab,
) -> None:
    v4 = Endpoint(socket.AF_INET, "127.0.0.1", 80)
    v6 = Endpoint(socket.AF_INET6, "::1", 80)
    names = lab.getaddrinfo({"late.lab.test": [v4, v6]}, delays={socket.AF_INET6: 0.2})
    resolver = HappyEyeballsResolver(getaddrinfo_async=names, late_answer_wait=1.0)
    results = await resolver.resolve("late.lab.test", 80, family=socket.AF_UNSPEC)
    assert sorted(r["host"] for r in results) == ["127.0.0.1", "::1"]


async def test_resolver_without_a_trace_leaves_the_callers_tracing_alone(
    lab: Lab,
) -> None:
    v4 = Endpoint(socket.AF_INET, "127.0.0.1", 80)
    names = lab.getaddrinfo({"traced.lab.test": [v4]})
    outer: list[TraceEvent] = []
    own: list[TraceEvent] = []
    with tracing(outer.append):
        # No trace of its own: the caller's tracing block hears the lookups.
        await HappyEyeballsResolver(getaddrinfo_async=names).resolve(
            "traced.lab.test", 80
        )
        heard = len(outer)
        # A trace of its own: the resolver's lookups go there alone.
        await resolver_for(names, own).resolve("traced.lab.test", 80)
    assert heard > 0
    assert {e.kind for e in outer[:heard]} >= {"resolution_started"}
    assert len(outer) == heard
    assert [e.kind for e in own] == [e.kind for e in outer]


async def test_resolver_failure_names_the_host(lab: Lab) -> None:
    names = lab.getaddrinfo({})
    resolver = HappyEyeballsResolver(getaddrinfo_async=names)
    with pytest.raises(socket.gaierror, match=r"nowhere\.lab\.test"):
        await resolver.resolve("nowhere.lab.test", 80, family=socket.AF_UNSPEC)


def test_resolver_rejects_bad_options_when_made() -> None:
    with pytest.raises(ValueError, match="resolution_delay"):
        HappyEyeballsResolver(resolution_delay=-1)
    with pytest.raises(ValueError, match="late_answer_wait"):
        HappyEyeballsResolver(late_answer_wait=-1)
    with pytest.raises(ValueError, match="first_addr_family_count"):
        HappyEyeballsResolver(first_addr_family_count=0)


async def test_session_skips_a_blackholed_first_address(lab: Lab) -> None:
    async with http_server(lab.ipv4_address()) as (working, _):
        blackholed = lab.blackholed(lab.ipv4_address(), working.port)
        names = lab.getaddrinfo({"web.lab.test": [blackholed, working]})
        connector = aiohttp.TCPConnector(resolver=resolver_for(names))
        async with aiohttp.ClientSession(connector=connector) as session:
            start = time.monotonic()
            async with session.get(f"http://web.lab.test:{working.port}/") as response:
                # Only the working address serves HTTP.
                assert response.status == 200
                assert await response.text() == "hello"
            assert time.monotonic() - start < QUICK


async def test_session_moves_on_from_a_refused_first_address(lab: Lab) -> None:
    async with http_server(lab.ipv4_address()) as (working, _):
        refusing = lab.refusing(lab.ipv4_address(), working.port)
        names = lab.getaddrinfo({"web.lab.test": [refusing, working]})
        connector = aiohttp.TCPConnector(
            resolver=resolver_for(names), happy_eyeballs_delay=30.0
        )
        async with aiohttp.ClientSession(connector=connector) as session:
            start = time.monotonic()
            async with session.get(f"http://web.lab.test:{working.port}/") as response:
                assert response.status == 200
            assert time.monotonic() - start < QUICK


async def test_session_connects_at_once_when_aaaa_is_lost(lab: Lab) -> None:
    async with http_server(lab.ipv4_address()) as (working, _):
        aaaa = Endpoint(socket.AF_INET6, "::1", working.port)
        names = lab.getaddrinfo(
            {"web.lab.test": [working, aaaa]}, delays={socket.AF_INET6: None}
        )
        connector = aiohttp.TCPConnector(resolver=resolver_for(names))
        async with aiohttp.ClientSession(connector=connector) as session:
            start = time.monotonic()
            async with session.get(f"http://web.lab.test:{working.port}/") as response:
                assert response.status == 200
            assert time.monotonic() - start < QUICK


async def test_session_reuses_its_connection_and_its_dns_cache(lab: Lab) -> None:
    async with http_server(lab.ipv4_address()) as (working, connections):
        names = lab.getaddrinfo({"web.lab.test": [working]})
        seen: list[str] = []

        async def on(name: str, *args: Any) -> None:
            seen.append(name)

        trace = aiohttp.TraceConfig()
        trace.on_dns_cache_miss.append(lambda *a: on("dns_cache_miss"))
        trace.on_dns_cache_hit.append(lambda *a: on("dns_cache_hit"))
        trace.on_connection_reuseconn.append(lambda *a: on("reuseconn"))
        trace.on_dns_resolvehost_end.append(lambda *a: on("resolvehost_end"))
        connector = aiohttp.TCPConnector(resolver=resolver_for(names))
        url = f"http://web.lab.test:{working.port}/"
        async with aiohttp.ClientSession(
            connector=connector, trace_configs=[trace]
        ) as session:
            for _ in range(3):  # keep-alive: one connection for all three
                async with session.get(url) as response:
                    await response.read()

            # A second connection, while the first is busy: resolved from the
            # connector's cache, no lookup.
            async def slow() -> None:
                async with session.get(url, params={"wait": "0.1"}) as response:
                    await response.read()

            await asyncio.gather(slow(), slow())
        assert len(connections) == 2
        assert seen.count("dns_cache_miss") == 1
        assert seen.count("resolvehost_end") == 1
        assert seen.count("dns_cache_hit") == 1
        assert seen.count("reuseconn") >= 2
        # One lookup per family, once.
        assert sorted(call.family for call in names.calls) == [
            socket.AF_INET,
            socket.AF_INET6,
        ]


async def test_connection_limit_still_queues_requests(lab: Lab) -> None:
    async with http_server(lab.ipv4_address()) as (working, connections):
        names = lab.getaddrinfo({"web.lab.test": [working]})
        queued: list[object] = []

        async def on_queued(*args: Any) -> None:
            queued.append(args)

        trace = aiohttp.TraceConfig()
        trace.on_connection_queued_start.append(on_queued)
        connector = aiohttp.TCPConnector(resolver=resolver_for(names), limit=1)
        url = f"http://web.lab.test:{working.port}/"
        async with aiohttp.ClientSession(
            connector=connector, trace_configs=[trace]
        ) as session:

            async def fetch() -> int:
                async with session.get(url) as response:
                    await response.read()
                    status: int = response.status
                    return status

            assert await asyncio.gather(fetch(), fetch()) == [200, 200]
        assert len(queued) == 1
        assert len(connections) == 1


@pytest.fixture
def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext, bytes]:
    ca = trustme.CA()
    cert = ca.issue_cert("web.lab.test")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(server)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client)
    der = ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())
    return server, client, hashlib.sha256(der).digest()


async def test_tls_and_certificate_fingerprints_still_checked(
    lab: Lab, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext, bytes]
) -> None:
    server_tls, client_tls, digest = tls_contexts
    async with http_server(lab.ipv4_address(), tls=server_tls) as (working, _):
        blackholed = lab.blackholed(lab.ipv4_address(), working.port)
        names = lab.getaddrinfo({"web.lab.test": [blackholed, working]})
        url = f"https://web.lab.test:{working.port}/"
        connector = aiohttp.TCPConnector(resolver=resolver_for(names))
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get(url, ssl=client_tls) as response,
        ):
            assert response.status == 200
        # Fingerprint pinning, checked by aiohttp on the connection it got.
        # (On a mismatch aiohttp goes on to the name's other addresses: a
        # blackholed one would hang it, so this name has only the server.)
        only = lab.getaddrinfo({"web.lab.test": [working]})
        connector_fp = aiohttp.TCPConnector(
            resolver=resolver_for(only), force_close=True
        )
        async with aiohttp.ClientSession(connector=connector_fp) as session:
            async with session.get(url, ssl=aiohttp.Fingerprint(digest)) as response:
                assert response.status == 200
            with pytest.raises(aiohttp.ServerFingerprintMismatch):
                await session.get(url, ssl=aiohttp.Fingerprint(b"\0" * 32))
