"""Whether a race's cost per attempt stays flat as the race grows.

Run with ``python benchmarks/race_scaling.py`` (``--help`` for options). It
races N attempts that all fail at once, with delay 0 (every attempt starts as
soon as it is pulled), for N from 1,000 to 100,000, and prints microseconds
per attempt (CPU time, best of the rounds), the same with the cyclic
garbage collector disabled during the race, and the growth from the smallest
to the largest N (flat is 1.0). CPython's ``asyncio.staggered.staggered_race``
runs the smallest N only: its cost per attempt grows with N, so larger races
take minutes.

A race keeps every attempt's exception (and so its traceback and frames)
for its result, and the collector walks them all again at each full
collection: that is what the column without the collector separates out.
Two more columns say why: the CPU time spent in the collector during the
race (``gc.callbacks``), and how many objects the collector tracks per
attempt once the race is over (``gc.get_objects()``): the exception, its
traceback entry and the attempt's frame are the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.staggered
import gc
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from async_stagger import staggered_race

Factories = list[Callable[[], Awaitable[Any]]]


async def _fail() -> None:
    raise OSError("refused")


async def _ours(factories: Factories) -> Any:
    return await staggered_race(factories, 0)


async def _cpython(factories: Factories) -> Any:
    return await asyncio.staggered.staggered_race(factories, 0)


class _CollectorClock:
    """CPU time spent in the cyclic collector, told by ``gc.callbacks``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.thread_time()
        else:
            self.seconds += time.thread_time() - self._started


def seconds_per_attempt(
    race: Callable[[Factories], Awaitable[Any]], count: int, *, collector: bool
) -> tuple[float, float, float]:
    """One race of *count* failing attempts on a fresh loop, with the cyclic
    collector on or off during the race: seconds per attempt, of them in
    the collector, and the objects the collector tracks per attempt after
    the race."""

    async def run() -> tuple[float, float, float]:
        factories: Factories = [_fail] * count
        gc.collect()
        tracked = len(gc.get_objects())
        clock = _CollectorClock()
        gc.callbacks.append(clock)
        if not collector:
            gc.disable()
        try:
            # CPU time of this thread: the race is all computation, and
            # this figure is what other processes on the machine move least.
            start = time.thread_time()
            result = await race(factories)
            elapsed = time.thread_time() - start
        finally:
            gc.enable()
            gc.callbacks.remove(clock)
        assert result[1] is None, "an attempt that fails won"
        assert len(result[2]) == count, "not every attempt ran"
        kept = (len(gc.get_objects()) - tracked) / count
        del result
        return elapsed / count, clock.seconds / count, kept

    with asyncio.Runner() as runner:
        return runner.run(run())


def scaling(
    sizes: list[int], rounds: int
) -> list[tuple[int, float, float, float, float]]:
    """By size: µs per attempt of our race with the collector (and of them
    in the collector), without it, and the objects kept per attempt."""
    rows = []
    for count in sizes:
        best, in_collector, kept = min(
            seconds_per_attempt(_ours, count, collector=True) for _ in range(rounds)
        )
        best_off = min(
            seconds_per_attempt(_ours, count, collector=False)[0] for _ in range(rounds)
        )
        rows.append((count, best * 1e6, in_collector * 1e6, best_off * 1e6, kept))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(size) for size in text.split(",")],
        default=[1_000, 10_000, 100_000],
        help="comma-separated attempt counts (default 1000,10000,100000)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(
        f"Python {sys.version.split()[0]}, asyncio: races of N attempts that all"
        f" fail at once, delay 0; µs per attempt, best of {args.rounds}"
    )
    print(
        f"  {'N':>9} {'ours':>9} {'in gc':>7} {'ours, no gc':>12}"
        f" {'kept/attempt':>13} {'CPython':>10}"
    )
    rows = scaling(args.sizes, args.rounds)
    for count, ours, in_collector, ours_off, kept in rows:
        theirs = "-"
        if count == rows[0][0]:
            cpython = seconds_per_attempt(_cpython, count, collector=True)[0] * 1e6
            theirs = f"{cpython:,.0f}"
        print(
            f"  {count:>9,} {ours:>9.1f} {in_collector:>7.1f} {ours_off:>12.1f}"
            f" {kept:>13.1f} {theirs:>10}"
        )
    first, last = rows[0], rows[-1]
    print(
        f"  growth {first[0]:,} -> {last[0]:,}: {last[1] / first[1]:.2f}x"
        f" ({last[3] / first[3]:.2f}x without the collector; target: within 1.2x)"
    )


if __name__ == "__main__":
    main()
