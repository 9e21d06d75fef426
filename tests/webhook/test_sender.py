"""The webhook sender: signed POSTs, retries with backoff, bounded queue, order per connection."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from longlink.logic.events import WebhookEvent, decode_event
from longlink.webhook.http1 import HttpAnswer, HttpError
from longlink.webhook.sender import WebhookSender
from longlink.webhook.signature import SIGNATURE_HEADER, verify_signature
from tests.conftest import WAIT

SECRET = "whsec-test"
URL = "http://business.test/hook"


def event(n: int, conn: str = "c1", kind: str = "enter") -> WebhookEvent:
    return WebhookEvent(
        id=f"ev-{conn}-{n}",
        type=kind,
        user="alice",
        device="d1",
        room="lobby",
        conn_id=conn,
        node="g1",
        at=n,
    )


class Request:
    def __init__(self, content: bytes, headers: Mapping[str, str]) -> None:
        self.content = content
        self.headers = {k.lower(): v for k, v in headers.items()}


Handler = Callable[[Request], Awaitable[int]]


class FakePoster:
    """Stands in for a lane's HTTP connection: hands each request to ``handler``."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.closed = False

    async def post(self, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
        status = await self.handler(Request(body, headers))
        return HttpAnswer(status=status, complete=True)

    async def close(self) -> None:
        self.closed = True


class Receiver:
    """A fake webhook: answers with ``script`` statuses in turn (then 200), records requests."""

    def __init__(self, script: list[int] | None = None) -> None:
        self.script = list(script or [])
        self.requests: list[Request] = []
        self.accepted: list[WebhookEvent] = []
        self.changed = asyncio.Event()

    async def handle(self, request: Request) -> int:
        self.requests.append(request)
        self.changed.set()
        status = self.script.pop(0) if self.script else 200
        if status == 200:
            assert verify_signature(
                SECRET, request.headers["x-longlink-signature"], request.content
            )
            self.accepted.append(decode_event(request.content))
        return status

    async def wait_accepted(self, n: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(self.accepted) < n:
                self.changed.clear()
                await self.changed.wait()


def sender(handler: Handler, secret: str | None = SECRET, **kwargs: Any) -> WebhookSender:
    options: dict[str, Any] = {"retry_s": 0.01, "metrics": CollectorRegistry()}
    options.update(kwargs)
    return WebhookSender(URL, secret, poster=lambda: FakePoster(handler), **options)


def outcomes(s: WebhookSender) -> Counter[str]:
    counts: Counter[str] = Counter()
    for metric in s.metrics.events.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                counts[sample.labels["outcome"]] += int(sample.value)
    return counts


async def test_delivers_signed_json_with_event_id_header() -> None:
    receiver = Receiver()
    async with sender(receiver.handle) as s:
        assert s.offer(event(1))
        await receiver.wait_accepted(1)
    [request] = receiver.requests
    assert request.headers["x-longlink-event-id"] == "ev-c1-1"
    assert request.headers["x-longlink-attempt"] == "1"
    assert receiver.accepted == [event(1)]


async def test_fails_twice_then_delivered_once_with_the_same_id() -> None:
    receiver = Receiver([500, 503])
    async with sender(receiver.handle) as s:
        s.offer(event(1))
        await receiver.wait_accepted(1)
        assert outcomes(s)["delivered"] == 1
    assert [r.headers["x-longlink-attempt"] for r in receiver.requests] == ["1", "2", "3"]
    assert {r.content for r in receiver.requests} == {receiver.requests[0].content}
    assert len(receiver.accepted) == 1


async def test_network_errors_are_retried() -> None:
    calls = 0
    accepted = asyncio.Event()

    async def handle(request: Request) -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise HttpError("connection refused")
        accepted.set()
        return 204

    async with sender(handle) as s:
        s.offer(event(1))
        await asyncio.wait_for(accepted.wait(), WAIT)
    assert calls == 3


async def test_a_4xx_refusal_is_not_retried() -> None:
    receiver = Receiver([400])
    async with sender(receiver.handle) as s:
        s.offer(event(1))
        s.offer(event(2))
        await receiver.wait_accepted(1)
        assert outcomes(s)["rejected"] == 1
    assert len(receiver.requests) == 2 and receiver.accepted == [event(2)]


async def test_attempts_run_out() -> None:
    receiver = Receiver([500] * 3)
    async with sender(receiver.handle, max_attempts=3) as s:
        s.offer(event(1))
        s.offer(event(2))
        await receiver.wait_accepted(1)
        assert outcomes(s)["failed"] == 1
    assert receiver.accepted == [event(2)]


async def test_a_full_queue_drops_instead_of_blocking() -> None:
    gate, started = asyncio.Event(), asyncio.Event()
    seen: list[str] = []

    async def handle(request: Request) -> int:
        seen.append(decode_event(request.content).id)
        started.set()
        await gate.wait()
        return 200

    async with sender(handle, queue_size=4, concurrency=1) as s:
        assert s.offer(event(0))
        await asyncio.wait_for(started.wait(), WAIT)  # the lane holds event 0 in flight
        assert all(s.offer(event(n)) for n in range(1, 5))
        assert not s.offer(event(5))
        assert outcomes(s)["dropped"] == 1
        gate.set()
    assert seen == [f"ev-c1-{n}" for n in range(5)]  # close() delivered what was queued
    assert not s.offer(event(6))  # closed


async def test_one_connections_events_keep_their_order() -> None:
    receiver = Receiver([500, 200, 500])
    async with sender(receiver.handle, concurrency=4) as s:
        for n in range(20):
            for conn in ("c1", "c2", "c3"):
                s.offer(event(n, conn))
        await receiver.wait_accepted(60)
    for conn in ("c1", "c2", "c3"):
        assert [e.at for e in receiver.accepted if e.conn_id == conn] == list(range(20))


async def test_unsigned_without_a_secret(caplog: pytest.LogCaptureFixture) -> None:
    requests: list[Request] = []
    done = asyncio.Event()

    async def handle(request: Request) -> int:
        requests.append(request)
        done.set()
        return 200

    async with sender(handle, secret=None) as s:
        s.offer(event(1))
        await asyncio.wait_for(done.wait(), WAIT)
    assert SIGNATURE_HEADER.lower() not in requests[0].headers
    assert "unsigned" in caplog.text


async def test_retry_after_is_honoured() -> None:
    times: list[float] = []
    delivered = asyncio.Event()

    async def handle(request: Request) -> int:
        times.append(asyncio.get_running_loop().time())
        if len(times) > 1:
            delivered.set()
            return 200
        return 503

    class RetryAfter(FakePoster):
        async def post(self, body: bytes, headers: Mapping[str, str]) -> HttpAnswer:
            answer = await super().post(body, headers)
            answer.headers["retry-after"] = "0.3"
            return answer

    s = WebhookSender(URL, SECRET, retry_s=0.01, poster=lambda: RetryAfter(handle))
    async with s:
        s.offer(event(1))
        await asyncio.wait_for(delivered.wait(), WAIT)
    assert times[1] - times[0] >= 0.29  # the loop clock has millisecond resolution


async def test_lanes_close_their_connections() -> None:
    posters: list[FakePoster] = []

    async def handle(request: Request) -> int:
        return 200

    def make() -> FakePoster:
        posters.append(FakePoster(handle))
        return posters[-1]

    async with WebhookSender(URL, SECRET, concurrency=3, poster=make):
        pass
    assert len(posters) == 3 and all(p.closed for p in posters)
