"""Loopback endpoints for the connection tests (until the shared lab lands).

Kernel- and thread-backed, so they work from any loop flavour:

* ``working``: a listener whose connections echo what they receive (or speak
  TLS with a self-signed certificate).
* ``refusing``: an address with a bound socket but no listener: a SYN gets a
  reset at once (ECONNREFUSED).
* ``blackholed``: a listener with a full accept queue: SYNs are dropped, so
  a connection attempt hangs until cancelled.
* ``hung_tls``: a listener that accepts TCP and then never says a word, so a
  TLS handshake waits forever.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import trustme


@dataclass(frozen=True)
class Endpoint:
    family: socket.AddressFamily
    host: str
    port: int

    @property
    def sockaddr(self) -> tuple[Any, ...]:
        if self.family == socket.AF_INET6:
            return (self.host, self.port, 0, 0)
        return (self.host, self.port)

    @property
    def addrinfo(self) -> tuple[Any, ...]:
        return (self.family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", self.sockaddr)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class Net:
    """Creates endpoints and tears all of them down at the end of a test."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._ca: trustme.CA | None = None

    def close(self) -> None:
        self._stack.close()

    def _ca_cert(self) -> trustme.CA:
        if self._ca is None:
            self._ca = trustme.CA()
        return self._ca

    def client_ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self._ca_cert().configure_trust(context)
        return context

    def _listener(self, host: str, port: int = 0, backlog: int = 64) -> socket.socket:
        sock = socket.socket(_family(host), socket.SOCK_STREAM)
        self._stack.callback(sock.close)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        return sock

    def working(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: bool = False,
        cert_names: tuple[str, ...] = ("localhost", "127.0.0.1", "::1"),
    ) -> Endpoint:
        listener = self._listener(host, port)
        server_context = None
        if tls:
            server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._ca_cert().issue_cert(*cert_names).configure_cert(server_context)
        stop = threading.Event()
        threads: list[threading.Thread] = []

        def serve(conn: socket.socket) -> None:
            with contextlib.suppress(OSError), conn:
                conn.settimeout(10)
                stream: Any = conn
                if server_context is not None:
                    stream = server_context.wrap_socket(conn, server_side=True)
                with stream:
                    while data := stream.recv(65536):
                        stream.sendall(data)

        def accept() -> None:
            listener.settimeout(0.05)
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                thread = threading.Thread(target=serve, args=(conn,), daemon=True)
                threads.append(thread)
                thread.start()

        acceptor = threading.Thread(target=accept, daemon=True)
        acceptor.start()

        def shut() -> None:
            stop.set()
            acceptor.join()
            for thread in threads:
                thread.join(5)

        self._stack.callback(shut)
        bound = listener.getsockname()
        return Endpoint(_family(host), host, bound[1])

    def refusing(self, host: str = "127.0.0.2", port: int = 0) -> Endpoint:
        sock = socket.socket(_family(host), socket.SOCK_STREAM)
        self._stack.callback(sock.close)
        sock.bind((host, port))  # bound, never listening: SYN -> RST
        return Endpoint(_family(host), host, sock.getsockname()[1])

    def blackholed(self, host: str = "127.0.0.3", port: int = 0) -> Endpoint:
        listener = self._listener(host, port, backlog=0)
        bound = listener.getsockname()
        # Fill the accept queue; later SYNs are dropped by the kernel.
        for _ in range(3):
            filler = socket.socket(_family(host), socket.SOCK_STREAM)
            self._stack.callback(filler.close)
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(bound)
        return Endpoint(_family(host), host, bound[1])

    def hung_tls(self, host: str = "127.0.0.4", port: int = 0) -> Endpoint:
        """Accepts TCP, reads whatever comes, never answers; closes its side
        when the client closes."""
        listener = self._listener(host, port)
        stop = threading.Event()

        def serve() -> None:
            held: list[socket.socket] = []
            try:
                while not stop.is_set():
                    readable, _, _ = select.select([listener, *held], [], [], 0.05)
                    for sock in readable:
                        if sock is listener:
                            conn, _ = listener.accept()
                            held.append(conn)
                            continue
                        try:
                            data = sock.recv(65536)
                        except OSError:
                            data = b""
                        if not data:
                            held.remove(sock)
                            sock.close()
            except OSError:
                pass
            finally:
                for conn in held:
                    conn.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()

        def shut() -> None:
            stop.set()
            thread.join()

        self._stack.callback(shut)
        return Endpoint(_family(host), host, listener.getsockname()[1])

    def free_port(self, host: str = "127.0.0.1") -> int:
        with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
            return port


@contextlib.contextmanager
def network() -> Iterator[Net]:
    net = Net()
    try:
        yield net
    finally:
        net.close()
