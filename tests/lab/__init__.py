"""The network lab: broken networks the tests summon at will.

Unprivileged tier (:mod:`lab.endpoints`, :mod:`lab.resolver`): endpoints on
loopback that work, refuse, hang or answer late, and a scripted
``getaddrinfo``. Privileged tier (:mod:`lab.netns`, root only): a network
namespace of the test's own with extra addresses, its own hosts file and a DNS
server whose answers can be delayed or dropped per record type, so the real
glibc resolver can be exercised. The fixtures live in :mod:`lab.plugin`; the
suite's ``conftest.py`` loads it. ``tests/README.rst`` tells the story.
"""

from .endpoints import Endpoint, Lab, ipv6_loopback_available
from .netns import DnsQuery, Namespace, netns_unavailable_reason
from .resolver import FakeGetaddrinfo, GetaddrinfoCall

__all__ = [
    "DnsQuery",
    "Endpoint",
    "FakeGetaddrinfo",
    "GetaddrinfoCall",
    "Lab",
    "Namespace",
    "ipv6_loopback_available",
    "netns_unavailable_reason",
]
