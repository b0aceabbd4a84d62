"""The privileged lab tier keeps its promises (root only; CI runs as root).

Everything here happens inside network namespaces the tests create: the only
traffic is on their loopback interfaces. Timings are on the real clock, since
the real glibc resolver and kernel are involved; upper bounds are generous.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import textwrap
import time

import pytest

from lab import Namespace, netns_unavailable_reason
from lab.netns import NAME_PREFIX, NETNS_ETC, remove_stale_namespaces

# Tests taking the `netns` fixture skip through it; the others say so here.
requires_netns = pytest.mark.skipif(
    netns_unavailable_reason() is not None,
    reason=netns_unavailable_reason() or "",
)


def run_json(netns: Namespace, code: str, timeout: float = 30.0) -> object:
    """Run *code* inside *netns*; it prints one JSON document, returned here."""
    result = netns.run_python(textwrap.dedent(code), timeout=timeout)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


LOOKUP = """
import json, socket, sys, time
name, family = sys.argv[1], getattr(socket, sys.argv[2])
start = time.monotonic()
try:
    infos = socket.getaddrinfo(name, 80, family, socket.SOCK_STREAM)
    answer = [info[4][0] for info in infos]
except socket.gaierror as exc:
    answer = exc.errno
print(json.dumps({"answer": answer, "seconds": time.monotonic() - start}))
"""


def lookup(netns: Namespace, name: str, family: str) -> tuple[object, float]:
    """``socket.getaddrinfo(name, 80, family)`` inside *netns*: the answer
    (addresses, or the gaierror number) and how long it took."""
    code = f"import sys; sys.argv[1:] = {[name, family]!r}\n" + LOOKUP
    result = run_json(netns, code)
    assert isinstance(result, dict)
    return result["answer"], result["seconds"]


def _namespace_pids(name: str) -> list[int]:
    out = subprocess.run(
        ["ip", "netns", "pids", name], capture_output=True, text=True, check=False
    ).stdout
    return [int(pid) for pid in out.split()]


def _namespaces() -> list[str]:
    out = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True
    ).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def test_namespace_addresses_are_reachable_inside_only(netns: Namespace) -> None:
    addresses = netns.ipv4_addresses + netns.ipv6_addresses
    assert addresses[0].startswith("10.77.0.")
    assert netns.ipv6_addresses[0].startswith("fd00:5eed::")
    echoed = run_json(
        netns,
        f"""
        import json, socket
        echoed = {{}}
        for address in {addresses!r}:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            with socket.create_server((address, 0), family=family) as server:
                port = server.getsockname()[1]
                with socket.create_connection((address, port), timeout=5) as client:
                    conn, _ = server.accept()
                    with conn:
                        client.sendall(address.encode())
                        echoed[address] = conn.recv(100).decode()
        print(json.dumps(echoed))
        """,
    )
    assert echoed == {address: address for address in addresses}
    # Outside the namespace they are not this machine's addresses at all (a
    # bind proves it without sending anything anywhere).
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            with pytest.raises(OSError) as caught:
                sock.bind((address, 0))
            assert caught.value.errno == errno.EADDRNOTAVAIL


def test_hosts_file_is_honoured_by_getaddrinfo_inside(netns: Namespace) -> None:
    netns.write_hosts({"files.lab.test": ["fd00:5eed::2", "10.77.0.2"]})
    answer, _ = lookup(netns, "files.lab.test", "AF_UNSPEC")
    assert isinstance(answer, list)
    assert sorted(answer) == ["10.77.0.2", "fd00:5eed::2"]
    answer, _ = lookup(netns, "files.lab.test", "AF_INET")
    assert answer == ["10.77.0.2"]
    # No DNS was needed: the server (not even started) was never asked.
    assert netns.dns_queries() == []


def test_dns_answers_a_at_once_and_aaaa_after_its_delay(netns: Namespace) -> None:
    delay = 0.4
    netns.dns(
        {
            ("dual.lab.test", "A"): ["10.77.0.1"],
            ("dual.lab.test", "AAAA"): ["fd00:5eed::1"],
        },
        delays={"AAAA": delay},
    )
    answer, seconds = lookup(netns, "dual.lab.test", "AF_INET")
    assert answer == ["10.77.0.1"]
    assert seconds < 0.2
    answer, seconds = lookup(netns, "dual.lab.test", "AF_INET6")
    assert answer == ["fd00:5eed::1"]
    # Below the resolver's 1 s timeout, so the delayed answer is used.
    assert delay <= seconds < 0.95
    queries = [(q.name, q.type, q.outcome) for q in netns.dns_queries()]
    assert queries == [
        ("dual.lab.test", "A", "answered"),
        ("dual.lab.test", "AAAA", "delayed"),
    ]


def test_dropped_aaaa_makes_unspec_getaddrinfo_slow(netns: Namespace) -> None:
    netns.dns(
        {
            ("dual.lab.test", "A"): ["10.77.0.1"],
            ("dual.lab.test", "AAAA"): ["fd00:5eed::1"],
        },
        drop={"AAAA"},
    )
    answer, seconds = lookup(netns, "dual.lab.test", "AF_INET")
    assert answer == ["10.77.0.1"]
    assert seconds < 0.2
    # One getaddrinfo for both families waits for the lost AAAA answer until
    # the resolver gives up (glibc retries: about 3 x timeout:1), and only
    # then returns the A answer it had all along. RFC 8305 §3 exists for this.
    answer, seconds = lookup(netns, "dual.lab.test", "AF_UNSPEC")
    assert answer == ["10.77.0.1"]
    assert 0.95 <= seconds < 10
    dropped = [q for q in netns.dns_queries() if q.outcome == "dropped"]
    assert dropped
    assert all(q.type == "AAAA" for q in dropped)


def test_dns_answers_nxdomain_for_unknown_names_and_nodata_for_missing_types(
    netns: Namespace,
) -> None:
    netns.dns({("v4only.lab.test", "A"): ["10.77.0.3"]})
    answer, seconds = lookup(netns, "nowhere.lab.test", "AF_UNSPEC")
    assert answer == socket.EAI_NONAME
    assert seconds < 0.5
    answer, _ = lookup(netns, "v4only.lab.test", "AF_INET6")
    assert answer == socket.EAI_NODATA
    answer, _ = lookup(netns, "v4only.lab.test", "AF_UNSPEC")
    assert answer == ["10.77.0.3"]


def test_async_stagger_and_the_lab_import_inside(netns: Namespace) -> None:
    netns.dns({("echo.lab.test", "A"): ["10.77.0.2"]})
    # asyncio's own getaddrinfo and a lab endpoint on a namespace address.
    result = run_json(
        netns,
        """
        import asyncio, json
        import async_stagger
        from lab import Lab

        async def main():
            with Lab() as lab:
                endpoint = lab.working("10.77.0.2")
                reader, writer = await asyncio.open_connection(
                    "echo.lab.test", endpoint.port
                )
                writer.write(b"inside")
                echoed = await reader.readexactly(6)
                peer = writer.get_extra_info("peername")[0]
                writer.close()
                await writer.wait_closed()
                return {"echoed": echoed.decode(), "peer": peer}

        print(json.dumps(asyncio.run(main())))
        """,
    )
    assert result == {"echoed": "inside", "peer": "10.77.0.2"}


@requires_netns
def test_teardown_removes_namespace_etc_folder_and_processes() -> None:
    with (  # noqa: PT012
        pytest.raises(RuntimeError, match="the test failed"),
        Namespace.create() as namespace,
    ):
        namespace.dns({("x.lab.test", "A"): ["10.77.0.1"]})
        namespace.start_python("import time; time.sleep(600)")
        # `ip netns exec` enters the namespace just after it starts: wait.
        deadline = time.monotonic() + 10
        while len(pids := _namespace_pids(namespace.name)) < 2:
            assert time.monotonic() < deadline, pids
            time.sleep(0.01)
        assert (NETNS_ETC / namespace.name / "resolv.conf").exists()
        raise RuntimeError("the test failed")
    assert namespace.name not in _namespaces()
    assert not (NETNS_ETC / namespace.name).exists()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@requires_netns
def test_stale_namespaces_of_dead_runs_are_removed_and_live_ones_kept() -> None:
    # A pid that existed a moment ago and no longer does.
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"{NAME_PREFIX}{dead.pid}-1"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    (NETNS_ETC / stale).mkdir(parents=True, exist_ok=True)
    orphan_folder = f"{NAME_PREFIX}{dead.pid}-2"
    (NETNS_ETC / orphan_folder).mkdir()
    try:
        with Namespace.create() as live:
            removed = remove_stale_namespaces()
            assert live.name not in removed
            assert live.name in _namespaces()
        assert stale not in _namespaces()
        assert not (NETNS_ETC / stale).exists()
        assert not (NETNS_ETC / orphan_folder).exists()
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True, check=False)


@pytest.mark.parametrize("address", ["8.8.8.8", "2001:4860::8888", "not-an-ip"])
def test_only_private_addresses_can_be_added(netns: Namespace, address: str) -> None:
    with pytest.raises(ValueError, match=address):
        netns.add_address(address)


def test_dns_rejects_unknown_record_types_naming_them(netns: Namespace) -> None:
    with pytest.raises(ValueError, match="'MX'"):
        netns.dns({("mail.lab.test", "MX"): ["10.77.0.1"]})
    with pytest.raises(ValueError, match=r"'1\.2\.3\.4' is not a AAAA"):
        netns.dns({("x.lab.test", "AAAA"): ["1.2.3.4"]})


def test_netns_fixture_skips_with_a_clear_reason_when_not_root(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(pytest.skip.Exception, match="need root"):
        request.getfixturevalue("netns")


def test_netns_fixture_skips_with_a_clear_reason_without_ip_command(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pytest.skip.Exception, match="`ip` command"):
        request.getfixturevalue("netns")
