"""The resolvers: RFC 8305 §3 timing, §4 order, §6 late answers, literals,
bad input, cancellation. Timing runs on the virtual clock with a fake
``getaddrinfo_async``; a few tests use the real loop and kernel."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import gc
import json
import math
import operator
import socket
import threading
import time
import weakref
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest

from async_stagger import (
    _answers,
    _family_merge,
    _lookup_sharing,
    _resolver_checks,
    resolvers,
)
from async_stagger.address_order import sort_addresses
from async_stagger.race import staggered_race
from async_stagger.resolvers import (
    basic_resolver,
    concurrent_resolver,
    shared_getaddrinfo,
)
from async_stagger.trace import TraceEvent, tracing

INET = socket.AF_INET
INET6 = socket.AF_INET6
UNSPEC = socket.AF_UNSPEC
STREAM = socket.SOCK_STREAM

V6 = ["2001:db8::1", "2001:db8::2", "2001:db8::3"]
V4 = ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
NEVER = math.inf


def info(address: str, port: int = 80) -> Any:
    if ":" in address:
        return (INET6, STREAM, 6, "", (address, port, 0, 0))
    return (INET, STREAM, 6, "", (address, port))


def every_destination_usable(
    family: int, sockaddr: tuple[Any, ...]
) -> tuple[Any, ...] | None:
    """Source addresses of a dual-stack host with global addresses."""
    if family == INET6:
        return ("2001:db8::100", 0, 0, 0)
    return ("192.0.2.100", 0)


#: RFC 6724 sorting that does not depend on this machine's routes.
SORT = partial(sort_addresses, source_address=every_destination_usable)


class FakeDNS:
    """An async getaddrinfo answering each family after a set delay.

    ``answers[family] = (delay, addresses or exception)``; a delay of
    ``NEVER`` is a lost query. Records calls and cancellations.
    """

    def __init__(self, answers: dict[int, tuple[float, Any]]) -> None:
        self.answers = answers
        self.calls: list[tuple[float, int]] = []
        self.cancelled: list[int] = []

    async def __call__(
        self,
        host: Any,
        port: Any,
        *,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[Any]:
        loop = asyncio.get_running_loop()
        self.calls.append((loop.time(), family))
        delay, answer = self.answers[family]
        try:
            if delay == NEVER:
                await loop.create_future()
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self.cancelled.append(family)
            raise
        if isinstance(answer, BaseException):
            raise answer
        return [info(address, int(port)) for address in answer]


async def pull_all(resolver: AsyncIterator[Any]) -> list[tuple[float, str]]:
    """Pull as fast as addresses come: (time, address) per item."""
    loop = asyncio.get_running_loop()
    return [(loop.time(), item[4][0]) async for item in resolver]


async def pull_paced(
    resolver: AsyncIterator[Any], gap: float, count: int | None = None
) -> list[tuple[float, str]]:
    """Pull like the race does: the next address only *gap* seconds after
    the previous one; stop after *count* items and close."""
    loop = asyncio.get_running_loop()
    pulled = []
    try:
        async for item in resolver:
            pulled.append((loop.time(), item[4][0]))
            if count is not None and len(pulled) == count:
                break
            await asyncio.sleep(gap)
    finally:
        await resolver.aclose()  # type: ignore[attr-defined]
    return pulled


def at(time: float, *addresses: str) -> list[tuple[Any, str]]:
    return [(pytest.approx(time, abs=1e-9), a) for a in addresses]


def gaierror(code: int = socket.EAI_NONAME, text: str = "Name or service not known"):  # type: ignore[no-untyped-def]
    return socket.gaierror(code, text)


# -- RFC 8305 §3: when the first address is handed out --------------------------------


@pytest.mark.virtual_clock
async def test_ipv6_answering_first_is_used_at_once():
    dns = FakeDNS({INET6: (0.01, V6[:2]), INET: (0.02, V4[:2])})
    pulled = await pull_all(
        concurrent_resolver("h", 80, getaddrinfo_async=dns, sort=SORT)
    )
    # Pulled eagerly, both IPv6 addresses go before IPv4 has answered; the
    # IPv4 ones follow when they arrive.
    assert pulled == at(0.01, *V6[:2]) + at(0.02, *V4[:2])


@pytest.mark.virtual_clock
async def test_both_lookups_start_together_ipv6_first():
    dns = FakeDNS({INET6: (0.01, V6[:1]), INET: (0.01, V4[:1])})
    await pull_all(concurrent_resolver("h", 80, getaddrinfo_async=dns, sort=SORT))
    assert dns.calls == [(0.0, INET6), (0.0, INET)]


@pytest.mark.virtual_clock
async def test_late_ipv4_answer_joins_the_untried_tail_interleaved():
    dns = FakeDNS({INET6: (0.01, V6), INET: (0.02, V4)})
    pulled = await pull_paced(
        concurrent_resolver("h", 80, getaddrinfo_async=dns, sort=SORT), 0.25
    )
    assert pulled == [
        *at(0.01, V6[0]),
        *at(0.26, V4[0]),
        *at(0.51, V6[1]),
        *at(0.76, V4[1]),
        *at(1.01, V6[2]),
        *at(1.26, V4[2]),
    ]


@pytest.mark.virtual_clock
async def test_ipv4_first_waits_for_ipv6_arriving_within_resolution_delay():
    dns = FakeDNS({INET6: (0.04, V6[:2]), INET: (0.01, V4[:2])})
    pulled = await pull_all(
        concurrent_resolver("h", 80, getaddrinfo_async=dns, sort=SORT)
    )
    assert pulled == at(0.04, V6[0], V4[0], V6[1], V4[1])


@pytest.mark.virtual_clock
async def test_ipv4_first_starts_after_resolution_delay_when_ipv6_is_slow():
    dns = FakeDNS({INET6: (1.0, V6), INET: (0.01, V4)})
    pulled = await pull_paced(
        concurrent_resolver("h", 80, getaddrinfo_async=dns, sort=SORT), 0.25
    )
    # 0.01 + 0.05: the first IPv4 address; 0.31 and 0.56: IPv4 (IPv6 still
    # missing); at 1.0 IPv6 arrives and is interleaved into the rest.
    assert pulled == [
        *at(0.06, V4[0]),
        *at(0.31, V4[1]),
        *at(0.56, V4[2]),
        *at(1.0, V6[0]),
        *at(1.25, V6[1]),
        *at(1.5, V6[2]),
    ]


@pytest.mark.virtual_clock
async def test_ipv6_after_the_resolution_delay_is_interleaved_with_remaining_ipv4():
    dns = FakeDNS({INET6: (0.2, V6), INET: (0.01, V4)})
    pulled = await pull_paced(
        concurrent_resolver("h", 80, getaddrinfo_async=dns, sort=SORT), 0.25
    )
    assert [a for _, a in pulled] == [V4[0], V6[0], V4[1], V6[1], V4[2], V6[2]]
    assert pulled[0] == at(0.06, V4[0])[0]
    assert pulled[1] == at(0.31, V6[0])[0]


@pytest.mark.virtual_clock
async def test_resolution_delay_is_configurable():
    dns = FakeDNS({INET6: (1.0, V6[:1]), INET: (0.01, V4[:1])})
    pulled = await pull_paced(
        concurrent_resolver(
            "h", 80, getaddrinfo_async=dns, sort=SORT, resolution_delay=0.3
        ),
        0,
        count=1,
    )
    assert pulled == at(0.31, V4[0])
    assert dns.cancelled == [INET6]


@pytest.mark.virtual_clock
async def test_zero_resolution_delay_starts_with_ipv4_at_once():
    dns = FakeDNS({INET6: (1.0, V6[:1]), INET: (0.01, V4[:1])})
    pulled = await pull_paced(
        concurrent_resolver(
            "h", 80, getaddrinfo_async=dns, sort=SORT, resolution_delay=0
        ),
        0,
        count=1,
    )
    assert pulled == at(0.01, V4[0])


@pytest.mark.virtual_clock
async def test_infinite_resolution_delay_always_waits_for_ipv6():
    dns = FakeDNS({INET6: (3.0, V6[:1]), INET: (0.01, V4[:1])})
    pulled = await pull_all(
        concurrent_resolver(
            "h", 80, getaddrinfo_async=dns, sort=SORT, resolution_delay=math.inf
        )
    )
    assert pulled == at(3.0, V6[0], V4[0])


@pytest.mark.virtual_clock
async def test_unsorted_stream_leads_with_the_family_that_answered_first():
    dns = FakeDNS({INET6: (0.2, V6[:2]), INET: (0.01, V4[:2])})
    pulled = await pull_paced(
        concurrent_resolver("h", 80, getaddrinfo_async=dns, sort=False), 0.25
    )
    assert pulled == [
        *at(0.06, V4[0]),
        *at(0.31, V6[0]),
        *at(0.56, V4[1]),
        *at(0.81, V6[1]),
    ]


@pytest.mark.virtual_clock
async def test_lost_ipv6_answer_costs_only_the_resolution_delay():
    dns = FakeDNS({INET6: (NEVER, None), INET: (0.01, V4)})
    pulled = await pull_paced(
        concurrent_resolver("h", 80, getaddrinfo_async=dns, sort=SORT), 0, count=3
    )
    assert pulled == at(0.06, *V4)
    # Closing the stream cancelled the lookup that never answered.
    assert dns.cancelled == [INET6]


@pytest.mark.virtual_clock
async def test_lost_ipv4_answer_does_not_delay_ipv6():
    dns = FakeDNS({INET6: (0.01, V6), INET: (NEVER, None)})
    pulled = await pull_paced(
        concurrent_resolver("h", 80, getaddrinfo_async=dns, sort=SORT), 0, count=3
    )
    assert pulled == at(0.01, *V6)
    assert dns.cancelled == [INET]


@pytest.mark.virtual_clock
async def test_stream_waits_for_a_pending_lookup_once_addresses_run_out():
    dns = FakeDNS({INET6: (0.5, V6[:1]), INET: (0.01, V4[:1])})
    pulled = await pull_all(
        concurrent_resolver("h", 80, getaddrinfo_async=dns, sort=SORT)
    )
    assert pulled == at(0.06, V4[0]) + at(0.5, V6[0])


@pytest.mark.virtual_clock
async def test_ipv6_failure_lets_ipv4_go_without_resolution_delay():
    dns = FakeDNS({INET6: (0.01, gaierror()), INET: (0.02, V4[:2])})
    pulled = await pull_all(
        concurrent_resolver("h", 80, getaddrinfo_async=dns, sort=SORT)
    )
    assert pulled == at(0.02, *V4[:2])


@pytest.mark.virtual_clock
async def test_ipv6_failing_within_resolution_delay_releases_ipv4_at_once():
    dns = FakeDNS({INET6: (0.03, gaierror()), INET: (0.01, V4[:1])})
    pulled = await pull_all(
        concurrent_resolver("h", 80, getaddrinfo_async=dns, sort=SORT)
    )
    assert pulled == at(0.03, V4[0])


@pytest.mark.virtual_clock
async def test_ipv4_failure_is_not_an_error_when_ipv6_answers():
    dns = FakeDNS({INET6: (0.02, V6[:1]), INET: (0.01, OSError("network down"))})
    pulled = await pull_all(
        concurrent_resolver("h", 80, getaddrinfo_async=dns, sort=SORT)
    )
    assert pulled == at(0.02, V6[0])


@pytest.mark.virtual_clock
async def test_empty_ipv6_answer_waits_for_ipv4():
    dns = FakeDNS({INET6: (0.01, []), INET: (0.3, V4[:1])})
    pulled = await pull_all(
        concurrent_resolver("h", 80, getaddrinfo_async=dns, sort=SORT)
    )
    assert pulled == at(0.3, V4[0])


@pytest.mark.virtual_clock
async def test_empty_ipv4_answer_waits_for_ipv6():
    dns = FakeDNS({INET6: (0.3, V6[:1]), INET: (0.01, [])})
    pulled = await pull_all(
        concurrent_resolver("h", 80, getaddrinfo_async=dns, sort=SORT)
    )
    assert pulled == at(0.3, V6[0])


@pytest.mark.virtual_clock
async def test_instant_answers_are_used_at_once():
    async def instant(host, port, *, family, **kwargs):
        if family == INET6:
            raise gaierror(text="no AAAA")
        return [info(V4[0])]

    events: list[TraceEvent] = []
    with tracing(events.append):
        pulled = await pull_all(concurrent_resolver("h", 80, getaddrinfo_async=instant))
    assert pulled == at(0.0, V4[0])
    assert sorted(e.kind for e in lookup_events(events)) == [
        "resolution_answered",
        "resolution_failed",
        "resolution_started",
        "resolution_started",
    ]


# -- both families failing -------------------------------------------------------------


@pytest.mark.virtual_clock
async def test_both_failing_raises_gaierror_naming_host_and_both_causes():
    dns = FakeDNS(
        {
            INET6: (0.01, gaierror(socket.EAI_NONAME, "AAAA went wrong")),
            INET: (0.02, gaierror(socket.EAI_NONAME, "A went wrong")),
        }
    )
    loop = asyncio.get_running_loop()
    with pytest.raises(socket.gaierror) as caught:
        await pull_all(concurrent_resolver("example.test", 80, getaddrinfo_async=dns))
    assert loop.time() == pytest.approx(0.02, abs=1e-9)
    assert caught.value.errno == socket.EAI_NONAME
    message = str(caught.value)
    assert "'example.test'" in message
    assert "AAAA went wrong" in message
    assert "A went wrong" in message


@pytest.mark.virtual_clock
async def test_both_failing_with_raise_exc_group_raises_both_errors():
    v6_error = gaierror(socket.EAI_AGAIN, "AAAA timed out")
    v4_error = OSError("A refused")
    dns = FakeDNS({INET6: (0.01, v6_error), INET: (0.02, v4_error)})
    with pytest.raises(ExceptionGroup) as caught:
        await pull_all(
            concurrent_resolver(
                "example.test", 80, getaddrinfo_async=dns, raise_exc_group=True
            )
        )
    assert caught.value.exceptions == (v6_error, v4_error)
    assert "'example.test'" in str(caught.value)


@pytest.mark.virtual_clock
async def test_both_answers_empty_raises_gaierror_naming_host():
    dns = FakeDNS({INET6: (0.01, []), INET: (0.02, [])})
    with pytest.raises(
        socket.gaierror, match="returned empty list: no addresses found for host 'h'"
    ):
        await pull_all(concurrent_resolver("h", 80, getaddrinfo_async=dns))


@pytest.mark.virtual_clock
async def test_one_empty_one_failed_raises_gaierror_with_both_causes():
    dns = FakeDNS({INET6: (0.01, []), INET: (0.02, gaierror(text="A went wrong"))})
    with pytest.raises(socket.gaierror) as caught:
        await pull_all(concurrent_resolver("h", 80, getaddrinfo_async=dns))
    assert "IPv6: " in str(caught.value)
    assert "no addresses" in str(caught.value)
    assert "IPv4: " in str(caught.value)
    assert "A went wrong" in str(caught.value)


# -- First Address Family Count and order (RFC 8305 §4) --------------------------


@pytest.mark.virtual_clock
@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (1, [V6[0], V4[0], V6[1], V4[1], V6[2], V4[2]]),
        (2, [V6[0], V6[1], V4[0], V6[2], V4[1], V4[2]]),
        (10, V6 + V4),
    ],
)
async def test_first_addr_family_count_sets_the_lead(count, expected):
    dns = FakeDNS({INET6: (0.01, V6), INET: (0.01, V4)})
    pulled = await pull_all(
        concurrent_resolver(
            "h", 80, getaddrinfo_async=dns, sort=SORT, first_addr_family_count=count
        )
    )
    assert pulled == at(0.01, *expected)


@pytest.mark.virtual_clock
async def test_basic_resolver_applies_first_addr_family_count_too():
    dns = FakeDNS({UNSPEC: (0.01, V4[:2] + V6[:2])})
    pulled = await pull_all(
        basic_resolver(
            "h", 80, getaddrinfo_async=dns, sort=SORT, first_addr_family_count=2
        )
    )
    # RFC 6724 puts IPv6 first; two lead, then IPv4.
    assert pulled == at(0.01, V6[0], V6[1], V4[0], V4[1])


@pytest.mark.virtual_clock
async def test_unusable_ipv6_is_sorted_behind_ipv4():
    def no_ipv6_route(family: int, sockaddr: tuple[Any, ...]) -> Any:
        return None if family == INET6 else ("192.0.2.100", 0)

    dns = FakeDNS({INET6: (0.01, V6[:2]), INET: (0.01, V4[:2])})
    pulled = await pull_all(
        concurrent_resolver(
            "h",
            80,
            getaddrinfo_async=dns,
            sort=partial(sort_addresses, source_address=no_ipv6_route),
        )
    )
    assert [a for _, a in pulled] == [V4[0], V6[0], V4[1], V6[1]]


@pytest.mark.virtual_clock
async def test_sort_false_keeps_each_familys_getaddrinfo_order():
    dns = FakeDNS(
        {INET6: (0.01, ["fd00::1", "2001:db8::1"]), INET: (0.01, ["10.0.0.1"])}
    )
    pulled = await pull_all(
        concurrent_resolver("h", 80, getaddrinfo_async=dns, sort=False)
    )
    assert [a for _, a in pulled] == ["fd00::1", "10.0.0.1", "2001:db8::1"]


@pytest.mark.virtual_clock
async def test_sorting_demotes_ula_behind_ipv4():
    dns = FakeDNS(
        {INET6: (0.01, ["fd00::1", "2001:db8::1"]), INET: (0.01, ["192.0.2.1"])}
    )
    pulled = await pull_all(
        concurrent_resolver("h", 80, getaddrinfo_async=dns, sort=SORT)
    )
    # Precedence: 2001:db8::/32 40, IPv4 35, fc00::/7 3.
    assert [a for _, a in pulled] == ["2001:db8::1", "192.0.2.1", "fd00::1"]


@pytest.mark.virtual_clock
async def test_duplicate_addresses_are_dropped():
    dns = FakeDNS(
        {
            INET6: (0.01, [V6[0], V6[0], V6[1]]),
            INET: (0.02, [V4[0], V4[0]]),
        }
    )
    pulled = await pull_all(
        concurrent_resolver("h", 80, getaddrinfo_async=dns, sort=SORT)
    )
    assert [a for _, a in pulled] == [V6[0], V6[1], V4[0]]


@pytest.mark.virtual_clock
async def test_an_address_is_never_handed_out_twice_when_answers_overlap():
    # A fake name service answering IPv4-mapped duplicates in both lookups.
    dns = FakeDNS({INET6: (0.3, [V6[0], V4[0]]), INET: (0.01, [V4[0], V4[1]])})
    pulled = await pull_all(
        concurrent_resolver("h", 80, getaddrinfo_async=dns, sort=SORT)
    )
    assert [a for _, a in pulled] == [V4[0], V4[1], V6[0]]


# -- restricted family and basic_resolver ---------------------------------------------


@pytest.mark.virtual_clock
@pytest.mark.parametrize("family", [INET, INET6])
async def test_restricted_family_makes_only_that_lookup(family):
    dns = FakeDNS({INET6: (0.5, V6[:2]), INET: (0.5, V4[:2])})
    pulled = await pull_all(
        concurrent_resolver("h", 80, family=family, getaddrinfo_async=dns, sort=SORT)
    )
    assert dns.calls == [(0.0, family)]
    assert pulled == at(0.5, *(V6[:2] if family == INET6 else V4[:2]))


@pytest.mark.virtual_clock
async def test_basic_resolver_makes_one_unspec_lookup_and_waits_for_it():
    dns = FakeDNS({UNSPEC: (1.0, V4[:2] + V6[:2])})
    pulled = await pull_all(basic_resolver("h", 80, getaddrinfo_async=dns, sort=SORT))
    assert dns.calls == [(0.0, UNSPEC)]
    assert pulled == at(1.0, V6[0], V4[0], V6[1], V4[1])


@pytest.mark.virtual_clock
async def test_basic_resolver_raises_the_lookup_error_unchanged():
    error = gaierror(text="nope")
    dns = FakeDNS({UNSPEC: (0.01, error)})
    with pytest.raises(socket.gaierror) as caught:
        await pull_all(basic_resolver("h", 80, getaddrinfo_async=dns))
    assert caught.value is error


@pytest.mark.virtual_clock
async def test_basic_resolver_raises_gaierror_for_an_empty_answer():
    dns = FakeDNS({UNSPEC: (0.01, [])})
    with pytest.raises(
        socket.gaierror, match="returned empty list: no addresses found for host 'h'"
    ):
        await pull_all(basic_resolver("h", 80, getaddrinfo_async=dns))


# -- literals and host=None -----------------------------------------------------------


@pytest.mark.parametrize("resolver", [concurrent_resolver, basic_resolver])
@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("192.0.2.7", [(INET, STREAM, 6, "", ("192.0.2.7", 443))]),
        (b"192.0.2.7", [(INET, STREAM, 6, "", ("192.0.2.7", 443))]),
        ("2001:db8::7", [(INET6, STREAM, 6, "", ("2001:db8::7", 443, 0, 0))]),
        (
            "fe80::7%lo",
            [(INET6, STREAM, 6, "", ("fe80::7", 443, 0, socket.if_nametoindex("lo")))],
        ),
    ],
)
async def test_ip_literals_are_answered_without_a_lookup(resolver, host, expected):
    dns = FakeDNS({})
    events: list[TraceEvent] = []
    with tracing(events.append):
        got = [i async for i in resolver(host, 443, type=STREAM, getaddrinfo_async=dns)]
    assert got == expected
    assert dns.calls == []
    assert [(e.kind, e.family, e.addresses) for e in events] == [
        ("resolution_answered", expected[0][0], (expected[0][4],))
    ]


@pytest.mark.parametrize("resolver", [concurrent_resolver, basic_resolver])
@pytest.mark.parametrize("host", ["127.0.0.1\x00.example.com", b"h.test\x00x"])
@pytest.mark.parametrize("own_lookup", [False, True])
async def test_a_host_with_a_nul_is_refused_before_any_lookup(
    resolver, host, own_lookup
):
    # getaddrinfo would look up only the part before the NUL.
    dns = FakeDNS({})
    options = {"getaddrinfo_async": dns} if own_lookup else {}
    with pytest.raises(ValueError, match="embedded null character"):
        resolver(host, 80, **options)
    assert dns.calls == []


@pytest.mark.parametrize("resolver", [concurrent_resolver, basic_resolver])
async def test_no_host_means_loopback_without_a_lookup(resolver):
    dns = FakeDNS({})
    got = [i async for i in resolver(None, "80", type=STREAM, getaddrinfo_async=dns)]
    assert dns.calls == []
    assert sorted(i[4][0] for i in got) == ["127.0.0.1", "::1"]


async def test_no_host_with_ai_passive_means_the_wildcard_addresses():
    got = [
        i
        async for i in concurrent_resolver(
            None, 80, type=STREAM, flags=socket.AI_PASSIVE, sort=False
        )
    ]
    assert sorted(i[4][0] for i in got) == ["0.0.0.0", "::"]


async def test_literal_with_service_name_port_gets_the_service_port():
    got = [i async for i in concurrent_resolver("192.0.2.7", "http", type=STREAM)]
    assert got == [(INET, STREAM, 6, "", ("192.0.2.7", 80))]


async def test_literal_of_the_other_family_is_refused_like_getaddrinfo_does():
    with pytest.raises(socket.gaierror):
        [i async for i in concurrent_resolver("192.0.2.7", 80, family=INET6)]


async def test_literal_with_any_type_gives_every_socket_type():
    got = [i async for i in concurrent_resolver("192.0.2.7", 80)]
    assert {i[1] for i in got} == set(j[1] for j in socket.getaddrinfo("192.0.2.7", 80))


# -- ports and bad input ---------------------------------------------------------------


@pytest.mark.parametrize("resolver", [concurrent_resolver, basic_resolver])
@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"port": 70000}, OverflowError, "70000"),
        ({"port": -1}, OverflowError, "-1"),
        ({"port": "70000"}, OverflowError, "70000"),
        ({"port": b"65536"}, OverflowError, "65536"),
        ({"port": 80.0}, TypeError, "80.0"),
        ({"port": True}, TypeError, "True"),
        ({"host": 123}, TypeError, "123"),
        ({"family": socket.AF_UNIX}, socket.gaierror, "family.*AF_UNIX"),
        ({"family": "AF_INET"}, TypeError, "family.*AF_INET"),
        ({"type": None}, TypeError, "type.*None"),
        ({"proto": 6.0}, TypeError, "proto.*6.0"),
        ({"flags": "0"}, TypeError, "flags.*'0'"),
        ({"first_addr_family_count": 0}, ValueError, "first_addr_family_count.*0"),
        ({"first_addr_family_count": -3}, ValueError, "-3"),
        ({"first_addr_family_count": 1.5}, TypeError, "1.5"),
        ({"first_addr_family_count": True}, TypeError, "True"),
        ({"getaddrinfo_async": 5}, TypeError, "getaddrinfo_async.*5"),
        ({"sort": "yes"}, TypeError, "sort.*yes"),
    ],
)
def test_bad_arguments_are_refused_at_call_time(resolver, kwargs, error, pattern):
    arguments = {"host": "h", "port": 80} | kwargs
    host, port = arguments.pop("host"), arguments.pop("port")
    with pytest.raises(error, match=pattern):
        resolver(host, port, **arguments)


@pytest.mark.parametrize(
    ("delay", "error", "pattern"),
    [
        (-0.1, ValueError, r"resolution_delay.*-0\.1"),
        (math.nan, ValueError, "nan"),
        ("0.05", TypeError, "0.05"),
        (None, TypeError, "None"),
    ],
)
def test_bad_resolution_delay_is_refused_at_call_time(delay, error, pattern):
    with pytest.raises(error, match=pattern):
        concurrent_resolver("h", 80, resolution_delay=delay)


@pytest.mark.virtual_clock
@pytest.mark.parametrize("port", [0, 65535, "443", b"443", "https", None])
async def test_valid_ports_are_passed_to_the_lookup(port):
    seen = []

    async def lookup(host, port, **kwargs):
        seen.append(port)
        return [info("192.0.2.1")]

    [i async for i in basic_resolver("h", port, getaddrinfo_async=lookup)]
    assert seen == [port]


# -- trace events ---------------------------------------------------------------------


def lookup_events(events: list[TraceEvent]) -> list[TraceEvent]:
    """The events about lookups starting and ending (not the order decided
    or the resolution delay)."""
    kinds = {"resolution_started", "resolution_answered", "resolution_failed"}
    return [event for event in events if event.kind in kinds]


@pytest.mark.virtual_clock
async def test_each_lookup_reports_start_and_outcome():
    dns = FakeDNS({INET6: (0.02, gaierror(text="no AAAA")), INET: (0.01, V4[:1])})
    events: list[TraceEvent] = []
    with tracing(events.append):
        await pull_all(concurrent_resolver("example.test", 80, getaddrinfo_async=dns))
    summary = [(e.kind, e.time, e.host, e.family) for e in lookup_events(events)]
    assert summary == [
        ("resolution_started", 0.0, "example.test", INET6),
        ("resolution_started", 0.0, "example.test", INET),
        ("resolution_answered", pytest.approx(0.01, abs=1e-9), "example.test", INET),
        ("resolution_failed", pytest.approx(0.02, abs=1e-9), "example.test", INET6),
    ]
    assert events[2].addresses == (("192.0.2.1", 80),)
    assert isinstance(events[3].error, socket.gaierror)


# -- cancellation and closing early ----------------------------------------------------


@pytest.mark.virtual_clock
async def test_cancelling_a_pending_pull_cancels_both_lookups():
    dns = FakeDNS({INET6: (NEVER, None), INET: (NEVER, None)})
    stream = concurrent_resolver("h", 80, getaddrinfo_async=dns)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await anext(stream)
    assert sorted(dns.cancelled) == sorted([INET6, INET])
    await stream.aclose()  # type: ignore[attr-defined]
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


@pytest.mark.virtual_clock
async def test_cancelling_a_pull_during_the_resolution_delay_leaves_nothing_behind():
    dns = FakeDNS({INET6: (NEVER, None), INET: (0.01, V4)})
    stream = concurrent_resolver("h", 80, getaddrinfo_async=dns)
    pull = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.03)
    pull.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pull
    assert dns.cancelled == [INET6]
    await stream.aclose()  # type: ignore[attr-defined]


@pytest.mark.virtual_clock
async def test_closing_after_the_first_address_cancels_the_pending_lookup():
    dns = FakeDNS({INET6: (0.01, V6[:1]), INET: (5.0, V4)})
    stream = concurrent_resolver("h", 80, getaddrinfo_async=dns)
    first = await anext(stream)
    assert first[4][0] == V6[0]
    await stream.aclose()  # type: ignore[attr-defined]
    assert dns.cancelled == [INET]
    assert asyncio.get_running_loop().time() == pytest.approx(0.01, abs=1e-9)


@pytest.mark.virtual_clock
async def test_a_lookup_that_fails_while_nobody_listens_reports_no_unhandled_error():
    dns = FakeDNS({INET6: (0.01, V6[:1]), INET: (0.02, gaierror())})
    stream = concurrent_resolver("h", 80, getaddrinfo_async=dns)
    await anext(stream)
    await asyncio.sleep(0.1)  # the IPv4 lookup fails meanwhile
    await stream.aclose()  # type: ignore[attr-defined]


@pytest.mark.virtual_clock
async def test_cancelling_the_close_still_waits_for_the_lookups_to_stop():
    stopped = []

    async def slow_to_stop(host, port, *, family, **kwargs):
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.1)  # cleaning up takes a while
            stopped.append(family)
            raise
        return []

    stream = concurrent_resolver("h", 80, getaddrinfo_async=slow_to_stop)
    pull = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.01)
    pull.cancel()
    await asyncio.sleep(0.05)  # the pull is now closing the lookups
    pull.cancel()  # and is cancelled again meanwhile
    with pytest.raises(asyncio.CancelledError):
        await pull
    assert asyncio.get_running_loop().time() == pytest.approx(0.11, abs=1e-9)
    assert sorted(stopped) == sorted([INET6, INET])


@pytest.mark.virtual_clock
async def test_a_lookup_cancelling_itself_counts_as_that_family_failing():
    async def cancels_ipv6(host, port, *, family, **kwargs):
        await asyncio.sleep(0.01)
        if family == INET6:
            raise asyncio.CancelledError
        return [info(V4[0])]

    pulled = await pull_all(
        concurrent_resolver("h", 80, getaddrinfo_async=cancels_ipv6)
    )
    assert pulled == at(0.01, V4[0])


# -- sharing identical lookups in flight ----------------------------------------------


class CountingLoopLookup:
    """Stands in for ``loop.getaddrinfo`` on one loop."""

    def __init__(self, delay: float, answer: Any = None) -> None:
        self.delay = delay
        self.answer = answer
        self.calls = 0
        self.cancelled = 0

    async def __call__(self, host: Any, port: Any, **kwargs: Any) -> list[Any]:
        self.calls += 1
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if isinstance(self.answer, BaseException):
            raise self.answer
        return [info("192.0.2.1", int(port))]


@pytest.mark.virtual_clock
async def test_identical_lookups_in_flight_share_one_executor_job(monkeypatch):
    loop = asyncio.get_running_loop()
    lookup = CountingLoopLookup(0.1)
    monkeypatch.setattr(loop, "getaddrinfo", lookup)
    results = await asyncio.gather(
        *(shared_getaddrinfo("h", 80, family=INET) for _ in range(50)),
        shared_getaddrinfo("h", 81, family=INET),
    )
    assert lookup.calls == 2
    assert all(r == [info("192.0.2.1", 80)] for r in results[:50])
    assert results[50] == [info("192.0.2.1", 81)]
    # Nothing is cached once the lookup has finished.
    await shared_getaddrinfo("h", 80, family=INET)
    assert lookup.calls == 3


@pytest.mark.virtual_clock
async def test_shared_lookup_survives_one_waiter_being_cancelled(monkeypatch):
    loop = asyncio.get_running_loop()
    lookup = CountingLoopLookup(0.1)
    monkeypatch.setattr(loop, "getaddrinfo", lookup)
    first = asyncio.ensure_future(shared_getaddrinfo("h", 80))
    second = asyncio.ensure_future(shared_getaddrinfo("h", 80))
    await asyncio.sleep(0.05)
    first.cancel()
    assert await second == [info("192.0.2.1", 80)]
    assert first.cancelled()
    assert (lookup.calls, lookup.cancelled) == (1, 0)


@pytest.mark.virtual_clock
async def test_shared_lookup_is_cancelled_when_every_waiter_is(monkeypatch):
    loop = asyncio.get_running_loop()
    lookup = CountingLoopLookup(0.1)
    monkeypatch.setattr(loop, "getaddrinfo", lookup)
    waiters = [asyncio.ensure_future(shared_getaddrinfo("h", 80)) for _ in range(3)]
    await asyncio.sleep(0.05)
    for waiter in waiters:
        waiter.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    assert (lookup.calls, lookup.cancelled) == (1, 1)
    # A new caller starts afresh.
    assert await shared_getaddrinfo("h", 80) == [info("192.0.2.1", 80)]
    assert lookup.calls == 2


@pytest.mark.virtual_clock
async def test_shared_lookup_failure_reaches_every_waiter(monkeypatch):
    loop = asyncio.get_running_loop()
    lookup = CountingLoopLookup(0.1, gaierror(text="nope"))
    monkeypatch.setattr(loop, "getaddrinfo", lookup)
    results = await asyncio.gather(
        *(shared_getaddrinfo("h", 80) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, socket.gaierror) for r in results)
    assert lookup.calls == 1


@pytest.mark.virtual_clock
async def test_concurrent_resolver_uses_shared_loop_lookups_by_default(monkeypatch):
    loop = asyncio.get_running_loop()
    lookup = CountingLoopLookup(0.01)
    monkeypatch.setattr(loop, "getaddrinfo", lookup)

    async def resolve() -> list[Any]:
        return [i async for i in concurrent_resolver("h", 80)]

    results = await asyncio.gather(*(resolve() for _ in range(20)))
    assert lookup.calls == 2  # one per family, for all twenty
    assert all(r == [info("192.0.2.1", 80)] for r in results)


@pytest.mark.virtual_clock
async def test_closing_early_cancels_shared_lookups_nobody_else_waits_for(monkeypatch):
    loop = asyncio.get_running_loop()
    lookup = CountingLoopLookup(1.0)
    monkeypatch.setattr(loop, "getaddrinfo", lookup)
    stream = concurrent_resolver("h", 80)
    pull = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.1)
    pull.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pull
    await stream.aclose()  # type: ignore[attr-defined]
    assert (lookup.calls, lookup.cancelled) == (2, 2)


@pytest.mark.virtual_clock
async def test_closing_one_resolution_leaves_a_shared_lookup_to_the_others(
    monkeypatch,
):
    loop = asyncio.get_running_loop()
    lookup = CountingLoopLookup(1.0)
    monkeypatch.setattr(loop, "getaddrinfo", lookup)
    quitter = concurrent_resolver("h", 80)
    stayer = concurrent_resolver("h", 80)
    quitting = asyncio.ensure_future(anext(quitter))
    staying = asyncio.ensure_future(pull_all(stayer))
    await asyncio.sleep(0.1)
    quitting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await quitting
    assert await staying == at(1.0, "192.0.2.1")
    assert (lookup.calls, lookup.cancelled) == (2, 0)


@pytest.mark.virtual_clock
async def test_shared_lookups_report_trace_events_to_each_resolution(monkeypatch):
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "getaddrinfo", CountingLoopLookup(0.01))
    events: list[TraceEvent] = []
    with tracing(events.append):
        await asyncio.gather(
            pull_all(concurrent_resolver("h", 80)),
            pull_all(concurrent_resolver("h", 80)),
        )
    kinds = sorted((e.kind, e.family) for e in lookup_events(events))
    assert kinds == sorted(
        [("resolution_started", INET6), ("resolution_started", INET)] * 2
        + [("resolution_answered", INET6), ("resolution_answered", INET)] * 2
    )


@pytest.mark.virtual_clock
async def test_a_shared_lookup_reports_to_the_tracer_of_each_resolution(monkeypatch):
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "getaddrinfo", CountingLoopLookup(0.01))
    first: list[TraceEvent] = []
    second: list[TraceEvent] = []

    async def resolve(events: list[TraceEvent]) -> list[Any]:
        with tracing(events.append):
            return await pull_all(concurrent_resolver("h", 80))

    await asyncio.gather(resolve(first), resolve(second))
    for events in (first, second):
        assert sorted((e.kind, e.family) for e in lookup_events(events)) == sorted(
            [
                ("resolution_started", INET6),
                ("resolution_started", INET),
                ("resolution_answered", INET6),
                ("resolution_answered", INET),
            ]
        )


@pytest.mark.virtual_clock
async def test_a_raising_tracer_costs_no_resolution_sharing_the_lookup_its_answer(
    monkeypatch,
):
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "getaddrinfo", CountingLoopLookup(0.01))
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda loop, context: reported.append(context))

    def broken(event: TraceEvent) -> None:
        if event.kind == "resolution_answered":
            raise RuntimeError("the tracer broke")

    async def traced() -> list[Any]:
        with tracing(broken):
            return await pull_all(concurrent_resolver("h", 80))

    results = await asyncio.gather(traced(), pull_all(concurrent_resolver("h", 80)))
    assert results == [at(0.01, "192.0.2.1")] * 2
    assert [type(r["exception"]) for r in reported] == [RuntimeError] * 2


@pytest.mark.virtual_clock
async def test_a_raising_tracer_is_reported_when_the_lookup_answers_at_once(
    monkeypatch,
):
    # A lookup that never suspends has settled before the resolution
    # listens (under the eager task factory, inside create_task): the
    # resolution traces the answer itself, and must report a broken tracer
    # as the lookup task would, not fail with it.
    loop = asyncio.get_running_loop()

    async def at_once(host: Any, port: Any, *, family: int = 0, **_: Any) -> Any:
        if family == INET6:
            raise socket.gaierror(socket.EAI_NONAME, "no AAAA")
        return [(INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", port))]

    monkeypatch.setattr(loop, "getaddrinfo", at_once)
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda loop, context: reported.append(context))

    def broken(event: TraceEvent) -> None:
        if event.kind == "resolution_answered":
            raise RuntimeError("the tracer broke")

    with tracing(broken):
        infos = await pull_all(concurrent_resolver("h", 80))
    assert infos == at(0, "192.0.2.1")
    assert [type(r["exception"]) for r in reported] == [RuntimeError]


@pytest.mark.virtual_clock
async def test_race_fed_by_the_resolver_closes_it_when_won():
    dns = FakeDNS({INET6: (0.01, V6), INET: (NEVER, None)})
    tried = []

    async def attempts() -> AsyncIterator[Any]:
        resolver = concurrent_resolver("h", 80, getaddrinfo_async=dns, sort=SORT)
        async with contextlib.aclosing(resolver) as addresses:  # type: ignore[type-var]
            async for address in addresses:
                tried.append(address[4][0])

                async def connect(address: Any = address) -> str:
                    if address[4][0] == V6[0]:
                        await asyncio.sleep(10)  # blackholed
                    return str(address[4][0])

                yield connect

    winner, index, exceptions, iter_exc = await staggered_race(attempts(), 0.25)
    assert (winner, index, iter_exc) == (V6[1], 1, None)
    assert isinstance(exceptions[0], asyncio.CancelledError)
    assert exceptions[1] is None
    assert tried == V6[:2]
    assert dns.cancelled == [INET]
    assert asyncio.get_running_loop().time() == pytest.approx(0.26, abs=1e-9)


async def test_slow_default_executor_lookup_closed_early_leaks_nothing(monkeypatch):
    loop = asyncio.get_running_loop()
    finished = []

    def slow_lookup(*args: Any) -> Any:
        time.sleep(0.1)  # cannot be interrupted
        finished.append(True)
        return socket.getaddrinfo("127.0.0.1", 80, type=STREAM)

    async def executor_getaddrinfo(host: Any, port: Any, **kwargs: Any) -> Any:
        return await loop.run_in_executor(None, slow_lookup)

    monkeypatch.setattr(loop, "getaddrinfo", executor_getaddrinfo)
    stream = concurrent_resolver("h", 80)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.02):
            await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    assert finished == []
    await asyncio.sleep(0.15)
    assert finished == [True, True]


# -- the real loop and kernel ------------------------------------------------


REAL_LOOP_SCRIPT = """
import asyncio, json, socket
import loops
from async_stagger.resolvers import concurrent_resolver

