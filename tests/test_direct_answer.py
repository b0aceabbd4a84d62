"""The remembered IPv4 literals (``_direct_answer.lone_ipv4_literal``) give
exactly the default resolver's answer, or nothing and leave it to the
resolver: a remembered literal can never change an answer."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from async_stagger import _direct_answer, _nat64_answers
from async_stagger._direct_answer import lone_ipv4_literal
from async_stagger.resolvers import _resolve_checked

STREAM = socket.SOCK_STREAM


@pytest.fixture(autouse=True)
def nothing_remembered() -> Iterator[None]:
    """No literal and no NAT64 verdict remembered from another test."""
    _direct_answer._ipv4_literals.clear()
    _nat64_answers._ipv4_direct_until.clear()
    yield
    _direct_answer._ipv4_literals.clear()
    _nat64_answers._ipv4_direct_until.clear()


async def resolved(
    host: Any,
    port: Any = 80,
    family: int = 0,
    proto: int = 0,
    flags: int = 0,
    nat64: Any = True,
) -> list[Any]:
    """The default resolver's answer, as the connection functions ask it."""
    stream = _resolve_checked(host, port, family, STREAM, proto, flags, nat64=nat64)
    return [info async for info in stream]


@pytest.mark.parametrize(
    ("port", "family", "proto", "flags"),
    [
        (80, 0, 0, 0),
        (0, 0, 0, 0),
        (65535, socket.AF_INET, 0, 0),
        (443, 0, socket.IPPROTO_TCP, 0),
        (443, 0, 0, socket.AI_NUMERICHOST),
    ],
)
async def test_a_remembered_ipv4_literal_is_answered_as_the_resolver_answers_it(
    port, family, proto, flags
):
    assert lone_ipv4_literal("127.0.0.1", port, family, proto, flags, True) is None
    answer = await resolved("127.0.0.1", port, family, proto, flags)
    lone = lone_ipv4_literal("127.0.0.1", port, family, proto, flags, True)
    assert [lone] == answer
    assert [tuple(map(type, lone))] == [tuple(map(type, info)) for info in answer]
    # The system's own answer, value and type.
    assert answer == socket.getaddrinfo(
        "127.0.0.1", port, family, STREAM, proto, flags | socket.AI_NUMERICHOST
    )


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "LOCALHOST.",
        "::1",
        "::ffff:127.0.0.1",
        "fe80::1%1",
        b"127.0.0.1",
    ],
)
async def test_only_ipv4_literals_given_as_str_are_remembered(host):
    await resolved(host)
    assert not _direct_answer._ipv4_literals
    assert lone_ipv4_literal(host, 80, 0, 0, 0, True) is None


async def test_a_str_subclass_host_is_left_to_the_resolver():
    class Host(str):
        pass

    await resolved("127.0.0.1")
    assert lone_ipv4_literal(Host("127.0.0.1"), 80, 0, 0, 0, True) is None


@pytest.mark.parametrize(
    ("port", "family", "proto", "flags"),
    [
        ("80", 0, 0, 0),  # a service name or numeric string: getaddrinfo's
        ("http", 0, 0, 0),
        (80, socket.AF_INET6, 0, 0),  # the other family: getaddrinfo refuses
        (80, 0, socket.IPPROTO_UDP, 0),
        (80, 0, 0, socket.AI_CANONNAME),
        (80, 0, 0, socket.AI_V4MAPPED),
    ],
)
async def test_a_call_other_than_the_common_one_is_left_to_the_resolver(
    port, family, proto, flags
):
    await resolved("127.0.0.1")
    assert lone_ipv4_literal("127.0.0.1", port, family, proto, flags, True) is None


async def test_with_nat64_on_the_probes_verdict_is_needed():
    await resolved("127.0.0.1")
    assert lone_ipv4_literal("127.0.0.1", 80, 0, 0, 0, True) is not None
    # The verdict forgotten, or run out: the resolver probes again.
    _nat64_answers._ipv4_direct_until.clear()
    assert lone_ipv4_literal("127.0.0.1", 80, 0, 0, 0, True) is None
    assert lone_ipv4_literal("127.0.0.1", 80, 0, 0, 0, ()) is None
    _nat64_answers._ipv4_direct_until["127.0.0.1"] = time.monotonic() - 1
    assert lone_ipv4_literal("127.0.0.1", 80, 0, 0, 0, True) is None
    # NAT64 off, or IPv4 asked for: nothing to probe.
    assert lone_ipv4_literal("127.0.0.1", 80, 0, 0, 0, False) is not None
    assert lone_ipv4_literal("127.0.0.1", 80, socket.AF_INET, 0, 0, True) is not None


async def test_a_literal_that_needs_nat64_is_left_to_the_resolver(monkeypatch):
    # An IPv6-only network: no IPv4 route, an IPv6 one.
    def source_address(family: int, address: Any) -> Any:
        return ("2001:db8::2", 0, 0, 0) if family == socket.AF_INET6 else None

    await resolved("192.0.2.1", nat64=False)  # remembered as a literal
    monkeypatch.setattr(_nat64_answers, "find_source_address", source_address)
    assert lone_ipv4_literal("192.0.2.1", 80, 0, 0, 0, True) is None
    given = (ipaddress.IPv6Network("64:ff9b::/96"),)
    answer = await resolved("192.0.2.1", nat64=given)
    assert [info[4][0] for info in answer] == ["64:ff9b::c000:201"]
    assert lone_ipv4_literal("192.0.2.1", 80, 0, 0, 0, given) is None
    # Its own choice stays the caller's: without NAT64, the literal itself.
    assert lone_ipv4_literal("192.0.2.1", 80, 0, 0, 0, False) == (
        socket.AF_INET,
        STREAM,
        socket.IPPROTO_TCP,
        "",
        ("192.0.2.1", 80),
    )


async def test_the_remembered_literals_are_bounded(monkeypatch):
    monkeypatch.setattr(_direct_answer, "_IPV4_LITERALS_MAX", 3)
    for last in range(1, 6):
        await resolved(f"127.0.0.{last}", nat64=False)
        assert len(_direct_answer._ipv4_literals) <= 3
    assert "127.0.0.5" in _direct_answer._ipv4_literals
