"""Happy Eyeballs through the real system resolver, in a network namespace.

Root only: each test gets a namespace of its own (the lab's ``netns``
fixture) with private addresses on its ``lo`` and its own hosts file, and
runs a small program inside it. The host name goes through glibc's
``getaddrinfo`` (the hosts file) and the default resolver, unlike the other
connection tests, which hand addresses over directly.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

from lab import Namespace

# Run inside the namespace: listeners of the requested kinds on one port,
# then open_connection to the name, reporting what happened as JSON.
PROGRAM = """
import asyncio, contextlib, json, socket, sys
from async_stagger.connection import open_connection

KINDS = {kinds!r}
NAME = {name!r}
DELAY = {delay!r}

def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET

def listener(host, port, backlog):
    sock = socket.socket(family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    if backlog is not None:
        sock.listen(backlog)
    return sock

async def main():
    keep = []
    port = 0
    for host, kind in KINDS.items():
        if kind == "working":
            sock = listener(host, port, 16)
        elif kind == "refusing":
            sock = listener(host, port, None)  # bound, not listening: RST
        else:  # blackholed: a full accept queue drops SYNs
            sock = listener(host, port, 0)
            for _ in range(3):
                filler = socket.socket(family(host), socket.SOCK_STREAM)
                filler.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    filler.connect(sock.getsockname())
                keep.append(filler)
        port = sock.getsockname()[1]
        keep.append(sock)
    events = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    reader, writer = await open_connection(
        NAME, port, happy_eyeballs_delay=DELAY,
        trace=lambda e: events.append(e),
    )
    took = loop.time() - start
    peer = writer.get_extra_info("peername")[0]
    writer.close()
    await writer.wait_closed()
    print(json.dumps({{
        "took": took,
        "peer": peer,
        "attempts": [e.address[0] for e in events if e.kind == "attempt_started"],
    }}))

asyncio.run(main())
"""


def connect_in(
    netns: Namespace, name: str, kinds: dict[str, str], delay: float
) -> dict[str, Any]:
    netns.write_hosts({name: list(kinds)})
    code = PROGRAM.format(kinds=kinds, name=name, delay=delay)
    done = netns.run_python(textwrap.dedent(code), timeout=30)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_blackholed_addresses_cost_one_delay_each_then_the_working_one_wins(
    netns: Namespace,
) -> None:
    # Whichever family the resolver hands over first (RFC 8305 §3: the first
    # answer starts the race), both blackholed addresses come before the
    # working one, which is the second IPv4 address.
    kinds = {
        "10.77.0.1": "blackholed",
        "fd00:5eed::1": "blackholed",
        "10.77.0.2": "working",
    }
    result = connect_in(netns, "dual.lab.test", kinds, delay=0.1)
    assert result["peer"] == "10.77.0.2"
    assert sorted(result["attempts"][:2]) == ["10.77.0.1", "fd00:5eed::1"]
    assert result["attempts"][2:] == ["10.77.0.2"]
    # RFC 8305 §5: each blackholed attempt cost one delay, not a TCP timeout.
    assert 0.2 - 0.002 <= result["took"] < 0.8


def test_refused_addresses_are_tried_interleaved_and_at_once(
    netns: Namespace,
) -> None:
    kinds = {
        "10.77.0.1": "refusing",
        "10.77.0.2": "refusing",
        "fd00:5eed::1": "refusing",
        "fd00:5eed::2": "refusing",
        "10.77.0.3": "working",
    }
    result = connect_in(netns, "five.lab.test", kinds, delay=5.0)
    assert result["peer"] == "10.77.0.3"
    attempts = result["attempts"]
    # The working address is the last IPv4 one in the hosts file, so both
    # refusing IPv4 addresses were tried first and the race stopped there.
    assert attempts[-1] == "10.77.0.3"
    assert {"10.77.0.1", "10.77.0.2"} <= set(attempts[:-1])
    assert len(set(attempts)) == len(attempts)
    # RFC 8305 §5: every refusal started the next attempt at once, so the
    # whole thing took far less than one 5 s delay.
    assert result["took"] < 2.0


def test_localhost_through_the_default_resolver_connects(netns: Namespace) -> None:
    # The system's own getaddrinfo, answered from the namespace's hosts file
    # (localhost on 127.0.0.1 and ::1). Out of a namespace of its own even
    # this lookup may be a DNS query (an AAAA one, where the machine's hosts
    # file has no "::1 localhost" line).
    kinds = {"127.0.0.1": "working", "::1": "working"}
    result = connect_in(netns, "localhost", kinds, delay=0.25)
    assert result["peer"] in kinds
    assert result["attempts"][-1] == result["peer"]