async def resolve():
    stream = concurrent_resolver(
        "localhost", 80, family=socket.AF_INET, type=socket.SOCK_STREAM
    )
    return [info[4] async for info in stream]

system = socket.getaddrinfo("localhost", 80, socket.AF_INET, socket.SOCK_STREAM)
ours = {}
for flavour in loops.FLAVOURS:
    with asyncio.Runner(loop_factory=loops.loop_factory(flavour)) as runner:
        ours[flavour] = runner.run(resolve())
print(json.dumps({"system": [info[4] for info in system], "ours": ours}))
"""


def test_hosts_file_name_resolves_through_the_real_loop(netns):
    # A name in the namespace's hosts file, answered by the system's
    # getaddrinfo through each flavour's loop (no DNS server runs there).
    done = netns.run_python(REAL_LOOP_SCRIPT)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    expected = {tuple(address) for address in result["system"]}
    assert expected == {("127.0.0.1", 80)}
    for flavour, got in result["ours"].items():
        assert {tuple(address) for address in got} == expected, flavour
        assert len(got) == len(expected), flavour


PRIVATE_HOSTS_SCRIPT = """
import asyncio, socket
from async_stagger.resolvers import concurrent_resolver

async def main():
    async def resolve():
        stream = concurrent_resolver("dual.test", 443, type=socket.SOCK_STREAM)
        return [info[4][:2] async for info in stream]

    results = await asyncio.gather(*(resolve() for _ in range(50)))
    assert all(r == results[0] for r in results), results
    print(results[0])

