"""Benchmark: async_stagger.staggered_race against asyncio.staggered.

Runs, in one process, races of

* N attempts that all fail instantly (the schedule's worst case: every
  attempt starts the next at once), and
* N attempts where only the last succeeds, each earlier one failing instantly,

with both implementations, and prints microseconds per attempt and the ratio
(ours / CPython's; below 1.0 means we are faster). Sizes are doubled too, to
show that the cost per attempt stays flat (linear total time).

Usage: ``python benchmarks/race.py [--repeat 5] [--uvloop] [--eager]``

``--scaling`` instead times ours alone on N failing attempts with delay 0
for N from 1,000 to 100,000: the cost per attempt should stay flat, however
many exceptions the result holds.
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


async def _ours_delay_zero(fns: list[Callable[[], Awaitable[Any]]]) -> Any:
    return await staggered_race(fns, 0)


async def _cpython(fns: list[Callable[[], Awaitable[Any]]]) -> Any:
    return await asyncio.staggered.staggered_race(fns, 0.25)


# The clock _time_one reads: wall time, or CPU time for --scaling (its
# figures compare sizes, and a busy machine's waits would blur them).
_clock = time.perf_counter


def _time_one(
    runner: asyncio.Runner, impl: Callable[..., Awaitable[Any]], n: int, last_wins: bool
) -> float:
    fns = _factories(n, last_wins=last_wins)

    async def run() -> float:
        start = _clock()
        result = await impl(fns)
        elapsed = _clock() - start
        winner_index = result[1]
        expected = n - 1 if last_wins else None
        assert winner_index == expected, (impl, winner_index)
        return elapsed

    return runner.run(run())


def _measure(
    runner: asyncio.Runner,
    impl: Callable[..., Awaitable[Any]],
    n: int,
    last_wins: bool,
    repeat: int,
) -> float:
    """Best time per attempt, in microseconds."""
    best = min(_time_one(runner, impl, n, last_wins) for _ in range(repeat))
    return best / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    parser.add_argument(
        "--eager", action="store_true", help="eager task factory (3.12+)"
    )
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="ours only, delay 0, N failing attempts from 1,000 to 100,000",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="skip CPython's 10,000-attempt race (it is quadratic: minutes)",
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
    if args.scaling:
        global _clock
        _clock = time.process_time
        with asyncio.Runner(loop_factory=make_loop) as runner:
            print("CPU µs per attempt, N attempts failing instantly, delay 0")
            first = None
            for n in (1_000, 10_000, 100_000):
                ours = _measure(runner, _ours_delay_zero, n, False, args.repeat)
                first = first or ours
                print(f"  N={n:>7,} {ours:8.2f}   {ours / first:5.2f}x N=1,000")
        return
    print("µs per attempt (ratio = ours / CPython; below 1 means faster)")
    print(f"{'workload':<32} {'ours':>9} {'CPython':>10} {'ratio':>8}")
    cases = [
        ("all fail instantly", 1_000, False),
        ("all fail instantly", 2_000, False),
        ("all fail instantly", 10_000, False),
        ("all fail instantly", 20_000, False),
        ("last of N wins", 1_000, True),
        ("last of N wins", 2_000, True),
    ]
    with asyncio.Runner(loop_factory=make_loop) as runner:
        for label, n, last_wins in cases:
            ours = _measure(runner, _ours, n, last_wins, args.repeat)
            if n > 10_000 or (n == 10_000 and args.quick):
                theirs_text, ratio_text = "-", "-"
            else:
                # CPython's race costs O(N) per attempt: one run is plenty.
                repeat = 1 if n >= 10_000 else args.repeat
                theirs = _measure(runner, _cpython, n, last_wins, repeat)
                theirs_text = f"{theirs:.2f}"
                ratio_text = f"{ours / theirs:.3f}"
            print(
                f"{label + f' (N={n:,})':<32} {ours:>9.2f} {theirs_text:>10}"
                f" {ratio_text:>8}"
            )


if __name__ == "__main__":
    main()
