"""Trace events in words: one line of text per event, the same for the
command-line tracer and for the ``async_stagger`` logger."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .trace import TraceEvent

__all__ = ["describe_event", "format_address", "format_duration", "format_error"]

_FAMILY_NAMES: dict[int, str] = {
    socket.AF_INET: "IPv4 (A)",
    socket.AF_INET6: "IPv6 (AAAA)",
}


def format_address(address: Sequence[Any] | None) -> str:
    """Render a socket address the way URLs write it.

    Args:
        address: A socket address tuple: ``(host, port)`` for IPv4,
            ``(host, port, flowinfo, scope_id)`` for IPv6, or ``None``.

    Returns:
        ``"192.0.2.1:443"``, ``"[2001:db8::1]:443"`` (with ``%scope`` when the
        scope id is set), or ``"?"`` for ``None``.
    """
    if not address:
        return "?"
    host = str(address[0])
    if len(address) < 2:
        return host
    port = address[1]
    if ":" in host:
        if len(address) >= 4 and address[3] and "%" not in host:
            host = f"{host}%{address[3]}"
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def format_error(error: BaseException | None) -> str:
    """Render an exception as ``"TypeName: message"`` (just the type name when
    the message is empty).

    Args:
        error: The exception, or ``None``.

    Returns:
        The one-line description; ``"unknown error"`` for ``None``.
    """
    if error is None:
        return "unknown error"
    if isinstance(error, BaseExceptionGroup):
        parts = "; ".join(format_error(inner) for inner in error.exceptions)
        return f"{type(error).__name__}: {error.message} ({parts})"
    message = str(error)
    name = type(error).__name__
    return f"{name}: {message}" if message else name


def _family_name(family: int | None) -> str:
    if not family:
        return "any family (AF_UNSPEC)"
    return _FAMILY_NAMES.get(family, f"family {family}")


def _hosts(addresses: Sequence[Sequence[Any]] | None) -> str:
    """The host parts of a lookup's answer, in order."""
    if not addresses:
        return "no addresses"
    return ", ".join(str(address[0]) for address in addresses)


def describe_event(event: TraceEvent, address: tuple[Any, ...] | None = None) -> str:
    """One human-readable line for *event*, without a time stamp.

    Args:
        event: The event.
        address: The attempt's address, for attempt events that do not carry
            it themselves.

    Returns:
        The line, e.g. ``"attempt #0 to 192.0.2.1:443 started"``.
    """
    kind = event.kind
    family = _family_name(event.family)
    if kind == "resolution_started":
        return f"lookup {family} started for {event.host}"
    if kind == "resolution_answered":
        return f"lookup {family} answered: {_hosts(event.addresses)}"
    if kind == "resolution_failed":
        return f"lookup {family} failed: {format_error(event.error)}"
    if kind == "nat64_synthesized":
        ipv4 = event.synthesized_from[0] if event.synthesized_from else "?"
        ipv6 = event.address[0] if event.address else "?"
        return (
            f"{ipv4} → {ipv6} (NAT64 prefix {event.nat64_prefix}"
            f" from {event.nat64_origin})"
        )
    if event.address is not None:
        address = event.address
    attempt = f"attempt #{event.index} to {format_address(address)}"
    if kind == "attempt_started":
        if event.local_address is not None:
            local = format_address(event.local_address)
            return f"{attempt} started (from {local})"
        return f"{attempt} started"
    if kind == "attempt_failed":
        return f"{attempt} failed: {format_error(event.error)}"
    if kind == "attempt_cancelled":
        return f"{attempt} cancelled"
    if kind == "attempt_succeeded":
        return f"{attempt} connected: the winner"
    if kind.startswith("tls_") and event.index is not None:
        # A TLS race: each attempt's handshake; a failed one is followed by
        # its attempt_failed, which gives the error.
        if kind == "tls_started":
            return f"{attempt}: TLS handshake started"
        if kind == "tls_succeeded":
            return f"{attempt}: TLS handshake done"
        return f"{attempt}: TLS handshake failed"
    if kind == "tls_started":
        return "TLS handshake started"
    if kind == "tls_succeeded":
        return "TLS handshake done"
    if kind == "tls_failed":
        return f"TLS handshake failed: {format_error(event.error)}"
    if kind == "connection_failed":
        if isinstance(event.error, asyncio.CancelledError):
            return "connection cancelled"
        return f"connection failed: {format_error(event.error)}"
    if kind == "resolution_delay_expired":
        return (
            f"resolution delay expired ({format_duration(event.delay)} after the"
            " A answer): going on without IPv6"
        )
    if kind == "resolution_abandoned":
        record = "AAAA" if event.family == socket.AF_INET6 else "A"
        return f"{record}: no answer after {format_duration(event.delay)}"
    if kind == "order_decided":
        reasons = event.reasons or ()
        places = [
            f"#{at} {format_address(each)}"
            + (f" ({reasons[at]})" if at < len(reasons) else "")
            for at, each in enumerate(event.addresses or ())
        ]
        return f"address order for {event.host}: {', '.join(places)}"
    if kind == "attempt_delay_expired":
        waited = format_duration(event.delay)
        return f"{attempt}: no answer after {waited}, starting the next"
    if kind == "attempt_delay_from_history":
        return (
            f"{attempt}: attempt delay {format_duration(event.delay)}, from its"
            " measured round-trip time (history)"
        )
    if kind == "address_skipped":
        return (
            f"address {format_address(event.address)} skipped:"
            f" {format_error(event.error)}"
        )
    return str(kind)


def format_duration(seconds: float | None) -> str:
    """A short time the way people say it.

    Args:
        seconds: The time, or ``None``.

    Returns:
        ``"250 ms"`` below a second, ``"1.2 s"`` from one on, ``"?"`` for
        ``None``.
    """
    if seconds is None:
        return "?"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.1f} s"
