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
import time
from typing import Any

import pytest

import loops
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


# -- a lost lookup and the end of the program -------------------------------------

#: glibc's timeout for the lost AAAA query in the shutdown test, seconds.
LOST_QUERY_TIMEOUT = 4

# Run inside: connect to NAME (A answered, AAAA never) on a loop of FLAVOUR
# under asyncio.Runner, as asyncio.run does; report the seconds from the
# connection to the runner's return.
SHUTDOWN_PROGRAM = """
import asyncio, json, socket, time
import loops
from async_stagger.connection import open_connection

server = socket.create_server(("10.77.0.1", 0))
connected = []

async def main():
    reader, writer = await open_connection({name!r}, server.getsockname()[1])
    connected.append(time.monotonic())
    writer.transport.abort()

with asyncio.Runner(loop_factory=loops.loop_factory({flavour!r})) as runner:
    runner.run(main())
print(json.dumps(time.monotonic() - connected[0]))
"""


@pytest.mark.parametrize("flavour", loops.FLAVOURS)
def test_an_abandoned_lookup_does_not_hold_up_the_end_of_the_loop(
    netns: Namespace, flavour: str
) -> None:
    # RFC 8305 §3: the lost AAAA answer costs the connection only the
    # resolution delay; the lookup left waiting for it must not cost the
    # program the resolver's timeout at shutdown either (asyncio.run waits
    # for the default executor, the interpreter for non-daemon threads).
    name = "lost.lab.test"
    netns.dns(
        {(name, "A"): ["10.77.0.1"], (name, "AAAA"): ["fd00:5eed::1"]},
        drop={"AAAA"},
        resolver_timeout=LOST_QUERY_TIMEOUT,
    )
    started = time.monotonic()
    done = netns.run_python(
        SHUTDOWN_PROGRAM.format(name=name, flavour=flavour), timeout=60
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    after_connection = json.loads(done.stdout)
    # Well before the timeout: the end does not wait for the lost query.
    assert after_connection < LOST_QUERY_TIMEOUT / 2, after_connection
    assert took < LOST_QUERY_TIMEOUT, took  # nor does the interpreter's exit
    assert ("AAAA", "dropped") in {(q.type, q.outcome) for q in netns.dns_queries()}


# -- localhost never reaches DNS -------------------------------------------------------

# Run inside: resolve each name with the default resolver, and connect to a
# listener on 127.0.0.1 through it; report the addresses.
LOCALHOST_PROGRAM = """
import asyncio, json, socket
from async_stagger.connection import open_connection
from async_stagger.resolvers import basic_resolver, concurrent_resolver

server = socket.create_server(("127.0.0.1", 0))
port = server.getsockname()[1]

async def main():
    found = {{}}
    for name in {names!r}:
        for resolver in (concurrent_resolver, basic_resolver):
            stream = resolver(name, port, type=socket.SOCK_STREAM)
            found[f"{{resolver.__name__}} {{name}}"] = sorted(
                {{info[4][0] async for info in stream}}
            )
        reader, writer = await open_connection(name, port)
        found[f"connected {{name}}"] = writer.get_extra_info("peername")[0]
        writer.transport.abort()
    return found

print(json.dumps(asyncio.run(main())))
"""

LOCALHOST_NAMES = [
    "localhost",
    "foo.localhost",
    "LocalHost.",
    "a.b.LOCALhost",
    "foo.LocalHost.",
]


@pytest.mark.parametrize(
    "hosts",
    [
        "127.0.0.1 localhost\n::1 localhost\n",
        "127.0.0.1 localhost\n",
        "::1 localhost\n",
        "",
    ],
    ids=["both", "ipv4 only", "ipv6 only", "none"],
)
def test_localhost_names_never_cause_a_dns_query(netns: Namespace, hosts: str) -> None:
    # RFC 6761 §6.3: localhost and every name under it are the loopback
    # addresses, and are not sent to DNS, whatever the hosts file says.
    netns.dns({("localhost", "A"): ["10.77.0.2"], ("localhost", "AAAA"): ["::1"]})
    (netns.etc / "hosts").write_text(hosts)
    done = netns.run_python(LOCALHOST_PROGRAM.format(names=LOCALHOST_NAMES))
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert netns.dns_queries() == []
    for name in LOCALHOST_NAMES:
        for resolver in ("concurrent_resolver", "basic_resolver"):
            assert found[f"{resolver} {name}"] == ["127.0.0.1", "::1"], found
        assert found[f"connected {name}"] == "127.0.0.1", found
