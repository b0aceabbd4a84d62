"""The command line: ``python -m async_stagger``.

``python -m async_stagger HOST PORT`` connects with Happy Eyeballs and prints
the race as it happens, from the :mod:`async_stagger.trace` events: when each
address family's lookup answered and with what, when each connection attempt
started, how each one ended, which one won and how long it all took. It is
meant for diagnosing dual-stack trouble, the way ``curl -v`` is used for HTTP.
``--json`` prints the same events as JSON lines instead.

``python -m async_stagger demo`` needs no network: it shows, on loopback, what
Happy Eyeballs gains over a sequential connect when a host's first address is
blackholed (see :mod:`async_stagger._demo`).

Exit status: 0 when connected, 1 when the connection failed, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import math
import os
import socket
import ssl
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from . import __version__, defaults
from ._certificate_text import _certificate_json, _certificate_lines
from ._cli_arguments import (
    _attempt_delay,
    _host,
    _interleave,
    _local_address,
    _port,
    split_target,
)
from ._cli_values import PROG, _non_negative_seconds, _positive_seconds
from ._describe import format_address, format_error
from ._lookup_threads import getaddrinfo_in_daemon_thread
from ._timeline import Timeline, _error_json
from .connection import open_connection
from .resolvers import concurrent_resolver

__all__ = [
    "Timeline",
    "build_parser",
    "format_address",
    "format_error",
    "getaddrinfo_in_daemon_thread",
    "main",
    "split_target",
    "trace_connection",
]


EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


# -- argument parsing ----------------------------------------------------------

_DESCRIPTION = """\
Connect to HOST PORT with Happy Eyeballs (RFC 8305) and print the race as a
timeline: when each address family's lookup answered and with what, when each
connection attempt started, how each one ended, the winner and the total
time. A diagnostic for dual-stack trouble, like curl -v. The connection is
closed as soon as it is made (after the TLS handshake with --tls)."""

_EPILOG = f"""\
examples:
  {PROG} example.com 443
  {PROG} example.com https --tls --json
  {PROG} example.com 80 --family 6 --timeout 5
  {PROG} demo    (on loopback: no network needed)

The demo connects to a made-up host whose first address is blackholed,
with asyncio's sequential strategy and with Happy Eyeballs, and prints both
timelines: see '{PROG} demo --help'. To trace a host that is
really called demo, write it as 'demo.'.

