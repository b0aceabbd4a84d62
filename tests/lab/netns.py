"""Privileged tier: a network namespace of the test's own (root only).

A fresh namespace has nothing but a loopback interface, so nothing in it can
reach beyond it: the lab brings ``lo`` up, puts extra addresses on it
(``10.77.0.N/32``, ``fd00:5eed::N/128``, which exist only inside), and gives
the namespace its own ``/etc/hosts``, ``/etc/resolv.conf`` and
``/etc/nsswitch.conf`` through ``/etc/netns/NAME/``: ``ip netns exec`` mounts
those files over ``/etc`` for the programs it starts. A small DNS server of
the lab's own (:mod:`lab.dns_server`) listens on 127.0.0.1 inside and can
delay or drop the answers of one record type. Code under test runs in a
Python subprocess under ``ip netns exec``, so the real glibc ``getaddrinfo``
reads those files and asks that server: the slow-AAAA networks of RFC 8305 §3,
reproduced on one machine.

Teardown kills every process in the namespace, deletes the namespace and its
``/etc/netns`` folder, even when the test failed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = [
    "NAME_PREFIX",
    "DnsQuery",
    "Namespace",
    "netns_unavailable_reason",
    "remove_stale_namespaces",
]

NAME_PREFIX = "as-test-"
"""Every namespace the lab makes is called ``as-test-<pid>-<n>``."""

_NAME_PATTERN = re.compile(rf"^{re.escape(NAME_PREFIX)}(\d+)-(\d+)$")
_counter = itertools.count(1)

NETNS_ETC = Path("/etc/netns")
NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")
TESTS_DIR = Path(__file__).resolve().parent.parent
DNS_SERVER = Path(__file__).resolve().parent / "dns_server.py"

# Only the databases a Python test program may touch, and host names looked
# up the classic way: hosts file first, then DNS. Pinned so that a machine
# with mdns or systemd-resolved in its nsswitch.conf behaves like any other.
NSSWITCH_CONF = """\
passwd: files
group: files
shadow: files
hosts: files dns
networks: files
protocols: files
services: files
"""

BASE_HOSTS = """\
127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback
"""


def netns_unavailable_reason() -> str | None:
    """Why the privileged tier cannot run here, or ``None`` when it can.

    Returns:
        A reason suitable for ``pytest.skip``, or ``None``.
    """
    if sys.platform != "linux":
        return "network namespaces exist only on Linux"
    if os.geteuid() != 0:
        return "network namespaces need root (the privileged lab tier runs in CI)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is missing"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", *args], capture_output=True, text=True, check=check, timeout=30
    )


def _namespace_names() -> list[str]:
    listing = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in listing.splitlines() if line.strip()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process
        return True
    return True


def _kill_namespace_processes(name: str) -> None:
    """SIGKILL every process in namespace *name* until none is left."""
    for _ in range(50):
        pids = [int(p) for p in _ip("netns", "pids", name, check=False).stdout.split()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
    raise RuntimeError(f"processes in namespace {name} would not die")


def _delete_namespace(name: str) -> None:
    if name in _namespace_names():
        _kill_namespace_processes(name)
        result = _ip("netns", "del", name, check=False)
        # Another test session may have removed a stale one first.
        if result.returncode != 0 and name in _namespace_names():
            raise RuntimeError(f"cannot delete namespace {name}: {result.stderr}")
    shutil.rmtree(NETNS_ETC / name, ignore_errors=True)


def remove_stale_namespaces() -> list[str]:
    """Delete namespaces (and ``/etc/netns`` folders) left by crashed test
    runs: ours by name, whose creating process is gone.

    Returns:
        The names removed.
    """
    candidates = set(_namespace_names())
    if NETNS_ETC.is_dir():
        candidates.update(entry.name for entry in NETNS_ETC.iterdir())
    removed = []
    for name in sorted(candidates):
        match = _NAME_PATTERN.match(name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        _delete_namespace(name)
        removed.append(name)
    return removed


class DnsQuery:
    """One query the namespace's DNS server received.

    Attributes:
        time: ``time.time()`` when it arrived.
        name: the name asked for.
        type: ``"A"``, ``"AAAA"`` or the numeric type.
        outcome: ``answered``, ``delayed``, ``dropped``, ``notimp``, ``formerr``.
    """

    def __init__(self, line: str) -> None:
        stamp, self.name, self.type, self.outcome = line.split()
        self.time = float(stamp)

    def __repr__(self) -> str:
        return f"DnsQuery({self.name!r}, {self.type!r}, {self.outcome!r})"


class Namespace:
    """A network namespace of the test's own; use :meth:`create`.

    Attributes:
        name: the namespace's name (``as-test-<pid>-<n>``).
        ipv4_addresses: the extra IPv4 addresses on its ``lo``.
        ipv6_addresses: the extra IPv6 addresses on its ``lo``.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.etc = NETNS_ETC / name
        self.ipv4_addresses: list[str] = []
        self.ipv6_addresses: list[str] = []
        self._processes: list[subprocess.Popen[str]] = []
        self._workdir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
        self._dns_log = self._workdir / "dns.log"
        self._dns: subprocess.Popen[str] | None = None
        self._closed = False

    @classmethod
    def create(cls, *, extra_addresses: int = 3, ipv4: bool = True) -> Namespace:
        """Make a namespace with ``lo`` up, *extra_addresses* addresses of
        each family on it, a hosts file naming only ``localhost``, and a
        resolv.conf pointing at 127.0.0.1 (where nothing answers until
        :meth:`dns` starts a server).

        Args:
            extra_addresses: how many ``10.77.0.N`` and ``fd00:5eed::N`` to add.
            ipv4: ``False`` for an IPv6-only network: no ``10.77.0.N``, no
                IPv4 address but 127.0.0.1 on ``lo`` (where the DNS server
                listens), so no IPv4 route leads anywhere, and an IPv6
                default route to ``lo``.

        Returns:
            The namespace; call :meth:`close` when done.

        Raises:
            RuntimeError: the privileged tier is unavailable here.
            subprocess.CalledProcessError: an ``ip`` command failed.
        """
        reason = netns_unavailable_reason()
        if reason is not None:
            raise RuntimeError(reason)
        name = f"{NAME_PREFIX}{os.getpid()}-{next(_counter)}"
        _ip("netns", "add", name)
        namespace = cls(name)
        try:
            namespace.etc.mkdir(parents=True, exist_ok=True)
            (namespace.etc / "nsswitch.conf").write_text(NSSWITCH_CONF)
            namespace.write_hosts({})
            namespace._write_resolv_conf(timeout=1)
            _ip("-n", name, "link", "set", "lo", "up")
            if not ipv4:
                # What an IPv6-only network has: an IPv6 default route (to
                # lo: nothing leaves), and none for IPv4.
                _ip("-n", name, "-6", "route", "add", "default", "dev", "lo")
            for n in range(1, extra_addresses + 1):
                if ipv4:
                    namespace.add_address(f"10.77.0.{n}")
                namespace.add_address(f"fd00:5eed::{n}")
        except BaseException:
            namespace.close()
            raise
        return namespace

    def __enter__(self) -> Namespace:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def add_address(self, address: str) -> str:
        """Put *address* on the namespace's ``lo`` (as a /32 or /128 unless a
        prefix is given).

        Args:
            address: an IPv4 or IPv6 address, optionally with ``/prefix``.

        Returns:
            The address without prefix.

        Raises:
            ValueError: *address* is not an IP address, or is one that could
                route outside (only private, loopback or unique-local
                addresses are allowed).
        """
        try:
            interface = ipaddress.ip_interface(address)
        except ValueError:
            raise ValueError(f"not an IP address: {address!r}") from None
        # NAT64's Well-Known Prefix (RFC 6052) too: the NAT64 tests stand
        # in for the gateway with its addresses, which exist only inside.
        if not interface.ip.is_private and interface.ip not in NAT64_PREFIX:
            raise ValueError(
                f"{address!r} is not a private address; the lab only uses "
                f"private, loopback and unique-local ones"
            )
        if "/" not in address:
            interface = ipaddress.ip_interface(f"{address}/{interface.max_prefixlen}")
        args = ["-n", self.name, "addr", "add", str(interface), "dev", "lo"]
        if interface.version == 6:
            args.append("nodad")  # usable at once, no duplicate detection wait
        _ip(*args)
        plain = str(interface.ip)
        (self.ipv6_addresses if interface.version == 6 else self.ipv4_addresses).append(
            plain
        )
        return plain

    def write_hosts(self, entries: Mapping[str, Iterable[str]]) -> None:
        """Write the namespace's ``/etc/hosts``: localhost plus *entries*.

        Args:
            entries: host name -> its addresses, in file order.

        Raises:
            ValueError: an address is not an IP address.
        """
        lines = [BASE_HOSTS]
        for name, addresses in entries.items():
            for address in addresses:
                ipaddress.ip_address(address)
                lines.append(f"{address} {name}\n")
        (self.etc / "hosts").write_text("".join(lines))

    def _write_resolv_conf(self, *, timeout: int) -> None:
        # glibc sends the A and AAAA queries of one lookup in parallel from one
        # socket; timeout:N attempts:1 bounds an unanswered query to about N s.
        (self.etc / "resolv.conf").write_text(
            f"nameserver 127.0.0.1\noptions timeout:{timeout} attempts:1\n"
        )

    def dns(
        self,
        records: Mapping[tuple[str, str], Iterable[str]],
        *,
        delays: Mapping[str, float] | None = None,
        drop: Iterable[str] = (),
        resolver_timeout: int = 1,
    ) -> None:
        """Start the namespace's DNS server on 127.0.0.1:53 (replacing one
        started before) and point resolv.conf at it.

        Args:
            records: ``(name, "A" | "AAAA")`` -> addresses. Names not listed
                get NXDOMAIN; a listed name without records of a type gets an
                empty answer.
            delays: seconds to hold back the answers of each record type.
            drop: record types never answered.
            resolver_timeout: glibc's ``options timeout:`` in whole seconds,
                what one unanswered query costs.

        Raises:
            ValueError: an unknown record type, a bad address or delay.
            RuntimeError: the server did not start.
        """
        delays = dict(delays or {})
        drop = set(drop)
        table = []
        for (name, rtype), addresses in records.items():
            if rtype not in ("A", "AAAA"):
                raise ValueError(f"record type must be 'A' or 'AAAA', got {rtype!r}")
            addresses = list(addresses)
            version = 4 if rtype == "A" else 6
            for address in addresses:
                if ipaddress.ip_address(address).version != version:
                    raise ValueError(f"{address!r} is not a {rtype} address")
            table.append([name, rtype, addresses])
        for rtype, delay in delays.items():
            if rtype not in ("A", "AAAA") or delay < 0:
                raise ValueError(f"bad delay {rtype!r}: {delay!r}")
        for rtype in drop:
            if rtype not in ("A", "AAAA"):
                raise ValueError(f"record type must be 'A' or 'AAAA', got {rtype!r}")
        if resolver_timeout < 1:
            raise ValueError(f"resolver_timeout must be >= 1, got {resolver_timeout!r}")
        if self._dns is not None:
            self._stop(self._dns)
            self._dns = None
        config = {
            "address": "127.0.0.1",
            "port": 53,
            "records": table,
            "delays": delays,
            "drop": sorted(drop),
        }
        process = self._spawn(
            [sys.executable, str(DNS_SERVER), str(self._dns_log)],
            stdin=subprocess.PIPE,
        )
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.write(json.dumps(config))
        process.stdin.close()
        process.stdin = None
        ready = process.stdout.readline()
        if ready.strip() != "ready":
            stderr = process.stderr.read() if process.stderr else ""
            raise RuntimeError(f"the lab DNS server did not start: {stderr}")
        self._dns = process
        self._write_resolv_conf(timeout=resolver_timeout)

    def dns_queries(self) -> list[DnsQuery]:
        """Every query the DNS server received so far, oldest first."""
        if not self._dns_log.exists():
            return []
        return [DnsQuery(line) for line in self._dns_log.read_text().splitlines()]

    def _command(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        paths = [str(TESTS_DIR), *filter(None, [env.get("PYTHONPATH")])]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def _spawn(
        self, argv: list[str], *, stdin: int | None = subprocess.DEVNULL
    ) -> subprocess.Popen[str]:
        if self._closed:
            raise RuntimeError(f"namespace {self.name} is closed")
        process = subprocess.Popen(
            self._command(argv),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self._environment(),
        )
        self._processes.append(process)
        return process

    def run_python(
        self, code: str, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python -c code`` inside the namespace and wait for it.

        The program imports ``async_stagger`` from the installed package and
        the suite's helpers (``lab``, ``loops``) from ``tests/``.

        Args:
            code: the program.
            timeout: seconds before it is killed.

        Returns:
            The finished process, with text ``stdout`` and ``stderr``.

        Raises:
            subprocess.TimeoutExpired: it ran longer than *timeout*.
        """
        if self._closed:
            raise RuntimeError(f"namespace {self.name} is closed")
        return subprocess.run(
            self._command([sys.executable, "-c", code]),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self._environment(),
            check=False,
        )

    def start_python(self, code: str) -> subprocess.Popen[str]:
        """Start ``python -c code`` inside the namespace without waiting (a
        listener, say). It is killed at :meth:`close` if still running.

        Args:
            code: the program.

        Returns:
            The running process (text pipes on stdout and stderr).
        """
        return self._spawn([sys.executable, "-c", code])

    @staticmethod
    def _stop(process: subprocess.Popen[str]) -> None:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def close(self) -> None:
        """Kill every process in the namespace, delete it and its
        ``/etc/netns`` folder and the lab's scratch files."""
        if self._closed:
            return
        self._closed = True
        try:
            for process in self._processes:
                self._stop(process)
        finally:
            try:
                _delete_namespace(self.name)
            finally:
                shutil.rmtree(self._workdir, ignore_errors=True)
