"""A small HTTP/1.1 server on loopback for the client integration tests.

Thread-based, like the lab's endpoints, so it serves the same under every
loop flavour. It keeps connections alive (HTTP/1.1), counts the connections
it accepted, optionally speaks TLS, and closes a connection left idle for
``idle_timeout`` seconds without a word, as real servers do.

``GET /anything`` answers ``hello <path>``; ``?wait=S`` waits S seconds
first.
"""

from __future__ import annotations

import http.server
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class HTTPServer:
    host: str
    port: int
    connections: list[Any] = field(default_factory=list)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_state: HTTPServer
    tls: ssl.SSLContext | None = None

    def setup(self) -> None:
        if self.tls is not None:
            self.request = self.tls.wrap_socket(self.request, server_side=True)
        self.server_state.connections.append(self.client_address)
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self.tls is not None:
                self.request.close()

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        wait = urllib.parse.parse_qs(url.query).get("wait")
        if wait:
            time.sleep(float(wait[0]))
        body = f"hello {url.path}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients leaving early: lost races, idle timeouts


@contextmanager
def http_server(
    host: str,
    port: int = 0,
    *,
    tls: ssl.SSLContext | None = None,
    idle_timeout: float = 5.0,
) -> Iterator[HTTPServer]:
    """Serve on *host*:*port* until the block ends."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    state = HTTPServer(host, 0)
    handler = type(
        "Handler",
        (_Handler,),
        {"server_state": state, "tls": tls, "timeout": idle_timeout},
    )
    server_class = type("Server", (_Server,), {"address_family": family})
    server = server_class((host, port), handler)
    state.port = server.server_address[1]
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}
    )
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
