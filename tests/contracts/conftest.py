"""One contract suite per seam, run against every backend (memory and Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from longlink.bus.redis import connect as redis_connect

BACKENDS = ["memory", "redis"]


@pytest.fixture
async def redis_client(redis_server_url: str) -> AsyncIterator[Any]:
    """A client on an empty database of the test Redis."""
    client = redis_connect(redis_server_url)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend name; Redis-backed tests also request the Redis server up front."""
    if request.param == "redis":
        request.getfixturevalue("redis_server_url")
    return str(request.param)
