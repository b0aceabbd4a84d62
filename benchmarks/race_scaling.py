"""Whether a race's cost per attempt stays flat as the race grows.

Run with ``python benchmarks/race_scaling.py`` (``--help`` for options). It
races N attempts that all fail at once, with delay 0 (every attempt starts as
soon as it is pulled), for N from 1,000 to 100,000, and prints microseconds
per attempt (CPU time), the same with the cyclic garbage collector disabled
during the races, and the growth from the smallest to the largest N (flat is
1.0). CPython's ``asyncio.staggered.staggered_race`` runs the smallest N
only: its cost per attempt grows with N, so larger races take minutes.

Measured alike at every N: each figure is for the same number of attempts
(the largest N: 100 races of 1,000 one after the other, 10 of 10,000, one of
100,000), so the smaller races pay their share of the collections their
allocations trigger in a program that keeps racing, as the largest does; one
race runs first to warm up; the rounds go through the sizes in turn, so a
change of load on the machine touches every size alike; each figure is the
median of the rounds, with their spread (least to most) beside it.

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
from statistics import median
from typing import Any, NamedTuple

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
    race: Callable[[Factories], Awaitable[Any]],
    count: int,
    *,
    collector: bool,
    races: int = 1,
) -> tuple[float, float, float]:
    """*races* races of *count* failing attempts, one after the other on a
    fresh loop, with the cyclic collector on or off during them: seconds
    per attempt, of them in the collector, and the objects the collector
    tracks per attempt after a race (the last one)."""

    async def run() -> tuple[float, float, float]:
        factories: Factories = [_fail] * count
        gc.collect()
        clock = _CollectorClock()
        gc.callbacks.append(clock)
        elapsed = 0.0
        kept = 0.0
        try:
            for _ in range(races):
                tracked = len(gc.get_objects())
                if not collector:
                    gc.disable()
                try:
                    # CPU time of this thread: the race is all computation,
                    # and this figure is what other processes on the machine
                    # move least.
                    start = time.thread_time()
                    result = await race(factories)
                    elapsed += time.thread_time() - start
                finally:
                    gc.enable()
                assert result[1] is None, "an attempt that fails won"
                assert len(result[2]) == count, "not every attempt ran"
                kept = (len(gc.get_objects()) - tracked) / count
                del result
        finally:
            gc.callbacks.remove(clock)
        return elapsed / (count * races), clock.seconds / (count * races), kept

    with asyncio.Runner() as runner:
        return runner.run(run())


class Figure(NamedTuple):
    """One size's figures over the rounds, in µs per attempt."""

    count: int
    ours: list[float]
    in_collector: list[float]
    ours_off: list[float]
    kept: float


def scaling(sizes: list[int], rounds: int) -> list[Figure]:
    """By size: µs per attempt of our race with the collector (and of them
    in the collector), without it, each round's, and the objects kept per
    attempt. Every size runs as many attempts as the largest."""
    largest = max(sizes)
    seconds_per_attempt(_ours, min(sizes), collector=True)  # warm-up
    figures = [Figure(count, [], [], [], 0.0) for count in sizes]
    for _ in range(rounds):
        for index, figure in enumerate(figures):
            races = max(1, largest // figure.count)
            ours, in_collector, kept = seconds_per_attempt(
                _ours, figure.count, collector=True, races=races
            )
            ours_off = seconds_per_attempt(
                _ours, figure.count, collector=False, races=races
            )[0]
            figure.ours.append(ours * 1e6)
            figure.in_collector.append(in_collector * 1e6)
            figure.ours_off.append(ours_off * 1e6)
            figures[index] = figure._replace(kept=kept)
    return figures


def _spread(values: list[float]) -> str:
    return f"{min(values):.1f}-{max(values):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(size) for size in text.split(",")],
        default=[1_000, 10_000, 100_000],
        help="comma-separated attempt counts (default 1000,10000,100000)",
    )
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(
        f"Python {sys.version.split()[0]}, asyncio: races of N attempts that all"
        f" fail at once, delay 0; µs per attempt, median of {args.rounds} rounds"
        f" (least-most), each of {max(args.sizes):,} attempts"
    )
    print(
        f"  {'N':>9} {'ours':>16} {'in gc':>7} {'ours, no gc':>16}"
        f" {'kept/attempt':>13} {'CPython':>10}"
    )
    figures = scaling(args.sizes, args.rounds)
    for figure in figures:
        theirs = "-"
        if figure is figures[0]:
            cpython = seconds_per_attempt(_cpython, figure.count, collector=True)
            theirs = f"{cpython[0] * 1e6:,.0f}"
        ours = f"{median(figure.ours):.1f} ({_spread(figure.ours)})"
        ours_off = f"{median(figure.ours_off):.1f} ({_spread(figure.ours_off)})"
        print(
            f"  {figure.count:>9,} {ours:>16} {median(figure.in_collector):>7.1f}"
            f" {ours_off:>16} {figure.kept:>13.1f} {theirs:>10}"
        )
    first, last = figures[0], figures[-1]
    by_round = [b / a for a, b in zip(first.ours, last.ours, strict=True)]
    print(
        f"  growth {first.count:,} -> {last.count:,}:"
        f" {median(last.ours) / median(first.ours):.2f}x"
        f" (rounds {min(by_round):.2f}-{max(by_round):.2f}x;"
        f" {median(last.ours_off) / median(first.ours_off):.2f}x without the"
        " collector; target: within 1.2x)"
    )


if __name__ == "__main__":
    main()
