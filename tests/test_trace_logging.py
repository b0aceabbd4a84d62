"""Trace events as log lines: the ``async_stagger`` logger and LogTrace."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import async_stagger
from async_stagger.cli import Timeline
from async_stagger.trace import LOGGER, LogTrace, TraceEvent, tracing_active
from lab import Lab


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """Records the ``async_stagger`` logger emits while it is enabled for
    DEBUG; restores its level afterwards."""
    collected: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            collected.append(record)

    handler = Collect(logging.DEBUG)
    LOGGER.addHandler(handler)
    level = LOGGER.level
    try:
        yield collected
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.setLevel(level)


async def test_events_are_logged_in_the_tracers_words_when_debug_is_on(
    lab: Lab, records: list[logging.LogRecord]
) -> None:
    dead, server = lab.refusing("127.0.0.2"), lab.working("127.0.0.3")

    async def resolver(host: Any, port: Any, **_: Any) -> AsyncIterator[Any]:
        yield dead.addrinfo
        yield server.addrinfo

    LOGGER.setLevel(logging.DEBUG)
    events: list[TraceEvent] = []
    sock = await async_stagger.create_connected_sock(
        "h.test", 0, resolver=resolver, trace=events.append
    )
    sock.close()
    timeline = Timeline(io.StringIO())
    for event in events:
        timeline(event)
    # One line per event, with the command-line tracer's words; the trace=
    # callback got the same events.
    assert [r.getMessage() for r in records] == [timeline.describe(e) for e in events]
    assert all(r.levelno == logging.DEBUG for r in records)
    assert [r.trace_event for r in records] == events  # type: ignore[attr-defined]
    assert f"attempt #1 to 127.0.0.3:{server.port} connected: the winner" in [
        r.getMessage() for r in records
    ]


async def test_nothing_is_traced_when_the_logger_is_not_enabled_for_debug(
    lab: Lab, records: list[logging.LogRecord]
) -> None:
    server = lab.working("127.0.0.1")
    traced: list[bool] = []

    async def resolver(host: Any, port: Any, **_: Any) -> AsyncIterator[Any]:
        traced.append(tracing_active())
        yield server.addrinfo

    LOGGER.setLevel(logging.INFO)
    sock = await async_stagger.create_connected_sock("h.test", 0, resolver=resolver)
    sock.close()
    assert records == []
    assert traced == [False]  # no event is even built


async def test_log_trace_writes_to_the_logger_given(lab: Lab) -> None:
    server = lab.working("127.0.0.1")
    logger = logging.getLogger("tests.trace_logging.mine")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        _, writer = await async_stagger.open_connection(
            server.host, server.port, trace=LogTrace(logger, logging.INFO)
        )
        writer.close()
        await writer.wait_closed()
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().splitlines() == [
        "lookup IPv4 (A) answered: 127.0.0.1",
        f"attempt #0 to 127.0.0.1:{server.port} started",
        f"attempt #0 to 127.0.0.1:{server.port} connected: the winner",
    ]


def test_log_trace_takes_a_logger_name_and_says_what_it_is() -> None:
    trace = LogTrace("tests.trace_logging.named")
    assert trace.logger is logging.getLogger("tests.trace_logging.named")
    assert repr(trace) == "LogTrace('tests.trace_logging.named', DEBUG)"
    assert LogTrace().logger is logging.getLogger("async_stagger")
