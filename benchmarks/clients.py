"""Client libraries with and without their async_stagger integration.

Run with ``python benchmarks/clients.py`` (``--help`` for options). For each
client that is installed (asyncio streams, websockets, redis.asyncio,
asyncpg, aiohttp, httpx), it prints the time to first byte of one request on
a new connection, without the integration (the client as it comes) and with
it:

* ``happy path``: the name has one working address; microseconds per
  request, median of several rounds of sequential requests (each on a new
  connection, since connecting is what the integration changes), and the
  ratio with/without (the integration's cost; the target is at most 1.05);
* ``blackholed first``: the name's first address drops SYNs, the second
  works;
* ``refused first``: the name's first address refuses, the second works;
* ``AAAA lost`` (root only: a network namespace of the test lab, whose DNS
  server answers A at once and never answers AAAA; resolv.conf has glibc's
  default ``timeout:5``): the real glibc ``getaddrinfo``.

``--instructions [N]`` (best with ``--client NAME``: one client at a time)
counts machine instructions per request instead, under callgrind: the
stable figure where CPU time on a shared machine is not. Each client runs in
one valgrind process per side; only the N requests after a warm-up are
counted (see ``COUNTED_CALL``), on an IP literal, on a name (an instant
scripted ``getaddrinfo`` on the loop, no thread) and, for the clients that
keep connections (aiohttp and httpx keep-alive, one redis client, an asyncpg
pool), per request on a reused connection: what a program sees once its
connections exist.

Outside the namespace, names resolve through a scripted ``getaddrinfo`` on
the benchmark's event loop that answers at once, without DNS (in the default
executor, as asyncio's own runs; on the loop itself with ``--instructions``):
the same for both sides. The servers (HTTP/1.1 answering with ``Connection:
close``, or keeping connections; WebSocket; redis-server and PostgreSQL when
installed) run in child processes on loopback. A side that has not got its
first byte after ``--give-up`` seconds is reported as given up (a blackholed
address without Happy Eyeballs waits for the kernel's TCP timeout, minutes).
``--client NAME`` (repeatable) measures only the clients named.

Integrations: streams, websockets, redis and asyncpg run on
:class:`async_stagger.eventloop.HappyEyeballsEventLoop`; aiohttp gets
``TCPConnector(resolver=HappyEyeballsResolver())``; httpx gets
``AsyncClient(transport=HappyEyeballsTransport())``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
TESTS_DIR = str(ROOT / "tests")

from async_stagger.eventloop import HappyEyeballsEventLoop  # noqa: E402
from async_stagger.history import ConnectionHistory, set_shared_history  # noqa: E402

NAME = "service.bench.test"
#: What the clients connect to: NAME, or an IP literal for the happy path.
TARGET = NAME

# -- the servers (a child process) -------------------------------------------------

_SERVER = """
import asyncio, json, sys
HOST = sys.argv[1]

async def http(reader, writer):
    try:
        await reader.readuntil(b"\\r\\n\\r\\n")
        writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n"
                     b"Connection: close\\r\\n\\r\\nok")
        await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    writer.close()

async def http_keep_alive(reader, writer):
    try:
        while True:
            await reader.readuntil(b"\\r\\n\\r\\n")
            writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    writer.close()