exit status: 0 connected, 1 connection failed, 2 bad usage"""


def build_parser() -> argparse.ArgumentParser:
    """The parser for ``python -m async_stagger HOST PORT [options]``.

    Returns:
        An :class:`argparse.ArgumentParser`; ``parse_args`` exits with status
        2 on bad usage.
    """
    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_DESCRIPTION,
        epilog=_EPILOG,
    )
    parser.add_argument(
        "host",
        metavar="HOST",
        type=_host,
        help=(
            "host name or IP address, as people write it: example.com,"
            " 2001:db8::1, [2001:db8::1], example.com:443, [::1]:8080, or a URL"
            " such as https://example.com/ (the port from the URL or its scheme)"
        ),
    )
    parser.add_argument(
        "port",
        metavar="PORT",
        type=_port,
        nargs="?",
        default=None,
        help="port number or TCP service name (unless HOST gives one)",
    )
    parser.add_argument(
        "--delay",
        metavar="S",
        type=_attempt_delay,
        default=defaults.CONNECTION_ATTEMPT_DELAY,
        help=(
            "connection attempt delay: seconds to wait after starting one"
            " attempt before starting the next while it is still pending"
            " (default: %(default)s; 'none' tries one address at a time)"
        ),
    )
    parser.add_argument(
        "--family",
        choices=("4", "6"),
        default=None,
        help="use only IPv4 (4) or only IPv6 (6) (default: both)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help=(
            "do a TLS handshake on each connected attempt (verifying the"
            " certificate for HOST); the first to complete it wins. Shows the"
            " TLS version and cipher"
        ),
    )
    parser.add_argument(
        "--no-tls-race",
        dest="race_tls",
        action="store_false",
        help=(
            "with --tls: let the TCP race pick the winner and do TLS on it"
            " alone, as asyncio does"
        ),
    )
    parser.add_argument(
        "--cafile",
        metavar="FILE",
        help=(
            "with --tls: trust the CA certificates in FILE (PEM) instead of"
            " the system's"
        ),
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="with --tls: do not verify the server's certificate or host name",
    )
    parser.add_argument(
        "--local-addr",
        metavar="ADDR",
        type=_local_address,
        action="append",
        dest="local_addrs",
        help=(
            "bind attempts to this local IP address (any port); repeat for"
            " several, e.g. one IPv4 and one IPv6: each attempt uses one of"
            " its own family"
        ),
    )
    parser.add_argument(
        "--resolution-delay",
        metavar="S",
        type=_non_negative_seconds,
        default=defaults.RESOLUTION_DELAY,
        help=(
            "when the IPv4 answer arrives first, seconds to wait for the IPv6"
            " answer before connecting (default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--interleave",
        metavar="N",
        type=_interleave,
        default=defaults.FIRST_ADDRESS_FAMILY_COUNT,
        help=(
            "first address family count: how many addresses of the preferred"
            " family to try before alternating families (default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--timeout",
        metavar="S",
        type=_positive_seconds,
        default=None,
        help=(
            "give up after S seconds in all (default: no limit beyond the"
            " operating system's own connect timeouts)"
        ),
    )
    parser.add_argument(
        "--repeat",
        metavar="N",
        type=_interleave,
        default=1,
        help=(
            "connect N times, one after the other, to see what the connection"
            " history learned from the earlier ones (default: %(default)s)"
        ),
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help=(
            "print the events as JSON lines (one object per event, then a"
            " 'result' object) instead of the timeline"
        ),
    )
    parser.add_argument(
        "--version", action="version", version=f"async_stagger {__version__}"
    )
    return parser


# -- connecting ----------------------------------------------------------------


def _client_ssl_context(args: argparse.Namespace) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=args.cafile)
    if args.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close politely, but do not hang on a peer that never answers."""
    writer.close()
    try:
        async with asyncio.timeout(1.0):
            await writer.wait_closed()
    except (OSError, TimeoutError, ssl.SSLError):
        writer.transport.abort()


