"""The order in which to try a host's addresses (RFC 8305 §4, RFC 6724 §6).

Why we sort at all
------------------
``getaddrinfo`` sorts the addresses it returns (glibc follows RFC 3484, the
predecessor of RFC 6724), but only within one call. Happy Eyeballs looks up
AAAA and A records in two separate calls (RFC 8305 §3), so the rules that
decide between an IPv6 and an IPv4 destination never ran: merging the two
lists is our job. RFC 8305 §4 asks for RFC 6724's destination address
selection on the merged list, then for interleaving the families.

Which rules we can evaluate
---------------------------
RFC 6724 §6 compares two destinations with ten rules; the first rule that
prefers one of them decides. Several rules need the source address the kernel
would use for a destination. An unprivileged process learns it by connecting
a UDP socket to the destination and reading ``getsockname()``: ``connect`` on
a datagram socket only picks a route and a source address, it sends nothing.
An error (``ENETUNREACH``, ``EADDRNOTAVAIL``, ``EAFNOSUPPORT``...) means there
is no usable source: the destination cannot be reached at all.

* Rule 1, avoid unusable destinations: no source address.
* Rule 2, prefer matching scope: scope of destination equals scope of source.
* Rule 3 (avoid deprecated sources) and rule 7 (prefer native transport)
  need interface state that is not visible without netlink parsing; they
  are skipped, as is rule 4 (home addresses, Mobile IPv6 only).
* Rule 5, prefer matching label and rule 6, prefer higher precedence, use
  the RFC 6724 §2.1 default policy table below.
* Rule 8, prefer smaller scope.
* Rule 9, longest matching prefix with the source, applies to IPv6 only:
  glibc likewise leaves IPv4 answers alone so that DNS round robin among
  IPv4 addresses keeps working.
* Rule 10, otherwise keep the original order: the sort is stable, and the
  original order is each family's own ``getaddrinfo`` order.

Every rule compares a property of each destination on its own (rule 9 only
ever decides between two IPv6 destinations, because IPv4 and IPv6 always
differ in precedence under rule 6), so the comparison is a sort key.

IPv4 addresses take part as IPv4-mapped IPv6 addresses (``::ffff:a.b.c.d``);
RFC 6724 §3.2 gives 127.0.0.0/8 and 169.254.0.0/16 link-local scope and every
other IPv4 address global scope.

An IPv6 address inside a NAT64 prefix discovered on this network
(:mod:`async_stagger.nat64`) stands for an IPv4 address: a DNS64 answer or
one of our own synthesized addresses. The Happy Eyeballs v3 draft sorts it
as that IPv4 address, so a native IPv6 address still comes first (rule 6),
with the translator's IPv4 side as its source (rules 2 and 5).

Interleaving
------------
After sorting, RFC 8305 §4 alternates families so that a broken family costs
one Connection Attempt Delay, not one per address: the first
``first_addr_family_count`` addresses of the family sorted first lead, then
the families take turns, each keeping its own sorted order.
"""

from __future__ import annotations

import functools
import ipaddress
import operator
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from ._checks import check_first_addr_family_count
from ._types import AddrInfo

if TYPE_CHECKING:
    from .history import ConnectionHistory

from .nat64 import known_prefix_of

__all__ = [
    "SourceAddressLookup",
    "as_ipv6",
    "explain_order",
    "find_source_address",
    "interleave",
    "label",
    "precedence",
    "scope",
    "sort_addresses",
]


#: ``(family, destination sockaddr) -> source sockaddr or None`` (unusable).
SourceAddressLookup: TypeAlias = Callable[
    [int, tuple[Any, ...]], tuple[Any, ...] | None
]

_family_of = operator.itemgetter(0)

# RFC 6724 §3.1 scope values (the multicast scope field of RFC 4291 §2.7).
SCOPE_LINK_LOCAL = 0x2
SCOPE_SITE_LOCAL = 0x5
SCOPE_GLOBAL = 0xE


def _net(prefix: str) -> ipaddress.IPv6Network:
    return ipaddress.IPv6Network(prefix)


