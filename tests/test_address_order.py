"""RFC 6724 destination ordering and RFC 8305 §4 interleaving."""

from __future__ import annotations

import itertools
import socket
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_stagger import address_order
from async_stagger.address_order import (
    find_source_address,
    interleave,
    label,
    precedence,
    scope,
    sort_addresses,
)

INET = socket.AF_INET
INET6 = socket.AF_INET6


def info(address: str, port: int = 80) -> Any:
    if ":" in address:
        return (INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))
    return (INET, socket.SOCK_STREAM, 6, "", (address, port))


def hosts(infos: list[Any]) -> list[str]:
    return [i[4][0] for i in infos]


def sources(table: dict[str, str | None]) -> Any:
    """A pure source-address lookup: destination -> source (None: unusable)."""

    def lookup(family: int, sockaddr: tuple[Any, ...]) -> tuple[Any, ...] | None:
        source = table[sockaddr[0]]
        if source is None:
            return None
        return (source, 0, 0, 0) if family == INET6 else (source, 0)

    return lookup


# -- the policy table and scopes -------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected_precedence", "expected_label"),
    [
        ("::1", 50, 0),
        ("2001:db8::1", 40, 1),
        ("64:ff9b::c000:201", 40, 1),
        ("192.0.2.1", 35, 4),
        ("::ffff:192.0.2.1", 35, 4),
        ("2002:c000:201::1", 30, 2),
        ("2001:0:53aa:64c::1", 5, 5),
        ("fd00::1", 3, 13),
        ("::c000:201", 1, 3),
        ("fec0::1", 1, 11),
        ("3ffe::1", 1, 12),
    ],
)
def test_policy_table_gives_rfc_6724_default_precedence_and_label(
    address: str, expected_precedence: int, expected_label: int
) -> None:
    assert precedence(address) == expected_precedence
    assert label(address) == expected_label


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1", 2),
        ("127.255.0.9", 2),
        ("169.254.7.7", 2),
        ("10.0.0.1", 14),
        ("192.0.2.1", 14),
        ("::1", 2),
        ("fe80::1", 2),
        ("fe80::1%lo", 2),
        ("fec0::1", 5),
        ("ff02::1", 2),
        ("ff05::1", 5),
        ("ff0e::1", 14),
        ("2001:db8::1", 14),
        ("fd00::1", 14),
    ],
)
def test_scope_follows_rfc_6724_section_3(address: str, expected: int) -> None:
    assert scope(address) == expected


def test_policy_functions_reject_what_is_not_an_address() -> None:
    with pytest.raises(ValueError, match=r"example\.com"):
        precedence("example.com")


# -- sorting, rule by rule --------------------------------------------------------


def test_rule_1_puts_unusable_destinations_last() -> None:
    lookup = sources({"2001:db8::1": None, "192.0.2.1": "192.0.2.100"})
    ordered = sort_addresses(
        [info("2001:db8::1"), info("192.0.2.1")], source_address=lookup
    )
    assert hosts(ordered) == ["192.0.2.1", "2001:db8::1"]


def test_rule_2_prefers_destination_whose_scope_matches_its_source() -> None:
    # A global IPv6 destination reachable only from a link-local source
    # loses to IPv4 reached from a global source.
    lookup = sources({"2001:db8::1": "fe80::1", "192.0.2.1": "192.0.2.100"})
    ordered = sort_addresses(
        [info("2001:db8::1"), info("192.0.2.1")], source_address=lookup
    )
    assert hosts(ordered) == ["192.0.2.1", "2001:db8::1"]


def test_rule_5_prefers_destination_whose_label_matches_its_source() -> None:
    # A native IPv6 destination reached from a 6to4 source (label 2 vs 1)
    # loses to IPv4 reached from IPv4 (label 4 on both sides).
    lookup = sources({"2001:db8::1": "2002:c000:264::1", "192.0.2.1": "192.0.2.100"})
    ordered = sort_addresses(
        [info("2001:db8::1"), info("192.0.2.1")], source_address=lookup
    )
    assert hosts(ordered) == ["192.0.2.1", "2001:db8::1"]


def test_rule_6_prefers_higher_precedence_ipv6_over_ipv4() -> None:
    lookup = sources({"2001:db8::1": "2001:db8::100", "192.0.2.1": "192.0.2.100"})
    ordered = sort_addresses(
        [info("192.0.2.1"), info("2001:db8::1")], source_address=lookup
    )
    assert hosts(ordered) == ["2001:db8::1", "192.0.2.1"]


