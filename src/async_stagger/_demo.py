"""``python -m async_stagger demo``: Happy Eyeballs against a blackholed
address, on loopback, with no network and no privileges.

The demo stands up a made-up host whose first address is *blackholed* (a
connection attempt to it gets no answer at all, like a broken IPv6 route or a
firewall dropping packets) and whose second address works, then connects to it
twice and prints both timelines:

1. asyncio's sequential strategy, which is what ``loop.create_connection``
   does without ``happy_eyeballs_delay``: one ``getaddrinfo`` call, then each
   address in turn with ``loop.sock_connect``. asyncio itself waits for the
   kernel to give up on the first address (about two minutes on Linux), so the
   demo cuts each attempt off after a stated timeout.
2. :func:`async_stagger.open_connection`, which starts the next attempt when
   the first has not connected within the connection attempt delay
   (RFC 8305 §5).

How the blackhole is made without privileges: a TCP socket listening with a
backlog of 0 accepts one connection into its queue; once that connection sits
there unaccepted, the queue is full and the kernel silently drops further
SYNs, so a ``connect`` to it hangs exactly as it would towards a dead route.
The demo checks that it really hangs before relying on it.

The addresses come from distinct ``127.x`` addresses sharing one port, as a
real host's addresses share a port. Where only ``127.0.0.1`` exists (macOS),
both endpoints use ``127.0.0.1`` on different ports. The made-up name is
answered by a stand-in ``getaddrinfo`` plugged into
:func:`~async_stagger.resolvers.concurrent_resolver` through its
``getaddrinfo_async`` hook, so the real resolver and the real connection code
run, only the DNS answers are canned.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import functools
import select
import socket
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TextIO

from . import defaults
from ._cli_values import PROG, _positive_seconds
from ._describe import format_address, format_error
from ._timeline import Timeline
from ._types import AddrInfo
from .connection import open_connection
from .resolvers import concurrent_resolver
from .trace import emit, tracing

#: The made-up host name (``.test`` is reserved for testing, RFC 2606).
DEMO_HOST = "blackholed-first.test"

#: How long each sequential attempt may take before the demo gives up on it.
SEQUENTIAL_TIMEOUT = 2.0


def build_demo_parser() -> argparse.ArgumentParser:
    """The parser for ``python -m async_stagger demo [options]``.

    Returns:
        An :class:`argparse.ArgumentParser`.
    """
    parser = argparse.ArgumentParser(
        prog=f"{PROG} demo",
        description=(
            "Demonstrate Happy Eyeballs on loopback, with no network and no"
            " privileges: a made-up host whose first address is blackholed"
            " (SYNs silently dropped) and whose second address works is"
            " connected to with asyncio's sequential strategy (each attempt"
            " cut off after --timeout seconds) and with async_stagger; both"
            " timelines and the speed-up are printed."
        ),
    )
    parser.add_argument(
        "--delay",
        metavar="S",
        type=_positive_seconds,
        default=defaults.CONNECTION_ATTEMPT_DELAY,
        help="async_stagger's connection attempt delay (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        metavar="S",
        type=_positive_seconds,
        default=SEQUENTIAL_TIMEOUT,
        help=(
            "cut-off for each attempt of the sequential strategy; asyncio"
            " itself has none and waits for the kernel (default: %(default)s)"
        ),
    )
    return parser


# -- the loopback host -----------------------------------------------------------


@dataclass
class DemoHost:
    """Listening sockets standing in for a host with two addresses: the first
    blackholed, the second working. Close with :meth:`close`."""

    blackholed: tuple[str, int]
    working: tuple[str, int]
    sockets: list[socket.socket] = field(default_factory=list)

    @property
    def addrinfos(self) -> list[AddrInfo]:
        """What ``getaddrinfo`` answers for the host, blackholed first."""
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", address)
            for address in (self.blackholed, self.working)
        ]

    def close(self) -> None:
        """Close every socket the host holds."""
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()

    async def getaddrinfo(
        self,
        host: str | bytes | None,
        port: str | bytes | int | None,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[AddrInfo]:
        """A stand-in for ``loop.getaddrinfo`` that knows only
        :data:`DEMO_HOST`, which has IPv4 addresses only."""
        if host != DEMO_HOST:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        answer = [info for info in self.addrinfos if family in (0, info[0])]
        if not answer:
            code = getattr(socket, "EAI_NODATA", socket.EAI_NONAME)
            raise socket.gaierror(code, "No address associated with hostname")
        return answer


def _listener(host: str, port: int, backlog: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def _connects_within(address: tuple[str, int], seconds: float) -> socket.socket | None:
    """Start a connection to *address*; return the socket if the handshake
    completes within *seconds*, else close it and return ``None``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        code = sock.connect_ex(address)
        if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            raise OSError(code, f"connect to {address} failed: {errno.errorcode[code]}")
        _, writable, _ = select.select([], [sock], [], seconds)
        if not writable:
            sock.close()
            return None
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, f"connect to {address} failed: {errno.errorcode[code]}")
    except BaseException:
        sock.close()
        raise
    return sock


def _blackhole(listener: socket.socket, host: DemoHost) -> None:
    """Fill *listener*'s accept queue until a connection attempt hangs."""
    address = listener.getsockname()
    for _ in range(4):
        filler = _connects_within(address, 0.1)
        if filler is None:
            return  # the probe hung: SYNs are being dropped
        host.sockets.append(filler)
    raise RuntimeError(
        f"could not blackhole {format_address(address)}: this kernel completes"
        " connections to a listener whose accept queue is full"
    )


@contextlib.contextmanager
def demo_host() -> Iterator[DemoHost]:
    """Stand up the demo's host on loopback, and tear it down afterwards."""
    try:
        pair = _bind_pair("127.0.0.2", "127.0.0.3", same_port=True)
    except OSError as exc:
        if exc.errno != errno.EADDRNOTAVAIL:
            raise
        # Only 127.0.0.1 exists here (macOS): two ports on it instead.
        pair = _bind_pair("127.0.0.1", "127.0.0.1", same_port=False)
    blackholed, working = pair
    host = DemoHost(
        blackholed.getsockname(), working.getsockname(), [blackholed, working]
    )
    try:
        _blackhole(blackholed, host)
        yield host
    finally:
        host.close()


def _bind_pair(
    blackholed_ip: str, working_ip: str, *, same_port: bool
) -> tuple[socket.socket, socket.socket]:
    for _ in range(20):
        working = _listener(working_ip, 0, 16)
        port = working.getsockname()[1] if same_port else 0
        try:
            blackholed = _listener(blackholed_ip, port, 0)
        except OSError as exc:
            working.close()
            if exc.errno == errno.EADDRINUSE:
                continue  # someone else has that port on the other address
            raise
        return blackholed, working
    raise OSError(errno.EADDRINUSE, "no port free on both demo addresses")


# -- the two strategies ----------------------------------------------------------


async def sequential_connect(
    host: DemoHost, port: int, timeout: float
) -> socket.socket:
    """What ``loop.create_connection`` does without ``happy_eyeballs_delay``,
    except that each attempt is cut off after *timeout* seconds: one
    ``getaddrinfo(AF_UNSPEC)``, then the addresses one at a time, in order."""
    loop = asyncio.get_running_loop()
    emit("resolution_started", host=DEMO_HOST, family=socket.AF_UNSPEC)
    infos = await host.getaddrinfo(DEMO_HOST, port, type=socket.SOCK_STREAM)
    emit(
        "resolution_answered",
        host=DEMO_HOST,
        family=socket.AF_UNSPEC,
        addresses=tuple(info[4] for info in infos),
    )
    errors: list[OSError] = []
    for index, (family, kind, proto, _, address) in enumerate(infos):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            emit("attempt_started", index=index, address=address)
            try:
                async with asyncio.timeout(timeout):
                    await loop.sock_connect(sock, address)
            except TimeoutError:
                cut_off = TimeoutError(
                    f"no answer within the demo's {timeout:g} s cut-off"
                )
                emit("attempt_failed", index=index, address=address, error=cut_off)
                errors.append(cut_off)
                sock.close()
                continue
            except OSError as exc:
                emit("attempt_failed", index=index, address=address, error=exc)
                errors.append(exc)
                sock.close()
                continue
        except BaseException:
            sock.close()
            raise
        emit("attempt_succeeded", index=index, address=address)
        return sock
    error = OSError(f"all attempts failed: {'; '.join(map(format_error, errors))}")
    emit("connection_failed", error=error)
    raise error


def _kernel_connect_timeout() -> float | None:
    """How long Linux waits for a SYN to be answered before giving up:
    retransmissions after 1, 2, 4, ... s, ``tcp_syn_retries`` of them."""
    try:
        with open("/proc/sys/net/ipv4/tcp_syn_retries") as file:
            retries = int(file.read())
    except (OSError, ValueError):
        return None
    return float(2 ** (retries + 1) - 1)


def _say(out: TextIO, text: str, indent: str = "") -> None:
    print(
        textwrap.fill(text, width=79, initial_indent=indent, subsequent_indent=indent),
        file=out,
    )


