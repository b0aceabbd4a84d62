"""The resolver against the real glibc ``getaddrinfo`` and a real DNS server
(root only; CI runs as root).

``test_resolvers.py`` proves RFC 8305 §3 on the virtual clock with a scripted
``getaddrinfo``. Here the same promises meet the system resolver: each test
takes the lab's ``netns`` fixture, a network namespace whose resolv.conf
points at the lab's DNS server on the namespace's own loopback, which answers
A at once and AAAA late, never, or the other way round. The code under test
runs inside under ``ip netns exec``: this very module, imported by a small
``python -c`` program (:func:`main`), which runs one scenario on every loop
flavour at the same time, one thread and loop each, and prints what it saw as
JSON: each address the resolver yielded and when, and how long a plain
``loop.getaddrinfo(AF_UNSPEC)`` (what asyncio does) took on the same name,
started while ours was still running.

Timings are real: lower bounds come from the DNS server's delays, upper
bounds are generous. glibc gives up on an unanswered query after the
namespace's ``options timeout:1 attempts:1``: one second for a lookup of one
family, two or three for an ``AF_UNSPEC`` lookup, which retries. Names served
by DNS are kept out of the namespace's hosts file, or glibc would never ask
the server. Nothing leaves the namespace: the addresses exist only on its
``lo``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import loops
from async_stagger.connection import open_connection
from async_stagger.defaults import CONNECTION_ATTEMPT_DELAY, RESOLUTION_DELAY
from async_stagger.resolvers import concurrent_resolver
from async_stagger.trace import TraceEvent
from lab import Lab, Namespace

#: glibc's timeout for an unanswered query in the lab (``timeout:1``), less a
#: margin for clock granularity.
RESOLVER_TIMEOUT = 0.95

#: "Without waiting for the lost answer", on a loaded 2-core machine: well
#: before glibc gives up on it, with half its timeout to spare.
BEFORE_GIVING_UP = RESOLVER_TIMEOUT / 2

#: Allowance on lower bounds for the clock: uvloop's ``loop.time()`` counts
#: whole milliseconds and is read once per loop iteration.
CLOCK_SLACK = 0.005

V4 = ["10.77.0.1", "10.77.0.2"]
V6 = ["fd00:5eed::1", "fd00:5eed::2"]

#: Documentation addresses, global in scope: RFC 6724 ranks them (precedence
#: 40) above IPv4 (35), whereas it ranks unique-local ones like ``fd00::``
#: (precedence 3) below IPv4. They exist only on the namespace's ``lo``.
V6_GLOBAL = ["2001:db8::1", "2001:db8::2"]


def is_ipv6(address: str) -> bool:
    return ":" in address


# -- inside the namespace ---------------------------------------------------------


async def resolve(
    name: str, pause_after_first: float = 0.0, first: asyncio.Event | None = None
) -> dict[str, Any]:
    """Run ``concurrent_resolver`` on *name*: each address yielded and when,
    when the stream ended and how (``None``: exhausted, else the error).

    After the first address, set *first* and wait *pause_after_first*
    seconds before asking for the next, as the race does between connection
    attempts.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    yielded: list[tuple[str, float]] = []
    error = None
    stream = concurrent_resolver(name, 80, type=socket.SOCK_STREAM)
    try:
        async with contextlib.aclosing(stream):
            async for info in stream:
                yielded.append((info[4][0], loop.time() - start))
                if len(yielded) == 1:
                    if first is not None:
                        first.set()
                    await asyncio.sleep(pause_after_first)
    except socket.gaierror as exc:
        error = exc.errno
    finally:
        if first is not None:
            first.set()
    return {"yielded": yielded, "ended": loop.time() - start, "error": error}


