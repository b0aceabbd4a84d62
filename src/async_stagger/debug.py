"""async_stagger 0.4's debug switch and logger.

The library logs its trace events to :data:`logger` (the ``async_stagger``
logger) at ``DEBUG`` whenever that logger is enabled for ``DEBUG``, however
that came about (see :mod:`async_stagger.trace`). :func:`set_debug` is 0.4's
way of asking for it: it sets that logger's own level.
"""

from __future__ import annotations

import logging

from .trace import LOGGER

__all__ = ["get_debug", "logger", "set_debug"]

#: The ``async_stagger`` logger (:data:`async_stagger.trace.LOGGER`).
logger: logging.Logger = LOGGER


def set_debug(enabled: bool) -> None:
    """Turn the library's debug log on or off.

    Args:
        enabled: True sets the ``async_stagger`` logger's level to
            ``DEBUG``, so its trace events are logged (to the handlers
            configured, e.g. by :func:`logging.basicConfig`) even when the
            root logger's level is higher; False resets it to ``NOTSET``,
            so the logger follows its parents' level again.
    """
    logger.setLevel(logging.DEBUG if enabled else logging.NOTSET)


def get_debug() -> bool:
    """Whether the library's debug log is on: whether the ``async_stagger``
    logger is enabled for ``DEBUG``.

    Returns:
        True when trace events are being logged.
    """
    return logger.isEnabledFor(logging.DEBUG)
