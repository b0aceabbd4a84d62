"""The command line: ``python -m async_stagger HOST PORT`` and ``... demo``.

Everything here talks to loopback only: listeners the tests open themselves,
ports with nothing listening, and the demo's own blackholed host.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import io
import json
import math
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest

from async_stagger import __version__, _demo, cli
from async_stagger._demo import demo_host
from async_stagger.cli import (
    Timeline,
    build_parser,
    format_address,
    getaddrinfo_in_daemon_thread,
    main,
    split_target,
)
from async_stagger.resolvers import concurrent_resolver
from async_stagger.trace import EventKind, TraceEvent
from lab import Endpoint, FakeGetaddrinfo, Lab, ipv6_loopback_available

SRC = str(Path(__file__).resolve().parent.parent / "src")


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``python -m async_stagger ARGS`` in a child process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "async_stagger", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


@pytest.fixture
def listener() -> Iterator[int]:
    """A port on 127.0.0.1 where the kernel completes handshakes."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as server:
        yield server.getsockname()[1]


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 that answers every SYN with a reset: bound (so
    nobody else takes it meanwhile) but not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def timeline_lines(text: str) -> list[tuple[float, str]]:
    """The ``"   12.3 ms  text"`` lines of a timeline, parsed."""
    found = []
    for line in text.splitlines():
        match = re.match(r"\s*(\d+\.\d) ms  (.*)$", line)
        if match:
            found.append((float(match.group(1)), match.group(2)))
    return found


# -- usage ----------------------------------------------------------------------


def test_help_documents_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    options = [
        option
        for action in build_parser()._actions
        for option in action.option_strings
        if option.startswith("--")
    ]
    for option in [
        "--delay",
        "--family",
        "--tls",
        "--local-addr",
        "--resolution-delay",
        "--interleave",
        "--json",
        "--timeout",
        "--cafile",
        "--insecure",
        "--version",
        *options,
    ]:
        assert option in text
    assert "HOST" in text
    assert "PORT" in text
    assert "python -m async_stagger demo" in text
    assert "exit status: 0 connected, 1 connection failed, 2 bad usage" in text


def test_demo_help_documents_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--help"]) == 0
    text = capsys.readouterr().out
    assert "usage: python -m async_stagger demo" in text
    assert "--delay" in text
    assert "--timeout" in text


