"""What earlier connections learned about each address, per network.

A program that connects to the same host again and again would otherwise pay
for a broken path every time: a blackholed IPv6 address costs a full
Connection Attempt Delay (250 ms) on every connection. RFC 8305 lets a
stateful client do better, and Happy Eyeballs v3 asks it to:

* **Order** (RFC 8305 §4): "if the client is stateful and has a history of
  expected round-trip times", a rule between RFC 6724 rules 8 and 9 prefers
  addresses with lower RTTs, and a rule after it prefers addresses used
  before. An address whose latest attempt failed, or never answered, counts
  as "known to be unreachable" under RFC 6724 rule 1 (whose discussion
  names remembered reachability information as one way to know): it goes
  after every address not known to be broken, of either family. That is
  what spares the next connection the broken path.
* **Delay** (RFC 8305 §5): the Connection Attempt Delay after an attempt to
  an address with measured RTTs is what TCP would wait before retransmitting
  its SYN (RFC 6298: SRTT + 4 × RTTVAR), clamped to the Minimum and Maximum
  Connection Attempt Delay (100 ms, 2 s) and never below 10 ms (the MUST of
  §5). A delay the caller passes is used as given.

What keeps history from doing harm
----------------------------------
* It only reorders and times; it never removes an address. A wrong entry (a
  path that has recovered, a server that moved) costs at most one Connection
  Attempt Delay, never a failed connection, and the next outcome corrects
  it; so clients with different histories converge on the same behaviour
  (v3: MUST).
* It is partitioned by network (RFC 8305 §4: history "MUST NOT be used
  across different network interfaces"; v3: provisioning domains): every
  entry is keyed by the local source address the system would use for the
  destination, so on another network, or with a new source address, nothing
  learned elsewhere applies.
* Entries expire (:data:`~async_stagger.defaults.HISTORY_LIFETIME`, 10
  minutes: the interval after which RFC 6555 §4.2 retries a family that
  failed) and the table is bounded
  (:data:`~async_stagger.defaults.HISTORY_SIZE` entries, least recently
  used dropped first).

What is left out: host names are not recorded (addresses are what the rules
compare), nor anything about TLS, and nothing is written to disk.

One history is shared by the whole process (:func:`shared_history`); the
connection functions use it unless given ``history=None`` or a history of
their own. It is safe to use from several event loops and threads.
"""

from __future__ import annotations

import enum
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final, Literal, NamedTuple, TypeAlias

from . import defaults
from ._checks import not_an_int

if TYPE_CHECKING:
    from ._types import AddrInfo

__all__ = [
    "SHARED",
    "ConnectionHistory",
    "HistoryEntry",
    "HistoryKey",
    "HistoryOption",
    "attempt_delay_for_rtt",
    "set_shared_history",
    "shared_history",
]

#: ``(local source address, remote address)``: the network an entry belongs
#: to, and the destination it describes, both as numeric host strings.
HistoryKey: TypeAlias = tuple[str, str]

#: What an attempt that did not connect did: refused or otherwise failed, or
#: never answered within its attempt delay (the typical blackhole).
FailureKind: TypeAlias = Literal["failed", "no answer"]


class HistoryEntry(NamedTuple):
    """What is known about one destination on one network (times are the
    history's clock, seconds)."""

    #: Smoothed connect round-trip time in seconds (RFC 6298 SRTT), or
    #: ``None`` when no attempt to it has connected.
    rtt: float | None
    #: RFC 6298 RTTVAR, in seconds.
    rtt_variation: float
    #: When an attempt to it last connected, or ``None``.
    used_at: float | None
    #: When an attempt to it last failed or went unanswered, or ``None``.
    failed_at: float | None
    #: How the latest failure went: ``"failed"`` or ``"no answer"``, or
    #: ``None``.
    failure: FailureKind | None
    #: When the entry last changed; it expires ``lifetime`` seconds later.
    updated_at: float

    @property
    def reachable(self) -> bool:
        """False when the latest outcome was a failure or no answer."""
        failed_at = self.failed_at
        return failed_at is None or (
            self.used_at is not None and self.used_at >= failed_at
        )


