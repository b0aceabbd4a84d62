"""async_stagger 0.4's names for the types of its signatures.

Each is an alias of the type defined where it is used: 0.4 code annotated
with these names keeps type-checking.
"""

from typing import TypeAlias

from ._types import AddrInfo, GetaddrinfoAsync, Host, Port
from .connection import Resolver

__all__ = [
    "AddrInfoType",
    "AsyncGetAddrInfoType",
    "HostType",
    "PortType",
    "ResolverType",
]

#: A ``getaddrinfo`` 5-tuple ``(family, type, proto, canonname, sockaddr)``.
AddrInfoType: TypeAlias = AddrInfo
#: A host as the connection functions and resolvers take it.
HostType: TypeAlias = Host
#: A port as the connection functions and resolvers take it.
PortType: TypeAlias = Port
#: An asynchronous ``getaddrinfo`` (the resolvers' ``getaddrinfo_async``).
AsyncGetAddrInfoType: TypeAlias = GetaddrinfoAsync
#: A resolver (the connection functions' ``resolver``).
ResolverType: TypeAlias = Resolver
