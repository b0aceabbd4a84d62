"""Every Python example in README.rst and docs/*.rst runs, as written.

Each ``.. code-block:: python`` block is extracted and executed on its own (a
fresh namespace per block). A block whose top level uses ``await`` runs inside
``asyncio.run``, the way ``python -m asyncio`` runs it; streams and sockets it
leaves open at top level are closed afterwards, like a REPL exiting.

The examples use made-up but realistic host names. While they run, those
names resolve (through ``socket.getaddrinfo``, which asyncio's default
lookups call) to servers on loopback that the test starts: a small HTTP
server, and the same behind TLS with a certificate from a test CA that
``ssl.create_default_context()`` is made to trust (``SSL_CERT_FILE``). The
connections themselves are real.

==========================  ==============================================
name                        stands in for
==========================  ==============================================
``example.com``             ``::1`` and ``127.0.0.1``; port 80 HTTP, 443 TLS
``mirror1.example.com``     a blackholed IPv4 address (SYNs dropped)
``mirror2.example.com``     ``127.0.0.1``, port 80 HTTP
==========================  ==============================================

A block that cannot run (a signature, a fragment) must say so with the
comment ``.. not-tested: <reason>`` on the line just before its directive;
such blocks are counted and must stay rare.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import re
import socket
import socketserver
import ssl
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from async_stagger._demo import demo_host

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.rst", *sorted((ROOT / "docs").glob("*.rst"))]

#: Languages a code block may declare. Only "python" blocks are executed,
#: so nothing written in Python may hide under another name.
OTHER_LANGUAGES = {"console", "text", "none", "rst", "ini", "toml", "json"}
MAX_NOT_TESTED = 3

_DIRECTIVE = re.compile(r"^(?P<indent>\s*)\.\. (?P<name>[\w-]+)::\s*(?P<arg>\S*)\s*$")
_OPT_OUT = re.compile(r"^\s*\.\. not-tested:\s*(?P<reason>\S.*)$")


@dataclass(frozen=True)
class CodeBlock:
    path: Path
    line: int  # 1-based line of the first line of code
    language: str
    code: str
    not_tested: str | None  # the reason given, for opted-out blocks

    @property
    def name(self) -> str:
        return f"{self.path.name}:{self.line}"


def extract_blocks(path: Path) -> list[CodeBlock]:
    """Every ``code-block``/``code``/``sourcecode`` directive in *path*."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    for number, text in enumerate(lines):
        match = _DIRECTIVE.match(text)
        if not match or match["name"] not in ("code-block", "code", "sourcecode"):
            continue
        indent = len(match["indent"])
        body_start = number + 1
        # Skip the directive's options (":caption: ...") and blank lines.
        while body_start < len(lines) and (
            not lines[body_start].strip()
            or (
                lines[body_start].strip().startswith(":")
                and _indent_of(lines[body_start]) > indent
            )
        ):
            body_start += 1
        end = body_start
        while end < len(lines) and (
            not lines[end].strip() or _indent_of(lines[end]) > indent
        ):
            end += 1
        code = textwrap.dedent("\n".join(lines[body_start:end])).strip("\n") + "\n"
        previous = number - 1
        while previous >= 0 and not lines[previous].strip():
            previous -= 1
        opt_out = _OPT_OUT.match(lines[previous]) if previous >= 0 else None
        blocks.append(
            CodeBlock(
                path=path,
                line=body_start + 1,
                language=match["arg"] or "none",
                code=code,
                not_tested=opt_out["reason"] if opt_out else None,
            )
        )
    return blocks


def _indent_of(text: str) -> int:
    return len(text) - len(text.lstrip())


ALL_BLOCKS = [block for path in DOCUMENTS for block in extract_blocks(path)]
PYTHON_BLOCKS = [block for block in ALL_BLOCKS if block.language == "python"]


# -- the stand-in internet ------------------------------------------------------


