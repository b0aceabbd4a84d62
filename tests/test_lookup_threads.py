"""The library's lookup threads: daemon threads, bounded in number, used for
the system's getaddrinfo unless the loop's getaddrinfo was replaced."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import pytest

from async_stagger import _lookup_threads
from async_stagger._lookup_threads import MAX_THREADS, _DaemonThreads
from async_stagger.resolvers import shared_getaddrinfo


def test_lookup_threads_are_daemons_and_never_more_than_the_bound() -> None:
    pool = _DaemonThreads()
    release = threading.Event()
    ran: list[bool] = []
    seen: set[threading.Thread] = set()
    lock = threading.Lock()

    def job() -> None:
        with lock:
            seen.add(threading.current_thread())
        release.wait(10)
        ran.append(True)

    for _ in range(MAX_THREADS + 5):
        pool.submit(job)
    assert pool._threads == MAX_THREADS
    release.set()
    for _ in range(1000):
        if len(ran) == MAX_THREADS + 5:
            break
        threading.Event().wait(0.01)
    assert len(ran) == MAX_THREADS + 5  # the queued ones ran too
    assert len(seen) <= MAX_THREADS
    assert all(thread.daemon for thread in seen)


def _wait_for(condition: Any) -> None:
    for _ in range(1000):
        if condition():
            return
        threading.Event().wait(0.01)
    raise AssertionError("timed out")


def test_a_thread_waiting_for_work_takes_the_next_job_and_no_thread_starts() -> None:
    pool = _DaemonThreads()
    ran: list[threading.Thread] = []
    pool.submit(lambda: ran.append(threading.current_thread()))
    _wait_for(lambda: pool._idle == 1)
    pool.submit(lambda: ran.append(threading.current_thread()))
    _wait_for(lambda: len(ran) == 2 and pool._idle == 1)
    assert ran[0] is ran[1]
    assert pool._threads == 1


def test_a_thread_idle_for_too_long_ends_and_a_later_job_starts_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_lookup_threads, "_IDLE_SECONDS", 0.05)
    pool = _DaemonThreads()
    ran: list[threading.Thread] = []
    pool.submit(lambda: ran.append(threading.current_thread()))
    _wait_for(lambda: pool._threads == 0)
    assert pool._idle == 0
    ran[0].join(5)
    assert not ran[0].is_alive()
    pool.submit(lambda: ran.append(threading.current_thread()))
    _wait_for(lambda: len(ran) == 2)
    assert ran[1] is not ran[0]


async def test_system_lookups_leave_the_default_executor_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # asyncio.run waits for the default executor at shutdown: a lookup left
    # there by a race that no longer needs it would hold up the program.
    loop = asyncio.get_running_loop()
    submitted: list[Any] = []
    real_submit = _lookup_threads._threads.submit
    monkeypatch.setattr(
        _lookup_threads._threads,
        "submit",
        lambda job: (submitted.append(job), real_submit(job)),
    )

    def no_executor(*args: Any) -> Any:
        raise AssertionError("the default executor was used")

    monkeypatch.setattr(loop, "run_in_executor", no_executor)
    answer = await shared_getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)
    assert answer == socket.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)
    assert len(submitted) == 1