#: RFC 6724 §2.1 default policy table: (prefix, precedence, label), searched
#: longest prefix first.
POLICY_TABLE: tuple[tuple[ipaddress.IPv6Network, int, int], ...] = tuple(
    sorted(
        (
            (_net("::1/128"), 50, 0),
            (_net("::/0"), 40, 1),
            (_net("::ffff:0:0/96"), 35, 4),
            (_net("2002::/16"), 30, 2),
            (_net("2001::/32"), 5, 5),
            (_net("fc00::/7"), 3, 13),
            (_net("::/96"), 1, 3),
            (_net("fec0::/10"), 1, 11),
            (_net("3ffe::/16"), 1, 12),
        ),
        key=lambda entry: -entry[0].prefixlen,
    )
)

_V4_MAPPED = _net("::ffff:0:0/96")
_V4_LINK_LOCAL = (
    ipaddress.IPv4Network("127.0.0.0/8"),
    ipaddress.IPv4Network("169.254.0.0/16"),
)
_V6_LINK_LOCAL = _net("fe80::/10")
_V6_SITE_LOCAL = _net("fec0::/10")
_V6_LOOPBACK = ipaddress.IPv6Address("::1")


def as_ipv6(address: str) -> ipaddress.IPv6Address:
    """The address as IPv6; IPv4 becomes IPv4-mapped (``::ffff:a.b.c.d``).

    Args:
        address: An IPv4 or IPv6 address in text form; an IPv6 zone
            (``%eth0``) is ignored.

    Returns:
        The IPv6 (or IPv4-mapped) address.

    Raises:
        ValueError: *address* is not an IP address.
    """
    text = address.split("%", 1)[0]
    parsed = ipaddress.ip_address(text)
    if isinstance(parsed, ipaddress.IPv4Address):
        return ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + parsed.packed)
    return parsed


def _policy(address: ipaddress.IPv6Address) -> tuple[int, int]:
    for network, prec, lab in POLICY_TABLE:
        if address in network:
            return prec, lab
    raise AssertionError("::/0 matches every address")  # pragma: no cover


def precedence(address: str) -> int:
    """RFC 6724 §2.1 default policy table precedence of *address*.

    Args:
        address: An IPv4 or IPv6 address in text form.

    Returns:
        The precedence (higher is preferred by rule 6).

    Raises:
        ValueError: *address* is not an IP address.
    """
    return _policy(as_ipv6(address))[0]


def label(address: str) -> int:
    """RFC 6724 §2.1 default policy table label of *address*.

    Args:
        address: An IPv4 or IPv6 address in text form.

    Returns:
        The label (rule 5 prefers a destination whose label equals its
        source's).

    Raises:
        ValueError: *address* is not an IP address.
    """
    return _policy(as_ipv6(address))[1]


def _scope(address: ipaddress.IPv6Address) -> int:
    if address in _V4_MAPPED:
        v4 = address.ipv4_mapped
        assert v4 is not None
        # RFC 6724 §3.2: loopback and auto-configured IPv4 are link-local.
        if any(v4 in network for network in _V4_LINK_LOCAL):
            return SCOPE_LINK_LOCAL
        return SCOPE_GLOBAL
    if address.is_multicast:
        return address.packed[1] & 0x0F
    # RFC 6724 §3.1: the loopback address is treated as link-local.
    if address == _V6_LOOPBACK or address in _V6_LINK_LOCAL:
        return SCOPE_LINK_LOCAL
    if address in _V6_SITE_LOCAL:
        return SCOPE_SITE_LOCAL
    return SCOPE_GLOBAL


def scope(address: str) -> int:
    """RFC 6724 §3.1 scope of *address* (2 link-local, 5 site-local,
    14 global; multicast carries its own).

    Args:
        address: An IPv4 or IPv6 address in text form.

    Returns:
        The scope value; smaller is narrower.

    Raises:
        ValueError: *address* is not an IP address.
    """
    return _scope(as_ipv6(address))


def _common_prefix_length(a: int, b: int) -> int:
    # RFC 6724 §2.2: CommonPrefixLen, bounded by the source's prefix length
    # (unknown here; the /64 of a typical IPv6 subnet is the usual choice).
    diff = a ^ b
    length = 128 - diff.bit_length()
    return min(length, 64)


# -- Rule 1's source address, by the UDP connect trick ------------------------

#: How long a source address lookup stays valid. RFC 8305 §4 allows caching
#: the sorted order only briefly: routes change when networks do.
SOURCE_CACHE_SECONDS = 1.0
_SOURCE_CACHE_MAX = 1024

_source_cache: dict[tuple[Any, ...], tuple[float, tuple[Any, ...] | None]] = {}


