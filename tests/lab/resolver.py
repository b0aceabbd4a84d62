"""A scripted stand-in for ``loop.getaddrinfo``.

Made-up host names resolve to chosen lab endpoints, and each address family
answers after its own delay, fails with its own error, or never answers at
all: the resolution side of a broken network. It sleeps with
``asyncio.sleep``, so on the suite's virtual clock its delays are exact.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .endpoints import Endpoint

__all__ = ["FakeGetaddrinfo", "GetaddrinfoCall"]

AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]

_FAMILIES = (socket.AF_INET, socket.AF_INET6)


@dataclass(frozen=True)
class GetaddrinfoCall:
    """One call made to a :class:`FakeGetaddrinfo`.

    Attributes:
        host, port, family, type, proto, flags: the arguments as given.
        time: ``loop.time()`` when the call was made.
    """

    host: Any
    port: Any
    family: int
    type: int
    proto: int
    flags: int
    time: float


class FakeGetaddrinfo:
    """An ``async`` callable with the signature of ``loop.getaddrinfo``.

    Answers come from *names*: each endpoint becomes one 5-tuple carrying the
    endpoint's own port (the port asked for is recorded but not used, so IPv6
    endpoints on ``::1`` may have ports of their own). ``family`` filters the
    answer; ``AF_UNSPEC`` returns both families in the listed order, after the
    longer of the two families' delays, the way one ``getaddrinfo`` call waits
    for both its queries. Numeric addresses not listed in *names* answer
    themselves at once, as a real resolver does. Unknown names fail with
    ``socket.gaierror(EAI_NONAME)``.

    Attributes:
        names: the mapping answered from; tests may change it between calls
            (the DNS answer changing, RFC 8305 §6).
        delays: seconds to wait per family (``None``: never answer; the call
            waits until cancelled).
        errors: exception raised per family after its delay.
        calls: every call made, in order.
    """

    def __init__(
        self,
        names: Mapping[str, Sequence[Endpoint]],
        *,
        delays: Mapping[socket.AddressFamily, float | None] | None = None,
        errors: Mapping[socket.AddressFamily, BaseException] | None = None,
    ) -> None:
        self.names: dict[str, list[Endpoint]] = {
            self._key(name): list(endpoints) for name, endpoints in names.items()
        }
        self.delays: dict[socket.AddressFamily, float | None] = dict(delays or {})
        self.errors: dict[socket.AddressFamily, BaseException] = dict(errors or {})
        for family in [*self.delays, *self.errors]:
            if family not in _FAMILIES:
                raise ValueError(
                    f"delays and errors are per AF_INET or AF_INET6, got {family!r}"
                )
        for family, delay in self.delays.items():
            if delay is not None and delay < 0:
                raise ValueError(f"delay for {family!r} must be >= 0, got {delay!r}")
        self.calls: list[GetaddrinfoCall] = []

    @staticmethod
    def _key(host: Any) -> str:
        if isinstance(host, bytes):
            host = host.decode("idna")
        if not isinstance(host, str):
            raise TypeError(f"host must be str or bytes, got {host!r}")
        return host.lower().rstrip(".")

    async def __call__(
        self,
        host: Any,
        port: Any,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[AddrInfo]:
        """Answer like ``loop.getaddrinfo(host, port, family=..., ...)``.

        Returns:
            The 5-tuples for the endpoints of *host* in *family*.

        Raises:
            socket.gaierror: EAI_NONAME for an unknown name or no address in
                the family, EAI_FAMILY for a family other than AF_UNSPEC,
                AF_INET, AF_INET6.
            BaseException: the error configured for the family.
        """
        loop = asyncio.get_running_loop()
        self.calls.append(
            GetaddrinfoCall(host, port, family, type, proto, flags, loop.time())
        )
        if family == socket.AF_UNSPEC:
            families: tuple[socket.AddressFamily, ...] = _FAMILIES
        elif family in _FAMILIES:
            families = (socket.AddressFamily(family),)
        else:
            raise socket.gaierror(
                socket.EAI_FAMILY, f"address family {family!r} not supported"
            )
        key = self._key(host) if host is not None else "localhost"
        numeric = self._numeric_family(key)
        if key not in self.names and numeric is not None:
            if numeric not in families:
                raise socket.gaierror(
                    socket.EAI_ADDRFAMILY,
                    "Address family for hostname not supported (lab resolver)",
                )
            return [self._tuple(numeric, key, port, type)]

        # Every family asked for is "queried" at once; the call answers when
        # the slowest has answered (None: never).
        delays = [self.delays.get(f, 0.0) for f in families]
        if any(d is None for d in delays):
            await asyncio.get_running_loop().create_future()  # never completes
        longest = max(d for d in delays if d is not None)
        if longest:
            await asyncio.sleep(longest)

        failures = [self.errors[f] for f in families if f in self.errors]
        answer = [
            endpoint.addrinfo
            for endpoint in self.names.get(key, [])
            if endpoint.family in families and endpoint.family not in self.errors
        ]
        answer = [self._retype(info, type) for info in answer]
        if answer:
            return answer
        if failures:
            raise failures[0]
        raise socket.gaierror(
            socket.EAI_NONAME, "Name or service not known (lab resolver)"
        )

    @staticmethod
    def _numeric_family(host: str) -> socket.AddressFamily | None:
        for family in _FAMILIES:
            try:
                socket.inet_pton(family, host)
            except OSError:
                continue
            return family
        return None

    @staticmethod
    def _retype(info: AddrInfo, type: int) -> AddrInfo:
        if type == socket.SOCK_DGRAM:
            return (info[0], socket.SOCK_DGRAM, socket.IPPROTO_UDP, "", info[4])
        return info

    def _tuple(
        self, family: socket.AddressFamily, host: str, port: Any, type: int
    ) -> AddrInfo:
        if isinstance(port, bytes):
            port = port.decode()
        if isinstance(port, str) and not port.isdigit():
            number = socket.getservbyname(port, "tcp")
        else:
            number = int(port or 0)
        sockaddr: tuple[Any, ...] = (
            (host, number, 0, 0) if family == socket.AF_INET6 else (host, number)
        )
        info: AddrInfo = (
            family,
            socket.SOCK_STREAM,
            socket.IPPROTO_TCP,
            "",
            sockaddr,
        )
        return self._retype(info, type)
