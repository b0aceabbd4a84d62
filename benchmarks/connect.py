"""How much Happy Eyeballs costs when the first address works.

Run with ``python benchmarks/connect.py`` (``--help`` for options). It prints,
for sequential loopback connections, microseconds per connection made with:

* plain ``asyncio.open_connection`` / ``loop.create_connection``,
* asyncio with ``happy_eyeballs_delay=0.25``,
* ``async_stagger.connection.open_connection``,
* aiohappyeyeballs (when it is installed), fed as aiohttp feeds it: an IP
  literal becomes its one address info without any lookup, a name goes
  through ``loop.getaddrinfo`` first,
* trio's ``open_tcp_stream`` on trio's own event loop (when trio is
  installed; marked as a different event loop in the output),

for one address (an IP literal) and for a name answering two addresses of
which the first works, two ways (the same for every client):

* "loop's getaddrinfo": the loop is a subclass whose own coroutine
  ``getaddrinfo`` answers at once, so no thread is involved (trio gets the
  same answers through its custom hostname resolver hook). It shows the
  Python each client spends around a lookup; it is what a program whose
  loop or resolver answers without threads (a cache, an async DNS library)
  pays.
* "system getaddrinfo": asyncio's stock loop, as in a real program, with
  ``socket.getaddrinfo`` replaced for this whole process (see
  :func:`answering_getaddrinfo`) to answer the benchmark's names at once,
  on whichever thread calls it. Each client pays its own way of calling the
  system resolver: asyncio, its ``happy_eyeballs_delay`` and
  aiohappyeyeballs (through ``loop.getaddrinfo``) a thread of the loop's
  default executor; trio its thread cache; async_stagger its daemon
  threads, one lookup per family. This is the row a program on asyncio's
  default loop sees, less the name service's own time.

Then it times a connection whose first address
is blackholed (its accept queue is full, so SYNs are dropped): that should
take the connection attempt delay plus a few milliseconds. Last, with TLS, a
first address that accepts TCP but never answers the TLS ClientHello (the
test lab's hung-TLS endpoint; needs the test extra's trustme): the TLS-aware
race connects to the second address at the delay plus one handshake, where a
TCP race (asyncio's, or ours with ``race_tls=False``) picks the hung address
and fails when ``ssl_handshake_timeout`` runs out. And what the connection
history saves: repeated connections to a name whose IPv6 address is
blackholed, and to one whose first address went dark after answering in a
millisecond, with ``history=None`` and with a history (``--history-only``
runs just that).

The listeners are plain kernel sockets accepted by a child process, so the
server's work stays out of the process being measured.

CPU time on a shared or virtual machine drifts by several per cent between
runs; ``--instructions`` also counts the machine instructions each client
executes per connection under ``valgrind --tool=callgrind`` (when valgrind is
installed): the same count on every run, whatever else the machine is doing.
Callgrind counts every thread of the process, so the system getaddrinfo
row includes the lookup threads' work and their hand-off to the loop; the
CPU column of the timing table counts the loop's thread only.

No name is ever looked up for real: the replaced ``socket.getaddrinfo``
answers the benchmark's names and raises for any other name (an IP
literal, which needs no name service, goes to the system's with
``AI_NUMERICHOST``); uvloop, whose lookups run in C out of its reach, gets
the IP literal only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import async_stagger
from async_stagger import connection

try:
    import aiohappyeyeballs
except ImportError:  # optional
    aiohappyeyeballs = None  # type: ignore[assignment]

try:
    import trio
except ImportError:  # optional
    trio = None  # type: ignore[assignment]

DELAY = 0.25


# The accepting side runs in a child process: a thread here would compete
# with the event loop for the GIL and distort the figures.
_ACCEPTOR = """
import collections, socket, struct, sys
sock = socket.socket(fileno=int(sys.argv[1]))
held = collections.deque()
while True:
    conn, _ = sock.accept()
    held.append(conn)
    if len(held) > 64:
        # By now the client has long finished with it. Reset rather than
        # close politely: no TIME_WAIT pile-up over many connections.
        old = held.popleft()
        old.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        old.close()
"""


@contextlib.contextmanager
def listener(host: str) -> Iterator[int]:
    """A listening socket on *host* whose connections a child process
    accepts; yields the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(4096)
    child = subprocess.Popen(
        [sys.executable, "-c", _ACCEPTOR, str(sock.fileno())],
        pass_fds=[sock.fileno()],
    )
    try:
        yield sock.getsockname()[1]
    finally:
        child.kill()
        child.wait()
        sock.close()