async def trace_connection(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Connect as *args* say, printing the timeline to *out*.

    With ``--repeat N`` the connection is made N times, one after the
    other, each with its own timeline: the later ones show what the
    connection history (:mod:`async_stagger.history`) learned.

    Args:
        args: Parsed command line (see :func:`build_parser`), with
            ``host`` and ``port`` split as :func:`split_target` does.
        out: Where the timeline (or JSON lines) goes.
        err: Where the error message goes when the connection fails.

    Returns:
        The exit status: 0 when connected (every time), 1 when not, 2 when
        the CA file of ``--cafile`` cannot be used.
    """
    try:
        ssl_context = _client_ssl_context(args) if args.tls else None
    except (OSError, ssl.SSLError) as exc:
        print(f"{PROG}: error: --cafile {args.cafile}: {format_error(exc)}", file=err)
        return EXIT_USAGE
    repeat = getattr(args, "repeat", 1)
    status = EXIT_OK
    for round_ in range(repeat):
        if round_ and not args.json:
            print(file=out)
        status = max(status, await _trace_one(args, ssl_context, out, err))
    return status


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings a connection uses, for the first JSON line."""
    return {
        "kind": "settings",
        "time": 0.0,
        "version": __version__,
        "host": args.host,
        "port": args.port,
        "family": {None: "any", "4": "AF_INET", "6": "AF_INET6"}[args.family],
        "delay": None if math.isinf(args.delay) else args.delay,
        "resolution_delay": args.resolution_delay,
        "interleave": args.interleave,
        "tls": bool(args.tls),
        "verify": bool(args.tls and not args.insecure),
        "cafile": args.cafile,
        "local_addrs": [list(a) for a in args.local_addrs or []],
        "timeout": args.timeout,
        "repeat": getattr(args, "repeat", 1),
    }


async def _trace_one(
    args: argparse.Namespace,
    ssl_context: ssl.SSLContext | None,
    out: TextIO,
    err: TextIO,
) -> int:
    loop = asyncio.get_running_loop()
    timeline = Timeline(out, json_lines=args.json)
    family = {None: 0, "4": socket.AF_INET, "6": socket.AF_INET6}[args.family]
    resolver = functools.partial(
        concurrent_resolver,
        resolution_delay=args.resolution_delay,
        first_addr_family_count=args.interleave,
    )
    if args.json:
        timeline.write_json(_settings(args))
    else:
        delay = (
            "none (one at a time)" if math.isinf(args.delay) else f"{args.delay:g} s"
        )
        timeline.write(
            f"connecting to {args.host} port {args.port}"
            f" (attempt delay {delay}, resolution delay"
            f" {args.resolution_delay:g} s, interleave {args.interleave})"
        )
    timeline.start(loop.time())
    try:
        async with asyncio.timeout(args.timeout):
            _, writer = await open_connection(
                args.host,
                args.port,
                family=family,
                local_addrs=args.local_addrs,
                delay=args.delay,
                resolver=resolver,
                ssl=ssl_context,
                trace=timeline,
                race_tls=args.race_tls,
            )
    except (OSError, ssl.SSLError, ExceptionGroup) as exc:
        elapsed = timeline.elapsed(loop.time())
        error = _error_json(exc)
        if isinstance(exc, TimeoutError) and args.timeout is not None:
            message = f"timed out after {args.timeout:g} s"
            error["message"] = message
        else:
            message = format_error(exc)
        if args.json:
            timeline.write_json(
                {
                    "kind": "result",
                    "ok": False,
                    "time": round(elapsed, 6),
                    "error": error,
                }
            )
        elif any(
            event.kind == "connection_failed" and event.error is exc
            for event in timeline.events
        ):
            timeline.write_line(elapsed, "=> not connected")
        else:
            timeline.write_line(elapsed, f"=> not connected: {message}")
        # Said once: the timeline above has the error (unless it went to
        # JSON, or nowhere); the summary for scripts says which connection.
        where = f"could not connect to {args.host} port {args.port}"
        if args.json or timeline.output_lost:
            print(f"{PROG}: {where}: {message}", file=err)
        else:
            print(f"{PROG}: {where} (see above)", file=err)
        return EXIT_FAILED
    elapsed = timeline.elapsed(loop.time())
    peer = writer.get_extra_info("peername")
    local = writer.get_extra_info("sockname")
    tls = writer.get_extra_info("ssl_object")
    try:
        if args.json:
            result: dict[str, Any] = {
                "kind": "result",
                "ok": True,
                "time": round(elapsed, 6),
                "address": list(peer),
                "local_address": list(local),
            }
            if tls is not None:
                cipher = tls.cipher()
                result["tls"] = {
                    "version": tls.version(),
                    "cipher": cipher[0] if cipher else None,
                    "certificate": _certificate_json(tls.getpeercert()),
                }
            timeline.write_json(result)
        else:
            summary = (
                f"=> connected to {format_address(peer)} from {format_address(local)}"
            )
            if tls is not None:
                cipher = tls.cipher()
                summary += f" with {tls.version()}" + (
                    f" ({cipher[0]})" if cipher else ""
                )
            timeline.write_line(elapsed, summary)
            if tls is not None:
                for line in _certificate_lines(tls.getpeercert()):
                    timeline.write(f"{timeline.indent}{'':14s}{line}")
    finally:
        await _close(writer)
    return EXIT_OK


# -- entry point ---------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status.

    Args:
        argv: The arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        0 when connected (or for ``--help``/``--version``), 1 when the
        connection failed, 2 on bad usage.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        if arguments[:1] == ["demo"]:
            from ._demo import build_demo_parser, run_demo

            demo_args = build_demo_parser().parse_args(arguments[1:])
            return asyncio.run(run_demo(demo_args, sys.stdout))
        parser = build_parser()
        args = parser.parse_args(arguments)
        try:
            args.host, args.port = split_target(args.host, args.port)
        except ValueError as exc:
            parser.error(str(exc))
        if (args.cafile or args.insecure or not args.race_tls) and not args.tls:
            print(
                f"{PROG}: error: --cafile, --insecure and --no-tls-race need --tls",
                file=sys.stderr,
            )
            return EXIT_USAGE
        return asyncio.run(trace_connection(args, sys.stdout, sys.stderr))
    except SystemExit as exit:
        # argparse exits for --help, --version (0) and bad usage (2).
        return exit.code if isinstance(exit.code, int) else EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    finally:
        _quiet_broken_pipe()


def _quiet_broken_pipe() -> None:
    """When stdout's reader went away (``... | head``), flush into the void
    so the interpreter does not complain about it at exit."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass
