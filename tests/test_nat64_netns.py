"""IPv4 through NAT64 on an IPv6-only network, in a network namespace (root
only; CI runs as root).

The ``netns_ipv6_only`` namespace has no IPv4 address but the 127.0.0.1 its
DNS server listens on, so no IPv4 route leads anywhere: the source-address
probe says "unusable" for any other IPv4 destination, as on a mobile
carrier's IPv6-only network. The lab's DNS server answers the AAAA query
for ``ipv4only.arpa`` with the prefix a DNS64 server would show (RFC 7050),
and listeners on the synthesized addresses, on the namespace's ``lo``, stand
in for the NAT64 gateway. The addresses exist only inside: 192.0.2.0/24 and
2001:db8::/32 are documentation ranges, and the Well-Known Prefix
64:ff9b::/96 is put on the namespace's own ``lo``.

The code under test runs inside under ``ip netns exec``: this module,
imported by a small program (:func:`main`), connects on every loop flavour at
once, one thread each, and prints what happened as JSON.
"""

from __future__ import annotations

import asyncio
import errno
import io
import json
import subprocess
import threading
from typing import Any

import pytest

import loops
from async_stagger.cli import Timeline
from async_stagger.connection import open_connection
from async_stagger.trace import TraceEvent
from lab import Lab, Namespace

LITERAL = "192.0.2.10"

#: RFC 7050's answer for ipv4only.arpa (192.0.0.170 and .171) and 192.0.2.10,
#: embedded in each prefix the tests use (RFC 6052 §2.2, by hand).
WELL_KNOWN = {
    "prefix": "64:ff9b::/96",
    "answer": ["64:ff9b::c000:aa", "64:ff9b::c000:ab"],
    "literal": "64:ff9b::c000:20a",
}
SPECIFIC_96 = {
    "prefix": "2001:db8:64::/96",
    "answer": ["2001:db8:64::c000:aa", "2001:db8:64::c000:ab"],
    "literal": "2001:db8:64::c000:20a",
}
SPECIFIC_64 = {
    # The u octet (bits 64-71) is zero; the IPv4 address follows it.
    "prefix": "2001:db8:6464:1::/64",
    "answer": ["2001:db8:6464:1:c0:0:aa00:0", "2001:db8:6464:1:c0:0:ab00:0"],
    "literal": "2001:db8:6464:1:c0:2:a00:0",
}

#: "Fast": what an unreachable IPv4 literal costs (a failed connect) plus
#: one answered lookup, with room for a loaded machine.
FAST = 1.0


# -- inside the namespace ---------------------------------------------------------


async def connect(host: str, port: int, nat64: Any = True) -> dict[str, Any]:
    """``open_connection(host, port, nat64=nat64)``: the peer or the error,
    the attempts, the NAT64 events, the timeline the command line would
    print, and how long it took."""
    loop = asyncio.get_running_loop()
    events: list[TraceEvent] = []
    timeline = Timeline(io.StringIO())

    def trace(event: TraceEvent) -> None:
        events.append(event)
        timeline(event)

    start = loop.time()
    result: dict[str, Any] = {}
    try:
        _, writer = await open_connection(host, port, trace=trace, nat64=nat64)
    except OSError as exc:
        result["error"] = exc.errno
        result["message"] = str(exc)
    else:
        result["peer"] = writer.get_extra_info("peername")[0]
        writer.close()
        await writer.wait_closed()
    result["took"] = loop.time() - start
    result["attempts"] = [e.address[0] for e in events if e.kind == "attempt_started"]
    result["synthesized"] = [
        timeline.describe(e) for e in events if e.kind == "nat64_synthesized"
    ]
    result["timeline"] = [
        line.split("ms  ", 1)[1] for line in timeline.out.getvalue().splitlines()
    ]
    return result


def main(
    hosts: list[str],
    working: list[str],
    nat64: Any = True,
    flavours: list[str] | None = None,
) -> None:
    """Inside the namespace: working listeners on *working* (one port),
    then on every loop flavour at once, one thread each, connect to each of
    *hosts* on that port; print ``{flavour: [result per host]}`` as JSON."""
    flavours = loops.FLAVOURS if flavours is None else flavours
    with Lab() as lab:
        port = 0
        for address in working:
            port = lab.working(address, port or None).port
        port = port or 9  # nothing listens: the attempts fail
        results: dict[str, Any] = {}

        async def each() -> list[dict[str, Any]]:
            return [await connect(host, port, nat64) for host in hosts]

        def run(flavour: str) -> None:
            with asyncio.Runner(loop_factory=loops.loop_factory(flavour)) as runner:
                results[flavour] = runner.run(each())

        threads = [threading.Thread(target=run, args=(f,)) for f in flavours]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    print(json.dumps(results))