asyncio.run(main())
"""


def test_dual_stack_hosts_file_name_resolves_both_families_ipv6_first(netns):
    netns.write_hosts({"dual.test": ["127.0.0.2", "::1"]})
    result = netns.run_python(PRIVATE_HOSTS_SCRIPT, timeout=60)
    assert result.returncode == 0, result.stderr
    addresses = ast.literal_eval(result.stdout.strip())
    # RFC 6724 rule 6: ::1 (precedence 50) before IPv4 (35). (glibc also
    # answers the IPv4 lookup with 127.0.0.1 for a "::1" hosts line.)
    assert addresses[0] == ("::1", 443)
    assert ("127.0.0.2", 443) in addresses
    assert len(set(addresses)) == len(addresses)


async def test_failing_real_lookups_raise_gaierror_naming_the_host():
    # AI_NUMERICHOST makes getaddrinfo refuse a name without asking DNS.
    with pytest.raises(socket.gaierror, match=r"'no-such-host\.invalid'") as caught:
        [
            i
            async for i in concurrent_resolver(
                "no-such-host.invalid", 80, flags=socket.AI_NUMERICHOST
            )
        ]
    assert caught.value.errno == socket.EAI_NONAME


async def test_closing_during_an_executor_lookup_leaks_nothing():
    loop = asyncio.get_running_loop()
    finished = []

    def slow_getaddrinfo(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.1)  # a name service that cannot be interrupted
        finished.append(True)
        return socket.getaddrinfo("127.0.0.1", 80, type=STREAM)

    async def in_executor(host: Any, port: Any, **kwargs: Any) -> Any:
        return await loop.run_in_executor(None, slow_getaddrinfo)

    stream = concurrent_resolver("h", 80, getaddrinfo_async=in_executor)
    pull = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.02)
    pull.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pull
    await stream.aclose()  # type: ignore[attr-defined]
    assert finished == []  # still running in its thread, now unobserved
    await asyncio.sleep(0.15)  # let the threads finish before the loop closes
    assert finished == [True, True]


def test_resolvers_module_exports_the_04_names():
    assert resolvers.AddrInfo is not None
    assert callable(resolvers.basic_resolver)
    assert callable(resolvers.concurrent_resolver)


@pytest.mark.parametrize(
    "host", ["127.0.0.2", "10.1.2.3", "0.0.0.0", "255.255.255.255", b"192.0.2.7"]
)
@pytest.mark.parametrize("port", [0, 80, 65535])
@pytest.mark.parametrize(
    ("family", "proto", "flags"),
    [
        (0, 0, 0),
        (socket.AF_INET, 0, 0),
        (0, socket.IPPROTO_TCP, 0),
        (0, 0, socket.AI_NUMERICHOST),
    ],
)
async def test_ipv4_literal_answer_is_exactly_what_getaddrinfo_gives(
    host, port, family, proto, flags
):
    # The commonest literal is answered without calling getaddrinfo: the
    # answer must not drift from the system's, value or type.
    ours = [
        info
        async for info in resolvers.concurrent_resolver(
            host, port, family=family, type=STREAM, proto=proto, flags=flags
        )
    ]
    text = host.decode() if isinstance(host, bytes) else host
    system = socket.getaddrinfo(
        text, port, family, STREAM, proto, flags | socket.AI_NUMERICHOST
    )
    assert ours == system
    assert [tuple(map(type, info)) for info in ours] == [
        tuple(map(type, info)) for info in system
    ]
    assert [type(info[4][1]) for info in ours] == [int]


@pytest.mark.parametrize(
    ("answers", "sorted_"),
    [
        ({socket.AF_INET: ["192.0.2.9", "10.0.0.9", "192.0.2.1"]}, False),
        ({socket.AF_INET6: ["2001:db8::9", "fe80::9", "2001:db8::1"]}, False),
        ({socket.AF_INET: ["192.0.2.9"], socket.AF_INET6: ["2001:db8::9"]}, True),
    ],
)
async def test_one_family_from_the_system_keeps_the_systems_order(
    monkeypatch, answers, sorted_
):
    # The system's getaddrinfo orders each answer by RFC 6724 itself; the
    # sort here is for the two families side by side, so a one-family answer
    # keeps the system's order (and costs no sorting).
    loop = asyncio.get_running_loop()
    sorted_lists = []

    def spy(infos: list[Any]) -> list[Any]:
        sorted_lists.append(list(infos))
        return SORT(infos)

    async def lookup(host: Any, port: Any, *, family: int = 0, **_: Any) -> Any:
        if family not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "no such address")
        return [info(address, port) for address in answers[family]]

    monkeypatch.setattr(loop, "getaddrinfo", lookup)
    monkeypatch.setattr(resolvers, "sort_addresses", spy)
    monkeypatch.setattr(_answers, "sort_addresses", spy)
    monkeypatch.setattr(_resolver_checks, "sort_addresses", spy)
    got = [i[4][0] async for i in concurrent_resolver("h", 80, type=STREAM)]
    assert bool(sorted_lists) is sorted_
    if not sorted_:
        (only,) = answers.values()
        assert got == only
    # A DNS library of one's own gives no such promise: its answers are
    # sorted whatever their families.
    sorted_lists.clear()
    got = [
        i[4][0]
        async for i in concurrent_resolver(
            "h", 80, type=STREAM, getaddrinfo_async=lookup
        )
    ]
    assert sorted_lists


def test_a_late_answer_of_the_other_family_from_the_system_is_sorted_after_all(
    monkeypatch,
):
    # The system's order stands only while one family is all there is, to
    # come and handed out: a late answer of the other family is sorted (and
    # interleaved) with what came before.
    sorted_lists = []

    def spy(infos: list[Any]) -> list[Any]:
        sorted_lists.append(list(infos))
        return SORT(infos)

    monkeypatch.setattr(_answers, "sort_addresses", spy)
    monkeypatch.setattr(_resolver_checks, "sort_addresses", spy)
    v4 = [info(address) for address in ["192.0.2.9", "10.0.0.9", "192.0.2.1"]]
    assert _answers._order(v4, spy, 1, [INET], system_sorted=True) == v4
    assert _answers._order(v4, spy, 1, (), system_sorted=True) == v4
    assert sorted_lists == []
    assert _answers._order(v4, spy, 1, [INET, INET6], system_sorted=True) == SORT(v4)
    assert sorted_lists == [v4]
    mixed = [*v4[:2], info(V6[0])]
    assert _answers._order(mixed, spy, 1, [INET], system_sorted=True) == SORT(mixed)
    assert sorted_lists == [v4, mixed]


async def test_a_literal_answer_that_fails_ends_the_iteration():
    # Like an async generator that raised: the error once, then nothing.
    stream = concurrent_resolver("::1", 80, family=INET, type=STREAM)
    with pytest.raises(socket.gaierror):
        await stream.__anext__()
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()


@pytest.mark.parametrize(
    ("name", "is_localhost"),
    [
        ("localhost", True),
        ("LOCALHOST.", True),
        ("app.LocalHost", True),
        ("a.b.localhost.", True),
        ("notlocalhost", False),
        ("localhost.example", False),
        ("localhost..", False),
        ("example.com", False),
    ],
)
async def test_localhost_names_are_answered_without_a_lookup(name, is_localhost):
    # RFC 6761 §6.3: localhost and the names under it are loopback, never
    # looked up (the namespace tests check no DNS query is sent).
    dns = FakeDNS({INET6: (0, []), INET: (0, ["192.0.2.1"])})
    stream = concurrent_resolver(name, 80, type=STREAM, getaddrinfo_async=dns)
    got = [i[4][0] async for i in stream]
    if is_localhost:
        assert (got, dns.calls) == (["::1", "127.0.0.1"], [])
    else:
        assert (got, len(dns.calls)) == (["192.0.2.1"], 2)


# -- how the lookups run --------------------------------------------------------------


class BlockingSystemLookup:
    """A stand-in for ``socket.getaddrinfo`` (called on the daemon threads)
    that answers only once released; no query leaves the machine."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls: list[int] = []

    def __call__(self, host: Any, port: Any, family: int = 0, *_: Any) -> list[Any]:
        self.calls.append(family)
        if not self.release.wait(10):
            raise socket.gaierror(socket.EAI_AGAIN, "never released")
        if family == INET6:
            raise gaierror()
        return [info("192.0.2.1", int(port))]


