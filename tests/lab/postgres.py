"""A throw-away PostgreSQL server for the asyncpg tests and benchmarks.

A cluster made by ``initdb`` in a temporary directory, without fsync,
trusting every connection of one user, listening on one address only and
gone with its files at the end. PostgreSQL refuses to run as root: as root
its tools run as the ``postgres`` system user (the Debian package makes it).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["USER", "PostgresUnavailable", "postgres_server"]

#: The user the server trusts (no password).
USER = "test"


class PostgresUnavailable(Exception):
    """The server cannot run here (the message says why)."""


def _bin_dir() -> Path:
    """Where ``pg_ctl`` and ``initdb`` are: on PATH, or Debian's
    ``/usr/lib/postgresql/<version>/bin`` (newest version)."""
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl is not None:
        return Path(pg_ctl).parent
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda path: int(Path(path).parts[-3]),
    )
    if not found:
        raise PostgresUnavailable("PostgreSQL's server is not installed")
    return Path(found[-1]).parent


def _as_user() -> dict[str, Any]:
    """Keywords for :func:`subprocess.run`: the ``postgres`` user when we
    are root, ourselves otherwise."""
    if os.geteuid() != 0:
        return {}
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable(
            "running as root and there is no 'postgres' user"
        ) from None
    return {"user": account.pw_uid, "group": account.pw_gid}


@contextlib.contextmanager
def postgres_server(host: str, port: int) -> Iterator[None]:
    """Run a PostgreSQL server on *host*:*port* for the ``with`` block
    (database ``postgres``, user :data:`USER`).

    Raises:
        PostgresUnavailable: no server binary, or no user to run it as.
        RuntimeError: a tool of the server failed (its error attached).
    """
    bin_dir = _bin_dir()
    as_user = _as_user()
    with tempfile.TemporaryDirectory() as directory:
        if as_user:
            os.chown(directory, as_user["user"], as_user["group"])
        data = str(Path(directory) / "data")

        def tool(name: str, *argv: str) -> None:
            done = subprocess.run(
                [str(bin_dir / name), *argv],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                cwd=directory,
                timeout=60,
                **as_user,
            )
            if done.returncode != 0:
                error = done.stderr.decode(errors="replace")
                raise RuntimeError(f"{name} failed: {error}")

        tool(
            "initdb", "-D", data, "-U", USER, "--auth=trust", "-E", "UTF8",
            "--no-sync", "--no-instructions",
        )  # fmt: skip
        # initdb trusts clients on loopback only; the server's address may
        # be a lab namespace's (it listens there alone).
        with open(Path(data) / "pg_hba.conf", "a") as rules:
            rules.write(
                f"host all {USER} 0.0.0.0/0 trust\nhost all {USER} ::/0 trust\n"
            )
        # Nothing is kept: no fsync; its Unix socket in the directory too.
        options = (
            f"-c listen_addresses={host} -p {port} -k {directory}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=20 -c shared_buffers=16MB"
        )
        log = str(Path(directory) / "log")
        # -w: back once the server accepts connections.
        tool("pg_ctl", "start", "-w", "-D", data, "-l", log, "-o", options)
        try:
            yield
        finally:
            tool("pg_ctl", "stop", "-m", "immediate", "-D", data)
