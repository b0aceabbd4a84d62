"""Memory held by each connection still in flight to a name with two addresses.

Run with ``python benchmarks/memory.py`` (``--help`` for options). A name
answers two IPv4 addresses at once (the fixed ``getaddrinfo`` of
``connect.py``); both are blackholed (their accept queues are full, so SYNs
are dropped), so every connection attempt stays in flight. COUNT connections
are started together, with a connection attempt delay of 1 s. Halfway
through the delay (the first attempt of each running) and again after it
(both attempts running), the memory that ``tracemalloc`` sees allocated,
minus what it saw before they started, is divided by COUNT. The connections
are then cancelled.

Measured for async_stagger's ``open_connection``, aiohappyeyeballs fed as
aiohttp feeds it (``loop.getaddrinfo``, then ``start_connection``; when it is
installed), asyncio's ``open_connection`` with ``happy_eyeballs_delay``, and
plain ``asyncio.open_connection`` (which tries one address at a time, so holds
one attempt: the floor, not a peer). Each figure includes the task the
benchmark runs the connection in, measured alone on the last line. Ratios
are to aiohappyeyeballs.

``--top N`` also lists, for async_stagger's ``open_connection``, the N
lines of code whose allocations each connection in flight holds most of
(each allocation charged to the innermost line of async_stagger's code it
was made under, or of the benchmark's when none).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import linecache
import socket
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from typing import Any

from async_stagger import connection
from connect import Connect, FixedAnswers

try:
    import aiohappyeyeballs
except ImportError:  # optional
    aiohappyeyeballs = None  # type: ignore[assignment]

#: Long enough that every connection started in one batch is still on its
#: first attempt at the first snapshot, even on a loaded machine.
DELAY = 1.0

AIOHE = "aiohappyeyeballs + open_connection"
HARNESS = "(the benchmark's task alone, in every figure)"


def clients() -> dict[str, Connect]:
    """The clients measured, each with the connection attempt delay DELAY."""

    async def ours(host: str, port: int) -> Any:
        return await connection.open_connection(host, port, delay=DELAY)

    async def asyncio_he(host: str, port: int) -> Any:
        return await asyncio.open_connection(host, port, happy_eyeballs_delay=DELAY)

    async def plain(host: str, port: int) -> Any:
        return await asyncio.open_connection(host, port)

    found: dict[str, Connect] = {"async_stagger open_connection": ours}
    if aiohappyeyeballs is not None:

        async def aiohe(host: str, port: int) -> Any:
            # A name, as aiohttp resolves it: loop.getaddrinfo, then the
            # answers to start_connection.
            loop = asyncio.get_running_loop()
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            sock = await aiohappyeyeballs.start_connection(
                infos, happy_eyeballs_delay=DELAY
            )
            return await asyncio.open_connection(sock=sock)

        found[AIOHE] = aiohe
    found["asyncio happy_eyeballs_delay"] = asyncio_he
    found["asyncio.open_connection (one address at a time)"] = plain

    async def harness(host: str, port: int) -> Any:
        # What every figure includes besides the connection: its task.
        await asyncio.get_running_loop().create_future()

    found[HARNESS] = harness
    return found


@contextlib.contextmanager
def blackholes(hosts: tuple[str, ...]) -> Iterator[int]:
    """Listeners on *hosts*, one port for all, whose accept queues are full:
    every further SYN to them is dropped. Yields the port."""
    listeners: list[socket.socket] = []
    fillers: list[socket.socket] = []
    try:
        port = 0
        for host in hosts:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listeners.append(sock)
            sock.bind((host, port))
            sock.listen(0)
            port = sock.getsockname()[1]
            for _ in range(3):
                filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                fillers.append(filler)
                filler.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    filler.connect((host, port))
        time.sleep(0.05)
        yield port
    finally:
        for sock in fillers + listeners:
            sock.close()


async def bytes_per_connection(
    connect: Connect,
    port: int,
    count: int,
    snapshots: dict[str, tracemalloc.Snapshot] | None = None,
) -> tuple[float, float]:
    """Start *count* connections to ``two.test``; the memory allocated since,
    per connection, while the first attempts run and while both do. With
    *snapshots*, also tracemalloc's snapshots: before (``""``) and at both
    moments."""

    def held(moment: str) -> int:
        if any(task.done() for task in tasks):
            failed = next(task for task in tasks if task.done())
            raise RuntimeError(f"a connection finished early: {failed!r}")
        gc.collect()
        if snapshots is not None:
            snapshots[moment] = tracemalloc.take_snapshot()
        return tracemalloc.get_traced_memory()[0] - before

    gc.collect()
    if snapshots is not None:
        snapshots[""] = tracemalloc.take_snapshot()
    before = tracemalloc.get_traced_memory()[0]
    tasks = [asyncio.ensure_future(connect("two.test", port)) for _ in range(count)]
    await asyncio.sleep(DELAY / 2)
    one = held("1st attempt running")
    await asyncio.sleep(DELAY)
    both = held("both running")
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return one / count, both / count


def by_line(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> Counter[str]:
    """Bytes allocated from *before* to *after*, by the innermost line of
    async_stagger's code each allocation was made under (else the innermost
    line of all)."""
    lines: Counter[str] = Counter()
    for stat in after.compare_to(before, "traceback"):
        frames = list(stat.traceback)[::-1]  # innermost first
        frame = next(
            (frame for frame in frames if "/async_stagger/" in frame.filename),
            frames[0],
        )
        code = linecache.getline(frame.filename, frame.lineno).strip()
        place = f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}"
        lines[f"{place} {code}"] += stat.size_diff
    return lines


def where(count: int, top: int) -> None:
    """Print the *top* lines of code whose allocations each of *count*
    connections of async_stagger's ``open_connection`` holds most of."""
    FixedAnswers.answers = {"two.test": ["127.0.0.4", "127.0.0.5"]}
    connect = clients()["async_stagger open_connection"]
    found: dict[str, tracemalloc.Snapshot] = {}
    tracemalloc.start(30)
    try:
        with (
            blackholes(("127.0.0.4", "127.0.0.5")) as port,
            asyncio.Runner(loop_factory=FixedAnswers) as runner,
        ):
            runner.run(bytes_per_connection(connect, port, 20))
            runner.run(bytes_per_connection(connect, port, count, found))
    finally:
        tracemalloc.stop()
    before = found.pop("")
    for moment, snapshot in found.items():
        print(f"async_stagger open_connection, {moment}: bytes per connection by line")
        for line, size in by_line(before, snapshot).most_common(top):
            print(f"  {size / count:7.0f}  {line[:100]}")