async def until(condition: Any) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never met")


async def test_lookups_of_the_system_getaddrinfo_run_without_a_task(monkeypatch):
    system = BlockingSystemLookup()
    monkeypatch.setattr(socket, "getaddrinfo", system)
    me = asyncio.current_task()
    pulling = asyncio.ensure_future(anext(concurrent_resolver("name.test", 80)))
    await until(lambda: len(system.calls) == 2)
    # Both queries are out, and the only tasks are the caller's.
    assert {t for t in asyncio.all_tasks() if t is not me} == {pulling}
    system.release.set()
    assert await pulling == info("192.0.2.1", 80)


async def test_an_abandoned_lookup_of_the_system_getaddrinfo_leaves_nothing_behind(
    monkeypatch,
):
    system = BlockingSystemLookup()
    monkeypatch.setattr(socket, "getaddrinfo", system)
    loop = asyncio.get_running_loop()
    stream = concurrent_resolver("name.test", 80)
    pulling = asyncio.ensure_future(anext(stream))
    await until(lambda: len(system.calls) == 2)
    pulling.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pulling
    # Nobody waits any more: the lookups are no longer offered to newcomers,
    # and their late answers are dropped (nothing raised, nothing settled).
    table = _lookup_sharing._in_flight_table(loop)
    assert not table
    system.release.set()
    await asyncio.sleep(0.05)
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_a_getaddrinfo_put_on_the_loop_runs_in_a_task_of_its_own(monkeypatch):
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    ran_in: list[asyncio.Task[Any] | None] = []

    async def patched(host: Any, port: Any, *, family: int = 0, **_: Any) -> Any:
        ran_in.append(asyncio.current_task())
        await asyncio.sleep(0)
        if family == INET6:
            raise gaierror()
        return [info("192.0.2.1", int(port))]

    monkeypatch.setattr(loop, "getaddrinfo", patched)
    assert [item async for item in concurrent_resolver("name.test", 80)] == [
        info("192.0.2.1", 80)
    ]
    assert len(ran_in) == 2
    assert me not in ran_in
    assert ran_in[0] is not ran_in[1]


