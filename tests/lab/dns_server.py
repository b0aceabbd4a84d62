"""A tiny authoritative DNS server for the namespace lab (standard library only).

It answers A and AAAA questions over UDP from a fixed table, and can hold back
or drop the answers of a record type: the behaviour of a real network whose
AAAA queries are slow or lost, which is what RFC 8305 §3 guards against. It
runs as its own process inside a test's network namespace, where glibc's
resolver is pointed at it through ``/etc/netns/NAME/resolv.conf``.

Usage: ``python dns_server.py LOG_FILE < config.json``. The configuration::

    {"address": "127.0.0.1", "port": 53,
     "records": [["www.example.test", "A", ["10.77.0.1"]], ...],
     "delays": {"AAAA": 0.5}, "drop": ["AAAA"], "ttl": 0}

The server prints ``ready`` once it listens, then appends one line per query
to LOG_FILE: ``<time.time()> <name> <type> <answered|delayed|dropped>``.

Only what glibc's stub resolver sends is understood: one question per query,
names without compression. Unknown names get NXDOMAIN; a known name without
records of the asked type gets an empty NOERROR answer (NODATA).
"""

from __future__ import annotations

import heapq
import json
import select
import socket
import struct
import sys
import time
from typing import Any

TYPES = {"A": 1, "AAAA": 28}
TYPE_NAMES = {number: name for name, number in TYPES.items()}
CLASS_IN = 1
RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4


class Query:
    """One parsed DNS question."""

    def __init__(self, data: bytes) -> None:
        if len(data) < 12:
            raise ValueError("short DNS header")
        self.id, self.flags, qdcount = struct.unpack("!HHH", data[:6])
        if qdcount != 1:
            raise ValueError(f"{qdcount} questions")
        labels = []
        offset = 12
        while True:
            length = data[offset]
            offset += 1
            if length == 0:
                break
            if length & 0xC0:
                raise ValueError("compressed question name")
            labels.append(data[offset : offset + length].decode("ascii"))
            offset += length
        self.qtype, self.qclass = struct.unpack("!HH", data[offset : offset + 4])
        self.name = ".".join(labels).lower()
        self.question = data[12 : offset + 4]

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.qtype, str(self.qtype))

    def response(self, rcode: int, answers: list[bytes]) -> bytes:
        """The response message: this question, then *answers* (rdata)."""
        opcode_and_rd = self.flags & 0x7900  # opcode bits and RD
        flags = 0x8000 | 0x0400 | 0x0080 | opcode_and_rd | rcode  # QR AA RA
        header = struct.pack("!HHHHHH", self.id, flags, 1, len(answers), 0, 0)
        records = b"".join(
            # 0xC00C points at the question's name, right after the header.
            struct.pack("!HHHIH", 0xC00C, self.qtype, CLASS_IN, 0, len(rdata)) + rdata
            for rdata in answers
        )
        return header + self.question + records


def error_response(data: bytes, rcode: int) -> bytes:
    """A header-only response carrying *rcode*, for messages we cannot parse."""
    query_id = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 0
    return struct.pack("!HHHHHH", query_id, 0x8000 | rcode, 0, 0, 0, 0)


class Server:
    """The answer table and the release schedule of delayed answers."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.records: dict[tuple[str, str], list[bytes]] = {}
        self.names: set[str] = set()
        for name, rtype, addresses in config.get("records", []):
            family = socket.AF_INET if rtype == "A" else socket.AF_INET6
            key = (name.lower().rstrip("."), rtype)
            self.records[key] = [socket.inet_pton(family, a) for a in addresses]
            self.names.add(key[0])
        self.delays: dict[str, float] = config.get("delays", {})
        self.drop: set[str] = set(config.get("drop", []))

    def handle(self, data: bytes) -> tuple[bytes | None, float, str]:
        """The response to *data*, its delay in seconds and what happened
        (``None`` response: dropped)."""
        try:
            query = Query(data)
        except (ValueError, IndexError, UnicodeDecodeError, struct.error):
            return error_response(data, RCODE_FORMERR), 0.0, "- - formerr"
        label = f"{query.name or '.'} {query.type_name}"
        if query.qclass != CLASS_IN or (query.flags >> 11) & 0xF != 0:
            return query.response(RCODE_NOTIMP, []), 0.0, f"{label} notimp"
        if query.type_name in self.drop:
            return None, 0.0, f"{label} dropped"
        if query.name not in self.names:
            response = query.response(RCODE_NXDOMAIN, [])
        else:
            answers = self.records.get((query.name, query.type_name), [])
            response = query.response(RCODE_NOERROR, answers)
        delay = float(self.delays.get(query.type_name, 0.0))
        return response, delay, f"{label} {'delayed' if delay else 'answered'}"


def serve(config: dict[str, Any], log_path: str) -> None:
    server = Server(config)
    family = socket.AF_INET6 if ":" in config["address"] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((config["address"], config["port"]))
    print("ready", flush=True)
    pending: list[tuple[float, int, bytes, Any]] = []
    sequence = 0
    with open(log_path, "a", buffering=1) as log:
        while True:
            timeout = None
            if pending:
                timeout = max(0.0, pending[0][0] - time.monotonic())
            readable, _, _ = select.select([sock], [], [], timeout)
            if readable:
                data, peer = sock.recvfrom(4096)
                log_time = time.time()
                response, delay, what = server.handle(data)
                log.write(f"{log_time:.6f} {what}\n")
                if response is not None:
                    sequence += 1
                    due = time.monotonic() + delay
                    heapq.heappush(pending, (due, sequence, response, peer))
            while pending and pending[0][0] <= time.monotonic():
                _, _, response, peer = heapq.heappop(pending)
                sock.sendto(response, peer)


def main() -> None:
    config = json.load(sys.stdin)
    serve(config, sys.argv[1])


if __name__ == "__main__":
    main()
