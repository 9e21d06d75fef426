"""One contract suite per seam, run against every backend (memory and Redis).

A suite takes ``backend`` (the name) or ``client`` (None for the embedded
backends, a Redis client on an empty database for Redis, a RedisCluster
client on an empty 3-primary cluster for ``cluster``) and builds the seam's
implementation from it; ``registry`` is the registry of that backend.
A suite whose backends are others (the offline store: SQLite and Redis)
overrides ``backend`` in its module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from longlink.bus.redis import connect as redis_connect
from longlink.logic.base import Registry
from longlink.logic.memory import MemoryRegistry
from longlink.logic.redis import RedisRegistry

BACKENDS = ["memory", "redis", "cluster"]


@pytest.fixture
async def redis_client(redis_server_url: str) -> AsyncIterator[Any]:
    """A client on an empty database of the test Redis."""
    client = redis_connect(redis_server_url)
    await client.flushdb()
    yield client
    await client.aclose()


def bus_url(backend: str, request: pytest.FixtureRequest) -> str:
    """``LONGLINK_BUS`` of a Redis backend: the test Redis, or the test cluster."""
    fixture = "redis_cluster_url" if backend == "cluster" else "redis_server_url"
    url: str = request.getfixturevalue(fixture)
    return url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend name; Redis-backed tests also request the Redis server up front."""
    if request.param == "redis":
        request.getfixturevalue("redis_server_url")
    elif request.param == "cluster":
        request.getfixturevalue("redis_cluster_url")
    return str(request.param)


@pytest.fixture
async def client(backend: str, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """None for the memory backend; for Redis, a client on an empty database."""
    if backend == "memory":
        yield None
        return
    redis = redis_connect(bus_url(backend, request))
    await redis.flushdb()  # a cluster: on every primary
    yield redis
    await redis.aclose()


@pytest.fixture
def registry(client: Any) -> Registry:
    """The backend's registry (Redis: no cache of the live nodes, so reads see reports at once)."""
    return MemoryRegistry() if client is None else RedisRegistry(client, live_cache_s=0.0)
