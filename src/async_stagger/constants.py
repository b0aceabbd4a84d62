"""async_stagger 0.4's names for the Happy Eyeballs defaults.

The values live in :mod:`async_stagger.defaults` (RFC 8305 §9); this module
re-exports them under the names 0.4 gave them.
"""

from typing import Final

from .defaults import (
    CONNECTION_ATTEMPT_DELAY,
    FIRST_ADDRESS_FAMILY_COUNT,
    RESOLUTION_DELAY,
)

__all__ = ["CONNECT_DELAY", "FIRST_ADDRESS_FAMILY_COUNT", "RESOLUTION_DELAY"]

#: 0.4's name for :data:`async_stagger.defaults.CONNECTION_ATTEMPT_DELAY`.
CONNECT_DELAY: Final = CONNECTION_ATTEMPT_DELAY