@contextlib.contextmanager
def blackhole(host: str) -> Iterator[int]:
    """A listener whose accept queue is full: further SYNs are dropped."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen(0)
    port = sock.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):
            filler = socket.socket(family, socket.SOCK_STREAM)
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect((host, port))
            fillers.append(filler)
        time.sleep(0.05)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        sock.close()


class FixedAnswers(asyncio.SelectorEventLoop):
    """A loop whose getaddrinfo answers ``name`` at once with fixed
    addresses (the same for asyncio's code and ours)."""

    answers: ClassVar[dict[str, list[Any]]] = {}

    async def getaddrinfo(
        self, host: Any, port: Any, *, family: int = 0, type: int = 0, **_: Any
    ) -> list[Any]:
        if host in self.answers:
            if family not in (0, socket.AF_INET):
                # An IPv4-only name: the AAAA lookup finds nothing, at once.
                raise socket.gaierror(socket.EAI_NONAME, "no such address")
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, int(port)))
                for ip in self.answers[host]
            ]
        return await super().getaddrinfo(host, port, family=family, type=type, **_)


#: The names the replaced ``socket.getaddrinfo`` answers, with their IPv4
#: addresses (the same as FixedAnswers gives its name).
SYSTEM_ANSWERS: dict[str, list[str]] = {"two.system.test": ["127.0.0.2", "127.0.0.3"]}

_system_getaddrinfo = socket.getaddrinfo


def answering_getaddrinfo(
    host: Any,
    port: Any,
    family: int = 0,
    type: int = 0,
    proto: int = 0,
    flags: int = 0,
) -> list[Any]:
    """``socket.getaddrinfo`` for this benchmark: a name of SYSTEM_ANSWERS
    is answered at once, like an IPv4-only name in the hosts file; any other
    name raises, so no query ever leaves the machine."""
    name = host.decode() if isinstance(host, bytes) else host
    if name in SYSTEM_ANSWERS:
        if flags & socket.AI_NUMERICHOST or family not in (0, socket.AF_INET):
            # Not a numeric address; an IPv4-only name has no AAAA answer.
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        tcp = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
        return [(*tcp, (ip, int(port))) for ip in SYSTEM_ANSWERS[name]]
    # Anything else only as a numeric address (trio's first try for an IP
    # literal): the system's getaddrinfo then asks no name service.
    return _system_getaddrinfo(
        host, port, family, type, proto, flags | socket.AI_NUMERICHOST
    )


def answer_names_without_lookups() -> None:
    """Replace ``socket.getaddrinfo`` for the whole process: every thread,
    asyncio's executor, our daemon threads and trio's calls it by attribute,
    so all of them get :func:`answering_getaddrinfo`."""
    socket.getaddrinfo = answering_getaddrinfo


def addresses(host: str) -> list[str]:
    """The addresses a workload's host stands for (itself, if a literal)."""
    return FixedAnswers.answers.get(host) or SYSTEM_ANSWERS.get(host) or [host]


#: Whether to measure the steps of our connection apart (``--breakdown``).
BREAKDOWN = False


def breakdown_candidates() -> dict[str, Connect]:
    """Clients that each leave out part of what async_stagger does, to tell
    what each part costs: a resolver that only yields its answers (no lookup
    tasks, no sharing, no ordering), the one-lookup ``basic_resolver``, and
    the floor of any Python race: one socket connected in Python (connect,
    wait until writable, read SO_ERROR) handed to ``open_connection``."""

    async def fixed(host: str, port: int, **_: Any) -> Any:
        for ip in addresses(host):
            yield (socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))

    async def ours_fixed(host: str, port: int) -> Any:
        return await connection.open_connection(host, port, resolver=fixed)

    async def ours_basic(host: str, port: int) -> Any:
        return await connection.open_connection(
            host, port, resolver=async_stagger.basic_resolver
        )

    async def floor(host: str, port: int) -> Any:
        loop = asyncio.get_running_loop()
        ip = addresses(host)[0]
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect((ip, port))
        except BlockingIOError:
            writable = loop.create_future()
            loop.add_writer(sock.fileno(), writable.set_result, None)
            try:
                await writable
            finally:
                loop.remove_writer(sock.fileno())
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                sock.close()
                raise OSError(error, os.strerror(error)) from None
        return await asyncio.open_connection(sock=sock)

    return {
        "ours, resolver only yielding answers": ours_fixed,
        "ours, basic_resolver": ours_basic,
        "floor: Python connect + open(sock=)": floor,
    }


