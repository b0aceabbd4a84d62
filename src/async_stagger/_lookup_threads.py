"""Name lookups run on daemon threads of our own, so that a lookup nobody waits
for any more never holds up the end of the loop or of the program.

A lookup cannot be stopped once ``getaddrinfo`` has been called. The race
abandons the slow family's lookup as soon as it has a winner (RFC 8305 §3:
a lost AAAA answer must not cost the resolver's timeout), but a lookup in
the loop's default executor would still hold up ``asyncio.run``, which waits
for that executor at shutdown, and the interpreter, which joins its threads
at exit: the connection is made in 0.05 s and the program ends only when
the resolver's timeout (seconds) is over. A daemon thread is simply left
behind.

The threads are few and reused: at most as many as asyncio's default
executor would start (``min(32, cpu_count + 4)``); lookups beyond that wait
in a queue. A thread idle for a while ends.
"""

from __future__ import annotations

import asyncio
import os
import queue
import socket
import threading
from collections.abc import Callable
from typing import Any

#: At most this many lookup threads: asyncio's default executor's bound.
MAX_THREADS = min(32, (os.cpu_count() or 1) + 4)

# Seconds an idle thread waits for the next lookup before it ends.
_IDLE_SECONDS = 30.0


class _DaemonThreads:
    """A small pool of daemon threads running one job at a time each."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        # Both counts under one plain lock (C). One idle token per thread
        # waiting for a job: a new job takes one instead of starting a
        # thread. A threading.Semaphore keeps the same count through a
        # Condition written in Python: with it (and contextlib.suppress in
        # look_up_in_daemon_thread), a connection to a name, whose two
        # lookups each pass a submit and a return to idle, cost about 20k
        # instructions more: 742.0k and 746.9k against 726.0k and 721.1k
        # in two pairs of runs (3.11, benchmarks/connect.py's system
        # getaddrinfo row; callgrind counts every thread, which makes the
        # counts move by ~0.7 % between runs).
        self._lock = threading.Lock()
        self._idle = 0
        self._threads = 0

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)
        with self._lock:
            if self._idle:
                self._idle -= 1
                return  # a waiting thread takes it
            if self._threads >= MAX_THREADS:
                return  # queued: the next thread to finish takes it
            self._threads += 1
        threading.Thread(target=self._work, name="getaddrinfo", daemon=True).start()

    def _work(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=_IDLE_SECONDS)
            except queue.Empty:
                # Leave, unless a job is on its way to us (it took our token).
                with self._lock:
                    if self._idle:
                        self._idle -= 1
                        self._threads -= 1
                        return
                continue
            job()
            del job  # nothing of a finished lookup stays referenced
            with self._lock:
                self._idle += 1


_threads = _DaemonThreads()


def _forget_threads_in_child() -> None:
    # A forked child has none of its parent's threads.
    global _threads
    _threads = _DaemonThreads()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_threads_in_child)


def look_up_in_daemon_thread(
    loop: asyncio.AbstractEventLoop,
    deliver: Callable[[list[tuple[Any, ...]] | None, BaseException | None], None],
    host: str | bytes | None,
    port: str | bytes | int | None,
    family: int = 0,
    type: int = 0,
    proto: int = 0,
    flags: int = 0,
) -> None:
    """Run ``socket.getaddrinfo`` on one of the daemon threads and call
    ``deliver(result, None)`` or ``deliver(None, error)`` on *loop* with its
    outcome (not at all if the loop has closed meanwhile).

    No future and no task: the shared lookups settle straight from
    *deliver* (see ``_lookup_sharing``), which spares a lookup of the
    system's ``getaddrinfo`` a task, two coroutines and a future.
    """

    def look_up() -> None:
        result: list[tuple[Any, ...]] | None = None
        error: BaseException | None = None
        try:
            result = socket.getaddrinfo(host, port, family, type, proto, flags)
        except Exception as exc:
            error = exc
        # try/except, not contextlib.suppress: its three calls cost ~3.9k
        # instructions more per use, raising or not (3.11), twice per
        # connection to a name.
        try:  # noqa: SIM105
            loop.call_soon_threadsafe(deliver, result, error)
        except RuntimeError:
            pass  # the loop is closed, nobody is waiting any more

    _threads.submit(look_up)


async def getaddrinfo_in_daemon_thread(
    host: str | bytes | None,
    port: str | bytes | int | None,
    family: int = 0,
    type: int = 0,
    proto: int = 0,
    flags: int = 0,
) -> list[tuple[Any, ...]]:
    """``socket.getaddrinfo`` on one of the library's daemon threads.

    Like ``loop.getaddrinfo``, but a lookup abandoned (cancelled) while the
    system resolver still waits for an answer delays neither
    ``asyncio.run`` nor the interpreter's exit: its thread is left to
    finish on its own, and its answer is dropped.

    Args:
        host: As for :func:`socket.getaddrinfo`.
        port: As for :func:`socket.getaddrinfo`.
        family: As for :func:`socket.getaddrinfo`.
        type: As for :func:`socket.getaddrinfo`.
        proto: As for :func:`socket.getaddrinfo`.
        flags: As for :func:`socket.getaddrinfo`.

    Returns:
        What :func:`socket.getaddrinfo` returns.

    Raises:
        socket.gaierror: The lookup failed.

    .. versionadded:: 1.0
    """
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[list[tuple[Any, ...]]] = loop.create_future()

    def deliver(
        result: list[tuple[Any, ...]] | None, error: BaseException | None
    ) -> None:
        if answer.done():
            return  # the caller gave up waiting (cancelled)
        if error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(result or [])

    look_up_in_daemon_thread(loop, deliver, host, port, family, type, proto, flags)
    return await answer
