"""Test-suite wiring: loop flavours, leak checks, the network lab.

Coroutine tests need no decorator: each runs on a fresh loop once per flavour
(see ``loops.py``). After each test the suite checks that no task is left
pending, that the loop reported no unhandled error ("Task exception was never
retrieved" and friends), and that the process holds exactly the file
descriptors it held before: a leak fails the test that caused it.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
from collections.abc import Iterator
from typing import Any

import pytest

from async_stagger.history import ConnectionHistory, set_shared_history
from loops import FLAVOURS, VIRTUAL_FLAVOURS, loop_factory

pytest_plugins = ["lab.plugin"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if not inspect.iscoroutinefunction(metafunc.function):
        return
    virtual = metafunc.definition.get_closest_marker("virtual_clock") is not None
    flavours = VIRTUAL_FLAVOURS if virtual else FLAVOURS
    if "loop_flavour" not in metafunc.fixturenames:
        metafunc.fixturenames.append("loop_flavour")
    metafunc.parametrize("loop_flavour", flavours)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    test = pyfuncitem.obj
    if not inspect.iscoroutinefunction(test):
        return None
    kwargs = {
        name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames
    }
    flavour = pyfuncitem.callspec.params["loop_flavour"]
    virtual = pyfuncitem.get_closest_marker("virtual_clock") is not None
    run_on_loop(test(**kwargs), flavour, virtual=virtual)
    return True


def run_on_loop(coro: Any, flavour: str, *, virtual: bool = False) -> Any:
    """Run *coro* on a new loop of *flavour*, failing on loop-level errors and
    on tasks left pending."""
    errors: list[dict[str, Any]] = []

    async def main() -> Any:
        asyncio.get_running_loop().set_exception_handler(
            lambda loop, context: errors.append(context)
        )
        result = await coro
        me = asyncio.current_task()
        leftover = [task for task in asyncio.all_tasks() if task is not me]
        if leftover:
            for task in leftover:
                task.cancel()
            await asyncio.gather(*leftover, return_exceptions=True)
            pytest.fail(f"tasks left pending by the test: {leftover!r}")
        return result

    with asyncio.Runner(loop_factory=loop_factory(flavour, virtual=virtual)) as runner:
        result = runner.run(main())
    if errors:
        pytest.fail(f"the event loop reported errors: {errors!r}")
    return result


def _open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail a test that leaves file descriptors open (or lets ResourceWarning
    and "never awaited" warnings escape: they are errors here)."""
    gc.collect()
    before = _open_fds()
    yield
    gc.collect()
    leaked = _open_fds() - before
    # The directory listing itself used a descriptor that is now closed, so a
    # descriptor that is still open after collection is a real leak.
    leaked = {fd for fd in leaked if _is_open(fd)}
    if leaked:
        details = {fd: _describe(fd) for fd in sorted(leaked)}
        pytest.fail(f"file descriptors leaked by the test: {details}")


@pytest.fixture(autouse=True)
def fresh_shared_history() -> Iterator[ConnectionHistory]:
    """Each test starts with an empty shared connection history: what one
    test's connections learned must not reorder or retime the next test's."""
    history = ConnectionHistory()
    previous = set_shared_history(history)
    yield history
    set_shared_history(previous)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _describe(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"


def pytest_sessionstart(session: pytest.Session) -> None:
    # Some loops open process-wide descriptors once, on first use (uvloop's
    # wake-up pipe): open them before any test takes its descriptor census.
    for flavour in FLAVOURS:
        run_on_loop(asyncio.sleep(0), flavour)
