"""IP literals, localhost names (RFC 6761 §6.3) and ``host=None`` are
answered here, without a name service lookup."""

from __future__ import annotations

import builtins
import socket
from collections.abc import AsyncIterator
from typing import Any

from ._answers import _emit_direct_answer, _host_text, _no_addresses, _order, _unique
from ._nat64_answers import _ipv4_direct_until, _monotonic, _needs_nat64, _through_nat64
from ._types import AddrInfo, GetaddrinfoAsync, Host, Port, SortAddresses
from .trace import tracing_active


def _literal_family(host: str) -> int:
    """``AF_INET`` or ``AF_INET6`` for an IP literal, 0 for anything else."""
    if ":" in host:
        # Only IPv6 literals have colons; a zone ("%eth0") may follow them,
        # which inet_pton rejects.
        family, address = _AF_INET6, host.partition("%")[0]
    elif host[-1:].isdigit():
        family, address = _AF_INET, host
    else:
        return 0  # a name ("example.com"): every IPv4 literal ends in a digit
    try:
        _inet_pton(family, address)
    except (OSError, ValueError):
        return 0
    return family


_inet_pton = socket.inet_pton

# Plain ints: arithmetic on the socket module's IntFlag members runs in Python.
_ALL_BUT_NUMERICHOST = ~int(socket.AI_NUMERICHOST)
_AI_NUMERICHOST = int(socket.AI_NUMERICHOST)
_AF_INET = int(socket.AF_INET)
_AF_INET6 = int(socket.AF_INET6)
_SOCK_STREAM = int(socket.SOCK_STREAM)
_IPPROTO_TCP = int(socket.IPPROTO_TCP)


