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

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from async_stagger import TraceEvent
from lab import Endpoint, Lab
from test_eventloop import FACTORIES, QUICK, attempts, run

asyncpg = pytest.importorskip("asyncpg")

USER = "test"


def postgres_bin_dir() -> Path | None:
    """Where ``pg_ctl`` and ``initdb`` are: on PATH, or Debian's
    ``/usr/lib/postgresql/<version>/bin`` (newest version)."""
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl is not None:
        return Path(pg_ctl).parent
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda path: int(Path(path).parts[-3]),
    )
    return Path(found[-1]).parent if found else None


def unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (.ci/run installs postgresql)")
    pytest.skip(f"{reason} (apt-get install postgresql)")


def server_user() -> dict[str, Any]:
    """Keywords for :class:`subprocess.Popen` that run PostgreSQL's tools as
    the ``postgres`` system user when we are root, as ourselves otherwise."""
    if os.geteuid() != 0:
        return {}
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        unavailable("running as root and there is no 'postgres' user")
    return {"user": account.pw_uid, "group": account.pw_gid}


@pytest.fixture(scope="module")
def postgres() -> Iterator[Endpoint]:
    """A PostgreSQL server on a loopback address of its own, trusting local
    connections of user ``test``, gone at teardown with its files."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        unavailable("PostgreSQL's server is not installed")
    assert bin_dir is not None
    as_user = server_user()
    # A lab for the address and port only: the endpoints each test makes
    # come from its own ``lab``, closed when the test ends.
    with Lab() as lab, tempfile.TemporaryDirectory() as directory:
        if as_user:
            os.chown(directory, as_user["user"], as_user["group"])
        data = Path(directory) / "data"
        host = lab.ipv4_address()
        port = lab.free_port()
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}

        def tool(*argv: str) -> None:
            done = subprocess.run(argv, **quiet, **as_user, cwd=directory, timeout=60)
            if done.returncode != 0:
                pytest.fail(f"{argv[0]} failed: {done.stderr.decode(errors='replace')}")

        # No fsync anywhere: a cluster that lives for one test module.
        tool(
            str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust",
            "-E", "UTF8", "--no-sync", "--no-instructions",
        )  # fmt: skip
        options = (
            f"-c listen_addresses={host} -p {port} -k {directory}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=20 -c shared_buffers=16MB"
        )
        log = str(Path(directory) / "log")
        # -w: back once the server accepts connections.
        tool(str(bin_dir / "pg_ctl"), "start", "-w", "-D", str(data), "-l", log,
             "-o", options)  # fmt: skip
        try:
            yield Endpoint(socket.AF_INET, host, port)
        finally:
            tool(str(bin_dir / "pg_ctl"), "stop", "-m", "immediate", "-D", str(data))


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
