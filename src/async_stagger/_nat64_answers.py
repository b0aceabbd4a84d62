"""IPv4 is reached through NAT64 here when the host has no IPv4 route
(RFC 8305 §7): prefixes discovered (RFC 7050) or given, addresses
synthesized (RFC 6052 §2.3)."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from typing import Any

from . import nat64 as _nat64
from ._answers import _host_text, _lookup, _order
from ._types import AddrInfo, GetaddrinfoAsync, Host, SortAddresses
from .address_order import SOURCE_CACHE_SECONDS, find_source_address
from .trace import emit, tracing_active

_AF_INET = int(socket.AF_INET)
_AF_INET6 = int(socket.AF_INET6)
_SOCK_STREAM = int(socket.SOCK_STREAM)

#: IPv4 addresses reached directly, without NAT64 (the probe found an IPv4
#: route, or no IPv6 route either, or the address is one never
#: synthesized), with the ``time.monotonic()`` until which that holds (the
#: probe's own cache lifetime). Checked before anything else about NAT64,
#: so that an IPv4 literal pays one dictionary lookup and one clock read for
#: it. Measured under callgrind (benchmarks/connect.py --instructions), per
#: IP-literal connection: NAT64 with this check costs 0.4 % to 0.6 % more
#: instructions than no NAT64 at all; asking find_source_address's own
#: cache instead cost 1.6 % more.
_ipv4_direct_until: dict[str, float] = {}
_DIRECT_MAX = 1024
_monotonic = time.monotonic


def _needs_nat64(address: str) -> bool:
    """Whether the IPv4 *address* is to be reached through NAT64: the kernel
    has no IPv4 route to it but has an IPv6 route (the source-address probe
    of RFC 6724 rule 1, cached: RFC 8305 §7's sign of an IPv6-only network),
    and it is not in a range never synthesized."""
    if (
        find_source_address(socket.AF_INET, (address, 9)) is None
        and _synthesizable_anywhere(address)
        # Neither family routed (no network at all): nothing to translate
        # through, and no DNS64 to ask.
        and _network_key() is not None
    ):
        return True
    if len(_ipv4_direct_until) >= _DIRECT_MAX:
        _ipv4_direct_until.clear()
    _ipv4_direct_until[address] = _monotonic() + SOURCE_CACHE_SECONDS
    return False


def _synthesizable_anywhere(address: str) -> bool:
    # No NAT64 address stands for 0/8, 127/8, 169.254/16 or
    # 255.255.255.255, so those need no discovery.
    try:
        return _nat64.ever_synthesizable(address)
    except ValueError:  # a form inet_pton takes and ipaddress does not
        return False


# ipv4only.arpa's first address under the Well-Known Prefix: where a DNS64
# server would say it is.
_NETWORK_PROBE = str(
    _nat64.embed(_nat64.WELL_KNOWN_ADDRESSES[0], _nat64.WELL_KNOWN_PREFIX)
)


def _network_key() -> Any:
    """Which network this is, for the prefix cache: the IPv6 source address
    toward the Well-Known Prefix (a UDP connect, which sends nothing), or
    None when there is no IPv6 route at all."""
    source = find_source_address(socket.AF_INET6, (_NETWORK_PROBE, 9, 0, 0))
    return None if source is None else source[0]


def _nat64_applies(infos: list[AddrInfo], nat64: bool | tuple[Any, ...]) -> bool:
    """Whether *infos* hold IPv4 addresses to reach through NAT64: it is on
    and the first of them needs it."""
    if nat64 is False:
        return False
    for info in infos:
        if info[0] == _AF_INET and isinstance(info[4][0], str):
            address: str = info[4][0]
            if _ipv4_direct_until.get(address, 0.0) >= _monotonic():
                return False
            return _needs_nat64(address)
    return False


async def _discover_prefixes(
    getaddrinfo_async: GetaddrinfoAsync | None,
) -> tuple[Any, ...]:
    """This network's NAT64 prefixes: remembered, or found by an AAAA
    lookup of ``ipv4only.arpa`` through the resolver in use (RFC 7050 §3).
    A lookup that fails, or answers without the well-known addresses,
    means no NAT64."""
    network = _network_key()
    known = _nat64.recall(network)
    if known is not None:
        return known
    if getaddrinfo_async is None:
        # Imported here, not above: the resolvers import this module, and
        # only a prefix discovery, once per network, needs the shared lookup.
        from .resolvers import shared_getaddrinfo

        getaddrinfo_async = shared_getaddrinfo
    try:
        answers = await _lookup(
            getaddrinfo_async,
            _nat64.DISCOVERY_NAME, None, _AF_INET6, _SOCK_STREAM, 0, 0,
        )  # fmt: skip
    except Exception:
        answers = []
    prefixes = _nat64.prefixes_from_answers(
        info[4][0] for info in answers if isinstance(info[4][0], str)
    )
    _nat64.remember(network, prefixes)
    return prefixes


async def _synthesize(
    host: Host,
    infos: list[AddrInfo],
    setting: bool | tuple[Any, ...],
    getaddrinfo_async: GetaddrinfoAsync | None,
) -> list[AddrInfo]:
    """*infos* with each IPv4 address replaced by its addresses in the
    NAT64 prefixes (RFC 6052 §2.3), those given in *setting* or else the
    discovered ones. An address that cannot be synthesized (no prefix, or a
    range never synthesized) stays as it is, to fail as it would have."""
    if isinstance(setting, tuple):
        prefixes, origin = setting, "nat64="
    else:
        prefixes, origin = await _discover_prefixes(getaddrinfo_async), "ipv4only.arpa"
    result: list[AddrInfo] = []
    traced = tracing_active()
    for info in infos:
        family, kind, proto, canonname, sockaddr = info
        usable = (
            [p for p in prefixes if _nat64.synthesizable(sockaddr[0], p)]
            if family == _AF_INET
            else []
        )
        if not usable:
            result.append(info)
            continue
        for prefix in usable:
            address = (str(_nat64.embed(sockaddr[0], prefix)), sockaddr[1], 0, 0)
            result.append((socket.AF_INET6, kind, proto, canonname, address))
            if traced:
                emit(
                    "nat64_synthesized",
                    host=_host_text(host),
                    address=address,
                    synthesized_from=sockaddr,
                    nat64_prefix=str(prefix),
                    nat64_origin=origin,
                )
    return result


async def _through_nat64(
    ipv4_answer: AsyncIterator[AddrInfo],
    host: Host,
    setting: bool | tuple[Any, ...],
    getaddrinfo_async: GetaddrinfoAsync | None,
    sorter: SortAddresses | None,
    first_addr_family_count: int,
) -> AsyncIterator[AddrInfo]:
    """An IPv4 literal with no IPv4 route: its addresses through NAT64."""
    infos = [info async for info in ipv4_answer]
    synthesized = await _synthesize(host, infos, setting, getaddrinfo_async)
    for info in _order(synthesized, sorter, first_addr_family_count):
        yield info