async def run_demo(args: argparse.Namespace, out: TextIO) -> int:
    """Run the demo, printing to *out*.

    Args:
        args: Parsed ``demo`` options (see :func:`build_demo_parser`).
        out: Where the explanation and the timelines go.

    Returns:
        0 when both strategies connected through the working address, else 1.
    """

    loop = asyncio.get_running_loop()
    stack = contextlib.ExitStack()
    try:
        host = stack.enter_context(demo_host())
    except (OSError, RuntimeError) as exc:
        print(f"{PROG} demo: could not set up the loopback host: {exc}", file=out)
        return 1
    with stack:
        port = host.working[1]
        print(
            "async_stagger demo: connecting to a host whose first address is"
            " blackholed",
            file=out,
        )
        print("(no network needed: everything happens on loopback)\n", file=out)
        print(f"The made-up host {DEMO_HOST} resolves to:", file=out)
        print(
            f"  1. {format_address(host.blackholed):<18} blackholed: a listen(0)"
            " socket whose accept queue is full,",
            file=out,
        )
        print(f"     {'':18} so the kernel silently drops SYNs", file=out)
        print(f"  2. {format_address(host.working):<18} working: a listener", file=out)
        print(file=out)

        kernel = _kernel_connect_timeout()
        if kernel is not None:
            kernel_text = (
                "it moves on only when the kernel gives up on the dropped SYN,"
                f" after about {kernel:g} s on this machine"
                " (net.ipv4.tcp_syn_retries)"
            )
        else:
            kernel_text = (
                "it moves on only when the kernel gives up on the dropped SYN,"
                " which takes minutes"
            )
        _say(
            out,
            "[1/2] asyncio's sequential strategy, as loop.create_connection()"
            " runs it without happy_eyeballs_delay: one getaddrinfo() call,"
            " then one address at a time, in order, each with"
            " loop.sock_connect(). asyncio sets no time limit of its own:"
            f" {kernel_text}. Here each attempt is cut off after"
            f" {args.timeout:g} s instead.",
        )
        sequential_timeline = Timeline(out, indent="  ")
        sequential_timeline.start(loop.time())
        with tracing(sequential_timeline):
            try:
                sock = await sequential_connect(host, port, args.timeout)
            except OSError as exc:
                print(f"  failed: {format_error(exc)}", file=out)
                return 1
        sequential_time = sequential_timeline.elapsed(loop.time())
        sequential_peer = sock.getpeername()
        sock.close()
        sequential_timeline.write_line(
            sequential_time, f"=> connected to {format_address(sequential_peer)}"
        )
        print(file=out)

        _say(
            out,
            f"[2/2] async_stagger.open_connection({DEMO_HOST!r}, {port},"
            f" delay={args.delay:g}): Happy Eyeballs (RFC 8305), with the"
            " same canned DNS answers fed to its concurrent resolver through"
            " getaddrinfo_async.",
        )
        stagger_timeline = Timeline(out, indent="  ")
        resolver = functools.partial(
            concurrent_resolver, getaddrinfo_async=host.getaddrinfo
        )
        stagger_timeline.start(loop.time())
        try:
            async with asyncio.timeout(args.delay + 10):
                _, writer = await open_connection(
                    DEMO_HOST,
                    port,
                    delay=args.delay,
                    resolver=resolver,
                    trace=stagger_timeline,
                )
        except OSError as exc:
            print(f"  failed: {format_error(exc)}", file=out)
            return 1
        stagger_time = stagger_timeline.elapsed(loop.time())
        stagger_peer = writer.get_extra_info("peername")
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        stagger_timeline.write_line(
            stagger_time, f"=> connected to {format_address(stagger_peer)}"
        )
        print(file=out)

    speedup = sequential_time / stagger_time if stagger_time > 0 else float("inf")
    summary = (
        f"Happy Eyeballs connected in {stagger_time * 1000:.1f} ms instead of"
        f" {sequential_time * 1000:.1f} ms: {speedup:.1f}x faster than the"
        f" sequential strategy cut off at {args.timeout:g} s"
    )
    if kernel is not None and stagger_time > 0:
        summary += (
            f", and about {kernel / stagger_time:.0f}x faster than asyncio"
            f" without a cut-off (~{kernel:g} s)"
        )
    _say(out, summary + ".")
    working = tuple(host.working)
    if tuple(sequential_peer) != working or tuple(stagger_peer[:2]) != working:
        print("unexpected: a connection did not reach the working address", file=out)
        return 1
    return 0