def test_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"async_stagger {__version__}"


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        ([], "required: HOST"),
        (["127.0.0.1"], "no port: give PORT"),
        (["[::1"], "'[::1'"),
        (["[::1]x"], "'[::1]x'"),
        (["127.0.0.1:http", "443"], "two ports given"),
        (["127.0.0.1:99999"], "'99999'"),
        (["gopher+x://h/"], "no port for scheme 'gopher+x'"),
        (["https:///path"], "no host in URL"),
        (["", "80"], "host must not be empty"),
        (["127.0.0.1", "0"], "'0'"),
        (["127.0.0.1", "65536"], "'65536'"),
        (["127.0.0.1", "no-such-service-xyz"], "'no-such-service-xyz'"),
        (["127.0.0.1", "80", "--delay", "-1"], "'-1'"),
        (["127.0.0.1", "80", "--delay", "nan"], "'nan'"),
        (["127.0.0.1", "80", "--delay", "soon"], "'soon'"),
        (["127.0.0.1", "80", "--family", "5"], "'5'"),
        (["127.0.0.1", "80", "--interleave", "0"], "'0'"),
        (["127.0.0.1", "80", "--interleave", "1.5"], "'1.5'"),
        (["127.0.0.1", "80", "--resolution-delay", "-0.1"], "'-0.1'"),
        (["127.0.0.1", "80", "--local-addr", "localhost"], "'localhost'"),
        (["127.0.0.1", "80", "--local-addr", "127.0.0.1%eth0"], "'127.0.0.1%eth0'"),
        (["127.0.0.1", "80", "--timeout", "0"], "'0'"),
        (["127.0.0.1", "80", "--no-such-option"], "--no-such-option"),
        (["127.0.0.1", "80", "--cafile", "ca.pem"], "need --tls"),
        (["127.0.0.1", "80", "--insecure"], "need --tls"),
        (["127.0.0.1", "80", "--no-tls-race"], "need --tls"),
        (["demo", "--delay", "-1"], "'-1'"),
        (["demo", "--timeout", "0"], "'0'"),
        (["demo", "extra"], "extra"),
    ],
)
def test_bad_usage_exits_with_status_2_naming_the_bad_value(
    capsys: pytest.CaptureFixture[str], argv: list[str], complaint: str
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert complaint in captured.err
    assert captured.out == ""


def test_port_may_be_a_service_name(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["127.0.0.1", "http"])
    assert args.port == 80


def test_delay_none_means_one_attempt_at_a_time() -> None:
    assert build_parser().parse_args(["h", "80", "--delay", "none"]).delay == math.inf
    assert build_parser().parse_args(["h", "80", "--delay", "0"]).delay == 0
    assert build_parser().parse_args(["h", "80"]).delay == 0.25


def test_a_closed_output_does_not_break_the_connection() -> None:
    out = io.StringIO()
    timeline = Timeline(out)
    out.close()
    timeline(TraceEvent("attempt_started", 0.0, index=0, address=("::1", 80, 0, 0)))
    assert timeline.output_lost
    assert len(timeline.events) == 1


def test_local_addresses_become_socket_addresses_with_any_port() -> None:
    args = build_parser().parse_args(
        ["h", "80", "--local-addr", "127.0.0.5", "--local-addr", "::1"]
    )
    assert args.local_addrs == [("127.0.0.5", 0), ("::1", 0, 0, 0)]


# -- connecting -----------------------------------------------------------------


def test_success_prints_the_timeline_and_exits_0(
    capsys: pytest.CaptureFixture[str], listener: int
) -> None:
    assert main(["127.0.0.1", str(listener)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = timeline_lines(captured.out)
    texts = [text for _, text in lines]
    address = f"127.0.0.1:{listener}"
    assert f"attempt #0 to {address} started" in texts
    assert f"attempt #0 to {address} connected: the winner" in texts
    assert texts[-1].startswith(f"=> connected to {address} from 127.0.0.1:")
    times = [at for at, _ in lines]
    assert times == sorted(times)
    assert captured.out.startswith(f"connecting to 127.0.0.1 port {listener}")


def test_refused_port_exits_1_with_the_error(
    capsys: pytest.CaptureFixture[str], refused_port: int
) -> None:
    assert main(["127.0.0.1", str(refused_port)]) == 1
    captured = capsys.readouterr()
    assert captured.err == (
        f"python -m async_stagger: could not connect to 127.0.0.1 port"
        f" {refused_port} (see above)\n"
    )
    texts = [text for _, text in timeline_lines(captured.out)]
    failed = f"attempt #0 to 127.0.0.1:{refused_port} failed: ConnectionRefusedError"
    assert any(text.startswith(failed) for text in texts)
    assert texts[-1] == "=> not connected"
    # Said once: on the attempt that failed, not again for the connection.
    assert captured.out.count("ConnectionRefusedError") == 1


def test_json_lines_carry_the_event_fields(
    capsys: pytest.CaptureFixture[str], listener: int
) -> None:
    assert main(["127.0.0.1", str(listener), "--json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    kinds = [event["kind"] for event in events]
    assert kinds[-1] == "result"
    assert "attempt_started" in kinds
    assert "attempt_succeeded" in kinds
    started = events[kinds.index("attempt_started")]
    assert started["index"] == 0
    assert started["address"][:2] == ["127.0.0.1", listener]
    won = events[kinds.index("attempt_succeeded")]
    assert won["index"] == 0
    assert won["address"][:2] == ["127.0.0.1", listener]
    result = events[-1]
    assert result["ok"] is True
    assert result["address"] == ["127.0.0.1", listener]
    assert result["local_address"][0] == "127.0.0.1"
    times = [event["time"] for event in events]
    assert times == sorted(times)
    assert all(at >= 0 for at in times)


def test_json_failure_reports_the_error_with_its_errno(
    capsys: pytest.CaptureFixture[str], refused_port: int
) -> None:
    assert main(["127.0.0.1", str(refused_port), "--json"]) == 1
    captured = capsys.readouterr()
    events = [json.loads(line) for line in captured.out.splitlines()]
    failed = [event for event in events if event["kind"] == "attempt_failed"]
    assert failed[0]["error"]["type"] == "ConnectionRefusedError"
    assert failed[0]["error"]["errno"] == errno.ECONNREFUSED
    assert events[-1]["kind"] == "result"
    assert events[-1]["ok"] is False
    assert events[-1]["error"]["errno"] == errno.ECONNREFUSED
    assert "ConnectionRefusedError" in captured.err


def test_family_restricts_the_addresses_used(
    capsys: pytest.CaptureFixture[str], listener: int
) -> None:
    assert main(["127.0.0.1", str(listener), "--family", "4"]) == 0
    assert "connected: the winner" in capsys.readouterr().out
    assert main(["127.0.0.1", str(listener), "--family", "6", "--json"]) == 1
    captured = capsys.readouterr()
    result = json.loads(captured.out.splitlines()[-1])
    assert result["ok"] is False
    assert result["error"]["type"] == "gaierror"
    assert "could not connect to 127.0.0.1" in captured.err


def test_local_address_is_shown_and_used(
    capsys: pytest.CaptureFixture[str], listener: int
) -> None:
    argv = ["127.0.0.1", str(listener), "--local-addr", "127.0.0.5"]
    assert main(argv) == 0
    texts = [text for _, text in timeline_lines(capsys.readouterr().out)]
    assert f"attempt #0 to 127.0.0.1:{listener} started (from 127.0.0.5:0)" in texts
    assert re.match(r"=> connected to .* from 127\.0\.0\.5:\d+$", texts[-1])


def test_timeout_gives_up_on_a_blackholed_address_and_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with demo_host() as host:
        ip, port = host.blackholed
        assert main([ip, str(port), "--timeout", "0.2"]) == 1
    captured = capsys.readouterr()
    assert "(see above)" in captured.err
    assert captured.out.count("timed out after 0.2 s") == 1
    lines = timeline_lines(captured.out)
    assert lines[-1][1] == "=> not connected: timed out after 0.2 s"
    assert 200 <= lines[-1][0] < 2000
    texts = [text for _, text in lines]
    assert f"attempt #0 to {ip}:{port} started" in texts


def test_exit_statuses_of_the_real_command(refused_port: int, listener: int) -> None:
    ok = run_cli("127.0.0.1", str(listener))
    assert ok.returncode == 0, ok.stderr
    assert "connected: the winner" in ok.stdout
    failed = run_cli("127.0.0.1", str(refused_port))
    assert failed.returncode == 1
    assert "ConnectionRefusedError" in failed.stdout
    assert "could not connect to 127.0.0.1" in failed.stderr
    usage = run_cli("127.0.0.1", "99999")
    assert usage.returncode == 2
    assert "usage: python -m async_stagger" in usage.stderr


# -- TLS ------------------------------------------------------------------------


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A TLS listener on 127.0.0.1 with a certificate from a test CA, serving
    handshakes in a thread; yields its port and the CA's PEM file."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    with context.wrap_socket(conn, server_side=True) as tls:
                        tls.recv(1)  # until the client closes
                except OSError:
                    pass  # a client that rejected our certificate

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield server.getsockname()[1], cafile
    finally:
        stop.set()
        thread.join()
        server.close()


def test_tls_handshake_is_shown_per_attempt_before_the_winner(
    capsys: pytest.CaptureFixture[str], tls_server: tuple[int, Path]
) -> None:
    port, cafile = tls_server
    assert main(["127.0.0.1", str(port), "--tls", "--cafile", str(cafile)]) == 0
    texts = [text for _, text in timeline_lines(capsys.readouterr().out)]
    attempt = f"attempt #0 to 127.0.0.1:{port}"
    assert texts.index(f"{attempt}: TLS handshake started") < texts.index(
        f"{attempt}: TLS handshake done"
    )
    assert texts.index(f"{attempt}: TLS handshake done") < texts.index(
        f"{attempt} connected: the winner"
    )
    assert re.match(
        r"=> connected to 127\.0\.0\.1:\d+ from .* with TLSv1\.[23]", texts[-1]
    )


def test_no_tls_race_does_tls_on_the_tcp_winner(
    capsys: pytest.CaptureFixture[str], tls_server: tuple[int, Path]
) -> None:
    port, cafile = tls_server
    argv = ["127.0.0.1", str(port), "--tls", "--cafile", str(cafile), "--no-tls-race"]
    assert main(argv) == 0
    texts = [text for _, text in timeline_lines(capsys.readouterr().out)]
    winner = texts.index(f"attempt #0 to 127.0.0.1:{port} connected: the winner")
    assert winner < texts.index("TLS handshake started")
    assert texts.index("TLS handshake started") < texts.index("TLS handshake done")


def test_untrusted_certificate_fails_with_exit_1(
    capsys: pytest.CaptureFixture[str], tls_server: tuple[int, Path]
) -> None:
    port, _ = tls_server
    assert main(["127.0.0.1", str(port), "--tls"]) == 1
    captured = capsys.readouterr()
    assert captured.out.count("CERTIFICATE_VERIFY_FAILED") == 1
    assert "(see above)" in captured.err
    texts = [text for _, text in timeline_lines(captured.out)]
    attempt = f"attempt #0 to 127.0.0.1:{port}"
    failed = texts.index(f"{attempt}: TLS handshake failed")
    # The error once, on the attempt's own line.
    assert texts[failed + 1].startswith(f"{attempt} failed: SSLCertVerificationError")


def test_an_unreadable_ca_file_is_bad_usage(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "missing.pem"
    assert main(["127.0.0.1", "443", "--tls", "--cafile", str(missing)]) == 2
    captured = capsys.readouterr()
    assert f"--cafile {missing}" in captured.err
    assert "FileNotFoundError" in captured.err
    assert captured.out == ""
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    assert main(["127.0.0.1", "443", "--tls", "--cafile", str(garbage)]) == 2
    assert f"--cafile {garbage}" in capsys.readouterr().err


def test_insecure_skips_certificate_verification(
    capsys: pytest.CaptureFixture[str], tls_server: tuple[int, Path]
) -> None:
    port, _ = tls_server
    assert main(["127.0.0.1", str(port), "--tls", "--insecure", "--json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    tls_events = [e for e in events if e["kind"].startswith("tls")]
    assert [e["kind"] for e in tls_events] == ["tls_started", "tls_succeeded"]
    assert [e["index"] for e in tls_events] == [0, 0]
    assert events[-1]["tls"]["version"] in ("TLSv1.2", "TLSv1.3")


# -- the demo -------------------------------------------------------------------


def test_demo_prints_both_timelines_and_the_speed_up() -> None:
    result = run_cli("demo", "--timeout", "0.5", "--delay", "0.1")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    sequential, _, staggered = out.partition("[2/2]")
    assert "[1/2] asyncio's sequential strategy" in sequential
    assert "cut off after 0.5 s" in sequential
    assert "async_stagger.open_connection(" in staggered
    bh, wk = re.findall(r"^\s+[12]\. (127\.\S+:\d+)", out, re.MULTILINE)
    for part in (sequential, staggered):
        texts = [text for _, text in timeline_lines(part)]
        assert f"attempt #0 to {bh} started" in texts
        assert f"attempt #1 to {wk} connected: the winner" in texts
        assert texts[-1] == f"=> connected to {wk}"
    seq_texts = [text for _, text in timeline_lines(sequential)]
    assert any("failed: TimeoutError" in text for text in seq_texts)
    stag_texts = [text for _, text in timeline_lines(staggered)]
    assert f"attempt #0 to {bh} cancelled" in stag_texts
    match = re.search(
        r"connected in (\d+\.\d) ms instead of\s+(\d+\.\d) ms: (\d+\.\d)x faster", out
    )
    assert match, out
    ours, theirs = float(match.group(1)), float(match.group(2))
    assert 100 <= ours < 500
    assert theirs >= 500


def test_demo_explains_a_loopback_it_cannot_blackhole(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def kernel_that_never_drops(listener: socket.socket, host: Any) -> None:
        raise RuntimeError("this kernel completes connections to a full queue")

    monkeypatch.setattr(_demo, "_blackhole", kernel_that_never_drops)
    assert main(["demo"]) == 1
    out = capsys.readouterr().out
    assert "could not set up the loopback host" in out
    assert "this kernel completes connections to a full queue" in out


# -- the timeline's wording -------------------------------------------------------


def test_every_event_kind_has_its_own_wording() -> None:
    timeline = Timeline(out=open(os.devnull, "w"))  # noqa: SIM115
    try:
        seen = set()
        for kind in get_args(EventKind):
            event = TraceEvent(
                kind,
                1.0,
                host="example.test",
                family=socket.AF_INET6,
                index=3,
                address=("2001:db8::1", 443, 0, 0),
                addresses=(("2001:db8::1", 443, 0, 0),),
                error=ConnectionResetError(104, "Connection reset by peer"),
            )
            text = timeline.describe(event)
            assert text != kind
            seen.add(text)
        assert len(seen) == len(get_args(EventKind))
    finally:
        timeline.out.close()


def test_attempt_events_without_an_address_name_the_started_one() -> None:
    timeline = Timeline(out=open(os.devnull, "w"))  # noqa: SIM115
    try:
        timeline(TraceEvent("attempt_started", 0.0, index=0, address=("::1", 80, 0, 0)))
        text = timeline.describe(TraceEvent("attempt_cancelled", 0.3, index=0))
        data = timeline.event_json(TraceEvent("attempt_cancelled", 0.3, index=0))
    finally:
        timeline.out.close()
    assert text == "attempt #0 to [::1]:80 cancelled"
    assert data == {
        "kind": "attempt_cancelled",
        "time": 0.3,
        "index": 0,
        "address": ["::1", 80, 0, 0],
    }


@pytest.mark.parametrize(
    ("address", "text"),
    [
        (("192.0.2.1", 443), "192.0.2.1:443"),
        (("2001:db8::1", 443, 0, 0), "[2001:db8::1]:443"),
        (("fe80::1", 80, 0, 2), "[fe80::1%2]:80"),
        (("fe80::1%eth0", 80, 0, 2), "[fe80::1%eth0]:80"),
        (None, "?"),
    ],
)
def test_addresses_are_written_as_in_urls(address: Any, text: str) -> None:
    assert format_address(address) == text


# -- lookups in daemon threads -----------------------------------------------------


async def test_daemon_thread_lookups_answer_like_getaddrinfo() -> None:
    expected = socket.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)
    answer = await getaddrinfo_in_daemon_thread(
        "127.0.0.1", 80, type=socket.SOCK_STREAM
    )
    assert answer == expected
    with pytest.raises(socket.gaierror):
        await getaddrinfo_in_daemon_thread(
            "not an address", 80, flags=socket.AI_NUMERICHOST
        )


async def test_an_abandoned_daemon_thread_lookup_reports_nothing() -> None:
    lookup = asyncio.ensure_future(getaddrinfo_in_daemon_thread("127.0.0.1", 80))
    await asyncio.sleep(0)
    lookup.cancel()
    with pytest.raises(asyncio.CancelledError):
        await lookup
    # The thread's answer arrives into a cancelled future: silently dropped
    # (the suite fails the test if the loop reports an error).
    await asyncio.sleep(0.05)


# -- a real resolver with a slow AAAA answer (root: a network namespace) ------------

_TRACE_IN_NAMESPACE = """
import socket, sys
from async_stagger.cli import main
v4, v6 = {v4!r}, {v6!r}
with socket.create_server((v4, 0)) as server4:
    port = server4.getsockname()[1]
    with socket.create_server((v6, port), family=socket.AF_INET6) as server6:
        sys.exit(main(["dual.lab.test", str(port), *{extra!r}]))
"""


def test_tracer_shows_ipv4_winning_while_the_aaaa_answer_is_late(netns: Any) -> None:
    """glibc's getaddrinfo, a DNS server holding back AAAA for 2 s: the
    timeline shows the A answer, the IPv4 attempt winning long before the
    AAAA answer, and no IPv6 address ever tried."""
    v4, v6 = netns.ipv4_addresses[0], netns.ipv6_addresses[0]
    netns.dns(
        {("dual.lab.test", "A"): [v4], ("dual.lab.test", "AAAA"): [v6]},
        delays={"AAAA": 2.0},
        resolver_timeout=5,
    )
    code = _TRACE_IN_NAMESPACE.format(v4=v4, v6=v6, extra=["--json"])
    started_at = time.monotonic()
    result = netns.run_python(code, timeout=30)
    # The command does not linger for the AAAA lookup it no longer needs.
    assert time.monotonic() - started_at < 1.8
    assert result.returncode == 0, result.stdout + result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    answered = [e for e in events if e["kind"] == "resolution_answered"]
    assert [e["family"] for e in answered] == ["AF_INET"]
    assert answered[0]["addresses"][0][0] == v4
    started = [e for e in events if e["kind"] == "attempt_started"]
    assert [e["address"][0] for e in started] == [v4]
    won = [e for e in events if e["kind"] == "attempt_succeeded"]
    assert [e["address"][0] for e in won] == [v4]
    result_line = events[-1]
    assert result_line["ok"] is True
    # Resolution delay (50 ms) plus loopback work: nowhere near the 2 s AAAA.
    assert result_line["time"] < 1.0

    text = netns.run_python(
        _TRACE_IN_NAMESPACE.format(v4=v4, v6=v6, extra=[]), timeout=30
    )
    assert text.returncode == 0, text.stdout + text.stderr
    assert "lookup IPv6 (AAAA) started for dual.lab.test" in text.stdout
    assert f"lookup IPv4 (A) answered: {v4}" in text.stdout
    assert "lookup IPv6 (AAAA) answered" not in text.stdout
    assert f"attempt #0 to {v4}:" in text.stdout


# -- input as people type it -----------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "port", "target"),
    [
        (["example.test", "80"], None, ("example.test", 80)),
        (["example.test:8080"], None, ("example.test", 8080)),
        (["example.test:https"], None, ("example.test", 443)),
        (["2001:db8::1", "443"], None, ("2001:db8::1", 443)),
        (["[2001:db8::1]"], 443, ("2001:db8::1", 443)),
        (["[::1]:8443"], None, ("::1", 8443)),
        (["https://example.test/"], None, ("example.test", 443)),
        (["http://example.test/index.html"], None, ("example.test", 80)),
        (["https://[::1]:8443/x?y"], None, ("::1", 8443)),
        (["ftp://example.test"], None, ("example.test", 21)),
        (["example.test:8080", "8080"], None, ("example.test", 8080)),
    ],
)
def test_host_may_be_written_with_its_port_in_brackets_or_as_a_url(
    typed: list[str], port: int | None, target: tuple[str, int]
) -> None:
    args = build_parser().parse_args(typed)
    given = args.port if port is None else port
    assert split_target(args.host, given) == target


# -- what the timeline explains ---------------------------------------------------


def test_json_starts_with_a_line_stating_the_settings(
    capsys: pytest.CaptureFixture[str], listener: int
) -> None:
    argv = ["127.0.0.1", str(listener), "--json", "--delay", "0.3"]
    assert main([*argv, "--local-addr", "127.0.0.1"]) == 0
    first = json.loads(capsys.readouterr().out.splitlines()[0])
    assert first == {
        "kind": "settings",
        "time": 0.0,
        "version": __version__,
        "host": "127.0.0.1",
        "port": listener,
        "family": "any",
        "delay": 0.3,
        "resolution_delay": 0.05,
        "interleave": 1,
        "tls": False,
        "verify": False,
        "cafile": None,
        "local_addrs": [["127.0.0.1", 0]],
        "timeout": None,
        "repeat": 1,
    }


@pytest.fixture
def dual_stack_name(
    monkeypatch: pytest.MonkeyPatch, lab: Lab
) -> tuple[Endpoint, Endpoint, FakeGetaddrinfo]:
    """``dual.lab.test``: a blackholed IPv6 address and a working IPv4 one,
    answered by the lab's scripted getaddrinfo in place of the system's."""
    if not ipv6_loopback_available():
        pytest.skip("this machine has no IPv6 loopback (::1)")
    dead = lab.blackholed("::1")
    v4 = lab.working(lab.ipv4_address())
    fake = lab.getaddrinfo({"dual.lab.test": [dead, v4]})
    # The tracer's resolver, answered by the fake: no name leaves the test.
    monkeypatch.setattr(
        cli,
        "concurrent_resolver",
        functools.partial(concurrent_resolver, getaddrinfo_async=fake),
    )
    return dead, v4, fake


def test_tracer_explains_the_order_the_blackhole_and_what_history_changed(
    capsys: pytest.CaptureFixture[str],
    dual_stack_name: tuple[Endpoint, Endpoint, FakeGetaddrinfo],
) -> None:
    dead, v4, _ = dual_stack_name
    assert main(["dual.lab.test", "80", "--repeat", "2"]) == 0
    first, _, second = capsys.readouterr().out.partition("\n\n")
    dead_text, v4_text = format_address(dead.sockaddr), format_address(v4.sockaddr)
    # Once, before the first attempt: the order, and why.
    assert first.count("address order for dual.lab.test:") == 1
    assert first.index("address order") < first.index("attempt #0")
    assert f"#0 {dead_text} (RFC 6724 rule 6: higher precedence)" in first
    assert f"#1 {v4_text} (last)" in first
    assert (
        f"attempt #0 to {dead_text}: no answer after 250 ms, starting the next" in first
    )
    # The second connection: history put the blackholed address last.
    assert f"#0 {v4_text} (history: the addresses after it failed" in second
    texts = [text for _, text in timeline_lines(second)]
    assert f"attempt #0 to {v4_text} started" in texts
    assert not any(dead_text in text and "started" in text for text in texts)


def test_tracer_shows_the_resolution_delay_expiring_and_the_unanswered_lookup(
    capsys: pytest.CaptureFixture[str],
    dual_stack_name: tuple[Endpoint, Endpoint, FakeGetaddrinfo],
) -> None:
    _, v4, fake = dual_stack_name
    fake.delays[socket.AF_INET6] = None  # the AAAA query is never answered
    assert main(["dual.lab.test", "80"]) == 0
    texts = [text for _, text in timeline_lines(capsys.readouterr().out)]
    expired = (
        "resolution delay expired (50 ms after the A answer): going on without IPv6"
    )
    assert expired in texts
    assert texts.index(expired) < texts.index(
        f"attempt #0 to {format_address(v4.sockaddr)} started"
    )
    [unanswered] = [text for text in texts if text.startswith("AAAA: ")]
    assert re.fullmatch(r"AAAA: no answer after \d+ ms", unanswered)


def test_tracer_shows_an_address_no_local_address_can_pair_with(
    capsys: pytest.CaptureFixture[str],
    dual_stack_name: tuple[Endpoint, Endpoint, FakeGetaddrinfo],
) -> None:
    dead, v4, _ = dual_stack_name
    assert main(["dual.lab.test", "80", "--local-addr", "127.0.0.1"]) == 0
    texts = [text for _, text in timeline_lines(capsys.readouterr().out)]
    skipped = f"address {format_address(dead.sockaddr)} skipped: OSError: "
    [line] = [text for text in texts if text.startswith(skipped)]
    assert "no local address of family AF_INET6" in line
    assert f"attempt #0 to {format_address(v4.sockaddr)} started (from" in " ".join(
        texts
    )


def test_tls_shows_the_server_certificate_as_curl_does(
    capsys: pytest.CaptureFixture[str], tls_server: tuple[int, Path]
) -> None:
    port, cafile = tls_server
    assert main([f"127.0.0.1:{port}", "--tls", "--cafile", str(cafile)]) == 0
    out = capsys.readouterr().out
    assert "server certificate:" in out
    assert re.search(r"^\s+subject: O=trustme", out, re.MULTILINE)
    assert re.search(r"^\s+issuer: O=trustme", out, re.MULTILINE)
    assert re.search(r"^\s+subjectAltName: IP Address:127\.0\.0\.1", out, re.MULTILINE)
    assert re.search(r"^\s+expire date: .* GMT \(in \d+ days\)$", out, re.MULTILINE)
    assert (
        main(["127.0.0.1", str(port), "--tls", "--cafile", str(cafile), "--json"]) == 0
    )
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    certificate = result["tls"]["certificate"]
    assert certificate["subject_alt_names"] == ["IP Address:127.0.0.1"]
    assert certificate["not_after"].endswith("GMT")
