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
_exact_type = builtins.type  # `type` is a parameter name below

# Plain ints: arithmetic on the socket module's IntFlag members runs in Python.
_ALL_BUT_NUMERICHOST = ~int(socket.AI_NUMERICHOST)
_AI_NUMERICHOST = int(socket.AI_NUMERICHOST)
_AF_INET = int(socket.AF_INET)
_AF_INET6 = int(socket.AF_INET6)
_SOCK_STREAM = int(socket.SOCK_STREAM)
_IPPROTO_TCP = int(socket.IPPROTO_TCP)
# The members, as getaddrinfo's answers hold them.
_AF_INET_ENUM = socket.AF_INET
_SOCK_STREAM_ENUM = socket.SOCK_STREAM
_IPPROTO_TCP_ENUM = socket.IPPROTO_TCP


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


def _is_common_ipv4_call(
    port: Port, family: int, type: int, proto: int, flags: int
) -> bool:
    """Whether an IPv4 literal's ``getaddrinfo`` would answer with the one
    address ``(AF_INET, SOCK_STREAM, IPPROTO_TCP, "", (literal, port))``: a
    port number, a TCP connection, no flag but ``AI_NUMERICHOST``."""
    # Written for the common call (all zeros, an int port): each test
    # settled by its first comparison, no tuple built, no attribute read.
    # Worth ~0.8k instructions per call against `family in (0, _AF_INET)`
    # and the like: about 0.8 % of an IP literal connection on uvloop's loop
    # (~95k), 0.2 % on asyncio's (3.11).
    return (
        type == _SOCK_STREAM
        and (not family or family == _AF_INET)
        and (not proto or proto == _IPPROTO_TCP)
        and (not flags or not flags & _ALL_BUT_NUMERICHOST)
        and _exact_type(port) is int
        and 0 <= port <= 65535
    )


#: The host strings already answered here as IPv4 literals (the very ``str``
#: given, which inet_pton took), for :func:`lone_ipv4_literal`: whether a
#: string is an IPv4 literal never changes, so membership stands for the
#: test (and for telling it from a name) at the cost of one hash lookup. A
#: program connects to a handful of literals; one scanning many forgets them
#: all at the bound, and they are tested again.
_ipv4_literals: set[str] = set()
_IPV4_LITERALS_MAX = 256


def lone_ipv4_literal(
    host: Host, port: Port, family: int, proto: int, flags: int, nat64: object
) -> AddrInfo | None:
    """The one address a TCP connection to *host* has, when *host* is an
    IPv4 literal already answered (see ``_ipv4_literals``), the call is the
    common one (see :func:`_is_common_ipv4_call`) and the address is known
    to be reached without NAT64 (NAT64 off, an IPv4 *family* asked for, or
    the probe's cached verdict, ``_ipv4_direct_until``, still good); else
    None, and :func:`_direct_answer` decides, the NAT64 probe included.
    What it returns is what ``_direct_answer`` would have answered, exactly.
    Call it only while nothing traces: ``_direct_answer`` traces its answer.

    Worth ~9k instructions of an IP literal connection on uvloop's loop
    (3.11: 113.6k → 104.6k, 8 %): the literal test, the resolver's calls
    and the answer object it replaces, against one set lookup, the call's
    tests and (NAT64 on) one dictionary lookup and one clock read."""
    if (
        _exact_type(host) is str
        and host in _ipv4_literals
        and (
            # The commonest call of all (zeros and a port number) settled
            # without a call of _is_common_ipv4_call: ~0.7k instructions.
            (
                not family
                and not proto
                and not flags
                and _exact_type(port) is int
                and 0 <= port <= 65535
            )
            or _is_common_ipv4_call(port, family, _SOCK_STREAM, proto, flags)
        )
        and (
            nat64 is False
            or family
            or _ipv4_direct_until.get(host, 0.0) >= _monotonic()
        )
    ):
        return (_AF_INET_ENUM, _SOCK_STREAM_ENUM, _IPPROTO_TCP_ENUM, "", (host, port))
    return None


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
        if literal_family == _AF_INET and _is_common_ipv4_call(
            port, family, type, proto, flags
        ):
            if builtins.type(host) is str:
                # Remembered as a literal for lone_ipv4_literal.
                if len(_ipv4_literals) >= _IPV4_LITERALS_MAX:
                    _ipv4_literals.clear()
                _ipv4_literals.add(text)
            infos: list[AddrInfo] = [
                (_AF_INET_ENUM, _SOCK_STREAM_ENUM, _IPPROTO_TCP_ENUM, "", (text, port))
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