def uvloop_loop() -> asyncio.AbstractEventLoop:
    """A new uvloop loop (imported only when asked for)."""
    import uvloop

    return uvloop.new_event_loop()


#: The loop every measurement runs on (``--uvloop`` switches it).
LOOP_FACTORY: Callable[[], asyncio.AbstractEventLoop] = FixedAnswers

Connect = Callable[[str, int], Awaitable[tuple[Any, Any]]]


def candidates() -> dict[str, Connect]:
    async def plain_open(host: str, port: int) -> Any:
        return await asyncio.open_connection(host, port)

    async def plain_create(host: str, port: int) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.create_connection(asyncio.Protocol, host, port)

    async def asyncio_he(host: str, port: int) -> Any:
        return await asyncio.open_connection(host, port, happy_eyeballs_delay=DELAY)

    async def ours_open(host: str, port: int) -> Any:
        return await connection.open_connection(host, port)

    async def ours_create(host: str, port: int) -> Any:
        return await connection.create_connection(asyncio.Protocol, host, port)

    async def ours_open_no_history(host: str, port: int) -> Any:
        return await connection.open_connection(host, port, history=None)

    found: dict[str, Connect] = {
        "asyncio.open_connection": plain_open,
        "loop.create_connection": plain_create,
        "asyncio happy_eyeballs_delay=0.25": asyncio_he,
        "async_stagger open_connection": ours_open,
        "async_stagger create_connection": ours_create,
        "async_stagger open_connection history=None": ours_open_no_history,
    }
    if LOOP_FACTORY is not FixedAnswers:
        # uvloop's create_connection has no happy_eyeballs_delay.
        del found["asyncio happy_eyeballs_delay=0.25"]
    if BREAKDOWN:
        found.update(breakdown_candidates())
    if aiohappyeyeballs is not None:

        async def aiohe(host: str, port: int) -> Any:
            loop = asyncio.get_running_loop()
            infos: list[Any]
            if looks_like_ip_literal(host):
                # What aiohttp's TCPConnector does for a literal: it builds
                # the address info itself and asks no resolver.
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                address = (host, port, 0, 0) if ":" in host else (host, port)
                infos = [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", address)]
            else:
                # A name goes through its resolver, by default
                # loop.getaddrinfo (here answered at once). aiohttp then
                # converts the answers to dictionaries and back, work left
                # out here: the peer is measured at its cheapest.
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            sock = await aiohappyeyeballs.start_connection(
                infos, happy_eyeballs_delay=DELAY
            )
            return await asyncio.open_connection(sock=sock)

        found["aiohappyeyeballs + open_connection"] = aiohe
    return found


def looks_like_ip_literal(host: str) -> bool:
    """The test aiohttp applies before resolving: a colon, or digits and dots."""
    return ":" in host or host.replace(".", "").isdigit()


#: Name of the trio client in every table: it runs on another event loop.
TRIO = "trio.open_tcp_stream [trio's loop]"


def trio_answers() -> Any:
    """A trio hostname resolver answering like FixedAnswers, at once."""

    class Answers(trio.abc.HostnameResolver):
        async def getaddrinfo(
            self,
            host: bytes | None,
            port: bytes | str | int | None,
            family: int = 0,
            type: int = 0,
            proto: int = 0,
            flags: int = 0,
        ) -> list[Any]:
            name = host.decode() if isinstance(host, bytes) else str(host)
            if family not in (0, socket.AF_INET):
                raise socket.gaierror(socket.EAI_NONAME, "no such address")
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, int(port or 0)))
                for ip in FixedAnswers.answers[name]
            ]

        async def getnameinfo(
            self, sockaddr: tuple[str, int] | tuple[str, int, int, int], flags: int
        ) -> tuple[str, str]:
            raise NotImplementedError

    return Answers()