class _DirectAnswer:
    """The addresses of an IP literal or of ``host=None``, handed out one at
    a time: an async iterator that needs no lookup, so no generator, task or
    executor either. An answer that needs ``getaddrinfo`` is computed at the
    first ``__anext__``, where a lookup would start, so its errors surface
    where a lookup's would.
    """

    __slots__ = ("_arguments", "_left")

    # The race may believe __length_hint__: it is exact, not a guess.
    _exact_length_hint = True

    def __init__(
        self, arguments: tuple[Any, ...] | None, left: list[AddrInfo] | None
    ) -> None:
        # What _answer needs, when the answer is not known yet.
        self._arguments = arguments
        # Addresses not handed out yet, last first; None until answered.
        self._left = left

    def __aiter__(self) -> _DirectAnswer:
        return self

    async def __anext__(self) -> AddrInfo:
        left = self._left
        if left is None:
            # An answer that raises ends the iteration, as a generator's
            # exception would.
            self._left = []
            left = self._left = self._answer()
        if left:
            return left.pop()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Hand out nothing more (like an async generator's ``aclose``)."""
        self._left = []

    def __length_hint__(self) -> int:
        """How many addresses are left (PEP 424); 1 before the answer: an
        answer holds at least one address or raises."""
        left = self._left
        return 1 if left is None else len(left)

    def take_lone(self) -> AddrInfo | None:
        """The answer's address if it is the only one, taken (nothing is
        left to iterate); else None, with nothing taken: the answer has
        several addresses, or no answer yet and working it out raises, which
        is left for ``__anext__`` to raise again where a lookup's error
        surfaces. Call it only while nothing traces: the answer is traced
        when it is worked out."""
        left = self._left
        if left is None:
            try:
                left = self._answer()
            except Exception:
                return None
            self._left = left
        if len(left) != 1:
            return None
        return left.pop()

    def _answer(self) -> list[AddrInfo]:
        assert self._arguments is not None
        (
            host, text, port, family, type, proto, flags, sorter,
            first_addr_family_count,
        ) = self._arguments  # fmt: skip
        if text is _LOCALHOST:
            infos = _loopback_answer(port, family, type, proto, flags)
        else:
            # As bytes: a str host goes through the (pure Python, slow) idna
            # codec first, pointless for a literal already known to be ASCII.
            infos = socket.getaddrinfo(  # type: ignore[assignment]
                None if text is None else text.encode("ascii"),
                port,
                family,
                type,
                proto,
                flags if text is None else flags | _AI_NUMERICHOST,
            )
        _emit_direct_answer(host, infos)
        if len(infos) > 1:
            infos = _order(
                _unique(infos, set()),
                sorter,
                first_addr_family_count,
                system_sorted=True,
            )
        elif not infos:
            raise _no_addresses(host)
        infos.reverse()
        return infos


# Stands for "a localhost name" where _DirectAnswer keeps the literal.
_LOCALHOST = "localhost"


def _is_localhost_name(name: str) -> bool:
    """Whether *name* is ``localhost`` or a name under it (RFC 6761 §6.3),
    in any case, with or without the root's trailing dot."""
    if name.endswith("."):
        name = name[:-1]
    if name[-9:].lower() != "localhost":
        return False  # the common case, any other name
    name = name.lower()
    return name == "localhost" or name.endswith(".localhost")


def _loopback_answer(
    port: Port, family: int, type: int, proto: int, flags: int
) -> list[AddrInfo]:
    """The answer for a localhost name: the loopback addresses, IPv6 first.

    RFC 6761 §6.3: localhost names are the loopback addresses and are never
    sent to DNS. The system's getaddrinfo honours that only through its
    hosts file: without a ``::1 localhost`` line our separate IPv6 lookup
    (or, with no line at all, any lookup) is sent to the DNS server. So,
    like browsers (Chrome and Firefox answer localhost names from the
    loopback addresses), and unlike asyncio (which passes them to
    getaddrinfo), they are answered here without any lookup, from both
    loopback addresses whatever the hosts file says; an IPv6 attempt on a
    host without IPv6 fails at once, and Happy Eyeballs moves on to IPv4.
    """
    infos: list[AddrInfo] = []
    for literal, literal_family in ((b"::1", _AF_INET6), (b"127.0.0.1", _AF_INET)):
        if family in (0, literal_family):
            infos += socket.getaddrinfo(
                literal, port, literal_family, type, proto, flags | _AI_NUMERICHOST
            )
    return infos


def _direct_answer(
    host: Host,
    port: Port,
    family: int,
    type: int,
    proto: int,
    flags: int,
    sorter: SortAddresses | None,
    first_addr_family_count: int,
    nat64: bool | tuple[Any, ...] = True,
    getaddrinfo_async: GetaddrinfoAsync | None = None,
) -> AsyncIterator[AddrInfo] | None:
    """The answer for an IP literal, a localhost name (RFC 6761 §6.3, see
    :func:`_loopback_answer`) or ``host=None``; None for any other name.

    ``getaddrinfo`` with ``AI_NUMERICHOST`` never consults the name service,
    and it does everything exactly as the system would: zone names to scope
    ids, service names, a literal of the wrong family refused with the usual
    ``gaierror``. Only the commonest call, a plain IPv4 literal with a port
    number for a TCP connection, is answered without it, at once, in the
    form ``getaddrinfo`` gives (a test compares the two): that is every
    connection to an IPv4 address, where the call and the conversion of its
    answer would cost more than the rest of the resolution.
    """
    if host is None:
        text = None
    else:
        text = host if builtins.type(host) is str else _host_text(host)
        assert text is not None
        if not text.isascii():
            return None
        literal_family = _literal_family(text)
        if not literal_family:
            if not _is_localhost_name(text):
                return None
            text = _LOCALHOST
        if (
            literal_family == _AF_INET
            and type == _SOCK_STREAM
            and family in (0, _AF_INET)
            and proto in (0, _IPPROTO_TCP)
            and flags & _ALL_BUT_NUMERICHOST == 0
            and builtins.type(port) is int
            and 0 <= port <= 65535
        ):
            infos: list[AddrInfo] = [
                (
                    socket.AF_INET,
                    socket.SOCK_STREAM,
                    socket.IPPROTO_TCP,
                    "",
                    (text, port),
                )
            ]
            if tracing_active():
                _emit_direct_answer(host, infos)
            if (
                nat64 is not False
                and not family
                # The probe's verdict, cached: a routed literal costs this
                # lookup only (see _ipv4_direct_until).
                and _ipv4_direct_until.get(text, 0.0) < _monotonic()
                and _needs_nat64(text)
            ):
                return _through_nat64(
                    _DirectAnswer(None, infos), host, nat64, getaddrinfo_async,
                    sorter, first_addr_family_count,
                )  # fmt: skip
            return _DirectAnswer(None, infos)
    arguments = (
        host, text, port, family, type, proto, flags, sorter, first_addr_family_count,
    )  # fmt: skip
    if (
        text is not None
        and literal_family == _AF_INET
        and nat64 is not False
        and not family
        and _needs_nat64(text)
    ):
        return _through_nat64(
            _DirectAnswer(arguments, None), host, nat64, getaddrinfo_async,
            sorter, first_addr_family_count,
        )  # fmt: skip
    return _DirectAnswer(arguments, None)