# -- the tests ---------------------------------------------------------------------


def run_inside(
    netns: Namespace, hosts: list[str], working: list[str], nat64: Any = True
) -> list[tuple[str, list[dict[str, Any]]]]:
    """Run :func:`main` inside *netns*: ``[(flavour, results)]``."""
    code = f"import test_nat64_netns as t\nt.main({hosts!r}, {working!r}, {nat64!r})\n"
    done = netns.run_python(code, timeout=60)
    assert done.returncode == 0, done.stderr
    results: dict[str, list[dict[str, Any]]] = json.loads(done.stdout)
    assert sorted(results) == sorted(loops.FLAVOURS), done.stderr
    return list(results.items())


def nat64_network(
    netns: Namespace, *prefixes: dict[str, Any], without: str = "nxdomain"
) -> None:
    """The lab's DNS server shows *prefixes* in its ipv4only.arpa answer,
    as a DNS64 server does. No prefix: ipv4only.arpa does not exist
    (*without* ``"nxdomain"``) or has its A records only (``"a-only"``,
    what a resolver without DNS64 answers)."""
    answer = [address for prefix in prefixes for address in prefix["answer"]]
    records: dict[tuple[str, str], list[str]] = {("v4only.lab.test", "A"): [LITERAL]}
    if answer:
        records["ipv4only.arpa", "AAAA"] = answer
    elif without == "a-only":
        records["ipv4only.arpa", "A"] = ["192.0.0.170", "192.0.0.171"]
    netns.dns(records)


def discovery_queries(netns: Namespace) -> list[str]:
    return [q.type for q in netns.dns_queries() if q.name == "ipv4only.arpa"]


def test_ipv4_literal_connects_through_the_well_known_prefix(
    netns_ipv6_only: Namespace,
) -> None:
    netns = netns_ipv6_only
    nat64_network(netns, WELL_KNOWN)
    netns.add_address(WELL_KNOWN["literal"])
    for flavour, (result,) in run_inside(netns, [LITERAL], [WELL_KNOWN["literal"]]):
        assert result.get("peer") == WELL_KNOWN["literal"], (flavour, result)
        assert result["attempts"] == [WELL_KNOWN["literal"]], (flavour, result)
        assert result["synthesized"] == [
            "192.0.2.10 → 64:ff9b::c000:20a"
            " (NAT64 prefix 64:ff9b::/96 from ipv4only.arpa)"
        ], (flavour, result)
    # RFC 7050: the prefix came from an AAAA lookup of ipv4only.arpa.
    assert set(discovery_queries(netns)) == {"AAAA"}


def test_name_with_only_an_a_answer_connects_through_nat64(
    netns_ipv6_only: Namespace,
) -> None:
    netns = netns_ipv6_only
    nat64_network(netns, WELL_KNOWN)
    netns.add_address(WELL_KNOWN["literal"])
    hosts = ["v4only.lab.test"]
    for flavour, (result,) in run_inside(netns, hosts, [WELL_KNOWN["literal"]]):
        assert result.get("peer") == WELL_KNOWN["literal"], (flavour, result)
        assert result["attempts"] == [WELL_KNOWN["literal"]], (flavour, result)
        assert len(result["synthesized"]) == 1, (flavour, result)


def test_network_specific_prefixes_of_96_and_64_bits_are_discovered(
    netns_ipv6_only: Namespace,
) -> None:
    netns = netns_ipv6_only
    for prefix in (SPECIFIC_96, SPECIFIC_64):
        nat64_network(netns, prefix)
        netns.add_address(prefix["literal"])
        for flavour, (result,) in run_inside(netns, [LITERAL], [prefix["literal"]]):
            assert result.get("peer") == prefix["literal"], (flavour, result)
            assert result["synthesized"] == [
                f"192.0.2.10 → {prefix['literal']}"
                f" (NAT64 prefix {prefix['prefix']} from ipv4only.arpa)"
            ], (flavour, result)


def test_every_discovered_prefix_is_tried(netns_ipv6_only: Namespace) -> None:
    netns = netns_ipv6_only
    nat64_network(netns, WELL_KNOWN, SPECIFIC_96)
    # The first prefix's gateway refuses; the second one's works.
    netns.add_address(WELL_KNOWN["literal"])
    netns.add_address(SPECIFIC_96["literal"])
    for flavour, (result,) in run_inside(netns, [LITERAL], [SPECIFIC_96["literal"]]):
        assert result.get("peer") == SPECIFIC_96["literal"], (flavour, result)
        assert result["attempts"] == [
            WELL_KNOWN["literal"],
            SPECIFIC_96["literal"],
        ], (flavour, result)
        assert len(result["synthesized"]) == 2, (flavour, result)


