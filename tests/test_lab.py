"""The network lab keeps its promises.

Each endpoint kind is checked against a real kernel on a real clock (with
generous upper bounds, since scheduling jitter is real too), through asyncio
streams on every loop flavour where the loop matters, and the scripted
getaddrinfo is checked on the virtual clock, where its timing is exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import select
import socket
import ssl
import threading
import time

import pytest

from lab import Endpoint, FakeGetaddrinfo, Lab, ipv6_loopback_available
from lab.plugin import SLOW_FIXTURE_DELAY

requires_ipv6 = pytest.mark.skipif(
    not ipv6_loopback_available(), reason="this machine has no IPv6 loopback (::1)"
)


@pytest.fixture(params=["ipv4", pytest.param("ipv6", marks=requires_ipv6)])
def host(request: pytest.FixtureRequest, lab: Lab) -> str:
    """A loopback address of each family: a fresh 127.x one, or ::1."""
    return lab.ipv4_address() if request.param == "ipv4" else "::1"


# -- Endpoint -----------------------------------------------------------------


def test_endpoint_gives_connect_address_and_getaddrinfo_tuple_per_family() -> None:
    v4 = Endpoint(socket.AF_INET, "127.77.0.9", 4242)
    v6 = Endpoint(socket.AF_INET6, "::1", 4243)
    assert v4.sockaddr == ("127.77.0.9", 4242)
    assert v6.sockaddr == ("::1", 4243, 0, 0)
    assert v4.addrinfo == (
        socket.AF_INET,
        socket.SOCK_STREAM,
        socket.IPPROTO_TCP,
        "",
        ("127.77.0.9", 4242),
    )
    assert v6.addrinfo == (
        socket.AF_INET6,
        socket.SOCK_STREAM,
        socket.IPPROTO_TCP,
        "",
        ("::1", 4243, 0, 0),
    )


# -- working ------------------------------------------------------------------


async def test_working_endpoint_accepts_and_echoes_bytes_until_eof(
    lab: Lab, host: str
) -> None:
    endpoint = lab.working(host)
    assert endpoint.host == host
    reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
    writer.write(b"hello lab")
    writer.write_eof()
    assert await reader.read() == b"hello lab"
    writer.close()
    await writer.wait_closed()


async def test_working_endpoint_without_echo_swallows_bytes(lab: Lab) -> None:
    endpoint = lab.working(lab.ipv4_address(), echo=False)
    reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
    writer.write(b"into the void")
    writer.write_eof()
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()


@pytest.mark.parametrize(
    "server_hostname", ["localhost", "www.lab.test", "chosen.example", None]
)
async def test_tls_endpoint_is_trusted_by_the_lab_client_context(
    lab: Lab, host: str, server_hostname: str | None
) -> None:
    endpoint = lab.working(host, tls=True, tls_names=["chosen.example"])
    reader, writer = await asyncio.open_connection(
        endpoint.host,
        endpoint.port,
        ssl=lab.client_ssl_context(),
        # None: verify against the IP address itself.
        server_hostname=server_hostname or endpoint.host,
    )
    writer.write(b"secret")
    assert await reader.readexactly(6) == b"secret"
    writer.close()
    await writer.wait_closed()


async def test_tls_endpoint_is_not_trusted_by_a_default_context(lab: Lab) -> None:
    endpoint = lab.working(lab.ipv4_address(), tls=True)
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.open_connection(
            endpoint.host,
            endpoint.port,
            ssl=ssl.create_default_context(),
            server_hostname="localhost",
        )


async def test_accept_delay_holds_back_service_but_not_the_handshake(
    lab: Lab,
) -> None:
    endpoint = lab.working(lab.ipv4_address(), accept_delay=0.15)
    # time.monotonic, not loop.time(): uvloop's clock counts whole
    # milliseconds, which can put 0.15 s of real time at 0.149.
    start = time.monotonic()
    reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
    connected = time.monotonic() - start
    writer.write(b"ping")
    assert await reader.readexactly(4) == b"ping"
    served = time.monotonic() - start
    writer.close()
    await writer.wait_closed()
    assert connected < 0.1
    assert 0.15 <= served < 2.0


# -- refusing -----------------------------------------------------------------


async def test_refusing_endpoint_fails_at_once_with_econnrefused(
    lab: Lab, host: str
) -> None:
    endpoint = lab.refusing(host)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(ConnectionRefusedError) as caught:
        await asyncio.open_connection(endpoint.host, endpoint.port)
    assert loop.time() - start < 0.1
    assert caught.value.errno == errno.ECONNREFUSED


def test_refusing_endpoint_keeps_its_port_reserved(lab: Lab) -> None:
    endpoint = lab.refusing(lab.ipv4_address())
    with pytest.raises(OSError) as caught:
        lab.working(endpoint.host, endpoint.port)
    assert caught.value.errno == errno.EADDRINUSE


# -- blackholed ---------------------------------------------------------------


async def test_blackholed_endpoints_sharing_a_port_all_hang(lab: Lab) -> None:
    port = lab.free_port()
    endpoints = [
        lab.blackholed(lab.ipv4_address(), port),
        lab.blackholed(lab.ipv4_address(), port),
    ]
    if ipv6_loopback_available():
        endpoints.append(lab.blackholed("::1", port))
    attempts = [
        asyncio.ensure_future(asyncio.open_connection(e.host, e.port))
        for e in endpoints
    ]
    done, pending = await asyncio.wait(attempts, timeout=0.3)
    for attempt in attempts:
        attempt.cancel()
    await asyncio.gather(*attempts, return_exceptions=True)
    assert done == set(), "a connect to a blackholed endpoint finished"
    assert len(pending) == len(endpoints)


def test_blackholed_skips_the_test_when_the_kernel_does_not_drop_syns(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pretend the probe connect completed, as on a kernel that answers SYNs
    # even with a full accept queue.
    monkeypatch.setattr(Lab, "_connects_within", staticmethod(lambda *a: True))
    with pytest.raises(pytest.skip.Exception, match="SYNs are not dropped"):
        lab.blackholed(lab.ipv4_address())


def test_blackholed_fixture_hangs_a_plain_blocking_connect(
    blackholed: Endpoint,
) -> None:
    with socket.socket(blackholed.family, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            sock.connect(blackholed.sockaddr)
        assert time.monotonic() - start >= 0.3


# -- slow ---------------------------------------------------------------------


def _handshake_times(endpoints: list[Endpoint], limit: float) -> list[float]:
    """Start non-blocking connects to all *endpoints* at once and return how
    long each handshake took."""
    socks = [socket.socket(e.family, socket.SOCK_STREAM) for e in endpoints]
    try:
        start = time.monotonic()
        for sock, endpoint in zip(socks, endpoints, strict=True):
            sock.setblocking(False)
            assert sock.connect_ex(endpoint.sockaddr) == errno.EINPROGRESS
        times: dict[socket.socket, float] = {}
        while len(times) < len(socks) and time.monotonic() - start < limit:
            waiting = [s for s in socks if s not in times]
            _, writable, _ = select.select([], waiting, [], 0.05)
            for sock in writable:
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                times[sock] = time.monotonic() - start
        return [times.get(sock, float("inf")) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def test_slow_endpoint_completes_handshake_only_after_its_delay(lab: Lab) -> None:
    delay = 0.3
    endpoints = [lab.slow(lab.ipv4_address(), delay=delay)]
    if ipv6_loopback_available():
        endpoints.append(lab.slow("::1", delay=delay))
    times = _handshake_times(endpoints, limit=5.0)
    # Linux retransmits the dropped SYN after 1 s: that is when the handshake
    # completes. The bound is generous for loaded machines.
    for elapsed in times:
        assert delay <= elapsed < 4.0


def test_slow_fixture_serves_like_a_working_echo_server(slow: Endpoint) -> None:
    start = time.monotonic()
    with socket.create_connection(slow.sockaddr, timeout=5) as sock:
        assert time.monotonic() - start >= SLOW_FIXTURE_DELAY
        sock.sendall(b"late")
        assert sock.recv(4) == b"late"


# -- resetting ------------------------------------------------------------------


def test_resetting_endpoint_accepts_tcp_then_resets_at_the_first_bytes(
    lab: Lab,
) -> None:
    endpoint = lab.resetting(lab.ipv4_address())
    with socket.create_connection(endpoint.sockaddr, timeout=5) as sock:
        # Nothing comes while the client says nothing ...
        readable, _, _ = select.select([sock], [], [], 0.1)
        assert readable == []
        # ... and its first bytes are answered with a reset.
        sock.sendall(b"hello")
        with pytest.raises(ConnectionResetError):
            sock.recv(1)


async def test_resetting_endpoint_lets_asyncio_connect_then_resets_its_write(
    lab: Lab,
) -> None:
    endpoint = lab.resetting(lab.ipv4_address())
    for _ in range(5):
        reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
        try:
            writer.write(b"hello")
            with pytest.raises(ConnectionResetError):
                await reader.read(1)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionResetError):
                await writer.wait_closed()


# -- hung TLS -------------------------------------------------------------------


async def test_hung_tls_endpoint_accepts_tcp_but_never_finishes_tls(
    lab: Lab,
) -> None:
    endpoint = lab.hung_tls(lab.ipv4_address())
    # TCP alone connects at once ...
    _, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
    writer.close()
    await writer.wait_closed()
    # ... but the TLS handshake never completes.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(
            asyncio.open_connection(
                endpoint.host,
                endpoint.port,
                ssl=lab.client_ssl_context(),
                server_hostname="localhost",
            ),
            0.2,
        )


# -- addresses, ports, bad input, teardown --------------------------------------


def test_shortcut_fixtures_each_get_their_own_ipv4_address(
    working: Endpoint, refusing: Endpoint, blackholed: Endpoint, slow: Endpoint
) -> None:
    endpoints = [working, refusing, blackholed, slow]
    assert all(e.family == socket.AF_INET for e in endpoints)
    assert all(e.host.startswith("127.") for e in endpoints)
    assert len({e.host for e in endpoints}) == 4


def test_free_port_can_be_shared_by_every_kind_and_both_families(lab: Lab) -> None:
    port = lab.free_port()
    assert port != lab.free_port()
    endpoints = [
        lab.working(lab.ipv4_address(), port),
        lab.working(lab.ipv4_address(), port, tls=True),
        lab.refusing(lab.ipv4_address(), port),
        lab.blackholed(lab.ipv4_address(), port),
        lab.slow(lab.ipv4_address(), port, delay=1.0),
        lab.hung_tls(lab.ipv4_address(), port),
    ]
    if ipv6_loopback_available():
        endpoints.append(lab.working("::1", port))
    assert {e.port for e in endpoints} == {port}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda lab: lab.working("localhost"), "'localhost'"),
        (lambda lab: lab.refusing("127.0.0.1", 70000), "70000"),
        (lambda lab: lab.slow(delay=-1), "-1"),
        (lambda lab: lab.working(accept_delay=-0.5), "-0.5"),
    ],
    ids=["host name", "port out of range", "negative delay", "negative accept"],
)
def test_bad_arguments_raise_value_error_naming_the_value(
    lab: Lab, call: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        call(lab)  # type: ignore[operator]


def test_closing_the_lab_stops_every_server_and_closes_every_socket() -> None:
    threads_before = set(threading.enumerate())
    with Lab() as lab:
        port = lab.free_port()
        working = lab.working(lab.ipv4_address(), port)
        lab.working(lab.ipv4_address(), port, tls=True, accept_delay=5)
        lab.blackholed(lab.ipv4_address(), port)
        lab.slow(lab.ipv4_address(), port, delay=5)
        lab.hung_tls(lab.ipv4_address(), port)
        refusing = lab.refusing(lab.ipv4_address(), port)
        # A connection being served when the lab closes.
        client = socket.create_connection(working.sockaddr)
        client.sendall(b"x")
        assert client.recv(1) == b"x"
    try:
        assert set(threading.enumerate()) <= threads_before
        assert client.recv(1) == b""  # the server side was closed
        for endpoint in (working, refusing):
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(endpoint.sockaddr).close()
    finally:
        client.close()
    assert lab.errors == []
    with pytest.raises(RuntimeError, match="closed"):
        lab.working()


def test_other_sockets_never_counts_a_lab_socket_its_threads_open_or_close(
    lab: Lab,
) -> None:
    # Each client connects and goes away at once: the server threads accept
    # its connection, notice the end and close their side while we count,
    # again and again. A plain TCP client of the TLS endpoint ends its
    # handshake, so the socket the lab wraps for TLS is counted too.
    host = lab.ipv4_address()
    endpoints = [lab.working(host), lab.working(host, tls=True), lab.hung_tls(host)]
    before = lab.other_sockets()
    miscounts = []
    for _ in range(50):
        for endpoint in endpoints:
            socket.create_connection(endpoint.sockaddr).close()
            for _ in range(25):
                census = lab.other_sockets()
                if census != before:
                    miscounts.append(census)
    assert miscounts == [], f"counted besides {before}"
    assert lab.errors == []


# -- the scripted getaddrinfo -----------------------------------------------------


def _names(lab: Lab) -> tuple[dict[str, list[Endpoint]], Endpoint, Endpoint]:
    v4 = Endpoint(socket.AF_INET, lab.ipv4_address(), 8443)
    v6 = Endpoint(socket.AF_INET6, "::1", 9443)
    return {"dual.test": [v6, v4]}, v4, v6


@pytest.mark.virtual_clock
async def test_fake_getaddrinfo_answers_each_family_after_its_own_delay(
    lab: Lab,
) -> None:
    names, v4, v6 = _names(lab)
    getaddrinfo = lab.getaddrinfo(
        names, delays={socket.AF_INET6: 1.0, socket.AF_INET: 0.05}
    )
    loop = asyncio.get_running_loop()

    async def timed(family: int) -> tuple[float, list[object]]:
        answer = await getaddrinfo("dual.test", 443, family=family)
        return loop.time(), list(answer)

    (t6, a6), (t4, a4) = await asyncio.gather(
        timed(socket.AF_INET6), timed(socket.AF_INET)
    )
    assert t6 == pytest.approx(1.0, abs=1e-9)
    assert t4 == pytest.approx(0.05, abs=1e-9)
    assert a6 == [v6.addrinfo]
    assert a4 == [v4.addrinfo]
    assert [(c.host, c.family, c.time) for c in getaddrinfo.calls] == [
        ("dual.test", socket.AF_INET6, 0.0),
        ("dual.test", socket.AF_INET, 0.0),
    ]


@pytest.mark.virtual_clock
async def test_fake_getaddrinfo_unspec_waits_for_the_slower_family(
    lab: Lab,
) -> None:
    names, v4, v6 = _names(lab)
    getaddrinfo = lab.getaddrinfo(names, delays={socket.AF_INET6: 0.7})
    answer = await getaddrinfo("DUAL.test.", 443)
    assert asyncio.get_running_loop().time() == pytest.approx(0.7, abs=1e-9)
    assert answer == [v6.addrinfo, v4.addrinfo]


@pytest.mark.virtual_clock
async def test_fake_getaddrinfo_never_answers_a_family_with_delay_none(
    lab: Lab,
) -> None:
    names, v4, _ = _names(lab)
    getaddrinfo = lab.getaddrinfo(names, delays={socket.AF_INET6: None})
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(
            getaddrinfo("dual.test", 443, family=socket.AF_INET6), 3600
        )
    assert asyncio.get_running_loop().time() == pytest.approx(3600, abs=1e-9)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(getaddrinfo("dual.test", 443), 10)
    assert await getaddrinfo("dual.test", 443, family=socket.AF_INET) == [v4.addrinfo]


@pytest.mark.virtual_clock
async def test_fake_getaddrinfo_raises_a_family_error_after_its_delay(
    lab: Lab,
) -> None:
    names, v4, _ = _names(lab)
    failure = socket.gaierror(socket.EAI_AGAIN, "temporary failure")
    getaddrinfo = lab.getaddrinfo(
        names, delays={socket.AF_INET6: 0.3}, errors={socket.AF_INET6: failure}
    )
    with pytest.raises(socket.gaierror) as caught:
        await getaddrinfo("dual.test", 443, family=socket.AF_INET6)
    assert caught.value is failure
    assert asyncio.get_running_loop().time() == pytest.approx(0.3, abs=1e-9)
    # Asked for both, the working family still answers.
    assert await getaddrinfo("dual.test", 443) == [v4.addrinfo]


@pytest.mark.virtual_clock
async def test_fake_getaddrinfo_fails_unknown_names_with_eai_noname(
    lab: Lab,
) -> None:
    names, _, _ = _names(lab)
    getaddrinfo = lab.getaddrinfo(names)
    with pytest.raises(socket.gaierror) as caught:
        await getaddrinfo("nowhere.test", 443)
    assert caught.value.errno == socket.EAI_NONAME
    # A name with no address in the family asked for is unknown there too.
    only_v4 = lab.getaddrinfo({"v4.test": [Endpoint(socket.AF_INET, "127.0.0.1", 1)]})
    with pytest.raises(socket.gaierror) as caught:
        await only_v4("v4.test", 1, family=socket.AF_INET6)
    assert caught.value.errno == socket.EAI_NONAME


@pytest.mark.virtual_clock
async def test_fake_getaddrinfo_answers_numeric_hosts_itself_at_once(
    lab: Lab,
) -> None:
    getaddrinfo = lab.getaddrinfo({}, delays={socket.AF_INET: 5.0})
    assert await getaddrinfo("127.0.0.1", "80") == [
        (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", 80))
    ]
    assert await getaddrinfo("::1", 80, type=socket.SOCK_DGRAM) == [
        (socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_UDP, "", ("::1", 80, 0, 0))
    ]
    assert asyncio.get_running_loop().time() == 0.0


def test_fake_getaddrinfo_rejects_delays_for_other_families() -> None:
    with pytest.raises(ValueError, match="AF_UNSPEC"):
        FakeGetaddrinfo({}, delays={socket.AF_UNSPEC: 1.0})
    with pytest.raises(ValueError, match="-2"):
        FakeGetaddrinfo({}, delays={socket.AF_INET: -2})