def test_rule_6_puts_ula_and_teredo_below_ipv4() -> None:
    lookup = sources(
        {
            "fd00::1": "fd00::2",
            "2001:0:53aa:64c::1": "2001:0:53aa:64c::2",
            "192.0.2.1": "192.0.2.100",
        }
    )
    ordered = sort_addresses(
        [info("2001:0:53aa:64c::1"), info("fd00::1"), info("192.0.2.1")],
        source_address=lookup,
    )
    assert hosts(ordered) == ["192.0.2.1", "2001:0:53aa:64c::1", "fd00::1"]


def test_rule_6_prefers_ipv6_loopback_over_ipv4_loopback() -> None:
    lookup = sources({"::1": "::1", "127.0.0.1": "127.0.0.1"})
    ordered = sort_addresses([info("127.0.0.1"), info("::1")], source_address=lookup)
    assert hosts(ordered) == ["::1", "127.0.0.1"]


def test_rule_8_prefers_smaller_scope_when_precedence_ties() -> None:
    # Both 127.0.0.1 (link-local scope) and 192.0.2.1 (global) are IPv4,
    # precedence 35, matched scope and label: rule 8 decides.
    lookup = sources({"192.0.2.1": "192.0.2.100", "127.0.0.1": "127.0.0.1"})
    ordered = sort_addresses(
        [info("192.0.2.1"), info("127.0.0.1")], source_address=lookup
    )
    assert hosts(ordered) == ["127.0.0.1", "192.0.2.1"]


def test_rule_9_prefers_longer_common_prefix_among_ipv6() -> None:
    lookup = sources(
        {"2001:db8:ffff::1": "2001:db8::100", "2001:db8::1": "2001:db8::100"}
    )
    ordered = sort_addresses(
        [info("2001:db8:ffff::1"), info("2001:db8::1")], source_address=lookup
    )
    assert hosts(ordered) == ["2001:db8::1", "2001:db8:ffff::1"]


def test_rule_9_leaves_ipv4_round_robin_order_alone() -> None:
    lookup = sources({"203.0.113.1": "192.0.2.100", "192.0.2.1": "192.0.2.100"})
    ordered = sort_addresses(
        [info("203.0.113.1"), info("192.0.2.1")], source_address=lookup
    )
    assert hosts(ordered) == ["203.0.113.1", "192.0.2.1"]


def test_rule_10_keeps_original_order_among_equals() -> None:
    addresses = ["2001:db8::3", "2001:db8::1", "2001:db8::2"]
    lookup = sources(dict.fromkeys(addresses, "2001:db8::100"))
    ordered = sort_addresses([info(a) for a in addresses], source_address=lookup)
    assert hosts(ordered) == addresses


def test_unusable_destinations_still_ordered_by_precedence() -> None:
    lookup = sources({"2001:db8::1": None, "192.0.2.1": None})
    ordered = sort_addresses(
        [info("192.0.2.1"), info("2001:db8::1")], source_address=lookup
    )
    assert hosts(ordered) == ["2001:db8::1", "192.0.2.1"]


def test_sort_keeps_answers_that_are_not_ip_addresses_after_the_rest() -> None:
    odd = (socket.AF_UNIX, socket.SOCK_STREAM, 0, "", ("/run/x.sock",))
    lookup = sources({"192.0.2.1": None})
    ordered = sort_addresses([odd, info("192.0.2.1")], source_address=lookup)
    assert ordered == [info("192.0.2.1"), odd]


# -- the real source address probe --------------------------------------------------


def test_loopback_destinations_are_usable_from_loopback_sources() -> None:
    assert find_source_address(INET, ("127.0.0.1", 80))[0] == "127.0.0.1"  # type: ignore[index]
    assert find_source_address(INET6, ("::1", 80, 0, 0))[0] == "::1"  # type: ignore[index]


def test_link_local_destination_without_zone_is_unusable() -> None:
    assert find_source_address(INET6, ("fe80::1", 80, 0, 0)) is None


def test_real_sort_prefers_ipv6_loopback_over_ipv4_loopback() -> None:
    ordered = sort_addresses([info("127.0.0.1"), info("::1")])
    assert hosts(ordered) == ["::1", "127.0.0.1"]