def trio_run_many(host: str, port: int, counts: tuple[int, ...]) -> tuple[float, float]:
    """Like run_many, with trio.open_tcp_stream, inside one trio.run; one
    batch of sequential connections per item of *counts*; returns the figures
    of the last batch."""

    async def batches() -> tuple[float, float]:
        if host not in SYSTEM_ANSWERS:
            # Else trio's own lookups: socket.getaddrinfo on its threads.
            trio.socket.set_custom_hostname_resolver(trio_answers())
        figures = (0.0, 0.0)
        for count in counts:
            start = time.perf_counter()
            start_cpu = time.thread_time()
            for _ in range(count):
                stream = await trio.open_tcp_stream(
                    host, port, happy_eyeballs_delay=DELAY
                )
                await stream.aclose()
            elapsed = time.perf_counter() - start
            cpu = time.thread_time() - start_cpu
            figures = (elapsed / max(count, 1) * 1e6, cpu / max(count, 1) * 1e6)
        return figures

    result: tuple[float, float] = trio.run(batches)
    return result


def with_trio() -> bool:
    """Whether trio is measured too: installed, and the clients are on
    asyncio's own loop (on uvloop the comparison is with uvloop)."""
    return trio is not None and LOOP_FACTORY is FixedAnswers


async def run_many(
    connect: Connect, host: str, port: int, count: int
) -> tuple[float, float]:
    """Wall-clock and CPU (this thread) microseconds per connection for *count*
    sequential connections."""
    start = time.perf_counter()
    start_cpu = time.thread_time()
    for _ in range(count):
        first, second = await connect(host, port)
        if isinstance(second, asyncio.StreamWriter):
            second.close()
        else:
            first.close()
    elapsed = time.perf_counter() - start
    cpu = time.thread_time() - start_cpu
    await asyncio.sleep(0)
    return elapsed / count * 1e6, cpu / count * 1e6


#: Hosts to connect to, by title: an IP literal, a name answering two
#: addresses at once through the loop's own getaddrinfo (FixedAnswers), and
#: the same through the system's getaddrinfo (answering_getaddrinfo).
WORKLOADS = {
    "one address (IP literal 127.0.0.2)": "127.0.0.2",
    "two addresses, first works, loop's getaddrinfo": "two.test",
    "two addresses, first works, system getaddrinfo": "two.system.test",
}


def workloads() -> dict[str, str]:
    """The workloads the current loop can run: uvloop resolves names in C,
    out of reach of both kinds of fixed answers (it would ask the real name
    service), so it gets the IP literal only."""
    if LOOP_FACTORY is FixedAnswers:
        return WORKLOADS
    return dict(list(WORKLOADS.items())[:1])


