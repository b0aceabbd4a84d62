"""The connection history: what it keeps, and what it changes on real sockets.

The table itself (smoothing, expiry, the LRU bound, partitioning by source
address) is checked with a clock of the test's own. What history does to a
connection is checked over loopback: blackholed, refusing and working lab
endpoints, answered by the lab's scripted getaddrinfo for made-up names.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import threading
from typing import Any

import pytest

from async_stagger import defaults
from async_stagger.address_order import (
    explain_order,
    find_source_address,
    sort_addresses,
)
from async_stagger.connection import create_connected_sock, open_connection
from async_stagger.history import (
    ConnectionHistory,
    attempt_delay_for_rtt,
    set_shared_history,
    shared_history,
)
from async_stagger.resolvers import concurrent_resolver
from async_stagger.trace import TraceEvent
from lab import Endpoint, Lab, ipv6_loopback_available

needs_ipv6 = pytest.mark.skipif(
    not ipv6_loopback_available(), reason="this machine has no IPv6 loopback (::1)"
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_history(**options: Any) -> tuple[ConnectionHistory, Clock]:
    clock = Clock()
    return ConnectionHistory(clock=clock, **options), clock


# -- the table ------------------------------------------------------------------


def test_first_rtt_sample_is_the_smoothed_rtt() -> None:
    history, _ = make_history()
    history.record_success("192.0.2.7", "198.51.100.1", 0.040)
    entry = history.lookup("192.0.2.7", "198.51.100.1")
    assert entry is not None
    assert entry.rtt == pytest.approx(0.040)
    assert entry.rtt_variation == pytest.approx(0.020)
    assert entry.reachable


def test_later_rtt_samples_are_smoothed_as_tcp_does() -> None:
    history, _ = make_history()
    history.record_success("192.0.2.7", "198.51.100.1", 0.040)
    history.record_success("192.0.2.7", "198.51.100.1", 0.080)
    entry = history.lookup("192.0.2.7", "198.51.100.1")
    assert entry is not None
    # RFC 6298 §2.3: RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R|, SRTT = 7/8 + 1/8.
    assert entry.rtt_variation == pytest.approx(0.75 * 0.020 + 0.25 * 0.040)
    assert entry.rtt == pytest.approx(0.875 * 0.040 + 0.125 * 0.080)


def test_entries_expire_after_their_lifetime() -> None:
    history, clock = make_history(lifetime=600)
    history.record_failure("192.0.2.7", "198.51.100.1", "no answer")
    clock.now += 600
    assert history.lookup("192.0.2.7", "198.51.100.1") is not None
    clock.now += 0.001
    assert history.lookup("192.0.2.7", "198.51.100.1") is None
    assert history.entries() == []


def test_table_drops_the_least_recently_used_entry_beyond_its_bound() -> None:
    history, _ = make_history(max_entries=2)
    history.record_success("192.0.2.7", "198.51.100.1", 0.01)
    history.record_success("192.0.2.7", "198.51.100.2", 0.01)
    history.lookup("192.0.2.7", "198.51.100.1")  # used: now the most recent
    history.record_success("192.0.2.7", "198.51.100.3", 0.01)
    assert len(history) == 2
    assert [key for key, _ in history.entries()] == [
        ("192.0.2.7", "198.51.100.1"),
        ("192.0.2.7", "198.51.100.3"),
    ]


def test_what_one_network_learned_does_not_apply_on_another() -> None:
    history, _ = make_history()
    history.record_failure("192.0.2.7", "2001:db8::1", "no answer")
    assert history.lookup("192.0.2.7", "2001:db8::1") is not None
    assert history.lookup("203.0.113.9", "2001:db8::1") is None
    history.record_success("203.0.113.9", "2001:db8::1", 0.01)
    history.forget("192.0.2.7")
    assert [key for key, _ in history.entries()] == [("203.0.113.9", "2001:db8::1")]
    history.clear()
    assert len(history) == 0


def test_latest_outcome_decides_whether_an_address_is_reachable() -> None:
    history, clock = make_history()
    history.record_success("192.0.2.7", "198.51.100.1", 0.01)
    clock.now += 1
    history.record_failure("192.0.2.7", "198.51.100.1", "failed")
    entry = history.lookup("192.0.2.7", "198.51.100.1")
    assert entry is not None
    assert not entry.reachable
    assert entry.failure == "failed"
    assert entry.rtt == pytest.approx(0.01)  # the RTT is kept
    clock.now += 1
    history.record_success("192.0.2.7", "198.51.100.1", 0.01)
    entry = history.lookup("192.0.2.7", "198.51.100.1")
    assert entry is not None
    assert entry.reachable


def test_attempt_delay_is_clamped_to_the_minimum_and_maximum() -> None:
    assert (
        attempt_delay_for_rtt(0.001, 0.0005)
        == defaults.MINIMUM_CONNECTION_ATTEMPT_DELAY
    )
    assert attempt_delay_for_rtt(0.2, 0.05) == pytest.approx(0.4)
    assert attempt_delay_for_rtt(5.0) == defaults.MAXIMUM_CONNECTION_ATTEMPT_DELAY
    assert attempt_delay_for_rtt(float("inf")) == (
        defaults.MAXIMUM_CONNECTION_ATTEMPT_DELAY
    )
    assert defaults.MINIMUM_CONNECTION_ATTEMPT_DELAY == 0.1
    assert defaults.MAXIMUM_CONNECTION_ATTEMPT_DELAY == 2.0


def test_no_computed_delay_is_below_ten_milliseconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # RFC 8305 §5 MUST, whatever the minimum is configured to.
    monkeypatch.setattr(defaults, "MINIMUM_CONNECTION_ATTEMPT_DELAY", 0.0)
    assert attempt_delay_for_rtt(0.0) == defaults.CONNECTION_ATTEMPT_DELAY_FLOOR == 0.01


def test_attempt_delay_is_known_only_with_a_measured_rtt() -> None:
    history, _ = make_history()
    history.record_failure("192.0.2.7", "198.51.100.1", "no answer")
    assert history.attempt_delay("192.0.2.7", "198.51.100.1") is None
    history.record_success("192.0.2.7", "198.51.100.2", 0.001)
    assert history.attempt_delay("192.0.2.7", "198.51.100.2") == 0.1


def test_bad_settings_are_refused_with_the_value_named() -> None:
    with pytest.raises(ValueError, match="-1"):
        ConnectionHistory(lifetime=-1)
    with pytest.raises(ValueError, match="0"):
        ConnectionHistory(max_entries=0)
    with pytest.raises(TypeError, match="max_entries must be an int, got str 'many'"):
        ConnectionHistory(max_entries="many")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ConnectionHistory"):
        set_shared_history({})  # type: ignore[arg-type]


def test_shared_history_can_be_replaced_and_put_back() -> None:
    mine = ConnectionHistory()
    previous = set_shared_history(mine)
    try:
        assert shared_history() is mine
    finally:
        assert set_shared_history(previous) is mine
    assert shared_history() is previous


def test_threads_sharing_a_history_keep_it_within_its_bound() -> None:
    history = ConnectionHistory(max_entries=50)

    def hammer(worker: int) -> None:
        for n in range(2000):
            destination = f"198.51.100.{n % 200}"
            if n % 3:
                history.record_success(f"192.0.2.{worker}", destination, 0.01)
            else:
                history.record_failure(f"192.0.2.{worker}", destination)
            history.lookup(f"192.0.2.{worker}", destination)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(history) == 50
    assert len(history.entries()) == 50


# -- ordering (RFC 8305 §4) ------------------------------------------------------


def info(host: str) -> Any:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    address = (host, 80, 0, 0) if family == socket.AF_INET6 else (host, 80)
    return (family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", address)


def from_source(family: int, address: tuple[Any, ...]) -> tuple[Any, ...]:
    # One global source per family: a dual-stack host.
    if family == socket.AF_INET6:
        return ("2001:db8:1::7", 0, 0, 0)
    return ("192.0.2.7", 0)


def test_an_address_that_went_unanswered_goes_after_the_other_family() -> None:
    history, _ = make_history()
    infos = [info("2001:db8:1::1"), info("198.51.100.1")]
    assert sort_addresses(infos, source_address=from_source) == infos
    history.record_failure("2001:db8:1::7", "2001:db8:1::1", "no answer")
    ordered = sort_addresses(infos, source_address=from_source, history=history)
    # Reordered, never removed.
    assert ordered == [info("198.51.100.1"), info("2001:db8:1::1")]


def test_history_rules_come_after_rule_8_and_before_rule_9() -> None:
    history, _ = make_history()
    close = info("2001:db8:1::1")  # longer prefix match with the source
    far = info("2001:db8:ffff::1")
    assert sort_addresses([far, close], source_address=from_source) == [close, far]
    # Lower RTT beats rule 9 ...
    history.record_success("2001:db8:1::7", "2001:db8:ffff::1", 0.005)
    history.record_success("2001:db8:1::7", "2001:db8:1::1", 0.050)
    ordered = sort_addresses([close, far], source_address=from_source, history=history)
    assert ordered == [far, close]
    # ... but never rule 6: IPv6 keeps its precedence over a faster IPv4.
    v4 = info("198.51.100.1")
    history.record_success("192.0.2.7", "198.51.100.1", 0.001)
    ordered = sort_addresses([v4, far], source_address=from_source, history=history)
    assert ordered == [far, v4]


def test_an_address_used_before_goes_first_among_equals() -> None:
    history, _ = make_history()
    a, b = info("198.51.100.1"), info("198.51.100.2")
    history.record_success("192.0.2.7", "198.51.100.2", 0.0101)
    history.record_success("192.0.2.7", "198.51.100.1", 0.0104)
    # Same RTT to the millisecond: the one used more recently is not
    # preferred for that, both were used; the original order stands.
    assert sort_addresses([a, b], source_address=from_source, history=history) == [
        a,
        b,
    ]
    c = info("198.51.100.3")
    history.record_failure("192.0.2.7", "198.51.100.3", "failed")
    history.record_success("192.0.2.7", "198.51.100.3", 0.0102)
    assert (
        sort_addresses([c, a, b], source_address=from_source, history=history)[0] == c
    )


def test_explain_order_names_the_rule_that_placed_each_address() -> None:
    history, _ = make_history()
    v6, v4, v6b = info("2001:db8:1::1"), info("198.51.100.1"), info("2001:db8:1::2")
    reasons = explain_order([v6, v4, v6b], source_address=from_source)
    assert reasons == [
        "RFC 6724 rule 6: higher precedence",
        "family interleave (RFC 8305 §4)",
        "last",
    ]
    history.record_failure("2001:db8:1::7", "2001:db8:1::1", "no answer")
    reasons = explain_order([v4, v6], source_address=from_source, history=history)
    assert reasons[0].startswith("history: the addresses after it failed")
    assert "RFC 6724 rule 1" in reasons[0]


# -- on real sockets ---------------------------------------------------------------


def resolver_for(getaddrinfo: Any) -> Any:
    return functools.partial(concurrent_resolver, getaddrinfo_async=getaddrinfo)


def source_of(endpoint: Endpoint) -> str:
    source = find_source_address(endpoint.family, endpoint.sockaddr)
    assert source is not None
    return str(source[0])


def started(events: list[TraceEvent]) -> list[Any]:
    return [event.address for event in events if event.kind == "attempt_started"]


async def connect_traced(host: str, resolver: Any, **options: Any) -> Any:
    events: list[TraceEvent] = []
    _, writer = await open_connection(
        host, 80, resolver=resolver, trace=events.append, **options
    )
    peer = writer.get_extra_info("peername")
    writer.close()
    await writer.wait_closed()
    return peer, started(events), events


@needs_ipv6
async def test_second_connection_skips_the_blackholed_ipv6_address(
    lab: Lab, fresh_shared_history: ConnectionHistory
) -> None:
    dead = lab.blackholed("::1")
    v4 = lab.working(lab.ipv4_address())
    resolver = resolver_for(lab.getaddrinfo({"dual.lab.test": [dead, v4]}))
    peer, tried, _ = await connect_traced("dual.lab.test", resolver)
    assert (peer, tried) == (v4.sockaddr, [dead.sockaddr, v4.sockaddr])
    entry = fresh_shared_history.lookup(source_of(dead), "::1")
    assert entry is not None
    assert entry.failure == "no answer"
    for _ in range(2):
        peer, tried, events = await connect_traced("dual.lab.test", resolver)
        assert (peer, tried) == (v4.sockaddr, [v4.sockaddr])
    [order] = [event for event in events if event.kind == "order_decided"]
    assert order.addresses == (v4.sockaddr, dead.sockaddr)
    assert order.reasons is not None
    assert "history" in order.reasons[0]


@needs_ipv6
async def test_history_none_leaves_every_connection_to_the_rfc_order(
    lab: Lab, fresh_shared_history: ConnectionHistory
) -> None:
    dead = lab.blackholed("::1")
    v4 = lab.working(lab.ipv4_address())
    resolver = resolver_for(lab.getaddrinfo({"dual.lab.test": [dead, v4]}))
    for _ in range(2):
        peer, tried, _ = await connect_traced("dual.lab.test", resolver, history=None)
        assert (peer, tried) == (v4.sockaddr, [dead.sockaddr, v4.sockaddr])
    assert len(fresh_shared_history) == 0


async def test_a_history_of_its_own_is_used_instead_of_the_shared_one(
    lab: Lab, fresh_shared_history: ConnectionHistory
) -> None:
    refusing = lab.refusing(lab.ipv4_address())
    v4 = lab.working(lab.ipv4_address())
    resolver = resolver_for(lab.getaddrinfo({"two.lab.test": [refusing, v4]}))
    mine = ConnectionHistory()
    peer, tried, _ = await connect_traced("two.lab.test", resolver, history=mine)
    assert (peer, tried) == (v4.sockaddr, [refusing.sockaddr, v4.sockaddr])
    assert len(fresh_shared_history) == 0
    entry = mine.lookup(source_of(refusing), refusing.host)
    assert entry is not None
    assert entry.failure == "failed"
    winner = mine.lookup(source_of(v4), v4.host)
    assert winner is not None
    assert winner.rtt is not None
    assert winner.used_at
    peer, tried, _ = await connect_traced("two.lab.test", resolver, history=mine)
    assert (peer, tried) == (v4.sockaddr, [v4.sockaddr])


async def test_a_bad_history_argument_is_a_type_error(lab: Lab) -> None:
    v4 = lab.working(lab.ipv4_address())
    resolver = resolver_for(lab.getaddrinfo({"one.lab.test": [v4]}))
    with pytest.raises(TypeError, match="'yes'"):
        await open_connection("one.lab.test", 80, resolver=resolver, history="yes")  # type: ignore[arg-type]


async def test_ip_literal_connections_leave_the_history_alone(
    lab: Lab, fresh_shared_history: ConnectionHistory
) -> None:
    v4 = lab.working(lab.ipv4_address())
    _, writer = await open_connection(v4.host, v4.port)
    writer.close()
    await writer.wait_closed()
    assert len(fresh_shared_history) == 0


async def test_a_wrong_entry_costs_one_attempt_delay_and_is_corrected(
    lab: Lab, fresh_shared_history: ConnectionHistory
) -> None:
    # The history says the working address went unanswered and the other,
    # now blackholed, worked: the blackholed one is tried first, the working
    # one a delay later, and the history learns the truth at once.
    dead = lab.blackholed(lab.ipv4_address())
    v4 = lab.working(lab.ipv4_address())
    fresh_shared_history.record_success(source_of(dead), dead.host, 0.001)
    fresh_shared_history.record_failure(source_of(v4), v4.host, "no answer")
    resolver = resolver_for(lab.getaddrinfo({"two.lab.test": [v4, dead]}))
    peer, tried, _ = await connect_traced("two.lab.test", resolver)
    assert (peer, tried) == (v4.sockaddr, [dead.sockaddr, v4.sockaddr])
    peer, tried, _ = await connect_traced("two.lab.test", resolver)
    assert (peer, tried) == (v4.sockaddr, [v4.sockaddr])


async def test_clients_with_different_histories_converge(lab: Lab) -> None:
    dead = lab.blackholed(lab.ipv4_address())
    v4 = lab.working(lab.ipv4_address())
    resolver = resolver_for(lab.getaddrinfo({"two.lab.test": [dead, v4]}))
    stale = ConnectionHistory()  # remembers the dead address working
    stale.record_success(source_of(dead), dead.host, 0.001)
    empty = ConnectionHistory()
    wrong = ConnectionHistory()  # remembers the working address failing
    wrong.record_failure(source_of(v4), v4.host, "failed")
    for history in (stale, empty, wrong):
        peer, _, _ = await connect_traced("two.lab.test", resolver, history=history)
        assert peer == v4.sockaddr
    for history in (stale, empty, wrong):
        peer, tried, _ = await connect_traced("two.lab.test", resolver, history=history)
        assert (peer, tried) == (v4.sockaddr, [v4.sockaddr])


async def test_histories_are_safe_to_share_between_loops_in_threads(
    lab: Lab,
) -> None:
    refusing = lab.refusing(lab.ipv4_address())
    v4 = lab.working(lab.ipv4_address())
    getaddrinfo = lab.getaddrinfo({"two.lab.test": [refusing, v4]})
    history = ConnectionHistory()
    errors: list[BaseException] = []

    async def connect_some() -> None:
        for _ in range(5):
            sock = await create_connected_sock(
                "two.lab.test", 80, resolver=resolver_for(getaddrinfo), history=history
            )
            sock.close()

    def in_a_thread() -> None:
        try:
            asyncio.run(connect_some())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=in_a_thread) for _ in range(3)]
    for thread in threads:
        thread.start()
    await connect_some()
    for thread in threads:
        await asyncio.to_thread(thread.join)
    assert errors == []
    entry = history.lookup(source_of(v4), v4.host)
    assert entry is not None
    assert entry.reachable
    assert entry.rtt is not None


# -- delays (RFC 8305 §5), on the virtual clock -----------------------------------


async def race_past_a_blackhole(
    lab: Lab, seeded: ConnectionHistory | None, **options: Any
) -> tuple[float, list[TraceEvent]]:
    """Connect to a name whose first address is blackholed and whose second
    works (the first answered in 1 ms before, as *seeded* remembers; without
    it, no history is used); return the delay between the two attempts and
    the events."""
    dead = lab.blackholed(lab.ipv4_address())
    v4 = lab.working(lab.ipv4_address())
    if seeded is not None:
        seeded.record_success(source_of(dead), dead.host, 0.001)
    else:
        options["history"] = None
    events: list[TraceEvent] = []
    _, writer = await open_connection(
        "two.lab.test",
        80,
        resolver=resolver_for(lab.getaddrinfo({"two.lab.test": [dead, v4]})),
        trace=events.append,
        **options,
    )
    writer.close()
    await writer.wait_closed()
    times = {(e.kind, e.index): e.time for e in events}
    return times[("attempt_started", 1)] - times[("attempt_started", 0)], events


@pytest.mark.virtual_clock
async def test_delay_after_an_address_with_a_short_rtt_is_the_minimum(
    lab: Lab, fresh_shared_history: ConnectionHistory
) -> None:
    # The shared history, as a connection uses it by default.
    waited, events = await race_past_a_blackhole(lab, fresh_shared_history)
    assert waited == pytest.approx(defaults.MINIMUM_CONNECTION_ATTEMPT_DELAY)
    [note] = [e for e in events if e.kind == "attempt_delay_from_history"]
    assert (note.index, note.delay) == (0, defaults.MINIMUM_CONNECTION_ATTEMPT_DELAY)


@pytest.mark.virtual_clock
async def test_a_delay_the_caller_gives_is_used_as_given(lab: Lab) -> None:
    for option in ({"delay": 0.3}, {"happy_eyeballs_delay": 0.3}):
        history = ConnectionHistory()
        waited, events = await race_past_a_blackhole(
            lab, history, history=history, **option
        )
        assert waited == pytest.approx(0.3)
        assert not [e for e in events if e.kind == "attempt_delay_from_history"]


@pytest.mark.virtual_clock
async def test_without_history_the_default_delay_applies(lab: Lab) -> None:
    waited, events = await race_past_a_blackhole(lab, None)
    assert waited == pytest.approx(defaults.CONNECTION_ATTEMPT_DELAY)
    [expired] = [e for e in events if e.kind == "attempt_delay_expired"]
    assert (expired.index, expired.delay) == (0, defaults.CONNECTION_ATTEMPT_DELAY)


@pytest.mark.virtual_clock
async def test_without_a_measured_rtt_the_default_delay_applies(
    lab: Lab, fresh_shared_history: ConnectionHistory
) -> None:
    # The history knows the address only as failed once, then used: no RTT.
    dead = lab.blackholed(lab.ipv4_address())
    v4 = lab.working(lab.ipv4_address())
    fresh_shared_history.record_failure(source_of(v4), "192.0.2.99", "failed")
    events: list[TraceEvent] = []
    sock = await create_connected_sock(
        "two.lab.test",
        80,
        resolver=resolver_for(lab.getaddrinfo({"two.lab.test": [dead, v4]})),
        trace=events.append,
    )
    sock.close()
    started = [e.time for e in events if e.kind == "attempt_started"]
    assert started[1] - started[0] == pytest.approx(defaults.CONNECTION_ATTEMPT_DELAY)


async def test_attempts_started_together_are_not_blamed_for_losing(
    lab: Lab,
) -> None:
    # delay=0 starts every attempt at once: the one that loses never had an
    # attempt delay to answer within, so nothing is held against it.
    slow = lab.blackholed(lab.ipv4_address())
    v4 = lab.working(lab.ipv4_address())
    history = ConnectionHistory()
    resolver = resolver_for(lab.getaddrinfo({"two.lab.test": [slow, v4]}))
    peer, tried, _ = await connect_traced(
        "two.lab.test", resolver, delay=0, history=history
    )
    assert (peer, tried) == (v4.sockaddr, [slow.sockaddr, v4.sockaddr])
    assert history.lookup(source_of(slow), slow.host) is None


async def test_an_address_that_could_not_be_bound_is_not_blamed(lab: Lab) -> None:
    v4 = lab.working(lab.ipv4_address())
    history = ConnectionHistory()
    resolver = resolver_for(lab.getaddrinfo({"one.lab.test": [v4]}))
    # 192.0.2.1 is no address of this machine: binding to it fails locally.
    with pytest.raises(OSError, match="error while attempting to bind"):
        await open_connection(
            "one.lab.test",
            80,
            resolver=resolver,
            local_addrs=[("192.0.2.1", 0)],
            history=history,
        )
    assert len(history) == 0


# -- the shortcuts: what they must never change -----------------------------------


def test_a_history_knows_an_address_until_its_last_entry_goes() -> None:
    history, clock = make_history(lifetime=600, max_entries=3)
    assert not history.knows_any(["198.51.100.1"])
    history.record_failure("192.0.2.7", "198.51.100.1", "failed")
    history.record_success("203.0.113.9", "198.51.100.1", 0.01)
    assert history.knows_any(["198.51.100.9", "198.51.100.1"])
    history.forget("192.0.2.7")
    assert history.knows_any(["198.51.100.1"])  # another network's entry
    # Dropped as the least recently used: known no more.
    history.record_success("192.0.2.7", "198.51.100.2", 0.01)
    history.record_success("192.0.2.7", "198.51.100.3", 0.01)
    history.record_success("192.0.2.7", "198.51.100.4", 0.01)
    assert not history.knows_any(["198.51.100.1"])
    # Expired and looked at: gone.
    clock.now += 601
    assert history.lookup("192.0.2.7", "198.51.100.2") is None
    assert not history.knows_any(["198.51.100.2"])
    assert history.knows_any(["198.51.100.3"])
    history.clear()
    assert not history.knows_any(["198.51.100.3", "198.51.100.4"])


def test_an_expired_entry_is_still_expired_when_recorded_over() -> None:
    history, clock = make_history(lifetime=600)
    history.record_success("192.0.2.7", "198.51.100.1", 0.5)
    history.record_failure("192.0.2.7", "198.51.100.1", "failed")
    clock.now += 601
    # The old RTT is past its lifetime: the new sample starts over.
    history.record_success("192.0.2.7", "198.51.100.1", 0.02)
    entry = history.lookup("192.0.2.7", "198.51.100.1")
    assert entry is not None
    assert (entry.rtt, entry.rtt_variation) == (0.02, 0.01)
    assert entry.failure == "failed"  # kept, as before: the latest failure
    assert type(entry).__name__ == "HistoryEntry"
    assert entry.reachable


def test_a_recorded_entry_becomes_the_most_recently_used() -> None:
    history, _ = make_history(max_entries=2)
    history.record_success("192.0.2.7", "198.51.100.1", 0.01)
    history.record_success("192.0.2.7", "198.51.100.2", 0.01)
    history.record_failure("192.0.2.7", "198.51.100.1", "no answer")
    history.record_success("192.0.2.7", "198.51.100.3", 0.01)
    assert [key for key, _ in history.entries()] == [
        ("192.0.2.7", "198.51.100.1"),
        ("192.0.2.7", "198.51.100.3"),
    ]
    history.record_success("192.0.2.7", "198.51.100.3", 0.01)
    history.record_success("192.0.2.7", "198.51.100.4", 0.01)
    assert [key for key, _ in history.entries()] == [
        ("192.0.2.7", "198.51.100.3"),
        ("192.0.2.7", "198.51.100.4"),
    ]


@pytest.mark.parametrize(
    "rtt",
    [0.0, -0.0, 0.001, 0.024, 0.025, 0.1, 0.3, 0.5, 1.99, 2.0, 2.5, 7, 0, 1],
)
def test_attempt_delay_is_the_clamp_it_stands_for(rtt: float) -> None:
    delay = rtt + 4 * (rtt / 2)
    expected = max(
        min(
            max(delay, defaults.MINIMUM_CONNECTION_ATTEMPT_DELAY),
            defaults.MAXIMUM_CONNECTION_ATTEMPT_DELAY,
        ),
        defaults.CONNECTION_ATTEMPT_DELAY_FLOOR,
    )
    found = attempt_delay_for_rtt(rtt, rtt / 2)
    assert (found, type(found)) == (expected, type(expected))


def test_addresses_the_history_never_saw_go_as_without_history() -> None:
    from async_stagger._answers import _order

    history, _ = make_history()
    history.record_success("127.0.0.1", "127.0.0.9", 0.001)
    infos = [info("127.0.0.3"), info("127.0.0.2")]
    for system_sorted in (False, True):
        assert _order(
            infos, sort_addresses, 1, system_sorted=system_sorted, history=history
        ) == _order(infos, sort_addresses, 1, system_sorted=system_sorted)


def test_an_address_the_history_knows_is_still_reordered_among_strangers() -> None:
    from async_stagger._answers import _order

    history, clock = make_history()
    source = find_source_address(socket.AF_INET, ("127.0.0.2", 80))
    assert source is not None
    history.record_success(source[0], "127.0.0.2", 0.001)
    history.record_success(source[0], "127.0.0.9", 0.001)
    infos = [info("127.0.0.3"), info("127.0.0.2")]
    # The system's order of one family, which history=None keeps ...
    assert _order(infos, sort_addresses, 1, system_sorted=True) == infos
    # ... gives way to the address used before.
    assert _order(infos, sort_addresses, 1, system_sorted=True, history=history) == [
        infos[1],
        infos[0],
    ]
    # An address that failed lately goes last.
    clock.now += 1
    history.record_failure(source[0], "127.0.0.2", "failed")
    assert (
        _order(infos[::-1], sort_addresses, 1, system_sorted=True, history=history)
        == infos
    )


def test_sorting_two_addresses_is_the_stable_sort_of_their_keys() -> None:
    # Two addresses are compared once instead of sorted: the order must be
    # the general sort's in every case, ties included (RFC 6724 rule 10).
    from async_stagger.address_order import _sort_key

    history, clock = make_history()
    history.record_success("192.0.2.7", "192.0.2.20", 0.004)
    history.record_success("192.0.2.7", "192.0.2.21", 0.030)
    history.record_failure("192.0.2.7", "192.0.2.22", "no answer")
    clock.now += 1
    history.record_success("2001:db8:1::7", "2001:db8::20", 0.004)
    hosts = ["192.0.2.20", "192.0.2.21", "192.0.2.22", "192.0.2.23"]
    hosts += ["2001:db8::20", "2001:db8::21", "fe80::1", "not an address"]
    for first in hosts:
        for second in hosts:
            pair = [info(first), info(second)]
            for used in (None, history):
                keys = [_sort_key(one, from_source, used) for one in pair]
                expected = [pair[at] for at in sorted(range(2), key=keys.__getitem__)]
                assert (
                    sort_addresses(pair, source_address=from_source, history=used)
                    == expected
                ), (first, second, used)


def test_sorting_two_addresses_marks_their_entries_used_in_their_order() -> None:
    # The sort looks each address up, first to last, as it always did: the
    # one looked up last is the most recently used (what the bound drops
    # last).
    history, _ = make_history()
    history.record_success("192.0.2.7", "192.0.2.20", 0.004)
    history.record_success("192.0.2.7", "192.0.2.21", 0.004)
    for pair in (["192.0.2.21", "192.0.2.20"], ["192.0.2.20", "192.0.2.21"]):
        sort_addresses(
            [info(host) for host in pair], source_address=from_source, history=history
        )
        assert [key[1] for key, _ in history.entries()] == pair


def test_an_expired_entry_met_by_the_sort_is_dropped_as_a_lookup_drops_it() -> None:
    # The sort skips the lookup only for addresses with no entry at all; an
    # expired one is still looked at, and so dropped.
    history, clock = make_history(lifetime=60)
    history.record_failure("192.0.2.7", "192.0.2.20", "failed")
    clock.now += 61
    assert len(history) == 1
    ordered = sort_addresses(
        [info("192.0.2.20"), info("192.0.2.21")],
        source_address=from_source,
        history=history,
    )
    assert [one[4][0] for one in ordered] == ["192.0.2.20", "192.0.2.21"]
    assert len(history) == 0
    assert not history.knows_any(["192.0.2.20"])


@pytest.mark.parametrize(
    ("rtt", "recorded"),
    [(-1.0, 0.0), (-0.0, 0.0), (0, 0.0), (float("nan"), 0.0), (3, 3), (0.25, 0.25)],
)
def test_an_rtt_below_zero_or_not_a_number_is_recorded_as_zero(
    rtt: float, recorded: float
) -> None:
    history, _ = make_history()
    history.record_success("192.0.2.7", "198.51.100.1", rtt)
    entry = history.lookup("192.0.2.7", "198.51.100.1")
    assert entry is not None
    assert (entry.rtt, type(entry.rtt)) == (recorded, type(recorded))
    history.record_success("192.0.2.7", "198.51.100.1", rtt)
    entry = history.lookup("192.0.2.7", "198.51.100.1")
    assert entry is not None
    assert entry.rtt == pytest.approx(recorded)


def test_addresses_joining_late_are_ordered_by_what_the_history_knows_then() -> None:
    # RFC 8305 §6: a second family's answer arrives after the first
    # attempts started; it is ordered on its own, carrying the interleave
    # on, by the history as it stands when it arrives.
    from async_stagger._answers import _order

    history, clock = make_history()
    late = [info("2001:db8::20"), info("2001:db8::21")]
    yielded = [socket.AF_INET]
    assert _order(late, sort_addresses, 1, yielded, history=history) == _order(
        late, sort_addresses, 1, yielded
    )
    source = find_source_address(socket.AF_INET6, late[1][4])
    if source is not None:
        history.record_success(str(source[0]), "2001:db8::21", 0.001)
        assert _order(late, sort_addresses, 1, yielded, history=history) == [
            late[1],
            late[0],
        ]
        clock.now += 1
        history.record_failure(str(source[0]), "2001:db8::21", "failed")
        assert _order(late[::-1], sort_addresses, 1, yielded, history=history) == late


# -- what one connection reads from the history, step by step ---------------------


async def connect_changing_history(
    lab: Lab, history: ConnectionHistory, change: Any, on: str
) -> tuple[float, list[TraceEvent]]:
    """Race past a blackhole as race_past_a_blackhole does, calling *change*
    when the tracer first sees an event of kind *on*; return the delay
    between the two attempts and the events."""
    dead = lab.blackholed(lab.ipv4_address())
    v4 = lab.working(lab.ipv4_address())
    events: list[TraceEvent] = []

    def trace(event: TraceEvent) -> None:
        if event.kind == on and not [e for e in events if e.kind == on]:
            change(dead, v4)
        events.append(event)

    _, writer = await open_connection(
        "two.lab.test",
        80,
        resolver=resolver_for(lab.getaddrinfo({"two.lab.test": [dead, v4]})),
        trace=trace,
        history=history,
    )
    writer.close()
    await writer.wait_closed()
    times = {(e.kind, e.index): e.time for e in events}
    return times[("attempt_started", 1)] - times[("attempt_started", 0)], events


@pytest.mark.virtual_clock
async def test_an_rtt_learned_after_the_sort_times_the_attempt(lab: Lab) -> None:
    # Another connection records between this one's sort and its first
    # attempt: the attempt delay reads the history as it is then.
    history = ConnectionHistory()

    def learn(dead: Endpoint, _: Endpoint) -> None:
        history.record_success(source_of(dead), dead.host, 0.001)

    waited, events = await connect_changing_history(
        lab, history, learn, "order_decided"
    )
    assert waited == pytest.approx(defaults.MINIMUM_CONNECTION_ATTEMPT_DELAY)
    assert [e.index for e in events if e.kind == "attempt_delay_from_history"] == [0]


@pytest.mark.virtual_clock
async def test_an_rtt_forgotten_after_the_sort_no_longer_times_the_attempt(
    lab: Lab,
) -> None:
    history = ConnectionHistory()
    dead = lab.blackholed(lab.ipv4_address())
    history.record_success(source_of(dead), dead.host, 0.001)
    waited, events = await connect_changing_history(
        lab, history, lambda *_: history.clear(), "order_decided"
    )
    assert waited == pytest.approx(defaults.CONNECTION_ATTEMPT_DELAY)
    assert not [e for e in events if e.kind == "attempt_delay_from_history"]


@pytest.mark.virtual_clock
async def test_an_attempt_is_recorded_under_the_source_it_started_from(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The system's source for the blackholed address changes (another
    # network) while its attempt waits: what the attempt taught is recorded
    # for the network it went out on, and the next attempt, started after
    # the change, for the new one.
    from async_stagger import address_order

    history = ConnectionHistory()
    # An entry for some other address: the history is not empty, yet knows
    # nothing of these two.
    history.record_success("192.0.2.7", "198.51.100.1", 0.01)
    moved = "127.0.0.99"

    def move(dead: Endpoint, v4: Endpoint) -> None:
        monkeypatch.setattr(
            address_order, "_probe_source", lambda family, address: (moved, 0)
        )
        address_order._source_cache.clear()

    try:
        _, events = await connect_changing_history(
            lab, history, move, "attempt_delay_expired"
        )
    finally:
        address_order._source_cache.clear()
    tried = [e.address for e in events if e.kind == "attempt_started"]
    dead_host, working_host = tried[0][0], tried[1][0]
    by_key = dict(history.entries())
    [before] = {key[0] for key in by_key if key[1] == dead_host}
    assert before != moved
    assert by_key[(before, dead_host)].failure == "no answer"
    assert by_key[(moved, working_host)].rtt is not None


def test_a_record_that_fails_leaves_the_history_unlocked() -> None:
    # The record takes its lock by hand (see record_success): an error
    # inside must still let go of it, or every later record would hang.
    history, _ = make_history()
    with pytest.raises(TypeError):
        history.record_success("192.0.2.7", ["not", "hashable"], 0.01)  # type: ignore[arg-type]
    assert history._lock.acquire(blocking=False)
    history._lock.release()
    history.record_success("192.0.2.7", "198.51.100.1", 0.01)
    assert len(history) == 1