@pytest.mark.parametrize("without", ["nxdomain", "a-only"])
def test_without_nat64_the_original_error_comes_fast(
    netns_ipv6_only: Namespace, without: str
) -> None:
    netns = netns_ipv6_only
    nat64_network(netns, without=without)
    for flavour, (result,) in run_inside(netns, [LITERAL], []):
        # What connecting to an unroutable IPv4 address always raised.
        assert result.get("error") == errno.ENETUNREACH, (flavour, result)
        assert result["attempts"] == [LITERAL], (flavour, result)
        assert result["synthesized"] == [], (flavour, result)
        assert result["took"] < FAST, (flavour, result)
    assert discovery_queries(netns)  # it was asked, and said no


def test_special_ranges_are_never_synthesized(netns_ipv6_only: Namespace) -> None:
    netns = netns_ipv6_only
    nat64_network(netns, WELL_KNOWN)
    # Happy Eyeballs v3: never 0/8, 169.254/16, 255.255.255.255 (127/8 is
    # routed on every host); RFC 6052 §3.1: no private address behind the
    # Well-Known Prefix.
    hosts = ["0.0.0.10", "169.254.0.10", "255.255.255.255", "10.1.2.3"]
    for flavour, results in run_inside(netns, hosts, []):
        for host, result in zip(hosts, results, strict=True):
            assert "error" in result, (flavour, host, result)
            assert result["attempts"] == [host], (flavour, host, result)
            assert result["synthesized"] == [], (flavour, host, result)


def test_given_prefixes_are_used_without_discovery(
    netns_ipv6_only: Namespace,
) -> None:
    netns = netns_ipv6_only
    nat64_network(netns, WELL_KNOWN)  # would show another prefix
    netns.add_address(SPECIFIC_96["literal"])
    results = run_inside(
        netns, [LITERAL], [SPECIFIC_96["literal"]], nat64=[SPECIFIC_96["prefix"]]
    )
    for flavour, (result,) in results:
        assert result.get("peer") == SPECIFIC_96["literal"], (flavour, result)
        assert result["synthesized"] == [
            "192.0.2.10 → 2001:db8:64::c000:20a"
            " (NAT64 prefix 2001:db8:64::/96 from nat64=)"
        ], (flavour, result)
    assert discovery_queries(netns) == []


def test_nat64_false_leaves_ipv4_literals_alone(netns_ipv6_only: Namespace) -> None:
    netns = netns_ipv6_only
    nat64_network(netns, WELL_KNOWN)
    netns.add_address(WELL_KNOWN["literal"])
    results = run_inside(netns, [LITERAL], [WELL_KNOWN["literal"]], nat64=False)
    for flavour, (result,) in results:
        assert result.get("error") == errno.ENETUNREACH, (flavour, result)
        assert result["attempts"] == [LITERAL], (flavour, result)
    assert discovery_queries(netns) == []


def test_dual_stack_namespace_synthesizes_nothing(netns: Namespace) -> None:
    # Both families work here: an IPv6 default route as on the IPv6-only
    # network, and the IPv4 literal on lo, as is the NAT64 address, which
    # must not be used.
    subprocess.run(
        ["ip", "-n", netns.name, "-6", "route", "add", "default", "dev", "lo"],
        check=True,
    )
    nat64_network(netns, WELL_KNOWN)
    netns.add_address(LITERAL)
    netns.add_address(WELL_KNOWN["literal"])
    hosts = [LITERAL, "v4only.lab.test"]
    for flavour, results in run_inside(netns, hosts, [LITERAL, WELL_KNOWN["literal"]]):
        for result in results:
            assert result.get("peer") == LITERAL, (flavour, result)
            assert result["attempts"] == [LITERAL], (flavour, result)
            assert result["synthesized"] == [], (flavour, result)
    assert discovery_queries(netns) == []


def test_dns64_answer_and_our_synthesis_of_it_are_one_attempt(
    netns_ipv6_only: Namespace,
) -> None:
    # A DNS64 server answers AAAA with the address we synthesize from the A
    # answer: one address, tried once (nothing listens: refused).
    netns = netns_ipv6_only
    netns.dns(
        {
            ("ipv4only.arpa", "AAAA"): WELL_KNOWN["answer"],
            ("dns64.lab.test", "A"): [LITERAL],
            ("dns64.lab.test", "AAAA"): [WELL_KNOWN["literal"]],
        }
    )
    netns.add_address(WELL_KNOWN["literal"])
    for flavour, (result,) in run_inside(netns, ["dns64.lab.test"], []):
        assert result.get("error") == errno.ECONNREFUSED, (flavour, result)
        assert result["attempts"] == [WELL_KNOWN["literal"]], (flavour, result)
