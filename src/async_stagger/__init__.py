"""Happy Eyeballs (RFC 8305) for asyncio, and the staggered race behind it.

The public names are re-exported here; each lives in a module of its own:
:mod:`async_stagger.race` (the scheduler), :mod:`async_stagger.resolvers`
(host names to ordered addresses) and :mod:`async_stagger.connection`
(drop-in replacements for asyncio's connection functions),
:mod:`async_stagger.preresolved` (addresses already resolved). The event
loops of :mod:`async_stagger.eventloop` and the client glue of
:mod:`async_stagger.integrations` are imported on demand.
"""

from . import resolvers
from .connection import create_connected_sock, create_connection, open_connection
from .preresolved import start_connection
from .race import staggered_race
from .resolvers import basic_resolver, concurrent_resolver
from .trace import TraceEvent

__version__ = "1.0.0"

__all__ = [
    "TraceEvent",
    "__version__",
    "basic_resolver",
    "concurrent_resolver",
    "create_connected_sock",
    "create_connection",
    "open_connection",
    "resolvers",
    "staggered_race",
    "start_connection",
]
