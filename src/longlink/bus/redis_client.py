"""Redis clients for ``LONGLINK_BUS``, and what their outages look like.

:func:`connect` turns the bus URL into a client: one Redis (``redis://``),
a Redis Cluster (``redis+cluster://``, :class:`BoundedCluster`) or the
primary a set of Sentinels names (``redis+sentinel://``,
:class:`SentinelManaged`). :data:`OUTAGES` and :data:`RETRYABLE` are what
redis-py raises while any of them is unreachable or changing (a restart, a
failover, a slot with no primary): callers answer "unavailable, retry".
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import unquote

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    ClusterDownError,
    ReadOnlyError,
    RedisClusterUnreachableError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

#: A Redis Cluster or a Sentinel set-up in the middle of a change: a primary down or
#: just restarted (CLUSTERDOWN, TRYAGAIN, a slot with no primary), a demoted primary
#: (READONLY). Passing, like an unreachable Redis.
PASSING: tuple[type[Exception], ...] = (
    ClusterDownError,
    TryAgainError,
    ReadOnlyError,
    SlotNotCoveredError,
    RedisClusterUnreachableError,
)
RETRYABLE: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    *PASSING,
)
#: What redis-py raises while Redis is unreachable or loading (BusyLoadingError is a
#: ConnectionError), or its cluster is changing: callers answer "unavailable, retry",
#: never "internal error".
OUTAGES: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, *PASSING)

#: The URL schemes of ``LONGLINK_BUS`` on Redis (PROTOCOL.md §3).
SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://", "redis+sentinel://")

Client = aioredis.Redis | aioredis.RedisCluster


#: Connections per primary kept beyond ``max_connections`` (see :class:`BoundedCluster`).
SPARE_CONNECTIONS = 16


class BoundedCluster(aioredis.RedisCluster):
    """A RedisCluster client whose commands wait for a free slot instead of failing.

    redis-py's cluster client raises ``MaxConnectionsError`` when a primary's
    ``max_connections`` are all busy (the single-Redis pool can block
    instead): here at most ``max_connections`` commands and pipelines run at
    once, the others wait, so no primary is asked for more connections.
    """

    def __init__(self, *, max_connections: int, **kwargs: Any) -> None:
        # Beyond the commands: a sharded subscription holds a connection of its own, and
        # redis-py's topology refreshes borrow some.
        super().__init__(max_connections=max_connections + SPARE_CONNECTIONS, **kwargs)
        self._busy = asyncio.Semaphore(max_connections)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self._busy:
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute
        busy = self._busy

        async def bounded(raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
            async with busy:
                return await execute(raise_on_error, allow_redirections)

        pipe.execute = bounded  # type: ignore[method-assign]
        return pipe


class SentinelManaged(aioredis.Redis):
    """The client of a Sentinel-managed primary: closing it closes the Sentinel links too."""

    sentinels: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinels is not None:
            for link in self.sentinels.sentinels:
                await link.aclose()


def _hosts(netloc: str, default_port: int) -> tuple[str | None, str | None, list[tuple[str, int]]]:
    """(username, password, [(host, port)]) of ``[user:password@]host:port[,host:port…]``."""
    auth, _, hosts = netloc.rpartition("@")
    user, _, password = auth.partition(":")
    found: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host:
            host, port = port, str(default_port)
        if not host or not port.isdigit():
            raise ValueError(f"bad host:port {item!r}")
        found.append((host.strip("[]"), int(port)))
    return unquote(user) or None, unquote(password) or None, found


def connect(url: str, *, max_connections: int = 64) -> Client:
    """A client for ``url`` that reconnects on its own.

    * ``redis://host:port/db`` (``rediss://``, ``unix://``): one Redis. The
      pool blocks (up to 10 s) when all ``max_connections`` are busy, so a
      burst of concurrent pushes waits for a connection instead of failing.
    * ``redis+cluster://host:port[,host:port…]``: a Redis Cluster, found from
      any of those nodes (``redis.asyncio.RedisCluster``; ``max_connections``
      per primary). Slots that move are followed (``MOVED``, ``ASK``).
    * ``redis+sentinel://host:port[,host:port…]/master/db``: the primary that
      the Sentinels name ``master``; after a failover the next connection
      goes to the promoted replica.
    """
    scheme, _, rest = url.partition("://")
    if scheme == "redis+cluster":
        user, password, hosts = _hosts(rest.partition("/")[0], 6379)
        return BoundedCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in hosts],
            username=user,
            password=password,
            max_connections=max_connections,
            socket_keepalive=True,
            socket_connect_timeout=2.0,
            # A primary that is down leaves its slots unserved; the others go on.
            require_full_coverage=False,
            # Fail fast when a primary is away (the API answers 503, backends retry):
            # redis-py's default backoff makes one command take ~3.6 s.
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=3),
        )
    if scheme == "redis+sentinel":
        netloc, _, path = rest.partition("/")
        master, _, db = path.partition("/")
        if not master:
            raise ValueError("redis+sentinel://HOST:PORT[,HOST:PORT…]/MASTER/DB: no master name")
        user, password, hosts = _hosts(netloc, 26379)
        sentinel = Sentinel(hosts, socket_timeout=2.0, socket_connect_timeout=2.0)
        client: SentinelManaged = sentinel.master_for(
            master,
            redis_class=SentinelManaged,
            db=int(db or 0),
            username=user,
            password=password,
            max_connections=max_connections,
            socket_keepalive=True,
            socket_connect_timeout=2.0,
            health_check_interval=10,
            retry_on_timeout=True,
        )
        client.sentinels = sentinel
        return client
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=10,
        health_check_interval=10,
        socket_keepalive=True,
        retry_on_timeout=True,
    )
    return aioredis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes both


def reraise_if_cancelled() -> None:
    """redis-py may turn a cancellation into a connection error: never retry those."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
