"""How long until the first address, and how many resolutions per second.

Run: ``python benchmarks/resolve.py`` (``--uvloop`` to use uvloop).

Part 1, time to first address. A simulated name service answers A after
5 ms and AAAA after a per-scenario delay (1 s, never, or 5 ms); a query that
is never answered fails after the stub resolver's timeout (``--timeout``,
5 s as in glibc's default ``resolv.conf``). We compare:

* ``concurrent_resolver`` with that name service as ``getaddrinfo_async``;
* the ``loop.getaddrinfo(AF_UNSPEC)`` way, a single lookup asking for both
  families, which (like glibc) returns only when both answers are in.

Part 2, throughput. 1,000 concurrent resolutions of ``localhost`` (a
hosts-file name) through the real ``loop.getaddrinfo`` in the default
executor: ``concurrent_resolver`` (two lookups each, identical lookups in
flight shared), the same without sharing, and asyncio's single
``loop.getaddrinfo`` per connection. The median of several rounds.

"A hosts-file name" must be answered from the hosts file for *both*
families, or the IPv6 lookup leaves the machine as a DNS query (glibc asks
DNS for the AAAA of a name whose hosts line is IPv4 only). So part 2 runs in
a child process with a private mount namespace (``unshare --mount``, needs
root) where ``/etc/hosts`` says ``127.0.0.1 localhost`` and ``::1
localhost``. Without root, part 2 is skipped with a note.

Part 3, time to first address through the real resolver. Part 1's three
scenarios again, with glibc's ``getaddrinfo`` asking a real DNS server: the
test suite's network lab (``tests/lab``) makes a network namespace whose
resolv.conf points at its own DNS server on the namespace's loopback (``options
timeout:T attempts:1`` with T the ``--timeout`` rounded up to whole seconds),
which answers A at once and AAAA after 1 s, never, or at once. The name is not
in the namespace's hosts file, so every lookup is a DNS query, and no query
leaves the namespace. Each measurement runs in a fresh process inside it:
``concurrent_resolver`` (time to the first address, and until the stream
ends), then a single ``loop.getaddrinfo(AF_UNSPEC)``. Needs root and ``ip``
(iproute2); skipped with a note otherwise. ``--part 3`` runs only this part.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from async_stagger.resolvers import basic_resolver, concurrent_resolver

try:
    import uvloop
except ImportError:  # optional, for --uvloop
    uvloop = None

A_DELAY = 0.005


class SimulatedNameService:
    """Answers A after ``A_DELAY`` and AAAA after *aaaa_delay* (``None``: the
    query is lost and fails after *timeout*)."""

    def __init__(self, aaaa_delay: float | None, timeout: float) -> None:
        self.aaaa_delay = aaaa_delay
        self.timeout = timeout

    async def _one(self, family: int, port: int) -> list[Any]:
        if family == socket.AF_INET6:
            if self.aaaa_delay is None:
                await asyncio.sleep(self.timeout)
                raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure")
            await asyncio.sleep(self.aaaa_delay)
            return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0))]
        await asyncio.sleep(A_DELAY)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    async def __call__(
        self,
        host: Any,
        port: Any,
        *,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[Any]:
        if family != socket.AF_UNSPEC:
            return await self._one(family, int(port))
        # One AF_UNSPEC call: both queries, returning when both are done;
        # the A answer is kept if AAAA fails, as glibc does.
        results = await asyncio.gather(
            self._one(socket.AF_INET6, int(port)),
            self._one(socket.AF_INET, int(port)),
            return_exceptions=True,
        )
        infos = [i for r in results if not isinstance(r, BaseException) for i in r]
        if not infos:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return infos


async def first_address_time(resolver: Any) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        await anext(resolver)
    finally:
        await resolver.aclose()
    return loop.time() - start


async def single_lookup_time(service: SimulatedNameService) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    await service("example.test", 80, family=socket.AF_UNSPEC)
    return loop.time() - start


async def part_one(timeout: float) -> None:
    print("Time to first address (simulated name service, A after 5 ms)")
    print(f"{'scenario':<18}{'concurrent_resolver':>22}{'getaddrinfo(UNSPEC)':>22}")
    scenarios = [("AAAA slow 1 s", 1.0), ("AAAA lost", None), ("both fast", A_DELAY)]
    for name, aaaa_delay in scenarios:
        service = SimulatedNameService(aaaa_delay, timeout)
        ours = await first_address_time(
            concurrent_resolver("example.test", 80, getaddrinfo_async=service)
        )
        theirs = await single_lookup_time(service)
        print(f"{name:<18}{ours:>20.4f} s{theirs:>20.4f} s")


async def timed_burst(count: int, one: Callable[[int], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return time.perf_counter() - start


async def part_two(count: int, rounds: int) -> None:
    loop = asyncio.get_running_loop()
    host = "localhost"

    async def asyncio_lookup(i: int) -> Any:
        return await loop.getaddrinfo(host, 80, type=socket.SOCK_STREAM)

    async def ours(i: int) -> Any:
        return [i async for i in concurrent_resolver(host, 80, type=socket.SOCK_STREAM)]

    async def ours_unshared(i: int) -> Any:
        stream = concurrent_resolver(
            host, 80, type=socket.SOCK_STREAM, getaddrinfo_async=loop.getaddrinfo
        )
        return [i async for i in stream]

    async def basic(i: int) -> Any:
        return [i async for i in basic_resolver(host, 80, type=socket.SOCK_STREAM)]

    contenders: dict[str, Callable[[int], Awaitable[Any]]] = {
        "loop.getaddrinfo (asyncio)": asyncio_lookup,
        "concurrent_resolver": ours,
        "concurrent_resolver, no sharing": ours_unshared,
        "basic_resolver": basic,
    }
    timings: dict[str, list[float]] = {name: [] for name in contenders}
    for one in contenders.values():  # warm up: threads, caches
        await timed_burst(min(count, 100), one)
    for _ in range(rounds):
        for name, one in contenders.items():
            timings[name].append(await timed_burst(count, one))
    print()
    print(f"Throughput: {count} concurrent resolutions of {host!r}, median of {rounds}")
    baseline = count / statistics.median(timings["loop.getaddrinfo (asyncio)"])
    for name, values in timings.items():
        rate = count / statistics.median(values)
        print(f"{name:<34}{rate:>12.0f} /s{rate / baseline:>8.2f}x asyncio")


PRIVATE_HOSTS = "127.0.0.1 localhost\n::1 localhost\n"
IN_PRIVATE_HOSTS = "ASYNC_STAGGER_BENCH_PRIVATE_HOSTS"


def run_part_two_with_private_hosts(args: argparse.Namespace) -> int:
    """Run this script's part 2 in a mount namespace of its own, where
    ``/etc/hosts`` answers ``localhost`` for both families."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        print()
        print("Throughput: skipped (needs root and unshare(1) to give localhost")
        print("an IPv6 hosts line without touching the system's /etc/hosts)")
        return 0
    with tempfile.NamedTemporaryFile("w", suffix=".hosts") as hosts:
        hosts.write(PRIVATE_HOSTS)
        hosts.flush()
        command = [
            "unshare",
            "--mount",
            "sh",
            "-c",
            'mount --bind "$0" /etc/hosts && exec "$@"',
            hosts.name,
            sys.executable,
            __file__,
            "--part",
            "2",
            "--count",
            str(args.count),
            "--rounds",
            str(args.rounds),
            *(["--uvloop"] if args.uvloop else []),
        ]
        env = dict(os.environ, **{IN_PRIVATE_HOSTS: "1"})
        return subprocess.run(command, env=env, check=False).returncode


TESTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests")

REAL_DNS_NAME = "bench.lab.test"
REAL_DNS_RECORDS = {
    (REAL_DNS_NAME, "A"): ["10.77.0.1", "10.77.0.2"],
    (REAL_DNS_NAME, "AAAA"): ["fd00:5eed::1", "fd00:5eed::2"],
}

# One measurement, run inside the namespace: argv is the name, "ours" or
# "unspec", and "uvloop" or "asyncio". Prints the seconds to the first
# address and to the end of the answer (the same for a single lookup).
REAL_DNS_PROBE = """
import asyncio, json, socket, sys
from async_stagger.resolvers import concurrent_resolver

name, way, flavour = sys.argv[1:4]

async def main():
    loop = asyncio.get_running_loop()
    start = loop.time()
    if way == "ours":
        stream = concurrent_resolver(name, 80, type=socket.SOCK_STREAM)
        addresses = [(await anext(stream))[4][0]]
        first = loop.time() - start
        addresses += [info[4][0] async for info in stream]
    else:
        infos = await loop.getaddrinfo(
            name, 80, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM
        )
        addresses = [info[4][0] for info in infos]
        first = loop.time() - start
    done = loop.time() - start
    print(json.dumps({"first": first, "done": done, "addresses": addresses}))

if flavour == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
"""