def _probe_source(family: int, sockaddr: tuple[Any, ...]) -> tuple[Any, ...] | None:
    host = sockaddr[0]
    # Port 0 is not a valid UDP destination on every system; the port plays
    # no part in choosing the route, so any non-zero port will do.
    port = sockaddr[1] or 9
    target = (host, port, *sockaddr[2:])
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            # Connecting a datagram socket picks a route and a source
            # address; no packet is sent.
            probe.connect(target)
            return tuple(probe.getsockname())
    except OSError:
        return None


def find_source_address(
    family: int, sockaddr: tuple[Any, ...]
) -> tuple[Any, ...] | None:
    """The local address the kernel would use to reach *sockaddr*.

    Connects a UDP socket (which sends nothing) and reads its name. Answers
    are cached per destination for :data:`SOURCE_CACHE_SECONDS`.

    Args:
        family: ``socket.AF_INET`` or ``socket.AF_INET6``.
        sockaddr: The destination socket address, as getaddrinfo returns it.

    Returns:
        The source socket address, or ``None`` when the destination is
        unreachable (no route, family not supported): RFC 6724 rule 1's
        "unusable destination".
    """
    # An IPv4 sockaddr's key is (family, host): built without unpacking
    # (4.9k to 4.4k instructions per call, 3.11; two or three calls per
    # connection to a name with the history on).
    key = (
        (family, sockaddr[0])
        if len(sockaddr) == 2
        else (family, sockaddr[0], *sockaddr[2:])
    )
    now = time.monotonic()
    cached = _source_cache.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]
    source = _probe_source(family, sockaddr)
    if len(_source_cache) >= _SOURCE_CACHE_MAX:
        _source_cache.clear()
    _source_cache[key] = (now + SOURCE_CACHE_SECONDS, source)
    return source


@functools.lru_cache(maxsize=1024)
def _properties(address: str) -> tuple[int, int, int, int] | None:
    """``(address as a 128-bit int, scope, precedence, label)``, or ``None``
    for text that is not an IP address. Cached: parsing and matching the
    policy table cost more than the rest of the sort together."""
    try:
        parsed = as_ipv6(address)
    except ValueError:
        return None
    return (int(parsed), _scope(parsed), *_policy(parsed))


def _sort_key(
    info: AddrInfo,
    source_address: SourceAddressLookup,
    history: ConnectionHistory | None = None,
) -> tuple[int, int, int, int, int, int, int, int]:
    family, _, _, _, sockaddr = info
    destination = _properties(sockaddr[0]) if isinstance(sockaddr[0], str) else None
    if destination is None:
        # Not an IP address (a custom resolver's odd answer): no opinion,
        # keep it after everything we can judge, in its original order.
        return (1, 1, 1, 0, 0, 0, 0, 0)
    dest_value, dest_scope, dest_precedence, dest_label = destination
    source_sockaddr = source_address(family, sockaddr)
    source = None if source_sockaddr is None else _properties(source_sockaddr[0])
    if source is None:
        # Rule 1: unusable; the remaining rules need a source.
        return (1, 1, 1, -dest_precedence, dest_scope, 0, 0, 0)
    source_value, source_scope, _, source_label = source
    known_broken = rtt_rank = unused = 0
    if history is not None:
        assert source_sockaddr is not None
        # An address with no entry from any source has none from this one
        # (ConnectionHistory.knows_any): its lookup, which would find
        # nothing and change nothing, is not made (~1.0k instructions per
        # address the history does not know, 3.11).
        entry = (
            history.lookup(source_sockaddr[0], sockaddr[0])
            if sockaddr[0] in history._destinations
            else None
        )
        if entry is not None:
            rtt, _, used_at, failed_at, _, _ = entry
            # RFC 6724 rule 1's "known to be unreachable": the latest
            # attempt failed or went unanswered (see async_stagger.history).
            # (HistoryEntry.reachable's test, written out: a property call
            # fewer per address, ~0.7k instructions, 3.11.)
            if failed_at is not None and (used_at is None or used_at < failed_at):
                known_broken = 1
            # Whole milliseconds: jitter below that does not reorder.
            rtt_rank = _UNKNOWN_RTT if rtt is None else round(rtt * 1e3)
            unused = 0 if used_at is not None else 1
        else:
            rtt_rank, unused = _UNKNOWN_RTT, 1
    if family == socket.AF_INET6 and (embedded := known_prefix_of(sockaddr[0])):
        # NAT64 (v3 draft): sorted as the IPv4 address it stands for, from
        # the translator's IPv4 side.
        ipv4 = _properties(str(embedded[1]))
        assert ipv4 is not None
        _, dest_scope, dest_precedence, dest_label = ipv4
        return (known_broken, 0 if dest_scope == SCOPE_GLOBAL else 1, 0,
                -dest_precedence, dest_scope, rtt_rank, unused, 0)  # fmt: skip
    prefix = 0
    if family == socket.AF_INET6:
        prefix = _common_prefix_length(dest_value, source_value)
    return (
        known_broken,  # Rule 1: usable (and not known to be broken).
        0 if dest_scope == source_scope else 1,  # Rule 2: matching scope.
        0 if dest_label == source_label else 1,  # Rule 5: matching label.
        -dest_precedence,  # Rule 6: higher precedence.
        dest_scope,  # Rule 8: smaller scope.
        rtt_rank,  # RFC 8305 §4, history: lower RTT.
        unused,  # RFC 8305 §4, history: used before.
        -prefix,  # Rule 9: longest matching prefix (IPv6 only).
    )


