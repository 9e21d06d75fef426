"""Fixtures for the SDK tests: a fake gateway per transport, a fake control API, clients."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from longlink.client import Client
from tests.client.fake_gateway import FakeControl, FakeGateway

ClientFactory = Callable[..., Awaitable[Client]]


@pytest.fixture(autouse=True)
async def _asyncio_debug() -> AsyncIterator[None]:
    asyncio.get_running_loop().set_debug(True)
    yield


@pytest.fixture(params=["tcp", "ws"])
async def gateway(request: pytest.FixtureRequest) -> AsyncIterator[FakeGateway]:
    gw = await FakeGateway(kind=request.param).start()
    yield gw
    await gw.stop()


@pytest.fixture
def control(gateway: FakeGateway) -> FakeControl:
    return FakeControl(gateway)


@pytest.fixture
async def make_client(control: FakeControl, gateway: FakeGateway) -> AsyncIterator[ClientFactory]:
    """Connected clients on the fake gateway's transport; all closed at teardown."""
    made: list[Client] = []
    http = control.http_client()

    async def connect(**kwargs: Any) -> Client:
        kwargs.setdefault("user", "u1")
        kwargs.setdefault("transport", gateway.kind)
        kwargs.setdefault("backoff_initial_s", 0.01)
        kwargs.setdefault("backoff_max_s", 0.05)
        kwargs.setdefault("rng", random.Random(7))
        client = Client("http://control.test", http_client=http, **kwargs)
        made.append(client)
        await client.connect()
        return client

    yield connect
    for client in made:
        await client.close()
    await http.aclose()
