"""Pytest fixtures of the network lab.

``lab`` hands out a :class:`~lab.Lab` closed at teardown; ``working``,
``refusing``, ``blackholed`` and ``slow`` are shortcuts for one IPv4 endpoint
of that kind on an address of its own; ``netns`` (root only) a fresh network
namespace, ``netns_ipv6_only`` one without IPv4.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .endpoints import Endpoint, Lab
from .netns import Namespace, netns_unavailable_reason, remove_stale_namespaces

SLOW_FIXTURE_DELAY = 0.2
"""Seconds the ``slow`` fixture's endpoint drops SYNs before it works."""


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A :class:`~lab.Lab`; every endpoint it made is closed at teardown."""
    with Lab() as the_lab:
        yield the_lab
    if the_lab.errors:
        pytest.fail(f"the lab's servers failed: {the_lab.errors!r}")


@pytest.fixture
def working(lab: Lab) -> Endpoint:
    """An IPv4 echo server on a loopback address of its own."""
    return lab.working(lab.ipv4_address())


@pytest.fixture
def refusing(lab: Lab) -> Endpoint:
    """An IPv4 address and port that refuse connections at once."""
    return lab.refusing(lab.ipv4_address())


@pytest.fixture
def blackholed(lab: Lab) -> Endpoint:
    """An IPv4 address and port where connect hangs (SYNs dropped)."""
    return lab.blackholed(lab.ipv4_address())


@pytest.fixture
def slow(lab: Lab) -> Endpoint:
    """An IPv4 echo server whose handshake completes only after
    :data:`SLOW_FIXTURE_DELAY` seconds (at the first SYN retransmission after
    it, about 1 s on Linux)."""
    return lab.slow(lab.ipv4_address(), delay=SLOW_FIXTURE_DELAY)


@pytest.fixture
def netns() -> Iterator[Namespace]:
    """A fresh network namespace (root only): ``lo`` up with extra addresses,
    its own hosts file and resolv.conf. Removed at teardown with every process
    in it, whatever the test did."""
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with Namespace.create() as namespace:
        yield namespace


@pytest.fixture
def netns_ipv6_only() -> Iterator[Namespace]:
    """Like ``netns``, an IPv6-only network: no IPv4 address but 127.0.0.1
    (the lab's DNS server's), so no IPv4 route to anywhere, and an IPv6
    default route to ``lo``."""
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with Namespace.create(ipv4=False) as namespace:
        yield namespace


def pytest_sessionstart(session: pytest.Session) -> None:
    """Remove namespaces a crashed earlier run left behind."""
    if netns_unavailable_reason() is None:
        remove_stale_namespaces()
