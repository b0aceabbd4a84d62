"""async_stagger 0.4's module path of the connection functions.

They live in :mod:`async_stagger.connection`; this module re-exports them so
that ``from async_stagger.happy_eyeballs import open_connection`` keeps
working, with every keyword 0.4 documented.
"""

from .connection import create_connected_sock, create_connection, open_connection

__all__ = ["create_connected_sock", "create_connection", "open_connection"]