async def test_immediate_answers_are_handed_out_without_waiting_to_be_woken(
    monkeypatch,
):
    async def wait(*_: Any) -> None:
        raise AssertionError("waited for an answer that was already in")

    monkeypatch.setattr(_family_merge._ConcurrentAnswers, "_wait", wait)

    async def instant(host: Any, port: Any, *, family: int = 0, **_: Any) -> Any:
        if family == INET6:
            return [info("2001:db8::1", int(port))]
        return [info("192.0.2.1", int(port))]

    got = [
        item[4][0]
        async for item in concurrent_resolver(
            "name.test", 80, getaddrinfo_async=instant, sort=SORT
        )
    ]
    assert got == ["2001:db8::1", "192.0.2.1"]


async def test_a_name_resolution_closed_before_its_first_address_looks_nothing_up():
    dns = FakeDNS({INET6: (0, V6[:1]), INET: (0, V4[:1])})
    stream = concurrent_resolver("name.test", 80, getaddrinfo_async=dns)
    await stream.aclose()  # type: ignore[attr-defined]
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    assert dns.calls == []


@pytest.mark.virtual_clock
async def test_a_name_resolution_that_ended_or_failed_only_ends():
    answered = FakeDNS({INET6: (0, V6[:1]), INET: (0, V4[:1])})
    stream = concurrent_resolver("name.test", 80, getaddrinfo_async=answered)
    assert len([item async for item in stream]) == 2
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    failed = FakeDNS({INET6: (0, gaierror()), INET: (0, gaierror())})
    stream = concurrent_resolver("name.test", 80, getaddrinfo_async=failed)
    with pytest.raises(socket.gaierror):
        await anext(stream)
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]