def attempt_delay_for_rtt(rtt: float, rtt_variation: float = 0.0) -> float:
    """The Connection Attempt Delay after an attempt whose connect RTT is
    known (RFC 8305 §5).

    Args:
        rtt: The smoothed round-trip time, in seconds.
        rtt_variation: Its variation (RFC 6298 RTTVAR), in seconds.

    Returns:
        When TCP would retransmit its SYN (SRTT + 4 × RTTVAR), clamped to
        [:data:`~async_stagger.defaults.MINIMUM_CONNECTION_ATTEMPT_DELAY`,
        :data:`~async_stagger.defaults.MAXIMUM_CONNECTION_ATTEMPT_DELAY`]
        and never below
        :data:`~async_stagger.defaults.CONNECTION_ATTEMPT_DELAY_FLOOR`.
    """
    delay = rtt + 4 * rtt_variation
    if not math.isfinite(delay):
        return defaults.MAXIMUM_CONNECTION_ATTEMPT_DELAY
    # min(max(delay, minimum), maximum), then max(.., floor), written as the
    # comparisons those builtins make (the same value and type in every
    # case): three builtin calls fewer, attempt_delay 11.0k to 7.6k
    # instructions (3.11), once per attempt the history times.
    minimum = defaults.MINIMUM_CONNECTION_ATTEMPT_DELAY
    if minimum > delay:
        delay = minimum
    maximum = defaults.MAXIMUM_CONNECTION_ATTEMPT_DELAY
    if maximum < delay:
        delay = maximum
    # RFC 8305 §5 MUST: whatever the configured bounds, never closer than this.
    floor = defaults.CONNECTION_ATTEMPT_DELAY_FLOOR
    return floor if floor > delay else delay


