"""Every integration when the AAAA answer is lost, through the real system
resolver (root only: the lab's ``netns`` fixture).

The namespace's DNS server answers A for ``lost.lab.test`` and drops every
AAAA query; glibc would wait its timeout (1 s in the lab, more for an
``AF_UNSPEC`` lookup that retries) for it. A program inside the namespace
serves HTTP and WebSocket on the IPv4 address and connects to the name with
each client through its integration (redis against a redis-server it starts
there), printing how long each took.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest

from lab import Namespace
from test_eventloop import redis_server_binary

pytest.importorskip("aiohttp")
pytest.importorskip("httpx")
pytest.importorskip("websockets")

PROGRAM = """
import asyncio, json, socket, subprocess, time
import aiohttp, httpx
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import serve as ws_serve
from async_stagger.eventloop import new_event_loop
from async_stagger.integrations.aiohttp import HappyEyeballsResolver
from async_stagger.integrations.httpx import HappyEyeballsTransport

NAME = {name!r}
ADDRESS = {address!r}
CLIENTS = {clients!r}
REDIS_SERVER = {redis_server!r}

async def http_handler(reader, writer):
    await reader.readuntil(b"\\r\\n\\r\\n")
    writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n"
                 b"Connection: close\\r\\n\\r\\nok")
    await writer.drain()
    writer.close()

async def ws_handler(ws):
    await ws.send("ok")

async def timed(coro):
    start = time.monotonic()
    result = await coro
    return {{"seconds": time.monotonic() - start, "result": result}}

async def streams(port):
    reader, writer = await asyncio.open_connection(NAME, port)
    writer.write(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    return data.endswith(b"ok")

async def websockets(port):
    async with ws_connect(f"ws://{{NAME}}:{{port}}/") as ws:
        return await ws.recv() == "ok"

async def aiohttp_get(port):
    connector = aiohttp.TCPConnector(resolver=HappyEyeballsResolver())
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(f"http://{{NAME}}:{{port}}/") as response:
            return await response.text() == "ok"

async def httpx_get(port):
    async with httpx.AsyncClient(transport=HappyEyeballsTransport()) as client:
        return (await client.get(f"http://{{NAME}}:{{port}}/")).text == "ok"

async def redis_ping(port):
    import redis.asyncio
    client = redis.asyncio.Redis(host=NAME, port=port)
    try:
        return await client.ping() is True
    finally:
        await client.aclose()

async def redis_server():
    # Its own server, in this namespace, on the name's IPv4 address (not
    # loopback: protected mode off), without persistence.
    with socket.socket() as probe:
        probe.bind((ADDRESS, 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [REDIS_SERVER, "--bind", ADDRESS, "--port", str(port), "--save", "",
         "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(500):
        try:
            socket.create_connection((ADDRESS, port), timeout=1).close()
            return server, port
        except OSError:
            await asyncio.sleep(0.02)
    raise RuntimeError("redis-server did not start")

async def main():
    http = await asyncio.start_server(http_handler, ADDRESS, 0)
    port = http.sockets[0].getsockname()[1]
    results = {{}}
    async with ws_serve(ws_handler, ADDRESS, 0) as ws:
        ws_port = ws.sockets[0].getsockname()[1]
        if "streams" in CLIENTS:
            results["streams"] = await timed(streams(port))
        if "websockets" in CLIENTS:
            results["websockets"] = await timed(websockets(ws_port))
        if "aiohttp" in CLIENTS:
            results["aiohttp"] = await timed(aiohttp_get(port))
        if "httpx" in CLIENTS:
            results["httpx"] = await timed(httpx_get(port))
    if "redis" in CLIENTS:
        server, redis_port = await redis_server()
        try:
            results["redis"] = await timed(redis_ping(redis_port))
        finally:
            server.terminate()
            server.wait()
    http.close()
    await http.wait_closed()
    print(json.dumps(results))

with asyncio.Runner(loop_factory=new_event_loop) as runner:
    runner.run(main())
"""


def lost_aaaa(
    netns: Namespace, clients: list[str], redis_server: str | None = None
) -> dict[str, Any]:
    """What each of *clients* got, and how soon, connecting to a name whose
    AAAA answer is lost, through its integration."""
    netns.dns(
        {
            ("lost.lab.test", "A"): ["10.77.0.2"],
            # Never answered; assigned nowhere, should it ever be.
            ("lost.lab.test", "AAAA"): ["fd00:5eed::9"],
        },
        drop={"AAAA"},
    )
    code = PROGRAM.format(
        name="lost.lab.test",
        address="10.77.0.2",
        clients=clients,
        redis_server=redis_server,
    )
    done = netns.run_python(textwrap.dedent(code), timeout=60)
    assert done.returncode == 0, done.stderr
    results: dict[str, Any] = json.loads(done.stdout)
    assert sorted(results) == sorted(clients)
    assert ("AAAA", "dropped") in {(q.type, q.outcome) for q in netns.dns_queries()}
    return results


def assert_connected_at_once(results: dict[str, Any]) -> None:
    for client, outcome in results.items():
        assert outcome["result"] is True, (client, outcome)
        # The resolution delay (50 ms) and a handshake, not glibc's 1 s
        # wait for the lost answer.
        assert outcome["seconds"] < 0.6, (client, outcome)


def test_every_integration_connects_at_once_when_aaaa_is_lost(
    netns: Namespace,
) -> None:
    results = lost_aaaa(netns, ["streams", "websockets", "aiohttp", "httpx"])
    assert_connected_at_once(results)


def test_redis_client_connects_at_once_when_aaaa_is_lost(netns: Namespace) -> None:
    results = lost_aaaa(netns, ["redis"], redis_server=redis_server_binary())
    assert_connected_at_once(results)
