"""Nothing a task starts may outlive it: wait for tasks, even through cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any


async def wait_until_done(tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Wait for every one of *tasks* to finish, even if cancelled meanwhile
    (the cancellation is re-raised once they all have), and mark their
    exceptions retrieved.

    A cancellation must not cut the wait short: the tasks were cancelled by
    their owner, who may only go on (close a source, return) once their
    cleanup has run. Waiting again after each interruption keeps that
    promise; the interruption is still delivered, just later.
    """
    pending = [task for task in tasks if not task.done()]
    cancelled: asyncio.CancelledError | None = None
    while pending:
        try:
            await asyncio.wait(pending)
        except asyncio.CancelledError as exc:
            cancelled = exc
        pending = [task for task in pending if not task.done()]
    for task in tasks:
        if not task.cancelled():
            task.exception()
    if cancelled is not None:
        raise cancelled
