"""Loopback endpoints that misbehave on demand: the unprivileged tier.

Every endpoint lives on a loopback address and is backed by the kernel and by
plain threads, never by the event loop under test, so it behaves the same
under every loop flavour (uvloop included) and can be created from
synchronous fixtures. The kinds, and the kernel behaviour each relies on:

``working``
    A listener that accepts and (by default) echoes bytes back until EOF,
    optionally behind TLS, optionally taking ``accept_delay`` seconds before it
    serves a connection it has accepted, optionally sending a greeting first
    (and then serving, closing, or holding the connection without a word).

``refusing``
    An address and port that is *bound* but not listening. A SYN to it is
    answered with a RST, so ``connect`` fails at once with ECONNREFUSED; the
    bound socket keeps anything else from taking the port while the lab runs.

``blackholed``
    A listener with ``listen(0)`` whose accept queue is filled by one
    connection the lab makes itself and never accepts. Linux drops further
    SYNs silently while the accept queue is full (no RST), so the client's
    ``connect`` hangs, retransmitting its SYN, exactly as if a firewall
    swallowed the packets. Each listening socket has its own queue, so several
    blackholed endpoints may share a port on different 127.x addresses.

``slow``
    A blackholed listener that, after ``delay`` seconds, widens its backlog,
    drains the queue and becomes a working echo server. The client's dropped
    SYN is only retransmitted on the kernel's schedule (1 s, 3 s, 7 s ... after
    the first try on Linux), so the handshake completes at the first
    retransmission after ``delay``: never earlier than ``delay``, usually at
    about 1 s for a short delay.

``hung_tls``
    A listener that accepts TCP and reads whatever arrives, but never answers:
    a TLS ClientHello goes unanswered, so a TLS handshake times out.

``resetting``
    A listener that accepts TCP and, as soon as the client sends its first
    bytes, closes the connection with a zero linger time, so the kernel sends
    RST instead of FIN: what a middlebox that resets a TLS ClientHello does.
    The connect always succeeds (nothing is reset before the client speaks,
    so no client sees the reset in its own connect check); the client's next
    read or write fails with ECONNRESET.

On IPv4 the whole of 127.0.0.0/8 is loopback, so the lab hands out distinct
addresses (:meth:`Lab.ipv4_address`) and several endpoints can share one port,
the way the addresses of one host name do. On IPv6 only ``::1`` exists without
privileges, so IPv6 endpoints need a port each.
"""

from __future__ import annotations

import errno
import itertools
import math
import os
import select
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .resolver import FakeGetaddrinfo

__all__ = ["Endpoint", "Lab", "ipv6_loopback_available"]

# Distinct IPv4 loopback addresses handed out by every lab in this process:
# 127.77.x.y, away from 127.0.0.1 and from addresses tests pick by hand.
_ipv4_counter = itertools.count(1)

# How long a freshly blackholed endpoint is probed to prove that a connect to
# it really hangs. Loopback answers a SYN in microseconds, so a short probe is
# conclusive.
BLACKHOLE_PROBE_SECONDS = 0.02


@dataclass(frozen=True)
class Endpoint:
    """One TCP endpoint of the lab.

    Attributes:
        family: ``AF_INET`` or ``AF_INET6``.
        host: the numeric address, e.g. ``"127.77.0.3"`` or ``"::1"``.
        port: the TCP port.
    """

    family: socket.AddressFamily
    host: str
    port: int

    @property
    def sockaddr(self) -> tuple[Any, ...]:
        """The address to pass to ``connect``: ``(host, port)`` for IPv4,
        ``(host, port, 0, 0)`` for IPv6."""
        if self.family == socket.AF_INET6:
            return (self.host, self.port, 0, 0)
        return (self.host, self.port)

    @property
    def addrinfo(
        self,
    ) -> tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]:
        """The ``getaddrinfo`` 5-tuple naming this endpoint."""
        return (
            self.family,
            socket.SOCK_STREAM,
            socket.IPPROTO_TCP,
            "",
            self.sockaddr,
        )