async def unspec_getaddrinfo(name: str) -> dict[str, Any]:
    """One ``loop.getaddrinfo(name, AF_UNSPEC)``, the way asyncio resolves:
    its addresses (or the gaierror number) and how long it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    answer: list[str] | int
    try:
        infos = await loop.getaddrinfo(
            name, 80, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM
        )
        answer = [info[4][0] for info in infos]
    except socket.gaierror as exc:
        answer = exc.errno
    return {"answer": answer, "seconds": loop.time() - start}


# Ours goes first and asyncio's way starts once ours has its first address,
# each timed from its own start. Started together, asyncio's lookup could
# hold up ours rather than run beside it: uvloop runs at most two
# getaddrinfo calls at a time (libuv's thread pool of four keeps half of it
# for other work), so a third lookup queues until one of them finishes.


async def compare(name: str, pause_after_first: float = 0.0) -> dict[str, Any]:
    """Ours and asyncio's lookup of *name*, overlapping."""
    first = asyncio.Event()

    async def unspec_after_first() -> dict[str, Any]:
        await first.wait()
        return await unspec_getaddrinfo(name)

    ours, unspec = await asyncio.gather(
        resolve(name, pause_after_first, first), unspec_after_first()
    )
    return {"ours": ours, "unspec": unspec}


async def _echo(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, start: float
) -> dict[str, Any]:
    """Send a line through the connection and close it; the peer, the echo
    and the seconds since *start* (loop time) until the echo came back."""
    try:
        writer.write(b"ping\n")
        line = await reader.readline()
        return {
            "peer": writer.get_extra_info("peername")[0],
            "echoed": line.decode(),
            "seconds": asyncio.get_running_loop().time() - start,
        }
    finally:
        writer.close()
        await writer.wait_closed()


