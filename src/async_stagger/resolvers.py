"""Host names to ordered streams of addresses.

Placeholder: one ``getaddrinfo`` call, interleaved by family. The concurrent
RFC 8305 §3 resolver replaces it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

from .defaults import FIRST_ADDRESS_FAMILY_COUNT

AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]


async def basic_resolver(
    host: str | bytes | None,
    port: str | bytes | int | None,
    *,
    family: int = 0,
    type: int = 0,
    proto: int = 0,
    flags: int = 0,
    first_addr_family_count: int = FIRST_ADDRESS_FAMILY_COUNT,
) -> AsyncIterator[AddrInfo]:
    """Resolve with one lookup and yield the addresses interleaved by family."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(
        host, port, family=family, type=type, proto=proto, flags=flags
    )
    for info in infos:
        yield info


concurrent_resolver = basic_resolver