def loop_factory(host: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The loop a workload runs on: a name of the system's getaddrinfo
    needs asyncio's stock loop, whose ``getaddrinfo`` is the system's in
    the default executor (FixedAnswers has its own)."""
    if host in SYSTEM_ANSWERS:
        if LOOP_FACTORY is not FixedAnswers:
            raise RuntimeError(f"{host} would be looked up for real on this loop")
        return asyncio.new_event_loop
    return LOOP_FACTORY


def measure(count: int, rounds: int) -> None:
    found = candidates()
    FixedAnswers.answers = {"two.test": ["127.0.0.2", "127.0.0.3"]}
    with listener("0.0.0.0") as port:
        for title, host in workloads().items():
            print(
                f"\n{title}: µs per connection, {count} sequential connections,"
                f" best of {rounds} rounds\n"
                f"  {'':38s} {'wall':>8s} {'CPU':>8s}   (CPU ratio)"
            )
            results: dict[str, list[tuple[float, float]]] = {n: [] for n in found}
            for _ in range(rounds):
                for name, connect in found.items():
                    with asyncio.Runner(loop_factory=loop_factory(host)) as runner:
                        results[name].append(
                            runner.run(run_many(connect, host, port, count))
                        )
                if with_trio():
                    results.setdefault(TRIO, []).append(
                        trio_run_many(host, port, (20, count))
                    )
            base = min(cpu for _, cpu in results["asyncio.open_connection"])
            for name, values in results.items():
                wall = min(w for w, _ in values)
                cpu = min(c for _, c in values)
                print(
                    f"  {name:38s} {wall:8.1f} {cpu:8.1f}"
                    f"   {cpu / base:5.2f}x plain open_connection"
                )


def measure_blackhole(repeat: int) -> None:
    print(f"\nfirst address blackholed, second works (delay {DELAY} s):")
    with listener("0.0.0.0") as port, blackhole("127.0.0.4") as dead_port:
        assert dead_port

        # The blackholed listener has its own port; rebind answers so the
        # first address is that listener (same port needed: use per-address
        # sockaddrs via a resolver instead of the fixed loop).
        async def resolver(host: Any, p: Any, **_: Any) -> Any:
            yield (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.4", dead_port))
            yield (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.5", port))

        async def once() -> float:
            loop = asyncio.get_running_loop()
            start = loop.time()
            sock = await connection.create_connected_sock(
                "two.test", port, delay=DELAY, resolver=resolver
            )
            took = loop.time() - start
            sock.close()
            return took

        times = []
        for _ in range(repeat):
            with asyncio.Runner(loop_factory=LOOP_FACTORY) as runner:
                times.append(runner.run(once()))
        over = [(t - DELAY) * 1e3 for t in times]
        print(
            f"  connected after {min(times) * 1e3:.2f} ms best,"
            f" {statistics.median(times) * 1e3:.2f} ms median"
            f" (delay + {statistics.median(over):.2f} ms; target: + <= 5 ms)"
        )


def measure_history(repeat: int) -> None:
    """What the connection history saves (RFC 8305 §4, §5): connections to
    a name whose IPv6 address is blackholed, and to one whose first address
    went dark after answering in about a millisecond."""
    from async_stagger.address_order import find_source_address
    from async_stagger.history import ConnectionHistory
    from async_stagger.resolvers import concurrent_resolver

    if not socket.has_ipv6:
        print("\nhistory: no IPv6 here, skipped")
        return
    with (
        listener("0.0.0.0") as port,
        blackhole("::1") as dead6,
        blackhole("127.0.0.4") as dead4,
    ):
        dual = {
            socket.AF_INET6: [(socket.AF_INET6, ("::1", dead6, 0, 0))],
            socket.AF_INET: [(socket.AF_INET, ("127.0.0.5", port))],
        }
        first_dark = {
            socket.AF_INET6: [],
            socket.AF_INET: [
                (socket.AF_INET, ("127.0.0.4", dead4)),
                (socket.AF_INET, ("127.0.0.5", port)),
            ],
        }

        def answering(table: dict[Any, Any]) -> Any:
            async def getaddrinfo(host: Any, p: Any, *, family: int, **_: Any) -> Any:
                found = table[family]
                if not found:
                    raise socket.gaierror(socket.EAI_NONAME, "no such address")
                return [(f, socket.SOCK_STREAM, 6, "", a) for f, a in found]

            return functools.partial(concurrent_resolver, getaddrinfo_async=getaddrinfo)

        async def connect(resolver: Any, history: Any) -> float:
            loop = asyncio.get_running_loop()
            start = loop.time()
            sock = await connection.create_connected_sock(
                "name.test", port, resolver=resolver, history=history
            )
            took = loop.time() - start
            sock.close()
            return took

        def run(coro: Any) -> float:
            with asyncio.Runner(loop_factory=LOOP_FACTORY) as runner:
                took: float = runner.run(coro)
            return took

        print("\nconnection history: IPv6 address blackholed, IPv4 works")
        resolver = answering(dual)
        for title, history in (
            ("history=None", None),
            ("with history", ConnectionHistory()),
        ):
            times = [run(connect(resolver, history)) for _ in range(repeat + 1)]
            print(
                f"  {title:14s} first {times[0] * 1e3:7.2f} ms,"
                f" later ones {statistics.median(times[1:]) * 1e3:7.2f} ms median"
                f" (max {max(times[1:]) * 1e3:.2f} ms; target with history:"
                " <= 5 ms)"
            )
        print(
            "connection history: first address blackholed, it answered in 1 ms before"
        )
        resolver = answering(first_dark)
        source = find_source_address(socket.AF_INET, ("127.0.0.4", dead4))
        assert source is not None
        for title, seeded in (("history=None", False), ("with history", True)):
            times = []
            for _ in range(repeat):
                history = None
                if seeded:
                    history = ConnectionHistory()
                    history.record_success(source[0], "127.0.0.4", 0.001)
                times.append(run(connect(resolver, history)))
            print(
                f"  {title:14s} {statistics.median(times) * 1e3:7.2f} ms median"
                " (target with history: about the 100 ms minimum)"
            )


def measure_hung_tls(repeat: int, handshake_timeout: float) -> None:
    """Time to connected when the first address stalls TLS."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    try:
        from lab import Lab  # type: ignore[import-not-found]
    except ImportError as exc:  # trustme is a test extra
        print(f"\nfirst address stalls TLS: skipped ({exc})")
        return
    print(
        f"\nTLS, first address accepts TCP but never answers TLS, second works"
        f" (delay {DELAY} s; ssl_handshake_timeout {handshake_timeout:g} s,"
        f" 60 s by default):"
    )
    with Lab() as lab:
        port = lab.free_port()
        hung = lab.hung_tls("127.0.0.6", port)
        server = lab.working("127.0.0.7", port, tls=True)
        FixedAnswers.answers = {"hung.lab.test": [hung.host, server.host]}
        context = lab.client_ssl_context()

        async def resolver(host: Any, p: Any, **_: Any) -> Any:
            yield hung.addrinfo
            yield server.addrinfo

        async def ours(race_tls: bool) -> Any:
            return await connection.open_connection(
                "hung.lab.test",
                port,
                ssl=context,
                delay=DELAY,
                resolver=resolver,
                ssl_handshake_timeout=handshake_timeout,
                race_tls=race_tls,
            )

        async def asyncio_he() -> Any:
            return await asyncio.open_connection(
                "hung.lab.test",
                port,
                ssl=context,
                happy_eyeballs_delay=DELAY,
                ssl_handshake_timeout=handshake_timeout,
            )

        async def timed(connect: Callable[[], Awaitable[Any]]) -> tuple[float, str]:
            loop = asyncio.get_running_loop()
            start = loop.time()
            try:
                _, writer = await connect()
            except (OSError, TimeoutError) as exc:
                return loop.time() - start, f"failed: {type(exc).__name__}"
            took = loop.time() - start
            peer = writer.get_extra_info("peername")[0]
            writer.close()
            await writer.wait_closed()
            return took, f"connected to {peer}"

        def run(connect: Callable[[], Awaitable[Any]]) -> tuple[float, str]:
            with asyncio.Runner(loop_factory=LOOP_FACTORY) as runner:
                return runner.run(timed(connect))

        raced = [run(lambda: ours(True)) for _ in range(repeat)]
        times = [took for took, _ in raced]
        outcomes = sorted({outcome for _, outcome in raced})
        print(
            f"  {'async_stagger open_connection':38s}"
            f" {min(times) * 1e3:8.1f} ms best, {statistics.median(times) * 1e3:.1f}"
            f" ms median: {', '.join(outcomes)}"
        )
        others = {"async_stagger race_tls=False": lambda: ours(False)}
        if LOOP_FACTORY is FixedAnswers:  # uvloop has no happy_eyeballs_delay
            others["asyncio happy_eyeballs_delay=0.25"] = asyncio_he
        for name, connect in others.items():
            took, outcome = run(connect)
            print(f"  {name:38s} {took * 1e3:8.1f} ms: {outcome}")


def profile(count: int) -> None:
    """Where the time of our IP-literal connection goes, by module."""
    import collections
    import cProfile
    import pstats

    found = candidates()
    print(f"\nprofile of {count} connections to an IP literal (self time by module;")
    print("the profiler inflates every call, so compare the two columns only)")
    with listener("0.0.0.0") as port:
        totals: dict[str, collections.Counter[str]] = {}
        for name in ("asyncio.open_connection", "async_stagger open_connection"):
            profiler = cProfile.Profile()
            with asyncio.Runner(loop_factory=LOOP_FACTORY) as runner:
                profiler.enable()
                runner.run(run_many(found[name], "127.0.0.2", port, count))
                profiler.disable()
            by_module: collections.Counter[str] = collections.Counter()
            for (filename, _, function), row in pstats.Stats(profiler).stats.items():  # type: ignore[attr-defined]
                module = Path(filename).name if "/" in filename else function
                by_module[module] += row[2] / count * 1e6
            totals[name] = by_module
    plain, ours = totals.values()
    print(f"  {'':40s} {'plain':>8s} {'ours':>8s}  (µs per connection)")
    print(f"  {'total':40s} {sum(plain.values()):8.1f} {sum(ours.values()):8.1f}")
    for module, spent in ours.most_common(12):
        print(f"  {module[:40]:40s} {plain.get(module, 0.0):8.1f} {spent:8.1f}")


def worker(name: str, host: str, count: int) -> None:
    """Make *count* connections with candidate *name* (after a warm-up), for
    the instruction counter to measure from outside."""
    found = candidates()
    FixedAnswers.answers = {"two.test": ["127.0.0.2", "127.0.0.3"]}
    if name == TRIO:
        with listener("0.0.0.0") as port:
            trio_run_many(host, port, (20, count))
        return
    with (
        listener("0.0.0.0") as port,
        asyncio.Runner(loop_factory=loop_factory(host)) as runner,
    ):
        runner.run(run_many(found[name], host, port, 20))
        if count:
            runner.run(run_many(found[name], host, port, count))


def instructions(name: str, host: str, count: int) -> float:
    """Machine instructions per connection: callgrind's total for *count*
    connections minus its total for none, divided by *count*."""

    def total(connections: int) -> int:
        result = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--callgrind-out-file=/dev/null",
                sys.executable,
                __file__,
                *(["--uvloop"] if LOOP_FACTORY is not FixedAnswers else []),
                *(["--breakdown"] if BREAKDOWN else []),
                "--worker",
                name,
                host,
                str(connections),
            ],
            capture_output=True,
            text=True,
            # One hash seed: dict layouts, and so the counts, repeat exactly.
            env={**os.environ, "PYTHONHASHSEED": "0"},
            check=True,
        )
        found = re.search(r"Collected : (\d+)", result.stderr)
        assert found is not None, result.stderr[-2000:]
        return int(found.group(1))

    return (total(count) - total(0)) / count


