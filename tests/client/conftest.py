"""Fixtures for the SDK bridge tests: a real node (embedded backends) per test, clients on it.

The protocol rules themselves are tested without sockets in tests/protocol
(the server and client sessions as a pair); these tests cover what the
asyncio bridge adds: transports, tasks, reconnects, timeouts, close.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from longlink.client import Client
from longlink.gateway.connection import Connection
from longlink.node import Node
from tests.conftest import API_KEY, WAIT, node_settings

ClientFactory = Callable[..., Awaitable[Client]]


@pytest.fixture(autouse=True)
async def _asyncio_debug() -> AsyncIterator[None]:
    asyncio.get_running_loop().set_debug(True)
    yield


@pytest.fixture(params=["tcp", "ws"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def server(tmp_path: Any) -> AsyncIterator[Node]:
    # No webhook and no demo echo: UPSTREAM is refused (not_allowed).
    async with Node(node_settings(tmp_path, min_heartbeat_s=1, demo_echo=False)) as node:
        yield node


@pytest.fixture
async def api(server: Node) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=server.http_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=WAIT
    ) as client:
        yield client


@pytest.fixture
async def make_client(server: Node, transport: str) -> AsyncIterator[ClientFactory]:
    """Connected clients on the server over ``transport``; all closed at teardown."""
    made: list[Client] = []

    async def connect(**kwargs: Any) -> Client:
        kwargs.setdefault("user", "u1")
        kwargs.setdefault("transport", transport)
        kwargs.setdefault("backoff_initial_s", 0.01)
        kwargs.setdefault("backoff_max_s", 0.05)
        kwargs.setdefault("rng", random.Random(7))
        client = Client(server.http_url, **kwargs)
        made.append(client)
        await client.connect()
        return client

    yield connect
    for client in made:
        await client.close()


def server_conn(server: Node, user: str) -> Connection:
    """The gateway's connection of ``user`` (exactly one)."""
    assert server.gateway is not None
    [conn] = server.gateway.hub.users[user]
    return conn
