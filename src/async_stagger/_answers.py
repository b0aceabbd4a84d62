"""An answer becomes addresses here: one lookup traced, duplicates dropped,
the rest sorted (RFC 6724 §6) and interleaved by family (RFC 8305 §4)."""

from __future__ import annotations

import socket
from collections.abc import Iterable, Sequence
from typing import Any

from ._types import AddrInfo, GetaddrinfoAsync, Host, Port, SortAddresses
from .address_order import explain_order, interleave, sort_addresses
from .history import ConnectionHistory
from .trace import emit, tracing_active


def _host_text(host: Host) -> str | None:
    if isinstance(host, bytes):
        return host.decode("ascii", "replace")
    return host


async def _lookup(
    getaddrinfo_async: GetaddrinfoAsync,
    host: Host,
    port: Port,
    family: int,
    type: int,
    proto: int,
    flags: int,
) -> list[AddrInfo]:
    host_text = _host_text(host)
    address_family = socket.AddressFamily(family)
    emit("resolution_started", host=host_text, family=address_family)
    try:
        infos = list(
            await getaddrinfo_async(
                host, port, family=family, type=type, proto=proto, flags=flags
            )
        )
    except Exception as exc:
        emit("resolution_failed", host=host_text, family=address_family, error=exc)
        raise
    emit(
        "resolution_answered",
        host=host_text,
        family=address_family,
        addresses=tuple(info[4] for info in infos),
    )
    return infos


def _emit_direct_answer(host: Host, infos: list[AddrInfo]) -> None:
    # No lookup happened, but the tracer should still see where the
    # addresses came from; one event per family present.
    if not tracing_active():
        return  # the common case: build nothing
    families = dict.fromkeys(info[0] for info in infos)
    for family in families:
        emit(
            "resolution_answered",
            host=_host_text(host),
            family=family,
            addresses=tuple(info[4] for info in infos if info[0] == family),
        )


def _emit_order(
    host: Host,
    ordered: Sequence[AddrInfo],
    sorter: SortAddresses | None,
    history: ConnectionHistory | None,
) -> None:
    """Report the order the first attempts will follow, with the reason for
    each position (for the tracer; only called when somebody traces)."""
    if sorter is sort_addresses:
        reasons = explain_order(ordered, history=history)
    elif sorter is None:
        reasons = ["getaddrinfo order (sorting off)"] * len(ordered)
    else:
        reasons = ["custom sort"] * len(ordered)
    emit(
        "order_decided",
        host=_host_text(host),
        addresses=tuple(info[4] for info in ordered),
        reasons=tuple(reasons),
    )


def _unique(infos: Iterable[AddrInfo], seen: set[tuple[Any, ...]]) -> list[AddrInfo]:
    result = []
    for info in infos:
        # The same address for the same socket type is a duplicate; the
        # canonical name does not matter.
        identity = (info[0], info[1], info[2], info[4])
        if identity not in seen:
            seen.add(identity)
            result.append(info)
    return result


def _order(
    infos: list[AddrInfo],
    sorter: SortAddresses | None,
    first_addr_family_count: int,
    already_yielded: Sequence[int] = (),
    *,
    system_sorted: bool = False,
    history: ConnectionHistory | None = None,
) -> list[AddrInfo]:
    """Sort *infos* with *sorter* and interleave them by family.

    With *system_sorted* (the addresses come from the system's
    ``getaddrinfo``, which orders each answer by RFC 6724 itself), a list
    of one family is left in the system's order: the RFC 6724 sort exists
    here for what the system never saw, the two families side by side.
    A *history* that knows something reorders even one family's list
    (RFC 8305 §4, see :mod:`async_stagger.history`).
    """
    if len(infos) <= 1 and not already_yielded:
        return list(infos)  # nothing to order (an IP literal, typically)
    if (
        history is not None
        and sorter is sort_addresses
        and first_addr_family_count
        # A history that knows none of these addresses gives each the same
        # history columns, as an empty one does: it is left out, and the
        # addresses go the way history=None sends them (a membership test
        # per address instead of a source probe, a lookup per address and a
        # sort: ordering two addresses 28.0k to 13.1k instructions, 3.11,
        # against 9.6k with history=None; ~2.5k more when it knows one).
        and history._knows_any_of(infos)
    ):
        infos = sort_addresses(infos, history=history)
        family = infos[0][0] if infos else None
        for info in infos:
            if info[0] != family:
                return interleave(
                    infos, first_addr_family_count, already_yielded=already_yielded
                )
        # One family: interleave would keep the order as it is (skipping
        # it is worth ~4k instructions of a connection to a name, 3.11).
        return infos
    if system_sorted and sorter is sort_addresses:
        # One family, handed out and to come: nothing to sort or interleave.
        # (Loops, not all() over generators: the two generators are worth ~4.9k
        # instructions of a resolution of a name, 3.11.)
        family = infos[0][0] if infos else None
        for info in infos:
            if info[0] != family:
                break
        else:
            for yielded in already_yielded:
                if yielded != family:
                    break
            else:
                return list(infos)
    if sorter is not None:
        infos = sorter(infos)
    if not first_addr_family_count:
        # asyncio's interleave=0, from the connection functions: keep the
        # order as it is.
        return list(infos)
    return interleave(infos, first_addr_family_count, already_yielded=already_yielded)


def _no_addresses(host: Host) -> socket.gaierror:
    # async_stagger 0.4 raised OSError("getaddrinfo(...) returned empty
    # list"), and asyncio raises the same words: code matches on them.
    return socket.gaierror(
        socket.EAI_NONAME,
        f"getaddrinfo({_host_text(host)!r}) returned empty list:"
        f" no addresses found for host {_host_text(host)!r}",
    )
