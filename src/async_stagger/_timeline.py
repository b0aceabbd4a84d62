"""A trace is printed here as it happens: one line of text, or one JSON
object, per event, stamped with the time since the connection began."""

from __future__ import annotations

import json
import socket
from typing import Any, TextIO

from ._describe import describe_event
from .trace import TraceEvent

__all__ = ["Timeline"]


def _error_json(error: BaseException) -> dict[str, Any]:
    data: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    errno = getattr(error, "errno", None)
    if isinstance(errno, int):
        data["errno"] = errno
    return data


class Timeline:
    """A trace callback that prints each event as one line, as it happens.

    Times are shown relative to :meth:`start`, in milliseconds (text) or
    seconds (JSON). Pass an instance as ``trace=`` to the connection
    functions.

    Args:
        out: Where to write the lines.
        json_lines: Write one JSON object per event instead of text.
        indent: A prefix for every text line.
    """

    def __init__(
        self, out: TextIO, *, json_lines: bool = False, indent: str = ""
    ) -> None:
        self.out = out
        self.json_lines = json_lines
        self.indent = indent
        self.origin: float | None = None
        self.events: list[TraceEvent] = []
        #: True once writing failed (e.g. the reading end of a pipe closed).
        self.output_lost = False
        # Attempt events after "started" may omit the address: remember it.
        self._attempt_addresses: dict[int, tuple[Any, ...]] = {}

    def start(self, now: float) -> None:
        """Set time zero: the loop's clock (``loop.time()``) when the
        connection began."""
        self.origin = now

    def elapsed(self, now: float) -> float:
        """Seconds from time zero to *now* (a ``loop.time()`` value)."""
        return now - (self.origin if self.origin is not None else now)

    def __call__(self, event: TraceEvent) -> None:
        """Record and print one event."""
        if self.origin is None:
            self.origin = event.time
        self.events.append(event)
        if event.index is not None and event.address is not None:
            self._attempt_addresses.setdefault(event.index, event.address)
        if self.json_lines:
            self.write_json(self.event_json(event))
        elif event.kind == "connection_failed" and self.shown_before(event.error):
            pass  # the error is on a line above already: say it once
        else:
            self.write_line(self.elapsed(event.time), self.describe(event))

    def shown_before(self, error: BaseException | None) -> bool:
        """Whether *error*, or every error it sums up, was already reported
        by an earlier event (an attempt, a lookup or a TLS handshake)."""
        if error is None:
            return False
        earlier = [e.error for e in self.events[:-1] if e.kind != "connection_failed"]
        if any(error is other for other in earlier):
            return True
        # The one OSError that names every attempt's error (_failure.py's
        # "Multiple exceptions: ..."), or an exception group of them.
        parts = error.exceptions if isinstance(error, BaseExceptionGroup) else None
        if parts is not None:
            return all(any(p is other for other in earlier) for p in parts)
        return (
            isinstance(error, OSError)
            and error.errno is None
            and str(error).startswith("Multiple exceptions")
            and any(e.kind == "attempt_failed" for e in self.events)
        )

    def write_line(self, elapsed: float, text: str) -> None:
        """Print one text line stamped *elapsed* seconds after time zero."""
        self.write(f"{self.indent}{elapsed * 1000:9.1f} ms  {text}")

    def write_json(self, data: dict[str, Any]) -> None:
        """Print one JSON object on a line of its own."""
        self.write(json.dumps(data))

    def write(self, line: str) -> None:
        """Print *line* as it is.

        Never raises: a trace callback must not raise into the connection it
        observes, so when the output goes away (a closed pipe), printing
        stops instead.
        """
        if self.output_lost:
            return
        try:
            print(line, file=self.out)
            self.out.flush()
        except (OSError, ValueError):
            self.output_lost = True

    def event_json(self, event: TraceEvent) -> dict[str, Any]:
        """The JSON form of *event*: its fields that are set, with ``time`` in
        seconds since time zero, families by name, errors as objects with
        ``type``, ``message`` and (for ``OSError``) ``errno``."""
        data: dict[str, Any] = {
            "kind": event.kind,
            "time": round(self.elapsed(event.time), 6),
        }
        if event.host is not None:
            data["host"] = event.host
        if event.family is not None:
            data["family"] = socket.AddressFamily(event.family).name
        if event.index is not None:
            data["index"] = event.index
        address = event.address
        if address is None and event.index is not None:
            address = self._attempt_addresses.get(event.index)
        if address is not None:
            data["address"] = list(address)
        if event.local_address is not None:
            data["local_address"] = list(event.local_address)
        if event.addresses is not None:
            data["addresses"] = [list(a) for a in event.addresses]
        if event.error is not None:
            data["error"] = _error_json(event.error)
        if event.synthesized_from is not None:
            data["synthesized_from"] = list(event.synthesized_from)
        if event.nat64_prefix is not None:
            data["nat64_prefix"] = event.nat64_prefix
            data["nat64_origin"] = event.nat64_origin
        if event.delay is not None:
            data["delay"] = round(event.delay, 6)
        if event.reasons is not None:
            data["reasons"] = list(event.reasons)
        return data

    def describe(self, event: TraceEvent) -> str:
        """One human-readable line for *event*, without the time stamp."""
        address = None
        if event.address is None and event.index is not None:
            address = self._attempt_addresses.get(event.index)
        return describe_event(event, address)