# An address with no measured RTT sorts after every measured one.
_UNKNOWN_RTT = 1 << 30

#: Why one address goes before the next, by the first element of their sort
#: keys that differs (see _sort_key).
_KEY_REASONS = (
    "RFC 6724 rule 1: usable destination",
    "RFC 6724 rule 2: matching scope",
    "RFC 6724 rule 5: matching label",
    "RFC 6724 rule 6: higher precedence",
    "RFC 6724 rule 8: smaller scope",
    "history: lower RTT",
    "history: used before",
    "RFC 6724 rule 9: longer matching prefix",
)


def sort_addresses(
    infos: Iterable[AddrInfo],
    *,
    source_address: SourceAddressLookup = find_source_address,
    history: ConnectionHistory | None = None,
) -> list[AddrInfo]:
    """Order destinations by the RFC 6724 §6 rules we can evaluate.

    Rules 1, 2, 5, 6, 8, 9 (IPv6 only) and 10 (the sort is stable, so ties
    keep the order of *infos*). See the module documentation for why 3, 4
    and 7 are skipped. With a *history*, RFC 8305 §4's rules for stateful
    clients come between rules 8 and 9 (lower RTT first, then addresses
    used before), and an address whose latest attempt failed or went
    unanswered counts as known to be unreachable under rule 1 (see
    :mod:`async_stagger.history`).

    Args:
        infos: getaddrinfo 5-tuples, in their original order.
        source_address: Finds the source address for a destination, or
            ``None`` for an unusable one. Defaults to the UDP connect probe
            :func:`find_source_address`; tests pass a pure function.
        history: Outcomes of earlier connections, or ``None``.

    Returns:
        A new list, best destination first.

    .. versionchanged:: 1.0
       the *history* argument.
    """
    items = list(infos)
    if len(items) < 2:
        return items
    if len(items) == 2:
        # The usual answer of a name, two addresses: the stable sort of two
        # is one comparison (the second goes first only if its key is
        # smaller). No list of keys, no count, no sort call: 32.0k to
        # 23.6k instructions per sort with a history, 3.11.
        # The first key is made first, as the list of keys makes it: the
        # history's lookups mark its entries used in that order.
        first, second = items
        first_key = _sort_key(first, source_address, history)
        if _sort_key(second, source_address, history) < first_key:
            return [second, first]
        return items
    keys = [_sort_key(info, source_address, history) for info in items]
    if keys.count(keys[0]) == len(keys):
        # No rule prefers any destination (a name's addresses are often
        # alike: one family, one scope): rule 10 keeps the order as it is.
        return items
    # The positions sorted by their keys: the sort is stable, so ties keep
    # their order (rule 10), and the 5-tuples themselves are never compared.
    # (Not decorated pairs: one list and its tuples fewer, ~1.5k
    # instructions per sort of two addresses, 3.11.)
    return [items[at] for at in sorted(range(len(items)), key=keys.__getitem__)]