def measure(count: int, rounds: int) -> dict[str, tuple[float, float]]:
    """Bytes per in-flight connection (one attempt running, both running),
    least of *rounds*, by client."""
    FixedAnswers.answers = {"two.test": ["127.0.0.4", "127.0.0.5"]}
    results: dict[str, tuple[float, float]] = {}
    tracemalloc.start()
    with blackholes(("127.0.0.4", "127.0.0.5")) as port:
        for name, connect in clients().items():
            with asyncio.Runner(loop_factory=FixedAnswers) as runner:
                # A small first batch: lazy imports and caches are not
                # charged to the connections measured.
                runner.run(bytes_per_connection(connect, port, 20))
                figures = [
                    runner.run(bytes_per_connection(connect, port, count))
                    for _ in range(rounds)
                ]
            results[name] = (min(f[0] for f in figures), min(f[1] for f in figures))
    tracemalloc.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--top", type=int, default=0, metavar="N")
    args = parser.parse_args()
    results = measure(args.count, args.rounds)
    print(
        f"Python {sys.version.split()[0]}, asyncio: bytes allocated per connection"
        f" in flight, {args.count} connections to two blackholed addresses,"
        f" least of {args.rounds} rounds (tracemalloc)"
    )
    print(f"  {'':48s} {'1st attempt running':>24s} {'both running':>24s}")
    base = results.get(AIOHE)
    for name, figures in results.items():
        cells = []
        for index, value in enumerate(figures):
            ratio = f" ({value / base[index]:4.2f}x)" if base else ""
            cells.append(f"{value / 1000:7.2f} kB{ratio}")
        print(f"  {name:48s} {cells[0]:>24s} {cells[1]:>24s}")
    if base:
        print("  (ratios to aiohappyeyeballs)")
    if args.top:
        where(args.count, args.top)


if __name__ == "__main__":
    main()
