"""A business webhook for the tests: a real HTTP server on a free port.

It checks every request's signature (a bad one is answered 401 and counted),
answers the first ``fail_first`` attempts of each event with 500, and records
the events it accepted, in arrival order. Tests wait for what they expect
with :meth:`WebhookReceiver.wait_for` (a timeout, never a sleep).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from longlink.api.server import HttpServer
from longlink.webhook.signature import SIGNATURE_HEADER, verify_signature
from tests.conftest import WAIT


class WebhookReceiver:
    """``async with WebhookReceiver(secret) as hook: ... hook.url ...``."""

    def __init__(self, secret: str, *, fail_first: int = 0) -> None:
        self.secret = secret
        self.fail_first = fail_first
        self.attempts: Counter[str] = Counter()
        self.accepted: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self._changed = asyncio.Event()
        app = Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])
        self._server = HttpServer(app, "127.0.0.1", 0)

    async def __aenter__(self) -> WebhookReceiver:
        await self._server.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._server.__aexit__(None, None, None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}/hook"

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        if not verify_signature(self.secret, request.headers.get(SIGNATURE_HEADER, ""), body):
            self.bad_signatures += 1
            return Response(status_code=401)
        event = msgspec.json.decode(body)
        self.attempts[event["id"]] += 1
        if self.attempts[event["id"]] <= self.fail_first:
            return Response(status_code=500)
        self.accepted.append(event)
        self._changed.set()
        return Response(status_code=204)

    def events(self, **match: Any) -> list[dict[str, Any]]:
        """Accepted events whose fields equal ``match`` (e.g. ``type="exit", room="r1"``)."""
        return [e for e in self.accepted if all(e.get(k) == v for k, v in match.items())]

    async def wait_for(
        self, predicate: Callable[[WebhookReceiver], bool], within: float = WAIT
    ) -> None:
        """Wait until ``predicate(self)`` holds; TimeoutError after ``within`` seconds."""
        async with asyncio.timeout(within):
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

    async def wait_events(self, n: int, within: float = WAIT, **match: Any) -> list[dict[str, Any]]:
        """Wait for at least ``n`` accepted events matching ``match``; returns them."""
        await self.wait_for(lambda hook: len(hook.events(**match)) >= n, within)
        return self.events(**match)
