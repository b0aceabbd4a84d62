"""Why a connection failed, told once: every attempt's and lookup's error,
each annotated with its address, composed as asyncio composes them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from ._types import Host, Port


def _describe(address: tuple[Any, ...], local: tuple[Any, ...] | None) -> str:
    text = f"{address[0]}:{address[1]}" if len(address) >= 2 else repr(address)
    if ":" in str(address[0]):
        text = f"[{address[0]}]:{address[1]}"
    if local is not None:
        text += f" from {local[0]}:{local[1]}" if len(local) >= 2 else f" {local!r}"
    return text


def _annotate(exc: BaseException, note: str) -> None:
    notes = getattr(exc, "__notes__", None)
    if notes is None or note not in notes:
        exc.add_note(note)


def failure(
    host: Host,
    port: Port,
    tried: Sequence[tuple[tuple[Any, ...], tuple[Any, ...] | None]],
    skipped: Iterable[tuple[tuple[Any, ...], BaseException]],
    exceptions: list[BaseException | None],
    source_exc: BaseException | None,
    raise_exc_group: bool,
) -> BaseException:
    """The exception to raise when no attempt succeeded: *tried* holds each
    attempt's (remote, local) address, in the order of *exceptions*;
    *skipped* the addresses never tried, each with its reason."""
    failures: list[tuple[str, BaseException]] = []
    for (address, local), exc in zip(tried, exceptions, strict=False):
        if exc is not None:
            failures.append((_describe(address, local), exc))
    for address, exc in skipped:
        failures.append((_describe(address, None), exc))
    lookup: list[BaseException] = []
    if isinstance(source_exc, BaseExceptionGroup):
        lookup.extend(source_exc.exceptions)
    elif source_exc is not None:
        lookup.append(source_exc)
    # Annotate in place: the note travels with the exception however it is
    # reported, alone, combined or in a group.
    for description, exc in failures:
        _annotate(exc, f"while connecting to {description}")
    for exc in lookup:
        _annotate(exc, f"while resolving {host!r} (port {port!r})")

    if raise_exc_group:
        everything = [exc for _, exc in failures] + lookup
        if not everything:
            everything = [empty_answer(host, port)]
        return _exception_group(
            f"all connection attempts to {host!r} port {port!r} failed", everything
        )

    if not failures:
        if lookup:
            # RFC 8305 §3: only both families failing is an error; the
            # resolver raises socket.gaierror for that, as asyncio does.
            return source_exc if source_exc is not None else lookup[0]
        return empty_answer(host, port)
    errors = [exc for _, exc in failures]
    if len(errors) == 1 and not lookup:
        return errors[0]
    model = str(errors[0])
    if not lookup and all(str(exc) == model for exc in errors):
        return errors[0]
    # Like asyncio: one OSError naming every attempt's error, here with the
    # address each belongs to.
    parts = [f"{description}: {exc}" for description, exc in failures]
    parts += [f"lookup of {host!r}: {exc}" for exc in lookup]
    return OSError(f"Multiple exceptions: {'; '.join(parts)}")


def empty_answer(host: object, port: object) -> OSError:
    # asyncio's words, which async_stagger 0.4 used too, naming the host.
    return OSError(f"getaddrinfo({host!r}, {port!r}) returned empty list")


def _exception_group(message: str, excs: list[BaseException]) -> BaseException:
    if all(isinstance(exc, Exception) for exc in excs):
        return ExceptionGroup(message, excs)  # type: ignore[type-var]
    return BaseExceptionGroup(message, excs)
