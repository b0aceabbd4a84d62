"""Test-suite wiring: network isolation, loop flavours, leak checks, the
network lab.

No packet leaves the machine. Before anything else the session moves into a
network namespace of its own that has only loopback (``lab/isolation.py``;
the report header says how, ``test_lab_isolation.py`` fails where it could
not). Within it the rule still holds for every test: traffic goes only to
loopback (127.0.0.0/8, ::1) or to addresses inside a namespace the lab made,
and names are resolved only through a fake ``getaddrinfo`` (``lab.getaddrinfo``)
or inside a lab namespace (``netns``), never by the system resolver out here,
not even ``localhost``: on a machine whose hosts file lacks ``::1 localhost``
its AAAA lookup is a DNS query.

Coroutine tests need no decorator: each runs on a fresh loop once per flavour
(see ``loops.py``). After each test the suite checks that no task is left
pending, that the loop reported no unhandled error ("Task exception was never
retrieved" and friends), and that the process holds exactly the file
descriptors it held before: a leak fails the test that caused it. Garbage
that warns when collected (ResourceWarning, "coroutine ... was never
awaited") fails its module.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from async_stagger.history import ConnectionHistory, set_shared_history
from lab.isolation import install_guard, isolate
from loops import FLAVOURS, VIRTUAL_FLAVOURS, loop_factory

pytest_plugins = ["lab.plugin"]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # First thing, while the process has one thread: every thread and
    # subprocess started later inherits the namespace.
    if not isolate().isolated:
        install_guard()


def pytest_report_header(config: pytest.Config) -> str:
    isolation = isolate()
    if isolation.isolated:
        return f"network: {isolation.how}"
    return f"network: {isolation.how}; in-process guard against lookups instead"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if not inspect.iscoroutinefunction(metafunc.function):
        return
    virtual = metafunc.definition.get_closest_marker("virtual_clock") is not None
    flavours = VIRTUAL_FLAVOURS if virtual else FLAVOURS
    if (
        metafunc.definition.get_closest_marker("also_on_happy_eyeballs_uvloop")
        and not virtual
        and "uvloop" in flavours
    ):
        flavours = [*flavours, "happy_eyeballs_uvloop"]
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
    checked = False

    def report(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # After the check below, what the loop still reports (a future's
        # "exception was never retrieved" when the collector frees it) is
        # failed by the leak checks instead of being lost.
        if checked:
            _late_loop_errors.append(f"{context.get('message')}: {context!r}")
        else:
            errors.append(context)

    async def main() -> Any:
        asyncio.get_running_loop().set_exception_handler(report)
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
    checked = True
    if errors:
        pytest.fail(f"the event loop reported errors: {errors!r}")
    return result


#: Errors event loops reported after their test's check, not yet failed.
_late_loop_errors: list[str] = []


def _fail_on_late_loop_errors(culprit: str) -> None:
    if _late_loop_errors:
        late = list(_late_loop_errors)
        _late_loop_errors.clear()
        pytest.fail(f"{culprit}: an event loop reported errors late: {late}")


def _open_fds() -> set[int]:
    # The listing shows the descriptor it was made through, closed again by
    # the time it returns: left in a census taken before a test, that number
    # would hide a socket the test leaks on it.
    return {fd for fd in map(int, os.listdir("/proc/self/fd")) if _is_open(fd)}


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves file descriptors open.

    The census needs no garbage collection before the test: the previous
    test's check left only descriptors that were open before it. After the
    test, only when the census differs, a collection (an unreachable cycle may
    still hold a socket) and a second census tell a real leak from garbage.
    Collecting twice per test instead cost three quarters of the suite's time
    (measured on 3.11); ``--gc-each-test`` restores it, to find which test of
    a module :func:`no_garbage_warnings` blamed.
    """
    each_test = request.config.getoption("gc_each_test")
    if each_test:
        gc.collect()
    before = _open_fds()
    yield
    if each_test:
        _collect_failing_on_warnings(f"test {request.node.nodeid}")
    leaked = _open_fds() - before
    if leaked:
        gc.collect()
        leaked = _open_fds() - before
    if leaked:
        details = {fd: _describe(fd) for fd in sorted(leaked)}
        pytest.fail(f"file descriptors leaked by the test: {details}")
    _fail_on_late_loop_errors("the test")


@pytest.fixture(autouse=True, scope="module")
def no_garbage_warnings(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a module whose garbage warns when collected: an unclosed
    transport's ResourceWarning, "coroutine ... was never awaited", an
    exception in ``__del__``. Objects in reference cycles only warn when the
    collector frees them, so once per module a collection makes them speak,
    and they are blamed on the module (``--gc-each-test`` names the test)."""
    yield
    _collect_failing_on_warnings(f"a test in {request.node.nodeid}")


def _collect_failing_on_warnings(culprit: str) -> None:
    unraisable: list[str] = []
    previous_hook = sys.unraisablehook

    def record(report: Any) -> None:
        unraisable.append(
            f"{report.err_msg or 'Exception ignored in'}: "
            f"{report.object!r}: {report.exc_value!r}"
        )

    sys.unraisablehook = record
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gc.collect()
    finally:
        sys.unraisablehook = previous_hook
    _fail_on_late_loop_errors(culprit)
    problems = [f"{w.category.__name__}: {w.message}" for w in caught] + unraisable
    if problems:
        pytest.fail(
            f"{culprit} left garbage that warned when collected: {problems}",
            pytrace=False,
        )


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--gc-each-test",
        action="store_true",
        help="collect garbage around every test (slow), to name the test whose"
        " garbage warned instead of its module",
    )


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
