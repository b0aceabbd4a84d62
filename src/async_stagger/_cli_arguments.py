"""The tracer's command-line values: HOST [PORT] as people type them (a
bracketed IPv6 address, ``host:port``, a URL), a local address to bind, and
the numbers its options take. Each parser raises
:class:`argparse.ArgumentTypeError` naming the text it could not read."""

from __future__ import annotations

import argparse
import ipaddress
import math
import socket
import urllib.parse
from typing import Any

from ._cli_values import _non_negative_seconds


def _attempt_delay(text: str) -> float:
    if text.lower() in ("none", "inf"):
        # An endless delay: the next attempt starts only when one fails.
        return math.inf
    return _non_negative_seconds(text)


def _interleave(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _port(text: str) -> int:
    if text.isdigit():
        value = int(text)
        if not 1 <= value <= 65535:
            raise argparse.ArgumentTypeError(
                f"port must be between 1 and 65535, got {text!r}"
            )
        return value
    try:
        return socket.getservbyname(text, "tcp")
    except OSError:
        raise argparse.ArgumentTypeError(
            f"expected a port number or a TCP service name, got {text!r}"
        ) from None


def _host(text: str) -> str:
    if not text or text.isspace():
        raise argparse.ArgumentTypeError("the host must not be empty")
    return text


#: Ports of the schemes people most often paste, without /etc/services.
_SCHEME_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def split_target(host: str, port: int | None) -> tuple[str, int]:
    """The host and port of what was typed as HOST [PORT].

    Args:
        host: ``example.com``, ``2001:db8::1``, ``[2001:db8::1]``,
            ``example.com:443``, ``[::1]:8080``, or a URL
            (``https://example.com/``).
        port: The PORT argument, if given.

    Returns:
        ``(host, port)``: the host without brackets, the port from *port*,
        the text, the URL or its scheme.

    Raises:
        ValueError: No port anywhere, two different ports, or a URL or
            bracketed address that does not parse.
    """
    found: int | None = None
    if "://" in host:
        parts = urllib.parse.urlsplit(host)
        try:
            found = parts.port
        except ValueError:
            raise ValueError(f"bad port in URL {host!r}") from None
        name = parts.hostname
        if not name:
            raise ValueError(f"no host in URL {host!r}")
        if found is None:
            scheme = parts.scheme.lower()
            found = _SCHEME_PORTS.get(scheme)
            if found is None:
                try:
                    found = socket.getservbyname(scheme, "tcp")
                except OSError:
                    raise ValueError(
                        f"no port for scheme {scheme!r}: give PORT"
                    ) from None
        host = name
    elif host.startswith("["):
        inside, bracket, rest = host[1:].partition("]")
        if not bracket or not inside or (rest and not rest.startswith(":")):
            raise ValueError(
                f"expected [IPv6 address] or [IPv6 address]:port, got {host!r}"
            )
        if rest:
            found = _port_in_text(rest[1:], host)
        host = inside
    elif host.count(":") == 1:
        host, _, text = host.partition(":")
        found = _port_in_text(text, host)
        if not host:
            raise ValueError("the host must not be empty")
    if found is not None and port is not None and found != port:
        raise ValueError(f"two ports given: {found} in HOST and {port} as PORT")
    chosen = port if port is not None else found
    if chosen is None:
        raise ValueError("no port: give PORT, or write HOST as host:port or as a URL")
    return host, chosen


def _port_in_text(text: str, whole: str) -> int:
    try:
        return _port(text)
    except argparse.ArgumentTypeError as exc:
        raise ValueError(f"{exc} (in {whole!r})") from None


def _local_address(text: str) -> tuple[Any, ...]:
    """An IP literal as a socket address with port 0 (any local port)."""
    address, _, scope = text.partition("%")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a local IP address, got {text!r}"
        ) from None
    if ip.version == 4:
        if scope:
            raise argparse.ArgumentTypeError(
                f"an IPv4 address has no scope, got {text!r}"
            )
        return (str(ip), 0)
    # The kernel resolves a "%scope" suffix (name or number) when binding.
    return (text, 0, 0, 0)
