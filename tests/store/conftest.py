"""The offline store backends every contract test runs against.

Add a backend by adding a parameter to ``backend`` and a branch to
``open_store``: issue 7's Redis or PostgreSQL store runs the same suite.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from longlink.bus.redis import connect as redis_connect
from longlink.store.base import OfflineStore
from longlink.store.redis import RedisStore
from longlink.store.sqlite import SqliteStore

#: ``await opener()`` opens the backend's store on the same data as the last one.
Opener = Callable[[], Awaitable[OfflineStore]]


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name == "redis":
        request.getfixturevalue("redis_server_url")
    return name


@pytest.fixture
async def open_store(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Opener]:
    """Opens stores of ``backend`` that share one data set (to check what survives a reopen)."""
    opened: list[OfflineStore] = []
    clients: list[aioredis.Redis] = []
    if backend == "redis":
        first = redis_connect(request.getfixturevalue("redis_server_url"))
        await first.flushdb()
        await first.aclose()

    async def opener() -> OfflineStore:
        if backend == "sqlite":
            store: OfflineStore = SqliteStore.in_dir(tmp_path)
        elif backend == "redis":
            client = redis_connect(request.getfixturevalue("redis_server_url"))
            clients.append(client)
            store = RedisStore(client)
        else:  # pragma: no cover - another backend needs its branch here
            raise AssertionError(f"unknown backend {backend}")
        opened.append(store)
        return store

    yield opener
    for store in opened:
        await store.close()
    for client in clients:
        await client.aclose()


@pytest.fixture
async def store(open_store: Opener) -> OfflineStore:
    return await open_store()