async def connect(name: str, port: int) -> dict[str, Any]:
    """``async_stagger.open_connection(name, port)``: the peer, the echo of a
    line, the seconds until it came back, and the trace until connected
    (each event's kind, time, family and address)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    events: list[tuple[str, float, str | None, str | None]] = []

    def trace(event: TraceEvent) -> None:
        family = None if event.family is None else event.family.name
        address = None if event.address is None else event.address[0]
        events.append((event.kind, event.time - start, family, address))

    reader, writer = await open_connection(name, port, trace=trace)
    connected = list(events)
    return {**await _echo(reader, writer, start), "trace": connected}


async def first_addresses(names: list[str]) -> dict[str, Any]:
    """Resolve *names* at the same time, as an application connecting to
    several hosts does, keeping each stream's first address only: which it
    was and when it came (from a common start)."""
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def first(name: str) -> tuple[str, float]:
        async with contextlib.aclosing(
            concurrent_resolver(name, 80, type=socket.SOCK_STREAM)
        ) as stream:
            info = await anext(stream)
        return info[4][0], loop.time() - start

    return {"first": await asyncio.gather(*(first(name) for name in names))}


SCENARIOS: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
    "compare": compare,
    "connect": connect,
    "first_addresses": first_addresses,
}


def main(scenario: str, flavours: list[str] | None = None, **arguments: Any) -> None:
    """Inside the namespace: run *scenario* on every loop flavour (or those
    in *flavours*) at once, one thread each, and print ``{flavour: result}``
    as JSON.

    ``connect`` also gets a working echo server on ``10.77.0.2``.
    """
    flavours = loops.FLAVOURS if flavours is None else flavours
    with Lab() as lab:
        if scenario == "connect":
            arguments["port"] = lab.working("10.77.0.2").port
        results: dict[str, Any] = {}

        def run(flavour: str) -> None:
            coroutine = SCENARIOS[scenario](**arguments)
            with asyncio.Runner(loop_factory=loops.loop_factory(flavour)) as runner:
                results[flavour] = runner.run(coroutine)

        threads = [threading.Thread(target=run, args=(f,)) for f in flavours]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    missing = set(flavours) - set(results)
    if missing:
        sys.exit(f"no result from {sorted(missing)} (see the traceback above)")
    print(json.dumps(results))


# -- the tests ---------------------------------------------------------------------


def run_inside(
    netns: Namespace,
    scenario: str,
    flavours: list[str] | None = None,
    **arguments: Any,
) -> dict[str, Any]:
    """Run :func:`main` inside *netns*; ``{flavour: result}``."""
    code = (
        "import test_resolvers_netns as t\n"
        f"t.main({scenario!r}, {flavours!r}, **{arguments!r})\n"
    )
    result = netns.run_python(code, timeout=60)
    assert result.returncode == 0, result.stderr
    results: dict[str, Any] = json.loads(result.stdout)
    assert sorted(results) == sorted(flavours or loops.FLAVOURS)
    return results


def addresses(ours: dict[str, Any]) -> list[str]:
    return [address for address, _ in ours["yielded"]]


def times(ours: dict[str, Any]) -> list[float]:
    return [at for _, at in ours["yielded"]]


def families_alternate(addresses: list[str]) -> bool:
    return all(is_ipv6(a) != is_ipv6(b) for a, b in itertools.pairwise(addresses))


def test_first_address_comes_after_the_resolution_delay_while_unspec_waits_for_aaaa(
    netns: Namespace,
) -> None:
    aaaa_delay = 0.5
    netns.dns(
        {("slow6.lab.test", "A"): V4, ("slow6.lab.test", "AAAA"): V6},
        delays={"AAAA": aaaa_delay},
    )
    results = run_inside(netns, "compare", name="slow6.lab.test")
    for flavour, result in results.items():
        ours, unspec = result["ours"], result["unspec"]
        assert result["ours"]["error"] is None, flavour
        assert sorted(addresses(ours)) == sorted(V4 + V6), flavour
        # RFC 8305 §3: A answered first; wait the resolution delay for AAAA,
        # then start with IPv4.
        first_address, first_at = ours["yielded"][0]
        assert first_address in V4, flavour
        assert 0.8 * RESOLUTION_DELAY <= first_at < 0.3, (flavour, ours)
        # §6: the late AAAA answer joins the stream instead of being lost.
        ipv6_times = [at for address, at in ours["yielded"] if is_ipv6(address)]
        assert min(ipv6_times) >= aaaa_delay - CLOCK_SLACK, (flavour, ours)
        assert ours["ended"] < RESOLVER_TIMEOUT, (flavour, ours)
        # asyncio's single lookup returns nothing until the AAAA answer is in.
        assert sorted(unspec["answer"]) == sorted(V4 + V6), flavour
        assert unspec["seconds"] >= aaaa_delay - CLOCK_SLACK, (flavour, unspec)


def test_first_address_comes_after_the_resolution_delay_when_aaaa_is_lost(
    netns: Namespace,
) -> None:
    netns.dns(
        {("lost6.lab.test", "A"): V4, ("lost6.lab.test", "AAAA"): V6},
        drop={"AAAA"},
    )
    results = run_inside(netns, "compare", name="lost6.lab.test")
    for flavour, result in results.items():
        ours, unspec = result["ours"], result["unspec"]
        assert ours["error"] is None, flavour
        assert 0.8 * RESOLUTION_DELAY <= times(ours)[0] < 0.3, (flavour, ours)
        assert sorted(addresses(ours)) == sorted(V4), flavour
        # Every IPv4 address is out long before glibc gives up on AAAA, and
        # only then does the stream end, with no error: one family failing is
        # not a resolution failure (RFC 8305 §3).
        assert max(times(ours)) < 0.3, (flavour, ours)
        assert ours["ended"] >= RESOLVER_TIMEOUT, (flavour, ours)
        # asyncio's lookup holds the A answer until the AAAA query is given
        # up, retries included: seconds.
        assert sorted(unspec["answer"]) == sorted(V4), flavour
        assert unspec["seconds"] >= RESOLVER_TIMEOUT, (flavour, unspec)
    queries = netns.dns_queries()
    assert {q.outcome for q in queries if q.type == "AAAA"} == {"dropped"}
    assert {q.outcome for q in queries if q.type == "A"} == {"answered"}


def test_aaaa_answering_first_is_used_at_once_and_late_ipv4_is_interleaved(
    netns: Namespace,
) -> None:
    a_delay = 0.2
    netns.dns(
        {("slow4.lab.test", "A"): V4, ("slow4.lab.test", "AAAA"): V6},
        delays={"A": a_delay},
    )
    # Ask for the second address a connection attempt delay after the
    # first, as the race does; the A answer is in by then.
    results = run_inside(
        netns,
        "compare",
        name="slow4.lab.test",
        pause_after_first=CONNECTION_ATTEMPT_DELAY,
    )
    for flavour, result in results.items():
        ours, unspec = result["ours"], result["unspec"]
        # RFC 8305 §3: AAAA first means no waiting at all. The order below
        # proves it: RFC 6724 ranks these unique-local IPv6 addresses below
        # IPv4, so the first address is IPv6 only if it was yielded before
        # the A answer was in.
        assert times(ours)[0] < a_delay, (flavour, ours)
        # §4 and §6: the late IPv4 addresses are merged and the families
        # alternate from the second address on.
        assert addresses(ours) == [V6[0], V4[0], V6[1], V4[1]], flavour
        assert times(ours)[1] >= CONNECTION_ATTEMPT_DELAY - CLOCK_SLACK, (flavour, ours)
        assert sorted(unspec["answer"]) == sorted(V4 + V6), flavour
        assert unspec["seconds"] >= a_delay - CLOCK_SLACK, (flavour, unspec)


def test_fast_answers_are_interleaved_in_rfc6724_order(netns: Namespace) -> None:
    for address in V6_GLOBAL:
        netns.add_address(address)
    netns.dns(
        {
            ("fast.lab.test", "A"): V4,
            ("fast.lab.test", "AAAA"): V6_GLOBAL,
            ("fast-ula.lab.test", "A"): V4,
            ("fast-ula.lab.test", "AAAA"): V6,
        }
    )
    # The pause lets the second answer in even when the first yield came
    # before it (AAAA answered first); the order is then the same either way.
    global_results = run_inside(
        netns, "compare", name="fast.lab.test", pause_after_first=0.1
    )
    ula_results = run_inside(
        netns, "compare", name="fast-ula.lab.test", pause_after_first=0.1
    )
    for flavour, result in global_results.items():
        ours = result["ours"]
        # Whichever answer came first, the other followed within the
        # resolution delay: IPv6 leads (RFC 6724 rule 6, precedence 40 over
        # IPv4's 35), then the families alternate (RFC 8305 §4).
        assert addresses(ours) == [V6_GLOBAL[0], V4[0], V6_GLOBAL[1], V4[1]], flavour
        assert times(ours)[0] < RESOLUTION_DELAY, (flavour, ours)
        assert ours["ended"] < 0.3, (flavour, ours)
    for flavour, result in ula_results.items():
        ours = result["ours"]
        # Unique-local IPv6 ranks below IPv4 in RFC 6724 (precedence 3), so
        # IPv6 leads only when its answer came first; either way the
        # families alternate.
        assert sorted(addresses(ours)) == sorted(V4 + V6), flavour
        assert families_alternate(addresses(ours)), (flavour, ours)
        if addresses(ours)[1] in V4:
            assert addresses(ours) == [V6[0], V4[0], V6[1], V4[1]], flavour
        else:
            assert addresses(ours) == [V4[0], V6[0], V4[1], V6[1]], flavour
        assert times(ours)[0] < RESOLUTION_DELAY, (flavour, ours)


def test_lost_a_answer_does_not_hold_back_ipv6(netns: Namespace) -> None:
    netns.dns(
        {("lost4.lab.test", "A"): V4, ("lost4.lab.test", "AAAA"): V6},
        drop={"A"},
    )
    results = run_inside(netns, "compare", name="lost4.lab.test")
    for flavour, result in results.items():
        ours, unspec = result["ours"], result["unspec"]
        assert ours["error"] is None, flavour
        assert addresses(ours) == V6, flavour
        # The IPv6 addresses came while the A lookup was still out, which
        # ends only when glibc gives up on it.
        assert max(times(ours)) < BEFORE_GIVING_UP, (flavour, ours)
        assert ours["ended"] >= RESOLVER_TIMEOUT, (flavour, ours)
        # asyncio's lookup takes seconds and, with glibc, then fails
        # altogether (EAI_AGAIN) although the AAAA answer came at once.
        assert unspec["seconds"] >= RESOLVER_TIMEOUT, (flavour, unspec)
        assert unspec["answer"] in (socket.EAI_AGAIN, V6), (flavour, unspec)


def test_hosts_file_name_is_answered_for_both_families_without_dns(
    netns: Namespace,
) -> None:
    netns.write_hosts({"files.lab.test": ["fd00:5eed::3", "10.77.0.3"]})
    # The DNS server knows the name too, with other addresses, late: it
    # must not be asked.
    netns.dns(
        {("files.lab.test", "A"): V4, ("files.lab.test", "AAAA"): V6},
        delays={"A": 0.5, "AAAA": 0.5},
    )
    results = run_inside(netns, "compare", name="files.lab.test")
    for flavour, result in results.items():
        ours, unspec = result["ours"], result["unspec"]
        assert sorted(addresses(ours)) == ["10.77.0.3", "fd00:5eed::3"], flavour
        assert ours["ended"] < 0.3, (flavour, ours)
        assert sorted(unspec["answer"]) == ["10.77.0.3", "fd00:5eed::3"], flavour
    assert netns.dns_queries() == []


def test_open_connection_connects_over_ipv4_at_once_when_aaaa_is_lost(
    netns: Namespace,
) -> None:
    # fd00:5eed::9 is the AAAA record the server would give, but it drops
    # AAAA queries (and the address is assigned nowhere: were it ever
    # answered, connecting to it would fail at once with no route).
    netns.dns(
        {
            ("e2e.lab.test", "A"): ["10.77.0.2"],
            ("e2e.lab.test", "AAAA"): ["fd00:5eed::9"],
        },
        drop={"AAAA"},
    )
    results = run_inside(netns, "connect", name="e2e.lab.test")
    for flavour, result in results.items():
        assert result["peer"] == "10.77.0.2", (flavour, result)
        assert result["echoed"] == "ping\n", (flavour, result)
        # Resolution delay, handshake and echo: no wait for the lost AAAA
        # answer (asyncio.open_connection, resolving with one AF_UNSPEC
        # lookup, waits seconds for it: see the tests above).
        assert result["seconds"] < 0.5, (flavour, result)
        events = result["trace"]
        # The flavours run one after another in one process, so the later
        # ones find the connection history's RTT: left out here.
        events = [e for e in events if e[0] != "attempt_delay_from_history"]
        trace = [(kind, family, address) for kind, _, family, address in events]
        # Connected while the AAAA lookup was still waiting: the one attempt
        # went to the IPv4 address, a resolution delay after its answer,
        # and the AAAA lookup was left unanswered.
        assert trace == [
            ("resolution_started", "AF_INET6", None),
            ("resolution_started", "AF_INET", None),
            ("resolution_answered", "AF_INET", None),
            ("resolution_delay_expired", "AF_INET6", None),
            ("order_decided", None, None),
            ("attempt_started", None, "10.77.0.2"),
            ("attempt_succeeded", None, "10.77.0.2"),
            ("resolution_abandoned", "AF_INET6", None),
        ], (flavour, result)
        answered_at, attempt_at = events[2][1], events[5][1]
        assert attempt_at - answered_at >= 0.8 * RESOLUTION_DELAY, (flavour, result)
    queries = netns.dns_queries()
    assert {(q.type, q.outcome) for q in queries} == {
        ("A", "answered"),
        ("AAAA", "dropped"),
    }


@pytest.mark.parametrize("flavour", loops.FLAVOURS)
def test_lost_aaaa_of_one_host_does_not_hold_up_other_hosts(
    netns: Namespace, flavour: str
) -> None:
    # On uvloop too: its own loop.getaddrinfo runs in libuv's thread pool,
    # two lookups at a time, where one lost AAAA query would hold up the
    # other hosts' lookups; the resolver uses the default executor instead.
    names = [f"host{n}.lab.test" for n in range(1, 4)]
    records = {}
    for name in names:
        records[name, "A"] = ["10.77.0.1"]
        records[name, "AAAA"] = ["fd00:5eed::1"]
    netns.dns(records, drop={"AAAA"})
    results = run_inside(netns, "first_addresses", [flavour], names=names)
    firsts = results[flavour]["first"]
    assert [address for address, _ in firsts] == ["10.77.0.1"] * 3
    # Each host's IPv4 address after the resolution delay, none after a
    # resolver timeout caused by another host's lost query.
    assert max(at for _, at in firsts) < 0.3, firsts
