"""An API app over the real in-memory backends, driven through httpx without sockets."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from longlink.api.app import build_app
from longlink.api.services import KickFunc, Services
from longlink.bus.memory import MemoryQueue
from longlink.control.tokens import TokenIssuer
from longlink.history.memory import MemoryHistory
from longlink.logic.base import NodeInfo
from longlink.logic.memory import MemoryRegistry
from longlink.model import MsgIdGenerator
from longlink.settings import Settings

KEY = "api-key-with-every-scope"
TICKET_SECRET = "ticket-secret-" + "t" * 32
TOKEN_SECRET = "token-secret-" + "k" * 32


def make_settings(**changes: Any) -> Settings:
    """Demo mode on, one all-scope key, a ticket secret."""
    base = Settings(api_key=KEY, ticket_secret=TICKET_SECRET, token_secret=TOKEN_SECRET, demo=True)
    return base.replace(**changes)


def bearer(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def gateway_node(name: str = "g1", **changes: Any) -> NodeInfo:
    values: dict[str, Any] = {
        "node": name,
        "region": "local",
        "ws": f"ws://127.0.0.1:7000/ws?{name}",
        "tcp": "127.0.0.1:7001",
        "stream": f"http://127.0.0.1:7000/v1/stream?{name}",
    }
    values.update(changes)
    return NodeInfo(**values)


@dataclass
class Harness:
    services: Services
    queue: MemoryQueue
    registry: MemoryRegistry
    app: Starlette
    client: httpx.AsyncClient
    history: MemoryHistory

    async def push(self, body: Any, key: str = KEY) -> httpx.Response:
        return await self.client.post("/v1/push", json=body, headers=bearer(key))

    async def batch(self, messages: list[Any], key: str = KEY) -> httpx.Response:
        return await self.client.post(
            "/v1/push/batch", json={"messages": messages}, headers=bearer(key)
        )


@contextlib.asynccontextmanager
async def open_harness(
    settings: Settings | None = None,
    *,
    queue: MemoryQueue | None = None,
    kick: KickFunc | None = None,
    clock: Callable[[], float] | None = None,
) -> AsyncIterator[Harness]:
    """An app over in-memory backends; ``clock`` drives the keys' rate limits."""
    settings = settings or make_settings()
    queue = queue or MemoryQueue()
    registry = MemoryRegistry()
    services = Services(
        settings=settings,
        queue=queue,
        registry=registry,
        ids=MsgIdGenerator(1),
        tokens=TokenIssuer(settings.token_secret, settings.token_ttl_s),
        kick=kick,
        history=MemoryHistory(settings.history_size, settings.history_ttl_s),
    )
    if clock is not None:
        services.clock = clock
    app = build_app(services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        assert isinstance(services.history, MemoryHistory)
        yield Harness(services, queue, registry, app, client, services.history)
    await queue.close()


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with open_harness() as harness:
        yield harness


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The ``error`` object of an error answer (and a check of its shape)."""
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    return error