def real_dns_probe(namespace: Any, way: str, use_uvloop: bool) -> dict[str, Any]:
    """Run one :data:`REAL_DNS_PROBE` inside *namespace*."""
    argv = [REAL_DNS_NAME, way, "uvloop" if use_uvloop else "asyncio"]
    code = f"import sys; sys.argv[1:] = {argv!r}\n" + REAL_DNS_PROBE
    result = namespace.run_python(code, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"the {way} probe failed:\n{result.stderr}")
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def part_three(timeout: float, use_uvloop: bool) -> None:
    """Part 1's scenarios through glibc and the lab's DNS server."""
    sys.path.insert(0, TESTS_DIR)
    from lab import Namespace, netns_unavailable_reason

    resolver_timeout = max(1, math.ceil(timeout))
    print()
    print("Time to first address (real getaddrinfo, DNS server in a network")
    print(f"namespace, A at once, resolv.conf timeout:{resolver_timeout} attempts:1)")
    reason = netns_unavailable_reason()
    if reason is not None:
        print(f"skipped: {reason}")
        return
    scenarios: list[tuple[str, dict[str, Any]]] = [
        ("AAAA slow 1 s", {"delays": {"AAAA": 1.0}}),
        ("AAAA lost", {"drop": {"AAAA"}}),
        ("both fast", {}),
    ]
    print(
        f"{'scenario':<18}{'concurrent_resolver':>22}{'(all addresses)':>18}"
        f"{'getaddrinfo(UNSPEC)':>22}"
    )
    with Namespace.create() as namespace:
        for name, behaviour in scenarios:
            namespace.dns(
                REAL_DNS_RECORDS, resolver_timeout=resolver_timeout, **behaviour
            )
            ours = real_dns_probe(namespace, "ours", use_uvloop)
            theirs = real_dns_probe(namespace, "unspec", use_uvloop)
            print(
                f"{name:<18}{ours['first']:>20.4f} s{ours['done']:>16.4f} s"
                f"{theirs['first']:>20.4f} s"
            )


async def main(args: argparse.Namespace) -> None:
    if args.part in (0, 1):
        await part_one(args.timeout)
    if args.part == 2:
        await part_two(args.count, args.rounds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--part", type=int, choices=(0, 1, 2, 3), default=0)
    arguments = parser.parse_args()
    if arguments.part == 2 and not os.environ.get(IN_PRIVATE_HOSTS):
        parser.error("part 2 runs only inside its private hosts file; omit --part")
    if arguments.uvloop and uvloop is None:
        parser.error("--uvloop: uvloop is not installed")
    run = uvloop.run if arguments.uvloop else asyncio.run
    if arguments.part in (0, 1, 2):
        run(main(arguments))
    status = 0
    if arguments.part == 0:
        status = run_part_two_with_private_hosts(arguments)
    if arguments.part in (0, 3):
        part_three(arguments.timeout, arguments.uvloop)
    sys.exit(status)