class _HTTPHandler(socketserver.StreamRequestHandler):
    """Answers any request with a tiny HTTP/1.0 response, then closes."""

    timeout = 5
    tls_context: ssl.SSLContext | None = None

    def setup(self) -> None:
        if self.tls_context is not None:
            self.request = self.tls_context.wrap_socket(self.request, server_side=True)
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self.tls_context is not None:
                # The TLS socket took over the connection's descriptor; the
                # server only closes the plain socket it handed us.
                self.request.close()

    def handle(self) -> None:
        host = "?"
        while True:
            line = self.rfile.readline(65536)
            if not line.strip():
                break
            if line.lower().startswith(b"host:"):
                host = line.split(b":", 1)[1].strip().decode("ascii", "replace")
        body = f"hello from {host}\n".encode()
        self.wfile.write(
            b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = False
    block_on_close = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that leave early (lost races, rejected certificates)


def _serve(
    family: socket.AddressFamily, host: str, tls: ssl.SSLContext | None
) -> tuple[_Server, threading.Thread]:
    handler = type("Handler", (_HTTPHandler,), {"tls_context": tls})
    server_class = type("Server", (_Server,), {"address_family": family})
    server = server_class((host, 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}
    )
    thread.start()
    return server, thread


@dataclass
class StandInInternet:
    """Host name -> [(family, ip, {advertised port: real port})]."""

    names: dict[str, list[tuple[socket.AddressFamily, str, dict[int, int]]]]

    def getaddrinfo(self, real: Callable[..., Any]) -> Callable[..., Any]:
        def getaddrinfo(
            host: Any,
            port: Any,
            family: int = 0,
            type: int = 0,
            proto: int = 0,
            flags: int = 0,
        ) -> list[Any]:
            name = host.decode() if isinstance(host, bytes) else host
            name = (name or "").lower().rstrip(".")
            if name not in self.names:
                # Literals only: a name outside the table must not reach the
                # system resolver (and its DNS server).
                flags |= socket.AI_NUMERICHOST
                return real(host, port, family, type, proto, flags)  # type: ignore[no-any-return]
            if isinstance(port, bytes):
                port = port.decode()
            if port is None:
                number = 0
            elif isinstance(port, int) or port.isdigit():
                number = int(port)
            else:
                number = socket.getservbyname(port, "tcp")
            answer = []
            for address_family, ip, ports in self.names[name]:
                if family not in (0, address_family):
                    continue
                real_port = ports.get(number, number)
                sockaddr: tuple[Any, ...] = (ip, real_port)
                if address_family == socket.AF_INET6:
                    sockaddr += (0, 0)
                answer.append(
                    (
                        address_family,
                        socket.SOCK_STREAM,
                        socket.IPPROTO_TCP,
                        "",
                        sockaddr,
                    )
                )
            if not answer:
                code = getattr(socket, "EAI_NODATA", socket.EAI_NONAME)
                raise socket.gaierror(code, "No address associated with hostname")
            return answer

        return getaddrinfo


@pytest.fixture
def internet(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[StandInInternet]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cafile = tmp_path / "stand-in-ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("example.com", "*.example.com").configure_cert(server_tls)

    running: list[tuple[_Server, threading.Thread]] = []
    try:
        ports: dict[socket.AddressFamily, dict[int, int]] = {}
        for family, ip in ((socket.AF_INET6, "::1"), (socket.AF_INET, "127.0.0.1")):
            plain = _serve(family, ip, None)
            running.append(plain)
            secure = _serve(family, ip, server_tls)
            running.append(secure)
            ports[family] = {
                80: plain[0].server_address[1],
                443: secure[0].server_address[1],
            }
        with demo_host() as blackhole:
            bh_ip, bh_port = blackhole.blackholed
            internet = StandInInternet(
                {
                    "example.com": [
                        (socket.AF_INET6, "::1", ports[socket.AF_INET6]),
                        (socket.AF_INET, "127.0.0.1", ports[socket.AF_INET]),
                    ],
                    "mirror1.example.com": [(socket.AF_INET, bh_ip, {80: bh_port})],
                    "mirror2.example.com": [
                        (socket.AF_INET, "127.0.0.1", ports[socket.AF_INET])
                    ],
                }
            )
            monkeypatch.setattr(
                socket, "getaddrinfo", internet.getaddrinfo(socket.getaddrinfo)
            )
            monkeypatch.setenv("SSL_CERT_FILE", str(cafile))
            monkeypatch.delenv("SSL_CERT_DIR", raising=False)
            yield internet
    finally:
        for server, thread in running:
            server.shutdown()
            thread.join()
            server.server_close()


# -- running the examples ---------------------------------------------------------


async def _close_leftovers(namespace: dict[str, Any]) -> None:
    for value in list(namespace.values()):
        if isinstance(value, asyncio.StreamWriter):
            value.close()
            with contextlib.suppress(OSError):
                await value.wait_closed()
        elif isinstance(value, socket.socket | asyncio.BaseTransport):
            value.close()


def run_block(block: CodeBlock) -> dict[str, Any]:
    """Execute *block*; tracebacks point at its lines in the document."""
    source = "\n" * (block.line - 1) + block.code
    code = compile(
        source, str(block.path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    )
    namespace: dict[str, Any] = {"__name__": "__main__"}
    if code.co_flags & inspect.CO_COROUTINE:

        async def main() -> None:
            try:
                await eval(code, namespace)
            finally:
                await _close_leftovers(namespace)

        asyncio.run(main())
    else:
        exec(code, namespace)
    return namespace


@pytest.mark.parametrize(
    "block",
    [block for block in PYTHON_BLOCKS if block.not_tested is None],
    ids=lambda block: block.name,
)
def test_python_example_runs(block: CodeBlock, internet: StandInInternet) -> None:
    run_block(block)


# -- the extraction itself ----------------------------------------------------------


def test_examples_were_found_in_readme_and_every_docs_page() -> None:
    documents_with_examples = {block.path.name for block in PYTHON_BLOCKS}
    assert "README.rst" in documents_with_examples
    for page in ("quickstart.rst", "guide.rst", "how-it-works.rst"):
        assert page in documents_with_examples
    assert len(PYTHON_BLOCKS) >= 15


def test_every_code_block_declares_a_known_language() -> None:
    unknown = [
        f"{block.name}: {block.language!r}"
        for block in ALL_BLOCKS
        if block.language != "python" and block.language not in OTHER_LANGUAGES
    ]
    assert unknown == []


def test_no_python_hides_in_doctest_directives() -> None:
    for path in DOCUMENTS:
        text = path.read_text(encoding="utf-8")
        for directive in ("doctest", "testcode", "ipython", "jupyter-execute"):
            assert f".. {directive}::" not in text, f"{path.name} uses {directive}"


def test_untested_blocks_are_rare_and_give_a_reason() -> None:
    skipped = [block for block in PYTHON_BLOCKS if block.not_tested is not None]
    assert len(skipped) <= MAX_NOT_TESTED, [block.name for block in skipped]
    assert all(len(block.not_tested or "") >= 10 for block in skipped)


def test_readme_starts_with_the_demo_and_the_test_command() -> None:
    lines = (ROOT / "README.rst").read_text(encoding="utf-8").splitlines()
    demo = next(i for i, line in enumerate(lines) if "python -m async_stagger" in line)
    tests = next(i for i, line in enumerate(lines) if "python -m pytest" in line)
    assert lines[demo].strip() == (
        "python -m pip install . && python -m async_stagger demo"
    )
    assert lines[tests].strip() == (
        "python -m pip install -e '.[test]' && python -m pytest"
    )
    assert demo < tests < 15


def test_extractor_reads_options_indentation_and_opt_outs(tmp_path: Path) -> None:
    page = tmp_path / "page.rst"
    page.write_text(
        textwrap.dedent(
            """\
            Title
            =====

            .. code-block:: python
               :caption: first

               x = 1
               if x:
                   y = 2

            text

            .. not-tested: shows a signature only

            .. code-block:: python

               def f(a, b): ...

            - item

              .. code-block:: console

                 $ echo hi
            """
        )
    )
    blocks = extract_blocks(page)
    assert [(b.line, b.language, b.code, b.not_tested) for b in blocks] == [
        (7, "python", "x = 1\nif x:\n    y = 2\n", None),
        (17, "python", "def f(a, b): ...\n", "shows a signature only"),
        (23, "console", "$ echo hi\n", None),
    ]


def test_top_level_await_blocks_run_in_an_event_loop(tmp_path: Path) -> None:
    block = CodeBlock(
        tmp_path / "x.rst",
        1,
        "python",
        "import asyncio\nawait asyncio.sleep(0)\nresult = 42\n",
        None,
    )
    assert run_block(block)["result"] == 42


def test_a_failing_example_fails_with_its_document_line(tmp_path: Path) -> None:
    block = CodeBlock(
        tmp_path / "page.rst", 30, "python", "x = 1\nassert x == 2\n", None
    )
    with pytest.raises(AssertionError) as info:
        run_block(block)
    frames = [f for f in info.traceback if str(f.path).endswith("page.rst")]
    assert frames[-1].lineno + 1 == 31
