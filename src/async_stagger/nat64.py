"""IPv4 addresses reached through NAT64 on IPv6-only networks (RFC 8305 §7,
RFC 6052, RFC 7050).

Why the client synthesizes at all
---------------------------------
On an IPv6-only network a NAT64 gateway translates IPv6 packets sent to
addresses of one IPv6 prefix into IPv4 packets to the IPv4 address embedded
in them, and a DNS64 server answers AAAA queries for IPv4-only names with
such addresses. What DNS64 cannot help with is an IPv4 *literal*
(``open_connection("192.0.2.10", 443)``): no name, no query, and connecting
fails at once with "network unreachable". RFC 8305 §7.1 and the Happy
Eyeballs v3 draft therefore ask the client to build the IPv6 address itself,
from the NAT64 prefix of the network.

This module is the arithmetic and the memory of that, with no sockets:

* :func:`embed` and :func:`extract`: RFC 6052 §2.2 and §2.3, the IPv4
  address at its place after a prefix of 32, 40, 48, 56, 64 or 96 bits,
  stepping over bits 64 to 71 (the "u" octet, always zero);
* :func:`synthesizable`: the IPv4 addresses never synthesized;
* :func:`prefixes_from_answers`: RFC 7050 §3, the prefixes found in the AAAA
  answers for ``ipv4only.arpa``;
* a cache of the prefixes discovered per network (:func:`remember`,
  :func:`recall`), which :mod:`async_stagger.address_order` also reads to
  recognise DNS64-synthesized answers (:func:`known_prefix_of`).

When to synthesize (the probe that says there is no IPv4 route) and the
lookup of ``ipv4only.arpa`` through the resolver in use live in
:mod:`async_stagger.resolvers`.

Left out: the Last Resort Local Synthesis of RFC 8305 §7.2 (a second A
query two seconds after every attempt failed), PREF64 from router
advertisements (RFC 8781; the kernel does not hand it to programs, so a
program that has it passes it as ``nat64=``), and the DNSSEC validation of
the discovered prefix (RFC 7050 §3.1), which needs a DNS library.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable, Sequence
from typing import Any, TypeAlias

__all__ = [
    "DISCOVERY_NAME",
    "NEGATIVE_LIFETIME",
    "PREFIX_LENGTHS",
    "PREFIX_LIFETIME",
    "WELL_KNOWN_ADDRESSES",
    "WELL_KNOWN_PREFIX",
    "Nat64Setting",
    "check_setting",
    "embed",
    "ever_synthesizable",
    "extract",
    "forget",
    "known_prefix_of",
    "prefixes_from_answers",
    "recall",
    "remember",
    "synthesizable",
]

#: What ``nat64=`` takes: ``True`` (discover the prefix where needed),
#: ``False`` (never synthesize), or the prefixes to use, as text
#: (``"64:ff9b::/96"``) or :class:`ipaddress.IPv6Network`.
Nat64Setting: TypeAlias = bool | Iterable[str | ipaddress.IPv6Network]

#: RFC 6052 §2.2: the prefix lengths an IPv4-embedded address may have.
PREFIX_LENGTHS: tuple[int, ...] = (32, 40, 48, 56, 64, 96)

#: RFC 6052 §2.1: the Well-Known Prefix.
WELL_KNOWN_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")

#: RFC 7050 §2: the name whose AAAA answer shows the prefix, and the IPv4
#: addresses (its only A records) embedded in that answer.
DISCOVERY_NAME = "ipv4only.arpa"
WELL_KNOWN_ADDRESSES: tuple[ipaddress.IPv4Address, ...] = (
    ipaddress.IPv4Address("192.0.0.170"),
    ipaddress.IPv4Address("192.0.0.171"),
)

#: Seconds a discovered prefix is trusted. RFC 7050 §3 ties it to the TTL of
#: the answer, which ``getaddrinfo`` does not report; a network change is
#: noticed sooner anyway, because the cache is per source address.
PREFIX_LIFETIME = 300.0

#: Seconds "no NAT64 here" is remembered, so that IPv4 literals on an
#: IPv6-only network without NAT64 fail as fast as they did before, without
#: one discovery lookup each.
NEGATIVE_LIFETIME = 30.0

# The IPv6 byte positions of the four IPv4 bytes after a prefix of each
# length: RFC 6052 §2.2, Figure 1, byte 8 (bits 64 to 71) skipped.
_POSITIONS: dict[int, tuple[int, ...]] = {
    length: tuple([i for i in range(length // 8, 16) if i != 8 or length == 96][:4])
    for length in PREFIX_LENGTHS
}

# The v3 draft's list: never synthesized, whatever the prefix ("this
# network", loopback, link-local, limited broadcast).
_NEVER = (
    ipaddress.IPv4Network("0.0.0.0/8"),
    ipaddress.IPv4Network("127.0.0.0/8"),
    ipaddress.IPv4Network("169.254.0.0/16"),
    ipaddress.IPv4Network("255.255.255.255/32"),
)
# RFC 6052 §3.1: the Well-Known Prefix must not carry non-global IPv4
# addresses such as RFC 1918's; a NAT64 on the way to the Internet cannot
# reach those (nor RFC 6598's shared address space). A network-specific
# prefix may: its NAT64 may well sit in front of a private network.
_NOT_BEHIND_WELL_KNOWN_PREFIX = (
    ipaddress.IPv4Network("10.0.0.0/8"),
    ipaddress.IPv4Network("172.16.0.0/12"),
    ipaddress.IPv4Network("192.168.0.0/16"),
    ipaddress.IPv4Network("100.64.0.0/10"),
)


def _prefix(prefix: str | ipaddress.IPv6Network) -> ipaddress.IPv6Network:
    try:
        network = ipaddress.IPv6Network(prefix)
    except ValueError as exc:
        raise ValueError(f"{str(prefix)!r} is not an IPv6 prefix: {exc}") from None
    if network.prefixlen not in _POSITIONS:
        raise ValueError(
            f"a NAT64 prefix is 32, 40, 48, 56, 64 or 96 bits long (RFC 6052"
            f" §2.2), got {str(prefix)!r}"
        )
    return network


def embed(
    ipv4: str | ipaddress.IPv4Address, prefix: str | ipaddress.IPv6Network
) -> ipaddress.IPv6Address:
    """The IPv4-embedded IPv6 address of *ipv4* in *prefix* (RFC 6052 §2.3).

    The IPv4 address follows the prefix; for prefixes shorter than 96 bits
    it steps over bits 64 to 71, the "u" octet, which stays zero, and the
    suffix after it is zero too.

    Args:
        ipv4: The IPv4 address.
        prefix: The NAT64 prefix, 32, 40, 48, 56, 64 or 96 bits long.

    Returns:
        The IPv6 address.

    Raises:
        ValueError: *ipv4* is not an IPv4 address, or *prefix* not an IPv6
            network of one of those lengths.

    .. versionadded:: 1.0
    """
    network = _prefix(prefix)
    packed = bytearray(network.network_address.packed)
    for position, byte in zip(
        _POSITIONS[network.prefixlen],
        ipaddress.IPv4Address(ipv4).packed,
        strict=True,
    ):
        packed[position] = byte
    return ipaddress.IPv6Address(bytes(packed))


def extract(
    address: str | ipaddress.IPv6Address, prefix_length: int
) -> ipaddress.IPv4Address | None:
    """The IPv4 address embedded in *address* after a prefix of
    *prefix_length* bits (RFC 6052 §2.3), or ``None`` when the "u" octet is
    not zero, so that *address* cannot be IPv4-embedded at that length.

    The suffix bits are ignored, as RFC 6052 §2.2 asks of receivers.

    Args:
        address: An IPv6 address.
        prefix_length: 32, 40, 48, 56, 64 or 96.

    Returns:
        The IPv4 address, or ``None``.

    Raises:
        ValueError: *address* is not an IPv6 address or *prefix_length* not
            one of those lengths.

    .. versionadded:: 1.0
    """
    positions = _POSITIONS.get(prefix_length)
    if positions is None:
        raise ValueError(
            "a NAT64 prefix is 32, 40, 48, 56, 64 or 96 bits long (RFC 6052"
            f" §2.2), got {prefix_length!r}"
        )
    packed = ipaddress.IPv6Address(address).packed
    if prefix_length < 96 and packed[8]:
        return None
    return ipaddress.IPv4Address(bytes(packed[i] for i in positions))


def synthesizable(
    ipv4: str | ipaddress.IPv4Address, prefix: ipaddress.IPv6Network
) -> bool:
    """Whether *ipv4* may be reached through *prefix*: never 0/8, 127/8,
    169.254/16 or 255.255.255.255 (Happy Eyeballs v3 draft), and no private
    address behind the Well-Known Prefix (RFC 6052 §3.1).

    Args:
        ipv4: The IPv4 address.
        prefix: The NAT64 prefix.

    Returns:
        ``True`` when an address may be synthesized.

    .. versionadded:: 1.0
    """
    address = ipaddress.IPv4Address(ipv4)
    if not ever_synthesizable(address):
        return False
    return not (
        prefix == WELL_KNOWN_PREFIX
        and any(address in network for network in _NOT_BEHIND_WELL_KNOWN_PREFIX)
    )


def ever_synthesizable(ipv4: str | ipaddress.IPv4Address) -> bool:
    """Whether *ipv4* is outside the ranges never synthesized, whatever the
    prefix (see :func:`synthesizable`).

    .. versionadded:: 1.0
    """
    address = ipaddress.IPv4Address(ipv4)
    return not any(address in network for network in _NEVER)


def prefixes_from_answers(
    addresses: Iterable[str | ipaddress.IPv6Address],
) -> tuple[ipaddress.IPv6Network, ...]:
    """The NAT64 prefixes shown by the AAAA answers for ``ipv4only.arpa``
    (RFC 7050 §3).

    Each answer is searched for 192.0.0.170 and 192.0.0.171 at every length
    of RFC 6052 §2.2. When an address holds one of them at more than one
    length, the length at which the answers also hold the other one wins
    (that is why there are two); if that leaves a choice, the longest. Every
    distinct prefix found is kept, in the order of the answers: a network
    may use several.

    Args:
        addresses: The IPv6 addresses of the answer.

    Returns:
        The prefixes, empty when none was found (no NAT64).

    .. versionadded:: 1.0
    """
    per_answer: list[list[ipaddress.IPv6Network]] = []
    confirmed: dict[ipaddress.IPv6Network, set[ipaddress.IPv4Address]] = {}
    for text in addresses:
        try:
            address = ipaddress.IPv6Address(str(text).partition("%")[0])
        except ValueError:
            continue  # not an IPv6 address: no prefix in it
        candidates = []
        for length in reversed(PREFIX_LENGTHS):  # longest first
            found = extract(address, length)
            if found in WELL_KNOWN_ADDRESSES:
                network = ipaddress.IPv6Network((address, length), strict=False)
                candidates.append(network)
                confirmed.setdefault(network, set()).add(found)
        if candidates:
            per_answer.append(candidates)
    prefixes: list[ipaddress.IPv6Network] = []
    for candidates in per_answer:
        both = [c for c in candidates if len(confirmed[c]) == 2]
        chosen = (both or candidates)[0]
        if chosen not in prefixes:
            prefixes.append(chosen)
    return tuple(prefixes)


def check_setting(value: object) -> bool | tuple[ipaddress.IPv6Network, ...]:
    """Check a ``nat64=`` value; return ``True``, ``False`` or the prefixes.

    Raises:
        TypeError: *value* is neither a bool nor an iterable of prefixes.
        ValueError: a prefix is not an IPv6 network of 32, 40, 48, 56, 64
            or 96 bits, or the iterable is empty.
    """
    if value is True or value is False:
        return value
    if isinstance(value, str | bytes | ipaddress.IPv6Network) or not isinstance(
        value, Iterable
    ):
        raise TypeError(
            "nat64 must be True, False or an iterable of NAT64 prefixes such as"
            f" ['64:ff9b::/96'], got {type(value).__name__} {value!r}"
        )
    prefixes = []
    for item in value:
        if not isinstance(item, str | ipaddress.IPv6Network):
            raise TypeError(
                f"a NAT64 prefix must be a str or IPv6Network, got {item!r}"
            )
        try:
            prefixes.append(_prefix(item))
        except ValueError as exc:
            raise ValueError(f"nat64: {exc}") from None
    if not prefixes:
        raise ValueError("nat64 got no prefixes; pass False to turn NAT64 off")
    return tuple(dict.fromkeys(prefixes))


# -- what was discovered, per network --------------------------------------------

#: ``network key -> (expiry on time.monotonic(), prefixes)``; the key is
#: the IPv6 source address the kernel picks toward the NAT64 (None: no IPv6
#: route at all), so a different network asks again (RFC 8305 §7 and the v3
#: draft: what is learnt about one network is not used on another).
_discovered: dict[Any, tuple[float, tuple[ipaddress.IPv6Network, ...]]] = {}
_DISCOVERED_MAX = 64


def recall(network: Any) -> tuple[ipaddress.IPv6Network, ...] | None:
    """The prefixes discovered on *network* and not expired (empty: no
    NAT64 there), or ``None`` when discovery is due."""
    entry = _discovered.get(network)
    if entry is None or entry[0] <= time.monotonic():
        return None
    return entry[1]


def remember(network: Any, prefixes: Sequence[ipaddress.IPv6Network]) -> None:
    """Record the outcome of a discovery on *network*."""
    lifetime = PREFIX_LIFETIME if prefixes else NEGATIVE_LIFETIME
    if len(_discovered) >= _DISCOVERED_MAX:
        _discovered.clear()
    _discovered[network] = (time.monotonic() + lifetime, tuple(prefixes))


def forget() -> None:
    """Drop everything discovered (a test, or a program that knows its
    network changed)."""
    _discovered.clear()


def known_prefix_of(
    address: str,
) -> tuple[ipaddress.IPv6Network, ipaddress.IPv4Address] | None:
    """The discovered prefix *address* lies in and the IPv4 address it
    stands for, or ``None``: how a DNS64-synthesized AAAA answer is
    recognised (v3 draft), on the networks where a prefix is known."""
    if not _discovered:
        return None  # the usual case: nothing discovered, nothing to check
    now = time.monotonic()
    try:
        parsed = ipaddress.IPv6Address(address.partition("%")[0])
    except ValueError:
        return None
    for expiry, prefixes in _discovered.values():
        if expiry <= now:
            continue
        for prefix in prefixes:
            if parsed in prefix:
                ipv4 = extract(parsed, prefix.prefixlen)
                if ipv4 is not None:
                    return prefix, ipv4
    return None