def explain_order(
    ordered: Sequence[AddrInfo],
    *,
    source_address: SourceAddressLookup = find_source_address,
    history: ConnectionHistory | None = None,
) -> list[str]:
    """Why each address of a sorted and interleaved list is where it is.

    Args:
        ordered: The addresses in the order they will be tried.
        source_address: As for :func:`sort_addresses`.
        history: As for :func:`sort_addresses`.

    Returns:
        One reason per address: the rule that put it before the best of the
        addresses after it (of the other family, while one is left),
        ``"family interleave (RFC 8305 §4)"`` when the
        interleaving moved it forward, ``"RFC 6724 rule 10: original order"``
        for a tie, ``"last"`` for the last one and ``"the only address"``
        when there is one.

    .. versionadded:: 1.0
    """
    keyed = [(_sort_key(info, source_address, history), info) for info in ordered]
    reasons = []
    for at, (key, _) in enumerate(keyed):
        rest = keyed[at + 1 :]
        if not rest:
            reasons.append("last" if at else "the only address")
            continue
        # Against the other family, when there is one left: that is the
        # choice a reader wonders about (why IPv6 before IPv4, or not).
        family = ordered[at][0]
        others = [pair for pair in rest if pair[1][0] != family] or rest
        best, best_info = min(others, key=lambda pair: pair[0])
        if min(pair[0] for pair in rest) < key:
            reasons.append("family interleave (RFC 8305 §4)")
            continue
        differs = [i for i, (a, b) in enumerate(zip(key, best, strict=True)) if a != b]
        if not differs:
            reasons.append("RFC 6724 rule 10: original order")
        elif differs[0] == 0 and _known_broken(best_info, source_address, history):
            reasons.append(
                "history: the addresses after it failed or went unanswered"
                " lately (RFC 6724 rule 1)"
            )
        else:
            reasons.append(_KEY_REASONS[differs[0]])
    return reasons


def _known_broken(
    info: AddrInfo,
    source_address: SourceAddressLookup,
    history: ConnectionHistory | None,
) -> bool:
    if history is None:
        return False
    source = source_address(info[0], info[4])
    if source is None:
        return False
    entry = history.lookup(source[0], info[4][0])
    return entry is not None and not entry.reachable


def interleave(
    infos: Sequence[AddrInfo],
    first_addr_family_count: int = 1,
    *,
    already_yielded: Sequence[int] = (),
) -> list[AddrInfo]:
    """Interleave sorted destinations by family (RFC 8305 §4).

    The family of the first address leads with ``first_addr_family_count``
    addresses, then the families alternate; each family keeps its order. An
    address of any other family (not IPv4 or IPv6) counts as a family of its
    own.

    When some addresses were already handed out (*already_yielded*, their
    families in order) and more arrive (RFC 8305 §6), the pattern carries on
    where it stopped instead of starting over: a lead run that was cut short
    is completed, otherwise the family after the last one handed out goes
    next.

    Args:
        infos: Sorted getaddrinfo 5-tuples, not yet handed out.
        first_addr_family_count: RFC 8305 "First Address Family Count".
        already_yielded: Families of the addresses handed out before, in
            order.

    Returns:
        A new, interleaved list.

    Raises:
        TypeError: *first_addr_family_count* is not an int.
        ValueError: *first_addr_family_count* is less than 1.
    """
    check_first_addr_family_count(first_addr_family_count)
    if len(set(map(_family_of, infos))) <= 1:
        # One family (or none): nothing to alternate with, the order stays.
        return list(infos)
    queues: dict[int, list[AddrInfo]] = {}
    for info in infos:
        queues.setdefault(info[0], []).append(info)
    order = list(queues)  # families by first appearance
    result: list[AddrInfo] = []
    lead = order[0]
    lead_count = first_addr_family_count
    if already_yielded:
        last = already_yielded[-1]
        run_is_lead = all(f == already_yielded[0] for f in already_yielded)
        if run_is_lead and last == lead and len(already_yielded) < lead_count:
            lead_count -= len(already_yielded)
        else:
            # Carry on alternating: start with a family other than the last.
            others = [f for f in order if f != last]
            if others:
                lead = others[0]
                order.remove(lead)
                order.insert(0, lead)
            lead_count = 1
    queue = queues[lead]
    result.extend(queue[:lead_count])
    del queue[:lead_count]
    # Alternate, starting with the family after the lead.
    turn = order[1:] + order[:1]
    while any(queues.values()):
        for family in turn:
            queue = queues[family]
            if queue:
                result.append(queue.pop(0))
    return result
