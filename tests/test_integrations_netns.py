"""Every integration when the AAAA answer is lost, through the real system
resolver (root only: the lab's ``netns`` fixture).

The namespace's DNS server answers A for ``lost.lab.test`` and drops every
AAAA query; glibc would wait its timeout (1 s in the lab, more for an
``AF_UNSPEC`` lookup that retries) for it. A program inside the namespace
serves HTTP and WebSocket on the IPv4 address and connects to the name with
each client through its integration, printing how long each took.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest

from lab import Namespace

pytest.importorskip("aiohttp")
pytest.importorskip("httpx")
pytest.importorskip("websockets")

PROGRAM = """
import asyncio, json, time
import aiohttp, httpx
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import serve as ws_serve
from async_stagger.eventloop import new_event_loop
from async_stagger.integrations.aiohttp import HappyEyeballsResolver
from async_stagger.integrations.httpx import HappyEyeballsTransport

NAME = {name!r}
ADDRESS = {address!r}

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

async def main():
    http = await asyncio.start_server(http_handler, ADDRESS, 0)
    port = http.sockets[0].getsockname()[1]
    async with ws_serve(ws_handler, ADDRESS, 0) as ws:
        ws_port = ws.sockets[0].getsockname()[1]
        results = {{
            "streams": await timed(streams(port)),
            "websockets": await timed(websockets(ws_port)),
            "aiohttp": await timed(aiohttp_get(port)),
            "httpx": await timed(httpx_get(port)),
        }}
    http.close()
    await http.wait_closed()
    print(json.dumps(results))

with asyncio.Runner(loop_factory=new_event_loop) as runner:
    runner.run(main())
"""


def test_every_integration_connects_at_once_when_aaaa_is_lost(
    netns: Namespace,
) -> None:
    netns.dns(
        {
            ("lost.lab.test", "A"): ["10.77.0.2"],
            # Never answered; assigned nowhere, should it ever be.
            ("lost.lab.test", "AAAA"): ["fd00:5eed::9"],
        },
        drop={"AAAA"},
    )
    code = PROGRAM.format(name="lost.lab.test", address="10.77.0.2")
    done = netns.run_python(textwrap.dedent(code), timeout=60)
    assert done.returncode == 0, done.stderr
    results: dict[str, Any] = json.loads(done.stdout)
    for client, outcome in results.items():
        assert outcome["result"] is True, (client, outcome)
        # The resolution delay (50 ms) and a handshake, not glibc's 1 s
        # wait for the lost answer.
        assert outcome["seconds"] < 0.6, (client, outcome)
    assert ("AAAA", "dropped") in {(q.type, q.outcome) for q in netns.dns_queries()}