class ConnectionHistory:
    """A bounded, expiring table of connection outcomes per network and
    destination; safe to share between threads and event loops.

    Args:
        lifetime: Seconds an entry is kept after it last changed.
        max_entries: How many entries are kept; the least recently used
            are dropped first.
        clock: The clock for expiry (seconds, monotonic); tests pass their
            own.

    Raises:
        ValueError: *lifetime* is not positive or *max_entries* below 1.

    .. versionadded:: 1.0
    """

    def __init__(
        self,
        *,
        lifetime: float = defaults.HISTORY_LIFETIME,
        max_entries: int = defaults.HISTORY_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (isinstance(lifetime, int | float) and lifetime > 0):
            raise ValueError(f"lifetime must be a positive number, got {lifetime!r}")
        if isinstance(max_entries, bool) or not isinstance(max_entries, int):
            raise not_an_int("max_entries", max_entries)
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries!r}")
        self.lifetime = float(lifetime)
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[HistoryKey, HistoryEntry] = OrderedDict()
        # How many entries each destination has, from any source: what
        # knows_any reads. Changed with the table, under the lock.
        self._destinations: dict[str, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """How many entries are held (expired ones included until looked at)."""
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<ConnectionHistory {len(self._entries)} entries>"

    # -- reading ---------------------------------------------------------------

    def lookup(self, source: str, destination: str) -> HistoryEntry | None:
        """The entry for *destination* as reached from *source*, if any.

        Args:
            source: The local source address (numeric host).
            destination: The remote address (numeric host).

        Returns:
            The entry, or ``None`` when there is none or it has expired.
        """
        entries = self._entries
        if not entries:
            return None  # the common case on a fresh process
        key = (source, destination)
        # Reads take no lock: a dict lookup and moving a key to the end are
        # single steps under the GIL, and an entry is never changed in
        # place (updates replace it). Only removal is locked.
        entry = entries.get(key)
        if entry is None:
            return None
        if self.clock() - entry.updated_at > self.lifetime:
            with self._lock:
                if entries.get(key) is entry:
                    self._remove(key)
            return None
        # KeyError: dropped by another thread meanwhile; the entry stands.
        # (A try statement, not contextlib.suppress: three calls fewer,
        # ~4k instructions per lookup (3.11), and a connection to a name looks
        # up each address once or twice.)
        try:  # noqa: SIM105
            entries.move_to_end(key)
        except KeyError:
            pass
        return entry

    def knows_any(self, destinations: Iterable[str]) -> bool:
        """Whether any of *destinations* has an entry, from any source
        (expired ones count until looked at): when none has, the history
        can neither order nor time attempts to them.

        This is what lets a connection to addresses the history has never
        seen skip the history's work: a set-membership test per address
        instead of a source probe, a lookup and a sort (see
        :func:`~async_stagger.address_order.sort_addresses`).

        Args:
            destinations: Remote addresses (numeric hosts).

        Returns:
            ``True`` when at least one of them has an entry.

        .. versionadded:: 1.0
        """
        known = self._destinations
        if not known:
            return False
        # A loop, not any() over a generator: no generator frame per call.
        for destination in destinations:  # noqa: SIM110
            if destination in known:
                return True
        return False

    def _knows_any_of(self, infos: Iterable[AddrInfo]) -> bool:
        """:meth:`knows_any` for the remote addresses of getaddrinfo
        5-tuples: what a connection asks before ordering its answer.

        (Read from the tuples here, not from a list of their hosts made
        first: no list and no comprehension per call, 3.3k to 1.3k
        instructions for two addresses, 3.11.)
        """
        known = self._destinations
        if not known:
            return False
        for info in infos:  # noqa: SIM110
            if info[4][0] in known:
                return True
        return False

    def attempt_delay(self, source: str, destination: str) -> float | None:
        """The Connection Attempt Delay after starting an attempt to
        *destination* from *source*, from its measured RTT.

        Returns:
            The delay in seconds (see :func:`attempt_delay_for_rtt`), or
            ``None`` when no RTT is known.
        """
        entry = self.lookup(source, destination)
        if entry is None or entry.rtt is None:
            return None
        return attempt_delay_for_rtt(entry.rtt, entry.rtt_variation)

    def entries(self) -> list[tuple[HistoryKey, HistoryEntry]]:
        """Every entry that has not expired, least recently used first.

        Returns:
            A new list of ``((source, destination), entry)`` pairs.
        """
        now = self.clock()
        with self._lock:
            live = [
                (key, entry)
                for key, entry in self._entries.items()
                if now - entry.updated_at <= self.lifetime
            ]
        return live

    # -- writing ---------------------------------------------------------------

    def record_success(self, source: str, destination: str, rtt: float) -> None:
        """An attempt to *destination* from *source* connected after *rtt*
        seconds: fold the sample into the smoothed RTT (RFC 6298 §2).

        Args:
            source: The local source address (numeric host).
            destination: The remote address (numeric host).
            rtt: Seconds from the attempt's start to its connection.
        """
        # max(0.0, rtt) as the comparison it makes (0.0 unless rtt is
        # greater), a builtin call fewer.
        if not rtt > 0.0:
            rtt = 0.0
        now = self.clock()
        key = (source, destination)
        entries = self._entries
        # The lock taken and let go by hand, not by a with statement: the
        # same steps with two method calls for the context manager's two,
        # ~1k instructions fewer per record (3.11), once per connection.
        lock = self._lock
        lock.acquire()
        try:
            old = entries.get(key)
            if old is None:
                # RFC 6298 §2.2: the first sample.
                entries[key] = _new_entry(
                    HistoryEntry, (rtt, rtt / 2, now, None, None, now)
                )
                self._added(destination)
                return
            # The old entry's fields in one unpacking, not six attribute
            # reads: with the comparison above, record_success 11.4k to
            # 9.6k instructions (3.11), once per connection.
            old_rtt, old_variation, _, failed_at, failure, updated_at = old
            if old_rtt is None or now - updated_at > self.lifetime:
                # RFC 6298 §2.2: the first sample.
                srtt, rttvar = rtt, rtt / 2
            else:
                # RFC 6298 §2.3, with its alpha = 1/8 and beta = 1/4.
                rttvar = 0.75 * old_variation + 0.25 * abs(old_rtt - rtt)
                srtt = 0.875 * old_rtt + 0.125 * rtt
            # Replaced where it stands, then made the most recently used.
            entries[key] = _new_entry(
                HistoryEntry, (srtt, rttvar, now, failed_at, failure, now)
            )
            entries.move_to_end(key)
        finally:
            lock.release()

    def record_failure(
        self, source: str, destination: str, failure: FailureKind = "failed"
    ) -> None:
        """An attempt to *destination* from *source* failed, or got no
        answer within its attempt delay.

        Args:
            source: The local source address (numeric host).
            destination: The remote address (numeric host).
            failure: ``"failed"`` or ``"no answer"``.
        """
        now = self.clock()
        key = (source, destination)
        entries = self._entries
        with self._lock:
            old = entries.get(key)
            if old is None or now - old.updated_at > self.lifetime:
                entry = _new_entry(HistoryEntry, (None, 0.0, None, now, failure, now))
            else:
                entry = _new_entry(
                    HistoryEntry,
                    (old.rtt, old.rtt_variation, old.used_at, now, failure, now),
                )
            entries[key] = entry
            if old is None:
                self._added(destination)
            else:
                entries.move_to_end(key)

    def _added(self, destination: str) -> None:
        """A new key for *destination* went in (under the lock): count it,
        and drop the least recently used entries beyond ``max_entries`` (the
        table grows only when a key is new: only then is this called)."""
        known = self._destinations
        known[destination] = known.get(destination, 0) + 1
        entries = self._entries
        while len(entries) > self.max_entries:
            key, _ = entries.popitem(last=False)
            self._uncount(key[1])

    def _remove(self, key: HistoryKey) -> None:
        """Drop the entry under *key* (under the lock)."""
        del self._entries[key]
        self._uncount(key[1])

    def _uncount(self, destination: str) -> None:
        known = self._destinations
        left = known[destination] - 1
        if left:
            known[destination] = left
        else:
            del known[destination]

    def forget(self, source: str | None = None) -> None:
        """Drop the entries learned from *source* (a network left), or every
        entry when *source* is ``None``.

        Args:
            source: A local source address, or ``None`` for all.
        """
        with self._lock:
            if source is None:
                self._entries.clear()
                self._destinations.clear()
                return
            for key in [key for key in self._entries if key[0] == source]:
                self._remove(key)

    def clear(self) -> None:
        """Forget everything."""
        self.forget(None)


# A new entry is built as the tuple it is, not through the named tuple's
# Python-level ``__new__`` (one Python call fewer per record). A new key goes
# to the end of the table by itself, so only a replaced one is moved there,
# and only a new one can grow the table past its bound (see _added); no
# _store call between. Together: record_success 15.7k to 13.3k instructions
# (3.11), once per connection.
_new_entry = tuple.__new__


class HistoryOption(enum.Enum):
    """The marker for "the process's shared history" (the default of the
    connection functions' ``history`` argument)."""

    SHARED = "shared"

    def __repr__(self) -> str:
        return "SHARED"


#: The default of ``history=``: use :func:`shared_history`.
SHARED: Final = HistoryOption.SHARED

_shared = ConnectionHistory()
_shared_lock = threading.Lock()


def shared_history() -> ConnectionHistory:
    """The history the connection functions use by default.

    Returns:
        The process's shared :class:`ConnectionHistory`.

    .. versionadded:: 1.0
    """
    return _shared


def set_shared_history(history: ConnectionHistory) -> ConnectionHistory:
    """Make *history* the one the connection functions use by default.

    Args:
        history: The new shared history.

    Returns:
        The history it replaces.

    Raises:
        TypeError: *history* is not a :class:`ConnectionHistory`.

    .. versionadded:: 1.0
    """
    global _shared
    if not isinstance(history, ConnectionHistory):
        raise TypeError(f"history must be a ConnectionHistory, got {history!r}")
    with _shared_lock:
        previous, _shared = _shared, history
    return previous


def resolve_history_option(
    history: ConnectionHistory | HistoryOption | None,
) -> ConnectionHistory | None:
    """The history a connection uses for its ``history`` argument.

    Raises:
        TypeError: *history* is neither a history, ``SHARED`` nor ``None``.
    """
    if history is SHARED:
        return _shared
    if history is None or isinstance(history, ConnectionHistory):
        return history
    raise TypeError(
        f"history must be a ConnectionHistory, SHARED or None, got {history!r}"
    )
