"""aiohttp: our lookups through aiohttp's public ``resolver=`` interface.

``aiohttp.TCPConnector(resolver=HappyEyeballsResolver())`` makes aiohttp
resolve host names the way :func:`async_stagger.concurrent_resolver` does:
IPv6 and IPv4 looked up at the same time, an answer used after at most the
Resolution Delay even when the other family's never comes (RFC 8305 §3: a
lost AAAA answer costs 50 ms instead of the resolver's timeout), ordered by
RFC 6724 and interleaved by family (RFC 8305 §4). The connector stays
aiohttp's own, so everything it does still applies to what this returns:
its DNS cache (``use_dns_cache``, ``ttl_dns_cache``), its trace signals,
SSL and fingerprint checks, connection limits and keep-alive, and its own
staggered connection attempts (``happy_eyeballs_delay``, ``interleave``,
through aiohappyeyeballs).

What this route cannot do
-------------------------
aiohttp's resolver interface returns one finished list, so an answer that
arrives after the list was returned cannot join the race (RFC 8305 §6), and
the race itself is aiohttp's. Both would need a connector overriding
aiohttp's private ``TCPConnector._create_direct_connection``, which this
module does not do. The list is returned once every lookup answered, or
*late_answer_wait* seconds after the first address was ready; a family
whose answer came later is missing from it (and from aiohttp's cache) until
the cache entry expires.
"""

from __future__ import annotations

import asyncio
import socket
from functools import partial

from aiohttp.abc import AbstractResolver, ResolveResult

from .._checks import check_callable
from ..connection import AddrInfo
from ..defaults import FIRST_ADDRESS_FAMILY_COUNT, RESOLUTION_DELAY
from ..resolvers import GetaddrinfoAsync, concurrent_resolver
from ..trace import TraceCallback, tracing

__all__ = ["HappyEyeballsResolver"]

# What aiohttp's own resolvers put in ResolveResult["flags"]: the host is a
# numeric address, the port a number, for the getaddrinfo aiohttp may make.
_NUMERIC_FLAGS = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
_NUMERIC_NAME_FLAGS = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV


class HappyEyeballsResolver(AbstractResolver):
    """An aiohttp resolver with concurrent per-family lookups, the
    Resolution Delay and RFC 6724 order.

    Args:
        resolution_delay: RFC 8305 "Resolution Delay": how long to wait for
            IPv6 after IPv4 answered first.
        first_addr_family_count: RFC 8305 "First Address Family Count" for
            the order of the list. aiohttp re-interleaves it with its own
            *interleave* when it races the addresses.
        late_answer_wait: Seconds to wait, once the first address is ready,
            for lookups that have not answered yet; what arrived by then is
            returned. 0 returns at once, as RFC 8305 §3 starts connecting.
        flags: ``getaddrinfo`` flags for the lookups.
        getaddrinfo_async: The asynchronous ``getaddrinfo`` to use; ``None``
            means the loop's.
        sort: Order by RFC 6724 (see
            :func:`async_stagger.concurrent_resolver`).
        trace: Called with the :class:`~async_stagger.TraceEvent` of every
            lookup (``resolution_*`` events).

    Raises:
        ValueError: A delay is negative or not a number, or
            *first_addr_family_count* is below 1.

    .. versionadded:: 1.0
    """

    def __init__(
        self,
        *,
        resolution_delay: float = RESOLUTION_DELAY,
        first_addr_family_count: int = FIRST_ADDRESS_FAMILY_COUNT,
        late_answer_wait: float = 0.0,
        flags: int = 0,
        getaddrinfo_async: GetaddrinfoAsync | None = None,
        sort: bool = True,
        trace: TraceCallback | None = None,
    ) -> None:
        if not late_answer_wait >= 0:
            raise ValueError(f"late_answer_wait must be >= 0, got {late_answer_wait!r}")
        check_callable("trace", trace)
        # Checked now, by the resolver itself, rather than on first use.
        concurrent_resolver(
            None,  # answered without a lookup: only the options are checked
            0,
            resolution_delay=resolution_delay,
            first_addr_family_count=first_addr_family_count,
            flags=flags,
            getaddrinfo_async=getaddrinfo_async,
            sort=sort,
        )
        self._resolve = partial(
            concurrent_resolver,
            type=socket.SOCK_STREAM,
            flags=flags,
            resolution_delay=resolution_delay,
            first_addr_family_count=first_addr_family_count,
            getaddrinfo_async=getaddrinfo_async,
            sort=sort,
        )
        self._late_answer_wait = late_answer_wait
        self._trace = trace

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Look *host* up; the addresses, best first.

        Args:
            host: The host name.
            port: The port, copied into each result.
            family: ``AF_UNSPEC`` (what aiohttp's connector asks by default)
                for both families, or one family.

        Returns:
            aiohttp's ``ResolveResult`` dictionaries.

        Raises:
            OSError: Both lookups failed (a ``socket.gaierror`` naming the
                host and both causes); aiohttp reports it as
                ``ClientConnectorDNSError``.
        """
        if self._trace is None:
            # What tracing(None) does (leaves the current setting alone),
            # without its context manager: ~12k instructions per lookup,
            # 1.4 % of an aiohttp request that resolves
            # (benchmarks/clients.py --instructions).
            infos = await self._collect(host, port, family)
        else:
            with tracing(self._trace):
                infos = await self._collect(host, port, family)
        return [_result(host, info) for info in infos]

    async def _collect(self, host: str, port: int, family: int) -> list[AddrInfo]:
        addresses = self._resolve(host, port, family=family)
        try:
            # The first address: as soon as RFC 8305 §3 lets a race start.
            infos = [await addresses.__anext__()]
            try:
                # The rest that is ready, and what arrives in the grace time.
                async with asyncio.timeout(self._late_answer_wait):
                    async for info in addresses:
                        infos.append(info)
            except TimeoutError:
                pass  # lookups still running are cancelled by the timeout
        finally:
            aclose = getattr(addresses, "aclose", None)
            if aclose is not None:
                await aclose()
        return infos

    async def close(self) -> None:
        """Nothing to release: lookups end with the call that made them."""


def _result(host: str, info: AddrInfo) -> ResolveResult:
    family, _, proto, _, address = info
    numeric: str = address[0]
    if family == socket.AF_INET6 and address[3]:
        # A scope id (link-local address) travels in the host text, the
        # only place aiohttp's connector reads it from ("fe80::1%eth0").
        numeric = socket.getnameinfo(address, _NUMERIC_NAME_FLAGS)[0]
    return ResolveResult(
        hostname=host,
        host=numeric,
        port=address[1],
        family=family,
        proto=proto,
        flags=_NUMERIC_FLAGS,
    )
