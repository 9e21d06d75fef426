"""The backend client over httpx: :class:`LonglinkBackend` (asyncio) and its blocking twin.

Both take the same arguments and offer the same methods; the requests, the
answers and the retry decisions are built once in :mod:`longlink.backend.calls`,
and each class only sends them and sleeps (``asyncio.sleep`` or ``time.sleep``)::

    async with LonglinkBackend("http://127.0.0.1:8080", api_key="...") as longlink:
        msg_id = await longlink.push(to={"users": ["alice"]}, data={"text": "hi"})

    with LonglinkBackendSync("http://127.0.0.1:8080", api_key="...") as longlink:
        msg_id = longlink.push(to={"rooms": ["lobby"]}, data="hello")

One instance holds one connection pool: make it once, share it, close it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import httpx

from longlink.backend import calls
from longlink.backend.calls import NO_DATA, Call, Exchange, Push, RetryPolicy, Step, Wait
from longlink.backend.errors import BackendError, ConnectionFailed

__all__ = ["LonglinkBackend", "LonglinkBackendSync"]

T = TypeVar("T")

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _connection_failed(exc: httpx.TransportError, call: Call[Any]) -> ConnectionFailed:
    sent = not isinstance(exc, _NOT_SENT)
    error = ConnectionFailed(f"{call.method} {call.path}: {exc!r}", sent=sent)
    error.__cause__ = exc
    return error


class _Base:
    """What both clients share: settings and the building of every call."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        ticket_secret: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self._ticket_secret = ticket_secret
        self._headers = {"Authorization": f"Bearer {api_key}", "User-Agent": "longlink-backend"}
        self._timeout = timeout

    def sign_ticket(self, user: str, device: str | None = None, *, ttl_s: int = 300) -> str:
        """A ticket for ``POST /v1/connect`` signed with ``ticket_secret`` (PROTOCOL.md §2.1)."""
        if not self._ticket_secret:
            raise BackendError("sign_ticket needs the ticket_secret the server was given")
        return calls.sign_ticket(self._ticket_secret, user, device, ttl_s=ttl_s)

    @staticmethod
    def _push(
        to: Mapping[str, Any],
        data: Any,
        data_b64: str | None,
        raw: bytes | None,
        priority: str,
        guaranteed: bool,
        ttl_s: int | None,
    ) -> Call[int]:
        push = Push(to, data, data_b64, raw, priority, guaranteed, ttl_s)
        return calls.push_call(push)


class LonglinkBackend(_Base):
    """The push API for business backends, on asyncio (an async context manager).

    ``url`` is the server's HTTP base (``http://HOST:8080``), ``api_key`` one
    of its keys. ``ticket_secret`` (the server's) enables :meth:`sign_ticket`.
    ``retry`` says how hard to retry 429, 503 and connection failures
    (:class:`~longlink.backend.calls.RetryPolicy`); ``timeout`` is per request.
    ``transport`` and ``sleep`` are for tests.

    Every method raises :class:`~longlink.backend.errors.ApiCallError`
    (a subclass per status) or :class:`~longlink.backend.errors.ConnectionFailed`.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        ticket_secret: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(url, api_key, ticket_secret=ticket_secret, retry=retry, timeout=timeout)
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=self._headers, timeout=timeout, transport=transport
        )
        self._sleep = sleep

    async def __aenter__(self) -> LonglinkBackend:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool; idempotent."""
        await self._http.aclose()

    async def _run(self, call: Call[T]) -> T:
        exchange = Exchange(call, self.retry)
        while isinstance(step := await self._send(exchange), Wait):
            await self._sleep(step.seconds)
        return step.outcome()

    async def _send(self, exchange: Exchange[T]) -> Step[T]:
        """Send the exchange's call once; the step that its outcome leads to."""
        call = exchange.call
        try:
            response = await self._http.request(call.method, call.path, json=call.body)
        except httpx.TransportError as exc:
            return exchange.failed(_connection_failed(exc, call))
        return exchange.answered(response.status_code, response.content, response.headers)

    async def push(
        self,
        to: Mapping[str, Any],
        data: Any = NO_DATA,
        *,
        data_b64: str | None = None,
        raw: bytes | None = None,
        priority: str = "low",
        guaranteed: bool = False,
        ttl_s: int | None = None,
    ) -> int:
        """Queue one push; its message id. See :class:`~longlink.backend.calls.Push`."""
        return await self._run(self._push(to, data, data_b64, raw, priority, guaranteed, ttl_s))

    async def push_batch(self, messages: Iterable[Push | Mapping[str, Any]]) -> list[int]:
        """Queue up to ``max_batch`` pushes (:class:`Push` or JSON objects); ids in order."""
        return await self._run(calls.push_batch_call(messages))

    async def online(self) -> dict[str, Any]:
        """``{"total": n, "rooms": {room: n}, "areas": {area: n}}``."""
        return await self._run(calls.online_call())

    async def room(self, room: str) -> dict[str, Any]:
        """``{"room", "area", "online"}``."""
        return await self._run(calls.room_call(room))

    async def set_room_area(self, room: str, area: str | None) -> dict[str, Any]:
        """Put ``room`` in ``area`` (None: in none); the room as :meth:`room` gives it."""
        return await self._run(calls.set_room_area_call(room, area))

    async def user(self, user: str) -> dict[str, Any]:
        """``{"user", "connections": [{"conn_id", "node", "device", "rooms", ...}]}``."""
        return await self._run(calls.user_call(user))

    async def kick(self, user: str, reason: str = "kicked") -> int:
        """Close ``user``'s connections with KICK ``reason``; how many were closed."""
        return await self._run(calls.kick_call(user, reason))

    async def nodes(self) -> list[dict[str, Any]]:
        """Every reporting gateway node with its load and health."""
        return await self._run(calls.nodes_call())

    async def drain(self, node: str, draining: bool = True) -> dict[str, Any]:
        """Stop sending clients to ``node`` and move its clients (False: take it back)."""
        return await self._run(calls.drain_call(node, draining))

    async def message_trace(self, msg_id: int) -> dict[str, Any]:
        """What happened to a message, with timestamps (``NotFound`` past retention)."""
        return await self._run(calls.message_trace_call(msg_id))


