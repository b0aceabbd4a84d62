"""The guard: no lookup or packet from the test session can leave the machine
(see ``lab/isolation.py``). Each check runs only once the ones before it
passed, so the lookup at the end is made only where it cannot get out."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import sys
import time
from pathlib import Path

import pytest

from lab.isolation import isolate, network_namespace_id

pytestmark = pytest.mark.skipif(
    sys.platform != "linux",
    reason="network namespaces exist only on Linux; the in-process guard"
    " (lab.isolation.install_guard) stands in for them here",
)

# Name service sources answered from this process alone or by DNS over the
# network (which the namespace stops). Others (resolve, mdns, winbind...) hand
# the lookup to a daemon outside the namespace over a Unix socket.
LOCAL_HOSTS_SOURCES = {"files", "dns", "myhostname"}
NSCD_SOCKETS = [Path("/run/nscd/socket"), Path("/var/run/nscd/socket")]


def _routes() -> list[tuple[str, str]]:
    """(device, destination) of every IPv4 and IPv6 route of the session."""
    routes = []
    ipv4 = Path("/proc/self/net/route").read_text().splitlines()[1:]
    for line in ipv4:
        fields = line.split()
        routes.append((fields[0], fields[1]))
    for line in Path("/proc/self/net/ipv6_route").read_text().splitlines():
        fields = line.split()
        routes.append((fields[-1], fields[0]))
    return routes


def _hosts_sources() -> list[str]:
    try:
        lines = Path("/etc/nsswitch.conf").read_text().splitlines()
    except FileNotFoundError:
        return ["files", "dns"]  # glibc's default
    for line in lines:
        database, _, sources = line.partition(":")
        if database.strip() == "hosts":
            return [s for s in sources.split() if not s.startswith("[")]
    return ["files", "dns"]


def _nameservers() -> list[str]:
    try:
        lines = Path("/etc/resolv.conf").read_text().splitlines()
    except FileNotFoundError:
        return ["127.0.0.1"]  # glibc's default
    servers = [line.split()[1] for line in lines if line.startswith("nameserver ")]
    return servers or ["127.0.0.1"]


def test_the_session_runs_in_a_network_namespace_of_its_own() -> None:
    isolation = isolate()
    assert isolation.isolated, (
        f"the test session is {isolation.how}: run it as root, or where"
        f" unprivileged user namespaces are allowed"
    )
    inside = network_namespace_id()
    assert inside != isolation.outside_namespace
    threads = {
        tid: network_namespace_id(f"self/task/{tid}")
        for tid in os.listdir("/proc/self/task")
    }
    assert set(threads.values()) == {inside}, threads


def test_the_sessions_namespace_has_only_loopback_and_its_routes() -> None:
    assert [name for _, name in socket.if_nameindex()] == ["lo"]
    assert {device for device, _ in _routes()} <= {"lo"}


def test_no_lookup_is_handed_to_a_daemon_outside_the_namespace() -> None:
    assert set(_hosts_sources()) <= LOCAL_HOSTS_SOURCES, _hosts_sources()
    assert not [path for path in NSCD_SOCKETS if path.exists()]


def test_no_name_server_is_reachable() -> None:
    test_the_session_runs_in_a_network_namespace_of_its_own()
    test_the_sessions_namespace_has_only_loopback_and_its_routes()
    for server in _nameservers():
        address = ipaddress.ip_address(server.partition("%")[0])
        if address.is_loopback:
            continue  # the namespace's own loopback: no one outside is there
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            # connect() on a datagram socket only looks up the route.
            with pytest.raises(OSError) as raised:
                sock.connect((server, 53))
            assert raised.value.errno == errno.ENETUNREACH


def test_a_lookup_of_an_unknown_name_fails_at_once_with_no_server_to_ask() -> None:
    test_no_name_server_is_reachable()
    test_no_lookup_is_handed_to_a_daemon_outside_the_namespace()
    start = time.monotonic()
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("no-such-host.invalid", 80, type=socket.SOCK_STREAM)
    # A server that received the query and stayed silent would cost at least
    # resolv.conf's timeout (1 s at its smallest); unsent, it fails in
    # microseconds.
    assert time.monotonic() - start < 1.0