def test_source_addresses_are_cached_for_at_most_one_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    probes: list[Any] = []

    def probe(family: int, sockaddr: tuple[Any, ...]) -> tuple[Any, ...]:
        probes.append(sockaddr)
        return ("192.0.2.100", 40000)

    monkeypatch.setattr(address_order.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(address_order, "_probe_source", probe)
    monkeypatch.setattr(address_order, "_source_cache", {})
    find_source_address(INET, ("192.0.2.1", 80))
    find_source_address(INET, ("192.0.2.1", 443))  # same destination host
    now[0] += 0.999
    find_source_address(INET, ("192.0.2.1", 80))
    assert len(probes) == 1
    now[0] += 0.002
    find_source_address(INET, ("192.0.2.1", 80))
    assert len(probes) == 2


# -- interleaving ------------------------------------------------------------------

V6 = [info(f"2001:db8::{i}") for i in range(1, 4)]
V4 = [info(f"192.0.2.{i}") for i in range(1, 4)]


def test_interleave_alternates_families_after_one_lead_address() -> None:
    assert hosts(interleave(V6 + V4, 1)) == [
        "2001:db8::1",
        "192.0.2.1",
        "2001:db8::2",
        "192.0.2.2",
        "2001:db8::3",
        "192.0.2.3",
    ]


def test_interleave_leads_with_first_addr_family_count_addresses() -> None:
    assert hosts(interleave(V6 + V4, 2)) == [
        "2001:db8::1",
        "2001:db8::2",
        "192.0.2.1",
        "2001:db8::3",
        "192.0.2.2",
        "192.0.2.3",
    ]


def test_interleave_with_count_beyond_the_list_keeps_families_in_blocks() -> None:
    assert hosts(interleave(V6 + V4, 10)) == hosts(V6 + V4)


def test_interleave_leads_with_the_family_sorted_first() -> None:
    assert hosts(interleave(V4[:2] + V6[:2], 1)) == [
        "192.0.2.1",
        "2001:db8::1",
        "192.0.2.2",
        "2001:db8::2",
    ]


def test_interleave_continues_alternating_after_addresses_handed_out() -> None:
    # 192.0.2.1 went out alone; IPv6 arrived later and goes next.
    assert hosts(interleave(V6 + V4[1:], 1, already_yielded=[INET])) == [
        "2001:db8::1",
        "192.0.2.2",
        "2001:db8::2",
        "192.0.2.3",
        "2001:db8::3",
    ]


def test_interleave_completes_a_lead_run_cut_short() -> None:
    assert hosts(interleave(V6[1:] + V4, 2, already_yielded=[INET6])) == [
        "2001:db8::2",
        "192.0.2.1",
        "2001:db8::3",
        "192.0.2.2",
        "192.0.2.3",
    ]


def test_interleave_of_nothing_is_nothing() -> None:
    assert interleave([], 1) == []


def test_interleave_rejects_a_count_below_one() -> None:
    with pytest.raises(ValueError, match=r"first_addr_family_count.*0"):
        interleave(V6, 0)


@given(
    families=st.lists(st.sampled_from([INET, INET6]), max_size=12),
    count=st.integers(min_value=1, max_value=5),
)
def test_interleave_is_a_permutation_keeping_each_familys_order(
    families: list[int], count: int
) -> None:
    infos = [
        info(f"2001:db8::{i + 1}") if f == INET6 else info(f"192.0.2.{i + 1}")
        for i, f in enumerate(families)
    ]
    result = interleave(infos, count)
    assert sorted(map(hosts_key, result)) == sorted(map(hosts_key, infos))
    for family in (INET, INET6):
        assert [i for i in result if i[0] == family] == [
            i for i in infos if i[0] == family
        ]
    if infos:
        lead = infos[0][0]
        lead_total = families.count(lead)
        assert all(i[0] == lead for i in result[: min(count, lead_total)])
        # After the lead run, no two neighbours share a family while both
        # families still have addresses left.
        rest = result[min(count, lead_total) :]
        for a, b in itertools.pairwise(rest):
            if a[0] == b[0]:
                remaining = rest[rest.index(b) :]
                assert all(i[0] == a[0] for i in remaining)


def hosts_key(i: Any) -> str:
    return str(i[4][0])