def measure_instructions(count: int, *, every_client: bool) -> None:
    if shutil.which("valgrind") is None:
        print("\ninstruction counts: valgrind is not installed, skipped")
        return
    # The create_connection flavours track open_connection's figures closely
    # (see the timing table): counting them doubles the minutes this takes.
    names = [
        name
        for name in candidates()
        if every_client or not name.endswith("create_connection")
    ]
    if with_trio():
        names.append(TRIO)
    for title, host in workloads().items():
        print(
            f"\n{title}: machine instructions per connection (callgrind),"
            f" {count} connections"
        )
        counts = {name: instructions(name, host, count) for name in names}
        base = counts["asyncio.open_connection"]
        for name, value in counts.items():
            print(
                f"  {name:38s} {value / 1000:8.1f}k"
                f"   {value / base:5.2f}x plain open_connection"
            )
        if TRIO in counts:
            print(f"  ({TRIO}: another event loop, same machine and run)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--blackhole-repeat", type=int, default=5)
    parser.add_argument(
        "--tls-handshake-timeout",
        type=float,
        default=2.0,
        help="ssl_handshake_timeout for the hung-TLS comparison (default 2 s)",
    )
    parser.add_argument(
        "--history-only",
        action="store_true",
        help="only measure what the connection history saves",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also profile our IP-literal path"
    )
    parser.add_argument(
        "--instructions",
        type=int,
        nargs="?",
        const=300,
        metavar="COUNT",
        help="also count instructions per connection under callgrind"
        " (COUNT connections per candidate, default 300; takes minutes)",
    )
    parser.add_argument(
        "--uvloop", action="store_true", help="run every client on uvloop's loop"
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also measure clients that leave out parts of async_stagger's work",
    )
    parser.add_argument(
        "--every-client",
        action="store_true",
        help="count instructions of the create_connection flavours too",
    )
    parser.add_argument(
        "--no-timing",
        action="store_true",
        help="skip the timed measurements (with --instructions: counts only)",
    )
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    answer_names_without_lookups()
    global BREAKDOWN, LOOP_FACTORY
    BREAKDOWN = args.breakdown
    if args.uvloop:
        LOOP_FACTORY = uvloop_loop
    if args.worker:
        name, host, count = args.worker
        worker(name, host, int(count))
        return
    print(f"Python {sys.version.split()[0]}, {'uvloop' if args.uvloop else 'asyncio'}")
    if args.history_only:
        measure_history(args.blackhole_repeat)
        return
    if not args.no_timing:
        measure(args.count, args.rounds)
        measure_blackhole(args.blackhole_repeat)
        measure_hung_tls(args.blackhole_repeat, args.tls_handshake_timeout)
        measure_history(args.blackhole_repeat)
    if args.instructions:
        measure_instructions(args.instructions, every_client=args.every_client)
    if args.profile:
        profile(args.count)


if __name__ == "__main__":
    main()