@pytest.mark.virtual_clock
async def test_a_name_resolution_tells_the_race_exactly_what_is_left_once_all_is_in():
    dns = FakeDNS({INET6: (0.01, V6[:1]), INET: (1.0, V4[:1])})
    stream = concurrent_resolver("name.test", 80, getaddrinfo_async=dns, sort=SORT)
    assert operator.length_hint(stream) == 1  # not started: more may come
    assert (await anext(stream))[4][0] == V6[0]
    # The IPv4 answer is not in yet: more may come.
    assert operator.length_hint(stream) == 1
    await asyncio.sleep(2)
    assert (await anext(stream))[4][0] == V4[0]
    assert operator.length_hint(stream) == 0  # both in, all handed out
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


def test_the_lookups_table_of_a_loop_that_is_gone_is_let_go():
    class Entry:
        pass

    loop = asyncio.new_event_loop()
    table = _lookup_sharing._in_flight_table(loop)
    assert table is not None
    assert _lookup_sharing._in_flight_table(loop) is table  # kept at hand
    entry = Entry()
    table[("h", 80, 0, 0, 0, 0)] = entry  # type: ignore[assignment]
    entry_ref = weakref.ref(entry)
    loop.close()
    del loop, table, entry
    gc.collect()
    assert entry_ref() is None
    assert _lookup_sharing._last_table is None


