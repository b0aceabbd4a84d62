"""NAT64 address arithmetic (RFC 6052), prefix discovery (RFC 7050), and the
resolver's use of them (RFC 8305 §7), with a scripted probe and getaddrinfo.

Nothing here touches the network: the source-address probe is replaced by
a pure function, the lookups by a script. The namespace tests
(``test_nat64_netns.py``) do the same on real sockets and a real DNS server.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from async_stagger import _nat64_answers, nat64
from async_stagger.address_order import sort_addresses
from async_stagger.nat64 import (
    check_setting,
    embed,
    extract,
    known_prefix_of,
    prefixes_from_answers,
    synthesizable,
)
from async_stagger.resolvers import basic_resolver, concurrent_resolver
from async_stagger.trace import TraceEvent, tracing

INET = socket.AF_INET
INET6 = socket.AF_INET6

#: RFC 6052 §2.4, the table of examples: 192.0.2.33 in each prefix.
RFC_6052_EXAMPLES = [
    ("2001:db8::/32", "2001:db8:c000:221::"),
    ("2001:db8:100::/40", "2001:db8:1c0:2:21::"),
    ("2001:db8:122::/48", "2001:db8:122:c000:2:2100::"),
    ("2001:db8:122:300::/56", "2001:db8:122:3c0:0:221::"),
    ("2001:db8:122:344::/64", "2001:db8:122:344:c0:2:2100:0"),
    ("2001:db8:122:344::/96", "2001:db8:122:344::192.0.2.33"),
    ("64:ff9b::/96", "64:ff9b::192.0.2.33"),
]


# -- RFC 6052: embedding and extraction --------------------------------------------


@pytest.mark.parametrize(("prefix", "embedded"), RFC_6052_EXAMPLES)
def test_embedding_gives_rfc_6052_examples(prefix: str, embedded: str) -> None:
    assert embed("192.0.2.33", prefix) == ipaddress.IPv6Address(embedded)


@pytest.mark.parametrize(("prefix", "embedded"), RFC_6052_EXAMPLES)
def test_extraction_recovers_the_ipv4_address_of_rfc_6052_examples(
    prefix: str, embedded: str
) -> None:
    length = ipaddress.IPv6Network(prefix).prefixlen
    assert extract(embedded, length) == ipaddress.IPv4Address("192.0.2.33")


@pytest.mark.parametrize("length", [32, 40, 48, 56, 64])
def test_extraction_refuses_an_address_whose_u_octet_is_set(length: int) -> None:
    # RFC 6052 §2.2: bits 64 to 71 are zero in every IPv4-embedded address.
    address = ipaddress.IPv6Address(int(embed("192.0.2.33", f"2001:db8::/{length}")))
    with_u = ipaddress.IPv6Address(int(address) | (0x01 << 56))
    assert extract(with_u, length) is None


def test_extraction_ignores_the_suffix() -> None:
    # RFC 6052 §2.2: receivers ignore the suffix bits.
    assert extract("2001:db8:c000:221:0:0:0:ffff", 32) == ipaddress.IPv4Address(
        "192.0.2.33"
    )


@pytest.mark.parametrize("prefix", ["2001:db8::/33", "2001:db8::/128", "10.0.0.0/8"])
def test_embedding_refuses_prefixes_rfc_6052_does_not_allow(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        embed("192.0.2.33", prefix)


def test_extraction_refuses_lengths_rfc_6052_does_not_allow() -> None:
    with pytest.raises(ValueError, match="33"):
        extract("2001:db8::", 33)


# -- the ranges never synthesized ----------------------------------------------------


@pytest.mark.parametrize(
    "address", ["0.0.0.10", "127.0.0.1", "127.1.2.3", "169.254.0.10", "255.255.255.255"]
)
@pytest.mark.parametrize("prefix", ["64:ff9b::/96", "2001:db8:64::/96"])
def test_special_ranges_are_never_synthesized(address: str, prefix: str) -> None:
    assert not synthesizable(address, ipaddress.IPv6Network(prefix))


@pytest.mark.parametrize("address", ["10.1.2.3", "172.16.0.1", "192.168.1.1"])
def test_private_addresses_go_only_through_a_network_specific_prefix(
    address: str,
) -> None:
    # RFC 6052 §3.1: not behind the Well-Known Prefix.
    assert not synthesizable(address, nat64.WELL_KNOWN_PREFIX)
    assert synthesizable(address, ipaddress.IPv6Network("2001:db8:64::/96"))


def test_global_addresses_are_synthesizable() -> None:
    assert synthesizable("198.51.100.7", nat64.WELL_KNOWN_PREFIX)


# -- RFC 7050: prefixes from the ipv4only.arpa answer ---------------------------------


@pytest.mark.parametrize(("prefix", "_"), RFC_6052_EXAMPLES)
def test_discovery_finds_the_prefix_at_every_length(prefix: str, _: str) -> None:
    answer = [str(embed(wka, prefix)) for wka in ("192.0.0.170", "192.0.0.171")]
    assert prefixes_from_answers(answer) == (ipaddress.IPv6Network(prefix),)


def test_discovery_keeps_every_prefix_in_answer_order() -> None:
    answer = [
        "2001:db8:64::c000:aa",
        "64:ff9b::c000:aa",
        "64:ff9b::c000:ab",
        "2001:db8:64::c000:ab",
    ]
    assert prefixes_from_answers(answer) == (
        ipaddress.IPv6Network("2001:db8:64::/96"),
        nat64.WELL_KNOWN_PREFIX,
    )


def test_discovery_ignores_answers_without_the_well_known_addresses() -> None:
    # A native AAAA record (no DNS64 here) is no sign of NAT64.
    assert prefixes_from_answers(["2001:db8::1", "64:ff9b::c000:201", "junk"]) == ()


def test_the_second_well_known_address_settles_an_ambiguous_length() -> None:
    # 192.0.0.170 sits in this address both after a /56 (bytes 7, 9-11) and
    # after a /96 (bytes 12-15): RFC 7050 has two well-known addresses so
    # that the other one, found after the /56 only, settles it.
    twice = "2001:db8:1:c0:0:aa:c000:aa"
    assert extract(twice, 56) == extract(twice, 96) == nat64.WELL_KNOWN_ADDRESSES[0]
    other = "2001:db8:1:c0:0:ab::"
    assert prefixes_from_answers([twice, other]) == (
        ipaddress.IPv6Network("2001:db8:1::/56"),
    )
    # Alone, it is read with the longest prefix.
    assert prefixes_from_answers([twice]) == (
        ipaddress.IPv6Network("2001:db8:1:c0:0:aa::/96"),
    )


# -- the nat64= setting ----------------------------------------------------------------


def test_setting_takes_bools_and_prefixes() -> None:
    assert check_setting(True) is True
    assert check_setting(False) is False
    assert check_setting(["64:ff9b::/96", ipaddress.IPv6Network("2001:db8::/32")]) == (
        nat64.WELL_KNOWN_PREFIX,
        ipaddress.IPv6Network("2001:db8::/32"),
    )


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ("64:ff9b::/96", TypeError, "iterable of NAT64 prefixes"),
        (1, TypeError, "nat64 must be"),
        ([64], TypeError, "64"),
        ([], ValueError, "False"),
        (["2001:db8::/33"], ValueError, "2001:db8::/33"),
        (["2001:db8::1/96"], ValueError, "host bits"),
    ],
)
def test_setting_refuses_what_is_not_a_prefix_list(
    value: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        check_setting(value)


def test_resolvers_check_the_setting_when_called() -> None:
    with pytest.raises(TypeError, match="nat64"):
        concurrent_resolver("192.0.2.10", 443, nat64="64:ff9b::/96")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nat64"):
        basic_resolver("192.0.2.10", 443, nat64=[])


async def test_connection_functions_check_the_setting_before_connecting() -> None:
    from async_stagger import create_connected_sock, create_connection, open_connection

    with pytest.raises(TypeError, match="nat64"):
        await open_connection("127.0.0.1", 9, nat64="64:ff9b::/96")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="/33"):
        await create_connection(lambda: None, "127.0.0.1", 9, nat64=["::/33"])  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="nat64"):
        await create_connected_sock("127.0.0.1", 9, nat64=3)  # type: ignore[arg-type]


# -- the resolver on an IPv6-only network (scripted) ----------------------------------

#: The IPv6 source address of the scripted network.
SOURCE = "2001:db8:aaaa::7"


class Network:
    """A scripted network: the source-address probe's answers (no IPv4
    route unless *ipv4*) and a getaddrinfo answering ipv4only.arpa with
    *prefixes*, and names with their A records."""

    def __init__(
        self,
        prefixes: list[str],
        *,
        ipv4: bool = False,
        names: dict[str, list[str]] | None = None,
    ) -> None:
        self.prefixes = prefixes
        self.ipv4 = ipv4
        self.source: str | None = SOURCE
        self.names = names or {}
        self.lookups: list[tuple[Any, int]] = []
        self.probes: list[tuple[int, str]] = []

    def source_address(self, family: int, sockaddr: tuple[Any, ...]) -> Any:
        self.probes.append((family, sockaddr[0]))
        if family == INET:
            return (sockaddr[0], 0) if self.ipv4 else None
        return None if self.source is None else (self.source, 0, 0, 0)

    async def getaddrinfo(
        self, host: Any, port: Any, *, family: int = 0, **_: Any
    ) -> list[Any]:
        self.lookups.append((host, family))
        if host == "ipv4only.arpa" and family == INET6:
            if not self.prefixes:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return [
                (INET6, socket.SOCK_STREAM, 6, "", (str(embed(wka, p)), 0, 0, 0))
                for p in self.prefixes
                for wka in nat64.WELL_KNOWN_ADDRESSES
            ]
        if family in (0, INET) and host in self.names:
            return [
                (INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in self.names[host]
            ]
        raise socket.gaierror(socket.EAI_NODATA, "No address associated with hostname")

    def sort(self, infos: list[Any]) -> list[Any]:
        return sort_addresses(infos, source_address=self.source_address)


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> Iterator[Network]:
    """An IPv6-only network with the Well-Known Prefix; nothing remembered
    from another test."""
    scripted = Network(["64:ff9b::/96"])
    monkeypatch.setattr(_nat64_answers, "find_source_address", scripted.source_address)
    nat64.forget()
    _nat64_answers._ipv4_direct_until.clear()
    yield scripted
    nat64.forget()
    _nat64_answers._ipv4_direct_until.clear()


async def resolve(network: Network, host: str, **options: Any) -> list[Any]:
    stream = concurrent_resolver(
        host,
        443,
        type=socket.SOCK_STREAM,
        getaddrinfo_async=network.getaddrinfo,
        sort=network.sort,
        **options,
    )
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        return [info[4] async for info in stream]


async def test_ipv4_literal_without_a_route_goes_through_the_discovered_prefix(
    network: Network,
) -> None:
    assert await resolve(network, "192.0.2.10") == [("64:ff9b::c000:20a", 443, 0, 0)]
    # RFC 7050: through the resolver in use, AAAA of ipv4only.arpa.
    assert network.lookups == [("ipv4only.arpa", INET6)]


async def test_every_discovered_prefix_gives_an_address(network: Network) -> None:
    network.prefixes = ["64:ff9b::/96", "2001:db8:6464:1::/64"]
    assert await resolve(network, "192.0.2.10") == [
        ("64:ff9b::c000:20a", 443, 0, 0),
        ("2001:db8:6464:1:c0:2:a00:0", 443, 0, 0),
    ]


async def test_discovery_is_remembered_per_network(network: Network) -> None:
    await resolve(network, "192.0.2.10")
    await resolve(network, "198.51.100.7")
    assert network.lookups == [("ipv4only.arpa", INET6)]
    # Another network (another source address): discovered again.
    network.source = "2001:db8:bbbb::7"
    network.prefixes = ["2001:db8:64::/96"]
    answer = await resolve(network, "192.0.2.10")
    assert answer == [("2001:db8:64::c000:20a", 443, 0, 0)]
    assert len(network.lookups) == 2


async def test_failed_discovery_leaves_the_literal_as_it_was(network: Network) -> None:
    network.prefixes = []
    assert await resolve(network, "192.0.2.10") == [("192.0.2.10", 443)]
    # "No NAT64" is remembered for a while too: no lookup per connection.
    assert await resolve(network, "192.0.2.10") == [("192.0.2.10", 443)]
    assert len(network.lookups) == 1


async def test_expired_discovery_is_made_again(
    network: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    await resolve(network, "192.0.2.10")
    monkeypatch.setattr(nat64, "PREFIX_LIFETIME", 0.0)
    nat64.remember(SOURCE, nat64.recall(SOURCE) or ())
    await resolve(network, "192.0.2.10")
    assert len(network.lookups) == 2


async def test_special_ranges_stay_as_they_were(network: Network) -> None:
    for literal in ("169.254.0.10", "0.0.0.10", "255.255.255.255", "10.1.2.3"):
        assert await resolve(network, literal) == [(literal, 443)]


async def test_routed_ipv4_literal_is_answered_directly_without_discovery(
    network: Network,
) -> None:
    network.ipv4 = True
    stream = concurrent_resolver("192.0.2.10", 443, type=socket.SOCK_STREAM)
    assert type(stream).__name__ == "_DirectAnswer"
    assert [info[4] async for info in stream] == [("192.0.2.10", 443)]
    assert network.lookups == []
    # The probe's verdict is remembered: the next literal pays no probe.
    probes = len(network.probes)
    concurrent_resolver("192.0.2.10", 443, type=socket.SOCK_STREAM)
    assert len(network.probes) == probes


async def test_without_any_ipv6_route_nothing_is_synthesized_or_looked_up(
    network: Network,
) -> None:
    # No network at all (loopback only): nothing to translate through.
    network.source = None
    stream = concurrent_resolver("192.0.2.10", 443, type=socket.SOCK_STREAM)
    assert type(stream).__name__ == "_DirectAnswer"
    assert [info[4] async for info in stream] == [("192.0.2.10", 443)]
    assert network.lookups == []


async def test_nat64_false_never_synthesizes(network: Network) -> None:
    assert await resolve(network, "192.0.2.10", nat64=False) == [("192.0.2.10", 443)]
    assert network.lookups == []


async def test_given_prefixes_are_used_without_a_lookup(network: Network) -> None:
    given = ["2001:db8:64::/96", "2001:db8:122:300::/56"]
    assert await resolve(network, "192.0.2.33", nat64=given) == [
        ("2001:db8:64::c000:221", 443, 0, 0),
        ("2001:db8:122:3c0:0:221::", 443, 0, 0),
    ]
    assert network.lookups == []


async def test_ipv4_literal_for_one_family_only_is_left_alone(network: Network) -> None:
    # family=AF_INET asks for IPv4 sockets: nothing to synthesize into.
    assert await resolve(network, "192.0.2.10", family=INET) == [("192.0.2.10", 443)]


async def test_ipv4_answers_of_a_name_go_through_nat64(network: Network) -> None:
    network.names = {"v4only.test": ["192.0.2.10", "192.0.2.11"]}
    assert await resolve(network, "v4only.test") == [
        ("64:ff9b::c000:20a", 443, 0, 0),
        ("64:ff9b::c000:20b", 443, 0, 0),
    ]
    stream = basic_resolver(
        "v4only.test", 443, type=socket.SOCK_STREAM,
        getaddrinfo_async=network.getaddrinfo, sort=network.sort,
    )  # fmt: skip
    assert [info[4][0] async for info in stream] == [
        "64:ff9b::c000:20a",
        "64:ff9b::c000:20b",
    ]


async def test_synthesis_is_traced(network: Network) -> None:
    events: list[TraceEvent] = []
    with tracing(events.append):
        await resolve(network, "192.0.2.10")
    (event,) = [e for e in events if e.kind == "nat64_synthesized"]
    assert event.host == "192.0.2.10"
    assert event.address == ("64:ff9b::c000:20a", 443, 0, 0)
    assert event.synthesized_from == ("192.0.2.10", 443)
    assert (event.nat64_prefix, event.nat64_origin) == ("64:ff9b::/96", "ipv4only.arpa")
    # The discovery lookup shows in the trace like any other.
    assert [(e.kind, e.host) for e in events[:1]] == [
        ("resolution_answered", "192.0.2.10")
    ]
    assert ("resolution_started", "ipv4only.arpa") in [(e.kind, e.host) for e in events]


async def test_cancelled_during_discovery_stops_the_lookup(network: Network) -> None:
    import asyncio

    started = asyncio.Event()
    stopped: list[str] = []

    async def never(host: Any, port: Any, **_: Any) -> list[Any]:
        started.set()
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            stopped.append(host)
        raise AssertionError("unreachable")  # pragma: no cover

    network.getaddrinfo = never  # type: ignore[method-assign]
    task = asyncio.ensure_future(resolve(network, "192.0.2.10"))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stopped == ["ipv4only.arpa"]
    # Nothing was learnt: the next connection asks again.
    assert nat64.recall(SOURCE) is None


# -- DNS64 answers in the RFC 6724 sort ----------------------------------------------


def v6(address: str) -> Any:
    return (INET6, socket.SOCK_STREAM, 6, "", (address, 443, 0, 0))


def test_dns64_answers_are_recognised_only_where_a_prefix_is_known() -> None:
    nat64.forget()
    assert known_prefix_of("64:ff9b::c000:201") is None
    nat64.remember(SOURCE, [nat64.WELL_KNOWN_PREFIX])
    try:
        assert known_prefix_of("64:ff9b::c000:201") == (
            nat64.WELL_KNOWN_PREFIX,
            ipaddress.IPv4Address("192.0.2.1"),
        )
        assert known_prefix_of("2001:db8::1") is None
    finally:
        nat64.forget()


def test_dns64_answers_sort_as_the_ipv4_address_they_stand_for() -> None:
    def source(family: int, sockaddr: tuple[Any, ...]) -> Any:
        return (SOURCE, 0, 0, 0)

    infos = [v6("64:ff9b::c000:201"), v6("fd00::1"), v6("2001:db8::1")]
    nat64.forget()
    # Unrecognised, the DNS64 answer is one more global IPv6 address.
    unknown = sort_addresses(infos, source_address=source)
    assert [i[4][0] for i in unknown][2] == "fd00::1"
    nat64.remember(SOURCE, [nat64.WELL_KNOWN_PREFIX])
    try:
        ordered = sort_addresses(infos, source_address=source)
    finally:
        nat64.forget()
    # v3 draft: as IPv4 (precedence 35), after native global IPv6 (40),
    # before unique-local IPv6 (3).
    assert [i[4][0] for i in ordered] == [
        "2001:db8::1",
        "64:ff9b::c000:201",
        "fd00::1",
    ]


# -- the command line's view ------------------------------------------------------


def test_command_line_tracer_shows_each_synthesized_address() -> None:
    import io

    from async_stagger.cli import Timeline

    event = TraceEvent(
        "nat64_synthesized",
        1.0,
        host="192.0.2.10",
        address=("64:ff9b::c000:20a", 443, 0, 0),
        synthesized_from=("192.0.2.10", 443),
        nat64_prefix="64:ff9b::/96",
        nat64_origin="ipv4only.arpa",
    )
    timeline = Timeline(io.StringIO())
    assert timeline.describe(event) == (
        "192.0.2.10 → 64:ff9b::c000:20a (NAT64 prefix 64:ff9b::/96 from ipv4only.arpa)"
    )
    data = timeline.event_json(event)
    assert data["address"] == ["64:ff9b::c000:20a", 443, 0, 0]
    assert data["synthesized_from"] == ["192.0.2.10", 443]
    assert (data["nat64_prefix"], data["nat64_origin"]) == (
        "64:ff9b::/96",
        "ipv4only.arpa",
    )
