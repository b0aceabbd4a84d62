"""Happy Eyeballs for client libraries, each through its public extension
points.

One module per client, each imported only when asked for (the clients are no
dependency of async_stagger):

* :mod:`async_stagger.integrations.aiohttp`: a resolver for
  ``aiohttp.TCPConnector(resolver=...)``.
* :mod:`async_stagger.integrations.httpcore`: a network backend for
  ``httpcore.AsyncConnectionPool(network_backend=...)``.
* :mod:`async_stagger.integrations.httpx`: a transport for
  ``httpx.AsyncClient(transport=...)``.

Clients that connect through ``loop.create_connection`` (asyncio streams,
websockets, redis-py, asyncpg, ...) need no module here: run them on a loop
from :mod:`async_stagger.eventloop`.
"""