@pytest.mark.virtual_clock
async def test_closing_a_resolution_another_task_waits_on_ends_that_wait():
    dns = FakeDNS({INET6: (NEVER, V6[:1]), INET: (NEVER, V4[:1])})
    stream = concurrent_resolver("name.test", 80, getaddrinfo_async=dns)
    pulling = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.1)
    await stream.aclose()  # type: ignore[attr-defined]
    with pytest.raises(StopAsyncIteration):
        await pulling
    assert sorted(dns.cancelled) == [INET, INET6]


@pytest.mark.virtual_clock
async def test_closing_a_resolution_whose_answers_are_all_in_abandons_nothing():
    # Once every answer is in (an instant one included), closing stops no
    # lookup and reports none abandoned; a pull after it only ends.
    for delay in (0, 0.01):
        dns = FakeDNS({INET6: (delay, V6[:1]), INET: (delay, gaierror())})
        events: list[TraceEvent] = []
        with tracing(events.append):
            stream = concurrent_resolver(
                "name.test", 80, getaddrinfo_async=dns, sort=SORT
            )
            assert (await anext(stream))[4][0] == V6[0]
            await stream.aclose()  # type: ignore[attr-defined]
            await stream.aclose()  # type: ignore[attr-defined]
        with pytest.raises(StopAsyncIteration):
            await anext(stream)
        assert [event.kind for event in events] == [
            "resolution_started",
            "resolution_started",
            "resolution_answered",
            "resolution_failed",
            "order_decided",
        ]
        assert dns.cancelled == []
