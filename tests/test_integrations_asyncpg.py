"""asyncpg on the Happy Eyeballs event loop, against a real PostgreSQL server.

asyncpg connects through ``loop.create_connection(host, port)``, so the loop
alone gives it Happy Eyeballs. One server serves the module (starting one
costs seconds: ``initdb`` and the postmaster): a throw-away cluster in a
temporary directory, listening on a loopback address of its own in the
session's network namespace, started as the ``postgres`` system user when
the suite runs as root (PostgreSQL refuses to run as root). Names resolve
through the lab's scripted ``getaddrinfo``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from async_stagger import TraceEvent
from lab import Endpoint, Lab
from lab.postgres import USER, PostgresUnavailable, postgres_server
from test_eventloop import FACTORIES, QUICK, attempts, run

asyncpg = pytest.importorskip("asyncpg")


@pytest.fixture(scope="module")
def postgres() -> Iterator[Endpoint]:
    """A PostgreSQL server on a loopback address of its own, trusting
    connections of user ``test``, gone at teardown with its files."""
    # A lab for the address and port only: the endpoints each test makes
    # come from its own ``lab``, closed when the test ends.
    with Lab() as lab, contextlib.ExitStack() as stack:
        host = lab.ipv4_address()
        port = lab.free_port()
        try:
            stack.enter_context(postgres_server(host, port))
        except PostgresUnavailable as reason:
            if os.environ.get("CI"):
                pytest.fail(f"{reason} (.ci/run installs postgresql)")
            pytest.skip(f"{reason} (apt-get install postgresql)")
        yield Endpoint(socket.AF_INET, host, port)


def names_for(lab: Lab, first: Endpoint, server: Endpoint) -> Any:
    return lab.getaddrinfo({"db.lab.test": [first, server]})


async def query_once(port: int) -> tuple[Any, float]:
    start = time.monotonic()
    connection = await asyncpg.connect(
        host="db.lab.test", port=port, user=USER, database="postgres"
    )
    took = time.monotonic() - start
    try:
        value = await connection.fetchval("SELECT $1::int + 1", 41)
    finally:
        await connection.close()
    return value, took


@pytest.mark.parametrize("flavour", FACTORIES)
def test_asyncpg_connects_past_a_blackholed_first_address(
    flavour: str, lab: Lab, postgres: Endpoint
) -> None:
    blackholed = lab.blackholed(lab.ipv4_address(), postgres.port)
    events: list[TraceEvent] = []
    value, took = run(
        query_once(postgres.port),
        flavour,
        getaddrinfo=names_for(lab, blackholed, postgres),
        trace=events.append,
    )
    assert value == 42
    # One connection attempt delay, not a TCP timeout.
    assert took < QUICK
    assert attempts(events) == [blackholed.host, postgres.host]


@pytest.mark.parametrize("flavour", FACTORIES)
def test_asyncpg_connects_past_a_refused_first_address(
    flavour: str, lab: Lab, postgres: Endpoint
) -> None:
    refusing = lab.refusing(lab.ipv4_address(), postgres.port)
    events: list[TraceEvent] = []
    value, _ = run(
        query_once(postgres.port),
        flavour,
        getaddrinfo=names_for(lab, refusing, postgres),
        trace=events.append,
    )
    assert value == 42
    assert attempts(events) == [refusing.host, postgres.host]
    assert [e.kind for e in events].count("attempt_failed") == 1


@pytest.mark.parametrize("flavour", FACTORIES)
def test_asyncpg_queries_transactions_and_pool_keep_working(
    flavour: str, lab: Lab, postgres: Endpoint
) -> None:
    blackholed = lab.blackholed(lab.ipv4_address(), postgres.port)
    events: list[TraceEvent] = []
    options = {
        "host": "db.lab.test",
        "port": postgres.port,
        "user": USER,
        "database": "postgres",
    }

    async def main() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        connection = await asyncpg.connect(**options)
        try:
            await connection.execute("CREATE TEMPORARY TABLE t (n int, word text)")
            async with connection.transaction():
                await connection.executemany(
                    "INSERT INTO t VALUES ($1, $2)", [(1, "one"), (2, "two")]
                )
            try:
                async with connection.transaction():
                    await connection.execute("INSERT INTO t VALUES (3, 'three')")
                    raise LookupError("roll back")
            except LookupError:
                pass
            statement = await connection.prepare("SELECT word FROM t WHERE n = $1")
            seen["prepared"] = [await statement.fetchval(n) for n in (1, 2, 3)]
            seen["rows"] = [
                tuple(row)
                for row in await connection.fetch("SELECT * FROM t ORDER BY n")
            ]
            seen["server_address"] = await connection.fetchval(
                "SELECT host(inet_server_addr())"
            )
        finally:
            await connection.close()
        async with asyncpg.create_pool(min_size=2, max_size=2, **options) as pool:
            async with pool.acquire() as first, pool.acquire() as second:
                seen["pool"] = {
                    await first.fetchval("SELECT pg_backend_pid()"),
                    await second.fetchval("SELECT pg_backend_pid()"),
                }
            seen["pool_query"] = await pool.fetchval("SELECT 'pooled'")
        return seen

    seen = run(
        main(),
        flavour,
        getaddrinfo=names_for(lab, blackholed, postgres),
        trace=events.append,
    )
    assert seen["prepared"] == ["one", "two", None]
    assert seen["rows"] == [(1, "one"), (2, "two")]
    assert seen["server_address"] == postgres.host
    # Two connections of the pool held at once: two server processes.
    assert len(seen["pool"]) == 2
    assert seen["pool_query"] == "pooled"
    # Every connection (one, then the pool's two) raced past the blackholed
    # address or, once the history knew it unanswered, went straight on.
    succeeded = [e.address[0] for e in events if e.kind == "attempt_succeeded"]
    assert succeeded == [postgres.host] * 3