async def main():
    http_server = await asyncio.start_server(http, HOST, 0, backlog=1024)
    ports = {"http": http_server.sockets[0].getsockname()[1]}
    kept = await asyncio.start_server(http_keep_alive, HOST, 0, backlog=1024)
    ports["http-keep-alive"] = kept.sockets[0].getsockname()[1]
    try:
        from websockets.asyncio.server import serve
    except ImportError:
        serve = None
    if serve is not None:
        async def greet(ws):
            await ws.send("ok")
        ws_server = await serve(greet, HOST, 0, compression=None)
        ports["ws"] = ws_server.sockets[0].getsockname()[1]
    print(json.dumps(ports), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@contextlib.contextmanager
def servers(host: str) -> Iterator[dict[str, int]]:
    """HTTP and WebSocket servers (and redis-server and PostgreSQL, when
    installed) on *host* in child processes; yields their ports."""
    children: list[subprocess.Popen[str]] = []
    stack = contextlib.ExitStack()
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", _SERVER, host], stdout=subprocess.PIPE, text=True
        )
        children.append(child)
        assert child.stdout is not None
        ports: dict[str, int] = json.loads(child.stdout.readline())
        binary = shutil.which("redis-server")
        if binary is not None:
            port = free_port(host)
            redis = subprocess.Popen(
                [
                    binary,
                    "--bind",
                    host,
                    "--port",
                    str(port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--loglevel",
                    "warning",
                    # Bound to one address of its own (in the namespace: not
                    # loopback, which protected mode would insist on).
                    "--protected-mode",
                    "no",
                ],
                stdout=subprocess.DEVNULL,
                text=True,
            )
            children.append(redis)
            wait_listening(host, port)
            ports["redis"] = port
        sys.path.insert(0, TESTS_DIR)
        from lab.postgres import PostgresUnavailable, postgres_server  # type: ignore[import-not-found]

        port = free_port(host)
        try:
            stack.enter_context(postgres_server(host, port))
            ports["postgres"] = port
        except PostgresUnavailable:
            pass
        yield ports
    finally:
        stack.close()
        for child in children:
            child.terminate()
            child.wait()
            if child.stdout is not None:
                child.stdout.close()


def free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def wait_listening(host: str, port: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@contextlib.contextmanager
def blackhole(host: str, port: int) -> Iterator[None]:
    """*host*:*port* drops SYNs: a listener whose accept queue is full."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(0)
    fillers = []
    try:
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect((host, port))
            fillers.append(filler)
        time.sleep(0.05)
        yield
    finally:
        for filler in fillers:
            filler.close()
        sock.close()


@contextlib.contextmanager
def refusing(host: str, port: int) -> Iterator[None]:
    """*host*:*port* refuses: bound, not listening."""
    sock = socket.socket()
    sock.bind((host, port))
    try:
        yield
    finally:
        sock.close()


# -- the clients --------------------------------------------------------------------


class _Answers:
    """A scripted getaddrinfo on the loop: NAME -> IPv4 addresses, at once."""

    answers: ClassVar[dict[int, list[str]]] = {}  # port -> addresses
    #: False inside the namespace: the real getaddrinfo answers there.
    scripted: ClassVar[bool] = True
    #: Answer on the loop, with no thread (the instruction counts: only the
    #: client's own work is counted, and callgrind counts one thread).
    instant: ClassVar[bool] = False

    async def getaddrinfo(
        self, host: Any, port: Any, *, family: int = 0, type: int = 0, **kw: Any
    ) -> list[Any]:
        real: Any = super().getaddrinfo  # type: ignore[misc]
        if not self.scripted:
            return await real(host, port, family=family, type=type, **kw)  # type: ignore[no-any-return]
        name = host.decode("idna") if isinstance(host, bytes) else host
        if name != NAME:
            # Only IP literals go to the real getaddrinfo (no lookup for
            # them): no name may reach the machine's resolver.
            try:
                socket.inet_pton(
                    socket.AF_INET6 if ":" in name else socket.AF_INET, name
                )
            except (OSError, TypeError):
                raise socket.gaierror(
                    socket.EAI_NONAME, f"{host!r}: not scripted"
                ) from None
            return await real(host, port, family=family, type=type, **kw)  # type: ignore[no-any-return]
        if self.instant:
            return self._answer(int(port), family)
        # In the default executor, as asyncio's own getaddrinfo runs: the
        # thread hop is part of what a lookup costs either way.
        loop: Any = self
        return await loop.run_in_executor(None, self._answer, int(port), family)  # type: ignore[no-any-return]

    def _answer(self, port: int, family: int) -> list[Any]:
        if family not in (0, socket.AF_INET):
            raise socket.gaierror(socket.EAI_NONAME, "no such address")
        addresses = self.answers.get(port, ["127.0.0.1"])
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in addresses
        ]


class PlainLoop(_Answers, asyncio.SelectorEventLoop):
    pass


class OurLoop(_Answers, HappyEyeballsEventLoop):
    pass


Request = Callable[[dict[str, int]], Awaitable[None]]


async def streams_request(ports: dict[str, int]) -> None:
    reader, writer = await asyncio.open_connection(TARGET, ports["http"])
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await reader.read(1)
    writer.close()
    await writer.wait_closed()


async def websockets_request(ports: dict[str, int]) -> None:
    from websockets.asyncio.client import connect

    async with connect(f"ws://{TARGET}:{ports['ws']}/", compression=None) as ws:
        await ws.recv()


async def redis_request(ports: dict[str, int]) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis(host=TARGET, port=ports["redis"])
    try:
        await client.ping()
    finally:
        await client.aclose()


async def asyncpg_request(ports: dict[str, int]) -> None:
    import asyncpg  # type: ignore[import-untyped]

    connection = await asyncpg.connect(
        host=TARGET, port=ports["postgres"], user="test", database="postgres"
    )
    try:
        await connection.fetchval("SELECT 1")
    finally:
        await connection.close()


class Session:
    """A client kept across requests (as a program keeps one), each request
    on a new connection (the server closes every connection)."""

    def __init__(self, kind: str, ours: bool, *, keep_alive: bool = False) -> None:
        self.kind = kind
        self.ours = ours
        #: Connections reused (a server that keeps them open): what a
        #: program sees per request once its connections are made.
        self.port = "http-keep-alive" if keep_alive else "http"
        self.client: Any = None

    async def __aenter__(self) -> Session:
        if self.kind.startswith("aiohttp"):
            import aiohttp

            from async_stagger.integrations.aiohttp import HappyEyeballsResolver

            options: dict[str, Any] = {"force_close": self.port == "http"}
            if self.kind == "aiohttp (no cache)":
                # Every request resolves, as on a DNS cache miss.
                options["use_dns_cache"] = False
            if self.ours:
                options["resolver"] = HappyEyeballsResolver()
            self.client = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(**options)
            )
        else:
            import httpx

            from async_stagger.integrations.httpx import HappyEyeballsTransport

            transport = HappyEyeballsTransport() if self.ours else None
            self.client = httpx.AsyncClient(transport=transport)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.kind == "httpx":
            await self.client.aclose()
        else:
            await self.client.close()

    async def request(self, ports: dict[str, int]) -> None:
        url = f"http://{TARGET}:{ports[self.port]}/"
        if self.kind.startswith("aiohttp"):
            async with self.client.get(url) as response:
                await response.content.read(1)
        else:
            async with self.client.stream("GET", url) as response:
                # To the end of the (2-byte) body: httpcore keeps only a
                # connection whose response was read to the end.
                async for _ in response.aiter_raw():
                    pass


CLIENTS = [
    "streams",
    "websockets",
    "redis",
    "asyncpg",
    "aiohttp",
    "aiohttp (no cache)",
    "httpx",
]
ON_LOOP = {
    "streams": streams_request,
    "websockets": websockets_request,
    "redis": redis_request,
    "asyncpg": asyncpg_request,
}


#: The clients to measure (``--client``; all when empty).
CHOSEN: list[str] = []


def selected() -> list[str]:
    return CHOSEN or CLIENTS


def available(kind: str, ports: dict[str, int]) -> str | None:
    """Why *kind* cannot be measured here, or None."""
    module = None if kind == "streams" else kind.split()[0]
    if module is not None:
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed"
    if kind == "websockets" and "ws" not in ports:
        return "websockets is not installed"
    if kind == "redis" and "redis" not in ports:
        return "redis-server is not installed"
    if kind == "asyncpg" and "postgres" not in ports:
        return "PostgreSQL's server is not installed"
    return None


async def _timed_requests(
    kind: str, ours: bool, ports: dict[str, int], count: int, give_up: float
) -> tuple[list[float], float]:
    """Seconds to first byte of each of *count* sequential requests, and the
    process's CPU seconds for all of them (executor threads included)."""
    times = []
    async with contextlib.AsyncExitStack() as stack:
        if kind in ON_LOOP:
            request = ON_LOOP[kind]
        else:
            session = await stack.enter_async_context(Session(kind, ours))
            request = session.request
        cpu = time.process_time()
        for _ in range(count):
            start = time.perf_counter()
            async with asyncio.timeout(give_up):
                await request(ports)
            times.append(time.perf_counter() - start)
        cpu = time.process_time() - cpu
    return times, cpu


def measure(
    kind: str, ours: bool, ports: dict[str, int], count: int, give_up: float
) -> tuple[list[float], float] | str:
    """Run *count* requests on a fresh loop; what went wrong, if anything
    ("gave up", or the client's exception and when it came)."""
    # Streams, websockets and redis get the integration from the loop;
    # aiohttp and httpx from their own options, on a plain loop.
    factory = OurLoop if ours and kind in ON_LOOP else PlainLoop
    # Each run is a program's first: no connection history from the last
    # run (which would go straight past a blackholed address it knew).
    set_shared_history(ConnectionHistory())
    start = time.perf_counter()
    with asyncio.Runner(loop_factory=factory) as runner:
        try:
            return runner.run(_timed_requests(kind, ours, ports, count, give_up))
        except Exception as exc:
            took = time.perf_counter() - start
            if isinstance(exc, TimeoutError) and took >= give_up:
                return "gave up"
            # The client's own timeout, or another failure.
            return f"{type(exc).__name__} {took:.1f} s"


def show(
    label: str, without: float | str | None, with_: float | str | None, unit: str
) -> str:
    def fmt(value: float | str | None) -> str:
        if value is None:
            return "gave up"
        if isinstance(value, str):
            return value
        return f"{value * 1e6:,.0f} µs" if unit == "us" else f"{value:.4f} s"

    ratio = (
        f"{with_ / without:.3g}x"
        if isinstance(without, float) and isinstance(with_, float)
        else "-"
    )
    return f"  {label:<18}{fmt(without):>18}{fmt(with_):>14}{ratio:>9}"


def happy_path(ports: dict[str, int], args: argparse.Namespace, target: str) -> None:
    global TARGET
    TARGET = target
    what = "an IP literal" if target != NAME else "a name (scripted getaddrinfo)"
    print(
        f"happy path, {what}: µs per request on a new connection,"
        f" {args.rounds} rounds of {args.count}; CPU (this process, threads"
        f" included; best round) and wall clock (median)"
    )
    print(
        f"  {'client':<18}{'CPU without':>18}{'with':>14}{'ratio':>9}"
        f"{'wall without':>18}{'with':>14}{'ratio':>9}"
    )
    _Answers.answers.clear()
    for kind in selected():
        reason = available(kind, ports)
        if reason is not None:
            print(f"  {kind:<18}skipped: {reason}")
            continue
        cpu: dict[bool, list[float]] = {False: [], True: []}
        wall: dict[bool, list[float]] = {False: [], True: []}
        for ours in (False, True):
            measure(kind, ours, ports, 20, args.give_up)  # warm up
        for _ in range(args.rounds):
            for ours in (False, True):  # alternate: drift hits both alike
                measured = measure(kind, ours, ports, args.count, args.give_up)
                assert not isinstance(measured, str), measured
                times, seconds = measured
                cpu[ours].append(seconds / len(times))
                wall[ours].append(statistics.median(times))
        # CPU: the best round (other processes only ever add to it); wall
        # clock: the median.
        cpu_line = show(kind, min(cpu[False]), min(cpu[True]), "us")
        wall_line = show(
            "", statistics.median(wall[False]), statistics.median(wall[True]), "us"
        )
        print(cpu_line + wall_line[20:])
    TARGET = NAME


def broken(ports: dict[str, int], args: argparse.Namespace, scenario: str) -> None:
    print(f"{scenario}: seconds to first byte, median of {args.repeat}")
    print(f"  {'client':<18}{'without':>18}{'with':>14}{'ratio':>9}")
    helper = blackhole if scenario == "blackholed first" else refusing
    with contextlib.ExitStack() as stack:
        _Answers.answers.clear()
        for port in ports.values():
            stack.enter_context(helper("127.0.0.2", port))
            _Answers.answers[port] = ["127.0.0.2", "127.0.0.1"]
        for kind in selected():
            reason = available(kind, ports)
            if reason is not None:
                print(f"  {kind:<18}skipped: {reason}")
                continue
            figures: list[float | str | None] = []
            for ours in (False, True):
                times: list[float] = []
                failed: str | None = None
                for _ in range(args.repeat):
                    one = measure(kind, ours, ports, 1, args.give_up)
                    if isinstance(one, str):
                        failed = one  # no need to wait that long again
                        break
                    times.append(one[0][0])
                figures.append(failed or statistics.median(times))
            print(show(kind, figures[0], figures[1], "s"))
    _Answers.answers.clear()


# -- instruction counts (callgrind) -----------------------------------------------

LITERAL = "127.0.0.1"
#: Requests before the counted ones: imports, caches and first-call work
#: done, connection pools filled.
WARM_UP = 20
#: What each client is counted on: (workload, target, connection reused).
#: A new connection per request is where the integrations work; a reused
#: one (aiohttp and httpx keep-alive, one redis client for every command)
#: is what a program sees per request once its connections exist.
COUNTED: dict[str, list[tuple[str, str, bool]]] = {
    "streams": [("IP literal", LITERAL, False), ("name", NAME, False)],
    "websockets": [("IP literal", LITERAL, False), ("name", NAME, False)],
    "redis": [
        ("IP literal", LITERAL, False),
        ("name", NAME, False),
        ("name, reused", NAME, True),
    ],
    "asyncpg": [
        ("IP literal", LITERAL, False),
        ("name", NAME, False),
        ("name, pooled", NAME, True),
    ],
    "aiohttp": [
        ("IP literal", LITERAL, False),
        ("name (DNS cache)", NAME, False),
        ("name, keep-alive", NAME, True),
    ],
    "aiohttp (no cache)": [("name", NAME, False)],
    "httpx": [
        ("IP literal", LITERAL, False),
        ("name", NAME, False),
        ("name, keep-alive", NAME, True),
    ],
}
#: The C function the counted requests run inside (``operator.call``, new in
#: 3.11 and used by none of the clients): callgrind collects only while it
#: runs (``--toggle-collect``) and writes one dump per call
#: (``--dump-after``), so one process counts every workload of one client
#: and the imports and warm-up are never counted.
COUNTED_CALL = "_operator_call"


class _AsyncpgPool:
    """One asyncpg pool of one connection for every query."""

    def __init__(self) -> None:
        self.pool: Any = None

    async def request(self, ports: dict[str, int]) -> None:
        if self.pool is None:
            import asyncpg

            self.pool = await asyncpg.create_pool(
                host=TARGET, port=ports["postgres"], user="test",
                database="postgres", min_size=1, max_size=1,
            )  # fmt: skip
        await self.pool.fetchval("SELECT 1")

    async def aclose(self) -> None:
        if self.pool is not None:
            await self.pool.close()


class _RedisClient:
    """One redis client for every command: its pooled connection reused."""

    def __init__(self) -> None:
        self.client: Any = None

    async def request(self, ports: dict[str, int]) -> None:
        if self.client is None:
            import redis.asyncio

            self.client = redis.asyncio.Redis(host=TARGET, port=ports["redis"])
        await self.client.ping()

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()


async def _requests(request: Request, ports: dict[str, int], count: int) -> None:
    for _ in range(count):
        await request(ports)


def instruction_worker(
    kind: str, ours: bool, ports: dict[str, int], count: int
) -> None:
    """Run each workload of *kind*: a warm-up, then *count* counted requests."""
    import operator

    global TARGET
    _Answers.instant = True
    factory = OurLoop if ours and kind in ON_LOOP else PlainLoop
    with asyncio.Runner(loop_factory=factory) as runner:
        for _, target, reused in COUNTED[kind]:
            TARGET = target
            close: Callable[[], Coroutine[Any, Any, Any]] | None = None
            if kind in ("redis", "asyncpg") and reused:
                kept = _RedisClient() if kind == "redis" else _AsyncpgPool()
                request: Request = kept.request
                close = kept.aclose
            elif kind in ON_LOOP:
                request = ON_LOOP[kind]
            else:
                session = Session(kind, ours, keep_alive=reused)
                runner.run(session.__aenter__())
                request = session.request
                close = session.__aexit__
            runner.run(_requests(request, ports, WARM_UP))
            # Every side starts counting with the collector's generations
            # empty: otherwise a full collection falls inside the counted
            # requests on one side and not the other (seen: 2 % apart).
            gc.collect()
            operator.call(runner.run, _requests(request, ports, count))
            if close is not None:
                runner.run(close())


def instructions(
    kind: str, ours: bool, ports: dict[str, int], count: int
) -> list[float]:
    """Machine instructions per request of each workload of *kind*."""
    with tempfile.TemporaryDirectory() as directory:
        out = Path(directory) / "callgrind.out"
        result = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                "--collect-atstart=no",
                f"--toggle-collect={COUNTED_CALL}",
                f"--dump-after={COUNTED_CALL}",
                sys.executable,
                __file__,
                "--instruction-worker",
                json.dumps([kind, ours, ports, count]),
            ],
            capture_output=True,
            text=True,
            # One hash seed: dict layouts, and so the counts, repeat exactly.
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        if result.returncode != 0:
            raise RuntimeError(result.stderr[-3000:])
        totals = []
        for part in range(1, len(COUNTED[kind]) + 1):
            text = Path(f"{out}.{part}").read_text()
            found = re.search(r"^totals: (\d+)", text, re.MULTILINE)
            assert found is not None, text[:2000]
            totals.append(int(found.group(1)) / count)
        return totals


def measure_instructions(ports: dict[str, int], count: int) -> None:
    if shutil.which("valgrind") is None:
        print("instruction counts: valgrind is not installed, skipped")
        return
    print(
        f"machine instructions per request (callgrind; {count} counted requests"
        f" after {WARM_UP} of warm-up; names through an instant scripted"
        " getaddrinfo)"
    )
    print(f"  {'client':<20}{'workload':<20}{'without':>10}{'with':>10}{'ratio':>9}")
    for kind in selected():
        reason = available(kind, ports)
        if reason is not None:
            print(f"  {kind:<20}skipped: {reason}")
            continue
        without = instructions(kind, False, ports, count)
        with_ = instructions(kind, True, ports, count)
        for (workload, _, _), plain, ours in zip(
            COUNTED[kind], without, with_, strict=True
        ):
            print(
                f"  {kind:<20}{workload:<20}{plain / 1000:>9.1f}k{ours / 1000:>9.1f}k"
                f"{ours / plain:>8.3f}x",
                flush=True,
            )


# -- AAAA lost, inside a network namespace -----------------------------------------

_INSIDE = """
import json, runpy, sys
sys.argv = ["clients.py", "--inside-netns", {ports!r}, "--give-up", {give_up!r},
            *{clients!r}]
runpy.run_path({path!r}, run_name="__main__")
"""


def aaaa_lost(args: argparse.Namespace) -> None:
    print(
        f"AAAA lost (real getaddrinfo, namespace DNS server, resolv.conf "
        f"timeout:{args.resolver_timeout}): seconds to first byte"
    )
    sys.path.insert(0, TESTS_DIR)
    from lab import Namespace, netns_unavailable_reason  # type: ignore[import-not-found]

    reason = netns_unavailable_reason()
    if reason is not None:
        print(f"  skipped (needs root and network namespaces): {reason}")
        return
    with Namespace.create() as namespace:
        namespace.dns(
            {(NAME, "A"): ["10.77.0.2"], (NAME, "AAAA"): ["fd00:5eed::9"]},
            drop={"AAAA"},
            resolver_timeout=args.resolver_timeout,
        )
        code = (
            "import runpy, sys\n"
            f"sys.argv = ['clients.py', '--serve-netns', '10.77.0.2']\n"
            f"runpy.run_path({str(Path(__file__))!r}, run_name='__main__')\n"
        )
        server = namespace.start_python(code)
        assert server.stdout is not None
        ports = server.stdout.readline().strip()
        if not ports:
            error = server.stderr.read() if server.stderr else ""
            print(f"  the servers did not start: {error}")
            return
        inside = _INSIDE.format(
            ports=ports,
            give_up=str(args.give_up),
            path=str(Path(__file__)),
            clients=[f"--client={kind}" for kind in CHOSEN],
        )
        done = namespace.run_python(inside, timeout=600)
        if done.returncode != 0:
            print(f"  failed: {done.stderr}")
            return
        print(f"  {'client':<18}{'without':>18}{'with':>14}{'ratio':>9}")
        for line in done.stdout.splitlines():
            kind, without, with_ = json.loads(line)
            if with_ is None:
                print(f"  {kind:<18}skipped: {without}")
                continue
            print(show(kind, without, with_, "s"))


def inside_netns(ports: dict[str, int], give_up: float) -> None:
    """Measure each client once per side against the real resolver."""
    _Answers.scripted = False
    for kind in selected():
        reason = available(kind, ports)
        if reason is not None:
            print(json.dumps([kind, reason, None]), flush=True)  # skipped
            continue
        figures = []
        for ours in (False, True):
            one = measure(kind, ours, ports, 1, give_up)
            figures.append(one if isinstance(one, str) else one[0][0])
        print(json.dumps([kind, *figures]), flush=True)


def serve_netns(host: str) -> None:
    with servers(host) as ports:
        print(json.dumps(ports), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3, help="broken-network runs")
    parser.add_argument("--give-up", type=float, default=20.0, help="seconds")
    parser.add_argument("--resolver-timeout", type=int, default=5)
    parser.add_argument(
        "--only", choices=["happy", "blackholed", "refused", "aaaa"], default=None
    )
    parser.add_argument(
        "--instructions",
        type=int,
        nargs="?",
        const=100,
        metavar="N",
        help="count machine instructions per request under callgrind instead"
        " (N counted requests per workload, default 100)",
    )
    parser.add_argument(
        "--client",
        action="append",
        choices=CLIENTS,
        help="only this client (repeatable)",
    )
    parser.add_argument("--instruction-worker", help=argparse.SUPPRESS)
    parser.add_argument("--inside-netns", help=argparse.SUPPRESS)
    parser.add_argument("--serve-netns", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_netns:
        serve_netns(args.serve_netns)
        return
    CHOSEN[:] = args.client or []
    if args.inside_netns:
        inside_netns(json.loads(args.inside_netns), args.give_up)
        return
    if args.instruction_worker:
        kind, ours, ports, count = json.loads(args.instruction_worker)
        instruction_worker(kind, ours, ports, count)
        return
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} cores")
    if args.instructions:
        with servers("127.0.0.1") as ports:
            measure_instructions(ports, args.instructions)
        return
    with servers("127.0.0.1") as ports:
        if args.only in (None, "happy"):
            happy_path(ports, args, "127.0.0.1")
            happy_path(ports, args, NAME)
        if args.only in (None, "blackholed"):
            broken(ports, args, "blackholed first")
        if args.only in (None, "refused"):
            broken(ports, args, "refused first")
    if args.only in (None, "aaaa"):
        aaaa_lost(args)


if __name__ == "__main__":
    main()
