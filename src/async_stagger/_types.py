"""Every type alias the modules share is defined here, once."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias

__all__ = ["AddrInfo", "GetaddrinfoAsync", "Host", "Port", "SortAddresses"]

#: A getaddrinfo 5-tuple: ``(family, type, proto, canonname, sockaddr)``.
AddrInfo: TypeAlias = tuple[
    socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]
]

#: A host name, an IP literal, or ``None`` (the local host, or with
#: ``AI_PASSIVE`` the wildcard address), as asyncio takes it.
Host: TypeAlias = str | bytes | None

#: A port number, a numeric string, a service name (``"https"``) or ``None``.
Port: TypeAlias = str | bytes | int | None

#: An asynchronous ``getaddrinfo``: called as ``getaddrinfo_async(host, port,
#: family=..., type=..., proto=..., flags=...)`` like ``loop.getaddrinfo``,
#: it returns the list of 5-tuples. Plug in a DNS library here.
GetaddrinfoAsync: TypeAlias = Callable[..., Awaitable[Sequence[AddrInfo]]]

#: Orders a list of addresses, best first (see ``sort=``).
SortAddresses: TypeAlias = Callable[[list[AddrInfo]], list[AddrInfo]]