class LonglinkBackendSync(_Base):
    """The same as :class:`LonglinkBackend`, blocking (a context manager); for threads and WSGI."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        ticket_secret: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(url, api_key, ticket_secret=ticket_secret, retry=retry, timeout=timeout)
        self._http = httpx.Client(
            base_url=self.url, headers=self._headers, timeout=timeout, transport=transport
        )
        self._sleep = sleep

    def __enter__(self) -> LonglinkBackendSync:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool; idempotent."""
        self._http.close()

    def _run(self, call: Call[T]) -> T:
        exchange = Exchange(call, self.retry)
        while isinstance(step := self._send(exchange), Wait):
            self._sleep(step.seconds)
        return step.outcome()

    def _send(self, exchange: Exchange[T]) -> Step[T]:
        """Send the exchange's call once; the step that its outcome leads to."""
        call = exchange.call
        try:
            response = self._http.request(call.method, call.path, json=call.body)
        except httpx.TransportError as exc:
            return exchange.failed(_connection_failed(exc, call))
        return exchange.answered(response.status_code, response.content, response.headers)

    def push(
        self,
        to: Mapping[str, Any],
        data: Any = NO_DATA,
        *,
        data_b64: str | None = None,
        raw: bytes | None = None,
        priority: str = "low",
        guaranteed: bool = False,
        ttl_s: int | None = None,
    ) -> int:
        """Queue one push; its message id. See :class:`~longlink.backend.calls.Push`."""
        return self._run(self._push(to, data, data_b64, raw, priority, guaranteed, ttl_s))

    def push_batch(self, messages: Iterable[Push | Mapping[str, Any]]) -> list[int]:
        """Queue up to ``max_batch`` pushes (:class:`Push` or JSON objects); ids in order."""
        return self._run(calls.push_batch_call(messages))

    def online(self) -> dict[str, Any]:
        """``{"total": n, "rooms": {room: n}, "areas": {area: n}}``."""
        return self._run(calls.online_call())

    def room(self, room: str) -> dict[str, Any]:
        """``{"room", "area", "online"}``."""
        return self._run(calls.room_call(room))

    def set_room_area(self, room: str, area: str | None) -> dict[str, Any]:
        """Put ``room`` in ``area`` (None: in none); the room as :meth:`room` gives it."""
        return self._run(calls.set_room_area_call(room, area))

    def user(self, user: str) -> dict[str, Any]:
        """``{"user", "connections": [{"conn_id", "node", "device", "rooms", ...}]}``."""
        return self._run(calls.user_call(user))

    def kick(self, user: str, reason: str = "kicked") -> int:
        """Close ``user``'s connections with KICK ``reason``; how many were closed."""
        return self._run(calls.kick_call(user, reason))

    def nodes(self) -> list[dict[str, Any]]:
        """Every reporting gateway node with its load and health."""
        return self._run(calls.nodes_call())

    def drain(self, node: str, draining: bool = True) -> dict[str, Any]:
        """Stop sending clients to ``node`` and move its clients (False: take it back)."""
        return self._run(calls.drain_call(node, draining))

    def message_trace(self, msg_id: int) -> dict[str, Any]:
        """What happened to a message, with timestamps (``NotFound`` past retention)."""
        return self._run(calls.message_trace_call(msg_id))