def ipv6_loopback_available() -> bool:
    """Whether this machine can bind a TCP socket to ``::1``."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def _family_of(host: str) -> socket.AddressFamily:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return family
    raise ValueError(f"lab endpoints need a numeric IP address, got {host!r}")


def _sockaddr(family: socket.AddressFamily, host: str, port: int) -> tuple[Any, ...]:
    return (host, port, 0, 0) if family == socket.AF_INET6 else (host, port)


def _skip(reason: str) -> None:
    """Skip the running test; outside pytest (a benchmark), fail plainly."""
    try:
        import pytest
    except ImportError:  # pragma: no cover - the lab outside the test suite
        raise RuntimeError(reason) from None
    pytest.skip(reason)


class _Stopped(RuntimeError):
    """The lab is closed or closing: a server thread that sees this leaves
    quietly; a caller of a public method gets it as a RuntimeError."""

    def __init__(self) -> None:
        super().__init__("the lab is closed")


class Lab:
    """A set of misbehaving loopback endpoints, all closed by :meth:`close`.

    Every method is synchronous and safe to call from any thread or fixture.
    Servers run on daemon threads that wait on their sockets and on one shared
    stop pipe; :meth:`close` writes to the pipe, joins every thread and closes
    every socket, so nothing the lab opened survives it.
    """

    def __init__(self) -> None:
        self._stop_r, self._stop_w = os.pipe()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._ports: set[int] = set()
        self._closed = False
        self._ca: Any = None
        self.errors: list[BaseException] = []
        """Unexpected exceptions raised in server threads (tests may assert
        it stays empty)."""

    # -- bookkeeping ------------------------------------------------------

    # Every socket of the lab is opened (or accepted) and registered in one
    # step, and unregistered and closed in one step, under the lock
    # other_sockets() holds: its census never sees a lab socket that is open
    # but not (or no longer) registered.

    def _open(self, family: socket.AddressFamily) -> socket.socket:
        with self._lock:
            if self._closed:
                raise _Stopped
            sock = socket.socket(family, socket.SOCK_STREAM)
            self._sockets.append(sock)
        return sock

    def _accept(self, listener: socket.socket) -> socket.socket:
        with self._lock:
            if self._closed:
                raise _Stopped
            conn, _ = listener.accept()
            self._sockets.append(conn)
        return conn

    def _forget(self, sock: socket.socket) -> None:
        with self._lock:
            if sock in self._sockets:
                self._sockets.remove(sock)
            sock.close()

    def other_sockets(self) -> dict[int, str]:
        """The sockets this process holds that are not the lab's: every
        descriptor of a socket except the lab's listeners, fillers and
        server-side connections.

        Exact at every moment, even while the server threads accept and
        close connections: they cannot open or close a socket while the
        census is taken.

        Returns:
            Descriptor -> its ``/proc/self/fd`` link (``socket:[inode]``).
        """
        found = {}
        with self._lock:
            labs = {sock.fileno() for sock in self._sockets}
            for fd in map(int, os.listdir("/proc/self/fd")):
                if fd in labs:
                    continue
                try:
                    link = os.readlink(f"/proc/self/fd/{fd}")
                except OSError:  # the listing's own descriptor, closed since
                    continue
                if link.startswith("socket:["):
                    found[fd] = link
        return found

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        def run() -> None:
            try:
                target()
            except _Stopped:
                pass
            except BaseException as exc:  # pragma: no cover - reported to tests
                self.errors.append(exc)

        thread = threading.Thread(target=run, name=f"lab-{name}", daemon=True)
        with self._lock:
            if self._closed:
                raise _Stopped
            self._threads.append(thread)
        thread.start()

    def _wait(
        self,
        sock: socket.socket | None,
        *,
        write: bool = False,
        timeout: float | None = None,
    ) -> bool:
        """Wait until *sock* is ready (True), *timeout* passes (False) or the
        lab stops (raises :class:`_Stopped`)."""
        # poll, not select: a benchmark may push descriptors past FD_SETSIZE.
        poller = select.poll()
        poller.register(self._stop_r, select.POLLIN)
        if sock is not None:
            poller.register(sock, select.POLLOUT if write else select.POLLIN)
        events = poller.poll(None if timeout is None else math.ceil(timeout * 1000))
        if any(fd == self._stop_r for fd, _ in events):
            raise _Stopped
        return bool(events)

    def _wait_for_hang_up(self, sock: socket.socket) -> None:
        """Wait, reading nothing, until the peer of *sock* closes or resets
        its end (or the lab stops)."""
        poller = select.poll()
        poller.register(self._stop_r, select.POLLIN)
        # Not POLLIN: arriving data must not wake us, only the hang-up.
        poller.register(sock, select.POLLRDHUP)
        events = poller.poll()
        if any(fd == self._stop_r for fd, _ in events):
            raise _Stopped

    def close(self) -> None:
        """Stop every server, join its thread and close every socket."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = list(self._threads)
        os.write(self._stop_w, b"x")
        for thread in threads:
            thread.join(timeout=10)
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets = []
        os.close(self._stop_r)
        os.close(self._stop_w)
        alive = [t.name for t in threads if t.is_alive()]
        if alive:  # pragma: no cover - would be a lab bug
            raise RuntimeError(f"lab threads did not stop: {alive}")

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- addresses and ports ----------------------------------------------

    def ipv4_address(self) -> str:
        """A loopback IPv4 address no other lab endpoint in this process got
        from this method (``127.77.x.y``)."""
        n = next(_ipv4_counter)
        return f"127.77.{(n // 250) % 250}.{n % 250 + 1}"

    def free_port(self) -> int:
        """A TCP port that is free on 127.0.0.1 and on ::1 (when ::1 exists)
        right now, and not handed out by this lab before, for several
        endpoints to share.

        Raises:
            RuntimeError: no such port was found after many tries.
        """
        check_ipv6 = ipv6_loopback_available()
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.bind(("127.0.0.1", 0))
                port: int = probe.getsockname()[1]
                if port in self._ports:
                    continue
                if check_ipv6:
                    try:
                        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as v6:
                            v6.bind(("::1", port))
                    except OSError:
                        continue
            self._ports.add(port)
            return port
        raise RuntimeError("no TCP port free on both 127.0.0.1 and ::1")

    def _bind(self, host: str, port: int | None, *, reuse: bool) -> socket.socket:
        family = _family_of(host)
        if port is not None and not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {port!r}")
        sock = self._open(family)
        try:
            if reuse:
                # Lets a listener reuse a port whose earlier connections sit in
                # TIME_WAIT; two listeners still cannot share an address.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(_sockaddr(family, host, port or 0))
        except BaseException:
            self._forget(sock)
            raise
        return sock

    @staticmethod
    def _endpoint(sock: socket.socket) -> Endpoint:
        name = sock.getsockname()
        return Endpoint(socket.AddressFamily(sock.family), name[0], name[1])

    # -- endpoint kinds ---------------------------------------------------

    def working(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        echo: bool = True,
        tls: bool = False,
        accept_delay: float = 0.0,
        tls_names: Sequence[str] = (),
        greeting: bytes = b"",
        after_greeting: Literal["serve", "close", "hold"] = "serve",
    ) -> Endpoint:
        """A listener that accepts connections.

        Args:
            host: numeric loopback address to listen on.
            port: port to listen on; ``None`` picks a free one.
            echo: echo received bytes back until EOF; otherwise read and
                discard them.
            tls: speak TLS with a certificate from the lab's test CA (see
                :meth:`client_ssl_context`) valid for ``localhost``,
                ``*.lab.test``, 127.0.0.1, ::1, *host* and *tls_names*.
            accept_delay: seconds to wait before serving each accepted
                connection (the handshake itself completes at once).
            tls_names: more host names the certificate is valid for.
            greeting: bytes to send as soon as a connection is set up (after
                the TLS handshake, with *tls*), as servers that speak first
                do.
            after_greeting: then ``"serve"`` (echo or discard, see *echo*),
                ``"close"`` the connection, or ``"hold"`` it open reading
                nothing (not even a TLS close_notify) until the client
                closes or resets its end.

        Returns:
            The endpoint.

        Raises:
            ValueError: *host* is not a numeric address, or a bad port or delay.
            OSError: the address cannot be bound (e.g. port taken).
        """
        if accept_delay < 0:
            raise ValueError(f"accept_delay must be >= 0, got {accept_delay!r}")
        if after_greeting not in ("serve", "close", "hold"):
            raise ValueError(f"after_greeting: unknown {after_greeting!r}")
        server_context = self._server_ssl_context(host, tls_names) if tls else None

        def talk(conn: socket.socket) -> None:
            if greeting:
                self._send_all(conn, greeting)
            if after_greeting == "serve":
                self._serve(conn, echo=echo)
            elif after_greeting == "hold":
                self._wait_for_hang_up(conn)

        def handle(conn: socket.socket) -> None:
            if accept_delay:
                self._wait(None, timeout=accept_delay)
            if server_context is None:
                talk(conn)
                return
            tls = self._tls_accept(conn, server_context)
            try:
                talk(tls)
            finally:
                self._forget(tls)

        return self._serving(host, port, handle, "working")

    def refusing(self, host: str = "127.0.0.1", port: int | None = None) -> Endpoint:
        """An address and port where nothing listens: connect fails at once
        with ECONNREFUSED.

        Args:
            host: numeric loopback address.
            port: port; ``None`` picks a free one.

        Returns:
            The endpoint.

        Raises:
            ValueError: *host* is not a numeric address, or a bad port.
            OSError: the address and port are in use.
        """
        # Bound but never listening: the kernel answers SYNs with RST, and
        # the binding reserves the port for as long as the lab lives.
        sock = self._bind(host, port, reuse=False)
        return self._endpoint(sock)

    def blackholed(self, host: str = "127.0.0.1", port: int | None = None) -> Endpoint:
        """A listener whose full accept queue makes the kernel drop SYNs: a
        connect to it hangs until the client gives up.

        Skips the calling test if a probe connect does not hang (a kernel
        that does not drop SYNs on a full accept queue).

        Args:
            host: numeric loopback address.
            port: port; ``None`` picks a free one.

        Returns:
            The endpoint.

        Raises:
            ValueError: *host* is not a numeric address, or a bad port.
            OSError: the address and port are in use.
        """
        sock, _filler = self._blackhole(host, port)
        return self._endpoint(sock)

    def slow(
        self, host: str = "127.0.0.1", port: int | None = None, *, delay: float
    ) -> Endpoint:
        """A listener that completes TCP handshakes only after *delay*
        seconds, then works as an echo server.

        Until *delay* passes it is blackholed; afterwards a client's SYN is
        answered at its next retransmission (Linux retransmits 1 s, 3 s, 7 s
        ... after the first SYN), so the handshake completes at the first
        retransmission time after *delay*.

        Args:
            host: numeric loopback address.
            port: port; ``None`` picks a free one.
            delay: seconds during which SYNs are dropped.

        Returns:
            The endpoint.

        Raises:
            ValueError: *host* is not a numeric address, or a bad port or delay.
            OSError: the address and port are in use.
        """
        if delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay!r}")
        sock, filler = self._blackhole(host, port)
        endpoint = self._endpoint(sock)

        def drain_then_serve() -> None:
            self._wait(None, timeout=delay)
            # Room for everyone who retransmits from now on; then take the
            # filler connection out of the queue and serve like `working`.
            sock.listen(128)
            self._forget(filler)
            self._accept_loop(sock, lambda conn: self._serve(conn, echo=True))

        self._spawn(drain_then_serve, f"slow-{endpoint}")
        return endpoint

    def hung_tls(self, host: str = "127.0.0.1", port: int | None = None) -> Endpoint:
        """A listener that accepts TCP but never answers anything, so a TLS
        handshake over it never completes.

        Args:
            host: numeric loopback address.
            port: port; ``None`` picks a free one.

        Returns:
            The endpoint.

        Raises:
            ValueError: *host* is not a numeric address, or a bad port.
            OSError: the address and port are in use.
        """
        return self._serving(
            host, port, lambda c: self._serve(c, echo=False), "hung-tls"
        )

    def resetting(self, host: str = "127.0.0.1", port: int | None = None) -> Endpoint:
        """A listener that accepts TCP and resets each connection (a close
        with a zero linger time sends RST) as soon as its client's first
        bytes arrive: a TLS handshake fails on the reset that answers its
        ClientHello.

        The reset waits for the client on purpose: a server that reset at
        once would race the client's own connect, which then fails with
        ECONNRESET or succeeds depending on which side the scheduler runs
        first (asyncio's non-blocking connect reads ``SO_ERROR`` only when
        the loop gets to it).

        Args:
            host: numeric loopback address.
            port: port; ``None`` picks a free one.

        Returns:
            The endpoint.

        Raises:
            ValueError: *host* is not a numeric address, or a bad port.
            OSError: the address and port are in use.
        """

        def reset_when_spoken_to(conn: socket.socket) -> None:
            self._wait(conn)
            # Closed by the accept loop once this returns: with RST.
            conn.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )

        return self._serving(host, port, reset_when_spoken_to, "resetting")

    def getaddrinfo(
        self,
        names: dict[str, list[Endpoint]],
        *,
        delays: dict[socket.AddressFamily, float | None] | None = None,
        errors: dict[socket.AddressFamily, BaseException] | None = None,
    ) -> FakeGetaddrinfo:
        """A fake ``getaddrinfo_async`` answering *names* from lab endpoints.

        See :class:`~lab.resolver.FakeGetaddrinfo`.

        Args:
            names: host name -> endpoints, in the order getaddrinfo returns.
            delays: seconds to wait before answering, per family asked for
                (``None``: never answer).
            errors: exception to raise, per family, instead of answering.

        Returns:
            An awaitable callable with the signature of ``loop.getaddrinfo``.
        """
        return FakeGetaddrinfo(names, delays=delays, errors=errors)

    # -- TLS ----------------------------------------------------------------

    def _test_ca(self) -> Any:
        if self._ca is None:
            import trustme

            self._ca = trustme.CA()
        return self._ca

    def _server_ssl_context(self, host: str, names: Sequence[str]) -> ssl.SSLContext:
        _family_of(host)
        identities = ["localhost", "*.lab.test", "127.0.0.1", "::1"]
        for name in [host, *names]:
            if name not in identities:
                identities.append(name)
        cert = self._test_ca().issue_cert(*identities)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(context)
        return context

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client ``SSLContext`` that trusts the lab's test CA, and nothing
        else, and verifies host names as usual.

        Returns:
            A new client context.
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self._test_ca().configure_trust(context)
        return context

    # -- server internals ---------------------------------------------------

    def _blackhole(
        self, host: str, port: int | None
    ) -> tuple[socket.socket, socket.socket]:
        sock = self._bind(host, port, reuse=True)
        # listen(0): the accept queue holds one connection; once it does,
        # the kernel drops every further SYN without answering.
        sock.listen(0)
        family = socket.AddressFamily(sock.family)
        address = sock.getsockname()
        filler = self._open(family)
        filler.settimeout(5)
        filler.connect(address)
        if self._connects_within(family, address, BLACKHOLE_PROBE_SECONDS):
            reason = (
                f"this kernel completed a connect to a listener with a full "
                f"accept queue ({address[0]}): SYNs are not dropped, so "
                f"blackholed endpoints cannot be made without privileges"
            )
            _skip(reason)
        return sock, filler

    @staticmethod
    def _connects_within(
        family: socket.AddressFamily, address: tuple[Any, ...], timeout: float
    ) -> bool:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setblocking(False)
            code = probe.connect_ex(address)
            if code not in (errno.EINPROGRESS, 0):
                return True  # refused or failed: not a hang either
            if code == 0:
                return True
            poller = select.poll()
            poller.register(probe, select.POLLOUT)
            return bool(poller.poll(math.ceil(timeout * 1000)))

    def _serving(
        self,
        host: str,
        port: int | None,
        handle: Callable[[socket.socket], None],
        kind: str,
    ) -> Endpoint:
        """A listener on *host* and *port* whose every accepted connection is
        given to *handle* on a thread of its own, and closed when it returns."""
        sock = self._bind(host, port, reuse=True)
        sock.listen(128)
        endpoint = self._endpoint(sock)
        self._spawn(lambda: self._accept_loop(sock, handle), f"{kind}-{endpoint}")
        return endpoint

    def _accept_loop(
        self, sock: socket.socket, handle: Callable[[socket.socket], None]
    ) -> None:
        sock.setblocking(False)
        while True:
            self._wait(sock)
            try:
                conn = self._accept(sock)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                # The lab closed the listener under us (only at shutdown).
                raise _Stopped from None
            conn.setblocking(False)
            # Answer at once, like a real server's small replies would.
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def run(conn: socket.socket = conn) -> None:
                try:
                    handle(conn)
                finally:
                    self._forget(conn)

            self._spawn(run, f"conn-{conn.fileno()}")

    def _tls_accept(
        self, conn: socket.socket, context: ssl.SSLContext
    ) -> socket.socket:
        with self._lock:
            if self._closed:
                raise _Stopped
            tls = context.wrap_socket(
                conn, server_side=True, do_handshake_on_connect=False
            )
            # wrap_socket took over the descriptor: track the wrapper instead.
            self._sockets.remove(conn)
            self._sockets.append(tls)
        while True:
            try:
                tls.do_handshake()
                return tls
            except ssl.SSLWantReadError:
                self._wait(tls)
            except ssl.SSLWantWriteError:
                self._wait(tls, write=True)
            except (ssl.SSLError, OSError):
                # A client that gave up or distrusts the certificate.
                self._forget(tls)
                raise _Stopped from None
            except _Stopped:
                self._forget(tls)
                raise

    def _serve(self, conn: socket.socket, *, echo: bool) -> None:
        """Echo (or swallow) bytes on non-blocking *conn* until EOF."""
        while True:
            try:
                data = conn.recv(65536)
            except (ssl.SSLWantReadError, BlockingIOError, InterruptedError):
                self._wait(conn)
                continue
            except ssl.SSLWantWriteError:
                self._wait(conn, write=True)
                continue
            except (ssl.SSLError, OSError):
                return  # reset by the client
            if not data:
                return
            if echo:
                self._send_all(conn, data)

    def _send_all(self, conn: socket.socket, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                sent = conn.send(view)
            except (ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
                self._wait(conn, write=True)
                continue
            except ssl.SSLWantReadError:
                self._wait(conn)
                continue
            except (ssl.SSLError, OSError):
                return
            view = view[sent:]
