"""Benchmark: async_stagger.staggered_race against asyncio.staggered.

Runs, in one process, races of

* N attempts that all fail instantly (the schedule's worst case: every
  attempt starts the next at once), and
* N attempts where only the last succeeds, each earlier one failing instantly,

with both implementations, and prints microseconds per attempt and the ratio
(ours / CPython's; below 1.0 means we are faster). Sizes are doubled too, to
show that the cost per attempt stays flat (linear total time).

Usage: ``python benchmarks/race.py [--repeat 5] [--uvloop] [--eager]``
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.staggered
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from async_stagger import staggered_race


async def _fail() -> None:
    raise OSError("refused")


async def _succeed() -> str:
    return "ok"


def _factories(n: int, *, last_wins: bool) -> list[Callable[[], Awaitable[Any]]]:
    fns: list[Callable[[], Awaitable[Any]]] = [_fail] * n
    if last_wins:
        fns[-1] = _succeed
    return fns


async def _ours(fns: list[Callable[[], Awaitable[Any]]]) -> Any:
    return await staggered_race(fns, 0.25)


async def _cpython(fns: list[Callable[[], Awaitable[Any]]]) -> Any:
    return await asyncio.staggered.staggered_race(fns, 0.25)


def _time_one(
    runner: asyncio.Runner, impl: Callable[..., Awaitable[Any]], n: int, last_wins: bool
) -> float:
    fns = _factories(n, last_wins=last_wins)

    async def run() -> float:
        start = time.perf_counter()
        result = await impl(fns)
        elapsed = time.perf_counter() - start
        winner_index = result[1]
        expected = n - 1 if last_wins else None
        assert winner_index == expected, (impl, winner_index)
        return elapsed

    return runner.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    parser.add_argument(
        "--eager", action="store_true", help="eager task factory (3.12+)"
    )
    args = parser.parse_args()

    def make_loop() -> asyncio.AbstractEventLoop:
        if args.uvloop:
            import uvloop

            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        else:
            loop = asyncio.new_event_loop()
        if args.eager:
            loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
        return loop

    flavour = "uvloop" if args.uvloop else "asyncio"
    if args.eager:
        flavour += " + eager tasks"
    print(f"Python {sys.version.split()[0]}, {flavour}; best of {args.repeat}")
    print(f"{'workload':<34} {'ours µs/att':>12} {'CPython µs/att':>15} {'ratio':>7}")
    cases = [
        ("all fail instantly", 10_000, False),
        ("all fail instantly", 20_000, False),
        ("last of N wins", 1_000, True),
        ("last of N wins", 2_000, True),
    ]
    with asyncio.Runner(loop_factory=make_loop) as runner:
        for label, n, last_wins in cases:
            ours, theirs = [], []
            for _ in range(args.repeat):
                ours.append(_time_one(runner, _ours, n, last_wins))
                theirs.append(_time_one(runner, _cpython, n, last_wins))
            ours_us = min(ours) / n * 1e6
            theirs_us = min(theirs) / n * 1e6
            print(
                f"{label + f' (N={n:,})':<34} {ours_us:>12.2f} {theirs_us:>15.2f}"
                f" {ours_us / theirs_us:>7.2f}"
            )


if __name__ == "__main__":
    main()
